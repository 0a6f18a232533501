"""A process's dumped memory by virtual address: which VMA, which owner, which bytes.

Private VMAs are read from the process's own runs, shared memory objects
from the object's runs at ``vma.offset + (addr - vma.start)``. Anything the
snapshot does not hold is a NotCaptured error that says why (never zeros):
outside every VMA, a page never populated, a clean page of a mapped file, a
MAP_SHARED file mapping (its contents are the file's), a kernel area.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass

from criu_model.errors import NotCaptured, UsageError
from criu_model.images.pb import mm_pb2
from criu_model.pages.capture import NOT_CAPTURED_FIELD, stores_object, stores_private
from criu_model.pages.layout import PAGE_SIZE, OwnerKey
from criu_model.snapshot import Snapshot


@dataclass(frozen=True)
class Piece:
    """Part of a VMA backed by one owner: process addresses [start, end) = owner [base, ...)."""

    vma: mm_pb2.Vma
    start: int
    end: int
    key: OwnerKey | None    # None: not stored at all (see why)
    base: int               # owner address of ``start``
    why: str = ""


def _vma_name(vma: mm_pb2.Vma) -> str:
    return os.fsdecode(vma.path) if vma.path else mm_pb2.VmaKind.Name(vma.kind).lower() \
        if vma.kind in mm_pb2.VmaKind.values() else f"unknown({vma.kind})"


def vma_owner(pid: int, vma: mm_pb2.Vma) -> tuple[OwnerKey | None, int, str]:
    """(owner, owner address of vma.start, why not stored) of one VMA."""
    if stores_private(vma):
        return (pid, 0, 0), vma.start, ""
    if stores_object(vma):
        if not vma.map_file_known:
            return None, 0, "shared memory without an identity (map_files was unreadable)"
        return (0, vma.map_file_dev, vma.map_file_ino), vma.offset, ""
    if vma.kind in (mm_pb2.VMA_VDSO, mm_pb2.VMA_VVAR, mm_pb2.VMA_VSYSCALL):
        return None, 0, f"{_vma_name(vma)} is provided by the kernel: not stored"
    return None, 0, (f"MAP_SHARED mapping of {_vma_name(vma)}: its contents are the file's, "
                     "not stored")


def pieces(snap: Snapshot, pid: int, addr: int, length: int) -> list[Piece]:
    """The VMAs covering [addr, addr + length) with no gap, or NotCaptured."""
    if pid not in snap.by_pid:
        raise UsageError(f"pid {pid} is not in the snapshot")
    mm = snap.memory_by_pid.get(pid)
    vmas = list(mm.vmas) if mm else []
    starts = [v.start for v in vmas]
    out: list[Piece] = []
    pos, end = addr, addr + length
    while pos < end:
        i = bisect_right(starts, pos) - 1
        if i < 0 or vmas[i].end <= pos:
            raise NotCaptured(f"pid {pid}: address {pos:#x} is outside every VMA")
        vma = vmas[i]
        key, base, why = vma_owner(pid, vma)
        hi = min(end, vma.end)
        out.append(Piece(vma, pos, hi, key, base + (pos - vma.start), why))
        pos = hi
    return out


def _not_held(pid: int, piece: Piece, at: int) -> NotCaptured:
    vma = piece.vma
    if vma.kind == mm_pb2.VMA_FILE and not vma.shared:
        why = (f"a clean page of {_vma_name(vma)} (file offset "
               f"{vma.offset + at - vma.start:#x}): in the file, not stored")
    elif vma.shared:
        why = "a hole of the shared memory object (never written)"
    else:
        why = "never populated (a restore maps it zero-filled)"
    return NotCaptured(f"pid {pid}: page {at - at % PAGE_SIZE:#x} was not captured: {why}")


def read_memory(snap: Snapshot, pid: int, addr: int, length: int) -> bytes:
    """The bytes of [addr, addr + length) of ``pid`` as dumped."""
    if length < 0:
        raise UsageError("length must not be negative")
    store = snap.page_store
    if store is None:
        raise NotCaptured("the snapshot holds no page contents (dumped without --pages, or read "
                          "from CRIU images without their pages-*.img)")
    mm = snap.memory_by_pid.get(pid)
    lost = [u.reason for u in mm.unreadable if u.field == NOT_CAPTURED_FIELD] if mm else []
    out = bytearray()
    for piece in pieces(snap, pid, addr, length):
        if lost and piece.key is not None and piece.key[0]:
            raise NotCaptured(f"pid {pid}: {lost[0]}")
        if piece.key is None:
            raise NotCaptured(f"pid {pid}: {piece.start:#x}: {piece.why}")
        lo = piece.base - piece.base % PAGE_SIZE
        hi = piece.base + (piece.end - piece.start)
        hi = -(-hi // PAGE_SIZE) * PAGE_SIZE
        expect = lo
        chunk = bytearray()
        for seg_addr, data in store.segments(piece.key, lo, hi):
            if seg_addr != expect:
                raise _not_held(pid, piece, piece.start + (expect - piece.base))
            chunk += data or b""
            expect = seg_addr + len(data or b"")
        if expect < hi:
            raise _not_held(pid, piece, piece.start + max(0, expect - piece.base))
        skip = piece.base - lo
        out += chunk[skip:skip + (piece.end - piece.start)]
    return bytes(out)


def captured_ranges(snap: Snapshot, pid: int) -> Iterator[tuple[mm_pb2.Vma, OwnerKey, int, int]]:
    """(vma, owner, owner start, owner end) of every VMA of pid whose pages are stored."""
    mm = snap.memory_by_pid.get(pid)
    for vma in mm.vmas if mm else ():
        key, base, _why = vma_owner(pid, vma)
        if key is not None:
            yield vma, key, base, base + (vma.end - vma.start)


def vma_page_counts(snap: Snapshot, pid: int, vma: mm_pb2.Vma) -> dict[int, int] | None:
    """Pages of a VMA per PageState (shared objects: the part this VMA maps), None if no pages."""
    store = snap.page_store
    if store is None:
        return None
    key, base, _why = vma_owner(pid, vma)
    if key is None:
        return {}
    index = store.owner(key)
    if index is None:
        return {}
    return index.counts(base, base + (vma.end - vma.start))
