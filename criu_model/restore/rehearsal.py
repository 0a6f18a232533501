"""``rehearse(snapshot, plan)``: run the plan's skeleton for real, let the kernel judge it.

Phases (each timed in the report): create (the sandbox and every step),
judge (dump the parked sandbox, compare), teardown (kill the sandbox's init:
the kernel kills the whole namespace). The sandbox is torn down on every exit
path: an exception, Ctrl-C (KeyboardInterrupt), SIGTERM (turned into an
exception while we rehearse, in the main thread), and criu-model's own death
(see sandbox.py), unless ``keep`` asks to leave it parked.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from criu_model.errors import CriuModelError
from criu_model.images.pb import sockets_pb2
from criu_model.planner.model import Plan
from criu_model.progress import Report
from criu_model.restore.executor import Conductor
from criu_model.restore.judge import RehearsalReport, judge
from criu_model.snapshot import Snapshot

# Test hook: seconds to hold the parked sandbox before judging it; the sandbox's init pid
# and pid-namespace inode are printed on stderr first, so a test can kill us meanwhile.
HOLD_ENV = "CRIU_MODEL_TEST_HOLD_REHEARSAL"


class Terminated(CriuModelError):
    """SIGTERM arrived during a rehearsal: the sandbox was torn down."""


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield   # only the main thread may set handlers; the death signal still guards us
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated("rehearsal interrupted by SIGTERM: the sandbox was torn down")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def sandbox_sockets(init: int, parked: Snapshot) -> list[sockets_pb2.Socket]:
    """The sandbox's sockets, which sock_diag shows only from inside its network namespace.

    A network namespace is per thread (setns(2), Linux 3.0): a short-lived thread
    joins the sandbox's, dumps, and exits; criu-model's own threads never move.
    """
    inodes = {fd.socket.inode for t in parked.fds for fd in t.fds if fd.HasField("socket")}
    known = {s.inode for s in parked.sockets}
    if not inodes - known:
        return []
    from criu_model.collect.sockets import collect_sockets
    from criu_model.restore.sandbox import CLONE_NEWNET
    from criu_model.restore.worker import setns

    found: list[sockets_pb2.Socket] = []
    failure: list[BaseException] = []

    def inside() -> None:
        try:
            nsfd = os.open(f"/proc/{init}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                setns(nsfd, CLONE_NEWNET)
            finally:
                os.close(nsfd)
            found.extend(collect_sockets(inodes - known).sockets.values())
        except (OSError, CriuModelError) as err:
            failure.append(err)

    thread = threading.Thread(target=inside, name="criu-model-sandbox-netns")
    thread.start()
    thread.join()
    if failure:
        raise CriuModelError(f"rehearsal: reading the sandbox's sockets: {failure[0]}")
    return sorted(found, key=lambda s: s.inode)


def memory_totals(stats: dict[str, float]) -> dict[str, float]:
    """The memory steps' totals for the report: VMAs mapped, bytes filled, the fill rate
    per CPU second (the sandbox processes' CPU time in preadv, page faults included), and
    the wall time from the first job sent to the last reply (jobs run side by side)."""
    if not stats:
        return {}
    fill = stats.get("fill_s", 0.0)
    wall = stats.get("wall_s", 0.0)
    nbytes = stats.get("bytes", 0)
    return {"vmas": int(stats.get("vmas", 0)), "mapped": int(stats.get("mapped", 0)),
            "bytes_filled": int(nbytes), "fill_cpu_ms": round(fill * 1000, 2),
            "fill_mb_per_s": round(nbytes / fill / 1e6, 1) if fill > 0 else 0.0,
            "wall_ms": round(wall * 1000, 2),
            "wall_mb_per_s": round(nbytes / wall / 1e6, 1) if wall > 0 else 0.0}


def rehearse(snapshot: Snapshot, plan: Plan, *, keep: bool = False,
             progress: Report | None = None) -> RehearsalReport:
    """Execute `plan` (made with pid_ns="new") in a sandbox; compare it with `snapshot`.

    keep: leave the parked sandbox running; ``report.sandbox_pid`` is its init
    here (``kill -9`` it to end the whole sandbox). progress: hears (steps done,
    steps, note) while the plan runs, then "judging".
    """
    from criu_model.dumper import DEFAULT_GHOST_LIMIT, dump

    report = RehearsalReport(feasible=plan.feasible)
    conductor = Conductor(snapshot, plan)
    with _sigterm_raises():
        t0 = time.perf_counter()
        try:
            sandbox = conductor.create()
            report.sandbox_pid = sandbox.pid
            report.sandbox_pidns = sandbox.pidns
            execution = conductor.run(progress)
            conductor.park(keep)
            t1 = time.perf_counter()
            if progress is not None:
                progress(len(plan.steps), len(plan.steps), "judging")
            hold = os.environ.get(HOLD_ENV)
            if hold:
                import sys
                print(f"rehearsal-held {sandbox.pid} {sandbox.pidns}", file=sys.stderr,
                      flush=True)
                time.sleep(float(hold))
            # its deleted files and memfds captured up to the largest the snapshot holds
            # (ZDTM ghost_multi_hole: 8 MiB, above the default limit: compared with "-")
            biggest = max((g.size for g in snapshot.ghosts if g.captured), default=0)
            parked = dump([sandbox.pid], freeze="ptrace", page_counts=False,
                          ghost_limit=max(DEFAULT_GHOST_LIMIT, biggest))
            parked.sockets.extend(sandbox_sockets(sandbox.pid, parked))
            report.entries = judge(snapshot, parked, execution)
            report.memory = memory_totals(execution.memory)
            t2 = time.perf_counter()
            if keep:
                sandbox.keep()
                report.kept = True
        finally:
            conductor.close()
            if conductor.sandbox is not None:
                conductor.sandbox.close()
        t3 = time.perf_counter()
    report.timings = {"create": t1 - t0, "judge": t2 - t1, "teardown": t3 - t2}
    return report
