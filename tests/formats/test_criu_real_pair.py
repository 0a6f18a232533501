"""A real CRIU dump and a real criu-model dump of one running tree, side by side.

fixtures/side-by-side (README there): the program sbs.c.txt (a parent with two
threads and a child; a pipe, a unix socketpair, a regular file, a memfd, an
anonymous mapping with a known string) was dumped by `criu-model dump --pages`
and, right after, by `criu dump --leave-running`. Everything the diff reports
is pinned here: a new difference is a bug in one of the two dumpers (or a new
field the CRIU mapping has to fill or mark "not in CRIU images").

What differs, and why (nothing else may):
- the first page of the binary's text (r-xp) in each process: CRIU's parasite
  injection writes a syscall instruction there and restores it, which makes the
  page a private copy; CRIU dumps it (its bytes are the file's), criu-model,
  which dumped before CRIU touched the tree, left it in the file;
- with --all (volatile) also, in each of the two threads' stacks, the page
  holding the thread's rseq area: the kernel rewrites cpu_id_start, cpu_id and
  mm_cid whenever the thread returns to user space, and CRIU's parasite runs
  every thread; only bytes of the rseq area at the pointer both sides record
  (CRIU in core-TID.img, criu-model in regs.img) differ.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import criu_model
from criu_model.formats.criu import framing
from criu_model.formats.criu.mapping import NOT_IN_CRIU
from criu_model.formats.criu.pb import core_pb2
from criu_model.images.pb import files_pb2 as cf
from criu_model.images.pb import mm_pb2
from criu_model.pages.memory import read_memory
from tests.formats.conftest import FIXTURES

PAIR = FIXTURES / "side-by-side"
CRIU, OURS = PAIR / "criu", PAIR / "criu-model"
PARENT, CHILD, T1, T2 = 27748, 27750, 27751, 27752
ANON = 0x7FB6E2A5C000          # the 4-page anonymous mapping (sbs prints it)
TEXT = 0x55B900777000          # the binary's r-xp VMA: one page
MARK = b"criu-model side-by-side anon marker"
PAGE = 4096


@pytest.fixture(scope="module")
def pair() -> tuple[criu_model.Snapshot, criu_model.Snapshot]:
    return criu_model.load(CRIU), criu_model.load(OURS)


def _rseq(tid: int) -> tuple[int, int]:
    path = CRIU / f"core-{tid}.img"
    img = framing.read_entries(str(path), path.name, "CORE", path.read_bytes(),
                               core_pb2.CoreEntry)
    r = img.entries[0].thread_core.rseq_entry
    return r.rseq_abi_pointer, r.rseq_abi_size


def _changes(diff: criu_model.differ.Diff) -> list[tuple]:
    return sorted((ch.op, ch.what, ch.pid, ch.start, ch.after["changed"], ch.after["added"],
                   ch.after["removed"]) for ch in diff.changes)


def test_both_sides_hold_the_tree(pair):
    assert pair[0].inventory.tool_version.startswith("criu ")
    for snap in pair:
        assert [(p.pid, p.ppid if p.pid == CHILD else None, p.pgid, p.sid,
                 [t.tid for t in p.threads]) for p in snap.processes] == [
            (PARENT, None, PARENT, PARENT, [PARENT, T1, T2]),
            (CHILD, PARENT, PARENT, PARENT, [CHILD])]
        assert sorted(fd.fd for fd in snap.fds_by_pid[PARENT].fds) == [
            0, 1, 2, 10, 11, 12, 13, 14, 15]
        assert sorted(fd.fd for fd in snap.fds_by_pid[CHILD].fds) == [
            0, 1, 2, 10, 11, 12, 13, 15]
        # the marker in pages 0 and 2 of the parent's mapping; the child rewrote page 2
        assert read_memory(snap, PARENT, ANON, len(MARK)) == MARK
        assert read_memory(snap, PARENT, ANON + 2 * PAGE, len(MARK)) == MARK
        assert read_memory(snap, CHILD, ANON, len(MARK)) == MARK
        assert read_memory(snap, CHILD, ANON + 2 * PAGE, 22) == b"child changed its copy"


# (op, what, pid, VMA start, pages changed, added, removed): CRIU's dump as A
EXPECTED = [
    ("changed", "memory", PARENT, TEXT, 0, 0, 1),
    ("changed", "memory", CHILD, TEXT, 0, 0, 1),
]
RSEQ = [  # volatile: with --all only
    ("changed", "memory", PARENT, 0x7FB6E2072000, 1, 0, 0),   # T1's stack: its rseq area
    ("changed", "memory", PARENT, 0x7FB6E2872000, 1, 0, 0),   # T2's stack: the main
    # thread's rseq area (in glibc's static TLS block, which sits in T2's stack mapping)
]


def test_diff_holds_only_the_expected_differences(pair):
    criu, ours = pair
    d = criu_model.diff(criu, ours)
    assert _changes(d) == sorted(EXPECTED)
    assert d.summary["not_comparable"] == 319
    sides = Counter(m.side for m in d.missing)
    assert sides == {"a": 56, "b": 1}
    for m in d.missing:
        if m.side == "a":
            assert m.reason.startswith(NOT_IN_CRIU), m
    (b_side,) = [m for m in d.missing if m.side == "b"]
    assert (b_side.what, b_side.field, b_side.count) == ("process", "creds.securebits", 2)
    fields = {(m.what, m.field) for m in d.missing}
    # the fixes this pair found: listed as not comparable, never as changes
    assert {("vma", "vvar_vclock"), ("fd", "file.uid"), ("fd", "file.gid"),
            ("fd", "socket.probe")} <= fields
    # volatile fields are not in CRIU images either: --all adds only the rseq pages
    assert _changes(criu_model.diff(criu, ours, include_volatile=True)) == sorted(
        EXPECTED + RSEQ)


def test_reverse_diff_mirrors_it(pair):
    criu, ours = pair
    for volatile, expected in ((False, EXPECTED), (True, EXPECTED + RSEQ)):
        d = criu_model.diff(ours, criu, include_volatile=volatile)
        mirrored = [(op, what, pid, start, ch, rem, add)
                    for op, what, pid, start, ch, add, rem in expected]
        assert _changes(d) == sorted(mirrored)
    d = criu_model.diff(ours, criu)
    assert d.summary["not_comparable"] == 319
    assert Counter(m.side for m in d.missing) == {"b": 56, "a": 1}


def test_changed_pages_differ_only_in_the_rseq_areas(pair):
    """Each page that differs holds a thread's rseq area, and differs inside it only
    (the kernel writes the CPU a thread last ran on there: which threads ran between
    the two dumps is chance)."""
    criu, ours = pair
    d = criu_model.diff(criu, ours, include_volatile=True)
    changed = sorted(p for ch in d.changes for p in ch.after["pages"]["changed"])
    areas = {tid: _rseq(tid) for tid in (PARENT, T1, T2)}
    ours_rseq = {t.tid: (t.rseq.abi_pointer, t.rseq.abi_size)
                 for t in ours.registers_by_pid[PARENT].threads}
    assert ours_rseq == areas
    assert len(changed) == 2
    for page in changed:
        (ptr, size), = [a for a in areas.values() if a[0] & ~(PAGE - 1) == page]
        a, b = (read_memory(s, PARENT, page, PAGE) for s in (criu, ours))
        diffs = [i for i in range(PAGE) if a[i] != b[i]]
        assert diffs and page + min(diffs) >= ptr and page + max(diffs) < ptr + size


def test_text_page_is_criu_only(pair):
    criu, ours = pair
    d = criu_model.diff(criu, ours, include_volatile=True)
    removed = {(ch.pid, p) for ch in d.changes for p in ch.after["pages"]["removed"]}
    assert removed == {(PARENT, TEXT), (CHILD, TEXT)}
    text = read_memory(criu, PARENT, TEXT, PAGE)
    assert text == read_memory(criu, CHILD, TEXT, PAGE)
    with pytest.raises(criu_model.CriuModelError, match="not captured"):
        read_memory(ours, PARENT, TEXT, PAGE)


def test_cli_json_both_ways():
    for a, b, removed in ((CRIU, OURS, 2), (OURS, CRIU, 0)):
        run = subprocess.run([sys.executable, "-m", "criu_model", "diff", str(a), str(b),
                              "--json"], capture_output=True, text=True, check=False)
        assert run.returncode == 1, run.stderr
        out = json.loads(run.stdout)
        assert out["identical"] is False
        assert out["summary"]["memory"] == {"vmas": 2, "changed": 0, "added": 2 - removed,
                                            "removed": removed}
        assert out["summary"]["changes"] == 2
        assert out["summary"]["not_comparable"] == 319


# -- rich/: more kinds of state, criu-model's side dumped without pages -------------

RICH = PAIR / "rich"
R_ROOT, R_CHILD, R_ZOMBIE = 17470, 17472, 17473


@pytest.fixture(scope="module")
def rich() -> tuple[criu_model.Snapshot, criu_model.Snapshot]:
    return criu_model.load(RICH / "criu"), criu_model.load(RICH / "criu-model")


def test_rich_pair_differs_in_nothing_criu_records(rich):
    """eventfd, epoll, timerfd, signalfd, inotify, a FIFO with data, a deleted file, a
    flock shared with the child, unix stream (listener + pair) and abstract dgram
    sockets, TCP established + listener, UDP6, shared anonymous memory, a sparse
    mapped memfd, a zombie: after the fixes this pair found, nothing differs."""
    criu, ours = rich
    for a, b in ((criu, ours), (ours, criu)):
        d = criu_model.diff(a, b)
        # A FIFO's queued bytes: criu-model keeps them in Pipe.data (tee), CRIU in
        # fifo-data.img, which the mapping puts on the same (first reading) fd.
        assert [(ch.what, ch.pid, ch.fd, ch.field) for ch in d.changes] == []
        assert d.summary["not_comparable"] == 490
    fifo = next(fd for fd in criu.fds_by_pid[R_ROOT].fds if fd.fd == 8)
    mine = next(fd for fd in ours.fds_by_pid[R_ROOT].fds if fd.fd == 8)
    assert fifo.pipe.data and fifo.pipe.data == mine.pipe.data
    d = criu_model.diff(criu, ours)
    fields = {(m.what, m.field): m for m in d.missing}
    for key in (("fd", "eventfd.semaphore"), ("fd", "locks.dev"), ("fd", "locks.raw"),
                ("vma", "vvar_vclock")):
        assert fields[key].side == "a" and fields[key].reason.startswith(NOT_IN_CRIU)
    assert fields[("memory", "pages")].side == "b"


def test_rich_flock_lands_on_both_holders(rich):
    """CRIU records the flock once (pid and fd); the kernel shows it on every fd of
    that open file, the child's too, as criu-model reads it from fdinfo."""
    for snap in rich:
        held = {(t.pid, fd.fd): [lk.type for lk in fd.locks]
                for t in snap.fds for fd in t.fds if fd.locks}
        assert held == {(R_ROOT, 10): [cf.LOCK_FLOCK], (R_CHILD, 10): [cf.LOCK_FLOCK]}


