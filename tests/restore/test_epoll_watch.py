"""epoll watches that outlived their fd number (found rehearsing ZDTM epoll01).

The kernel keys a watch by (file, fd number) and keeps it until the file is
released: after the program moves the watched file to another fd, the watch keeps
the old number, which may now be free or hold another file. Such watches were
added under a service fd number; the plan now adds each under its own number
(the file dup'ed there for the call, the occupant put back), and the judge
compares tfd, events and data.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import criu_model
from criu_model.restore import rehearse
from criu_model.restore.judge import MATCHED, MISMATCHED
from criu_model.restore.sandbox import wait_gone
from criu_model.snapshot import Snapshot
from tests.restore.progtree import dump_program

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, set_tid)")

_PROGRAM = """
import os, select, signal, sys
ready = int(sys.argv[1])
ep = select.epoll()
a, aw = os.pipe()
b, bw = os.pipe()
ep.register(a, select.EPOLLIN)           # watch (a, fd a), data = a
ep.register(b, select.EPOLLIN | select.EPOLLET)
os.dup2(a, 40, inheritable=False)
os.close(a)                              # fd a is free now: the watch keeps its number
os.dup2(b, 41, inheritable=False)
os.dup2(aw, b, inheritable=False)        # fd b holds another file (a's write end)
print(a, b, ep.fileno(), flush=True)
os.write(ready, b"ready")
os.close(ready)
signal.pause()
"""


@pytest.fixture(scope="module")
def moved() -> Iterator[tuple[Snapshot, int, tuple[int, int, int]]]:
    snap, pid, line = dump_program(_PROGRAM)
    a, b, ep = line
    yield snap, pid, (a, b, ep)


def _epoll_entry(report: object, pid: int, ep: int) -> object:
    return next(e for e in report.entries  # type: ignore[attr-defined]
                if e.kind == "fd" and e.id == f"{pid}:{ep}")


def test_watches_keep_their_numbers(moved: tuple[Snapshot, int, tuple[int, int, int]]) -> None:
    snap, pid, (a, b, ep) = moved
    fd = next(f for f in snap.fds_by_pid[pid].fds if f.fd == ep)
    assert sorted((t.tfd, t.data) for t in fd.epoll.targets) == [(a, a), (b, b)]
    report = rehearse(snap, criu_model.plan(snap, live=False, pid_ns="new"))
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    assert _epoll_entry(report, pid, ep).status == MATCHED   # type: ignore[attr-defined]
    for n in (40, 41, b):
        entry = next(e for e in report.entries if e.kind == "fd" and e.id == f"{pid}:{n}")
        assert entry.status == MATCHED


def test_a_watch_under_another_number_is_caught(
        moved: tuple[Snapshot, int, tuple[int, int, int]]) -> None:
    """The old plan: the watch added under the file's current fd (41 for b's pipe)."""
    snap, pid, (_a, b, ep) = moved
    plan = criu_model.plan(snap, live=False, pid_ns="new")
    adds = [s for s in plan.steps if s.action == "epoll_ctl_add" and s.args["tfd"] == b]
    assert len(adds) == 1
    index = plan.steps.index(adds[0])
    # drop the dup2 that put b's file at fd b for the call: the watch lands on the occupant
    del plan.steps[index - 1]
    report = rehearse(snap, plan)
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    entry = _epoll_entry(report, pid, ep)
    assert entry.status == MISMATCHED   # type: ignore[attr-defined]
