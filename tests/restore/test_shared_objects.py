"""SysV shared memory, memfd mappings and mappings of deleted files, rehearsed for real.

Each test runs a small program that builds the object (in an IPC namespace of
its own for SysV, so the ids are the test's), dumps it with --pages, rehearses
the plan and requires the judge's "matched"; a restorer made to lie (a wrong
key, unfilled pages, no seals) must turn the same objects into mismatches.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import criu_model
from criu_model.restore import RehearsalReport, rehearse
from criu_model.restore.judge import MATCHED, MISMATCHED, Entry
from criu_model.restore.sandbox import wait_gone
from criu_model.snapshot import Snapshot
from tests.restore.progtree import rehearsed

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, set_tid)")

PAGE = os.sysconf("SC_PAGE_SIZE")


@contextmanager
def _started(code: str, *args: str) -> Iterator[tuple[dict[str, Any], int]]:
    """Run `code`; yield the JSON line it reports and its pid; kill its group at the end."""
    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-c", code, str(w), *args], pass_fds=(w,),
                            stdin=subprocess.DEVNULL, start_new_session=True)
    os.close(w)
    try:
        with os.fdopen(r, "rb", buffering=0) as f:
            line = f.readline()
        assert line, "the test program did not start"
        yield json.loads(line), proc.pid
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _dump(pid: int, where: Path) -> Snapshot:
    snap = criu_model.dump([pid], pages=True, pages_dir=str(where.parent))
    criu_model.write(snap, where)
    return criu_model.load(where)


def _vma(report: RehearsalReport, pid: int, addr: int) -> Entry:
    return next(e for e in report.entries if e.kind == "vma"
                and e.id.startswith(f"{pid}:{addr:#x}-"))


def _bad(report: RehearsalReport) -> list[dict[str, Any]]:
    return [e.to_json() for e in report.entries if e.status == MISMATCHED]


# ------------------------------------------------------------------ SysV

_SYSV = r"""
import ctypes, json, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
assert libc.unshare(0x08000000) == 0        # CLONE_NEWIPC: the ids are ours alone
PAGE = os.sysconf("SC_PAGE_SIZE")
IPC_CREAT, IPC_RMID, SHM_RDONLY = 0o1000, 0, 0o10000
libc.shmctl(libc.shmget(0, PAGE, IPC_CREAT | 0o600), IPC_RMID, None)   # seq moves on
libc.shmget(0x1234, PAGE, IPC_CREAT | 0o600)                            # index 0 taken
size = 3 * PAGE + 100
shmid = libc.shmget(0x5eed, size, IPC_CREAT | 0o640)
addr = libc.shmat(shmid, None, 0)
ctypes.memmove(addr, b"sysv page 0", 11)
ctypes.memmove(addr + 2 * PAGE, b"sysv page 2", 11)
ro = libc.shmat(shmid, None, SHM_RDONLY)     # a second attachment, read-only
anon = libc.shmget(0, PAGE, IPC_CREAT | 0o600)   # IPC_PRIVATE
other = libc.shmat(anon, None, 0)
ctypes.memmove(other, b"private key", 11)
high = libc.shmat(libc.shmget(0x9abcdef0 - (1 << 32), PAGE, IPC_CREAT | 0o600), None, 0)
ctypes.memmove(high, b"a key above 2**31", 17)   # key_t is signed: the name is unsigned
if os.fork() == 0:                             # inherits the three attachments
    while True:
        signal.pause()
os.write(int(sys.argv[1]), (json.dumps({"pid": os.getpid(), "addr": addr, "ro": ro,
                                        "other": other, "id": shmid, "anon": anon,
                                        "high": high})
                            + "\n").encode())
while True:
    signal.pause()