def test_rich_shared_anonymous_memory_and_sparse_memfd(rich):
    """CRIU 4.2 dumps shared anonymous memory as a memfd named /dev/zero; a memfd with
    one of its two pages written holds one extent of data (CRIU's shmem pages)."""
    for snap in rich:
        shared = [(v.kind, v.path, v.deleted) for v in snap.memory_by_pid[R_ROOT].vmas
                  if v.shared]
        assert shared == [(mm_pb2.VMA_MEMFD, b"/memfd:rich-memfd", True),
                          (mm_pb2.VMA_SHARED_ANON, b"/dev/zero", True)]
        (memfd,) = [g for g in snap.ghosts if g.path == b"/memfd:rich-memfd"]
        assert (memfd.size, memfd.data_bytes, memfd.data) == (8192, 4096, b"")
        assert [(e.offset, e.data[:12]) for e in memfd.extents] == [(0, b"memfd mapped")]
        assert [(p.pid, p.state == "Z", p.exit_code) for p in snap.processes] == [
            (R_ROOT, False, 0), (R_CHILD, False, 0), (R_ZOMBIE, True, 7 << 8)]


# -- third/: a pty, locks, a stopped process, a pipe held by writers only -----------

THIRD = PAIR / "third"
T_ROOT, T_STOPPED, T_MID, T_GRAND = 20121, 20123, 20124, 20125


