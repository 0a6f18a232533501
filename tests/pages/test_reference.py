"""Forked children classified against their parent or sibling (capture._Reference).

The reference is a shortcut: where a child's pagemap entries equal those of a
process captured before, that process's decisions are taken. It must change
nothing but the time: the same runs, the same slots and the same statistics
as a dump that asks the copy-on-write table page by page, on a real tree
where siblings share pages their parent has rewritten since they were forked.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from array import array
from collections.abc import Iterator
from pathlib import Path

import pytest

import criu_model
from criu_model.pages import capture
from criu_model.pages.layout import PAGE_SIZE, STORED, ZERO

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: ptrace, PFNs")

PAGES = 300

# A root fills PAGES pages, forks three children one after the other and rewrites
# 20 pages between the forks (so later siblings share pages the root no longer
# has); each child writes a few pages of its own, the last forks a grandchild
# that writes one more; one child rewrites 280 pages in a row, more than one read
# batch. Each reports the sha256 of the region, then sleeps.
_TREE = r"""
import hashlib, json, mmap, os, sys, time
PAGES = int(sys.argv[1])
PAGE = mmap.PAGESIZE
w = int(sys.argv[2])
m = mmap.mmap(-1, PAGES * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for i in range(PAGES):
    m[i * PAGE:i * PAGE + 16] = b"root-%010d-" % i
import ctypes
addr = ctypes.addressof(ctypes.c_char.from_buffer(m))

def report(role):
    os.write(w, (json.dumps({"role": role, "pid": os.getpid(), "addr": addr,
                             "sha": hashlib.sha256(m[:]).hexdigest()}) + "\n").encode())

for k in range(3):
    if os.fork() == 0:
        for i in (7 + k, 50 + 3 * k, 51 + 3 * k, 299 - k):
            m[i * PAGE + 100:i * PAGE + 108] = b"kid-%04d" % k
        if k == 1:  # more than a batch (256 pages) of its own in one stretch
            for i in range(10, 290):
                m[i * PAGE + 300:i * PAGE + 308] = b"kid1-big"
        if k == 2 and os.fork() == 0:
            m[123 * PAGE:123 * PAGE + 8] = b"grandkid"
            report("grandkid")
            while True:
                time.sleep(60)
        report("kid%d" % k)
        while True:
            time.sleep(60)
    for i in range(100 + 20 * k, 120 + 20 * k):
        m[i * PAGE + 200:i * PAGE + 208] = b"root-%03d" % k
time.sleep(0.2)
report("root")
while True:
    time.sleep(60)
"""


@pytest.fixture
def forked() -> Iterator[dict[str, dict[str, object]]]:
    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-c", _TREE, str(PAGES), str(w)], pass_fds=(w,),
                            start_new_session=True)
    os.close(w)
    try:
        seen: dict[str, dict[str, object]] = {}
        with os.fdopen(r) as lines:
            for line in lines:
                item = json.loads(line)
                seen[item["role"]] = item
                if len(seen) == 5:
                    break
        assert len(seen) == 5, f"the tree reported only {sorted(seen)}"
        yield seen
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _layout(snap: criu_model.Snapshot) -> tuple[list[object], dict[str, int]]:
    """Every owner's runs and slots, and the counts.

    Not the page hashes: between two dumps the kernel rewrites a page of each
    process by itself (the rseq area in its TLS gets the CPU it resumed on).
    """
    stats = snap.inventory.page_stats
    return ([(m.pid, m.object_ino, list(m.addr), list(m.npages), list(m.state), list(m.slot))
             for m in snap.pagemap],
            {f: getattr(stats, f) for f in ("stored", "zero", "deduplicated", "file_clean")})


def test_same_layout_as_the_table_alone(forked: dict[str, dict[str, object]], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    root = int(forked["root"]["pid"])  # type: ignore[call-overload]
    used: list[bool] = []
    real = capture._ProcessPass._against_reference

    def spy(self: capture._ProcessPass, *args: object) -> bool:
        took = real(self, *args)  # type: ignore[arg-type]
        used.append(took)
        return took

    monkeypatch.setattr(capture._ProcessPass, "_against_reference", spy)
    with_ref = criu_model.dump([root], pages=True, pages_dir=str(tmp_path))
    assert any(used), "no chunk was classified against a reference"
    for item in forked.values():
        got = with_ref.read_memory(int(item["pid"]), int(item["addr"]),  # type: ignore[call-overload]
                                   PAGES * PAGE_SIZE)
        assert hashlib.sha256(got).hexdigest() == item["sha"], item["role"]

    monkeypatch.setattr(capture._ProcessPass, "_against_reference", lambda *a: False)
    alone = criu_model.dump([root], pages=True, pages_dir=str(tmp_path))
    assert _layout(with_ref) == _layout(alone)
    # the pages of the region are stored once each, whoever holds them
    distinct = {hashlib.sha256(with_ref.read_memory(int(i["pid"]), int(i["addr"]) + p * PAGE_SIZE,
                                                    PAGE_SIZE)).digest()
                for i in forked.values() for p in range(PAGES)}
    assert with_ref.inventory.page_stats.stored >= len(distinct)
    for snap in (with_ref, alone):
        assert snap.page_sink is not None
        snap.page_sink.close()


def test_a_span_the_reference_did_not_decide_falls_back(tmp_path: Path) -> None:
    """Equal entries the reference has no run for (it held no private page there):
    nothing is taken from it and nothing is queued; the chunk is classified alone."""
    pfn = 0x1234
    # three shared (not exclusive) present pages, same frames in both
    entries = array("Q", [(1 << 63) | (pfn + i) for i in range(3)]).tobytes()
    theirs = tmp_path / "pagemap"
    base_page = 0x400
    theirs.write_bytes(bytes(base_page * 8) + entries)
    ref = capture._Reference("/nonexistent", [  # decided only the first two pages
        (base_page * PAGE_SIZE, 1, STORED, 9, array("Q", [1])),
        ((base_page + 1) * PAGE_SIZE, 1, ZERO, 0, ()),
    ])
    ref.fd = os.open(theirs, os.O_RDONLY)
    try:
        work = capture._ProcessPass.__new__(capture._ProcessPass)
        work.reference = ref
        work.decided = []
        work.batch = []
        work.cap = capture.PageCapture(sink=None)  # type: ignore[arg-type]
        codes = capture.entry_flag_bytes(entries).translate(capture._CODES)
        assert not work._against_reference(entries, codes, base_page)
        assert work.decided == [] and work.batch == []
        # with the third page decided too, the reference's runs are taken as they are
        ref.runs.append(((base_page + 2) * PAGE_SIZE, 1, STORED, 10, array("Q", [2])))
        ref.starts.append((base_page + 2) * PAGE_SIZE)
        assert work._against_reference(entries, codes, base_page)
        assert [(a // PAGE_SIZE - base_page, n, s, slot) for a, n, s, slot, _h in work.decided] \
            == [(0, 1, STORED, 9), (1, 1, ZERO, 0), (2, 1, STORED, 10)]
        assert work.cap.stats.deduplicated == 2 and work.cap.stats.zero == 1
    finally:
        os.close(ref.fd)
