#!/usr/bin/env python3
"""Benchmark `criu-model dump --pages` (page contents) against baselines measured in the same run.

Sections (issue 9, "Speed"):

1. A process with SIZE MiB of written private anonymous memory: the floor (a
   separate script, scripts/bench/pages_floor.py, that reads it with
   process_vm_readv in 1 MiB iovecs and write()s it to a tmpfs file) against
   `criu-model dump PID -D /dev/shm/... --pages`, both timed as whole processes
   (wall, interpreter start included), alternating, median; then both once to
   ext4; peak RSS of every process (wait4 rusage).
2. Copy-on-write trees (a root with TREE_MIB of written memory forks N-1
   children that each write OWN_PAGES of it): snapshot bytes and wall time of
   `dump --pages`, against what CRIU --leave-running would store (every
   present anonymous page once per process: the sum of `Anonymous` in
   smaps_rollup) and, if a working `criu` is found, CRIU itself.
3. Incremental: the target writes 1% of its pages, `dump --pages --parent
   FULL`: pages stored against pages written, wall time against the full dump,
   and a cProfile of one incremental dump (where the time goes).
4. `criu-model grep` over the full snapshot against `grep -F -a -c` over its
   pages.img.
5. Reference: `criu_model.dump(..., pages=True)` + `criu_model.write` in this
   process, and the import time of the CLI, so whole-process overhead shows.
6. Peak RSS of dump, incremental dump and grep for a second target size
   (--rss-mib): how many MiB the dumper grows per GiB of target.

Notes on method: every child process runs a copy of criu_model/ taken at the
start (--package; others edit the tree meanwhile), with its bytecode cached in
the work dir (--bytecode; this environment sets PYTHONDONTWRITEBYTECODE), from
a cwd outside the repository. Before every timed run that writes much, the
same amount is written to tmpfs and deleted, untimed (see prefault()).

Prints tables; never asserts on a timing; exits 0 (2 only on bad arguments).
Everything it starts is killed and every directory it makes is removed, also on
failure or Ctrl-C.

Usage (as root):
    .venv/bin/python scripts/bench/bench_pages.py            # 1 GiB, trees of 50 and 200
    .venv/bin/python scripts/bench/bench_pages.py --quick    # 256 MiB, trees of 20 and 50
    .venv/bin/python scripts/bench/bench_pages.py --size-mib 512 --runs 3 --trees 50
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import io
import json
import os
import pstats
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
TARGETS = HERE / "pages_targets.py"
FLOOR = HERE / "pages_floor.py"
MIB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")
NEEDLE = b"cm-bench-needle-q7Zk3xW9"  # pages_targets.NEEDLE_PIECES joined
PR_SET_CHILD_SUBREAPER = 36
# From issue 9 ("Speed"), measured there with CRIU 4.2 on this machine, not here.
ISSUE_CRIU_1GIB_TMPFS_S = 0.569
ISSUE_CRIU_1GIB_EXT4_S = 1.3
ISSUE_CRIU_TREES = {50: (294 * MIB, 0.323), 200: (int(1.15 * 1024 * MIB), 1.3)}
DUMP_LINE = re.compile(r"in ([\d.]+) ms \(frozen ([\d.]+) ms\)")
# The environment of every process the benchmark starts (set by main: where
# compiled bytecode is cached, see --bytecode).
CHILD_ENV: dict[str, str] = dict(os.environ)
CHILD_CWD: str | None = None  # not the repository: `python -c`/`-m` put the cwd first on sys.path


# ---------------------------------------------------------------- running things

@dataclass
class Run:
    argv: list[str]
    wall: float
    rc: int
    maxrss_kib: int
    out: str
    err: str

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def why(self) -> str:
        text = (self.err.strip() or self.out.strip()).splitlines()
        return f"exit {self.rc}: {text[-1] if text else '(no output)'}"


def run_timed(argv: Sequence[str], env: dict[str, str] | None = None) -> Run:
    """Run argv as a whole process: wall time from spawn to reap, its own peak RSS."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                env=CHILD_ENV if env is None else env, cwd=CHILD_CWD)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Run(list(argv), wall, proc.returncode, usage.ru_maxrss,
                   out.read().decode(errors="replace"), err.read().decode(errors="replace"))


def must(run: Run, what: str) -> Run:
    if not run.ok:
        raise BenchError(f"{what} failed ({run.why()}): {' '.join(run.argv)}")
    return run


class BenchError(Exception):
    """A step of the benchmark could not be done (reported, the rest goes on)."""


