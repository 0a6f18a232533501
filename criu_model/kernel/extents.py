"""Where a file holds data: SEEK_DATA/SEEK_HOLE (Linux 3.1), for the ghost and page capture.

Seeking moves only the position of the file description we seek on (our own
copy, never a target's), and reads nothing: holes are skipped without being
faulted in.
"""

from __future__ import annotations

import errno
import os


def data_extents(fd: int, size: int) -> list[tuple[int, int]] | None:
    """Byte [start, end) extents of data below ``size``; None where the filesystem
    cannot tell (EINVAL, EOPNOTSUPP: treat the whole file as data)."""
    out: list[tuple[int, int]] = []
    pos = 0
    try:
        while pos < size:
            try:
                lo = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as err:
                if err.errno == errno.ENXIO:
                    break  # only holes after pos
                raise
            hi = min(os.lseek(fd, lo, os.SEEK_HOLE), size)
            if hi > lo:
                out.append((lo, hi))
            pos = max(hi, lo + 1)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
            raise
        return None
    return out
