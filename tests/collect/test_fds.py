"""collect_fds on real processes: one fixture child per fd kind (see fdkinds.py)."""

from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from criu_model.collect.fds import GhostStore, collect_fds
from criu_model.collect.locks import read_proc_locks
from criu_model.collect.procfs import ProcDir
from criu_model.errors import ProcessGone
from criu_model.images.pb import files_pb2
from tests.collect.fdkinds import X86_64, Child, spawn

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to read other fdinfo")


def _by_fd(table: files_pb2.FdTable) -> dict[int, files_pb2.Fd]:
    return {fd.fd: fd for fd in table.fds}


@pytest.fixture
def tmp(tmp_path: Path) -> Iterator[str]:
    yield str(tmp_path)


def _dump(child: Child, ghosts: GhostStore | None = None,
          ghost_limit: int = 1 << 20) -> dict[int, files_pb2.Fd]:
    store = GhostStore() if ghosts is None else ghosts
    table = collect_fds(child.pid, ghosts=store, ghost_limit=ghost_limit)
    assert not table.unreadable, table.unreadable
    return _by_fd(table)


def test_regular_with_position_append_cloexec(tmp: str) -> None:
    with spawn("regular", tmp) as child:
        fds = _dump(child)
    info = child.info
    fd = fds[info["fd"]]
    assert fd.kind == files_pb2.FD_REGULAR and fd.path == info["path"].encode()
    assert fd.pos == 42 and not fd.deleted
    assert fd.flags & os.O_APPEND and fd.flags & os.O_CLOEXEC
    assert fd.flags & 0o3 == os.O_RDWR
    assert (fd.ino, fd.dev) == (info["ino"], info["dev"])
    assert fd.file.size == 100 and fd.file.mtime_ns == info["mtime_ns"]
    assert fd.file.mode == info["mode"] and fd.file.nlink == 1
    assert fd.owner_pid == 0 and fd.HasField("owner_pid")
    assert fd.mnt_id > 0
    # stdin/stdout of the fixture child are pipes to us, and are not cloexec
    assert fds[0].kind == fds[1].kind == files_pb2.FD_PIPE
    assert not fds[0].flags & os.O_CLOEXEC


def test_directory_and_opath(tmp: str) -> None:
    with spawn("dirs", tmp) as child:
        fds = _dump(child)
    info = child.info
    d, p = fds[info["dir"]], fds[info["opath"]]
    assert d.kind == files_pb2.FD_DIRECTORY and d.path == info["dir_path"].encode()
    assert d.ino == info["dir_ino"] and d.flags & os.O_DIRECTORY
    assert p.kind == files_pb2.FD_OPATH and p.path == info["opath_path"].encode()
    assert p.ino == info["opath_ino"] and p.flags & os.O_PATH and p.file.size == 7


def test_deleted_files_ghosts(tmp: str) -> None:
    ghosts = GhostStore()
    with spawn("deleted", tmp) as child:
        fds = _dump(child, ghosts=ghosts, ghost_limit=1024)
    info = child.info
    small, dup, big = fds[info["small"]], fds[info["small_dup"]], fds[info["big"]]
    assert small.deleted and small.path == info["small_path"].encode()
    assert small.file.nlink == 0
    assert small.file.ghost.captured and small.file.ghost.size == 11
    assert dup.file.ghost.ghost_id == small.file.ghost.ghost_id  # the same file, captured once
    assert big.deleted and not big.file.ghost.captured and big.file.ghost.size == 4096
    files = {g.id: g for g in ghosts.files()}  # pytest's stderr (O_TMPFILE) may be one too
    assert [g.ino for g in files.values()].count(small.ino) == 1
    assert files[small.file.ghost.ghost_id].data == b"ghost data\n"
    big_ghost = files[big.file.ghost.ghost_id]
    assert not big_ghost.captured and big_ghost.size == 4096 and big_ghost.data == b""
    assert "ghost limit" in big_ghost.unreadable[0].reason
    assert small.pos == 11  # the target's position was not moved by our reading


