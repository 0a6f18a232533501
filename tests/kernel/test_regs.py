"""The raw read-only ptrace wrappers against a real, ptrace-frozen two-threaded child."""

from __future__ import annotations

import ctypes
import errno
import subprocess
from collections.abc import Iterator

import pytest

from criu_model.freeze import frozen
from criu_model.kernel import regs
from tests.regschild import IS_X86_64, X86_64_ONLY, RegsChild, spawn_regs_child

x86_64_only = pytest.mark.skipif(not IS_X86_64, reason=X86_64_ONLY)
ERESTARTSYS, ERESTARTNOHAND = 512, 514  # kernel-internal restart codes seen in rax


@pytest.fixture
def child() -> Iterator[RegsChild]:
    with spawn_regs_child() as proc:
        yield proc


def _s64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def test_layout_sizes_match_the_headers() -> None:
    assert ctypes.sizeof(regs.UserRegsX86_64) == 27 * 8
    assert ctypes.sizeof(regs.UserRegsI386) == 17 * 4
    assert ctypes.sizeof(regs.UserPtRegsAarch64) == 34 * 8
    assert ctypes.sizeof(regs.UserRegsArm) == 18 * 4
    assert ctypes.sizeof(regs.RseqConfiguration) == 24
    assert ctypes.sizeof(regs.SyscallInfo) == 88


def test_decode_keeps_header_order_and_values() -> None:
    raw = bytes(regs.UserRegsX86_64(*range(1, 28)))
    decoded = regs.decode_prstatus(raw, "x86_64")
    assert list(decoded)[:3] == ["r15", "r14", "r13"] and list(decoded)[-1] == "gs"
    assert decoded["r15"] == 1 and decoded["orig_rax"] == 16 and decoded["fs_base"] == 22
    arm = regs.decode_prstatus(bytes(regs.UserPtRegsAarch64(*range(34))), "aarch64")
    assert arm["x30"] == 30 and arm["sp"] == 31 and arm["pc"] == 32 and arm["pstate"] == 33
    i386 = regs.decode_prstatus(bytes(regs.UserRegsI386(*range(17))), "i386")
    assert i386["orig_eax"] == 11 and i386["eip"] == 12


def test_decode_by_size_on_this_host() -> None:
    if regs.host_arch() not in ("x86_64", "aarch64"):
        pytest.skip(f"no layouts for {regs.host_arch()}")
    cls = regs.UserRegsX86_64 if IS_X86_64 else regs.UserPtRegsAarch64
    assert regs.prstatus_arch(ctypes.sizeof(cls)) == regs.host_arch()
    assert list(regs.decode_prstatus(bytes(cls()))) == [n for n, _ in cls._fields_]


def test_decode_rejects_unknown_sizes() -> None:
    with pytest.raises(ValueError, match="no known layout"):
        regs.decode_prstatus(b"\0" * 100)
    with pytest.raises(ValueError, match="for x86_64"):
        regs.decode_prstatus(b"\0" * 68, "x86_64")


def test_no_request_that_writes() -> None:
    """Read only by construction: no SET or POKE request exists in the module."""
    writers = {4, 5, 6, 13, 15, 0x4200, 0x4203, 0x4205, 0x420B}  # POKE*, SET*
    assert not {int(r) for r in regs.RegsRequest} & writers
    assert not [r for r in regs.RegsRequest if r.name.startswith(("SET", "POKE"))]
    assert not [n for n in dir(regs) if "poke" in n.lower() or n.lower().startswith("set")]


