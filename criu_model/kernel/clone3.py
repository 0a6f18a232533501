"""clone3(2) probing: does this kernel have clone3, and clone3 with set_tid?

A restore needs set_tid to recreate processes with their original pids. We
only *probe* here, with calls the kernel rejects while copying the argument
struct, before anything is created:

* size 0 is below CLONE_ARGS_SIZE_VER0 -> EINVAL if clone3 exists, else ENOSYS
  (clone3: Linux 5.3).
* a VER1 struct (80 bytes) with set_tid=0 and set_tid_size=33: a 5.5+ kernel
  knows the field and rejects the size above
  MAX_PID_NS_LEVEL (32) with EINVAL; a 5.3/5.4 kernel sees non-zero bytes
  past its 64-byte struct and fails with E2BIG.

As a second guard the flags ask for CLONE_THREAD without CLONE_SIGHAND, which
copy_process() rejects with EINVAL too: even a kernel that skipped the
checks above could not create a process from this probe.
"""

from __future__ import annotations

import ctypes
import enum
import errno
from dataclasses import dataclass

from criu_model.kernel.libc import syscall

CLONE_ARGS_SIZE_VER0 = 64
CLONE_ARGS_SIZE_VER1 = 80  # + set_tid, set_tid_size (Linux 5.5)
CLONE_ARGS_SIZE_VER2 = 88  # + cgroup (Linux 5.7)
MAX_PID_NS_LEVEL = 32


class CloneFlag(enum.IntFlag):
    SIGHAND = 0x00000800
    THREAD = 0x00010000


class CloneArgs(ctypes.Structure):
    """struct clone_args from <linux/sched.h>, all fields __aligned_u64."""

    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("pidfd", ctypes.c_uint64),
        ("child_tid", ctypes.c_uint64),
        ("parent_tid", ctypes.c_uint64),
        ("exit_signal", ctypes.c_uint64),
        ("stack", ctypes.c_uint64),
        ("stack_size", ctypes.c_uint64),
        ("tls", ctypes.c_uint64),
        ("set_tid", ctypes.c_uint64),
        ("set_tid_size", ctypes.c_uint64),
        ("cgroup", ctypes.c_uint64),
    ]


assert ctypes.sizeof(CloneArgs) == CLONE_ARGS_SIZE_VER2


@dataclass(frozen=True)
class Probe:
    """The answer of a probe and the one-line reason for it."""

    available: bool
    detail: str


def _errno_of(args: CloneArgs | None, size: int) -> int:
    """Run the rejected clone3 call; the errno it failed with (0 never expected)."""
    ptr = ctypes.c_void_p(ctypes.addressof(args)) if args is not None else ctypes.c_void_p(0)
    try:
        ret = syscall("clone3", ptr, ctypes.c_size_t(size))
    except OSError as err:
        return err.errno or 0
    # Unreachable by construction (see module docstring); if it ever happened
    # in the parent we must not pretend the probe worked.
    raise RuntimeError(f"clone3 probe unexpectedly returned {ret}")


def probe_clone3() -> Probe:
    """Is the clone3 syscall there at all?"""
    err = _errno_of(None, 0)
    if err == errno.EINVAL:
        return Probe(True, "clone3 present (Linux 5.3+)")
    if err == errno.ENOSYS:
        return Probe(False, "ENOSYS: kernel < 5.3, or a seccomp filter hides clone3")
    if err == errno.EPERM:
        return Probe(False, "EPERM: blocked by a seccomp filter")
    return Probe(False, f"unexpected {errno.errorcode.get(err, err)} from clone3 probe")


def probe_set_tid() -> Probe:
    """Does clone3 understand set_tid (choose the pid of the new process)?"""
    base = probe_clone3()
    if not base.available:
        return base
    args = CloneArgs(flags=CloneFlag.THREAD, set_tid=0, set_tid_size=MAX_PID_NS_LEVEL + 1)
    err = _errno_of(args, CLONE_ARGS_SIZE_VER1)
    if err == errno.EINVAL:
        # Using it also needs CAP_SYS_ADMIN, or CAP_CHECKPOINT_RESTORE (5.9), in the pid ns.
        return Probe(True, "set_tid understood (Linux 5.5+)")
    if err == errno.E2BIG:
        return Probe(False, "E2BIG: clone3 without set_tid (Linux 5.3/5.4)")
    return Probe(False, f"unexpected {errno.errorcode.get(err, err)} from set_tid probe")
