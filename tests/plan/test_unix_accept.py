"""An accepted unix connection whose client is outside the tree (socat UNIX-LISTEN:...,fork)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import criu_model
from criu_model.planner import Action, Severity, plan

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to dump a sibling")

# A listener; each accepted connection goes to a forked child (the parent closes its copy).
_SERVER = r"""
import os, socket, sys, time
lis = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
lis.bind(sys.argv[1]); lis.listen(4)
print("ready", flush=True)
conn, _ = lis.accept()
if os.fork() == 0:
    lis.close()
    print(conn.fileno(), flush=True)
    time.sleep(600)
conn.close()
time.sleep(600)
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[int, int, str, socket.socket]]:
    path = str(tmp_path / "srv.sock")
    proc = subprocess.Popen([sys.executable, "-c", _SERVER, path], stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # the client: outside the tree
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        client.connect(path)
        fd = int(proc.stdout.readline())
        time.sleep(0.1)
        yield proc.pid, fd, path, client
    finally:
        client.close()
        os.killpg(proc.pid, 9)
        proc.wait()


def test_accepted_connection_is_not_reconnected_to_the_trees_own_listener(
        served: tuple[int, int, str, socket.socket]) -> None:
    pid, fd, path, _client = served
    snap = criu_model.dump([pid])
    child = next(p.pid for p in snap.processes if p.pid != pid)
    p = plan(snap, live=False)
    file_id = next(f.file_id for f in snap.fds_by_pid[child].fds if f.fd == fd)
    step = next(s for s in p.steps if s.args.get("file") == file_id
                and s.action is Action.OPEN)
    assert "name" not in step.args and "accepted" in step.reason  # not a connect to itself
    warned = [x for x in p.problems if x.kind == "unix-peer-outside"]
    assert len(warned) == 1 and "accepted on " + path in warned[0].message
    live = plan(snap)
    in_use = [x for x in live.problems if x.kind == "unix-path-in-use"]
    assert [(x.severity, x.path) for x in in_use] == [(Severity.BLOCKER, path)]  # once


# A listener and a child that connects to it; nobody accepts: the child waits in the queue.
_WAITING = r"""
import os, socket, sys, time
lis = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
lis.bind(sys.argv[1]); lis.listen(4)
if os.fork() == 0:
    lis.close()
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(sys.argv[1])
    print(c.fileno(), flush=True)
    time.sleep(600)
time.sleep(600)
"""


def test_a_client_waiting_in_the_accept_queue_connects_again(tmp_path: Path) -> None:
    """Found by the rehearsal: it was planned as a plain unconnected socket."""
    path = str(tmp_path / "queue.sock")
    proc = subprocess.Popen([sys.executable, "-c", _WAITING, path], stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        fd = int(proc.stdout.readline())
        time.sleep(0.1)
        snap = criu_model.dump([proc.pid])
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()
    child = next(p.pid for p in snap.processes if p.pid != proc.pid)
    lis = next(s for s in snap.sockets if s.WhichOneof("kind") == "unix" and s.unix.pending)
    file_id = next(f.file_id for f in snap.fds_by_pid[child].fds if f.fd == fd)
    p = plan(snap, live=False)
    step = next(s for s in p.steps if s.args.get("file") == file_id
                and s.action is Action.OPEN)
    assert step.args["connect"] == path and step.args["listener"] == lis.inode
    assert "accept queue" in step.reason
    assert not [x for x in p.problems if x.kind in ("unix-peer-outside", "unix-connect-order")]
    # Without the listener's fd in the snapshot nothing listens: the connect cannot be planned.
    root = snap.fds_by_pid[proc.pid]
    keep = [f for f in root.fds if not (f.HasField("socket") and f.socket.inode == lis.inode)]
    assert len(keep) == len(root.fds) - 1
    del root.fds[:]
    root.fds.extend(keep)
    for cached in ("fds_by_pid", "sockets_by_inode"):
        snap.__dict__.pop(cached, None)
    broken = plan(snap, live=False)
    assert [x.pid for x in broken.problems if x.kind == "unix-connect-order"] == [child]
