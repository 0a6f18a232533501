"""CRIU's page images as a criu-model page store, read in place (nothing copied)::

    pagemap-PID.img      ::= MAGICS ENTRY(PagemapHead pages_id) { ENTRY(PagemapEntry) }
    pagemap-shmem-N.img  ::= the same; vaddr is the offset inside shared object N
    pages-<pages_id>.img ::= { PAGE }   the pages of the PE_PRESENT runs, in pagemap order
    parent -> DIR        ::= the previous (pre-)dump, which holds the PE_PARENT runs

PagemapEntry.flags: PE_PARENT (in the parent dump), PE_LAZY (may be restored
lazily), PE_PRESENT (in this dump's pages file). PE_LAZY without PE_PRESENT
means the pages were left on the dumping host's page server: not in any image.
CRIU has no zero-page flag: it skips pages of the zero PFN, so they are simply
absent (as are never-touched and clean file pages).

`CriuPageStore` answers the same questions as criu_model.pages.store.PageStore
(`owner()`, `segments()`), reading pages-N.img with pread at run offsets.
CRIU keeps no page checksums: the xxh3-64 hashes the differ compares are
computed from the data the first time an owner's index is asked for them.
`import_pages` copies the pages into criu-model's own pages.img layout for
`criu-model import`. Every failure names the file and the byte offset.
"""

from __future__ import annotations

import contextlib
import os
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import xxhash

from criu_model.errors import (
    CriuModelError,
    ImageError,
    InconsistentImage,
    NotCaptured,
    TruncatedImage,
)
from criu_model.formats.criu.pb import core_pb2
from criu_model.pages.index import OwnerIndex
from criu_model.pages.layout import PAGE_SIZE, PARENT, STORED, OwnerKey, RunBuilder
from criu_model.pages.store import PageStore

if TYPE_CHECKING:
    from criu_model.formats.criu.mapping import CriuDump
    from criu_model.progress import Report
    from criu_model.snapshot import Snapshot

PE_PARENT, PE_LAZY, PE_PRESENT = 1, 2, 4
_READ_PAGES = 2048          # 8 MiB per pread, as criu_model.pages.store
MAX_ADDR = 1 << 64
MAX_PARENTS = 64            # a longer chain of parent/ links is refused (or a loop)


