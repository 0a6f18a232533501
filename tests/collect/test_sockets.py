"""sock_diag socket collection against real sockets of every family.

Every fixture builds real kernel sockets (tests/collect/sockfixtures.py) and
closes them afterwards; the dump must show what was built, and agree with an
independent view: /proc/net/{unix,netlink,packet}, psutil.net_connections,
and pyroute2's own decoder on the very same netlink messages.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections import Counter
from pathlib import Path

import psutil
import pytest

from criu_model.collect import netlink_diag as nd
from criu_model.collect import nlcodec
from criu_model.collect.sockets import (
    FAMILIES,
    collect_sockets,
    family_spec,
    kernel_dev_to_user,
    parse_message,
)
from criu_model.images.pb import sockets_pb2
from tests.collect import sockfixtures as fx

AF_BLUETOOTH = 31  # a family sock_diag has no handler for
PSUTIL_TCP_STATES = {nd.TCP_ESTABLISHED: psutil.CONN_ESTABLISHED, nd.TCP_LISTEN: psutil.CONN_LISTEN}
# /proc/net/unix "Flags": __SO_ACCEPTCON marks a listener (include/linux/net.h)
SO_ACCEPTCON = 1 << 16

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="AF_PACKET needs CAP_NET_RAW")


def _proc_net(name: str) -> list[list[str]]:
    """Rows of /proc/net/NAME, header dropped, split on whitespace."""
    with open(f"/proc/net/{name}") as f:
        return [line.split() for line in f.read().splitlines()[1:]]


def _proc_unix() -> dict[int, dict[str, object]]:
    """/proc/net/unix by inode: flags, type, path (abstract with '@' for NULs)."""
    rows: dict[int, dict[str, object]] = {}
    for cols in _proc_net("unix"):
        # Num RefCount Protocol Flags Type St Inode [Path]
        rows[int(cols[6])] = {
            "flags": int(cols[3], 16),
            "type": int(cols[4], 16),
            "path": cols[7] if len(cols) > 7 else None,
        }
    return rows


def _psutil_by_inode(kind: str) -> dict[int, psutil._common.pconn]:
    """psutil's view of this process's connections, keyed by the fd's socket inode."""
    out = {}
    for conn in psutil.Process().net_connections(kind=kind):
        if conn.fd >= 0:
            out[os.fstat(conn.fd).st_ino] = conn
    return out


def _dump(built: fx.Built, *families: str) -> dict[int, sockets_pb2.Socket]:
    result = collect_sockets(built.inodes(), families=families or None)
    assert result.missing == set(), f"not reported: {result.missing}"
    return result.sockets


# --- unix ---------------------------------------------------------------------


def test_unix_stream_pair_peers_and_queues() -> None:
    with fx.unix_stream_pair(b"queued!") as built:
        socks = _dump(built, "unix")
        a, b = socks[built.ino("a")], socks[built.ino("b")]
        proc = _proc_unix()
        for s in (a, b):
            assert s.family == sockets_pb2.FAMILY_UNIX
            assert s.type == socket.SOCK_STREAM == proc[s.inode]["type"]
            assert s.state == nd.TCP_ESTABLISHED
            assert s.unix.name == b"" and not s.unix.abstract
            assert s.uid == os.geteuid()
            assert s.meminfo.rcvbuf > 0 and s.meminfo.sndbuf > 0
        assert a.unix.peer_inode == b.inode and b.unix.peer_inode == a.inode
        assert b.rqueue == len(b"queued!")
        assert a.wqueue > 0  # skb memory still charged to the writer
        assert a.cookie != b.cookie


