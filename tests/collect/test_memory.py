"""collect_memory on real processes: kinds, identities, page counts, errors."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psutil
import pytest

from criu_model.collect.maps import LineCache, parse_maps
from criu_model.collect.memory import FileIds, collect_memory
from criu_model.collect.pages import METHOD_CLASSIC, METHOD_SCAN, METHODS
from criu_model.errors import ProcessGone, UsageError
from criu_model.images.pb import mm_pb2
from criu_model.kernel.pagemap import pagemap_scan_supported
from tests.collect.test_pages import PAGE, spawn_mapper
from tests.conftest import kthreadd_or_skip

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def _by_start(mm: mm_pb2.MemoryMap, start: int) -> mm_pb2.Vma:
    return next(v for v in mm.vmas if v.start == start)


@contextmanager
def _stopped(pid: int) -> Iterator[None]:
    """SIGSTOP the target so its address space holds still between two reads."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_known_layout() -> None:
    with spawn_mapper(npages=64, touched=17) as (proc, info):
        mm = collect_memory(proc.pid)
    assert mm.pid == proc.pid
    assert mm.page_counts_method in METHODS
    assert list(mm.unreadable) == []

    anon = _by_start(mm, info["anon"])
    assert anon.kind == mm_pb2.VMA_ANON and anon.path == b"" and not anon.shared
    assert anon.end - anon.start == 64 * PAGE and anon.pages.resident == 17
    assert not anon.map_file_known  # no file behind anonymous memory

    shared = _by_start(mm, info["shared"])
    assert shared.kind == mm_pb2.VMA_SHARED_ANON and shared.shared
    assert shared.path == b"/dev/zero" and shared.deleted
    assert shared.map_file_known  # shmem has a struct file

    memfd = _by_start(mm, info["memfd"])
    assert memfd.kind == mm_pb2.VMA_MEMFD and memfd.deleted
    assert memfd.path == b"/memfd:criu model memfd (deleted) x"
    assert memfd.map_file_known
    assert (memfd.map_file_dev, memfd.map_file_ino) == (info["memfd_dev"], info["memfd_ino"])
    assert memfd.inode == info["memfd_ino"]
    assert memfd.pages.resident == 1

    filemap = _by_start(mm, info["file"])
    assert filemap.kind == mm_pb2.VMA_FILE and filemap.deleted and filemap.shared
    assert filemap.path == os.fsencode(info["file_path"])
    assert (filemap.map_file_dev, filemap.map_file_ino) == (info["file_dev"], info["file_ino"])

    kinds = {v.kind for v in mm.vmas}
    assert {mm_pb2.VMA_HEAP, mm_pb2.VMA_STACK, mm_pb2.VMA_VDSO} <= kinds
    for vma in mm.vmas:
        assert vma.map_file_known == (vma.inode != 0), vma.path
        if vma.kind == mm_pb2.VMA_FILE and not vma.deleted:
            st = os.stat(vma.path)
            assert (vma.map_file_dev, vma.map_file_ino) == (st.st_dev, st.st_ino)
        assert vma.HasField("pages") == (vma.kind != mm_pb2.VMA_VSYSCALL)


def test_vmas_match_maps_and_psutil() -> None:
    with spawn_mapper() as (proc, _info), _stopped(proc.pid):
        mm = collect_memory(proc.pid)
        with open(f"/proc/{proc.pid}/maps", "rb") as f:
            parsed = parse_maps(f.read())
        theirs = psutil.Process(proc.pid).memory_maps(grouped=False)
    ours = [(v.start, v.end) for v in mm.vmas]
    assert ours == sorted(ours)
    for vma, ref in zip(mm.vmas, parsed, strict=True):
        for field in ("start", "end", "prot", "shared", "offset", "dev_major", "dev_minor",
                      "inode", "path", "deleted", "kind"):
            assert getattr(vma, field) == getattr(ref, field), field
    psutil_ranges = [tuple(int(x, 16) for x in m.addr.split("-")) for m in theirs]
    assert ours == psutil_ranges
    # psutil reads smaps. Its Rss leaves out the shared zero page, which pagemap
    # reports present but never exclusive: in a process that never forked, the
    # Rss of private anonymous memory is exactly its exclusive pages.
    rss = {tuple(int(x, 16) for x in m.addr.split("-")): m.rss for m in theirs}
    checked = 0
    for vma in mm.vmas:
        if vma.kind in (mm_pb2.VMA_ANON, mm_pb2.VMA_HEAP, mm_pb2.VMA_STACK):
            assert rss[(vma.start, vma.end)] == vma.pages.exclusive * PAGE, hex(vma.start)
            assert vma.pages.resident >= vma.pages.exclusive
            checked += 1
    assert checked >= 3


@pytest.mark.skipif(not pagemap_scan_supported(), reason="PAGEMAP_SCAN needs 6.7")
def test_both_methods_same_counts() -> None:
    with spawn_mapper(npages=100, touched=42) as (proc, _info), _stopped(proc.pid):
        scan = collect_memory(proc.pid, method=METHOD_SCAN)
        classic = collect_memory(proc.pid, method=METHOD_CLASSIC)
    assert scan.page_counts_method == METHOD_SCAN
    assert classic.page_counts_method == METHOD_CLASSIC
    assert [(v.start, v.pages) for v in scan.vmas] == [(v.start, v.pages) for v in classic.vmas]


def test_without_pages() -> None:
    with spawn_mapper() as (proc, _info):
        mm = collect_memory(proc.pid, pages=False)
    assert mm.vmas and mm.page_counts_method == ""
    assert not any(v.HasField("pages") for v in mm.vmas)


