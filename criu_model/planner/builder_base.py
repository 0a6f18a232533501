"""Creation-order state shared by the session and group rules: who is placed where.

`BuilderBase` holds what the builder knows at each point of the plan (each
placed actor's session, group, pid-namespace chain and creator, group sizes,
session members) and the primitives that change it (clone3 with its setns
around nested namespaces, setpgid). The rules that decide the order live in
groups.py (process groups) and sessions.py (sessions, orphans, the build loop).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from criu_model.images.pb import process_pb2
from criu_model.planner.model import RESTORER, Action, CloneFlag, Plan, PlannedProcess, flag_names
from criu_model.planner.pids import Chain, Namespaces
from criu_model.snapshot import Snapshot

NEW_NS_INIT = -1  # helper: pid 1 of the fresh namespace with --pid-ns new
# Session/group id 0: its leader was outside the dumper's pid namespace (NSsid shows
# 0). The restore cannot recreate it; such processes stay in the restorer's own
# session and group, which are outside the restored tree in the same way.
OUTSIDE = 0


class Unplannable(Exception):
    """No creation order for some process: becomes a blocker, never escapes plan()."""

    def __init__(self, message: str, kind: str = "unplannable", pid: int | None = None,
                 fix: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.pid = pid
        self.fix = fix


def hidden_at(numbers: list[int] | tuple[int, ...], level: int) -> bool:
    """Is the pid these NSsid/NSpgid numbers name invisible from namespace `level`?"""
    return level < len(numbers) and numbers[level] == 0


def group_hidden_inside(proc: process_pb2.Process) -> bool:
    """Is the process's group made outside its (nested) pid namespace, so unseen there?"""
    return len(proc.ns_pgids) > 1 and proc.ns_pgids[-1] == 0


