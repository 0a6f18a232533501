"""collect_registers on a real ptrace-frozen child; regs.img round trip, validation, render."""

from __future__ import annotations

import io
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from criu_model.collect import regs as cregs
from criu_model.collect.regs import collect_registers, registers_not_captured
from criu_model.errors import InconsistentImage, UsageError
from criu_model.freeze import frozen
from criu_model.images import load, write
from criu_model.images.pb import inventory_pb2, process_pb2, regs_pb2
from criu_model.images.validate_regs import validate_registers
from criu_model.kernel import regs as kregs
from criu_model.render.threads import (
    registers_to_json,
    show_threads,
    sigmask_text,
    signal_name,
)
from criu_model.snapshot import Snapshot
from tests.images.sample import sample_snapshot
from tests.regschild import IS_X86_64, X86_64_ONLY, RegsChild, spawn_regs_child

x86_64_only = pytest.mark.skipif(not IS_X86_64, reason=X86_64_ONLY)
ALL_FIELDS = ["prstatus", "fpregs", "xstate", "sigmask", "rseq", "audit_arch"]  # x86_64


@pytest.fixture
def child() -> Iterator[RegsChild]:
    with spawn_regs_child() as proc:
        yield proc


def _gone_pid() -> int:
    """A pid that existed and was reaped: stands for a thread that vanished."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _by_tid(regs: regs_pb2.ProcessRegs) -> dict[int, regs_pb2.ThreadRegs]:
    return {t.tid: t for t in regs.threads}


@x86_64_only
def test_registers_of_a_frozen_child(child: RegsChild) -> None:
    with frozen([child.pid], "ptrace") as report:
        assert {child.main.tid, child.reader.tid} <= set(report.tids)
        regs = collect_registers(child.pid, report.tids)
        kernel_xstate = kregs.get_regset(child.reader.tid, kregs.NoteType.X86_XSTATE,
                                         kregs.REGSET_PROBE_SIZE)
    assert regs.pid == child.pid
    threads = _by_tid(regs)
    assert list(threads) == report.tids
    for info, nr in ((child.main, 34), (child.reader, 0)):  # pause(2), read(2)
        t = threads[info.tid]
        assert list(t.unreadable) == []
        assert t.arch == "x86_64" and t.audit_arch == kregs.AuditArch.X86_64
        r = kregs.decode_prstatus(t.prstatus, t.arch)
        assert r["orig_rax"] == nr == info.syscall[0]
        assert r["fs_base"] == info.fs_base
        assert (r["rsp"], r["rip"]) == (info.syscall[-2], info.syscall[-1])
        assert t.HasField("sigmask") and t.sigmask == info.sigmask
        assert t.HasField("rseq") and t.rseq.abi_pointer == info.rseq
        assert len(t.fpregs) == 512
        assert len(t.xstate) == len(kernel_xstate) > 512
    assert kregs.decode_prstatus(threads[child.reader.tid].prstatus)["rdi"] == child.cmd_fd
    assert threads[child.main.tid].sigmask != threads[child.reader.tid].sigmask
    assert {u.field for u in regs.unreadable} == {"sigactions", "sigaltstack"}
    assert all("parasite" in u.reason for u in regs.unreadable)
    assert child.ping() == b"x"  # unharmed: the interrupted read() restarted
    assert child.proc.poll() is None


@x86_64_only
def test_a_vanished_thread_is_unreadable_not_a_crash(child: RegsChild) -> None:
    gone = _gone_pid()
    with frozen([child.pid], "ptrace") as report:
        regs = collect_registers(child.pid, [*report.tids, gone])
    threads = _by_tid(regs)
    assert list(threads[child.reader.tid].unreadable) == []
    lost = threads[gone]
    assert [u.field for u in lost.unreadable] == ALL_FIELDS
    assert all(u.reason == "the thread exited (ESRCH)" for u in lost.unreadable)
    assert not lost.prstatus and not lost.HasField("sigmask") and not lost.HasField("rseq")
    assert child.ping(b"q") == b"q"
    assert child.proc.poll() is None


def test_threads_not_stopped_by_us_are_unreadable(child: RegsChild) -> None:
    """Without the freeze the kernel refuses (ESRCH): the reason says why, nothing is zero."""
    regs = collect_registers(child.pid, [child.main.tid, child.reader.tid])
    for t in regs.threads:
        assert not t.prstatus and not t.HasField("sigmask")
        assert t.unreadable and all("not in a ptrace-stop of this dumper" in u.reason
                                    and "state S" in u.reason for u in t.unreadable)
    assert child.ping() == b"x"


@x86_64_only
def test_a_regset_the_kernel_lacks(child: RegsChild, monkeypatch: pytest.MonkeyPatch) -> None:
    """NT_ARM_TLS asked of an x86_64 kernel: a real EINVAL, recorded, the rest still read."""
    monkeypatch.setitem(kregs.REGSETS, "x86_64",
                        (*kregs.REGSETS["x86_64"], ("arm_tls", kregs.NoteType.ARM_TLS)))
    with frozen([child.pid], "ptrace"):
        regs = collect_registers(child.pid, [child.reader.tid])
    t = regs.threads[0]
    assert [(u.field, u.reason) for u in t.unreadable] == [
        ("arm_tls", "EINVAL: no NT_ARM_TLS regset")]
    assert t.prstatus and t.xstate and t.HasField("sigmask") and t.HasField("rseq")


def test_registers_not_captured_says_why() -> None:
    regs = registers_not_captured(42, "--freeze cgroup: registers are read only through ptrace")
    assert regs.pid == 42 and not regs.threads
    assert [u.field for u in regs.unreadable] == ["threads", "sigactions", "sigaltstack"]
    assert regs.unreadable[0].reason.startswith("--freeze cgroup")
    assert [(u.field, u.reason) for u in regs.unreadable[1:]] == list(cregs.NOT_CAPTURED)


# ------------------------------------------------------------- images, validation


def _regs_for(pid: int, tid: int) -> regs_pb2.ProcessRegs:
    regs = regs_pb2.ProcessRegs(pid=pid)
    raw = bytes(kregs.UserRegsX86_64(rax=0xFFFFFFFFFFFFFE00, rdi=5, rip=0x401000,
                                     rsp=0x7FFC0000, fs_base=0x7F0000001000))
    t = regs.threads.add(tid=tid, arch="x86_64", prstatus=raw, fpregs=b"\1" * 512,
                         xstate=b"\2" * 832, sigmask=(1 << 0) | (1 << 9) | (1 << 34),
                         audit_arch=kregs.AuditArch.X86_64)
    t.rseq.abi_pointer, t.rseq.abi_size, t.rseq.signature = 0x7F0000002000, 32, 0x53053053
    regs.unreadable.add(field="sigactions", reason="no interface")
    return regs


def test_regs_image_round_trip(tmp_path: Path) -> None:
    snap = sample_snapshot()
    snap.registers = [_regs_for(100, 100), registers_not_captured(101, "gone")]
    out = write(snap, tmp_path / "snap")
    assert (out / "regs.img").read_bytes()[4:8] == b"REGS"
    loaded = load(out)
    assert loaded.registers == snap.registers
    assert loaded.registers_by_pid[100].threads[0].prstatus == snap.registers[0].threads[0].prstatus
    validate_registers(loaded, out, {})


@pytest.mark.parametrize(("breakage", "message"), [
    ("pid", "pid 555 is not a dumped process"),
    ("dup", "pid 100 has two register entries"),
    ("tid", "thread 777 is not a thread of pid 100"),
    ("dup_tid", "thread 100 appears twice"),
])
def test_regs_cross_references(tmp_path: Path, breakage: str, message: str) -> None:
    snap = sample_snapshot()
    snap.registers = [_regs_for(100, 100)]
    if breakage == "pid":
        snap.registers.append(_regs_for(555, 555))
    elif breakage == "dup":
        snap.registers.append(_regs_for(100, 100))
    elif breakage == "tid":
        snap.registers[0].threads[0].tid = 777
    else:
        snap.registers[0].threads.append(snap.registers[0].threads[0])
    with pytest.raises(InconsistentImage, match=message) as info:
        validate_registers(snap, tmp_path, {"regs.img": [12, 40]})
    assert "regs.img" in str(info.value)


# ------------------------------------------------------------------------ render


def _snapshot(comm: bytes = b"cm-regs") -> Snapshot:
    proc = process_pb2.Process(pid=100, ppid=1, comm=comm, state="S")
    proc.threads.add(tid=100, comm=comm, state="S")
    proc.threads.add(tid=101, comm=b"cm-\x1b[31mred", state="S")
    regs = _regs_for(100, 100)
    regs.threads.add(tid=101).unreadable.extend(
        regs_pb2.ThreadRegs(unreadable=[{"field": f, "reason": "the thread exited (ESRCH)"}
                                        for f in ALL_FIELDS]).unreadable)
    return Snapshot(inventory=inventory_pb2.Inventory(root_pids=[100]), processes=[proc],
                    registers=[regs])


def _render(snap: Snapshot, pid: int = 100, width: int = 200) -> str:
    out = io.StringIO()
    show_threads(snap, pid, Console(file=out, width=width, highlight=False))
    return out.getvalue()


def _reg(text: str, name: str) -> str | None:
    """The value printed after a register's name (columns are padded to align)."""
    match = re.search(rf"(?:^|\s){re.escape(name)}\s+(0x[0-9a-f]+)\b", text, re.MULTILINE)
    return match.group(1) if match else None


