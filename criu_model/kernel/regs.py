"""Reading a stopped tracee's CPU state through ptrace(2): registers, signal mask, rseq.

Read only, by design: this module has no PTRACE_POKE* or SET* request, so a
dump can never change what the target computes.

Every request here needs the thread to be *our* tracee and in a ptrace-stop
(``freeze.py`` seizes and interrupts it); otherwise the kernel answers ESRCH,
the same as for a thread that no longer exists. A regset the architecture or
CPU does not offer answers EINVAL (unknown note type), ENODEV (e.g. no XSAVE)
or EIO. Errors come back as ``OSError`` with the errno, from ``libc.check``.

Layouts follow the kernel's uapi headers: ``arch/x86/include/asm/user_64.h``
and ``user_32.h`` (``struct user_regs_struct``), ``arch/arm64/include/uapi/
asm/ptrace.h`` (``struct user_pt_regs``), ``include/uapi/linux/ptrace.h``
(``ptrace_rseq_configuration``, ``ptrace_syscall_info``), ``elf.h`` (NT_*).
"""

from __future__ import annotations

import ctypes
import enum
import functools
import os

from criu_model.kernel.libc import check, libc

_ptrace = libc.ptrace
_ptrace.restype = ctypes.c_long
_ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]


class RegsRequest(enum.IntEnum):
    """The read-only requests we use (<linux/ptrace.h>, same numbers on every arch)."""

    GETREGSET = 0x4204  # Linux 2.6.34
    GETSIGMASK = 0x420A  # Linux 3.11
    GET_SYSCALL_INFO = 0x420E  # Linux 5.3
    GET_RSEQ_CONFIGURATION = 0x420F  # Linux 5.13


class NoteType(enum.IntEnum):
    """ELF note types naming a regset (<linux/elf.h>), the ``addr`` of GETREGSET."""

    PRSTATUS = 1  # general registers: struct user_regs_struct / user_pt_regs
    PRFPREG = 2  # FPU: x86_64 fxsave area (512 bytes), arm64 user_fpsimd_state
    X86_XSTATE = 0x202  # x86 XSAVE area; its size depends on the CPU's features
    ARM_TLS = 0x401  # arm64 tpidr_el0 (and tpidr2_el0 with SME, Linux 6.3)


class SyscallInfoOp(enum.IntEnum):
    """ptrace_syscall_info.op: which kind of stop the thread is in."""

    NONE = 0  # not a syscall stop (e.g. our PTRACE_INTERRUPT stop)
    ENTRY = 1
    EXIT = 2
    SECCOMP = 3


class AuditArch(enum.IntEnum):
    """AUDIT_ARCH_* (<linux/audit.h>): the syscall ABI the thread runs."""

    X86_64 = 0xC000003E
    I386 = 0x40000003
    AARCH64 = 0xC00000B7
    ARM = 0x40000028


# Size of the first GETREGSET buffer: larger than any regset of today (an x86
# XSAVE area with AMX tiles is ~11 KiB). The kernel shrinks iov_len to what it
# wrote; iov_len must be a multiple of the regset's word size (8 is for all).
REGSET_PROBE_SIZE = 64 * 1024
_REGSET_MAX_SIZE = 16 * 1024 * 1024
SIGSET_SIZE = 8  # the kernel's sigset_t (_NSIG = 64); GETSIGMASK insists on it


