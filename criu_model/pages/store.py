"""Reading stored pages back: one snapshot's pages.img and its chain of parents.

Nothing is loaded up front but the page map: page data is read with
``pread`` when asked for and every page read is checked against its xxh3-64
hash in pagemap.img, so a flipped byte is an ImageError naming the file and
offset. A PAGE_PARENT run is read from the parent snapshot, which is opened
(inventory and page map only) when the snapshot is loaded: a missing parent,
or one that is not the snapshot this one was dumped against, is an error then.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import xxhash

from criu_model.errors import ImageError, InconsistentImage, TruncatedImage
from criu_model.images import framing
from criu_model.images.digest import sha256
from criu_model.images.files import exists, open_image, read_file, read_image
from criu_model.images.pb import inventory_pb2, pages_pb2
from criu_model.images.registry import INVENTORY, PAGEMAP
from criu_model.pages.index import OwnerIndex
from criu_model.pages.layout import (
    PAGE_SIZE,
    PAGEMAP_IMG,
    PAGES_IMG,
    PAGES_KIND,
    PARENT,
    STORED,
    ZERO,
    OwnerKey,
    entry_hash_count,
    owner_key,
    parse_header,
    slot_offset,
)

_READ_PAGES = 2048  # 8 MiB per pread when streaming


class PageStore:
    """The page contents of one snapshot (and, through ``parent``, of its ancestors)."""

    def __init__(self, runs: Sequence[pages_pb2.PageRuns], fd: int, size: int, path: str,
                 parent: PageStore | None = None, *, owns_fd: bool = True) -> None:
        self.path = path
        self.fd = fd
        self.size = size
        self.slots = max(0, size // PAGE_SIZE - 1)
        self.parent = parent
        self.owns_fd = owns_fd
        self._entries: dict[OwnerKey, list[pages_pb2.PageRuns]] = {}
        for entry in runs:
            self._entries.setdefault(owner_key(entry), []).append(entry)
        # Built when first asked for: a fresh dump that is only written never
        # needs one, and an index costs 8 bytes a page.
        self._indexes: dict[OwnerKey, OwnerIndex] = {}

    def owner_keys(self) -> list[OwnerKey]:
        """Every owner: processes in dump order, then shared objects."""
        return list(self._entries)

    def owner(self, key: OwnerKey) -> OwnerIndex | None:
        index = self._indexes.get(key)
        if index is None:
            entries = self._entries.get(key)
            if entries is None:
                return None
            index = self._indexes[key] = OwnerIndex(entries)
        return index

    def parent_owner(self, key: OwnerKey, start_time: int) -> OwnerIndex | None:
        """This snapshot's runs of an owner, for a child dump: same pid *and* start time."""
        index = self.owner(key)
        if index is None or (key[0] and index.start_time != start_time):
            return None
        return index

    def read_slots(self, slot: int, hashes: Sequence[int]) -> bytes:
        """Pages from ``slot`` on, checked against ``hashes`` (one per page)."""
        n = len(hashes)
        offset = slot_offset(slot)
        if slot < 0 or slot + n > self.slots:
            raise TruncatedImage(self.path, offset, f"slots {slot}..{slot + n - 1} lie beyond "
                                 f"the {self.slots} pages the file holds")
        try:
            data = os.pread(self.fd, n * PAGE_SIZE, offset)
        except OSError as err:
            raise ImageError(self.path, offset, f"cannot read: {err.strerror}") from err
        if len(data) != n * PAGE_SIZE:
            raise TruncatedImage(self.path, offset + len(data), "page data ends early")
        view = memoryview(data)
        h = xxhash.xxh3_64_intdigest
        for i in range(n):
            if h(view[i * PAGE_SIZE:(i + 1) * PAGE_SIZE]) != hashes[i]:
                raise ImageError(self.path, offset + i * PAGE_SIZE,
                                 f"page in slot {slot + i} does not match its checksum in "
                                 f"{PAGEMAP_IMG}: the page data is corrupt")
        return data

    def segments(self, key: OwnerKey, start: int, end: int
                 ) -> Iterator[tuple[int, bytes | None]]:
        """(addr, data) of the captured pages of an owner in [start, end), in pieces.

        A gap (pages not captured) is yielded as (addr_of_gap_end_marker) only
        implicitly: callers compare consecutive addresses. ``data`` is None for
        nothing; zero pages come as zero bytes.
        """
        index = self.owner(key)
        if index is None:
            return
        for lo, n, state, slot, hash_index in index.pages(start, end):
            pos = 0
            while pos < n:
                step = min(n - pos, _READ_PAGES)
                addr = lo + pos * PAGE_SIZE
                if state == ZERO:
                    yield addr, bytes(step * PAGE_SIZE)
                elif state == STORED:
                    hashes = index.hashes[hash_index + pos:hash_index + pos + step]
                    yield addr, self.read_slots(slot + pos, hashes)
                elif state == PARENT:
                    yield from self._from_parent(key, addr, step)
                pos += step

    def _from_parent(self, key: OwnerKey, addr: int, npages: int
                     ) -> Iterator[tuple[int, bytes | None]]:
        end = addr + npages * PAGE_SIZE
        if self.parent is None:
            raise InconsistentImage(self.path, None, f"pages at {addr:#x} are inherited from a "
                                    "parent snapshot, but there is none")
        expect = addr
        for got_addr, data in self.parent.segments(key, addr, end):
            if got_addr != expect:
                break
            yield got_addr, data
            expect = got_addr + len(data or b"")
        if expect != end:
            raise InconsistentImage(self.parent.path, None,
                                    f"pages {expect:#x}-{end:#x} of owner {key} are inherited "
                                    "from this parent, which does not hold them")

    def close(self) -> None:
        if self.parent is not None:
            self.parent.close()
        if self.owns_fd and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:  # a snapshot dropped without close() must not leak its fd
        with contextlib.suppress(OSError, AttributeError):
            if self.owns_fd and self.fd >= 0:
                os.close(self.fd)
                self.fd = -1


