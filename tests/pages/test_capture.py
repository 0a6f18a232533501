"""dump --pages on a real tree: the bytes each process reports about its own memory."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import criu_model
from criu_model.errors import NotCaptured
from criu_model.images.pb import pages_pb2
from criu_model.pages.layout import PAGE_SIZE
from tests.memchild import (
    ANON_PAGES,
    KID_WRITES,
    NEEDLE,
    NEEDLE_OFFSET,
    UNTOUCHED,
    ZERO_PAGE,
    MemTree,
    spawn_mem_tree,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: ptrace, map_files, PFNs")

REGIONS = ("anon", "heap", "stack", "shared", "memfd", "zero_page")  # private_file: below


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[MemTree]:
    with spawn_mem_tree(tmp_path) as tree:
        yield tree


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _pagemap(pid: int, addr: int, npages: int) -> bytes:
    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
    try:
        return os.pread(fd, npages * 8, addr // PAGE_SIZE * 8)
    finally:
        os.close(fd)


def test_dumped_bytes_equal_what_each_process_reports(tree: MemTree, tmp_path: Path) -> None:
    snap = criu_model.dump([tree.root.pid], pages=True, pages_dir=str(tmp_path))
    for proc in (tree.root, tree.kid):
        for name in REGIONS:
            addr, length, digest = proc.regions[name]
            assert _sha(snap.read_memory(proc.pid, addr, length)) == digest, (proc.role, name)
    # and the same once written and loaded back
    loaded = criu_model.load(criu_model.write(snap, tmp_path / "snap"))
    for proc in (tree.root, tree.kid):
        for name in REGIONS:
            addr, length, digest = proc.regions[name]
            assert _sha(loaded.read_memory(proc.pid, addr, length)) == digest, (proc.role, name)
    stats = loaded.inventory.page_stats
    assert loaded.inventory.pages_captured and stats.stored > 0
    assert stats.bytes_written == (tmp_path / "snap" / "pages.img").stat().st_size
    mode = os.stat(tmp_path / "snap" / "pages.img").st_mode & 0o777
    assert mode == 0o600


def test_cow_pages_stored_once_and_sharing_kept(tree: MemTree, tmp_path: Path) -> None:
    addr = tree.root.regions["anon"][0]
    before = [_pagemap(p.pid, addr, ANON_PAGES) for p in (tree.root, tree.kid)]
    snap = criu_model.dump([tree.root.pid], pages=True, pages_dir=str(tmp_path))
    after = [_pagemap(p.pid, addr, ANON_PAGES) for p in (tree.root, tree.kid)]
    # never harm the target: reading did not break copy-on-write (same frames)
    assert before == after
    store = snap.page_store
    assert store is not None
    root = store.owner((tree.root.pid, 0, 0))
    kid = store.owner((tree.kid.pid, 0, 0))
    assert root is not None and kid is not None

    def slots(index, base):  # type: ignore[no-untyped-def]
        out = {}
        for lo, n, state, slot, _h in index.pages(base, base + ANON_PAGES * PAGE_SIZE):
            for k in range(n):
                out[(lo - base) // PAGE_SIZE + k] = (state, slot + k)
        return out

    mine, theirs = slots(root, addr), slots(kid, addr)
    assert len(mine) == len(theirs) == ANON_PAGES
    differ = {i for i in range(ANON_PAGES) if mine[i] != theirs[i]}
    assert differ == set(KID_WRITES)  # every other page is one stored copy
    assert snap.inventory.page_stats.deduplicated >= ANON_PAGES - len(KID_WRITES)


def test_zero_untouched_file_and_shared_file_pages(tree: MemTree, tmp_path: Path) -> None:
    snap = criu_model.dump([tree.root.pid], pages=True, pages_dir=str(tmp_path))
    pid = tree.root.pid
    anon = tree.root.regions["anon"][0]
    assert snap.read_memory(pid, anon + ZERO_PAGE * PAGE_SIZE, PAGE_SIZE) == bytes(PAGE_SIZE)
    index = snap.page_store.owner((pid, 0, 0))  # type: ignore[union-attr]
    zero = anon + ZERO_PAGE * PAGE_SIZE
    assert index.counts(zero, zero + PAGE_SIZE) == {pages_pb2.PAGE_ZERO: 1}
    with pytest.raises(NotCaptured, match="never populated"):
        snap.read_memory(pid, anon + UNTOUCHED * PAGE_SIZE, 16)
    private = tree.root.regions["private_file"][0]
    with pytest.raises(NotCaptured, match=r"clean page of .*private\.bin"):
        snap.read_memory(pid, private + 2 * PAGE_SIZE, 16)  # faulted in, never written
    assert snap.read_memory(pid, private + PAGE_SIZE, 8) == b"WRITTEN!"
    with pytest.raises(NotCaptured, match="contents are the file's"):
        snap.read_memory(pid, tree.root.regions["shared_file"][0], 16)
    with pytest.raises(NotCaptured, match="outside every VMA"):
        snap.read_memory(pid, 4096, 16)


def test_shared_objects_stored_once(tree: MemTree, tmp_path: Path) -> None:
    snap = criu_model.dump([tree.root.pid], pages=True, pages_dir=str(tmp_path))
    objects = [r for r in snap.pagemap if not r.pid]
    paths = sorted(r.object_path for r in objects)
    assert paths == [b"/dev/zero", b"/memfd:cm-test-memfd"]
    assert snap.inventory.page_stats.shared_objects == 2
    for name in ("shared", "memfd"):
        addr, length, digest = tree.root.regions[name]
        assert _sha(snap.read_memory(tree.kid.pid, addr, length)) == digest


def test_incremental_stores_only_written_pages(tree: MemTree, tmp_path: Path) -> None:
    full = criu_model.write(criu_model.dump([tree.root.pid], pages=True,
                                            pages_dir=str(tmp_path)), tmp_path / "full")
    tree.command("write 5")
    snap = criu_model.dump([tree.root.pid], pages=True, pages_dir=str(tmp_path), parent=full)
    inc = criu_model.write(snap, tmp_path / "inc")
    loaded = criu_model.load(inc)
    addr, length, digest = tree.root.regions["anon"]
    assert _sha(loaded.read_memory(tree.root.pid, addr, length)) == digest
    index = loaded.page_store.owner((tree.root.pid, 0, 0))  # type: ignore[union-attr]
    counts = index.counts(addr, addr + length)
    assert counts.get(pages_pb2.PAGE_STORED, 0) == 5
    assert counts[pages_pb2.PAGE_PARENT] == ANON_PAGES - 5
    stats = loaded.inventory.page_stats
    assert stats.inherited > stats.stored  # the interpreter's own heap moves a little
    # the kid did not change at all: everything it has is inherited or shared
    kid = loaded.page_store.owner((tree.kid.pid, 0, 0))  # type: ignore[union-attr]
    assert kid.counts(addr, addr + length).get(pages_pb2.PAGE_STORED, 0) == 0
    assert loaded.inventory.parent_snapshot == "../full"


def test_grep_finds_the_planted_string(tree: MemTree, tmp_path: Path) -> None:
    from criu_model.pages.search import grep

    snap = criu_model.dump([tree.root.pid], pages=True, pages_dir=str(tmp_path))
    want = tree.root.regions["anon"][0] + NEEDLE_OFFSET
    hits = {(h.pid, h.addr) for h in grep(snap, NEEDLE)}
    assert (tree.root.pid, want) in hits and (tree.kid.pid, want) in hits
    regex = [h for h in grep(snap, rb"NEEDLE-[0-9a-f]{6}", regex=True, pid=tree.root.pid)
             if h.addr == want + len(b"CRIU-MODEL-")]
    assert regex and regex[0].match == NEEDLE[len(b"CRIU-MODEL-"):]


def test_registers_of_every_thread(tree: MemTree, tmp_path: Path) -> None:
    snap = criu_model.dump([tree.root.pid], pages=True, pages_dir=str(tmp_path))
    regs = snap.registers_by_pid
    for proc in (tree.root, tree.kid):
        assert [t.tid for t in regs[proc.pid].threads] == \
            [t.tid for t in snap.by_pid[proc.pid].threads]
        assert all(t.prstatus for t in regs[proc.pid].threads)
    state_only = criu_model.dump([tree.root.pid])
    assert not state_only.registers and not state_only.pagemap
    assert not state_only.inventory.pages_captured


def test_grep_across_stored_pieces_equals_a_plain_search(tree: MemTree, tmp_path: Path) -> None:
    """The kid's anon region is pieces of its own pages among the root's (not contiguous
    in pages.img): a match across such a boundary is found once, like a plain search."""
    from criu_model.pages.search import grep

    snap = criu_model.dump([tree.root.pid], pages=True, pages_dir=str(tmp_path))
    addr, length, _ = tree.kid.regions["anon"]
    kid = tree.kid.pid
    across = b"\x04\x00\x00\x00kid!"  # end of the root's page 4, start of the kid's page 5
    want = addr + 5 * PAGE_SIZE - 4
    for regex in (False, True):
        pattern = across if not regex else b"\\x04\\x00\\x00\\x00kid!"
        hits = [h.addr for h in grep(snap, pattern, regex=regex, pid=kid)
                if addr <= h.addr < addr + length]
        assert hits == [want], regex
    data = snap.read_memory(kid, addr, length)
    plain: list[int] = []
    i = data.find(b"kid!")
    while i != -1:
        plain.append(addr + i)
        i = data.find(b"kid!", i + 4)
    found = [h.addr for h in grep(snap, b"kid!", pid=kid) if addr <= h.addr < addr + length]
    assert found == plain and len(plain) == len(KID_WRITES) * (PAGE_SIZE // 8)


def test_page_file_copied_across_filesystems_and_rewritten(tree: MemTree, tmp_path: Path
                                                           ) -> None:
    """The unnamed page file is linked in place when it can be, copied when not (another
    filesystem), and a loaded snapshot written elsewhere keeps its pages byte for byte."""
    shm = Path("/dev/shm")
    if os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("/dev/shm and the test directory are one filesystem here")
    snap = criu_model.dump([tree.root.pid], pages=True, pages_dir=str(shm))
    out = criu_model.write(snap, tmp_path / "a")  # EXDEV: copied
    again = criu_model.write(criu_model.load(out), tmp_path / "b")
    assert (out / "pages.img").read_bytes() == (again / "pages.img").read_bytes()
    addr, length, digest = tree.root.regions["anon"]
    assert _sha(criu_model.load(again).read_memory(tree.root.pid, addr, length)) == digest
    assert not [p for p in shm.iterdir() if p.name.startswith(".criu-model-pages-")]
