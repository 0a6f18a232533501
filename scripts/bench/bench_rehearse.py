"""Benchmark: rehearse a real 50-process tree with ~20 fds each (issue 12 target: < 1 s).

Run (root): .venv/bin/python scripts/bench/bench_rehearse.py [PROCESSES] [ROUNDS] [--pages]
       .venv/bin/python scripts/bench/bench_rehearse.py --snapshot DIR [ROUNDS]
The tree is tests/restore/skeleton.py's (sessions, groups, a zombie, a thread, a
pipe, a socketpair, an eventfd, a shared data file; the rest plain children with 20
fds each: the data file 14 times, their own pipe and an eventfd). It is dumped and
planned once; each round rehearses it (create = sandbox + every step, judge = dump
of the parked sandbox + comparison, teardown = SIGKILL of its init + reap) and the
median of each phase is printed with its share of the total. With --pages the tree
is dumped with its page contents, so the memory steps (map_vmas, fill_pages) are
rehearsed too and their fill rate is printed; --snapshot rehearses a snapshot
directory instead (e.g. the demo's: scripts/demo.py DIR).
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


def main(processes: int = 50, rounds: int = 5, pages: bool = False) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.write_bytes(b"x" * 100)
        with spawn_tree(str(data), wide=max(processes - 5, 0)) as tree:
            if pages:   # page contents live in a snapshot directory's pages.img
                criu_model.write(criu_model.dump([tree.pids["root"]], pages=True,
                                                 pages_dir=tmp), Path(tmp) / "snap")
        snap = criu_model.load(Path(tmp) / "snap") if pages else None
        if snap is None:
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
    memory = getattr(report, "memory", None)
    if memory:
        print("memory: " + ", ".join(f"{k} {v}" for k, v in memory.items()))


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--pages"]
    if args[:1] == ["--snapshot"]:
        rounds_of(criu_model.load(args[1]), int(args[2]) if len(args) > 2 else 5)
    else:
        main(*(int(a) for a in args[:2]), pages="--pages" in sys.argv[1:])
