"""Memory contents: pages changed, added and removed per VMA (snapshots dumped with --pages).

Compared by the pages' stored hashes (criu_model.pages.compare), never by
reading page data. A process's private VMAs are compared in its own pages;
a shared memory object (shared anonymous, memfd, SysV shm) once, as one
change listing every process that maps it. Emitted as ``what="memory"``,
area ``memory``: the counts in ``after`` (``changed``, ``added``,
``removed``), and with ``--all`` the page addresses (``pages``).

Beside a CRIU dump (its inventory's tool is "criu ..."):

- A shared object is CRIU's pagemap-shmem-<shmid>: its owner key is
  (0, 0, shmid), the device unrecorded (the memory map marks
  ``vmas.map_file_dev`` unreadable). Such objects are matched on the inode
  alone; each side's pages are read under its own key.
- A thread's rseq area (struct rseq, at the pointer both sides' registers
  record) holds fields the kernel rewrites whenever the thread returns to user
  space (cpu_id_start, cpu_id, node_id, mm_cid): CRIU's parasite runs every
  thread, and any thread may move to another CPU between two dumps. A page
  that differs only there is volatile: left out unless ``--all``.
- CRIU has no zero-page record: it skips pages that map the shared zero page
  (and never-touched ones), so they are absent from its pagemap, where
  criu-model records them as zero pages. Only in a private anonymous VMA
  (anon, heap, stack) does an absent page restore as a zero page, so only
  there, and only when the CRIU side is the one that lacks it, does a zero
  page on the other side equal an absent page on the CRIU side. Elsewhere
  (private file mappings: an absent page is the file's; shared objects: a
  hole) and between two criu-model dumps, an absent page stays absent.
"""

from __future__ import annotations

from bisect import bisect_right

from criu_model.differ.fields import Scope, Walker
from criu_model.errors import CriuModelError
from criu_model.images.pb import mm_pb2
from criu_model.pages.compare import ZERO_HASH, PageDelta, Segment, compare, segments
from criu_model.pages.layout import PAGE_SIZE, OwnerKey
from criu_model.pages.memory import read_memory, vma_owner
from criu_model.snapshot import Snapshot


def _detail(delta: PageDelta, vma: mm_pb2.Vma, all_pages: bool) -> dict[str, object]:
    out: dict[str, object] = {**delta.counts(), "end": vma.end}
    if all_pages:
        out["pages"] = {"changed": delta.changed, "added": delta.added,
                        "removed": delta.removed}
    return out


def from_criu(snap: Snapshot) -> bool:
    """True for a snapshot read (or imported) from CRIU images."""
    return snap.inventory.tool_version.startswith("criu ")


_ZERO_FILLED = frozenset({mm_pb2.VMA_ANON, mm_pb2.VMA_HEAP, mm_pb2.VMA_STACK})


def _hash_at(segs: list[Segment], addr: int) -> int | None:
    """The hash of the page at `addr` in `segs`, or None when it was not captured."""
    i = bisect_right([lo for lo, _ in segs], addr) - 1
    if i < 0:
        return None
    lo, hashes = segs[i]
    n = (addr - lo) // PAGE_SIZE
    return hashes[n] if n < len(hashes) else None


def _zero_is_absent(delta: PageDelta, vma: mm_pb2.Vma, criu: tuple[bool, bool],
                    segs: tuple[list[Segment], list[Segment]]) -> PageDelta:
    """`delta` without the zero pages of one side that a CRIU side lacks (see the module)."""
    if vma.shared or vma.kind not in _ZERO_FILLED or criu[0] == criu[1]:
        return delta
    if criu[0]:  # A is CRIU's: B's zero pages that A lacks are "added" by compare
        added = [p for p in delta.added if _hash_at(segs[1], p) != ZERO_HASH]
        return PageDelta(delta.changed, added, delta.removed)
    removed = [p for p in delta.removed if _hash_at(segs[0], p) != ZERO_HASH]
    return PageDelta(delta.changed, delta.added, removed)


# struct rseq (include/uapi/linux/rseq.h): the kernel writes cpu_id_start and cpu_id
# (bytes 0-8), node_id and mm_cid (20-28, Linux 6.3) when the thread returns to user
# space; rseq_cs and flags (8-20) are the thread's own.
_RSEQ_KERNEL = ((0, 8), (20, 28))
_RSEQ_SIZE = 28