"""


@pytest.fixture
def sysv(tmp_path: Path) -> Iterator[tuple[Snapshot, dict[str, Any]]]:
    with _started(_SYSV) as (where, pid):
        snap = _dump(pid, tmp_path / "snap")
    yield snap, where


def test_sysv_shm_is_rehearsed(sysv: tuple[Snapshot, dict[str, Any]]) -> None:
    snap, where = sysv
    pid = where["pid"]
    child = next(p.pid for p in snap.processes if p.ppid == pid)
    vma = next(v for v in snap.memory_by_pid[pid].vmas if v.start == where["addr"])
    assert (vma.path, vma.inode) == (b"/SYSV00005eed", where["id"]) and where["id"] > 0
    report = rehearsed(snap)
    assert _bad(report) == []
    for who in (pid, child):
        for name in ("addr", "ro", "other", "high"):
            entry = _vma(report, who, where[name])
            assert entry.status == MATCHED, (who, name, entry.to_json())
            assert "mode is not in the snapshot" in entry.reason
    shm = [e for e in report.entries if e.kind == "shm"]
    # one object for the keyed segment (4 attachments), the private and the high one (2)
    assert sorted(e.id.count(",") + 1 for e in shm) == [2, 2, 4]
    high = next(v for v in snap.memory_by_pid[pid].vmas if v.start == where["high"])
    assert high.path == b"/SYSV9abcdef0"
    assert all(e.status == MATCHED for e in shm)
    assert report.memory["bytes_filled"] >= 4 * PAGE + 2 * PAGE   # filled once each


def test_sysv_wrong_key_and_size_are_mismatches(sysv: tuple[Snapshot, dict[str, Any]],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A restorer that gets the key and the size wrong: the judge names both."""
    from criu_model.restore import memory

    snap, where = sysv
    real = memory.memory_job

    def lying(s: Snapshot, p: int, objects: Any = None) -> Any:
        job, fds, decisions = real(s, p, objects)
        for v in job["vmas"]:
            if v.get("sysv") and v["sysv"]["key"] == 0x5eed:
                v["sysv"]["key"] = 0x5eee
                v["sysv"]["size"] -= 50       # the same pages: only the size differs
        return job, fds, decisions

    monkeypatch.setattr(memory, "memory_job", lying)
    report = rehearsed(snap)
    entry = _vma(report, where["pid"], where["addr"])
    assert entry.status == MISMATCHED
    fields = {m["field"]: m for m in entry.mismatches}
    assert fields["sysv"]["expected"] == f"key 0x00005eed id {where['id']}"
    assert fields["sysv"]["actual"] == f"key 0x00005eee id {where['id']}"
    assert fields["size"] == {"field": "size", "expected": 3 * PAGE + 100,
                              "actual": 3 * PAGE + 50}
    assert _vma(report, where["pid"], where["other"]).status == MATCHED


# ------------------------------------------------------------------ memfd

_MEMFD = r"""
import ctypes, fcntl, json, mmap, os, signal, sys
PAGE = mmap.PAGESIZE
F_ADD_SEALS, SEAL, SHRINK, GROW, WRITE = 1033, 1, 2, 4, 8
addr = lambda x: ctypes.addressof(ctypes.c_char.from_buffer(x))
for _ in range(3):
    os.close(_)
for _ in range(3):
    os.set_inheritable(os.open("/dev/null", os.O_RDWR), True)
sealed = os.memfd_create("cm-sealed", os.MFD_ALLOW_SEALING)
os.write(sealed, b"".join(bytes([0x70 + i]) * PAGE for i in range(3)) + b"tail")
fcntl.fcntl(sealed, F_ADD_SEALS, WRITE | SHRINK | GROW | SEAL)
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
ro = libc.mmap(None, 3 * PAGE, mmap.PROT_READ, mmap.MAP_SHARED, sealed, 0)   # r--s
os.lseek(sealed, 5, os.SEEK_SET)
priv = os.memfd_create("cm-private")
os.write(priv, b"".join(bytes([0x30 + i]) * PAGE for i in range(4)))
p = mmap.mmap(priv, 4 * PAGE, flags=mmap.MAP_PRIVATE)
p[PAGE:PAGE + 9] = b"copied!!!"                                      # a private copy of page 1
future = os.memfd_create("cm-future", os.MFD_ALLOW_SEALING)
os.ftruncate(future, 2 * PAGE)
rw = mmap.mmap(future, 2 * PAGE)                                     # rw-s, made before
fcntl.fcntl(future, F_ADD_SEALS, 0x10)                               # F_SEAL_FUTURE_WRITE
rw[:12] = b"still writes"                                            # the old mapping may
os.write(int(sys.argv[1]), (json.dumps({"pid": os.getpid(), "ro": ro, "priv": addr(p),
                                        "rw": addr(rw), "sealed_fd": sealed,
                                        "priv_fd": priv, "future_fd": future})
                            + "\n").encode())
os.close(int(sys.argv[1]))
while True:
    signal.pause()
"""


