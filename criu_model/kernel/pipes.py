"""Copy the bytes queued in a pipe without taking them out: tee(2) into a pipe of ours.

tee() duplicates the source pipe's buffers into another pipe (the pages are
shared, their reference counts raised) and leaves the source as it was: the
reader still reads every byte, in order. It needs the source open for
reading; a pipe held only by its write end cannot be looked into without
adding a reader, which we never do. CRIU dumps pipe data the same way.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os

from criu_model.kernel.libc import libc

F_SETPIPE_SZ = 1031
F_GETPIPE_SZ = 1032
SPLICE_F_NONBLOCK = 2

_tee = libc.tee
_tee.restype = ctypes.c_ssize_t
_tee.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_size_t, ctypes.c_uint)


def peek_pipe(fd: int, limit: int) -> bytes:
    """Up to ``limit`` bytes queued in the pipe read through ``fd``, left in place.

    ``fd`` must be open for reading (EBADF otherwise). Never blocks: an empty
    pipe gives b"".
    """
    want = min(limit, fcntl.fcntl(fd, F_GETPIPE_SZ))
    if want <= 0:
        return b""
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if fcntl.fcntl(w, F_GETPIPE_SZ) < want:
            fcntl.fcntl(w, F_SETPIPE_SZ, want)
        got = _tee(fd, w, want, SPLICE_F_NONBLOCK)
        if got < 0:
            err = ctypes.get_errno()
            if err == errno.EAGAIN:
                return b""  # nothing queued
            raise OSError(err, f"tee: {os.strerror(err)}")
        out = bytearray()
        while len(out) < got:
            chunk = os.read(r, got - len(out))
            if not chunk:
                break
            out += chunk
        return bytes(out)
    finally:
        os.close(r)
        os.close(w)