def _rseq_pointers(snap: Snapshot, pid: int) -> set[int]:
    regs = snap.registers_by_pid.get(pid)
    return {t.rseq.abi_pointer for t in regs.threads if t.rseq.abi_pointer} if regs else set()


def _same_but_rseq(a: Snapshot, b: Snapshot, pid: int, page: int, ptrs: list[int]) -> bool:
    try:
        x = bytearray(read_memory(a, pid, page, PAGE_SIZE))
        y = bytearray(read_memory(b, pid, page, PAGE_SIZE))
    except CriuModelError:
        return False
    for ptr in ptrs:
        for lo, hi in _RSEQ_KERNEL:
            at = ptr - page
            x[at + lo:at + hi] = y[at + lo:at + hi] = bytes(hi - lo)
    return x == y


def _rseq_is_volatile(delta: PageDelta, pid: int, a: Snapshot, b: Snapshot) -> PageDelta:
    """`delta` without the changed pages that differ only in the kernel-written fields of
    a thread's rseq area (the CPU it last returned to user space on: volatile, shown
    with --all). Those pages are read, both sides; only pages holding a whole area."""
    ptrs = _rseq_pointers(a, pid) | _rseq_pointers(b, pid)
    if not ptrs or not delta.changed:
        return delta
    changed = []
    for page in delta.changed:
        inside = [p for p in ptrs if page <= p and p + _RSEQ_SIZE <= page + PAGE_SIZE]
        if not inside or not _same_but_rseq(a, b, pid, page, inside):
            changed.append(page)
    return PageDelta(changed, delta.added, delta.removed)


def memory_contents(w: Walker, a: Snapshot, b: Snapshot, matched: list[int]) -> None:
    """Emit one memory change per VMA (or shared object) whose pages differ."""
    store_a, store_b = a.page_store, b.page_store
    if store_a is None or store_b is None:
        if (store_a is None) != (store_b is None):
            side = "a" if store_a is None else "b"
            w.note_missing("memory", "pages", side, "dumped without --pages: page contents "
                           "are not in this snapshot")
        return
    criu = (from_criu(a), from_criu(b))
    # shared object key in B -> (its VMA, key in A, holder pids)
    objects: dict[OwnerKey, tuple[mm_pb2.Vma, OwnerKey, list[int]]] = {}
    for pid in matched:
        ma, mb = a.memory_by_pid.get(pid), b.memory_by_pid.get(pid)
        if ma is None or mb is None:
            continue
        no_dev = any(u.field == "vmas.map_file_dev" for m in (ma, mb) for u in m.unreadable)
        before = {v.start: v for v in ma.vmas}
        for vma in mb.vmas:
            old = before.get(vma.start)
            if old is None:
                continue  # a new VMA: the vma diff reports it whole
            key, base, _why = vma_owner(pid, vma)
            key_a = vma_owner(pid, old)[0]
            if key is None or key_a is None:
                continue
            if not key[0]:  # a shared object: once, for every process mapping it
                if key_a[0] or (key_a[2] != key[2] if no_dev else key_a != key):
                    continue
                holders = objects.setdefault(key, (vma, key_a, []))[2]
                holders.append(pid)
                continue
            if key != key_a:
                continue
            end = base + (max(vma.end, old.end) - vma.start)
            segs = (segments(store_a.owner(key), base, end),
                    segments(store_b.owner(key), base, end))
            delta = _zero_is_absent(compare(*segs), vma, criu, segs)
            if not w.include_volatile:
                delta = _rseq_is_volatile(delta, pid, a, b)
            if delta:
                w.emit(Scope("memory", pid, "memory", start=vma.start), "changed", "pages",
                       None, _detail(delta, vma, w.include_volatile))
    for key, (vma, key_a, holders) in objects.items():
        index_a, index_b = store_a.owner(key_a), store_b.owner(key)
        size = max((x.object_size for x in (index_a, index_b) if x is not None), default=0)
        end = -(-size // 4096) * 4096 or vma.end - vma.start
        delta = compare(segments(index_a, 0, end), segments(index_b, 0, end))
        if delta:
            w.emit(Scope("memory", holders[0], "memory", start=vma.start,
                         key=vma.path.decode(errors="backslashreplace"),
                         pids=tuple(holders)),
                   "changed", "pages", None, _detail(delta, vma, w.include_volatile))