class IoVec(ctypes.Structure):
    """struct iovec (<sys/uio.h>)."""

    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class RseqConfiguration(ctypes.Structure):
    """struct ptrace_rseq_configuration (Linux 5.13)."""

    _fields_ = [
        ("rseq_abi_pointer", ctypes.c_uint64),  # the thread's struct rseq; 0: none
        ("rseq_abi_size", ctypes.c_uint32),  # rseq_len the thread registered
        ("signature", ctypes.c_uint32),  # RSEQ_SIG the abort handlers must carry
        ("flags", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
    ]


class _SyscallEntry(ctypes.Structure):
    _fields_ = [("nr", ctypes.c_uint64), ("args", ctypes.c_uint64 * 6)]


class _SyscallExit(ctypes.Structure):
    _fields_ = [("rval", ctypes.c_int64), ("is_error", ctypes.c_uint8)]


class _SyscallSeccomp(ctypes.Structure):
    _fields_ = [("nr", ctypes.c_uint64), ("args", ctypes.c_uint64 * 6),
                ("ret_data", ctypes.c_uint32)]


class _SyscallUnion(ctypes.Union):
    _fields_ = [("entry", _SyscallEntry), ("exit", _SyscallExit), ("seccomp", _SyscallSeccomp)]


class SyscallInfo(ctypes.Structure):
    """struct ptrace_syscall_info (Linux 5.3); at a non-syscall stop only the head is set."""

    _anonymous_ = ("u",)
    _fields_ = [
        ("op", ctypes.c_uint8),
        ("pad", ctypes.c_uint8 * 3),
        ("arch", ctypes.c_uint32),  # AUDIT_ARCH_*
        ("instruction_pointer", ctypes.c_uint64),
        ("stack_pointer", ctypes.c_uint64),
        ("u", _SyscallUnion),
    ]


# --- NT_PRSTATUS layouts ------------------------------------------------------

_U64 = ctypes.c_uint64
_U32 = ctypes.c_uint32


class UserRegsX86_64(ctypes.Structure):
    """struct user_regs_struct, arch/x86/include/asm/user_64.h (216 bytes)."""

    _fields_ = [(name, _U64) for name in (
        "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx",
        "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base",
        "gs_base", "ds", "es", "fs", "gs")]


class UserRegsI386(ctypes.Structure):
    """struct user_regs_struct, arch/x86/include/asm/user_32.h (68 bytes): the view
    the kernel gives of a 32-bit (ia32) task on an x86_64 kernel."""

    _fields_ = [(name, _U32) for name in (
        "ebx", "ecx", "edx", "esi", "edi", "ebp", "eax", "xds", "xes", "xfs", "xgs",
        "orig_eax", "eip", "xcs", "eflags", "esp", "xss")]


class UserPtRegsAarch64(ctypes.Structure):
    """struct user_pt_regs, arch/arm64/include/uapi/asm/ptrace.h (272 bytes)."""

    _fields_ = [*((f"x{i}", _U64) for i in range(31)), ("sp", _U64), ("pc", _U64),
                ("pstate", _U64)]


class UserRegsArm(ctypes.Structure):
    """The compat (AArch32) view on arm64: uregs[18] of struct pt_regs (72 bytes)."""

    _fields_ = [*((f"r{i}", _U32) for i in range(11)), ("fp", _U32), ("ip", _U32),
                ("sp", _U32), ("lr", _U32), ("pc", _U32), ("cpsr", _U32), ("orig_r0", _U32)]


# Which layout a raw NT_PRSTATUS of a given size is, per host architecture: the
# kernel picks the regset view from the *tracee* (a compat task gets the 32-bit one).
_LAYOUTS: dict[str, dict[int, tuple[str, type[ctypes.Structure]]]] = {
    "x86_64": {ctypes.sizeof(UserRegsX86_64): ("x86_64", UserRegsX86_64),
               ctypes.sizeof(UserRegsI386): ("i386", UserRegsI386)},
    "aarch64": {ctypes.sizeof(UserPtRegsAarch64): ("aarch64", UserPtRegsAarch64),
                ctypes.sizeof(UserRegsArm): ("arm", UserRegsArm)},
}
_LAYOUT_BY_ARCH = {arch: cls for table in _LAYOUTS.values() for arch, cls in table.values()}

# Regsets worth reading per host architecture, as (snapshot field, note type).
REGSETS: dict[str, tuple[tuple[str, NoteType], ...]] = {
    "x86_64": (("prstatus", NoteType.PRSTATUS), ("fpregs", NoteType.PRFPREG),
               ("xstate", NoteType.X86_XSTATE)),
    "aarch64": (("prstatus", NoteType.PRSTATUS), ("fpregs", NoteType.PRFPREG),
                ("arm_tls", NoteType.ARM_TLS)),
}


@functools.cache
def host_arch() -> str:
    """uname's machine (platform.machine(), without importing platform), cached."""
    return os.uname().machine


def prstatus_arch(size: int, host: str | None = None) -> str | None:
    """The architecture of a raw NT_PRSTATUS by its size, None if unknown."""
    entry = _LAYOUTS.get(host or host_arch(), {}).get(size)
    return entry[0] if entry else None


def decode_prstatus(raw: bytes, arch: str | None = None) -> dict[str, int]:
    """Raw NT_PRSTATUS bytes -> {register: value} in the header's order.

    `arch` (as stored in the snapshot) picks the layout; without it the size
    decides, for this host. ValueError when the size matches no layout we know.
    """
    arch = arch or prstatus_arch(len(raw))
    cls = _LAYOUT_BY_ARCH.get(arch or "")
    if cls is None or len(raw) != ctypes.sizeof(cls):
        raise ValueError(f"{len(raw)} bytes of NT_PRSTATUS match no known layout"
                         + (f" for {arch}" if arch else f" on {host_arch()}"))
    regs = cls.from_buffer_copy(raw)
    return {name: getattr(regs, name) for name, _ in cls._fields_}


def _ptrace_read(req: RegsRequest, tid: int, addr: int, data: ctypes.c_void_p | int,
                 what: str) -> int:
    return check(_ptrace(req, tid, addr, data), f"ptrace({req.name}{what}, {tid})")


# note -> the largest size the kernel returned in this run. A regset's size is
# fixed per boot (the XSAVE size follows the CPU's features), so asking with one
# word more than that is answered completely without a 64 KiB buffer (~25 us a call).
_seen_size: dict[NoteType, int] = {}


def get_regset(tid: int, note: NoteType, size: int | None = None) -> bytes:
    """PTRACE_GETREGSET (Linux 2.6.34): one regset exactly as the kernel returns it.

    The buffer starts at `size` (default: one word more than the largest answer
    seen, else REGSET_PROBE_SIZE) and doubles while the kernel fills it
    completely (it might hold more), so the answer is never cut short.
    """
    if size is None:
        seen = _seen_size.get(note)
        size = seen + 8 if seen is not None else REGSET_PROBE_SIZE
    size = max(8, size - size % 8)  # EINVAL unless a multiple of the word size
    while True:
        buf = ctypes.create_string_buffer(size)
        iov = IoVec(ctypes.cast(buf, ctypes.c_void_p), size)
        _ptrace_read(RegsRequest.GETREGSET, tid, int(note), ctypes.addressof(iov),
                     f" {note.name}")
        got = int(iov.iov_len)
        if got < size or size >= _REGSET_MAX_SIZE:
            if got > _seen_size.get(note, -1):
                _seen_size[note] = got
            return ctypes.string_at(buf, got)
        size *= 2


def get_sigmask(tid: int) -> int:
    """PTRACE_GETSIGMASK (Linux 3.11): the blocked-signal mask, bit N-1 for signal N.

    Better than /proc's SigBlk for a thread inside ppoll/pselect/sigsuspend: the
    kernel returns the mask to be restored when that call returns (saved_sigmask).
    """
    mask = ctypes.c_uint64()
    _ptrace_read(RegsRequest.GETSIGMASK, tid, SIGSET_SIZE, ctypes.addressof(mask), "")
    return mask.value


def get_rseq_configuration(tid: int) -> RseqConfiguration:
    """PTRACE_GET_RSEQ_CONFIGURATION (Linux 5.13): the thread's registered rseq area."""
    conf = RseqConfiguration()
    _ptrace_read(RegsRequest.GET_RSEQ_CONFIGURATION, tid, ctypes.sizeof(conf),
                 ctypes.addressof(conf), "")
    return conf


def get_syscall_info(tid: int) -> SyscallInfo:
    """PTRACE_GET_SYSCALL_INFO (Linux 5.3). At an interrupt stop op is NONE and only
    arch, instruction_pointer and stack_pointer are filled: arch is the one use."""
    info = SyscallInfo()
    _ptrace_read(RegsRequest.GET_SYSCALL_INFO, tid, ctypes.sizeof(info),
                 ctypes.addressof(info), "")
    return info