def _check_runs(runs: Sequence[pages_pb2.PageRuns], slots: int, path: str,
                offsets: Sequence[int] | None, has_parent: bool) -> None:
    """Cross-references of pagemap.img: slots in the file, hash counts, ascending runs."""
    last_end: dict[OwnerKey, int] = {}
    for i, entry in enumerate(runs):
        at = offsets[i] if offsets and i < len(offsets) else None
        n = len(entry.addr)
        if not (len(entry.npages) == len(entry.state) == len(entry.slot) == n):
            raise InconsistentImage(path, at, "page runs have arrays of different lengths")
        key = owner_key(entry)
        prev = last_end.get(key, 0)
        hashes = 0
        for addr, npages, state, slot in zip(entry.addr, entry.npages, entry.state, entry.slot,
                                             strict=True):
            if addr < prev or addr % PAGE_SIZE or npages == 0:
                raise InconsistentImage(path, at, f"page run at {addr:#x} of owner {key} is "
                                        "unaligned, empty, or overlaps the previous run")
            prev = addr + npages * PAGE_SIZE
            if state == STORED and slot + npages > slots:
                raise InconsistentImage(path, at, f"page run at {addr:#x} refers to slots "
                                        f"{slot}..{slot + npages - 1}; {PAGES_IMG} holds "
                                        f"{slots}")
            if state == PARENT and not has_parent:
                raise InconsistentImage(path, at, f"page run at {addr:#x} is inherited from a "
                                        "parent, but the snapshot has none")
            if state not in (STORED, ZERO, PARENT):
                raise InconsistentImage(path, at, f"page run at {addr:#x} has unknown state "
                                        f"unknown({state})")
            if state != ZERO:
                hashes += npages
        held = entry_hash_count(entry)
        if held is None:
            raise InconsistentImage(path, at, f"owner {key}: hash_data of {len(entry.hash_data)} "
                                    "bytes is not whole 8-byte hashes, or is set beside "
                                    "hashes")
        if hashes != held:
            raise InconsistentImage(path, at, f"owner {key}: {held} page hashes "
                                    f"for {hashes} pages")
        last_end[key] = prev


