"""Incremental dumps read by the reader pool, and page maps in the older hash format.

The pool (capture._ReadPool) reads and hashes batches on two threads and
numbers the changed pages' slots as it stores them: a target with many
batches' worth of memory, written at spread pages, checks that every stored
page lands in the slot its run names (a mix-up is a checksum error or wrong
bytes). Page maps written before hash_data existed (hashes as a repeated
fixed64) still load, and still serve as the parent of an incremental dump.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import criu_model
from criu_model.errors import NotCaptured
from criu_model.images.pb import pages_pb2
from criu_model.pages.layout import PAGE_SIZE, entry_hashes

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: ptrace, PFNs")

SIZE = 12 << 20  # twelve 1 MiB batches: both reader threads get several
_TARGET = r"""
import ctypes, hashlib, json, mmap, os, sys
PAGE, SIZE = os.sysconf("SC_PAGE_SIZE"), int(sys.argv[1])
m = mmap.mmap(-1, SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
block = os.urandom(1 << 20)
for off in range(0, SIZE, 1 << 20):
    m[off:off + (1 << 20)] = block
for page in range(SIZE // PAGE):
    m[page * PAGE:page * PAGE + 8] = page.to_bytes(8, "little")  # every page distinct
addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
def report(**more):
    more.update(addr=addr, sha=hashlib.sha256(m).hexdigest())
    sys.stdout.write(json.dumps(more) + "\n")
    sys.stdout.flush()
report()
for line in sys.stdin:
    step, seed = map(int, line.split())
    n = 0
    for page in range(3, SIZE // PAGE, step):
        m[page * PAGE + 16:page * PAGE + 24] = (seed * 1000003 + page).to_bytes(8, "little")
        n += 1
    report(written=n)
"""


@dataclass
class Target:
    proc: subprocess.Popen[str]
    addr: int
    sha: str

    def touch(self, step: int, seed: int) -> int:
        """Write 8 bytes into every step-th page; returns how many pages were written."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{step} {seed}\n")
        self.proc.stdin.flush()
        msg = json.loads(self.proc.stdout.readline())
        self.sha = msg["sha"]
        return int(msg["written"])


@pytest.fixture
def target() -> Iterator[Target]:
    proc = subprocess.Popen([sys.executable, "-c", _TARGET, str(SIZE)], text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        msg = json.loads(proc.stdout.readline())
        yield Target(proc, msg["addr"], msg["sha"])
    finally:
        proc.kill()
        proc.wait()


def _stored_in(snap: criu_model.Snapshot, pid: int, addr: int) -> dict[int, int]:
    index = snap.page_store.owner((pid, 0, 0))  # type: ignore[union-attr]
    return index.counts(addr, addr + SIZE)


def test_incremental_over_many_batches_stores_exactly_the_spread_writes(
        target: Target, tmp_path: Path) -> None:
    pid = target.proc.pid
    full = criu_model.write(criu_model.dump([pid], pages=True, pages_dir=str(tmp_path)),
                            tmp_path / "full")
    written = target.touch(37, 1)
    inc = criu_model.write(criu_model.dump([pid], pages=True, pages_dir=str(tmp_path),
                                           parent=full), tmp_path / "inc")
    written2 = target.touch(101, 2)
    inc2 = criu_model.write(criu_model.dump([pid], pages=True, pages_dir=str(tmp_path),
                                            parent=inc), tmp_path / "inc2")
    for where, pages in ((inc, written), (inc2, written2)):
        snap = criu_model.load(where)
        counts = _stored_in(snap, pid, target.addr)
        assert counts.get(pages_pb2.PAGE_STORED, 0) == pages
        assert counts[pages_pb2.PAGE_PARENT] == SIZE // PAGE_SIZE - pages
    snap = criu_model.load(inc2)   # the chain: inc2 -> inc -> full
    assert hashlib.sha256(snap.read_memory(pid, target.addr, SIZE)).hexdigest() == target.sha


def _to_old_hash_format(src: Path, dst: Path) -> Path:
    """A copy of a snapshot whose page map carries its hashes as repeated fixed64."""
    snap = criu_model.load(src)
    for entry in snap.pagemap:
        hashes = entry_hashes(entry)
        entry.ClearField("hash_data")
        entry.hashes.extend(hashes)
    out = criu_model.write(snap, dst)
    again = criu_model.load(out)
    assert all(not e.hash_data and e.hashes for e in again.pagemap if e.npages)
    return out


def test_page_maps_with_hashes_as_integers_load_and_serve_as_parent(
        target: Target, tmp_path: Path) -> None:
    pid = target.proc.pid
    new = criu_model.write(criu_model.dump([pid], pages=True, pages_dir=str(tmp_path)),
                           tmp_path / "new")
    old = _to_old_hash_format(new, tmp_path / "old")
    sha = target.sha
    assert hashlib.sha256(criu_model.load(old).read_memory(pid, target.addr, SIZE)
                          ).hexdigest() == sha
    written = target.touch(53, 3)
    inc = criu_model.write(criu_model.dump([pid], pages=True, pages_dir=str(tmp_path),
                                           parent=old), tmp_path / "inc")
    snap = criu_model.load(inc)
    assert _stored_in(snap, pid, target.addr).get(pages_pb2.PAGE_STORED, 0) == written
    assert hashlib.sha256(snap.read_memory(pid, target.addr, SIZE)).hexdigest() == target.sha


def test_malformed_hash_data_is_an_image_error_naming_the_page_map(
        target: Target, tmp_path: Path) -> None:
    snap = criu_model.dump([target.proc.pid], pages=True, pages_dir=str(tmp_path))
    entry = next(e for e in snap.pagemap if e.pid and e.hash_data)
    entry.hash_data = entry.hash_data[:-3]
    out = criu_model.write(snap, tmp_path / "bad")
    with pytest.raises(criu_model.CriuModelError,
                       match=r"pagemap\.img at byte \d+.*not whole 8-byte hashes"):
        criu_model.load(out)


def test_a_short_read_on_a_reader_thread_marks_the_pages_not_captured(
        target: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The error of a pool thread reaches the dump: the process stays, pages marked."""
    from criu_model.kernel.vmread import RemoteReader

    pid = target.proc.pid
    full = criu_model.write(criu_model.dump([pid], pages=True, pages_dir=str(tmp_path)),
                            tmp_path / "full")
    real = RemoteReader.read
    calls = []

    def short(self: RemoteReader, ranges: list[tuple[int, int]], offset: int = 0) -> int:
        calls.append(self)
        if len(calls) == 7:  # a later batch, on whichever thread takes it
            return 0
        return real(self, ranges, offset)

    monkeypatch.setattr(RemoteReader, "read", short)
    snap = criu_model.dump([pid], pages=True, pages_dir=str(tmp_path), parent=full)
    assert len(calls) >= 7  # the failing read was one of the pool's
    mm = snap.memory_by_pid[pid]
    assert any(u.field == "pages_data" and "could not be read" in u.reason
               for u in mm.unreadable)
    with pytest.raises(NotCaptured, match="could not be read"):
        snap.read_memory(pid, target.addr, 16)


def test_a_process_read_in_one_batch_is_compared_without_the_pool(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`sleep` has well under 1 MiB of private pages: its incremental pass reads and
    hashes them on the dumping thread, and inherits the unchanged pages."""
    from criu_model.pages import capture

    started: list[int] = []
    real = capture._ReadPool.__init__

    def counting(self: capture._ReadPool, *args: object) -> None:
        started.append(1)
        real(self, *args)  # type: ignore[arg-type]

    proc = subprocess.Popen(["sleep", "60"])
    try:
        deadline = time.monotonic() + 10
        while "nanosleep" not in Path(f"/proc/{proc.pid}/wchan").read_text():
            assert time.monotonic() < deadline, "sleep never went to sleep"
            time.sleep(0.01)  # loaded and asleep: its memory no longer changes
        full = criu_model.write(criu_model.dump([proc.pid], pages=True,
                                                pages_dir=str(tmp_path)), tmp_path / "full")
        before = criu_model.load(full).inventory.page_stats
        assert 0 < before.read_bytes <= capture.BATCH_BYTES
        monkeypatch.setattr(capture._ReadPool, "__init__", counting)
        inc = criu_model.load(criu_model.write(criu_model.dump(
            [proc.pid], pages=True, pages_dir=str(tmp_path), parent=full), tmp_path / "inc"))
        stats = inc.inventory.page_stats
        assert not started
        assert stats.inherited > 0
        # Inherited exactly where the page's hash is the parent's (the freeze may
        # change a page or two: an interrupted nanosleep writes the time left).
        old = criu_model.load(full).page_store.owner((proc.pid, 0, 0))  # type: ignore[union-attr]
        new = inc.page_store.owner((proc.pid, 0, 0))  # type: ignore[union-attr]
        assert old is not None and new is not None
        for lo, n, state, _slot, hi in new.pages(0, 1 << 64):
            if state == pages_pb2.PAGE_ZERO:
                continue
            mine = list(new.hashes[hi:hi + n])
            theirs = old.hashes_at(lo, n)
            if state == pages_pb2.PAGE_PARENT:
                assert mine == theirs
                assert len(inc.read_memory(proc.pid, lo, n * PAGE_SIZE)) == n * PAGE_SIZE
            else:
                assert all(m != t for m, t in zip(mine, theirs, strict=True))
    finally:
        proc.kill()
        proc.wait()
