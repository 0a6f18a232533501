"""Half-closed TCP connections rehearsed on the sandbox's loopback (restore/halfclose.py).

A program holds FIN-WAIT-2/CLOSE-WAIT from a real shutdown, and two ends whose peer
is a server outside the dumped tree (FIN-WAIT-2 and CLOSE-WAIT alone: a helper
plays the peer in the sandbox). The states a held-back FIN makes (FIN-WAIT-1,
LAST-ACK, CLOSING) are given to a snapshot of established pairs, since the host's
loopback does not keep them. The judge must find every socket in its dumped state;
a close sequence that shuts down the wrong end must be a mismatch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

import criu_model
from criu_model.restore import RehearsalReport
from criu_model.restore.judge import MATCHED, MISMATCHED, Entry
from criu_model.snapshot import Snapshot
from tests.restore.progtree import rehearsed

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, repair)")

_SERVER = r"""
import os, signal, socket, sys, time
lst = socket.socket()
lst.bind(("127.0.0.1", 0))
lst.listen(4)
os.write(int(sys.argv[1]), b"%d\n" % lst.getsockname()[1])
keep = [lst.accept()[0]]                 # E: the client shuts down, we do not
f = lst.accept()[0]                      # F: we shut down
f.shutdown(socket.SHUT_WR)
keep.append(f)
while True:
    signal.pause()
"""

_REPAIRED = r"""
import json, os, signal, socket, sys
TCP_REPAIR, TCP_REPAIR_QUEUE, TCP_QUEUE_SEQ = 19, 20, 21
def repaired(src, dst, snd, rcv):
    x = socket.socket()
    x.setsockopt(6, TCP_REPAIR, 1)
    x.setsockopt(6, TCP_REPAIR_QUEUE, 2); x.setsockopt(6, TCP_QUEUE_SEQ, snd)
    x.setsockopt(6, TCP_REPAIR_QUEUE, 1); x.setsockopt(6, TCP_QUEUE_SEQ, rcv)
    x.setsockopt(6, TCP_REPAIR_QUEUE, 0)
    x.bind(("127.0.0.1", src)); x.connect(("127.0.0.1", dst))
    return x
held = []
def port():                              # held until every pair is made: all distinct
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    held.append(s)
    return s.getsockname()[1]
out = {"pid": os.getpid()}
keep = []
for name in ("b", "c", "d"):             # established pairs, in repair mode: nothing sent
    p, q = port(), port()
    keep += [repaired(p, q, 1000, 5000), repaired(q, p, 5000, 1000)]
    out[name + "1"], out[name + "2"] = keep[-2].fileno(), keep[-1].fileno()
for s in held:
    s.close()
os.write(int(sys.argv[1]), (json.dumps(out) + "\n").encode())
os.close(int(sys.argv[1]))
while True:
    signal.pause()
"""

_REAL = r"""
import json, os, signal, socket, sys, time
lst = socket.socket(); lst.bind(("127.0.0.1", 0)); lst.listen(1)
a1 = socket.create_connection(lst.getsockname()); a2 = lst.accept()[0]; lst.close()
a1.shutdown(socket.SHUT_WR)                              # FIN-WAIT-2 / CLOSE-WAIT
server = int(sys.argv[2])                                # a peer outside the tree:
e = socket.create_connection(("127.0.0.1", server))      # FIN-WAIT-2 alone
e.shutdown(socket.SHUT_WR)
f = socket.create_connection(("127.0.0.1", server))      # CLOSE-WAIT alone
time.sleep(0.2)
os.write(int(sys.argv[1]), (json.dumps({"pid": os.getpid(), "a1": a1.fileno(),
                                        "a2": a2.fileno(), "e": e.fileno(),
                                        "f": f.fileno()}) + "\n").encode())
os.close(int(sys.argv[1]))
while True:
    signal.pause()