class BuilderBase:
    """The builder's state and primitives; files.py hooks `on_created` to open files."""

    def __init__(self, snap: Snapshot, plan: Plan, ns: Namespaces, *,
                 last_pid: bool = False) -> None:
        self.snap = snap
        self.plan = plan
        self.ns = ns
        self.last_pid = last_pid
        self.base = RESTORER if plan.pid_ns == "same" else NEW_NS_INIT
        self.kids: dict[int, list[int]] = snap.children()
        self.pending: set[int] = {p.pid for p in snap.processes if p.pid in ns.chain}
        # Processes whose group their own pid namespace cannot see: they can only inherit it.
        self.inheritors = [p for p in snap.processes if group_hidden_inside(p)]
        # Per placed actor: current session and group (outermost ids), chain, creator.
        self.sid: dict[int, int] = {self.base: OUTSIDE}
        self.pgid: dict[int, int] = {self.base: OUTSIDE}
        self.where: dict[int, Chain] = {self.base: ()}
        self.creator: dict[int, int] = {}
        self.group_size: dict[int, int] = defaultdict(int)
        self.members: dict[int, list[int]] = defaultdict(list)   # sid -> placed actors
        self.members[OUTSIDE].append(self.base)   # the restorer is in the hidden session
        self.subreapers: dict[int, int] = {}          # assumed subreaper -> first orphan
        self.reaper_of: dict[int, int] = {}           # orphan maker -> its orphan's reaper
        self.deferred: list[tuple[int, int]] = []     # (pid, pgid) joins
        self.late: list[tuple[int, int]] = []         # leaders that left their own group
        self.helpers: list[int] = []
        self.orphan_makers: dict[int, int] = {}      # helper -> the orphan it forks
        self._next_helper = -2
        self.on_created: list[Callable[[int], None]] = []
        self.on_clone: list[Callable[[int, int, int], None]] = []
        self.on_settled: list[Callable[[int], None]] = []   # in its session and group
        self.on_new_pid_ns: list[Callable[[int, Chain], None]] = []   # (init, its chain)
        self.ns_flags: Callable[[int, int], int] | None = None   # nsorder.py: CLONE_NEW*
        # nsorder.py: (creator, child, levels) -> why creator may not set_tid there, or None
        self.set_tid_denied: Callable[[int, int, list[Chain]], str | None] | None = None
        self.failed = False          # a creation blocker was reported: the plan is partial

    def _proc(self, pid: int) -> process_pb2.Process:
        return self.snap.by_pid[pid]

    def expected_parent(self, proc: process_pb2.Process) -> int:
        return proc.ppid if proc.ppid in self.snap.by_pid else self.base

    def _helper_key(self) -> int:
        key = self._next_helper
        self._next_helper -= 1
        return key

    def _share_flags(self, proc: process_pb2.Process, creator: int) -> int:
        flags = 0
        other = self.snap.by_pid.get(creator)
        if other is None:
            return 0
        mine, theirs = proc.shares, other.shares
        if mine.files and mine.files == theirs.files:
            flags |= CloneFlag.FILES
        if mine.fs and mine.fs == theirs.fs:
            flags |= CloneFlag.FS
        if mine.vm and mine.vm == theirs.vm:
            flags |= CloneFlag.VM
            if mine.sighand and mine.sighand == theirs.sighand:
                flags |= CloneFlag.SIGHAND
        return flags

    def _clone(self, creator: int, key: int, set_tid: list[int], chain: Chain, *,
               new_ns: bool, flags: int = 0, helper: bool = False, reason: str = "") -> None:
        """Emit the clone3 (with setns around it when the child is deeper)."""
        here = self.where[creator]
        target = chain[:-1] if new_ns else chain
        if target != here:
            if here != target[:len(here)] or not target:
                raise Unplannable(f"{key}: its creator {creator} is in another pid namespace")
            self.plan.add(creator, Action.SETNS_PID, ns_init=target[-1],
                          reason="so the child lands in the nested pid namespace")
        if self.set_tid_denied is not None:
            # set_tid[i] needs CAP_CHECKPOINT_RESTORE in the user namespace owning level i.
            # A new namespace's own level (set_tid[0] = 1) is owned by a user namespace
            # the creator made or is in; the levels that already exist are checked.
            existing = [target[:depth] for depth in range(len(target), -1, -1)]
            why = self.set_tid_denied(creator, key,
                                      existing[:max(len(set_tid) - (1 if new_ns else 0), 0)])
            if why is not None:
                raise Unplannable(
                    f"pid {key} must be created by {creator} with set_tid {set_tid}, but "
                    f"{why}: the kernel refuses set_tid (EPERM)", "set-tid-in-child-userns",
                    pid=creator if creator in self.snap.by_pid else key,
                    fix=f"not supported yet: {creator} would have to be created in its parent's "
                        "user namespace, fork its children with set_tid, and only then "
                        "unshare(CLONE_NEWUSER); or dump/restore from inside that user "
                        "namespace")
        if new_ns:
            flags |= CloneFlag.NEWPID
        method = Action.CLONE
        args: dict[str, object] = {"child": key, "set_tid": set_tid}
        if self.last_pid and not helper:
            method = Action.LAST_PID_CLONE
            args = {"child": key, "pid": set_tid[-1] if new_ns and len(set_tid) > 1
                    else set_tid[0]}
        self.plan.add(creator, method, flags=flag_names(flags), flags_value=int(flags), **args)
        if target != here:
            self.plan.add(creator, Action.SETNS_PID, ns_init=creator if here else self.base,
                          reason="back to its own pid namespace")
        self.plan.processes[key] = PlannedProcess(
            key=key, parent=creator, set_tid=set_tid, helper=helper, new_pid_ns=new_ns,
            reason=reason, flags=int(flags))
        self.where[key] = chain
        self.creator[key] = creator
        for hook in self.on_clone:
            hook(creator, key, int(flags))
        if new_ns:
            for hook in self.on_new_pid_ns:
                hook(key, chain)
        self.sid[key] = self.sid[creator]
        self.pgid[key] = self.pgid[creator]
        self.group_size[self.pgid[key]] += 1

    def _set_pgid(self, key: int, pgid: int) -> None:
        self.group_size[self.pgid[key]] -= 1
        self.pgid[key] = pgid
        self.group_size[pgid] += 1

    def _enter_group(self, pid: int, pgid: int) -> None:
        """setpgid(0, its dumped group), numbered as its own pid namespace sees it."""
        proc = self._proc(pid)
        self.plan.add(pid, Action.SETPGID, pgid=proc.ns_pgids[-1] if proc.ns_pgids else pgid,
                      reason=f"join process group {pgid}")
        self._set_pgid(pid, pgid)

    def _set_sid(self, key: int, sid: int) -> None:
        self.sid[key] = sid
        self.members[sid].append(key)

    def _branch(self, pid: int, ancestor: int) -> int | None:
        """The child of `ancestor` whose subtree holds `pid` (itself if a child), or None."""
        seen: set[int] = set()
        proc = self.snap.by_pid.get(pid)
        while proc is not None and proc.pid not in seen:
            if proc.ppid == ancestor:
                return proc.pid
            seen.add(proc.pid)
            proc = self.snap.by_pid.get(proc.ppid)
        return None

    def _below(self, pid: int, ancestor: int) -> bool:
        """Is `pid` a descendant of `ancestor` in the dumped tree?"""
        return self._branch(pid, ancestor) is not None

    def _candidates(self, sid: int, chain: Chain, under: int | None,
                    pgid: int | None = None) -> list[int]:
        out = []
        for key in self.members.get(sid, []):
            if self.sid.get(key) != sid or (pgid is not None and self.pgid.get(key) != pgid):
                continue
            here = self.where[key]
            if chain[:len(here)] != here:
                continue
            if under is not None and not self._descends(key, under):
                continue
            out.append(key)
        return out

    def _descends(self, key: int, ancestor: int) -> bool:
        while key in self.creator:
            if key == ancestor:
                return True
            key = self.creator[key]
        return key == ancestor

    # ------------------------------------------------------------ the rules (sessions.py)
    # Builder defines these; the group rules (groups.py) call them.

    def place(self, pid: int, creator: int) -> None:
        raise NotImplementedError

    def _place_elsewhere(self, pid: int) -> None:
        raise NotImplementedError

    def _orphan(self, pid: int) -> bool:
        raise NotImplementedError

    def _direct(self, kid: process_pb2.Process, parent: int) -> bool:
        raise NotImplementedError

    def _needs_old(self, pid: int, sid: int | None, pgid: int | None, new_session: bool,
                   depth: int = 0) -> bool:
        raise NotImplementedError
