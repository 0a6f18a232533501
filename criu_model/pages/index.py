"""Page lookup inside one owner's runs: which state, slot and hash a page has."""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Iterator, Sequence

from criu_model.images.pb import pages_pb2
from criu_model.pages.layout import PAGE_SIZE, ZERO, entry_hashes


class OwnerIndex:
    """The runs of one owner (all its PageRuns entries), searchable by address."""

    def __init__(self, entries: Sequence[pages_pb2.PageRuns]) -> None:
        first = entries[0]
        self.pid = first.pid
        self.start_time = first.start_time
        self.object_dev, self.object_ino = first.object_dev, first.object_ino
        self.object_path = first.object_path
        self.object_size = first.object_size
        self.addr: list[int] = []
        self.npages: list[int] = []
        self.state: list[int] = []
        self.slot: list[int] = []
        self.hash_pos: list[int] = []  # index of the run's first hash in self.hashes
        self.hashes: array[int] = array("Q")  # 8 bytes a page (a list of ints costs 40)
        for entry in entries:
            pos = len(self.hashes)
            for addr, npages, state, slot in zip(entry.addr, entry.npages, entry.state,
                                                 entry.slot, strict=True):
                self.addr.append(addr)
                self.npages.append(npages)
                self.state.append(state)
                self.slot.append(slot)
                self.hash_pos.append(pos)
                if state != ZERO:
                    pos += npages
            self.hashes.extend(entry_hashes(entry))
        self.ends = [a + n * PAGE_SIZE for a, n in zip(self.addr, self.npages, strict=True)]

    @property
    def page_count(self) -> int:
        return sum(self.npages)

    def run_at(self, addr: int) -> int:
        """Index of the run holding the page at ``addr``, or -1."""
        i = bisect_right(self.addr, addr) - 1
        if i >= 0 and addr < self.ends[i]:
            return i
        return -1

    def pages(self, start: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
        """(addr, npages, state, slot, hash_index) pieces of runs within [start, end).

        Gaps (pages not captured) are simply absent: the caller compares
        addresses. ``slot``/``hash_index`` are those of the piece's first page.
        """
        i = bisect_right(self.addr, start) - 1
        if i < 0 or self.ends[i] <= start:
            i += 1
        while i < len(self.addr) and self.addr[i] < end:
            lo = max(start, self.addr[i])
            hi = min(end, self.ends[i])
            skip = (lo - self.addr[i]) // PAGE_SIZE
            state = self.state[i]
            hash_index = self.hash_pos[i] + skip if state != ZERO else -1
            yield lo, (hi - lo) // PAGE_SIZE, state, self.slot[i] + skip, hash_index
            i += 1

    def hash_slice(self, addr: int, npages: int) -> array[int] | None:
        """The hashes of the pages from ``addr`` when one run with hashes holds them all.

        An array slice (a copy in C), compared with another in C: the common
        case of an incremental dump. None otherwise (see hashes_at).
        """
        i = self.run_at(addr)
        if i >= 0 and self.state[i] != ZERO and addr + npages * PAGE_SIZE <= self.ends[i]:
            first = self.hash_pos[i] + (addr - self.addr[i]) // PAGE_SIZE
            return self.hashes[first:first + npages]
        return None

    def hashes_at(self, addr: int, npages: int) -> list[int | None]:
        """The hash of each page from ``addr`` (None where not captured or zero)."""
        i = self.run_at(addr)
        if i >= 0 and self.state[i] != ZERO and addr + npages * PAGE_SIZE <= self.ends[i]:
            first = self.hash_pos[i] + (addr - self.addr[i]) // PAGE_SIZE
            return self.hashes[first:first + npages].tolist()  # one run: the common case
        out: list[int | None] = [None] * npages
        for lo, n, state, _slot, hash_index in self.pages(addr, addr + npages * PAGE_SIZE):
            if state == ZERO:
                continue
            k = (lo - addr) // PAGE_SIZE
            out[k:k + n] = self.hashes[hash_index:hash_index + n]
        return out

    def counts(self, start: int, end: int) -> dict[int, int]:
        """Pages per state within [start, end)."""
        out: dict[int, int] = {}
        for _lo, n, state, _slot, _h in self.pages(start, end):
            out[state] = out.get(state, 0) + n
        return out