def test_unix_listener_lists_pending_connection(tmp_path: Path) -> None:
    with fx.unix_listener_with_pending(tmp_path, backlog=5) as built:
        socks = _dump(built, "unix")
        listener, client = socks[built.ino("listener")], socks[built.ino("client")]
        path = built.facts["path"]
        st = os.stat(path)
        assert listener.state == nd.TCP_LISTEN
        assert listener.unix.name == os.fsencode(path) and not listener.unix.abstract
        assert list(listener.unix.pending) == [client.inode]
        assert listener.unix.backlog == 5
        assert listener.rqueue == 1  # one connection waiting for accept()
        assert (listener.unix.vfs_ino, listener.unix.vfs_dev) == (st.st_ino, st.st_dev)
        assert client.state == nd.TCP_ESTABLISHED
        # independent views
        proc = _proc_unix()
        assert proc[listener.inode]["flags"] & SO_ACCEPTCON
        assert proc[listener.inode]["path"] == str(path)
        assert not proc[client.inode]["flags"] & SO_ACCEPTCON
        conns = _psutil_by_inode("unix")
        assert conns[listener.inode].laddr == str(path)


def test_unix_abstract_name_keeps_nul_bytes() -> None:
    with fx.unix_abstract() as built:
        s = _dump(built, "unix")[built.ino("abstract")]
        name = built.facts["name"]
        assert s.unix.abstract
        assert s.unix.name == name  # leading NUL and the inner NUL kept
        assert s.type == socket.SOCK_SEQPACKET
        assert s.unix.vfs_ino == 0
        assert _proc_unix()[s.inode]["path"] == name.replace(b"\0", b"@").decode()


def test_unix_dgram_receiver_and_connected_sender(tmp_path: Path) -> None:
    with fx.unix_dgram(tmp_path, b"datagram") as built:
        socks = _dump(built, "unix")
        receiver, sender = socks[built.ino("receiver")], socks[built.ino("sender")]
        assert receiver.type == sender.type == socket.SOCK_DGRAM
        assert receiver.unix.name == os.fsencode(built.facts["path"])
        assert receiver.rqueue == len(b"datagram")
        assert sender.unix.peer_inode == receiver.inode
        assert receiver.unix.peer_inode == 0
        assert _proc_unix()[receiver.inode]["type"] == socket.SOCK_DGRAM


# --- inet -----------------------------------------------------------------------


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["v4", "v6"])
def test_tcp_listener_and_established_with_unread_data(family: int) -> None:
    with fx.tcp_connection(family, payload=b"x" * 100, backlog=7) as built:
        socks = _dump(built, "tcp", "tcp6")
        lst = socks[built.ino("listener")]
        cli = socks[built.ino("client")]
        acc = socks[built.ino("accepted")]
        want_family = {socket.AF_INET: sockets_pb2.FAMILY_INET,
                       socket.AF_INET6: sockets_pb2.FAMILY_INET6}[family]
        for s in (lst, cli, acc):
            assert s.family == want_family
            assert s.type == socket.SOCK_STREAM
            assert s.inet.protocol == socket.IPPROTO_TCP
        assert lst.state == nd.TCP_LISTEN and lst.wqueue == 7
        assert cli.state == acc.state == nd.TCP_ESTABLISHED
        assert acc.rqueue == 100
        host, port = built.socks["listener"].getsockname()[:2]
        assert (lst.inet.src, lst.inet.sport) == (host, port)
        assert (acc.inet.src, acc.inet.sport) == (host, port)
        cport = built.socks["client"].getsockname()[1]
        assert (cli.inet.sport, cli.inet.dst, cli.inet.dport) == (cport, host, port)
        assert (acc.inet.dst, acc.inet.dport) == (host, cport)
        # TCP_INFO: mss known on both ends, and the window scales cross over.
        # The client shrank its SO_RCVBUF, so its own (receive) scale is the smaller one.
        assert cli.inet.tcp_info.mss > 0 and acc.inet.tcp_info.mss > 0
        assert cli.inet.tcp_info.state == nd.TCP_ESTABLISHED
        assert cli.inet.tcp_info.rcv_wscale < acc.inet.tcp_info.rcv_wscale
        assert cli.inet.tcp_info.snd_wscale == acc.inet.tcp_info.rcv_wscale
        assert acc.inet.tcp_info.snd_wscale == cli.inet.tcp_info.rcv_wscale
        assert cli.inet.tcp_info.rtt_us > 0
        # psutil reads /proc/net/tcp{,6}: same endpoints and states
        conns = _psutil_by_inode("tcp")
        for s in (lst, cli, acc):
            c = conns[s.inode]
            assert (c.laddr.ip, c.laddr.port) == (s.inet.src, s.inet.sport)
            assert c.status == PSUTIL_TCP_STATES[s.state]
            if c.raddr:
                assert (c.raddr.ip, c.raddr.port) == (s.inet.dst, s.inet.dport)


