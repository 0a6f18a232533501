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
import tempfile

from criu_model.errors import CriuModelError
from criu_model.images import framing
from criu_model.pages.layout import PAGE_SIZE, header


class PageSink:
    """Append-only page slots, readable back while the dump is still going (pread)."""

    def __init__(self, directory: str | None = None) -> None:
        self.directory = os.path.abspath(directory or tempfile.gettempdir())
        self.named: str | None = None
        try:
            self.fd = os.open(self.directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise CriuModelError(f"cannot create the page file in {self.directory}: "
                                     f"{err.strerror}") from err
            fd, self.named = tempfile.mkstemp(prefix=".criu-model-pages-", dir=self.directory)
            self.fd = fd
        self.slots = 0
        self.bytes_written = 0
        self._write(header(framing.FORMAT_MAJOR, framing.FORMAT_MINOR))

    def _write(self, data: memoryview | bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as err:
            raise CriuModelError(f"writing page data in {self.directory}: {err.strerror}") from err
        self.bytes_written += len(data)

    def append(self, data: memoryview | bytes) -> int:
        """Store whole pages; returns the slot of the first one."""
        if len(data) % PAGE_SIZE:
            raise ValueError(f"page data of {len(data)} bytes is not whole pages")
        first = self.slots
        self._write(data)
        self.slots += len(data) // PAGE_SIZE
        return first

    def append_pages(self, views: list[memoryview]) -> int:
        """Store several single pages with one writev; returns the slot of the first."""
        first = self.slots
        total = len(views) * PAGE_SIZE
        try:
            done = os.writev(self.fd, views)
            if done < total:  # short write (a full disk): finish the rest plainly
                rest = b"".join(bytes(v) for v in views)[done:]
                self.bytes_written += done
                self._write(rest)
                self.bytes_written -= len(rest)
        except OSError as err:
            raise CriuModelError(f"writing page data in {self.directory}: {err.strerror}") from err
        self.bytes_written += total
        self.slots += len(views)
        return first

    def finish(self) -> None:
        """Flush to disk: the snapshot writer renames the directory only after this."""
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
        out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                      0o600, dir_fd=dir_fd)
        try:
            size = os.fstat(self.fd).st_size
            offset = 0
            while offset < size:
                n = os.copy_file_range(self.fd, out, size - offset, offset, offset)
                if n <= 0:
                    raise OSError(errno.EIO, "copy_file_range made no progress")
                offset += n
            os.fsync(out)
        finally:
            os.close(out)

    def close(self) -> None:
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
