"""The sock_diag protocol: message layouts, requests, and one dump connection.

* pyroute2 declares the unix and inet diag messages like the C headers
  (``fields`` + ``nla_map``) but has no netlink_diag or packet_diag classes, and
  its unix attribute map stops before ``UNIX_DIAG_UID``. We declare the missing
  ones the same way, from include/uapi/linux/{unix,inet,netlink,packet}_diag.h,
  and compile all four with :mod:`nlcodec` (pyroute2's own decoder is ~30 µs
  per message; tests/collect/test_sockets.py checks both agree).
* Requests are pyroute2 messages, encoded by pyroute2.
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

from pyroute2.netlink import (
    NETLINK_SOCK_DIAG,
    NLM_F_DUMP,
    NLM_F_DUMP_INTR,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    nla,
    nlmsg,
    nlmsgerr,
)
from pyroute2.netlink.diag import inet_diag_msg, inet_diag_req, unix_diag_msg, unix_diag_req

from criu_model.collect.nlcodec import NLMSG_HDRLEN, NLMSG_HEADER, Layout, align4
from criu_model.errors import KernelUnsupported

# --- constants (include/uapi/linux/*_diag.h, sock_diag.h, tcp.h) -------------

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


# --- declarations missing from pyroute2 -------------------------------------


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


class unix_diag_msg_full(unix_diag_msg):
    """pyroute2's unix_diag_msg with the whole attribute map we ask for.

    UNIX_DIAG_NAME is raw bytes, not 'asciiz': an abstract name starts with NUL.
    """

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


class inet_diag_msg_full(inet_diag_msg):
    """pyroute2's inet_diag_msg, with tcp_info read as its stable prefix and sk_meminfo typed."""

    nla_map = tuple(
        (name, {"INET_DIAG_INFO": "tcp_info_basic", "INET_DIAG_SKMEMINFO": "sk_meminfo"}.get(
            name, kind))
        for name, kind in inet_diag_msg.nla_map
    )
    tcp_info_basic = tcp_info_basic
    sk_meminfo = sk_meminfo


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

    def dump(self, request: nlmsg) -> Iterator[tuple[bytes, int, int]]:
        """Send one dump request; yield (buffer, start, end) of each reply message.

        Raises :class:`DumpFailed` when the kernel answers NLMSG_ERROR (or a
        DONE carrying an error), OSError when the socket itself fails.
        """
        self._seq += 1
        seq = self._seq
        self.interrupted = False
        request["header"] = {
            "type": SOCK_DIAG_BY_FAMILY,
            "flags": NLM_F_REQUEST | NLM_F_DUMP,
            "sequence_number": seq,
            "pid": 0,
        }
        request.encode()
        self._sock.send(request.data)
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
    """The NLMSG_ERROR at `off`, decoded by pyroute2's nlmsgerr (rare path)."""
    msg = nlmsgerr(buf, offset=off)
    msg.decode()
    code = -int(msg["error"])
    if code == 0:  # an ACK where a dump reply was expected
        return DumpFailed(errno.EPROTO, "unexpected ACK")
    return DumpFailed(code, msg.get_attr("NLMSGERR_ATTR_MSG") or "")


def unix_request() -> nlmsg:
    """Every unix socket with every attribute a restore needs."""
    req = unix_diag_req()
    req["sdiag_family"] = socket.AF_UNIX
    req["udiag_states"] = 0xFFFFFFFF
    req["udiag_show"] = (
        UDIAG_SHOW_NAME
        | UDIAG_SHOW_VFS
        | UDIAG_SHOW_PEER
        | UDIAG_SHOW_ICONS
        | UDIAG_SHOW_RQLEN
        | UDIAG_SHOW_MEMINFO
        | UDIAG_SHOW_UID
    )
    return req


def inet_request(family: int, protocol: int) -> nlmsg:
    """inet_diag_req_v2 for one family/protocol, owned states only, with tcp_info + sk_meminfo."""
    req = inet_diag_req()
    req["sdiag_family"] = family
    req["sdiag_protocol"] = protocol
    req["idiag_ext"] = inet_ext_bit(INET_DIAG_INFO) | inet_ext_bit(INET_DIAG_SKMEMINFO)
    # raw_diag reads this byte as sdiag_raw_protocol; IPPROTO_RAW means "every protocol"
    req["__pad"] = socket.IPPROTO_RAW if protocol == socket.IPPROTO_RAW else 0
    req["idiag_states"] = OWNED_STATES
    return req


def netlink_request() -> nlmsg:
    req = netlink_diag_req()
    req["sdiag_family"] = socket.AF_NETLINK
    req["sdiag_protocol"] = NDIAG_PROTO_ALL
    req["ndiag_show"] = NDIAG_SHOW_MEMINFO | NDIAG_SHOW_GROUPS | NDIAG_SHOW_FLAGS
    req["ndiag_cookie"] = (0, 0)
    return req


def packet_request() -> nlmsg:
    req = packet_diag_req()
    req["sdiag_family"] = socket.AF_PACKET
    req["pdiag_show"] = (
        PACKET_SHOW_INFO
        | PACKET_SHOW_MCLIST
        | PACKET_SHOW_RING_CFG
        | PACKET_SHOW_FANOUT
        | PACKET_SHOW_MEMINFO
        | PACKET_SHOW_FILTER
    )
    req["pdiag_cookie"] = (0, 0)
    return req
