"""A connected unix socket whose peer has closed (found rehearsing a JVM).

The kernel keeps such a socket ESTABLISHED, with both directions shut down and
no peer inode. It was planned as a fresh unconnected socket (state CLOSE), and
the rehearsal caught it: it is now a socketpair whose other end is closed at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import criu_model
from criu_model.restore import rehearse
from criu_model.restore.judge import MATCHED, MISMATCHED
from criu_model.restore.sandbox import pidns_members, wait_gone
from criu_model.snapshot import Snapshot
from tests.restore.progtree import dump_program

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, set_tid)")

_PROGRAM = """
import os, signal, socket, sys
ready = int(sys.argv[1])
for kind in (socket.SOCK_STREAM, socket.SOCK_SEQPACKET):
    a, b = socket.socketpair(socket.AF_UNIX, kind)
    b.close()                       # a: connected, its peer gone
    os.set_inheritable(a.detach(), True)
os.write(ready, b"ready")
os.close(ready)
signal.pause()
"""


@pytest.fixture(scope="module")
def orphaned() -> Iterator[tuple[Snapshot, int, list[int]]]:
    snap, pid, _ = dump_program(_PROGRAM)
    fds = [fd.fd for fd in snap.fds_by_pid[pid].fds if fd.HasField("socket")]
    yield snap, pid, fds


def test_dumped_as_the_kernel_keeps_it(orphaned: tuple[Snapshot, int, list[int]]) -> None:
    snap, _pid, fds = orphaned
    assert len(fds) == 2
    for sock in snap.sockets:
        assert sock.state == 1 and sock.unix.peer_inode == 0 and sock.shutdown == 3


def test_planned_as_a_half_closed_pair_and_rehearsed(
        orphaned: tuple[Snapshot, int, list[int]]) -> None:
    snap, pid, fds = orphaned
    plan = criu_model.plan(snap, live=False, pid_ns="new")
    opens = [s for s in plan.steps if s.action == "open" and s.args.get("fd") in fds]
    assert len(opens) == 2 and all(s.args.get("peer_closed") for s in opens)
    report = rehearse(snap, plan)
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    assert pidns_members(report.sandbox_pidns) == []
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    for fd in fds:
        entry = next(e for e in report.entries if e.kind == "fd" and e.id == f"{pid}:{fd}")
        assert entry.status == MATCHED


def test_a_plain_socket_is_caught(orphaned: tuple[Snapshot, int, list[int]]) -> None:
    """The old plan (no peer_closed): the sandbox's socket is unconnected, a mismatch."""
    snap, pid, fds = orphaned
    plan = criu_model.plan(snap, live=False, pid_ns="new")
    for step in plan.steps:
        step.args.pop("peer_closed", None)
    report = rehearse(snap, plan)
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    entry = next(e for e in report.entries if e.kind == "fd" and e.id == f"{pid}:{fds[0]}")
    assert entry.status == MISMATCHED
    assert any(m["field"] == "socket" and m["actual"]["state"] == 7     # TCP_CLOSE
               and m["expected"]["state"] == 1 for m in entry.mismatches)
