"""Unix sockets connected to a peer no fd of the snapshot holds, rehearsed for real.

A server outside the dumped tree (started by the test, not a child of the program)
holds the peers of a stream client and of a named datagram client; datagram
sockets of the tree are connected one way to others of the tree's, by name (one
to a child's, which the plan makes later: connected once the skeleton stands). In the
sandbox the outside peers are the other ends of socketpairs held by criu-model
(outside the sandbox's processes, as the originals were); the one-way connect is
a connect(2) to the name. A restorer that leaves the clients unconnected must be
a mismatch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import criu_model
from criu_model.restore import RehearsalReport
from criu_model.restore.judge import MATCHED, MISMATCHED, Entry
from criu_model.snapshot import Snapshot
from tests.restore.progtree import rehearsed

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, set_tid)")

_SERVER = r"""
import os, signal, socket, sys
d = sys.argv[1]
lst = socket.socket(socket.AF_UNIX); lst.bind(d + "/srv"); lst.listen(4)
dg = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); dg.bind(d + "/srv.dgram")
os.write(1, b"up\n")
keep = [lst.accept()[0]]
signal.pause()
"""

_CLIENT = r"""
import json, os, signal, socket, sys, time
d = sys.argv[2]
c = socket.socket(socket.AF_UNIX); c.connect(d + "/srv")          # stream, unnamed
g = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)               # datagram, named
g.bind(d + "/me.dgram"); g.connect(d + "/srv.dgram")
t = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); t.bind(d + "/target")
o = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); o.connect(d + "/target")   # one way
r, w = os.pipe()
if os.fork() == 0:                          # a target made by a child the plan makes later
    os.close(r)
    lt = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); lt.bind(d + "/late")
    os.close(w)
    signal.pause()
os.close(w)
os.read(r, 1)                               # EOF: the child bound it
os.close(r)
late = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); late.connect(d + "/late")
time.sleep(0.1)
os.write(int(sys.argv[1]), (json.dumps({"pid": os.getpid(), "c": c.fileno(),
                                        "g": g.fileno(), "t": t.fileno(),
                                        "o": o.fileno(), "late": late.fileno()})
                            + "\n").encode())
os.close(int(sys.argv[1]))
while True:
    signal.pause()
"""


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[Snapshot, dict[str, Any]]]:
    d = tmp_path_factory.mktemp("peers")
    server = subprocess.Popen([sys.executable, "-c", _SERVER, str(d)], stdout=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        assert server.stdout is not None and server.stdout.readline() == b"up\n"
        r, w = os.pipe()
        proc = subprocess.Popen([sys.executable, "-c", _CLIENT, str(w), str(d)],
                                pass_fds=(w,), stdin=subprocess.DEVNULL,
                                start_new_session=True)
        os.close(w)
        try:
            with os.fdopen(r, "rb", buffering=0) as f:
                line = f.readline()
            assert line, "the client did not start"
            where = json.loads(line)
            snap = criu_model.dump([proc.pid])
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    yield snap, where


def _by(report: RehearsalReport, kind: str, ident: str) -> Entry:
    return next(e for e in report.entries if e.kind == kind and e.id == ident)


def test_unix_peers_outside_and_one_way(peers: tuple[Snapshot, dict[str, Any]]) -> None:
    snap, where = peers
    pid = where["pid"]
    socks = {fd.fd: snap.sockets_by_inode[fd.socket.inode] for fd in snap.fds_by_pid[pid].fds
             if fd.HasField("socket")}
    for name in ("c", "g", "o"):
        peer = socks[where[name]].unix.peer_inode
        assert peer and (peer == socks[where["t"]].inode) == (name == "o")
    report = rehearsed(snap)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    for name in ("c", "g", "t", "o", "late"):
        assert _by(report, "fd", f"{pid}:{where[name]}").status == MATCHED, name
    for name in ("c", "g"):  # alone here too: no fd of the sandbox is its peer
        [group] = [e for e in report.entries if e.kind == "socketpair"
                   and f"{pid}:{where[name]}" in e.id.split(",")]    # (the child's copy too)
        assert group.status == MATCHED, name
    for name in ("o", "late"):  # one way to a socket of the tree: that one is its peer here
        [peer] = [e for e in report.entries if e.kind == "socket_peer"
                  and e.id.startswith(f"{pid}:{where[name]} -> ")]
        assert peer.status == MATCHED, name
    child = next(p.pid for p in snap.processes if p.ppid == pid)
    assert [e.status for e in report.entries if e.kind == "fd"
            and e.id.startswith(f"{child}:")] == [MATCHED] * len(snap.fds_by_pid[child].fds)


def test_unconnected_stand_ins_are_a_mismatch(peers: tuple[Snapshot, dict[str, Any]],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from criu_model.restore.executor import Conductor

    snap, where = peers
    real = Conductor._socket

    def unconnected(self: Conductor, step: Any) -> dict[str, Any]:
        out = real(self, step)
        out.pop("peer_outside", None)
        out.pop("connect_hex", None)
        self._late_connects.clear()
        return out

    monkeypatch.setattr(Conductor, "_socket", unconnected)
    report = rehearsed(snap)
    for name in ("c", "g", "o", "late"):
        entry = _by(report, "fd", f"{where['pid']}:{where[name]}")
        assert entry.status == MISMATCHED, name
        [sock] = entry.mismatches
        assert (sock["expected"]["state"], sock["actual"]["state"]) == (1, 7)


_NESTED = """
import socket
log = os.open(os.path.join(sys.argv[1], "x.log"), os.O_WRONLY | os.O_CREAT)   # 3
os.mkdir(os.path.join(sys.argv[1], "sub"))
lst = socket.socket(socket.AF_UNIX)                                          # 4
lst.bind(os.path.join(sys.argv[1], "sub", "listen.sock"))
lst.listen(2)
for fd in (log, lst.fileno()):
    os.set_inheritable(fd, True)
ready()
signal.pause()
"""


def test_socket_below_a_scratch_directory(tmp_path: Path) -> None:
    """A listener in a directory below one the scratch tmpfs covers (for a file opened
    for writing): its directory is made there too (bind failed with ENOENT before)."""
    from tests.restore.test_state import _program

    with _program(_NESTED, tmp_path) as proc:
        snap = criu_model.dump([proc.pid])
    report = rehearsed(snap)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    assert _by(report, "fd", f"{proc.pid}:4").status == MATCHED