def test_pipe_across_two_processes_queued_bytes_not_consumed(tmp: str) -> None:
    r, w = os.pipe()
    try:
        with spawn("hold", tmp, pass_fds=[r]) as reader, spawn("hold", tmp, pass_fds=[w]) as writer:
            os.close(r)
            os.close(w)
            assert writer.ask(f"write {w} 123") == 123
            rfd = _dump(reader)[r]
            wfd = _dump(writer)[w]
            assert rfd.kind == wfd.kind == files_pb2.FD_PIPE
            assert rfd.pipe.pipe_ino == wfd.pipe.pipe_ino == rfd.ino
            assert rfd.pipe.read_end and not rfd.pipe.write_end
            assert wfd.pipe.write_end and not wfd.pipe.read_end
            assert rfd.pipe.queued_bytes == 123 and wfd.pipe.queued_bytes == 123
            assert rfd.pipe.pipe_size == 65536
            assert reader.ask(f"read {r} 4096") == "w" * 123  # we never consumed them
    finally:
        for fd in (r, w):
            try:
                os.close(fd)
            except OSError as err:
                assert err.errno == errno.EBADF


def test_fifo(tmp: str) -> None:
    with spawn("fifo", tmp) as child:
        fds = _dump(child)
    info = child.info
    rw, rd = fds[info["rw"]], fds[info["rd"]]
    assert rw.kind == rd.kind == files_pb2.FD_FIFO
    assert rw.path == info["path"].encode() and rw.ino == info["ino"]
    assert rw.pipe.read_end and rw.pipe.write_end
    assert rd.pipe.read_end and not rd.pipe.write_end and rd.flags & os.O_NONBLOCK
    assert rw.pipe.queued_bytes == rd.pipe.queued_bytes == 9


def test_eventfd(tmp: str) -> None:
    with spawn("eventfd", tmp) as child:
        fds = _dump(child)
    sem, plain, hexcount = (fds[child.info[k]] for k in ("sem", "plain", "hexcount"))
    assert sem.kind == plain.kind == files_pb2.FD_EVENTFD
    assert sem.eventfd.count == 5 and sem.eventfd.semaphore
    assert plain.eventfd.count == 5 and plain.eventfd.HasField("semaphore")
    assert not plain.eventfd.semaphore and plain.flags & os.O_NONBLOCK
    assert hexcount.eventfd.count == 31
    assert len({sem.eventfd.id, plain.eventfd.id, hexcount.eventfd.id}) == 3


def test_epoll_two_targets(tmp: str) -> None:
    with spawn("epoll", tmp) as child:
        fds = _dump(child)
    ep = fds[child.info["epoll"]]
    assert ep.kind == files_pb2.FD_EPOLL
    got = sorted((t.tfd, t.events, t.data, t.ino) for t in ep.epoll.targets)
    always = select.EPOLLERR | select.EPOLLHUP  # epoll_ctl adds them to every target
    want = sorted((tfd, events | always, data, ino)
                  for tfd, events, data, ino in child.info["targets"])
    assert got == want
    for target in ep.epoll.targets:
        assert target.sdev == fds[target.tfd].dev


def test_inotify_two_watches(tmp: str) -> None:
    with spawn("inotify", tmp) as child:
        fds = _dump(child)
    fd = fds[child.info["fd"]]
    assert fd.kind == files_pb2.FD_INOTIFY and fd.flags & os.O_CLOEXEC
    got = sorted((w.wd, w.mask, w.ino, w.sdev) for w in fd.inotify.watches)
    assert got == sorted(tuple(w) for w in child.info["watches"])
    assert all(w.fhandle_bytes > 0 and len(w.f_handle) == w.fhandle_bytes
               for w in fd.inotify.watches)


def test_fanotify(tmp: str) -> None:
    with spawn("fanotify", tmp) as child:
        if "error" in child.info:
            pytest.skip(f"fanotify_init refused: {child.info['error']} (needs CAP_SYS_ADMIN)")
        fds = _dump(child)
    fd = fds[child.info["fd"]]
    assert fd.kind == files_pb2.FD_FANOTIFY
    assert fd.fanotify.event_flags & 0o3 == os.O_RDONLY
    marks = {m.type: m for m in fd.fanotify.marks}
    inode = marks[files_pb2.FANOTIFY_MARK_INODE]
    assert inode.ino == child.info["ino"] and inode.sdev == child.info["dev"]
    assert inode.mask == 0x20 | 0x8
    mount = marks[files_pb2.FANOTIFY_MARK_MOUNT]
    assert mount.mask == 0x20 and mount.mnt_id > 0


