"""Freezing the target tree while it is read, and always undoing it.

Three strategies, chosen by the caller:

* ``PTRACE``: PTRACE_SEIZE + PTRACE_INTERRUPT every thread (Linux 3.4). Works
  anywhere ptrace is allowed; the threads show state ``t`` while frozen.
* ``CGROUP``: the cgroup v2 freezer (``cgroup.freeze``, Linux 5.2). Needs the
  whole tree alone in a non-root cgroup; the tasks are never ptraced.
* ``NONE``: read a moving target (fast, may be inconsistent).

:func:`frozen` is a context manager: on *any* exit (normal, exception,
KeyboardInterrupt, the CLI's SIGTERM exception) every seized thread is
detached / the cgroup thawed. SIGINT and SIGTERM are blocked for this thread
while tracees are half-frozen or being released, so a Ctrl-C arriving then
is raised right after the cleanup instead of in the middle of it.

Ptrace and our own children: when a target is our own child *and* its
thread-group leader dies while we trace it, the wait that tells us about the
death also reaps it (we are its tracer and its parent). Its raw wait status
is then in ``FreezeReport.exit_statuses`` and a later ``waitpid`` by the
caller gets ECHILD (``subprocess.Popen`` copes: it reports returncode 0).
"""

from __future__ import annotations

import enum
import errno
import os
import signal
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from criu_model.collect.mountinfo import parse_mountinfo
from criu_model.collect.procfs import PROC_ROOT, ProcDir, read_all, task_state
from criu_model.errors import (
    PTRACE_HINT,
    AccessDenied,
    CriuModelError,
    KernelUnsupported,
    ProcessGone,
    UsageError,
)
from criu_model.kernel import ptrace

# How long a thread may take to reach its stop before we give up (a task in
# uninterruptible sleep, e.g. a vfork parent or NFS, does not stop until it wakes).
STOP_TIMEOUT_S = 10.0
# On the way out, how long to wait for a seized thread whose stop never arrived.
RELEASE_GRACE_S = 2.0
# A process spawning threads faster than we stop them: give up after this many
# "list task/, seize the new ones" rounds.
MAX_THREAD_ROUNDS = 100
_POLL_MIN_S = 50e-6
_POLL_MAX_S = 0.01
# Task states (/proc/PID/task/TID/stat field 3) of threads that can no longer
# run: there is nothing to freeze and ptrace refuses them (EPERM on PF_EXITING).
_DEAD_STATES = frozenset("ZX")
# Signals that the CLI turns into exceptions; held back while cleanup runs.
_DEFERRED_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


class FreezeMethod(enum.Enum):
    NONE = "none"
    PTRACE = "ptrace"
    CGROUP = "cgroup"


@dataclass
class FreezeReport:
    """What freezing did; complete once the ``with`` block has exited."""

    method: FreezeMethod
    frozen_at_ns: int = 0  # time.time_ns() when every task was stopped
    frozen_for_ns: int = 0  # perf_counter_ns from all stopped to fully thawed (set on exit)
    tids: list[int] = field(default_factory=list)  # every thread held stopped
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (pid, why not frozen)
    # PTRACE: signal caught in a signal-delivery-stop while freezing, re-injected on detach.
    held_signals: dict[int, int] = field(default_factory=dict)
    # PTRACE: raw wait status of target leaders that died while traced (see module doc).
    exit_statuses: dict[int, int] = field(default_factory=dict)
    # (tid or cgroup path, error) for each release that failed; empty when all went well.
    release_errors: list[tuple[str, str]] = field(default_factory=list)
    cgroup: str | None = None  # CGROUP: the cgroup directory frozen
    # tid -> one-letter state read just before freezing: a frozen task shows
    # 't' (ptrace) or 'S'/'D' (cgroup), which is our doing, not its state.
    states_before: dict[int, str] = field(default_factory=dict)
    already_frozen: bool = False  # CGROUP: frozen before us, so left frozen on exit

    @property
    def duration_ns(self) -> int:
        return self.frozen_for_ns


def _thread_state(proc_root: str, pid: int, tid: int) -> str | None:
    """One-letter state of a thread, None if it is gone."""
    return task_state(ProcDir(pid, proc_root, tid))


def _record_states(report: FreezeReport, pids: list[int], proc_root: str) -> None:
    for pid in pids:
        for tid in _list_tids(proc_root, pid):
            state = _thread_state(proc_root, pid, tid)
            if state is not None:
                report.states_before[tid] = state