def open_pages(root: Path, inventory: inventory_pb2.Inventory,
               runs: Sequence[pages_pb2.PageRuns], offsets: Sequence[int] | None = None,
               _seen: frozenset[str] = frozenset()) -> PageStore:
    """Open the page data of the snapshot in ``root`` and, recursively, its parents."""
    path = root / PAGES_IMG
    record = next((r for r in inventory.images if r.name == PAGES_IMG), None)
    if record is None:
        raise TruncatedImage(str(root / "inventory.img"), None,
                             f"records page contents but lists no {PAGES_IMG}")
    fd, size = open_image(path)
    try:
        if size != record.size:
            raise TruncatedImage(str(path), min(size, record.size),
                                 f"is {size} bytes, inventory.img records {record.size} "
                                 "(cut short or replaced)")
        head = os.pread(fd, framing.HEADER_SIZE, 0)
        if len(head) < framing.HEADER_SIZE or size < PAGE_SIZE:
            raise TruncatedImage(str(path), len(head), "the header page is incomplete")
        magic, kind, major, _minor = parse_header(head)
        if magic != framing.MAGIC or kind != PAGES_KIND:
            raise ImageError(str(path), 0, f"bad magic {magic!r}/{kind:#x}: not a page file")
        if major not in framing.READABLE_MAJORS:
            raise ImageError(str(path), 8, f"format version {major} is not readable")
        if size % PAGE_SIZE:
            raise TruncatedImage(str(path), size - size % PAGE_SIZE,
                                 "ends inside a page (cut short)")
        parent = _open_parent(root, inventory, _seen | {str(root.resolve())})
        _check_runs(runs, size // PAGE_SIZE - 1, str(root / PAGEMAP_IMG), offsets,
                    parent is not None)
        return PageStore(runs, fd, size, str(path), parent)
    except BaseException:
        os.close(fd)
        raise


def _open_parent(root: Path, inventory: inventory_pb2.Inventory,
                 seen: frozenset[str]) -> PageStore | None:
    """The parent's page store, checked to be the snapshot this one was dumped against."""
    if not inventory.parent_snapshot:
        return None
    where = Path(inventory.parent_snapshot)
    parent_root = where if where.is_absolute() else root / where
    shown = f"{parent_root} (parent of {root})"
    if str(parent_root.resolve()) in seen:
        raise InconsistentImage(shown, None, "the parent chain loops back on itself")
    inv_path = parent_root / "inventory.img"
    if not exists(inv_path):
        raise InconsistentImage(shown, None, "missing: the parent snapshot this incremental "
                                "dump needs is gone (the chain is broken)")
    _, inv_entries, _ = read_image(inv_path, INVENTORY)
    if len(inv_entries) != 1:
        raise InconsistentImage(str(inv_path), None, "holds no single inventory")
    parent_inv = inv_entries[0]
    assert isinstance(parent_inv, inventory_pb2.Inventory)
    record = next((r for r in parent_inv.images if r.name == PAGEMAP_IMG), None)
    if (record is None or not parent_inv.pages_captured
            or record.sha256 != inventory.parent_pagemap_sha256
            or parent_inv.time_ns != inventory.parent_time_ns):
        raise InconsistentImage(shown, None, "is not the snapshot this one was dumped against "
                                "(replaced or changed since)")
    pm_path = parent_root / PAGEMAP_IMG
    data = read_file(pm_path)
    if sha256(data) != record.sha256:
        raise ImageError(str(pm_path), None, "does not match the checksum recorded in its "
                         "inventory.img (replaced or corrupted)")
    _, runs, offsets = read_image(pm_path, PAGEMAP, data)
    return open_pages(parent_root, parent_inv, runs, offsets, seen)
