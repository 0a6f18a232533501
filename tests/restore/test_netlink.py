"""Netlink sockets rehearsed from their netlink_diag description: bound to their portid
and groups, with their flags' options, connected to their default destination.

The sandbox has a network namespace of its own, so the dumped portids are free
there. A restorer that connects to another portid must be a mismatch.
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

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, set_tid)")

_PROGRAM = r"""
import json, os, signal, socket, sys
USERSOCK, SOL_NETLINK, NETLINK_PKTINFO = 2, 270, 3
base = 70000 + os.getpid() % 10000          # portids of our own (the host's netns)
a = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, USERSOCK)
a.bind((base, 0))                           # bound, unconnected
b = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, USERSOCK)
b.setsockopt(SOL_NETLINK, NETLINK_PKTINFO, 1)
b.bind((base + 1, 0))
b.connect((base, 0))                        # connected to a
c = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 0)   # NETLINK_ROUTE
c.bind((0, 1))                              # autobound, RTMGRP_LINK joined
c.connect((0, 1))                           # the kernel, group 1, by default
os.write(int(sys.argv[1]), (json.dumps({"pid": os.getpid(), "a": a.fileno(),
                                        "b": b.fileno(), "c": c.fileno(), "base": base})
                            + "\n").encode())
os.close(int(sys.argv[1]))
while True:
    signal.pause()
"""


@pytest.fixture(scope="module")
def netlink() -> Iterator[tuple[Snapshot, dict[str, Any]]]:
    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-c", _PROGRAM, str(w)], pass_fds=(w,),
                            stdin=subprocess.DEVNULL, start_new_session=True)
    os.close(w)
    try:
        with os.fdopen(r, "rb", buffering=0) as f:
            line = f.readline()
        assert line, "the program did not start"
        where = json.loads(line)
        snap = criu_model.dump([proc.pid])
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    yield snap, where


def _fd(report: RehearsalReport, pid: int, fd: int) -> Entry:
    return next(e for e in report.entries if e.kind == "fd" and e.id == f"{pid}:{fd}")


def test_netlink_sockets(netlink: tuple[Snapshot, dict[str, Any]]) -> None:
    snap, where = netlink
    pid = where["pid"]
    socks = {fd.fd: snap.sockets_by_inode[fd.socket.inode] for fd in snap.fds_by_pid[pid].fds
             if fd.HasField("socket")}
    b, c = socks[where["b"]].netlink, socks[where["c"]].netlink
    assert (b.portid, b.dst_portid, b.flags & 2) == (where["base"] + 1, where["base"], 2)
    assert (c.dst_group, list(c.groups)) == (1, [1])
    report = rehearsed(snap)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    for name in ("a", "b", "c"):
        assert _fd(report, pid, where[name]).status == MATCHED, name


def test_wrong_netlink_peer_is_a_mismatch(netlink: tuple[Snapshot, dict[str, Any]],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from criu_model.restore.executor import Conductor

    snap, where = netlink
    real = Conductor._socket

    def lying(self: Conductor, step: Any) -> dict[str, Any]:
        out = real(self, step)
        if out.get("netlink", {}).get("dst_portid"):
            out["netlink"]["dst_portid"] += 1          # the wrong peer
        return out

    monkeypatch.setattr(Conductor, "_socket", lying)
    report = rehearsed(snap)
    entry = _fd(report, where["pid"], where["b"])
    assert entry.status == MISMATCHED
    [sock] = entry.mismatches
    assert sock["expected"]["peer"] == f"{where['base']} group 0"
    assert sock["actual"]["peer"] == f"{where['base'] + 1} group 0"
    assert _fd(report, where["pid"], where["a"]).status == MATCHED