def become_subreaper() -> None:
    """Orphaned tree children are reparented to us (and reaped by us), not to pid 1."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(f"note: PR_SET_CHILD_SUBREAPER failed: {os.strerror(ctypes.get_errno())}")


def tree_pids(root: int) -> list[int]:
    """root and all its descendants, from /proc/PID/task/TID/children."""
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    todo.extend(int(x) for x in f.read().split())
    return pids


def rollup(pid: int) -> dict[str, int]:
    """/proc/PID/smaps_rollup in bytes."""
    values = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                values[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return values


def _count_lines(path: str) -> int:
    with open(path, "rb") as f:
        return f.read().count(b"\n")


def dir_bytes(path: Path) -> tuple[int, int]:
    """(apparent size, disk usage as du counts it) of every file under path."""
    apparent = used = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            apparent += st.st_size
            used += st.st_blocks * 512
    return apparent, used


class Target:
    """A child process started in its own session; close() kills the session, reaps all."""

    def __init__(self, argv: list[str], what: str) -> None:
        self.what = what
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, start_new_session=True, env=CHILD_ENV,
                                     cwd=CHILD_CWD)
        self.pids: list[int] = [self.proc.pid]
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("ready"):
            self.close()
            raise BenchError(f"{what} did not start (said {line!r})")
        self.ready = line.split()[1:]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def ask(self, line: str) -> str:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        for pid in self.pids[1:]:  # orphans are ours now (subreaper)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                if stream:
                    stream.close()


@dataclass
class Bench:
    args: argparse.Namespace
    python: str
    cli: list[str]
    shm: Path
    disk: Path
    targets: list[Target] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def dump_argv(self, pid: int, out: Path, *extra: str) -> list[str]:
        return [*self.cli, "dump", str(pid), "-D", str(out), "--pages", *extra]

    def start(self, argv: list[str], what: str) -> Target:
        target = Target(argv, what)
        self.targets.append(target)
        return target

    def stop(self, target: Target) -> None:
        target.close()
        self.targets.remove(target)


# ---------------------------------------------------------------- formatting

def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells if i < len(r)) for i in range(len(header))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths, strict=False))).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def s(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def mib(n: float | None) -> str:
    return "-" if n is None else f"{n / MIB:.1f}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{a / b:.2f}x"


def med(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def dumper_said(run: Run) -> str:
    m = DUMP_LINE.search(run.out)
    return f"{float(m.group(1)) / 1e3:.3f} / {float(m.group(2)) / 1e3:.3f}" if m else "?"


# ---------------------------------------------------------------- snapshot facts

@dataclass
class SnapFacts:
    stats: dict[str, int]
    apparent: int
    used: int
    pages_img: int
    stored_in: int = 0      # STORED pages inside the big mapping
    stored_out: int = 0     # STORED pages elsewhere
    checks: list[str] = field(default_factory=list)


def snap_facts(path: Path, pid: int | None = None, region: tuple[int, int] | None = None,
               verify: Callable[[object], list[str]] | None = None) -> SnapFacts:
    import criu_model
    from criu_model.images.pb import pages_pb2

    snap = criu_model.load(str(path))
    try:
        ps = snap.inventory.page_stats
        stats = {k: getattr(ps, k) for k in ("stored", "zero", "deduplicated", "inherited",
                                             "file_clean", "bytes_written", "read_bytes")}
        apparent, used = dir_bytes(path)
        img = path / "pages.img"
        facts = SnapFacts(stats, apparent, used, img.stat().st_size if img.exists() else 0)
        if pid is not None and region is not None:
            lo, hi = region
            for runs in snap.pagemap:
                if runs.pid != pid:
                    continue
                for addr, n, state in zip(runs.addr, runs.npages, runs.state, strict=True):
                    if state != pages_pb2.PAGE_STORED:
                        continue
                    inside = max(0, min(hi, addr + n * PAGE) - max(lo, addr)) // PAGE
                    facts.stored_in += inside
                    facts.stored_out += n - inside
        if verify is not None:
            facts.checks = verify(snap)
        return facts
    finally:
        if snap.page_store is not None:
            snap.page_store.close()


def big_verifier(pid: int, addr: int, size: int, needle_addr: int,
                 touched: tuple[int, int] | None = None) -> Callable[[object], list[str]]:
    """Checks that read_memory gives back what the target wrote (stamps, needle, touches)."""
    def verify(snap: object) -> list[str]:
        problems = []
        read = snap.read_memory
        npages = size // PAGE
        for page in sorted({0, 1, npages // 3, npages // 2, npages - 1}):
            got = read(pid, addr + page * PAGE, 8)
            if int.from_bytes(got, "little") != page:
                problems.append(f"page {page}: stamp {got.hex()} != {page}")
        if read(pid, needle_addr, len(NEEDLE)) != NEEDLE:
            problems.append("needle not read back at its address")
        if touched is not None:
            step, seed = touched
            for page in (0, step, (npages - 1) // step * step):
                got = int.from_bytes(read(pid, addr + page * PAGE + 8, 8), "little")
                if got != seed:
                    problems.append(f"touched page {page}: {got} != seed {seed}")
        return problems
    return verify


# ---------------------------------------------------------------- sections

@dataclass
class BigResult:
    """What section 1 leaves for the sections after it."""
    full: Path              # the last full dump to tmpfs (the parent of section 3)
    full_wall: float        # median whole-process wall of the full dump
    floor: float            # median whole-process wall of the floor
    addr: int
    size: int
    needle_addr: int
    facts: SnapFacts
    rss_kib: dict[str, int] = field(default_factory=dict)  # command -> peak RSS (KiB)


def prefault(bench: Bench, nbytes: int) -> float:
    """Write and delete a tmpfs file of nbytes, just before a timed run that allocates as much.

    This VM has virtio-balloon free page reporting: memory freed for about 2 s
    goes back to the host, and touching it again costs several times more (1 GiB
    of fresh tmpfs pages: ~2 s instead of ~0.3 s). Reported pages go to the tail
    of the free lists, so the pages freed here are the ones the next run gets:
    every timed run starts with warm memory, whatever ran before it."""
    started = time.perf_counter()
    block = b"\1" * MIB
    path = bench.shm / "prefault"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for _ in range(nbytes // MIB):
            os.write(fd, block)
    finally:
        os.close(fd)
        path.unlink()
    return time.perf_counter() - started


def section_big(bench: Bench, big: Target) -> BigResult:
    """Section 1: floor vs whole-process dump; keeps the last tmpfs dump as FULL."""
    args = bench.args
    addr, size, needle_addr = (int(x) for x in big.ready)
    floor_out = bench.shm / "floor.bin"

    def floor(dest: Path, *extra: str) -> Run:
        if dest.parent == bench.disk:
            os.sync()
        prefault(bench, size)
        run = must(run_timed([bench.python, str(FLOOR), str(big.pid), str(addr), str(size),
                              str(dest), *extra]), "floor")
        got = dest.stat().st_size
        dest.unlink()
        if got != size:
            raise BenchError(f"floor wrote {got} bytes, expected {size}")
        return run

    def dump(dest: Path, keep: bool) -> Run:
        if dest.parent == bench.disk:
            os.sync()
        prefault(bench, size)
        run = must(run_timed(bench.dump_argv(big.pid, dest)), "dump --pages")
        if not keep:
            shutil.rmtree(dest)
        return run

    criu, criu_what = find_criu(args)

    def criu_dump() -> Run | None:
        """CRIU 4.2 --leave-running of the same target, to tmpfs (before our dump of
        the round: its parasite may touch the target, and our last dump is FULL)."""
        dest = bench.shm / "criu-big"
        shutil.rmtree(dest, ignore_errors=True)
        prefault(bench, size)
        run = run_timed([criu or "criu", "dump", "-t", str(big.pid), "-D", str(_mkdir(dest)),
                         "--leave-running", "--shell-job", "-o", "dump.log"])
        shutil.rmtree(dest, ignore_errors=True)
        return run if run.ok else None

    cold_floor = floor(floor_out)
    cold_dump = dump(bench.shm / "cold", keep=False)
    floors: list[Run] = []
    threaded: list[Run] = []
    dumps: list[Run] = []
    criu_runs: list[Run] = []
    full = bench.shm / "full"
    for i in range(args.runs):
        floors.append(floor(floor_out))
        threaded.append(floor(floor_out, "--threads"))
        if criu:
            got = criu_dump()
            if got is None:
                print(f"criu could not dump the big target; {criu_what}: not compared")
                criu = None
            else:
                criu_runs.append(got)
        dumps.append(dump(full, keep=i == args.runs - 1))
    ext4_synced: list[Run] = []
    ext4_threaded: list[Run] = []
    ext4_dumps: list[Run] = []
    for _ in range(args.ext4_runs):
        ext4_synced.append(floor(bench.disk / "floor.bin", "--fsync"))
        ext4_threaded.append(floor(bench.disk / "floor.bin", "--fsync", "--threads"))
        ext4_dumps.append(dump(bench.disk / "full-ext4", keep=False))
    e4s = med([r.wall for r in ext4_synced])
    e4t = med([r.wall for r in ext4_threaded])
    e4d = med([r.wall for r in ext4_dumps])
    ext4_dump = ext4_dumps[-1]

    fmed = med([r.wall for r in floors])
    tmed = med([r.wall for r in threaded])
    dmed = med([r.wall for r in dumps])
    peak = max(r.maxrss_kib for r in [*dumps, cold_dump, *ext4_dumps]) * 1024
    rows = [
        ["floor: pages_floor.py -> tmpfs", s(fmed), s(min(r.wall for r in floors)),
         " ".join(s(r.wall) for r in floors), mib(floors[-1].maxrss_kib * 1024), "1.00x", "-",
         ""],
        ["floor, reader + writer thread -> tmpfs", s(tmed), s(min(r.wall for r in threaded)),
         " ".join(s(r.wall) for r in threaded), mib(threaded[-1].maxrss_kib * 1024),
         ratio(tmed, fmed), "-", ""],
        ["criu-model dump --pages -> tmpfs", s(dmed), s(min(r.wall for r in dumps)),
         " ".join(s(r.wall) for r in dumps), mib(max(r.maxrss_kib for r in dumps) * 1024),
         ratio(dmed, fmed), "<= 1.15x", dumper_said(dumps[-1])],
        ["  the same, against the threaded floor", "", "", "", "", ratio(dmed, tmed), "-", ""],
        *([["criu dump --leave-running -> tmpfs", s(med([r.wall for r in criu_runs])),
            s(min(r.wall for r in criu_runs)), " ".join(s(r.wall) for r in criu_runs),
            mib(max(r.maxrss_kib for r in criu_runs) * 1024),
            ratio(med([r.wall for r in criu_runs]), fmed), "-", ""],
           ["  criu-model dump --pages against it (same run)", "", "", "", "",
            ratio(dmed, med([r.wall for r in criu_runs])), "<= 1.00x", ""]]
          if criu_runs else []),
        ["floor -> ext4 (/tmp), fsync at the end", s(e4s), s(min(r.wall for r in ext4_synced)),
         " ".join(s(r.wall) for r in ext4_synced), mib(ext4_synced[-1].maxrss_kib * 1024),
         ratio(e4s, fmed), "-", ""],
        ["floor, threads -> ext4, fsync", s(e4t), s(min(r.wall for r in ext4_threaded)),
         " ".join(s(r.wall) for r in ext4_threaded), mib(ext4_threaded[-1].maxrss_kib * 1024),
         ratio(e4t, fmed), "-", ""],
        ["criu-model dump --pages -> ext4 (fsyncs)", s(e4d), s(min(r.wall for r in ext4_dumps)),
         " ".join(s(r.wall) for r in ext4_dumps), mib(ext4_dump.maxrss_kib * 1024),
         f"{ratio(e4d, e4s)} / {ratio(e4d, e4t)}", "(vs ext4 floors)", dumper_said(ext4_dump)],
        ["first floor run (not counted)", s(cold_floor.wall), "", "", "",
         ratio(cold_floor.wall, fmed), "-", ""],
        ["first dump run (not counted)", s(cold_dump.wall), "", "", "",
         ratio(cold_dump.wall, fmed), "-", dumper_said(cold_dump)],
    ]
    table(f"1. {size // MIB} MiB process (pid {big.pid}), whole-process wall time, "
          f"{args.runs} alternating runs to tmpfs, {args.ext4_runs} to ext4",
          ["what", "median s", "min s", "runs s", "peak RSS MiB", "vs floor", "target",
           "dumper says s (total / frozen)"], rows)
    print(f"peak RSS of the dumper over all its runs: {mib(peak)} MiB (target < 150 MiB); "
          f"floor throughput {size / fmed / (1 << 30):.2f} GiB/s, "
          f"dump {size / dmed / (1 << 30):.2f} GiB/s")
    facts = snap_facts(full, big.pid, (addr, addr + size),
                       big_verifier(big.pid, addr, size, needle_addr))
    print(f"snapshot: {mib(facts.apparent)} MiB apparent, {mib(facts.used)} MiB on disk "
          f"(pages.img {mib(facts.pages_img)} MiB); page_stats {facts.stats}; stored pages "
          f"in the {size // MIB} MiB mapping {facts.stored_in} of {size // PAGE}, elsewhere "
          f"{facts.stored_out}")
    print("read_memory check: " + ("ok (stamps and needle read back)" if not facts.checks
                                   else "; ".join(facts.checks)))
    if facts.stored_in != size // PAGE:
        bench.failures.append(f"full dump stored {facts.stored_in} pages of the mapping, "
                              f"expected {size // PAGE}")
    bench.failures.extend(f"full dump: {c}" for c in facts.checks)
    scale = size / (1 << 30)
    print(f"reference, from the issue, not measured here: CRIU 4.2 dumped 1 GiB in "
          f"{ISSUE_CRIU_1GIB_TMPFS_S} s to tmpfs, {ISSUE_CRIU_1GIB_EXT4_S} s to ext4"
          + (f" (scaled to {size // MIB} MiB: {ISSUE_CRIU_1GIB_TMPFS_S * scale:.3f} s / "
             f"{ISSUE_CRIU_1GIB_EXT4_S * scale:.3f} s)" if size != 1 << 30 else "")
          + f"; ours/CRIU tmpfs {ratio(dmed, ISSUE_CRIU_1GIB_TMPFS_S * scale)}, "
          f"ext4 {ratio(e4d, ISSUE_CRIU_1GIB_EXT4_S * scale)}")
    return BigResult(full, dmed, fmed, addr, size, needle_addr, facts,
                     {"dump --pages": max(r.maxrss_kib for r in dumps)})


def find_criu(args: argparse.Namespace) -> tuple[str | None, str]:
    path = args.criu or os.environ.get("CRIU") or shutil.which("criu")
    if not path:
        return None, "no criu binary (set $CRIU, --criu, or put criu on PATH)"
    probe = run_timed([path, "--version"])
    if not probe.ok:
        return None, f"{path} --version: {probe.why()}"
    return path, (probe.out.strip().splitlines() or ["?"])[0]


def section_trees(bench: Bench) -> None:
    """Section 2: CoW trees, criu-model bytes and time against CRIU's."""
    args = bench.args
    criu, criu_what = find_criu(args)
    rows = []
    notes = []
    for n in args.trees:
        tree = bench.start([bench.python, str(TARGETS), "tree", str(n), str(args.tree_mib),
                            str(args.own_pages)], f"tree of {n}")
        try:
            time.sleep(0.1)
            tree.pids = tree_pids(tree.pid)
            if len(tree.pids) != n:
                raise BenchError(f"tree of {n}: found {len(tree.pids)} processes")
            rolls = [rollup(p) for p in tree.pids]
            criu_bytes = sum(r.get("Anonymous", 0) for r in rolls)
            distinct = sum(r.get("Pss_Anon", 0) for r in rolls)
            # Both dumpers' times depend on the tree's shape: ours on its mappings,
            # CRIU's on its bytes; the same script under another interpreter setup
            # (a pyenv shim: 121 mappings and 8.4 MiB a process, a venv: 59 and 6.3)
            # makes another tree, so both are printed.
            vmas = sum(_count_lines(f"/proc/{p}/maps") for p in tree.pids) / n
            # criu-model --pages, CRIU (when found) and a state-only criu-model dump
            # alternate, each run after a prefault of what it writes (CRIU writes
            # every process's pages), so load and warm memory hit them alike.
            walls, cwalls, swalls, last, crun = [], [], [], None, None
            criu_dir = bench.shm / f"criu{n}"
            criu_used = 0
            for i in range(args.tree_runs):
                out = bench.shm / f"tree{n}-{i}"
                prefault(bench, 2 * distinct)
                last = must(run_timed(bench.dump_argv(tree.pid, out)), f"dump tree of {n}")
                walls.append(last.wall)
                if i:  # the first is kept: CRIU's parasite has not touched the tree yet
                    shutil.rmtree(out)
                plain = bench.shm / f"tree{n}-plain"
                swalls.append(must(run_timed([*bench.cli, "dump", str(tree.pid), "-D",
                                              str(plain)]), f"state-only dump of {n}").wall)
                shutil.rmtree(plain)
                if criu:
                    shutil.rmtree(criu_dir, ignore_errors=True)
                    prefault(bench, criu_bytes)
                    crun = run_timed([criu, "dump", "-t", str(tree.pid), "-D",
                                      str(_mkdir(criu_dir)), "--leave-running",
                                      "--shell-job", "-o", "dump.log"])
                    if not crun.ok:
                        break
                    cwalls.append(crun.wall)
                    _, criu_used = dir_bytes(criu_dir)
            out = bench.shm / f"tree{n}-0"
            facts = snap_facts(out)
            shutil.rmtree(out)
            st = facts.stats
            rows.append([f"criu-model dump --pages, {n} procs", s(med(walls)),
                         " ".join(s(w) for w in walls), mib(facts.used), mib(facts.pages_img),
                         st["stored"], st["deduplicated"], st["zero"],
                         mib(last.maxrss_kib * 1024) if last else "-"])
            rows.append([f"  criu-model dump (state only, no --pages), {n}", s(med(swalls)),
                         " ".join(s(w) for w in swalls), "", "", "", "", "", ""])
            rows.append([f"  CRIU --leave-running would store (sum Anonymous), {n}", "", "",
                         mib(criu_bytes), "", criu_bytes // PAGE, "", "", ""])
            rows.append([f"  distinct anon pages of the tree (sum Pss_Anon), {n}", "", "",
                         mib(distinct), "", distinct // PAGE, "", "", ""])
            notes.append(f"tree of {n}: {criu_bytes / n / MIB:.2f} MiB anonymous and "
                         f"{vmas:.0f} mappings per process; "
                         f"criu-model bytes on disk / CRIU estimate "
                         f"{ratio(facts.used, criu_bytes)} (target <= 0.50x); "
                         f"pages stored / distinct {ratio(st['stored'] * PAGE, distinct)}; "
                         f"the pages cost {med(walls) - med(swalls):.3f} s over a state-only "
                         "dump")
            if criu and crun is not None and crun.ok:
                rows.append([f"  criu dump --leave-running, {n} (measured)", s(med(cwalls)),
                             " ".join(s(w) for w in cwalls), mib(criu_used), "", "", "", "",
                             mib(crun.maxrss_kib * 1024)])
                notes.append(f"tree of {n}: criu-model/CRIU bytes "
                             f"{ratio(facts.used, criu_used)}, time "
                             f"{ratio(med(walls), med(cwalls))} (medians of alternating runs; "
                             "target <= 0.50x each)")
            elif criu and crun is not None:
                log = criu_dir / "dump.log"
                tail = log.read_text(errors="replace").strip().splitlines()[-1:] \
                    if log.exists() else []
                notes.append(f"tree of {n}: criu not available: {crun.why()} "
                             f"{' '.join(tail)}")
            shutil.rmtree(criu_dir, ignore_errors=True)
            if n in ISSUE_CRIU_TREES:
                ib, it = ISSUE_CRIU_TREES[n]
                rows.append([f"  CRIU 4.2, {n} procs, FROM THE ISSUE, not measured here",
                             s(it), "", mib(ib), "", "", "", "", ""])
                notes.append(f"tree of {n}: vs the issue's CRIU figures (a tree of ~5.6 MiB "
                             f"per process, not this one): bytes "
                             f"{ratio(facts.used, ib)}, time {ratio(med(walls), it)}")
        finally:
            bench.stop(tree)
    table(f"2. copy-on-write trees: root writes {args.tree_mib} MiB, each child writes "
          f"{args.own_pages} pages of it; whole-process wall, {args.tree_runs} runs",
          ["what", "median s", "runs s", "du MiB", "pages.img MiB", "stored", "dedup",
           "zero", "peak RSS MiB"], rows)
    print("criu: " + (criu_what if criu else f"not available: {criu_what}"))
    for note in notes:
        print(note)


def _mkdir(path: Path) -> Path:
    path.mkdir(mode=0o700)
    return path


def section_incremental(bench: Bench, big: Target, info: BigResult) -> None:
    """Section 3: 1% written, dump --parent FULL; bytes and time; a profile."""
    args = bench.args
    full: Path = info.full
    addr, size = info.addr, info.size
    step = 100
    walls, fulls, facts, written, rss = [], [], None, 0, 0
    for i in range(args.runs):
        seed = 1000 + i
        reply = big.ask(f"touch {step} {seed}")
        if not reply.startswith("ok "):
            raise BenchError(f"target said {reply!r} to touch")
        written = int(reply.split()[1])
        out = bench.shm / f"inc{i}"
        prefault(bench, 64 * MIB)
        run = must(run_timed(bench.dump_argv(big.pid, out, "--parent", str(full))),
                   "dump --pages --parent")
        walls.append(run.wall)
        rss = max(rss, run.maxrss_kib)
        # A full dump right after, so the ratio compares runs of the same moment
        # (the load of the machine changes over a minute).
        again = bench.shm / "full-again"
        prefault(bench, size)
        fulls.append(must(run_timed(bench.dump_argv(big.pid, again)), "dump --pages").wall)
        shutil.rmtree(again)
        if i == args.runs - 1:
            facts = snap_facts(out, big.pid, (addr, addr + size),
                               big_verifier(big.pid, addr, size, info.needle_addr,
                                            touched=(step, seed)))
        shutil.rmtree(out)
    assert facts is not None
    info.rss_kib["dump --pages --parent"] = rss
    st = facts.stats
    full_wall = med(fulls)
    rows = [
        ["pages written by the target (1%)", written, "", "", "", ""],
        ["pages stored (page_stats.stored)", st["stored"], ratio(st["stored"], written),
         "<= 1.10x", mib(facts.pages_img), mib(facts.used)],
        ["  of which in the written mapping", facts.stored_in,
         ratio(facts.stored_in, written), "", "", ""],
        ["  of which elsewhere (interpreter heap, stack...)", facts.stored_out, "", "", "",
         ""],
        ["pages inherited from the parent", st["inherited"], "", "", "", ""],
        ["wall s, incremental (median)", s(med(walls)), ratio(med(walls), full_wall),
         "well under 1x", "", ""],
        ["wall s, full dump (alternating with them, median)", s(full_wall), "1.00x", "", "",
         ""],
        ["wall s, full dump (section 1 median)", s(info.full_wall),
         ratio(info.full_wall, full_wall), "", "", ""],
    ]
    table(f"3. incremental dump --pages --parent FULL after writing 1% of {size // MIB} MiB, "
          f"{args.runs} runs (runs s: {' '.join(s(w) for w in walls)})",
          ["what", "value", "ratio", "target", "pages.img MiB", "du MiB"], rows)
    print(f"page_stats {st}")
    print("read_memory check through the parent chain: "
          + ("ok" if not facts.checks else "; ".join(facts.checks)))
    bench.failures.extend(f"incremental dump: {c}" for c in facts.checks)
    if facts.stored_in != written:
        bench.failures.append(f"incremental dump stored {facts.stored_in} pages of the mapping, "
                              f"{written} were written")
    if args.profile:
        profile_incremental(bench, big, full, step)


def profile_incremental(bench: Bench, big: Target, full: Path, step: int) -> None:
    reply = big.ask(f"touch {step} 99")
    if not reply.startswith("ok "):
        raise BenchError(f"target said {reply!r} to touch")
    out = bench.shm / "inc-prof"
    profile_cli(bench, ["dump", str(big.pid), "-D", str(out), "--pages", "--parent", str(full)],
                "3b. where the incremental dump's time goes", cumulative=True)
    shutil.rmtree(out)


IMPORT_MACHINERY = ("builtins.exec", "builtins.__import__", "_run_code", "_run_module_as_main",
                    "<module>")


def profile_cli(bench: Bench, cli_args: list[str], title: str, cumulative: bool) -> None:
    """Run `python -m cProfile -m criu_model CLI_ARGS` once; print its top 10 entries."""
    prof = bench.shm / "cli.prof"
    run = must(run_timed([bench.python, "-m", "cProfile", "-o", str(prof), "-m", "criu_model",
                          *cli_args]), f"profiled criu-model {cli_args[0]}")
    stats = pstats.Stats(str(prof), stream=io.StringIO())
    prof.unlink()
    entries = stats.stats
    total = max(ct for (_, _, _, ct, _) in entries.values())
    imports = sum(ct for (path, _, func), (_, _, _, ct, _) in entries.items()
                  if func == "_find_and_load" and path.startswith("<frozen"))

    def name(key: tuple[str, int, str]) -> str:
        path, line, func = key
        if "/criu_model/" in path:
            path = "criu_model/" + path.split("/criu_model/", 1)[1]
        for marker in ("site-packages/", "/lib/python3.11/", "/lib/python3"):
            if marker in path:
                path = path.split(marker, 1)[1]
                break
        return f"{func} ({path}:{line})" if line else func

    def machinery(key: tuple[str, int, str]) -> bool:
        path, _, func = key
        return path.startswith("<frozen") or any(m in func for m in IMPORT_MACHINERY)

    print(f"\n{title}: cProfile of one run, {run.wall:.3f} s wall under the profiler, "
          f"profiled total {total:.3f} s, of which imports {imports:.3f} s "
          f"(args: {' '.join(cli_args[:1] + cli_args[2:])})")
    orders = [("own time (tottime)", 2)]
    if cumulative:
        orders.insert(0, ("cumulative, import machinery left out", 3))
    for order, col in orders:
        top = sorted(((k, v) for k, v in entries.items() if col == 2 or not machinery(k)),
                     key=lambda kv: kv[1][col], reverse=True)
        rows = [[f"{ct:.3f}", f"{tt:.3f}", nc, name(k)] for k, (_, nc, tt, ct, _) in top[:10]]
        table(f"top 10 by {order}", ["cum s", "own s", "calls", "function"], rows)


def section_grep(bench: Bench, big: Target, info: BigResult) -> None:
    """Section 4: criu-model grep vs grep -F -a -c over pages.img."""
    args = bench.args
    full: Path = info.full
    pattern = NEEDLE.decode()
    env = {**CHILD_ENV, "LC_ALL": "C"}
    ours, theirs = [], []
    base = None
    for _ in range(args.runs):  # exit 0: found (the needle is planted), 1: not found
        ours.append(must(run_timed([*bench.cli, "grep", str(full), pattern]),
                         "criu-model grep (finding the planted needle)"))
        base = must(run_timed(["grep", "-F", "-a", "-c", pattern, str(full / "pages.img")],
                              env=env), "grep -F -a -c")
        theirs.append(base)
    info.rss_kib["grep"] = max(r.maxrss_kib for r in ours)
    hits_run = must(run_timed([*bench.cli, "grep", str(full), pattern, "--json"]),
                    "criu-model grep --json")
    hits: list[dict[str, object]] = []
    with contextlib.suppress(json.JSONDecodeError):
        hits = json.loads(hits_run.out)

    def at(hit: dict[str, object]) -> str:
        addr = hit.get("addr", hit.get("address"))
        return f"{addr:#x}" if isinstance(addr, int) else str(addr)

    where = ", ".join(f"pid {h.get('pid')} at {at(h)} ({h.get('vma', '?')})" for h in hits)
    om, tm = med([r.wall for r in ours]), med([r.wall for r in theirs])
    rows = [
        ["criu-model grep DIR PATTERN", s(om), " ".join(s(r.wall) for r in ours),
         f"exit {ours[-1].rc}", mib(max(r.maxrss_kib for r in ours) * 1024), ratio(om, tm),
         "< 1 s"],
        ["LC_ALL=C grep -F -a -c PATTERN pages.img", s(tm), " ".join(s(r.wall) for r in theirs),
         f"count {base.out.strip() if base else '?'}",
         mib(max(r.maxrss_kib for r in theirs) * 1024), "1.00x", "-"],
    ]
    table(f"4. grep over the {info.size // MIB} MiB snapshot "
          f"({mib(info.facts.pages_img)} MiB pages.img), {args.runs} runs",
          ["what", "median s", "runs s", "result", "peak RSS MiB", "vs grep", "target"], rows)
    print(f"criu-model grep --json: {len(hits)} hit(s): {where or hits_run.why()}; planted at "
          f"{info.needle_addr:#x}")
    found = [h for h in hits if h.get("pid") == big.pid
             and h.get("addr", h.get("address")) == info.needle_addr]
    if len(hits) != 1 or not found:
        bench.failures.append(f"criu-model grep --json: expected the one planted hit, got "
                              f"{len(hits)}: {where}")
    if args.profile:
        profile_cli(bench, ["grep", str(full), pattern], "4b. where grep's time goes",
                    cumulative=False)


def section_inprocess(bench: Bench, big: Target, info: BigResult) -> None:
    """Section 5: the API in this process, and the CLI's start-up, for reference."""
    args = bench.args
    python_start = med([run_timed([bench.python, "-c", "pass"]).wall for _ in range(3)])
    cli_import = med([must(run_timed([bench.python, "-c", "import criu_model.cli"]),
                           "import criu_model.cli").wall for _ in range(3)])
    uncached = {**CHILD_ENV, "PYTHONDONTWRITEBYTECODE": "1"}
    uncached.pop("PYTHONPYCACHEPREFIX", None)
    cli_import_uncached = med([must(run_timed([bench.python, "-c", "import criu_model.cli"],
                                              env=uncached),
                                    "import criu_model.cli").wall for _ in range(3)])
    cli_help = med([must(run_timed([*bench.cli, "--help"]), "criu-model --help").wall
                    for _ in range(3)])
    started = time.perf_counter()
    import criu_model
    import criu_model.dumper
    import criu_model.images
    imported = time.perf_counter() - started
    dumps, writes, frozen = [], [], []
    for i in range(args.runs):
        prefault(bench, info.size)
        started = time.perf_counter()
        snap = criu_model.dump([big.pid], pages=True, pages_dir=str(bench.shm))
        dumped = time.perf_counter()
        out = bench.shm / f"api{i}"
        criu_model.write(snap, str(out))
        written = time.perf_counter()
        frozen.append(snap.inventory.frozen_for_ns / 1e9)
        if snap.page_store is not None:
            snap.page_store.close()
        if snap.page_sink is not None:
            snap.page_sink.close()
        del snap
        shutil.rmtree(out)
        dumps.append(dumped - started)
        writes.append(written - dumped)
    whole = info.full_wall
    api = med(dumps) + med(writes)
    rows = [
        ["criu_model.dump(pages=True) in this process", s(med(dumps)),
         " ".join(s(x) for x in dumps), ratio(med(dumps), info.floor)],
        ["  of which frozen (inventory.frozen_for_ns)", s(med(frozen)),
         " ".join(s(x) for x in frozen), ""],
        ["criu_model.write(snap, dir)", s(med(writes)), " ".join(s(x) for x in writes), ""],
        ["dump + write", s(api), "", ratio(api, info.floor)],
        ["whole-process criu-model dump --pages (section 1)", s(whole), "",
         ratio(whole, info.floor)],
        ["  difference: start-up, imports, exit", s(whole - api), "", ""],
        ["python -c pass (interpreter start)", s(python_start), "", ""],
        [f"python -c 'import criu_model.cli' ({bench.args.bytecode} bytecode)", s(cli_import),
         "", ""],
        ["python -c 'import criu_model.cli' (no bytecode cache)", s(cli_import_uncached), "",
         ""],
        ["criu-model --help", s(cli_help), "", ""],
        ["import criu_model.dumper, .images (in this process)", s(imported), "", ""],
    ]
    table(f"5. reference: the Python API in this process, {info.size // MIB} MiB "
          f"process, {args.runs} runs", ["what", "median s", "runs s", "vs floor"], rows)


def section_rss(bench: Bench, info: BigResult) -> None:
    """Section 6: does the memory of the commands grow with the target's? Another
    target (--rss-mib), the same commands, one run each; the slope between the sizes."""
    other_mib = bench.args.rss_mib
    other = bench.start([bench.python, str(TARGETS), "big", str(other_mib)],
                        f"{other_mib} MiB target")
    try:
        full, inc = bench.shm / "rss-full", bench.shm / "rss-inc"
        prefault(bench, other_mib * MIB)
        runs = {"dump --pages": must(run_timed(bench.dump_argv(other.pid, full)), "dump")}
        if not other.ask("touch 100 7").startswith("ok "):
            raise BenchError("the target did not touch its pages")
        prefault(bench, 64 * MIB)
        runs["dump --pages --parent"] = must(run_timed(
            bench.dump_argv(other.pid, inc, "--parent", str(full))), "dump --parent")
        runs["grep"] = must(run_timed([*bench.cli, "grep", str(full), NEEDLE.decode()]),
                            "grep")
        shutil.rmtree(inc)
        shutil.rmtree(full)
    finally:
        bench.stop(other)
    rows = []
    big_mib = info.size // MIB
    for what, run in runs.items():
        big_kib = info.rss_kib.get(what)
        if big_kib is None:
            continue
        points = sorted([(big_mib, big_kib / 1024), (other_mib, run.maxrss_kib / 1024)])
        (lo_mib, lo_rss), (hi_mib, hi_rss) = points
        slope = (hi_rss - lo_rss) / ((hi_mib - lo_mib) / 1024) if hi_mib != lo_mib else 0.0
        cross = hi_mib / 1024 + (150 - hi_rss) / slope if slope > 1 else None
        rows.append([f"criu-model {what}", f"{lo_rss:.1f}", f"{hi_rss:.1f}", f"{slope:.1f}",
                     "-" if cross is None else f"{cross:.1f}"])
    lo, hi = sorted((big_mib, other_mib))
    table(f"6. peak RSS against the target's size: {lo} MiB and {hi} MiB targets "
          f"({big_mib} MiB: the max over section 1, 3, 4 runs; {other_mib} MiB: one run each)",
          ["command", f"RSS MiB @{lo} MiB", f"RSS MiB @{hi} MiB", "MiB per GiB of target",
           "150 MiB reached at GiB"], rows)


# ---------------------------------------------------------------- main

def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="a short run: 256 MiB, trees of 20 and 50, 3 runs (under a minute)")
    p.add_argument("--size-mib", type=int, help="size of the big process (default 1024)")
    p.add_argument("--runs", type=int, help="alternating runs per measurement (default 5)")
    p.add_argument("--ext4-runs", type=int,
                   help="alternating floor/dump runs to ext4 (/tmp) (default 3, quick 1)")
    p.add_argument("--trees", type=lambda t: [int(x) for x in t.split(",")],
                   help="tree sizes, comma separated (default 50,200)")
    p.add_argument("--tree-mib", type=int, default=1,
                   help="MiB the tree's root writes before forking (default 1: with the "
                        "interpreter's own ~5 MiB, about the issue's 5.6 MiB per process)")
    p.add_argument("--own-pages", type=int, default=4,
                   help="pages each child of a tree writes (default 4)")
    p.add_argument("--tree-runs", type=int, help="dumps per tree (default 3)")
    p.add_argument("--rss-mib", type=int,
                   help="size of the second target of section 6 (default 2048, quick 1024)")
    p.add_argument("--criu", help="a criu binary to compare with (default $CRIU, then PATH)")
    p.add_argument("--no-profile", dest="profile", action="store_false",
                   help="skip the cProfile of the incremental dump")
    p.add_argument("--python", default=None,
                   help="interpreter for the targets, the floor and criu-model "
                        "(default: .venv/bin/python of the repository, else this one)")
    p.add_argument("--bytecode", choices=("cached", "env"), default="cached",
                   help="cached (default): child processes cache compiled bytecode in the "
                        "work dir (PYTHONPYCACHEPREFIX), as an installed package has it; env: "
                        "leave PYTHONDONTWRITEBYTECODE and friends as they are")
    p.add_argument("--package", choices=("copy", "live"), default="copy",
                   help="copy (default): measure a copy of criu_model/ taken at the start "
                        "(others may edit the tree during the run); live: the working tree")
    p.add_argument("--sections", default="1,2,3,4,5,6",
                   help="which sections to run (1 is needed by 3, 4, 5 and 6)")
    args = p.parse_args(argv)
    args.size_mib = args.size_mib or (256 if args.quick else 1024)
    args.runs = args.runs or (3 if args.quick else 5)
    args.ext4_runs = args.ext4_runs or (1 if args.quick else 3)
    args.rss_mib = args.rss_mib or (1024 if args.quick else 2048)
    args.trees = args.trees or ([20, 50] if args.quick else [50, 200])
    args.tree_runs = args.tree_runs or (2 if args.quick else 3)
    args.sections = {int(x) for x in args.sections.split(",")}
    if args.runs < 1 or args.size_mib < 2 or args.tree_runs < 1 or min(args.trees) < 1:
        p.error("sizes and run counts must be positive")
    return args


@contextlib.contextmanager
def interrupts_as_keyboard() -> Iterator[None]:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so the finally blocks clean up."""
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")
    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    venv_python = REPO / ".venv" / "bin" / "python"
    python = args.python or (str(venv_python) if venv_python.exists() else sys.executable)
    cli_bin = Path(python).parent / "criu-model"
    cli = [str(cli_bin)] if cli_bin.exists() else [python, "-m", "criu_model"]
    if os.geteuid() != 0:
        print("bench_pages: needs root (ptrace, process_vm_readv, pagemap PFNs); nothing run")
        return 0
    become_subreaper()
    started = time.perf_counter()
    shm = Path(tempfile.mkdtemp(prefix="bench-pages-", dir="/dev/shm"))
    disk = Path(tempfile.mkdtemp(prefix="bench-pages-", dir="/tmp"))
    bench = Bench(args, python, cli, shm, disk)
    global CHILD_CWD
    CHILD_CWD = str(shm)
    if args.package == "copy":
        pkg = shm / "pkg"
        shutil.copytree(REPO / "criu_model", pkg / "criu_model",
                        ignore=shutil.ignore_patterns("__pycache__"))
        CHILD_ENV["PYTHONPATH"] = os.pathsep.join(
            x for x in (str(pkg), os.environ.get("PYTHONPATH")) if x)
        sys.path.insert(0, str(pkg))
    if args.bytecode == "cached":
        CHILD_ENV.pop("PYTHONDONTWRITEBYTECODE", None)
        CHILD_ENV["PYTHONPYCACHEPREFIX"] = str(shm / "pycache")
    print(f"bench_pages: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, kernel {os.uname().release}, "
          f"{os.cpu_count()} cpus, python {python}, criu-model {' '.join(cli)}")
    print(f"criu_model under test: {package_version(args.package)}")
    print(f"load average at the start: {loadavg()} (other users of these 2 cores add noise)")
    print(f"work dirs {shm} (tmpfs) and {disk} (ext4); size {args.size_mib} MiB, runs "
          f"{args.runs}, trees {args.trees}; bytecode {args.bytecode} "
          f"(PYTHONDONTWRITEBYTECODE was {os.environ.get('PYTHONDONTWRITEBYTECODE', 'unset')})")
    try:
        with interrupts_as_keyboard():
            run_sections(bench)
    except KeyboardInterrupt:
        print("\nbench_pages: interrupted; cleaning up")
    except Exception as err:  # noqa: BLE001 - report, clean up, still exit 0
        print(f"\nbench_pages: stopped by {err!r}")
        traceback.print_exc(limit=6, file=sys.stdout)
        bench.failures.append(f"stopped by {err!r}")
    finally:
        for target in list(bench.targets):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                bench.stop(target)
        shutil.rmtree(shm, ignore_errors=True)
        shutil.rmtree(disk, ignore_errors=True)
    if bench.failures:
        print("\nproblems seen (not timings):")
        for failure in bench.failures:
            print(f"  - {failure}")
    print(f"\nbench_pages: done in {time.perf_counter() - started:.1f} s; load average at the "
          f"end: {loadavg()}")
    return 0


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def package_version(mode: str) -> str:
    """Which criu_model is measured: the commit, and how many files differ from it."""
    def git(*argv: str) -> str:
        done = subprocess.run(["git", "-C", str(REPO), *argv], capture_output=True, text=True,
                              check=False)
        return done.stdout.strip() if done.returncode == 0 else "?"
    dirty = [line for line in git("status", "--porcelain", "--", "criu_model").splitlines()
             if line.strip()]
    where = "a copy taken now" if mode == "copy" else "the live working tree"
    return (f"{where} of {REPO / 'criu_model'}, commit {git('rev-parse', '--short', 'HEAD')}"
            f" + {len(dirty)} uncommitted file(s) in criu_model/")


def run_sections(bench: Bench) -> None:
    args = bench.args
    size = args.size_mib * MIB
    print(f"prefault: wrote and removed {3 * size // MIB} MiB on tmpfs in "
          f"{prefault(bench, 3 * size):.2f} s, then {prefault(bench, 3 * size):.2f} s again "
          "(memory freed for ~2 s goes back to the host here; every timed run that writes "
          "much is preceded by such a write, untimed)")
    if {1, 3, 4, 5, 6} & args.sections:
        big = bench.start([bench.python, str(TARGETS), "big", str(args.size_mib)],
                          f"{args.size_mib} MiB target")
        try:
            info = guarded(bench, "section 1", lambda: section_big(bench, big))
            assert info is None or isinstance(info, BigResult)
            if info is not None:
                if 3 in args.sections:
                    guarded(bench, "section 3", lambda: section_incremental(bench, big, info))
                if 4 in args.sections:
                    guarded(bench, "section 4", lambda: section_grep(bench, big, info))
                if 5 in args.sections:
                    guarded(bench, "section 5", lambda: section_inprocess(bench, big, info))
                shutil.rmtree(info.full, ignore_errors=True)
        finally:
            bench.stop(big)
        if info is not None and 6 in args.sections:
            guarded(bench, "section 6", lambda: section_rss(bench, info))
    if 2 in args.sections:
        guarded(bench, "section 2", lambda: section_trees(bench))


def guarded(bench: Bench, what: str, step: Callable[[], object]) -> object | None:
    """Run one section; a failure is reported and the next section still runs."""
    try:
        return step()
    except (BenchError, OSError, subprocess.SubprocessError, ValueError) as err:
        print(f"\n{what}: could not be measured: {err}")
        bench.failures.append(f"{what}: {err}")
    except Exception as err:  # noqa: BLE001 - a bug in criu-model's API must not stop the bench
        print(f"\n{what}: crashed: {err!r}")
        traceback.print_exc(limit=6, file=sys.stdout)
        bench.failures.append(f"{what}: crashed: {err!r}")
    return None


if __name__ == "__main__":
    sys.exit(main())