@pytest.mark.parametrize(
    ("family", "v6only"),
    [(socket.AF_INET, None), (socket.AF_INET6, True), (socket.AF_INET6, False)],
    ids=["v4", "v6-v6only", "v6-dual"],
)
def test_udp_socket(family: int, v6only: bool | None) -> None:
    with fx.udp_socket(family, v6only) as built:
        s = _dump(built, "udp", "udp6")[built.ino("udp")]
        host, port = built.socks["udp"].getsockname()[:2]
        assert s.type == socket.SOCK_DGRAM and s.inet.protocol == socket.IPPROTO_UDP
        assert s.state == nd.TCP_CLOSE  # unconnected UDP
        assert (s.inet.src, s.inet.sport) == (host, port)
        assert s.rqueue > 0  # the unread datagram (skb truesize)
        assert s.inet.v6only is bool(v6only)
        if family == socket.AF_INET6:  # the kernel's own word on it
            assert s.inet.v6only is bool(
                built.socks["udp"].getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
            )
        assert "tcp_info" not in {f.name for f, _ in s.inet.ListFields()}
        c = _psutil_by_inode("udp")[s.inode]
        assert (c.laddr.ip, c.laddr.port) == (host, port)


# --- netlink, packet ------------------------------------------------------------


def test_netlink_socket_groups_and_dedup() -> None:
    with fx.netlink_route() as built:
        ino = built.ino("netlink")
        result = collect_sockets({ino}, families=["netlink"])
        s = result.sockets[ino]
        assert s.family == sockets_pb2.FAMILY_NETLINK
        assert s.type == socket.SOCK_RAW
        assert s.netlink.protocol == socket.NETLINK_ROUTE
        assert s.netlink.portid == built.facts["portid"]
        assert list(s.netlink.groups) == built.facts["groups"]
        # /proc/net/netlink: sk Eth Pid Groups(first 32 bits, hex) ... Inode
        row = next(r for r in _proc_net("netlink") if int(r[9]) == ino)
        assert int(row[1]) == socket.NETLINK_ROUTE and int(row[2]) == s.netlink.portid
        first_word = sum(1 << (g - 1) for g in s.netlink.groups if g <= 32)
        assert int(row[3], 16) == first_word
        # A bound socket with groups is reported twice by netlink_diag (hash
        # table walk + multicast list walk): the dump must keep one.
        spec = family_spec("netlink")
        with nd.DiagConnection() as conn:
            seen = Counter(
                spec.inode(spec.layout.header(b, o)) for b, o, _ in conn.dump(spec.request())
            )
        assert seen[ino] >= 1
        if seen[ino] > 1:
            assert result.duplicates >= seen[ino] - 1
        assert result.counts["netlink"] == 1


@needs_root
def test_packet_socket() -> None:
    with fx.packet_socket() as built:
        s = _dump(built, "packet")[built.ino("packet")]
        f = built.facts
        assert s.family == sockets_pb2.FAMILY_PACKET
        assert s.type == socket.SOCK_RAW
        assert s.packet.protocol == f["protocol"]
        assert s.packet.ifindex == f["ifindex"]
        assert s.packet.version == f["version"]
        assert s.packet.fanout == f["fanout"]
        assert [(m.ifindex, m.type, m.count) for m in s.packet.mclist] == [
            (f["ifindex"], fx.PACKET_MR_ALLMULTI, 1)
        ]
        # /proc/net/packet: sk RefCnt Type Proto Iface R Rmem User Inode
        row = next(r for r in _proc_net("packet") if int(r[8]) == s.inode)
        assert int(row[2]) == socket.SOCK_RAW
        assert int(row[3], 16) == s.packet.protocol
        assert int(row[4]) == s.packet.ifindex


