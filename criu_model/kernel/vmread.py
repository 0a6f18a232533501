"""Reading another process's memory: process_vm_readv(2), /proc/PID/mem as fallback.

``process_vm_readv`` (Linux 3.2) copies from the target's pages straight into
our buffer, many remote ranges per call (up to ``IOV_MAX`` iovecs): one
syscall per megabyte instead of one per range. It needs ptrace read access
(PTRACE_MODE_ATTACH_REALCREDS) and, unlike /proc/PID/mem, it does not use
FOLL_FORCE: ranges without PROT_READ fail with EFAULT. Those (and kernels or
seccomp policies without the syscall) are read through ``/proc/PID/mem``,
whose reads do force access (mm/memory.c access_remote_vm). Both only read:
nothing here can write to the target.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import threading
from collections.abc import Sequence

from criu_model.kernel.libc import libc

IOV_MAX = 1024  # UIO_MAXIOV


class IoVec(ctypes.Structure):
    """struct iovec."""

    _fields_ = (("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t))


_process_vm_readv = libc.process_vm_readv
_process_vm_readv.argtypes = (ctypes.c_int, ctypes.POINTER(IoVec), ctypes.c_ulong,
                              ctypes.POINTER(IoVec), ctypes.c_ulong, ctypes.c_ulong)
_process_vm_readv.restype = ctypes.c_ssize_t


class RemoteReader:
    """Reads ranges of one process into a reused buffer (never reallocated per call).

    ``read(ranges)`` fills ``buffer`` from the start with the ranges in order
    and returns the number of bytes read; a short count means the range at
    that point is gone or unreadable (the caller decides what that means).
    """

    def __init__(self, pid: int, buffer_size: int = 1 << 20, buffers: int = 1) -> None:
        self.pid = pid
        # A ring of buffers: while one is being written out by another thread
        # (see pages.sink), the next read goes into another one. Anonymous
        # mappings, not ctypes arrays: ctypes zeroes its memory, which faults in
        # every page of every buffer up front (8 MiB: 3 ms, 2,056 faults) where
        # a small dump touches one or two buffers.
        self._maps = [mmap.mmap(-1, buffer_size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
                      for _ in range(buffers)]
        self._ring = [(ctypes.c_char * buffer_size).from_buffer(m) for m in self._maps]
        self._views = [memoryview(m) for m in self._maps]
        self._free = [threading.Event() for _ in range(buffers)]
        for event in self._free:
            event.set()
        self._lent_at = [0] * buffers  # when each buffer was last lent (see rotate)
        self._lendings = 0
        self._current = 0
        self.buffer = self._ring[0]
        self.view = self._views[0]
        self._local = IoVec(ctypes.addressof(self.buffer), buffer_size)
        self._remote = (IoVec * IOV_MAX)()
        self._mem_fd = -1
        self.use_mem = False  # process_vm_readv unavailable: every read goes to /proc/PID/mem

    @property
    def size(self) -> int:
        return len(self.view)

    def hand_off(self) -> threading.Event:
        """Lend the current buffer to a writer: it sets the returned event when done."""
        event = self._free[self._current]
        event.clear()
        self._lendings += 1
        self._lent_at[self._current] = self._lendings
        return event

    def rotate(self) -> None:
        """Move to a buffer no writer holds: the first one given back, else the oldest lent.

        A writer that keeps up gives each buffer back before the next read, so
        a dump reuses one or two buffers and faults in no others; the writer
        frees buffers in the order it got them, so the oldest lent comes back first.
        """
        free = self._free
        i = next((k for k, event in enumerate(free) if event.is_set()), -1)
        if i < 0:
            i = min(range(len(free)), key=self._lent_at.__getitem__)
            free[i].wait()
        self._current = i
        self.buffer = self._ring[self._current]
        self.view = self._views[self._current]

    def settle(self) -> None:
        """Wait until every lent buffer is back (before the views may go away)."""
        for event in self._free:
            event.wait()

    def read(self, ranges: Sequence[tuple[int, int]], offset: int = 0) -> int:
        """Read (address, length) ranges, at most IOV_MAX of them, into the buffer at offset."""
        if self.use_mem:
            return self.read_mem(ranges, offset)
        remote = self._remote
        total = 0
        for i, (addr, length) in enumerate(ranges):
            remote[i].iov_base = addr
            remote[i].iov_len = length
            total += length
        if offset + total > len(self.view):
            raise ValueError("ranges do not fit in the buffer")
        self._local.iov_base = ctypes.addressof(self.buffer) + offset
        self._local.iov_len = total
        got = _process_vm_readv(self.pid, ctypes.byref(self._local), 1, remote, len(ranges), 0)
        if got == -1:
            err = ctypes.get_errno()
            if err in (errno.ENOSYS, errno.EPERM):
                # No syscall (seccomp, old kernel) or a policy that refuses it:
                # /proc/PID/mem answers to the same ptrace access check.
                self.use_mem = True
                return self.read_mem(ranges, offset)
            if err == errno.EFAULT:
                return self.read_mem(ranges, offset)  # no PROT_READ: /proc/PID/mem forces it
            raise OSError(err, f"process_vm_readv({self.pid}): {os.strerror(err)}")
        if got < total:
            # A range without PROT_READ stops process_vm_readv: go on through /proc/PID/mem.
            done = 0
            rest: list[tuple[int, int]] = []
            for addr, length in ranges:
                if done + length <= got:
                    done += length
                    continue
                skip = max(0, got - done)
                rest.append((addr + skip, length - skip))
                done += length
            more = self.read_mem(rest, offset + got)
            return got + more
        return got

    def read_mem(self, ranges: Sequence[tuple[int, int]], offset: int = 0) -> int:
        """pread each range from /proc/PID/mem into the buffer from ``offset``.

        Contiguous ranges are read with one pread. This path takes no page
        pins (FOLL_GET), so it never makes the kernel unshare a copy-on-write page.
        """
        merged: list[list[int]] = []
        for addr, length in ranges:
            if merged and merged[-1][0] + merged[-1][1] == addr:
                merged[-1][1] += length
            else:
                merged.append([addr, length])
        ranges = [(a, n) for a, n in merged]
        if self._mem_fd < 0:
            self._mem_fd = os.open(f"/proc/{self.pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
        pos = offset
        for addr, length in ranges:
            while length:
                try:
                    n = os.preadv(self._mem_fd, [self.view[pos:pos + length]], addr)
                except OSError as err:
                    if err.errno in (errno.EIO, errno.EFAULT):
                        return pos - offset  # the range is not mapped (any more)
                    raise
                if n <= 0:
                    return pos - offset
                pos += n
                addr += n
                length -= n
        return pos - offset

    def retarget(self, pid: int) -> None:
        """Read another process with the same buffers."""
        self.close()
        self.pid = pid
        self.use_mem = False

    def close(self) -> None:
        if self._mem_fd >= 0:
            os.close(self._mem_fd)
            self._mem_fd = -1

    def __enter__(self) -> RemoteReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
