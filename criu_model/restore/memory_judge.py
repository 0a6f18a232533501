"""The judge of the memory steps: the sandbox process's memory read back, page by page.

For every dumped VMA of a process the parked sandbox process is expected to
have a mapping of the same range (its own dump: /proc/PID/maps), the same
protection, the same file (path and inode) for a file mapping, and, for every
page the snapshot holds (stored, inherited from a parent, or zero), bytes
whose xxh3-64 is the hash pagemap.img records. The bytes are read through
/proc/PID/mem of the sandbox process (ours; it reads PROT_NONE pages too,
process_vm_readv would not), never trusting what the restorer says it wrote.
Kept apart from restore/memory.py: the restorer does, this checks.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from collections.abc import Iterator
from typing import Any

import xxhash

from criu_model.images.pb import mm_pb2
from criu_model.pages.layout import PAGE_SIZE, ZERO
from criu_model.pages.memory import vma_owner
from criu_model.restore import memory
from criu_model.restore.judge import MATCHED, MISMATCHED, NOT_REHEARSED, Entry
from criu_model.snapshot import Snapshot

_READ = 1 << 20
_ZERO_HASH = xxhash.xxh3_64_intdigest(bytes(PAGE_SIZE))
# Kinds the kernel names by what a process did with them (brk, the exec's stack, a
# prctl name), which mmap alone cannot make: recreated as plain anonymous memory.
_NAMED_ANON = {mm_pb2.VMA_HEAP: "[heap] is recreated as anonymous memory (naming it the heap "
               "takes prctl(PR_SET_MM), which needs CAP_SYS_RESOURCE)",
               mm_pb2.VMA_STACK: "[stack] is recreated as anonymous memory (the kernel names "
               "the stack of the program's exec)",
               mm_pb2.VMA_OTHER: "a named anonymous area is recreated as plain anonymous "
               "memory"}


_SHARED_MADE = frozenset({mm_pb2.VMA_SHARED_ANON, mm_pb2.VMA_MEMFD,   # objects rehearsed
                          mm_pb2.VMA_SYSV_SHM})


def _made_object(vma: mm_pb2.Vma) -> bool:
    """A shared object the rehearsal makes once for all its holders."""
    return vma.kind in _SHARED_MADE or (vma.kind == mm_pb2.VMA_FILE and vma.deleted
                                        and vma.shared)


def _prot(p: int) -> str:
    return ("r" if p & 1 else "-") + ("w" if p & 2 else "-") + ("x" if p & 4 else "-")


def _sysv_text(vma: mm_pb2.Vma) -> str:
    """A SysV attachment's key and id, as its maps line gives them ("/SYSVkey", inode)."""
    if vma.kind != mm_pb2.VMA_SYSV_SHM:
        return os.fsdecode(vma.path) or "anonymous"
    return f"key 0x{os.fsdecode(vma.path)[5:]} id {vma.inode}"


def _file_text(vma: mm_pb2.Vma, stand_in: bool) -> str:
    name = os.fsdecode(vma.path) or "anonymous"
    if stand_in:
        return f"{name} (deleted)" if vma.deleted else name
    return f"{name} inode {vma.inode}"


def _object_size(pid: int, vma: mm_pb2.Vma) -> int | None:
    """The size of the shared object a sandbox VMA maps (fstat of its map_files link)."""
    try:
        return os.stat(f"/proc/{pid}/map_files/{vma.start:x}-{vma.end:x}").st_size
    except OSError:
        return None


def _span(lo: int, hi: int) -> str:
    return f"{lo:#x}-{hi:#x}"


def _expected_pages(snap: Snapshot, pid: int, vma: mm_pb2.Vma
                    ) -> Iterator[tuple[int, list[int]]]:
    """(address, hash per page) of each contiguous span of pages the snapshot holds for
    `vma` (runs that follow each other are joined: one read serves many runs)."""
    store = snap.page_store
    key, base, _why = vma_owner(pid, vma)
    if store is None or key is None or (not key[0] and not _made_object(vma)):
        return
    index = store.owner(key)
    if index is None:
        return
    at, hashes = -1, []
    for lo, n, state, _slot, h in index.pages(base, base + (vma.end - vma.start)):
        addr = vma.start + (lo - base)
        if addr != at + len(hashes) * PAGE_SIZE:
            if hashes:
                yield at, hashes
            at, hashes = addr, []
        if state == ZERO:
            hashes.extend([_ZERO_HASH] * n)
        else:
            hashes.extend(index.hashes[h:h + n])
    if hashes:
        yield at, hashes


