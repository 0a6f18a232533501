"""pidfd_open(2): a file descriptor that names one process (Linux 5.3).

Unlike a pid it cannot be recycled, so holding one across a dump tells us
whether the process we saw at the start is still the same process.
"""

from __future__ import annotations

import ctypes
import os

from criu_model.kernel.libc import syscall

PIDFD_NONBLOCK = os.O_NONBLOCK  # Linux 5.10


def pidfd_open(pid: int, flags: int = 0) -> int:
    """Open a pidfd for `pid`; OSError(ESRCH) if gone, ENOSYS before 5.3.

    The returned fd is close-on-exec; the caller closes it.
    """
    opener = getattr(os, "pidfd_open", None)
    if opener is not None:
        return int(opener(pid, flags))
    return syscall("pidfd_open", ctypes.c_int(pid), ctypes.c_uint(flags))  # pragma: no cover
