"""Sockets sock_diag does not report (ZDTM socket-tcp-unconn, sock_opts, socket-raw, sk-netlink).

Unbound TCP/UDP over IPv4/IPv6, a bound-only TCP socket, a raw socket and an
unbound netlink socket are identified by read-only queries on a pidfd_getfd
copy; their options are recorded as the holder reads them itself, nothing of
them changes, and the plan recreates them. An unidentified socket is a blocker.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import criu_model
from criu_model.collect.sockprobe import receive_is_harmless
from criu_model.planner import Action, plan

CHILD = r"""
import json, os, socket, sys, time
S, T, IP6 = socket.SOL_SOCKET, socket.IPPROTO_TCP, socket.IPPROTO_IPV6
made = {}
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
t.setsockopt(S, socket.SO_REUSEADDR, 1)
t.setsockopt(T, socket.TCP_NODELAY, 1)
t.setsockopt(S, socket.SO_LINGER, (1).to_bytes(4, "little") + (5).to_bytes(4, "little"))
t.setsockopt(S, socket.SO_RCVBUF, 65536)
made["tcp"] = t
t6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
t6.setsockopt(IP6, socket.IPV6_V6ONLY, 1)
t6.setsockopt(S, socket.SO_KEEPALIVE, 1)
made["tcp6"] = t6
b = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
b.bind(("127.0.0.1", 0))  # bound, never listening nor connected
made["bound"] = b
made["udp"] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u6.setsockopt(IP6, socket.IPV6_UNICAST_HOPS, 7)
made["udp6"] = u6
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
raw.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x10)
made["raw"] = raw
made["netlink"] = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
try:
    made["icmp"] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
except PermissionError:
    pass  # net.ipv4.ping_group_range excludes us

def state():
    out = {}
    for name, s in made.items():
        flags = [l for l in open(f"/proc/self/fdinfo/{s.fileno()}") if l.startswith("flags")]
        out[name] = {"fd": s.fileno(), "flags": flags[0].split()[1],
                     "rcvbuf": s.getsockopt(S, socket.SO_RCVBUF),
                     "reuseaddr": s.getsockopt(S, socket.SO_REUSEADDR),
                     "name": list(s.getsockname()) if s.family != socket.AF_NETLINK else None}
    return out