@x86_64_only
def test_regsets_of_a_thread_in_read(child: RegsChild) -> None:
    tid = child.reader.tid
    with frozen([child.pid], "ptrace") as report:
        assert tid in report.tids
        raw = regs.get_regset(tid, regs.NoteType.PRSTATUS)
        fpregs = regs.get_regset(tid, regs.NoteType.PRFPREG)
        xstate = regs.get_regset(tid, regs.NoteType.X86_XSTATE)
        grown = regs.get_regset(tid, regs.NoteType.X86_XSTATE, size=8)  # buffer doubles
        with pytest.raises(OSError) as info:
            regs.get_regset(tid, regs.NoteType.ARM_TLS)
    assert info.value.errno == errno.EINVAL
    assert len(raw) == ctypes.sizeof(regs.UserRegsX86_64)
    r = regs.decode_prstatus(raw)
    nr, fd, *_, sp, pc = child.reader.syscall
    assert r["orig_rax"] == nr == 0
    assert r["rdi"] == fd == child.cmd_fd
    assert r["rsp"] == sp and r["rip"] == pc  # /proc's view before the freeze
    assert _s64(r["rax"]) == -ERESTARTSYS  # interrupted; restarted when it resumes
    assert r["fs_base"] == child.reader.fs_base
    assert len(fpregs) == 512  # the fxsave area
    assert grown == xstate
    # ptrace's XSAVE layout (standard format): the fxsave area's software-reserved
    # word holds the XCR0 features the kernel saves, then the XSAVE header.
    xcr0 = int.from_bytes(xstate[464:472], "little")
    xstate_bv = int.from_bytes(xstate[512:520], "little")
    xcomp_bv = int.from_bytes(xstate[520:528], "little")
    assert xcr0 & 0b11 == 0b11  # x87 and SSE always
    assert xstate_bv & ~xcr0 == 0 and xcomp_bv == 0
    assert len(xstate) % 64 == 0 and len(xstate) >= 512 + 64
    if xcr0 & 0b100:  # AVX: the YMM upper halves at 576..831
        assert len(xstate) >= 832
    assert child.ping() == b"x"  # still runs, its read() restarted fine


@x86_64_only
def test_sigmask_rseq_and_syscall_info(child: RegsChild) -> None:
    with frozen([child.pid], "ptrace"):
        masks = {t.tid: regs.get_sigmask(t.tid) for t in (child.main, child.reader)}
        rseq = {t.tid: regs.get_rseq_configuration(t.tid) for t in (child.main, child.reader)}
        info = regs.get_syscall_info(child.main.tid)
        main_regs = regs.decode_prstatus(regs.get_regset(child.main.tid,
                                                         regs.NoteType.PRSTATUS))
    assert masks == {child.main.tid: child.main.sigmask, child.reader.tid: child.reader.sigmask}
    assert child.main.sigmask != child.reader.sigmask  # per thread, not per process
    for t in (child.main, child.reader):
        assert rseq[t.tid].rseq_abi_pointer == t.rseq
        if t.rseq:
            assert rseq[t.tid].signature == 0x53053053  # glibc's RSEQ_SIG on x86
            assert rseq[t.tid].rseq_abi_size >= 20
    assert info.op == regs.SyscallInfoOp.NONE  # an interrupt stop, not a syscall stop
    assert info.arch == regs.AuditArch.X86_64
    assert info.instruction_pointer == main_regs["rip"]
    assert info.stack_pointer == main_regs["rsp"]
    assert main_regs["orig_rax"] == 34 and _s64(main_regs["rax"]) == -ERESTARTNOHAND
    assert child.ping(b"y") == b"y"


def test_a_thread_not_stopped_by_us_is_esrch(child: RegsChild) -> None:
    """Running and untraced: the kernel answers as if it did not exist."""
    for call in (lambda: regs.get_regset(child.pid, regs.NoteType.PRSTATUS),
                 lambda: regs.get_sigmask(child.pid),
                 lambda: regs.get_rseq_configuration(child.pid)):
        with pytest.raises(ProcessLookupError):
            call()


def test_a_vanished_thread_is_esrch() -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    with pytest.raises(ProcessLookupError):
        regs.get_regset(gone.pid, regs.NoteType.PRSTATUS)
