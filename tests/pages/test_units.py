"""Unit tier for the page machinery: run building, inherited splitting, comparison."""

from __future__ import annotations

import itertools
import struct
from array import array
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from criu_model.images.pb import pages_pb2
from criu_model.pages.capture import _split_inherited
from criu_model.pages.compare import compare
from criu_model.pages.index import OwnerIndex
from criu_model.pages.layout import (
    PAGE_SIZE,
    PARENT,
    STORED,
    ZERO,
    RunBuilder,
    entry_hash_count,
    entry_hashes,
)


@given(st.lists(st.tuples(st.integers(0, 3), st.booleans()), max_size=300))
def test_split_inherited_marks_exactly_the_equal_pages(pages: list[tuple[int, bool]]) -> None:
    hashes = [h for h, _same in pages]
    before: list[int | None] = [h if same else None for h, same in pages]
    out = _split_inherited(hashes, before)
    states = [s for s, lo, hi in out for _ in range(lo, hi)]
    assert states == [PARENT if same else STORED for _h, same in pages]
    assert all(a[2] == b[1] and a[0] != b[0] for a, b in itertools.pairwise(out))


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), max_size=300))
def test_split_inherited_on_arrays_matches_lists(pairs: list[tuple[int, int]]) -> None:
    """The incremental pass compares array slices; the answer is the page-by-page one."""
    mine, theirs = [a for a, _ in pairs], [b for _, b in pairs]
    out = _split_inherited(array("Q", mine), array("Q", theirs))
    assert out == _split_inherited(mine, theirs)
    states = [s for s, lo, hi in out for _ in range(lo, hi)]
    assert states == [PARENT if a == b else STORED for a, b in pairs]


def test_entry_hashes_reads_both_fields_and_refuses_malformed() -> None:
    old = pages_pb2.PageRuns(hashes=[7, 2**64 - 1])
    new = pages_pb2.PageRuns(hash_data=struct.pack("<2Q", 7, 2**64 - 1))
    assert list(entry_hashes(old)) == list(entry_hashes(new)) == [7, 2**64 - 1]
    assert entry_hash_count(old) == entry_hash_count(new) == 2
    assert entry_hash_count(pages_pb2.PageRuns(hash_data=b"1234567")) is None  # not whole
    assert entry_hash_count(pages_pb2.PageRuns(hashes=[1], hash_data=bytes(8))) is None


def test_hash_slice_only_within_one_run_with_hashes() -> None:
    b = RunBuilder()
    b.add(0x10000, 3, STORED, 0, [1, 2, 3])
    b.add(0x13000, 2, ZERO)
    b.add(0x15000, 2, PARENT, 0, [4, 5])
    index = OwnerIndex(b.messages(pid=1))
    assert index.hash_slice(0x11000, 2) == array("Q", [2, 3])
    assert index.hash_slice(0x15000, 2) == array("Q", [4, 5])
    assert index.hash_slice(0x12000, 2) is None   # runs into the zero run
    assert index.hash_slice(0x13000, 1) is None   # zero pages have no hash
    assert index.hash_slice(0x20000, 1) is None   # not captured
    assert index.hashes_at(0x12000, 4) == [3, None, None, 4]


def test_run_builder_merges_neighbours_and_splits_large_owners() -> None:
    b = RunBuilder()
    b.add(0x1000, 2, STORED, 5, [1, 2])
    b.add(0x3000, 1, STORED, 7, [3])        # continues address and slot: merged
    b.add(0x4000, 1, STORED, 9, [4])        # slot gap: a new run
    b.add(0x5000, 3, ZERO)
    b.add(0x8000, 1, PARENT, 0, [5])
    assert (b.addr, b.npages, b.state, b.slot) == (
        [0x1000, 0x4000, 0x5000, 0x8000], [3, 1, 3, 1], [STORED, STORED, ZERO, PARENT],
        [5, 9, 0, 0])
    (msg,) = b.messages(pid=7)
    assert list(entry_hashes(msg)) == [1, 2, 3, 4, 5] and msg.pid == 7
    # written as one block of little-endian u64 (hash_data), not per integer
    assert msg.hash_data == struct.pack("<5Q", 1, 2, 3, 4, 5) and not msg.hashes


def test_compare_counts_changed_added_removed() -> None:
    a = [(0x10000, array("Q", [1, 2, 3, 4]))]
    b = [(0x10000 + PAGE_SIZE, array("Q", [2, 9, 4, 5, 6]))]
    delta = compare(a, b)
    assert delta.changed == [0x10000 + 2 * PAGE_SIZE]
    assert delta.removed == [0x10000]
    assert delta.added == [0x10000 + 4 * PAGE_SIZE, 0x10000 + 5 * PAGE_SIZE]
    assert not compare(a, a)


