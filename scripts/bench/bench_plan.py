"""Benchmark: plan + simulate a synthetic 1,000-process, 20,000-fd snapshot (target < 1 s).

Run: /tmp/v/bin/python scripts/bench/bench_plan.py [PROCESSES] [FDS_PER_PROCESS]
Baseline, measured in the same run: loading that snapshot from its images (what
`criu-model plan DIR` does first); the simulator alone is shown as a share.
The tree: 10 sessions of 100 processes, 4 groups each, a chain of parents
three deep, the last three of each session zombies, pipes and a file shared down the
tree (inherited), the rest private regular files.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from criu_model.images.pb import files_pb2, inventory_pb2, process_pb2
from criu_model.images.reader import load
from criu_model.images.writer import write
from criu_model.planner import plan
from criu_model.planner.simulate import simulate
from criu_model.snapshot import Snapshot

BASE = 10_000
T = TypeVar("T")


def synthetic(n: int, fds_per: int) -> Snapshot:
    procs: list[process_pb2.Process] = []
    tables: list[files_pb2.FdTable] = []
    root = BASE
    file_id = 1
    shared = file_id
    for i in range(n):
        pid = BASE + i
        if i == 0:
            ppid, sid, pgid = 1, pid, pid
        else:
            session = BASE + 1 + ((i - 1) // 100) * 100
            sid = session
            ppid = root if pid == session else (session if (i - 1) % 100 < 4 else pid - 3)
            pgid = pid if pid == session else session + ((i - 1) % 100) % 4
            if (i - 1) % 100 < 4 and pid != session:
                pgid = pid
        zombie = i > 0 and (i - 1) % 100 >= 97   # leaves: nothing is forked after them
        proc = process_pb2.Process(pid=pid, ppid=ppid, pgid=pgid, sid=sid, ns_pids=[pid],
                                   ns_pgids=[pgid], ns_sids=[sid], state="Z" if zombie else "S",
                                   exit_code=256 if zombie else 0)
        proc.threads.add(tid=pid, ns_tids=[pid])
        procs.append(proc)
        if zombie:
            continue
        fds = [files_pb2.Fd(fd=0, file_id=shared, kind=files_pb2.FD_REGULAR, path=b"/dev/null",
                            file=files_pb2.RegularFile())]
        for fd in range(1, fds_per):
            file_id += 1
            fds.append(files_pb2.Fd(fd=fd + 2, file_id=file_id + 1, kind=files_pb2.FD_REGULAR,
                                    path=f"/tmp/f{file_id}".encode(),
                                    file=files_pb2.RegularFile()))
        tables.append(files_pb2.FdTable(pid=pid, fds=fds))
    # Zombies hold no fds: pad the others so the snapshot has n * fds_per fds.
    return Snapshot(inventory=inventory_pb2.Inventory(root_pids=[root]), processes=procs,
                    fds=tables)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    per = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    snap = synthetic(n, per)
    if snap.fd_count < n * per:  # zombies hold no fds: give the others a few more
        snap = synthetic(n, -(-n * per // max(1, len(snap.fds))))
    took, result = _best(lambda: plan(snap, live=False))
    assert result.feasible, result.problems[:3]
    with tempfile.TemporaryDirectory() as tmp:
        write(snap, Path(tmp) / "snap")
        loaded, _ = _best(lambda: load(Path(tmp) / "snap"))
    simulated, _ = _best(lambda: simulate(result.steps))
    print(f"{len(snap.processes)} processes, {snap.fd_count} fds: plan + simulate + check "
          f"{took * 1000:.0f} ms (best of 3), {len(result.steps)} steps, "
          f"{result.transfers} transfers, {sum(p.helper for p in result.processes.values())} "
          "helpers")
    print(f"  baseline: loading the snapshot's images {loaded * 1000:.0f} ms -> plan is "
          f"x{took / loaded:.2f} of it; the simulator alone {simulated * 1000:.0f} ms "
          f"({100 * simulated / took:.0f}% of the plan)")


def _best(job: Callable[[], T], rounds: int = 3) -> tuple[float, T]:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        out = job()
        best = min(best, time.perf_counter() - start)
    return best, out


if __name__ == "__main__":
    main()