"""

REAL = {"a1": "FIN-WAIT-2", "a2": "CLOSE-WAIT", "e": "FIN-WAIT-2", "f": "CLOSE-WAIT"}
# The states a FIN held back makes: a snapshot of established pairs, given these states
# (a live program cannot hold them on the host's loopback: its FIN is retransmitted).
# (state, sk_shutdown: RCV 1 for a FIN received, SEND 2 for one sent)
EDITED = {"b1": (4, 2), "b2": (1, 0), "c1": (5, 2), "c2": (9, 3), "d1": (11, 3), "d2": (5, 2)}


def _start(code: str, *args: str) -> tuple[subprocess.Popen[bytes], bytes]:
    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-c", code, str(w), *args], pass_fds=(w,),
                            stdin=subprocess.DEVNULL, start_new_session=True)
    os.close(w)
    with os.fdopen(r, "rb", buffering=0) as f:
        return proc, f.readline()


def _dumped(code: str, *args: str) -> tuple[Snapshot, dict[str, Any]]:
    proc, line = _start(code, *args)
    try:
        assert line, "the program did not start"
        where = json.loads(line)
        return criu_model.dump([proc.pid]), where
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="module")
def real() -> Iterator[tuple[Snapshot, dict[str, Any]]]:
    server, line = _start(_SERVER)
    try:
        assert line, "the server did not start"
        yield _dumped(_REAL, line.decode().strip())
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def _state(snap: Snapshot, pid: int, fd: int) -> str:
    from criu_model.names import SOCKET_STATES

    inode = next(f.socket.inode for f in snap.fds_by_pid[pid].fds if f.fd == fd)
    return SOCKET_STATES[snap.sockets_by_inode[inode].state]


def _fd(report: RehearsalReport, pid: int, fd: int) -> Entry:
    return next(e for e in report.entries if e.kind == "fd" and e.id == f"{pid}:{fd}")


def test_half_closed_connections(real: tuple[Snapshot, dict[str, Any]]) -> None:
    snap, where = real
    pid = where["pid"]
    assert {name: _state(snap, pid, where[name]) for name in REAL} == REAL
    report = rehearsed(snap)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    for name in REAL:
        entry = _fd(report, pid, where[name])
        assert entry.status == MATCHED, (name, entry.to_json())


def test_states_of_a_held_back_fin() -> None:
    """FIN-WAIT-1/ESTABLISHED, FIN-WAIT-2/LAST-ACK and CLOSING/FIN-WAIT-2 reached for real
    in the sandbox (the FIN queued in repair mode), from a snapshot that says so."""
    snap, where = _dumped(_REPAIRED)
    pid = where["pid"]
    assert all(_state(snap, pid, where[name]) == "ESTABLISHED" for name in EDITED)
    for name, (state, shutdown) in EDITED.items():
        inode = next(f.socket.inode for f in snap.fds_by_pid[pid].fds if f.fd == where[name])
        snap.sockets_by_inode[inode].state = state
        snap.sockets_by_inode[inode].shutdown = shutdown
    assert _state(snap, pid, where["d1"]) == "CLOSING"
    report = rehearsed(snap)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    for name in EDITED:
        entry = _fd(report, pid, where[name])
        assert entry.status == MATCHED, (name, entry.to_json())


def test_wrong_end_shut_down_is_a_mismatch(real: tuple[Snapshot, dict[str, Any]],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A close sequence that shuts down the CLOSE-WAIT end instead: both states differ."""
    from criu_model.restore import halfclose

    snap, where = real
    pid = where["pid"]
    real_recipe = halfclose.pair_recipe

    def wrong(a: tuple[int, int], b: tuple[int, int]) -> Any:
        recipe, why = real_recipe(a, b)
        other = a[0] if a[1] == halfclose.CLOSE_WAIT else b[0]
        return [(act, other if act == halfclose.SHUTDOWN else inode, helper)
                for act, inode, helper in recipe], why

    monkeypatch.setattr(halfclose, "pair_recipe", wrong)
    report = rehearsed(snap)
    for name, got in (("a1", 8), ("a2", 5)):      # swapped: CLOSE-WAIT and FIN-WAIT-2
        entry = _fd(report, pid, where[name])
        assert entry.status == MISMATCHED
        [sock] = [m for m in entry.mismatches if m["field"] == "socket"]
        assert sock["actual"]["state"] == got
    assert _fd(report, pid, where["e"]).status == MATCHED     # alone: not a pair's recipe
