"""CRIU page contents through criu-model's page views (formats/criu/pages.py).

Ground truth: the fixtures' root process wrote truth.json through stdio, so
its heap holds the last 4096-byte block of that file in the FILE buffer; every
process has scn's static `workdir` string in its .data page; the memfd holds
'a'..'z' repeated (scn.c). Checksums: every owner's pages, read run by run,
are exactly its pages-N.img (sha256), and the hashes computed for the differ
equal those criu-model stores after an import.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import struct
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import criu_model
from criu_model.errors import CriuModelError, ImageError, NotCaptured, TruncatedImage
from criu_model.formats.criu import import_pages, load_criu, read_dir
from criu_model.formats.criu import magic as cmagic
from criu_model.formats.criu.pages import (
    PE_LAZY,
    PE_PARENT,
    PE_PRESENT,
    CriuPageStore,
    page_runs,
)
from criu_model.formats.criu.pb import core_pb2
from criu_model.pages.search import grep
from tests.formats.conftest import FIXTURES, TREES, truth

PS = 4096
ROOT, F = 6391, 6403
STDIO_BUFFER = 0x55B97FAE4480    # the root's FILE buffer (heap), found with grep
WORKDIR_AT = 0x55B95B92C480      # scn's `static char workdir[256]` (.data)
MEMFD = (0, 0, 478)              # pagemap-shmem-478.img: the memfd's object


def _pagemaps(d: Path) -> list[str]:
    return sorted(p.name for p in d.glob("pagemap-*.img"))


@pytest.mark.parametrize("tree", TREES)
def test_every_owner_reads_back_its_whole_pages_file(tree: str) -> None:
    """Run offsets (PE_PRESENT, with or without PE_LAZY) tile pages-N.img exactly."""
    d = FIXTURES / tree
    snap = load_criu(d)
    store = snap.page_store
    assert isinstance(store, CriuPageStore)
    dump = read_dir(d)
    assert len(store.owner_keys()) == len(_pagemaps(d))
    for name in _pagemaps(d):
        pages_id, runs = page_runs(dump, name)
        key = ((0, 0, int(name[14:-4])) if name.startswith("pagemap-shmem-")
               else (int(name[8:-4]), 0, 0))
        data = b"".join(chunk or b"" for _a, chunk in store.segments(key, 0, 1 << 64))
        raw = (d / f"pages-{pages_id}.img").read_bytes()
        assert hashlib.sha256(data).digest() == hashlib.sha256(raw).digest(), name
        assert sum(r.nr_pages for r in runs) * PS == len(raw)
        index = store.owner(key)
        assert index is not None and index.page_count * PS == len(raw)
        assert len(index.hashes) == index.page_count


@pytest.mark.parametrize("tree", ["tree-full", "tree-before", "tree-after"])
def test_the_roots_stdio_buffer_holds_the_end_of_truth_json(tree: str) -> None:
    """Bytes at an address, against what the process wrote from /proc before the dump."""
    snap = load_criu(FIXTURES / tree)
    written = (FIXTURES / tree / "truth.json").read_bytes()
    tail = len(written) % 4096
    buf = snap.read_memory(ROOT, STDIO_BUFFER, 4096)
    assert buf[:tail] == written[-tail:]                         # the last block written
    assert buf[tail:] == written[-4096:-tail]                    # the rest of the one before


def test_workdir_string_and_cmdline_at_their_addresses() -> None:
    snap = load_criu(FIXTURES / "tree-before")
    workdir = truth("tree-before")["workdir"].encode()
    for proc in snap.processes:
        if proc.state == "Z":
            with pytest.raises(NotCaptured):
                snap.read_memory(proc.pid, WORKDIR_AT, len(workdir))
            continue
        assert snap.read_memory(proc.pid, WORKDIR_AT, len(workdir) + 1) == workdir + b"\0"
        mm = read_dir(FIXTURES / "tree-before").entries(f"mm-{proc.pid}.img")[0]
        args = snap.read_memory(proc.pid, mm.mm_arg_start, mm.mm_arg_end - mm.mm_arg_start)
        assert args == b"./scn\0tree\0"


def test_memfd_object_holds_what_scn_wrote() -> None:
    snap = load_criu(FIXTURES / "tree-full")
    store = snap.page_store
    assert store is not None
    data = b"".join(d or b"" for _a, d in store.segments(MEMFD, 0, 8192))
    assert data == bytes(ord("a") + i % 26 for i in range(8192))
    index = store.owner(MEMFD)
    assert index is not None and index.object_size == 8192
    assert index.object_path == b"/memfd:scn-memfd"


def test_grep_finds_every_copy_and_only_those() -> None:
    """Hits against a plain search of the raw pages files (vDSO pages are not searched)."""
    d = FIXTURES / "tree-before"
    snap = load_criu(d)
    pattern = truth("tree-before")["workdir"].encode()
    hits = list(grep(snap, pattern))
    raw = sum((d / f"pages-{n}.img").read_bytes().count(pattern) for n in range(1, 12))
    assert len(hits) == raw == 24
    for h in hits:
        assert snap.read_memory(h.pid, h.addr, len(pattern)) == pattern
    assert {h.pid for h in hits} == {p.pid for p in snap.processes if p.state != "Z"}
    regex = list(grep(snap, rb"criu-fixtures/w[a-z]+", regex=True, pid=ROOT))
    assert [h.addr for h in regex] == [h.addr + 5 for h in hits if h.pid == ROOT]
    assert len(list(grep(snap, b"/TMP/CRIU-FIXTURES/WORK", ignore_case=True))) == 24


def _bytes_differ(a, b, pid: int, start: int, end: int) -> list[int]:
    out = []
    for addr in range(start, end, PS):
        try:
            x, y = a.read_memory(pid, addr, PS), b.read_memory(pid, addr, PS)
        except NotCaptured:
            continue
        if x != y:
            out.append(addr)
    return out


def test_memory_diff_of_two_dumps_is_what_the_bytes_say() -> None:
    before, after = load_criu(FIXTURES / "tree-before"), load_criu(FIXTURES / "tree-after")
    result = criu_model.diff(before, after, only="memory", include_volatile=True)
    reported = {(c.pid, c.start): c.after["pages"]["changed"] for c in result.changes}
    assert reported and not result.missing
    for proc in before.processes:
        if proc.state == "Z":
            continue
        for vma in before.memory_by_pid[proc.pid].vmas:
            if vma.kind in (7, 8, 9) or vma.shared:  # kernel areas: not stored
                continue
            changed = _bytes_differ(before, after, proc.pid, vma.start, vma.end)
            assert changed == reported.get((proc.pid, vma.start), []), (proc.pid, vma)
    # The root handled SIGUSR1 (opened after.txt, forked G): its stack and heap changed.
    assert (ROOT, 0x7FFFD28D1000) in reported and (ROOT, 0x55B97FAE4000) in reported
    assert sum(len(v) for v in reported.values()) == 21


def test_import_copies_the_pages_and_keeps_their_hashes(tmp_path: Path) -> None:
    snap = load_criu(FIXTURES / "tree-after")
    lazy = {k: list(snap.page_store.owner(k).hashes) for k in snap.page_store.owner_keys()}
    import_pages(snap, tmp_path)
    path = criu_model.write(snap, tmp_path / "imported")
    again = criu_model.load(path)
    total = sum(f.stat().st_size for f in (FIXTURES / "tree-after").glob("pages-*.img"))
    assert again.inventory.pages_captured and again.inventory.page_stats.stored * PS == total
    for key, hashes in lazy.items():
        assert list(again.page_store.owner(key).hashes) == hashes
    assert criu_model.diff(load_criu(FIXTURES / "tree-after"), again).identical
    assert again.read_memory(ROOT, WORKDIR_AT, 23) == b"/tmp/criu-fixtures/work"
    # A CRIU snapshot written without import_pages is refused in one line.
    with pytest.raises(CriuModelError, match="import_pages"):
        criu_model.write(load_criu(FIXTURES / "sleep"), tmp_path / "plain")
    assert not (tmp_path / "plain").exists()


def test_diff_of_a_criu_dump_against_its_import_finds_no_memory_change(tmp_path: Path) -> None:
    snap = load_criu(FIXTURES / "tree-before")
    import_pages(snap, tmp_path)
    ours = criu_model.load(criu_model.write(snap, tmp_path / "s"))
    for a, b in ((FIXTURES / "tree-before", ours), (ours, FIXTURES / "tree-before")):
        x = a if isinstance(a, criu_model.Snapshot) else load_criu(a)
        y = b if isinstance(b, criu_model.Snapshot) else load_criu(b)
        assert not criu_model.diff(x, y, only="memory").changes
    after = load_criu(FIXTURES / "tree-after")
    # 14 VMAs with changed pages; in 10 of them only threads' rseq areas changed (the
    # CPU each last ran on: volatile, shown with include_volatile)
    assert len(criu_model.diff(ours, after, only="memory").changes) == 4
    assert len(criu_model.diff(ours, after, only="memory", include_volatile=True).changes) == 14


# -- images written here: parent chains, lazy pages, damage -----------------

def _pagemap_bytes(pages_id: int, runs: list[tuple[int, int, int]]) -> bytes:
    out = struct.pack("<II", cmagic.IMG_COMMON, cmagic.MAGICS["PAGEMAP"])
    for msg in [core_pb2.PagemapHead(pages_id=pages_id)] + [
            core_pb2.PagemapEntry(vaddr=v, nr_pages=n, flags=f, compat_nr_pages=0)
            for v, n, f in runs]:
        body = msg.SerializeToString()
        out += struct.pack("<I", len(body)) + body
    return out


def _split(d: Path, pid: int, to_parent: set[int], flags: int = PE_PARENT) -> bytes:
    """Rewrite pid's pagemap: runs in ``to_parent`` get ``flags``, their data leaves pages-N."""
    dump = read_dir(d)
    pages_id, runs = page_runs(dump, f"pagemap-{pid}.img")
    raw = (d / f"pages-{pages_id}.img").read_bytes()
    kept, entries = b"", []
    for i, r in enumerate(runs):
        assert r.offset is not None
        if i in to_parent:
            entries.append((r.vaddr, r.nr_pages, flags))
        else:
            entries.append((r.vaddr, r.nr_pages, r.flags))
            kept += raw[r.offset * PS:(r.offset + r.nr_pages) * PS]
    (d / f"pagemap-{pid}.img").write_bytes(_pagemap_bytes(pages_id, entries))
    (d / f"pages-{pages_id}.img").write_bytes(kept)
    return raw


