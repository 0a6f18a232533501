"""End to end: dump real trees through the public API, write, load, compare with what was built."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import criu_model
from criu_model.errors import ProcessGone
from criu_model.images.pb import inventory_pb2
from criu_model.snapshot import Snapshot
from tests.conftest import needs_root, unused_pid
from tests.proctree import RICH_COMM, THREAD_NAMES, ZOMBIE_EXIT_STATUS, Tree, spawn


def _round_trip(snap: Snapshot, tmp_path: Path) -> Snapshot:
    loaded = criu_model.load(criu_model.write(snap, tmp_path / "snap"))
    assert [p.SerializeToString(deterministic=True) for p in loaded.processes] == \
        [p.SerializeToString(deterministic=True) for p in snap.processes]
    return loaded


@needs_root
@pytest.mark.parametrize("freeze", ["ptrace", "none"])
def test_family_tree_matches(family_tree: Tree, tmp_path: Path, freeze: str) -> None:
    t = family_tree
    snap = _round_trip(criu_model.dump([t["root"].pid], freeze=freeze), tmp_path)
    procs = snap.by_pid
    assert set(procs) == set(t.pids)
    assert snap.processes[0].pid == t["root"].pid  # parents first
    root = t["root"].pid
    expect = {  # role: (parent role, pgid role, sid role)
        "a1": ("root", "root", "root"),
        "b1": ("root", "b1", "root"),
        "b2": ("b1", "b1", "root"),
        "s": ("root", "s", "s"),
        "s1": ("s", "s", "s"),
        "s2": ("s", "s2", "s"),
        "zombie": ("root", "root", "root"),
    }
    assert (procs[root].pgid, procs[root].sid) == (root, root)
    for role, (parent, pgid, sid) in expect.items():
        proc = procs[t[role].pid]
        assert (proc.ppid, proc.pgid, proc.sid) == (t[parent].pid, t[pgid].pid, t[sid].pid), role
        assert proc.comm == t[role].comm, role
        assert proc.start_time == t[role].start_time, role
        assert list(proc.ns_pids) == [proc.pid]
    zombie = procs[t["zombie"].pid]
    assert zombie.state == "Z"
    assert zombie.exit_code == ZOMBIE_EXIT_STATUS << 8
    assert snap.memory_by_pid[zombie.pid].vmas == []
    for role in ("root", "a1", "b1", "b2", "s", "s1", "s2"):
        # the state before freezing, not ptrace's 't'
        assert procs[t[role].pid].state == "S", role
    inv = snap.inventory
    assert list(inv.root_pids) == [root]
    assert inv.freeze_method == inventory_pb2.FreezeMethod.Value(f"FREEZE_{freeze.upper()}")
    if freeze == "ptrace":
        assert inv.frozen_at_ns > 0 and inv.frozen_for_ns > 0
    assert {c.name for c in inv.collectors} >= {"tree", "process", "memory", "mountinfo", "fds"}
    for pid in t.pids:  # released: nobody traces the targets any more
        status = Path(f"/proc/{pid}/status").read_text()
        assert "TracerPid:\t0\n" in status


@needs_root
def test_threads_match(threads_proc: Tree, tmp_path: Path) -> None:
    main = threads_proc["main"]
    snap = _round_trip(criu_model.dump([main.pid]), tmp_path)
    (proc,) = snap.processes
    tids = sorted(int(t) for t in os.listdir(f"/proc/{main.pid}/task"))
    assert [t.tid for t in proc.threads] == [main.pid, *[t for t in tids if t != main.pid]]
    assert sorted(t.comm for t in proc.threads[1:]) == sorted(THREAD_NAMES)
    shares = proc.shares
    assert shares.files and shares.fs and shares.sighand and shares.vm


@needs_root
def test_pid_namespace_levels(pidns_tree: Tree, tmp_path: Path) -> None:
    t = pidns_tree
    snap = _round_trip(criu_model.dump([t["unsharer"].pid]), tmp_path)
    init, child = snap.by_pid[t["nsinit"].pid], snap.by_pid[t["nschild"].pid]
    assert list(init.ns_pids) == [t["nsinit"].pid, 1]
    assert list(child.ns_pids) == [t["nschild"].pid, t["nschild"].nspid]
    assert child.ns_pids[1] > 1
    assert list(init.ns_sids) == [init.pid, 1] and list(init.ns_pgids) == [init.pid, 1]
    assert list(child.ns_sids)[-1] == 1  # in nsinit's session, as seen inside


@needs_root
def test_odd_comm(rich_proc: Tree, tmp_path: Path) -> None:
    snap = _round_trip(criu_model.dump([rich_proc["main"].pid]), tmp_path)
    assert snap.processes[0].comm == RICH_COMM


@needs_root
def test_two_roots(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    with spawn("threads") as a, spawn("family", args={"deleted_cwd": str(gone)}) as b:
        snap = criu_model.dump([a["main"].pid, b["root"].pid])
        assert list(snap.inventory.root_pids) == [a["main"].pid, b["root"].pid]
        assert set(snap.by_pid) == {a["main"].pid, *b.pids}
        assert snap.tree_roots() == [a["main"].pid, b["root"].pid]


@needs_root
def test_cgroup_freeze(cgroup2_dir: Path, tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    with spawn("family", args={"deleted_cwd": str(gone)}) as t:
        for pid in t.pids:
            (cgroup2_dir / "cgroup.procs").write_text(str(pid))
        snap = criu_model.dump([t["root"].pid], freeze="cgroup")
        assert snap.inventory.freeze_method == inventory_pb2.FREEZE_CGROUP
        assert set(snap.by_pid) == set(t.pids)
        assert snap.by_pid[t["b2"].pid].state == "S"
        assert "frozen 0" in (cgroup2_dir / "cgroup.events").read_text()
        assert (cgroup2_dir / "cgroup.freeze").read_text().strip() == "0"


def test_nonexistent_root() -> None:
    pid = unused_pid()
    with pytest.raises(ProcessGone, match=str(pid)):
        criu_model.dump([pid])


@needs_root
def test_dump_records_a_blocked_lock_request(tmp_path: Path) -> None:
    """/proc/locks is read on a thread during the dump: a waiter still gets its request."""
    import fcntl
    import signal
    import time

    path = tmp_path / "lockfile"
    path.write_bytes(b"x" * 64)
    held_r, held_w = os.pipe()
    holder = os.fork()
    if holder == 0:  # holds bytes 5-14, then sleeps
        fd = os.open(path, os.O_RDWR)
        fcntl.lockf(fd, fcntl.LOCK_EX, 10, 5)
        os.write(held_w, b"h")
        signal.pause()
        os._exit(0)
    assert os.read(held_r, 1) == b"h"
    waiter = os.fork()
    if waiter == 0:  # asks for the same bytes and blocks
        fd = os.open(path, os.O_RDWR)
        fcntl.lockf(fd, fcntl.LOCK_EX, 10, 5)
        os._exit(0)
    try:
        deadline = time.monotonic() + 5
        while f" {waiter} " not in Path("/proc/locks").read_text().replace("->", " "):
            assert time.monotonic() < deadline, "the waiter never blocked on the lock"
            time.sleep(0.01)
        snap = criu_model.dump([waiter, holder])
        tables = {t.pid: t for t in snap.fds}
        (waiting,) = tables[waiter].waiting_locks
        assert waiting.blocked and waiting.start == 5 and waiting.end == 14
        assert not tables[holder].waiting_locks
    finally:
        for pid in (waiter, holder):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


@needs_root
def test_lock_wait_probe_sees_flock_and_fcntl_waiters(tmp_path: Path) -> None:
    """/proc/locks is read only when /proc/TID/syscall shows a thread in a blocking lock call."""
    import fcntl
    import signal
    import time

    from criu_model.collect.locks import may_wait_for_locks

    path = tmp_path / "lockfile"
    path.write_bytes(b"x" * 64)
    ready_r, ready_w = os.pipe()
    holder = os.fork()
    if holder == 0:
        fd = os.open(path, os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX)
        fcntl.lockf(os.open(path, os.O_RDWR), fcntl.LOCK_EX, 1, 0)
        os.write(ready_w, b"h")
        signal.pause()
        os._exit(0)
    assert os.read(ready_r, 1) == b"h"
    waiters = []
    for how in ("flock", "lockf"):
        pid = os.fork()
        if pid == 0:
            fd = os.open(path, os.O_RDWR)
            if how == "flock":
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                fcntl.lockf(fd, fcntl.LOCK_EX, 1, 0)
            os._exit(0)
        waiters.append(pid)
    try:
        assert not may_wait_for_locks([holder])  # in pause(): no lock wait
        for pid in waiters:
            deadline = time.monotonic() + 5
            while not may_wait_for_locks([pid]):
                assert time.monotonic() < deadline, f"waiter {pid} was never seen waiting"
                time.sleep(0.01)
        assert not may_wait_for_locks([unused_pid()])  # gone: nothing waits
    finally:
        for pid in (*waiters, holder):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
