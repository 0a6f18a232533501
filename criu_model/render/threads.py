"""`show DIR threads PID`: every thread of one process with its CPU state (regs.img).

Per thread: tid, comm, state, the general registers grouped like gdb's
``info registers`` (several per line), the TLS bases, the signal mask by name,
the rseq registration, the sizes of the FPU/vector areas and whatever could
not be read, with the reason. Registers are decoded by the layout the
snapshot names (``ThreadRegs.arch``), not the host's, so a snapshot from
another machine shows the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from criu_model.errors import UsageError
from criu_model.images.pb import common_pb2, process_pb2, regs_pb2
from criu_model.kernel.regs import AuditArch, decode_prstatus
from criu_model.names import message_to_json, printable
from criu_model.render.text import emit
from criu_model.snapshot import Snapshot

# Registers in display groups per layout; one group starts a new line. Names
# a layout has but no group lists are shown in a last group, never dropped.
_GROUPS: dict[str, tuple[tuple[str, ...], ...]] = {
    "x86_64": (("rax", "rbx", "rcx", "rdx"), ("rsi", "rdi", "rbp", "rsp"),
               ("r8", "r9", "r10", "r11"), ("r12", "r13", "r14", "r15"),
               ("rip", "eflags", "orig_rax"), ("cs", "ss", "ds", "es", "fs", "gs")),
    "i386": (("eax", "ebx", "ecx", "edx"), ("esi", "edi", "ebp", "esp"),
             ("eip", "eflags", "orig_eax"), ("xcs", "xss", "xds", "xes", "xfs", "xgs")),
    "aarch64": (*(tuple(f"x{i}" for i in range(j, min(j + 4, 31))) for j in range(0, 31, 4)),
                ("sp", "pc", "pstate")),
    "arm": (("r0", "r1", "r2", "r3"), ("r4", "r5", "r6", "r7"), ("r8", "r9", "r10", "fp"),
            ("ip", "sp", "lr", "pc"), ("cpsr", "orig_r0")),
}
_PAIR_WIDTH = 29  # "orig_rax 0xffffffffffffffff  "
# Shown on their own line: the thread's TLS pointers.
_TLS = {"x86_64": ("fs_base", "gs_base")}

# Linux signal numbers 1..31 (x86 and arm share them); 32 and 33 are glibc's own
# (thread cancellation, setxid); 34..64 are the real-time signals.
_SIGNALS = ("HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1",
            "SEGV", "USR2", "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP",
            "TSTP", "TTIN", "TTOU", "URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO",
            "PWR", "SYS")
_RTMIN = 34


def signal_name(sig: int) -> str:
    """SIGUSR1, SIGRTMIN+3, SIG32: the name of a Linux signal number."""
    if 1 <= sig <= len(_SIGNALS):
        return "SIG" + _SIGNALS[sig - 1]
    if _RTMIN <= sig <= 64:
        return "SIGRTMIN" if sig == _RTMIN else f"SIGRTMIN+{sig - _RTMIN}"
    return f"SIG{sig}"


def sigmask_text(mask: int) -> str:
    """'SIGHUP SIGUSR1 (0x201)', or 'none (0x0)'."""
    names = [signal_name(bit + 1) for bit in range(64) if mask >> bit & 1]
    return f"{' '.join(names) or 'none'} ({mask:#x})"


def _audit_arch(value: int) -> str:
    try:
        return AuditArch(value).name.lower()
    except ValueError:
        return f"unknown({value:#x})"


def _unreadable_lines(items: Iterable[common_pb2.Unreadable], label: str) -> list[Text]:
    """One line per reason; fields sharing a reason (a vanished thread) are joined."""
    by_reason: dict[str, list[str]] = {}
    for item in items:
        by_reason.setdefault(item.reason, []).append(item.field)
    return [Text.assemble((f"{label}: ", "yellow"), printable(f"{', '.join(fields)}: {reason}"))
            for reason, fields in by_reason.items()]


def _register_grid(values: dict[str, int], arch: str, pairs: int) -> Table:
    """name value name value ... with at most `pairs` registers per row."""
    grid = Table(box=None, pad_edge=False, show_edge=False, show_header=False)
    for _ in range(pairs):
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(no_wrap=True)
    tls = set(_TLS.get(arch, ()))
    groups = [tuple(n for n in g if n in values) for g in _GROUPS.get(arch, ())]
    listed = {n for g in groups for n in g} | tls
    groups.append(tuple(n for n in values if n not in listed))
    for group in groups:
        for start in range(0, len(group), pairs):
            row: list[str] = []
            for name in group[start:start + pairs]:
                row += [name, f"{values[name]:#x}"]
            grid.add_row(*row, *[""] * (2 * pairs - len(row)))
    return grid


def _show_regs(thread: regs_pb2.ThreadRegs, console: Console) -> None:
    arch = thread.arch
    if thread.prstatus:
        try:
            values = decode_prstatus(thread.prstatus, arch)
        except ValueError as err:
            console.print(Text(printable(f"  prstatus: {len(thread.prstatus)} bytes, "
                                      f"not decoded: {err}")))
        else:
            pairs = max(1, min(4, (console.width - 2) // _PAIR_WIDTH))
            emit(console, _indent(_register_grid(values, arch, pairs)))
            tls = [f"{n} {values[n]:#x}" for n in _TLS.get(arch, ()) if n in values]
            if tls:
                console.print(Text("  " + "  ".join(tls)))
    if thread.arm_tls:
        words = [int.from_bytes(thread.arm_tls[i:i + 8], "little")
                 for i in range(0, len(thread.arm_tls) - 7, 8)]
        names = ("tpidr_el0", "tpidr2_el0")
        console.print(Text("  " + "  ".join(f"{names[i] if i < 2 else f'tls{i}'} {w:#x}"
                                            for i, w in enumerate(words))))
    if thread.HasField("sigmask"):
        console.print(Text(f"  sigmask {sigmask_text(thread.sigmask)}"))
    if thread.HasField("rseq"):
        r = thread.rseq
        what = ("none registered" if not r.abi_pointer else
                f"{r.abi_pointer:#x} size {r.abi_size} signature {r.signature:#x} "
                f"flags {r.flags:#x}")
        console.print(Text(f"  rseq {what}"))
    sizes = [f"{name} {len(data)} bytes" for name, data in
             (("fpregs", thread.fpregs), ("xstate", thread.xstate)) if data]
    if thread.HasField("audit_arch"):
        sizes.append(f"syscall abi {_audit_arch(thread.audit_arch)}")
    if sizes:
        console.print(Text("  " + ", ".join(sizes)))
    for line in _unreadable_lines(thread.unreadable, "  not read"):
        console.print(line)


def _indent(grid: Table) -> Table:
    """The grid two columns in, under its thread's header line."""
    outer = Table(box=None, pad_edge=False, show_edge=False, show_header=False, padding=0)
    outer.add_column(width=2, no_wrap=True)
    outer.add_column(no_wrap=True)
    outer.add_row("", grid)
    return outer


