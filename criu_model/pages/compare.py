"""Which pages of a range differ between two snapshots: by their stored hashes.

Every captured page has its xxh3-64 in pagemap.img (zero pages hash as the
zero page), so comparing memory never reads page data: the hashes of the
captured stretches of a range are compared in slices of 256 pages in C, and
only differing slices are looked at page by page.
"""

from __future__ import annotations

import itertools
from array import array
from dataclasses import dataclass, field

import xxhash

from criu_model.pages.index import OwnerIndex
from criu_model.pages.layout import PAGE_SIZE, ZERO

ZERO_HASH = xxhash.xxh3_64_intdigest(bytes(PAGE_SIZE))
_SLICE = 256


Segment = tuple[int, array]  # (address of the first page, hashes of contiguous pages)


def segments(index: OwnerIndex | None, start: int, end: int) -> list[Segment]:
    """The captured pages of an owner in [start, end) as contiguous stretches of hashes.

    Only captured pages take room: a VMA that reserves gigabytes and holds a
    few pages costs a few entries.
    """
    out: list[Segment] = []
    if index is None:
        return out
    for lo, count, state, _slot, hash_index in index.pages(start, end):
        if state == ZERO:
            part = array("Q", [ZERO_HASH]) * count
        else:
            part = index.hashes[hash_index:hash_index + count]
        if out and out[-1][0] + len(out[-1][1]) * PAGE_SIZE == lo:
            out[-1][1].extend(part)
        else:
            out.append((lo, array("Q", part)))
    return out


@dataclass
class PageDelta:
    """Pages of one range that changed (captured on both sides, other content),
    were added (captured only after) or removed (only before)."""

    changed: list[int] = field(default_factory=list)   # page addresses
    added: list[int] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.changed or self.added or self.removed)

    def counts(self) -> dict[str, int]:
        return {"changed": len(self.changed), "added": len(self.added),
                "removed": len(self.removed)}


def compare(a: list[Segment], b: list[Segment]) -> PageDelta:
    """The pages that differ between the captured pages of one range, before and after."""
    delta = PageDelta()
    if a == b:
        return delta
    cuts = sorted({x for addr, h in (*a, *b) for x in (addr, addr + len(h) * PAGE_SIZE)})
    ia = ib = 0
    for lo, hi in itertools.pairwise(cuts):
        while ia < len(a) and a[ia][0] + len(a[ia][1]) * PAGE_SIZE <= lo:
            ia += 1
        while ib < len(b) and b[ib][0] + len(b[ib][1]) * PAGE_SIZE <= lo:
            ib += 1
        in_a = ia < len(a) and a[ia][0] <= lo
        in_b = ib < len(b) and b[ib][0] <= lo
        n = (hi - lo) // PAGE_SIZE
        if in_a and in_b:
            oa, ob = (lo - a[ia][0]) // PAGE_SIZE, (lo - b[ib][0]) // PAGE_SIZE
            ha, hb = a[ia][1][oa:oa + n], b[ib][1][ob:ob + n]
            for k0 in range(0, n, _SLICE):
                k1 = min(n, k0 + _SLICE)
                if ha[k0:k1] == hb[k0:k1]:
                    continue
                delta.changed.extend(lo + k * PAGE_SIZE for k in range(k0, k1)
                                     if ha[k] != hb[k])
        elif in_b:
            delta.added.extend(range(lo, hi, PAGE_SIZE))
        elif in_a:
            delta.removed.extend(range(lo, hi, PAGE_SIZE))
    return delta
