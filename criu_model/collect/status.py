"""Parse /proc/PID/status: ``Key:\\tvalue`` lines (fs/proc/array.c).

The Name: value is escaped by the kernel (a newline in comm is printed as
``\\n``), so every line really is one line; we still take comm from stat,
where it is raw. Lines appear and disappear with kernel versions and process
state (a zombie has no Umask:, CONFIG_SECCOMP adds Seccomp:), so the parser
returns a plain mapping and callers decide what a missing key means.
"""

from __future__ import annotations

import os
from collections.abc import Callable


def parse_status(data: bytes) -> dict[bytes, bytes]:
    """Map each key (without the colon) to its value, surrounding whitespace stripped."""
    fields: dict[bytes, bytes] = {}
    for line in data.split(b"\n"):
        key, sep, value = line.partition(b":")
        if sep:
            fields[key] = value.strip()
    return fields


def parse_ids(value: bytes) -> list[int]:
    """A whitespace-separated list of decimal ids (Uid:, Groups:, NSpid:...)."""
    return [int(v) for v in value.split()]


def parse_mask(value: bytes) -> int:
    """A hexadecimal mask (SigBlk:, CapEff:...) as an integer."""
    return int(value, 16)


def parse_octal(value: bytes) -> int:
    """An octal value (Umask:)."""
    return int(value, 8)


# --- signals a sigwaitinfo() caller waits for (issue 14 item 6) ----------------
#
# rt_sigtimedwait (kernel/signal.c do_sigtimedwait) unblocks the awaited signals
# for the duration of the wait only: it saves blocked in real_blocked, clears
# the awaited set from blocked, sleeps, and puts real_blocked back. Freezing
# (PTRACE_INTERRUPT or the cgroup freezer) wakes the sleeper: the call returns
# -EINTR and the thread stops with its blocked mask *restored*, so status read
# while frozen shows the awaited signals blocked, and any of them arriving
# during the freeze (a POSIX timer's tick to glibc's SIGEV_THREAD helper)
# pending, which the live thread never shows: after the thaw it calls
# sigwaitinfo again. The syscall number and arguments stay visible in
# /proc/TID/syscall (orig_ax), so the state before freezing is recomputed.

# include/uapi/asm-generic/unistd.h and arch/x86/entry/syscalls/syscall_64.tbl
_RT_SIGTIMEDWAIT = {"x86_64": 128, "aarch64": 137}
_SIGSET_BYTES = 8
_UNBLOCKABLE = (1 << (9 - 1)) | (1 << (19 - 1))  # SIGKILL, SIGSTOP


def parse_syscall(data: bytes) -> tuple[int, list[int]] | None:
    """/proc/TID/syscall: (number, six arguments), or None when not in a syscall.

    The kernel prints "running", "-1 SP PC" (not in a syscall) or
    "NR ARG0..ARG5 SP PC" in hex (fs/proc/base.c proc_pid_syscall).
    """
    words = data.split()
    if len(words) < 9 or words[0].startswith(b"-") or not words[0].isdigit():
        return None
    return int(words[0]), [int(w, 16) for w in words[1:7]]


def awaited_signals(syscall: tuple[int, list[int]] | None,
                    read_mem: Callable[[int, int], bytes | None], machine: str) -> int:
    """The set a thread waits for in rt_sigtimedwait (0 when it is not in one).

    ``read_mem(addr, size)`` reads the target's memory (read only); the set's
    bit N-1 is signal N, as in SigBlk. An unreadable set gives 0 (no correction).
    """
    if syscall is None or syscall[0] != _RT_SIGTIMEDWAIT.get(machine):
        return 0
    addr, size = syscall[1][0], syscall[1][3]
    if size != _SIGSET_BYTES or not addr:
        return 0
    data = read_mem(addr, size)
    if data is None or len(data) != size:
        return 0
    return int.from_bytes(data, "little") & ~_UNBLOCKABLE


class MemReader:
    """Reads a few bytes of a process through /proc/PID/mem (O_RDONLY: never a write)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None

    def __call__(self, addr: int, size: int) -> bytes | None:
        try:
            if self.fd is None:
                self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            return os.pread(self.fd, size, addr)
        except OSError:
            return None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
