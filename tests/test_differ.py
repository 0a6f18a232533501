"""criu_model.diff: real processes changed at known points, and synthetic snapshots.

The real-process tests drive a target tree through a command pipe: the test
writes "open PATH", "close N", ... and waits for the ack, so every change
happens at a known point between two dumps. The diff must then report exactly
the changes made, and nothing else (volatile fields hidden).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import criu_model
from criu_model.differ import VOLATILE, Change, Diff, diff, parse_areas
from criu_model.errors import UsageError
from criu_model.images.pb import (
    files_pb2,
    inventory_pb2,
    mm_pb2,
    mount_pb2,
    pages_pb2,
    process_pb2,
    sockets_pb2,
)
from criu_model.pages.index import OwnerIndex
from criu_model.pages.layout import STORED, ZERO
from criu_model.snapshot import Snapshot

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="ptrace dumps of the target need root")

# The target: a process with two children, driven over stdin/stdout.
#   keeper: receives fds over a unix socketpair (SCM_RIGHTS) and can setsid()
#   leaver: exits when told; the target then reaps it
# Files the commands act on are opened after the forks, so they are not
# shared with the children unless a command shares them.
TARGET = r"""
import array, ctypes, gc, os, signal, socket, sys
gc.disable()
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: never outlive the test
libc.sbrk.restype = ctypes.c_void_p
libc.sbrk.argtypes = [ctypes.c_long]
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
cin, cout = sys.stdin.buffer, sys.stdout.buffer

def ack(*words):
    cout.write((" ".join(["ok", *map(str, words)]) + "\n").encode())
    cout.flush()

here, there = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
kpid = os.fork()
if kpid == 0:  # keeper
    here.close()
    kept = []
    while True:
        data, fds, _, _ = socket.recv_fds(there, 64, 4)
        if not data:
            os._exit(0)
        if data == b"setsid":
            os.setsid()
            there.sendall(b"%d\n" % os.getsid(0))
        else:
            kept.extend(fds)
            there.sendall(b"%d\n" % fds[0])
there.close()
lr, lw = os.pipe()
lpid = os.fork()
if lpid == 0:  # leaver: exits when its pipe says so
    os.close(lw)
    os.read(lr, 1)
    os._exit(3)
os.close(lr)
keep = {}
ack(kpid, lpid)
for line in cin:
    cmd, *args = line.decode().split()
    if cmd == "open":
        ack(os.open(args[0], os.O_RDONLY))
    elif cmd == "close":
        os.close(int(args[0])); ack()
    elif cmd == "seek":
        ack(os.lseek(int(args[0]), int(args[1]), os.SEEK_SET))
    elif cmd == "replace":
        tmp = os.open(args[1], os.O_RDONLY)
        os.dup2(tmp, int(args[0])); os.close(tmp); ack()
    elif cmd == "fork":
        pid = os.fork()
        if pid == 0:
            while True:
                signal.pause()
        ack(pid)
    elif cmd == "exit_child":
        os.write(lw, b"x")
        ack(os.waitpid(lpid, 0)[0])
    elif cmd == "setsid_child":
        here.sendall(b"setsid"); ack(here.recv(64).decode().strip())
    elif cmd == "send_fd":
        socket.send_fds(here, [b"fd"], [int(args[0])]); ack(here.recv(64).decode().strip())
    elif cmd == "mmap":
        addr = libc.mmap(int(args[0], 16), int(args[1]), 1, 0x22 | 0x100000, -1, 0)
        ack(hex(addr))   # PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE
    elif cmd == "brk":
        old = libc.sbrk(int(args[0])); ack(hex(old), hex(libc.sbrk(0)))
    elif cmd == "connect":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect(args[0])
        keep[s.fileno()] = s; ack(s.fileno())
    elif cmd == "nop":
        ack()
