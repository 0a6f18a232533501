"""Per-VMA page counts (resident, swapped, file, exclusive) from /proc/PID/pagemap.

Two methods, same answers:

* ``"pagemap_scan"`` (Linux 6.7+): one PAGEMAP_SCAN walk over the whole
  address space returns runs of present or swapped pages; the kernel skips
  unpopulated page tables, so a process with gigabytes reserved but little
  touched costs little. "Exclusively mapped" has no scan category, so the
  classic entries are read for the present runs only (merged when close).
* ``"pagemap"`` (fallback before 6.7, commit 52526ca7fdb9): the classic 64-bit
  entry of every page of every VMA, counted in C with a byte table.

Neither wins everywhere: :func:`choose_method` picks by mapped size.

Both skip [vsyscall]: it lies above TASK_SIZE, where pagemap returns EOF, and
its one page belongs to the kernel, so its ``pages`` stay unset. ``resident``
counts present PTEs, so a read-faulted page mapping the shared zero page is
resident (never exclusive); smaps' Rss leaves it out.

Both read /proc/PID/pagemap only: they never write to the target and never
set PM_SCAN_WP_MATCHING (which would write-protect its pages).
"""

from __future__ import annotations

import os
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from itertools import pairwise
from typing import NamedTuple

from criu_model.images.pb import mm_pb2
from criu_model.kernel.pagemap import (
    PAGEMAP_ENTRY_SIZE,
    PageCategory,
    PagemapEntry,
    entry_flag_bytes,
    matching,
    pagemap_scan,
    pagemap_scan_supported,
    read_entries,
)

METHOD_SCAN = "pagemap_scan"
METHOD_CLASSIC = "pagemap"
METHODS = (METHOD_SCAN, METHOD_CLASSIC)

_SCAN_ANYOF = PageCategory.PRESENT | PageCategory.SWAPPED
_SCAN_RETURN = PageCategory.PRESENT | PageCategory.SWAPPED | PageCategory.FILE

_IS_PRESENT = int(PageCategory.PRESENT)
_IS_SWAPPED = int(PageCategory.SWAPPED)
_IS_FILE = int(PageCategory.FILE)

_RESIDENT = PagemapEntry.PRESENT
_SWAPPED = PagemapEntry.SWAPPED
_FILE = PagemapEntry.PRESENT | PagemapEntry.FILE_SHARED
_EXCLUSIVE = PagemapEntry.PRESENT | PagemapEntry.EXCLUSIVE

# Present runs closer than this many pages are read with one pread: reading a
# few hundred extra entries (8 bytes each) is cheaper than another syscall.
_MERGE_GAP_PAGES = 256


# Below this much mapped memory the classic pagemap is faster than PAGEMAP_SCAN
# on 6.18 (measured: ~190 µs vs ~320 µs for an idle CPython with 14 MiB mapped;
# equal near 270 MiB; at 1 GiB mapped and 100 pages touched, 2.5 ms vs 0.76 ms):
# the ioctl costs ~40 ns per present page, the classic read ~9 ns per mapped page.
SCAN_MIN_MAPPED_BYTES = 256 << 20


def choose_method(mapped_bytes: int) -> str:
    """Pick the faster method for an address space with this much mapped.

    PAGEMAP_SCAN (when the kernel has it, probed once per run) pays off only
    when much more is mapped than resident: reservations of Go, JVMs, sanitizers.
    """
    if not pagemap_scan_supported():
        return METHOD_CLASSIC  # kernels before 6.7
    return METHOD_SCAN if mapped_bytes >= SCAN_MIN_MAPPED_BYTES else METHOD_CLASSIC


class PageTally:
    """Page counts of one range, as plain ints (cheaper to add to than a protobuf)."""

    __slots__ = ("exclusive", "file", "resident", "swapped")

    def __init__(self) -> None:
        self.resident = self.swapped = self.file = self.exclusive = 0

    def counts(self) -> tuple[int, int, int, int]:
        """(resident, swapped, file, exclusive): a key for encoded counts."""
        return (self.resident, self.swapped, self.file, self.exclusive)

    def fields(self) -> dict[str, int]:
        """Keyword arguments of mm_pb2.PageCounts."""
        return {"resident": self.resident, "swapped": self.swapped, "file": self.file,
                "exclusive": self.exclusive}


class _Span(NamedTuple):
    """Pages [first, last) of range number ``index``."""

    first: int
    last: int
    index: int


