"""Page counts on real processes: both methods, known touched pages, fork sharing."""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from criu_model.collect import pages as pages_mod
from criu_model.collect.maps import parse_maps
from criu_model.collect.pages import (
    METHOD_CLASSIC,
    METHOD_SCAN,
    METHODS,
    SCAN_MIN_MAPPED_BYTES,
    choose_method,
    count_pages,
    count_ranges,
    tally_pages,
)
from criu_model.images.pb import mm_pb2
from criu_model.kernel.pagemap import pagemap_scan_supported

PAGE = mmap.PAGESIZE

needs_scan = pytest.mark.skipif(not pagemap_scan_supported(), reason="PAGEMAP_SCAN needs 6.7")

# A child that builds a known address space, prints the addresses as one JSON
# line, and lives until its stdin closes. THP is disabled on the regions so a
# touched page is exactly one resident page.
MAPPER = r"""
import ctypes, json, mmap, os, sys, tempfile
PAGE = mmap.PAGESIZE
N, K = int(sys.argv[1]), int(sys.argv[2])
fork_after = sys.argv[3] == "fork"

def addr(m):
    return ctypes.addressof(ctypes.c_char.from_buffer(m))

def no_thp(m):
    m.madvise(mmap.MADV_NOHUGEPAGE)

anon = mmap.mmap(-1, N * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
no_thp(anon)
for i in range(K):
    anon[i * PAGE] = 1

shared = mmap.mmap(-1, 8 * PAGE, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
no_thp(shared)
shared[0] = 1
shared[3 * PAGE] = 1

mfd = os.memfd_create("criu model memfd (deleted) x")
os.ftruncate(mfd, 4 * PAGE)
memfd = mmap.mmap(mfd, 4 * PAGE, flags=mmap.MAP_SHARED)
memfd[PAGE] = 1
st = os.fstat(mfd)

tmpdir = tempfile.mkdtemp()
path = os.path.join(tmpdir, "file with spaces")
with open(path, "wb") as f:
    f.write(b"x" * 4 * PAGE)
fd = os.open(path, os.O_RDWR)
filemap = mmap.mmap(fd, 4 * PAGE, flags=mmap.MAP_SHARED)
filemap[0] = 2
fst = os.fstat(fd)
os.close(fd)
os.unlink(path)
os.rmdir(tmpdir)

info = {
    "anon": addr(anon), "shared": addr(shared), "memfd": addr(memfd),
    "memfd_dev": st.st_dev, "memfd_ino": st.st_ino,
    "file": addr(filemap), "file_path": path, "file_dev": fst.st_dev, "file_ino": fst.st_ino,
}
if fork_after:
    if os.fork() == 0:
        sys.stdin.read()
        os._exit(0)
print(json.dumps(info), flush=True)
sys.stdin.read()
"""