def test_unknown_method() -> None:
    with pytest.raises(UsageError):
        collect_memory(os.getpid(), method="smaps")


def test_zombie_has_no_vmas() -> None:
    proc = subprocess.Popen(["true"])
    try:
        deadline = time.monotonic() + 10
        while psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        mm = collect_memory(proc.pid)
        assert mm.pid == proc.pid and len(mm.vmas) == 0 and mm.page_counts_method == ""
    finally:
        proc.wait()


def test_kernel_thread_has_no_vmas() -> None:
    mm = collect_memory(kthreadd_or_skip())
    assert len(mm.vmas) == 0 and list(mm.unreadable) == []


def test_gone_process() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    with pytest.raises(ProcessGone):
        collect_memory(proc.pid)


def test_shared_file_ids_skip_repeated_stats(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_stat = os.stat

    def counting_stat(path: str, *args: object, **kwargs: object) -> os.stat_result:
        if "dir_fd" in kwargs:
            calls.append(path)
        return real_stat(path, *args, **kwargs)  # type: ignore[arg-type]

    with spawn_mapper() as (one, _i1), spawn_mapper() as (two, _i2):
        fresh = collect_memory(two.pid)
        ids: FileIds = {}
        collect_memory(one.pid, file_ids=ids)
        monkeypatch.setattr(os, "stat", counting_stat)
        cached = collect_memory(two.pid, file_ids=ids)
    # Only the deleted files (memfd, unlinked file, /dev/zero shmem) are stat'ed again.
    assert len(calls) == 3
    assert [(v.map_file_dev, v.map_file_ino) for v in cached.vmas] == \
        [(v.map_file_dev, v.map_file_ino) for v in fresh.vmas]


def _as_nobody(work: Callable[[], bytes]) -> bytes:
    """Run ``work`` in a forked child with uid/gid nobody (no capabilities); its bytes back."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            os.close(r)
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            os.write(w, work())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    try:
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return b"".join(chunks)


@needs_root
def test_unprivileged_map_files_is_unreadable_once() -> None:
    def work() -> bytes:
        sleeper = subprocess.Popen(["sleep", "30"])
        try:
            time.sleep(0.05)  # let it exec so its maps show /usr/bin/sleep
            return collect_memory(sleeper.pid).SerializeToString()
        finally:
            sleeper.kill()
            sleeper.wait()

    mm = mm_pb2.MemoryMap.FromString(_as_nobody(work))
    assert [u.field for u in mm.unreadable] == ["map_files"]
    assert "CAP_SYS_ADMIN" in mm.unreadable[0].reason
    assert not any(v.map_file_known for v in mm.vmas)
    assert any(v.inode for v in mm.vmas)
    # Same uid: ptrace read access is enough for pagemap.
    assert mm.page_counts_method in METHODS
    assert sum(v.pages.resident for v in mm.vmas) > 0


@needs_root
def test_unreadable_pagemap_leaves_pages_unset() -> None:
    # A proc root whose maps is readable but whose pagemap is a root process's:
    # the kernel refuses nobody with EACCES (ptrace read check at open).
    target = subprocess.Popen(["sleep", "30"])
    fake = tempfile.mkdtemp()
    try:
        time.sleep(0.05)
        os.chmod(fake, 0o755)
        piddir = os.path.join(fake, str(target.pid))
        os.mkdir(piddir)
        os.chmod(piddir, 0o755)
        shutil.copyfile(f"/proc/{target.pid}/maps", os.path.join(piddir, "maps"))
        os.chmod(os.path.join(piddir, "maps"), 0o644)
        for name in ("pagemap", "map_files"):
            os.symlink(f"/proc/{target.pid}/{name}", os.path.join(piddir, name))
        mm = mm_pb2.MemoryMap.FromString(
            _as_nobody(lambda: collect_memory(target.pid, fake).SerializeToString()))
    finally:
        target.kill()
        target.wait()
        shutil.rmtree(fake)
    assert sorted(u.field for u in mm.unreadable) == ["map_files", "pages"]
    assert mm.page_counts_method == ""
    assert mm.vmas and not any(v.HasField("pages") for v in mm.vmas)


def test_dump_caches_give_what_fresh_reads_give() -> None:
    # Forked processes share maps lines, identities and layouts: collected with one
    # dump's caches (LineCache, FileIds) they must come out as collected afresh.
    script = ("import os, signal, sys\n"
              "kids = []\n"
              "for _ in range(3):\n"
              "    pid = os.fork()\n"
              "    if pid == 0:\n"
              "        signal.pause()\n"
              "    kids.append(pid)\n"
              "print(*kids, flush=True)\n"
              "sys.stdin.read()\n"
              "for pid in kids:\n"
              "    os.kill(pid, 9)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        pids = [proc.pid, *map(int, proc.stdout.readline().split())]
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)  # nothing may change between the two reads
        try:
            lines, ids = LineCache(), {}
            cached = [collect_memory(pid, file_ids=ids, line_cache=lines) for pid in pids]
            fresh = [collect_memory(pid) for pid in pids]
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
    finally:
        proc.communicate("")
    assert cached == fresh
    assert lines.layouts and lines.idents  # the children's shared layout was kept
    # the third child's page states and whole vmas field came from the second's
    assert any(layout.counted and layout.framed for layout in lines.layouts.values())
    assert all(len(m.vmas) > 20 and any(v.map_file_known for v in m.vmas) for m in cached)
