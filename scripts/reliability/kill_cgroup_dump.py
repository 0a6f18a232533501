#!/usr/bin/env python3
"""SIGKILL `criu-model dump --freeze cgroup` at random moments; count cgroups left frozen.

A tree of N processes (default 50) lives alone in a fresh cgroup v2 group.
Each iteration runs the real command in a subprocess and SIGKILLs it:

* even iterations at a uniformly random moment of a whole dump (start-up,
  discovery, guardian fork, freeze, collection, thaw, writing);
* odd ones inside the frozen window: once ``cgroup.freeze`` reads 1, after a
  random part of the window's measured length.

After each kill: is the cgroup thawed within the grace time (the guardian's
job), is the lock free again (nothing left holding it), and does a snapshot
directory that appeared load (it must be complete, or absent). Then the guardian's cost: fork +
arm + dismiss in this process, against a whole in-process cgroup dump of
the tree. Prints figures; exits 1 if any cgroup was left frozen.

Usage: scripts/reliability/kill_cgroup_dump.py [--iterations 50] [--procs 50]  (as root)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import criu_model
from criu_model import cgroup_guard
from criu_model.errors import CriuModelError
from criu_model.freeze import cgroup2_mount

REPO = Path(__file__).resolve().parents[2]
GRACE_S = 2.0
TREE = r"""
import os, sys, time
sys.stdin.readline()
for _ in range(int(sys.argv[1]) - 1):
    if os.fork() == 0:
        os.close(0)
        while True:
            time.sleep(3600)