@pytest.fixture
def memfds(tmp_path: Path) -> Iterator[tuple[Snapshot, dict[str, Any]]]:
    with _started(_MEMFD) as (where, pid):
        snap = _dump(pid, tmp_path / "snap")
    yield snap, where


def _fd(report: RehearsalReport, pid: int, fd: int) -> Entry:
    return next(e for e in report.entries if e.kind == "fd" and e.id == f"{pid}:{fd}")


def test_sealed_and_private_memfds(memfds: tuple[Snapshot, dict[str, Any]]) -> None:
    """Sealed shut (written back before the seals), private (mapped MAP_PRIVATE), and
    F_SEAL_FUTURE_WRITE with a writable mapping made before it (sealed after mapping)."""
    snap, where = memfds
    pid = where["pid"]
    table = {fd.fd: fd for fd in snap.fds_by_pid[pid].fds}
    sealed, priv, future = where["sealed_fd"], where["priv_fd"], where["future_fd"]
    assert table[sealed].memfd.seals == 0xF and table[sealed].memfd.ghost.captured
    assert table[future].memfd.seals == 0x10
    report = rehearsed(snap)
    assert _bad(report) == []
    for name in ("ro", "priv", "rw"):
        entry = _vma(report, pid, where[name])
        assert entry.status == MATCHED, (name, entry.to_json())
    for fd in (sealed, priv, future):
        assert _fd(report, pid, fd).status == MATCHED, fd


