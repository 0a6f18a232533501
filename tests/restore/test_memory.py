"""Memory steps rehearsed for real: map_vmas and fill_pages in the sandbox, judged page by page.

A process with known memory (memprog.py) is dumped with --pages; the rehearsal
maps its VMAs at their addresses in the sandbox process, fills them from the
snapshot's pages.img (and a parent's), and the judge reads them back through
/proc/PID/mem. A corrupted page in a copy of pages.img must be a mismatch that
names the page; a VMA on an address the worker itself uses must be "not
rehearsed" with the worker's mapping named.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import mmap
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import criu_model
from criu_model.pages.layout import PAGE_SIZE, slot_offset
from criu_model.restore import RehearsalReport, rehearse
from criu_model.restore.judge import MATCHED, MISMATCHED, NOT_REHEARSED, Entry
from criu_model.restore.memory import IN_USE, AddressSpace
from criu_model.restore.sandbox import pidns_members, wait_gone
from criu_model.snapshot import Snapshot
from tests.restore.progtree import rehearsed

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, set_tid)")

PROG = Path(__file__).with_name("memprog.py")
ADDR_NO_RANDOMIZE = 0x0040000
_libc = ctypes.CDLL(None, use_errno=True)


def _gone(report: RehearsalReport) -> None:
    assert report.sandbox_pid is not None
    assert wait_gone(report.sandbox_pid)
    assert pidns_members(report.sandbox_pidns) == []


def _no_aslr() -> None:
    _libc.personality(ADDR_NO_RANDOMIZE)


@contextlib.contextmanager
def _memprog(tmp: Path, preexec: Callable[[], None] | None = None
             ) -> Iterator[tuple[dict[str, int], subprocess.Popen[bytes], int]]:
    data = tmp / "mapped.bin"
    data.write_bytes(b"".join(bytes([0x40 + i]) * PAGE_SIZE for i in range(4)))
    rfd, wfd = os.pipe()
    proc = subprocess.Popen([sys.executable, str(PROG), str(wfd), str(data)], pass_fds=(wfd,),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            start_new_session=True, preexec_fn=preexec)
    os.close(wfd)
    try:
        with os.fdopen(rfd, "rb", buffering=0, closefd=False) as f:
            line = f.readline()
        assert line, "memprog did not start"
        yield json.loads(line), proc, rfd
    finally:
        proc.kill()
        proc.wait()
        os.close(rfd)


def _dump(pid: int, where: Path, parent: Path | None = None) -> Snapshot:
    snap = criu_model.dump([pid], pages=True, pages_dir=str(where.parent), parent=parent)
    criu_model.write(snap, where)
    return criu_model.load(where)


def _vma(report: RehearsalReport, pid: int, addr: int) -> Entry:
    """The entry of pid's VMA holding ``addr``.

    By containment, not by start: the kernel merges a fresh anonymous mapping
    into a neighbour with the same flags (one of the interpreter's own, when
    mmap puts it next to one), so the VMA may begin below the address the
    program mapped (this failed about 1 run in 20).
    """
    for e in report.entries:
        span = re.fullmatch(r"(\d+):0x([0-9a-f]+)-0x([0-9a-f]+)", e.id)
        if (e.kind == "vma" and span and int(span[1]) == pid
                and int(span[2], 16) <= addr < int(span[3], 16)):
            return e
    raise AssertionError(f"no vma entry of {pid} holds {addr:#x}")


@pytest.fixture
def dumped(tmp_path: Path) -> Iterator[tuple[Snapshot, dict[str, int], Path]]:
    with _memprog(tmp_path) as (where, _proc, _rfd):
        snap = _dump(where["pid"], tmp_path / "snap")
    yield snap, where, tmp_path / "snap"


def test_memory_rehearsed_and_matched(dumped: tuple[Snapshot, dict[str, int], Path]) -> None:
    snap, where, _dir = dumped
    report = rehearsed(snap)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    pid = where["pid"]
    for name in ("rw", "ro", "none", "zeroed", "file"):
        entry = _vma(report, pid, where[name])
        assert entry.status == MATCHED, (name, entry.to_json())
    vmas = [e for e in report.entries if e.kind == "vma"]
    assert len(vmas) == len(snap.memory_by_pid[pid].vmas)      # one entry per dumped VMA
    assert sum(e.status == MATCHED for e in vmas) > len(vmas) // 2
    for e in vmas:
        if e.status == NOT_REHEARSED:
            assert e.reason
    # the pages were written for real: 64 + 16 pages of data at least, and the
    # fill_pages steps are no longer reported as not rehearsed
    assert report.memory["bytes_filled"] >= 80 * PAGE_SIZE
    assert report.memory["fill_mb_per_s"] > 0
    assert not [e for e in report.entries if e.kind == "step"
                and "not rehearsed yet" in e.reason and ("fill_pages" in e.id
                                                         or "map_vmas" in e.id)]


def _slot_of(snap: Snapshot, pid: int, addr: int) -> int:
    index = snap.page_store.owner((pid, 0, 0))     # type: ignore[union-attr]
    for lo, _n, state, slot, _h in index.pages(addr, addr + PAGE_SIZE):
        assert lo == addr and state == 1          # PAGE_STORED
        return slot
    raise AssertionError("page not stored")


def test_corrupted_page_is_a_mismatch(dumped: tuple[Snapshot, dict[str, int], Path],
                                      tmp_path: Path) -> None:
    snap, where, src = dumped
    pid, page = where["pid"], where["rw"] + 5 * PAGE_SIZE
    bad = tmp_path / "corrupt"
    shutil.copytree(src, bad)
    fd = os.open(bad / "pages.img", os.O_RDWR)
    try:
        at = slot_offset(_slot_of(snap, pid, page)) + 100
        os.pwrite(fd, bytes([os.pread(fd, 1, at)[0] ^ 0xFF]), at)
    finally:
        os.close(fd)
    report = rehearsed(criu_model.load(bad))
    entry = _vma(report, pid, where["rw"])
    assert entry.status == MISMATCHED
    assert [m["field"] for m in entry.mismatches] == ["page"]
    assert entry.mismatches[0]["expected"].startswith(f"{page:#x} xxh3 ")
    assert entry.mismatches[0]["actual"].startswith(f"{page:#x} xxh3 ")
    assert not report.ok
    # everything else still matches: one page, one mismatch
    assert [e.id for e in report.entries if e.status == MISMATCHED] == [entry.id]


def test_restorer_bug_is_a_mismatch(dumped: tuple[Snapshot, dict[str, int], Path],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The judge reads the sandbox, it does not trust the restorer: a job that maps `rw`
    read-only and `ro` one page short is caught."""
    from criu_model.restore import memory

    snap, where, _dir = dumped
    real = memory.memory_job

    def buggy(snap: Snapshot, pid: int, objects: Any = None
              ) -> tuple[dict[str, Any], list[int], Any]:
        job, fds, decisions = real(snap, pid, objects)
        for vma in job["vmas"]:
            if vma["start"] == where["rw"]:
                vma["prot"] = 1
            if vma["start"] == where["ro"]:
                vma["end"] -= PAGE_SIZE
                vma["runs"] = [[a, min(n, (vma["end"] - a) // PAGE_SIZE), src, off]
                               for a, n, src, off in vma["runs"] if a < vma["end"]]
        return job, fds, decisions

    monkeypatch.setattr(memory, "memory_job", buggy)
    report = rehearsed(snap)
    pid = where["pid"]
    rw = _vma(report, pid, where["rw"])
    assert rw.status == MISMATCHED
    assert {"field": "prot", "expected": "rw-", "actual": "r--"} in rw.mismatches
    ro = _vma(report, pid, where["ro"])
    assert ro.status == MISMATCHED
    assert ro.mismatches[0]["field"] == "range"
    assert ro.mismatches[0]["actual"] == f"{where['ro']:#x}-{where['ro'] + 15 * PAGE_SIZE:#x}"


def test_inherited_pages_come_from_the_parent(tmp_path: Path) -> None:
    with _memprog(tmp_path) as (where, _proc, rfd):
        _dump(where["pid"], tmp_path / "p1")
        os.kill(where["pid"], signal.SIGUSR1)
        with os.fdopen(rfd, "rb", buffering=0, closefd=False) as f:
            assert f.readline() == b"touched\n"
        snap = _dump(where["pid"], tmp_path / "p2", parent=tmp_path / "p1")
    pid = where["pid"]
    plan = criu_model.plan(snap, live=False, pid_ns="new")
    fill = next(s for s in plan.steps if s.action == "fill_pages"
                and s.args["start"] == where["rw"])
    assert fill.args["inherited"] >= 63 and fill.args["stored"] >= 1
    report = rehearse(snap, plan)
    _gone(report)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    assert _vma(report, pid, where["rw"]).status == MATCHED


def test_state_only_snapshot_rehearses_the_layout(tmp_path: Path) -> None:
    with _memprog(tmp_path) as (where, _proc, _rfd):
        snap = criu_model.dump([where["pid"]])
    report = rehearsed(snap)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    entry = _vma(report, where["pid"], where["rw"])
    assert entry.status == MATCHED and "layout only" in entry.reason
    assert report.memory["bytes_filled"] == 0


def test_worker_addresses_are_not_rehearsed(tmp_path: Path) -> None:
    """Without ASLR the dumped python and the sandbox's worker (the same interpreter)
    have the same layout: every colliding VMA says which mapping of the worker holds it."""
    with _memprog(tmp_path, preexec=_no_aslr) as (where, _proc, _rfd):
        snap = _dump(where["pid"], tmp_path / "snap")
    old = _libc.personality(0xFFFFFFFF)
    _libc.personality(old | ADDR_NO_RANDOMIZE)    # the sandbox init's exec inherits it
    try:
        report = rehearse(snap, criu_model.plan(snap, live=False, pid_ns="new"))
    finally:
        _libc.personality(old)
    _gone(report)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    clashes = [e for e in report.entries if e.kind == "vma" and e.status == NOT_REHEARSED
               and e.reason.startswith("the address is in use by the rehearsal worker (")]
    assert clashes
    exe = os.path.realpath(sys.executable)
    assert any(exe in e.reason or "libc" in e.reason or "ld-linux" in e.reason
               for e in clashes), [e.reason for e in clashes[:5]]


def test_address_space_names_the_colliding_mapping() -> None:
    """The worker side alone, in this process: MAP_FIXED_NOREPLACE never replaces ours."""
    area = mmap.mmap(-1, 4 * PAGE_SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    area[:5] = b"ours!"
    addr = ctypes.addressof(ctypes.c_char.from_buffer(area))
    job = {"vmas": [{"start": addr + PAGE_SIZE, "end": addr + 2 * PAGE_SIZE, "prot": 3,
                     "shared": False, "offset": 0, "path": None, "ident": [0] * 6,
                     "runs": []}]}
    [(start, status, detail, pages)] = AddressSpace([]).apply(job)
    assert (start, status, pages) == (addr + PAGE_SIZE, IN_USE, 0)
    prefix = "the address is in use by the rehearsal worker ("
    assert detail.startswith(prefix)
    lo, hi = (int(x, 16) for x in detail[len(prefix):].split()[0].split("-"))
    assert lo <= addr and hi >= addr + 4 * PAGE_SIZE and " rw-p " in detail   # ours, named
    assert area[:5] == b"ours!"


_SHM = r"""
import ctypes, json, mmap, os, signal, sys
PAGE = mmap.PAGESIZE
both = mmap.mmap(-1, 8 * PAGE)            # MAP_SHARED|MAP_ANONYMOUS: one object for two
for i in range(8):
    both[i * PAGE:(i + 1) * PAGE] = bytes([0x30 + i]) * PAGE
addr = lambda m: ctypes.addressof(ctypes.c_char.from_buffer(m))
if os.fork() == 0:
    both[3 * PAGE:3 * PAGE + 6] = b"child!"     # written through the same object
    while True:
        signal.pause()
mine = mmap.mmap(-1, 2 * PAGE)            # made after the fork: the parent's only
mine[:5] = b"mine!"
os.write(int(sys.argv[1]), (json.dumps({"pid": os.getpid(), "both": addr(both),
                                        "mine": addr(mine)}) + "\n").encode())
while True:
    signal.pause()
"""


def test_shared_anonymous_memory(tmp_path: Path) -> None:
    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-c", _SHM, str(w)], pass_fds=(w,),
                            stdin=subprocess.DEVNULL, start_new_session=True)
    os.close(w)
    try:
        with os.fdopen(r, "rb", buffering=0) as f:
            where = json.loads(f.readline())
        import time
        time.sleep(0.2)                   # the child's write
        snap = _dump(proc.pid, tmp_path / "snap")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    pid = where["pid"]
    child = next(p.pid for p in snap.processes if p.ppid == pid)
    report = rehearsed(snap)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    for who in (pid, child):
        assert _vma(report, who, where["both"]).status == MATCHED
    assert _vma(report, pid, where["mine"]).status == MATCHED
    [shm] = [e for e in report.entries if e.kind == "shm"]
    assert shm.status == MATCHED and f"{pid}:{where['both']:#x}" in shm.id \
        and f"{child}:{where['both']:#x}" in shm.id
    assert report.memory["bytes_filled"] >= 10 * PAGE_SIZE     # filled once, by the parent


def test_split_shared_object_is_a_mismatch(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A restorer that gives each holder its own copy: the pages match, the sharing not."""
    from criu_model.restore import memory

    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-c", _SHM, str(w)], pass_fds=(w,),
                            stdin=subprocess.DEVNULL, start_new_session=True)
    os.close(w)
    try:
        with os.fdopen(r, "rb", buffering=0) as f:
            json.loads(f.readline())
        import time
        time.sleep(0.2)
        snap = _dump(proc.pid, tmp_path / "snap")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    real = memory.memory_job
    monkeypatch.setattr(memory, "memory_job", lambda s, p, objects=None: real(s, p, {}))
    report = rehearsed(snap)
    [shm] = [e for e in report.entries if e.kind == "shm"]
    assert shm.status == MISMATCHED
    assert shm.mismatches == [{"field": "objects", "expected": 1, "actual": 2}]


_PRIVATE_MEMFD = r"""
import mmap, os, signal, sys
fd = os.memfd_create("cm-private")
os.ftruncate(fd, 4 * mmap.PAGESIZE)
m = mmap.mmap(fd, 4 * mmap.PAGESIZE, flags=mmap.MAP_PRIVATE)
m[:5] = b"hello"
import ctypes
addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
os.write(int(sys.argv[1]), f"{addr}\n".encode())
signal.pause()
"""


def test_private_memfd_mapping(tmp_path: Path) -> None:
    """A private mapping of a memfd is made from the memfd the skeleton opened (its
    captured contents written back), never a kind mismatch of the restorer's making."""
    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-c", _PRIVATE_MEMFD, str(w)], pass_fds=(w,),
                            stdin=subprocess.DEVNULL, start_new_session=True)
    os.close(w)
    try:
        with os.fdopen(r, "rb", buffering=0) as f:
            addr = int(f.readline())
        snap = _dump(proc.pid, tmp_path / "snap")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    report = rehearsed(snap)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    entry = _vma(report, proc.pid, addr)
    assert entry.status == MATCHED, entry.to_json()


_SHARED_MEMFD = r"""
import ctypes, json, mmap, os, signal, sys
PAGE = mmap.PAGESIZE
for _ in range(3):
    os.close(_)
for _ in range(3):
    os.set_inheritable(os.open("/dev/null", os.O_RDWR), True)
held = os.memfd_create("cm-held", 0)          # fd 3: held by both, mapped by both
os.ftruncate(held, 4 * PAGE)
m = mmap.mmap(held, 4 * PAGE)                  # MAP_SHARED
for i in range(4):
    m[i * PAGE:(i + 1) * PAGE] = bytes([0x60 + i]) * PAGE
addr = lambda x: ctypes.addressof(ctypes.c_char.from_buffer(x))
if os.fork() == 0:
    while True:
        signal.pause()
gone = os.memfd_create("cm-unheld", 0)         # mapped, its fd closed: no fd holds it
os.ftruncate(gone, 2 * PAGE)
u = mmap.mmap(gone, 2 * PAGE)
os.close(gone)
u[:7] = b"unheld!"
os.write(int(sys.argv[1]), (json.dumps({"pid": os.getpid(), "held": addr(m),
                                        "unheld": addr(u)}) + "\n").encode())
os.close(int(sys.argv[1]))
while True:
    signal.pause()
"""


def test_shared_memfd_mappings(tmp_path: Path) -> None:
    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-c", _SHARED_MEMFD, str(w)], pass_fds=(w,),
                            start_new_session=True)
    os.close(w)
    try:
        with os.fdopen(r, "rb", buffering=0) as f:
            where = json.loads(f.readline())
        snap = _dump(proc.pid, tmp_path / "snap")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    pid = where["pid"]
    child = next(p.pid for p in snap.processes if p.ppid == pid)
    report = rehearsed(snap)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    for who in (pid, child):
        assert _vma(report, who, where["held"]).status == MATCHED
    assert _vma(report, pid, where["unheld"]).status == MATCHED
    shm = [e for e in report.entries if e.kind == "shm" and f"{where['held']:#x}" in e.id]
    assert [e.status for e in shm] == [MATCHED]
    assert _by_fd(report, pid, 3).status == MATCHED and _by_fd(report, child, 3).status \
        == MATCHED


def _by_fd(report: RehearsalReport, pid: int, fd: int) -> Entry:
    return next(e for e in report.entries if e.kind == "fd" and e.id == f"{pid}:{fd}")