def test_signalfd(tmp: str) -> None:
    with spawn("signalfd", tmp) as child:
        fds = _dump(child)
    fd = fds[child.info["fd"]]
    assert fd.kind == files_pb2.FD_SIGNALFD
    assert fd.signalfd.sigmask == child.info["mask"]
    assert fd.signalfd.sigmask == (1 << (signal.SIGUSR1 - 1)) | (1 << (signal.SIGUSR2 - 1))


def test_timerfd(tmp: str) -> None:
    with spawn("timerfd", tmp) as child:
        fds = _dump(child)
    fd = fds[child.info["fd"]]
    assert fd.kind == files_pb2.FD_TIMERFD
    t = fd.timerfd
    assert t.clockid == child.info["clock"] and t.ticks == 0
    assert t.it_interval_ns == child.info["interval_ns"]
    assert child.info["value_ns"] - 30_000_000_000 < t.it_value_ns <= child.info["value_ns"]


@pytest.mark.skipif(not X86_64, reason="fixture uses x86_64 syscall numbers")
def test_pidfd(tmp: str) -> None:
    with spawn("pidfd", tmp) as child:
        fds = _dump(child)
    fd = fds[child.info["fd"]]
    assert fd.kind == files_pb2.FD_PIDFD
    assert fd.pidfd.pid == child.info["pid"] == os.getpid()
    assert fd.pidfd.ns_pids[0] == os.getpid()


def test_memfd_name_size_seals_contents(tmp: str) -> None:
    ghosts = GhostStore()
    with spawn("memfd", tmp) as child:
        fds = _dump(child, ghosts=ghosts)
    info = child.info
    fd = fds[info["fd"]]
    assert fd.kind == files_pb2.FD_MEMFD and fd.deleted
    assert fd.memfd.name == info["name"].encode()  # spaces and parentheses kept
    assert fd.memfd.size == len(info["data"]) and fd.pos == len(info["data"])
    assert fd.memfd.seals == info["seals"] and not fd.memfd.hugetlb
    ghost = {g.id: g for g in ghosts.files()}[fd.memfd.ghost.ghost_id]
    assert ghost.captured and (ghost.dev, ghost.ino) == (fd.dev, fd.ino)
    assert ghost.data == info["data"].encode()


def test_tty_master_and_slave(tmp: str) -> None:
    with spawn("tty", tmp) as child:
        fds = _dump(child)
    info = child.info
    master, slave = fds[info["master"]], fds[info["slave"]]
    assert master.kind == slave.kind == files_pb2.FD_TTY
    assert master.tty.is_master and master.tty.driver == "ptmx"
    assert not slave.tty.is_master and slave.tty.driver == "pts"
    assert master.tty.index == slave.tty.index == info["index"]
    assert slave.path == info["slave_path"].encode()


@pytest.mark.skipif(not X86_64, reason="fixture uses x86_64 syscall numbers")
def test_io_uring_recorded_not_restorable(tmp: str) -> None:
    with spawn("io_uring", tmp) as child:
        if "error" in child.info:
            disabled = Path("/proc/sys/kernel/io_uring_disabled")
            state = disabled.read_text().strip() if disabled.exists() else "absent"
            pytest.skip(f"io_uring_setup: {child.info['error']} (io_uring_disabled={state})")
        fds = _dump(child)
    fd = fds[child.info["fd"]]
    assert fd.kind == files_pb2.FD_IO_URING
    assert b"SqMask" in fd.io_uring.raw and "cannot be restored" in fd.io_uring.reason


@pytest.mark.skipif(not X86_64, reason="fixture uses x86_64 syscall numbers")
def test_unknown_anon_inode_kept_raw(tmp: str) -> None:
    with spawn("userfaultfd", tmp) as child:
        if "error" in child.info:
            pytest.skip(f"userfaultfd: {child.info['error']}")
        fds = _dump(child)
    fd = fds[child.info["fd"]]
    assert fd.kind == files_pb2.FD_UNKNOWN
    assert fd.path == b"anon_inode:[userfaultfd]"
    assert b"API:" in fd.unknown.raw and "userfaultfd" in fd.unknown.reason


