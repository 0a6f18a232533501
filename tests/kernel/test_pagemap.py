"""PAGEMAP_SCAN and classic pagemap entries, on our own address space."""

from __future__ import annotations

import ctypes
import mmap
import os
import platform
import struct
from collections.abc import Iterator

import pytest

from criu_model.kernel import pagemap
from criu_model.kernel.pagemap import (
    PAGEMAP_SCAN,
    PageCategory,
    PagemapEntry,
    PageRegion,
    PmScanArg,
    count_entries,
    entry_flag_bytes,
    matching,
    pagemap_scan,
    pagemap_scan_support,
    pagemap_scan_supported,
    read_entries,
)

PAGE = mmap.PAGESIZE
needs_scan = pytest.mark.skipif(not pagemap_scan_supported(), reason="PAGEMAP_SCAN needs 6.7")


@pytest.fixture
def self_pagemap() -> Iterator[int]:
    fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    yield fd
    os.close(fd)


@pytest.fixture
def region() -> Iterator[tuple[mmap.mmap, int]]:
    """32 private anonymous pages, THP off, pages 0, 5, 6 and 31 touched."""
    m = mmap.mmap(-1, 32 * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    m.madvise(mmap.MADV_NOHUGEPAGE)
    for i in (0, 5, 6, 31):
        m[i * PAGE] = 1
    buf = ctypes.c_char.from_buffer(m)
    start = ctypes.addressof(buf)
    yield m, start
    del buf
    m.close()


def test_struct_layouts_match_linux_6_7_uapi() -> None:
    assert ctypes.sizeof(PmScanArg) == 96  # 12 x __u64
    assert ctypes.sizeof(PageRegion) == 24
    assert PmScanArg.walk_end.offset == 32 and PmScanArg.return_mask.offset == 88
    if platform.machine() in ("x86_64", "aarch64"):
        assert PAGEMAP_SCAN == 0xC0606610  # _IOWR('f', 16, 96 bytes)


def test_category_bits() -> None:
    assert PageCategory.PRESENT == 1 << 3 and PageCategory.SWAPPED == 1 << 4
    assert PageCategory.FILE == 1 << 2 and PageCategory.SOFT_DIRTY == 1 << 7
    assert PagemapEntry.PRESENT == 1 << 63 and PagemapEntry.EXCLUSIVE == 1 << 56


def test_probe_is_cached_and_explains() -> None:
    first = pagemap_scan_support()
    assert pagemap_scan_support() is first
    assert first.reason
    assert pagemap_scan_supported() == first.supported
    assert "6.7" in first.reason


@needs_scan
def test_scan_finds_exactly_the_touched_pages(self_pagemap: int,
                                               region: tuple[mmap.mmap, int]) -> None:
    _m, start = region
    found = list(pagemap_scan(self_pagemap, start, start + 32 * PAGE,
                              anyof=PageCategory.PRESENT | PageCategory.SWAPPED,
                              returned=PageCategory.PRESENT | PageCategory.FILE))
    assert [(s - start) // PAGE for s, _e, _c in found] == [0, 5, 31]
    assert [(e - s) // PAGE for s, e, _c in found] == [1, 2, 1]
    assert all(PageCategory(c) == PageCategory.PRESENT for _s, _e, c in found)


@needs_scan
def test_scan_resumes_with_a_tiny_vector(self_pagemap: int,
                                         region: tuple[mmap.mmap, int]) -> None:
    _m, start = region
    kwargs = {"anyof": PageCategory.PRESENT, "returned": PageCategory.PRESENT}
    big = list(pagemap_scan(self_pagemap, start, start + 32 * PAGE, **kwargs))
    tiny = list(pagemap_scan(self_pagemap, start, start + 32 * PAGE, batch=1, **kwargs))
    assert tiny == big and len(big) == 3


@needs_scan
def test_scan_rejects_unaligned_start(self_pagemap: int) -> None:
    with pytest.raises(OSError):
        list(pagemap_scan(self_pagemap, 1, PAGE * 2, anyof=PageCategory.PRESENT,
                          returned=PageCategory.PRESENT))


def test_classic_entries_of_touched_pages(self_pagemap: int,
                                          region: tuple[mmap.mmap, int]) -> None:
    _m, start = region
    data = b"".join(read_entries(self_pagemap, start // PAGE, 32))
    assert len(data) == 32 * 8
    entries = struct.unpack("<32Q", data)
    present = [i for i, e in enumerate(entries) if e & PagemapEntry.PRESENT]
    assert present == [0, 5, 6, 31]
    assert count_entries(data, PagemapEntry.PRESENT) == 4
    assert count_entries(data, PagemapEntry.PRESENT | PagemapEntry.EXCLUSIVE) == 4
    assert count_entries(data, PagemapEntry.PRESENT | PagemapEntry.FILE_SHARED) == 0
    flags = matching(entry_flag_bytes(data), PagemapEntry.PRESENT)
    assert flags.count(1, 0, 6) == 2 and flags.count(1, 6, 32) == 2


def test_read_entries_in_chunks(monkeypatch: pytest.MonkeyPatch, self_pagemap: int,
                                region: tuple[mmap.mmap, int]) -> None:
    _m, start = region
    monkeypatch.setattr(pagemap, "_MAX_READ_PAGES", 5)
    chunks = list(read_entries(self_pagemap, start // PAGE, 32))
    assert [len(c) // 8 for c in chunks] == [5, 5, 5, 5, 5, 5, 2]
    assert count_entries(b"".join(chunks), PagemapEntry.PRESENT) == 4


def test_read_past_task_size_is_esrch(self_pagemap: int) -> None:
    with pytest.raises(ProcessLookupError):
        list(read_entries(self_pagemap, 0xFFFFFFFFFF600000 // PAGE, 1))


def test_flags_outside_the_top_byte_are_refused() -> None:
    with pytest.raises(ValueError, match="bits 56-63"):
        count_entries(b"\0" * 8, PagemapEntry.SOFT_DIRTY)


def test_count_entries_on_synthetic_entries() -> None:
    present_excl = PagemapEntry.PRESENT | PagemapEntry.EXCLUSIVE
    present_file = PagemapEntry.PRESENT | PagemapEntry.FILE_SHARED
    entries = [0, int(PagemapEntry.PRESENT) | 0x1234, int(present_excl),
               int(PagemapEntry.SWAPPED) | 0x55, int(present_file)]
    data = struct.pack(f"<{len(entries)}Q", *entries)
    assert count_entries(data, PagemapEntry.PRESENT) == 3
    assert count_entries(data, present_excl) == 1
    assert count_entries(data, PagemapEntry.SWAPPED) == 1
    assert count_entries(data, present_file) == 1
