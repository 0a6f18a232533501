"""Memory contents: pages changed, added and removed per VMA (snapshots dumped with --pages).

Compared by the pages' stored hashes (criu_model.pages.compare), never by
reading page data. A process's private VMAs are compared in its own pages;
a shared memory object (shared anonymous, memfd, SysV shm) once, as one
change listing every process that maps it. Emitted as ``what="memory"``,
area ``memory``: the counts in ``after`` (``changed``, ``added``,
``removed``), and with ``--all`` the page addresses (``pages``).
"""

from __future__ import annotations

from criu_model.differ.fields import Scope, Walker
from criu_model.images.pb import mm_pb2
from criu_model.pages.compare import PageDelta, compare, segments
from criu_model.pages.memory import vma_owner
from criu_model.snapshot import Snapshot


def _detail(delta: PageDelta, vma: mm_pb2.Vma, all_pages: bool) -> dict[str, object]:
    out: dict[str, object] = {**delta.counts(), "end": vma.end}
    if all_pages:
        out["pages"] = {"changed": delta.changed, "added": delta.added,
                        "removed": delta.removed}
    return out


def memory_contents(w: Walker, a: Snapshot, b: Snapshot, matched: list[int]) -> None:
    """Emit one memory change per VMA (or shared object) whose pages differ."""
    store_a, store_b = a.page_store, b.page_store
    if store_a is None or store_b is None:
        if (store_a is None) != (store_b is None):
            side = "a" if store_a is None else "b"
            w.note_missing("memory", "pages", side, "dumped without --pages: page contents "
                           "are not in this snapshot")
        return
    objects: dict[tuple[int, int, int], tuple[mm_pb2.Vma, int, list[int]]] = {}
    for pid in matched:
        ma, mb = a.memory_by_pid.get(pid), b.memory_by_pid.get(pid)
        if ma is None or mb is None:
            continue
        before = {v.start: v for v in ma.vmas}
        for vma in mb.vmas:
            old = before.get(vma.start)
            if old is None:
                continue  # a new VMA: the vma diff reports it whole
            key, base, _why = vma_owner(pid, vma)
            if key is None or key != vma_owner(pid, old)[0]:
                continue
            if not key[0]:  # a shared object: once, for every process mapping it
                holders = objects.setdefault(key, (vma, base, []))[2]
                holders.append(pid)
                continue
            end = base + (max(vma.end, old.end) - vma.start)
            delta = compare(segments(store_a.owner(key), base, end),
                            segments(store_b.owner(key), base, end))
            if delta:
                w.emit(Scope("memory", pid, "memory", start=vma.start), "changed", "pages",
                       None, _detail(delta, vma, w.include_volatile))
    for key, (vma, _base, holders) in objects.items():
        index_a, index_b = store_a.owner(key), store_b.owner(key)
        size = max((x.object_size for x in (index_a, index_b) if x is not None), default=0)
        end = -(-size // 4096) * 4096 or vma.end - vma.start
        delta = compare(segments(index_a, 0, end), segments(index_b, 0, end))
        if delta:
            w.emit(Scope("memory", holders[0], "memory", start=vma.start,
                         key=vma.path.decode(errors="backslashreplace"),
                         pids=tuple(holders)),
                   "changed", "pages", None, _detail(delta, vma, w.include_volatile))