def test_file_locks(tmp: str) -> None:
    with spawn("locks", tmp) as child:
        fds = _dump(child)
        system = read_proc_locks()
    info = child.info
    (flock,) = fds[info["flock"]].locks
    assert (flock.type, flock.mode, flock.to_eof, flock.pid) == (
        files_pb2.LOCK_FLOCK, files_pb2.LOCK_WRITE, True, child.pid)
    (posix,) = fds[info["posix"]].locks
    assert (posix.type, posix.mode, posix.start, posix.end, posix.pid) == (
        files_pb2.LOCK_POSIX, files_pb2.LOCK_WRITE, 10, 14, child.pid)
    (ofd,) = fds[info["ofd"]].locks
    assert (ofd.type, ofd.mode, ofd.start, ofd.end, ofd.pid) == (
        files_pb2.LOCK_OFD, files_pb2.LOCK_READ, 0, 19, -1)
    for name in ("flock", "posix", "ofd"):
        (lock,) = fds[info[name]].locks
        assert lock.ino == info["inos"][name] and lock.dev == fds[info[name]].dev
        # the independent view: /proc/locks lists the same lock
        assert any(s.ino == lock.ino and s.type == lock.type and s.start == lock.start
                   for s in system)


def test_waiting_lock_from_proc_locks(tmp: str) -> None:
    """A thread of this test blocks on the child's POSIX lock: a real waiter."""
    with spawn("locks", tmp) as holder:
        mine = os.open(os.path.join(tmp, "posix"), os.O_RDWR)
        blocker = threading.Thread(target=fcntl.lockf, args=(mine, fcntl.LOCK_EX, 5, 10),
                                   daemon=True)
        blocker.start()
        deadline = time.monotonic() + 5
        locks = read_proc_locks()
        while not any(lock.blocked and lock.pid == os.getpid() for lock in locks):
            assert time.monotonic() < deadline, "the lock request never blocked"
            time.sleep(0.01)
            locks = read_proc_locks()
        table = collect_fds(os.getpid(), ghosts=GhostStore(), proc_locks=locks)
        (waiting,) = table.waiting_locks
        assert waiting.type == files_pb2.LOCK_POSIX and waiting.start == 10
        assert waiting.ino == holder.info["inos"]["posix"]
    blocker.join(timeout=5)  # the holder exited: our blocked request was granted
    assert not blocker.is_alive()
    os.close(mine)


def test_owner_from_f_setown(tmp: str) -> None:
    with spawn("owner", tmp) as child:
        fds = _dump(child)
    info = child.info
    owned, pipe, plain = fds[info["file"]], fds[info["pipe"]], fds[info["plain"]]
    assert owned.owner_pid == info["pid"] and owned.owner_type == files_pb2.OWNER_PID
    assert owned.owner_signum == signal.SIGUSR1
    assert pipe.owner_pid == -info["pgrp"] and pipe.owner_type == files_pb2.OWNER_PGRP
    assert plain.owner_pid == 0 and plain.owner_signum == 0