@pytest.fixture(scope="module")
def third() -> tuple[criu_model.Snapshot, criu_model.Snapshot]:
    return criu_model.load(THIRD / "criu"), criu_model.load(THIRD / "criu-model")


def test_third_pair_differs_only_by_the_sigstop_criu_left_pending(third):
    """criu-model dumped right after `criu dump --leave-running`, which re-stops the
    stopped task with a SIGSTOP left pending (a dump before CRIU's had none)."""
    criu, ours = third
    for a, b, before, after in ((criu, ours, 0, 1 << 18), (ours, criu, 1 << 18, 0)):
        d = criu_model.diff(a, b)
        assert [(ch.what, ch.pid, ch.field, ch.before, ch.after) for ch in d.changes] == [
            ("process", T_STOPPED, "sig_shared_pending", before, after)]
        assert d.summary["not_comparable"] == 805


def test_third_tty_stop_signal_locks_and_writer_only_pipe(third):
    criu, ours = third
    for snap in third:
        ttys = [(fd.fd, fd.tty.driver, fd.tty.is_master, fd.tty.rdev_major, fd.tty.rdev_minor,
                 fd.tty.index) for fd in snap.fds_by_pid[T_ROOT].fds if fd.kind == cf.FD_TTY]
        # CRIU's tty-info rdev is st_rdev (makedev's encoding: 1282 is 5:2)
        assert ttys == [(3, "ptmx", True, 5, 2, 0), (4, "pts", False, 136, 0, 0)]
        stopped = snap.by_pid[T_STOPPED]
        assert (stopped.state, stopped.exit_code) == ("T", 19)  # CRIU: tc.stop_signo
        locks = {(t.pid, fd.fd): [(lk.type, lk.start, lk.end) for lk in fd.locks]
                 for t in snap.fds for fd in t.fds if fd.locks}
        # the POSIX lock on its owner's fd only, the OFD lock on every holder's
        assert locks == {(T_ROOT, 5): [(cf.LOCK_POSIX, 10, 29)],
                         **{(p, 6): [(cf.LOCK_OFD, 0, 0)]
                            for p in (T_ROOT, T_STOPPED, T_MID, T_GRAND)}}
    # a pipe the tree holds only write ends of, 13 bytes queued: CRIU did not dump them
    (pipe,) = [fd for fd in criu.fds_by_pid[T_ROOT].fds if fd.kind == cf.FD_PIPE]
    assert not pipe.pipe.HasField("queued_bytes")
    assert "read end" in next(u.reason for u in pipe.unreadable
                              if u.field == "pipe.queued_bytes")
    (pipe,) = [fd for fd in ours.fds_by_pid[T_ROOT].fds if fd.kind == cf.FD_PIPE]
    assert pipe.pipe.queued_bytes == 13


def test_fixture_is_small():
    total = sum(f.stat().st_size for f in Path(PAIR).rglob("*") if f.is_file())
    assert total < 1000 * 1024
