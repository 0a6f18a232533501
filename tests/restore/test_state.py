"""Rehearsal of kernel state beyond the skeleton: pipe buffers, task sharing, locks...

Each class: a real process that holds it, dumped, rehearsed, judged matched;
and a deliberate mismatch, to show the judge can fail.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import criu_model
from criu_model.restore import RehearsalReport, rehearse
from criu_model.restore.judge import MATCHED, MISMATCHED, NOT_REHEARSED, Entry
from criu_model.restore.sandbox import wait_gone
from criu_model.snapshot import Snapshot
from tests.restore.progtree import rehearsed

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, set_tid)")

# fds 0-2: /dev/null, three opens (what the other rehearsal tests do); the ready pipe
# (whatever number pytest gave it) moves to 250, out of the way of the fds under test
_PROLOGUE = """
import fcntl, os, signal, sys
READY = 250
os.dup2(int(sys.argv[2]), READY, inheritable=False)
os.close(int(sys.argv[2]))
for _ in range(3):
    os.close(_)
for _ in range(3):
    os.set_inheritable(os.open("/dev/null", os.O_RDWR), True)
def ready():
    os.write(READY, b"ready\\n")
    os.close(READY)
"""


@contextlib.contextmanager
def _program(body: str, tmp: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run PROLOGUE + body (argv: TMP READY_FD) until it calls ready(); kill it after."""
    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-c", _PROLOGUE + body, str(tmp), str(w)],
                            pass_fds=(w,), start_new_session=True)
    os.close(w)
    try:
        assert os.read(r, 6) == b"ready\n"
        assert os.read(r, 1) == b""       # and closed: the dump never sees that fd
        yield proc
    finally:
        proc.kill()
        proc.wait()
        os.close(r)


def _by(report: RehearsalReport, kind: str, ident: str) -> Entry:
    return next(e for e in report.entries if e.kind == kind and e.id == ident)


# ------------------------------------------------------------------ pipes and FIFOs

_PIPES = """
r1, w1 = os.pipe()                      # 3, 4: shrunk to 4 pages, empty
fcntl.fcntl(w1, 1031, 4 * 4096)         # F_SETPIPE_SZ
r2, w2 = os.pipe()                      # 5, 6: five bytes queued
os.write(w2, b"hello")
path = os.path.join(sys.argv[1], "fifo")
os.mkfifo(path)
f = os.open(path, os.O_RDWR)            # 7: a FIFO grown to 32 pages, 10 bytes queued
fcntl.fcntl(f, 1031, 32 * 4096)
os.write(f, b"fifo-bytes")
for fd in (r1, w1, r2, w2, f):
    os.set_inheritable(fd, True)
ready()
signal.pause()
"""


@pytest.fixture
def pipes(tmp_path: Path) -> Iterator[tuple[Snapshot, int]]:
    with _program(_PIPES, tmp_path) as proc:
        yield criu_model.dump([proc.pid]), proc.pid


def test_pipe_buffers(pipes: tuple[Snapshot, int]) -> None:
    snap, pid = pipes
    sizes = {fd.fd: fd.pipe.pipe_size for fd in snap.fds_by_pid[pid].fds
             if fd.HasField("pipe")}
    assert sizes == {3: 16384, 4: 16384, 5: 65536, 6: 65536, 7: 131072}
    report = rehearsed(snap)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    assert _by(report, "pipe_buffer", f"{pid}:3,{pid}:4").status == MATCHED
    # the queued bytes (captured with tee at the dump) are written back, byte for byte
    assert _by(report, "pipe_buffer", f"{pid}:7").status == MATCHED      # the FIFO
    assert _by(report, "pipe_buffer", f"{pid}:5,{pid}:6").status == MATCHED
    data = {fd.fd: fd.pipe.data for fd in snap.fds_by_pid[pid].fds
            if fd.HasField("pipe") and fd.pipe.HasField("data")}
    assert data == {5: b"hello", 7: b"fifo-bytes"}