# --- whole-run behaviour ----------------------------------------------------------


def test_every_family_recorded_and_missing_handlers_are_reasons() -> None:
    result = collect_sockets(set())
    names = [r.name for r in result.families]
    assert names == [s.name for s in FAMILIES]
    by_name = {r.name: r for r in result.families}
    for name in ("unix", "tcp", "udp", "tcp6", "udp6", "netlink", "packet"):
        assert by_name[name].collected, by_name[name].reason
    for name in ("raw", "raw6"):  # absent on this machine's kernel; either way no exception
        r = by_name[name]
        assert r.collected or ("ENOENT" in r.reason and "CONFIG_INET_RAW_DIAG" in r.reason)
    runs = result.runs()
    assert [(r.name, r.collected, r.reason) for r in runs] == [tuple(r) for r in result.families]


def test_family_without_handler_raises_dump_failed() -> None:
    req = nd.Request(nd.unix_diag_req, {"sdiag_family": AF_BLUETOOTH})
    with nd.DiagConnection() as conn, pytest.raises(nd.DumpFailed) as info:
        list(conn.dump(req))
    assert info.value.code == errno.ENOENT
    # the connection stays usable for the next family
    with nd.DiagConnection() as conn:
        assert any(True for _ in conn.dump(nd.unix_request()))


def test_inode_filter_and_missing() -> None:
    with fx.unix_stream_pair() as built:
        wanted = {built.ino("a"), 0xFFFF_FFF0}
        result = collect_sockets(wanted, families=["unix"])
        assert set(result.sockets) == {built.ino("a")}
        assert result.missing == {0xFFFF_FFF0}
        assert result.counts == {"unix": 1}
    with pytest.raises(ValueError, match="bogus"):
        collect_sockets(families=["bogus"])


def test_thousands_of_sockets_all_found_with_consistent_peers() -> None:
    with fx.many_socketpairs(1000) as socks:
        inodes = {fx.inode_of(s) for s in socks}
        result = collect_sockets(inodes, families=["unix"])
        assert set(result.sockets) == inodes
        for s in result.sockets.values():
            assert result.sockets[s.unix.peer_inode].unix.peer_inode == s.inode


# --- the compiled decoder against pyroute2's, on the same messages --------------------


def _oracle(decl: type, base: type | None = None) -> type:
    """Our declaration as a pyroute2 class (nested payload classes too), on pyroute2's
    own message class where it has one (its address codec turns inet addresses to text)."""
    from pyroute2.netlink import nla, nlmsg

    attrs: dict[str, object] = {"fields": decl.fields, "nla_map": decl.nla_map}
    for _name, kind in decl.nla_map:
        kind = kind.removeprefix("array(").removesuffix(")")
        nested = getattr(decl, kind, None)
        if isinstance(nested, type) and getattr(nested, "fields", None) \
                and not hasattr(nla, kind):
            attrs[kind] = type(kind, (nla,), {"fields": nested.fields})
    return type(decl.__name__, (base or nlmsg,), attrs)


def test_declarations_agree_with_pyroute2() -> None:
    """The fixed parts we declare from the kernel headers are pyroute2's, field for field,
    and our attribute maps extend theirs in the same order (the attribute type numbers)."""
    from pyroute2.netlink import diag

    for ours, theirs in ((nd.unix_diag_req, diag.unix_diag_req),
                         (nd.inet_diag_req, diag.inet_diag_req),
                         (nd.unix_diag_msg_full, diag.unix_diag_msg),
                         (nd.inet_diag_msg_full, diag.inet_diag_msg)):
        assert tuple(ours.fields) == tuple(theirs.fields), ours.__name__
        names = [n for n, _ in getattr(theirs, "nla_map", ())]
        assert [n for n, _ in ours.nla_map][: len(names)] == names, ours.__name__
    # and a request we encode is byte for byte the one pyroute2 encodes
    req = nd.inet_request(socket.AF_INET6, socket.IPPROTO_TCP)
    theirs = diag.inet_diag_req()
    for name, value in req.values.items():
        theirs[name] = value
    theirs["header"] = {"type": nd.SOCK_DIAG_BY_FAMILY, "flags": nd.NLM_F_REQUEST
                        | nd.NLM_F_DUMP, "sequence_number": 7, "pid": 0}
    theirs.encode()
    assert req.encode(7) == bytes(theirs.data)