def test_show_threads_names_the_registers() -> None:
    text = _render(_snapshot())
    lines = text.splitlines()
    assert lines[0].startswith("thread 100  cm-regs  state S  x86_64")
    for name in ("rax", "rbx", "rdi", "rsp", "r8", "r15", "rip", "eflags", "orig_rax", "cs",
                 "fs_base", "gs_base"):
        assert f"{name} " in text, name
    assert _reg(text, "rax") == "0xfffffffffffffe00" and _reg(text, "rdi") == "0x5"
    assert "fs_base 0x7f0000001000" in text
    assert "sigmask SIGHUP SIGUSR1 SIGRTMIN+1 (0x400000201)" in text
    assert "rseq 0x7f0000002000 size 32 signature 0x53053053" in text
    assert "fpregs 512 bytes, xstate 832 bytes, syscall abi x86_64" in text
    assert ("not read: prstatus, fpregs, xstate, sigmask, rseq, audit_arch: "
            "the thread exited (ESRCH)") in text
    assert "not captured: sigactions: no interface" in text
    assert "\x1b" not in text and "cm-\\x1b[31mred" in text  # data never moves the terminal
    # Four registers a line when wide, fewer when narrow; every one still shown.
    assert "rax" in next(ln for ln in lines if "rdx" in ln)
    narrow = _render(_snapshot(), width=60)
    assert "rdx" not in next(ln for ln in narrow.splitlines() if "rax" in ln)
    assert all(f"{n} " in narrow for n in ("rax", "rdx", "r15", "gs"))


