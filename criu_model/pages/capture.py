"""Capture page contents of a frozen process tree into a PageSink.

What is stored, per VMA (what a restore needs and cannot get elsewhere):

* private mappings (anonymous, heap, stack, and private file mappings): pages
  present or swapped that are anonymous, i.e. written copies. Clean pages of
  a private file mapping are still the file's pages (pagemap's "file" bit):
  not stored, the VMA records the file's identity. Pages mapping the shared
  zero page are recorded as zero, never stored.
* shared anonymous memory, memfd and SysV shm mappings, and shared mappings
  of deleted files: once per shared object (its map_files st_dev/st_ino),
  read through ``/proc/PID/map_files`` with SEEK_DATA/SEEK_HOLE, so holes are
  skipped and nothing is faulted in. MAP_SHARED mappings of files that exist
  are in the file; [vdso], [vvar] and [vsyscall] belong to the kernel.

Finding the pages: ``PAGEMAP_SCAN`` (Linux 6.7) returns the present or
swapped runs of the whole address space in one walk (zero-page runs are
recognised there), then the classic 64-bit pagemap entries of those runs give
"exclusively mapped" (bit 56) and the page frame number (readable with
CAP_SYS_ADMIN). Without the ioctl, the classic entries of every private VMA.

Copy-on-write sharing: a page mapped exclusively is read and stored. A page
that is not (shared after fork with another process of the tree, or KSM) is
looked up by its frame number: stored once, referenced by every later
mapping. CRIU with --leave-running stores such pages once per process. The
lookups of a chunk of pagemap entries are made at once, in C (_Chunk), and a
run of shared pages stored at consecutive slots is found by one compare, so a
forked child costs no Python step per page.

Incremental (a parent snapshot): each page read is hashed (xxh3-64); a page
whose hash equals the parent's for the same process (same pid and start time)
and address is recorded as inherited, not stored. The hash is also the
stored page's checksum. The reads and the hashing of an incremental pass run
on two reader threads (_ReadPool), since it reads everything and stores little.

Reading is batched: up to 1 MiB in one ``process_vm_readv`` with up to
IOV_MAX remote ranges into one reused buffer, written with one ``write`` (by
the sink's writer thread, beside the next read). Nothing here writes to a
target.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import queue
import re
import threading
from array import array
from bisect import bisect_right
from collections.abc import Callable, Sequence
from itertools import groupby, repeat
from operator import and_, itemgetter, sub

import xxhash

from criu_model.collect.procfs import ProcDir, task_state
from criu_model.errors import ProcessGone
from criu_model.images.pb import mm_pb2, pages_pb2
from criu_model.kernel.extents import data_extents
from criu_model.kernel.pagemap import (
    PAGEMAP_ENTRY_SIZE,
    PFN_MASK,
    PageCategory,
    entry_flag_bytes,
    pagemap_scan,
    pagemap_scan_supported,
    read_entries,
)
from criu_model.kernel.vmread import IOV_MAX, RemoteReader
from criu_model.pages.index import OwnerIndex
from criu_model.pages.layout import PAGE_SIZE, PARENT, STORED, ZERO, OwnerKey, RunBuilder
from criu_model.pages.sink import PageSink
from criu_model.progress import Report

BATCH_BYTES = 1 << 20
# Buffers the writer thread may hold at once: three left it stalling on tmpfs page
# allocation bursts (1 GiB: 0.62 s); eight, 0.55 s; sixteen, no better.
RING_BUFFERS = 8
NOT_CAPTURED_FIELD = "pages_data"  # MemoryMap.unreadable field when contents are missing
# Reader threads of an incremental dump (see _ReadPool): one per core here; a
# third on two cores only adds switching.
POOL_READERS = 2
_BATCH_PAGES = BATCH_BYTES // PAGE_SIZE
# Candidate ranges at most this far apart are read as one (see _candidates):
# 64 pages of holes cost 512 bytes of pagemap entries and one regex match.
_JOIN_GAP = 64 * PAGE_SIZE
_hash: Callable[[memoryview], int] = xxhash.xxh3_64_intdigest


def _page_hashes(pages: list[memoryview], n: int) -> array[int]:
    """xxh3-64 of the first ``n`` page views: one loop in C, no slicing per page.

    262,144 pages: 28 ms, against 45 ms for a comprehension that slices.
    """
    return array("Q", map(_hash, pages[:n]))

# Page codes from the top byte of a classic pagemap entry (bits 56-63).
_HOLE, _FILE, _EXCL, _SHARED, _SWAP = 0, 1, 2, 3, 4


def _code(top: int) -> int:
    present, swapped, file, excl = top & 0x80, top & 0x40, top & 0x20, top & 0x01
    if present:
        if file:
            return _FILE
        return _EXCL if excl else _SHARED
    return _SWAP if swapped else _HOLE


_CODES = bytes(_code(b) for b in range(256))
# Runs of pages to store: exclusive, or shared/swapped. Holes and clean file pages
# are skipped by the regex itself (a forked child's chunk is mostly those, and a
# Python step per run of them cost it a third of its classification); file
# pages are counted per chunk.
_CODE_RUNS = re.compile(rb"\x02+|[\x03\x04]+")
_SWAP_KEY = 1 << 55  # dedupe keys of swap entries, apart from frame numbers
_UNKNOWN = (-2, 0)  # (slot, hash) of a key not in the copy-on-write table
_SLOT_OF = itemgetter(0)
_ADDR = itemgetter(0)  # of a run
_HASH_OF = itemgetter(1)
_SCAN_ANYOF = PageCategory.PRESENT | PageCategory.SWAPPED
_SCAN_RETURN = _SCAN_ANYOF | PageCategory.FILE | PageCategory.PFNZERO
_IS_ZERO = int(PageCategory.PFNZERO)
_IS_FILE = int(PageCategory.FILE)
_IS_PRESENT = int(PageCategory.PRESENT)
_SHARED_KINDS = frozenset({mm_pb2.VMA_SHARED_ANON, mm_pb2.VMA_MEMFD, mm_pb2.VMA_SYSV_SHM})
_KERNEL_KINDS = frozenset({mm_pb2.VMA_VDSO, mm_pb2.VMA_VVAR, mm_pb2.VMA_VSYSCALL})


def stores_private(vma: mm_pb2.Vma) -> bool:
    """Private mappings whose written pages are stored per process."""
    return not vma.shared and vma.kind not in _KERNEL_KINDS


def stores_object(vma: mm_pb2.Vma) -> bool:
    """Shared mappings whose object is stored once (shmem, memfd, SysV, deleted files)."""
    return vma.shared and (vma.kind in _SHARED_KINDS or (vma.kind == mm_pb2.VMA_FILE
                                                         and vma.deleted))


def _split_vmas(vmas: Sequence[mm_pb2.Vma]) -> tuple[list[mm_pb2.Vma], list[mm_pb2.Vma]]:
    """(stores_private, stores_object) VMAs, in one pass (a fork tree asks per process)."""
    private: list[mm_pb2.Vma] = []
    objects: list[mm_pb2.Vma] = []
    for v in vmas:
        kind = v.kind
        if not v.shared:
            if kind not in _KERNEL_KINDS:
                private.append(v)
        elif kind in _SHARED_KINDS or (kind == mm_pb2.VMA_FILE and v.deleted):
            objects.append(v)
    return private, objects


_zero_pfn_cache: list[int] = []


def zero_pfn() -> int:
    """Frame number of the shared zero page (0 when PFNs are hidden: no CAP_SYS_ADMIN).

    Learnt once per run from our own memory: a read fault on an untouched
    private anonymous page maps the zero page.
    """
    if _zero_pfn_cache:
        return _zero_pfn_cache[0]
    pfn = 0
    area = mmap.mmap(-1, PAGE_SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        _ = area[0]  # read fault: maps the zero page
        anchor = ctypes.c_char.from_buffer(area)
        addr = ctypes.addressof(anchor)
        del anchor
        try:
            fd = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
            try:
                raw = os.pread(fd, PAGEMAP_ENTRY_SIZE, addr // PAGE_SIZE * PAGEMAP_ENTRY_SIZE)
            finally:
                os.close(fd)
            entry = int.from_bytes(raw, "little")
            if entry >> 63:
                pfn = entry & PFN_MASK
        except OSError:
            pfn = 0
    finally:
        area.close()
    _zero_pfn_cache.append(pfn)
    return pfn


class CaptureStats:
    """Page counts of one dump, for the inventory."""

    __slots__ = ("deduplicated", "file_clean", "inherited", "objects", "read_bytes", "stored",
                 "zero")

    def __init__(self) -> None:
        self.stored = 0
        self.zero = 0
        self.deduplicated = 0
        self.inherited = 0
        self.file_clean = 0
        self.read_bytes = 0
        self.objects = 0

    def fields(self, bytes_written: int) -> dict[str, int]:
        return {"stored": self.stored, "zero": self.zero, "deduplicated": self.deduplicated,
                "inherited": self.inherited, "file_clean": self.file_clean,
                "bytes_written": bytes_written, "shared_objects": self.objects,
                "read_bytes": self.read_bytes}


_Run = tuple[int, int, int, int, Sequence[int]]  # (addr, npages, state, slot, hashes)


class _Seg:
    """A stretch of pages of one owner to read; ``runs`` set once it was read.

    ``keys`` (one per page) marks pages that may be mapped elsewhere: they
    are read through /proc/PID/mem and entered in the copy-on-write table.
    """

    __slots__ = ("addr", "keys", "mem", "npages", "runs")

    def __init__(self, addr: int, npages: int, keys: list[int] | None = None,
                 mem: bool = False) -> None:
        self.addr = addr
        self.npages = npages
        self.keys = keys
        self.mem = mem
        self.runs: list[_Run] | None = None


class _Chunk:
    """The copy-on-write table's answer for every page of a chunk of pagemap entries."""

    __slots__ = ("codes", "entries", "keys", "known", "slots")

    def __init__(self, data: bytes, codes: bytes, shared: dict[int, tuple[int, int]]) -> None:
        self.codes = codes
        self.entries = entries = array("Q", data)
        if b"\x04" in codes:  # swap entries: keyed apart from frame numbers
            keys = [e & PFN_MASK if c != _SWAP else (e & PFN_MASK) | _SWAP_KEY
                    for e, c in zip(entries, codes, strict=True)]
        else:
            keys = list(map(and_, entries, repeat(PFN_MASK)))
        self.keys = keys
        # Exclusive pages, holes and file pages are asked too (it costs less than
        # picking the shared ones out); only shared runs look at the answers.
        self.known = list(map(shared.get, keys, repeat(_UNKNOWN)))
        self.slots = list(map(_SLOT_OF, self.known))