def test_memfd_without_seals_or_contents_is_a_mismatch(
        memfds: tuple[Snapshot, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    """A restorer that drops the seals and the captured contents of the memfds."""
    from criu_model.restore import executor

    snap, where = memfds
    pid = where["pid"]
    monkeypatch.setattr(executor.Conductor, "_ghost_of", lambda self, key: None)
    plan = criu_model.plan(snap, live=False, pid_ns="new")
    for step in plan.steps:
        if step.args.get("kind") == "memfd":
            step.args.pop("seals", None)
    report = rehearse(snap, plan)
    assert wait_gone(report.sandbox_pid or 0)
    sealed = {m["field"]: m for m in _fd(report, pid, where["sealed_fd"]).mismatches}
    assert sealed["seals"]["expected"] == "F_SEAL_SEAL|F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_WRITE"
    assert sealed["seals"]["actual"] == "F_SEAL_SEAL"     # no MFD_ALLOW_SEALING: sealed shut
    assert sealed["contents"]["expected"] != sealed["contents"]["actual"]
    assert sealed["contents"]["expected"].startswith(f"{3 * PAGE + 4} bytes")
    priv = {m["field"]: m for m in _fd(report, pid, where["priv_fd"]).mismatches}
    assert set(priv) == {"contents"}
    # the private mapping's own (copied) pages are right; its clean pages are the
    # memfd's, whose contents are its fd's mismatch
    entry = _vma(report, pid, where["priv"])
    assert entry.status == MATCHED and "clean pages" in entry.reason


# ------------------------------------------------------------------ deleted files

_DELETED = r"""
import ctypes, json, mmap, os, signal, sys
PAGE = mmap.PAGESIZE
addr = lambda x: ctypes.addressof(ctypes.c_char.from_buffer(x))
path = sys.argv[2]
with open(path, "wb") as f:
    f.write(b"".join(bytes([0x50 + i]) * PAGE for i in range(4)))
held = os.open(path, os.O_RDWR)                    # held and mapped, both ways
os.unlink(path)
shared = mmap.mmap(held, 4 * PAGE)                 # MAP_SHARED, rw-s
shared[:13] = b"shared write!"
priv = mmap.mmap(held, 2 * PAGE, flags=mmap.MAP_PRIVATE, offset=2 * PAGE)
priv[:12] = b"private copy"
if os.fork() == 0:                                 # maps both, holds nothing of its own
    os.close(held)
    while True:
        signal.pause()
os.write(int(sys.argv[1]), (json.dumps({"pid": os.getpid(), "shared": addr(shared),
                                        "priv": addr(priv), "fd": held}) + "\n").encode())
while True:
    signal.pause()
"""


@pytest.fixture
def deleted(tmp_path: Path) -> Iterator[tuple[Snapshot, dict[str, Any]]]:
    with _started(_DELETED, str(tmp_path / "gone.bin")) as (where, pid):
        snap = _dump(pid, tmp_path / "snap")
    yield snap, where


def test_deleted_file_mappings(deleted: tuple[Snapshot, dict[str, Any]]) -> None:
    snap, where = deleted
    pid = where["pid"]
    child = next(p.pid for p in snap.processes if p.ppid == pid)
    report = rehearsed(snap)
    assert _bad(report) == []
    for who in (pid, child):
        for name in ("shared", "priv"):
            entry = _vma(report, who, where[name])
            assert entry.status == MATCHED, (who, name, entry.to_json())
    [shm] = [e for e in report.entries if e.kind == "shm" and f"{where['shared']:#x}" in e.id]
    assert shm.status == MATCHED
    assert _fd(report, pid, where["fd"]).status == MATCHED


def test_deleted_file_stand_in_lies_are_mismatches(deleted: tuple[Snapshot, dict[str, Any]],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A restorer that leaves the stand-in empty (no captured contents, no pages) and maps
    the child's private mapping from a memfd: the fd's contents, the shared mapping's
    pages and the private mapping's file are mismatches."""
    from criu_model.restore import executor, memory

    snap, where = deleted
    pid = where["pid"]
    child = next(p.pid for p in snap.processes if p.ppid == pid)
    real = memory.memory_job

    def lying(s: Snapshot, p: int, objects: Any = None) -> Any:
        job, fds, decisions = real(s, p, objects)
        for v in job["vmas"]:
            if p == child and v["start"] == where["priv"]:
                v["memfd"], v["attach"] = {"name": "not-the-file", "size": 4 * PAGE}, None
            if v["start"] == where["shared"]:
                v["runs"] = []                      # and the shared pages left unfilled
        return job, fds, decisions

    monkeypatch.setattr(memory, "memory_job", lying)
    monkeypatch.setattr(executor, "ghost_pieces", lambda ghost: [])
    report = rehearsed(snap)
    contents = {m["field"]: m for m in _fd(report, pid, where["fd"]).mismatches}["contents"]
    assert contents["expected"].startswith(f"{4 * PAGE} bytes sha256:")
    assert contents["actual"] != contents["expected"]
    page = _vma(report, pid, where["shared"]).mismatches
    assert [m["field"] for m in page] == ["page"] and page[0]["expected"].startswith(
        f"{where['shared']:#x} xxh3")
    entry = _vma(report, child, where["priv"])
    assert entry.status == MISMATCHED
    [file] = [m for m in entry.mismatches if m["field"] == "file"]
    assert file["expected"].endswith("gone.bin (deleted)")
    assert file["actual"] == "/memfd:not-the-file (deleted)"
    assert _vma(report, pid, where["priv"]).status == MATCHED
