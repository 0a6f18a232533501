"""Per-thread CPU state of a process the dump holds ptrace-stopped: regs.img.

Everything comes from read-only ptrace requests (``kernel/regs.py``) on
threads that ``freeze.py`` seized and interrupted; nothing runs in the target.
What cannot be had that way is recorded as not captured, with the reason:

* a thread that exited, is a zombie, or is not in a ptrace-stop of ours
  (ESRCH: the kernel gives registers only to the tracer of a stopped tracee);
* a regset or request this kernel or CPU does not offer (EINVAL, ENODEV, EIO);
* process state that has no ptrace or /proc interface at all: signal handlers
  and alternate signal stacks. CRIU reads those by running parasite code in
  the target (rt_sigaction/sigaltstack from inside), which a read-only dump
  never does.

Per thread this costs about 23 us (six ptrace calls; the 11 KiB XSAVE area of
an AMX CPU is most of it).
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Sequence

from criu_model.collect.procfs import PROC_ROOT, ProcDir, task_state
from criu_model.images.pb import regs_pb2
from criu_model.kernel import regs as kregs

# Process-wide items ptrace cannot read without running code in the target.
NOT_CAPTURED: tuple[tuple[str, str], ...] = (
    ("sigactions", "signal handlers (handler, flags, mask, restorer of each signal) have no "
                   "ptrace or /proc interface (/proc shows only which are caught, SigCgt); "
                   "CRIU reads them with rt_sigaction() run as parasite code in the target"),
    ("sigaltstack", "each thread's alternate signal stack has no ptrace or /proc interface; "
                    "CRIU reads it with sigaltstack() run as parasite code in every thread"),
)

# errnos meaning "this kernel/CPU does not offer it", not "the thread is gone".
_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENODEV, errno.EIO, errno.EOPNOTSUPP})

# field -> what is missing when its request is unsupported (kernel version cited).
_UNSUPPORTED_WHY: dict[str, str] = {
    "prstatus": "no NT_PRSTATUS regset",
    "fpregs": "no NT_PRFPREG regset for this task",
    "xstate": "no NT_X86_XSTATE regset (CPU without XSAVE?)",
    "arm_tls": "no NT_ARM_TLS regset",
    "sigmask": "PTRACE_GETSIGMASK unsupported (needs Linux 3.11)",
    "rseq": "PTRACE_GET_RSEQ_CONFIGURATION unsupported (needs Linux 5.13 and CONFIG_RSEQ)",
    "audit_arch": "PTRACE_GET_SYSCALL_INFO unsupported (needs Linux 5.3)",
}


def _errname(err: OSError) -> str:
    return errno.errorcode.get(err.errno or 0, f"errno {err.errno}")


def _why_esrch(pid: int, tid: int, proc_root: str) -> str:
    """ESRCH means gone *or* not our stopped tracee: /proc tells which."""
    state = task_state(ProcDir(pid, proc_root, tid))
    if state is None:
        return "the thread exited (ESRCH)"
    if state in "ZX":
        return f"the thread is dead (state {state}): no registers left (ESRCH)"
    return (f"the thread is not in a ptrace-stop of this dumper (state {state}, ESRCH): "
            "it was not frozen with ptrace, or was woken")


def _fields(arch: str) -> list[str]:
    """Every ThreadRegs field this host reads, in reading order."""
    return [name for name, _ in kregs.REGSETS.get(arch, ())] + ["sigmask", "rseq", "audit_arch"]


def _mark(thread: regs_pb2.ThreadRegs, fields: Iterable[str], reason: str) -> None:
    for name in fields:
        thread.unreadable.add(field=name, reason=reason)


def _read_field(thread: regs_pb2.ThreadRegs, name: str, note: kregs.NoteType | None) -> None:
    """One request into its field; OSError propagates to the caller's triage."""
    tid = thread.tid
    if note is not None:
        raw = kregs.get_regset(tid, note)
        setattr(thread, name, raw)
        if note is kregs.NoteType.PRSTATUS:
            arch = kregs.prstatus_arch(len(raw))
            thread.arch = arch or f"unknown({kregs.host_arch()}, {len(raw)} bytes)"
    elif name == "sigmask":
        thread.sigmask = kregs.get_sigmask(tid)
    elif name == "rseq":
        conf = kregs.get_rseq_configuration(tid)
        thread.rseq.abi_pointer = conf.rseq_abi_pointer
        thread.rseq.abi_size = conf.rseq_abi_size
        thread.rseq.signature = conf.signature
        thread.rseq.flags = conf.flags
    elif name == "audit_arch":
        thread.audit_arch = kregs.get_syscall_info(tid).arch


def collect_thread(pid: int, tid: int, proc_root: str = PROC_ROOT) -> regs_pb2.ThreadRegs:
    """Every register set and per-thread setting of one stopped thread.

    Never raises for a thread that is gone or a request that is unsupported:
    the field is left empty/absent and named in ``unreadable``.
    """
    thread = regs_pb2.ThreadRegs(tid=tid)
    host = kregs.host_arch()
    notes = dict(kregs.REGSETS.get(host, ()))
    fields = _fields(host)
    if not notes:
        thread.unreadable.add(field="prstatus", reason=f"register layouts of {host} are "
                              "not known to criu-model (x86_64 and aarch64 are)")
    for i, name in enumerate(fields):
        try:
            _read_field(thread, name, notes.get(name))
        except OSError as err:
            if err.errno == errno.ESRCH:
                # Gone or not stopped: every later request would fail the same way.
                _mark(thread, fields[i:], _why_esrch(pid, tid, proc_root))
                break
            why = _UNSUPPORTED_WHY[name] if err.errno in _UNSUPPORTED else \
                (err.strerror or "failed")
            thread.unreadable.add(field=name, reason=f"{_errname(err)}: {why}")
    return thread


def _not_captured(regs: regs_pb2.ProcessRegs) -> regs_pb2.ProcessRegs:
    for name, reason in NOT_CAPTURED:
        regs.unreadable.add(field=name, reason=reason)
    return regs


def collect_registers(pid: int, tids: Sequence[int],
                      proc_root: str = PROC_ROOT) -> regs_pb2.ProcessRegs:
    """The CPU state of the threads `tids` of process `pid`, ptrace-stopped by us.

    Pass every thread of the process (e.g. from its Process message): one that
    is not stopped by us (a zombie, one born after the freeze) gets a
    ThreadRegs whose ``unreadable`` says so, rather than silently missing.
    """
    regs = regs_pb2.ProcessRegs(pid=pid)
    for tid in tids:
        regs.threads.append(collect_thread(pid, tid, proc_root))
    return _not_captured(regs)


def registers_not_captured(pid: int, reason: str) -> regs_pb2.ProcessRegs:
    """Why a process has no registers when the dump did not freeze it with ptrace
    (e.g. "--freeze cgroup: registers are read only through ptrace")."""
    regs = regs_pb2.ProcessRegs(pid=pid)
    regs.unreadable.add(field="threads", reason=reason)
    return _not_captured(regs)
