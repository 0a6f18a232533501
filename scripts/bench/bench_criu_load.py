#!/usr/bin/env python3
"""Time loading CRIU image directories: the real tree-full fixture and a synthetic big tree.

The synthetic tree is built from tree-full's images of one process (pid 6393:
core, ids, fs, mm with 22 VMAs, pagemap) repeated for N processes, each with
its own fd table (fdinfo copy of 6 fds) and its own files.img entries, under
one root: the shape of `criu dump` of an N-process tree, without pages-*.img
(the loader only sizes them). Target: under 1 s for 200 processes. With
crit on PATH (CRIU's own decoder), `crit decode` of every image is timed too
(one process per image, as crit decodes one image per run); with pycriu
importable, its decoder is also timed in this process (no JSON output).

Usage: scripts/bench/bench_criu_load.py [N_PROCESSES] [ROUNDS]
"""

from __future__ import annotations

import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from criu_model.formats.criu import load_criu, magic
from criu_model.formats.criu.pb import core_pb2, files_pb2

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "formats" / "fixtures" / "tree-full"
TEMPLATE_PID = 6393


def _frame(kind: str, entries: list[bytes]) -> bytes:
    head = struct.pack("<II", magic.IMG_COMMON, magic.MAGICS[kind])
    return head + b"".join(struct.pack("<I", len(e)) + e for e in entries)


def _entries(path: Path) -> list[bytes]:
    data, out, off = path.read_bytes(), [], 8
    while off < len(data):
        (size,) = struct.unpack_from("<I", data, off)
        out.append(data[off + 4:off + 4 + size])
        off += 4 + size
    return out


def build(dst: Path, n: int) -> None:
    """An N-process CRIU dump directory from tree-full's images."""
    dst.mkdir(parents=True)
    for name in ("inventory.img", "stats-dump", "seccomp.img", "timens-0.img"):
        shutil.copy(FIXTURE / name, dst / name)
    files = [files_pb2.FileEntry.FromString(e) for e in _entries(FIXTURE / "files.img")]
    template = {f.id: f for f in files}
    fdinfo = [files_pb2.FdinfoEntry.FromString(e) for e in _entries(FIXTURE / "fdinfo-3.img")]
    ids = core_pb2.TaskKobjIds.FromString(_entries(FIXTURE / f"ids-{TEMPLATE_PID}.img")[0])
    fs = core_pb2.FsEntry.FromString(_entries(FIXTURE / f"fs-{TEMPLATE_PID}.img")[0])
    shared = sorted({e.id for e in fdinfo} | {fs.cwd_id, fs.root_id})
    out_files = [f for f in files if f.id <= 3]  # the executable and libraries, mapped by all
    pstree, next_id = [], 1000
    for i in range(n):
        pid = 10000 + i
        pstree.append(core_pb2.PstreeEntry(pid=pid, ppid=0 if i == 0 else 10000, pgid=10000,
                                           sid=10000, threads=[pid]))
        remap = {}
        for fid in shared:
            clone = files_pb2.FileEntry()
            clone.CopyFrom(template[fid])
            clone.id = next_id
            for fld in ("reg", "pipe"):
                if clone.HasField(fld):
                    getattr(clone, fld).id = next_id
            remap[fid], next_id = next_id, next_id + 1
            out_files.append(clone)
        table = []
        for e in fdinfo:
            c = files_pb2.FdinfoEntry()
            c.CopyFrom(e)
            c.id = remap[e.id]
            table.append(c.SerializeToString())
        ids.files_id = ids.vm_id = ids.fs_id = ids.sighand_id = 100 + i
        fs.cwd_id, fs.root_id = remap[fs.cwd_id], remap[fs.root_id]
        (dst / f"fdinfo-{100 + i}.img").write_bytes(_frame("FDINFO", table))
        (dst / f"ids-{pid}.img").write_bytes(_frame("IDS", [ids.SerializeToString()]))
        (dst / f"fs-{pid}.img").write_bytes(_frame("FS", [fs.SerializeToString()]))
        fs = core_pb2.FsEntry.FromString(_entries(FIXTURE / f"fs-{TEMPLATE_PID}.img")[0])
        for name in ("core", "mm", "pagemap"):
            shutil.copy(FIXTURE / f"{name}-{TEMPLATE_PID}.img", dst / f"{name}-{pid}.img")
    (dst / "pstree.img").write_bytes(_frame("PSTREE", [p.SerializeToString() for p in pstree]))
    (dst / "files.img").write_bytes(_frame("FILES", [f.SerializeToString() for f in out_files]))


def _time(fn, rounds: int) -> tuple[float, float]:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), min(times)


def _crit(path: Path) -> float | None:
    crit = shutil.which("crit")
    if crit is None:
        return None
    t = time.perf_counter()
    for img in sorted(path.glob("*.img")):
        if not img.name.startswith("pages-"):
            subprocess.run([crit, "decode", "-i", str(img)], check=True, capture_output=True)
    return (time.perf_counter() - t) * 1000


def _pycriu(path: Path) -> float | None:
    """pycriu.images.load (crit decode's decoder, in this process) of every image."""
    try:
        import pycriu  # type: ignore[import-not-found]
    except ImportError:
        return None
    t = time.perf_counter()
    for img in sorted(path.iterdir()):
        if (img.name.endswith(".img") and not img.name.startswith("pages-")) \
                or img.name == "stats-dump":
            with open(img, "rb") as f:
                pycriu.images.load(f)
    return (time.perf_counter() - t) * 1000


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    load_criu(FIXTURE)  # warm imports
    med, best = _time(lambda: load_criu(FIXTURE), rounds)
    snap = load_criu(FIXTURE)
    print(f"tree-full ({len(snap.processes)} processes, {snap.fd_count} fds, "
          f"{snap.vma_count} VMAs): median {med:.1f} ms, best {best:.1f} ms")
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big"
        build(big, n)
        files = sum(1 for _ in big.iterdir())
        med, best = _time(lambda: load_criu(big), rounds)
        snap = load_criu(big)
        print(f"synthetic ({len(snap.processes)} processes, {snap.fd_count} fds, "
              f"{snap.vma_count} VMAs, {files} image files): median {med:.1f} ms, "
              f"best {best:.1f} ms")
        inproc = _pycriu(big)
        print("pycriu.images.load of the same images, in process: " + (
            f"{inproc:.0f} ms" if inproc is not None else "pycriu not importable, not measured"))
        crit = _crit(big)
        print("crit decode of the same images: " + (f"{crit:.0f} ms" if crit is not None
                                                     else "crit not on PATH, not measured"))


if __name__ == "__main__":
    main()
