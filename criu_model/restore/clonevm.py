"""A process that shares its creator's address space (CLONE_VM, maybe CLONE_SIGHAND).

A Python worker cannot be such a process: a second interpreter running in the
same memory would run over the first one's heap. So the child runs no Python.
clone3 is called from a few bytes of x86_64 machine code, and in the child
those bytes become a syscall mailbox: the child sleeps on a futex, runs the
one system call its creator wrote into the shared mailbox, writes back the
result and sleeps again. The creator (a worker) runs the child's plan steps
through it: setsid, setpgid and dup3 are executed by the child itself, on its
own process and its own fd table. An fd the creator made is moved into the
child's table with pidfd_getfd (Linux 5.6), run by the child on a pidfd of
the creator.

This is the seed of a restorer core that executes steps without an
interpreter. Only x86_64 is supported: elsewhere `spawn` raises ENOSYS and the
caller reports the sharing as not rehearsed.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import signal
import struct

from criu_model.kernel.clone3 import CLONE_ARGS_SIZE_VER1, CloneArgs

# Hand-assembled (GNU as, intel syntax), offsets on the left:
#  entry(rdi = struct clone_args *, rsi = its size, rdx = mailbox):
#   00 push rbx; mov rbx, rdx; mov eax, 435 (clone3); syscall
#   0b test rax, rax; jz wait; pop rbx; ret        (the creator returns the pid or -errno)
#  wait:                                           (the child: rbx = mailbox, own stack)
#   12 mov eax, [rbx]; cmp eax, 1; je run
#   19 futex(rbx, FUTEX_WAIT, eax, NULL); jmp wait
#  run:
#   2c rax, rdi, rsi, rdx, r10, r8, r9 = [rbx+8 .. rbx+56]; syscall
#   4a [rbx+64] = rax; [rbx] = 2 (done); futex(rbx, FUTEX_WAKE, 1); jmp wait
# The child never calls, pushes or touches TLS; only a signal handler would use its stack.
_CODE_X86_64 = bytes.fromhex(
    "534889d3b8b30100000f054885c074025bc3"
    "8b0383f801741389c24889df31f64531d2b8ca0000000f05ebe6"
    "488b4308488b7b10488b7318488b53204c8b53284c8b43304c8b4b380f05"
    "48894340c703020000004889dfbe01000000ba01000000b8ca0000000f05eba8")
IDLE, REQUEST, DONE = 0, 1, 2
_MAILBOX = struct.Struct("=I4x7Qq")   # state, nr, 6 args, result (offsets 0, 8..56, 64)
_STACK = 64 * 1024

# x86_64 numbers of what the mailbox runs (the only architecture with machine code here)
SYS = {"close": 3, "ioctl": 16, "dup2": 33, "fcntl": 72, "exit": 60, "chdir": 80,
       "setpgid": 109,
       "setsid": 112, "epoll_ctl": 233, "unshare": 272, "dup3": 292, "prlimit64": 302,
       "close_range": 436, "pidfd_getfd": 438, "futex": 202}
FUTEX_WAIT, FUTEX_WAKE = 0, 1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_code: list[object] = []   # the code page: mapped once, kept for the process's life


def _entry() -> ctypes._CFuncPtr:
    if os.uname().machine != "x86_64":
        raise OSError(errno.ENOSYS, "a CLONE_VM child runs x86_64 machine code only")
    if not _code:
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE
                         | mmap.PROT_EXEC)
        page.write(_CODE_X86_64)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(page))
        proto = ctypes.CFUNCTYPE(ctypes.c_long, ctypes.c_void_p, ctypes.c_size_t,
                                 ctypes.c_void_p)
        _code.extend([page, proto(addr)])
    return _code[1]  # type: ignore[return-value]


class VmChild:
    """The creator's handle on one mailbox child: its pid and a syscall runner."""

    def __init__(self, pid: int, mailbox: mmap.mmap, stack: mmap.mmap) -> None:
        self.pid = pid
        self._box = mailbox
        self._stack = stack      # the child's: unmapped only with the address space
        self._addr = ctypes.addressof(ctypes.c_char.from_buffer(mailbox))
        self.alive = True

    def _state(self) -> int:
        return int(struct.unpack_from("=I", self._box, 0)[0])

    def call(self, name: str, *args: int) -> int:
        """Run syscall `name` in the child; its return value, or OSError(-errno)."""
        if not self.alive:
            raise OSError(errno.ESRCH, f"the CLONE_VM child {self.pid} has exited")
        regs = [int(a) & 0xFFFFFFFFFFFFFFFF for a in args] + [0] * (6 - len(args))
        struct.pack_into("=7Q", self._box, 8, SYS[name], *regs)
        struct.pack_into("=I", self._box, 0, REQUEST)   # last: the child acts on it
        self._futex(FUTEX_WAKE, 1)
        while self._state() != DONE:
            self._futex(FUTEX_WAIT, REQUEST, timeout=0.5)
            if self._state() != DONE and not _running(self.pid):
                self.alive = False
                raise OSError(errno.ESRCH, f"the CLONE_VM child {self.pid} died in {name}")
        ret = int(struct.unpack_from("=q", self._box, 64)[0])
        struct.pack_into("=I", self._box, 0, IDLE)
        if ret < 0:
            raise OSError(-ret, f"{name} in the CLONE_VM child: {os.strerror(-ret)}")
        return ret

    def exit(self, code: int, sig: int = 0) -> None:
        """End the child (a zombie until its creator reaps it), by exit(2) or a signal.

        A signal exit must not dump core: RLIMIT_CORE is the child's own (no CLONE_THREAD).
        """
        if sig:
            self.call("prlimit64", 0, 4, ctypes.addressof(_ZERO_LIMIT), 0)  # RLIMIT_CORE
            os.kill(self.pid, sig)
        else:
            regs = [SYS["exit"], code & 0xFF, 0, 0, 0, 0, 0]
            struct.pack_into("=7Q", self._box, 8, *regs)
            struct.pack_into("=I", self._box, 0, REQUEST)
            self._futex(FUTEX_WAKE, 1)
        self.alive = False
        os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)   # dead, not reaped

    def _futex(self, op: int, val: int, timeout: float | None = None) -> None:
        spec = None
        if timeout is not None:
            spec = (ctypes.c_long * 2)(int(timeout), int(timeout % 1 * 1e9))
        _libc.syscall(ctypes.c_long(SYS["futex"]), ctypes.c_void_p(self._addr),
                      ctypes.c_int(op), ctypes.c_int(val),
                      ctypes.byref(spec) if spec is not None else None,
                      ctypes.c_void_p(0), ctypes.c_int(0))


_ZERO_LIMIT = (ctypes.c_uint64 * 2)(0, 0)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except OSError:
        return False


def spawn(flags: int, set_tid: list[int]) -> VmChild:
    """clone3 with CLONE_VM (and whatever else `flags` has) into a mailbox child.

    It gets SIGCHLD as exit signal (a process, not a thread) and a stack of its own.
    """
    entry = _entry()
    mailbox = mmap.mmap(-1, mmap.PAGESIZE)
    stack = mmap.mmap(-1, _STACK)
    tids = (ctypes.c_int * max(len(set_tid), 1))(*set_tid)
    args = CloneArgs(flags=flags, exit_signal=signal.SIGCHLD,
                     stack=ctypes.addressof(ctypes.c_char.from_buffer(stack)),
                     stack_size=_STACK, set_tid=ctypes.addressof(tids) if set_tid else 0,
                     set_tid_size=len(set_tid))
    ret = entry(ctypes.addressof(args), CLONE_ARGS_SIZE_VER1,
                ctypes.addressof(ctypes.c_char.from_buffer(mailbox)))
    if ret < 0:
        raise OSError(-ret, f"clone3 (CLONE_VM): {os.strerror(-ret)}")
    return VmChild(int(ret), mailbox, stack)
