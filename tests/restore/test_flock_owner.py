"""A flock taken by a parent, held through the description its child inherited
(found rehearsing ZDTM file_locks03).

/proc/locks names the process that took a flock. The child alone holds the file, so
the child opened it and took the lock: the lock's pid differed. The process that took
it opens the file when it is an ancestor of every holder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import criu_model
from criu_model.planner.model import Action
from criu_model.restore import rehearse
from criu_model.restore.judge import MATCHED, MISMATCHED
from criu_model.restore.sandbox import wait_gone
from tests.restore.progtree import dump_program

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, set_tid)")

_PROGRAM = """
import fcntl, os, signal, sys
d, ready = sys.argv[1], int(sys.argv[2])
f = os.open(os.path.join(d, "locked"), os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(f, fcntl.LOCK_EX)
child = os.fork()
if child == 0:
    os.close(ready)
    signal.pause()
os.close(f)                        # the parent lets go of the fd; the lock is its still
print(child, f, flush=True)
os.write(ready, b"ready")
os.close(ready)
signal.pause()
"""


def test_flock_taken_by_the_parent(tmp_path: Path) -> None:
    snap, pid, line = dump_program(_PROGRAM, str(tmp_path))
    child, fd = line
    held = next(f for f in snap.fds_by_pid[child].fds if f.fd == fd)
    assert [lk.pid for lk in held.locks] == [pid]
    plan = criu_model.plan(snap, live=False, pid_ns="new")
    opens = [s for s in plan.steps if s.action is Action.OPEN and s.args.get("locks")]
    assert [s.actor for s in opens] == [pid]
    report = rehearse(snap, plan)
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    lock = next(e for e in report.entries if e.kind == "lock" and e.id == f"{child}:{fd}")
    assert lock.status == MATCHED
