"""Freezing the target tree while it is read, and always undoing it.

Three strategies, chosen by the caller:

* ``PTRACE``: PTRACE_SEIZE + PTRACE_INTERRUPT every thread (Linux 3.4). Works
  anywhere ptrace is allowed; the threads show state ``t`` while frozen.
* ``CGROUP``: the cgroup v2 freezer (``cgroup.freeze``, Linux 5.2). Needs the
  whole tree alone in a non-root cgroup (children it forks meanwhile are
  fine, strangers are refused); the tasks are never ptraced. A freeze
  outlives its writer, so it is guarded (cgroup_guard): one dumper per
  cgroup (a flock), and a guardian process thaws it if we are SIGKILLed.
  A cgroup frozen before us is refused (AlreadyFrozen) unless `frozen_ok`.
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
from typing import TYPE_CHECKING, NamedTuple

from criu_model.collect.mountinfo import parse_mountinfo
from criu_model.collect.procfs import PROC_ROOT, ProcDir, read_all, task_state
from criu_model.collect.stat import parse_ppid
from criu_model.errors import (
    PTRACE_HINT,
    AccessDenied,
    AlreadyFrozen,
    CriuModelError,
    KernelUnsupported,
    ProcessGone,
    TargetBusy,
    UsageError,
)
from criu_model.kernel import ptrace
from criu_model.kernel.libc import syscall_number

if TYPE_CHECKING:
    from types import ModuleType

    from criu_model import cgroup_guard


def _guard() -> ModuleType:
    """criu_model.cgroup_guard, imported by the cgroup freeze only (not by a ptrace dump)."""
    from criu_model import cgroup_guard

    return cgroup_guard

# How long a thread may take to reach its stop before we give up (a task in
# uninterruptible sleep, e.g. a vfork parent or NFS, does not stop until it wakes).
STOP_TIMEOUT_S = 10.0
# After this long without a stop, look whether a thread is a vfork parent.
_VFORK_LOOK_S = 0.2
_CLONE_VFORK = 0x4000
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


class FreezeReport:
    """What freezing did; complete once the ``with`` block has exited."""

    def __init__(self, method: FreezeMethod) -> None:
        self.method = method
        self.frozen_at_ns = 0  # time.time_ns() when every task was stopped
        self.frozen_for_ns = 0  # perf_counter_ns from all stopped to fully thawed (set on exit)
        self.tids: list[int] = []  # every thread held stopped
        self.skipped: list[tuple[int, str]] = []  # (pid, why not frozen)
        # PTRACE: signal caught in a signal-delivery-stop while freezing, re-injected on detach.
        self.held_signals: dict[int, int] = {}
        # PTRACE: raw wait status of target leaders that died while traced (see module doc).
        self.exit_statuses: dict[int, int] = {}
        # (tid or cgroup path, error) for each release that failed; empty when all went well.
        self.release_errors: list[tuple[str, str]] = []
        self.cgroup: str | None = None  # CGROUP: the cgroup directory frozen
        # tid -> one-letter state read just before freezing: a frozen task shows
        # 't' (ptrace) or 'S'/'D' (cgroup), which is our doing, not its state.
        self.states_before: dict[int, str] = {}
        self.already_frozen = False  # CGROUP: frozen before us (frozen_ok), left frozen on exit
        # CGROUP: tree members forked after discovery, frozen too (the caller rediscovers them).
        self.joined: list[int] = []
        self.guardian_pid: int | None = None  # CGROUP: the process that thaws if we die frozen

    @property
    def duration_ns(self) -> int:
        return self.frozen_for_ns


def _vfork_child(proc_root: str, pid: int, tid: int) -> int | None:
    """The child a thread in vfork() waits for (0 if unknown), None if it is not in vfork.

    A vfork parent sleeps in TASK_UNINTERRUPTIBLE until the child execs or
    exits, so PTRACE_INTERRUPT cannot stop it. /proc/TID/syscall names the
    blocked call: vfork, or clone/clone3 with CLONE_VFORK (clone3's flags are
    the first word of its argument, read through /proc/PID/mem).
    """
    if _thread_state(proc_root, pid, tid) != "D":
        return None
    task = ProcDir(pid, proc_root, tid)
    try:
        fields = task.read("syscall").split()
        nr = int(fields[0])
        arg1 = int(fields[1], 16)
    except (CriuModelError, ValueError, IndexError):
        return None
    numbers = {name: _syscall_number(name) for name in ("vfork", "clone", "clone3")}
    vfork = nr == numbers["vfork"] or (nr == numbers["clone"] and arg1 & _CLONE_VFORK)
    if not vfork and nr == numbers["clone3"]:
        try:
            fd = os.open(f"{proc_root}/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
            try:
                vfork = bool(int.from_bytes(os.pread(fd, 8, arg1), "little") & _CLONE_VFORK)
            finally:
                os.close(fd)
        except OSError:
            return None
    if not vfork:
        return None
    try:
        kids = task.read("children").split()
        return int(kids[-1]) if kids else 0
    except (CriuModelError, ValueError):
        return 0


def _refuse_vfork(proc_root: str, pid: int, tid: int) -> None:
    """Raise, naming the child, when the thread waits in vfork."""
    child = _vfork_child(proc_root, pid, tid)
    if child is not None:
        raise CriuModelError(
            f"process {pid} is a vfork parent (thread {tid} waits, uninterruptibly, until its "
            f"child {child or '(unknown)'} calls exec or exits): it cannot be frozen before "
            "then; dump again once the child has moved on")


def _syscall_number(name: str) -> int:
    try:
        return syscall_number(name)
    except KeyError:
        return -1


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


class _Tracee:
    __slots__ = ("dead", "pid", "signal", "stopped", "tid")

    def __init__(self, pid: int, tid: int) -> None:
        self.pid = pid
        self.tid = tid
        self.stopped = False
        self.signal = 0  # from a signal-delivery-stop: injected by PTRACE_DETACH
        self.dead = False  # a zombie still linked to us (leader with live threads)


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
                        continue
                    if state == "D":
                        # Never seize a vfork parent: it cannot stop before its child
                        # execs, and a seized thread that never stopped cannot be
                        # detached (it would stop later, traced by us).
                        _refuse_vfork(self.proc_root, pid, tid)
                    if self._seize(pid, tid):
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
        started = time.monotonic()
        deadline = started + limit
        delay = _POLL_MIN_S
        looked = False
        while pending:
            for tid in sorted(pending):
                if self._poll(self.tracees[tid]):
                    pending.discard(tid)
            if not pending:
                break
            if not looked and timeout is None and time.monotonic() - started > _VFORK_LOOK_S:
                looked = True  # a vfork parent never stops before its child: say so now
                for tid in sorted(pending):  # one that entered vfork after we looked
                    _refuse_vfork(self.proc_root, self.tracees[tid].pid, tid)
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


def _mount_or_fail() -> tuple[str, str]:
    mount = cgroup2_mount()
    if mount is None:
        raise KernelUnsupported("cgroup v2 freezer", "no cgroup2 filesystem is mounted")
    return mount[0].rstrip("/") or "/", mount[1]


def _cgroup_location(name: str, point: str, mount_root: str) -> str:
    """The directory under the mount of cgroup `name` (a ``/proc/PID/cgroup`` path)."""
    root = mount_root.rstrip("/")
    if root and not (name + "/").startswith(root + "/"):
        raise UsageError(f"cgroup {name} is not visible under the cgroup2 mount {point}")
    return point + name[len(root):] if name[len(root):] != "/" else point


def cgroup_directory(path: str) -> tuple[str, str]:
    """(directory under the mount, cgroup name as /proc/PID/cgroup says) of a cgroup.

    `path` is either form: ``/sys/fs/cgroup/unified/x`` or ``/x``.
    """
    point, mount_root = _mount_or_fail()
    given = os.path.normpath(path)
    if given == point or given.startswith(point + "/"):
        name = (mount_root.rstrip("/") + given[len(point):]) or "/"
    else:
        name = "/" + given.strip("/")
    if ".." in name.split("/"):
        raise UsageError(f"{path!r} is not a cgroup path (it leaves the hierarchy)")
    directory = _cgroup_location(name, point, mount_root)
    if not os.path.isdir(directory):
        raise UsageError(f"no cgroup {name} (no directory {directory})")
    return directory, name


def _frozen_ancestor(directory: str, name: str) -> tuple[str, str] | None:
    """(name, directory) of the nearest ancestor whose cgroup.freeze is 1, if any.

    A frozen ancestor freezes every descendant while theirs still read 0.
    """
    point = _mount_or_fail()[0]
    here, label = directory, name
    while here != point and label != "/":
        here, label = os.path.dirname(here), os.path.dirname(label)
        try:
            if read_all(f"{here}/cgroup.freeze").strip() == b"1":
                return label, here
        except FileNotFoundError:
            return None  # the hierarchy root: it has no cgroup.freeze
    return None


def _descends_from(pid: int, members: set[int], proc_root: str) -> bool | None:
    """Is `pid` a descendant of one of `members` (ppid walked through /proc)? None if gone."""
    seen: set[int] = set()
    current = pid
    while current > 1 and current not in seen:
        seen.add(current)
        try:
            current = parse_ppid(read_all(f"{proc_root}/{current}/stat"))
        except (FileNotFoundError, ProcessLookupError):
            # It exited; an ancestor exiting reparents it away from the tree.
            return None if current == pid else False
        if current in members:
            return True
    return False


class _CgroupFreezer(_Freezer):
    """Write 1 to cgroup.freeze of the tree's cgroup, 0 on thaw (if we froze it).

    Guarded (see cgroup_guard): a lock per cgroup so one dumper at a time
    freezes it, a guardian process that thaws it if we die while it is
    frozen, and a marker naming us on the cgroup while frozen.
    """

    frozen_ok = False  # leave a cgroup frozen by someone else frozen instead of refusing

    def __init__(self, report: FreezeReport, proc_root: str, timeout: float) -> None:
        super().__init__(report, proc_root, timeout)
        self.directory: str | None = None
        self.we_froze = False
        self.lock: int | None = None
        self.guardian: cgroup_guard.Guardian | None = None
        self.marked = False

    def freeze(self, pids: list[int]) -> None:
        found = self._cgroup_dir(pids)
        if found is None:
            return
        directory, name = found
        self.report.cgroup = directory
        freeze_file = f"{directory}/cgroup.freeze"
        if not os.path.exists(freeze_file):
            raise KernelUnsupported("cgroup v2 freezer", f"{freeze_file} missing (needs Linux 5.2)")
        self.lock = _guard().try_lock(directory)
        if self.lock is None:
            raise _busy(directory, name, "is already being dumped")
        try:
            before = read_all(freeze_file).strip()
        except FileNotFoundError as err:
            raise CriuModelError(f"cgroup {name} vanished while freezing") from err
        ancestor = None if before == b"1" else _frozen_ancestor(directory, name)
        if before == b"1" or ancestor is not None:
            if not self.frozen_ok:
                raise _already_frozen(directory, name, ancestor)
            self.report.already_frozen = True  # someone else froze it: not ours to thaw
        else:
            self._start_guardian(directory, name)
            self._write(freeze_file, b"1")
            self.we_froze = True
        self.directory = directory
        self._wait_frozen(directory)
        # Frozen, the tree cannot fork any more: who is in the cgroup now is final.
        joined, strangers = self._outsiders(directory, pids)
        if strangers:
            raise _strangers_error(name, strangers, "moved in while it was being frozen")
        self.report.joined = sorted(joined)
        skipped = {pid for pid, _why in self.report.skipped}
        members = [pid for pid in pids if pid not in skipped] + self.report.joined
        self.report.tids = sorted(t for pid in members for t in _list_tids(self.proc_root, pid))

    def _start_guardian(self, directory: str, name: str) -> None:
        """Fork the guardian (outside the cgroup: it is a child of us) and arm it."""
        assert self.lock is not None
        self.guardian = _guard().start_guardian(directory, (self.lock,))
        self.report.guardian_pid = self.guardian.pid
        try:
            where = cgroup_of(self.guardian.pid, self.proc_root)
        except ProcessGone:
            where = None  # died already (SIGKILLed by someone): dismiss copes
        if where is not None and (where + "/").startswith(name.rstrip("/") + "/"):
            raise UsageError(f"the freeze guardian (pid {self.guardian.pid}) is inside cgroup "
                             f"{name}: it would be frozen too; use --freeze=ptrace")
        self.marked = _guard().set_marker(directory, os.getpid(), self.guardian.pid)
        self.guardian.arm()

    def _cgroup_dir(self, pids: list[int]) -> tuple[str, str] | None:
        """(directory, cgroup name) of the one non-root cgroup holding only our tree."""
        point, mount_root = _mount_or_fail()
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
        directory = _cgroup_location(common, point, mount_root)
        if os.getpid() in _procs_below(directory):
            raise UsageError(f"cgroup {common} contains criu-model itself (pid {os.getpid()}): "
                             "freezing it would freeze the dumper; use --freeze=ptrace")
        _joined, strangers = self._outsiders(directory, pids)
        if strangers:
            raise _strangers_error(common, strangers)
        return directory, common

    def _outsiders(self, directory: str, pids: list[int]) -> tuple[set[int], set[int]]:
        """Processes in the cgroup but not in `pids`: (new tree members, strangers).

        A child the tree forked after discovery is born in its parent's cgroup
        and descends from a member: it belongs to the tree (the dumper
        rediscovers it). Anything else would be frozen without being ours.
        """
        members = set(pids)
        joined: set[int] = set()
        strangers: set[int] = set()
        for pid in _procs_below(directory) - members:
            verdict = _descends_from(pid, members, self.proc_root)
            if verdict:
                joined.add(pid)
            elif verdict is not None:
                strangers.add(pid)
        return joined, strangers

    def _write(self, path: str, value: bytes) -> None:
        _write_cgroup_file(path, value)

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
        """Thaw what we froze, then dismiss the guardian, then drop the lock: in that order,
        so that no other dumper can freeze the cgroup before our guardian is gone."""
        if self.directory is not None and self.we_froze:
            try:
                self._write(f"{self.directory}/cgroup.freeze", b"0")
            except CriuModelError as err:
                self.report.release_errors.append((self.directory, str(err)))
            self.we_froze = False
        if self.marked and self.report.cgroup is not None:
            _guard().clear_marker(self.report.cgroup)
            self.marked = False
        if self.guardian is not None:
            self.guardian.dismiss()
            self.guardian = None
        if self.lock is not None:
            os.close(self.lock)
            self.lock = None


def _write_cgroup_file(path: str, value: bytes) -> None:
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


def _busy(directory: str, name: str, doing: str) -> TargetBusy:
    """The lock is taken: name the other dumper, as ptrace says "already traced by pid N"."""
    holder = _guard().lock_holder(directory)
    if holder is None:
        return TargetBusy(f"cgroup {name} {doing} by another process (it holds the "
                          "criu-model lock on the cgroup directory; its pid is not visible)")
    if os.path.exists(f"/proc/{holder}"):
        return TargetBusy(f"cgroup {name} {doing} by pid {holder} (criu-model holds its lock); "
                          "wait for that dump to end", holder)
    return TargetBusy(f"cgroup {name} {doing} by pid {holder}, which died: its guardian is "
                      "thawing the cgroup now; try again in a moment", holder)


def _already_frozen(directory: str, name: str, ancestor: tuple[str, str] | None
                    ) -> AlreadyFrozen:
    if ancestor is not None:
        above, above_dir = ancestor
        who = _guard().describe_marker(_guard().read_marker(above_dir))
        return AlreadyFrozen(
            f"cgroup {name} is frozen: its ancestor {above} is frozen ({who}); criu-model "
            f"does not thaw a freeze it did not make: thaw it with `criu-model thaw {above}` "
            "and dump again", name)
    marker = _guard().read_marker(directory)
    return AlreadyFrozen(
        f"cgroup {name} is already frozen ({_guard().describe_marker(marker)}); "
        "criu-model does not thaw a freeze it did not make: thaw it with "
        f"`criu-model thaw {name}` (or `echo 0 > {directory}/cgroup.freeze`) and dump again",
        name, (marker or {}).get("pid"))


def _strangers_error(name: str, strangers: set[int], when: str = "") -> UsageError:
    shown = ", ".join(str(p) for p in sorted(strangers)[:10])
    return UsageError(f"cgroup {name} also holds processes outside the tree ({shown})"
                      f"{' ' + when if when else ''}; freezing it would stop them too: "
                      "use --freeze=ptrace")


class ThawResult(NamedTuple):
    """What `thaw_cgroup` found and did."""

    cgroup: str  # the name, as /proc/PID/cgroup shows it
    directory: str
    was_frozen: bool
    frozen_by: str = ""  # describe_marker's words, when it was frozen


def thaw_cgroup(path: str, *, timeout: float = STOP_TIMEOUT_S) -> ThawResult:
    """Thaw a cgroup left frozen (by a dumper that died with its guardian, or anyone).

    Refused while a criu-model dump holds the cgroup's lock: that dump thaws it
    when it ends, and so does its guardian if it dies.
    """
    directory, name = cgroup_directory(path)
    freeze_file = f"{directory}/cgroup.freeze"
    if not os.path.exists(freeze_file):
        if os.path.exists(f"{directory}/cgroup.procs") and name == "/":
            raise UsageError("the root cgroup cannot be frozen: nothing to thaw")
        raise KernelUnsupported("cgroup v2 freezer", f"{freeze_file} missing (needs Linux 5.2)")
    lock = _guard().try_lock(directory)
    if lock is None:
        raise _busy(directory, name, "is being dumped")
    try:
        if read_all(freeze_file).strip() != b"1":
            ancestor = _frozen_ancestor(directory, name)
            if ancestor is not None:
                raise UsageError(f"cgroup {name} is not frozen itself, but its ancestor "
                                 f"{ancestor[0]} is: thaw that one "
                                 f"(`criu-model thaw {ancestor[0]}`)")
            return ThawResult(name, directory, False)
        who = _guard().describe_marker(_guard().read_marker(directory))
        _write_cgroup_file(freeze_file, b"0")
        _guard().clear_marker(directory)
        deadline = time.monotonic() + timeout
        while b"frozen 1" in read_all(f"{directory}/cgroup.events").split(b"\n"):
            if time.monotonic() >= deadline:
                raise CriuModelError(f"cgroup {name} still reports 'frozen 1' {timeout:g}s "
                                     "after writing 0 to cgroup.freeze")
            time.sleep(_POLL_MAX_S)
        return ThawResult(name, directory, True, who)
    finally:
        os.close(lock)


_FREEZERS: dict[FreezeMethod, type[_Freezer]] = {
    FreezeMethod.NONE: _Freezer,
    FreezeMethod.PTRACE: _PtraceFreezer,
    FreezeMethod.CGROUP: _CgroupFreezer,
}


@contextmanager
def frozen(pids: list[int], method: FreezeMethod | str, proc_root: str = PROC_ROOT, *,
           timeout: float = STOP_TIMEOUT_S, frozen_ok: bool = False) -> Iterator[FreezeReport]:
    """Hold the processes `pids` (tgids, already discovered) still inside the block.

    Processes that vanish, or are zombies, are skipped and listed in
    ``report.skipped``; an EPERM from ptrace raises AccessDenied after
    releasing what was already seized. A cgroup frozen before us raises
    AlreadyFrozen, or with `frozen_ok` is read as it is and left frozen.
    """
    method = FreezeMethod(method)
    report = FreezeReport(method)
    targets = list(dict.fromkeys(pids))
    if os.getpid() in targets:
        # A tree dumped from above (e.g. from pid 1) contains the dumper itself.
        targets.remove(os.getpid())
        report.skipped.append((os.getpid(), "the dumping process itself cannot be frozen"))
    freezer = _FREEZERS[method](report, proc_root, timeout)
    if isinstance(freezer, _CgroupFreezer):
        freezer.frozen_ok = frozen_ok
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
