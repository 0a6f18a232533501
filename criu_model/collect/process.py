"""Collect everything /proc says about one process into a Process message.

Each /proc file is read once (stat and status serve many fields) with raw
reads through ProcDir, which turns ENOENT/ESRCH into ProcessGone and
EPERM/EACCES into AccessDenied. stat and status are essential: if they fail,
the process is gone or hidden from us and we raise. Every other file is
optional: a zombie has no exe/cwd/root/environ, a kernel thread no exe, and
ptrace rules can hide environ, personality, timers or the namespace links.
Such a failure is recorded as Unreadable(field, reason) after checking that
the process itself is still there (so a process dying mid-read still raises
ProcessGone rather than producing a half-empty record).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from criu_model.collect.cgroup import CgroupParseError, parse_cgroup
from criu_model.collect.limits import LimitsParseError, parse_limits
from criu_model.collect.ns import NsId, read_namespaces
from criu_model.collect.procfs import PROC_ROOT, ProcDir
from criu_model.collect.stat import StatFields, StatParseError, parse_stat
from criu_model.collect.status import (
    MemReader,
    awaited_signals,
    parse_ids,
    parse_mask,
    parse_octal,
    parse_status,
    parse_syscall,
)
from criu_model.collect.timers import TimersParseError, parse_timers
from criu_model.errors import AccessDenied, CriuModelError, ProcessGone
from criu_model.images.pb import common_pb2, process_pb2

_DELETED = b" (deleted)"
_ZOMBIE_STATES = frozenset({"Z", "X"})
_SECCOMP_FILTER = 2  # SECCOMP_MODE_FILTER
_SECUREBITS_REASON = (
    "no /proc file shows another process's securebits; only the process itself can "
    "read them (prctl(PR_GET_SECUREBITS))"
)
_PATH_LINKS = ("exe", "cwd", "root")
_MACHINE = os.uname().machine  # one uname(2) per run, not one per thread


def _split_nul(data: bytes) -> list[bytes]:
    """cmdline/environ: NUL-terminated strings (the last NUL may be missing)."""
    if not data:
        return []
    parts = data.split(b"\0")
    if parts[-1] == b"":
        parts.pop()
    return parts


class _FormatError(CriuModelError):
    def __init__(self, pid: int, what: str, err: Exception) -> None:
        super().__init__(f"process {pid}: unexpected {what} format: {err}")


class _ProcessReader:
    """State shared by the steps of one collect_process call."""

    __slots__ = ("_alive", "pdir", "pid", "proc", "stat")

    def __init__(self, pdir: ProcDir, proc: process_pb2.Process, stat: StatFields) -> None:
        self.pdir = pdir
        self.pid = pdir.pid
        self.proc = proc
        self.stat = stat
        self._alive: bool | None = None

    def _still_there(self) -> bool:
        """Is the same process (same start time) still in /proc? Cached once True."""
        if self._alive:
            return True
        try:
            again = parse_stat(self.pdir.read("stat"))
        except ProcessGone:
            return False
        self._alive = again.start_time == self.stat.start_time
        return self._alive

    def _reason(self, err: ProcessGone | AccessDenied) -> str:
        cause = err.__cause__
        code = cause.errno if isinstance(cause, OSError) and cause.errno else None
        name = errno.errorcode.get(code, "error") if code else "error"
        if isinstance(err, AccessDenied):
            return f"{name}: ptrace access to the process denied ({err.why})"
        if self.stat.state in _ZOMBIE_STATES:
            return f"{name}: the process is a zombie; the kernel released this at exit"
        if self.stat.is_kthread:
            return f"{name}: kernel threads have no user-space state here"
        return f"{name}: not available for this process"

    def unreadable(self, field: str, err: ProcessGone | AccessDenied) -> None:
        """Record `field` as unreadable, unless the whole process vanished (then raise)."""
        if isinstance(err, ProcessGone) and not self._still_there():
            raise err
        self.proc.unreadable.add(field=field, reason=self._reason(err))

    def read(self, name: str) -> bytes | None:
        try:
            return self.pdir.read(name)
        except (ProcessGone, AccessDenied) as err:
            self.unreadable(name, err)
            return None

    def path_ref(self, name: str, ref: common_pb2.PathRef) -> None:
        try:
            target = self.pdir.readlink(name)
        except (ProcessGone, AccessDenied) as err:
            self.unreadable(name, err)
            return
        if target.endswith(_DELETED):
            ref.path = target[: -len(_DELETED)]
            ref.deleted = True
        else:
            ref.path = target
        try:
            st = self.pdir.stat(name)
        except (ProcessGone, AccessDenied) as err:
            self.unreadable(f"{name}.dev", err)
            return
        ref.dev = st.st_dev
        ref.ino = st.st_ino


def _fill_creds(creds: process_pb2.Creds, status: dict[bytes, bytes],
                unreadable: list[tuple[str, str]]) -> None:
    creds.uids.extend(parse_ids(status[b"Uid"]))
    creds.gids.extend(parse_ids(status[b"Gid"]))
    creds.groups.extend(parse_ids(status[b"Groups"]))
    creds.cap_inh = parse_mask(status[b"CapInh"])
    creds.cap_prm = parse_mask(status[b"CapPrm"])
    creds.cap_eff = parse_mask(status[b"CapEff"])
    creds.cap_bnd = parse_mask(status[b"CapBnd"])
    amb = status.get(b"CapAmb")
    if amb is None:
        unreadable.append(("creds.cap_amb", "no CapAmb: line (ambient caps are Linux 4.3)"))
    else:
        creds.cap_amb = parse_mask(amb)
    nnp = status.get(b"NoNewPrivs")
    if nnp is None:
        unreadable.append(("creds.no_new_privs", "no NoNewPrivs: line (Linux 4.10)"))
    else:
        creds.no_new_privs = nnp == b"1"
    # No Seccomp: line means CONFIG_SECCOMP is off: no process can be filtered.
    creds.seccomp_mode = int(status.get(b"Seccomp", b"0"))
    filters = status.get(b"Seccomp_filters")
    if filters is not None:
        creds.seccomp_filters = int(filters)
    elif creds.seccomp_mode == _SECCOMP_FILTER:
        unreadable.append(("creds.seccomp_filters", "no Seccomp_filters: line (Linux 5.9)"))
    unreadable.append(("creds.securebits", _SECUREBITS_REASON))


def _awaited(tdir: ProcDir, mem: MemReader) -> int:
    """Signals the thread waits for in sigwaitinfo: blocked and pending only while frozen.

    See collect/status.py: the freeze makes rt_sigtimedwait return and restore
    the blocked mask; the recorded masks are those of the waiting thread.
    """
    try:
        call = parse_syscall(tdir.read("syscall"))
    except (ProcessGone, AccessDenied):
        return 0
    return awaited_signals(call, mem, _MACHINE)


def _thread(tid: int, st: StatFields, status: dict[bytes, bytes],
            awaited: int = 0) -> process_pb2.Thread:
    ns_tids = status.get(b"NSpid")
    return process_pb2.Thread(
        tid=tid,
        ns_tids=parse_ids(ns_tids) if ns_tids is not None else [tid],
        comm=st.comm,
        state=st.state,
        sig_blocked=parse_mask(status[b"SigBlk"]) & ~awaited,
        sig_pending=parse_mask(status[b"SigPnd"]) & ~awaited,
        sched_policy=st.policy,
        nice=st.nice,
        rt_priority=st.rt_priority,
        utime_ticks=st.utime,
        stime_ticks=st.stime,
    )


def _collect_threads(reader: _ProcessReader, status: dict[bytes, bytes]) -> None:
    mem = MemReader(f"{reader.pdir.path}/mem")
    try:
        awaited = _read_threads(reader, status, mem)
    finally:
        mem.close()
    # A shared signal a thread waits for would have woken it: it came during the freeze.
    reader.proc.sig_shared_pending &= ~awaited


def _read_threads(reader: _ProcessReader, status: dict[bytes, bytes], mem: MemReader) -> int:
    """Append every thread; returns the signals any of them waits for in sigwaitinfo."""
    pdir, pid, proc = reader.pdir, reader.pid, reader.proc
    if status.get(b"Threads") == b"1":
        # signal->nr_threads, which changes with the task list under the same
        # locks: one thread, the leader itself (a zombie leader of live threads
        # still counts). Saves listing task/ (5 syscalls) for most processes.
        tids = [pid]
    else:
        try:
            tids = sorted(int(t) for t in pdir.listdir("task"))
        except ProcessGone:
            if not reader._still_there():
                raise
            tids = []
    if tids == [pid]:
        # Single-threaded: /proc/PID/stat and status describe the only thread.
        waits = _awaited(pdir, mem) if reader.stat.state not in _ZOMBIE_STATES else 0
        proc.threads.append(_thread(pid, reader.stat, status, waits))
        return waits
    # The leader first. Its own utime/stime are in task/PID/stat only
    # (/proc/PID/stat sums the whole group), so every thread is read there.
    if pid in tids:
        tids.remove(pid)
        tids.insert(0, pid)
    awaited = 0
    for tid in tids:
        tdir = pdir.task(tid)
        try:
            tstat = parse_stat(tdir.read("stat"))
            tstatus = parse_status(tdir.read("status"))
        except ProcessGone:
            continue  # the thread exited between listing and reading: normal
        waits = _awaited(tdir, mem) if tstat.state not in _ZOMBIE_STATES else 0
        awaited |= waits
        proc.threads.append(_thread(tid, tstat, tstatus, waits))
    if not proc.threads and not reader._still_there():
        raise ProcessGone(pid, "every thread vanished")
    return awaited


def collect_process(pid: int, proc_root: str = PROC_ROOT) -> process_pb2.Process:
    """Everything /proc exposes about process `pid` (see process.proto).

    Raises ProcessGone if the process vanished, AccessDenied if its stat or
    status cannot be read; anything else unreadable is listed in `unreadable`.
    """
    pdir = ProcDir(pid, proc_root)
    stat_data = pdir.read("stat")
    status_data = pdir.read("status")
    try:
        st = parse_stat(stat_data)
    except StatParseError as err:
        raise _FormatError(pid, "stat", err) from err
    status = parse_status(status_data)

    proc = process_pb2.Process(
        pid=pid,
        ppid=st.ppid,
        pgid=st.pgid,
        sid=st.sid,
        start_time=st.start_time,
        comm=st.comm,
        state=st.state,
        sched_policy=st.policy,
        nice=st.nice,
        rt_priority=st.rt_priority,
        flags=st.flags,
        tty_nr=st.tty_nr,
        tpgid=st.tpgid,
        exit_signal=st.exit_signal,
        utime_ticks=st.utime,
        stime_ticks=st.stime,
        vsize=st.vsize,
        rss_pages=st.rss_pages,
        is_kthread=st.is_kthread,
    )
    reader = _ProcessReader(pdir, proc, st)
    later: list[tuple[str, str]] = []
    blobs: list[bytes] = []  # serialized fields, merged into proc once at the end
    try:
        nspid = status.get(b"NSpid")
        nspgid = status.get(b"NSpgid")
        nssid = status.get(b"NSsid")
        # No NS* lines before Linux 4.1: then only one level is known.
        proc.ns_pids.extend(parse_ids(nspid) if nspid is not None else [pid])
        proc.ns_pgids.extend(parse_ids(nspgid) if nspgid is not None else [st.pgid])
        proc.ns_sids.extend(parse_ids(nssid) if nssid is not None else [st.sid])
        # stat and status are two reads: a setsid()/setpgid() between them (a tree
        # dumped with --freeze none) must not leave pgid/sid disagreeing with their
        # NS* lists, which loading refuses. Both are in /proc's pid namespace.
        if proc.ns_pgids:
            proc.pgid = proc.ns_pgids[0]
        if proc.ns_sids:
            proc.sid = proc.ns_sids[0]
        umask = status.get(b"Umask")
        if umask is not None:
            proc.umask = parse_octal(umask)
        else:
            later.append(("umask", "no Umask: line (zombie without fs_struct, or Linux < 4.7)"))
        proc.sig_ignored = parse_mask(status[b"SigIgn"])
        proc.sig_caught = parse_mask(status[b"SigCgt"])
        proc.sig_shared_pending = parse_mask(status[b"ShdPnd"])
        creds, creds_later = _encoded_creds(status)
        blobs.append(creds)
        later.extend(creds_later)
        _collect_threads(reader, status)
    except (KeyError, ValueError) as err:
        raise _FormatError(pid, "stat/status", err) from err

    if st.exit_code is not None:
        proc.exit_code = st.exit_code
    else:
        later.append(("exit_code", "stat has no field 52 (Linux < 3.5)"))

    cmdline = reader.read("cmdline")
    if cmdline is not None:
        proc.cmdline.extend(_split_nul(cmdline))
    try:
        environ = pdir.read("environ")
    except (ProcessGone, AccessDenied) as err:
        reader.unreadable("environ", err)
        if isinstance(err, AccessDenied):
            # stat prints 0 instead of exit_code without ptrace read access,
            # the same check (PTRACE_MODE_READ) that guards environ.
            proc.ClearField("exit_code")
            later.append(("exit_code", "stat hides it without ptrace read access"))
    else:
        proc.environ.extend(_split_nul(environ))

    for name in _PATH_LINKS:
        reader.path_ref(name, getattr(proc, name))

    _collect_small_files(reader, blobs)

    namespaces, failed = read_namespaces(pdir)
    blobs.append(_encoded("namespaces", tuple(namespaces), _namespaces_fields))
    for ns_type, err in failed.items():
        reader.unreadable(f"namespaces.{ns_type}", err)

    proc.MergeFromString(b"".join(blobs))
    for field, reason in later:
        proc.unreadable.add(field=field, reason=reason)
    return proc


# Serialized Process fields of what forked processes share byte for byte (limits,
# cgroup, creds, namespaces): parsed and encoded once per distinct content, then
# merged with one MergeFromString instead of ~30 repeated-field adds per process.
# Emptied when full, so a long-lived caller's memory stays flat.
_ENCODED: dict[tuple[str, Hashable], Any] = {}
_MAX_ENCODED = 1 << 12
_CREDS_KEYS = (b"Uid", b"Gid", b"Groups", b"CapInh", b"CapPrm", b"CapEff", b"CapBnd",
               b"CapAmb", b"NoNewPrivs", b"Seccomp", b"Seccomp_filters")


_T = TypeVar("_T")


def _encoded(kind: str, key: Hashable, build: Callable[[Any], _T]) -> _T:
    """``build(key)``, remembered for this (kind, key)."""
    found: _T | None = _ENCODED.get((kind, key))
    if found is None:
        found = build(key)
        if len(_ENCODED) >= _MAX_ENCODED:
            _ENCODED.clear()
        _ENCODED[(kind, key)] = found
    return found


def _encoded_creds(status: dict[bytes, bytes]) -> tuple[bytes, tuple[tuple[str, str], ...]]:
    """Serialized ``creds`` and its Unreadable entries, from the status lines they come from."""
    def build(_key: Hashable) -> tuple[bytes, tuple[tuple[str, str], ...]]:
        holder = process_pb2.Process()
        notes: list[tuple[str, str]] = []
        _fill_creds(holder.creds, status, notes)
        return holder.SerializeToString(), tuple(notes)

    return _encoded("creds", tuple(status.get(k) for k in _CREDS_KEYS), build)


def _namespaces_fields(namespaces: tuple[NsId, ...]) -> bytes:
    return process_pb2.Process(namespaces=[
        {"type": ns.type, "inode": ns.inode, "dev": ns.dev} for ns in namespaces
    ]).SerializeToString()


def _rlimits_fields(limits: bytes) -> bytes:
    return process_pb2.Process(rlimits=[
        {"resource": lim.resource, "soft": lim.soft, "hard": lim.hard}
        for lim in parse_limits(limits)]).SerializeToString()


def _cgroups_fields(cgroups: bytes) -> bytes:
    return process_pb2.Process(cgroups=[
        {"hierarchy_id": line.hierarchy_id, "controllers": line.controllers, "path": line.path}
        for line in parse_cgroup(cgroups)]).SerializeToString()


def _collect_small_files(reader: _ProcessReader, blobs: list[bytes]) -> None:
    """personality, limits, timers, cgroup: one read each, all optional.

    limits and cgroup are appended to ``blobs`` as serialized fields.
    """
    proc, pid = reader.proc, reader.pid
    try:
        personality = reader.read("personality")
        if personality is not None:
            proc.personality = int(personality, 16)
        limits = reader.read("limits")
        if limits is not None:
            blobs.append(_encoded("limits", limits, _rlimits_fields))
        timers = reader.read("timers")
        if timers is not None:
            for t in parse_timers(timers):
                timer = proc.timers.add(id=t.id, signal=t.signal, notify=t.notify,
                                        clock_id=t.clock_id)
                if t.target_is_tid:
                    timer.notify_tid = t.target
                if t.sigval is None:
                    proc.unreadable.add(field=f"timers[{t.id}].sigval",
                                        reason="the kernel printed a hashed pointer")
                else:
                    timer.sigval = t.sigval
        cgroups = reader.read("cgroup")
        if cgroups is not None:
            blobs.append(_encoded("cgroup", cgroups, _cgroups_fields))
    except (LimitsParseError, TimersParseError, CgroupParseError) as err:
        raise _FormatError(pid, "limits/timers/cgroup", err) from err
    except ValueError as err:
        raise _FormatError(pid, "personality", err) from err
