"""Restore planner: how a snapshot would be recreated, and every reason it would fail here.

``plan(snapshot)`` is a pure function of the snapshot (plus, unless
``live=False``, a read-only look at this machine). It builds the creation
order (pids via clone3 set_tid, sessions, groups, helpers, orphans, zombies,
threads, shared fd tables), the shared-file plan, runs the result through the
kernel-rules simulator and checks that the end state equals the snapshot.
"""

from __future__ import annotations

from criu_model.errors import UsageError
from criu_model.planner.check import check_snapshot, verify
from criu_model.planner.files import FilePlan
from criu_model.planner.memory import check_memory_available, plan_memory
from criu_model.planner.model import (
    RESTORER,
    Action,
    Plan,
    PlannedProcess,
    Problem,
    Severity,
    Step,
)
from criu_model.planner.nsorder import NsOrder
from criu_model.planner.pids import Namespaces
from criu_model.planner.sessions import NEW_NS_INIT, Builder
from criu_model.planner.ttys import CttyPlan
from criu_model.planner.unknown import check_unknown_enums
from criu_model.snapshot import Snapshot

PID_NS_MODES = ("same", "new")


def plan(snapshot: Snapshot, *, live: bool = True, pid_ns: str = "same",
         set_tid: bool | None = None) -> Plan:
    """Plan the restore of `snapshot`.

    live: also dry-run against this machine (pids in use, files, ports,
    features, capabilities). pid_ns: "same" restores into the caller's pid
    namespace, "new" into a fresh one. set_tid: force (True) or refuse (False,
    the racy ns_last_pid fallback) clone3 set_tid; None asks the kernel when
    live, and assumes it offline.
    """
    if pid_ns not in PID_NS_MODES:
        raise UsageError(f"pid_ns must be one of {PID_NS_MODES}, not {pid_ns!r}")
    check_snapshot(snapshot)
    result = Plan(pid_ns)
    check_unknown_enums(snapshot, result)
    if set_tid is None:
        set_tid = True
        if live:
            from criu_model.planner.live import set_tid_available
            set_tid = set_tid_available(result)
    if not set_tid:
        result.racy = True
        result.problem(Severity.WARNING, "racy-pids",
                       "without clone3 set_tid, pids are chosen by writing "
                       "/proc/sys/kernel/ns_last_pid before each fork: another process "
                       "forking at the same time steals the pid",
                       fix="use Linux 5.5 or later")
    # Pass 1 only learns the creation tree, so the file plan can pick openers.
    scratch = Plan(pid_ns)
    first = Builder(snapshot, scratch, Namespaces(snapshot, scratch), last_pid=not set_tid)
    first.build()
    files = FilePlan(snapshot, result, first.creator)
    builder = Builder(snapshot, result, Namespaces(snapshot, result), last_pid=not set_tid)
    nsorder = NsOrder(snapshot, result)
    nsorder.attach(builder)
    files.attach(builder)
    ctty = CttyPlan(snapshot, result, files.tty_source)
    builder.on_settled.append(ctty.on_settled)
    builder.build()
    files.transfers()
    files.install()
    files.check_pidfds()
    files.check_pending_connects()
    ctty.finish()
    builder.finish()
    if not builder.failed and not ctty.failed and not nsorder.failed:
        # A creation blocker leaves the plan partial: its end state differs by design.
        verify(snapshot, result, builder.base)
    needed = plan_memory(snapshot, result)
    if live:
        from criu_model.planner.live import dry_run
        dry_run(snapshot, result)
        if needed:
            check_memory_available(result, needed)
    return result


__all__ = ["NEW_NS_INIT", "PID_NS_MODES", "RESTORER", "Action", "Plan", "PlannedProcess",
           "Problem", "Severity", "Step", "plan"]
