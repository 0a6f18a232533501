"""Unix connections the plan once made wrong (found rehearsing ZDTM sockets00,
sockets_dgram, socket_dgram_data and scm09).

- A connection accepted on a listener of the tree, both ends in the tree: the server
  end carries the listener's name, which no socketpair end can bind while the
  listener holds it (the bind made the listener's own bind fail). It is made as it
  was: connect() to the listener, accept().
- Datagram sockets connect many to one (and to themselves): not pairs. Each connects
  to its peer by name once the peer is bound; the peer is ESTABLISHED because of
  them; the judge checks each one's peer (`socket_peer`).
- A datagram socket whose peer is gone is the kept end of a half-closed socketpair.
"""

from __future__ import annotations

import os
import socket
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
import os, signal, socket, sys
d, ready = sys.argv[1], int(sys.argv[2])
keep = []
lsn = socket.socket(socket.AF_UNIX)
lsn.bind(os.path.join(d, "lsn"))
lsn.listen(4)
client = socket.socket(socket.AF_UNIX)
client.connect(os.path.join(d, "lsn"))
server, _ = lsn.accept()                          # named after the listener
shy = socket.socket(socket.AF_UNIX)
shy.shutdown(socket.SHUT_RD)                      # before connect(): its peer keeps SEND
shy.connect(os.path.join(d, "lsn"))
shy_server, _ = lsn.accept()
shy_server.shutdown(socket.SHUT_WR)               # and the server end stops sending
quiet = socket.socket(socket.AF_UNIX)
quiet.shutdown(socket.SHUT_RD)                    # ZDTM sockets03: RD here, nothing there
quiet.connect(os.path.join(d, "lsn"))
quiet_server, _ = lsn.accept()
srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
srv.bind(os.path.join(d, "dgram"))
c1 = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
c1.connect(os.path.join(d, "dgram"))              # two clients of one datagram socket
c2 = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
c2.connect(os.path.join(d, "dgram"))
me = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
me.bind(os.path.join(d, "me"))
me.connect(os.path.join(d, "me"))                 # connected to itself
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
b.close()                                         # a datagram socket whose peer is gone
for s in (lsn, client, server, shy, shy_server, quiet, quiet_server, srv, c1, c2, me, a):
    os.set_inheritable(s.detach(), True)
os.write(ready, b"ready")
os.close(ready)
signal.pause()
"""


@pytest.fixture(scope="module")
def connected(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Snapshot, int]]:
    work: Path = tmp_path_factory.mktemp("unix-connections")
    snap, pid, _ = dump_program(_PROGRAM, str(work))
    yield snap, pid


def test_connections_are_made_as_they_were(connected: tuple[Snapshot, int]) -> None:
    snap, pid = connected
    plan = criu_model.plan(snap, live=False, pid_ns="new")
    assert sum(s.action is Action.ACCEPT for s in plan.steps) == 3
    assert sorted(s.shutdown for s in snap.sockets if s.shutdown) == [1, 1, 2]
    assert sum(bool(s.args.get("shutdown_first")) for s in plan.steps) == 1
    assert sum(bool(s.args.get("connect_self")) for s in plan.steps) == 1
    report = rehearse(snap, plan)
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    sockets = {f.fd for f in snap.fds_by_pid[pid].fds if f.HasField("socket")}
    fds = [e for e in report.entries if e.kind == "fd" and e.id.startswith(f"{pid}:")
           and int(e.id.split(":")[1]) in sockets]
    assert len(fds) == 12 and all(e.status == MATCHED for e in fds)
    peers = [e for e in report.entries if e.kind == "socket_peer"]
    assert len(peers) == 3 and all(e.status == MATCHED for e in peers)   # c1, c2, me
    pairs = [e for e in report.entries if e.kind == "socketpair"]
    assert len(pairs) == 3 and all(e.status == MATCHED for e in pairs)    # client/server


def test_a_wrong_peer_is_caught(connected: tuple[Snapshot, int]) -> None:
    """A planner bug: the self-connected socket connects to the datagram server."""
    snap, _pid = connected
    plan = criu_model.plan(snap, live=False, pid_ns="new")
    srv = next(s for s in snap.sockets if s.type == socket.SOCK_DGRAM and s.state == 1
               and not s.unix.peer_inode and s.unix.name)
    step = next(s for s in plan.steps if s.args.get("connect_self"))
    del step.args["connect_self"]
    step.args.update(listener=srv.inode, connect=srv.unix.name.decode())
    report = rehearse(snap, plan)
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    bad = [e for e in report.entries if e.kind == "socket_peer" and e.status == MISMATCHED]
    assert len(bad) == 1 and bad[0].id.split(" -> ")[0] == bad[0].id.split(" -> ")[1]
