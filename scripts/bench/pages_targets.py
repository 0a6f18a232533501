#!/usr/bin/env python3
"""Target processes for bench_pages.py (run by it; not a benchmark by itself).

    pages_targets.py big SIZE_MIB
        mmaps SIZE_MIB of private anonymous memory, writes every page with
        distinct content (a random 1 MiB block, each page stamped with its
        index), plants the needle at NEEDLE_OFFSET, prints
        "ready ADDR SIZE NEEDLE_ADDR" and serves commands on stdin, one a line:
            touch STEP SEED   write 8 bytes into every STEP-th page -> "ok N"
        EOF on stdin: exit.

    pages_targets.py tree N SIZE_MIB OWN_PAGES
        a root that writes SIZE_MIB of private anonymous memory, then forks
        N-1 children (flat) that each write OWN_PAGES pages of it (the rest
        stays shared copy-on-write); prints "ready" when all are asleep and
        blocks on stdin. Kill its process group to end it.

The needle is assembled only inside the mapping (from pieces), so the only
copy of it in the target's memory is the planted one.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import signal
import struct
import sys

PAGE = mmap.PAGESIZE
MIB = 1 << 20
NEEDLE_PIECES = (b"cm-bench", b"-needle-", b"q7Zk3xW9")  # bench_pages.py joins them
NEEDLE_OFFSET_PAGE_FRACTION = 0.5
NEEDLE_IN_PAGE = 1000
_STAMP = struct.Struct("<Q")


def fill(size: int) -> mmap.mmap:
    """A private anonymous mapping of ``size`` bytes, every page written, no two alike."""
    m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    block = os.urandom(MIB)
    pack = _STAMP.pack_into
    for off in range(0, size, MIB):
        n = min(MIB, size - off)
        m[off:off + n] = block[:n]
        for page in range(off, off + n, PAGE):
            pack(m, page, page // PAGE)
    return m


def plant(m: mmap.mmap, size: int) -> int:
    """Write the needle in the middle page; returns its offset in the mapping."""
    off = int(size // PAGE * NEEDLE_OFFSET_PAGE_FRACTION) * PAGE + NEEDLE_IN_PAGE
    pos = off
    for piece in NEEDLE_PIECES:
        m[pos:pos + len(piece)] = piece
        pos += len(piece)
    return off


def big(size_mib: int) -> None:
    size = size_mib * MIB
    m = fill(size)
    needle = plant(m, size)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
    out = sys.stdout
    out.write(f"ready {addr} {size} {addr + needle}\n")
    out.flush()
    pack = _STAMP.pack_into
    for line in sys.stdin:
        words = line.split()
        if words and words[0] == "touch":
            step, seed = int(words[1]), int(words[2])
            n = 0
            for page in range(0, size, step * PAGE):
                pack(m, page + 8, seed)
                n += 1
            out.write(f"ok {n}\n")
        else:
            out.write(f"error {words!r}\n")
        out.flush()


def tree(n: int, size_mib: int, own_pages: int) -> None:
    size = size_mib * MIB
    m = fill(size)
    npages = size // PAGE
    r, w = os.pipe()
    pack = _STAMP.pack_into
    for child in range(1, n):
        if os.fork() == 0:
            os.close(r)
            first = (child * own_pages) % max(1, npages - own_pages)
            for page in range(first, first + own_pages):
                pack(m, page * PAGE + 8, child)
            os.write(w, b"x")
            while True:
                signal.pause()
    os.close(w)
    got = 0
    while got < n - 1:
        chunk = os.read(r, 4096)
        if not chunk:
            raise SystemExit("a child of the tree died")
        got += len(chunk)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.read()


def main() -> None:
    mode = sys.argv[1]
    if mode == "big":
        big(int(sys.argv[2]))
    elif mode == "tree":
        tree(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
