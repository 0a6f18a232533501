"""Sockets of every family through sock_diag netlink dumps.

One dump request per family/protocol per snapshot (not one per socket): the
kernel streams every socket of our network namespace and we keep those whose
inode an fd points at (``socket:[INODE]``). Messages are declared in
:mod:`netlink_diag` like the C headers (pyroute2's convention, our own code: a
dump imports no pyroute2); replies are read from one plain NETLINK_SOCK_DIAG
socket and decoded with the compiled layouts, because pyroute2's asyncio socket
and generic decoder cost 60-200 ms for 2,000 unix sockets where this takes a
few (see scripts/bench/bench_sockets.py).

A family the kernel cannot dump (no diag handler: module or config missing)
is recorded as not collected, with the reason; the other families still run.
Sockets of another network namespace are not seen: their inodes end up in
``SocketDump.missing``.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from criu_model.collect import netlink_diag as nd
from criu_model.collect.sockdump import FamilyResult, SocketDump
from criu_model.images.pb import common_pb2, sockets_pb2

Socket = sockets_pb2.Socket

IPPROTO_UDPLITE = 136
_SOCK_RAW, _SOCK_DGRAM, _SOCK_STREAM = socket.SOCK_RAW, socket.SOCK_DGRAM, socket.SOCK_STREAM

# Kernel dev_t as stored in s_dev (include/linux/kdev_t.h: MINORBITS 20).
KERNEL_MINORBITS = 20
KERNEL_MINORMASK = (1 << KERNEL_MINORBITS) - 1


def kernel_dev_to_user(kdev: int) -> int:
    """s_dev (major << 20 | minor) as the st_dev userspace sees from stat()."""
    return os.makedev(kdev >> KERNEL_MINORBITS, kdev & KERNEL_MINORMASK)


# --- message -> Socket --------------------------------------------------------

AttrHandler = Callable[[Socket, Any], None]


def _cookie(value: int | tuple[int, int]) -> int:
    """unix/inet cookies are declared as Q (as pyroute2 does); ours follow the C u32[2] (low
    half first)."""
    return value if isinstance(value, int) else value[0] | value[1] << 32


class FieldMap:
    """Copies decoded struct fields into protobuf fields, by position (compiled once).

    `mapping` is {declared field name: protobuf field name}; unnamed fields are skipped.
    """

    def __init__(self, declared: Iterable[tuple[str, str]], mapping: dict[str, str]) -> None:
        names = [name for name, _ in declared]
        unknown = set(mapping) - set(names)
        if unknown:
            raise ValueError(f"not declared: {sorted(unknown)}")
        self.pairs = tuple((i, mapping[n]) for i, n in enumerate(names) if n in mapping)

    def fill(self, msg: Any, values: tuple[Any, ...]) -> None:
        msg.SetInParent()  # present even when every value is zero
        for index, dst in self.pairs:
            value = values[index]
            if value:  # proto3 scalars: zero is the default, skipping it saves a setattr
                setattr(msg, dst, value)


_MEMINFO = FieldMap(nd.sk_meminfo.fields, {n: n for n, _ in nd.sk_meminfo.fields})


def _meminfo(sock: Socket, m: Any) -> None:
    _MEMINFO.fill(sock.meminfo, m)


def _uid(sock: Socket, uid: int) -> None:
    sock.uid = uid


def _shutdown(sock: Socket, how: int) -> None:
    sock.shutdown = how


def _unix_name(sock: Socket, raw: bytes) -> None:
    if raw[:1] == b"\0":  # abstract: every byte counts, the leading NUL included
        sock.unix.abstract = True
        sock.unix.name = raw
    else:
        sock.unix.name = raw.split(b"\0", 1)[0]


def _unix_vfs(sock: Socket, vfs: Any) -> None:
    sock.unix.vfs_ino = vfs.udiag_vfs_ino
    sock.unix.vfs_dev = kernel_dev_to_user(vfs.udiag_vfs_dev)


def _unix_peer(sock: Socket, peer: int) -> None:
    sock.unix.peer_inode = peer


def _unix_icons(sock: Socket, inodes: tuple[int, ...]) -> None:
    sock.unix.pending.extend(inodes)


def _unix_rqlen(sock: Socket, q: Any) -> None:
    sock.rqueue = q.udiag_rqueue
    sock.wqueue = q.udiag_wqueue


UNIX_HANDLERS: dict[int, AttrHandler] = {
    nd.UNIX_DIAG_NAME: _unix_name,
    nd.UNIX_DIAG_VFS: _unix_vfs,
    nd.UNIX_DIAG_PEER: _unix_peer,
    nd.UNIX_DIAG_ICONS: _unix_icons,
    nd.UNIX_DIAG_RQLEN: _unix_rqlen,
    nd.UNIX_DIAG_MEMINFO: _meminfo,
    nd.UNIX_DIAG_SHUTDOWN: _shutdown,
    nd.UNIX_DIAG_UID: _uid,
}


def _unix_socket(h: Any) -> Socket:
    sock = Socket(
        inode=h.udiag_ino,
        family=sockets_pb2.FAMILY_UNIX,
        type=h.udiag_type,
        state=h.udiag_state,
        cookie=_cookie(h.udiag_cookie),
    )
    sock.unix.SetInParent()
    return sock


def _unix_finish(sock: Socket) -> None:
    if sock.state == nd.TCP_LISTEN:
        sock.unix.backlog = sock.wqueue


_TCP_INFO = FieldMap(nd.tcp_info_basic.fields, {
    "tcpi_state": "state",
    "tcpi_ca_state": "ca_state",
    "tcpi_retransmits": "retransmits",
    "tcpi_probes": "probes",
    "tcpi_backoff": "backoff",
    "tcpi_options": "options",
    "tcpi_rto": "rto_us",
    "tcpi_snd_mss": "mss",
    "tcpi_rcv_mss": "rcv_mss",
    "tcpi_unacked": "unacked",
    "tcpi_lost": "lost",
    "tcpi_retrans": "retrans",
    "tcpi_pmtu": "pmtu",
    "tcpi_rtt": "rtt_us",
    "tcpi_rttvar": "rttvar_us",
    "tcpi_snd_cwnd": "snd_cwnd",
    "tcpi_advmss": "advmss",
    "tcpi_total_retrans": "total_retrans",
})


def _tcp_info(sock: Socket, info: Any) -> None:
    ti = sock.inet.tcp_info
    _TCP_INFO.fill(ti, info)
    ti.snd_wscale, ti.rcv_wscale = nd.split_wscale(info.tcpi_wscale)


def _v6only(sock: Socket, flag: int) -> None:
    sock.inet.v6only = bool(flag)


INET_HANDLERS: dict[int, AttrHandler] = {
    nd.INET_DIAG_INFO: _tcp_info,
    nd.INET_DIAG_SKMEMINFO: _meminfo,
    nd.INET_DIAG_SHUTDOWN: _shutdown,
    nd.INET_DIAG_SKV6ONLY: _v6only,
}

# idiag_src/dst are declared '>4I' (__be32[4]); an IPv4 address is the first word.
_BE32 = struct.Struct(">I")
_BE32X4 = struct.Struct(">4I")
_INET_FAMILIES = {
    socket.AF_INET: sockets_pb2.FAMILY_INET,
    socket.AF_INET6: sockets_pb2.FAMILY_INET6,
}
_INET_TYPES = {
    socket.IPPROTO_TCP: _SOCK_STREAM,
    socket.IPPROTO_UDP: _SOCK_DGRAM,
    IPPROTO_UDPLITE: _SOCK_DGRAM,
    socket.IPPROTO_RAW: _SOCK_RAW,
}


def _inet_addr(family: int, words: tuple[int, ...]) -> str:
    if family == socket.AF_INET:
        return socket.inet_ntop(family, _BE32.pack(words[0]))
    return socket.inet_ntop(family, _BE32X4.pack(*words))


def _inet_builder(protocol: int) -> Callable[[Any], Socket]:
    def build(h: Any) -> Socket:
        fam = h.idiag_family
        return Socket(
            inode=h.idiag_inode,
            family=_INET_FAMILIES[fam],
            type=_INET_TYPES[protocol],
            state=h.idiag_state,
            rqueue=h.idiag_rqueue,
            wqueue=h.idiag_wqueue,
            cookie=_cookie(h.idiag_cookie),
            uid=h.idiag_uid,
            inet=sockets_pb2.InetSocket(
                src=_inet_addr(fam, h.idiag_src),
                sport=h.idiag_sport,
                dst=_inet_addr(fam, h.idiag_dst),
                dport=h.idiag_dport,
                protocol=protocol,
                ifindex=h.idiag_if,
                retransmits=h.idiag_retrans,
                timer=h.idiag_timer,
            ),
        )

    return build


def _groups_bitmap(sock: Socket, raw: bytes) -> None:
    """NETLINK_DIAG_GROUPS: native unsigned long words; bit n set = group n + 1."""
    word_bits = struct.calcsize("L") * 8
    words = memoryview(raw[: len(raw) - len(raw) % (word_bits // 8)]).cast("L")
    groups = sock.netlink.groups
    for index, word in enumerate(words):
        bit = 0
        while word:
            if word & 1:
                groups.append(index * word_bits + bit + 1)
            word >>= 1
            bit += 1


def _netlink_flags(sock: Socket, flags: int) -> None:
    sock.netlink.flags = flags


NETLINK_HANDLERS: dict[int, AttrHandler] = {
    nd.NETLINK_DIAG_MEMINFO: _meminfo,
    nd.NETLINK_DIAG_GROUPS: _groups_bitmap,
    nd.NETLINK_DIAG_FLAGS: _netlink_flags,
}


def _netlink_socket(h: Any) -> Socket:
    return Socket(
        inode=h.ndiag_ino,
        family=sockets_pb2.FAMILY_NETLINK,
        type=h.ndiag_type,
        state=h.ndiag_state,
        cookie=_cookie(h.ndiag_cookie),
        netlink=sockets_pb2.NetlinkSocket(
            protocol=h.ndiag_protocol,
            portid=h.ndiag_portid,
            dst_portid=h.ndiag_dst_portid,
            dst_group=h.ndiag_dst_group,
        ),
    )


_PACKET_INFO = FieldMap(nd.packet_diag_msg.packet_diag_info.fields, {
    "pdi_index": "ifindex",
    "pdi_version": "version",
    "pdi_reserve": "reserve",
    "pdi_copy_thresh": "copy_thresh",
    "pdi_tstamp": "tstamp",
    "pdi_flags": "flags",
})
_PACKET_RING = FieldMap(
    nd.packet_diag_msg.packet_diag_ring.fields,
    {n: n[len("pdr_") :] for n, _ in nd.packet_diag_msg.packet_diag_ring.fields},
)


def _packet_info(sock: Socket, info: Any) -> None:
    _PACKET_INFO.fill(sock.packet, info)


def _packet_mclist(sock: Socket, entries: tuple[Any, ...]) -> None:
    for e in entries:
        sock.packet.mclist.add(
            ifindex=e.pdmc_index,
            count=e.pdmc_count,
            type=e.pdmc_type,
            addr=e.pdmc_addr[: e.pdmc_alen],
        )


def _packet_rx_ring(sock: Socket, ring: Any) -> None:
    _PACKET_RING.fill(sock.packet.rx_ring, ring)


def _packet_tx_ring(sock: Socket, ring: Any) -> None:
    _PACKET_RING.fill(sock.packet.tx_ring, ring)


def _packet_fanout(sock: Socket, fanout: int) -> None:
    sock.packet.fanout = fanout


def _packet_filter(sock: Socket, raw: bytes) -> None:
    sock.packet.filter = raw


PACKET_HANDLERS: dict[int, AttrHandler] = {
    nd.PACKET_DIAG_INFO: _packet_info,
    nd.PACKET_DIAG_MCLIST: _packet_mclist,
    nd.PACKET_DIAG_RX_RING: _packet_rx_ring,
    nd.PACKET_DIAG_TX_RING: _packet_tx_ring,
    nd.PACKET_DIAG_FANOUT: _packet_fanout,
    nd.PACKET_DIAG_UID: _uid,
    nd.PACKET_DIAG_MEMINFO: _meminfo,
    nd.PACKET_DIAG_FILTER: _packet_filter,
}


def _packet_socket(h: Any) -> Socket:
    return Socket(
        inode=h.pdiag_ino,
        family=sockets_pb2.FAMILY_PACKET,
        type=h.pdiag_type,
        cookie=_cookie(h.pdiag_cookie),
        packet=sockets_pb2.PacketSocket(protocol=h.pdiag_num),
    )


# --- families ---------------------------------------------------------------


@dataclass(frozen=True)
class FamilySpec:
    """How to dump one family/protocol and turn its messages into Sockets."""

    name: str
    config: str  # the kernel option that provides the diag handler
    request: Callable[[], nd.Request]
    layout: nd.Layout
    inode: Callable[[Any], int]  # header -> inode
    build: Callable[[Any], Socket]  # header -> Socket with the fixed fields
    handlers: dict[int, AttrHandler]
    finish: Callable[[Socket], None] | None = None


def _inet_spec(name: str, family: int, protocol: int, config: str) -> FamilySpec:
    return FamilySpec(
        name=name,
        config=config,
        request=lambda: nd.inet_request(family, protocol),
        layout=nd.INET,
        inode=attrgetter("idiag_inode"),
        build=_inet_builder(protocol),
        handlers=INET_HANDLERS,
    )


FAMILIES: tuple[FamilySpec, ...] = (
    FamilySpec("unix", "CONFIG_UNIX_DIAG", nd.unix_request, nd.UNIX,
               attrgetter("udiag_ino"), _unix_socket, UNIX_HANDLERS, _unix_finish),
    _inet_spec("tcp", socket.AF_INET, socket.IPPROTO_TCP, "CONFIG_INET_TCP_DIAG"),
    _inet_spec("udp", socket.AF_INET, socket.IPPROTO_UDP, "CONFIG_INET_UDP_DIAG"),
    _inet_spec("tcp6", socket.AF_INET6, socket.IPPROTO_TCP, "CONFIG_INET_TCP_DIAG + IPV6"),
    _inet_spec("udp6", socket.AF_INET6, socket.IPPROTO_UDP, "CONFIG_INET_UDP_DIAG + IPV6"),
    _inet_spec("udplite", socket.AF_INET, IPPROTO_UDPLITE, "CONFIG_INET_UDP_DIAG"),
    _inet_spec("udplite6", socket.AF_INET6, IPPROTO_UDPLITE, "CONFIG_INET_UDP_DIAG + IPV6"),
    _inet_spec("raw", socket.AF_INET, socket.IPPROTO_RAW, "CONFIG_INET_RAW_DIAG"),
    _inet_spec("raw6", socket.AF_INET6, socket.IPPROTO_RAW, "CONFIG_INET_RAW_DIAG + IPV6"),
    FamilySpec("netlink", "CONFIG_NETLINK_DIAG", nd.netlink_request, nd.NETLINK,
               attrgetter("ndiag_ino"), _netlink_socket, NETLINK_HANDLERS),
    FamilySpec("packet", "CONFIG_PACKET_DIAG", nd.packet_request, nd.PACKET,
               attrgetter("pdiag_ino"), _packet_socket, PACKET_HANDLERS),
)


def _why(spec: FamilySpec, err: nd.DumpFailed | OSError) -> str:
    code = err.code if isinstance(err, nd.DumpFailed) else (err.errno or 0)
    name = errno.errorcode.get(code, str(code))
    if code == errno.ENOENT:
        return f"{spec.name}: sock_diag has no handler (ENOENT; needs {spec.config})"
    return f"{spec.name}: sock_diag dump failed ({name}: {err})"


def _keep_raw(sock: Socket, kind: int, payload: bytes) -> None:
    sock.raw_attrs[kind] = payload


def _short_attr(sock: Socket, kind: int, payload: bytes, name: str, reason: str) -> None:
    sock.raw_attrs[kind] = payload
    sock.unreadable.append(common_pb2.Unreadable(field=name, reason=reason))


def parse_message(spec: FamilySpec, buf: bytes, off: int, end: int) -> Socket:
    """One reply message as a Socket (what dump_family does per message, without the filter)."""
    sock = spec.build(spec.layout.header(buf, off))
    spec.layout.dispatch(buf, off, end, sock, spec.handlers, _keep_raw, _short_attr)
    if spec.finish is not None:
        spec.finish(sock)
    return sock


def family_spec(name: str) -> FamilySpec:
    """The FamilySpec called `name` (ValueError if there is none)."""
    for spec in FAMILIES:
        if spec.name == name:
            return spec
    raise ValueError(f"unknown socket family: {name!r}")


def dump_family(
    conn: nd.DiagConnection, spec: FamilySpec, inodes: set[int] | frozenset[int] | None,
    out: dict[int, Socket],
) -> tuple[int, int]:
    """Run one family's dump into `out`; returns (kept, duplicates)."""
    header, dispatch = spec.layout.header, spec.layout.dispatch
    inode_of, build, handlers, finish = spec.inode, spec.build, spec.handlers, spec.finish
    kept = dups = 0
    for buf, off, end in conn.dump(spec.request()):
        h = header(buf, off)
        ino = inode_of(h)
        if ino == 0 or (inodes is not None and ino not in inodes):
            continue
        if ino in out:
            dups += 1
            continue
        sock = build(h)
        dispatch(buf, off, end, sock, handlers, _keep_raw, _short_attr)
        if finish is not None:
            finish(sock)
        out[ino] = sock
        kept += 1
    return kept, dups