print("ready", flush=True)
sys.stdin.read()
"""


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _frozen(directory: str) -> bool:
    return "frozen 1" in _read(f"{directory}/cgroup.events").splitlines()


def _dumper(root: int, target: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "criu_model", "dump", str(root), "-D",
                             str(target), "--freeze", "cgroup"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _loads(target: Path) -> bool:
    try:
        criu_model.load(str(target))
    except CriuModelError:
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--procs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    mount = cgroup2_mount()
    if os.geteuid() != 0 or mount is None:
        raise SystemExit("needs root and a cgroup2 mount")
    directory = f"{mount[0]}/criu-model-kill-{uuid.uuid4().hex[:8]}"
    os.mkdir(directory)
    tree = subprocess.Popen([sys.executable, "-c", TREE, str(args.procs)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    tmp = Path(tempfile.mkdtemp(prefix="kill-cgroup-dump-"))
    try:
        assert tree.stdin is not None and tree.stdout is not None
        _write(f"{directory}/cgroup.procs", str(tree.pid))
        tree.stdin.write(b"go\n")
        tree.stdin.flush()
        assert tree.stdout.readline() == b"ready\n"
        return _run(args, rng, directory, tree.pid, tmp)
    finally:
        with contextlib.suppress(OSError):
            _write(f"{directory}/cgroup.freeze", "0")
            _write(f"{directory}/cgroup.kill", "1")  # Linux 5.14
        tree.kill()
        tree.wait()
        deadline = time.monotonic() + 10
        while "populated 1" in _read(f"{directory}/cgroup.events") and \
                time.monotonic() < deadline:
            time.sleep(0.01)
        os.rmdir(directory)
        subprocess.run(["rm", "-rf", str(tmp)], check=False)


def _run(args: argparse.Namespace, rng: random.Random, directory: str, root: int,
         tmp: Path) -> int:
    # Calibrate: how long a whole dump takes, and how long it holds the tree frozen.
    totals, windows = [], []
    for i in range(3):
        target = tmp / f"calib{i}"
        started = time.monotonic()
        proc = _dumper(root, target)
        _out, err = proc.communicate(timeout=60)
        if proc.returncode != 0:
            raise SystemExit(f"calibration dump failed: {err.decode().strip()}")
        totals.append(time.monotonic() - started)
        windows.append(criu_model.load(str(target)).inventory.frozen_for_ns / 1e9)
    total, window = statistics.median(totals), statistics.median(windows)
    print(f"tree: {args.procs} processes in {directory}; a dump takes {total * 1e3:.0f} ms "
          f"(frozen {window * 1e3:.1f} ms of it)")

    kills = hits = left_frozen = locked = late = completed = 0
    thaw_ms: list[float] = []
    for i in range(args.iterations):
        target = tmp / f"snap{i}"
        proc = _dumper(root, target)
        if i % 2 == 0:
            time.sleep(rng.uniform(0, total * 1.1))
        else:
            deadline = time.monotonic() + 30
            while _read(f"{directory}/cgroup.freeze").strip() != "1":
                if proc.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.0002)
            time.sleep(rng.uniform(0, window))
        freeze_before = _read(f"{directory}/cgroup.freeze").strip()
        killed_at = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.returncode == -signal.SIGKILL:
            kills += 1
            hits += freeze_before == "1"
        else:
            completed += 1  # finished before the kill landed
        while (_frozen(directory) or _read(f"{directory}/cgroup.freeze").strip() == "1") \
                and time.monotonic() - killed_at < GRACE_S:
            time.sleep(0.0005)
        while cgroup_guard.lock_holder(directory) is not None \
                and time.monotonic() - killed_at < GRACE_S:
            time.sleep(0.0005)  # the guardian exits (dropping the lock) right after its thaw
        if _read(f"{directory}/cgroup.freeze").strip() == "1" or _frozen(directory):
            left_frozen += 1
            print(f"  iteration {i}: cgroup LEFT FROZEN; thawing it", file=sys.stderr)
            _write(f"{directory}/cgroup.freeze", "0")
        elif freeze_before == "1":
            thaw_ms.append((time.monotonic() - killed_at) * 1e3)
        fd = cgroup_guard.try_lock(directory)
        if fd is None:
            locked += 1  # a guardian (or dumper) still holds it after the grace time
            print(f"  iteration {i}: lock still held by pid "
                  f"{cgroup_guard.lock_holder(directory)}", file=sys.stderr)
        else:
            os.close(fd)
        if target.exists() and proc.returncode != 0:
            if not _loads(target):
                raise SystemExit(f"iteration {i}: {target} exists but does not load: the "
                                 "rename-into-place rule is broken")
            late += 1  # killed after the complete snapshot was renamed into place
        if proc.stderr is not None:
            proc.stderr.close()
        select.select([], [], [], 0)
    print(f"iterations: {args.iterations}; SIGKILLed: {kills} ({hits} with cgroup.freeze 1 "
          f"read just before the kill); finished before the kill: {completed}")
    print(f"left frozen after {GRACE_S:g} s: {left_frozen}; lock still held: {locked}; "
          f"killed after the complete snapshot was in place: {late}")
    if thaw_ms:
        print(f"kill -> thawed (frozen kills): median {statistics.median(thaw_ms):.1f} ms, "
              f"max {max(thaw_ms):.1f} ms")
    _bench(root)
    return 1 if left_frozen or locked else 0


def _bench(root: int, rounds: int = 30) -> None:
    """What the guardian adds to a cgroup dump, measured in this process."""
    cgroup = criu_model.freeze.cgroup_of(root)
    assert cgroup is not None
    directory = cgroup2_mount()[0] + cgroup  # type: ignore[index]
    costs = []
    for _ in range(rounds):
        fd = cgroup_guard.try_lock(directory)
        assert fd is not None
        started = time.perf_counter()
        guardian = cgroup_guard.start_guardian(directory, (fd,))
        guardian.arm()
        guardian.dismiss()
        costs.append((time.perf_counter() - started) * 1e3)
        os.close(fd)
    dumps = []
    for _ in range(5):
        started = time.perf_counter()
        criu_model.dump([root], freeze="cgroup", pages=False)
        dumps.append((time.perf_counter() - started) * 1e3)
    print(f"guardian fork + arm + dismiss: median {statistics.median(costs):.2f} ms, "
          f"max {max(costs):.2f} ms over {rounds}; in-process cgroup dump of the tree "
          f"(with its guardian): median {statistics.median(dumps):.1f} ms")


if __name__ == "__main__":
    sys.exit(main())