def test_pages_in_the_parent_dump_are_read_through_parent_link(criu_copy, tmp_path) -> None:
    """A CRIU --prev-images-dir chain: PE_PARENT runs come from parent/ (two levels)."""
    whole = load_criu(FIXTURES / "sleep")
    mm = whole.memory_by_pid[6819]
    expect = {v.start: whole.read_memory(6819, v.start, v.end - v.start)
              for v in mm.vmas if v.kind not in (7, 8, 9) and not v.shared
              and _fully_stored(whole, v)}
    grand = tmp_path / "pre1"
    shutil.copytree(FIXTURES / "sleep", grand)
    mid = tmp_path / "pre2"
    shutil.copytree(FIXTURES / "sleep", mid)
    _split(mid, 6819, {0, 1})
    (mid / "parent").symlink_to("../pre1")
    child = criu_copy("sleep")
    _split(child, 6819, {0, 1, 2, 3})
    (child / "parent").symlink_to(mid)
    snap = load_criu(child)
    assert snap.inventory.page_stats.inherited > 0
    for start, data in expect.items():
        v = next(v for v in mm.vmas if v.start == start)
        assert snap.read_memory(6819, start, v.end - v.start) == data
    hashes = list(snap.page_store.owner((6819, 0, 0)).hashes)
    assert hashes == list(whole.page_store.owner((6819, 0, 0)).hashes)
    (child / "parent").unlink()
    orphan = load_criu(child)
    first = page_runs(read_dir(child), "pagemap-6819.img")[1][0]
    with pytest.raises(NotCaptured, match="parent dump"):
        orphan.read_memory(6819, first.vaddr, PS)


