#!/usr/bin/env python3
"""Dump a 200-process tree (state + memory layout, no page contents).

Reports wall time and time frozen for `criu_model.dump`, against the same
collection done with psutil (`Process.as_dict()` + `memory_maps()` per process)
measured in the same run. Prints figures; never fails on timing.

Usage: scripts/bench/bench_dump.py [N_PROCESSES] [ROUNDS]   (run as root)
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import sys
import time

import psutil

import criu_model


def spawn_tree(n: int) -> int:
    """A root, 10 children and n-11 grandchildren, all asleep; returns the root pid."""
    if n < 11:
        raise SystemExit("N_PROCESSES must be at least 11")
    r, w = os.pipe()
    extra = n - 11
    sizes = [extra // 10 + (1 if i < extra % 10 else 0) for i in range(10)]
    root = os.fork()
    if root == 0:
        os.close(r)
        for grandchildren in sizes:
            if os.fork() == 0:
                for _ in range(grandchildren):
                    if os.fork() == 0:
                        os.write(w, b"x")
                        signal.pause()
                        os._exit(0)
                os.write(w, b"x")
                signal.pause()
                os._exit(0)
        signal.pause()
        os._exit(0)
    os.close(w)
    got = 0
    while got < n - 1:
        got += len(os.read(r, 4096))
    os.close(r)
    return root


def psutil_collect(root: int) -> int:
    procs = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]
    for p in procs:
        p.as_dict()
        p.memory_maps(grouped=False)
    return len(procs)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    root = spawn_tree(n)
    try:
        time.sleep(0.2)
        ours, ours_np, frozen, frozen_np, theirs = [], [], [], [], []
        for _ in range(rounds):  # interleaved, so machine noise hits all three alike
            t = time.perf_counter()
            snap = criu_model.dump([root])
            ours.append(time.perf_counter() - t)
            frozen.append(snap.inventory.frozen_for_ns / 1e9)
            t = time.perf_counter()
            lean = criu_model.dump([root], page_counts=False)
            ours_np.append(time.perf_counter() - t)
            frozen_np.append(lean.inventory.frozen_for_ns / 1e9)
            t = time.perf_counter()
            psutil_collect(root)
            theirs.append(time.perf_counter() - t)
        med = statistics.median
        print(f"processes dumped: {len(snap.processes)}, VMAs: {snap.vma_count}, "
              f"threads: {snap.thread_count}, fds: {snap.fd_count}")
        for label, times, held in (("with per-VMA page counts", ours, frozen),
                                   ("without page counts (--no-pages)", ours_np, frozen_np)):
            print(f"criu-model dump, ptrace freeze, {label}: median {med(times)*1e3:.1f} ms "
                  f"(min {min(times)*1e3:.1f}), frozen median {med(held)*1e3:.1f} ms, "
                  f"ratio to psutil {med(times) / med(theirs):.2f}")
        print(f"psutil as_dict()+memory_maps(): median {med(theirs)*1e3:.1f} ms "
              f"(min {min(theirs)*1e3:.1f})")
        print(f"per process, with page counts: median {med(ours) / n * 1e3:.2f} ms, "
              f"min {min(ours) / n * 1e3:.2f} ms (issue 15's target: under 0.6 ms); "
              f"load average {os.getloadavg()[0]:.2f}")
    finally:
        for p in [*psutil.Process(root).children(recursive=True), psutil.Process(root)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        os.waitpid(root, 0)


if __name__ == "__main__":
    main()
