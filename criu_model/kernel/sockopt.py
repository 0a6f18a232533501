"""Read-only socket queries on an fd we hold: getsockopt, getsockname, getpeername, ioctl.

No Python ``socket`` object is made from the fd: its constructor may call
``fcntl(O_NONBLOCK)`` (socket.setdefaulttimeout), a write to the open file
description, which a pidfd_getfd copy shares with the target. Every call here
only reads; ``SO_ERROR`` is deliberately absent (reading it clears sk_err).
"""

from __future__ import annotations

import ctypes
import fcntl
import socket
import struct
import termios

from criu_model.kernel.libc import libc

_getsockopt = libc.getsockopt
_getsockopt.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
                        ctypes.POINTER(ctypes.c_uint32))
_getsockname = libc.getsockname
_getsockname.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32))
_getpeername = libc.getpeername
_getpeername.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32))

SOL_SOCKET = socket.SOL_SOCKET
SO_TYPE, SO_PROTOCOL, SO_DOMAIN, SO_ACCEPTCONN = 3, 38, 39, 30
SO_BINDTODEVICE = 25
SO_LINGER = 13
TCP_INFO = 11
SIOCINQ = termios.FIONREAD
SIOCOUTQ = termios.TIOCOUTQ
_INT = struct.Struct("i")
_SOCKADDR_MAX = 128  # sizeof(struct sockaddr_storage)


def getsockopt(fd: int, level: int, name: int, size: int = 4) -> bytes:
    """The option's bytes as the kernel returns them; OSError when refused."""
    buf = ctypes.create_string_buffer(size)
    length = ctypes.c_uint32(size)
    if _getsockopt(fd, level, name, buf, ctypes.byref(length)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"getsockopt({level}, {name})")
    return buf.raw[: length.value]


def getsockopt_int(fd: int, level: int, name: int) -> int:
    return _INT.unpack(getsockopt(fd, level, name).ljust(4, b"\0")[:4])[0]


def _name(call: ctypes._CFuncPtr, fd: int, what: str) -> bytes:
    buf = ctypes.create_string_buffer(_SOCKADDR_MAX)
    length = ctypes.c_uint32(_SOCKADDR_MAX)
    if call(fd, buf, ctypes.byref(length)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, what)
    return buf.raw[: min(length.value, _SOCKADDR_MAX)]


def sockname(fd: int) -> bytes:
    """getsockname: the raw sockaddr."""
    return _name(_getsockname, fd, "getsockname")


def peername(fd: int) -> bytes:
    """getpeername: the raw sockaddr (OSError ENOTCONN when not connected)."""
    return _name(_getpeername, fd, "getpeername")


def queued(fd: int, request: int) -> int:
    """SIOCINQ / SIOCOUTQ: bytes in the receive / send queue (only counted, never read)."""
    return _INT.unpack(fcntl.ioctl(fd, request, bytes(_INT.size)))[0]


def parse_sockaddr(raw: bytes) -> tuple[int, str, int]:
    """(family, address text, port) of a sockaddr; netlink: ("groups HEX", nl_pid).

    An unknown family gives its bytes in hex and port 0.
    """
    if len(raw) < 2:
        return 0, "", 0
    family = struct.unpack_from("H", raw)[0]
    if family == socket.AF_INET and len(raw) >= 8:
        return family, socket.inet_ntop(socket.AF_INET, raw[4:8]), \
            struct.unpack_from("!H", raw, 2)[0]
    if family == socket.AF_INET6 and len(raw) >= 24:
        return family, socket.inet_ntop(socket.AF_INET6, raw[8:24]), \
            struct.unpack_from("!H", raw, 2)[0]
    if family == socket.AF_NETLINK and len(raw) >= 12:
        pid, groups = struct.unpack_from("II", raw, 4)
        return family, f"groups {groups:x}", pid
    return family, raw[2:].hex(), 0
