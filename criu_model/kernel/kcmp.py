"""kcmp(2): do two tasks share one kernel object? (Linux 3.5, CONFIG_KCMP).

Returns an ordering, not just equal/not-equal, so that callers can sort
objects and find sharing groups in O(n log n) instead of comparing all pairs.
Errors come back as ``OSError`` (EPERM: no ptrace read access to a pid,
EBADF: no such fd, ENOSYS: kernel built without kcmp).
"""

from __future__ import annotations

import ctypes
import enum
import functools
from collections.abc import Callable

from criu_model.kernel.libc import check, libc, syscall, syscall_number


class KcmpType(enum.IntEnum):
    """The `type` argument, from <linux/kcmp.h>."""

    FILE = 0  # idx1/idx2 are fds: same open file description?
    VM = 1
    FILES = 2  # fd table
    FS = 3  # root, cwd, umask
    SIGHAND = 4
    IO = 5
    SYSVSEM = 6
    EPOLL_TFD = 7  # Linux 4.13: is a file registered in an epoll instance?


class KcmpResult(enum.IntEnum):
    """What kcmp returns: an arbitrary but stable ordering of kernel pointers."""

    EQUAL = 0
    LESS = 1
    GREATER = 2
    NOT_EQUAL = 3  # not equal, and no ordering available


class KcmpEpollSlot(ctypes.Structure):
    """struct kcmp_epoll_slot: the target file as registered in an epoll fd."""

    _fields_ = [("efd", ctypes.c_uint32), ("tfd", ctypes.c_uint32), ("toff", ctypes.c_uint32)]


# syscall(2) with its six integer arguments declared: ctypes converts plain ints
# itself, so a call costs no wrapper objects (a dump makes thousands of calls).
_KCMP_CALL = ctypes.CFUNCTYPE(ctypes.c_long, ctypes.c_long, ctypes.c_long, ctypes.c_long,
                              ctypes.c_long, ctypes.c_ulong, ctypes.c_ulong,
                              use_errno=True)(ctypes.cast(libc.syscall, ctypes.c_void_p).value)
_RESULTS = tuple(KcmpResult)  # indexed by the return value: cheaper than KcmpResult(ret)


def kcmp(pid1: int, pid2: int, kind: KcmpType, idx1: int = 0, idx2: int = 0) -> KcmpResult:
    """Compare one kernel object of `pid1` with one of `pid2`."""
    if kind is KcmpType.EPOLL_TFD:
        raise ValueError("use kcmp_epoll_tfd() for KcmpType.EPOLL_TFD")
    ret = _KCMP_CALL(_nr(), pid1, pid2, kind, idx1, idx2)
    if 0 <= ret < len(_RESULTS):
        return _RESULTS[ret]
    return KcmpResult(check(ret, "kcmp"))  # -1: OSError; anything else: ValueError


RawKcmp = Callable[[int, int, int, int, int], int]


def raw_kcmp() -> RawKcmp:
    """kcmp(2) itself, its number bound: ``(pid1, pid2, type, idx1, idx2) -> int``.

    The raw return: 0-2 as :class:`KcmpResult`, -1 on failure (errno not
    read), 3 for an unordered answer. For the sharing pass's binary searches
    (thousands of calls, ~1.2 µs each this way, ~1.6 µs through :func:`kcmp`),
    which redo a call that is not 0-2 through :func:`kcmp` for its meaning.
    """
    return functools.partial(_KCMP_CALL, _nr())


def _nr() -> int:
    return syscall_number("kcmp")  # KeyError on an architecture we do not know


def kcmp_epoll_tfd(pid1: int, fd1: int, pid2: int, epoll_fd: int, target_fd: int,
                   target_off: int = 0) -> KcmpResult:
    """Compare `pid1`'s fd `fd1` with the file `target_fd` (its `target_off`-th
    registration) watched by epoll fd `epoll_fd` of `pid2`.

    Needed because an epoll target is identified by the fd number it had when
    added, which may since have been closed or reused.
    """
    slot = KcmpEpollSlot(epoll_fd, target_fd, target_off)
    ret = syscall("kcmp", ctypes.c_long(pid1), ctypes.c_long(pid2),
                  ctypes.c_long(KcmpType.EPOLL_TFD), ctypes.c_ulong(fd1),
                  ctypes.c_void_p(ctypes.addressof(slot)))
    return KcmpResult(ret)
