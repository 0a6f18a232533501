"""ptrace(2) requests and tracee waits, the few we need to freeze a task.

We only ever SEIZE (never ATTACH): a seized tracee is not sent SIGSTOP, so
freezing does not change its signal state, and its stops are reported as
``PTRACE_EVENT_STOP`` which we can tell apart from signal-delivery-stops.

Errors come back as ``OSError`` with the errno; callers translate them
(ESRCH: gone or not stopped, EPERM: ptrace access denied).
"""

from __future__ import annotations

import ctypes
import enum
import os
from typing import NamedTuple

from criu_model.kernel.libc import check, libc

_ptrace = libc.ptrace
_ptrace.restype = ctypes.c_long
_ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]


class PtraceRequest(enum.IntEnum):
    """Request numbers from <linux/ptrace.h> (stable ABI, same on all arches)."""

    CONT = 7
    DETACH = 17
    SEIZE = 0x4206  # Linux 3.4
    INTERRUPT = 0x4207  # Linux 3.4
    LISTEN = 0x4208  # Linux 3.4


class PtraceEvent(enum.IntEnum):
    """The event number found in ``status >> 16`` of a ptrace stop."""

    NONE = 0  # a signal-delivery-stop: the stop signal is a real pending signal
    STOP = 128  # group-stop or PTRACE_INTERRUPT stop of a seized tracee


class WaitFlag(enum.IntFlag):
    """waitpid(2) flags; __WALL is not exported by the os module."""

    WNOHANG = os.WNOHANG
    WALL = 0x40000000  # __WALL: wait for threads (clone children) too


def _request(req: PtraceRequest, tid: int, addr: int = 0, data: int = 0) -> int:
    return check(_ptrace(req, tid, addr, data), f"ptrace({req.name}, {tid})")


def seize(tid: int, options: int = 0) -> None:
    """PTRACE_SEIZE one thread: it becomes our tracee but keeps running."""
    _request(PtraceRequest.SEIZE, tid, 0, options)


def interrupt(tid: int) -> None:
    """PTRACE_INTERRUPT: ask a seized thread to enter a PTRACE_EVENT_STOP."""
    _request(PtraceRequest.INTERRUPT, tid)


def cont(tid: int, sig: int = 0) -> None:
    """PTRACE_CONT, optionally injecting `sig` from a signal-delivery-stop."""
    _request(PtraceRequest.CONT, tid, 0, sig)


def detach(tid: int, sig: int = 0) -> None:
    """PTRACE_DETACH a *stopped* tracee; `sig` is injected if it was in a
    signal-delivery-stop (that is how a signal caught while freezing is not lost).

    A tracee that is running (not in a ptrace-stop) fails with ESRCH.
    """
    _request(PtraceRequest.DETACH, tid, 0, sig)


class WaitStatus(NamedTuple):
    """Decoded waitpid status of one tracee."""

    raw: int

    @property
    def exited(self) -> bool:
        """The thread is dead (exited or killed): it is no longer a tracee."""
        return os.WIFEXITED(self.raw) or os.WIFSIGNALED(self.raw)

    @property
    def stopped(self) -> bool:
        return os.WIFSTOPPED(self.raw)

    @property
    def stop_signal(self) -> int:
        return os.WSTOPSIG(self.raw)

    @property
    def event(self) -> int:
        """The ptrace event number (0 for a signal-delivery-stop)."""
        return (self.raw >> 16) & 0xFFFF

    @property
    def is_event_stop(self) -> bool:
        """Group-stop or interrupt stop: the tracee is parked, nothing pending."""
        return self.stopped and self.event == PtraceEvent.STOP

    @property
    def is_signal_stop(self) -> bool:
        """Signal-delivery-stop: `stop_signal` must be re-injected or it is lost."""
        return self.stopped and self.event == PtraceEvent.NONE


def wait_tracee(tid: int, nohang: bool = False) -> WaitStatus | None:
    """waitpid(tid, __WALL[|WNOHANG]); None when WNOHANG and nothing to report.

    Raises ChildProcessError (ECHILD) when `tid` is not (any longer) our tracee.
    Caution: if `tid` is the thread-group leader of our own child process and
    it died, this reaps it: the caller's later waitpid() gets ECHILD.
    """
    flags = WaitFlag.WALL | (WaitFlag.WNOHANG if nohang else 0)
    while True:
        try:
            got, status = os.waitpid(tid, int(flags))
        except InterruptedError:  # pragma: no cover - PEP 475 retries already
            continue
        if got == 0:
            return None
        return WaitStatus(status)
