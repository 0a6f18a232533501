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
* process groups follow groups.py; zombies exit last with their recorded wait
  status; helpers exit after their own children, each orphan maker once the
  subreapers its orphan needs are set and before any below them.

The state and primitives (clone3, setpgid) are in builder_base.py.
"""

from __future__ import annotations

import os

from criu_model.images.pb import process_pb2
from criu_model.planner.builder_base import NEW_NS_INIT, OUTSIDE, Unplannable, hidden_at
from criu_model.planner.groups import GroupRules
from criu_model.planner.model import RESTORER, Action, CloneFlag, PlannedProcess, Severity
from criu_model.planner.pids import Chain, is_ns_init, kernel_order, visible_prefix

__all__ = ["NEW_NS_INIT", "Builder"]


class Builder(GroupRules):
    """Places every process: sessions, orphans, helpers, the build loop, the exits."""

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
        # Groups below that only inherit can exist: once while its session is still the
        # makers', and again after the keepers, whose subtrees may need more of them.
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
            if hidden_at(k.ns_sids, len(proc.ns_pids) - 1) or k.sid in self.snap.by_pid:
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
                           if hidden_at(h.ns_sids, level))
        return out

    def _direct(self, kid: process_pb2.Process, parent: int) -> bool:
        birth = self._birth(kid)
        return birth is None or self.sid.get(parent) == birth.sid

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
                raise Unplannable(f"{pid}: reparented across pid namespaces")
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
        except Unplannable as err:
            self.failed = True
            self.plan.problem(Severity.BLOCKER, err.kind, str(err), pid=err.pid, fix=err.fix)
            return
        if self.pending:
            self.failed = True
            self.plan.problem(Severity.BLOCKER, "unplannable",
                              "no creation order found for pids "
                              + ", ".join(str(p) for p in sorted(self.pending)),
                              pid=min(self.pending))

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
                args: dict[str, int | str] = {"status": status}
                reason = "zombie: exits with its recorded status, never reaped"
                if os.WIFSIGNALED(status):
                    args["signal"] = os.WTERMSIG(status)
                    if planned.new_pid_ns:
                        # A pid-namespace init ignores the signals it sends itself.
                        args["by"] = "parent"
                        reason += "; a namespace init: the signal comes from its parent"
                else:
                    args["code"] = os.WEXITSTATUS(status)
                self.plan.add(pid, Action.EXIT, reason=reason, **args)

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


def _few(pids: list[int], limit: int = 5) -> str:
    text = ", ".join(map(str, pids[:limit]))
    more = f" and {len(pids) - limit} more" if len(pids) > limit else ""
    return f"pid{'s' if len(pids) > 1 else ''} {text}{more}"