def test_a_dump_imports_no_pyroute2() -> None:
    import subprocess
    import sys

    code = ("import sys, criu_model.collect.sockets as s; "
            "s.collect_sockets(set(), families=['unix']); "
            "print(sorted(m for m in sys.modules if m.startswith('pyroute2')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


_ORACLE_BASES = {"unix": "unix_diag_msg", "tcp": "inet_diag_msg", "udp6": "inet_diag_msg"}


def _compare_with_pyroute2(spec_name: str, inodes: set[int]) -> int:
    """Decode every reply about `inodes` both ways; return how many were compared."""
    from pyroute2.netlink import diag

    spec = family_spec(spec_name)
    layout = spec.layout
    base = getattr(diag, _ORACLE_BASES.get(spec_name, ""), None)
    oracle = _oracle(layout.msg_class, base)
    compared = 0
    with nd.DiagConnection() as conn:
        for buf, off, end in conn.dump(spec.request()):
            header = layout.header(buf, off)
            if spec.inode(header) not in inodes:
                continue
            theirs = oracle(buf, offset=off)
            theirs.decode()
            for name, ours in zip(layout.codec.names, header, strict=True):
                if name.startswith("__") or name in ("idiag_src", "idiag_dst"):
                    continue  # pad; pyroute2 turns addresses into text (compared below)
                assert theirs[name] == ours, name
            sock = parse_message(spec, buf, off, end)
            if sock.WhichOneof("kind") == "inet":
                assert (theirs["idiag_src"], theirs["idiag_dst"]) == (sock.inet.src, sock.inet.dst)
            raw = layout.attrs(buf, off, end)
            for kind, payload in raw.items():
                if kind not in layout.attr_names:
                    assert sock.raw_attrs[kind] == payload
                    continue
                value = theirs.get_attr(layout.attr_names[kind])
                ours = layout.decode_attr(kind, payload)
                # pyroute2 reads only elementary arrays: struct arrays (mclist) differ
                struct_array = isinstance(ours, tuple) and ours and hasattr(ours[0], "_fields")
                if isinstance(value, (int, bytes, tuple)) and not struct_array:
                    assert value == ours, layout.attr_names[kind]
                elif hasattr(value, "keys") and hasattr(ours, "_fields"):
                    assert {k: value[k] for k in ours._fields} == ours._asdict()
            compared += 1
    return compared


def test_compiled_decoder_agrees_with_pyroute2(tmp_path: Path) -> None:
    with (
        fx.unix_listener_with_pending(tmp_path) as listening,
        fx.unix_abstract() as abstract,
        fx.tcp_connection(socket.AF_INET) as tcp,
        fx.udp_socket(socket.AF_INET6, True) as udp6,
        fx.netlink_route() as nl,
    ):
        assert _compare_with_pyroute2("unix", listening.inodes() | abstract.inodes()) == 3
        assert _compare_with_pyroute2("tcp", tcp.inodes()) == 3
        assert _compare_with_pyroute2("udp6", udp6.inodes()) == 1
        assert _compare_with_pyroute2("netlink", nl.inodes()) >= 1


@needs_root
def test_compiled_decoder_agrees_with_pyroute2_on_packet() -> None:
    with fx.packet_socket() as built:
        assert _compare_with_pyroute2("packet", built.inodes()) == 1


# --- parser edge cases on crafted messages ------------------------------------------------


def _unix_message(attrs: list[tuple[int, bytes]], inode: int = 77) -> bytes:
    """A SOCK_DIAG_BY_FAMILY reply for one unix socket, attributes given raw."""
    # struct unix_diag_msg: family, type, state, pad, ino, cookie
    body = struct.pack("=BBBBIQ", socket.AF_UNIX, socket.SOCK_STREAM, nd.TCP_ESTABLISHED, 0,
                       inode, 9)
    for kind, payload in attrs:
        nla = struct.pack("=HH", nlcodec.NLA_HDRLEN + len(payload), kind) + payload
        body += nla + b"\0" * (nlcodec.align4(len(nla)) - len(nla))
    header = nlcodec.NLMSG_HEADER.pack(
        nlcodec.NLMSG_HDRLEN + len(body), nd.SOCK_DIAG_BY_FAMILY, 0, 1, 0
    )
    return header + body


def test_unknown_attribute_is_kept_raw() -> None:
    msg = _unix_message([(nd.UNIX_DIAG_PEER, struct.pack("=I", 78)), (42, b"future!")])
    sock = parse_message(family_spec("unix"), msg, 0, len(msg))
    assert sock.inode == 77 and sock.unix.peer_inode == 78
    assert dict(sock.raw_attrs) == {42: b"future!"}


def test_short_attribute_is_unreadable_not_an_error() -> None:
    msg = _unix_message([(nd.UNIX_DIAG_VFS, struct.pack("=I", 5)), (nd.UNIX_DIAG_UID, b"\1\0")])
    sock = parse_message(family_spec("unix"), msg, 0, len(msg))
    assert sock.unix.vfs_ino == 0
    assert {u.field for u in sock.unreadable} == {"UNIX_DIAG_VFS", "UNIX_DIAG_UID"}
    assert not sock.HasField("uid")
    assert sock.raw_attrs[nd.UNIX_DIAG_VFS] == struct.pack("=I", 5)


def test_truncated_attribute_chain_stops_cleanly() -> None:
    good = (nd.UNIX_DIAG_PEER, struct.pack("=I", 78))
    msg = bytearray(_unix_message([good, (nd.UNIX_DIAG_NAME, b"/tmp/x\0\0")]))
    # claim the last attribute is longer than the message
    last = len(msg) - nlcodec.align4(nlcodec.NLA_HDRLEN + 8)
    struct.pack_into("=H", msg, last, 200)
    sock = parse_message(family_spec("unix"), bytes(msg), 0, len(msg))
    assert sock.unix.peer_inode == 78 and sock.unix.name == b""


def test_path_name_stops_at_nul_and_abstract_keeps_everything() -> None:
    path = _unix_message([(nd.UNIX_DIAG_NAME, b"/run/a.sock\0")])
    abstract = _unix_message([(nd.UNIX_DIAG_NAME, b"\0abs\0x\0")])
    spec = family_spec("unix")
    p = parse_message(spec, path, 0, len(path))
    a = parse_message(spec, abstract, 0, len(abstract))
    assert (p.unix.name, p.unix.abstract) == (b"/run/a.sock", False)
    assert (a.unix.name, a.unix.abstract) == (b"\0abs\0x\0", True)


def test_kernel_dev_encoding() -> None:
    # s_dev 254:0 (device-mapper) as unix_diag reports it; 8:17 for /dev/sdb1
    assert kernel_dev_to_user(254 << 20) == os.makedev(254, 0)
    assert kernel_dev_to_user(8 << 20 | 17) == os.makedev(8, 17)


def test_struct_codec_mixed_byte_orders() -> None:
    codec = nlcodec.StructCodec("t", (("a", "B"), ("port", ">H"), ("addr", ">4I"), ("n", "I")))
    data = struct.pack("=B", 1) + struct.pack(">H4I", 80, 1, 2, 3, 4) + struct.pack("=I", 9)
    assert codec.size == len(data) == 1 + 2 + 16 + 4
    v = codec.decode(data)
    assert (v.a, v.port, v.addr, v.n) == (1, 80, (1, 2, 3, 4), 9)
    with pytest.raises(ValueError, match="native-size"):
        nlcodec.StructCodec("bad", (("x", "L"),))
