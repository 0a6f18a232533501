"""A real two-threaded process with known register state, for the regs tests.

Parent side::

    with spawn_regs_child() as child:
        child.pid, child.main, child.reader   # ThreadInfo: tid, fs_base, rseq, sigmask
        child.ping()                          # the reader answers: it still runs

Child side (this file run as a script, ``python regschild.py REPORT_FD CMD_FD``):

- the main thread blocks SIGHUP, starts the reader, reports and sits in
  ``pause()`` (x86_64 syscall 34; ppoll, 73, on arm64);
- the reader thread (inheriting SIGHUP) also blocks SIGUSR1, SIGUSR2 and
  SIGRTMIN+1, reports and blocks in ``read(CMD_FD, 1)`` (syscall 0; 63); each byte
  it reads is answered with a ``{"pong": HEX}`` line on the report pipe.

Each thread reports its own tid, FS base (``arch_prctl(ARCH_GET_FS)``, syscall
158; 0 off x86_64), rseq area (FS base + glibc's ``__rseq_offset``; 0 when glibc registers
none) and signal mask. The parent waits until both threads sit in their
syscalls (``/proc/PID/task/TID/syscall``) before handing the child out, and
always kills it.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import platform
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

# (read, what glibc's pause() calls) per arch: arm64 has no pause(2), glibc uses ppoll.
_SYSCALLS = {"x86_64": (0, 34), "aarch64": (63, 73)}
SYS_READ, SYS_PAUSE = _SYSCALLS.get(platform.machine(), (-1, -1))
SYS_ARCH_PRCTL, ARCH_GET_FS = 158, 0x1003  # x86_64
MAIN_BLOCKED = frozenset({signal.SIGHUP})
READER_BLOCKED = MAIN_BLOCKED | {signal.SIGUSR1, signal.SIGUSR2, signal.SIGRTMIN + 1}

IS_X86_64 = platform.machine() == "x86_64"
X86_64_ONLY = "the register names, syscall numbers and arch_prctl asserted are x86_64's"


def mask_bits(signals: set[int] | frozenset[int]) -> int:
    """A signal set as the kernel's sigset word: bit N-1 for signal N."""
    bits = 0
    for sig in signals:
        bits |= 1 << (int(sig) - 1)
    return bits


@dataclass
class ThreadInfo:
    tid: int
    fs_base: int
    rseq: int
    sigmask: int
    syscall: list[int]  # /proc/PID/task/TID/syscall just before the handover: nr args sp pc


@dataclass
class RegsChild:
    proc: subprocess.Popen[bytes]
    main: ThreadInfo
    reader: ThreadInfo
    cmd_fd: int  # the child's fd number of the pipe its reader thread reads
    _cmd_w: int
    _report_r: int

    @property
    def pid(self) -> int:
        return self.proc.pid

    def ping(self, byte: bytes = b"x", timeout: float = 5.0) -> bytes:
        """Send one byte to the reader and return what it answers."""
        os.write(self._cmd_w, byte)
        line = _read_line(self._report_r, self.proc, time.monotonic() + timeout)
        return bytes.fromhex(json.loads(line)["pong"])


def _read_line(fd: int, proc: subprocess.Popen[bytes], deadline: float,
               buf: bytearray | None = None) -> bytes:
    data = buf if buf is not None else bytearray()
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the regs child did not report")
        if proc.poll() is not None:
            raise RuntimeError(f"the regs child exited with {proc.returncode}")
        ready, _, _ = select.select([fd], [], [], min(left, 0.1))
        if ready:
            data += os.read(fd, 1)  # byte by byte: a line never swallows the next one
    line, _, rest = bytes(data).partition(b"\n")
    data[:] = rest
    return line


def _syscall_of(pid: int, tid: int) -> list[int] | None:
    """/proc/PID/task/TID/syscall as numbers, None while the thread runs or is gone."""
    try:
        with open(f"/proc/{pid}/task/{tid}/syscall") as f:
            words = f.read().split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    if not words or words[0] in ("running", "-1"):
        return None
    return [int(w, 0) for w in words]