def _list_tids(proc_root: str, pid: int) -> list[int]:
    try:
        return sorted(int(t) for t in ProcDir(pid, proc_root).listdir("task"))
    except ProcessGone:
        return []


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Block SIGINT/SIGTERM for this thread; pending ones fire when unblocked."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _DEFERRED_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class _Freezer:
    """One strategy: freeze() may raise half-way; thaw() undoes whatever was done."""

    def __init__(self, report: FreezeReport, proc_root: str, timeout: float) -> None:
        self.report = report
        self.proc_root = proc_root
        self.timeout = timeout

    def freeze(self, pids: list[int]) -> None:
        """Freeze the tasks of `pids` (no-op for NONE)."""

    def thaw(self) -> None:
        """Undo freeze(); must not raise OSError, must cope with a partial freeze."""


# --------------------------------------------------------------------- ptrace


@dataclass
class _Tracee:
    pid: int
    tid: int
    stopped: bool = False
    signal: int = 0  # from a signal-delivery-stop: injected by PTRACE_DETACH
    dead: bool = False  # a zombie still linked to us (leader with live threads)


class _PtraceFreezer(_Freezer):
    """SEIZE + INTERRUPT each thread; DETACH each on thaw.

    A seized thread first reports one of: an interrupt/group stop (event
    STOP: nothing pending), a signal-delivery-stop (a real signal we must not
    swallow: we keep the thread parked there and pass the signal to
    PTRACE_DETACH, which delivers it as if we had never been there), or its
    death (dropped).
    """

    def __init__(self, report: FreezeReport, proc_root: str, timeout: float) -> None:
        super().__init__(report, proc_root, timeout)
        self.tracees: dict[int, _Tracee] = {}

    def freeze(self, pids: list[int]) -> None:
        """Seize every thread of every process, re-listing until no new thread appeared.

        Works in rounds over all processes at once: list, seize and interrupt
        every new thread of every process, then wait for all of them. Threads
        created while we seize are found by the next round's listing; once
        all listed threads are stopped none can create more, so this
        converges. One wait per round instead of one per process keeps the
        tree's frozen time short (the poll sleeps overlap).
        """
        seen: dict[int, set[int]] = {pid: set() for pid in pids}
        zombies: set[int] = set()
        active = list(seen)
        for _ in range(MAX_THREAD_ROUNDS):
            seized: list[int] = []
            grew: list[int] = []
            for pid in active:
                new = [t for t in _list_tids(self.proc_root, pid) if t not in seen[pid]]
                if not new:
                    continue
                grew.append(pid)
                seen[pid].update(new)
                for tid in new:
                    state = _thread_state(self.proc_root, pid, tid)
                    if state is None:
                        continue
                    # What the task was doing before we stopped it: frozen, it
                    # shows 't', which is our doing, not its state.
                    self.report.states_before[tid] = state
                    if state in _DEAD_STATES:
                        if tid == pid:
                            zombies.add(pid)
                    elif self._seize(pid, tid):
                        seized.append(tid)
            if not grew:
                break
            for tid in seized:
                self._interrupt(tid)
            self._wait_stopped(seized)
            active = grew
        else:
            raise CriuModelError(f"processes {sorted(active)} keep creating threads: gave up "
                                 f"freezing after {MAX_THREAD_ROUNDS} rounds")
        held = {t.pid for t in self.tracees.values() if not t.dead}
        for pid in seen:
            if pid not in held:
                why = ("zombie: already dead, nothing to freeze" if pid in zombies
                       else "exited while freezing")
                self.report.skipped.append((pid, why))
        self.report.tids = sorted(t.tid for t in self.tracees.values() if t.stopped)
        self.report.held_signals = {t.tid: t.signal for t in self.tracees.values() if t.signal}

    def _seize(self, pid: int, tid: int) -> bool:
        """Seize one thread; False if it vanished or is exiting."""
        try:
            ptrace.seize(tid)
        except OSError as err:
            if err.errno == errno.ESRCH:
                return False
            if err.errno == errno.EPERM:
                # An exiting thread (PF_EXITING) is refused with EPERM as well.
                if _thread_state(self.proc_root, pid, tid) in (*_DEAD_STATES, None):
                    return False
                raise AccessDenied(pid, f"ptrace seize of thread {tid}",
                                   self._why_denied(pid, tid)) from err
            raise CriuModelError(f"process {pid}: ptrace seize of thread {tid}: "
                                 f"{err.strerror}") from err
        self.tracees[tid] = _Tracee(pid, tid)
        return True

    def _why_denied(self, pid: int, tid: int) -> str:
        try:
            status = ProcDir(pid, self.proc_root, tid).read("status")
        except CriuModelError:
            status = b""
        for line in status.splitlines():
            if line.startswith(b"TracerPid:"):
                tracer = int(line.split()[1])
                if tracer:
                    return (f"already traced by pid {tracer} (a debugger?); "
                            "a thread has only one tracer")
        if pid == 1:
            return f"the kernel refuses to ptrace init (pid 1) here; {PTRACE_HINT}"
        return PTRACE_HINT

    def _interrupt(self, tid: int) -> None:
        try:
            ptrace.interrupt(tid)
        except OSError as err:
            # ESRCH: died since SEIZE; waitpid will report it.
            if err.errno != errno.ESRCH:
                raise CriuModelError(f"ptrace interrupt of thread {tid}: {err.strerror}") from err

    def _wait_stopped(self, tids: Iterable[int], timeout: float | None = None) -> list[int]:
        """Poll until each tracee has stopped or died; returns those still running.

        WNOHANG polling, not a blocking wait: a leader that exits while other
        threads live is a zombie the kernel will not report until the group is
        empty, and blocking on it while we hold the other threads would hang.
        """
        pending = {t for t in tids if t in self.tracees}
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        delay = _POLL_MIN_S
        while pending:
            for tid in sorted(pending):
                if self._poll(self.tracees[tid]):
                    pending.discard(tid)
            if not pending:
                break
            if time.monotonic() >= deadline:
                if timeout is not None:
                    return sorted(pending)
                states = {t: _thread_state(self.proc_root, self.tracees[t].pid, t)
                          for t in sorted(pending)}
                raise CriuModelError(
                    f"threads did not stop within {limit:g}s (tid: state {states}; "
                    "D = uninterruptible sleep, e.g. a vfork parent or stuck I/O)")
            time.sleep(delay)
            delay = min(delay * 2, _POLL_MAX_S)
        return []

    def _poll(self, tracee: _Tracee) -> bool:
        """One non-blocking look at a tracee; True once it is settled."""
        try:
            status = ptrace.wait_tracee(tracee.tid, nohang=True)
        except ChildProcessError:  # not our tracee any more (reaped, exec'd away)
            del self.tracees[tracee.tid]
            return True
        if status is None:
            if _thread_state(self.proc_root, tracee.pid, tracee.tid) in (*_DEAD_STATES, None):
                tracee.dead = True
                return True
            return False
        if status.exited:
            self._record_death(tracee, status.raw)
            return True
        if status.is_signal_stop:
            tracee.signal = status.stop_signal
        tracee.stopped = status.stopped
        return tracee.stopped

    def _record_death(self, tracee: _Tracee, raw: int) -> None:
        self.tracees.pop(tracee.tid, None)
        if tracee.tid == tracee.pid:
            self.report.exit_statuses[tracee.pid] = raw

    def thaw(self) -> None:
        # Live tracees first; then dead ones, group leaders last: a zombie
        # leader only becomes reapable once its threads have been reaped.
        order = sorted(self.tracees.values(),
                       key=lambda t: (t.dead, t.dead and t.tid == t.pid, t.tid))
        interrupted: BaseException | None = None
        for tracee in order:
            for _attempt in range(2):
                try:
                    self._release(tracee)
                except OSError as err:
                    self.report.release_errors.append((str(tracee.tid),
                                                       err.strerror or str(err)))
                except CriuModelError as err:
                    self.report.release_errors.append((str(tracee.tid), str(err)))
                # SIGINT/SIGTERM are blocked in this thread, but a process-directed
                # one taken by another thread still raises here: finish releasing
                # every tracee (retrying the interrupted one, detach is idempotent
                # enough: a second try only sees ESRCH), then re-raise it.
                except BaseException as exc:  # noqa: BLE001 - re-raised after the loop
                    interrupted = interrupted or exc
                    continue
                break
        self.tracees.clear()
        if interrupted is not None:
            raise interrupted

    def _release(self, tracee: _Tracee) -> None:
        """Detach one tracee, whatever state the freeze left it in."""
        if tracee.dead:
            self._reap(tracee)
            return
        if not tracee.stopped:
            # Seized but the stop has not been seen: a running tracee cannot
            # be detached (ESRCH), so interrupt it and wait for the stop first.
            self._interrupt(tracee.tid)
            if self._wait_stopped([tracee.tid], timeout=RELEASE_GRACE_S):
                raise CriuModelError(
                    f"thread {tracee.tid} never stopped: it stays seized until it stops "
                    "or this process exits (the kernel then detaches it)")
            if tracee.tid not in self.tracees or tracee.dead:
                self._reap(tracee)
                return
        try:
            ptrace.detach(tracee.tid, tracee.signal)
        except ProcessLookupError:
            # Killed (SIGKILL wakes a stopped tracee) while frozen: collect the
            # zombie, otherwise it would stay linked to us and unreapable by its parent.
            self._reap(tracee)

    def _reap(self, tracee: _Tracee) -> None:
        try:
            status = ptrace.wait_tracee(tracee.tid, nohang=True)
        except ChildProcessError:
            return
        if status is not None and status.exited:
            self._record_death(tracee, status.raw)


