"""What keeps a cgroup freeze safe when its dumper dies: a lock, a guardian, a marker.

``cgroup.freeze`` (Linux 5.2) is a plain file: a 1 written there stays after
the writer dies, so a SIGKILLed dumper would leave its target frozen forever,
and two dumpers of one cgroup would thaw each other's freeze. Three pieces:

* **lock**: ``flock(2)`` on the cgroup directory itself (kernfs takes flock
  like any inode). It belongs to the open file, so the kernel drops it when
  the last holder dies, whatever the way; ``/proc/locks`` names the pid that
  took it, which is how a second dumper names the first.
* **guardian**: a fork of the dumper taken just before the freeze. It blocks
  on a pipe whose write end only the dumper holds: ``F`` (freezing now), then
  ``D`` (thawed, go). EOF after ``F`` without ``D`` means the dumper died, and
  the guardian writes 0 to ``cgroup.freeze``. It inherits the lock, so no
  other dumper can freeze the cgroup until the guardian has thawed it and
  exited. It is in its own session with every catchable signal blocked: a
  Ctrl-C, a hangup or a ``kill -- -PGID`` that kills the dumper leaves it
  alive to do its one job. A pipe, not ``PR_SET_PDEATHSIG``: the latter fires
  when the forking *thread* exits, and a pipe also says "done".
* **marker**: an extended attribute on the cgroup directory (``trusted.*``:
  kernfs; ``user.*`` on cgroupfs only since Linux 5.7) naming the freezing
  dumper, removed on thaw. If the dumper and its guardian both die, the
  next dump can say who froze the cgroup, not just that it is frozen.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import time
from dataclasses import dataclass
from typing import NoReturn

from criu_model.collect.procfs import read_all
from criu_model.errors import CriuModelError

MARKER_XATTR = "trusted.criu_model.frozen_by"
# How long the dumper waits for its dismissed guardian to exit before leaving
# it be (it exits by itself; the wait only saves a zombie).
DISMISS_WAIT_S = 2.0
_ARMED, _DONE = b"F", b"D"


# ----------------------------------------------------------------------- lock


def try_lock(directory: str) -> int | None:
    """flock the cgroup directory: the fd holding the lock, None if another holds it.

    The fd is O_CLOEXEC: a program the dumper runs does not inherit the lock.
    """
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError as err:
        raise CriuModelError(f"cgroup directory {directory} vanished") from err
    except OSError as err:
        raise CriuModelError(f"opening cgroup directory {directory}: {err.strerror}") from err
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError as err:
        os.close(fd)
        raise CriuModelError(f"locking cgroup {directory}: {err.strerror}") from err
    return fd


def lock_holder(directory: str, locks: str = "/proc/locks") -> int | None:
    """The pid that took a flock on `directory` (from /proc/locks), None if unknown."""
    try:
        st = os.stat(directory)
        text = read_all(locks).decode("ascii", "replace")
    except OSError:
        return None
    want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in text.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 10342 00:26:139 0 EOF"; a waiter has "->" first.
        if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK" or fields[5] != want:
            continue
        return int(fields[4]) if fields[4].lstrip("-").isdigit() else None
    return None


# --------------------------------------------------------------------- marker


def set_marker(directory: str, dumper: int, guardian: int) -> bool:
    """Name the freezing dumper on the cgroup; False if this filesystem keeps no xattr."""
    value = f"pid={dumper} guardian={guardian} time={time.time_ns()}".encode()
    try:
        os.setxattr(directory, MARKER_XATTR, value)
    except OSError:
        return False  # advisory: EOPNOTSUPP, or EPERM in a delegated subtree
    return True


def read_marker(directory: str) -> dict[str, int] | None:
    """The marker's fields (pid, guardian, time), None if there is none."""
    try:
        raw = os.getxattr(directory, MARKER_XATTR)
    except OSError:
        return None
    fields: dict[str, int] = {}
    for item in raw.decode("ascii", "replace").split():
        key, _, value = item.partition("=")
        if value.isdigit():
            fields[key] = int(value)
    return fields


def clear_marker(directory: str) -> None:
    with contextlib.suppress(OSError):  # none set, or no xattr support: nothing to clear
        os.removexattr(directory, MARKER_XATTR)


