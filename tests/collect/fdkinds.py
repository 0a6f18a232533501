"""Fixture builders: child processes that hold one known fd kind each.

The parent runs ``python fdkinds.py KIND DIR`` (this file, stdlib only, so the
child starts fast and holds no fds of ours). The child builds the state, prints
one JSON line describing it (fd numbers, inodes, expectations) and then serves
commands on stdin until EOF: ``close FD``, ``write FD N``, ``read FD N``. The
parent-side :class:`Child` kills and reaps the child even when a test fails.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import platform
import resource
import select
import signal
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

HERE = os.path.abspath(__file__)
X86_64 = platform.machine() == "x86_64"

# Syscall numbers (x86_64); tests needing them skip on other architectures.
SYS_IO_URING_SETUP = 425
SYS_PIDFD_OPEN = 434
SYS_USERFAULTFD = 323

F_SETSIG = 10
F_SETOWN_EX = 15
F_OWNER_PGRP = 2
F_OFD_SETLK = 37
F_ADD_SEALS = 1033
F_SEAL_SHRINK = 0x0002
F_SEAL_GROW = 0x0004

EPOLL_CTL_ADD = 1
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_MODIFY = 0x002
FAN_CLASS_NOTIF = 0
FAN_MARK_ADD = 0x1
FAN_MARK_MOUNT = 0x10
FAN_OPEN = 0x20
FAN_CLOSE_WRITE = 0x8
AT_FDCWD = -100

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _sys(number: int, *args: int | ctypes.c_void_p | Any) -> int:
    ret = _libc.syscall(ctypes.c_long(number), *args)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


# ---------------------------------------------------------------- child side

def build_regular(tmp: str) -> dict[str, Any]:
    path = os.path.join(tmp, "regular")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
    os.write(fd, b"r" * 100)
    os.lseek(fd, 42, os.SEEK_SET)
    st = os.fstat(fd)
    return {"fd": fd, "path": path, "ino": st.st_ino, "dev": st.st_dev,
            "mtime_ns": st.st_mtime_ns, "mode": st.st_mode}


def build_dirs(tmp: str) -> dict[str, Any]:
    sub = os.path.join(tmp, "subdir")
    os.mkdir(sub)
    dfd = os.open(sub, os.O_RDONLY | os.O_DIRECTORY)
    target = os.path.join(tmp, "target")
    with open(target, "wb") as f:
        f.write(b"x" * 7)
    pfd = os.open(target, os.O_PATH)
    return {"dir": dfd, "dir_path": sub, "dir_ino": os.stat(sub).st_ino,
            "opath": pfd, "opath_path": target, "opath_ino": os.stat(target).st_ino}


def build_deleted(tmp: str) -> dict[str, Any]:
    small = os.path.join(tmp, "small")
    big = os.path.join(tmp, "big")
    sfd = os.open(small, os.O_RDWR | os.O_CREAT, 0o600)
    os.write(sfd, b"ghost data\n")
    bfd = os.open(big, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(bfd, b"B" * 4096)
    dup = os.dup(sfd)  # the same deleted file twice: captured once
    os.unlink(small)
    os.unlink(big)
    return {"small": sfd, "small_dup": dup, "small_path": small, "big": bfd, "big_path": big}


def build_fifo(tmp: str) -> dict[str, Any]:
    path = os.path.join(tmp, "fifo")
    os.mkfifo(path)
    rw = os.open(path, os.O_RDWR)
    rd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    os.write(rw, b"f" * 9)
    return {"rw": rw, "rd": rd, "path": path, "ino": os.stat(path).st_ino}


def build_eventfd(tmp: str) -> dict[str, Any]:
    sem = os.eventfd(5, os.EFD_SEMAPHORE)
    plain = os.eventfd(5, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
    hexcount = os.eventfd(31)
    return {"sem": sem, "plain": plain, "hexcount": hexcount}


class _EpollEvent(ctypes.Structure):
    _pack_ = 1  # struct epoll_event is packed on x86_64
    _fields_ = [("events", ctypes.c_uint32), ("data", ctypes.c_uint64)]


def build_epoll(tmp: str) -> dict[str, Any]:
    r, _w = os.pipe()
    efd = os.eventfd(0)
    ep = _check(_libc.epoll_create1(0), "epoll_create1")
    targets = [(r, select.EPOLLIN | select.EPOLLRDHUP, 0x1122334455667788),
               (efd, select.EPOLLOUT | select.EPOLLET, 7)]
    for tfd, events, data in targets:
        ev = _EpollEvent(events, data)
        _check(_libc.epoll_ctl(ep, EPOLL_CTL_ADD, tfd, ctypes.byref(ev)), "epoll_ctl")
    return {"epoll": ep, "targets": [[t, e, d, os.fstat(t).st_ino] for t, e, d in targets]}


def build_inotify(tmp: str) -> dict[str, Any]:
    fd = _check(_libc.inotify_init1(os.O_CLOEXEC), "inotify_init1")
    watches = []
    for name, mask in (("a", IN_CREATE), ("b", IN_DELETE | IN_MODIFY)):
        path = os.path.join(tmp, name)
        os.mkdir(path)
        wd = _check(_libc.inotify_add_watch(fd, path.encode(), mask), "inotify_add_watch")
        st = os.stat(path)
        watches.append([wd, mask, st.st_ino, st.st_dev])
    return {"fd": fd, "watches": watches}


def build_fanotify(tmp: str) -> dict[str, Any]:
    fd = _libc.fanotify_init(FAN_CLASS_NOTIF, os.O_RDONLY)
    if fd < 0:
        return {"error": os.strerror(ctypes.get_errno())}
    _libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int,
                                    ctypes.c_char_p]
    _check(_libc.fanotify_mark(fd, FAN_MARK_ADD, FAN_OPEN | FAN_CLOSE_WRITE, AT_FDCWD,
                               tmp.encode()), "fanotify_mark inode")
    _check(_libc.fanotify_mark(fd, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_OPEN, AT_FDCWD, b"/"),
           "fanotify_mark mount")
    st = os.stat(tmp)
    return {"fd": fd, "ino": st.st_ino, "dev": st.st_dev}


def build_signalfd(tmp: str) -> dict[str, Any]:
    sigs = {signal.SIGUSR1, signal.SIGUSR2}
    signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    mask = ctypes.c_uint64(sum(1 << (s - 1) for s in sigs))
    fd = _check(_libc.signalfd(-1, ctypes.byref(mask), 0), "signalfd")
    return {"fd": fd, "mask": mask.value}


class _Timespec(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("interval", _Timespec), ("value", _Timespec)]


def build_timerfd(tmp: str) -> dict[str, Any]:
    clock = 1  # CLOCK_MONOTONIC
    fd = _check(_libc.timerfd_create(clock, 0), "timerfd_create")
    spec = _Itimerspec(_Timespec(2, 500_000_000), _Timespec(100, 0))
    _check(_libc.timerfd_settime(fd, 0, ctypes.byref(spec), None), "timerfd_settime")
    return {"fd": fd, "clock": clock, "interval_ns": 2_500_000_000, "value_ns": 100_000_000_000}


def build_pidfd(tmp: str) -> dict[str, Any]:
    ppid = os.getppid()
    fd = _sys(SYS_PIDFD_OPEN, ctypes.c_long(ppid), ctypes.c_long(0))
    return {"fd": fd, "pid": ppid}


def build_memfd(tmp: str) -> dict[str, Any]:
    fd = os.memfd_create("fixture mem (1)", os.MFD_ALLOW_SEALING)
    os.write(fd, b"memfd contents")
    fcntl.fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK)
    return {"fd": fd, "name": "fixture mem (1)", "data": "memfd contents",
            "seals": F_SEAL_GROW | F_SEAL_SHRINK}


def build_tty(tmp: str) -> dict[str, Any]:
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY)
    _check(_libc.grantpt(master), "grantpt")
    _check(_libc.unlockpt(master), "unlockpt")
    _libc.ptsname.restype = ctypes.c_char_p
    name = os.fsdecode(_libc.ptsname(master))  # os.ptsname is Python 3.13+
    slave = os.open(name, os.O_RDWR | os.O_NOCTTY)
    return {"master": master, "slave": slave, "index": int(name.rsplit("/", 1)[1]),
            "slave_path": name}


def build_io_uring(tmp: str) -> dict[str, Any]:
    params = ctypes.create_string_buffer(120)  # struct io_uring_params, zeroed
    try:
        fd = _sys(SYS_IO_URING_SETUP, ctypes.c_long(4), params)
    except OSError as err:
        return {"error": err.strerror}
    return {"fd": fd}


def build_userfaultfd(tmp: str) -> dict[str, Any]:
    try:
        fd = _sys(SYS_USERFAULTFD, ctypes.c_long(os.O_CLOEXEC))
    except OSError as err:
        return {"error": err.strerror}
    return {"fd": fd}


def build_locks(tmp: str) -> dict[str, Any]:
    fds = {}
    for name in ("flock", "posix", "ofd"):
        fds[name] = os.open(os.path.join(tmp, name), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fds["flock"], fcntl.LOCK_EX)
    fcntl.lockf(fds["posix"], fcntl.LOCK_EX, 5, 10)  # bytes 10..14
    flock = struct.pack("hhqqi4x", fcntl.F_RDLCK, os.SEEK_SET, 0, 20, 0)  # struct flock
    fcntl.fcntl(fds["ofd"], F_OFD_SETLK, flock)
    return {**fds, "inos": {k: os.fstat(v).st_ino for k, v in fds.items()}}


def build_owner(tmp: str) -> dict[str, Any]:
    fd = os.open(os.path.join(tmp, "owned"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.fcntl(fd, fcntl.F_SETOWN, os.getpid())
    fcntl.fcntl(fd, F_SETSIG, signal.SIGUSR1)
    r, _w = os.pipe()
    os.setpgid(0, 0)
    fcntl.fcntl(r, F_SETOWN_EX, struct.pack("ii", F_OWNER_PGRP, os.getpgrp()))
    plain = os.open(os.path.join(tmp, "plain"), os.O_RDWR | os.O_CREAT, 0o600)
    return {"file": fd, "pipe": r, "plain": plain, "pid": os.getpid(), "pgrp": os.getpgrp()}


def build_plannable(tmp: str) -> dict[str, Any]:
    """One process holding a fd of every kind whose state the restore plan carries."""
    return {"eventfd": build_eventfd(tmp), "inotify": build_inotify(tmp),
            "timerfd": build_timerfd(tmp), "signalfd": build_signalfd(tmp),
            "memfd": build_memfd(tmp), "locks": build_locks(tmp), "pidfd": build_pidfd(tmp)}


def build_many(tmp: str, count: str = "4000") -> dict[str, Any]:
    """``count`` fds of four kinds in a fixed rotation; expectation per fd number."""
    total = int(count)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = total + 64
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            return {"error": f"RLIMIT_NOFILE hard limit {hard} < {want}"}
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    path = os.path.join(tmp, "many")
    with open(path, "wb") as f:
        f.write(b"m" * 10)
    kinds: dict[int, str] = {}
    values: dict[int, int] = {}  # file position of regular fds, count of eventfds
    while len(kinds) < total:
        step = len(kinds) % 4
        if step == 0:
            fd = os.open(path, os.O_RDONLY)
            values[fd] = os.lseek(fd, len(kinds) % 10, os.SEEK_SET)
            kinds[fd] = "regular"
        elif step == 1 and len(kinds) + 2 <= total:
            r, w = os.pipe()
            kinds[r], kinds[w] = "pipe", "pipe"
        elif step == 3:
            fd = os.eventfd(len(kinds))
            kinds[fd], values[fd] = "eventfd", len(kinds)
        else:
            kinds[os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)] = "directory"
    return {"kinds": {str(k): v for k, v in kinds.items()},
            "values": {str(k): v for k, v in values.items()}}


def build_hold(tmp: str) -> dict[str, Any]:
    """Hold the fds we inherited (pass_fds): used for the two-process pipe."""
    return {}


BUILDERS: dict[str, Callable[..., dict[str, Any]]] = {
    name.removeprefix("build_"): fn for name, fn in globals().items() if name.startswith("build_")
}


def _serve() -> None:
    """Answer commands until stdin closes; never touches fds unless asked."""
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "close":
            os.close(int(args[0]))
            reply: Any = "ok"
        elif cmd == "write":
            reply = os.write(int(args[0]), b"w" * int(args[1]))
        elif cmd == "read":
            reply = os.read(int(args[0]), int(args[1])).decode()
        else:
            reply = f"unknown command {cmd}"
        print(json.dumps(reply), flush=True)


def child_main(argv: Sequence[str]) -> None:
    kind, tmp, *extra = argv
    info = BUILDERS[kind](tmp, *extra)
    print(json.dumps(info), flush=True)
    _serve()


# --------------------------------------------------------------- parent side

class Child:
    """A running fixture child: ``pid``, ``info`` (its JSON), ``ask(command)``."""

    def __init__(self, proc: subprocess.Popen[str], info: dict[str, Any]) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.info = info

    def ask(self, command: str) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())


@contextmanager
def spawn(kind: str, tmp: str, *args: str, pass_fds: Sequence[int] = ()) -> Iterator[Child]:
    """Start a fixture child and always kill and reap it."""
    proc = subprocess.Popen([sys.executable, HERE, kind, tmp, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, pass_fds=tuple(pass_fds),
                            close_fds=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"fixture child {kind} died before reporting")
        yield Child(proc, json.loads(line))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


if __name__ == "__main__":
    child_main(sys.argv[1:])