"""


class Target:
    """The driven target process and its two children."""

    def __init__(self, cwd: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", TARGET], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, cwd=cwd, start_new_session=True)
        self.pid = self.proc.pid
        self.keeper, self.leaver = (int(x) for x in self._ack())
        self.extra: list[int] = []

    def _ack(self) -> list[str]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().split()
        assert line and line[0] == "ok", f"target said {line!r}"
        return line[1:]

    def cmd(self, *words: Any) -> list[str]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((" ".join(map(str, words)) + "\n").encode())
        self.proc.stdin.flush()
        return self._ack()

    def wait_asleep(self) -> None:
        """Every process of the tree is in S (or Z): a dump now sees a quiet tree.

        The leaver too: until it sleeps in read() it may still hold the write
        end of its pipe, which it closes first (issue 13: an idle re-dump once
        saw that fd vanish).
        """
        deadline = time.monotonic() + 5
        pids = [self.pid, self.keeper, self.leaver, *self.extra]
        while time.monotonic() < deadline:
            states = [_state(p) for p in pids]
            if all(s in ("S", "Z", None) for s in states):
                return
            time.sleep(0.005)
        raise TimeoutError(f"target tree never slept: {states}")

    def kill(self) -> None:
        for pid in (self.keeper, self.leaver, *self.extra):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.kill()
        self.proc.wait()


def _state(pid: int) -> str | None:
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data[data.rindex(b")") + 2:].split()[0].decode()


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Target]:
    t = Target(tmp_path)
    try:
        yield t
    finally:
        t.kill()


def snapshot(t: Target) -> Snapshot:
    t.wait_asleep()
    return criu_model.dump([t.pid])


def _brief(ch: Change) -> tuple[Any, ...]:
    return (ch.op, ch.what, ch.pid, ch.fd, ch.field)


# ------------------------------------------------------------ real processes


@ROOT_ONLY
def test_diff_reports_exactly_what_the_target_did(target: Target, tmp_path: Path) -> None:
    t = target
    files = {}
    for name in ("opened", "closeme", "seekme", "shareme", "replaced", "replacement"):
        files[name] = tmp_path / name
        files[name].write_bytes(b"x" * 4096)
    close_fd = int(t.cmd("open", files["closeme"])[0])
    seek_fd = int(t.cmd("open", files["seekme"])[0])
    share_fd = int(t.cmd("open", files["shareme"])[0])
    replace_fd = int(t.cmd("open", files["replaced"])[0])
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "listen.sock"))
    listener.listen(4)
    region = 0x7E0000000000
    t.cmd("nop")
    before = snapshot(t)
    heap = [v for v in before.memory_by_pid[t.pid].vmas if v.kind == mm_pb2.VMA_HEAP]
    assert heap, "the target has a [heap]"

    opened_fd = int(t.cmd("open", files["opened"])[0])
    t.cmd("seek", seek_fd, 1234)
    child = int(t.cmd("fork")[0])
    t.extra.append(child)
    assert int(t.cmd("exit_child")[0]) == t.leaver
    t.cmd("setsid_child")
    assert int(t.cmd("mmap", f"{region:x}", 65536)[0], 16) == region
    old_brk, new_brk = (int(x, 16) for x in t.cmd("brk", 1 << 20))
    assert new_brk == old_brk + (1 << 20)
    sock_fd = int(t.cmd("connect", tmp_path / "listen.sock")[0])
    kept_fd = int(t.cmd("send_fd", share_fd)[0])
    t.cmd("replace", replace_fd, files["replacement"])
    t.cmd("close", close_fd)  # last: a later open would take its number (a replacement)
    after = snapshot(t)
    listener.close()

    result = diff(before, after)
    got = sorted(_brief(ch) for ch in result.changes)
    pid, keeper = t.pid, t.keeper
    sock_inode = next(fd.socket.inode for fd in after.fds_by_pid[pid].fds if fd.fd == sock_fd)
    expected = sorted([
        ("added", "fd", pid, opened_fd, None),
        ("removed", "fd", pid, close_fd, None),
        ("changed", "fd", pid, seek_fd, "pos"),
        ("added", "process", child, None, None),
        ("removed", "process", t.leaver, None, None),
        ("changed", "process", keeper, None, "pgid"),
        ("changed", "process", keeper, None, "sid"),
        ("changed", "process", keeper, None, "ns_pgids"),
        ("changed", "process", keeper, None, "ns_sids"),
        ("added", "vma", pid, None, None),
        ("changed", "vma", pid, None, "end"),
        ("added", "fd", pid, sock_fd, None),
        ("added", "socket", pid, None, None),
        ("added", "fd", keeper, kept_fd, None),
        ("changed", "sharing", pid, None, "holders"),
        ("replaced", "fd", pid, replace_fd, None),
    ], key=str)
    assert sorted(got, key=str) == expected, "\n".join(map(str, result.changes))

    by = {_brief(ch): ch for ch in result.changes}
    assert by[("changed", "fd", pid, seek_fd, "pos")].before == 0
    assert by[("changed", "fd", pid, seek_fd, "pos")].after == 1234
    assert by[("changed", "process", keeper, None, "sid")].after == keeper
    vma_added = by[("added", "vma", pid, None, None)]
    assert vma_added.start == region and vma_added.after["end"] == region + 65536
    assert vma_added.after["prot"] == "r--p"
    grown = by[("changed", "vma", pid, None, "end")]
    assert grown.start == heap[0].start and grown.after == new_brk
    assert by[("added", "socket", pid, None, None)].after["inode"] == sock_inode
    shared = by[("changed", "sharing", pid, None, "holders")]
    assert shared.before == [f"{pid}:{share_fd}"]
    assert shared.after == sorted([f"{pid}:{share_fd}", f"{keeper}:{kept_fd}"])
    assert shared.pids == tuple(sorted((pid, keeper)))
    replaced = by[("replaced", "fd", pid, replace_fd, None)]
    assert replaced.before["target"] == str(files["replaced"])
    assert replaced.after["target"] == str(files["replacement"])
    assert by[("added", "process", child, None, None)].after["ppid"] == pid

    s = result.summary
    assert s["processes"] == {"added": 1, "removed": 1, "changed": 2}
    assert s["fds"] == {"opened": 3, "closed": 1, "replaced": 1, "changed": 1}
    assert s["vmas"] == {"added": 1, "removed": 0, "changed": 1}
    assert s["sockets"]["added"] == 1 and s["sharing"]["changed"] == 1

    # Volatile fields exist between these dumps and show only with include_volatile.
    loud = diff(before, after, include_volatile=True)
    assert len(loud.changes) > len(result.changes)
    assert all(ch.volatile for ch in loud.changes if _brief(ch) not in by)

    # Filters: per pid and per area.
    only_keeper = diff(before, after, pids=[keeper])
    assert {ch.pid for ch in only_keeper.changes if ch.what != "sharing"} == {keeper}
    assert any(ch.what == "sharing" for ch in only_keeper.changes)  # keeper is a holder
    tree_only = diff(before, after, only="tree")
    assert {_brief(ch)[:2] for ch in tree_only.changes} == {
        ("added", "process"), ("removed", "process"), ("changed", "process")}


@ROOT_ONLY
def test_idle_tree_redump_is_empty(target: Target) -> None:
    t = target
    t.cmd("nop")
    first = snapshot(t)
    second = snapshot(t)
    assert diff(first, first).identical
    result = diff(first, second)
    assert result.identical, "\n".join(map(str, result.changes))
    assert result.summary["changes"] == 0


@ROOT_ONLY
def test_diff_against_loaded_snapshot(target: Target, tmp_path: Path) -> None:
    """Written and re-read, a snapshot diffs empty against itself and its in-memory form."""
    t = target
    snap = snapshot(t)
    path = criu_model.write(snap, tmp_path / "snap")
    loaded = criu_model.load(path)
    assert diff(snap, loaded).identical
    assert diff(loaded, loaded).identical


# Inside a fresh pid namespace (and a private /proc), the namespace init dumps
# its child, kills and reaps it, points ns_last_pid back so the next fork gets
# the same pid, and dumps again. Prints the two dumps' pids and the diff.
PID_REUSE = r"""
import ctypes, json, os, signal, sys, time
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS, CLONE_NEWPID, MS_REC, MS_PRIVATE = 0x20000, 0x20000000, 0x4000, 1 << 18
def check(ret, what):
    if ret != 0:
        raise OSError(ctypes.get_errno(), what)