@contextmanager
def spawn_mapper(npages: int = 64, touched: int = 17, fork: bool = False
                 ) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, Any]]]:
    """Run MAPPER; yield (process, addresses). Always killed and reaped."""
    proc = subprocess.Popen([sys.executable, "-c", MAPPER, str(npages), str(touched),
                             "fork" if fork else "nofork"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"mapper child died: {proc.wait()}")
        yield proc, json.loads(line)
    finally:
        proc.kill()
        proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()
        if proc.stdout is not None:
            proc.stdout.close()


def _vmas(pid: int) -> list[mm_pb2.Vma]:
    with open(f"/proc/{pid}/maps", "rb") as f:
        return parse_maps(f.read())


def _by_start(vmas: list[mm_pb2.Vma], start: int) -> mm_pb2.Vma:
    return next(v for v in vmas if v.start == start)


def _counted(pid: int, method: str) -> list[mm_pb2.Vma]:
    vmas = _vmas(pid)
    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
    try:
        count_pages(fd, vmas, PAGE, method)
    finally:
        os.close(fd)
    return vmas


@pytest.mark.parametrize("method", METHODS)
def test_touched_pages_are_resident(method: str) -> None:
    if method == METHOD_SCAN and not pagemap_scan_supported():
        pytest.skip("PAGEMAP_SCAN needs 6.7")
    with spawn_mapper(npages=64, touched=17) as (proc, info):
        vmas = _counted(proc.pid, method)
        anon = _by_start(vmas, info["anon"])
        assert anon.end - anon.start == 64 * PAGE
        assert anon.pages.resident == 17
        assert anon.pages.exclusive == 17  # private anon, never forked
        assert anon.pages.file == 0 and anon.pages.swapped == 0
        shared = _by_start(vmas, info["shared"])
        assert shared.pages.resident == 2
        assert shared.pages.file == 2  # shmem pages count as file pages (pagemap bit 61)
        memfd = _by_start(vmas, info["memfd"])
        assert (memfd.pages.resident, memfd.pages.file) == (1, 1)
        filemap = _by_start(vmas, info["file"])
        assert filemap.pages.resident >= 1 and filemap.pages.file == filemap.pages.resident
        for vma in vmas:
            assert vma.HasField("pages") == (vma.kind != mm_pb2.VMA_VSYSCALL)
            assert vma.pages.resident <= (vma.end - vma.start) // PAGE


@needs_scan
def test_both_methods_agree() -> None:
    with spawn_mapper(npages=300, touched=123) as (proc, _info):
        os.kill(proc.pid, 19)  # SIGSTOP: the address space must not change between reads
        try:
            scan = _counted(proc.pid, METHOD_SCAN)
            classic = _counted(proc.pid, METHOD_CLASSIC)
        finally:
            os.kill(proc.pid, 18)
        assert [v.start for v in scan] == [v.start for v in classic]
        assert sum(v.pages.resident for v in scan) > 1000
        for a, b in zip(scan, classic, strict=True):
            assert a.pages == b.pages, (hex(a.start), a.path)


@pytest.mark.parametrize("method", METHODS)
def test_pages_shared_with_a_forked_child_are_not_exclusive(method: str) -> None:
    if method == METHOD_SCAN and not pagemap_scan_supported():
        pytest.skip("PAGEMAP_SCAN needs 6.7")
    with spawn_mapper(npages=32, touched=9, fork=True) as (proc, info):
        anon = _by_start(_counted(proc.pid, method), info["anon"])
        assert anon.pages.resident == 9
        assert anon.pages.exclusive == 0  # the COW pages are mapped by the child too


@needs_scan
def test_scan_resumes_when_the_region_vector_fills() -> None:
    # Every other page touched: one region per touched page, far more than one batch.
    script = (
        "import mmap, sys, ctypes\n"
        "m = mmap.mmap(-1, 4000 * mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)\n"
        "m.madvise(mmap.MADV_NOHUGEPAGE)\n"
        "for i in range(0, 4000, 2): m[i * mmap.PAGESIZE] = 1\n"
        "print(ctypes.addressof(ctypes.c_char.from_buffer(m)), flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        start = int(proc.stdout.readline())
        vmas = _vmas(proc.pid)
        fd = os.open(f"/proc/{proc.pid}/pagemap", os.O_RDONLY)
        try:
            tallies = tally_pages(fd, [start], [start + 4000 * PAGE], PAGE, METHOD_SCAN)
        finally:
            os.close(fd)
        assert tallies[0].resident == 2000
        assert tallies[0].exclusive == 2000
        assert _by_start(vmas, start).end == start + 4000 * PAGE
    finally:
        proc.kill()
        proc.wait()


def test_tally_of_nothing_and_bad_method() -> None:
    fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    try:
        assert tally_pages(fd, [], [], PAGE, METHOD_CLASSIC) == []
        with pytest.raises(ValueError, match="unknown page count method"):
            tally_pages(fd, [0x10000], [0x11000], PAGE, "smaps")
    finally:
        os.close(fd)


def test_choose_method_by_mapped_size() -> None:
    assert choose_method(0) == METHOD_CLASSIC
    big = choose_method(SCAN_MIN_MAPPED_BYTES)
    assert big == (METHOD_SCAN if pagemap_scan_supported() else METHOD_CLASSIC)


@pytest.mark.parametrize("method", METHODS)
def test_zero_page_is_resident_but_not_exclusive(method: str) -> None:
    if method == METHOD_SCAN and not pagemap_scan_supported():
        pytest.skip("PAGEMAP_SCAN needs 6.7")
    m = mmap.mmap(-1, 4 * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        m.madvise(mmap.MADV_NOHUGEPAGE)
        assert m[0] == 0  # read fault: maps the shared zero page
        m[2 * PAGE] = 1  # write fault: a page of our own
        start = ctypes.addressof(ctypes.c_char.from_buffer(m))
        fd = os.open("/proc/self/pagemap", os.O_RDONLY)
        try:
            (tally,) = tally_pages(fd, [start], [start + 4 * PAGE], PAGE, method)
        finally:
            os.close(fd)
        assert (tally.resident, tally.exclusive, tally.file) == (2, 1, 0)
    finally:
        m.close()


@pytest.mark.parametrize("one_read_pages", [1 << 18, 1])
def test_count_ranges_agrees_with_tally_pages(monkeypatch: pytest.MonkeyPatch,
                                              one_read_pages: int) -> None:
    # The tuple fast path (one pread per group) and, with a limit of one page,
    # its fallback through the chunked reader, against the PageTally path.
    monkeypatch.setattr(pages_mod, "_ONE_READ_PAGES", one_read_pages)
    with spawn_mapper(npages=300, touched=123, fork=True) as (proc, _info):
        os.kill(proc.pid, 19)  # SIGSTOP: the address space must not change between reads
        try:
            counted = [v for v in _vmas(proc.pid) if v.kind != mm_pb2.VMA_VSYSCALL]
            starts, ends = [v.start for v in counted], [v.end for v in counted]
            fd = os.open(f"/proc/{proc.pid}/pagemap", os.O_RDONLY)
            try:
                fast = count_ranges(fd, starts, ends, PAGE, METHOD_CLASSIC)
                slow = tally_pages(fd, starts, ends, PAGE, METHOD_CLASSIC)
            finally:
                os.close(fd)
        finally:
            os.kill(proc.pid, 18)
    assert fast == [t.counts() for t in slow]
    assert sum(c[0] for c in fast) > 123 and any(c[3] for c in fast)
    assert any(c[0] and not c[3] for c in fast)  # pages shared with the forked child
