"""The one place image files are opened for reading.

``O_NOFOLLOW | O_NONBLOCK``: an image replaced by a symlink (to /dev/urandom,
to another snapshot) is refused, and a FIFO cannot block us. Anything but a
regular file is an ImageError, and no read goes beyond the size fstat gave:
a growing or endless file cannot make us read without end.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from google.protobuf.message import DecodeError, Message

from criu_model.errors import ImageError, TruncatedImage
from criu_model.images import framing
from criu_model.images.registry import ImageKind

_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def open_image(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(fd, size) of a regular image file; the caller closes fd."""
    name = str(path)
    try:
        fd = os.open(name, _FLAGS)
    except FileNotFoundError as err:
        raise TruncatedImage(name, None, "image file is missing") from err
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise ImageError(name, None, "is a symbolic link, not an image file") from err
        raise ImageError(name, None, f"cannot open: {err.strerror}") from err
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ImageError(name, None, "is not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd, st.st_size


def read_file(path: str | os.PathLike[str]) -> bytes:
    """The whole of a (small) image file, read with one bounded loop."""
    fd, size = open_image(path)
    try:
        chunks: list[bytes] = []
        left = size
        while left > 0:
            chunk = os.read(fd, left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    except OSError as err:
        raise ImageError(str(path), None, f"cannot read: {err.strerror}") from err
    finally:
        os.close(fd)


def exists(path: Path) -> bool:
    """Whether an entry exists at path, without following a symlink there."""
    return os.path.lexists(path)


def read_image(path: Path, image: ImageKind, data: bytes | None = None
               ) -> tuple[framing.Header, list[Message], list[int]]:
    """Parse one image file into messages, with the byte offset of each entry."""
    if data is None:
        data = read_file(path)
    header, raw = framing.decode(data, str(path), image.kind)
    messages: list[Message] = []
    offsets: list[int] = []
    for off, payload in raw:
        msg = image.message()
        try:
            msg.ParseFromString(payload)
        except DecodeError as err:
            raise ImageError(str(path), off, f"entry is not a valid {image.message.__name__} "
                             f"message: {err}") from err
        messages.append(msg)
        offsets.append(off)
    return header, messages, offsets


def copy_into(src_fd: int, dir_fd: int, name: str) -> None:
    """Copy a whole file into a new file ``name`` of directory ``dir_fd`` (0600), fsynced.

    For page data that cannot be linked (another filesystem, or a loaded
    snapshot being written elsewhere), in the kernel: copy_file_range, or
    sendfile where it refuses (across filesystems since Linux 5.19: EXDEV).
    """
    out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                  0o600, dir_fd=dir_fd)
    try:
        size = os.fstat(src_fd).st_size
        offset = 0
        same_fs = True
        while offset < size:
            if same_fs:
                try:
                    n = os.copy_file_range(src_fd, out, size - offset, offset, offset)
                except OSError as err:
                    if err.errno not in (errno.EXDEV, errno.EINVAL, errno.EOPNOTSUPP):
                        raise
                    same_fs = False
                    continue
            else:
                os.lseek(out, offset, os.SEEK_SET)
                n = os.sendfile(out, src_fd, offset, size - offset)
            if n <= 0:
                raise OSError(errno.EIO, "the copy made no progress")
            offset += n
        os.fsync(out)
    finally:
        os.close(out)
