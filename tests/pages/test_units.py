"""Unit tier for the page machinery: run building, inherited splitting, comparison."""

from __future__ import annotations

import itertools
from array import array

from hypothesis import given
from hypothesis import strategies as st

from criu_model.pages.capture import _split_inherited
from criu_model.pages.compare import compare
from criu_model.pages.layout import PAGE_SIZE, PARENT, STORED, ZERO, RunBuilder


@given(st.lists(st.tuples(st.integers(0, 3), st.booleans()), max_size=300))
def test_split_inherited_marks_exactly_the_equal_pages(pages: list[tuple[int, bool]]) -> None:
    hashes = [h for h, _same in pages]
    before: list[int | None] = [h if same else None for h, same in pages]
    out = _split_inherited(hashes, before)
    states = [s for s, lo, hi in out for _ in range(lo, hi)]
    assert states == [PARENT if same else STORED for _h, same in pages]
    assert all(a[2] == b[1] and a[0] != b[0] for a, b in itertools.pairwise(out))


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
    assert list(msg.hashes) == [1, 2, 3, 4, 5] and msg.pid == 7


def test_compare_counts_changed_added_removed() -> None:
    a = [(0x10000, array("Q", [1, 2, 3, 4]))]
    b = [(0x10000 + PAGE_SIZE, array("Q", [2, 9, 4, 5, 6]))]
    delta = compare(a, b)
    assert delta.changed == [0x10000 + 2 * PAGE_SIZE]
    assert delta.removed == [0x10000]
    assert delta.added == [0x10000 + 4 * PAGE_SIZE, 0x10000 + 5 * PAGE_SIZE]
    assert not compare(a, a)
