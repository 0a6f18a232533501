"""open_by_handle_at(2): reach a file by the handle inotify/fanotify fdinfo prints.

A watch names its target only by (device, inode, file handle), not by path:
opening the handle is how a restorer re-adds the watch, and how the dry run
learns whether the target still exists (ESTALE when it was deleted).
Needs CAP_DAC_READ_SEARCH.
"""

from __future__ import annotations

import ctypes
import os

from criu_model.kernel.libc import check, libc

MAX_HANDLE_SZ = 128


class _FileHandle(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int),
                ("f_handle", ctypes.c_ubyte * MAX_HANDLE_SZ)]


_open_by_handle_at = libc.open_by_handle_at
_open_by_handle_at.argtypes = [ctypes.c_int, ctypes.POINTER(_FileHandle), ctypes.c_int]
_open_by_handle_at.restype = ctypes.c_int


def open_by_handle(mount_fd: int, handle_type: int, handle: bytes,
                   flags: int = os.O_PATH | os.O_CLOEXEC) -> int:
    """An fd for the file `handle` names on the filesystem of `mount_fd` (caller closes it).

    mount_fd must be a real open file (O_PATH gives EBADF).

    OSError: ESTALE when the file is gone, EPERM without CAP_DAC_READ_SEARCH,
    EINVAL for a handle the filesystem does not accept.
    """
    if len(handle) > MAX_HANDLE_SZ:
        raise OSError(22, f"file handle of {len(handle)} bytes is longer than {MAX_HANDLE_SZ}")
    fh = _FileHandle(len(handle), handle_type)
    ctypes.memmove(fh.f_handle, handle, len(handle))
    return check(_open_by_handle_at(mount_fd, ctypes.byref(fh), flags), "open_by_handle_at")
