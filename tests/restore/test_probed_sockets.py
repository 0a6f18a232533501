"""Rehearsal of sockets sock_diag does not list, made again from their getsockopt probe.

The holder runs in a network namespace of its own (so its ping_group_range is set
there, never on the host's): unbound TCP with options, a TCP socket bound to a
port (on any address) and never listening, unbound UDP with IP_TTL, an ICMP ping socket,
a raw socket and an unbound netlink socket. The sandbox makes each (its own
netns: the port is bound there), and the judge holds the sandbox's own probe of
each against the snapshot's. A restorer losing an option is a mismatch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import criu_model
from criu_model.collect.sockprobe import receive_is_harmless
from criu_model.restore import executor
from criu_model.restore.judge import MATCHED, MISMATCHED, NOT_REHEARSED
from criu_model.snapshot import Snapshot
from tests.restore.progtree import rehearsed
from tests.restore.test_state import _by, _program

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, raw)")

_SOCKETS = """
import ctypes, socket
assert ctypes.CDLL(None, use_errno=True).unshare(0x40000000) == 0   # CLONE_NEWNET
with open("/proc/sys/net/ipv4/ping_group_range", "w") as f:          # this netns only
    f.write("0 0")
S, T = socket.SOL_SOCKET, socket.IPPROTO_TCP
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)                # unbound TCP
t.setsockopt(S, socket.SO_REUSEADDR, 1)
t.setsockopt(T, socket.TCP_NODELAY, 1)
t.setsockopt(S, socket.SO_LINGER, (1).to_bytes(4, "little") + (5).to_bytes(4, "little"))
t.setsockopt(S, socket.SO_RCVBUF, 65536)
t.setsockopt(T, socket.TCP_KEEPIDLE, 30)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)                 # unbound UDP
u.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 7)
i = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)   # ping
r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)      # raw
r.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x10)
n = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
t6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)              # unbound TCP6
t6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
b = socket.socket(socket.AF_INET, socket.SOCK_STREAM)                # bound, no listen
b.bind(("0.0.0.0", 0))
made = [t, u, i, r, n, t6, b]
for s in made:
    os.set_inheritable(s.fileno(), True)
ready()
signal.pause()
"""

_NAMES = ("tcp", "udp", "icmp", "raw", "netlink", "tcp6", "bound")


@pytest.fixture
def probed(tmp_path: Path) -> Iterator[tuple[Snapshot, int, dict[str, int]]]:
    if not receive_is_harmless()[0]:
        pytest.skip(receive_is_harmless()[1])
    with _program(_SOCKETS, tmp_path) as proc:
        snap = criu_model.dump([proc.pid])
    fds = [fd for fd in snap.fds_by_pid[proc.pid].fds if fd.HasField("socket")]
    assert len(fds) == len(_NAMES)
    for fd in fds:   # none in sock_diag: each known by its probe only
        assert fd.socket.inode not in snap.sockets_by_inode and fd.socket.HasField("probe")
    yield snap, proc.pid, dict(zip(_NAMES, (fd.fd for fd in fds), strict=True))


def test_probed_sockets_are_made_again(probed: tuple[Snapshot, int, dict[str, int]]) -> None:
    snap, pid, fds = probed
    report = rehearsed(snap)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    for name, fd in fds.items():
        assert _by(report, "fd", f"{pid}:{fd}").status == MATCHED, name
    probes = {fd.fd: fd.socket.probe for fd in snap.fds_by_pid[pid].fds}
    assert probes[fds["tcp"]].options["TCP_KEEPIDLE"] == 30
    assert probes[fds["udp"]].options["IP_TTL"] == 7
    assert probes[fds["raw"]].options["IP_TOS"] == 0x10
    assert probes[fds["bound"]].sport > 0       # bound again to its port, in the sandbox
    plan = criu_model.plan(snap, live=False, pid_ns="new")
    step = next(s for s in plan.steps if s.action == "open" and s.args.get("fd") == fds["bound"])
    assert step.args["sport"] == probes[fds["bound"]].sport


def test_a_lost_option_is_caught(probed: tuple[Snapshot, int, dict[str, int]],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A restorer that forgets IP_TTL on the UDP socket: the sandbox's probe reads 64."""
    snap, pid, fds = probed
    real = executor.probe_wire

    def forgetful(step: Any, probe: Any) -> dict[str, Any]:
        out = real(step, probe)
        out["options"] = [o for o in out["options"] if o[:2] != [0, 2]]   # IP_TTL
        return out

    monkeypatch.setattr(executor, "probe_wire", forgetful)
    entry = _by(rehearsed(snap), "fd", f"{pid}:{fds['udp']}")
    assert entry.status == MISMATCHED
    assert entry.mismatches == [{"field": "socket.options", "expected": {"IP_TTL": 7},
                                 "actual": {"IP_TTL": 64}}]


def test_a_host_address_is_not_bound(probed: tuple[Snapshot, int, dict[str, int]]) -> None:
    """A probe bound to an address that is not the sandbox's: not rehearsed, not bound."""
    snap, pid, fds = probed
    plan = criu_model.plan(snap, live=False, pid_ns="new")
    step = next(s for s in plan.steps if s.action == "open" and s.args.get("fd") == fds["udp"])
    step.args.update(src="192.0.2.7", sport=4000)
    from criu_model.restore import rehearse
    from criu_model.restore.sandbox import wait_gone

    report = rehearse(snap, plan)
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    entry = _by(report, "fd", f"{pid}:{fds['udp']}")
    assert entry.status == NOT_REHEARSED
    assert entry.reason == "192.0.2.7 is not an address of the sandbox's loopback"


def test_probed_queues_are_judged(probed: tuple[Snapshot, int, dict[str, int]],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The queue counts of a probed TCP or raw socket: empty in the snapshot, so empty in
    the sandbox (matched); a sandbox whose dump reads queued bytes is a mismatch, and a
    snapshot whose queue holds bytes it could only count is not rehearsed."""
    from criu_model import dumper

    snap, pid, fds = probed
    report = rehearsed(snap)
    for name in ("tcp", "raw", "tcp6", "bound"):
        assert _by(report, "socket_queue", f"{pid}:{fds[name]}").status == MATCHED, name
    assert not [e for e in report.entries if e.kind == "socket_queue"
                and e.id == f"{pid}:{fds['udp']}"]      # UDP's SIOCINQ is not read
    real = dumper.dump

    def wrong(*args: Any, **kwargs: Any) -> Snapshot:   # the sandbox's dump says 3 bytes
        parked = real(*args, **kwargs)
        for table in parked.fds:
            for fd in table.fds:
                if fd.HasField("socket") and fd.socket.probe.HasField("rqueue"):
                    fd.socket.probe.rqueue = 3
        return parked

    monkeypatch.setattr(dumper, "dump", wrong)
    raw_fd = next(fd for fd in snap.fds_by_pid[pid].fds if fd.fd == fds["raw"])
    raw_fd.socket.probe.wqueue = 40                        # counted at the dump, not captured
    report = rehearsed(snap)
    entry = _by(report, "socket_queue", f"{pid}:{fds['tcp']}")
    assert entry.status == MISMATCHED
    assert entry.mismatches == [{"field": "queues", "expected": {"rqueue": 0, "wqueue": 0},
                                 "actual": {"rqueue": 3, "wqueue": 0}}]
    raw = _by(report, "socket_queue", f"{pid}:{fds['raw']}")
    assert raw.status == NOT_REHEARSED and "wqueue 40" in raw.reason
