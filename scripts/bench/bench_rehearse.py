"""Benchmark: rehearse a real 50-process tree with ~20 fds each (issue 12 target: < 1 s).

Run (root): .venv/bin/python scripts/bench/bench_rehearse.py [PROCESSES] [ROUNDS]
The tree is tests/restore/skeleton.py's (sessions, groups, a zombie, a thread, a
pipe, a socketpair, an eventfd, a shared data file; the rest plain children with 20
fds each: the data file 14 times, their own pipe and an eventfd). It is dumped and
planned once; each round rehearses it (create = sandbox + every step, judge = dump
of the parked sandbox + comparison, teardown = SIGKILL of its init + reap) and the
median of each phase is printed with its share of the total.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import criu_model
from criu_model.restore import rehearse
from tests.restore.skeleton import spawn_tree


def main(processes: int = 50, rounds: int = 5) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.write_bytes(b"x" * 100)
        with spawn_tree(str(data), wide=max(processes - 5, 0)) as tree:
            snap = criu_model.dump([tree.pids["root"]])
        rounds_of(snap, rounds)   # the data file must still exist: the plan opens it


def rounds_of(snap: criu_model.Snapshot, rounds: int) -> None:
    t0 = time.perf_counter()
    plan = criu_model.plan(snap, live=False, pid_ns="new")
    planned = time.perf_counter() - t0
    print(f"tree: {len(snap.processes)} processes, {snap.fd_count} fds, "
          f"{len(plan.steps)} steps (planned in {planned * 1000:.0f} ms)")
    phases: dict[str, list[float]] = {}
    walls = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        report = rehearse(snap, plan)
        walls.append(time.perf_counter() - t0)
        for name, value in report.timings.items():
            phases.setdefault(name, []).append(value)
        if not report.ok:
            bad = [e.to_json() for e in report.entries if e.status == "mismatched"][:5]
            raise SystemExit(f"rehearsal mismatched: {report.summary()} {bad}")
    total = statistics.median(walls)
    print(f"rehearse (median of {rounds}): {total * 1000:.0f} ms; "
          + ", ".join(f"{name} {statistics.median(v) * 1000:.0f} ms "
                      f"({statistics.median(v) / total:.0%})" for name, v in phases.items()))
    print(f"summary: {report.summary()}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