def test_fd_closed_between_listing_and_reading(tmp: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with spawn("eventfd", tmp) as child:
        victim = child.info["plain"]
        real = ProcDir.listdir

        def list_then_close(self: ProcDir, name: str = "") -> list[str]:
            names = real(self, name)
            if self.pid == child.pid and name == "fd":
                assert child.ask(f"close {victim}") == "ok"  # closes after we listed it
            return names

        monkeypatch.setattr(ProcDir, "listdir", list_then_close)
        table = collect_fds(child.pid, ghosts=GhostStore())
    assert table.vanished == 1
    numbers = [fd.fd for fd in table.fds]
    assert victim not in numbers and child.info["sem"] in numbers


def test_process_exits_mid_read_is_process_gone(tmp: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with spawn("eventfd", tmp) as child:
        real = ProcDir.listdir

        def list_then_kill(self: ProcDir, name: str = "") -> list[str]:
            names = real(self, name)
            if self.pid == child.pid and name == "fd":
                child.proc.kill()
                child.proc.wait()
            return names

        monkeypatch.setattr(ProcDir, "listdir", list_then_kill)
        with pytest.raises(ProcessGone):
            collect_fds(child.pid, ghosts=GhostStore())


def test_pid_1_refused_is_recorded_not_raised() -> None:
    table = collect_fds(1, ghosts=GhostStore())
    if not table.unreadable:
        pytest.skip("this machine lets us read pid 1's fds")
    assert table.unreadable[0].field == "fds" and not table.fds


def test_thousands_of_fds_fast_and_correct(tmp: str) -> None:
    with spawn("many", tmp, "4000") as child:
        if "error" in child.info:
            pytest.skip(child.info["error"])
        start = time.perf_counter()
        table = collect_fds(child.pid, ghosts=GhostStore())
        elapsed = time.perf_counter() - start
    kinds = {int(k): v for k, v in child.info["kinds"].items()}
    fds = _by_fd(table)
    assert len(kinds) == 4000 and table.vanished == 0
    names = {fd: files_pb2.FdKind.Name(fds[fd].kind).removeprefix("FD_").lower() for fd in kinds}
    assert names == kinds
    for n, value in child.info["values"].items():
        fd = fds[int(n)]
        assert (fd.eventfd.count if fd.kind == files_pb2.FD_EVENTFD else fd.pos) == value
    assert elapsed < 1.0, f"{len(table.fds)} fds took {elapsed:.3f} s"


@pytest.mark.parametrize("kind", ["regular", "dirs", "deleted", "plannable", "tty", "memfd"])
def test_dump_cache_gives_what_fresh_reads_give(tmp: str, kind: str) -> None:
    # A dump classifies each (fd number, fdinfo, link, stat) once (forked processes
    # repeat them): read again through that cache, every fd comes out as read afresh.
    with spawn(kind, tmp) as child:
        seen: dict = {}
        first = collect_fds(child.pid, ghosts=GhostStore(), seen=seen)
        again = collect_fds(child.pid, ghosts=GhostStore(), seen=seen)
        fresh = collect_fds(child.pid, ghosts=GhostStore())
    assert seen  # something was kept, and the second read used it
    for table in (first, again, fresh):
        for fd in table.fds:
            if fd.HasField("timerfd"):
                fd.timerfd.ClearField("it_value_ns")  # counts down between the reads
    assert first == fresh and again == fresh


_OWNER_SCRIPT = """
import fcntl, os, signal, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.dup2(fd, 50)
if sys.argv[2] == "own":
    fcntl.fcntl(50, fcntl.F_SETOWN, os.getpid())
if sys.argv[3] == "fork" and os.fork() == 0:
    signal.pause()
print("ready", flush=True)
signal.pause()
"""


def test_dump_cache_shares_a_probe_only_within_one_open_file(tmp: str) -> None:
    # fd 50 of the three processes gives the same fdinfo, link and stat, but only the
    # forked pair shares one open file description (and so its owner); the third
    # opened the file on its own and has no owner: kcmp tells them apart.
    path = os.path.join(tmp, "file")
    Path(path).write_bytes(b"x")
    procs = [subprocess.Popen([sys.executable, "-c", _OWNER_SCRIPT, path, own, fork],
                              stdout=subprocess.PIPE, text=True)
             for own, fork in (("own", "fork"), ("-", "-"))]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        owner, alone = procs[0].pid, procs[1].pid
        (twin,) = [p.pid for p in psutil.Process(owner).children()]
        seen: dict = {}
        got = {pid: _by_fd(collect_fds(pid, ghosts=GhostStore(), seen=seen))[50]
               for pid in (owner, twin, alone)}
    finally:
        for proc in procs:
            for child in psutil.Process(proc.pid).children():
                child.kill()
            proc.kill()
            proc.wait()
    assert got[owner].owner_pid == owner and got[twin].owner_pid == owner
    assert got[alone].owner_pid == 0
    assert got[twin] == got[owner]  # the twin's message is the first's, probe and all
