"""The page storage layout shared by the writer and the reader.

``pages.img`` grammar (all integers little-endian)::

    PAGES   ::= HEADER PAD { SLOT }
    HEADER  ::= MAGIC KIND MAJOR MINOR     12 bytes, as every image ("CRMI" "PAGE")
    PAD     ::= zeros up to PAGE_SIZE      so every slot is page-aligned (mmap)
    SLOT    ::= PAGE_SIZE bytes of one page

Slot ``n`` starts at ``(n + 1) * PAGE_SIZE``. Which page is in which slot,
and its xxh3-64 checksum, is in ``pagemap.img`` (one ``PageRuns`` per owner:
a process's private memory, or a shared memory object stored once).
"""

from __future__ import annotations

import os
import struct
import sys
from array import array
from collections.abc import Iterable, Sequence

from criu_model.images.pb import pages_pb2

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
PAGES_IMG = "pages.img"
PAGEMAP_IMG = "pagemap.img"
PAGES_KIND = int.from_bytes(b"PAGE", "little")
_HEADER = struct.Struct("<4sIHH")

STORED = pages_pb2.PAGE_STORED
ZERO = pages_pb2.PAGE_ZERO
PARENT = pages_pb2.PAGE_PARENT

# One owner entry holds at most this many page hashes (8 bytes each): an entry
# stays far below the 256 MiB framing limit even for a terabyte of memory.
MAX_HASHES_PER_ENTRY = 1 << 20

OwnerKey = tuple[int, int, int]  # (pid, 0, 0) for a process, (0, dev, ino) for an object
_BIG_ENDIAN = sys.byteorder == "big"


def hash_bytes(hashes: array[int]) -> bytes:
    """Page hashes as PageRuns.hash_data: 8 bytes each, little-endian."""
    if _BIG_ENDIAN:
        hashes = array("Q", hashes)
        hashes.byteswap()
    return hashes.tobytes()


def entry_hash_count(entry: pages_pb2.PageRuns) -> int | None:
    """How many page hashes an entry holds (either field); None when it is malformed.

    Malformed: hash_data not a whole number of 8-byte hashes, or both
    fields set (a writer sets one of them).
    """
    raw = len(entry.hash_data)
    if raw % 8 or (raw and len(entry.hashes)):
        return None
    return raw // 8 + len(entry.hashes)


def entry_hashes(entry: pages_pb2.PageRuns) -> array[int]:
    """An entry's page hashes, from hash_data (one copy) or the older ``hashes`` field."""
    out = array("Q")
    if entry.hash_data:
        out.frombytes(entry.hash_data[:len(entry.hash_data) // 8 * 8])
        if _BIG_ENDIAN:
            out.byteswap()
    else:
        out.extend(entry.hashes)
    return out


def header(major: int, minor: int) -> bytes:
    """The first page of pages.img: the common image header, zero padded."""
    return _HEADER.pack(b"CRMI", PAGES_KIND, major, minor).ljust(PAGE_SIZE, b"\0")


def parse_header(data: bytes) -> tuple[bytes, int, int, int]:
    """(magic, kind, major, minor) of a pages.img header."""
    return _HEADER.unpack_from(data, 0)


def slot_offset(slot: int) -> int:
    return (slot + 1) * PAGE_SIZE


def owner_key(runs: pages_pb2.PageRuns) -> OwnerKey:
    if runs.pid:
        return (runs.pid, 0, 0)
    return (0, runs.object_dev, runs.object_ino)


class RunBuilder:
    """Accumulates one owner's runs, merging neighbours, as parallel arrays.

    Plain lists, turned into packed protobuf fields once at the end: a 1 GiB
    process has 262,144 pages, and per-run messages would cost more than the
    reads.
    """

    __slots__ = ("addr", "hashes", "npages", "slot", "state")

    def __init__(self) -> None:
        self.addr: list[int] = []
        self.npages: list[int] = []
        self.state: list[int] = []
        self.slot: list[int] = []
        self.hashes: array[int] = array("Q")  # 8 bytes a page

    def add(self, addr: int, npages: int, state: int, slot: int = 0,
            hashes: list[int] | array[int] | None = None) -> None:
        """Append a run (ascending addresses), merged into the previous one it continues."""
        self.add_sorted(((addr, npages, state, slot, hashes or ()),))

    def add_sorted(self, runs: Iterable[tuple[int, int, int, int, Sequence[int]]]) -> None:
        """:meth:`add` for many (addr, npages, state, slot, hashes) runs in ascending order.

        One loop over locals: a forked child has ~150 runs, and a method call
        and six attribute lookups per run cost a 50-process tree 8 of its 90 ms
        of page capture (under cProfile).
        """
        addrs, counts, states, slots = self.addr, self.npages, self.state, self.slot
        extend = self.hashes.extend
        if addrs:
            last_state, last_end = states[-1], addrs[-1] + counts[-1] * PAGE_SIZE
            next_slot = slots[-1] + counts[-1]
        else:
            last_state, last_end, next_slot = -1, -1, -1
        for addr, npages, state, slot, hashes in runs:
            if (state == last_state and addr == last_end
                    and (state != STORED or slot == next_slot)):
                counts[-1] += npages
            else:
                addrs.append(addr)
                counts.append(npages)
                states.append(state)
                slots.append(slot if state == STORED else 0)
                last_state = state
                next_slot = slot
            last_end = addr + npages * PAGE_SIZE
            next_slot += npages
            if hashes:
                extend(hashes)

    def messages(self, **ident: object) -> list[pages_pb2.PageRuns]:
        """The runs as PageRuns entries carrying ``ident`` (pid or object fields), split by size."""
        out: list[pages_pb2.PageRuns] = []
        start = 0
        hash_pos = 0
        nruns = len(self.addr)
        while start < nruns or not out:
            stop = start
            count = 0
            while stop < nruns:
                more = self.npages[stop] if self.state[stop] != ZERO else 0
                if count and count + more > MAX_HASHES_PER_ENTRY:
                    break
                count += more
                stop += 1
            msg = pages_pb2.PageRuns(**ident)  # type: ignore[arg-type]
            msg.addr.extend(self.addr[start:stop])
            msg.npages.extend(self.npages[start:stop])
            msg.state.extend(self.state[start:stop])
            msg.slot.extend(self.slot[start:stop])
            msg.hash_data = hash_bytes(self.hashes[hash_pos:hash_pos + count])
            out.append(msg)
            hash_pos += count
            start = stop
            if nruns == 0:
                break
        return out
