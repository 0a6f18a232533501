"""Parse /proc/PID/maps into Vma messages.

One line per VMA (fs/proc/task_mmu.c, show_map_vma)::

    START-END PERMS OFFSET MAJ:MIN INODE [padding NAME]

The five first fields never contain spaces; NAME is everything after the
padding and may contain anything but a newline (the kernel prints a newline in
a path as the octal escape ``\\012``). A file that was unlinked gets `` (deleted)``
appended by d_path, which we strip and record as ``deleted``.
"""

from __future__ import annotations

import re
from typing import Any

from criu_model.images.pb import mm_pb2

# Keyword arguments of mm_pb2.Vma (and of a dict in MemoryMap(vmas=[...])).
VmaFields = dict[str, Any]

PROT_READ = 1
PROT_WRITE = 2
PROT_EXEC = 4

_DELETED = b" (deleted)"
_ESCAPED_NEWLINE = b"\\012"  # mangle_path(..., "\n") in seq_path

_PROT_CHARS = ((0, ord("r"), PROT_READ), (1, ord("w"), PROT_WRITE), (2, ord("x"), PROT_EXEC))
_SHARED_CHAR = ord("s")

# Bracketed names the kernel prints for special VMAs (arch_vma_name, vm_special_mapping).
_SPECIAL_KINDS: dict[bytes, int] = {
    b"[heap]": mm_pb2.VMA_HEAP,
    b"[stack]": mm_pb2.VMA_STACK,
    b"[vdso]": mm_pb2.VMA_VDSO,
    b"[vvar]": mm_pb2.VMA_VVAR,
    b"[vvar_vclock]": mm_pb2.VMA_VVAR,  # split out of [vvar] in Linux 6.13
    b"[vsyscall]": mm_pb2.VMA_VSYSCALL,
}
_STACK_TID = b"[stack:"         # thread stacks were named this way before Linux 4.5
_ANON_NAME = b"[anon:"          # prctl(PR_SET_VMA_ANON_NAME), Linux 5.17
_ANON_SHMEM_NAME = b"[anon_shmem:"  # the same on a MAP_SHARED|MAP_ANONYMOUS VMA
_MEMFD = b"/memfd:"
_SYSV = b"/SYSV"
_DEV_ZERO = b"/dev/zero"


def vma_kind(path: bytes, deleted: bool, shared: bool) -> int:
    """Classify a VMA from its (already un-suffixed) name, as CRIU would need to restore it."""
    if not path:
        return mm_pb2.VMA_SHARED_ANON if shared else mm_pb2.VMA_ANON
    if path.startswith(b"["):
        kind = _SPECIAL_KINDS.get(path)
        if kind is not None:
            return kind
        if path.startswith(_STACK_TID):
            return mm_pb2.VMA_STACK
        if path.startswith(_ANON_SHMEM_NAME):
            return mm_pb2.VMA_SHARED_ANON
        if path.startswith(_ANON_NAME):
            return mm_pb2.VMA_ANON
        return mm_pb2.VMA_OTHER
    if deleted:
        if path.startswith(_MEMFD):
            return mm_pb2.VMA_MEMFD
        if path.startswith(_SYSV):
            return mm_pb2.VMA_SYSV_SHM
        if shared and path == _DEV_ZERO:
            return mm_pb2.VMA_SHARED_ANON
    return mm_pb2.VMA_FILE


def _perms(perms: bytes) -> tuple[int, bool]:
    """(prot, shared) of a 4-character "rwxp" field."""
    prot = 0
    for index, char, bit in _PROT_CHARS:
        if perms[index] == char:
            prot |= bit
    return prot, perms[3] == _SHARED_CHAR


# Only a handful of distinct permission strings exist: decode each once.
_PERMS_CACHE: dict[bytes, tuple[int, bool]] = {}

# START-END PERMS OFFSET MAJ:MIN INODE, then padding and the optional name.
# One C-level findall over the whole file is ~25% faster than splitting lines.
_LINE = re.compile(
    rb"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) ([0-9a-f]+):([0-9a-f]+) ([0-9]+) *(.*)$",
    re.MULTILINE,
)