def collect_sockets(
    inodes: set[int] | frozenset[int] | None = None,
    families: Iterable[str] | None = None,
) -> SocketDump:
    """Dump every family once; keep the sockets whose inode is in `inodes` (all if None).

    `families` restricts the dumps by name (see FAMILIES); unknown names raise ValueError.
    """
    specs = FAMILIES
    if families is not None:
        wanted = set(families)
        unknown = wanted - {s.name for s in FAMILIES}
        if unknown:
            raise ValueError(f"unknown socket families: {sorted(unknown)}")
        specs = tuple(s for s in FAMILIES if s.name in wanted)
    result = SocketDump()
    with nd.DiagConnection() as conn:
        for spec in specs:
            try:
                kept, dups = dump_family(conn, spec, inodes, result.sockets)
            except (nd.DumpFailed, OSError) as err:
                result.families.append(FamilyResult(spec.name, False, _why(spec, err)))
                continue
            result.counts[spec.name] = kept
            result.duplicates += dups
            caveat = (
                f"{spec.name}: dump interrupted (NLM_F_DUMP_INTR), may be inconsistent"
                if conn.interrupted
                else ""
            )
            result.families.append(FamilyResult(spec.name, True, caveat))
    if inodes is not None:
        result.missing = set(inodes) - result.sockets.keys()
    return result
