"""Real process trees for tests: build a known state, describe it, always tear it down.

Parent side (imported by tests)::

    with spawn("family") as tree:
        tree["b1"].pid, tree["zombie"].pid, tree.pids ...

Child side: this same file run as a script (``python proctree.py SCENARIO
REPORT_FD ARGS_JSON [ARGV...]``) builds the scenario in a fresh interpreter,
so nothing of pytest (threads, fds, handlers) leaks into the targets. Every
member writes one JSON line on the report pipe when its state is set up; the
parent then waits until each member (and each of its threads) is really
asleep (state S) or a zombie (Z) before handing the tree to the test.

Teardown SIGKILLs every reported member (checked by start time, so a reused
pid is never hit) and every remaining descendant of the root, then reaps the
root, even if the test failed or the tree was only half built.

Scenarios (roles in brackets):

- ``family``: [root] session and group leader; [a1] in root's group, whose
  cwd was removed (a " (deleted)" cwd); [b1] setpgid(0, 0) with child [b2];
  [s] setsid() with children [s1] (same group) and [s2] (own group);
  [zombie] exited with status 7, never reaped by root.
- ``threads``: [main] with three threads named by prctl(PR_SET_NAME); one
  blocks SIGUSR1 and has it pending (thread-directed).
- ``pidns`` (root only): [unsharer] unshare(CLONE_NEWPID), then forks
  [nsinit] (pid 1 of the new namespace, setsid()) which forks [nschild].
- ``mountns`` (root only): [main] in new mount + uts namespaces with a tmpfs
  mounted at ``args["mount_dir"]`` and hostname ``args["hostname"]``.
- ``tty``: [ttyroot] opens a pty (master and slave) and forks [lead], which
  calls setsid() and TIOCSCTTY on the slave, forks [fg] (its own group, made
  the tty's foreground group with tcsetpgrp) and [notty] (TIOCNOTTY: it
  leaves the controlling tty it inherited).
- ``rich``: [main] one process carrying lots of state: comm with space, ``(``,
  ``)`` and newline; umask 027; RLIMIT_NOFILE (123, 456); nice 7; SCHED_BATCH;
  personality ADDR_NO_RANDOMIZE; SIGUSR2 ignored, SIGHUP caught, SIGUSR1 and
  SIGALRM blocked, SIGUSR1 pending for the process, SIGALRM for the thread;
  three POSIX timers (see RICH_TIMERS).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

ROLES: dict[str, tuple[str, ...]] = {
    "family": ("root", "a1", "b1", "b2", "s", "s1", "s2", "zombie"),
    "threads": ("main",),
    "pidns": ("unsharer", "nsinit", "nschild"),
    "mountns": ("main",),
    "rich": ("main",),
    "tty": ("ttyroot", "lead", "fg", "notty"),
}
COMMS: dict[str, bytes] = {
    "root": b"cm-root",
    "a1": b"cm-a1",
    "b1": b"cm-b1",
    "b2": b"cm-b2",
    "s": b"cm-s",
    "s1": b"cm-s1",
    "s2": b"cm-s2",
    "zombie": b"cm-zombie",
    "unsharer": b"cm-unsharer",
    "nsinit": b"cm-nsinit",
    "nschild": b"cm-nschild",
    "mountns": b"cm-mountns",
    "threads": b"cm-threads",
    "ttyroot": b"cm-ttyroot",
    "lead": b"cm-lead",
    "fg": b"cm-fg",
    "notty": b"cm-notty",
}
THREAD_NAMES = (b"cm-worker-0", b"cm-worker-1", b"cm ( odd) t")
BLOCKING_THREAD = 1  # index in THREAD_NAMES of the thread that blocks SIGUSR1
ZOMBIE_EXIT_STATUS = 7
RICH_COMM = b"cm (x) y\nz)"
RICH_UMASK = 0o027
RICH_NOFILE = (123, 456)
RICH_NICE = 7
ADDR_NO_RANDOMIZE = 0x0040000
SIGEV_SIGNAL = 0
SIGEV_NONE = 1
SIGEV_THREAD_ID = 4
CLOCK_REALTIME = 0
CLOCK_MONOTONIC = 1
CLOCK_BOOTTIME = 7
# (clock, notify, signal, sigval) of the timers the rich process creates, in order.
RICH_TIMERS: tuple[tuple[int, int, int, int], ...] = (
    (CLOCK_MONOTONIC, SIGEV_SIGNAL, signal.SIGRTMIN + 2, 0xC0FFEE),
    (CLOCK_BOOTTIME, SIGEV_THREAD_ID, signal.SIGUSR2, 0x77),
    (CLOCK_REALTIME, SIGEV_NONE, 0, 0),
)
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWPID = 0x20000000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
PR_SET_NAME = 15
PR_SET_PDEATHSIG = 1

_ASLEEP = frozenset("SZ")


# ---------------------------------------------------------------- parent side


@dataclass
class Member:
    """One process of a built tree."""

    role: str
    pid: int  # in our pid namespace
    nspid: int  # as the process sees itself (1 for the init of a new pid namespace)
    start_time: int
    info: dict[str, Any] = field(default_factory=dict)  # scenario-specific report

    @property
    def comm(self) -> bytes:
        return bytes.fromhex(self.info["comm"])


@dataclass
class Tree:
    scenario: str
    argv: list[str]
    root: subprocess.Popen[bytes]
    members: dict[str, Member] = field(default_factory=dict)

    def __getitem__(self, role: str) -> Member:
        return self.members[role]

    @property
    def pids(self) -> list[int]:
        return [m.pid for m in self.members.values()]


def _stat_fields(pid: int, tid: int | None = None) -> list[str] | None:
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    try:
        with open(path, "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data[data.rindex(b")") + 2 :].decode().split()


def start_time_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def _all_asleep(pid: int) -> bool:
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except FileNotFoundError:
        return False
    for tid in tids:
        fields = _stat_fields(pid, tid)
        if fields is None or fields[0] not in _ASLEEP:
            return False
    return True


def _read_reports(fd: int, root: subprocess.Popen[bytes], tree: Tree, deadline: float) -> None:
    expected = set(ROLES[tree.scenario])
    buf = b""
    while expected - set(tree.members):
        left = deadline - time.monotonic()
        if left <= 0:
            missing = sorted(expected - set(tree.members))
            raise TimeoutError(f"{tree.scenario}: no report from {missing}")
        if root.poll() is not None:
            raise RuntimeError(f"{tree.scenario}: builder exited with {root.returncode}")
        ready, _, _ = select.select([fd], [], [], min(left, 0.1))
        if not ready:
            continue
        buf += os.read(fd, 65536)
        *lines, buf = buf.split(b"\n")
        for line in lines:
            report = json.loads(line)
            role, pid = report.pop("role"), report.pop("pid")
            if "error" in report:
                raise RuntimeError(f"{tree.scenario}/{role} failed:\n{report['error']}")
            start = start_time_of(pid) or 0
            tree.members[role] = Member(role, pid, report.pop("nspid"), start, report)


def _wait_asleep(tree: Tree, deadline: float) -> None:
    for member in tree.members.values():
        while not _all_asleep(member.pid):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{tree.scenario}/{member.role} ({member.pid}) never slept")
            time.sleep(0.005)


def _descendants(root: int) -> list[int]:
    import psutil  # only the parent side needs it

    try:
        return [p.pid for p in psutil.Process(root).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def kill_tree(tree: Tree) -> None:
    """SIGKILL every member and descendant, reap the root, wait until they are gone."""
    victims = {m.pid for m in tree.members.values() if start_time_of(m.pid) == m.start_time}
    victims.update(_descendants(tree.root.pid))
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    tree.root.kill()
    tree.root.wait()
    # Dead means gone or a zombie: orphans are reaped by init whenever it gets to it.
    deadline = time.monotonic() + 5
    for pid in victims:
        while not _dead(pid) and time.monotonic() < deadline:
            time.sleep(0.005)


def _dead(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is None or fields[0] in "ZX"


@contextlib.contextmanager
def spawn(scenario: str, *, args: dict[str, Any] | None = None, cwd: str | None = None,
          env: dict[str, str] | None = None, extra_argv: Sequence[str] = (),
          timeout: float = 10.0) -> Iterator[Tree]:
    """Build `scenario` in real processes; yields its description, always kills it."""
    if scenario not in ROLES:
        raise ValueError(f"unknown scenario {scenario!r}")
    rfd, wfd = os.pipe()
    argv = [sys.executable, os.path.abspath(__file__), scenario, str(wfd),
            json.dumps(args or {}), *extra_argv]
    try:
        root = subprocess.Popen(argv, pass_fds=(wfd,), cwd=cwd, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        os.close(wfd)
    tree = Tree(scenario, argv, root)
    try:
        deadline = time.monotonic() + timeout
        _read_reports(rfd, root, tree, deadline)
        _wait_asleep(tree, deadline)
        yield tree
    finally:
        kill_tree(tree)
        os.close(rfd)


# ----------------------------------------------------------------- child side

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _set_comm(name: bytes) -> None:
    """prctl(PR_SET_NAME): names the calling thread (any bytes but NUL, 15 at most)."""
    _check(_libc.prctl(PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0), "prctl(PR_SET_NAME)")


def _report(fd: int, role: str, **info: Any) -> None:
    # /proc is the mount of the test's pid namespace, so /proc/self is our pid
    # *there*, even inside a new pid namespace where getpid() says 1.
    record = {"role": role, "pid": int(os.readlink("/proc/self")), "nspid": os.getpid(), **info}
    os.write(fd, (json.dumps(record) + "\n").encode())  # < PIPE_BUF: atomic


def _sleep_forever() -> None:
    while True:
        signal.pause()


def _fork(fd: int, role: str, body: Callable[[], None]) -> int:
    """Fork a member that runs `body` then sleeps; it never returns into our code."""
    pid = os.fork()
    if pid:
        return pid
    try:
        body()
        _sleep_forever()
    except BaseException:  # noqa: BLE001 - report any failure to the parent, then die
        with contextlib.suppress(OSError):
            _report(fd, role, error=traceback.format_exc())
    os._exit(1)


def _member(fd: int, role: str, before: Callable[[], None] | None = None,
            **info: Any) -> Callable[[], None]:
    def body() -> None:
        if before is not None:
            before()
        _set_comm(COMMS[role])
        _report(fd, role, comm=COMMS[role].hex(), **info)

    return body


def _family(fd: int, args: dict[str, Any]) -> None:
    _set_comm(COMMS["root"])

    def a1_setup() -> None:
        os.chdir(args["deleted_cwd"])
        os.rmdir(args["deleted_cwd"])

    def b1_body() -> None:
        _member(fd, "b1", lambda: os.setpgid(0, 0))()
        _fork(fd, "b2", _member(fd, "b2"))

    def s_body() -> None:
        _member(fd, "s", os.setsid)()
        _fork(fd, "s1", _member(fd, "s1"))
        _fork(fd, "s2", _member(fd, "s2", lambda: os.setpgid(0, 0)))

    def zombie_body() -> None:
        _member(fd, "zombie")()
        os._exit(ZOMBIE_EXIT_STATUS)

    _fork(fd, "a1", _member(fd, "a1", a1_setup, cwd=args["deleted_cwd"]))
    _fork(fd, "b1", b1_body)
    _fork(fd, "s", s_body)
    _fork(fd, "zombie", zombie_body)  # never waited for: stays a zombie
    _report(fd, "root", comm=COMMS["root"].hex())


def _threads(fd: int, args: dict[str, Any]) -> None:
    _set_comm(COMMS["threads"])
    signal.signal(signal.SIGUSR1, lambda *_: None)  # never kill us if it is ever delivered
    stop = threading.Event()
    started: list[threading.Event] = []
    tids: list[int] = [0] * len(THREAD_NAMES)

    def worker(index: int, ready: threading.Event) -> None:
        _set_comm(THREAD_NAMES[index])
        if index == BLOCKING_THREAD:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        tids[index] = threading.get_native_id()
        ready.set()
        stop.wait()

    threads = []
    for index in range(len(THREAD_NAMES)):
        ready = threading.Event()
        started.append(ready)
        thread = threading.Thread(target=worker, args=(index, ready), daemon=True)
        thread.start()
        threads.append(thread)
    for ready in started:
        ready.wait()
    blocking = threads[BLOCKING_THREAD].ident
    assert blocking is not None
    signal.pthread_kill(blocking, signal.SIGUSR1)  # stays pending on that thread only
    _report(fd, "main", comm=COMMS["threads"].hex(),
            threads={str(tid): name.hex() for tid, name in zip(tids, THREAD_NAMES, strict=True)},
            blocking_tid=tids[BLOCKING_THREAD])


def _pidns(fd: int, args: dict[str, Any]) -> None:
    _set_comm(COMMS["unsharer"])
    _check(_libc.unshare(CLONE_NEWPID), "unshare(CLONE_NEWPID)")

    def nsinit_body() -> None:
        _member(fd, "nsinit", os.setsid)()
        _fork(fd, "nschild", _member(fd, "nschild"))

    _fork(fd, "nsinit", nsinit_body)
    _report(fd, "unsharer", comm=COMMS["unsharer"].hex())


def _mountns(fd: int, args: dict[str, Any]) -> None:
    _set_comm(COMMS["mountns"])
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS), "unshare(CLONE_NEWNS|CLONE_NEWUTS)")
    # Make every mount private first, so nothing we mount propagates to the host.
    _check(_libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "mount(MS_PRIVATE)")
    _check(_libc.mount(b"cm test src", os.fsencode(args["mount_dir"]), b"tmpfs", 0,
                       b"size=64k,mode=0700"), "mount(tmpfs)")
    hostname = args["hostname"].encode()
    _check(_libc.sethostname(hostname, len(hostname)), "sethostname")
    _report(fd, "main", comm=COMMS["mountns"].hex())


class _SigEvent(ctypes.Structure):
    """struct sigevent (64 bytes on Linux); `tid` is sigev_notify_thread_id."""

    _fields_ = (
        ("value", ctypes.c_void_p),
        ("signo", ctypes.c_int),
        ("notify", ctypes.c_int),
        ("tid", ctypes.c_int),
        ("_pad", ctypes.c_int * 11),
    )


def _rich(fd: int, args: dict[str, Any]) -> None:
    import resource

    _set_comm(RICH_COMM)
    os.umask(RICH_UMASK)
    resource.setrlimit(resource.RLIMIT_NOFILE, RICH_NOFILE)
    os.setpriority(os.PRIO_PROCESS, 0, RICH_NICE)
    os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    _check(_libc.personality(ADDR_NO_RANDOMIZE), "personality")
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, lambda *_: None)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGALRM})
    os.kill(os.getpid(), signal.SIGUSR1)  # process-directed: ShdPnd
    signal.pthread_kill(threading.get_ident(), signal.SIGALRM)  # thread-directed: SigPnd
    timer_ids = []
    for clock, notify, signo, sigval in RICH_TIMERS:
        event = _SigEvent(value=sigval or None, signo=signo, notify=notify,
                          tid=threading.get_native_id())
        timer = ctypes.c_void_p()
        _check(_libc.timer_create(clock, ctypes.byref(event), ctypes.byref(timer)),
               "timer_create")
        # glibc >= 2.34 hands back the kernel's timer id as timer_t for these kinds.
        timer_ids.append(timer.value or 0)
    _report(fd, "main", comm=RICH_COMM.hex(), timer_ids=timer_ids)


def _tty(fd: int, args: dict[str, Any]) -> None:
    import fcntl
    import termios

    _set_comm(COMMS["ttyroot"])
    master, slave = os.openpty()

    def lead_body() -> None:
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        fg = _fork(fd, "fg", _member(fd, "fg", lambda: os.setpgid(0, 0)))
        with contextlib.suppress(PermissionError):
            os.setpgid(fg, fg)   # both sides set it: whichever runs first wins
        os.tcsetpgrp(slave, fg)

        def drop() -> None:
            tty = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
            fcntl.ioctl(tty, termios.TIOCNOTTY)
            os.close(tty)

        _fork(fd, "notty", _member(fd, "notty", drop))
        _member(fd, "lead", tty=os.ttyname(slave), fg=fg)()

    signal.signal(signal.SIGHUP, signal.SIG_IGN)   # TIOCNOTTY may hang up nothing here
    _fork(fd, "lead", lead_body)
    _report(fd, "ttyroot", comm=COMMS["ttyroot"].hex(), master=master, slave=slave)


_BUILDERS: dict[str, Callable[[int, dict[str, Any]], None]] = {
    "family": _family,
    "threads": _threads,
    "pidns": _pidns,
    "mountns": _mountns,
    "rich": _rich,
    "tty": _tty,
}


def _child_main(argv: list[str]) -> None:
    scenario, fd, args = argv[1], int(argv[2]), json.loads(argv[3])
    # If the test process dies without its teardown, do not outlive it.
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
    try:
        _BUILDERS[scenario](fd, args)
    except BaseException:  # report any failure to the parent, then die
        _report(fd, ROLES[scenario][0], error=traceback.format_exc())
        raise
    _sleep_forever()


if __name__ == "__main__":
    _child_main(sys.argv)