def _header(tid: int, info: process_pb2.Thread | None, arch: str) -> Text:
    comm = printable(info.comm) if info is not None else "?"
    state = info.state if info is not None and info.state else "?"
    line = Text.assemble(("thread ", "bold"), (str(tid), "bold"), f"  {comm}  state {state}")
    if arch:
        line.append(f"  {printable(arch)}", style="dim")
    return line


_RAW_FIELDS = ("prstatus", "fpregs", "xstate", "arm_tls")


def registers_to_json(regs: regs_pb2.ProcessRegs | None) -> dict[str, Any] | None:
    """One process's regs.img entry for `show --json`: raw regsets as hex strings
    (exactly the kernel's bytes), general registers also decoded by name."""
    if regs is None:
        return None
    out = message_to_json(regs)
    for thread, obj in zip(regs.threads, out["threads"], strict=True):
        for name in _RAW_FIELDS:
            obj[name] = getattr(thread, name).hex()
        try:
            obj["registers"] = (decode_prstatus(thread.prstatus, thread.arch)
                                if thread.prstatus else None)
        except ValueError:
            obj["registers"] = None  # an unknown layout: the raw bytes are still there
    return out


def show_threads(snap: Snapshot, pid: int, console: Console) -> None:
    """Every thread of `pid` with its registers; UsageError for a pid not dumped."""
    proc = snap.by_pid.get(pid)
    if proc is None:
        raise UsageError(f"pid {pid} is not in this snapshot "
                         f"(it holds {', '.join(str(p) for p in snap.by_pid)})")
    regs = snap.registers_by_pid.get(pid)
    infos = {t.tid: t for t in proc.threads}
    by_tid: dict[int, regs_pb2.ThreadRegs] = {t.tid: t for t in regs.threads} if regs else {}
    order: Sequence[int] = list(dict.fromkeys([*infos, *by_tid]))
    for tid in order:
        thread = by_tid.get(tid)
        console.print(_header(tid, infos.get(tid), thread.arch if thread else ""))
        if thread is not None:
            _show_regs(thread, console)
        elif regs is not None and not regs.threads:
            pass  # the process-wide reason below says why
        else:
            console.print(Text.assemble(("  not read: ", "yellow"), "registers: " + (
                "not recorded for this thread" if regs is not None else
                "this snapshot has no regs.img entry for the process (written before "
                "format 1.3)")))
    if regs is not None:
        for line in _unreadable_lines(regs.unreadable, "not captured"):
            console.print(line)