libc.prctl(1, signal.SIGKILL, 0, 0, 0)
check(libc.unshare(CLONE_NEWPID | CLONE_NEWNS), "unshare")
init = os.fork()
if init:
    _, status = os.waitpid(init, 0)
    sys.exit(os.waitstatus_to_exitcode(status))
libc.prctl(1, signal.SIGKILL, 0, 0, 0)
check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "mount private")
check(libc.mount(b"proc", b"/proc", b"proc", 0, None), "mount proc")
import criu_model
from criu_model.render.diff import diff_to_json

def sleeper(name):
    pid = os.fork()
    if pid == 0:
        libc.prctl(15, name, 0, 0, 0)
        while True:
            signal.pause()
    while open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "S":
        time.sleep(0.005)
    return pid

first = sleeper(b"first")
a = criu_model.dump([first])
os.kill(first, signal.SIGKILL)
os.waitpid(first, 0)
time.sleep(0.05)  # start_time has 10 ms resolution
with open("/proc/sys/kernel/ns_last_pid", "w") as f:
    f.write(str(first - 1))
second = sleeper(b"second")
b = criu_model.dump([second])
os.kill(second, signal.SIGKILL)
print(json.dumps({"first": first, "second": second,
                  "diff": diff_to_json(criu_model.differ.diff(a, b))}))