print(json.dumps(state()), flush=True)
sys.stdin.readline()
print(json.dumps(state()), flush=True)
time.sleep(60)
"""

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="raw sockets and freezing need root")


@pytest.fixture
def holder() -> Iterator[tuple[subprocess.Popen[str], dict[str, dict[str, object]]]]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        built = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
        time.sleep(0.05)
        yield proc, built
    finally:
        proc.kill()
        proc.wait()


def test_sockets_outside_sock_diag_are_identified_and_planned(
        holder: tuple[subprocess.Popen[str], dict[str, dict[str, object]]]) -> None:
    if not receive_is_harmless()[0]:
        pytest.skip(receive_is_harmless()[1])
    proc, built = holder
    snap = criu_model.dump([proc.pid])
    fds = {f.fd: f for f in snap.fds_by_pid[proc.pid].fds}
    probes = {}
    for name, info in built.items():
        fd = fds[int(info["fd"])]  # type: ignore[call-overload]
        assert fd.socket.inode not in snap.sockets_by_inode, name  # sock_diag does not list it
        assert fd.socket.HasField("probe"), (name, fd.unreadable)
        assert not [u for u in fd.unreadable if u.field in ("owner", "socket.probe")]
        probes[name] = fd.socket.probe
    want = {"tcp": (2, 1, 6), "tcp6": (10, 1, 6), "bound": (2, 1, 6), "udp": (2, 2, 17),
            "udp6": (10, 2, 17), "raw": (2, 3, 17), "netlink": (16, 3, 0), "icmp": (2, 2, 1)}
    for name, probe in probes.items():
        assert (probe.domain, probe.type, probe.protocol) == want[name], name
        assert probe.options["SO_RCVBUF"] == built[name]["rcvbuf"], name
        assert probe.options["SO_REUSEADDR"] == built[name]["reuseaddr"], name
        assert not probe.listening and not probe.dst, name
    tcp = probes["tcp"]
    assert tcp.tcp_state == 7 and tcp.options["TCP_NODELAY"] == 1
    assert (tcp.options["SO_LINGER.onoff"], tcp.options["SO_LINGER.linger"]) == (1, 5)
    assert probes["tcp6"].options["IPV6_V6ONLY"] == 1 and probes["tcp6"].options["SO_KEEPALIVE"]
    assert [probes["bound"].src, probes["bound"].sport] == built["bound"]["name"]
    assert probes["udp6"].options["IPV6_UNICAST_HOPS"] == 7
    assert probes["raw"].options["IP_TOS"] == 0x10
    assert probes["netlink"].src == "groups 0" and probes["netlink"].sport == 0
    # nothing of the sockets changed: flags (O_NONBLOCK...), buffers, names
    proc.stdin.write("\n")  # type: ignore[union-attr]
    proc.stdin.flush()  # type: ignore[union-attr]
    assert json.loads(proc.stdout.readline()) == built  # type: ignore[union-attr]

    p = plan(snap, live=False)
    assert p.feasible, [x.message for x in p.problems if x.severity == "blocker"]
    opens = {s.args["fd"]: s for s in p.steps if s.action is Action.OPEN and s.actor == proc.pid}
    for name, info in built.items():
        step = opens[int(info["fd"])]  # type: ignore[call-overload]
        assert (step.args["type"], step.args["protocol"]) == want[name][1:], name
        assert "identified by getsockopt" in step.reason
    bound = opens[int(built["bound"]["fd"])]  # type: ignore[call-overload]
    assert (bound.args["src"], bound.args["sport"]) == tuple(built["bound"]["name"])
    assert "bind" not in opens[int(built["tcp"]["fd"])].reason  # type: ignore[call-overload]
    assert "bind" not in opens[int(built["raw"]["fd"])].reason  # type: ignore[call-overload]

    # without the probe (receiving the socket was not safe) it is a blocker, never feasible
    fd = fds[int(built["udp"]["fd"])]  # type: ignore[call-overload]
    fd.socket.ClearField("probe")
    fd.unreadable.add(field="socket.probe", reason="not probed: test")
    blocked = plan(snap, live=False)
    assert [x.kind for x in blocked.problems if x.severity == "blocker"] == \
        ["socket-unidentified"]


def test_receive_is_harmless_reads_proc_cgroups(tmp_path: Path) -> None:
    head = "#subsys_name\thierarchy\tnum_cgroups\tenabled\n"
    off = tmp_path / "off"
    off.write_text(head + "cpu\t1\t1\t1\nnet_cls\t0\t1\t1\nnet_prio\t0\t1\t1\n")
    assert receive_is_harmless(str(off)) == (True, "")
    v1 = tmp_path / "v1"
    v1.write_text(head + "net_cls\t4\t3\t1\nnet_prio\t4\t3\t1\n")
    ok, why = receive_is_harmless(str(v1))
    assert not ok and "net_cls/net_prio" in why
    assert not receive_is_harmless(str(tmp_path / "missing"))[0]


ICMP_CHILD = r"""
import ctypes, os, socket, time
# ping_group_range is per network namespace: the host's is untouched (CLONE_NEWNET)
assert ctypes.CDLL(None, use_errno=True).unshare(0x40000000) == 0
with open("/proc/sys/net/ipv4/ping_group_range", "w") as f:
    f.write("0 0")
v4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
v6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_ICMPV6)
print(v4.fileno(), v6.fileno(), flush=True)
time.sleep(60)
"""


def test_icmp_ping_sockets_are_identified() -> None:
    if not receive_is_harmless()[0]:
        pytest.skip(receive_is_harmless()[1])
    proc = subprocess.Popen([sys.executable, "-c", ICMP_CHILD], stdout=subprocess.PIPE,
                            text=True)
    try:
        v4, v6 = (int(x) for x in proc.stdout.readline().split())  # type: ignore[union-attr]
        snap = criu_model.dump([proc.pid])
    finally:
        proc.kill()
        proc.wait()
    fds = {f.fd: f for f in snap.fds_by_pid[proc.pid].fds}
    got = {n: fds[n].socket.probe for n in (v4, v6)}
    assert (got[v4].domain, got[v4].type, got[v4].protocol) == (2, 2, socket.IPPROTO_ICMP)
    assert (got[v6].domain, got[v6].type, got[v6].protocol) == (10, 2, socket.IPPROTO_ICMPV6)
    p = plan(snap, live=False)
    assert not [x for x in p.problems if x.kind == "socket-unidentified"]