ParentLookup = Callable[[OwnerKey, int], OwnerIndex | None]


class PageCapture:
    """One dump's page capture: the sink, the copy-on-write table, the parent, stats.

    A plain class, like the rest of the dump path: importing dataclasses
    (inspect, ast, dis) costs a dump 4 ms.
    """

    def __init__(self, sink: PageSink, parent: ParentLookup | None = None,
                 progress: Report | None = None) -> None:
        self.sink = sink
        self.parent = parent
        self.stats = CaptureStats()
        self.owners: dict[OwnerKey, list[pages_pb2.PageRuns]] = {}
        # dedupe key (PFN, or swap entry + 1 << 55) -> (slot, hash); slot -1: inherited
        self.shared: dict[int, tuple[int, int]] = {}
        # progress(read bytes, expected bytes or 0, note), after every batch read
        self.progress = progress
        self.expected_bytes = 0
        self.note = ""
        self._ring: RemoteReader | None = None
        self._pool: list[RemoteReader] = []
        # id(buffer view) -> (the view, a view of each of its pages), made once per buffer
        self._pages: dict[int, tuple[memoryview, list[memoryview]]] = {}
        # pid -> the decided runs of a process whose children follow (_Reference)
        self._references: dict[int, _Reference] = {}
        self._siblings: dict[int, _Reference] = {}  # ppid -> its child captured last

    def expected(self, vmas: Sequence[mm_pb2.Vma]) -> int:
        """About how many bytes capturing these VMAs reads, from their page counts.

        Resident anonymous and swapped pages of private mappings, every resident
        page of a shared object; pages shared copy-on-write with a process read
        before are not read again, so the real figure can be smaller. 0 when the
        dump counts no pages (--no-page-counts), or reports no progress: the
        figure feeds only the progress line, and costs 0.15 ms a process.
        """
        if self.progress is None:
            return 0
        total = 0
        for v in vmas:
            if not v.HasField("pages"):
                continue
            if stores_private(v):
                total += v.pages.resident - v.pages.file + v.pages.swapped
            elif stores_object(v):
                total += v.pages.resident + v.pages.swapped
        return total * PAGE_SIZE

    def report(self) -> None:
        if self.progress is not None:
            self.progress(self.stats.read_bytes, self.expected_bytes, self.note)

    def _reader(self, pid: int) -> RemoteReader:
        """One ring of buffers for the whole dump (8 MiB; allocating it per process costs).

        An incremental dump reads private pages in its pool (pool_readers) and
        lends no buffer to the writer: one buffer is enough here.
        """
        if self._ring is None:
            self._ring = RemoteReader(pid, BATCH_BYTES,
                                      buffers=RING_BUFFERS if self.parent is None else 1)
        else:
            self._ring.retarget(pid)
        return self._ring

    def pool_readers(self, pid: int) -> list[RemoteReader]:
        """The reader threads' buffers (one each), made once per dump, aimed at ``pid``."""
        if not self._pool:
            self._pool = [RemoteReader(pid, BATCH_BYTES) for _ in range(POOL_READERS)]
        for reader in self._pool:
            if reader.pid != pid:
                reader.retarget(pid)
        return self._pool

    def page_views(self, view: memoryview) -> list[memoryview]:
        """A view of each page of a reused buffer: hashing maps over them in C."""
        known = self._pages.get(id(view))
        if known is None or known[0] is not view:
            pages = [view[i:i + PAGE_SIZE] for i in range(0, len(view), PAGE_SIZE)]
            known = self._pages[id(view)] = (view, pages)
        return known[1]

    def messages(self) -> list[pages_pb2.PageRuns]:
        """Every owner's entries: processes in dump order, then shared objects."""
        procs = [m for k, ms in self.owners.items() if k[0] for m in ms]
        objs = [m for k, ms in self.owners.items() if not k[0] for m in ms]
        return procs + objs

    def capture_process(self, pid: int, start_time: int, vmas: Sequence[mm_pb2.Vma],
                        proc_path: str, *, ppid: int = 0,
                        referred: bool = False) -> list[tuple[str, str]]:
        """Store the pages of one frozen process; returns (field, reason) notes.

        ``referred``: children of this process follow; ``ppid``: a parent
        captured before with ``referred`` is compared with (see _Reference).

        Raises ProcessGone when it died; its runs are then not recorded (pages
        already written stay in pages.img, unreferenced).
        """
        notes: list[tuple[str, str]] = []
        private, objects = _split_vmas(vmas)
        reader = self._reader(pid)
        with reader:
            try:
                if private:
                    parent = self.parent((pid, 0, 0), start_time) if self.parent else None
                    # the sibling captured last, else the parent: children forked one
                    # after the other share the pages their parent wrote since
                    ref = self._siblings.get(ppid) or self._references.get(ppid)
                    work = _ProcessPass(self, reader, parent, proc_path, ref if ppid else None)
                    builder = work.run(private)
                    self.owners[(pid, 0, 0)] = builder.messages(pid=pid, start_time=start_time)
                    if work.referable:
                        mine = _Reference(proc_path, work.runs)
                        if ppid:
                            self._siblings[ppid] = mine
                        if referred:
                            self._references[pid] = mine
                for vma in objects:
                    note = self._capture_object(vma, proc_path, reader)
                    if note:
                        notes.append(note)
            except ProcessLookupError as err:
                self.owners.pop((pid, 0, 0), None)
                raise ProcessGone(pid, "exited while its memory was read") from err
            except OSError as err:
                if _gone(proc_path):
                    self.owners.pop((pid, 0, 0), None)
                    raise ProcessGone(pid, "exited while its memory was read") from err
                # Alive, but a range could not be read: its memory changed under
                # us (--freeze none) or a mapping refuses even /proc/PID/mem.
                # The process stays in the snapshot, its pages marked not captured.
                self.owners.pop((pid, 0, 0), None)
                notes.append((NOT_CAPTURED_FIELD, f"page contents not captured: "
                              f"{err.strerror or err}"))
            finally:
                reader.settle()  # the writer gives every buffer back before they go
        return notes

    # ----------------------------------------------------------- shared objects

    def _capture_object(self, vma: mm_pb2.Vma, proc_path: str,
                        reader: RemoteReader) -> tuple[str, str] | None:
        if not vma.map_file_known:
            return ("shared_pages", f"shared memory {vma.start:#x}-{vma.end:#x}: its object has "
                    "no identity (map_files unreadable): contents not captured")
        key: OwnerKey = (0, vma.map_file_dev, vma.map_file_ino)
        if key in self.owners:
            return None  # stored once, for the first process that maps it
        try:
            fd = os.open(f"{proc_path}/map_files/{vma.start:x}-{vma.end:x}",
                         os.O_RDONLY | os.O_CLOEXEC)
        except PermissionError:
            return ("shared_pages", f"shared memory {vma.start:#x}-{vma.end:#x}: map_files needs "
                    "CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE: contents not captured")
        except FileNotFoundError as err:
            raise ProcessLookupError(errno.ESRCH, "map_files entry vanished") from err
        try:
            size = os.fstat(fd).st_size
            parent = self.parent(key, 0) if self.parent else None
            builder = RunBuilder()
            for lo, hi in _page_extents(fd, size):
                off = lo
                while off < hi:
                    view = reader.view
                    n = min(hi - off, len(view))
                    got = os.preadv(fd, [view[:n]], off)
                    if got <= 0:
                        break
                    if got % PAGE_SIZE:  # the object ends inside this page: pad it
                        pad = PAGE_SIZE - got % PAGE_SIZE
                        view[got:got + pad] = bytes(pad)
                        got += pad
                    self.stats.read_bytes += got
                    self.report()
                    _store_pages(self, builder, off, view[:got], parent, reader)
                    off += got
            self.owners[key] = builder.messages(object_dev=vma.map_file_dev,
                                                object_ino=vma.map_file_ino,
                                                object_path=vma.path, object_size=size)
            self.stats.objects += 1
        finally:
            os.close(fd)
        return None


