"""collect_process on real processes built to a known state, field by field.

The last part uses a fake /proc tree for what a live kernel cannot show on
demand: lines missing on old kernels, and a process dying mid-collection.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from criu_model.collect import procfs
from criu_model.collect.limits import RLIM_INFINITY
from criu_model.collect.process import collect_process
from criu_model.collect.stat import TaskFlag
from criu_model.collect.tree import discover
from criu_model.errors import ProcessGone
from criu_model.images.pb import process_pb2
from tests.conftest import RICH_ENV_VALUE, RICH_ENV_VAR, kthreadd_or_skip, needs_root
from tests.proctree import (
    ADDR_NO_RANDOMIZE,
    BLOCKING_THREAD,
    RICH_COMM,
    RICH_NICE,
    RICH_NOFILE,
    RICH_TIMERS,
    RICH_UMASK,
    SIGEV_NONE,
    SIGEV_THREAD_ID,
    THREAD_NAMES,
    ZOMBIE_EXIT_STATUS,
    Tree,
)

SCHED_BATCH = 3


def bit(sig: int) -> int:
    """The bit of a signal in the SigBlk/SigPnd... masks."""
    return 1 << (sig - 1)


def unreadable(proc: process_pb2.Process) -> dict[str, str]:
    return {u.field: u.reason for u in proc.unreadable}


def ns_of(pid: int | str) -> dict[str, tuple[int, int]]:
    """(inode, dev) of every namespace entry, read independently of the collector."""
    out = {}
    for name in os.listdir(f"/proc/{pid}/ns"):
        st = os.stat(f"/proc/{pid}/ns/{name}")
        out[name] = (st.st_ino, st.st_dev)
    return out


def namespaces(proc: process_pb2.Process) -> dict[str, tuple[int, int]]:
    return {ns.type: (ns.inode, ns.dev) for ns in proc.namespaces}


# ------------------------------------------------------------------ real trees


def test_family_ids(family_tree: Tree) -> None:
    t = family_tree
    root, s = t["root"].pid, t["s"].pid
    # role: (ppid, pgid, sid)
    expected = {
        "root": (os.getpid(), root, root),  # start_new_session=True
        "a1": (root, root, root),
        "b1": (root, t["b1"].pid, root),
        "b2": (t["b1"].pid, t["b1"].pid, root),
        "s": (root, s, s),
        "s1": (s, s, s),
        "s2": (s, t["s2"].pid, s),
        "zombie": (root, root, root),
    }
    for role, (ppid, pgid, sid) in expected.items():
        member = t[role]
        proc = collect_process(member.pid)
        assert (proc.pid, proc.ppid, proc.pgid, proc.sid) == (member.pid, ppid, pgid, sid), role
        assert list(proc.ns_pids) == [member.pid], role
        assert list(proc.ns_pgids) == [pgid], role
        assert list(proc.ns_sids) == [sid], role
        assert proc.comm == member.comm, role
        assert proc.state == ("Z" if role == "zombie" else "S"), role
        assert proc.start_time == member.start_time, role
        assert not proc.is_kthread
        assert proc.exit_signal == signal.SIGCHLD


def test_zombie(family_tree: Tree) -> None:
    zombie = family_tree["zombie"]
    assert zombie.pid in discover([family_tree["root"].pid])
    proc = collect_process(zombie.pid)
    assert proc.state == "Z"
    assert proc.exit_code == ZOMBIE_EXIT_STATUS << 8  # the wait status
    assert list(proc.cmdline) == []  # the kernel returns nothing
    assert (proc.vsize, proc.rss_pages) == (0, 0)
    missing = unreadable(proc)
    for field in ("environ", "exe", "cwd", "root", "umask", "namespaces.mnt", "namespaces.net"):
        assert "zombie" in missing[field] or field == "umask", (field, missing.get(field))
    assert not proc.HasField("exe") and not proc.HasField("cwd")
    assert not proc.HasField("umask")
    # a zombie keeps its pid and user namespaces only
    assert set(namespaces(proc)) == {"pid", "user"}
    assert namespaces(proc)["pid"] == ns_of("self")["pid"]
    assert [(th.tid, th.state, th.comm) for th in proc.threads] == [
        (zombie.pid, "Z", zombie.comm)]
    assert list(proc.creds.uids) == [os.getuid()] * 4


def test_deleted_cwd(family_tree: Tree) -> None:
    a1 = family_tree["a1"]
    proc = collect_process(a1.pid)
    assert proc.cwd.path == os.fsencode(a1.info["cwd"])
    assert proc.cwd.deleted
    assert proc.cwd.ino == a1.info["cwd_ino"]
    assert not proc.root.deleted and proc.root.path == b"/"


def test_threads(threads_proc: Tree) -> None:
    main = threads_proc["main"]
    names = {int(tid): bytes.fromhex(name) for tid, name in main.info["threads"].items()}
    assert sorted(names.values()) == sorted(THREAD_NAMES)
    proc = collect_process(main.pid)
    assert proc.comm == main.comm
    assert proc.threads[0].tid == main.pid  # the leader first
    assert proc.threads[0].comm == main.comm
    got = {th.tid: th for th in proc.threads[1:]}
    assert {tid: th.comm for tid, th in got.items()} == names
    blocking = main.info["blocking_tid"]
    assert names[blocking] == THREAD_NAMES[BLOCKING_THREAD]
    for th in proc.threads:
        assert th.state == "S"
        assert list(th.ns_tids) == [th.tid]
        has_it = th.tid == blocking
        assert bool(th.sig_blocked & bit(signal.SIGUSR1)) == has_it, th.tid
        assert bool(th.sig_pending & bit(signal.SIGUSR1)) == has_it, th.tid
    assert proc.sig_caught & bit(signal.SIGUSR1)  # the handler is process-wide
    assert proc.sig_shared_pending == 0


def test_threads_come_and_go() -> None:
    """Threads exiting while we list them are skipped, never an error."""
    churn = ("import threading\n"
             "while True:\n"
             "    ts = [threading.Thread(target=lambda: None) for _ in range(8)]\n"
             "    [t.start() for t in ts]; [t.join() for t in ts]\n")
    child = subprocess.Popen([sys.executable, "-c", churn])
    try:
        time.sleep(0.2)
        seen_many = False
        for _ in range(200):
            proc = collect_process(child.pid)
            assert proc.threads[0].tid == child.pid
            assert len({th.tid for th in proc.threads}) == len(proc.threads)
            seen_many = seen_many or len(proc.threads) > 1
        assert seen_many
    finally:
        child.kill()
        child.wait()


@needs_root
def test_pid_namespace(pidns_tree: Tree) -> None:
    t = pidns_tree
    unsharer, nsinit, nschild = t["unsharer"], t["nsinit"], t["nschild"]
    assert (nsinit.nspid, nschild.nspid) == (1, 2)

    init = collect_process(nsinit.pid)
    assert (init.ppid, init.pgid, init.sid) == (unsharer.pid, nsinit.pid, nsinit.pid)
    assert list(init.ns_pids) == [nsinit.pid, 1]
    assert list(init.ns_pgids) == [nsinit.pid, 1]
    assert list(init.ns_sids) == [nsinit.pid, 1]
    assert init.comm == nsinit.comm

    child = collect_process(nschild.pid)
    assert (child.ppid, child.pgid, child.sid) == (nsinit.pid, nsinit.pid, nsinit.pid)
    assert list(child.ns_pids) == [nschild.pid, 2]
    assert list(child.ns_pgids) == [nsinit.pid, 1]
    assert list(child.ns_sids) == [nsinit.pid, 1]
    assert list(child.threads[0].ns_tids) == [nschild.pid, 2]

    outer = collect_process(unsharer.pid)
    assert list(outer.ns_pids) == [unsharer.pid]
    ns_outer, ns_init = namespaces(outer), namespaces(init)
    assert ns_outer["pid"] == ns_of("self")["pid"]
    assert ns_outer["pid_for_children"] != ns_outer["pid"]
    assert ns_init["pid"] == ns_outer["pid_for_children"]
    assert ns_init == ns_of(nsinit.pid)
    assert ns_init["mnt"] == ns_outer["mnt"]


def test_rich_process(rich_proc: Tree) -> None:
    main = rich_proc["main"]
    proc = collect_process(main.pid)
    assert proc.comm == RICH_COMM
    assert [c for c in proc.cmdline] == [os.fsencode(a) for a in rich_proc.argv]
    assert f"{RICH_ENV_VAR}={RICH_ENV_VALUE}".encode() in proc.environ
    cwd = main.info["cwd"]
    assert proc.cwd.path == os.fsencode(cwd) and not proc.cwd.deleted
    assert (proc.cwd.dev, proc.cwd.ino) == (os.stat(cwd).st_dev, os.stat(cwd).st_ino)
    exe = os.path.realpath(sys.executable)
    assert proc.exe.path == os.fsencode(exe)
    assert (proc.exe.dev, proc.exe.ino) == (os.stat(exe).st_dev, os.stat(exe).st_ino)
    assert (proc.root.path, proc.root.ino) == (b"/", os.stat("/").st_ino)

    assert proc.umask == RICH_UMASK
    assert proc.nice == RICH_NICE and proc.threads[0].nice == RICH_NICE
    assert proc.sched_policy == SCHED_BATCH and proc.rt_priority == 0
    assert proc.personality == ADDR_NO_RANDOMIZE
    limits = {lim.resource: (lim.soft, lim.hard) for lim in proc.rlimits}
    assert limits["RLIMIT_NOFILE"] == RICH_NOFILE
    assert limits["RLIMIT_CPU"] == (RLIM_INFINITY, RLIM_INFINITY)
    assert len(limits) == 16

    assert proc.sig_ignored & bit(signal.SIGUSR2)
    assert proc.sig_caught & bit(signal.SIGHUP)
    assert not proc.sig_caught & bit(signal.SIGUSR2)
    assert proc.sig_shared_pending == bit(signal.SIGUSR1)
    (thread,) = proc.threads
    assert thread.sig_blocked == bit(signal.SIGUSR1) | bit(signal.SIGALRM)
    assert thread.sig_pending == bit(signal.SIGALRM)
    assert thread.comm == RICH_COMM and thread.tid == main.pid

    assert len(proc.timers) == len(RICH_TIMERS)
    for timer, timer_id, (clock, notify, signo, sigval) in zip(
            proc.timers, main.info["timer_ids"], RICH_TIMERS, strict=True):
        assert timer.id == timer_id
        assert timer.clock_id == clock
        assert timer.signal == signo
        assert timer.sigval == sigval
        assert timer.notify == ("none" if notify == SIGEV_NONE else "signal")
        assert timer.notify_tid == (main.pid if notify == SIGEV_THREAD_ID else 0)

    creds = proc.creds
    assert list(creds.uids) == [os.getuid()] * 4
    assert list(creds.gids) == [os.getgid()] * 4
    assert list(creds.groups) == sorted(os.getgroups())
    with open("/proc/self/status", "rb") as f:
        ours = dict(line.split(b":\t", 1) for line in f.read().splitlines() if b":\t" in line)
    assert creds.cap_eff == int(ours[b"CapEff"], 16)
    assert creds.cap_bnd == int(ours[b"CapBnd"], 16)
    assert not creds.no_new_privs and creds.seccomp_mode == 0
    assert not creds.HasField("securebits")
    assert "securebits" in unreadable(proc)["creds.securebits"]
    assert set(unreadable(proc)) == {"creds.securebits"}

    assert namespaces(proc) == ns_of("self")
    assert len(proc.namespaces) == len(os.listdir("/proc/self/ns"))
    assert proc.state == "S" and proc.exit_code == 0
    assert not proc.is_kthread and not proc.flags & TaskFlag.KTHREAD
    assert proc.vsize > 0 and proc.rss_pages > 0


def test_cgroup_membership(cgroup2_dir: Path, rich_proc: Tree) -> None:
    pid = rich_proc["main"].pid
    (cgroup2_dir / "cgroup.procs").write_text(str(pid))
    proc = collect_process(pid)
    v2 = [c for c in proc.cgroups if c.hierarchy_id == 0]
    assert len(v2) == 1
    assert v2[0].controllers == ""
    assert v2[0].path == b"/" + cgroup2_dir.name.encode()
    with open(f"/proc/{pid}/cgroup", "rb") as f:
        assert len(proc.cgroups) == len(f.read().splitlines())


def test_kernel_thread() -> None:
    proc = collect_process(kthreadd_or_skip())
    assert proc.is_kthread and proc.ppid == 0
    assert list(proc.cmdline) == []
    assert "exe" in unreadable(proc)
    assert proc.comm == b"kthreadd"


def test_access_denied_fields_are_unreadable() -> None:
    try:
        with open("/proc/1/environ", "rb"):
            pytest.skip("pid 1's environ is readable here")
    except PermissionError:
        pass
    proc = collect_process(1)
    missing = unreadable(proc)
    assert missing["environ"].startswith("EACCES")
    assert "exit_code" in missing  # stat hides it without ptrace read access
    assert proc.pid == 1 and proc.comm  # the essentials are still there
    assert list(proc.creds.uids)


def test_reaped_process_is_gone() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    with pytest.raises(ProcessGone) as info:
        collect_process(pid)
    assert info.value.pid == pid


# ------------------------------------------------------------- fake /proc tree

FAKE_PID = 4242
# A Linux 4.0-like process: no NSpid/NSpgid/NSsid, Umask, CapAmb, NoNewPrivs,
# Seccomp_filters lines; stat without field 52 (pre-3.5 layout).
OLD_STAT = (b"4242 (old (one)) S 1 4242 4242 0 -1 4194560 0 0 0 0 5 6 0 0 20 3 1 0 777 "
            b"1000 10 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n")
OLD_STATUS = b"""Name:\told (one)
State:\tS (sleeping)
Pid:\t4242
Uid:\t1\t2\t3\t4
Gid:\t5\t6\t7\t8
Groups:\t9
SigPnd:\t0000000000000001
ShdPnd:\t0000000000000002
SigBlk:\t0000000000000004
SigIgn:\t0000000000000008
SigCgt:\t0000000000000010
CapInh:\t0000000000000000
CapPrm:\t0000000000000001
CapEff:\t0000000000000001
CapBnd:\t0000003fffffffff
Seccomp:\t2
"""


def build_fake_proc(root: Path, target: Path) -> Path:
    """/proc/4242 with every file collect_process reads; links point into `target`."""
    pdir = root / str(FAKE_PID)
    (pdir / "task" / str(FAKE_PID)).mkdir(parents=True)
    (pdir / "ns").mkdir()
    for name, data in {"stat": OLD_STAT, "status": OLD_STATUS, "cmdline": b"old\0-x\0",
                       "environ": b"A=1\0B=2\0", "personality": b"00400000\n",
                       "limits": b"Limit                     Soft Limit           Hard Limit\n",
                       "timers": b"", "cgroup": b"0::/\n"}.items():
        (pdir / name).write_bytes(data)
    (pdir / "task" / str(FAKE_PID) / "stat").write_bytes(OLD_STAT)
    (pdir / "task" / str(FAKE_PID) / "status").write_bytes(OLD_STATUS)
    target.mkdir()
    (target / "bin").write_bytes(b"")
    (pdir / "exe").symlink_to(target / "bin")
    (pdir / "cwd").symlink_to(target)
    (pdir / "root").symlink_to("/")
    (pdir / "ns" / "mnt").symlink_to(target / "bin")
    return pdir


def test_old_kernel_fallbacks(tmp_path: Path) -> None:
    build_fake_proc(tmp_path / "proc", tmp_path / "t")
    proc = collect_process(FAKE_PID, str(tmp_path / "proc"))
    assert proc.comm == b"old (one)"
    assert (proc.ppid, proc.pgid, proc.sid, proc.nice) == (1, 4242, 4242, 3)
    # no NS* lines: the only level we know is our own
    assert (list(proc.ns_pids), list(proc.ns_pgids), list(proc.ns_sids)) == (
        [4242], [4242], [4242])
    assert list(proc.cmdline) == [b"old", b"-x"]
    assert list(proc.environ) == [b"A=1", b"B=2"]
    assert proc.personality == 0x00400000
    assert list(proc.creds.uids) == [1, 2, 3, 4] and list(proc.creds.groups) == [9]
    assert (proc.sig_shared_pending, proc.sig_ignored, proc.sig_caught) == (2, 8, 16)
    assert (proc.threads[0].sig_pending, proc.threads[0].sig_blocked) == (1, 4)
    assert proc.exe.path == str(tmp_path / "t" / "bin").encode()
    assert proc.exe.ino == (tmp_path / "t" / "bin").stat().st_ino
    assert namespaces(proc) == {"mnt": ((tmp_path / "t" / "bin").stat().st_ino,
                                        (tmp_path / "t" / "bin").stat().st_dev)}
    assert set(unreadable(proc)) == {"umask", "exit_code", "creds.cap_amb",
                                     "creds.no_new_privs", "creds.seccomp_filters",
                                     "creds.securebits"}
    assert not proc.HasField("umask")


def test_deleted_suffix_stripped(tmp_path: Path) -> None:
    pdir = build_fake_proc(tmp_path / "proc", tmp_path / "t")
    (pdir / "exe").unlink()
    (pdir / "exe").symlink_to(tmp_path / "t" / "bin (deleted)")
    (tmp_path / "t" / "bin (deleted)").write_bytes(b"")
    proc = collect_process(FAKE_PID, str(tmp_path / "proc"))
    assert proc.exe.path == str(tmp_path / "t" / "bin").encode()
    assert proc.exe.deleted


def test_missing_essential_file_means_gone(tmp_path: Path) -> None:
    pdir = build_fake_proc(tmp_path / "proc", tmp_path / "t")
    (pdir / "status").unlink()
    with pytest.raises(ProcessGone):
        collect_process(FAKE_PID, str(tmp_path / "proc"))


def test_missing_optional_file_is_unreadable(tmp_path: Path) -> None:
    pdir = build_fake_proc(tmp_path / "proc", tmp_path / "t")
    (pdir / "timers").unlink()
    (pdir / "cwd").unlink()
    proc = collect_process(FAKE_PID, str(tmp_path / "proc"))
    assert {"timers", "cwd"} <= set(unreadable(proc))
    assert not proc.HasField("cwd")


def test_dying_mid_collection_raises_gone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An optional read failing because the process just exited is not 'unreadable'."""
    import shutil

    pdir = build_fake_proc(tmp_path / "proc", tmp_path / "t")
    real_read_all = procfs.read_all

    def read_all(path: str, single: bool = False) -> bytes:
        if path.endswith("/cmdline"):
            shutil.rmtree(pdir)  # the process exits and is reaped right now
        return real_read_all(path, single)

    monkeypatch.setattr(procfs, "read_all", read_all)
    with pytest.raises(ProcessGone):
        collect_process(FAKE_PID, str(tmp_path / "proc"))