"""


@ROOT_ONLY
def test_real_pid_reuse_is_removal_plus_addition() -> None:
    res = subprocess.run([sys.executable, "-c", PID_REUSE], capture_output=True, text=True,
                         timeout=60, cwd=Path(__file__).parent.parent)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["first"] == out["second"], "ns_last_pid did not hand out the same pid"
    changes = out["diff"]["changes"]
    assert [(c["op"], c["what"], c["pid"], c.get("field")) for c in changes] == [
        ("removed", "process", out["first"], None), ("added", "process", out["first"], None)]
    assert changes[0]["before"]["comm"] == "first"
    assert changes[1]["after"]["comm"] == "second"
    assert changes[0]["before"]["start_time"] != changes[1]["after"]["start_time"]


# ------------------------------------------------------------ synthetic snapshots


def _inv(minor: int = 0) -> inventory_pb2.Inventory:
    return inventory_pb2.Inventory(format_major=1, format_minor=minor, root_pids=[100])


def _proc(pid: int, ppid: int = 1, start: int = 1000, **kw: Any) -> process_pb2.Process:
    proc = process_pb2.Process(pid=pid, ppid=ppid, pgid=100, sid=100, ns_pids=[pid],
                               start_time=start, comm=b"p%d" % pid, state="S", **kw)
    proc.threads.add(tid=pid, comm=proc.comm, state="S")
    proc.namespaces.add(type="mnt", inode=4026531841)
    proc.namespaces.add(type="net", inode=4026531840)
    proc.rlimits.add(resource="RLIMIT_NOFILE", soft=1024, hard=4096)
    proc.creds.uids.extend([0, 0, 0, 0])
    proc.creds.cap_eff = 0x1FF
    return proc


def _fd(n: int, path: bytes, file_id: int, ino: int = 0, **kw: Any) -> files_pb2.Fd:
    fd = files_pb2.Fd(fd=n, path=path, kind=files_pb2.FD_REGULAR, dev=2049,
                      ino=ino or 5000 + n, file_id=file_id, **kw)
    fd.file.size = 10
    return fd


def _snap(minor: int = 0) -> Snapshot:
    """Two processes (100, its child 101) sharing fd 0, with memory, a socket, a mount ns."""
    p100, p101 = _proc(100), _proc(101, ppid=100)
    t100 = files_pb2.FdTable(pid=100, fds=[_fd(0, b"/dev/null", 1, ino=6),
                                           _fd(3, b"/a", 2), _fd(4, b"/b", 3)])
    sock = files_pb2.Fd(fd=5, kind=files_pb2.FD_SOCKET, ino=777, file_id=4,
                        path=b"socket:[777]")
    sock.socket.inode = 777
    t100.fds.append(sock)
    t101 = files_pb2.FdTable(pid=101, fds=[_fd(0, b"/dev/null", 1, ino=6)])
    mems = []
    for pid in (100, 101):
        mm = mm_pb2.MemoryMap(pid=pid, page_counts_method="pagemap")
        heap = mm.vmas.add(start=0x1000, end=0x5000, prot=3, kind=mm_pb2.VMA_HEAP,
                           path=b"[heap]")
        heap.pages.resident = 3
        mm.vmas.add(start=0x10000, end=0x20000, prot=5, kind=mm_pb2.VMA_FILE, path=b"/lib.so",
                    dev_major=8, inode=42, map_file_known=True, map_file_dev=2049,
                    map_file_ino=42)
        mems.append(mm)
    unix = sockets_pb2.Socket(inode=777, family=sockets_pb2.FAMILY_UNIX, type=1, state=1)
    unix.unix.name = b"/run/x.sock"
    mnt = mount_pb2.MountNamespace(ns_inode=4026531841, read_from_pid=100)
    mnt.mounts.add(mount_id=1, parent_id=0, mount_point=b"/", fstype="ext4", options="rw")
    snap = Snapshot(inventory=_inv(minor), processes=[p100, p101], memory=mems, mounts=[mnt],
                    fds=[t100, t101], sockets=[unix])
    return snap


def _copy(snap: Snapshot) -> Snapshot:
    def dup(msgs: list[Any]) -> list[Any]:
        out = []
        for m in msgs:
            c = type(m)()
            c.CopyFrom(m)
            out.append(c)
        return out

    inv = inventory_pb2.Inventory()
    inv.CopyFrom(snap.inventory)
    return Snapshot(inventory=inv, processes=dup(snap.processes), memory=dup(snap.memory),
                    mounts=dup(snap.mounts), fds=dup(snap.fds), ghosts=dup(snap.ghosts),
                    sockets=dup(snap.sockets))


def _only(result: Diff) -> Change:
    assert len(result.changes) == 1, result.changes
    return result.changes[0]


def test_identical_synthetic() -> None:
    a = _snap()
    assert diff(a, a).identical
    assert diff(a, _copy(a)).identical
    assert diff(a, _copy(a)).summary["changes"] == 0


def test_pid_reuse_is_removal_plus_addition() -> None:
    a = _snap()
    b = _copy(a)
    b.processes[1].start_time = 2000
    b.processes[1].comm = b"other"
    result = diff(a, b)
    assert [(c.op, c.what, c.pid) for c in result.changes] == [
        ("removed", "process", 101), ("added", "process", 101)]
    assert result.changes[0].before["start_time"] == 1000
    assert result.changes[1].after["comm"] == "other"
    assert result.summary["processes"] == {"added": 1, "removed": 1, "changed": 0}


def test_process_fields_generic() -> None:
    a = _snap()
    b = _copy(a)
    p = b.processes[0]
    p.creds.cap_eff = 0x3FF
    p.rlimits[0].soft = 2048
    p.rlimits.add(resource="RLIMIT_CORE", soft=0, hard=0)
    p.cmdline.append(b"--x")
    p.umask = 0o22
    got = {(c.op, c.field, c.area): (c.before, c.after) for c in diff(a, b).changes}
    assert got == {
        ("changed", "creds.cap_eff", "creds"): (0x1FF, 0x3FF),
        ("changed", "rlimits[RLIMIT_NOFILE].soft", "limits"): (1024, 2048),
        ("added", "rlimits[RLIMIT_CORE]", "limits"): (
            None, {"resource": "RLIMIT_CORE", "soft": 0, "hard": 0}),
        ("changed", "cmdline", "proc"): ([], ["--x"]),
        ("changed", "umask", "proc"): (None, 0o22),
    }


def test_namespace_owner_recorded_on_one_side_only_is_no_change() -> None:
    # Format 1.2 records each namespace's owner; 1.1 has 0 there. A namespace's owner
    # never changes, so the same namespace (inode) is the same, with or without it.
    a = _snap()
    b = _copy(a)
    for ns in b.processes[0].namespaces:
        ns.owner_user = 4026531837
    assert diff(a, b).identical
    b.processes[0].namespaces[1].inode = 4026532000    # another namespace: a change
    assert [(c.what, c.field) for c in diff(a, b).changes] == [("namespace", "net")]


def test_namespace_and_thread_changes() -> None:
    a = _snap()
    b = _copy(a)
    b.processes[0].namespaces[1].inode = 4026532000
    b.processes[0].threads.add(tid=150, comm=b"worker", state="S")
    b.processes[1].threads[0].sig_blocked = 1 << 9
    result = diff(a, b)
    got = [(c.op, c.what, c.pid, c.tid, c.field, c.after, c.area) for c in result.changes]
    assert got == [
        ("changed", "namespace", 100, None, "net", 4026532000, "ns"),
        ("added", "thread", 100, 150, None, {"comm": "worker", "state": "S"}, "threads"),
        ("changed", "thread", 101, 101, "sig_blocked", 1 << 9, "signals"),
    ]
    assert result.summary["threads"] == {"added": 1, "removed": 0, "changed": 1}


def test_state_flip_is_volatile_but_zombie_is_not() -> None:
    a = _snap()
    b = _copy(a)
    b.processes[0].state = "R"
    b.processes[0].threads[0].state = "R"
    b.processes[0].utime_ticks = 99
    assert diff(a, b).identical
    loud = diff(a, b, include_volatile=True)
    assert {(c.field, c.volatile) for c in loud.changes} == {("state", True),
                                                             ("utime_ticks", True)}
    b.processes[1].state = "Z"
    ch = _only(diff(a, b))
    assert (ch.pid, ch.field, ch.before, ch.after, ch.volatile) == (101, "state", "S", "Z",
                                                                    False)


def test_fd_ops() -> None:
    a = _snap()
    b = _copy(a)
    t = b.fds[0]
    t.fds[1].pos = 77                       # fd 3: changed
    t.fds[1].flags = os.O_NONBLOCK          # fd 3: flags of the same file
    t.fds[2].path = b"/c"                   # fd 4: another file: replaced
    t.fds[2].ino = 9999
    t.fds.append(_fd(9, b"/new", 99))       # fd 9: added
    del b.fds[1].fds[0]                     # 101's fd 0: closed
    result = diff(a, b)
    got = sorted((c.op, c.pid, c.fd, c.field) for c in result.changes if c.what == "fd")
    assert got == [("added", 100, 9, None), ("changed", 100, 3, "flags"),
                   ("changed", 100, 3, "pos"), ("removed", 101, 0, None),
                   ("replaced", 100, 4, None)]
    # 101 closed its copy of the shared /dev/null: stopped being shared.
    sharing = [c for c in result.changes if c.what == "sharing"]
    assert [(c.op, c.before, c.after) for c in sharing] == [
        ("changed", ["100:0", "101:0"], ["100:0"])]
    assert result.summary["fds"] == {"opened": 1, "closed": 1, "replaced": 1, "changed": 1}


def test_access_mode_change_is_a_new_file() -> None:
    a = _snap()
    b = _copy(a)
    b.fds[0].fds[1].flags = os.O_RDWR
    assert _only(diff(a, b)).op == "replaced"


def test_file_ids_renumbered_is_not_a_change() -> None:
    """file_id numbers are private to a snapshot: only the partition counts."""
    a = _snap()
    b = _copy(a)
    for table in b.fds:
        for fd in table.fds:
            fd.file_id += 100
    assert diff(a, b).identical


def test_file_became_shared() -> None:
    a = _snap()
    b = _copy(a)
    b.fds[1].fds.append(_fd(7, b"/a", 2, ino=5003))  # 101 now holds 100's fd 3 file
    result = diff(a, b)
    assert [(c.op, c.what, c.pid, c.fd) for c in result.changes] == [
        ("changed", "sharing", 100, None), ("added", "fd", 101, 7)]
    sharing = result.changes[0]
    assert (sharing.before, sharing.after, sharing.pids) == (["100:3"], ["100:3", "101:7"],
                                                             (100, 101))
    assert result.summary["processes"]["changed"] == 1  # 101; sharing is not per process


def test_task_sharing_partition() -> None:
    a = _snap()
    for i, p in enumerate(a.processes):
        p.shares.vm = 10 + i      # separate address spaces
        p.shares.files = 20       # one fd table
    b = _copy(a)
    for p in b.processes:
        p.shares.vm = 5           # now one address space (CLONE_VM)
        p.shares.files = 30 + p.pid  # renumbered and split
    result = diff(a, b)
    got = {(c.field, c.op): (c.before, c.after) for c in result.changes}
    assert got == {("vm", "changed"): (None, [[100, 101]]),
                   ("files", "changed"): ([[100, 101]], None)}


def test_vma_ops() -> None:
    a = _snap()
    b = _copy(a)
    mm = b.memory[0]
    mm.vmas[0].end = 0x9000                       # heap grew: same start
    mm.vmas[0].pages.resident = 9                 # volatile
    mm.vmas[1].map_file_ino = 43                  # another file at the same start
    mm.vmas.add(start=0x30000, end=0x31000, prot=1, kind=mm_pb2.VMA_ANON)
    result = diff(a, b)
    got = sorted((c.op, c.start, c.field) for c in result.changes)
    assert got == [("added", 0x10000, None), ("added", 0x30000, None),
                   ("changed", 0x1000, "end"), ("removed", 0x10000, None)]
    assert result.summary["vmas"] == {"added": 2, "removed": 1, "changed": 1}
    loud = diff(a, b, include_volatile=True)
    assert ("pages.resident", True) in {(c.field, c.volatile) for c in loud.changes}


def test_socket_ops() -> None:
    a = _snap()
    b = _copy(a)
    b.sockets[0].state = 7
    b.sockets[0].rqueue = 100  # volatile
    ch = _only(diff(a, b))
    assert (ch.what, ch.op, ch.field, ch.before, ch.after, ch.pid) == (
        "socket", "changed", "state", 1, 7, 100)
    assert ch.key is not None and ch.key.startswith("777 unix stream /run/x.sock")
    # Re-created on the same path: matched by address, inode reported as changed.
    c = _copy(a)
    c.sockets[0].inode = 888
    c.fds[0].fds[3].socket.inode = 888
    c.fds[0].fds[3].ino = 888
    result = diff(a, c)
    assert sorted((x.what, x.op, x.field) for x in result.changes) == [
        ("fd", "replaced", None), ("socket", "changed", "inode")]


def test_socket_added_removed() -> None:
    a = _snap()
    b = _copy(a)
    del b.sockets[0]
    del b.fds[0].fds[3]
    result = diff(a, b)
    assert sorted((c.what, c.op) for c in result.changes) == [("fd", "removed"),
                                                               ("socket", "removed")]
    assert result.summary["sockets"]["removed"] == 1


def test_mount_ops() -> None:
    a = _snap()
    b = _copy(a)
    b.mounts[0].mounts[0].options = "ro"
    b.mounts[0].mounts.add(mount_id=2, parent_id=1, mount_point=b"/tmp", fstype="tmpfs")
    b.mounts[0].read_from_pid = 101  # how it was read: volatile
    result = diff(a, b)
    got = sorted((c.what, c.op, c.field, c.pids) for c in result.changes)
    assert got == [("mount", "added", None, (100, 101)), ("mount", "changed", "options",
                                                           (100, 101))]
    assert result.summary["mounts"] == {"added": 1, "removed": 0, "changed": 1}


def test_unreadable_is_missing_not_a_change() -> None:
    a = _snap()
    b = _copy(a)
    b.processes[0].environ.append(b"X=1")
    b.processes[0].unreadable.add(field="environ", reason="EACCES")
    b.fds[1].unreadable.add(field="fds", reason="EACCES")
    del b.fds[1].fds[:]
    result = diff(a, b)
    assert result.identical, result.changes
    assert {(m.what, m.field, m.side) for m in result.missing} == {
        ("process", "environ", "b"), ("fd", None, "b")}


def test_version_mismatch_reports_missing_fields() -> None:
    """An older snapshot lacks fields (unset on the wire) and images: missing, not changed."""
    old = _snap(minor=0)
    new = _copy(old)
    new.inventory.format_minor = 1
    for rec in ("processes.img", "fds.img", "mm.img", "mounts.img"):
        old.inventory.images.add(name=rec)
    for rec in ("processes.img", "fds.img", "mm.img", "mounts.img", "sockets.img"):
        new.inventory.images.add(name=rec)
    new.processes[0].tty_nr = 34816           # "new" field: absent in the old format
    new.processes[0].creds.securebits = 0     # optional, unset in old
    new.processes[1].pgid = 101               # a real change still shows
    result = diff(old, new)
    assert [(c.pid, c.field) for c in result.changes] == [(101, "pgid")]
    assert result.versions == ("1.0", "1.1")
    missing = {(m.what, m.field, m.side) for m in result.missing}
    assert missing == {("process", "tty_nr", "a"), ("process", "creds.securebits", "a"),
                       ("socket", None, "a")}
    # Same versions: the same difference is a change.
    same = _copy(old)
    same.processes[0].tty_nr = 34816
    assert [c.field for c in diff(old, same).changes] == ["tty_nr"]
    # The newer side dropping a value is a change even across versions.
    assert [c.field for c in diff(new, _snap(minor=0)).changes if c.pid == 100] == []
    back = _copy(new)
    back.inventory.format_minor = 0
    back.processes[0].tty_nr = 0
    assert any(m.field == "tty_nr" and m.side == "b" for m in diff(new, back).missing)


def test_filters() -> None:
    a = _snap()
    b = _copy(a)
    b.processes[0].creds.cap_eff = 0
    b.processes[1].pgid = 101
    assert [c.pid for c in diff(a, b, pids=[101]).changes] == [101]
    assert [c.area for c in diff(a, b, only="creds").changes] == ["creds"]
    assert [c.area for c in diff(a, b, only=["tree", "fds"]).changes] == ["tree"]
    assert diff(a, b, only="sockets").identical
    with pytest.raises(UsageError, match="bogus"):
        diff(a, b, only="bogus")
    assert parse_areas("namespaces,vma") == {"ns", "vmas"}


def test_ghost_contents() -> None:
    a = _snap()
    a.ghosts.append(files_pb2.GhostFile(id=1, size=1000, captured=True, data=b"a" * 1000,
                                        path=b"/tmp/gone", dev=2049, ino=77))
    b = _copy(a)
    b.ghosts[0].data = b"b" * 1000
    b.ghosts[0].id = 5  # ids are per snapshot
    ch = _only(diff(a, b))
    assert (ch.what, ch.field) == ("ghost", "data")
    assert ch.before.startswith("<1000 bytes, sha256 ") and ch.before != ch.after


def test_new_schema_field_is_diffed_generically() -> None:
    """Every field the descriptor lists is compared: nothing is hand-picked."""
    skipped = {"pid", "threads", "namespaces", "shares", "unreadable", "utime_ticks",
               "stime_ticks", "vsize", "rss_pages"}
    for f in process_pb2.Process.DESCRIPTOR.fields:
        if f.name in skipped or f.message_type is not None:
            continue
        a = _snap()
        b = _copy(a)
        proc = b.processes[0]
        if f.is_repeated:
            getattr(proc, f.name).append(b"z" if f.type == f.TYPE_BYTES else 7)
        elif f.type == f.TYPE_STRING:
            setattr(proc, f.name, "T")
        elif f.type == f.TYPE_BYTES:
            setattr(proc, f.name, b"zz")
        elif f.type == f.TYPE_BOOL:
            setattr(proc, f.name, True)
        else:
            setattr(proc, f.name, 12345)
        changes = diff(a, b).changes
        if f.name == "start_time":
            assert [c.op for c in changes] == ["removed", "added"]
        else:
            assert [c.field for c in changes] == [f.name], f.name


def test_volatile_set_names_real_fields() -> None:
    """A typo in VOLATILE would silently stop hiding a field."""
    from google.protobuf import descriptor_pool

    pool = descriptor_pool.Default()
    for message, name in VOLATILE:
        assert name in pool.FindMessageTypeByName(message).fields_by_name, (message, name)


def test_shared_file_change_is_one_change_with_its_holders() -> None:
    """fd 0 (/dev/null, file 1) is one description held by 100 and 101."""
    a = _snap()
    b = _copy(a)
    for table in b.fds:
        table.fds[0].pos = 5                 # the shared offset moved: seen in both
    ch = _only(diff(a, b))
    assert (ch.op, ch.field, ch.before, ch.after) == ("changed", "pos", 0, 5)
    assert ch.holders == ((100, 0), (101, 0)) and ch.pids == (100, 101)
    assert (ch.pid, ch.fd, ch.key) == (100, 0, "/dev/null")
    assert diff(a, b, pids={101}).changes == [ch]  # a holder's --pid keeps it
    b.fds[1].fds[0].flags = os.O_CLOEXEC     # per-fd: only 101's copy differs there
    got = sorted((c.pid, c.field, c.holders) for c in diff(a, b).changes)
    assert got == [(100, "pos", ((100, 0), (101, 0))), (101, "flags", ())]


def test_pid_filter_keeps_processes_born_under_it() -> None:
    a = _snap()
    b = _copy(a)
    b.processes.append(_proc(102, ppid=101))
    b.processes.append(_proc(103, ppid=102))
    b.processes.append(_proc(104, ppid=1))
    added = {c.pid for c in diff(a, b, pids={100}).changes if c.op == "added"}
    assert added == {102, 103}
    assert {c.pid for c in diff(a, b, pids={102}).changes} == {102, 103}


# ------------------------------------------- a side that lacks identities (CRIU images)

NOT_IN = "not in CRIU images"


def _without_vma_identity(snap: Snapshot) -> None:
    """What a CRIU import knows of VMAs: no dev/inode, no map_files identity (marked)."""
    for mm in snap.memory:
        for name in ("map_file_known", "map_file_dev", "map_file_ino", "inode", "dev_major",
                     "dev_minor"):
            mm.unreadable.add(field=f"vmas.{name}", reason=NOT_IN)
        for v in mm.vmas:
            v.map_file_known, v.map_file_dev, v.map_file_ino = False, 0, 0
            v.inode = v.dev_major = v.dev_minor = 0


def test_vmas_without_file_identity_are_matched_by_kind_and_path() -> None:
    a = _snap()
    b = _copy(a)
    _without_vma_identity(b)
    result = diff(a, b)
    assert result.identical, result.changes
    missing = {(m.what, m.field, m.side, m.count) for m in result.missing}
    assert ("vma", "inode", "b", 2) in missing and ("vma", "map_file_ino", "b", 2) in missing
    # Unmarked, the same zeroed identity is another file: removed plus added.
    bare = _copy(b)
    for mm in bare.memory:
        del mm.unreadable[:]
    assert {c.op for c in diff(a, bare).changes if c.what == "vma"} == {"removed", "added"}
    # What the side does record is still compared; another path is another VMA.
    b.memory[0].vmas[1].prot = 7
    b.memory[1].vmas[1].path = b"/other.so"
    got = sorted((c.pid, c.op, c.field) for c in diff(a, b).changes)
    assert got == [(100, "changed", "prot"), (101, "added", None), (101, "removed", None)]


def test_fds_without_dev_ino_are_the_same_open_file() -> None:
    a = _snap()
    b = _copy(a)
    for fd in b.fds[0].fds[:3]:
        fd.dev = fd.ino = 0
        fd.unreadable.add(field="dev", reason=NOT_IN)
        fd.unreadable.add(field="ino", reason=NOT_IN)
    result = diff(a, b)
    assert result.identical, result.changes
    assert {(m.what, m.field, m.count) for m in result.missing} == {("fd", "dev", 3),
                                                                  ("fd", "ino", 3)}
    b.fds[0].fds[1].path = b"/elsewhere"
    assert [(c.op, c.fd) for c in diff(a, b).changes] == [("replaced", 3)]
    del b.fds[0].fds[2].unreadable[:]  # unmarked: ino 0 is another file
    assert [(c.op, c.fd) for c in diff(a, b).changes] == [("replaced", 3), ("replaced", 4)]


def test_eventfd_id_unreadable_is_not_an_identity() -> None:
    a = _snap()
    efd = files_pb2.Fd(fd=9, kind=files_pb2.FD_EVENTFD, path=b"anon_inode:[eventfd]",
                       file_id=9)
    efd.eventfd.id = 12
    a.fds[0].fds.append(efd)
    b = _copy(a)
    b.fds[0].fds[-1].eventfd.id = 3
    assert [c.op for c in diff(a, b).changes] == ["replaced"]
    b.fds[0].fds[-1].unreadable.add(field="eventfd.id", reason=NOT_IN)
    result = diff(a, b)
    assert result.identical, result.changes
    assert [(m.what, m.field) for m in result.missing] == [("fd", "eventfd.id")]


def test_thread_fields_a_process_marks_unreadable_are_not_compared() -> None:
    a = _snap()
    a.processes[0].threads.add(tid=102, comm=b"worker", state="S")
    b = _copy(a)
    b.processes[0].threads[1].state = "T"  # stopped: never a volatile flip
    assert [(c.tid, c.field) for c in diff(a, b).changes] == [(102, "state")]
    b.processes[0].unreadable.add(field="threads.state", reason=f"{NOT_IN}: no thread state")
    result = diff(a, b)
    assert [(c.tid, c.field) for c in result.changes] == []
    assert [(m.what, m.field, m.count) for m in result.missing] == [("thread", "state", 1)]
    b.processes[0].threads[1].comm = b"renamed"  # recorded: still a change
    assert [(c.tid, c.field) for c in diff(a, b).changes] == [(102, "comm")]


def test_ghost_without_inode_is_matched_by_path() -> None:
    a = _snap()
    a.ghosts.append(files_pb2.GhostFile(id=1, path=b"/memfd:buf", dev=12, ino=3001,
                                        size=4096, captured=True))
    a.ghosts.append(files_pb2.GhostFile(id=2, path=b"/tmp/gone", dev=2049, ino=77, size=3,
                                        captured=True))
    b = _copy(a)
    b.ghosts[0].id, b.ghosts[0].dev, b.ghosts[0].ino = 9, 0, 4
    b.ghosts[0].unreadable.add(field="dev", reason=NOT_IN)
    b.ghosts[0].unreadable.add(field="ino", reason=f"{NOT_IN}: CRIU's own id")
    result = diff(a, b)
    assert result.identical, result.changes
    assert {(m.what, m.field) for m in result.missing} == {("ghost", "dev"), ("ghost", "ino")}
    b.ghosts[0].size = 8192
    assert [(c.what, c.field) for c in diff(a, b).changes] == [("ghost", "size")]
    b.ghosts[1].ino = 78  # readable on both sides: another inode is another file
    assert sorted(c.op for c in diff(a, b).changes if c.field is None) == ["added", "removed"]


def test_mount_namespace_numbered_by_an_id_is_matched_by_its_members() -> None:
    a = _snap()
    b = _copy(a)
    b.mounts[0].ns_inode = 6  # CRIU's id, given as the inode
    b.mounts[0].unreadable.add(field="ns_inode", reason=f"{NOT_IN}: CRIU's own ids")
    for proc in b.processes:
        next(ns for ns in proc.namespaces if ns.type == "mnt").inode = 6
        proc.unreadable.add(field="namespaces", reason=f"{NOT_IN}: CRIU's own ids")
    result = diff(a, b)
    assert result.identical, result.changes
    assert ("mount", "ns_inode") in {(m.what, m.field) for m in result.missing}
    b.mounts[0].mounts[0].options = "ro"
    got = [(c.what, c.field, c.key, c.pids) for c in diff(a, b).changes]
    assert got == [("mount", "options", "mnt:4026531841 1 /", (100, 101))]
    # Without the mark, another inode is another namespace.
    del b.mounts[0].unreadable[:]
    assert sorted(c.op for c in diff(a, b).changes) == ["added", "removed"]


class _Pages:
    """A page store of owners built by hand: what memory_contents reads of a store."""

    def __init__(self, owners: dict[tuple[int, int, int], OwnerIndex]) -> None:
        self.owners = owners

    def owner(self, key: tuple[int, int, int]) -> OwnerIndex | None:
        return self.owners.get(key)


def _owner(runs: list[tuple[int, int, list[int]]], size: int = 0) -> OwnerIndex:
    """runs: (address, state, hashes); a ZERO run is one page and has no hash."""
    entry = pages_pb2.PageRuns(object_size=size)
    for addr, state, hashes in runs:
        entry.addr.append(addr)
        entry.npages.append(len(hashes) or 1)
        entry.state.append(state)
        entry.slot.append(0)
        if state != ZERO:
            entry.hashes.extend(hashes)
    return OwnerIndex([entry])


def _with_pages(snap: Snapshot, owners: dict[tuple[int, int, int], OwnerIndex],
                criu: bool) -> Snapshot:
    snap.inventory.tool_version = "criu (image format v1.1)" if criu else "0.1"
    snap.page_store = _Pages(owners)  # type: ignore[assignment]
    return snap


def test_a_zero_page_equals_a_page_criu_left_out_of_private_anonymous_memory() -> None:
    """CRIU skips zero pages: absent on its side, zero on ours, in heap memory only."""
    ours = {(100, 0, 0): _owner([(0x1000, STORED, [11]), (0x2000, ZERO, []),
                                 (0x10000, ZERO, [])])}
    theirs = {(100, 0, 0): _owner([(0x1000, STORED, [11])])}
    # The heap's zero page at 0x2000 is not a change; the file mapping's at 0x10000 is.
    for a, b, want in (
            (_with_pages(_snap(), ours, False), _with_pages(_snap(), theirs, True), (0, 1)),
            (_with_pages(_snap(), theirs, True), _with_pages(_snap(), ours, False), (1, 0))):
        got = [(c.start, c.after["added"], c.after["removed"])
               for c in diff(a, b, only="memory").changes]
        assert got == [(0x10000, *want)], got
    # Between two criu-model dumps an absent page is not a zero page.
    a, b = _with_pages(_snap(), ours, False), _with_pages(_snap(), theirs, False)
    assert [(c.start, c.after["removed"]) for c in diff(a, b, only="memory").changes] == [
        (0x1000, 1), (0x10000, 1)]


def test_shared_memory_without_a_device_is_matched_on_its_inode() -> None:
    a = _snap()
    for mm in a.memory:
        mm.vmas.add(start=0x30000, end=0x32000, prot=3, kind=mm_pb2.VMA_SHARED_ANON,
                    shared=True, path=b"/dev/zero", deleted=True, map_file_known=True,
                    map_file_dev=5, map_file_ino=900)
    b = _copy(a)
    for mm in b.memory:
        mm.vmas[-1].map_file_dev = 0
    obj_a = {(0, 5, 900): _owner([(0, STORED, [1, 2])], size=0x2000)}
    obj_b = {(0, 0, 900): _owner([(0, STORED, [1, 3])], size=0x2000)}
    _with_pages(a, obj_a, False)
    _with_pages(b, obj_b, True)
    assert diff(a, b, only="memory").identical  # other keys: not the same object
    for mm in b.memory:
        mm.unreadable.add(field="vmas.map_file_dev", reason=f"{NOT_IN}: shmid only")
    got = [(c.start, c.pids, c.after["changed"]) for c in diff(a, b, only="memory").changes]
    assert got == [(0x30000, (100, 101), 1)]


def _vvar(snap: Snapshot, split: bool) -> Snapshot:
    for mm in snap.memory:
        if split:
            mm.vmas.add(start=0x40000, end=0x44000, prot=1, kind=mm_pb2.VMA_VVAR,
                        path=b"[vvar]")
            mm.vmas.add(start=0x44000, end=0x46000, prot=1, kind=mm_pb2.VMA_VVAR,
                        path=b"[vvar_vclock]")
        else:
            mm.vmas.add(start=0x40000, end=0x46000, prot=1, kind=mm_pb2.VMA_VVAR,
                        path=b"[vvar]")
    return snap


def test_criu_vvar_spanning_vvar_vclock_is_not_a_change() -> None:
    """CRIU records [vvar] + [vvar_vclock] (Linux 6.13+) as one [vvar] VMA."""
    criu, ours = _vvar(_snap(), False), _vvar(_snap(), True)
    criu.inventory.tool_version = "criu (image format v1.1)"
    for a, b, side in ((criu, ours, "a"), (ours, criu, "b")):
        d = diff(a, b)
        assert d.changes == [], d.changes
        assert [(m.what, m.field, m.side, m.count) for m in d.missing] == [
            ("vma", "vvar_vclock", side, 2)]
    # Between two criu-model dumps (or when the spans differ) the split is a change.
    plain = _vvar(_snap(), False)
    assert sorted((c.op, c.field) for c in diff(plain, ours).changes) == [
        ("added", None), ("added", None), ("changed", "end"), ("changed", "end")]


def test_a_list_whose_items_lack_a_field_on_one_side_is_compared_without_it() -> None:
    """A CRIU lock has no dev/ino: the locks are still compared, on everything else."""
    def with_lock(snap: Snapshot, mode: int, criu: bool) -> Snapshot:
        fd = snap.fds[0].fds[1]
        fd.locks.add(type=files_pb2.LOCK_FLOCK, mode=mode, to_eof=True, pid=100,
                     dev=0 if criu else 2049, ino=0 if criu else 5003)
        if criu:
            fd.unreadable.add(field="locks.dev", reason="not in CRIU images")
            fd.unreadable.add(field="locks.ino", reason="not in CRIU images")
        return snap

    a = with_lock(_snap(), files_pb2.LOCK_WRITE, True)
    d = diff(a, with_lock(_snap(), files_pb2.LOCK_WRITE, False))
    assert d.changes == []
    assert sorted((m.what, m.field, m.side) for m in d.missing) == [
        ("fd", "locks.dev", "a"), ("fd", "locks.ino", "a")]
    d = diff(a, with_lock(_snap(), files_pb2.LOCK_READ, False))
    assert [(c.what, c.fd, c.field) for c in d.changes] == [("fd", 3, "locks")]
    assert d.changes[0].after[0].get("dev", 0) == 0  # compared without it
