"""Parse /proc/PID/stat (and /proc/PID/task/TID/stat).

One line (fs/proc/array.c, do_task_stat)::

    PID (COMM) STATE PPID PGRP SESSION TTY_NR TPGID FLAGS ... EXIT_CODE

COMM is printed raw (not escaped, unlike the Name: line of status): it can hold
spaces, ``(``, ``)`` and even a newline. Everything after it is plain numbers,
so the only safe split point is the *last* ``)`` of the line. Field numbers
below are the 1-based numbers of proc(5).
"""

from __future__ import annotations

import enum
from typing import NamedTuple

# Index in the list of space-separated fields that follow ") ": field N of
# proc(5) sits at N - 3 (field 3, the state, is the first one after comm).
_STATE = 0
_PPID = 1
_PGRP = 2
_SESSION = 3
_TTY_NR = 4
_TPGID = 5
_FLAGS = 6
_UTIME = 11
_STIME = 12
_NICE = 16
_NUM_THREADS = 17
_STARTTIME = 19
_VSIZE = 20
_RSS = 21
_EXIT_SIGNAL = 35
_RT_PRIORITY = 37
_POLICY = 38
_EXIT_CODE = 49  # field 52, printed since Linux 3.5


class TaskFlag(enum.IntFlag):
    """PF_* bits of stat field 9 (include/linux/sched.h) that we interpret."""

    EXITING = 0x00000004
    WQ_WORKER = 0x00000020
    FORKNOEXEC = 0x00000040
    SUPERPRIV = 0x00000100
    DUMPCORE = 0x00000200
    SIGNALED = 0x00000400
    KTHREAD = 0x00200000


class StatFields(NamedTuple):
    """The /proc/PID/stat fields criu-model records, already converted."""

    pid: int
    comm: bytes
    state: str
    ppid: int
    pgid: int
    sid: int
    tty_nr: int
    tpgid: int
    flags: int
    utime: int
    stime: int
    nice: int
    num_threads: int
    start_time: int
    vsize: int
    rss_pages: int
    exit_signal: int
    rt_priority: int
    policy: int
    exit_code: int | None  # None on kernels older than 3.5 (field absent)

    @property
    def is_kthread(self) -> bool:
        return bool(self.flags & TaskFlag.KTHREAD)


class StatParseError(ValueError):
    """The text is not a /proc/PID/stat line."""


def _split(data: bytes) -> tuple[int, bytes, list[bytes]]:
    open_paren = data.find(b" (")
    close_paren = data.rfind(b")")
    if open_paren <= 0 or close_paren < open_paren:
        raise StatParseError(f"no '(comm)' in stat line {data[:80]!r}")
    pid = int(data[:open_paren])
    rest = data[close_paren + 2 :].split()
    return pid, data[open_paren + 2 : close_paren], rest


def parse_stat(data: bytes) -> StatFields:
    """Parse one stat line; raises StatParseError on a malformed line."""
    try:
        pid, comm, f = _split(data)
        return StatFields(
            pid=pid,
            comm=comm,
            state=f[_STATE].decode("ascii"),
            ppid=int(f[_PPID]),
            pgid=int(f[_PGRP]),
            sid=int(f[_SESSION]),
            tty_nr=int(f[_TTY_NR]),
            tpgid=int(f[_TPGID]),
            flags=int(f[_FLAGS]),
            utime=int(f[_UTIME]),
            stime=int(f[_STIME]),
            nice=int(f[_NICE]),
            num_threads=int(f[_NUM_THREADS]),
            start_time=int(f[_STARTTIME]),
            vsize=int(f[_VSIZE]),
            rss_pages=int(f[_RSS]),
            exit_signal=int(f[_EXIT_SIGNAL]),
            rt_priority=int(f[_RT_PRIORITY]),
            policy=int(f[_POLICY]),
            exit_code=int(f[_EXIT_CODE]) if len(f) > _EXIT_CODE else None,
        )
    except StatParseError:
        raise
    except (IndexError, ValueError, UnicodeDecodeError) as err:
        raise StatParseError(f"malformed stat line {data[:80]!r}: {err}") from err


def parse_state(data: bytes) -> str:
    """Only the one-letter state: the fast path for "is it stopped / a zombie?"."""
    close_paren = data.rfind(b")")
    if close_paren < 0 or close_paren + 2 >= len(data):
        raise StatParseError(f"malformed stat line {data[:80]!r}")
    return chr(data[close_paren + 2])


def parse_ppid(data: bytes) -> int:
    """Only the parent pid: the fast path used to scan every process on the system."""
    close_paren = data.rfind(b")")
    # ") S PPID ": the state is a single character.
    start = close_paren + 4
    end = data.find(b" ", start)
    if close_paren < 0 or end < 0:
        raise StatParseError(f"malformed stat line {data[:80]!r}")
    return int(data[start:end])
