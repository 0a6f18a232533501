"""Real sockets of every family, built in the test process, closed even when a test fails.

sock_diag reports every socket of the network namespace, whoever owns it, so
building them here is as real as in a child; the fds (and so the inodes) are
ours to compare with. Each builder is a context manager yielding a small record
of what it built: the sockets, their inodes, and the facts a dump must show.
"""

from __future__ import annotations

import os
import socket
import struct
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
RTMGRP_LINK = 0x1  # group 1
RTMGRP_IPV4_IFADDR = 0x10  # group 5
RTNLGRP_IPV6_IFADDR = 9

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_VERSION = 10
PACKET_FANOUT = 18
PACKET_MR_ALLMULTI = 2
TPACKET_V2 = 1
PACKET_FANOUT_HASH = 0
ETH_P_IP = 0x0800
FANOUT_ID = 4242


def inode_of(sock: socket.socket) -> int:
    """The socket's inode, as /proc/PID/fd/N shows it (socket:[INODE])."""
    return os.fstat(sock.fileno()).st_ino


@dataclass
class Built:
    """Sockets by role, plus whatever facts the builder knows."""

    socks: dict[str, socket.socket] = field(default_factory=dict)
    facts: dict[str, object] = field(default_factory=dict)

    def ino(self, role: str) -> int:
        return inode_of(self.socks[role])

    def inodes(self) -> set[int]:
        return {inode_of(s) for s in self.socks.values()}


@contextmanager
def _closing(built: Built) -> Iterator[Built]:
    with ExitStack() as stack:
        for s in built.socks.values():
            stack.callback(s.close)
        yield built


@contextmanager
def unix_stream_pair(payload: bytes = b"queued!") -> Iterator[Built]:
    """socketpair(AF_UNIX, SOCK_STREAM); `payload` written by a, unread by b."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    built = Built({"a": a, "b": b}, {"payload": payload})
    with _closing(built):
        a.sendall(payload)
        yield built


@contextmanager
def unix_listener_with_pending(directory: Path, backlog: int = 5) -> Iterator[Built]:
    """A path-bound listening socket and a client whose connection nobody accepted."""
    path = directory / "listen.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    built = Built({"listener": listener}, {"path": path, "backlog": backlog})
    with _closing(built):
        listener.bind(str(path))
        listener.listen(backlog)
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        built.socks["client"] = client
        try:
            client.connect(str(path))
            yield built
        finally:
            client.close()


@contextmanager
def unix_abstract() -> Iterator[Built]:
    """A SEQPACKET socket bound to an abstract name holding a NUL in the middle."""
    name = b"\0criu-model-test-" + uuid.uuid4().hex[:8].encode() + b"\0tail"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    built = Built({"abstract": s}, {"name": name})
    with _closing(built):
        s.bind(name)
        yield built


@contextmanager
def unix_dgram(directory: Path, payload: bytes = b"datagram") -> Iterator[Built]:
    """A bound dgram receiver and a sender connected to it; one datagram unread."""
    path = directory / "dgram.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    built = Built({"receiver": receiver, "sender": sender}, {"path": path, "payload": payload})
    with _closing(built):
        receiver.bind(str(path))
        sender.connect(str(path))
        sender.send(payload)
        yield built


@contextmanager
def tcp_connection(family: int, payload: bytes = b"x" * 100, backlog: int = 7) -> Iterator[Built]:
    """Listener, client and accepted socket on loopback; `payload` unread by the accepted side.

    The client shrinks SO_RCVBUF before connecting so its receive window scale
    differs from the server's: that tells the two wscale nibbles apart.
    """
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    listener = socket.socket(family, socket.SOCK_STREAM)
    client = socket.socket(family, socket.SOCK_STREAM)
    built = Built({"listener": listener, "client": client},
                  {"payload": payload, "backlog": backlog})
    with _closing(built):
        listener.bind((host, 0))
        listener.listen(backlog)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(listener.getsockname()[:2])
        accepted, _ = listener.accept()
        built.socks["accepted"] = accepted
        try:
            client.sendall(payload)
            _wait_readable(accepted, len(payload))
            yield built
        finally:
            accepted.close()


def _wait_readable(sock: socket.socket, nbytes: int, timeout: float = 2.0) -> None:
    """Loopback delivery is asynchronous (softirq): wait until the bytes are queued."""
    deadline = time.monotonic() + timeout
    while len(sock.recv(nbytes, socket.MSG_PEEK | socket.MSG_DONTWAIT)) < nbytes:
        if time.monotonic() > deadline:
            raise TimeoutError("loopback data did not arrive")
        time.sleep(0.005)


@contextmanager
def udp_socket(family: int, v6only: bool | None = None) -> Iterator[Built]:
    """A bound UDP socket that sent itself one datagram, unread.

    A v6 socket that is not v6only binds the wildcard: binding ::1 would make
    the kernel set ipv6only itself (inet6_bind).
    """
    host = "127.0.0.1" if family == socket.AF_INET else ("::1" if v6only else "::")
    s = socket.socket(family, socket.SOCK_DGRAM)
    built = Built({"udp": s}, {"v6only": v6only})
    with _closing(built):
        if v6only is not None:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
        s.bind((host, 0))
        port = s.getsockname()[1]
        s.sendto(b"ping", ("127.0.0.1" if family == socket.AF_INET else "::1", port))
        _wait_readable(s, 4)
        yield built


@contextmanager
def netlink_route() -> Iterator[Built]:
    """NETLINK_ROUTE socket in groups 1 and 5 (bind mask) and 9 (ADD_MEMBERSHIP)."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    built = Built({"netlink": s}, {"groups": [1, 5, RTNLGRP_IPV6_IFADDR]})
    with _closing(built):
        s.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR))
        s.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, RTNLGRP_IPV6_IFADDR)
        built.facts["portid"] = s.getsockname()[0]
        yield built


@contextmanager
def packet_socket() -> Iterator[Built]:
    """AF_PACKET SOCK_RAW for ETH_P_IP bound to lo, TPACKET_V2, ALLMULTI membership, fanout."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    ifindex = socket.if_nametoindex("lo")
    fanout = FANOUT_ID | (PACKET_FANOUT_HASH << 16)
    built = Built(
        {"packet": s},
        {"ifindex": ifindex, "protocol": ETH_P_IP, "version": TPACKET_V2, "fanout": fanout},
    )
    with _closing(built):
        s.bind(("lo", ETH_P_IP))
        s.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
        # struct packet_mreq { int mr_ifindex; unsigned short mr_type, mr_alen; u8 mr_address[8]; }
        s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP,
                     struct.pack("iHH8s", ifindex, PACKET_MR_ALLMULTI, 0, b""))
        s.setsockopt(SOL_PACKET, PACKET_FANOUT, fanout)
        yield built


@contextmanager
def many_socketpairs(pairs: int) -> Iterator[list[socket.socket]]:
    """`pairs` unix socketpairs (2 * pairs sockets), all closed afterwards."""
    socks: list[socket.socket] = []
    try:
        for _ in range(pairs):
            socks.extend(socket.socketpair())
        yield socks
    finally:
        for s in socks:
            s.close()
