"""/proc/PID/pagemap: the PAGEMAP_SCAN ioctl and the classic 64-bit entries.

Two ways to learn which pages of a process are in RAM or swap:

* ``PAGEMAP_SCAN`` (Linux 6.7, commit 52526ca7fdb9 "fs/proc/task_mmu: implement
  IOCTL to get and optionally clear info about PTEs"): one ioctl returns runs
  of pages sharing the same categories and skips holes and unpopulated page
  tables in the kernel, so its cost follows what is mapped, not the virtual size.
* The classic file (since 2.6.25): one 64-bit entry per virtual page, read with
  ``pread`` at ``vaddr / page_size * 8``. It is the fallback before 6.7 and the
  only source of the "exclusively mapped" bit (bit 56, since 4.2), which
  PAGEMAP_SCAN has no category for.

Layouts follow include/uapi/linux/fs.h of Linux 6.7 (PAGE_IS_GUARD: 6.14).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
from collections.abc import Iterator
from enum import IntFlag
from typing import NamedTuple

from criu_model.kernel.libc import check, libc

# --- PAGEMAP_SCAN (include/uapi/linux/fs.h, Linux 6.7) -----------------------


class PageCategory(IntFlag):
    """PAGE_IS_* bits of pm_scan_arg masks and page_region.categories."""

    WPALLOWED = 1 << 0   # async write-protect enabled (userfaultfd WP_ASYNC)
    WRITTEN = 1 << 1     # written since write-protected
    FILE = 1 << 2        # not anonymous: file page or shmem (like pagemap bit 61)
    PRESENT = 1 << 3     # in RAM
    SWAPPED = 1 << 4     # in swap
    PFNZERO = 1 << 5     # maps the shared zero page
    HUGE = 1 << 6        # THP or hugetlb
    SOFT_DIRTY = 1 << 7  # soft-dirty (only with CONFIG_MEM_SOFT_DIRTY)
    GUARD = 1 << 8       # guard region (Linux 6.14); older kernels reject it in masks


NO_CATEGORY = PageCategory(0)

# Categories every kernel with PAGEMAP_SCAN (6.7) accepts in its masks.
SCAN_CATEGORIES_6_7 = (PageCategory.WPALLOWED | PageCategory.WRITTEN | PageCategory.FILE
                       | PageCategory.PRESENT | PageCategory.SWAPPED | PageCategory.PFNZERO
                       | PageCategory.HUGE | PageCategory.SOFT_DIRTY)


class PmScanFlag(IntFlag):
    """pm_scan_arg.flags. We never set WP_MATCHING: it would write-protect the target."""

    WP_MATCHING = 1 << 0
    CHECK_WPASYNC = 1 << 1


class PageRegion(ctypes.Structure):
    """struct page_region: [start, end) with the categories common to its pages."""

    _fields_ = (
        ("start", ctypes.c_uint64),
        ("end", ctypes.c_uint64),
        ("categories", ctypes.c_uint64),
    )


class PmScanArg(ctypes.Structure):
    """struct pm_scan_arg, the PAGEMAP_SCAN argument (in and out: walk_end)."""

    _fields_ = (
        ("size", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
        ("start", ctypes.c_uint64),
        ("end", ctypes.c_uint64),
        ("walk_end", ctypes.c_uint64),
        ("vec", ctypes.c_uint64),
        ("vec_len", ctypes.c_uint64),
        ("max_pages", ctypes.c_uint64),
        ("category_inverted", ctypes.c_uint64),
        ("category_mask", ctypes.c_uint64),
        ("category_anyof_mask", ctypes.c_uint64),
        ("return_mask", ctypes.c_uint64),
    )


# asm-generic/ioctl.h encoding (x86, arm64, riscv; not alpha/mips/powerpc/sparc).
_IOC_NRBITS, _IOC_TYPEBITS, _IOC_SIZEBITS = 8, 8, 14
_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS
_IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS
_IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS
_IOC_WRITE, _IOC_READ = 1, 2


def _iowr(kind: str, nr: int, size: int) -> int:
    """The _IOWR(type, nr, size) macro."""
    return (((_IOC_READ | _IOC_WRITE) << _IOC_DIRSHIFT) | (ord(kind) << _IOC_TYPESHIFT)
            | (nr << _IOC_NRSHIFT) | (size << _IOC_SIZESHIFT))


PAGEMAP_SCAN = _iowr("f", 16, ctypes.sizeof(PmScanArg))  # 0xc0606610 on x86_64

_ioctl = libc.ioctl
_ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)
_ioctl.restype = ctypes.c_int


def pagemap_scan(fd: int, start: int, end: int, *, anyof: PageCategory,
                 returned: PageCategory, required: PageCategory = NO_CATEGORY,
                 batch: int = 512) -> Iterator[tuple[int, int, int]]:
    """Yield ``(start, end, categories)`` of the regions of [start, end) matching the masks.

    ``categories`` is a plain int of PageCategory bits (an IntFlag per region
    would cost more than the ioctl). The kernel stops when ``batch`` regions
    are filled and reports where in ``walk_end``; we call again from there
    until ``walk_end == end``. Read-only: no PM_SCAN_WP_MATCHING.
    """
    vec = (PageRegion * batch)()
    flat = memoryview(vec).cast("B").cast("Q")  # start, end, categories, start, ...
    arg = PmScanArg(size=ctypes.sizeof(PmScanArg), start=start, end=end,
                    vec=ctypes.addressof(vec), vec_len=batch,
                    category_mask=int(required), category_anyof_mask=int(anyof),
                    return_mask=int(returned))
    argp = ctypes.addressof(arg)
    while True:
        n = check(_ioctl(fd, PAGEMAP_SCAN, argp), "ioctl(PAGEMAP_SCAN)")
        values = iter(flat[: 3 * n].tolist())
        yield from zip(values, values, values, strict=True)
        if arg.walk_end >= end:
            return
        if arg.walk_end <= arg.start:
            # No progress: the address space is gone (the target exited).
            raise OSError(errno.ESRCH, "PAGEMAP_SCAN made no progress")
        arg.start = arg.walk_end


class Support(NamedTuple):
    supported: bool
    reason: str


@functools.cache
def pagemap_scan_support() -> Support:
    """Probe PAGEMAP_SCAN once per run on /proc/self/pagemap (Linux 6.7+).

    EINVAL/ENOTTY mean the kernel predates the ioctl; anything else is reported
    as unsupported with its errno so `criu-model check` can show why.
    """
    try:
        fd = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        return Support(False, f"cannot open /proc/self/pagemap: {err.strerror}")
    try:
        vec = (PageRegion * 1)()
        page = os.sysconf("SC_PAGE_SIZE")
        here = ctypes.addressof(vec) & ~(page - 1)  # a page we know is mapped
        arg = PmScanArg(size=ctypes.sizeof(PmScanArg), start=here, end=here + page,
                        vec=ctypes.addressof(vec), vec_len=1,
                        category_anyof_mask=int(PageCategory.PRESENT),
                        return_mask=int(PageCategory.PRESENT))
        if _ioctl(fd, PAGEMAP_SCAN, ctypes.addressof(arg)) == -1:
            err = ctypes.get_errno()
            if err in (errno.EINVAL, errno.ENOTTY):
                return Support(False, f"PAGEMAP_SCAN needs Linux 6.7 ({errno.errorcode[err]})")
            return Support(False, f"PAGEMAP_SCAN probe failed: {os.strerror(err)}")
        return Support(True, "PAGEMAP_SCAN ioctl works (Linux 6.7+)")
    finally:
        os.close(fd)


def pagemap_scan_supported() -> bool:
    """Whether PAGEMAP_SCAN works here (cached; see :func:`pagemap_scan_support`)."""
    return pagemap_scan_support().supported


# --- classic /proc/PID/pagemap entries (Documentation/admin-guide/mm/pagemap.rst)


class PagemapEntry(IntFlag):
    """Flag bits of one 64-bit /proc/PID/pagemap entry."""

    SOFT_DIRTY = 1 << 55   # (3.11)
    EXCLUSIVE = 1 << 56    # page mapped only by this process (4.2)
    UFFD_WP = 1 << 57      # (5.13)
    FILE_SHARED = 1 << 61  # file page or shared anon (3.5)
    SWAPPED = 1 << 62
    PRESENT = 1 << 63


PAGEMAP_ENTRY_SIZE = 8
PFN_MASK = (1 << 55) - 1  # zero without CAP_SYS_ADMIN (4.2); we never need it
# Every flag we count lives in the most significant byte of the entry.
_TOP_SHIFT = 56


@functools.cache
def _top_byte_table(flags: PagemapEntry) -> bytes:
    """bytes.translate table: top byte -> 1 if it has all of ``flags``, else 0."""
    want = int(flags) >> _TOP_SHIFT
    if want << _TOP_SHIFT != int(flags) or not want:
        raise ValueError(f"{flags!r} is not within bits 56-63 of a pagemap entry")
    return bytes(1 if b & want == want else 0 for b in range(256))


def entry_flag_bytes(data: bytes) -> bytes:
    """The most significant byte of each little-endian entry, where our flags live."""
    return data[PAGEMAP_ENTRY_SIZE - 1::PAGEMAP_ENTRY_SIZE]


def matching(flag_bytes: bytes, flags: PagemapEntry) -> bytes:
    """One byte per entry: 1 if it has every bit of ``flags``, else 0.

    Count a range with ``matching(...).count(1, lo, hi)``: slicing, translating
    and counting run in C, so a 100k-page scan stays under a millisecond where
    unpacking each entry in Python would take tens.
    """
    return flag_bytes.translate(_top_byte_table(flags))


def count_entries(data: bytes, flags: PagemapEntry) -> int:
    """Count the raw entries in ``data`` that have every bit of ``flags``."""
    return matching(entry_flag_bytes(data), flags).count(1)


_MAX_READ_PAGES = 1 << 16  # 512 KiB of entries per pread


def read_entries(fd: int, first_page: int, npages: int) -> Iterator[bytes]:
    """Yield the raw entries of ``npages`` pages from virtual page ``first_page`` on.

    Chunked so a huge mapping never needs one huge buffer. pagemap returns EOF
    when the target's mm is gone (it exited), or above TASK_SIZE: both mean the
    caller asked for pages that no longer exist, so that raises ESRCH.
    """
    offset = first_page * PAGEMAP_ENTRY_SIZE
    left = npages
    while left > 0:
        data = os.pread(fd, min(left, _MAX_READ_PAGES) * PAGEMAP_ENTRY_SIZE, offset)
        if not data:
            raise ProcessLookupError(errno.ESRCH, "pagemap returned EOF: address space gone")
        yield data
        got = len(data) // PAGEMAP_ENTRY_SIZE
        offset += got * PAGEMAP_ENTRY_SIZE
        left -= got
