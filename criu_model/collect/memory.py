"""The memory layout of one process: VMAs, file identities, page counts.

Reads /proc/PID/maps once, /proc/PID/map_files/START-END for the identity of
each file-backed VMA, and /proc/PID/pagemap for page counts. It never reads
smaps: smaps walks every page table of every VMA and formats two dozen lines
per VMA, which makes it several times slower than maps + pagemap.
"""

from __future__ import annotations

import os

from criu_model.collect.maps import LineCache, VmaFields, parse_maps_fields
from criu_model.collect.pages import METHODS, choose_method, tally_pages
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
    decoded maps lines (see :func:`parse_maps_fields`).

    Everything is gathered into keyword dicts first and the message is built
    once at the end: on a CPython with 200 VMAs that halves the time spent in
    protobuf compared with building Vma objects and writing their fields.
    """
    if method is not None and method not in METHODS:
        raise UsageError(f"unknown page count method {method!r}, expected one of {METHODS}")
    proc = ProcDir(pid, proc_root)
    rows = parse_maps_fields(proc.read("maps"), line_cache)
    if not rows:
        return mm_pb2.MemoryMap(pid=pid)
    unreadable: list[dict[str, str]] = []
    _fill_map_files(proc, rows, unreadable, {} if file_ids is None else file_ids)
    used = ""
    if pages:
        used = _fill_pages(proc, rows, unreadable, method)
    return mm_pb2.MemoryMap(pid=pid, vmas=rows, page_counts_method=used, unreadable=unreadable)


def _fill_map_files(proc: ProcDir, rows: list[VmaFields], unreadable: list[dict[str, str]],
                    shared_ids: FileIds) -> None:
    """Record (st_dev, st_ino) of each file VMA through map_files.

    Only VMAs with an inode have a struct file (and a map_files entry). VMAs
    with the same (dev, inode, path) in maps are one file (a library's text,
    data and bss segments): stat it once. On EPERM stop at the first entry and
    record one Unreadable, not one per VMA.
    """
    seen: FileIds = {}
    dir_fd = -1
    with translate_oserror(proc.pid, "map_files"):
        try:
            for row in rows:
                inode = row["inode"]
                if not inode:
                    continue
                key = (row["dev_major"], row["dev_minor"], inode, row.get("path", b""))
                ident = seen.get(key) or shared_ids.get(key)
                if ident is None:
                    if dir_fd < 0:  # opened lazily: a process may map no file at all
                        dir_fd = os.open(f"{proc.path}/map_files",
                                         os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                    try:
                        st = os.stat(f"{row['start']:x}-{row['end']:x}", dir_fd=dir_fd)
                    except FileNotFoundError:
                        # The mapping changed since maps was read, or the process died.
                        if not proc.exists():
                            raise
                        continue
                    ident = seen[key] = (st.st_dev, st.st_ino)
                    if not row.get("deleted"):
                        shared_ids[key] = ident
                row["map_file_known"] = True
                row["map_file_dev"], row["map_file_ino"] = ident
        except PermissionError:
            unreadable.append({"field": "map_files", "reason": MAP_FILES_REASON})
        finally:
            if dir_fd >= 0:
                os.close(dir_fd)


def _fill_pages(proc: ProcDir, rows: list[VmaFields], unreadable: list[dict[str, str]],
                method: str | None) -> str:
    """Page counts per VMA (not [vsyscall]); returns the method used, "" if unreadable.

    On EACCES records Unreadable("pages") and leaves every ``pages`` unset.
    """
    counted = [row for row in rows if row["kind"] != mm_pb2.VMA_VSYSCALL]
    if not counted:
        return ""
    starts = [row["start"] for row in counted]
    ends = [row["end"] for row in counted]
    if method is None:
        method = choose_method(sum(ends) - sum(starts))
    try:
        with translate_oserror(proc.pid, "pagemap"):
            fd = os.open(f"{proc.path}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    except AccessDenied:
        unreadable.append({"field": "pages", "reason": PAGEMAP_REASON})
        return ""
    try:
        with translate_oserror(proc.pid, "pagemap"):
            tallies = tally_pages(fd, starts, ends, PAGE_SIZE, method)
    finally:
        os.close(fd)
    for row, tally in zip(counted, tallies, strict=True):
        row["pages"] = tally.fields()
    return method