# --------------------------------------------------------------------- cgroup


def cgroup2_mount(mountinfo: str = "/proc/self/mountinfo") -> tuple[str, str] | None:
    """(mount point, root inside the hierarchy) of our cgroup v2 mount, or None.

    Pure v2 systems mount it at /sys/fs/cgroup, hybrid ones at
    /sys/fs/cgroup/unified; we just look for fstype cgroup2, preferring a
    mount of the hierarchy root.
    """
    found = [(os.fsdecode(m.mount_point), os.fsdecode(m.root))
             for m in parse_mountinfo(read_all(mountinfo)) if m.fstype == "cgroup2"]
    found.sort(key=lambda m: m[1] != "/")
    return found[0] if found else None


def cgroup_of(pid: int, proc_root: str = PROC_ROOT) -> str | None:
    """The cgroup v2 path of `pid` (the ``0::PATH`` line), None if not in v2."""
    for line in ProcDir(pid, proc_root).read("cgroup").splitlines():
        if line.startswith(b"0::"):
            return os.fsdecode(line[3:])
    return None


def _common_ancestor(paths: Iterable[str]) -> str:
    parts = [p.strip("/").split("/") if p.strip("/") else [] for p in paths]
    common: list[str] = []
    for level in zip(*parts, strict=False):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return "/" + "/".join(common)


