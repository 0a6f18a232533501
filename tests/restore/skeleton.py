"""A small real tree for rehearsal tests (run as a script; the parent side is `spawn_tree`).

    root   session + group leader; data file at fd 5 (pos 42) and its dup at fd 6,
           the write end of a pipe at fd 7, one end of a socketpair at fd 8,
           an eventfd (count 3) at fd 9
    ├─ a   setpgid(0, 0); the data file at fd 5 (inherited), the pipe's read end at fd 7
    ├─ b   setsid(); the socketpair's other end at fd 8; one extra thread
    │  └─ b1   in b's session and group
    ├─ z   exits with status 3, never reaped (a zombie)
    └─ (NCHILD more plain children when asked: `wide` trees for the benchmark,
        each with 20 fds: the data file 14 times, its own pipe and an eventfd)

Every fd is inheritable and blocking (flags the planner carries today), and fds
0-2 are /dev/null. Each member writes one JSON line on the report fd, closes
it, and sleeps.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

DATA_POS = 42
REPORT_FD = 250   # the report pipe, out of the way of the tree's own fds
ZOMBIE_STATUS = 3


@dataclass
class Built:
    pids: dict[str, int]
    proc: subprocess.Popen[bytes]


def _stat(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except (FileNotFoundError, ProcessLookupError):
        return None


def _asleep(pid: int) -> bool:
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return False
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] not in (b"S", b"Z"):
                    return False
        except FileNotFoundError:
            return False
    return True


@contextlib.contextmanager
def spawn_tree(data: str, wide: int = 0, timeout: float = 10.0) -> Iterator[Built]:
    """Build the tree; always SIGKILL every member (and reap the root) afterwards."""
    rfd, wfd = os.pipe()
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), str(wfd), data,
                             str(wide)], pass_fds=(wfd,), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    os.close(wfd)
    pids: dict[str, int] = {}
    try:
        expected = 5 + wide
        deadline = time.monotonic() + timeout
        buf = b""
        while len(pids) < expected:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"tree not built: {sorted(pids)}")
            chunk = os.read(rfd, 65536)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                rec = json.loads(line)
                if "error" in rec:
                    raise RuntimeError(rec["error"])
                pids[rec["role"]] = rec["pid"]
        while not all(_asleep(p) for p in pids.values()):
            if time.monotonic() > deadline:
                raise RuntimeError("tree never slept")
            time.sleep(0.005)
        yield Built(pids, proc)
    finally:
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.wait()
        os.close(rfd)


# ------------------------------------------------------------------ child side


def _report(fd: int, role: str) -> None:
    os.write(fd, (json.dumps({"role": role, "pid": os.getpid()}) + "\n").encode())
    os.close(fd)


def _sleep() -> None:
    while True:
        signal.pause()


def _fork(body: object) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            body()  # type: ignore[operator]
            _sleep()
        finally:
            os._exit(1)
    return pid


def _inheritable(*fds: int) -> None:
    for fd in fds:
        os.set_inheritable(fd, True)


def _at(moves: list[tuple[int, int]]) -> None:
    """Move fresh fds to their targets by way of high numbers (no clobbering)."""
    import fcntl

    highs = []
    for fd, target in moves:
        highs.append((fcntl.fcntl(fd, fcntl.F_DUPFD, 300), target))
        os.close(fd)
    for high, target in highs:
        os.dup2(high, target)
        os.close(high)


def main(report: int, data: str, wide: int) -> None:
    import fcntl

    high = fcntl.fcntl(report, fcntl.F_DUPFD, REPORT_FD)
    os.close(report)
    report = high
    for fd in range(0, 100):
        with contextlib.suppress(OSError):
            os.close(fd)
    for _ in (0, 1, 2):   # three opens: one shared description would hit the dup bug
        os.set_inheritable(os.open("/dev/null", os.O_RDWR), True)
    f = os.open(data, os.O_RDONLY)
    r, w = os.pipe()
    sa, sb = socket.socketpair()
    efd = os.eventfd(3)
    _at([(f, 5), (w, 7), (r, 10), (sa.detach(), 8), (sb.detach(), 11), (efd, 9)])
    os.lseek(5, DATA_POS, os.SEEK_SET)
    os.dup2(5, 6)

    def a() -> None:
        os.setpgid(0, 0)
        os.close(6)
        os.dup2(10, 7)     # the read end, at 7
        for fd in (8, 9, 10, 11):
            os.close(fd)
        _report(report, "a")

    def b() -> None:
        os.setsid()
        os.dup2(11, 8)
        for fd in (5, 6, 7, 9, 10, 11):
            os.close(fd)

        def b1() -> None:
            _report(report, "b1")

        _fork(b1)
        threading.Thread(target=_sleep, daemon=True).start()
        _report(report, "b")

    def z() -> None:
        for fd in (5, 6, 7, 8, 9, 10, 11):
            os.close(fd)
        _report(report, "z")
        os._exit(ZOMBIE_STATUS)

    _fork(a)
    _fork(b)
    for i in range(wide):
        def plain(i: int = i) -> None:
            for fd in (6, 7, 8, 9, 10, 11):
                os.close(fd)
            pr, pw = os.pipe()
            _at([(pr, 20), (pw, 21), (os.eventfd(i), 22)])
            for n in range(13):     # 13 more fds: the same data file, dup'ed
                os.dup2(5, 30 + n)
            _report(report, f"w{i}")
        _fork(plain)
    zpid = _fork(z)
    while _stat(zpid) != "Z":
        time.sleep(0.002)
    os.close(10)
    os.close(11)
    _report(report, "root")
    _sleep()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
