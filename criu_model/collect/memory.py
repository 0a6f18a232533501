"""The memory layout of one process: VMAs, file identities, page counts.

Reads /proc/PID/maps once, /proc/PID/map_files/START-END for the identity of
each file-backed VMA, and /proc/PID/pagemap for page counts. It never reads
smaps: smaps walks every page table of every VMA and formats two dozen lines
per VMA, which makes it several times slower than maps + pagemap.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from criu_model.collect.maps import LineCache, VmaLine, parse_vma_lines
from criu_model.collect.pages import (
    METHOD_CLASSIC,
    METHODS,
    Counts,
    ReadPlan,
    choose_method,
    count_groups,
    count_ranges,
    group_flags,
    read_plan,
)
from criu_model.collect.procfs import PROC_ROOT, ProcDir
from criu_model.errors import AccessDenied, UsageError, translate_oserror
from criu_model.images.pb import mm_pb2

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

# proc_map_files_get_link() requires checkpoint_restore_ns_capable(): CAP_SYS_ADMIN,
# or CAP_CHECKPOINT_RESTORE since Linux 5.9.
MAP_FILES_REASON = "EPERM: /proc/PID/map_files needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE"
PAGEMAP_REASON = ("EACCES: /proc/PID/pagemap needs ptrace read access "
                  "(same uid and dumpable, or CAP_SYS_PTRACE)")


FileKey = tuple[int, int, int, bytes]  # maps (dev_major, dev_minor, inode, path)
FileIds = dict[FileKey, tuple[int, int]]  # -> map_files (st_dev, st_ino)


def collect_memory(pid: int, proc_root: str = PROC_ROOT, *, pages: bool = True,
                   method: str | None = None,
                   file_ids: FileIds | None = None,
                   line_cache: LineCache | None = None) -> mm_pb2.MemoryMap:
    """Dump the address-space layout of ``pid``.

    ``method`` forces "pagemap_scan" or "pagemap"; by default the faster one for
    this address space is picked (see :func:`choose_method`) and recorded in
    ``page_counts_method``. A kernel thread or zombie has no VMAs: the result
    is an empty MemoryMap. Raises ProcessGone if the process vanishes.

    ``file_ids``, shared by the caller across the processes of one dump, keeps
    the map_files identity of each file that is not deleted, so a library
    mapped by 200 processes is stat'ed once (a forked CPython maps ~40 files;
    each stat of map_files costs ~7 µs). Deleted files are always stat'ed: their
    inode numbers may be reused. ``line_cache``, shared the same way, keeps
    decoded maps lines (see :func:`parse_vma_lines`).

    The message is assembled as serialized fields (each line's own, then its
    map_files identity and page counts, each encoded once per distinct value)
    and parsed once: upb parses 100 VMAs in ~25 µs where building them from
    keyword dicts takes ~100 µs.
    """
    if method is not None and method not in METHODS:
        raise UsageError(f"unknown page count method {method!r}, expected one of {METHODS}")
    proc = ProcDir(pid, proc_root)
    key = _layout_key(proc.read("maps"), line_cache)
    if not key:
        return mm_pb2.MemoryMap(pid=pid)
    lines = key
    unreadable: list[dict[str, str]] = []
    known = getattr(line_cache, "idents", None) if file_ids is not None else None
    layouts = getattr(line_cache, "layouts", None)
    idents = known.get(key) if known is not None else None
    kept = idents is not None  # both lists are the dump's, shared by this layout
    if idents is None:
        idents = _map_file_fields(proc, lines, unreadable, file_ids)
        if known is not None and all(line.ident is not None for line in lines
                                     if line.file_key is not None):
            # every file of this layout is known, none deleted: the next process
            # with the same layout would stat nothing either
            known[key] = idents
    if layouts is None:
        layout = _layout(lines)
    elif key in layouts:
        layout = layouts[key]
    else:
        layout = layouts[key] = _layout(lines)
    used = ""
    counts: list[bytes] | None = None
    if pages and layout is not None:
        used, counts, counts_kept = _page_fields(proc, lines, layout, unreadable, method,
                                                 layouts is not None)
        kept = kept and counts_kept
    if kept and layout is not None:
        # Identities and page states another process of this layout had: its
        # vmas were framed and parsed already, and copying parsed messages
        # costs half a parse.
        found = layout.framed.get((id(idents), id(counts)))
        if found is None or found[0] is not idents or found[1] is not counts:
            found = (idents, counts, mm_pb2.MemoryMap.FromString(_framed(lines, idents, counts)))
            if len(layout.framed) >= _MAX_COUNTED:
                layout.framed.clear()
            layout.framed[(id(idents), id(counts))] = found
        mm = mm_pb2.MemoryMap()
        mm.CopyFrom(found[2])
        mm.pid = pid
        mm.page_counts_method = used
    else:
        head = mm_pb2.MemoryMap(pid=pid, page_counts_method=used).SerializeToString()
        mm = mm_pb2.MemoryMap.FromString(head + _framed(lines, idents, counts))
    for row in unreadable:
        mm.unreadable.add(**row)
    return mm


# Whole maps texts kept per dump: up to this many, of up to this size each.
_MAX_TEXTS = 64
_MAX_TEXT_BYTES = 1 << 16


def _layout_key(data: bytes, line_cache: LineCache | None) -> tuple[VmaLine, ...]:
    """The decoded lines of a maps text; a text the dump saw whole already (forked
    processes' often are: they have the same layout) is not split again."""
    if line_cache is None:
        return tuple(parse_vma_lines(data, {}))
    texts = line_cache.texts
    key = texts.get(data)
    if key is None:
        key = tuple(parse_vma_lines(data, line_cache))
        if len(data) <= _MAX_TEXT_BYTES:
            if len(texts) >= _MAX_TEXTS:
                texts.clear()
            texts[data] = key
    return key


def _framed(lines: Sequence[VmaLine], idents: list[bytes], counts: list[bytes] | None) -> bytes:
    """The serialized ``vmas`` field: each line's own fields, identity and page counts."""
    parts: list[bytes] = []
    add = parts.append
    for line, ident, count in zip(lines, idents, counts or _NO_COUNTS * len(lines),
                                  strict=True):
        # Forked processes repeat whole entries: frame each (line, fields) once.
        framed = line.framed
        if framed is None:
            framed = line.framed = {}
        entry = framed.get((ident, count))
        if entry is None:
            body = line.encoded + ident + count
            entry = framed[(ident, count)] = _VMAS_TAG + _varint(len(body)) + body
        add(entry)
    return b"".join(parts)


_VMAS_TAG = b"\x12"  # MemoryMap.vmas: field 2, length-delimited
_NO_COUNTS = [b""]


def _varint(value: int) -> bytes:
    """The protobuf base-128 encoding of a non-negative int."""
    if value < 0x80:
        return _SMALL[value]
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL = [bytes((i,)) for i in range(0x80)]

# Serialized Vma fields, one entry per distinct value seen lately: a map_files
# identity (fields 12-14), page counts (field 15). Forked processes repeat
# most of them; emptied when full so a long-lived caller's memory stays flat.
_IDENT_FIELDS: dict[tuple[int, int], bytes] = {}
_COUNT_FIELDS: dict[tuple[int, int, int, int], bytes] = {}
_MAX_ENCODED = 1 << 14


def _ident_fields(ident: tuple[int, int]) -> bytes:
    encoded = _IDENT_FIELDS.get(ident)
    if encoded is None:
        if len(_IDENT_FIELDS) >= _MAX_ENCODED:
            _IDENT_FIELDS.clear()
        encoded = _IDENT_FIELDS[ident] = mm_pb2.Vma(
            map_file_known=True, map_file_dev=ident[0], map_file_ino=ident[1]
        ).SerializeToString()
    return encoded


def _count_fields(counts: tuple[int, int, int, int]) -> bytes:
    encoded = _COUNT_FIELDS.get(counts)
    if encoded is None:
        if len(_COUNT_FIELDS) >= _MAX_ENCODED:
            _COUNT_FIELDS.clear()
        resident, swapped, file, exclusive = counts
        encoded = _COUNT_FIELDS[counts] = mm_pb2.Vma(pages=mm_pb2.PageCounts(
            resident=resident, swapped=swapped, file=file, exclusive=exclusive)
        ).SerializeToString()
    return encoded


def _map_file_fields(proc: ProcDir, lines: Sequence[VmaLine], unreadable: list[dict[str, str]],
                     file_ids: FileIds | None) -> list[bytes]:
    """The serialized map_files identity (st_dev, st_ino) of each VMA, b"" if none.

    Only VMAs with an inode have a struct file (and a map_files entry). VMAs
    with the same (dev, inode, path) in maps are one file (a library's text,
    data and bss segments): stat it once. On EPERM stop at the first entry and
    record one Unreadable, not one per VMA.

    With ``file_ids`` (one dump's), a line's identity, once known, is kept on
    the line itself (``VmaLine.ident``, unless the file is deleted): what
    ``file_ids`` would give, without the lookups.
    """
    fields = [b""] * len(lines)
    seen: FileIds = {}
    shared = file_ids is not None
    shared_ids: FileIds = file_ids if file_ids is not None else {}
    dir_fd = -1
    with translate_oserror(proc.pid, "map_files"):
        try:
            for i, line in enumerate(lines):
                key = line.file_key
                if key is None:
                    continue
                if shared and line.ident is not None:
                    fields[i] = line.ident
                    continue
                ident = seen.get(key) or shared_ids.get(key)
                if ident is None:
                    if dir_fd < 0:  # opened lazily: a process may map no file at all
                        dir_fd = os.open(f"{proc.path}/map_files",
                                         os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                    try:
                        st = os.stat(f"{line.start:x}-{line.end:x}", dir_fd=dir_fd)
                    except FileNotFoundError:
                        # The mapping changed since maps was read, or the process died.
                        if not proc.exists():
                            raise
                        continue
                    ident = seen[key] = (st.st_dev, st.st_ino)
                    if not line.deleted:
                        shared_ids[key] = ident
                fields[i] = _ident_fields(ident)
                if shared and not line.deleted:
                    line.ident = fields[i]
        except PermissionError:
            unreadable.append({"field": "map_files", "reason": MAP_FILES_REASON})
        finally:
            if dir_fd >= 0:
                os.close(dir_fd)
    return fields


class _Layout:
    """What page counting derives from an address-space layout, once per layout.

    ``counted`` keeps the encoded counts of each VMA by the pagemap flag bytes
    they came from (:func:`group_flags`): forked processes of one layout have
    mostly the same pages in the same states, and one dict lookup replaces ~400
    ``bytes.count`` calls. It is filled from the second process of a layout on
    (a layout seen once would keep a byte per mapped page for nothing) and
    emptied when full.
    """

    __slots__ = ("counted", "ends", "framed", "mapped", "plan", "seen", "starts")

    def __init__(self, counted_lines: Sequence[VmaLine]) -> None:
        self.starts = [line.start for line in counted_lines]  # not [vsyscall]
        self.ends = [line.end for line in counted_lines]
        self.mapped = sum(self.ends) - sum(self.starts)  # bytes
        self.plan: ReadPlan = read_plan(self.starts, self.ends, PAGE_SIZE)
        self.seen = 0  # processes counted with this layout
        self.counted: dict[tuple[bytes, ...], list[bytes]] = {}
        # the parsed vmas (a MemoryMap of them alone) by the kept identity and
        # count lists they were framed from
        self.framed: dict[tuple[int, int],
                          tuple[list[bytes], list[bytes] | None, mm_pb2.MemoryMap]] = {}


_MAX_COUNTED = 32  # distinct page states kept per layout


def _layout(lines: Sequence[VmaLine]) -> _Layout | None:
    counted = [line for line in lines if line.counted]
    return _Layout(counted) if counted else None


def _page_fields(proc: ProcDir, lines: Sequence[VmaLine], layout: _Layout,
                 unreadable: list[dict[str, str]], method: str | None, shared: bool
                 ) -> tuple[str, list[bytes] | None, bool]:
    """Serialized page counts of each VMA (b"" for [vsyscall]), the method used, and
    whether the list is the one ``layout`` keeps (another process had these states).

    On EACCES records Unreadable("pages") and returns ("", None, True): no VMA
    gets ``pages``. ``shared``: ``layout`` is the dump's, so it may keep counts.
    """
    if method is None:
        method = choose_method(layout.mapped)
    try:
        with translate_oserror(proc.pid, "pagemap"):
            fd = os.open(f"{proc.path}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    except AccessDenied:
        unreadable.append({"field": "pages", "reason": PAGEMAP_REASON})
        return "", None, True
    try:
        with translate_oserror(proc.pid, "pagemap"):
            if method != METHOD_CLASSIC:
                return method, _encoded_counts(lines, count_ranges(
                    fd, layout.starts, layout.ends, PAGE_SIZE, method, layout.plan)), False
            flags = group_flags(fd, layout.plan)
            memo = layout.counted if shared and None not in flags else None
            if memo is None:
                return method, _encoded_counts(lines, count_groups(fd, layout.plan, flags)), False
            state = tuple(flags)
            fields = memo.get(state)
            if fields is not None:
                return method, fields, True
            fields = _encoded_counts(lines, count_groups(fd, layout.plan, flags))
            layout.seen += 1
            if layout.seen == 1:
                return method, fields, False
            if len(memo) >= _MAX_COUNTED:
                memo.clear()
            memo[state] = fields
            return method, fields, True
    finally:
        os.close(fd)


def _encoded_counts(lines: Sequence[VmaLine], counts: list[Counts]) -> list[bytes]:
    """The serialized ``pages`` field of each line, b"" for a line not counted."""
    known = _COUNT_FIELDS
    found = iter(counts)
    fields: list[bytes] = []
    add = fields.append
    for line in lines:
        if line.counted:
            count = next(found)
            encoded = known.get(count)
            add(encoded if encoded is not None else _count_fields(count))
        else:
            add(b"")
    return fields