def _procs_below(directory: str) -> set[int]:
    """Every pid in a cgroup and its descendants."""
    pids: set[int] = set()
    for here, _dirs, files in os.walk(directory):
        if "cgroup.procs" in files:
            pids.update(int(p) for p in read_all(f"{here}/cgroup.procs").split())
    return pids


class _CgroupFreezer(_Freezer):
    """Write 1 to cgroup.freeze of the tree's cgroup, 0 on thaw (if we froze it)."""

    def __init__(self, report: FreezeReport, proc_root: str, timeout: float) -> None:
        super().__init__(report, proc_root, timeout)
        self.directory: str | None = None
        self.we_froze = False

    def freeze(self, pids: list[int]) -> None:
        directory = self._cgroup_dir(pids)
        if directory is None:
            return
        self.report.cgroup = directory
        freeze_file = f"{directory}/cgroup.freeze"
        try:
            before = read_all(freeze_file).strip()
        except FileNotFoundError as err:
            raise KernelUnsupported("cgroup v2 freezer",
                                    f"{freeze_file} missing (needs Linux 5.2)") from err
        if before == b"1":
            self.report.already_frozen = True  # someone else froze it: not ours to thaw
        else:
            self._write(freeze_file, b"1")
            self.we_froze = True
        self.directory = directory
        self._wait_frozen(directory)
        skipped = {pid for pid, _why in self.report.skipped}
        self.report.tids = sorted(t for pid in pids if pid not in skipped
                                  for t in _list_tids(self.proc_root, pid))

    def _cgroup_dir(self, pids: list[int]) -> str | None:
        """The one non-root cgroup holding exactly our live processes."""
        mount = cgroup2_mount()
        if mount is None:
            raise KernelUnsupported("cgroup v2 freezer", "no cgroup2 filesystem is mounted")
        point, mount_root = mount
        paths: dict[int, str] = {}
        for pid in pids:
            try:
                if _thread_state(self.proc_root, pid, pid) in _DEAD_STATES:
                    self.report.skipped.append((pid, "zombie: already dead, nothing to freeze"))
                    continue
                path = cgroup_of(pid, self.proc_root)
            except ProcessGone:
                self.report.skipped.append((pid, "exited while freezing"))
                continue
            if path is None:
                raise UsageError(f"process {pid} is in no cgroup v2 hierarchy: "
                                 "use --freeze=ptrace")
            paths[pid] = path
        if not paths:
            return None
        common = _common_ancestor(paths.values())
        if common == "/" or common.startswith("/.."):
            where = ", ".join(f"{pid} in {path}" for pid, path in sorted(paths.items())[:5])
            raise UsageError(
                f"the cgroup freezer needs the tree in its own non-root cgroup ({where}); "
                "the root cgroup cannot be frozen: move the tree into a child cgroup "
                "or use --freeze=ptrace")
        if mount_root != "/" and not (common + "/").startswith(mount_root.rstrip("/") + "/"):
            raise UsageError(f"cgroup {common} is not visible under the cgroup2 mount {point}")
        relative = common[len(mount_root.rstrip("/")):] if mount_root != "/" else common
        directory = point.rstrip("/") + relative
        inside = _procs_below(directory)
        if os.getpid() in inside:
            raise UsageError(f"cgroup {common} contains criu-model itself (pid {os.getpid()}): "
                             "freezing it would freeze the dumper; use --freeze=ptrace")
        others = inside - set(pids)
        if others:
            shown = ", ".join(str(p) for p in sorted(others)[:10])
            raise UsageError(f"cgroup {common} also holds processes outside the tree ({shown}); "
                             "freezing it would stop them too: use --freeze=ptrace")
        return directory

    def _write(self, path: str, value: bytes) -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, value)
            finally:
                os.close(fd)
        except PermissionError as err:
            raise AccessDenied(None, f"writing {path}",
                               "needs write access to the cgroup (root, or a delegated "
                               "subtree)") from err
        except OSError as err:
            raise CriuModelError(f"writing {path}: {err.strerror}") from err

    def _wait_frozen(self, directory: str) -> None:
        """Freezing is asynchronous: cgroup.events says when every task stopped."""
        deadline = time.monotonic() + self.timeout
        delay = _POLL_MIN_S
        while True:
            events = read_all(f"{directory}/cgroup.events").split(b"\n")
            if b"frozen 1" in events:
                return
            if time.monotonic() >= deadline:
                raise CriuModelError(f"cgroup {directory} did not report 'frozen 1' "
                                     f"within {self.timeout:g}s")
            time.sleep(delay)
            delay = min(delay * 2, _POLL_MAX_S)

    def thaw(self) -> None:
        if self.directory is None or not self.we_froze:
            return
        try:
            self._write(f"{self.directory}/cgroup.freeze", b"0")
        except CriuModelError as err:
            self.report.release_errors.append((self.directory, str(err)))
        self.we_froze = False