def test_show_threads_decodes_the_snapshot_arch_not_the_host() -> None:
    snap = _snapshot()
    t = snap.registers[0].threads[0]
    t.arch = "aarch64"
    t.prstatus = bytes(kregs.UserPtRegsAarch64(*range(34)))
    t.ClearField("xstate")
    t.arm_tls = (0x7F00_0000_4000).to_bytes(8, "little")
    text = _render(snap)
    assert (_reg(text, "x0"), _reg(text, "x30"), _reg(text, "pstate")) == ("0x0", "0x1e", "0x21")
    assert "tpidr_el0 0x7f0000004000" in text and "rax" not in text


def test_show_threads_escapes_what_the_image_says() -> None:
    snap = _snapshot()
    t = snap.registers[0].threads[0]
    t.arch = "evil\x1b[2J"
    t.unreadable.add(field="x\x07", reason="bell\x07 and \x1b]0;title\x07")
    text = _render(snap)
    assert "\x1b" not in text and "\x07" not in text
    assert "evil\\x1b[2J" in text and "not decoded" in text


def test_show_threads_without_registers_and_unknown_pid() -> None:
    snap = _snapshot()
    snap.registers = []
    text = _render(snap)
    assert "no regs.img entry" in text and text.count("thread ") == 2
    snap = _snapshot()
    snap.registers = [registers_not_captured(100, "--freeze none: nothing was stopped")]
    text = _render(snap)
    assert "not captured: threads: --freeze none: nothing was stopped" in text
    with pytest.raises(UsageError, match="pid 7 is not in this snapshot"):
        _render(snap, 7)


def test_signal_names() -> None:
    assert [signal_name(n) for n in (1, 10, 31, 32, 34, 35, 64)] == [
        "SIGHUP", "SIGUSR1", "SIGSYS", "SIG32", "SIGRTMIN", "SIGRTMIN+1", "SIGRTMIN+30"]
    assert sigmask_text(0) == "none (0x0)"
    assert sigmask_text(1 << 63) == "SIGRTMIN+30 (0x8000000000000000)"


def test_registers_to_json() -> None:
    snap = _snapshot()
    obj = registers_to_json(snap.registers_by_pid[100])
    assert obj is not None and registers_to_json(None) is None
    first, lost = obj["threads"]
    assert first["registers"]["rdi"] == 5 and first["registers"]["rax"] == 0xFFFFFFFFFFFFFE00
    assert bytes.fromhex(first["prstatus"]) == snap.registers[0].threads[0].prstatus
    assert first["fpregs"] == "01" * 512 and first["sigmask"] == 0x400000201
    assert first["rseq"]["signature"] == 0x53053053
    assert lost["registers"] is None and lost["sigmask"] is None and lost["rseq"] is None
    assert [u["field"] for u in lost["unreadable"]] == ALL_FIELDS
    assert json.loads(json.dumps(obj)) == obj