def _state(pid: int, tid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data[data.rindex(b")") + 2:][:1].decode()


def wait_in_syscall(pid: int, tid: int, nr: int, deadline: float) -> list[int]:
    """Until the thread is asleep (S) inside syscall `nr`; returns its syscall line."""
    while True:
        words = _syscall_of(pid, tid)
        if words is not None and words[0] == nr and _state(pid, tid) == "S":
            return words
        if time.monotonic() > deadline:
            raise TimeoutError(f"thread {tid} of {pid} never slept in syscall {nr} "
                               f"(syscall {words}, state {_state(pid, tid)})")
        time.sleep(0.002)


@contextlib.contextmanager
def spawn_regs_child(timeout: float = 10.0) -> Iterator[RegsChild]:
    """Start the child, wait until both threads sleep in their syscalls; always kill it."""
    if SYS_READ < 0:
        import pytest  # only the parent side needs it

        pytest.skip(f"no syscall numbers for {platform.machine()} in tests/regschild.py")
    report_r, report_w = os.pipe()
    cmd_r, cmd_w = os.pipe()
    try:
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), str(report_w),
                                 str(cmd_r)], pass_fds=(report_w, cmd_r),
                                stdin=subprocess.DEVNULL, start_new_session=True)
    except BaseException:
        for fd in (report_r, report_w, cmd_r, cmd_w):
            os.close(fd)
        raise
    os.close(report_w)
    os.close(cmd_r)
    try:
        deadline = time.monotonic() + timeout
        buf = bytearray()
        infos = {}
        while len(infos) < 2:
            record = json.loads(_read_line(report_r, proc, deadline, buf))
            if "error" in record:
                raise RuntimeError(f"regs child failed:\n{record['error']}")
            infos[record.pop("role")] = record
        threads = {}
        for role, nr in (("main", SYS_PAUSE), ("reader", SYS_READ)):
            info = infos[role]
            words = wait_in_syscall(proc.pid, info["tid"], nr, deadline)
            threads[role] = ThreadInfo(info["tid"], info["fs_base"], info["rseq"],
                                       info["sigmask"], words)
        yield RegsChild(proc, threads["main"], threads["reader"], cmd_r, cmd_w, report_r)
    finally:
        proc.kill()
        proc.wait()
        os.close(report_r)
        os.close(cmd_w)


# ----------------------------------------------------------------- child side


def _child(report_fd: int, cmd_fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    lock = threading.Lock()

    def fs_base() -> int:
        if not IS_X86_64:
            return 0  # arm64 keeps TLS in tpidr_el0, which Python cannot read
        addr = ctypes.c_ulong()
        if libc.syscall(ctypes.c_long(SYS_ARCH_PRCTL), ctypes.c_long(ARCH_GET_FS),
                        ctypes.byref(addr)) != 0:
            raise OSError(ctypes.get_errno(), "arch_prctl(ARCH_GET_FS)")
        return addr.value

    def rseq_area() -> int:
        try:  # glibc 2.35+: the rseq area lives at thread pointer + __rseq_offset
            offset = ctypes.c_ssize_t.in_dll(libc, "__rseq_offset").value
            size = ctypes.c_uint.in_dll(libc, "__rseq_size").value
        except ValueError:
            return 0
        return fs_base() + offset if size else 0

    def report(role: str) -> None:
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        record = {"role": role, "tid": threading.get_native_id(), "fs_base": fs_base(),
                  "rseq": rseq_area(), "sigmask": mask_bits(set(mask))}
        with lock:
            os.write(report_fd, (json.dumps(record) + "\n").encode())

    def reader() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, READER_BLOCKED)
        report("reader")
        while True:
            byte = os.read(cmd_fd, 1)  # the read(2) the tests look for
            if not byte:
                os._exit(0)
            with lock:
                os.write(report_fd, (json.dumps({"pong": byte.hex()}) + "\n").encode())

    signal.pthread_sigmask(signal.SIG_BLOCK, MAIN_BLOCKED)
    threading.Thread(target=reader, daemon=True).start()
    report("main")
    while True:
        signal.pause()  # glibc's pause(): pause(2) on x86_64, ppoll(2) on arm64


if __name__ == "__main__":
    _child(int(sys.argv[1]), int(sys.argv[2]))
