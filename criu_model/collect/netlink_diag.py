"""The sock_diag protocol: message layouts, requests, and one dump connection.

* Every message is declared like the C headers (``fields`` + ``nla_map``, the
  convention of pyroute2, on :mod:`nlcodec`'s own base classes), from
  include/uapi/linux/{unix,inet,netlink,packet}_diag.h, and compiled with
  :mod:`nlcodec`. Nothing here imports pyroute2: its package import cost a
  dump 150-300 ms, inside the frozen window. tests/collect/test_sockets.py
  holds these declarations and our decoder to pyroute2's, on the same messages.
* Requests are encoded from the same declarations (:class:`Request`).
* :class:`DiagConnection` is a plain NETLINK_SOCK_DIAG socket: pyroute2's
  DiagSocket runs an asyncio loop per call and disables NLMSG_ERROR checking
  (its MarshalDiag keys replies on the family byte), so a missing handler
  would pass silently. Here every error becomes :class:`DumpFailed`.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from criu_model.collect.nlcodec import (
    NLA_HDRLEN,
    NLMSG_HDRLEN,
    NLMSG_HEADER,
    Layout,
    StructCodec,
    align4,
    nla,
    nlmsg,
)
from criu_model.errors import KernelUnsupported

# --- constants (include/uapi/linux/netlink.h, *_diag.h, sock_diag.h, tcp.h) --

NETLINK_SOCK_DIAG = 4
NLM_F_REQUEST = 0x1
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300             # NLM_F_ROOT | NLM_F_MATCH
NLM_F_CAPPED = 0x100           # (in an NLMSG_ERROR) the request is echoed as a header only
NLM_F_ACK_TLVS = 0x200         # (in an NLMSG_ERROR) extended ack attributes follow, Linux 4.12
NLMSGERR_ATTR_MSG = 1
NLMSG_ERROR, NLMSG_DONE = 2, 3

SOCK_DIAG_BY_FAMILY = 20

UDIAG_SHOW_NAME = 0x01
UDIAG_SHOW_VFS = 0x02
UDIAG_SHOW_PEER = 0x04
UDIAG_SHOW_ICONS = 0x08
UDIAG_SHOW_RQLEN = 0x10
UDIAG_SHOW_MEMINFO = 0x20
UDIAG_SHOW_UID = 0x40  # Linux 5.3

NDIAG_PROTO_ALL = 0xFF
NDIAG_SHOW_MEMINFO = 0x01
NDIAG_SHOW_GROUPS = 0x02
NDIAG_SHOW_FLAGS = 0x08  # Linux 4.6

PACKET_SHOW_INFO = 0x01
PACKET_SHOW_MCLIST = 0x02
PACKET_SHOW_RING_CFG = 0x04
PACKET_SHOW_FANOUT = 0x08
PACKET_SHOW_MEMINFO = 0x10
PACKET_SHOW_FILTER = 0x20

# Attribute type numbers: the index in the nla_map declarations below.
UNIX_DIAG_NAME, UNIX_DIAG_VFS, UNIX_DIAG_PEER, UNIX_DIAG_ICONS = 0, 1, 2, 3
UNIX_DIAG_RQLEN, UNIX_DIAG_MEMINFO, UNIX_DIAG_SHUTDOWN, UNIX_DIAG_UID = 4, 5, 6, 7

INET_DIAG_MEMINFO, INET_DIAG_INFO, INET_DIAG_SHUTDOWN = 1, 2, 8
INET_DIAG_SKMEMINFO, INET_DIAG_SKV6ONLY = 7, 11

NETLINK_DIAG_MEMINFO, NETLINK_DIAG_GROUPS, NETLINK_DIAG_FLAGS = 0, 1, 4

PACKET_DIAG_INFO, PACKET_DIAG_MCLIST, PACKET_DIAG_RX_RING, PACKET_DIAG_TX_RING = 0, 1, 2, 3
PACKET_DIAG_FANOUT, PACKET_DIAG_UID, PACKET_DIAG_MEMINFO, PACKET_DIAG_FILTER = 4, 5, 6, 7


def inet_ext_bit(attr: int) -> int:
    """inet_diag_req.idiag_ext bit asking for attribute `attr` (the kernel's 1 << (attr - 1))."""
    return 1 << (attr - 1)


# TCP_* states (include/net/tcp_states.h); unix and netlink sockets reuse them.
TCP_ESTABLISHED = 1
TCP_SYN_RECV = 3
TCP_TIME_WAIT = 6
TCP_CLOSE = 7
TCP_LISTEN = 10
TCP_NEW_SYN_RECV = 12
TCP_MAX_STATES = 13
ALL_STATES = (1 << TCP_MAX_STATES) - 1
# Mini sockets (TIME_WAIT, request socks) have no inode and belong to no fd.
OWNED_STATES = ALL_STATES & ~(
    (1 << TCP_TIME_WAIT) | (1 << TCP_SYN_RECV) | (1 << TCP_NEW_SYN_RECV)
)

# tcp_info's first bitfield byte: __u8 tcpi_snd_wscale:4, tcpi_rcv_wscale:4;
# bitfields fill from the low bit on little-endian ABIs (x86_64).
TCPI_SND_WSCALE_MASK = 0x0F
TCPI_RCV_WSCALE_SHIFT = 4


def split_wscale(byte: int) -> tuple[int, int]:
    """(snd_wscale, rcv_wscale) from tcp_info's packed window-scale byte."""
    return byte & TCPI_SND_WSCALE_MASK, byte >> TCPI_RCV_WSCALE_SHIFT


# --- declarations (include/uapi/linux/*_diag.h) ---------------------------


class sk_meminfo(nla):
    """u32 sk_meminfo[SK_MEMINFO_VARS] (include/uapi/linux/sock_diag.h), first 9 slots."""

    fields = (
        ("rmem_alloc", "I"),
        ("rcvbuf", "I"),
        ("wmem_alloc", "I"),
        ("sndbuf", "I"),
        ("fwd_alloc", "I"),
        ("wmem_queued", "I"),
        ("optmem", "I"),
        ("backlog", "I"),
        ("drops", "I"),
    )


class unix_diag_req(nlmsg):
    """struct unix_diag_req (include/uapi/linux/unix_diag.h)."""

    fields = (
        ("sdiag_family", "B"),
        ("sdiag_protocol", "B"),
        ("__pad", "H"),
        ("udiag_states", "I"),
        ("udiag_ino", "I"),
        ("udiag_show", "I"),
        ("udiag_cookie", "Q"),
    )


class unix_diag_msg_full(nlmsg):
    """struct unix_diag_msg with the whole attribute map we ask for.

    UNIX_DIAG_NAME is raw bytes, not 'asciiz': an abstract name starts with NUL.
    """

    fields = (
        ("udiag_family", "B"),
        ("udiag_type", "B"),
        ("udiag_state", "B"),
        ("__pad", "B"),
        ("udiag_ino", "I"),
        ("udiag_cookie", "Q"),
    )
    nla_map = (
        ("UNIX_DIAG_NAME", "cdata"),
        ("UNIX_DIAG_VFS", "unix_diag_vfs"),
        ("UNIX_DIAG_PEER", "uint32"),
        ("UNIX_DIAG_ICONS", "array(uint32)"),
        ("UNIX_DIAG_RQLEN", "unix_diag_rqlen"),
        ("UNIX_DIAG_MEMINFO", "sk_meminfo"),
        ("UNIX_DIAG_SHUTDOWN", "uint8"),
        ("UNIX_DIAG_UID", "uint32"),
    )
    sk_meminfo = sk_meminfo

    class unix_diag_vfs(nla):
        fields = (("udiag_vfs_ino", "I"), ("udiag_vfs_dev", "I"))

    class unix_diag_rqlen(nla):
        fields = (("udiag_rqueue", "I"), ("udiag_wqueue", "I"))


class tcp_info_basic(nla):
    """The stable prefix of struct tcp_info (up to tcpi_total_retrans, Linux 2.6).

    The kernel sends a longer struct each release; decoding only this prefix
    keeps old and new kernels working. Byte 6 packs snd/rcv wscale (split_wscale).
    """

    fields = (
        ("tcpi_state", "B"),
        ("tcpi_ca_state", "B"),
        ("tcpi_retransmits", "B"),
        ("tcpi_probes", "B"),
        ("tcpi_backoff", "B"),
        ("tcpi_options", "B"),
        ("tcpi_wscale", "B"),
        ("tcpi_app_limited_bits", "B"),
        ("tcpi_rto", "I"),
        ("tcpi_ato", "I"),
        ("tcpi_snd_mss", "I"),
        ("tcpi_rcv_mss", "I"),
        ("tcpi_unacked", "I"),
        ("tcpi_sacked", "I"),
        ("tcpi_lost", "I"),
        ("tcpi_retrans", "I"),
        ("tcpi_fackets", "I"),
        ("tcpi_last_data_sent", "I"),
        ("tcpi_last_ack_sent", "I"),
        ("tcpi_last_data_recv", "I"),
        ("tcpi_last_ack_recv", "I"),
        ("tcpi_pmtu", "I"),
        ("tcpi_rcv_ssthresh", "I"),
        ("tcpi_rtt", "I"),
        ("tcpi_rttvar", "I"),
        ("tcpi_snd_ssthresh", "I"),
        ("tcpi_snd_cwnd", "I"),
        ("tcpi_advmss", "I"),
        ("tcpi_reordering", "I"),
        ("tcpi_rcv_rtt", "I"),
        ("tcpi_rcv_space", "I"),
        ("tcpi_total_retrans", "I"),
    )


# struct inet_diag_sockid, in both the request and the answer: ports and addresses in
# network byte order
_SOCKID = (
    ("idiag_sport", ">H"),
    ("idiag_dport", ">H"),
    ("idiag_src", ">4I"),
    ("idiag_dst", ">4I"),
    ("idiag_if", "I"),
    ("idiag_cookie", "Q"),
)


class inet_diag_req(nlmsg):
    """struct inet_diag_req_v2 (include/uapi/linux/inet_diag.h)."""

    fields = (
        ("sdiag_family", "B"),
        ("sdiag_protocol", "B"),
        ("idiag_ext", "B"),
        ("__pad", "B"),
        ("idiag_states", "I"),
        *_SOCKID,
    )


class inet_diag_msg_full(nlmsg):
    """struct inet_diag_msg + INET_DIAG_*: tcp_info read as its stable prefix, sk_meminfo
    typed; the attributes no handler reads are declared raw (kept as bytes)."""

    fields = (
        ("idiag_family", "B"),
        ("idiag_state", "B"),
        ("idiag_timer", "B"),
        ("idiag_retrans", "B"),
        *_SOCKID,
        ("idiag_expires", "I"),
        ("idiag_rqueue", "I"),
        ("idiag_wqueue", "I"),
        ("idiag_uid", "I"),
        ("idiag_inode", "I"),
    )
    nla_map = (
        ("INET_DIAG_NONE", "none"),
        ("INET_DIAG_MEMINFO", "inet_diag_meminfo"),
        ("INET_DIAG_INFO", "tcp_info_basic"),
        ("INET_DIAG_VEGASINFO", "hex"),
        ("INET_DIAG_CONG", "asciiz"),
        ("INET_DIAG_TOS", "hex"),
        ("INET_DIAG_TCLASS", "hex"),
        ("INET_DIAG_SKMEMINFO", "sk_meminfo"),
        ("INET_DIAG_SHUTDOWN", "uint8"),
        ("INET_DIAG_DCTCPINFO", "hex"),
        ("INET_DIAG_PROTOCOL", "hex"),
        ("INET_DIAG_SKV6ONLY", "uint8"),
        ("INET_DIAG_LOCALS", "hex"),
        ("INET_DIAG_PEERS", "hex"),
        ("INET_DIAG_PAD", "hex"),
        ("INET_DIAG_MARK", "hex"),
        ("INET_DIAG_BBRINFO", "hex"),
        ("INET_DIAG_CLASS_ID", "uint32"),
        ("INET_DIAG_MD5SIG", "hex"),
        ("INET_DIAG_ULP_INFO", "hex"),
        ("INET_DIAG_SK_BPF_STORAGES", "hex"),
        ("INET_DIAG_CGROUP_ID", "uint64"),
    )
    tcp_info_basic = tcp_info_basic
    sk_meminfo = sk_meminfo

    class inet_diag_meminfo(nla):
        fields = (
            ("idiag_rmem", "I"),
            ("idiag_wmem", "I"),
            ("idiag_fmem", "I"),
            ("idiag_tmem", "I"),
        )


class netlink_diag_req(nlmsg):
    """struct netlink_diag_req (include/uapi/linux/netlink_diag.h)."""

    fields = (
        ("sdiag_family", "B"),
        ("sdiag_protocol", "B"),
        ("__pad", "H"),
        ("ndiag_ino", "I"),
        ("ndiag_show", "I"),
        ("ndiag_cookie", "2I"),
    )


class netlink_diag_msg(nlmsg):
    """struct netlink_diag_msg + NETLINK_DIAG_* attributes."""

    fields = (
        ("ndiag_family", "B"),
        ("ndiag_type", "B"),
        ("ndiag_protocol", "B"),
        ("ndiag_state", "B"),
        ("ndiag_portid", "I"),
        ("ndiag_dst_portid", "I"),
        ("ndiag_dst_group", "I"),
        ("ndiag_ino", "I"),
        ("ndiag_cookie", "2I"),
    )
    nla_map = (
        ("NETLINK_DIAG_MEMINFO", "sk_meminfo"),
        # a bitmap of unsigned long words: bit n set = member of group n + 1
        ("NETLINK_DIAG_GROUPS", "cdata"),
        ("NETLINK_DIAG_RX_RING", "netlink_diag_ring"),  # mmap rings, gone since 4.6
        ("NETLINK_DIAG_TX_RING", "netlink_diag_ring"),
        ("NETLINK_DIAG_FLAGS", "uint32"),
    )
    sk_meminfo = sk_meminfo

    class netlink_diag_ring(nla):
        fields = (
            ("ndr_block_size", "I"),
            ("ndr_block_nr", "I"),
            ("ndr_frame_size", "I"),
            ("ndr_frame_nr", "I"),
        )


class packet_diag_req(nlmsg):
    """struct packet_diag_req (include/uapi/linux/packet_diag.h)."""

    fields = (
        ("sdiag_family", "B"),
        ("sdiag_protocol", "B"),
        ("__pad", "H"),
        ("pdiag_ino", "I"),
        ("pdiag_show", "I"),
        ("pdiag_cookie", "2I"),
    )


class packet_diag_msg(nlmsg):
    """struct packet_diag_msg + PACKET_DIAG_* attributes."""

    fields = (
        ("pdiag_family", "B"),
        ("pdiag_type", "B"),
        ("pdiag_num", "H"),  # protocol, host order (ntohs(po->num))
        ("pdiag_ino", "I"),
        ("pdiag_cookie", "2I"),
    )
    nla_map = (
        ("PACKET_DIAG_INFO", "packet_diag_info"),
        ("PACKET_DIAG_MCLIST", "array(packet_diag_mclist)"),
        ("PACKET_DIAG_RX_RING", "packet_diag_ring"),
        ("PACKET_DIAG_TX_RING", "packet_diag_ring"),
        ("PACKET_DIAG_FANOUT", "uint32"),
        ("PACKET_DIAG_UID", "uint32"),
        ("PACKET_DIAG_MEMINFO", "sk_meminfo"),
        ("PACKET_DIAG_FILTER", "cdata"),  # struct sock_filter[]
    )
    sk_meminfo = sk_meminfo

    class packet_diag_info(nla):
        fields = (
            ("pdi_index", "I"),
            ("pdi_version", "I"),
            ("pdi_reserve", "I"),
            ("pdi_copy_thresh", "I"),
            ("pdi_tstamp", "I"),
            ("pdi_flags", "I"),
        )

    class packet_diag_mclist(nla):
        fields = (
            ("pdmc_index", "I"),
            ("pdmc_count", "I"),
            ("pdmc_type", "H"),
            ("pdmc_alen", "H"),
            ("pdmc_addr", "32s"),  # MAX_ADDR_LEN
        )

    class packet_diag_ring(nla):
        fields = (
            ("pdr_block_size", "I"),
            ("pdr_block_nr", "I"),
            ("pdr_frame_size", "I"),
            ("pdr_frame_nr", "I"),
            ("pdr_retire_tmo", "I"),
            ("pdr_sizeof_priv", "I"),
            ("pdr_features", "I"),
        )


UNIX = Layout(unix_diag_msg_full)
INET = Layout(inet_diag_msg_full)
NETLINK = Layout(netlink_diag_msg)
PACKET = Layout(packet_diag_msg)


# --- requests and the connection ----------------------------------------

RECV_SIZE = 1 << 16  # the kernel fills at most ~32 KiB per dump skb


@dataclass
class Request:
    """One dump request: its declaration and field values (absent fields are zero)."""

    decl: type[nlmsg]
    values: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.values.get(name, 0)

    def encode(self, seq: int) -> bytes:
        """nlmsghdr (SOCK_DIAG_BY_FAMILY, a dump request) + the struct."""
        body = StructCodec(self.decl.__name__, self.decl.fields).encode(self.values)
        return NLMSG_HEADER.pack(NLMSG_HDRLEN + len(body), SOCK_DIAG_BY_FAMILY,
                                 NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


class DumpFailed(Exception):
    """The kernel refused one dump (NLMSG_ERROR): carries errno and the extended ack text."""

    def __init__(self, code: int, detail: str = "") -> None:
        self.code = code
        name = errno.errorcode.get(code, str(code))
        super().__init__(f"{name}: {detail}" if detail else name)


class DiagConnection:
    """One NETLINK_SOCK_DIAG socket, used for every dump of a snapshot."""

    def __init__(self) -> None:
        try:
            self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
            self._sock.bind((0, 0))
        except OSError as err:
            raise KernelUnsupported(
                "sock_diag netlink", f"socket(AF_NETLINK, NETLINK_SOCK_DIAG): {err.strerror}"
            ) from err
        self._seq = 0
        self.interrupted = False  # last dump had NLM_F_DUMP_INTR: may be inconsistent

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> DiagConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def dump(self, request: Request) -> Iterator[tuple[bytes, int, int]]:
        """Send one dump request; yield (buffer, start, end) of each reply message.

        Raises :class:`DumpFailed` when the kernel answers NLMSG_ERROR (or a
        DONE carrying an error), OSError when the socket itself fails.
        """
        self._seq += 1
        seq = self._seq
        self.interrupted = False
        self._sock.send(request.encode(seq))
        unpack = NLMSG_HEADER.unpack_from
        while True:
            buf = self._sock.recv(RECV_SIZE)
            off, size = 0, len(buf)
            while off + NLMSG_HDRLEN <= size:
                length, mtype, flags, mseq, _pid = unpack(buf, off)
                end = off + length
                if length < NLMSG_HDRLEN or end > size:
                    raise DumpFailed(errno.EBADMSG, f"netlink message of {length} bytes at {off}")
                if mseq == seq:
                    if flags & NLM_F_DUMP_INTR:
                        self.interrupted = True
                    if mtype == SOCK_DIAG_BY_FAMILY:
                        yield buf, off, end
                    elif mtype == NLMSG_ERROR:
                        raise _error_of(buf, off)
                    elif mtype == NLMSG_DONE:
                        if length >= NLMSG_HDRLEN + 4:
                            (status,) = struct.unpack_from("=i", buf, off + NLMSG_HDRLEN)
                            if status < 0:
                                raise DumpFailed(-status, "dump ended with an error")
                        return
                off += align4(length)


def _error_of(buf: bytes, off: int) -> DumpFailed:
    """The NLMSG_ERROR at `off`: struct nlmsgerr (int error; the request's nlmsghdr, or
    the whole request without NLM_F_CAPPED), then extended ack attributes with
    NLM_F_ACK_TLVS, of which NLMSGERR_ATTR_MSG is the kernel's text."""
    length, _type, flags, _seq, _pid = NLMSG_HEADER.unpack_from(buf, off)
    end = min(off + length, len(buf))
    if end < off + NLMSG_HDRLEN + 4:
        return DumpFailed(errno.EBADMSG, "an NLMSG_ERROR too short for its error code")
    (error,) = struct.unpack_from("=i", buf, off + NLMSG_HDRLEN)
    code = -error
    if code == 0:  # an ACK where a dump reply was expected
        return DumpFailed(errno.EPROTO, "unexpected ACK")
    detail = ""
    pos = off + NLMSG_HDRLEN + 4
    if flags & NLM_F_ACK_TLVS and pos + NLMSG_HDRLEN <= end:
        echoed = NLMSG_HEADER.unpack_from(buf, pos)[0]
        pos += NLMSG_HDRLEN if flags & NLM_F_CAPPED else align4(max(echoed, NLMSG_HDRLEN))
        while pos + NLA_HDRLEN <= end:
            alen, atype = struct.unpack_from("=HH", buf, pos)
            if alen < NLA_HDRLEN or pos + alen > end:
                break
            if atype == NLMSGERR_ATTR_MSG:
                detail = buf[pos + NLA_HDRLEN : pos + alen].split(b"\0", 1)[0].decode(
                    "utf-8", "replace")
            pos += align4(alen)
    return DumpFailed(code, detail)


def unix_request() -> Request:
    """Every unix socket with every attribute a restore needs."""
    req = Request(unix_diag_req)
    req.values["sdiag_family"] = socket.AF_UNIX
    req.values["udiag_states"] = 0xFFFFFFFF
    req.values["udiag_show"] = (
        UDIAG_SHOW_NAME
        | UDIAG_SHOW_VFS
        | UDIAG_SHOW_PEER
        | UDIAG_SHOW_ICONS
        | UDIAG_SHOW_RQLEN
        | UDIAG_SHOW_MEMINFO
        | UDIAG_SHOW_UID
    )
    return req


def inet_request(family: int, protocol: int) -> Request:
    """inet_diag_req_v2 for one family/protocol, owned states only, with tcp_info + sk_meminfo."""
    req = Request(inet_diag_req)
    req.values["sdiag_family"] = family
    req.values["sdiag_protocol"] = protocol
    req.values["idiag_ext"] = inet_ext_bit(INET_DIAG_INFO) | inet_ext_bit(INET_DIAG_SKMEMINFO)
    # raw_diag reads this byte as sdiag_raw_protocol; IPPROTO_RAW means "every protocol"
    req.values["__pad"] = socket.IPPROTO_RAW if protocol == socket.IPPROTO_RAW else 0
    req.values["idiag_states"] = OWNED_STATES
    return req


def netlink_request() -> Request:
    req = Request(netlink_diag_req)
    req.values["sdiag_family"] = socket.AF_NETLINK
    req.values["sdiag_protocol"] = NDIAG_PROTO_ALL
    req.values["ndiag_show"] = NDIAG_SHOW_MEMINFO | NDIAG_SHOW_GROUPS | NDIAG_SHOW_FLAGS
    req.values["ndiag_cookie"] = (0, 0)
    return req


def packet_request() -> Request:
    req = Request(packet_diag_req)
    req.values["sdiag_family"] = socket.AF_PACKET
    req.values["pdiag_show"] = (
        PACKET_SHOW_INFO
        | PACKET_SHOW_MCLIST
        | PACKET_SHOW_RING_CFG
        | PACKET_SHOW_FANOUT
        | PACKET_SHOW_MEMINFO
        | PACKET_SHOW_FILTER
    )
    req.values["pdiag_cookie"] = (0, 0)
    return req