class _Mem:
    """/proc/PID/mem of one sandbox process, read into one reused buffer."""

    def __init__(self, pid: int) -> None:
        self.fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
        self.buf = bytearray(_READ)
        self.view = memoryview(self.buf)

    def first_difference(self, addr: int, hashes: list[int]) -> tuple[int, int, int] | None:
        """(address, expected, actual hash) of the first page that differs, or None."""
        h = xxhash.xxh3_64_intdigest
        per = _READ // PAGE_SIZE
        for i in range(0, len(hashes), per):
            want = hashes[i:i + per]
            at = addr + i * PAGE_SIZE
            size = len(want) * PAGE_SIZE
            try:
                got = os.preadv(self.fd, [self.view[:size]], at)
            except OSError:
                got = 0
            view = self.view
            for k, expected in enumerate(want):
                off = k * PAGE_SIZE
                if off + PAGE_SIZE > got:
                    return at + off, expected, -1     # unreadable in the sandbox
                actual = h(view[off:off + PAGE_SIZE])
                if actual != expected:
                    return at + off, expected, actual
        return None

    def close(self) -> None:
        os.close(self.fd)


def _range_entry(vma: mm_pb2.Vma, box: list[mm_pb2.Vma], starts: list[int],
                 done: set[tuple[int, int]], neighbours: list[mm_pb2.Vma]
                 ) -> tuple[list[tuple[str, Any, Any]], str]:
    """(field, expected, actual) triples for range, protection and identity; and a note."""
    i = bisect_right(starts, vma.start) - 1
    if i >= 0:
        b = box[i]    # the common case: one mapping, exactly the same
        if b.start == vma.start and b.end == vma.end and b.prot == vma.prot and \
                (b.kind == vma.kind == mm_pb2.VMA_ANON or (
                    vma.kind == b.kind and vma.kind in (mm_pb2.VMA_FILE, mm_pb2.VMA_SYSV_SHM)
                    and b.path == vma.path and b.deleted == vma.deleted
                    and (b.inode == vma.inode or vma.deleted))):
            return [], ""
    i = max(i, 0)
    hits = []
    while i < len(box) and box[i].start < vma.end:
        if box[i].end > vma.start:
            hits.append(box[i])
        i += 1
    want = _span(vma.start, vma.end)
    if not hits:
        return [("range", want, None)], ""
    note = ""
    got = ", ".join(_span(b.start, b.end) for b in hits)
    pairs: list[tuple[str, Any, Any]] = []
    if len(hits) == 1 and hits[0].start <= vma.start and hits[0].end >= vma.end and \
            (hits[0].start, hits[0].end) != (vma.start, vma.end):
        # The kernel merges adjacent mappings that look alike: acceptable when every
        # snapshot VMA the merged one spans was rehearsed with the same protection and
        # kind (the original's split came from something criu-model does not record).
        lo, hi = hits[0].start, hits[0].end
        spanned = [n for n in neighbours if n.start < hi and n.end > lo]
        covered = sum(n.end - n.start for n in spanned)
        if covered == hi - lo and all((n.start, n.end) in done and n.prot == vma.prot
                                      and (n.kind == mm_pb2.VMA_FILE)
                                      == (vma.kind == mm_pb2.VMA_FILE) for n in spanned):
            note = (f"merged by the kernel with its neighbours into {_span(lo, hi)}: the "
                    "split the snapshot had is not reproduced")
            got = want
    pairs.append(("range", want, got))
    pairs.append(("prot", _prot(vma.prot), "/".join(sorted({_prot(b.prot) for b in hits}))))
    if vma.kind == mm_pb2.VMA_MEMFD:
        pairs.append(("memfd", os.fsdecode(vma.path),
                      "/".join(sorted({os.fsdecode(b.path) for b in hits}))))
    if vma.kind == mm_pb2.VMA_SYSV_SHM:     # the name holds the key, the inode the id
        pairs.append(("sysv", _sysv_text(vma), "/".join(sorted({_sysv_text(b) for b in hits}))))
    if vma.kind == mm_pb2.VMA_FILE:
        # a deleted file is made again (a stand-in, another inode): its name and deletion
        pairs.append(("file", _file_text(vma, vma.deleted),
                      "/".join(sorted({_file_text(b, vma.deleted) for b in hits}))))
    else:
        kinds = {mm_pb2.VmaKind.Name(b.kind) if b.kind in mm_pb2.VmaKind.values()
                 else f"unknown({b.kind})" for b in hits}
        expected = "VMA_ANON" if vma.kind in _NAMED_ANON else mm_pb2.VmaKind.Name(vma.kind)
        pairs.append(("kind", expected, "/".join(sorted(kinds))))
        if vma.kind in _NAMED_ANON:
            note = "; ".join(filter(None, [note, _NAMED_ANON[vma.kind]]))
    return pairs, note


def _sysv_pairs(snap: Snapshot, box_pid: int, vma: mm_pb2.Vma) -> list[tuple[str, Any, Any]]:
    """A SysV segment's size: the snapshot's object size (known when its pages were
    captured) against the sandbox's segment, read through its attachment."""
    index = snap.page_store.owner((0, vma.map_file_dev, vma.map_file_ino)) \
        if snap.page_store is not None and vma.map_file_known else None
    if index is None or not index.object_size:
        return []
    return [("size", index.object_size, _object_size(box_pid, vma))]


