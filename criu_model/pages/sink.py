"""The page data file while a dump is running: an unnamed file, linked in when complete.

Pages are written as they are read (the dumper's memory does not grow with
the target's) into an ``O_TMPFILE`` file (Linux 3.11) in the directory the
snapshot will land in. It has no name until the snapshot writer links it
into the finished snapshot, so a dump that dies leaves nothing behind, and
linking costs nothing where copying a gigabyte would not. Where O_TMPFILE is
refused (some filesystems), a hidden named file is used and removed on close.
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import threading

from criu_model.errors import CriuModelError
from criu_model.images import framing
from criu_model.images.files import copy_into
from criu_model.pages.layout import PAGE_SIZE, header

_Item = tuple[list[memoryview], threading.Event | None]
# An append this small, with the writer idle, is written by the appending thread
# itself: handing it over costs two thread switches, and on a loaded machine each
# can wait for a core (a 200-process tree: 0.5 ms an append, 0.1 s in all).
# A megabyte batch of a big dump still goes to the writer, beside the next read.
INLINE_BYTES = 256 << 10


class PageSink:
    """Append-only page slots, readable back once ``drain()`` returned (pread).

    With ``background=True`` writes go to a writer thread, so reading the
    next megabyte of the target (process_vm_readv, /proc/PID/mem: both
    release the GIL) overlaps writing the last one: on tmpfs, allocating the
    file's pages costs as much as reading them. Slots are numbered when
    appended; the data lands in that order. A write error is raised by the
    next append, ``drain()`` or ``finish()``.
    """

    def __init__(self, directory: str | None = None, *, background: bool = True) -> None:
        if directory is None:
            import tempfile  # only here and for the fallback: random, shutil... cost 1 ms

            directory = tempfile.gettempdir()
        self.directory = os.path.abspath(directory)
        self.named: str | None = None
        self.fd = -1  # __del__ runs even when the open below fails
        self._queue: queue.SimpleQueue[_Item | None] | None = None
        try:
            self.fd = os.open(self.directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise CriuModelError(f"cannot create the page file in {self.directory}: "
                                     f"{err.strerror}") from err
            import tempfile

            fd, self.named = tempfile.mkstemp(prefix=".criu-model-pages-", dir=self.directory)
            self.fd = fd
        self.slots = 0
        self.bytes_written = 0
        self._error: CriuModelError | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pending = 0  # items queued and not written yet (under _lock)
        self._write(header(framing.FORMAT_MAJOR, framing.FORMAT_MINOR))
        if background:
            self._queue = queue.SimpleQueue()
            self._thread = threading.Thread(target=self._writer, name="criu-model-pages",
                                            daemon=True)
            self._thread.start()

    def _writer(self) -> None:
        assert self._queue is not None
        while True:
            item = self._queue.get()
            if item is None:
                return
            views, done = item
            try:
                if self._error is None:
                    self._write_views(views)
            except CriuModelError as err:
                self._error = err
            except BaseException as err:  # noqa: BLE001 - reported by the dumping thread
                # A bug here must not leave the dumper waiting for a buffer forever.
                self._error = CriuModelError(f"page writer failed: {err!r}")
            finally:
                with self._lock:
                    self._pending -= 1
                if done is not None:
                    done.set()

    def _submit(self, views: list[memoryview], done: threading.Event | None) -> None:
        if self._error is not None:
            if done is not None:
                done.set()  # the buffer was never lent
            raise self._error
        if self._queue is None:
            try:
                self._write_views(views)
            finally:
                if done is not None:
                    done.set()
            return
        with self._lock:
            if self._pending or sum(len(v) for v in views) > INLINE_BYTES:
                self._pending += 1
                self._queue.put((views, done))
                return
            # Idle writer, small append: written here, in order (nothing is
            # queued, and the lock keeps the next append out until it is done).
            try:
                self._write_views(views)
            finally:
                if done is not None:
                    done.set()

    def _write_views(self, views: list[memoryview]) -> None:
        """One writev per IOV_MAX views (single pages of an incremental dump)."""
        if len(views) == 1:
            self._write(views[0])
            return
        for i in range(0, len(views), 1024):
            part = views[i:i + 1024]
            total = sum(len(v) for v in part)
            try:
                done = os.writev(self.fd, part)
            except OSError as err:
                raise CriuModelError(f"writing page data in {self.directory}: "
                                     f"{err.strerror}") from err
            self.bytes_written += done
            if done < total:  # a short write (nearly full disk): the rest one by one
                for view in part:
                    if done >= len(view):
                        done -= len(view)
                        continue
                    self._write(view[done:])
                    done = 0

    def drain(self) -> None:
        """Wait until everything appended is written; raise the writer's error if any."""
        if self._queue is not None and self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._queue = None
            self._thread = None
        if self._error is not None:
            raise self._error

    def _write(self, data: memoryview | bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as err:
            raise CriuModelError(f"writing page data in {self.directory}: {err.strerror}") from err
        self.bytes_written += len(data)

    def append(self, data: memoryview, done: threading.Event | None = None) -> int:
        """Store whole pages; returns the slot of the first one.

        ``data`` must stay untouched until ``done`` is set (the buffer is lent).
        """
        if len(data) % PAGE_SIZE:
            raise ValueError(f"page data of {len(data)} bytes is not whole pages")
        first = self.slots
        self._submit([memoryview(data)], done)
        self.slots += len(data) // PAGE_SIZE
        return first

    def append_pages(self, views: list[memoryview], done: threading.Event | None = None
                     ) -> int:
        """Store several runs of whole pages, in order; returns the slot of the first."""
        first = self.slots
        size = sum(len(v) for v in views)
        if size % PAGE_SIZE:
            raise ValueError(f"page data of {size} bytes is not whole pages")
        self._submit(views, done)
        self.slots += size // PAGE_SIZE
        return first

    def finish(self) -> None:
        """Flush to disk: the snapshot writer renames the directory only after this."""
        self.drain()
        try:
            os.fsync(self.fd)
        except OSError as err:
            raise CriuModelError(f"writing page data in {self.directory}: {err.strerror}") from err

    def link(self, dir_fd: int, name: str) -> None:
        """Give the file its name inside the snapshot directory (copy across filesystems)."""
        try:
            if self.named is None:
                os.link(f"/proc/self/fd/{self.fd}", name, dst_dir_fd=dir_fd,
                        follow_symlinks=True)
            else:
                os.rename(self.named, name, dst_dir_fd=dir_fd)
                self.named = None
            return
        except OSError as err:
            if err.errno != errno.EXDEV:
                raise
        copy_into(self.fd, dir_fd, name)

    def close(self) -> None:
        if self._queue is not None:
            with contextlib.suppress(CriuModelError):
                self.drain()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.named is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.named)
            self.named = None

    def __del__(self) -> None:  # a sink dropped without close() must not leak its fd
        with contextlib.suppress(OSError):
            self.close()
