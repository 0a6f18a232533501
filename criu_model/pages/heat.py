"""Hot data over a series of --pages snapshots, and what a pre-copy migration would cost.

Soft-dirty tracking is compiled out of this kernel, so neither CRIU's
incremental dumps nor iterative pre-copy can ask it which pages were written.
A series of snapshots answers by content instead: between two consecutive
snapshots a page "changed" when its hash differs (or it appeared), and a
page's heat is the number of intervals in which it changed.

The pre-copy estimate (:func:`precopy`) is the textbook iterative model:
round 0 sends all the memory M at bandwidth B; each next round sends what was
dirtied while the previous one ran, V = min(R * t, W) with R the measured
dirty rate and W the writable working set (every page seen dirty in the
series); when a round would take no longer than the allowed downtime, the
tree is stopped and the last V is sent (the downtime). It stops early when
V no longer shrinks (R >= B: pre-copy does not converge) or after
``max_rounds``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from criu_model.errors import UsageError
from criu_model.images.pb import mm_pb2
from criu_model.pages.compare import compare, segments
from criu_model.pages.layout import PAGE_SIZE, OwnerKey
from criu_model.pages.memory import vma_owner
from criu_model.snapshot import Snapshot


@dataclass
class VmaHeat:
    """How often each page of one VMA (or shared object) changed over the series."""

    pid: int
    start: int
    end: int
    name: str
    counts: dict[int, int] = field(default_factory=dict)  # page address -> intervals changed
    pids: tuple[int, ...] = ()

    @property
    def dirtied(self) -> int:
        """Distinct pages that changed at least once."""
        return len(self.counts)

    @property
    def writes(self) -> int:
        """Page-intervals: the sum of every page's count."""
        return sum(self.counts.values())

    @property
    def hottest(self) -> int:
        return max(self.counts.values(), default=0)

    def ranges(self) -> list[tuple[int, int, int]]:
        """(start, end, count): runs of neighbouring pages with the same count, hottest first."""
        out: list[tuple[int, int, int]] = []
        for addr in sorted(self.counts):
            count = self.counts[addr]
            if out and out[-1][1] == addr and out[-1][2] == count:
                out[-1] = (out[-1][0], addr + PAGE_SIZE, count)
            else:
                out.append((addr, addr + PAGE_SIZE, count))
        return sorted(out, key=lambda r: (-r[2], -(r[1] - r[0]), r[0]))


@dataclass
class Interval:
    """One step of the series: how much changed and how long it took."""

    seconds: float
    pages: int  # distinct pages changed in this interval

    @property
    def rate(self) -> float:
        """Bytes dirtied per second."""
        return self.pages * PAGE_SIZE / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Heat:
    snapshots: list[str]
    intervals: list[Interval]
    vmas: list[VmaHeat]           # hottest first
    memory_bytes: int             # what the last snapshot holds (all captured pages)
    working_set_bytes: int        # distinct pages dirtied over the series

    @property
    def dirty_rate(self) -> float:
        """Mean bytes dirtied per second over the intervals."""
        rates = [i.rate for i in self.intervals]
        return sum(rates) / len(rates) if rates else 0.0


def _name(vma: mm_pb2.Vma) -> str:
    if vma.path:
        return os.fsdecode(vma.path) + (" (deleted)" if vma.deleted else "")
    return "[" + (mm_pb2.VmaKind.Name(vma.kind).removeprefix("VMA_").lower()
                  if vma.kind in mm_pb2.VmaKind.values() else f"unknown({vma.kind})") + "]"


def check_series(snaps: Sequence[Snapshot], names: Sequence[str], *, allow_gaps: bool = False
                 ) -> None:
    """The same tree, in time order, every one with pages, and no gap in a parent chain."""
    if len(snaps) < 2:
        raise UsageError("heat needs at least two snapshots (a series of dump --pages)")
    first = snaps[0]
    roots = list(first.inventory.root_pids)
    starts = {pid: first.by_pid[pid].start_time for pid in roots if pid in first.by_pid}
    for i, (snap, name) in enumerate(zip(snaps, names, strict=True)):
        if not snap.has_pages:
            raise UsageError(f"{name}: dumped without --pages: heat needs page contents "
                             "(dump --pages, e.g. with --parent)")
        if list(snap.inventory.root_pids) != roots or any(
                pid in snap.by_pid and snap.by_pid[pid].start_time != t
                for pid, t in starts.items()):
            raise UsageError(f"{name}: a snapshot of another tree than {names[0]} "
                             f"(root pids {list(snap.inventory.root_pids)})")
        if i and snap.inventory.time_ns <= snaps[i - 1].inventory.time_ns:
            raise UsageError(f"{name}: taken before {names[i - 1]}: give the snapshots in "
                             "time order (or --sort to order them by time)")
        if i and not allow_gaps and snap.parent_dir is not None:
            previous = Path(names[i - 1]).resolve()
            if snap.parent_dir.resolve() != previous:
                raise UsageError(f"{name}: its parent is {snap.parent_dir}, not {names[i - 1]}: "
                                 "the series has a gap (--allow-gaps to compare anyway)")


