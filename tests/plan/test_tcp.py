"""TCP in the plan: listeners, established and half-closed connections, a pending connect."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

import criu_model
from criu_model.images.pb import files_pb2, inventory_pb2, process_pb2, sockets_pb2
from criu_model.planner import Action, Severity, Step, plan
from criu_model.snapshot import Snapshot

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to dump a sibling")

# A listener; an established loopback pair (both ends here); an accepted connection
# whose client closed (CLOSE-WAIT here). Prints the fds and the port, then sleeps.
_SERVER = r"""
import json, os, socket, sys, time
lis = socket.socket(); lis.bind(("127.0.0.1", 0)); lis.listen(4)
port = lis.getsockname()[1]
cli = socket.create_connection(("127.0.0.1", port)); srv, _ = lis.accept()
gone = socket.create_connection(("127.0.0.1", port)); half, _ = lis.accept()
mine = "0100007F:%04X" % port, "0100007F:%04X" % gone.getsockname()[1]
gone.close()
while True:   # until our side of that connection has seen the FIN: CLOSE-WAIT (08)
    rows = [l.split() for l in open("/proc/net/tcp").read().splitlines()[1:]]
    if any((r[1], r[2], r[3]) == (*mine, "08") for r in rows):
        break
    time.sleep(0.01)
print(json.dumps({"port": port, "lis": lis.fileno(), "cli": cli.fileno(),
                  "srv": srv.fileno(), "half": half.fileno()}), flush=True)
time.sleep(600)
"""


@pytest.fixture
def server() -> Iterator[tuple[int, dict[str, int]]]:
    proc = subprocess.Popen([sys.executable, "-c", _SERVER], stdout=subprocess.PIPE,
                            start_new_session=True)
    try:
        assert proc.stdout is not None
        yield proc.pid, json.loads(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait()


def _step(snap: Snapshot, steps: list[Step], pid: int, fd: int) -> Step:
    """The step that makes the open file `pid` holds at `fd`."""
    file_id = next(f.file_id for f in snap.fds_by_pid[pid].fds if f.fd == fd)
    return next(s for s in steps if s.actor == pid and s.args.get("file") == file_id
                and s.action in (Action.OPEN, Action.TCP_REPAIR))


def test_tcp_states_are_planned_as_the_kernel_restores_them(
        server: tuple[int, dict[str, int]]) -> None:
    pid, fds = server
    snap = criu_model.dump([pid])
    p = plan(snap, live=False)
    assert p.feasible, p.problems
    listen = _step(snap, p.steps, pid, fds["lis"])
    assert listen.action is Action.OPEN and "listen" in listen.reason
    assert listen.args["sport"] == fds["port"]
    for end in ("cli", "srv"):
        step = _step(snap, p.steps, pid, fds[end])
        assert step.action is Action.TCP_REPAIR and step.reason.startswith("established")
    half = _step(snap, p.steps, pid, fds["half"])
    assert half.action is Action.TCP_REPAIR and half.args["state"] == "CLOSE-WAIT"
    assert "shutdown()" in half.reason and half.args["sport"] == fds["port"]
    # the loopback pair has both ends here; the CLOSE-WAIT one's client has gone
    outside = [x for x in p.problems if x.kind == "tcp-peer-outside"]
    assert len(outside) == 1 and outside[0].severity is Severity.WARNING
    assert f"127.0.0.1:{fds['port']} ->" in outside[0].message
    # Live, while the server runs: its port and its pid collide.
    live = plan(snap)
    kinds = {(x.kind, x.port) for x in live.problems if x.severity is Severity.BLOCKER}
    assert ("port-in-use", fds["port"]) in kinds
    assert any(x.kind == "pid-in-use" and x.pid == pid for x in live.problems)


def test_a_pending_connect_is_retried_with_a_warning() -> None:
    proc = process_pb2.Process(pid=100, ppid=1, pgid=100, sid=100, ns_pids=[100],
                               ns_pgids=[100], ns_sids=[100], state="S")
    proc.threads.add(tid=100, ns_tids=[100])
    sock = sockets_pb2.Socket(inode=77, family=sockets_pb2.FAMILY_INET, type=1, state=2,
                              inet=sockets_pb2.InetSocket(src="10.0.0.1", sport=40000,
                                                          dst="10.0.0.2", dport=80,
                                                          protocol=6))
    fd = files_pb2.Fd(fd=3, file_id=1, kind=files_pb2.FD_SOCKET,
                      socket=files_pb2.SocketRef(inode=77))
    snap = Snapshot(inventory=inventory_pb2.Inventory(root_pids=[100]), processes=[proc],
                    fds=[files_pb2.FdTable(pid=100, fds=[fd])], sockets=[sock])
    p = plan(snap, live=False)
    assert p.feasible, p.problems
    step = _step(snap, p.steps, 100, 3)
    assert step.action is Action.OPEN and "connect() again" in step.reason
    warned = [x for x in p.problems if x.kind == "tcp-handshake-restarts"]
    assert len(warned) == 1 and warned[0].port == 40000 and "10.0.0.2:80" in warned[0].message


def test_a_time_wait_leftover_is_told_from_a_live_listener(
        server: tuple[int, dict[str, int]]) -> None:
    """port-in-use came from a TIME-WAIT leftover with nothing holding the port."""
    import socket
    import time

    pid, fds = server
    snap = criu_model.dump([pid])
    # a port whose only user is a connection we close first (ours: TIME-WAIT is ours)
    lis = socket.socket()
    lis.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lis.bind(("127.0.0.1", 0))
    lis.listen(1)
    port = lis.getsockname()[1]
    cli = socket.create_connection(("127.0.0.1", port))
    srv, _ = lis.accept()
    srv.close()      # the server side closes first: its end goes to TIME-WAIT
    time.sleep(0.05)
    cli.close()
    lis.close()
    time.sleep(0.05)
    tw = next(s for s in snap.sockets if s.inet.sport == fds["port"] and s.state == 10)
    tw.inet.sport = port  # the snapshot's listener now wants that port
    live = plan(snap)
    problems = {(x.kind, x.severity) for x in live.problems if x.port == port}
    assert ("port-time-wait", Severity.WARNING) in problems
    assert ("port-in-use", Severity.BLOCKER) not in problems
    # while the server runs, its own listener's port stays a blocker
    assert any(x.kind == "port-in-use" and x.port == fds["port"] for x in live.problems)
