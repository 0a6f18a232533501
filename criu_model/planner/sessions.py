"""Creation order: who forks whom, setsid/setpgid order, helpers, orphans, zombies, threads.

Rules the order follows (the simulator checks each of them):

* a session leader calls setsid() right after it is created, after forking
  the children that must keep its *previous* session;
* a child that is not a session leader can only get its session by fork, so
  it is forked by a process of that session; when its parent is in another
  session, it was reparented: an orphan-maker helper in the right session
  forks it and exits, and the kernel hands it to the nearest child subreaper
  or namespace init (the parent in the snapshot);
* a session or group whose leader is gone gets a helper with the leader's pid
  that calls setsid()/setpgid(0, 0) and exits once every member is in place;
* joining a group waits until the group exists; zombies exit last with their
  recorded wait status; helpers exit in reverse creation order.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable

from criu_model.images.pb import process_pb2
from criu_model.planner.model import (
    RESTORER,
    Action,
    CloneFlag,
    Plan,
    PlannedProcess,
    Severity,
    flag_names,
)
from criu_model.planner.pids import Chain, Namespaces, is_ns_init, kernel_order, visible_prefix
from criu_model.snapshot import Snapshot

NEW_NS_INIT = -1  # helper: pid 1 of the fresh namespace with --pid-ns new
# Session/group id 0: its leader was outside the dumper's pid namespace (NSsid shows
# 0). The restore cannot recreate it; such processes stay in the restorer's own
# session and group, which are outside the restored tree in the same way.
OUTSIDE = 0


class Builder:
    """Places every process; files.py hooks `on_created` to open files before forks."""

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
        self.inheritors = [p for p in snap.processes if len(p.ns_pgids) > 1
                           and _hidden_at(p.ns_pgids, len(p.ns_pgids) - 1)]
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

    # ------------------------------------------------------------ basics

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
                raise _Unplannable(f"{key}: its creator {creator} is in another pid namespace")
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
                raise _Unplannable(
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

    # ------------------------------------------------------------ real processes

    def place(self, pid: int, creator: int) -> None:
        """Create `pid` (and what it directly forks) by `creator`."""
        proc = self._proc(pid)
        self.pending.discard(pid)
        chain = self.ns.chain[pid]
        self._clone(creator, pid, kernel_order(proc.ns_pids), chain, new_ns=is_ns_init(proc),
                    flags=self._share_flags(proc, creator)
                    | (self.ns_flags(pid, creator) if self.ns_flags is not None else 0))
        if proc.state == "Z":
            self.plan.processes[pid].zombie = True
        for hook in self.on_created:
            hook(pid)
        inherited_sid, inherited_pgid = self.sid[pid], self.pgid[pid]
        self._lead_groups_first(pid)
        if proc.sid == pid or proc.pgid != inherited_pgid:
            # Children that kept what this process had before it changed session or
            # group were forked before the change: fork them first.
            self._fork_keepers(pid, inherited_sid, inherited_pgid, proc.sid == pid)
        self._lead_groups_first(pid)
        self._visit_groups(pid)
        if proc.sid == pid:
            self.plan.add(pid, Action.SETSID, reason="session leader")
            self._set_sid(pid, pid)
            self._set_pgid(pid, pid)
        else:
            self.members[self.sid[pid]].append(pid)
            self._join(pid, proc)
        for hook in self.on_settled:
            hook(pid)
        for thread in proc.threads[1:]:
            self.plan.add(pid, Action.CLONE, child=thread.tid,
                          set_tid=kernel_order(thread.ns_tids),
                          flags=["CLONE_THREAD", "CLONE_SIGHAND", "CLONE_VM", "CLONE_FS",
                                 "CLONE_FILES"],
                          flags_value=int(CloneFlag.THREAD | CloneFlag.SIGHAND | CloneFlag.VM
                                          | CloneFlag.FS | CloneFlag.FILES),
                          reason="thread")
        # Children waiting for a group a sibling's subtree makes go last.
        waiting = {kid for kid in self.kids[pid] if self._waits_for_group(kid)}
        for kid in sorted(self.kids[pid], key=lambda kid: kid in waiting):
            if kid in self.pending and self._direct(self._proc(kid), pid) \
                    and self._inherits_from(kid, pid):
                self.place(kid, pid)

    def _fork_keepers(self, pid: int, sid: int, pgid: int, new_session: bool) -> None:
        """Fork the children that keep what `pid` has now (session `sid`, group `pgid`),
        before it changes them."""
        for kid in list(self.kids[pid]):
            if kid in self.pending and self.pgid[pid] == pgid \
                    and self._direct(self._proc(kid), pid) \
                    and self._inherited_group(kid) in (None, pgid) \
                    and self._needs_old(kid, sid, pgid, new_session):
                self.place(kid, pid)

    def _inherits_from(self, kid: int, creator: int) -> bool:
        """Can `kid` get the group it can only inherit from `creator` as it is now?

        If not, it waits: it may still be forked inside that group by an orphan maker.
        """
        return self._inherited_group(kid) in (None, self.pgid[creator])

    def _lead_groups_first(self, pid: int) -> None:
        """Make first the groups that processes below `pid` can only inherit.

        Their creators join such a group (made by a descendant of a sibling, or
        by an orphan) before forking them: it must exist by then. Called before
        `pid` changes session or group too, while the makers' session is its own.
        """
        for group in self._missing_groups(pid):
            for kid in list(self.kids[pid]):
                if kid in self.pending and (kid == group or self._below(group, kid)) \
                        and self._direct(self._proc(kid), pid) \
                        and self._inherited_group(kid) in (None, self.pgid[pid]):
                    self.place(kid, pid)
            if group in self.pending and not self._below(group, pid):
                self._place_elsewhere(group)

    def _missing_groups(self, pid: int) -> set[int]:
        """Groups not made yet, with a pending leader, that a pending child of `pid`
        or a pending process below it can only inherit."""
        if not self.inheritors:
            return set()
        wanted = {self._inherited_group(kid) for kid in self.kids[pid] if kid in self.pending}
        # Below: only a group made in another child's subtree (or outside) orders them.
        wanted.update(proc.pgid for proc in self.inheritors if proc.pid in self.pending
                      and (branch := self._branch(proc.pid, pid)) is not None
                      and self._branch(proc.pgid, pid) != branch)
        return {group for group in wanted if group is not None and group != self.pgid[pid]
                and group in self.pending and self.group_size.get(group, 0) <= 0}

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

    def _place_elsewhere(self, pid: int) -> None:
        """Create `pid` now, outside the subtree being placed: by its parent, else
        through an orphan maker (nothing if neither is possible yet)."""
        proc = self._proc(pid)
        parent = self.expected_parent(proc)
        if (parent == self.base or parent in self.where) and self._direct(proc, parent) \
                and self._inherits_from(pid, parent):
            self.place(pid, parent)
        else:
            self._orphan(pid)

    def _inherit_leaf(self, pid: int, depth: int = 0) -> process_pb2.Process | None:
        """The process whose group `pid` must be born in (it can only be inherited), or None.

        `pid` itself when its group is invisible from its pid namespace; else a
        pending descendant with such a group that `pid` cannot join either (the
        group is invisible from `pid`'s namespace too, e.g. `pid` is the init of
        a nested namespace that forked it before leaving the group).
        """
        proc = self._proc(pid)
        if len(proc.ns_pgids) > 1 and proc.ns_pgids[-1] == 0:
            return proc
        if depth > 32:
            return None
        level = len(proc.ns_pids) - 1
        for kid in self.kids[pid]:
            if kid not in self.pending:
                continue
            leaf = self._inherit_leaf(kid, depth + 1)
            if leaf is not None and leaf.pgid != pid and level < len(leaf.ns_pgids) \
                    and leaf.ns_pgids[level] == 0 \
                    and self._proc(kid).sid in (leaf.sid, kid):  # kid: forked it, then setsid
                return leaf
        return None

    def _inherited_group(self, pid: int) -> int | None:
        """The group `pid` can only inherit from its creator, or None."""
        if not self.inheritors:
            return None   # the usual tree: every group is visible where it is used
        leaf = self._inherit_leaf(pid)
        return leaf.pgid if leaf is not None else None

    def _group_number(self, pid: int, kid: int) -> int:
        """The number, as `pid` (the creator) sees it, of the group `kid` must inherit."""
        leaf = self._inherit_leaf(kid)
        if leaf is None:
            return 0
        depth = len(self.where[pid])
        return leaf.ns_pgids[depth] if depth < len(leaf.ns_pgids) else 0

    def _visit_groups(self, pid: int) -> None:
        """Fork the children that can only inherit a group from inside that group.

        A child in a nested pid namespace whose group was made outside it cannot
        setpgid() into it: `pid` joins each such group of its session in turn
        (setpgid is allowed within one session) and forks those children there;
        it moves to its own group afterwards (_join / setsid).
        """
        wanted: dict[int, list[int]] = defaultdict(list)
        for kid in self.kids[pid]:
            group = self._inherited_group(kid)
            if kid in self.pending and group is not None and group != self.pgid[pid] \
                    and self._direct(self._proc(kid), pid):
                wanted[group].append(kid)
        # A group it can only inherit: once it leaves it, there is no way back.
        stuck = _hidden_at(self._proc(pid).ns_pgids, len(self._proc(pid).ns_pgids) - 1)
        for group, kids in wanted.items():
            number = self._group_number(pid, kids[0])
            leaf = self._inherit_leaf(kids[0])
            if number and leaf is not None and leaf.sid == self.sid[pid] != pid:
                self._recreate_group(leaf, leaf.sid)
            own = group == pid   # it made the group, forked them, then left it
            if (not number or (self.group_size.get(group, 0) <= 0 and not own)
                    or self.sid[pid] == pid or stuck
                    or self._inherit_leaf(kids[0]).sid != self.sid[pid]):  # type: ignore[union-attr]
                continue  # not joinable now: _join reports the child as unplannable
            self.plan.add(pid, Action.SETPGID, pgid=0 if own else number,
                          reason=f"{'lead' if own else 'visit'} process group {group}: its "
                                 f"children {', '.join(map(str, kids))} can only inherit it")
            self._set_pgid(pid, group)
            for kid in kids:
                if kid in self.pending:
                    self.place(kid, pid)

    def _waits_for_group(self, pid: int) -> bool:
        """Does a child of `pid`, or a process below it that can only inherit its group,
        need a group that does not exist yet (and that `pid` does not make)?"""
        for kid in self.kids[pid]:
            group = self._inherited_group(kid)
            if kid in self.pending and group is not None and group != pid \
                    and self.group_size.get(group, 0) <= 0:
                return True
        return any(proc.pid in self.pending and proc.pgid not in (pid, OUTSIDE)
                   and self.group_size.get(proc.pgid, 0) <= 0 and self._below(proc.pid, pid)
                   for proc in self.inheritors)

    def _needs_old(self, pid: int, sid: int | None, pgid: int | None, new_session: bool,
                   depth: int = 0) -> bool:
        """Does `pid` (or a descendant it forks) need the session/group its parent has now?"""
        proc = self._proc(pid)
        if new_session and proc.sid == sid and proc.sid != pid:
            return True
        if proc.pgid == pgid and proc.ns_pgids and proc.ns_pgids[-1] == 0:
            return True
        if depth > 64:
            return False
        return any(self._needs_old(kid, sid, pgid, new_session, depth + 1)
                   for kid in self.kids[pid] if kid in self.pending)

    def _join(self, pid: int, proc: process_pb2.Process) -> None:
        if self.pgid[pid] == proc.pgid:
            return
        if proc.pgid == pid:
            self.plan.add(pid, Action.SETPGID, pgid=0, reason="process group leader")
            self._set_pgid(pid, pid)
            return
        if proc.ns_pgids and proc.ns_pgids[-1] == 0:
            raise _Unplannable(f"{pid}: its process group {proc.pgid} is not visible in its "
                               "pid namespace, so it can only be inherited, and its creator "
                               "is in another group")
        if self.group_size.get(proc.pgid, 0) > 0:
            self._enter_group(pid, proc.pgid)
            return
        self.deferred.append((pid, proc.pgid))

    def _birth(self, proc: process_pb2.Process) -> process_pb2.Process | None:
        """A process whose session `proc` must be born in (None: any session will do).

        Itself unless it is a session leader; a session leader must be born in the
        session its children that kept the old one are in (they were forked
        before its setsid()).
        """
        if proc.sid != proc.pid:
            return proc
        parent = self.snap.by_pid.get(proc.ppid)
        for k in self._old_session_holders(proc.pid):
            if k.sid == proc.pid or self._below(k.sid, proc.pid):
                continue  # a session made later inside its own subtree: k is an orphan
            if _hidden_at(k.ns_sids, len(proc.ns_pids) - 1) or k.sid in self.snap.by_pid:
                # A session its namespace cannot see, or whose leader is not below it,
                # can only have come through it: it was born there.
                return k
            # Otherwise k kept the old session, or is an orphan reparented to this
            # reaper (from a session whose gone leader was below): most likely the
            # parent's.
            if parent is not None and parent.sid == k.sid:
                return k
            if parent is None and not is_ns_init(proc):
                return k
        return None

    def _old_session_holders(self, pid: int, depth: int = 0) -> list[process_pb2.Process]:
        """`pid`'s children, looking through children that are session leaders.

        A child session leader forked before `pid`'s setsid() passes the old
        session on to its own children forked before *its* setsid(): those
        descendants also tell in which session `pid` was born.
        """
        out: list[process_pb2.Process] = []
        for kid in self.kids[pid]:
            k = self._proc(kid)
            if k.sid != kid:
                out.append(k)
            elif depth < 64 and k.ns_pids and len(k.ns_pids) == len(self._proc(pid).ns_pids):
                out.extend(self._old_session_holders(kid, depth + 1))
            elif depth < 64 and is_ns_init(k):
                # Its orphans' sessions may be any of its namespace: only one that
                # namespace cannot see came in through it.
                level = len(k.ns_pids) - 1
                out.extend(h for h in self._old_session_holders(kid, depth + 1)
                           if _hidden_at(h.ns_sids, level))
        return out

    def _below(self, pid: int, ancestor: int) -> bool:
        """Is `pid` a descendant of `ancestor` in the dumped tree?"""
        return self._branch(pid, ancestor) is not None

    def _direct(self, kid: process_pb2.Process, parent: int) -> bool:
        birth = self._birth(kid)
        return birth is None or self.sid.get(parent) == birth.sid

    # ------------------------------------------------------------ orphans and helpers

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

    def _session_helper(self, proc: process_pb2.Process, where: Chain,
                        under: int | None = None) -> bool:
        """Create the helper for a dead session leader if that unblocks `proc`."""
        sid = proc.sid
        if sid == OUTSIDE or sid in self.snap.by_pid or sid in self.sid:
            return False
        numbers = visible_prefix(proc.ns_sids) or [sid]
        chain = where[:len(numbers) - 1]
        creator = self.base if not chain else chain[-1]
        if under is not None and self.where.get(under) == chain:
            creator = under  # its orphans must descend from the subreaper
        if creator not in self.where:
            return False
        self._clone(creator, sid, kernel_order(numbers), chain, new_ns=False, helper=True,
                    reason=f"session leader {sid} is not in the snapshot (exited, or outside "
                           "the dumped tree): a helper with its pid creates the session")
        self.helpers.append(sid)
        self.plan.add(sid, Action.SETSID, reason="recreate session")
        self._set_sid(sid, sid)
        self._set_pgid(sid, sid)
        return True

    def _orphan(self, pid: int) -> bool:
        """Place `pid` through an orphan maker; False if not possible yet."""
        proc = self._proc(pid)
        parent = self.expected_parent(proc)
        if parent != self.base and parent not in self.where:
            return False
        chain = self.ns.creation_chain(pid)
        under: int | None = None
        parent_chain = self.where[parent]
        if parent == self.base or (is_ns_init(self._proc(parent))
                                   and self.ns.chain[parent] == chain):
            reaper_why = "namespace init" if parent != self.base else "the restorer (subreaper)"
        else:
            if parent_chain != chain:
                raise _Unplannable(f"{pid}: reparented across pid namespaces")
            under = parent
            reaper_why = "child subreaper"
        birth = self._birth(proc) or proc
        # A group invisible from the process's namespace can only be inherited.
        pgid = self._inherited_group(pid)
        candidates = self._candidates(birth.sid, chain, under, pgid)
        if not candidates and pgid is not None and self._join_early(pgid):
            candidates = self._candidates(birth.sid, chain, under, pgid)
        if not candidates:
            made = self._session_helper(birth, chain, under)
            leaf = self._inherit_leaf(pid)
            if leaf is not None:
                made = self._recreate_group(leaf, birth.sid, under) or made
            if made:
                candidates = self._candidates(birth.sid, chain, under, pgid)
            if not candidates and under is not None and pgid is not None:
                candidates = self._group_visitor(under, self._inherit_leaf(pid), chain)
            if not candidates:
                return False
        if under is not None and parent not in self.subreapers:
            self.subreapers[parent] = pid   # the flag is set in finish(), just in time
            self.plan.problem(Severity.WARNING, "subreaper-assumed",
                              f"pid {parent} is made a child subreaper: {pid} was reparented "
                              "to it (the snapshot does not record the flag)", pid=parent)
        anchor = candidates[0]
        maker = self._helper_key()
        who = "(the restorer)" if parent == self.base else str(parent)
        self._clone(anchor, maker, self.ns.spare_set_tid(chain), chain, new_ns=False,
                    helper=True,
                    reason=f"orphan maker: {pid} is born in session {birth.sid} but its parent "
                           f"{who} is not; forked here, it is reparented to {who} "
                           f"({reaper_why}) when this helper exits")
        self.helpers.append(maker)
        self.orphan_makers[maker] = pid
        self.reaper_of[maker] = parent
        self.members[birth.sid].append(maker)
        self.place(pid, maker)
        return True

    def _group_visitor(self, parent: int, leaf: process_pb2.Process | None,
                       chain: Chain) -> list[int]:
        """A helper `parent` forks that joins `leaf`'s group (as [it]), or [] if it cannot.

        `parent` left that group (or never was in it) yet a process that can only
        inherit it must descend from `parent`: it is forked inside it below this
        helper and reparented to `parent` (a subreaper) when the helpers exit.
        """
        if leaf is None:
            return []
        pgid, level = leaf.pgid, len(chain)
        if self.group_size.get(pgid, 0) <= 0 or self.where.get(parent) != chain \
                or self.sid.get(pgid, self.sid[parent]) != self.sid[parent] \
                or _hidden_at(leaf.ns_pgids, level) or level >= len(leaf.ns_pgids):
            return []
        visitor = self._helper_key()
        self._clone(parent, visitor, self.ns.spare_set_tid(chain), chain, new_ns=False,
                    helper=True, reason=f"visits process group {pgid} for a child of {parent}")
        self.helpers.append(visitor)
        self.members[self.sid[parent]].append(visitor)
        self.plan.add(visitor, Action.SETPGID, pgid=leaf.ns_pgids[level],
                      reason=f"join process group {pgid}: the orphan it forks must inherit it")
        self._set_pgid(visitor, pgid)
        return [visitor]

    def _group_helper(self, pid: int, pgid: int) -> None:
        proc = self._proc(pid)
        if not self._make_group(proc, pgid, proc.sid):
            raise _Unplannable(f"no process of session {proc.sid} can create group {pgid}")

    def _recreate_group(self, leaf: process_pb2.Process, sid: int,
                        under: int | None = None) -> bool:
        """Make the group `leaf` can only inherit exist now, in session `sid`, if it can.

        Its leader gone: a helper leads it. Its leader moved on to another group:
        the leader leads it again now and moves at the end (`late`).
        """
        pgid = leaf.pgid
        if pgid == OUTSIDE or self.group_size.get(pgid, 0) > 0:
            return False
        if pgid not in self.snap.by_pid:
            return pgid not in self.where and self._make_group(leaf, pgid, sid, under)
        leader = self._proc(pgid)
        if pgid not in self.where or self.sid[pgid] != sid or sid == pgid \
                or not leader.ns_pgids or leader.ns_pgids[-1] == 0 \
                or (under is not None and not self._descends(pgid, under)):
            return False
        self._fork_keepers(pgid, sid, self.pgid[pgid], False)   # before it leaves its group
        if self.group_size.get(pgid, 0) > 0:
            return True   # made meanwhile, by one of them
        self.plan.add(pgid, Action.SETPGID, pgid=0,
                      reason=f"recreate group {pgid} now: {leaf.pid} can only inherit it; "
                             f"moves to group {leader.pgid} at the end")
        self._set_pgid(pgid, pgid)
        self.late.append((pgid, leader.pgid))
        return True

    def _make_group(self, member: process_pb2.Process, pgid: int, sid: int,
                    under: int | None = None) -> bool:
        """A helper with pid `pgid` (numbered as `member` sees the group) leads it now.

        Made early when a process can only inherit the group, so must be forked
        inside it; `under`: the helper must descend from that subreaper.
        """
        numbers = visible_prefix(member.ns_pgids) or [pgid]
        chain = self.ns.chain[member.pid][:len(numbers) - 1]
        candidates = self._candidates(sid, chain, under)
        if not candidates:
            return False
        self._clone(candidates[0], pgid, kernel_order(numbers), chain, new_ns=False,
                    helper=True,
                    reason=f"process group leader {pgid} is gone: a helper with its pid "
                           "recreates the group")
        self.helpers.append(pgid)
        self.members[sid].append(pgid)
        self.plan.add(pgid, Action.SETPGID, pgid=0, reason="recreate process group")
        self._set_pgid(pgid, pgid)
        return True

    # ------------------------------------------------------------ the whole tree

    def build(self) -> None:
        if self.plan.pid_ns == "new":
            self.plan.add(RESTORER, Action.CLONE, child=NEW_NS_INIT, set_tid=[1],
                          flags=["CLONE_NEWPID"], flags_value=int(CloneFlag.NEWPID))
            self.plan.processes[NEW_NS_INIT] = PlannedProcess(
                key=NEW_NS_INIT, parent=RESTORER, set_tid=[1], helper=True, new_pid_ns=True,
                reason="init of the fresh pid namespace: the dumped outermost pids are "
                       "recreated inside it, and it reaps the tree's orphans")
        else:
            self.plan.add(RESTORER, Action.SUBREAPER,
                          reason="processes whose parent is outside the snapshot end as its "
                                 "children")
        order = [p.pid for p in self.snap.processes]
        hidden = sorted(p.pid for p in self.snap.processes
                        if p.pid in self.pending and p.sid == OUTSIDE)
        if hidden:
            self.plan.problem(
                Severity.WARNING, "session-outside",
                f"{_few(hidden)} {'is' if len(hidden) == 1 else 'are'} in a session whose "
                "leader was outside the dumper's pid namespace (NSsid 0): the restore "
                "cannot recreate it and leaves them in the restorer's own session",
                pid=hidden[0],
                fix="restore from a process of that session (e.g. the same shell or "
                    "container) if job control or SIGHUP delivery matters")
        try:
            self._check_no_return_outside()
            progress = True
            strict = True  # first place processes whose children's groups already exist
            while self.pending and progress:
                progress = False
                for pid in order:
                    if pid not in self.pending or (strict and self._waits_for_group(pid)):
                        continue
                    proc = self._proc(pid)
                    parent = self.expected_parent(proc)
                    free = self._birth(proc) is None and (parent == self.base
                                                          or parent in self.where)
                    if (free or ((parent == self.base or parent in self.where)
                                 and self._direct(proc, parent))) \
                            and (self._inherits_from(pid, parent)
                                 or self._join_early(self._inherited_group(pid), parent)):
                        self.place(pid, parent)
                        progress = True
                    elif self._orphan(pid):
                        progress = True
                if not progress and strict:
                    strict, progress = False, True
                elif progress:
                    strict = True
            self._finish_groups()
        except _Unplannable as err:
            self.failed = True
            self.plan.problem(Severity.BLOCKER, err.kind, str(err), pid=err.pid, fix=err.fix)
            return
        if self.pending:
            self.failed = True
            self.plan.problem(Severity.BLOCKER, "unplannable",
                              "no creation order found for pids "
                              + ", ".join(str(p) for p in sorted(self.pending)),
                              pid=min(self.pending))

    def _join_early(self, pgid: int | None, pid: int | None = None) -> bool:
        """Do now the deferred joins of group `pgid` (only `pid`'s if given); any done?

        A process whose group did not exist when it was placed joins it at the
        end; a process that can only inherit that group needs a creator inside it
        now that it exists.
        """
        done = False
        for item in list(self.deferred):
            joiner, group = item
            if group != pgid or (pid is not None and joiner != pid) \
                    or self.group_size.get(group, 0) <= 0 \
                    or self.sid.get(group, self.sid[joiner]) != self.sid[joiner]:
                continue
            self.deferred.remove(item)
            self._enter_group(joiner, group)
            done = True
        return done

    def _check_no_return_outside(self) -> None:
        """Refuse a group whose leader moved on to a group made outside the dumper's
        pid namespace: only the leader can make the group, and from inside no
        setpgid() can name that outer group to go back to it."""
        for proc in self.snap.processes:
            leader = self.snap.by_pid.get(proc.pgid)
            if leader is not None and leader.pid != proc.pid and leader.pgid == OUTSIDE:
                raise _Unplannable(
                    f"{leader.pid} led process group {leader.pid}, then moved to a group whose "
                    "leader was outside the dumper's pid namespace: setpgid() "
                    "cannot name that group from inside", pid=leader.pid)

    def _finish_groups(self) -> None:
        for pid, pgid in self.deferred:
            if any(pid == leader for leader, _ in self.late) \
                    and any(pid == target for _, target in self.late):
                continue   # another leader moves into its group later: it moves with them
            if self.group_size.get(pgid, 0) <= 0:
                leader = self.snap.by_pid.get(pgid)
                if leader is not None:
                    # The leader left its group later: it leads it now, moves at the end.
                    self.plan.add(pgid, Action.SETPGID, pgid=0,
                                  reason=f"recreate group {pgid} before it moves to "
                                         f"group {leader.pgid}")
                    self._set_pgid(pgid, pgid)
                    self.late.append((pgid, leader.pgid))
                else:
                    self._group_helper(pid, pgid)
            self._enter_group(pid, pgid)
        moves = list(reversed(self.late))   # the last made group still has its leader
        while moves:
            pid, pgid = self._next_leader_move(moves)
            moves.remove((pid, pgid))
            self._enter_group(pid, pgid)

    def _next_leader_move(self, moves: list[tuple[int, int]]) -> tuple[int, int]:
        """A leader whose target group still exists, best one whose own group outlives it.

        Leaders may end in each other's groups (a cycle): each must move while its
        target still has a member, and a group another leader still moves into
        must not be emptied first.
        """
        ready = [m for m in moves if self.group_size.get(m[1], 0) > 0]
        if not ready:
            raise _Unplannable("process group leaders " + ", ".join(str(m[0]) for m in moves)
                               + " each end in a group that no longer exists when they move")
        needed = {target for _, target in moves}
        safe = [m for m in ready if self.group_size.get(m[0], 0) > 1 or m[0] not in needed]
        return (safe or ready)[0]

    def finish(self) -> None:
        """Helpers exit (reverse creation order), then zombies: the last steps."""
        parents = dict(self.creator)
        flagged: set[int] = set()
        for helper in self._exit_order():
            reaper = self.reaper_of.get(helper)
            for sub in self._subreapers_up_to(reaper):
                if sub not in flagged:
                    flagged.add(sub)
                    self.plan.add(sub, Action.SUBREAPER,
                                  reason=f"{self.subreapers[sub]} was reparented to it, so it "
                                         "was a child subreaper")
            self.plan.add(helper, Action.EXIT, status=0,
                          reason="helper done: its children are reparented")
            parent = parents[helper]
            self.plan.add(parent, Action.WAIT, child=helper)
        for sub in self.subreapers:
            if sub not in flagged:
                self.plan.add(sub, Action.SUBREAPER, reason="child subreaper")
        for pid, planned in self.plan.processes.items():
            if planned.zombie:
                status = self._proc(pid).exit_code
                args: dict[str, int] = {"status": status}
                if os.WIFSIGNALED(status):
                    args["signal"] = os.WTERMSIG(status)
                else:
                    args["code"] = os.WEXITSTATUS(status)
                self.plan.add(pid, Action.EXIT, reason="zombie: exits with its recorded "
                                                       "status, never reaped", **args)

    def _subreapers_up_to(self, reaper: int | None) -> list[int]:
        """The assumed subreapers at or above `reaper` (outermost first; None: all)."""
        if reaper is None:
            return list(self.subreapers)
        out = []
        key: int | None = reaper
        while key is not None:
            if key in self.subreapers:
                out.append(key)
            key = self.creator.get(key)
        return out[::-1]

    def _exit_order(self) -> list[int]:
        """Helpers, each after its children (they are reaped by their creator).

        An orphan maker exits once the subreapers at or above its orphan's
        reaper are set, and before any below it: those would catch the orphan.
        So makers go by how many assumed subreapers their reaper has above it;
        other helpers last. Reverse creation order otherwise.
        """
        index = {helper: i for i, helper in enumerate(self.helpers)}
        depth = {helper: (len(self._subreapers_up_to(self.reaper_of[helper]))
                          if helper in self.reaper_of else len(self.subreapers) + 1)
                 for helper in self.helpers}
        for helper in reversed(self.helpers):   # children were created later
            parent = self.creator[helper]
            if parent in depth:
                depth[parent] = max(depth[parent], depth[helper])
        return sorted(self.helpers, key=lambda h: (depth[h], -index[h]))


def _hidden_at(numbers: list[int] | tuple[int, ...], level: int) -> bool:
    """Is the pid these NSsid/NSpgid numbers name invisible from namespace `level`?"""
    return level < len(numbers) and numbers[level] == 0


def _few(pids: list[int], limit: int = 5) -> str:
    text = ", ".join(map(str, pids[:limit]))
    more = f" and {len(pids) - limit} more" if len(pids) > limit else ""
    return f"pid{'s' if len(pids) > 1 else ''} {text}{more}"


class _Unplannable(Exception):
    """Internal: no creation order for some process; becomes a blocker, never escapes."""

    def __init__(self, message: str, kind: str = "unplannable", pid: int | None = None,
                 fix: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.pid = pid
        self.fix = fix
