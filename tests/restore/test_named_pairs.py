"""Connected unix pairs whose ends are bound to names (found rehearsing ZDTM deleted_unix_sock).

A connection between two sockets of the tree is one socketpair() in the plan, but
socketpair's ends have no name: a client bound before it connected, or a socket
accepted on a listener, has one (sock_diag reports it, deleted or not). The ends
are now bound again after the socketpair (in the sandbox's scratch tmpfs, or its
own abstract namespace), and a node deleted on the host is unlinked again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import criu_model
from criu_model.restore import executor, rehearse
from criu_model.restore.judge import MATCHED, MISMATCHED
from criu_model.restore.sandbox import wait_gone
from criu_model.snapshot import Snapshot
from tests.restore.progtree import dump_program

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, set_tid)")

_PROGRAM = """
import os, signal, socket, sys
d, ready = sys.argv[1], int(sys.argv[2])
keep = []
lsn = socket.socket(socket.AF_UNIX)
lsn.bind(os.path.join(d, "listener"))
lsn.listen(4)
client = socket.socket(socket.AF_UNIX)
client.bind(os.path.join(d, "client"))              # bound before it connects: kept
client.connect(os.path.join(d, "listener"))
server, _ = lsn.accept()                            # named after the listener
abstract = socket.socket(socket.AF_UNIX)
abstract.bind(b"\\0criu-model-test-named-pair")
abstract.connect(os.path.join(d, "listener"))
server2, _ = lsn.accept()
lsn.close()
os.unlink(os.path.join(d, "listener"))              # the accepted ends' name: deleted
for s in (client, server, abstract, server2):
    os.set_inheritable(s.detach(), True)
os.write(ready, b"ready")
os.close(ready)
signal.pause()
"""


@pytest.fixture(scope="module")
def named(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Snapshot, int]]:
    work: Path = tmp_path_factory.mktemp("named-pairs")
    snap, pid, _ = dump_program(_PROGRAM, str(work))
    yield snap, pid


def _socket_fds(report: object, snap: Snapshot, pid: int) -> list[object]:
    fds = {f.fd for f in snap.fds_by_pid[pid].fds if f.HasField("socket")}
    return [e for e in report.entries  # type: ignore[attr-defined]
            if e.kind == "fd" and int(e.id.split(":")[1]) in fds and e.id.startswith(f"{pid}:")]


def test_named_ends_are_bound_again(named: tuple[Snapshot, int]) -> None:
    snap, pid = named
    names = sorted(s.unix.name for s in snap.sockets if s.unix.name)
    assert len(names) == 4 and names[0].startswith(b"\0")
    plan = criu_model.plan(snap, live=False, pid_ns="new")
    assert sum(s.action == "socketpair" for s in plan.steps) == 2
    report = rehearse(snap, plan)
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    entries = _socket_fds(report, snap, pid)
    assert len(entries) == 4 and all(e.status == MATCHED for e in entries)  # type: ignore


def test_unnamed_ends_are_caught(named: tuple[Snapshot, int],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The old rehearsal: socketpair() alone leaves every end unnamed."""
    snap, pid = named
    monkeypatch.setattr(executor.Conductor, "_end_name", lambda self, key: {})
    report = rehearse(snap, criu_model.plan(snap, live=False, pid_ns="new"))
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    bad = [e for e in _socket_fds(report, snap, pid) if e.status == MISMATCHED]  # type: ignore
    assert len(bad) == 4
