"""Identity of shared kernel objects, found with kcmp(2).

Two fds share one open file description, two tasks share one fd table (or
fs, sighand, mm...) exactly when kcmp() says their kernel pointers are equal.
kcmp also *orders* unequal pointers (consistently across processes: it
compares obfuscated ``struct file *`` etc., with one cookie per kind), so, as
CRIU's kcmp-ids tree does, we keep one representative per object in a list
sorted by that order and place every newcomer by binary search: O(log k)
calls per item, never all pairs.

Files are first split into candidate groups by (dev, ino, pos, status flags,
mnt_id): fds in different groups can never be one description, and a group of
one needs no kcmp call at all.

Numbering: ids are small integers, 1, 2, 3... in first-seen order of the
input, so the same input gives the same ids. Task ids use 0
(:data:`NO_OBJECT`) for a task that has no such object at all (an exited
task has no mm/files/fs; most tasks have no io context or SysV undo list):
kcmp() reports two NULL pointers as "equal", which is not sharing.

Races. The inputs are meant to come from a frozen tree. Still:

* an fd closed since it was listed (EBADF) gets an id of its own and is
  listed in :attr:`SharingStats.closed`;
* a process gone (ESRCH, or exited: its fd table is already NULL) is listed
  in :attr:`SharingStats.gone_pids` and its fds/pid are left out of the
  result; the pass goes on for everybody else (the caller drops that process
  from the snapshot, as it does when /proc reads fail with ProcessGone).

An fd *number* reused for another file between listing and comparing cannot
be detected here; freezing the tree rules that out.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext, suppress
from typing import Any, Generic, NamedTuple, TypeVar

from criu_model.collect.procfs import ProcDir, task_state
from criu_model.errors import (
    PTRACE_HINT,
    AccessDenied,
    CriuModelError,
    KernelUnsupported,
)
from criu_model.kernel.kcmp import KcmpResult, KcmpType, RawKcmp, kcmp, kcmp_epoll_tfd, raw_kcmp

NO_OBJECT = 0
"""Task id meaning "this task has no such object" (NULL pointer in the kernel)."""

FIRST_ID = 1

# O_CLOEXEC is a per-fd flag that fdinfo folds into "flags": two fds of one
# description may differ in it, so it must not split candidate groups.
O_CLOEXEC = os.O_CLOEXEC

# Task kinds for task_shares(), with their names in the snapshot's "shares".
SHARE_KINDS: dict[str, KcmpType] = {
    "files": KcmpType.FILES,
    "fs": KcmpType.FS,
    "sighand": KcmpType.SIGHAND,
    "vm": KcmpType.VM,
}
TASK_KINDS = frozenset({KcmpType.VM, KcmpType.FILES, KcmpType.FS, KcmpType.SIGHAND,
                        KcmpType.IO, KcmpType.SYSVSEM})
# A task keeps its sighand until it is reaped, so a NULL sighand never occurs
# for a pid we can name: no sentinel needed for that kind.
_NULLABLE = TASK_KINDS - {KcmpType.SIGHAND}

_STALE_ERRNOS = frozenset({errno.EBADF, errno.ESRCH, errno.ENOENT})
_EXITED_STATES = frozenset("ZX")


class FdKey(NamedTuple):
    """What the sharing pass needs to know about one fd (from stat + fdinfo).

    ``dev``/``ino`` are those of the file (st_dev encoding), ``pos`` and
    ``flags`` come from fdinfo (``flags`` may include O_CLOEXEC: it is masked
    out). ``mnt_id`` sharpens the prefilter when known (-1: unknown).
    """

    pid: int
    fd: int
    dev: int
    ino: int
    pos: int
    flags: int
    mnt_id: int = -1

    @property
    def group(self) -> tuple[int, int, int, int, int]:
        """Prefilter key: fds with different keys cannot share a description."""
        return self.dev, self.ino, self.pos, self.flags & ~O_CLOEXEC, self.mnt_id


class EpollTarget(NamedTuple):
    """One ``tfd:`` line of an epoll fd's fdinfo.

    ``dev``/``ino``/``pos`` narrow the search (None: unknown, search all).
    ``toff`` is the rank of this registration among those with the same
    ``tfd`` number; None lets :func:`match_epoll_targets` count it from the
    order of the fdinfo lines (which is the kernel's own order).
    """

    tfd: int
    dev: int | None = None
    ino: int | None = None
    pos: int | None = None
    toff: int | None = None


class SharingStats:
    """What a sharing pass did: for reports, benchmarks and the n log n test."""

    __slots__ = ("closed", "gone_pids", "groups", "ids", "kcmp_calls", "singleton_groups")

    def __init__(self) -> None:
        self.kcmp_calls = 0
        self.groups = 0  # candidate groups (files) or kinds (tasks)
        self.singleton_groups = 0  # groups of one: settled without kcmp
        self.ids = 0  # distinct ids handed out
        self.closed: list[tuple[int, int]] = []  # (pid, fd) closed meanwhile
        self.gone_pids: set[int] = set()

    def __repr__(self) -> str:
        return (f"SharingStats(kcmp_calls={self.kcmp_calls}, groups={self.groups}, "
                f"singleton_groups={self.singleton_groups}, ids={self.ids}, "
                f"closed={self.closed}, gone_pids={self.gone_pids})")


T = TypeVar("T")


class _Slot(Generic[T]):
    """One kernel object: its id and the items known to point at it.

    ``members[0]`` is the representative compared against; the others are
    spares that take over if it is closed or its process goes away.
    """

    __slots__ = ("ident", "members")

    def __init__(self, ident: int, first: T) -> None:
        self.ident = ident
        self.members = [first]


Order = Callable[[T], KcmpResult]
"""How the sought object compares with a representative: sought <, =, > rep."""


class _Sorter(Generic[T]):
    """Binary search over slots kept in kcmp order, healing stale representatives."""

    def __init__(self, stats: SharingStats) -> None:
        self.stats = stats

    # -- to be provided by subclasses
    def stale_reason(self, item: T) -> str | None:
        """None if `item` can still be compared, else "closed" or "gone"."""
        raise NotImplementedError

    def mark_stale(self, item: T, reason: str) -> None:
        raise NotImplementedError

    # -- shared machinery
    def call(self, fn: Callable[[], KcmpResult], what: Callable[[], str]) -> KcmpResult:
        """One counted kcmp call; fatal errors become our exceptions, stale ones stay OSError.

        ``what`` describes the call for an error message: built only on error,
        as formatting it costs as much as the call itself.
        """
        self.stats.kcmp_calls += 1
        try:
            return fn()
        except OSError as err:
            if err.errno in _STALE_ERRNOS:
                raise
            raise _fatal(err, what()) from err

    def bisect(self, slots: list[_Slot[T]], order: Order[T]) -> tuple[int, bool]:
        """(index, found): where the sought object is, or where it belongs.

        An OSError escaping means the *sought* side could not be compared
        (the representative was checked and found fine).
        """
        lo, hi = 0, len(slots)
        while lo < hi:
            mid = (lo + hi) // 2
            try:
                rel = order(slots[mid].members[0])
            except OSError:
                if self._heal(slots, mid):
                    lo, hi = 0, len(slots)  # rare: restart on the repaired list
                    continue
                raise
            if rel is KcmpResult.EQUAL:
                return mid, True
            if rel is KcmpResult.LESS:
                hi = mid
            elif rel is KcmpResult.GREATER:
                lo = mid + 1
            else:  # kcmp_ptr() always orders; anything else is a kernel we do not know
                raise CriuModelError(f"kcmp returned {rel!r} where an ordering was expected")
        return lo, False

    def _heal(self, slots: list[_Slot[T]], index: int) -> bool:
        """If the slot's representative went stale, drop it (or the slot); True if so."""
        slot = slots[index]
        rep = slot.members[0]
        reason = self.stale_reason(rep)
        if reason is None:
            return False
        self.mark_stale(rep, reason)
        del slot.members[0]
        if not slot.members:
            del slots[index]
        return True


# ----------------------------------------------------------------- files


class FileIdIndex(_Sorter[FdKey]):
    """file_id for every fd; kept afterwards to place epoll targets.

    Build it with :meth:`build` (or use :func:`assign_file_ids`). ``ids``
    maps (pid, fd) to file_id; fds of gone processes are not in it.
    """

    def __init__(self) -> None:
        super().__init__(SharingStats())
        self.ids: dict[tuple[int, int], int] = {}
        self._groups: dict[tuple[int, int, int, int, int], list[_Slot[FdKey]]] = {}
        self._by_inode: dict[tuple[int, int], list[tuple[int, int, int, int, int]]] = {}
        self._next = FIRST_ID
        self._closed: set[tuple[int, int]] = set()
        self._raw = raw_kcmp()

    @classmethod
    def build(cls, fds: Sequence[FdKey]) -> FileIdIndex:
        index = cls()
        sizes: dict[tuple[int, int, int, int, int], int] = {}
        for key in fds:
            sizes[key.group] = sizes.get(key.group, 0) + 1
        index.stats.groups = len(sizes)
        index.stats.singleton_groups = sum(1 for n in sizes.values() if n == 1)
        for key in fds:
            index.add(key, alone=sizes[key.group] == 1)
        return index

    def _fresh(self) -> int:
        ident = self._next
        self._next += 1
        self.stats.ids += 1
        return ident

    def add(self, key: FdKey, *, alone: bool = False) -> None:
        """Give `key` its file_id; `alone` (no other fd in its group, ever) skips kcmp."""
        if key.pid in self.stats.gone_pids:
            return
        group = key.group
        slots = self._groups.get(group)
        if slots is None:
            slots = self._groups[group] = []
            self._by_inode.setdefault((key.dev, key.ino), []).append(group)
        if alone:  # nothing to compare with: no kcmp call
            slot = _Slot(self._fresh(), key)
            slots.append(slot)
            self.ids[(key.pid, key.fd)] = slot.ident
            return

        stats = self.stats
        searched = _quick_bisect(slots, self._raw, key.pid, _FILE, key.fd, stats)
        if searched is None:  # an answer that is not an order: the healing search

            def order(rep: FdKey) -> KcmpResult:
                # self.call() inlined: this runs for every comparison of the pass
                stats.kcmp_calls += 1
                try:
                    return kcmp(key.pid, rep.pid, KcmpType.FILE, key.fd, rep.fd)
                except OSError as err:
                    if err.errno in _STALE_ERRNOS:
                        raise
                    raise _fatal(err, f"kcmp(FILE, {key.pid}:{key.fd}, "
                                      f"{rep.pid}:{rep.fd})") from err

            try:
                searched = self.bisect(slots, order)
            except OSError as err:
                reason = self.stale_reason(key)
                if reason is None:
                    raise CriuModelError(f"kcmp(FILE) on {key.pid}:{key.fd} failed: "
                                         f"{err.strerror}") from err
                self.mark_stale(key, reason)
                return
        where, found = searched
        if found:
            slots[where].members.append(key)
            self.ids[(key.pid, key.fd)] = slots[where].ident
        else:
            slot = _Slot(self._fresh(), key)
            slots.insert(where, slot)
            self.ids[(key.pid, key.fd)] = slot.ident

    def stale_reason(self, item: FdKey) -> str | None:
        if item.pid in self.stats.gone_pids:
            return "gone"
        try:
            self.call(lambda: kcmp(item.pid, item.pid, KcmpType.FILE, item.fd, item.fd),
                      lambda: f"kcmp(FILE, {item.pid}:{item.fd}, itself)")
        except OSError as err:
            if err.errno == errno.ESRCH or _exited(item.pid):
                return "gone"
            return "closed"
        return None

    def mark_stale(self, item: FdKey, reason: str) -> None:
        if reason == "gone":
            self.stats.gone_pids.add(item.pid)
            for key in [k for k in self.ids if k[0] == item.pid]:
                del self.ids[key]
        elif (item.pid, item.fd) not in self._closed:  # an id of its own, and reported once
            self._closed.add((item.pid, item.fd))
            self.ids[(item.pid, item.fd)] = self._fresh()
            self.stats.closed.append((item.pid, item.fd))

    # -- epoll targets

    def epoll_target_id(self, epoll_pid: int, epoll_fd: int, target: EpollTarget,
                        toff: int = 0) -> int | None:
        """file_id of the file registered as `target` in `epoll_pid`'s `epoll_fd`.

        None when the target is not among the indexed fds (its file is only
        held outside the dumped tree) or is no longer registered. Tries the
        fd that still has the registered number first (one call in the usual
        case), then binary-searches the candidate groups: KCMP_EPOLL_TFD
        orders like KCMP_FILE (kernel/kcmp.c: kcmp_ptr(..., KCMP_FILE)).
        """
        if target.toff is not None:
            toff = target.toff
        if epoll_pid in self.stats.gone_pids:
            return None
        def what() -> str:
            return f"kcmp(EPOLL_TFD, {epoll_pid} efd {epoll_fd} tfd {target.tfd})"

        def against(rep: FdKey) -> KcmpResult:
            # kcmp_epoll_tfd orders rep's file against the target: invert for "target vs rep".
            rel = self.call(lambda: kcmp_epoll_tfd(rep.pid, rep.fd, epoll_pid, epoll_fd,
                                                   target.tfd, toff), what)
            return _INVERSE[rel]

        try:
            same_number = self.ids.get((epoll_pid, target.tfd))
            if same_number is not None and self._matches_fd(epoll_pid, target, against):
                return same_number
            for group in self._candidate_groups(target):
                where, found = self.bisect(self._groups[group], against)
                if found:
                    return self._groups[group][where].ident
        except OSError as err:
            return self._epoll_failure(epoll_pid, epoll_fd, err)
        return None

    def _matches_fd(self, pid: int, target: EpollTarget,
                    against: Callable[[FdKey], KcmpResult]) -> bool:
        key = FdKey(pid, target.tfd, 0, 0, 0, 0)
        try:
            return against(key) is KcmpResult.EQUAL
        except OSError as err:
            if err.errno == errno.EBADF and self.stale_reason(key) == "closed":
                self.mark_stale(key, "closed")
                return False  # the fd with that number is gone: search the groups
            raise

    def _candidate_groups(self, target: EpollTarget) -> Iterator[tuple[int, int, int, int, int]]:
        if target.dev is not None and target.ino is not None:
            groups: Sequence[tuple[int, int, int, int, int]] = self._by_inode.get(
                (target.dev, target.ino), [])
        else:
            groups = list(self._groups)
        for group in groups:
            if target.pos is None or group[2] == target.pos:
                yield group

    def _epoll_failure(self, epoll_pid: int, epoll_fd: int, err: OSError) -> None:
        """The epoll side failed: target unregistered (ENOENT), efd closed, or process gone."""
        if err.errno == errno.ENOENT:
            return None
        if err.errno == errno.ESRCH or _exited(epoll_pid):
            self.mark_stale(FdKey(epoll_pid, epoll_fd, 0, 0, 0, 0), "gone")
            return None
        if err.errno == errno.EBADF:  # the epoll fd itself was closed
            if (epoll_pid, epoll_fd) in self.ids:
                self.mark_stale(FdKey(epoll_pid, epoll_fd, 0, 0, 0, 0), "closed")
            return None
        raise CriuModelError(f"kcmp(EPOLL_TFD) on {epoll_pid}:{epoll_fd}: {err.strerror}") from err


_INVERSE = {
    KcmpResult.EQUAL: KcmpResult.EQUAL,
    KcmpResult.LESS: KcmpResult.GREATER,
    KcmpResult.GREATER: KcmpResult.LESS,
    KcmpResult.NOT_EQUAL: KcmpResult.NOT_EQUAL,
}


def assign_file_ids(fds: Sequence[FdKey]) -> tuple[dict[tuple[int, int], int], SharingStats]:
    """file_id per (pid, fd): equal exactly when the fds share one open file description.

    Use :meth:`FileIdIndex.build` instead when epoll targets must be matched too.
    """
    index = FileIdIndex.build(fds)
    return index.ids, index.stats


def match_epoll_targets(epoll_pid: int, epoll_fd: int, targets: Sequence[EpollTarget],
                        candidates: FileIdIndex) -> list[int | None]:
    """file_id of each target of one epoll fd (None: not found among the indexed fds).

    `targets` in fdinfo order, so that a missing ``toff`` is counted right:
    the k-th line with a given tfd number is registration k of that number.
    A gone epoll process is recorded in ``candidates.stats.gone_pids``.
    """
    seen: dict[int, int] = {}
    out: list[int | None] = []
    for target in targets:
        toff = seen.get(target.tfd, 0)
        seen[target.tfd] = toff + 1
        out.append(candidates.epoll_target_id(epoll_pid, epoll_fd, target, toff))
    return out


# ----------------------------------------------------------------- tasks


class _TaskSorter(_Sorter[int]):
    def __init__(self, kind: KcmpType, stats: SharingStats) -> None:
        super().__init__(stats)
        self.kind = kind

    def stale_reason(self, item: int) -> str | None:
        if item in self.stats.gone_pids:
            return "gone"
        try:
            self.call(lambda: kcmp(item, item, self.kind),
                      lambda: f"kcmp({self.kind.name}, {item})")
        except OSError:
            return "gone"
        return None

    def mark_stale(self, item: int, reason: str) -> None:
        self.stats.gone_pids.add(item)

    def assign(self, pids: Sequence[int], null_pid: int | None,
               within: dict[int, int] | None = None) -> dict[int, int]:
        """Ids of ``pids``' objects; with ``within`` (pid -> group), an object is
        shared only inside a group: a pid alone in its group gets a fresh id without
        kcmp. Numbering is the same as one pass over everybody would give."""
        slots: list[_Slot[int]] = [] if null_pid is None else [_Slot(NO_OBJECT, null_pid)]
        ids: dict[int, int] = {}
        next_id = FIRST_ID
        self.stats.groups += 1
        stats, kind = self.stats, self.kind
        raw, kind_nr = raw_kcmp(), int(kind)
        everyone = slots
        group_slots: dict[int, list[_Slot[int]]] = {}
        sizes: dict[int, int] = {}
        if within is not None:
            for pid in dict.fromkeys(pids):
                if pid in within:
                    sizes[within[pid]] = sizes.get(within[pid], 0) + 1
        for pid in pids:
            if pid in ids or pid in self.stats.gone_pids:
                continue
            slots = everyone
            if within is not None and pid in within:
                group = within[pid]
                if sizes[group] == 1:  # nobody to share with
                    ids[pid] = next_id
                    next_id += 1
                    self.stats.ids += 1
                    continue
                slots = group_slots.setdefault(group, [])
            searched = _quick_bisect(slots, raw, pid, kind_nr, -1, stats)
            if searched is None:  # an answer that is not an order: the healing search

                def order(rep: int, pid: int = pid) -> KcmpResult:
                    # self.call() inlined: this runs for every comparison of the pass
                    stats.kcmp_calls += 1
                    try:
                        return kcmp(pid, rep, kind)
                    except OSError as err:
                        if err.errno in _STALE_ERRNOS:
                            raise
                        raise _fatal(err, f"kcmp({kind.name}, {pid}, {rep})") from err

                try:
                    searched = self.bisect(slots, order)
                except OSError as err:
                    if self.stale_reason(pid) is None:
                        raise CriuModelError(f"kcmp({self.kind.name}) on {pid} failed: "
                                             f"{err.strerror}") from err
                    self.mark_stale(pid, "gone")
                    continue
            where, found = searched
            if found:
                slots[where].members.append(pid)
                ids[pid] = slots[where].ident
            else:
                slots.insert(where, _Slot(next_id, pid))
                ids[pid] = next_id
                next_id += 1
                self.stats.ids += 1
        for pid in self.stats.gone_pids:
            ids.pop(pid, None)
        return ids


def assign_task_ids(pids: Sequence[int], kind: KcmpType, *,
                    stats: SharingStats | None = None) -> dict[int, int]:
    """Id per pid (or tid) of its `kind` object: equal exactly when shared.

    :data:`NO_OBJECT` (0) for a task without that object (exited task, no io
    context, no SysV undo list). Gone pids are left out and, when `stats` is
    given, listed in ``stats.gone_pids`` (it also accumulates kcmp calls).
    """
    if kind not in TASK_KINDS:
        raise ValueError(f"{kind!r} is not a per-task kind (use assign_file_ids for files)")
    stats = SharingStats() if stats is None else stats
    sorter = _TaskSorter(kind, stats)
    if kind not in _NULLABLE:
        return sorter.assign(pids, None)
    with null_sentinel() as null_pid:
        return sorter.assign(pids, null_pid)


def task_shares(pids: Sequence[int], *, stats: SharingStats | None = None,
                sentinel: NullSentinel | None = None) -> dict[int, dict[str, int]]:
    """{pid: {"files": id, "fs": id, "sighand": id, "vm": id}} for the snapshot's "shares".

    A pid gone during any of the four passes is left out entirely (and listed
    in ``stats.gone_pids`` when `stats` is given). ``sentinel``, forked by the
    caller well before (see :class:`NullSentinel`), saves waiting for a new one.
    """
    stats = SharingStats() if stats is None else stats
    per_kind: dict[str, dict[int, int]] = {}
    with (nullcontext(sentinel.zombie()) if sentinel is not None
          else null_sentinel()) as null_pid:
        # vm before sighand: processes share a sighand only with CLONE_SIGHAND, which
        # clone() refuses without CLONE_VM (kernel/fork.c), and exec unshares both:
        # so a sighand is shared only among processes of one mm, and one alone in its
        # mm needs no kcmp for it. Unless an mm is NULL (an exited task keeps its
        # sighand, not its mm): then everybody is compared with everybody.
        for name in ("files", "fs", "vm", "sighand"):
            kind = SHARE_KINDS[name]
            sorter = _TaskSorter(kind, stats)
            vm = per_kind.get("vm")
            within = (vm if kind is KcmpType.SIGHAND and vm is not None
                      and NO_OBJECT not in vm.values() else None)
            per_kind[name] = sorter.assign(pids, null_pid if kind in _NULLABLE else None,
                                           within)
    return {pid: {name: ids[pid] for name, ids in per_kind.items()}
            for pid in dict.fromkeys(pids) if pid not in stats.gone_pids}


class NullSentinel:
    """A child of ours that exits at once: as a zombie, a task whose mm, files, fs,
    io context and SysV undo list are all NULL (do_exit() cleared them), so that
    "equal to it" means "has none" rather than "shares".

    Forked when made, waited for at the first :meth:`zombie`: a dump makes it
    before collecting, so by the sharing pass it has long exited and nobody
    waits for a child to be scheduled (milliseconds on a busy machine).
    """

    def __init__(self) -> None:
        self.pid: int | None = os.fork()
        if self.pid == 0:  # child: exit at once, nothing else
            os._exit(0)
        self._dead = False

    def zombie(self) -> int:
        """Its pid, once it is a zombie (not reaped)."""
        if self.pid is None:
            raise ValueError("the sentinel was reaped already")
        if not self._dead:
            try:  # wait until it is a zombie, without reaping it
                os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
            except ChildProcessError as err:  # SIGCHLD ignored: children are auto-reaped
                raise CriuModelError("cannot keep a zombie to tell NULL from shared objects: "
                                     "SIGCHLD is ignored in this process") from err
            self._dead = True
        return self.pid

    def close(self) -> None:
        """Reap it (idempotent)."""
        if self.pid is not None:
            with suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
            self.pid = None

    def __enter__(self) -> NullSentinel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def null_sentinel() -> Iterator[int]:
    """Pid of a zombie child of ours (see :class:`NullSentinel`); reaped on exit."""
    with NullSentinel() as sentinel:
        yield sentinel.zombie()


# ----------------------------------------------------------------- helpers


_FILE = int(KcmpType.FILE)


def _quick_bisect(slots: list[_Slot[Any]], raw: RawKcmp, pid: int, kind: int, fd: int,
                  stats: SharingStats) -> tuple[int, bool] | None:
    """:meth:`_Sorter.bisect` for the usual case, every call answering an order.

    ``fd`` >= 0: compare fd ``fd`` of ``pid`` with each representative fd
    (KCMP_FILE); else the tasks' ``kind`` objects. None as soon as a call
    answers anything else (an error: a closed fd, a gone process): the caller
    searches again through :meth:`_Sorter.bisect`, which tells why and heals.
    Each call is counted. A plain loop over the raw syscall: a dump makes
    thousands of these calls, and the general search's closures and enums
    cost as much as the calls themselves.
    """
    lo, hi = 0, len(slots)
    calls = 0
    try:
        while lo < hi:
            mid = (lo + hi) >> 1
            rep = slots[mid].members[0]
            calls += 1
            ret = (raw(pid, rep, kind, 0, 0) if fd < 0
                   else raw(pid, rep.pid, kind, fd, rep.fd))
            if ret == 1:  # LESS: the sought object sorts before rep's
                hi = mid
            elif ret == 2:  # GREATER
                lo = mid + 1
            elif ret == 0:
                return mid, True
            else:
                return None
        return lo, False
    finally:
        stats.kcmp_calls += calls


def _exited(pid: int) -> bool:
    """True if `pid` no longer exists or is a zombie (its fd table is already gone)."""
    state = task_state(ProcDir(pid))
    return state is None or state in _EXITED_STATES


def _fatal(err: OSError, what: str) -> CriuModelError:
    """kcmp errors that no retry can fix."""
    if err.errno in (errno.EPERM, errno.EACCES):
        return AccessDenied(None, what, PTRACE_HINT)
    if err.errno == errno.ENOSYS:
        return KernelUnsupported("kcmp", "kernel built without CONFIG_KCMP (Linux 3.5+)")
    if err.errno == errno.EOPNOTSUPP:
        return KernelUnsupported(what, "CONFIG_SYSVIPC or CONFIG_EPOLL is not set")
    if err.errno == errno.EINVAL and "EPOLL_TFD" in what:
        return KernelUnsupported("KCMP_EPOLL_TFD", "needs Linux 4.13")
    return CriuModelError(f"{what}: {err.strerror}")


__all__ = [
    "NO_OBJECT",
    "SHARE_KINDS",
    "EpollTarget",
    "FdKey",
    "FileIdIndex",
    "NullSentinel",
    "SharingStats",
    "assign_file_ids",
    "assign_task_ids",
    "match_epoll_targets",
    "null_sentinel",
    "task_shares",
]
