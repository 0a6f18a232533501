"""A real tree for the planner's round trip, built by a fresh interpreter.

Roles (all sleep until killed):
- root: session leader (start_new_session), child subreaper, two threads,
  holds a regular file and both ends of a pipe, listens on a TCP port;
- lead: setpgid(0, 0), forks `member` (in lead's group), exits, is reaped:
  a group whose leader is gone, and `member` an orphan reparented to root;
- sess: setsid(), forks `sub` (own group), `sub` forks `orph`, `sub` exits and is reaped:
  `orph` is reparented to root while its session leader is alive elsewhere;
- zombie: exits with status 5, never reaped;
- ns1: unshare(CLONE_NEWPID) by `nsparent` then fork: pid 1 of a namespace;
  ns1 unshares again and forks ns2 (pid 1 two levels deep) which forks ns3;
- with `clone_helper` (the compiled C program of tests/test_sharing.py): root
  runs it with "files": `cfparent` clone(CLONE_FILES|SIGCHLD)s `cfchild`, so
  both share one fd table, whose stdout is a pipe whose read end root holds.
"""

from __future__ import annotations

import contextlib
import ctypes
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
from typing import Any

CLONE_NEWPID = 0x20000000
PR_SET_CHILD_SUBREAPER = 36
PR_SET_PDEATHSIG = 1
ROLES = ("root", "member", "sess", "orph", "zombie", "nsparent", "ns1", "ns2", "ns3")
CLONE_FILES_ROLES = ("cfparent", "cfchild")


@dataclass
class Built:
    proc: subprocess.Popen[bytes]
    pids: dict[str, int]
    info: dict[str, Any]


def _asleep(pid: int) -> bool:
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                data = f.read()
            if data[data.rindex(b")") + 2:][:1] not in (b"S", b"Z"):
                return False
    except FileNotFoundError:
        return False
    return True


@contextlib.contextmanager
def planner_tree(path: str, clone_helper: str | None = None) -> Iterator[Built]:
    """Build the tree (root only: it unshares pid namespaces); always SIGKILL it all.

    clone_helper: path of the compiled clone() helper; adds the CLONE_FILES pair.
    """
    import psutil

    rfd, wfd = os.pipe()
    argv = [sys.executable, os.path.abspath(__file__), str(wfd), path]
    roles = set(ROLES)
    if clone_helper is not None:
        argv.append(clone_helper)
        roles.update(CLONE_FILES_ROLES)
    proc = subprocess.Popen(argv, pass_fds=(wfd,), stdin=subprocess.DEVNULL,
                            start_new_session=True)
    os.close(wfd)
    built = Built(proc, {}, {})
    try:
        buf = b""
        deadline = time.monotonic() + 10
        while roles - set(built.pids):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"tree not built: {sorted(roles - set(built.pids))}")
            chunk = os.read(rfd, 4096)
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                rec = json.loads(line)
                built.pids[rec["role"]] = rec["pid"]
                built.info.update(rec.get("info", {}))
        for pid in built.pids.values():
            while not _asleep(pid):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{pid} never slept")
                time.sleep(0.005)
        yield built
    finally:
        victims = set(built.pids.values())
        with contextlib.suppress(psutil.NoSuchProcess):
            victims.update(p.pid for p in psutil.Process(proc.pid).children(recursive=True))
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.wait()
        os.close(rfd)


# ------------------------------------------------------------------ child side

_libc = ctypes.CDLL(None, use_errno=True)


def _report(fd: int, role: str, **info: Any) -> None:
    rec = {"role": role, "pid": int(os.readlink("/proc/self")), "info": info}
    os.write(fd, (json.dumps(rec) + "\n").encode())


def _forever() -> None:
    while True:
        signal.pause()


def _fork(body: Any) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            body()
            _forever()
        finally:
            os._exit(1)
    return pid


def _clone_files_pair(fd: int, helper: str) -> subprocess.Popen[bytes]:
    """Run the C helper: it clone(CLONE_FILES|SIGCHLD)s a child and prints both pids."""
    pair = subprocess.Popen([helper, "files"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE)
    assert pair.stdout is not None
    line = pair.stdout.readline()
    if not line:
        raise RuntimeError(f"clone helper failed: exit {pair.wait()}")
    parent, child = map(int, line.split())
    for role, pid in (("cfparent", parent), ("cfchild", child)):
        rec = {"role": role, "pid": pid, "info": {}}
        os.write(fd, (json.dumps(rec) + "\n").encode())
    return pair


def _main(fd: int, path: str, clone_helper: str | None = None) -> None:
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    kept = open(path, "rb")  # noqa: SIM115 - held open by the tree on purpose
    r, w = os.pipe()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    stop = threading.Event()
    threads = [threading.Thread(target=stop.wait, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()

    def lead() -> None:
        os.setpgid(0, 0)
        _fork(lambda: _report(fd, "member"))
        time.sleep(0.2)
        os._exit(0)

    def sess() -> None:
        os.setsid()

        def sub() -> None:
            os.setpgid(0, 0)
            _fork(lambda: _report(fd, "orph"))
            time.sleep(0.2)
            os._exit(0)

        sub_pid = _fork(sub)
        os.waitpid(sub_pid, 0)  # the group leader is gone for good
        _report(fd, "sess")

    def zombie() -> None:
        _report(fd, "zombie")
        os._exit(5)

    def nsparent() -> None:
        if _libc.unshare(CLONE_NEWPID) != 0:
            raise OSError(ctypes.get_errno(), "unshare")

        def ns1() -> None:
            if _libc.unshare(CLONE_NEWPID) != 0:
                raise OSError(ctypes.get_errno(), "unshare")

            def ns2() -> None:
                _fork(lambda: _report(fd, "ns3"))
                _report(fd, "ns2")

            _fork(ns2)
            _report(fd, "ns1")

        _fork(ns1)
        _report(fd, "nsparent")

    lead_pid = _fork(lead)
    _fork(sess)
    _fork(zombie)
    _fork(nsparent)
    pair = _clone_files_pair(fd, clone_helper) if clone_helper else None
    os.waitpid(lead_pid, 0)  # lead exited: group without leader, member is ours now
    time.sleep(0.3)
    _report(fd, "root", port=port, r=r, w=w, kept=kept.fileno(), lfd=listener.fileno(),
            cf_pipe=pair.stdout.fileno() if pair is not None and pair.stdout else None)
    _forever()


if __name__ == "__main__":
    _main(int(sys.argv[1]), sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
