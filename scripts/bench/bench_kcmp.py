#!/usr/bin/env python3
"""kcmp calls made by the sharing pass, against what all pairs would take.

Two shapes, each at 10, 30 and 100 processes x 50 fds:

* ``inherited``: one parent opens 50 fds (5 files x 10 separate opens, so
  every file has 10 descriptions that the prefilter cannot tell apart) and
  forks the other processes: every fd is inherited (the issue's benchmark).
* ``distinct``: every process opens the same file 50 times itself: all fds
  land in one candidate group and every one is its own description, the
  worst case for the sorted structure (calls ~ n log2 n).

Also runs task_shares() over the processes. Prints figures; never fails on
timing. Usage: scripts/bench/bench_kcmp.py [FDS_PER_PROCESS]   (run as root)
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from criu_model.collect.sharing import FdKey, SharingStats, assign_file_ids, task_shares

SIZES = (10, 30, 100)
FILES = 5


def fd_key(pid: int, fd: int) -> FdKey:
    st = os.stat(f"/proc/{pid}/fd/{fd}")
    info = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
                .splitlines() if ":" in line)
    return FdKey(pid, fd, st.st_dev, st.st_ino, int(info["pos"]), int(info["flags"], 8),
                 int(info["mnt_id"]))


@contextlib.contextmanager
def children(count: int, setup: Callable[[], None]) -> Iterator[list[int]]:
    """`count` forked children that run `setup`, report ready on a pipe, then sleep."""
    r, w = os.pipe()
    pids: list[int] = []
    try:
        for _ in range(count):
            pid = os.fork()
            if pid == 0:
                try:
                    os.close(r)
                    setup()
                    os.write(w, b"x")
                    while True:
                        signal.pause()
                finally:
                    os._exit(1)
            pids.append(pid)
        os.close(w)
        w = -1
        got = 0
        while got < count:
            chunk = os.read(r, count)
            if not chunk:
                raise RuntimeError("a child died during setup")
            got += len(chunk)
        yield pids
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        os.close(r)
        if w >= 0:
            os.close(w)


def report(shape: str, procs: int, keys: list[FdKey]) -> None:
    n = len(keys)
    start = time.perf_counter()
    ids, stats = assign_file_ids(keys)
    elapsed = time.perf_counter() - start
    sizes = Counter(k.group for k in keys)
    pairs_in_groups = sum(g * (g - 1) // 2 for g in sizes.values())
    nlogn = n * math.log2(n)
    print(f"{shape:9} {procs:5} {n:6} {stats.groups:6} {len(set(ids.values())):6} "
          f"{stats.kcmp_calls:8} {stats.kcmp_calls / n:6.2f} {stats.kcmp_calls / nlogn:8.3f} "
          f"{pairs_in_groups:11} {n * (n - 1) // 2:11} {elapsed * 1000:8.1f}")


def task_report(pids: list[int]) -> str:
    stats = SharingStats()
    start = time.perf_counter()
    task_shares(pids, stats=stats)
    elapsed = time.perf_counter() - start
    return f"task_shares over {len(pids)} processes: {stats.kcmp_calls} kcmp calls, " \
           f"{elapsed * 1000:.1f} ms"


def inherited(procs: int, per_proc: int, paths: list[Path]) -> None:
    fds = [os.open(paths[i % len(paths)], os.O_RDONLY) for i in range(per_proc)]
    try:
        with children(procs - 1, lambda: None) as kids:
            pids = [os.getpid(), *kids]
            keys = [fd_key(pid, fd) for pid in pids for fd in fds]
            report("inherited", procs, keys)
            if procs == SIZES[-1]:
                print("   ", task_report(pids))
    finally:
        for fd in fds:
            os.close(fd)


def distinct(procs: int, per_proc: int, path: Path) -> None:
    own = [os.open(path, os.O_RDONLY) for _ in range(per_proc)]

    def reopen_own() -> None:
        """Put a description of our own under each inherited number."""
        for fd in own:
            fresh = os.open(path, os.O_RDONLY)
            os.dup2(fresh, fd)
            os.close(fresh)

    try:
        with children(procs - 1, reopen_own) as kids:
            pids = [os.getpid(), *kids]
            keys = [fd_key(pid, fd) for pid in pids for fd in own]
            report("distinct", procs, keys)
    finally:
        for fd in own:
            os.close(fd)


def main() -> None:
    per_proc = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    if os.geteuid() != 0:
        print("note: not root; kcmp needs ptrace access to every process (ours are fine)")
    print("calls/nlogn = kcmp calls / (n log2 n); flat or falling means n log n or better\n")
    print(f"{'shape':9} {'procs':>5} {'fds n':>6} {'groups':>6} {'ids':>6} {'kcmp':>8} "
          f"{'per fd':>6} {'/nlogn':>8} {'pairs(grp)':>11} {'pairs(all)':>11} {'ms':>8}")
    with tempfile.TemporaryDirectory(prefix="bench-kcmp-") as tmp:
        paths = [Path(tmp) / f"file{i}" for i in range(FILES)]
        for path in paths:
            path.write_bytes(b"x" * 4096)
        for procs in SIZES:
            inherited(procs, per_proc, paths)
        for procs in SIZES:
            distinct(procs, per_proc, paths[0])


if __name__ == "__main__":
    main()
