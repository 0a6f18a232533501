"""pidfds (found rehearsing ZDTM pidfd_dead): of a process of the tree, and of a process
that had exited and was reaped.

The judge compared a pidfd's kind and flags only; it now compares whose it is (the
target's snapshot pid, or -1 for a dead one). A pidfd of a dead process was not
rehearsed; the worker now makes one from a helper child that exits and is reaped.
"""

from __future__ import annotations

import os

import pytest

import criu_model
from criu_model.restore import rehearse
from criu_model.restore.judge import MATCHED, MISMATCHED
from criu_model.restore.sandbox import wait_gone
from tests.restore.progtree import dump_program

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, set_tid)")

_PROGRAM = """
import os, signal, sys
ready = int(sys.argv[1])
live = os.fork()
if live == 0:
    os.close(ready)
    signal.pause()
dead = os.fork()
if dead == 0:
    os._exit(0)
dead_fd = os.pidfd_open(dead)
os.waitpid(dead, 0)                      # reaped: the pidfd's process is gone
live_fd = os.pidfd_open(live)
print(live, live_fd, dead_fd, flush=True)
os.write(ready, b"ready")
os.close(ready)
signal.pause()
"""


def test_pidfds_of_live_and_dead_processes() -> None:
    snap, pid, line = dump_program(_PROGRAM)
    live, live_fd, dead_fd = line
    table = {f.fd: f for f in snap.fds_by_pid[pid].fds}
    assert (table[live_fd].pidfd.pid, table[dead_fd].pidfd.pid) == (live, -1)
    plan = criu_model.plan(snap, live=False, pid_ns="new")
    report = rehearse(snap, plan)
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    for fd in (live_fd, dead_fd):
        entry = next(e for e in report.entries if e.kind == "fd" and e.id == f"{pid}:{fd}")
        assert entry.status == MATCHED
    # a planner bug: the live pidfd opened on its own process instead of the child's
    step = next(s for s in plan.steps if s.args.get("kind") == "pidfd"
                and s.args.get("target") == live)
    step.args["target"] = pid
    report = rehearse(snap, plan)
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    entry = next(e for e in report.entries if e.kind == "fd" and e.id == f"{pid}:{live_fd}")
    assert entry.status == MISMATCHED
    assert entry.mismatches == [{"field": "pidfd_target", "expected": live,
                                 "actual": pid}]
