"""Connected UDP sockets (found rehearsing ZDTM socket_udp, socket6_udp).

A UDP socket that called connect() is ESTABLISHED with a default destination; it was
reported as an inet socket state the rehearsal did not know. It is bound and
connected again on the sandbox's loopback; other addresses are refused with the
reason.
"""

from __future__ import annotations

import os

import pytest

import criu_model
from criu_model.restore import executor, rehearse
from criu_model.restore.judge import MATCHED, MISMATCHED
from criu_model.restore.sandbox import wait_gone
from tests.restore.progtree import dump_program

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, set_tid)")

_PROGRAM = """
import os, signal, socket, sys
ready = int(sys.argv[1])
keep = []
for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    a = socket.socket(family, socket.SOCK_DGRAM)
    a.bind((host, 0))
    b = socket.socket(family, socket.SOCK_DGRAM)
    b.bind((host, 0))
    a.connect(b.getsockname()[:2])               # a -> b, b unconnected
    keep += [a, b]
    c = socket.socket(family, socket.SOCK_DGRAM)
    c.bind((host, 0))
    c.connect(b.getsockname()[:2])
    c.shutdown(socket.SHUT_WR)                   # a connected one that stopped sending
    keep.append(c)
for s in keep:
    os.set_inheritable(s.detach(), True)
os.write(ready, b"ready")
os.close(ready)
signal.pause()
"""


def test_connected_udp_is_rehearsed(monkeypatch: pytest.MonkeyPatch) -> None:
    snap, pid, _ = dump_program(_PROGRAM)
    assert sum(s.state == 1 for s in snap.sockets) == 4
    assert sorted(s.shutdown for s in snap.sockets if s.shutdown) == [2, 2]
    report = rehearse(snap, criu_model.plan(snap, live=False, pid_ns="new"))
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    held = {f"{pid}:{f.fd}" for f in snap.fds_by_pid[pid].fds if f.HasField("socket")}
    fds = [e for e in report.entries if e.kind == "fd" and e.id in held]
    assert len(fds) == 6 and all(e.status == MATCHED for e in fds)
    # a restorer that forgets the connect(): both connected sockets are mismatches
    wire = executor.Conductor._socket

    def unconnected(self: executor.Conductor, step: object) -> dict[str, object]:
        out = wire(self, step)   # type: ignore[arg-type]
        out.pop("connect_inet", None)
        return out

    monkeypatch.setattr(executor.Conductor, "_socket", unconnected)
    report = rehearse(snap, criu_model.plan(snap, live=False, pid_ns="new"))
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    bad = [e for e in report.entries if e.kind == "fd" and e.id in held
           and e.status == MISMATCHED]
    assert len(bad) == 4