def judge_objects(snap: Snapshot, box_mm: dict[int, mm_pb2.MemoryMap | None],
                  outcomes: dict[tuple[int, int], tuple[str, str]]) -> list[Entry]:
    """One `shm` entry per shared anonymous or memfd object mapped by several VMAs:
    in the sandbox too they must map one object (map_files identity), and no other."""
    groups: dict[tuple[int, int, int], list[tuple[int, mm_pb2.Vma]]] = {}
    for pid, mm in ((p.pid, snap.memory_by_pid.get(p.pid)) for p in snap.processes):
        for vma in mm.vmas if mm else ():
            key = vma_owner(pid, vma)[0] if _made_object(vma) else None
            if key is not None and outcomes.get((pid, vma.start), ("",))[0] == memory.DONE:
                groups.setdefault(key, []).append((pid, vma))
    found: dict[tuple[int, int], tuple[int, int] | None] = {}   # (pid, start) -> identity
    for pid, mm in box_mm.items():
        for b in mm.vmas if mm else ():
            found[(pid, b.start)] = (b.map_file_dev, b.map_file_ino) \
                if b.map_file_known else None
    entries = []
    owner_of = {ident: key for key, holders in groups.items() for pid, v in holders
                if (ident := found.get((pid, v.start))) is not None}
    for key, holders in groups.items():
        if len(holders) < 2:
            continue
        ident = f"{key[1]}:{key[2]} " + ",".join(f"{pid}:{v.start:#x}" for pid, v in holders)
        got = [found.get((pid, v.start)) for pid, v in holders]
        objects = {g for g in got if g is not None}
        if None not in got and len(objects) == 1 and owner_of.get(got[0]) == key:
            entries.append(Entry("shm", ident, MATCHED))
        else:
            entries.append(Entry("shm", ident, MISMATCHED, [
                {"field": "objects", "expected": 1, "actual": len(objects) + got.count(None)}],
                reason="VMAs of one shared memory object map different objects in the "
                       "sandbox"))
    return entries


def judge_vmas(snap: Snapshot, pid: int, box_pid: int, box_mm: mm_pb2.MemoryMap | None,
               outcomes: dict[tuple[int, int], tuple[str, str]], missing: str) -> list[Entry]:
    """One entry per dumped VMA of `pid`, whose sandbox process is `box_pid` here."""
    mm = snap.memory_by_pid[pid]
    entries: list[Entry] = []
    box = sorted(box_mm.vmas, key=lambda v: v.start) if box_mm is not None else []
    starts = [b.start for b in box]
    done = {(v.start, v.end) for v in mm.vmas
            if outcomes.get((pid, v.start), ("", ""))[0] == memory.DONE}
    mem: _Mem | None = None
    try:
        for vma in mm.vmas:
            ident = f"{pid}:{_span(vma.start, vma.end)}"
            if missing:
                entries.append(Entry("vma", ident, NOT_REHEARSED, reason=missing))
                continue
            status, detail = outcomes.get((pid, vma.start),
                                          ("", "its map_vmas step was not run"))
            if status == memory.FAILED:
                entries.append(Entry("vma", ident, MISMATCHED, [
                    {"field": "result", "expected": "mapped and filled", "actual": detail}],
                    reason="the kernel refused to map or fill it"))
                continue
            if status != memory.DONE:
                entries.append(Entry("vma", ident, NOT_REHEARSED, reason=detail))
                continue
            pairs, note = _range_entry(vma, box, starts, done, list(mm.vmas))
            if vma.kind == mm_pb2.VMA_SYSV_SHM:
                pairs.extend(_sysv_pairs(snap, box_pid, vma))
                note = "; ".join(filter(None, [note, "its mode is not in the snapshot: made "
                                               f"{memory.SYSV_MODE:o}"]))
            compared = 0
            if all(e == a for _f, e, a in pairs):
                if mem is None:
                    mem = _Mem(box_pid)
                for addr, hashes in _expected_pages(snap, pid, vma):
                    diff = mem.first_difference(addr, hashes)
                    if diff is not None:
                        at, want, got = diff
                        pairs.append(("page", f"{at:#x} xxh3 {want:016x}",
                                      f"{at:#x} " + ("unreadable" if got < 0
                                                     else f"xxh3 {got:016x}")))
                        break
                    compared += len(hashes)
            if vma.kind == mm_pb2.VMA_MEMFD and not vma.shared:
                note = "; ".join(filter(None, [note, "its clean pages are the memfd's "
                                               "(judged as its fd's contents when one holds it)"]))
            bad = [{"field": f, "expected": e, "actual": a} for f, e, a in pairs if e != a]
            if not bad and snap.page_store is None:
                note = "; ".join(filter(None, [note, "layout only: the snapshot holds no "
                                               "page contents"]))
            entries.append(Entry("vma", ident, MISMATCHED if bad else MATCHED, bad,
                                 reason=note))
    finally:
        if mem is not None:
            mem.close()
    return entries