def _fully_stored(snap, vma) -> bool:
    try:
        snap.read_memory(6819, vma.start, vma.end - vma.start)
    except NotCaptured:
        return False
    return True


def test_lazy_pages_without_data_are_not_captured(criu_copy) -> None:
    d = criu_copy("sleep")
    _split(d, 6819, {0}, flags=PE_LAZY)
    snap = load_criu(d)
    first = page_runs(read_dir(d), "pagemap-6819.img")[1][0]
    with pytest.raises(NotCaptured, match="not captured"):
        snap.read_memory(6819, first.vaddr, PS)
    runs = {c.name: c.reason for c in snap.inventory.collectors}
    assert "page server" in runs["criu-pages:lazy"]
    assert PE_PRESENT == 4


def test_truncated_pages_file_names_file_and_offset(criu_copy) -> None:
    d = criu_copy("sleep")
    pages = d / "pages-1.img"
    pages.write_bytes(pages.read_bytes()[:3 * PS + 100])
    snap = load_criu(d)  # loads: the damage shows where it is read
    runs = {c.name: c.reason for c in snap.inventory.collectors}
    assert f"cut short at offset {3 * PS + 100}" in runs["criu-pages:pages-1.img"]
    with pytest.raises(TruncatedImage) as err:
        list(grep(snap, b"never-there"))
    assert str(pages) in str(err.value) and "offset" in str(err.value)
    with pytest.raises(TruncatedImage):
        criu_model.diff(snap, load_criu(FIXTURES / "sleep"), only="memory")


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(0, 139264), flips=st.lists(st.tuples(st.integers(0, 247),
                                                             st.integers(1, 255)), max_size=4))
