"""A process with known memory, for the memory rehearsal tests (run as a script).

    python memprog.py REPORT_FD FILE

Maps, MAP_PRIVATE, and reports the addresses as one JSON line:
  rw     64 pages of anonymous memory, read-write, each page filled with its index
  ro     16 pages of anonymous memory written then made read-only
  none   4 pages of anonymous memory, PROT_NONE (never touched: layout only)
  zeroed 8 pages written with zeros only after a write of data (stored or zero pages)
  file   FILE (4 pages) mapped private read-write, its page 1 written (a stored
         copy of a file page; pages 0, 2 and 3 stay the file's)
then sleeps. SIGUSR1 rewrites the first byte of page 3 of `rw` (for incremental dumps).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys

PAGE = os.sysconf("SC_PAGE_SIZE")
PROT_NONE, PROT_READ, PROT_WRITE = 0, 1, 2
MAP_PRIVATE, MAP_ANONYMOUS = 0x02, 0x20

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def _map(pages: int, prot: int, fd: int = -1) -> int:
    flags = MAP_PRIVATE | (MAP_ANONYMOUS if fd < 0 else 0)
    addr = _libc.mmap(None, pages * PAGE, prot, flags, fd, 0)
    if addr in (None, ctypes.c_void_p(-1).value):
        raise OSError(ctypes.get_errno(), "mmap")
    return int(addr)


def main(report: int, path: str) -> None:
    rw = _map(64, PROT_READ | PROT_WRITE)
    for i in range(64):
        ctypes.memset(rw + i * PAGE, i + 1, PAGE)
    ro = _map(16, PROT_READ | PROT_WRITE)
    for i in range(16):
        ctypes.memmove(ro + i * PAGE, f"read-only page {i}".encode(), 16)
    _libc.mprotect(ro, 16 * PAGE, PROT_READ)
    none = _map(4, PROT_NONE)
    zeroed = _map(8, PROT_READ | PROT_WRITE)
    for i in range(8):
        ctypes.memset(zeroed + i * PAGE, 7, PAGE)
        ctypes.memset(zeroed + i * PAGE, 0, PAGE)
    fd = os.open(path, os.O_RDONLY)
    file = _map(4, PROT_READ | PROT_WRITE, fd)
    os.close(fd)
    ctypes.memmove(file + PAGE, b"a private copy of page 1", 24)

    def touch(signum: int, frame: object) -> None:
        ctypes.memset(rw + 3 * PAGE, 0xEE, 1)
        os.write(report, b"touched\n")

    signal.signal(signal.SIGUSR1, touch)
    os.write(report, (json.dumps({"pid": os.getpid(), "rw": rw, "ro": ro, "none": none,
                                  "zeroed": zeroed, "file": file}) + "\n").encode())
    while True:
        signal.pause()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