def _owner_of(pid: int, vma: mm_pb2.Vma) -> tuple[OwnerKey | None, int]:
    key, base, _why = vma_owner(pid, vma)
    return key, base


def heat(snaps: Sequence[Snapshot], names: Sequence[str], *, allow_gaps: bool = False) -> Heat:
    """Per VMA and page, in how many intervals of the series the page changed."""
    check_series(snaps, names, allow_gaps=allow_gaps)
    found: dict[tuple[int, int] | OwnerKey, VmaHeat] = {}
    intervals: list[Interval] = []
    for before, after in itertools.pairwise(snaps):
        sa, sb = before.page_store, after.page_store
        assert sa is not None and sb is not None
        pages = 0
        seen_objects: set[OwnerKey] = set()
        for proc in after.processes:
            old = before.by_pid.get(proc.pid)
            if old is None or old.start_time != proc.start_time:
                continue
            mb, ma = after.memory_by_pid.get(proc.pid), before.memory_by_pid.get(proc.pid)
            if ma is None or mb is None:
                continue
            vmas_a = {v.start: v for v in ma.vmas}
            for vma in mb.vmas:
                prev = vmas_a.get(vma.start)
                key, base = _owner_of(proc.pid, vma)
                if key is None or prev is None or _owner_of(proc.pid, prev)[0] != key:
                    continue
                if key[0]:
                    ident: tuple[int, int] | OwnerKey = (proc.pid, vma.start)
                    lo, hi = base, base + (max(vma.end, prev.end) - vma.start)
                    delta = compare(segments(sa.owner(key), lo, hi),
                                    segments(sb.owner(key), lo, hi))
                    shift = 0
                else:
                    if key in seen_objects:
                        found[key].pids = (*found[key].pids, proc.pid) \
                            if proc.pid not in found[key].pids else found[key].pids
                        continue
                    seen_objects.add(key)
                    ident = key
                    index = sb.owner(key)
                    top = max(index.ends, default=0) if index is not None else 0
                    delta = compare(segments(sa.owner(key), 0, top), segments(index, 0, top))
                    shift = vma.start - vma.offset  # object offset -> this process's address
                entry = found.get(ident)
                if entry is None:
                    entry = found[ident] = VmaHeat(proc.pid, vma.start, vma.end, _name(vma),
                                                   pids=(proc.pid,))
                entry.end = max(entry.end, vma.end)
                for addr in (*delta.changed, *delta.added):
                    page = addr + shift
                    entry.counts[page] = entry.counts.get(page, 0) + 1
                pages += len(delta.changed) + len(delta.added)
        seconds = (after.inventory.time_ns - before.inventory.time_ns) / 1e9
        intervals.append(Interval(seconds, pages))
    last = snaps[-1].page_store
    assert last is not None
    total = 0
    for key in last.owner_keys():
        index = last.owner(key)
        if index is not None:
            total += index.page_count
    vmas = sorted((v for v in found.values() if v.counts),
                  key=lambda v: (-v.hottest, -v.writes, v.pid, v.start))
    working = sum(v.dirtied for v in vmas) * PAGE_SIZE
    return Heat(list(names), intervals, vmas, total * PAGE_SIZE, working)


@dataclass(frozen=True)
class PreCopy:
    bandwidth: float          # bytes per second
    rounds: int               # copy rounds while the tree runs (the first sends everything)
    bytes_sent: int           # all rounds plus the final stop-and-copy
    downtime: float           # seconds the tree is stopped for the last copy
    converged: bool           # False: dirtying outpaces the link, the last round did not shrink
    round_bytes: tuple[int, ...]


def precopy(memory: int, rate: float, working_set: int, bandwidth: float, *,
            max_downtime: float = 0.3, max_rounds: int = 30) -> PreCopy:
    """Iterative pre-copy of ``memory`` bytes dirtied at ``rate`` bytes/s (see module doc)."""
    if bandwidth <= 0:
        raise UsageError("the bandwidth must be positive")
    sent = [memory]
    seconds = memory / bandwidth
    previous = float("inf")
    while True:
        dirty = min(rate * seconds, float(working_set))
        done = dirty / bandwidth <= max_downtime
        stalled = dirty >= previous
        if done or stalled or len(sent) >= max_rounds:
            final = round(dirty)
            return PreCopy(bandwidth, len(sent), sum(sent) + final, final / bandwidth,
                           done, tuple(sent))
        sent.append(round(dirty))
        previous = dirty
        seconds = dirty / bandwidth