def _gone(proc_path: str) -> bool:
    """The process exited (its /proc entry is gone, or it is a zombie without memory)."""
    root, pid = os.path.split(proc_path)
    return task_state(ProcDir(int(pid), root)) in (None, "Z", "X")


def _page_extents(fd: int, size: int) -> list[tuple[int, int]]:
    """Page-aligned [start, end) extents holding data, neighbours merged."""
    top = -(-size // PAGE_SIZE) * PAGE_SIZE
    found = data_extents(fd, size)
    if found is None:  # no SEEK_DATA here: the whole object
        return [(0, top)] if size else []
    out: list[tuple[int, int]] = []
    for lo, hi in found:
        lo, hi = lo - lo % PAGE_SIZE, min(-(-hi // PAGE_SIZE) * PAGE_SIZE, top)
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _store_pages(cap: PageCapture, builder: RunBuilder, addr: int, data: memoryview,
                 parent: OwnerIndex | None, reader: RemoteReader) -> None:
    """Hash whole pages read at ``addr`` (in reader's buffer); store or mark inherited."""
    n = len(data) // PAGE_SIZE
    hashes = _page_hashes(cap.page_views(reader.view), n)  # data is the buffer's start
    if parent is None:
        pieces = [(STORED, 0, n)]
    else:
        before = parent.hash_slice(addr, n)
        pieces = (_split_inherited(hashes, before) if before is not None
                  else _split_inherited(hashes.tolist(), parent.hashes_at(addr, n)))
    views: list[memoryview] = []
    slot = cap.sink.slots
    for state, lo, hi in pieces:
        if state == PARENT:
            builder.add(addr + lo * PAGE_SIZE, hi - lo, PARENT, 0, hashes[lo:hi])
            cap.stats.inherited += hi - lo
        else:
            views.append(data[lo * PAGE_SIZE:hi * PAGE_SIZE])
            builder.add(addr + lo * PAGE_SIZE, hi - lo, STORED, slot, hashes[lo:hi])
            slot += hi - lo
            cap.stats.stored += hi - lo
    if views:
        cap.sink.append_pages(views, reader.hand_off())
        reader.rotate()


_NONZERO = bytes([0] + [1] * 255)
_SPANS = re.compile(rb"\x00+|\x01+")


def _equal_spans(mine: bytes, theirs: bytes) -> list[tuple[int, int, bool]]:
    """(first, end, equal) spans of entries where two entry strings of one length agree.

    In C: the XOR of the two as integers, the OR of its eight byte lanes (one
    byte per entry, non-zero where the entries differ), a regex over that.
    """
    size = len(mine)
    xor = (int.from_bytes(mine, "little") ^ int.from_bytes(theirs, "little")
           ).to_bytes(size, "little")
    lanes = 0
    for k in range(PAGEMAP_ENTRY_SIZE):
        lanes |= int.from_bytes(xor[k::PAGEMAP_ENTRY_SIZE], "little")
    differ = lanes.to_bytes(size // PAGEMAP_ENTRY_SIZE, "little").translate(_NONZERO)
    return [(m.start(), m.end(), differ[m.start()] == 0) for m in _SPANS.finditer(differ)]


def _split_inherited(hashes: Sequence[int], before: Sequence[int | None]
                     ) -> list[tuple[int, int, int]]:
    """(state, first, end) pieces: PARENT where the hash equals the parent's, else STORED.

    Both of one type (two arrays, or two lists: an array never equals a list).
    Compared in slices of 16 first (in C): writes spread over memory leave most
    slices equal, and only the others are walked page by page.
    """
    if hashes == before:
        return [(PARENT, 0, len(hashes))]
    out: list[tuple[int, int, int]] = []

    def put(state: int, lo: int, hi: int) -> None:
        if out and out[-1][0] == state and out[-1][2] == lo:
            out[-1] = (state, out[-1][1], hi)
        else:
            out.append((state, lo, hi))

    n = len(hashes)
    for lo in range(0, n, 16):
        hi = min(n, lo + 16)
        if hashes[lo:hi] == before[lo:hi]:
            put(PARENT, lo, hi)
            continue
        for i in range(lo, hi):
            put(PARENT if hashes[i] == before[i] else STORED, i, i + 1)
    return out


class _ReadPool:
    """Threads that each read whole batches into a buffer of their own and run a job on them.

    An incremental pass reads every page and stores few: the copy out of the
    target (process_vm_readv and /proc/PID/mem release the GIL) is most of
    its time, and two readers on two cores copy in about half of it (1 GiB:
    0.14 s with one, 0.08 s with two). Each thread hashes what it read itself,
    so no buffer is handed between threads. A job that fails stops the rest
    (they are skipped) and finish() raises its error on the dumping thread.
    """

    def __init__(self, readers: Sequence[RemoteReader],
                 job: Callable[[RemoteReader, list[_Seg], int], None]) -> None:
        self._jobs: queue.SimpleQueue[tuple[list[_Seg], int] | None] = queue.SimpleQueue()
        self._job = job
        self._error: BaseException | None = None
        self._threads = [threading.Thread(target=self._loop, args=(r,), daemon=True,
                                          name=f"criu-model-read-{i}")
                         for i, r in enumerate(readers)]
        for thread in self._threads:
            thread.start()

    def _loop(self, reader: RemoteReader) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            if self._error is not None:
                continue
            try:
                self._job(reader, *item)
            except BaseException as err:  # noqa: BLE001 - re-raised by finish()
                if self._error is None:
                    self._error = err

    def submit(self, batch: list[_Seg], total: int) -> None:
        if self._error is not None:
            raise self._error
        self._jobs.put((batch, total))

    def stop(self) -> None:
        """End the threads once the queued jobs ran (idempotent)."""
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()
        self._threads = []

    def finish(self) -> None:
        """Wait for every job; raise the first failure."""
        self.stop()
        if self._error is not None:
            raise self._error


class _Reference:
    """A captured process that a later sibling, or a child, is classified against.

    A forked child maps most of its parent's pages, and of its older
    siblings': the same frames at the same addresses, so the same 64-bit
    pagemap entries. Where a chunk of the child's entries equals the
    reference's (found in C: one compare, or an XOR), the reference's
    decisions hold for the child as they are (stored at the same slots, or
    zero), and the copy-on-write table is not asked page by page
    (200,000 lookups, lists and compares in a 50-process tree). Only full
    dumps with frame numbers visible use it: equal entries then mean the same
    page, where hidden frame numbers are all 0 and inherited pages depend on
    each process's own parent snapshot.
    """

    __slots__ = ("fd", "path", "runs", "starts")

    def __init__(self, proc_path: str, runs: list[_Run]) -> None:
        self.path = proc_path
        self.runs = runs  # sorted by address, never overlapping
        self.starts = [r[0] for r in runs]
        self.fd = -1

    def clip(self, addr: int, npages: int, out: list[_Run]) -> tuple[int, int, int]:
        """Append the runs within [addr, addr + npages pages) to ``out``.

        Returns (pages covered, of them stored, of them zero); covered -1 when
        a run there is not one a child can take (inherited).
        """
        end = addr + npages * PAGE_SIZE
        runs = self.runs
        i = bisect_right(self.starts, addr) - 1
        i = max(i, 0)
        covered = stored = zero = 0
        while i < len(runs):
            start, n, state, slot, hashes = runs[i]
            if start >= end:
                break
            stop = start + n * PAGE_SIZE
            if stop > addr:
                lo, hi = max(start, addr), min(stop, end)
                k, m = (lo - start) // PAGE_SIZE, (hi - lo) // PAGE_SIZE
                if state == STORED:
                    out.append((lo, m, STORED, slot + k, hashes[k:k + m]))
                    stored += m
                elif state == ZERO:
                    out.append((lo, m, ZERO, 0, ()))
                    zero += m
                else:
                    return -1, 0, 0
                covered += m
            i += 1
        return covered, stored, zero


class _ProcessPass:
    """Find, classify, read and store the private pages of one process."""

    def __init__(self, cap: PageCapture, reader: RemoteReader, parent: OwnerIndex | None,
                 proc_path: str, reference: _Reference | None = None) -> None:
        self.cap = cap
        self.reader = reader
        self.parent = parent
        self.proc_path = proc_path
        self.zero_pfn = zero_pfn()
        # children may be compared with this process (see _Reference)
        self.referable = parent is None and self.zero_pfn != 0
        self.reference = reference if self.referable else None
        self.runs: list[_Run] = []  # every run decided, by address, once run() returned
        self.builder = RunBuilder()
        self.pool: _ReadPool | None = None
        self.lock = threading.Lock()  # the pool's threads: sink slots and stats
        # Runs decided so far, in any order (sorted by address once the pass is
        # done: no queue to keep them in order while reads are pending), and
        # the segments read, whose runs are set once their batch was read.
        self.decided: list[_Run] = []
        self.reads: list[_Seg] = []
        self.batch: list[_Seg] = []
        self.batch_pages = 0

    def run(self, private: Sequence[mm_pb2.Vma]) -> RunBuilder:
        ref = self.reference
        if ref is not None:
            try:
                ref.fd = os.open(f"{ref.path}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:  # the parent is gone: classify without it
                self.reference = ref = None
        try:
            return self._run(private)
        finally:
            if ref is not None:
                os.close(ref.fd)
                ref.fd = -1

    def _run(self, private: Sequence[mm_pb2.Vma]) -> RunBuilder:
        fd = os.open(f"{self.proc_path}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
        # An incremental pass reads every page and stores few: its reads go to
        # a pool of reader threads (see _ReadPool), started at its second batch
        # (a process read in one batch, most of a fork tree, is not worth two
        # threads). A full pass stores every page: its writer thread keeps the
        # second core busy already, and the reads and the hashing stay here.
        try:
            for start, end, zero in self._candidates(fd, private):
                if zero:
                    self.decided.append((start, (end - start) // PAGE_SIZE, ZERO, 0, ()))
                    self.cap.stats.zero += (end - start) // PAGE_SIZE
                else:
                    self._classify(fd, start, end)
            self._flush(last=True)
            if self.pool is not None:
                self.pool.finish()  # every batch read and hashed: every run is known
        finally:
            os.close(fd)
            if self.pool is not None:
                self.pool.stop()
                for reader in self.cap.pool_readers(self.reader.pid):
                    reader.close()
        runs = self.decided
        for seg in self.reads:
            if seg.runs is None:
                raise AssertionError(f"the page run at {seg.addr:#x} was never decided")
            runs.extend(seg.runs)
        runs.sort(key=_ADDR)  # runs never overlap
        self.runs = runs
        self.builder.add_sorted(runs)
        return self.builder

    def _candidates(self, fd: int, vmas: Sequence[mm_pb2.Vma]
                    ) -> list[tuple[int, int, bool]]:
        """[start, end, is_zero) ranges of private VMAs that may hold pages to store.

        Ranges a short gap apart are joined when nothing but private VMAs lies
        between them (no zero, no clean file pages: the gap's pages are holes,
        which _classify skips): a forked Python process has some 50 ranges of
        a few pages, and each one read and looked up alone costs more than
        the holes between them.
        """
        if not pagemap_scan_supported():
            return [(v.start, v.end, False) for v in vmas]
        out: list[tuple[int, int, bool]] = []
        k = 0
        joinable = -1  # index of the VMA out[-1] ends in, when a range may join it
        for start, end, cats in pagemap_scan(fd, vmas[0].start, vmas[-1].end,
                                             anyof=_SCAN_ANYOF, returned=_SCAN_RETURN):
            while k < len(vmas) and vmas[k].end <= start:
                k += 1
            j = k
            while j < len(vmas) and vmas[j].start < end:
                lo, hi = max(start, vmas[j].start), min(end, vmas[j].end)
                if cats & _IS_ZERO:
                    out.append((lo, hi, True))
                    joinable = -1
                elif cats & _IS_FILE and cats & _IS_PRESENT:
                    self.cap.stats.file_clean += (hi - lo) // PAGE_SIZE
                    joinable = -1
                elif (joinable >= 0 and lo - out[-1][1] <= _JOIN_GAP
                      and (joinable == j or all(vmas[i].end == vmas[i + 1].start
                                                for i in range(joinable, j)))):
                    out[-1] = (out[-1][0], hi, False)
                    joinable = j
                else:
                    out.append((lo, hi, False))
                    joinable = j
                j += 1
        return out

    def _classify(self, fd: int, start: int, end: int) -> None:
        """Classic entries of [start, end): queue reads, zero pages and shared lookups.

        Against the reference (a sibling or the parent) where there is one,
        else (and where it cannot answer) through the copy-on-write table.
        """
        page = start // PAGE_SIZE
        for data in read_entries(fd, page, (end - start) // PAGE_SIZE):
            codes = entry_flag_bytes(data).translate(_CODES)
            if self.reference is None or not self._against_reference(data, codes, page):
                self._classify_table(data, codes, page)
            page += len(codes)

    def _classify_table(self, data: bytes, codes: bytes, page: int) -> None:
        """Entries from virtual page ``page`` on (``codes``: theirs), through the table.

        The copy-on-write table is asked about every page of the chunk at once
        (maps in C), at its first run of shared pages: a forked child has many
        short runs (200 processes: 15,000), and a Python step per run costs.
        """
        base = page * PAGE_SIZE
        chunk: _Chunk | None = None
        deduplicated = 0
        self.cap.stats.file_clean += codes.count(_FILE)
        for match in _CODE_RUNS.finditer(codes):
            lo, hi = match.span()
            if codes[lo] == _EXCL:
                self._read_exclusive(base + lo * PAGE_SIZE, hi - lo)
                continue
            if chunk is None:
                chunk = _Chunk(data, codes, self.cap.shared)
            slots = chunk.slots
            first = slots[lo]
            n = hi - lo
            if first >= 0 and slots[hi - 1] == first + n - 1 and (
                    n < 3 or slots[lo:hi] == list(range(first, first + n))):
                # the common case of a forked child, here and not in
                # _shared_run: one stretch stored at consecutive slots
                self.decided.append((base + lo * PAGE_SIZE, n, STORED, first,
                                     array("Q", map(_HASH_OF, chunk.known[lo:hi]))))
                deduplicated += n
            else:
                self._shared_run(base, lo, hi, chunk)
        self.cap.stats.deduplicated += deduplicated

    def _read_exclusive(self, addr: int, npages: int) -> None:
        """Queue a run of exclusively mapped pages, in segments a batch can hold."""
        while npages > 0:
            n = min(npages, _BATCH_PAGES)
            self._read(_Seg(addr, n))
            addr += n * PAGE_SIZE
            npages -= n

    def _against_reference(self, data: bytes, codes: bytes, page: int) -> bool:
        """Classify a chunk against the reference (see _Reference); False: it cannot be.

        Spans equal to the reference's take its runs, checked to cover every
        page that is neither a hole nor a clean file page; the others (the
        child's own writes: exclusive pages, as a rule) are read, or go through
        the table. Nothing is queued before every equal span was checked.
        """
        ref = self.reference
        assert ref is not None
        theirs = os.pread(ref.fd, len(data), page * PAGEMAP_ENTRY_SIZE)
        if len(theirs) != len(data):
            return False
        spans = [(0, len(codes), True)] if theirs == data else _equal_spans(data, theirs)
        base = page * PAGE_SIZE
        taken: list[_Run] = []
        stored = zero = 0
        count = codes.count
        for lo, hi, same in spans:
            if not same:
                continue
            want = hi - lo - count(_HOLE, lo, hi) - count(_FILE, lo, hi)
            if want:
                got, s, z = ref.clip(base + lo * PAGE_SIZE, hi - lo, taken)
                if got != want:
                    return False
                stored += s
                zero += z
        self.decided.extend(taken)
        stats = self.cap.stats
        stats.deduplicated += stored
        stats.zero += zero
        for lo, hi, same in spans:
            if same:
                stats.file_clean += count(_FILE, lo, hi)
            elif count(_EXCL, lo, hi) == hi - lo:  # the child's own copies
                self._read_exclusive(base + lo * PAGE_SIZE, hi - lo)
            else:
                self._classify_table(data[lo * PAGEMAP_ENTRY_SIZE:hi * PAGEMAP_ENTRY_SIZE],
                                     codes[lo:hi], page + lo)
        return True

    def _shared_run(self, base: int, lo: int, hi: int, chunk: _Chunk) -> None:
        """Pages lo..hi of a chunk that may be mapped elsewhere: the common case in one step.

        A forked child's untouched pages are the parent's, stored at consecutive
        slots: such a stretch is one reference. A run that is one stretch is
        recognised by a compare of its slots in C (in _classify), a run none of whose
        pages is stored yet (the tree's first process) is read whole; otherwise
        ``slot - index``, constant along a stretch, is grouped by groupby, and
        the pages in no stretch (not stored yet, or inherited) go page by page
        through _shared_page.
        """
        n = hi - lo
        slots, known = chunk.slots, chunk.known
        first = slots[lo]
        if first == _UNKNOWN[0] and slots[lo:hi].count(first) == n:
            keys = chunk.keys[lo:hi]
            if self.zero_pfn not in keys and 0 not in keys:
                self._read_new(base + lo * PAGE_SIZE, keys)
                return
        # The zero page is never in the table (_shared_page records it as zero),
        # nor is a hidden frame number (0): both come out unknown (slot -2).
        i = lo
        for off, group in groupby(map(sub, slots[lo:hi], range(lo, hi))):
            count = len(list(group))
            first = off + i
            if first >= 0:  # stored at first .. first + count - 1
                self.decided.append((base + i * PAGE_SIZE, count, STORED, first,
                                     array("Q", map(_HASH_OF, known[i:i + count]))))
                self.cap.stats.deduplicated += count
            else:  # unknown (-2) or inherited (-1): page by page
                for k in range(i, i + count):
                    self._shared_page(base + k * PAGE_SIZE, chunk.entries[k], chunk.codes[k])
            i += count

    def _read_new(self, addr: int, keys: list[int]) -> None:
        """Read a run of shared pages none of which is stored yet (the first process of
        a copy-on-write tree: all of them), in as few segments as batches allow."""
        pos, n = 0, len(keys)
        while pos < n:
            room = _BATCH_PAGES - self.batch_pages
            take = min(n - pos, room if room > 0 else _BATCH_PAGES)
            self._read(_Seg(addr + pos * PAGE_SIZE, take, keys[pos:pos + take], mem=True))
            pos += take

    def _shared_page(self, addr: int, entry: int, code: int) -> None:
        """A page that may be mapped elsewhere too: zero page, stored already, or read it."""
        if code == _SHARED:
            pfn = entry & PFN_MASK
            if not pfn:  # frame numbers hidden (no CAP_SYS_ADMIN): no sharing known
                self._read(_Seg(addr, 1, mem=True))
                return
            if pfn == self.zero_pfn:
                self.cap.stats.zero += 1
                self.decided.append((addr, 1, ZERO, 0, ()))
                return
            key = pfn
        else:
            key = (entry & PFN_MASK) | (1 << 55)  # a swap entry: type and offset
        known = self.cap.shared.get(key)
        if known is not None:
            slot, digest = known
            if slot >= 0:
                self.cap.stats.deduplicated += 1
                self.decided.append((addr, 1, STORED, slot, [digest]))
                return
            if self.parent is not None and self.parent.hashes_at(addr, 1)[0] == digest:
                self.cap.stats.inherited += 1
                self.decided.append((addr, 1, PARENT, 0, [digest]))
                return
        last = self.batch[-1] if self.batch else None
        if (last is not None and last.keys is not None
                and last.addr + last.npages * PAGE_SIZE == addr
                and self.batch_pages < _BATCH_PAGES):
            last.npages += 1  # one /proc/PID/mem read for a stretch of shared pages
            last.keys.append(key)
            self.batch_pages += 1
            return
        self._read(_Seg(addr, 1, [key], mem=True))

    def _read(self, seg: _Seg) -> None:
        if self.batch_pages + seg.npages > _BATCH_PAGES or len(self.batch) == IOV_MAX:
            self._flush()
        self.batch.append(seg)
        self.batch_pages += seg.npages
        self.reads.append(seg)

    @staticmethod
    def _read_batch(reader: RemoteReader, batch: list[_Seg]) -> int:
        """Read the batch into the buffer; returns the bytes read (short: a range failed).

        Exclusively mapped pages go through process_vm_readv, many ranges per
        call. Pages that may be shared go through /proc/PID/mem: process_vm_readv
        pins what it reads (FOLL_PIN), and a read-only pin of a shared anonymous
        page makes the kernel give the target its own copy first (Linux 5.19,
        commit a7f226604170 "trigger FAULT_FLAG_UNSHARE when R/O-pinning a
        possibly shared anonymous page"): reading would break the tree's
        copy-on-write sharing and grow its memory. /proc/PID/mem reads with
        FOLL_GET, which leaves the sharing alone.
        """
        offset = 0
        i = 0
        while i < len(batch):
            j = i
            while j < len(batch) and batch[j].mem == batch[i].mem:
                j += 1
            ranges = [(s.addr, s.npages * PAGE_SIZE) for s in batch[i:j]]
            want = sum(n for _a, n in ranges)
            read = reader.read_mem if batch[i].mem else reader.read
            got = read(ranges, offset)
            offset += got
            if got < want:
                return offset
            i = j
        return offset

    def _failed(self, batch: list[_Seg], got: int) -> OSError:
        """The error of a batch read short: the process is gone, or a range is."""
        if _gone(self.proc_path):
            return ProcessLookupError(errno.ESRCH, "address space gone")
        failed = batch[0].addr
        done = 0
        for s in batch:
            if done + s.npages * PAGE_SIZE > got:
                failed = s.addr + (got - done)
                break
            done += s.npages * PAGE_SIZE
        return OSError(errno.EFAULT, f"memory at {failed:#x} could not be read "
                       "(unmapped while the dump ran?)")

    def _flush(self, last: bool = False) -> None:
        """Read the batch, hash each page, store what changed (``last``: of the pass)."""
        if not self.batch:
            return
        batch, self.batch = self.batch, []
        total = self.batch_pages * PAGE_SIZE
        self.batch_pages = 0
        if self.parent is not None:  # incremental
            if self.pool is None and last:  # the only batch: read and hashed here
                self._keep_changed(self.reader, batch, total)
            else:
                if self.pool is None:
                    self.pool = _ReadPool(self.cap.pool_readers(self.reader.pid),
                                          self._keep_changed)
                self.pool.submit(batch, total)
            with self.lock:
                self.cap.stats.read_bytes += total
            self.cap.report()
            return
        got = self._read_batch(self.reader, batch)
        if got < total:
            raise self._failed(batch, got)
        self.cap.stats.read_bytes += total
        self.cap.report()
        view = self.reader.view
        hashes = _page_hashes(self.cap.page_views(view), total // PAGE_SIZE)
        shared = self.cap.shared
        first = self.cap.sink.append(view[:total], self.reader.hand_off())
        self.reader.rotate()
        self.cap.stats.stored += total // PAGE_SIZE
        k = 0
        for seg in batch:
            seg.runs = [(seg.addr, seg.npages, STORED, first + k, hashes[k:k + seg.npages])]
            if seg.keys is not None:
                for i, key in enumerate(seg.keys):
                    shared[key] = (first + k + i, hashes[k + i])
            k += seg.npages

    def _keep_changed(self, reader: RemoteReader, batch: list[_Seg], total: int) -> None:
        """On a pool thread (or the dumping thread, for a process read in one batch):
        read a batch, hash it, store the pages unlike the parent's.

        The few changed pages are copied out of the buffer, so the writer
        never holds it. The dumping thread reads the segments' runs only after
        finish().
        """
        parent = self.parent
        assert parent is not None
        got = self._read_batch(reader, batch)
        if got < total:
            raise self._failed(batch, got)
        view = reader.view
        hashes = _page_hashes(self.cap.page_views(view), total // PAGE_SIZE)
        changed: list[memoryview] = []
        plans: list[tuple[_Seg, list[tuple[int, int, int]]]] = []
        inherited = 0
        k = 0
        for seg in batch:
            mine = hashes[k:k + seg.npages]
            before = parent.hash_slice(seg.addr, seg.npages)
            if before is not None:
                pieces = _split_inherited(mine, before)
            else:  # across runs, or partly not captured (None) there
                pieces = _split_inherited(mine.tolist(), parent.hashes_at(seg.addr, seg.npages))
            for state, lo, hi in pieces:
                if state == PARENT:
                    inherited += hi - lo
                else:
                    changed.append(memoryview(bytes(view[(k + lo) * PAGE_SIZE:
                                                         (k + hi) * PAGE_SIZE])))
            plans.append((seg, pieces))
            k += seg.npages
        with self.lock:  # slots are numbered in the order the sink gets the data
            first = self.cap.sink.append_pages(changed) if changed else 0
            self.cap.stats.inherited += inherited
            self.cap.stats.stored += sum(len(v) for v in changed) // PAGE_SIZE
        shared = self.cap.shared
        slot = first
        k = 0
        for seg, pieces in plans:
            mine = hashes[k:k + seg.npages]
            runs: list[tuple[int, int, int, int, Sequence[int]]] = []
            slots: list[int] | None = [] if seg.keys is not None else None  # per page
            for state, lo, hi in pieces:
                addr = seg.addr + lo * PAGE_SIZE
                if state == PARENT:
                    runs.append((addr, hi - lo, PARENT, 0, mine[lo:hi]))
                    if slots is not None:
                        slots.extend([-1] * (hi - lo))
                else:
                    runs.append((addr, hi - lo, STORED, slot, mine[lo:hi]))
                    if slots is not None:
                        slots.extend(range(slot, slot + hi - lo))
                    slot += hi - lo
            if seg.keys is not None and slots is not None:
                for i, key in enumerate(seg.keys):
                    shared[key] = (slots[i], mine[i])
            seg.runs = runs
            k += seg.npages