def _fields(start: bytes, end: bytes, perms: bytes, offset: bytes, major: bytes, minor: bytes,
            inode: bytes, path: bytes) -> VmaFields:
    """The Vma keyword arguments of one maps line, from its text fields."""
    decoded = _PERMS_CACHE.get(perms)
    if decoded is None:
        decoded = _PERMS_CACHE[perms] = _perms(perms)
    prot, shared = decoded
    fields: VmaFields = {
        "start": int(start, 16), "end": int(end, 16), "prot": prot, "shared": shared,
        "offset": int(offset, 16), "dev_major": int(major, 16), "dev_minor": int(minor, 16),
        "inode": int(inode),
    }
    if path:
        deleted = path.endswith(_DELETED)
        if deleted:
            path = path[: -len(_DELETED)]
            fields["deleted"] = True
        if _ESCAPED_NEWLINE in path:
            path = path.replace(_ESCAPED_NEWLINE, b"\n")
        fields["path"] = path
        fields["kind"] = vma_kind(path, deleted, shared)
    else:
        fields["kind"] = mm_pb2.VMA_SHARED_ANON if shared else mm_pb2.VMA_ANON
    return fields


def parse_maps_line(line: bytes) -> mm_pb2.Vma:
    """Parse one maps line (without its newline); ValueError if it is malformed."""
    return mm_pb2.Vma(**_fields(*_groups(line)))


def parse_maps_fields(data: bytes) -> list[VmaFields]:
    """Parse a whole /proc/PID/maps into Vma keyword dicts.

    ValueError names the first malformed line.
    """
    rows = [_fields(*groups) for groups in _LINE.findall(data)]
    lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    if len(rows) != lines:
        for line in data.split(b"\n"):
            if line:
                parse_maps_line(line)  # raises on the first bad line
    return rows


class VmaLine:
    """One decoded maps line, immutable and shared by every process that has it.

    ``encoded`` is the serialized Vma of the line's own fields (1-11): the
    collector appends the map_files identity and page counts as further
    serialized fields and parses the whole MemoryMap once, which costs a
    quarter of building it from keyword dicts. ``file_key`` is the
    (dev_major, dev_minor, inode, path) of a file-backed VMA, else None.
    """

    __slots__ = ("counted", "deleted", "encoded", "end", "file_key", "framed", "ident", "start")

    def __init__(self, fields: VmaFields) -> None:
        self.start: int = fields["start"]
        self.end: int = fields["end"]
        inode = fields["inode"]
        self.file_key: tuple[int, int, int, bytes] | None = (
            (fields["dev_major"], fields["dev_minor"], inode, fields.get("path", b""))
            if inode else None)
        self.deleted: bool = fields.get("deleted", False)
        self.counted: bool = fields["kind"] != mm_pb2.VMA_VSYSCALL  # see collect/pages.py
        self.encoded: bytes = mm_pb2.Vma(**fields).SerializeToString()
        # Filled by collect.memory within one dump: the serialized map_files
        # identity of a file that is not deleted, and the whole framed Vma
        # entry per (identity, page counts) fields seen.
        self.ident: bytes | None = None
        self.framed: dict[tuple[bytes, bytes], bytes] | None = None


class LineCache(dict[bytes, VmaLine]):
    """A dump's decoded maps lines by their bytes, and what collect.memory derives
    from a whole address-space layout (a tuple of lines) that forked processes
    share: ``layouts``, ``idents`` and ``texts``, its own business."""

    def __init__(self) -> None:
        super().__init__()
        self.layouts: dict[tuple[VmaLine, ...], Any] = {}
        self.idents: dict[tuple[VmaLine, ...], list[bytes]] = {}
        self.texts: dict[bytes, tuple[VmaLine, ...]] = {}


def parse_vma_lines(data: bytes, cache: LineCache) -> list[VmaLine]:
    """Parse a whole /proc/PID/maps into shared VmaLine entries (the dump's fast path).

    ``cache``, shared across the processes of one dump, maps a line's bytes to
    its entry: forked workers (a server's pool, our benchmark tree) repeat most
    lines byte for byte, and one dict lookup costs a fiftieth of decoding.
    ValueError names the first malformed line.
    """
    entries = []
    for line in data.split(b"\n"):
        entry = cache.get(line)
        if entry is None:
            if not line:
                continue
            entry = cache[line] = VmaLine(_fields(*_groups(line)))
        entries.append(entry)
    return entries


def _groups(line: bytes) -> tuple[bytes, ...]:
    match = _LINE.fullmatch(line)
    if match is None:
        raise ValueError(f"malformed /proc/PID/maps line: {line!r}")
    return match.groups()


def parse_maps(data: bytes) -> list[mm_pb2.Vma]:
    """Parse a whole /proc/PID/maps; empty for kernel threads and zombies."""
    return [mm_pb2.Vma(**fields) for fields in parse_maps_fields(data)]
