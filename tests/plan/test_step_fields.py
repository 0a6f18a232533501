"""The steps carry what the system calls take: a pipe's ends and capacity, a
socketpair's type, a probed socket's numeric domain and its options as level and
number (restore/ reads them from the step, not from the snapshot).

A live program holds each; its plan must say so, the simulator must verify it,
and the rehearsal (which executes exactly these fields) must match.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import criu_model
from criu_model.planner import RESTORER, Action, Step, plan
from criu_model.planner.check import compare
from criu_model.planner.simulate import simulate
from criu_model.snapshot import Snapshot
from tests.restore.progtree import rehearsed
from tests.restore.test_state import _program

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (fdinfo, namespaces)")

_HOLDER = """
import socket
r, w = os.pipe2(os.O_NONBLOCK)                     # 3, 4: both ends, 8 pages
fcntl.fcntl(w, 1031, 8 * 4096)
fcntl.fcntl(r, fcntl.F_SETFL, 0)                   # the read end blocking again
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)    # 5, 6
lone, gone = os.pipe()                             # 7: one end only, 2 pages
fcntl.fcntl(lone, 1031, 2 * 4096)
os.close(gone)
t = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)   # 8: unbound, so a probe
t.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
t.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, (1).to_bytes(4, "little")
             + (9).to_bytes(4, "little"))
for fd in (r, w, a.fileno(), b.fileno(), lone, t.fileno()):
    os.set_inheritable(fd, True)
ready()
signal.pause()
"""


@pytest.fixture
def held(tmp_path: Path) -> Iterator[tuple[Snapshot, int]]:
    with _program(_HOLDER, tmp_path) as proc:
        yield criu_model.dump([proc.pid]), proc.pid


def _step(steps: list[Step], pid: int, action: Action, fd: int) -> dict[str, Any]:
    found = [s.args for s in steps if s.actor == pid and s.action is action
             and fd in (s.args.get("fds") or [s.args.get("fd")])]
    assert len(found) == 1, (action, fd, found)
    return found[0]


def _final(steps: list[Step], pid: int, service: int) -> int:
    """The dumped number a service fd is moved to (its dup2)."""
    return next(s.args["new"] for s in steps if s.actor == pid and s.action is Action.DUP2
                and s.args["old"] == service)


def test_steps_carry_what_the_calls_take(held: tuple[Snapshot, int]) -> None:
    snap, pid = held
    assert compare(snap, simulate(plan(snap, live=False).steps), RESTORER, 0) == []
    p = plan(snap, live=False, pid_ns="new")
    pipe = next(s.args for s in p.steps if s.action is Action.PIPE)
    ends = dict(zip((_final(p.steps, pid, fd) for fd in pipe["fds"]), pipe["ends"],
                    strict=True))
    assert pipe["pipe_size"] == 8 * 4096
    assert ends[3] == {"flags": ends[3]["flags"], "read_end": True}
    assert ends[3]["flags"] & os.O_NONBLOCK == 0 and ends[4]["flags"] & os.O_NONBLOCK
    assert ends[4]["read_end"] is False
    pair = next(s.args for s in p.steps if s.action is Action.SOCKETPAIR)
    assert pair["type"] == socket.SOCK_SEQPACKET and len(pair["ends"]) == 2
    lone = next(s.args for s in p.steps if s.action is Action.OPEN
                and s.args.get("kind") == "pipe" and s.actor == pid
                and s.args.get("pipe_size") is not None and s.args["flags"] & 3 == 0)
    assert lone["pipe_size"] == 2 * 4096
    report = rehearsed(snap)
    assert [e.to_json() for e in report.entries if e.status == "mismatched"] == []


def test_probe_steps_carry_domain_and_option_numbers(held: tuple[Snapshot, int]) -> None:
    from criu_model.collect.sockprobe import receive_is_harmless

    if not receive_is_harmless()[0]:      # then fd 8 is not probed
        pytest.skip(receive_is_harmless()[1])
    snap, _pid = held
    p = plan(snap, live=False, pid_ns="new")
    probe = next(s.args for s in p.steps if s.action is Action.OPEN
                 and s.args.get("kind") == "socket")
    assert (probe["domain"], probe["type"], probe["protocol"]) == \
        (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    assert [socket.IPPROTO_TCP, socket.TCP_NODELAY, 1] in probe["setsockopt"]
    assert probe["linger"] == [1, 9]
    assert "unknown_options" not in probe
    report = rehearsed(snap)
    assert [e.to_json() for e in report.entries if e.status == "mismatched"] == []


def test_the_rehearsal_executes_the_step(held: tuple[Snapshot, int]) -> None:
    """The executor takes the step's word: a step with another capacity and type (a
    planner bug) is what the sandbox gets, and the judge says so."""
    snap, pid = held
    p = plan(snap, live=False, pid_ns="new")
    next(s for s in p.steps if s.action is Action.PIPE).args["pipe_size"] = 16 * 4096
    next(s for s in p.steps if s.action is Action.SOCKETPAIR).args["type"] = \
        socket.SOCK_STREAM
    from criu_model.restore import rehearse
    from criu_model.restore.sandbox import wait_gone

    report = rehearse(snap, p)
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    bad = {e.id: e.mismatches for e in report.entries if e.status == "mismatched"}
    assert bad[f"{pid}:3,{pid}:4"] == [{"field": "pipe_size", "expected": 8 * 4096,
                                        "actual": 16 * 4096}]
    for fd in (5, 6):
        [sock] = bad[f"{pid}:{fd}"]
        assert (sock["expected"]["type"], sock["actual"]["type"]) == \
            (socket.SOCK_SEQPACKET, socket.SOCK_STREAM)