class PagesFile:
    """One pages-N.img (a file, or a member of an archive): pread by offset, opened lazily."""

    def __init__(self, path: str, size: int, opener: Callable[[], int], base: int = 0) -> None:
        self.path, self.size, self.base = path, size, base
        self._opener = opener
        self._fd = -1

    def pread(self, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset``; TruncatedImage when the file holds fewer."""
        if offset < 0 or length < 0 or offset + length > self.size:
            raise TruncatedImage(self.path, min(max(offset, 0), self.size),
                                 f"{length} bytes of pages at offset {offset} are asked for, "
                                 f"the file holds {self.size} (cut short?)")
        if self._fd < 0:
            self._fd = self._opener()
        out = bytearray()
        while len(out) < length:
            at = offset + len(out)
            try:
                chunk = os.pread(self._fd, length - len(out), self.base + at)
            except OSError as err:
                raise ImageError(self.path, at, f"cannot read: {err.strerror}") from err
            if not chunk:
                raise TruncatedImage(self.path, at, "page data ends early (the file shrank "
                                     "after it was listed)")
            out += chunk
        return bytes(out)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:  # a snapshot dropped without close() must not leak its fds
        with contextlib.suppress(OSError):
            self.close()


def file_opener(path: str) -> Callable[[], int]:
    """Opens a pages file of a directory like every image: O_NOFOLLOW, regular files only."""
    def open_() -> int:
        from criu_model.images.files import open_image

        return open_image(path)[0]
    return open_


@dataclass(frozen=True)
class PageRun:
    """One pagemap entry: nr_pages pages at vaddr; ``offset`` (in pages) into
    pages-<pages_id>.img, or None when the data is not in this dump (PE_PARENT,
    or PE_LAZY without PE_PRESENT)."""

    vaddr: int
    nr_pages: int
    flags: int
    offset: int | None
    at: int | None = None  # byte offset of the entry in its pagemap image

    @property
    def in_parent(self) -> bool:
        return bool(self.flags & PE_PARENT)


def page_runs(dump: CriuDump, name: str) -> tuple[int, list[PageRun]]:
    """(pages_id, runs) of one pagemap image (pagemap-PID.img or pagemap-shmem-ID.img)."""
    cached = dump.runs_cache.get(name)
    if cached is not None:
        return cached
    image = dump.images.get(name)
    if image is None or image.head is None:
        return 0, []
    runs, at = [], 0
    for e, off in zip(image.entries, image.offsets, strict=True):
        assert isinstance(e, core_pb2.PagemapEntry)
        n = e.nr_pages if e.HasField("nr_pages") else e.compat_nr_pages
        flags = e.flags if e.HasField("flags") else (PE_PARENT if e.in_parent else PE_PRESENT)
        present = bool(flags & PE_PRESENT) and not flags & PE_PARENT
        runs.append(PageRun(e.vaddr, n, flags, at if present else None, off))
        if present:
            at += n
    result = (image.head.pages_id, runs)  # type: ignore[attr-defined]
    dump.runs_cache[name] = result
    return result


def page_size(dump: CriuDump, name: str) -> int | None:
    """The page size a pagemap's pages file implies (its size / its page count), or None."""
    pages_id, runs = page_runs(dump, name)
    count = sum(r.nr_pages for r in runs if r.offset is not None)
    pf = dump.pages_files.get(pages_id)
    if not count or pf is None or pf.size % count:
        return None
    ps = pf.size // count
    return ps if ps >= 4096 and ps & (ps - 1) == 0 else None


class CriuOwnerIndex(OwnerIndex):
    """OwnerIndex of one CRIU owner; ``slot`` is the page offset in its pages file.

    The hashes are computed from the page data the first time they are asked
    for (a diff), never for show, memory or grep.
    """

    def __init__(self, key: OwnerKey, runs: list[PageRun], hasher: Callable[[], array[int]],
                 *, object_size: int = 0, object_path: bytes = b"") -> None:
        # Not OwnerIndex.__init__: the same attributes, from CRIU runs.
        self.pid = key[0]
        self.start_time = 0
        self.object_dev, self.object_ino = key[1], key[2]
        self.object_path, self.object_size = object_path, object_size
        self.addr, self.npages, self.state, self.slot, self.hash_pos = [], [], [], [], []
        pos = 0
        for r in runs:
            self.addr.append(r.vaddr)
            self.npages.append(r.nr_pages)
            self.state.append(STORED if r.offset is not None else PARENT)
            self.slot.append(r.offset or 0)
            self.hash_pos.append(pos)
            pos += r.nr_pages
        self.ends = [a + n * PAGE_SIZE for a, n in zip(self.addr, self.npages, strict=True)]
        self._hasher = hasher
        self._hashes: array[int] | None = None

    @property  # type: ignore[override]
    def hashes(self) -> array[int]:
        if self._hashes is None:
            self._hashes = self._hasher()
        return self._hashes

    @hashes.setter
    def hashes(self, value: array[int]) -> None:
        self._hashes = value


@dataclass
class _Owner:
    key: OwnerKey
    runs: list[PageRun]
    pages: PagesFile | None
    pages_name: str
    object_size: int = 0
    object_path: bytes = b""


@dataclass
class CriuPages:
    """What one CRIU directory holds of pages: owners and their files (no data read)."""

    root: str
    owners: dict[OwnerKey, _Owner] = field(default_factory=dict)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (file, what is wrong)
    lazy_pages: int = 0          # PE_LAZY runs without data: on the page server only
    parent_pages: int = 0        # PE_PARENT pages


def _check_runs(path: str, runs: list[PageRun]) -> None:
    """Runs ascending, page-aligned, non-empty, inside the address space: else the file is bad."""
    prev = 0
    for r in runs:
        end = r.vaddr + r.nr_pages * PAGE_SIZE
        if r.vaddr % PAGE_SIZE or r.nr_pages == 0 or r.vaddr < prev or end > MAX_ADDR:
            raise InconsistentImage(path, r.at, f"page run at {r.vaddr:#x} ({r.nr_pages} pages) "
                                    "is unaligned, empty, out of order or overlapping, or "
                                    "beyond the address space")
        prev = end


def collect(dump: CriuDump) -> CriuPages:
    """Every pagemap of the dump as owners: (pid, 0, 0) or (0, 0, shmid) for shared memory."""
    found = CriuPages(root=dump.root)
    for name in sorted(dump.images, key=_pagemap_order):
        image = dump.images[name]
        if image.kind != "PAGEMAP" or image.head is None:
            continue
        try:
            if name.startswith("pagemap-shmem-"):
                key: OwnerKey = (0, 0, int(name[len("pagemap-shmem-"):-len(".img")]))
            else:
                key = (int(name[len("pagemap-"):-len(".img")]), 0, 0)
        except ValueError:
            continue
        pages_id, runs = page_runs(dump, name)
        _check_runs(dump.path(name), runs)
        pf = dump.pages_files.get(pages_id)
        pages_name = f"pages-{pages_id}.img"
        need = sum(r.nr_pages for r in runs if r.offset is not None) * PAGE_SIZE
        found.lazy_pages += sum(r.nr_pages for r in runs if r.offset is None and not r.in_parent)
        found.parent_pages += sum(r.nr_pages for r in runs if r.in_parent)
        ps = page_size(dump, name)
        if ps is not None and ps != PAGE_SIZE:
            found.notes.append((pages_name, f"holds pages of {ps} bytes, this machine's are "
                                f"{PAGE_SIZE}: its contents are not read"))
            continue
        if need and pf is None:
            found.notes.append((pages_name, f"missing: {name} lists {need // PAGE_SIZE} pages "
                                "stored in it"))
        elif pf is not None and pf.size < need:
            found.notes.append((pages_name, f"is {pf.size} bytes, {name} needs {need}: cut "
                                f"short at offset {pf.size}"))
        runs = [r for r in runs if r.offset is not None or r.in_parent]
        found.owners[key] = _Owner(key, runs, pf, dump.path(pages_name))
    return found


def _pagemap_order(name: str) -> tuple[int, int]:
    """Processes first (by pid), then shared objects, as criu_model.pages stores them."""
    digits = "".join(c for c in name if c.isdigit())
    return (1 if name.startswith("pagemap-shmem-") else 0, int(digits or 0))


class CriuPageStore(PageStore):
    """The pages of one CRIU dump (and, through ``parent``, of the dumps before it)."""

    def __init__(self, pages: CriuPages, parent: CriuPageStore | None = None) -> None:
        # Not PageStore.__init__: there is no pages.img here, one file per owner instead.
        self.path = pages.root
        self.size = self.slots = 0
        self.parent = parent
        self.owns_fd = False
        self.pages = pages
        self._entries = {}
        self._indexes: dict[OwnerKey, OwnerIndex] = {}

    @property  # type: ignore[override]
    def fd(self) -> int:
        """There is no pages.img to copy: the writer must get criu-model's layout first."""
        raise CriuModelError("the pages of a CRIU dump are read in place from its "
                             "pages-*.img; copy them into criu-model's layout with "
                             "criu_model.formats.criu.pages.import_pages(snap) before "
                             "writing the snapshot")

    @fd.setter
    def fd(self, value: int) -> None:
        pass

    def owner_keys(self) -> list[OwnerKey]:
        return list(self.pages.owners)

    def owner(self, key: OwnerKey) -> OwnerIndex | None:
        index = self._indexes.get(key)
        if index is None:
            owner = self.pages.owners.get(key)
            if owner is None:
                return None
            index = self._indexes[key] = CriuOwnerIndex(
                key, owner.runs, lambda: self._hash(key), object_size=owner.object_size,
                object_path=owner.object_path)
        return index

    def parent_owner(self, key: OwnerKey, start_time: int) -> OwnerIndex | None:
        return self.owner(key)  # CRIU records no start times: the pid alone names a process

    def _hash(self, key: OwnerKey) -> array[int]:
        """xxh3-64 of every page of an owner, in run order (what pagemap.img would hold)."""
        out: array[int] = array("Q")
        h = xxhash.xxh3_64_intdigest
        for _addr, data in self.segments(key, 0, MAX_ADDR):
            view = memoryview(data or b"")
            out.extend(h(view[i:i + PAGE_SIZE]) for i in range(0, len(view), PAGE_SIZE))
        return out

    def read_slots(self, slot: int, hashes: object) -> bytes:
        raise CriuModelError("a CRIU page store has no pages.img slots")

    def segments(self, key: OwnerKey, start: int, end: int
                 ) -> Iterator[tuple[int, bytes | None]]:
        owner = self.pages.owners.get(key)
        index = self.owner(key)
        if owner is None or index is None:
            return
        for lo, n, state, slot, _h in index.pages(start, end):
            pos = 0
            while pos < n:
                step = min(n - pos, _READ_PAGES)
                addr = lo + pos * PAGE_SIZE
                if state == STORED:
                    if owner.pages is None:
                        raise TruncatedImage(owner.pages_name, None, "missing: the pagemap "
                                             f"lists pages at {addr:#x} stored in it")
                    yield addr, owner.pages.pread((slot + pos) * PAGE_SIZE, step * PAGE_SIZE)
                else:
                    yield from self._from_parent(key, addr, step)
                pos += step

    def _from_parent(self, key: OwnerKey, addr: int, npages: int
                     ) -> Iterator[tuple[int, bytes | None]]:
        if self.parent is None:
            raise NotCaptured(f"{self.path}: pages at {addr:#x} of {_owner_name(key)} are in "
                              "CRIU's parent dump (PE_PARENT), which is not here (no parent/ "
                              "link next to the images, or a checkpoint archive)")
        yield from super()._from_parent(key, addr, npages)

    def close(self) -> None:
        for owner in self.pages.owners.values():
            if owner.pages is not None:
                owner.pages.close()
        if self.parent is not None:
            self.parent.close()


def _owner_name(key: OwnerKey) -> str:
    return f"pid {key[0]}" if key[0] else f"shared memory object {key[2]}"


def open_store(dump: CriuDump, directory: str | None) -> CriuPageStore:
    """The page store of a decoded dump; ``directory`` (a real dump dir) finds parent/."""
    pages = collect(dump)
    parent = None
    if directory is not None and pages.parent_pages:
        parent = _open_parent(directory, set())
    return CriuPageStore(pages, parent)


def _open_parent(directory: str, seen: set[str]) -> CriuPageStore | None:
    """parent/ as CRIU's --prev-images-dir leaves it: pagemaps and pages only are read."""
    link = os.path.join(directory, "parent")
    if not os.path.isdir(link):
        return None
    real = os.path.realpath(link)
    if real in seen or len(seen) >= MAX_PARENTS:
        raise InconsistentImage(link, None, "the chain of parent dumps loops back on itself "
                                f"or is longer than {MAX_PARENTS}")
    seen.add(real)
    from criu_model.formats.criu import read_dir

    dump = read_dir(link, only_pages=True)
    pages = collect(dump)
    return CriuPageStore(pages, _open_parent(link, seen) if pages.parent_pages else None)


def import_pages(snap: Snapshot, directory: str | os.PathLike[str] | None = None,
                 progress: Report | None = None) -> None:
    """Copy a CRIU snapshot's pages into criu-model's layout, so images.write() stores them.

    Call before ``criu_model.write(snap, DIR)`` with DIR's parent as ``directory``
    (the data then lands in an unnamed file there, linked in by the writer).
    Inherited (parent) pages are copied too: the snapshot stands alone.
    ``progress(copied, total, note)`` hears the bytes copied so far (total: the
    pagemaps' pages, parents' included).
    """
    from criu_model.images.pb import pages_pb2
    from criu_model.pages.sink import PageSink

    store = snap.page_store
    if not isinstance(store, CriuPageStore):
        return
    sink = PageSink(os.fspath(directory) if directory is not None else None, background=False)
    messages: list[pages_pb2.PageRuns] = []
    h = xxhash.xxh3_64_intdigest
    stored = 0
    keys = list(store.owner_keys())
    total = sum(run.nr_pages for k in keys for run in store.pages.owners[k].runs
                if run.offset is not None or run.in_parent) * PAGE_SIZE if progress else 0
    try:
        for n, key in enumerate(keys, 1):
            owner = store.pages.owners[key]
            builder = RunBuilder()
            for addr, data in store.segments(key, 0, MAX_ADDR):
                if not data:
                    continue
                view = memoryview(data)
                slot = sink.append(view)
                builder.add(addr, len(data) // PAGE_SIZE, STORED, slot,
                            [h(view[i:i + PAGE_SIZE]) for i in range(0, len(view), PAGE_SIZE)])
                stored += len(data) // PAGE_SIZE
                if progress is not None:
                    progress(stored * PAGE_SIZE, total, f"owner {n}/{len(keys)}")
            ident: dict[str, object] = ({"pid": key[0]} if key[0] else {
                "object_dev": key[1], "object_ino": key[2], "object_size": owner.object_size,
                "object_path": owner.object_path})
            messages.extend(builder.messages(**ident))
        sink.drain()
    except BaseException:
        sink.close()
        raise
    snap.pagemap = messages
    snap.page_sink = sink
    snap.page_store = PageStore(messages, sink.fd, sink.bytes_written,
                                f"{sink.directory}/(pages imported from CRIU)", owns_fd=False)
    snap.inventory.page_stats.stored = stored
    snap.inventory.page_stats.bytes_written = sink.bytes_written
    store.close()
