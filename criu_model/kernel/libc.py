"""The one place that loads libc and turns a -1 return into OSError."""

from __future__ import annotations

import ctypes
import functools
import os

libc = ctypes.CDLL(None, use_errno=True)
_syscall = libc.syscall
_syscall.restype = ctypes.c_long

# Syscall numbers we call directly (no glibc wrapper in every glibc we support).
_SYSCALLS: dict[str, dict[str, int]] = {
    "x86_64": {"kcmp": 312, "clone3": 435, "pidfd_open": 434, "pidfd_send_signal": 424,
               "pidfd_getfd": 438, "clone": 56, "vfork": 58},
    "aarch64": {"kcmp": 272, "clone3": 435, "pidfd_open": 434, "pidfd_send_signal": 424,
                "pidfd_getfd": 438, "clone": 220},  # no vfork syscall: glibc uses clone
}


@functools.cache
def syscall_number(name: str) -> int:
    """Number of a syscall on this architecture; KeyError if we do not know it.

    Cached: kcmp runs thousands of times per dump. The machine is uname's (what
    platform.machine() returns, without importing platform: 1 ms of start-up).
    """
    return _SYSCALLS[os.uname().machine][name]


def check(ret: int, what: str) -> int:
    """Raise OSError (with errno) when a libc call returned -1."""
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def syscall(name: str, *args: int | ctypes._SimpleCData | ctypes.c_void_p) -> int:
    """Call a raw syscall by name; errors come back as OSError."""
    return check(_syscall(ctypes.c_long(syscall_number(name)), *args), name)