def describe_marker(marker: dict[str, int] | None) -> str:
    """Who froze the cgroup, as far as the marker tells, for an error message."""
    if not marker or "pid" not in marker:
        return ("not by criu-model (no marker): a container runtime's pause, or "
                "another tool")
    pid = marker["pid"]
    when = ""
    if marker.get("time"):
        when = " at " + time.strftime("%Y-%m-%d %H:%M:%S",
                                      time.localtime(marker["time"] / 1e9))
    if os.path.exists(f"/proc/{pid}"):
        return f"by criu-model pid {pid}{when}; a pid {pid} runs but holds no lock (reused?)"
    return f"by criu-model pid {pid}{when}, which died without thawing it"


# ------------------------------------------------------------------- guardian


@dataclass
class Guardian:
    """The dumper's end of a running guardian."""

    pid: int
    _pipe: int  # write end: F when freezing, D when thawed

    def arm(self) -> None:
        """Say the freeze is about to be written: from now on our death means thaw."""
        try:
            os.write(self._pipe, _ARMED)
        except OSError as err:  # EPIPE: someone killed it; do not freeze unguarded
            raise CriuModelError(f"the freeze guardian (pid {self.pid}) died before the "
                                 f"freeze: {err.strerror}; not freezing without it") from err

    def dismiss(self) -> None:
        """The dumper thawed the cgroup itself: tell the guardian to go, and reap it."""
        with contextlib.suppress(OSError):  # the guardian is already gone (EPIPE): reaped below
            os.write(self._pipe, _DONE)
        os.close(self._pipe)
        deadline = time.monotonic() + DISMISS_WAIT_S
        delay = 20e-6
        while True:
            try:
                pid, _status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return  # reaped by someone else (a SIGCHLD handler of the host program)
            if pid or time.monotonic() >= deadline:
                return
            time.sleep(delay)
            delay = min(delay * 2, 0.01)


def start_guardian(directory: str, keep_fds: tuple[int, ...] = ()) -> Guardian:
    """Fork the guardian of `directory`'s freeze; `keep_fds` (the lock) stay open in it.

    Every catchable signal is blocked across the fork, so the child is born
    deaf: no signal can reach it before it has left our session.
    """
    read_end, write_end = os.pipe()  # O_CLOEXEC: a program we run later holds no end
    max_fd = os.sysconf("SC_OPEN_MAX")
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        pid = os.fork()
        if pid == 0:
            _guardian_main(read_end, write_end, directory, keep_fds, max_fd)
    except OSError as err:
        os.close(read_end)
        os.close(write_end)
        raise CriuModelError(f"cannot fork the guardian of the cgroup freeze: "
                             f"{err.strerror}") from err
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    os.close(read_end)
    return Guardian(pid, write_end)


def _guardian_main(read_end: int, write_end: int, directory: str,
                   keep_fds: tuple[int, ...], max_fd: int) -> NoReturn:
    """The guardian's whole life: wait for F/D or EOF, thaw on EOF after F.

    Only os calls, no imports, no Python-level locks: a fork of a threaded
    program may have forked a held lock, and we must never touch it. Every
    inherited fd but ours and stdio (stderr tells of a failed thaw) is closed
    (close_range, Linux 5.9, where Python has it): it holds no pipe of its host.
    """
    status = 0
    try:
        os.setsid()  # out of the dumper's process group and terminal
        os.close(write_end)
        low = 3
        for fd in sorted(k for k in {read_end, *keep_fds} if k >= low):
            os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, max_fd)
        armed = done = False
        while not done:
            data = os.read(read_end, 16)
            if not data:
                break
            armed = armed or _ARMED in data
            done = _DONE in data
        if armed and not done:
            fd = os.open(f"{directory}/cgroup.freeze", os.O_WRONLY)
            os.write(fd, b"0")
            os.close(fd)
            clear_marker(directory)
    except OSError as err:
        status = 1
        with contextlib.suppress(OSError):
            os.write(2, f"criu-model guardian: could not thaw {directory}: "
                        f"{err.strerror}\n".encode())
    finally:
        os._exit(status)
