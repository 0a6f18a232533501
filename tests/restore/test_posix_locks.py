"""POSIX record locks survive the restore's own fd moves (found rehearsing ZDTM file_locks00).

A POSIX lock belongs to its process, and closing *any* fd of the file drops every
lock the process holds on it. Taken at the open (on a service fd), it was gone once
that service fd was closed after the dup2 to its final number. The plan now takes
POSIX locks in a `lock` step once the process's fds are final.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import criu_model
from criu_model.planner.model import Action
from criu_model.restore import rehearse
from criu_model.restore.judge import MATCHED, MISMATCHED
from criu_model.restore.sandbox import wait_gone
from criu_model.snapshot import Snapshot
from tests.restore.progtree import dump_program

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, set_tid)")

_PROGRAM = """
import fcntl, os, signal, sys
ready = int(sys.argv[2])
a = os.open(os.path.join(sys.argv[1], "a"), os.O_RDWR | os.O_CREAT, 0o644)
b = os.open(os.path.join(sys.argv[1], "b"), os.O_RDWR | os.O_CREAT, 0o644)
fcntl.lockf(a, fcntl.LOCK_SH)                  # POSIX read lock, whole file
fcntl.lockf(b, fcntl.LOCK_EX, 10, 5)           # POSIX write lock on bytes 5-14
if os.fork() == 0:                             # a child (it holds the fds, not the locks)
    os.close(ready)
    signal.pause()
os.write(ready, b"ready")
os.close(ready)
signal.pause()
"""


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Snapshot, int]]:
    work: Path = tmp_path_factory.mktemp("posix-locks")
    snap, pid, _ = dump_program(_PROGRAM, str(work))
    yield snap, pid


def _lock_entries(report: object, pid: int) -> dict[str, object]:
    return {e.id: e for e in report.entries  # type: ignore[attr-defined]
            if e.kind == "lock" and e.id.startswith(f"{pid}:")}


def test_posix_locks_are_rehearsed(locked: tuple[Snapshot, int]) -> None:
    snap, pid = locked
    plan = criu_model.plan(snap, live=False, pid_ns="new")
    steps = [s for s in plan.steps if s.action is Action.LOCK]
    assert sorted(s.args["locks"][0]["mode"] for s in steps) == ["read", "write"]
    assert all(s.actor == pid for s in steps)
    report = rehearse(snap, plan)
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    entries = _lock_entries(report, pid)
    assert len(entries) == 2 and all(e.status == MATCHED  # type: ignore[attr-defined]
                                     for e in entries.values())


def test_locks_taken_at_the_open_are_lost(locked: tuple[Snapshot, int]) -> None:
    """The old plan: the locks on the open step, the service fd closed after the dup2."""
    snap, pid = locked
    plan = criu_model.plan(snap, live=False, pid_ns="new")
    for step in [s for s in plan.steps if s.action is Action.LOCK]:
        opener = next(s for s in plan.steps if s.action is Action.OPEN
                      and s.args.get("file") == step.args["file"] and s.actor == pid)
        opener.args["locks"] = step.args["locks"]
        plan.steps.remove(step)
    report = rehearse(snap, plan)
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    entries = _lock_entries(report, pid)
    assert entries and all(e.status == MISMATCHED  # type: ignore[attr-defined]
                           for e in entries.values())