def tally_pages(pagemap_fd: int, starts: Sequence[int], ends: Sequence[int], page_size: int,
                method: str) -> list[PageTally]:
    """Count the pages of each range [starts[i], ends[i]) through an open pagemap fd.

    Ranges must be ascending and disjoint (VMAs as maps lists them) and below
    TASK_SIZE (leave out [vsyscall]). Raises ProcessLookupError when the
    address space vanished mid-read.
    """
    tallies = [PageTally() for _ in starts]
    if not tallies:
        return tallies
    if method == METHOD_SCAN:
        _count_scan(pagemap_fd, starts, ends, tallies, page_size)
    elif method == METHOD_CLASSIC:
        spans = [_Span(start // page_size, end // page_size, i)
                 for i, (start, end) in enumerate(zip(starts, ends, strict=True))]
        _count_classic(pagemap_fd, spans, tallies, everything=True)
    else:
        raise ValueError(f"unknown page count method {method!r}, expected one of {METHODS}")
    return tallies


Counts = tuple[int, int, int, int]  # (resident, swapped, file, exclusive)


class ReadPlan(NamedTuple):
    """Ranges as page numbers, grouped into preads: [bounds[k], bounds[k + 1])."""

    firsts: list[int]
    lasts: list[int]
    bounds: list[int]


def read_plan(starts: Sequence[int], ends: Sequence[int], page_size: int) -> ReadPlan:
    """Which ranges :func:`count_ranges` reads together (keep it for equal layouts)."""
    firsts = [start // page_size for start in starts]
    lasts = [end // page_size for end in ends]
    # a group ends before each range more than the merge gap after the previous one
    breaks = [k for k, (first, last) in enumerate(zip(firsts[1:], lasts[:-1], strict=True), 1)
              if first - last > _MERGE_GAP_PAGES]
    return ReadPlan(firsts, lasts, [0, *breaks, len(firsts)])


def count_ranges(pagemap_fd: int, starts: Sequence[int], ends: Sequence[int],
                 page_size: int, method: str, plan: ReadPlan | None = None) -> list[Counts]:
    """:func:`tally_pages` as tuples, the dump's fast path.

    With the classic method, each group of ranges close enough to share one
    pread is counted straight into tuples (no per-range objects to add to):
    a forked CPython's 130 VMAs cost ~4 preads and ~300 ``bytes.count``.
    ``plan`` is :func:`read_plan` of the same ranges, made once for a layout
    that several processes have.
    """
    if method != METHOD_CLASSIC or not starts:
        return [tally.counts() for tally in tally_pages(pagemap_fd, starts, ends, page_size,
                                                          method)]
    plan = plan or read_plan(starts, ends, page_size)
    return count_groups(pagemap_fd, plan, group_flags(pagemap_fd, plan))


def group_flags(pagemap_fd: int, plan: ReadPlan) -> list[bytes | None]:
    """The flag byte of every page of each read group of ``plan`` (one pread each).

    None for a group too big for one read (or read short): :func:`count_groups`
    reads it again in chunks. The counts are a function of these bytes and the
    plan alone, so a caller may keep counts by them (forked processes repeat them).
    """
    firsts, lasts, bounds = plan
    out: list[bytes | None] = []
    for i, j in pairwise(bounds):
        base = firsts[i]
        npages = lasts[j - 1] - base
        data = (os.pread(pagemap_fd, npages * PAGEMAP_ENTRY_SIZE, base * PAGEMAP_ENTRY_SIZE)
                if npages <= _ONE_READ_PAGES else b"")
        out.append(entry_flag_bytes(data) if len(data) == npages * PAGEMAP_ENTRY_SIZE
                   else None)
    return out


def count_groups(pagemap_fd: int, plan: ReadPlan, flags: Sequence[bytes | None]
                 ) -> list[Counts]:
    """The counts of every range of ``plan`` from :func:`group_flags`; a None group is
    read again through the chunked reader (raises ProcessLookupError at EOF)."""
    firsts, lasts, bounds = plan
    out: list[Counts] = []
    for (i, j), flag_bytes in zip(pairwise(bounds), flags, strict=True):
        if flag_bytes is None:  # too big for one read, or short
            tallies = [PageTally() for _ in range(i, j)]
            _count_classic(pagemap_fd, [_Span(firsts[k], lasts[k], k - i) for k in range(i, j)],
                           tallies, everything=True)
            out.extend(tally.counts() for tally in tallies)
        else:
            _count_group(flag_bytes, firsts[i], firsts[i:j], lasts[i:j], out)
    return out


# A group of ranges up to this many pages (2 MiB of entries) is read with one pread.
_ONE_READ_PAGES = 1 << 18


def _count_group(flag_bytes: bytes, base: int, firsts: list[int], lasts: list[int],
                 out: list[Counts]) -> None:
    """Append the counts of ranges [firsts[k], lasts[k]) of one read group to ``out``."""
    resident = matching(flag_bytes, _RESIDENT)
    swapped = matching(flag_bytes, _SWAPPED)
    any_swapped = swapped.count(1) > 0  # rare: then one count per range, not two
    file = matching(flag_bytes, _FILE)
    exclusive = matching(flag_bytes, _EXCLUSIVE)
    add = out.append
    for first, last in zip(firsts, lasts, strict=True):
        lo = first - base
        hi = last - base
        present = resident.count(1, lo, hi)
        gone = swapped.count(1, lo, hi) if any_swapped else 0
        if present:
            add((present, gone, file.count(1, lo, hi), exclusive.count(1, lo, hi)))
        else:
            add((0, gone, 0, 0))


def count_pages(pagemap_fd: int, vmas: Sequence[mm_pb2.Vma], page_size: int,
                method: str) -> None:
    """Fill ``vma.pages`` of every VMA except [vsyscall], reading an open pagemap fd.

    ``vmas`` must be in ascending address order, as /proc/PID/maps lists them.
    Raises ProcessLookupError when the address space vanished mid-read.
    """
    counted = [vma for vma in vmas if vma.kind != mm_pb2.VMA_VSYSCALL]
    tallies = tally_pages(pagemap_fd, [vma.start for vma in counted],
                          [vma.end for vma in counted], page_size, method)
    for vma, tally in zip(counted, tallies, strict=True):
        vma.pages.CopyFrom(mm_pb2.PageCounts(**tally.fields()))


def _count_scan(fd: int, starts: Sequence[int], ends: Sequence[int], counts: list[PageTally],
                page_size: int) -> None:
    """One PAGEMAP_SCAN walk, then classic entries of the present runs for `exclusive`."""
    nvmas = len(starts)
    # Present runs as [first page, end page, range index]; runs of one range
    # closer than the merge gap are fused (their gap pages are not present, so
    # they add nothing to the PRESENT|EXCLUSIVE count).
    runs: list[list[int]] = []
    for start, end, cats in pagemap_scan(fd, starts[0], ends[-1], anyof=_SCAN_ANYOF,
                                         returned=_SCAN_RETURN):
        index = bisect_right(starts, start) - 1
        # A region can span adjacent VMAs with equal categories: split it.
        while start < end:
            stop = ends[index]
            if stop > end:
                stop = end
            npages = (stop - start) // page_size
            c = counts[index]
            if cats & _IS_PRESENT:
                c.resident += npages
                if cats & _IS_FILE:
                    c.file += npages
                first = start // page_size
                if runs and runs[-1][2] == index and first - runs[-1][1] <= _MERGE_GAP_PAGES:
                    runs[-1][1] = stop // page_size
                else:
                    runs.append([first, stop // page_size, index])
            if cats & _IS_SWAPPED:
                c.swapped += npages
            index += 1
            if index == nvmas:
                break
            start = max(stop, starts[index])
    _count_classic(fd, [_Span(*run) for run in runs], counts, everything=False)


def _merged(spans: Iterable[_Span]) -> list[list[_Span]]:
    """Group ascending spans whose gaps are small enough to read in one pread."""
    groups: list[list[_Span]] = []
    for span in spans:
        if groups and span.first - groups[-1][-1].last <= _MERGE_GAP_PAGES:
            groups[-1].append(span)
        else:
            groups.append([span])
    return groups


def _count_classic(fd: int, spans: Sequence[_Span], counts: list[PageTally], *,
                   everything: bool) -> None:
    """Count classic entry bits over ``spans``: all four, or only `exclusive`.

    Entries are read in chunks (a huge VMA never needs one huge buffer); each
    chunk is reduced once to one flag byte per page and each span is counted
    with ``bytes.count`` on its slice.
    """
    for group in _merged(spans):
        base = group[0].first
        pos = base  # page number of the current chunk's first entry
        first_open = 0  # spans before this one are fully counted
        for data in read_entries(fd, base, group[-1].last - base):
            flag_bytes = entry_flag_bytes(data)
            end = pos + len(flag_bytes)
            exclusive = matching(flag_bytes, _EXCLUSIVE)
            if everything:
                resident = matching(flag_bytes, _RESIDENT)
                swapped = matching(flag_bytes, _SWAPPED)
                file = matching(flag_bytes, _FILE)
            for k in range(first_open, len(group)):
                span = group[k]
                if span.first >= end:
                    break
                if span.last <= end:
                    first_open = k + 1
                lo = (span.first if span.first > pos else pos) - pos
                hi = (span.last if span.last < end else end) - pos
                c = counts[span.index]
                if everything:
                    c.swapped += swapped.count(1, lo, hi)
                    present = resident.count(1, lo, hi)
                    if not present:
                        continue  # then no file or exclusive page either
                    c.resident += present
                    c.file += file.count(1, lo, hi)
                c.exclusive += exclusive.count(1, lo, hi)
            pos = end
