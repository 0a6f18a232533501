"""Identify a socket sock_diag does not report, with read-only queries on a pidfd_getfd copy.

sock_diag lists sockets from the protocol hash tables: an unbound or
unconnected TCP/UDP socket, an ICMP ping socket, a raw socket on a kernel
without raw diag, an unbound netlink socket are in none of them. A copy of the
target's fd (``pidfd_getfd``, the same open file description) answers
``SO_DOMAIN``/``SO_TYPE``/``SO_PROTOCOL``, ``getsockname``/``getpeername``,
``SO_ACCEPTCONN``, ``TCP_INFO`` and the options a restore sets again; all of
them only read (``SO_ERROR``, which clears the pending error, is never asked).

Receiving the copy is the one write: ``__receive_sock`` (net/core/sock.c) sets
the socket's net_prio index and net_cls class id to the *receiver's*
cgroup's. That is a no-op only when neither controller is attached to a
cgroup v1 hierarchy (then every task is in their root: class id 0, prio index
of the root css, what every socket got at creation). Equal cgroups of dumper
and target are not enough: a socket keeps the class id of the cgroup it was
made in. So sockets are copied only when ``receive_is_harmless()`` says so.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import struct

from criu_model.images.pb import files_pb2
from criu_model.kernel import sockopt
from criu_model.kernel.sockopt import SOL_SOCKET

_SOL_IP, _SOL_IPV6, _SOL_TCP = socket.IPPROTO_IP, socket.IPPROTO_IPV6, socket.IPPROTO_TCP

# (level, option number, name) of integer options a restore sets again.
_SOCKET_INTS = ((SOL_SOCKET, 2, "SO_REUSEADDR"), (SOL_SOCKET, 15, "SO_REUSEPORT"),
                (SOL_SOCKET, 9, "SO_KEEPALIVE"), (SOL_SOCKET, 6, "SO_BROADCAST"),
                (SOL_SOCKET, 10, "SO_OOBINLINE"), (SOL_SOCKET, 7, "SO_SNDBUF"),
                (SOL_SOCKET, 8, "SO_RCVBUF"), (SOL_SOCKET, 12, "SO_PRIORITY"),
                (SOL_SOCKET, 36, "SO_MARK"), (SOL_SOCKET, 18, "SO_RCVLOWAT"),
                (SOL_SOCKET, 16, "SO_PASSCRED"))
_IP_INTS = ((_SOL_IP, 1, "IP_TOS"), (_SOL_IP, 2, "IP_TTL"), (_SOL_IP, 15, "IP_FREEBIND"),
            (_SOL_IP, 19, "IP_TRANSPARENT"), (_SOL_IP, 11, "IP_RECVERR"))
_RAW_INTS = ((_SOL_IP, 3, "IP_HDRINCL"),)
_IPV6_INTS = ((_SOL_IPV6, 26, "IPV6_V6ONLY"), (_SOL_IPV6, 16, "IPV6_UNICAST_HOPS"),
              (_SOL_IPV6, 67, "IPV6_TCLASS"), (_SOL_IPV6, 25, "IPV6_RECVERR"))
_TCP_INTS = ((_SOL_TCP, 1, "TCP_NODELAY"), (_SOL_TCP, 3, "TCP_CORK"),
             (_SOL_TCP, 2, "TCP_MAXSEG"), (_SOL_TCP, 4, "TCP_KEEPIDLE"),
             (_SOL_TCP, 5, "TCP_KEEPINTVL"), (_SOL_TCP, 6, "TCP_KEEPCNT"),
             (_SOL_TCP, 18, "TCP_USER_TIMEOUT"))
_LINGER = struct.Struct("ii")

CGROUPS = "/proc/cgroups"


@functools.cache
def receive_is_harmless(cgroups: str = CGROUPS) -> tuple[bool, str]:
    """(True, "") when receiving a socket changes nothing of it; else (False, why).

    /proc/cgroups: "subsys hierarchy num_cgroups enabled"; hierarchy 0 means
    the controller is on no v1 hierarchy (Linux 2.6.24 format).
    """
    try:
        with open(cgroups, "rb") as f:
            lines = f.read().split(b"\n")
    except OSError as err:
        return False, f"{cgroups}: {err.strerror}: cannot tell whether net_cls/net_prio are used"
    on_v1 = []
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] in (b"net_cls", b"net_prio") and words[1] != b"0":
            on_v1.append(words[0].decode())
    if on_v1:
        return False, ("not probed: pidfd_getfd on a socket re-charges it to the dumper's "
                       f"{'/'.join(on_v1)} cgroup (__receive_sock), in use on cgroup v1 here")
    return True, ""


def identify(copy: int) -> files_pb2.SocketProbe:
    """Everything read-only queries tell about the socket behind ``copy``.

    A unix socket gets domain/type/protocol only: unix_diag reports them all.
    Options a kind does not have (EOPNOTSUPP, ENOPROTOOPT) are left out.
    """
    probe = files_pb2.SocketProbe(
        domain=sockopt.getsockopt_int(copy, SOL_SOCKET, sockopt.SO_DOMAIN),
        type=sockopt.getsockopt_int(copy, SOL_SOCKET, sockopt.SO_TYPE),
        protocol=sockopt.getsockopt_int(copy, SOL_SOCKET, sockopt.SO_PROTOCOL))
    if probe.domain == socket.AF_UNIX:
        return probe
    probe.listening = bool(_int(copy, SOL_SOCKET, sockopt.SO_ACCEPTCONN))
    _, probe.src, probe.sport = _address(sockopt.sockname, copy)
    _, probe.dst, probe.dport = _address(sockopt.peername, copy)
    if probe.domain == socket.AF_NETLINK and (probe.dst, probe.dport) == ("groups 0", 0):
        probe.dst = ""  # netlink's getpeername answers the kernel (port 0) when unconnected
    options = _SOCKET_INTS
    inet = probe.domain in (socket.AF_INET, socket.AF_INET6)
    if inet:
        options += _IPV6_INTS if probe.domain == socket.AF_INET6 else _IP_INTS
        if probe.type == socket.SOCK_RAW:
            options += _RAW_INTS
        if probe.protocol == socket.IPPROTO_TCP and probe.type == socket.SOCK_STREAM:
            options += _TCP_INTS
            with contextlib.suppress(OSError):
                probe.tcp_state = sockopt.getsockopt(copy, _SOL_TCP, sockopt.TCP_INFO, 8)[0]
    for level, number, name in options:
        value = _int(copy, level, number)
        if value is not None:
            probe.options[name] = value
    try:
        onoff, linger = _LINGER.unpack(sockopt.getsockopt(copy, SOL_SOCKET, sockopt.SO_LINGER,
                                                          _LINGER.size))
        probe.options["SO_LINGER.onoff"], probe.options["SO_LINGER.linger"] = onoff, linger
    except (OSError, struct.error):
        pass
    with contextlib.suppress(OSError):
        probe.bound_device = sockopt.getsockopt(copy, SOL_SOCKET, sockopt.SO_BINDTODEVICE,
                                                16).rstrip(b"\0").decode(errors="replace")
    # Queues of TCP and raw sockets only: UDP's SIOCINQ (first_packet_length) drops
    # packets with bad checksums from the queue, which is not only a read.
    counted = probe.type == socket.SOCK_RAW or probe.protocol == socket.IPPROTO_TCP
    if inet and counted and not probe.listening:
        for field, request in (("rqueue", sockopt.SIOCINQ), ("wqueue", sockopt.SIOCOUTQ)):
            with contextlib.suppress(OSError):
                setattr(probe, field, sockopt.queued(copy, request))
    return probe


def _int(fd: int, level: int, name: int) -> int | None:
    try:
        return sockopt.getsockopt_int(fd, level, name)
    except OSError:
        return None


def _address(call: object, fd: int) -> tuple[int, str, int]:
    try:
        return sockopt.parse_sockaddr(call(fd))  # type: ignore[operator]
    except OSError:
        return 0, "", 0