def test_candidates_join_only_across_holes_of_adjacent_private_vmas(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Ranges a short gap apart are read as one only where the gap can hold nothing
    but holes: not across zero or clean file pages (counted once), not across a
    gap between VMAs (another mapping may lie there), not across a long gap."""
    from criu_model.images.pb import mm_pb2
    from criu_model.pages import capture

    P = PAGE_SIZE
    base = 0x100000

    def at(page: int) -> int:
        return base + page * P

    vmas = [mm_pb2.Vma(start=at(0), end=at(400)),
            mm_pb2.Vma(start=at(400), end=at(500)),    # adjacent to the first
            mm_pb2.Vma(start=at(510), end=at(600))]    # ten pages of something else before
    present = int(capture.PageCategory.PRESENT)
    far = 33 + capture._JOIN_GAP // P + 1
    regions = [
        (at(0), at(2), present),
        (at(10), at(12), present),                                  # joins the first
        (at(20), at(21), present | int(capture.PageCategory.PFNZERO)),
        (at(22), at(23), present),                                  # after a zero run
        (at(30), at(31), present | int(capture.PageCategory.FILE)),
        (at(32), at(33), present),                                  # after clean file pages
        (at(far), at(far + 1), present),                            # too far
        (at(398), at(402), present),                                # across adjacent VMAs
        (at(450), at(452), present),                                # joins, same VMA
        (at(512), at(513), present),                                # next VMA, not adjacent
    ]
    monkeypatch.setattr(capture, "pagemap_scan_supported", lambda: True)
    monkeypatch.setattr(capture, "pagemap_scan", lambda *a, **k: iter(regions))
    cap = capture.PageCapture(sink=None)  # type: ignore[arg-type]
    pass_ = capture._ProcessPass.__new__(capture._ProcessPass)
    pass_.cap = cap
    assert pass_._candidates(-1, vmas) == [
        (at(0), at(12), False), (at(20), at(21), True), (at(22), at(23), False),
        (at(32), at(33), False), (at(far), at(far + 1), False), (at(398), at(452), False),
        (at(512), at(513), False)]
    assert cap.stats.file_clean == 1


def test_sink_keeps_slot_order_across_queued_and_inline_appends(tmp_path: Path) -> None:
    """Big appends go to the writer thread, small ones with the writer idle are
    written by the caller: either way a slot holds what its append returned."""
    import os
    import threading

    from criu_model.pages.sink import INLINE_BYTES, PageSink

    sink = PageSink(str(tmp_path))
    writers: set[str] = set()
    real = sink._write_views

    def write_views(views: list[memoryview]) -> None:
        writers.add(threading.current_thread().name)
        real(views)

    sink._write_views = write_views  # type: ignore[method-assign]
    try:
        big = INLINE_BYTES // PAGE_SIZE + 1
        expect: list[tuple[int, bytes]] = []
        for round_ in range(30):
            n = big if round_ % 3 == 0 else 1 + round_ % 4
            data = b"".join(bytes([round_, i % 251]) * (PAGE_SIZE // 2) for i in range(n))
            done = threading.Event()
            expect.append((sink.append(memoryview(data), done), data))
            if round_ % 5 == 4:
                done.wait()  # the writer idles now and then: the next small one is inline
        sink.drain()
        for slot, data in expect:
            assert os.pread(sink.fd, len(data), (slot + 1) * PAGE_SIZE) == data
        assert sink.bytes_written == (sink.slots + 1) * PAGE_SIZE
        assert writers == {threading.current_thread().name, "criu-model-pages"}  # both ways
    finally:
        sink.close()


def test_split_vmas_agrees_with_stores_private_and_stores_object() -> None:
    from criu_model.images.pb import mm_pb2
    from criu_model.pages.capture import _split_vmas, stores_object, stores_private

    kinds = [k for k in mm_pb2.VmaKind.values()]
    vmas = [mm_pb2.Vma(start=i * PAGE_SIZE, end=(i + 1) * PAGE_SIZE, kind=kind,
                       shared=shared, deleted=deleted)
            for i, (kind, shared, deleted) in enumerate(
                itertools.product(kinds, (False, True), (False, True)))]
    private, objects = _split_vmas(vmas)
    assert private == [v for v in vmas if stores_private(v)]
    assert objects == [v for v in vmas if stores_object(v)]
    assert private and objects


def test_sink_in_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    """The error names the directory, and the half-made sink goes away quietly
    (its __del__ once raised AttributeError on fields never set)."""
    import gc
    import sys

    from criu_model.errors import CriuModelError
    from criu_model.pages.sink import PageSink

    seen: list[object] = []
    hook, sys.unraisablehook = sys.unraisablehook, seen.append
    try:
        with pytest.raises(CriuModelError, match="nowhere"):
            PageSink(str(tmp_path / "nowhere"))
        gc.collect()
    finally:
        sys.unraisablehook = hook
    assert seen == []


def test_reader_ring_reuses_given_back_buffers_and_waits_for_the_oldest() -> None:
    """A buffer the writer gave back is read into again (a small dump touches one
    buffer, not the whole ring); with every buffer lent, the oldest lent is
    waited for, as the writer gives them back in the order it got them."""
    import os
    import threading

    from criu_model.kernel.vmread import RemoteReader

    reader = RemoteReader(os.getpid(), 4096, buffers=3)
    first = reader.view
    done = reader.hand_off()
    done.set()  # written at once
    reader.rotate()
    assert reader.view is first
    lent = []
    for _ in range(3):
        lent.append((reader.view, reader.hand_off()))
        if len(lent) < 3:
            reader.rotate()
    assert len({id(v) for v, _e in lent}) == 3
    threading.Timer(0.05, lent[0][1].set).start()  # the oldest comes back later
    reader.rotate()
    assert reader.view is lent[0][0]
    assert lent[0][1].is_set()
    # and what is read lands in it
    data = b"ring-check"
    buf = bytearray(data)
    import ctypes

    addr = ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))
    assert reader.read([(addr, len(data))]) == len(data)
    assert bytes(reader.view[:len(data)]) == data
    reader.close()