def test_a_restorer_writing_other_bytes_is_caught(pipes: tuple[Snapshot, int],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The judge compares the bytes the sandbox holds with the dump's, not the plan's."""
    from criu_model.restore import executor

    snap, pid = pipes
    monkeypatch.setattr(executor.Conductor, "_pipe_data", lambda self, key: b"jello")
    entry = _by(rehearsed(snap), "pipe_buffer", f"{pid}:5,{pid}:6")
    assert entry.status == MISMATCHED
    assert [m["field"] for m in entry.mismatches] == ["data"]


def test_pipe_size_the_kernel_rounds_is_a_mismatch(pipes: tuple[Snapshot, int]) -> None:
    """A snapshot asking for 3 pages: F_SETPIPE_SZ rounds up to a power of two."""
    snap, pid = pipes
    for fd in snap.fds_by_pid[pid].fds:
        if fd.fd in (3, 4):
            fd.pipe.pipe_size = 3 * 4096
    report = rehearsed(snap)
    entry = _by(report, "pipe_buffer", f"{pid}:3,{pid}:4")
    assert entry.status == MISMATCHED
    assert entry.mismatches == [{"field": "pipe_size", "expected": 12288, "actual": 16384}]


# ------------------------------------------------------------------ task sharing

_SHARING = """
sys.path.insert(0, {root!r})
from criu_model.restore.worker import clone3, clone_thread
r, w = os.pipe()
os.set_inheritable(r, True)
os.set_inheritable(w, True)
kids = []
for flags in (0x400, 0x200, 0x600):      # CLONE_FILES, CLONE_FS, both
    pid = clone3(flags, [])
    if pid == 0:
        if not flags & 0x400:
            os.close(READY)             # a copy of the table: its own copy of the pipe
        while True:
            signal.pause()
    kids.append(pid)
os.write(READY, (" ".join(map(str, kids)) + "\\n").encode())
os.close(READY)
clone_thread(0x100 | 0x800, [])         # CLONE_VM | CLONE_SIGHAND, not a thread
signal.pause()
"""


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(c) for c in f.read().split()]


@pytest.fixture
def sharing(tmp_path: Path) -> Iterator[tuple[Snapshot, int, list[int]]]:
    import time

    root = str(Path(__file__).resolve().parents[2])
    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-c", _PROLOGUE + _SHARING.format(root=root),
                             str(tmp_path), str(w)], pass_fds=(w,), start_new_session=True)
    os.close(w)
    try:
        kids = [int(k) for k in os.read(r, 200).split()]
        assert os.read(r, 1) == b""
        deadline = time.monotonic() + 10
        while len(_children(proc.pid)) < 4:   # the raw CLONE_VM child comes last
            assert time.monotonic() < deadline
            time.sleep(0.01)
        kids += sorted(set(_children(proc.pid)) - set(kids))
        snap = criu_model.dump([proc.pid])
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()
        os.close(r)
    yield snap, proc.pid, kids


def test_fd_table_and_fs_sharing(sharing: tuple[Snapshot, int, list[int]]) -> None:
    snap, root, (files, fs, both, vm) = sharing
    report = rehearsed(snap)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    assert _by(report, "task_share", f"files:{root},{files},{both}").status == MATCHED
    assert _by(report, "task_share", f"fs:{root},{fs},{both}").status == MATCHED
    for kind in ("vm", "sighand"):
        entry = _by(report, "task_share", f"{kind}:{root},{vm}")
        assert entry.status == MATCHED, entry.to_json()
    # the shared table's fds are the same fds in all three (one table)
    for pid in (files, both):
        assert _by(report, "fd", f"{pid}:3").status == MATCHED


def test_lost_clone_files_is_a_mismatch(sharing: tuple[Snapshot, int, list[int]]) -> None:
    snap, root, (files, _fs, both, _vm) = sharing
    plan = criu_model.plan(snap, live=False, pid_ns="new")
    step = next(s for s in plan.steps if s.action == "clone3" and s.args["child"] == files)
    step.args["flags_value"] &= ~0x400      # a planner bug: a copy of the table, not it
    report = rehearse(snap, plan)
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    entry = _by(report, "task_share", "files:" + ",".join(map(str, sorted((root, files,
                                                                            both)))))
    assert entry.status == MISMATCHED
    assert entry.mismatches[0]["field"] == "members"


# ------------------------------------------------------------------ file locks

_LOCKS = """
import struct
d = os.path.join(sys.argv[1], "locks")
os.mkdir(d)
a = os.open(os.path.join(d, "a"), os.O_RDWR | os.O_CREAT)      # 3: flock, exclusive
fcntl.flock(a, fcntl.LOCK_EX)
b = os.open(os.path.join(d, "b"), os.O_RDWR | os.O_CREAT)      # 4: POSIX write, 10-19
fcntl.lockf(b, fcntl.LOCK_EX, 10, 10)
c = os.open(os.path.join(d, "c"), os.O_RDWR | os.O_CREAT)      # 5: OFD read, to EOF
fcntl.fcntl(c, 37, struct.pack("hhqqi4x", fcntl.F_RDLCK, 0, 0, 0, 0))
h = os.open(os.path.join(sys.argv[1], "host.txt"), os.O_RDONLY)   # 6: the host's file
fcntl.flock(h, fcntl.LOCK_SH)
for fd in (a, b, c, h):
    os.set_inheritable(fd, True)
ready()
signal.pause()
"""


@pytest.fixture
def locks(tmp_path: Path) -> Iterator[tuple[Snapshot, int]]:
    (tmp_path / "host.txt").write_text("a file of the host\n")
    with _program(_LOCKS, tmp_path) as proc:
        yield criu_model.dump([proc.pid]), proc.pid


def test_file_locks(locks: tuple[Snapshot, int]) -> None:
    snap, pid = locks
    report = rehearsed(snap)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    for fd in (3, 4, 5):
        assert _by(report, "lock", f"{pid}:{fd}").status == MATCHED
    want = {fd.fd: [(lk.type, lk.mode, lk.start, lk.to_eof) for lk in fd.locks]
            for fd in snap.fds_by_pid[pid].fds if fd.locks}
    assert want[3] == [(2, 2, 0, True)]            # FLOCK WRITE
    assert want[4] == [(1, 2, 10, False)]          # POSIX WRITE 10-19
    assert want[5] == [(3, 1, 0, True)]            # OFD READ
    host = _by(report, "lock", f"{pid}:6")
    assert host.status == NOT_REHEARSED
    assert host.reason.endswith("host.txt is the host's file: a lock on it would be seen "
                                "outside the sandbox")


def test_wrong_lock_mode_is_a_mismatch(locks: tuple[Snapshot, int]) -> None:
    snap, pid = locks
    plan = criu_model.plan(snap, live=False, pid_ns="new")
    step = next(s for s in plan.steps if s.action == "open"
                and str(s.args.get("path", "")).endswith("/locks/a"))
    step.args["locks"][0]["mode"] = "read"        # a planner bug: shared, not exclusive
    report = rehearse(snap, plan)
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    entry = _by(report, "lock", f"{pid}:3")
    assert entry.status == MISMATCHED
    assert entry.mismatches[0]["expected"] == [f"FLOCK WRITE 0-EOF pid {pid}"]
    assert entry.mismatches[0]["actual"] == [f"FLOCK READ 0-EOF pid {pid}"]


# ------------------------------------------------------------------ inotify

_INOTIFY = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
d = sys.argv[1]
for name in ("one", "two"):
    open(os.path.join(d, name), "w").close()
i = libc.inotify_init1(0)                                            # 3
assert libc.inotify_add_watch(i, d.encode(), 0x100 | 0x200) == 1     # IN_CREATE|IN_DELETE
w2 = libc.inotify_add_watch(i, os.path.join(d, "one").encode(), 0x2)  # IN_MODIFY: wd 2
libc.inotify_rm_watch(i, w2)                                         # a gap at 2
assert libc.inotify_add_watch(i, os.path.join(d, "two").encode(), 0x2 | 0x8) == 3
os.read(i, 4096)                                                     # its IN_IGNORED
os.set_inheritable(i, True)
ready()
signal.pause()
"""


@pytest.fixture
def inotify(tmp_path: Path) -> Iterator[tuple[Snapshot, int]]:
    with _program(_INOTIFY, tmp_path) as proc:
        yield criu_model.dump([proc.pid]), proc.pid


def test_inotify_watches(inotify: tuple[Snapshot, int]) -> None:
    snap, pid = inotify
    fd = next(f for f in snap.fds_by_pid[pid].fds if f.fd == 3)
    assert [(w.wd, w.mask) for w in fd.inotify.watches] in ([(1, 0x300), (3, 0xA)],
                                                             [(3, 0xA), (1, 0x300)])
    report = rehearsed(snap)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    assert _by(report, "fd", f"{pid}:3").status == MATCHED      # wd 1 and 3, same inodes


def test_wrong_watch_mask_is_a_mismatch(inotify: tuple[Snapshot, int]) -> None:
    snap, pid = inotify
    plan = criu_model.plan(snap, live=False, pid_ns="new")
    step = next(s for s in plan.steps if s.action == "open" and s.args["kind"] == "inotify")
    watch = next(w for w in step.args["watches"] if w["wd"] == 3)
    watch["mask"] = 0x2                      # IN_MODIFY only: IN_CLOSE_WRITE lost
    report = rehearse(snap, plan)
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    entry = _by(report, "fd", f"{pid}:3")
    assert entry.status == MISMATCHED
    [bad] = entry.mismatches
    assert bad["field"] == "inotify_watches"
    assert any(w.startswith("3 ") and w.endswith("mask 0x2") for w in bad["actual"])


# ------------------------------------------------------------------ pending unix connections

_PENDING = """
import socket
d = sys.argv[1]
lst = socket.socket(socket.AF_UNIX)                     # 3: a listener on a path
lst.bind(os.path.join(d, "l.sock"))
lst.listen(4)
c1 = socket.socket(socket.AF_UNIX)                      # 4, 5: two connections not accepted
c1.connect(os.path.join(d, "l.sock"))
c2 = socket.socket(socket.AF_UNIX)
c2.connect(os.path.join(d, "l.sock"))
ab = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)   # 6: an abstract listener
ab.bind(b"\\0cm-rehearse-pending")
ab.listen(2)
c3 = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)   # 7: pending on it
c3.connect(b"\\0cm-rehearse-pending")
for s in (lst, c1, c2, ab, c3):
    os.set_inheritable(s.fileno(), True)
ready()
signal.pause()
"""


@pytest.fixture
def pending(tmp_path: Path) -> Iterator[tuple[Snapshot, int]]:
    with _program(_PENDING, tmp_path) as proc:
        yield criu_model.dump([proc.pid]), proc.pid


def test_pending_unix_connections(pending: tuple[Snapshot, int]) -> None:
    snap, pid = pending
    report = rehearsed(snap)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    for fd in (3, 4, 5, 6, 7):
        assert _by(report, "fd", f"{pid}:{fd}").status == MATCHED, fd
    fds = {fd.fd: snap.sockets_by_inode[fd.socket.inode] for fd in snap.fds_by_pid[pid].fds
           if fd.HasField("socket")}
    assert len(fds[3].unix.pending) == 2 and len(fds[6].unix.pending) == 1
    assert fds[4].inode in fds[3].unix.pending          # the waiting clients themselves


def test_lost_pending_connection_is_a_mismatch(pending: tuple[Snapshot, int],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A restorer that does not connect the waiting client: the listener's queue is one
    short and the client is not connected."""
    from criu_model.restore import executor

    snap, pid = pending
    real = executor.Conductor._socket

    def without_connect(self: executor.Conductor, step: Any) -> dict[str, Any]:
        out = real(self, step)
        if step.args.get("fd") is not None and out.get("connect_hex") and \
                out["name_hex"] == "" and not hasattr(self, "_dropped"):
            self._dropped = True        # type: ignore[attr-defined]
            out.pop("connect_hex")
        return out

    monkeypatch.setattr(executor.Conductor, "_socket", without_connect)
    report = rehearsed(snap)
    bad = {e.id for e in report.entries if e.status == MISMATCHED}
    assert f"{pid}:3" in bad                      # pending 2 -> 1
    assert len(bad & {f"{pid}:4", f"{pid}:5"}) == 1   # one client never connected


_HIGH_FD = """
os.dup2(os.open("/dev/null", os.O_RDONLY), 200)     # FLOOR is 202: far above our fds
ready()
signal.pause()
"""


def test_control_socket_on_its_own_number(tmp_path: Path) -> None:
    """The sandbox init's control socket lands on the number it is moved to (FLOOR - 1)
    when criu-model holds just enough fds: dup2 onto itself kept FD_CLOEXEC and the init
    lost it at exec (a second --pages rehearsal in one process hit this)."""
    from criu_model.restore.executor import _floor

    with _program(_HIGH_FD, tmp_path) as proc:
        snap = criu_model.dump([proc.pid])
    plan = criu_model.plan(snap, live=False, pid_ns="new")
    floor = _floor(snap, plan)
    assert floor == 202

    def free(n: int) -> bool:
        try:
            os.fstat(n)
        except OSError:
            return True
        return False

    # The two numbers the test needs free: whatever this process inherited there
    # (a CI harness may pass fds down) is moved out of the way and put back after.
    moved = {n: fcntl.fcntl(n, fcntl.F_DUPFD_CLOEXEC, 1000)
             for n in (floor - 2, floor - 1) if not free(n)}
    for n in moved:
        os.close(n)
    devnull = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    # Every free number below FLOOR - 1 but one taken: the socketpair gets that one
    # (criu-model's end) and FLOOR - 1 (the init's end).
    spare = [n for n in range(floor) if free(n)]
    assert spare[-2:] == [floor - 2, floor - 1]
    held: list[int] = []
    try:
        for n in spare[:-2]:               # FLOOR - 2 and FLOOR - 1: the two free ones
            os.dup2(devnull, n, inheritable=False)
            held.append(n)
        report = rehearse(snap, plan)
    finally:
        for fd in held:
            os.close(fd)
        os.close(devnull)
        for n, copy in moved.items():
            os.dup2(copy, n)
            os.close(copy)
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    assert report.ok


# ------------------------------------------------------------------ leases

_LEASES = """
d = os.path.join(sys.argv[1], "leases")
os.mkdir(d)
with open(os.path.join(d, "r"), "w") as f:
    f.write("read-leased")
r = os.open(os.path.join(d, "r"), os.O_RDONLY)                 # 3: a read lease
fcntl.fcntl(r, fcntl.F_SETLEASE, fcntl.F_RDLCK)
w = os.open(os.path.join(d, "w"), os.O_RDWR | os.O_CREAT)      # 4: a write lease
fcntl.fcntl(w, fcntl.F_SETLEASE, fcntl.F_WRLCK)
for fd in (r, w):
    os.set_inheritable(fd, True)
ready()
signal.pause()
"""


@pytest.fixture
def leases(tmp_path: Path) -> Iterator[tuple[Snapshot, int]]:
    with _program(_LEASES, tmp_path) as proc:
        yield criu_model.dump([proc.pid]), proc.pid


def test_leases(leases: tuple[Snapshot, int]) -> None:
    """Leases are taken again (F_SETLEASE) on stand-ins of the leased files."""
    snap, pid = leases
    want = {fd.fd: [(lk.type, lk.mode) for lk in fd.locks]
            for fd in snap.fds_by_pid[pid].fds if fd.locks}
    assert want == {3: [(4, 1)], 4: [(4, 2)]}       # LEASE READ, LEASE WRITE
    report = rehearsed(snap)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    for fd in (3, 4):
        assert _by(report, "lock", f"{pid}:{fd}").status == MATCHED
        assert _by(report, "fd", f"{pid}:{fd}").status == MATCHED


def test_wrong_lease_is_a_mismatch(leases: tuple[Snapshot, int]) -> None:
    snap, pid = leases
    plan = criu_model.plan(snap, live=False, pid_ns="new")
    step = next(s for s in plan.steps if s.action == "open"
                and str(s.args.get("path", "")).endswith("/leases/w"))
    step.args["locks"][0]["mode"] = "read"        # a planner bug: a read lease on fd 4
    report = rehearse(snap, plan)
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    # the kernel refuses a read lease on a file opened for writing: the step fails, and
    # the fd's lock is missing
    [failed] = [e for e in report.entries if e.kind == "step" and e.status == MISMATCHED]
    assert failed.mismatches[0]["actual"] == "[Errno 11] Resource temporarily unavailable"
    entry = _by(report, "lock", f"{pid}:4")
    assert entry.status == MISMATCHED
    assert entry.mismatches[0]["expected"] == [f"LEASE WRITE 0-EOF pid {pid}"]


# ------------------------------------------------------------------ shutdown(2)

_SHUTDOWN = """
import socket
a, b = socket.socketpair()                     # 3, 4: a stops sending
a.shutdown(socket.SHUT_WR)
c, d = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)   # 5, 6: c stops reading
c.shutdown(socket.SHUT_RD)
lst = socket.socket(); lst.bind(("127.0.0.1", 0)); lst.listen(1)
e = socket.create_connection(lst.getsockname())   # 8, 9: e stops reading (no FIN sent)
f = lst.accept()[0]
lst.close()
e.shutdown(socket.SHUT_RD)
for s in (a, b, c, d, e, f):
    os.set_inheritable(s.fileno(), True)
ready()
signal.pause()
"""


@pytest.fixture
def shut(tmp_path: Path) -> Iterator[tuple[Snapshot, int]]:
    with _program(_SHUTDOWN, tmp_path) as proc:
        yield criu_model.dump([proc.pid]), proc.pid


def test_shutdown_is_replayed(shut: tuple[Snapshot, int]) -> None:
    """sk_shutdown of socketpairs and of a TCP end that stopped reading, made again."""
    snap, pid = shut
    table = {fd.fd: snap.sockets_by_inode[fd.socket.inode]
             for fd in snap.fds_by_pid[pid].fds if fd.HasField("socket")}
    bits = {fd: s.shutdown for fd, s in table.items()}
    assert (bits[3], bits[4], bits[5], bits[6]) == (2, 1, 1, 2)   # unix: the peer follows
    socks = sorted(table.items())
    tcp = [fd for fd, s in socks if s.WhichOneof("kind") == "inet"]
    assert [bits[fd] for fd in tcp] == [1, 0]
    report = rehearsed(snap)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    for fd in (3, 4, 5, 6, *tcp):
        assert _by(report, "fd", f"{pid}:{fd}").status == MATCHED, fd


def test_lost_shutdown_is_a_mismatch(shut: tuple[Snapshot, int]) -> None:
    snap, pid = shut
    plan = criu_model.plan(snap, live=False, pid_ns="new")
    for step in plan.steps:
        for end in step.args.get("ends", ()):
            end.pop("shutdown", None)              # a planner that forgets them
    report = rehearse(snap, plan)
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    entry = _by(report, "fd", f"{pid}:3")
    assert entry.status == MISMATCHED
    [sock] = entry.mismatches
    assert (sock["expected"]["shutdown"], sock["actual"]["shutdown"]) == ("WR", "none")