_FREEZERS: dict[FreezeMethod, type[_Freezer]] = {
    FreezeMethod.NONE: _Freezer,
    FreezeMethod.PTRACE: _PtraceFreezer,
    FreezeMethod.CGROUP: _CgroupFreezer,
}


@contextmanager
def frozen(pids: list[int], method: FreezeMethod | str, proc_root: str = PROC_ROOT, *,
           timeout: float = STOP_TIMEOUT_S) -> Iterator[FreezeReport]:
    """Hold the processes `pids` (tgids, already discovered) still inside the block.

    Processes that vanish, or are zombies, are skipped and listed in
    ``report.skipped``; an EPERM from ptrace raises AccessDenied after
    releasing what was already seized.
    """
    method = FreezeMethod(method)
    report = FreezeReport(method)
    targets = list(dict.fromkeys(pids))
    if os.getpid() in targets:
        # A tree dumped from above (e.g. from pid 1) contains the dumper itself.
        targets.remove(os.getpid())
        report.skipped.append((os.getpid(), "the dumping process itself cannot be frozen"))
    freezer = _FREEZERS[method](report, proc_root, timeout)
    started: int | None = None
    try:
        if method is FreezeMethod.CGROUP:
            # (the ptrace freezer records them itself, as it reads each thread)
            _record_states(report, targets, proc_root)
        with _signals_deferred():
            freezer.freeze(targets)
            report.frozen_at_ns = time.time_ns()
            started = time.perf_counter_ns()
        yield report
    finally:
        with _signals_deferred():
            try:
                freezer.thaw()
            finally:
                if started is not None:
                    report.frozen_for_ns = time.perf_counter_ns() - started