def test_damaged_pagemap_or_pages_give_image_errors_only(criu_copy, cut, flips) -> None:
    d = criu_copy("sleep")
    (d / "pages-1.img").write_bytes((FIXTURES / "sleep" / "pages-1.img").read_bytes()[:cut])
    pm = bytearray((FIXTURES / "sleep" / "pagemap-6819.img").read_bytes())
    for at, x in flips:
        pm[at % len(pm)] ^= x
    (d / "pagemap-6819.img").write_bytes(bytes(pm))
    try:
        snap = load_criu(d)
        list(grep(snap, b"x"))
        criu_model.diff(snap, snap, only="memory")
        for v in snap.memory_by_pid[6819].vmas:
            with contextlib.suppress(NotCaptured):
                snap.read_memory(6819, v.start, min(v.end - v.start, 1 << 20))
    except (ImageError, NotCaptured):
        pass
    finally:
        shutil.rmtree(d)


# -- archives --------------------------------------------------------------

@pytest.mark.parametrize("mode", ["w", "w:gz", "zst"])
def test_archive_pages_read_like_the_directory(tmp_path: Path, mode: str) -> None:
    from tests.formats.test_criu_archive import build

    if mode == "zst":
        zstandard = pytest.importorskip("zstandard")
        plain = build(tmp_path / "c.tar")
        path = tmp_path / "c.tar.zst"
        path.write_bytes(zstandard.ZstdCompressor().compress(plain.read_bytes()))
    else:
        path = build(tmp_path / ("c.tar" if mode == "w" else "c.tar.gz"), mode=mode)
    snap = load_criu(path)
    direct = load_criu(FIXTURES / "tree-full")
    written = (FIXTURES / "tree-full" / "truth.json").read_bytes()
    assert snap.read_memory(ROOT, STDIO_BUFFER, 2532) == written[-2532:]
    assert not criu_model.diff(direct, snap, only="memory").changes
    assert [h.addr for h in grep(snap, b"scn-memfd")] == [h.addr for h in
                                                          grep(direct, b"scn-memfd")]
    with tarfile.open(path if mode != "zst" else tmp_path / "c.tar") as tar:
        assert "checkpoint/pages-1.img" in tar.getnames()


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(0.0, 1.0), mode=st.sampled_from(["w", "w:gz"]))
def test_a_cut_archive_gives_image_errors_only(tmp_path_factory, cut: float, mode: str) -> None:
    from tests.formats.test_criu_archive import build

    tmp = tmp_path_factory.mktemp("cut")
    whole = build(tmp / ("c.tar" if mode == "w" else "c.tar.gz"), tree="sleep", mode=mode)
    data = whole.read_bytes()
    whole.write_bytes(data[:int(len(data) * cut)])
    try:
        snap = load_criu(whole)
        list(grep(snap, b"never-there"))
    except (ImageError, NotCaptured):
        pass
