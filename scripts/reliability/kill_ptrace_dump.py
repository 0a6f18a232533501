#!/usr/bin/env python3
"""SIGKILL `criu-model dump` (the ptrace freeze, with --pages) at random moments; count
targets left stopped or traced.

    scripts/reliability/kill_ptrace_dump.py [--iterations N] [--procs N] [--seed S]

A tree of --procs processes (a root and its children, each with a few pages of
its own) is dumped N times; each dump is SIGKILLed after a random delay that
covers start-up, seizing, collection, page capture and writing. A killed
tracer's tracees are detached by the kernel (exit_ptrace): after each kill
every member must be running again (not 't', TracerPid 0), and no directory
may be left that loads as a complete snapshot. Prints the figures; exits 1
if any target was left stopped or traced.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

TREE = r"""
import os, sys, time
kids = []
for i in range(int(sys.argv[1]) - 1):
    pid = os.fork()
    if pid == 0:
        buf = bytearray(os.urandom(4096 * 4))   # a few pages of its own
        while True:
            time.sleep(3600)
    kids.append(pid)
print(" ".join(map(str, [os.getpid(), *kids])), flush=True)
while True:
    time.sleep(3600)
"""


def _status(pid: int) -> tuple[str, int]:
    """(state letter, TracerPid) of a process."""
    state, tracer = "?", 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("State:"):
            state = line.split()[1]
        elif line.startswith("TracerPid:"):
            tracer = int(line.split()[1])
    return state, tracer


def run(iterations: int, procs: int, seed: int | None) -> tuple[int, int, int, int]:
    """(kills, targets left stopped or traced, complete snapshots, incomplete dirs that load)."""
    from criu_model.errors import CriuModelError
    from criu_model.images import load

    rng = random.Random(seed)
    tree = subprocess.Popen([sys.executable, "-c", TREE, str(procs)], stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    work = Path(tempfile.mkdtemp(prefix="cm-kill-ptrace-"))
    kills = left = complete = bad = 0
    try:
        assert tree.stdout is not None
        members = [int(p) for p in tree.stdout.readline().split()]
        time.sleep(0.2)
        for i in range(iterations):
            out = work / f"snap{i}"
            dumper = subprocess.Popen([sys.executable, "-m", "criu_model", "dump",
                                       str(members[0]), "-D", str(out), "--pages"],
                                      cwd=REPO, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.0, 0.6))
            if dumper.poll() is None:
                dumper.send_signal(signal.SIGKILL)
                kills += 1
            dumper.wait()
            deadline = time.monotonic() + 2.0
            while True:  # the kernel detaches the tracees of a dead tracer
                states = [_status(p) for p in members]
                stuck = [s for s in states if s[0] in "tT" or s[1]]
                if not stuck or time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            left += len(stuck)
            if out.exists():
                try:
                    load(out)
                    complete += 1
                except CriuModelError:
                    bad += 1
            shutil.rmtree(out, ignore_errors=True)
            for stale in work.glob(".*"):
                shutil.rmtree(stale, ignore_errors=True)
    finally:
        os.killpg(tree.pid, signal.SIGKILL)
        tree.wait()
        shutil.rmtree(work, ignore_errors=True)
    return kills, left, complete, bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--procs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    started = time.monotonic()
    kills, left, complete, bad = run(args.iterations, args.procs, args.seed)
    print(f"iterations: {args.iterations}; SIGKILLed: {kills}; targets left stopped or "
          f"traced: {left}; dumps that completed before the kill: {complete}; directories "
          f"left that do not load: {bad}; {time.monotonic() - started:.1f} s")
    return 1 if left or bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