def test_pid_reused_mid_collection_raises_gone(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Same pid, different start time: a new process, not the one we started reading."""
    pdir = build_fake_proc(tmp_path / "proc", tmp_path / "t")
    real_read_all = procfs.read_all

    def read_all(path: str, single: bool = False) -> bytes:
        if path.endswith("/environ") and (pdir / "environ").exists():
            (pdir / "environ").unlink()
            (pdir / "stat").write_bytes(OLD_STAT.replace(b" 777 ", b" 778 "))
        return real_read_all(path, single)

    monkeypatch.setattr(procfs, "read_all", read_all)
    with pytest.raises(ProcessGone):
        collect_process(FAKE_PID, str(tmp_path / "proc"))


def test_shared_encodings_follow_each_process_content() -> None:
    # limits, cgroup, creds and namespaces are encoded once per distinct content:
    # two processes differing in one limit (and an uid) must still get their own.
    import resource

    def lower() -> None:  # in the child: its own limit (and uid, as root)
        resource.setrlimit(resource.RLIMIT_NOFILE, (123, 456))
        if os.geteuid() == 0:
            os.setresuid(65534, 65534, 65534)

    one = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL)
    two = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL, preexec_fn=lower)
    try:
        time.sleep(0.1)
        first, second = collect_process(one.pid), collect_process(two.pid)
        again = collect_process(one.pid)
    finally:
        for p in (one, two):
            p.kill()
            p.wait()
    nofile = {r.resource: (r.soft, r.hard) for r in second.rlimits}
    assert nofile["RLIMIT_NOFILE"] == (123, 456)
    assert {r.resource: (r.soft, r.hard) for r in first.rlimits}["RLIMIT_NOFILE"] \
        != (123, 456)
    assert len(first.rlimits) == len(second.rlimits) >= 16
    if os.geteuid() == 0:
        assert list(second.creds.uids) == [65534] * 4 and list(first.creds.uids) == [0] * 4
    assert again == first  # the cached encodings rebuild the same message
    assert [u.field for u in first.unreadable].count("creds.securebits") == 1
