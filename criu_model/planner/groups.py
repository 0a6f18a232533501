"""Process-group rules of the creation order.

A process gets its group by setpgid() within its session, or by inheriting it
at fork. A group its own pid namespace cannot see can only be inherited, so
its creator must be inside that group when it forks: the creator visits the
group, a helper recreates it (leader gone), or the leader leads it again until
the end (leader moved on). A join waits until the group exists and is done as
early as a process that can only inherit the group needs it. Leaders that end
in other groups move last, each while its target group still has a member.
"""

from __future__ import annotations

from collections import defaultdict

from criu_model.images.pb import process_pb2
from criu_model.planner.builder_base import (
    OUTSIDE,
    BuilderBase,
    Unplannable,
    group_hidden_inside,
    hidden_at,
)
from criu_model.planner.model import Action
from criu_model.planner.pids import Chain, kernel_order, visible_prefix


class GroupRules(BuilderBase):
    """Where and when each process enters its process group."""

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

    def _inherit_leaf(self, pid: int, depth: int = 0) -> process_pb2.Process | None:
        """The process whose group `pid` must be born in (it can only be inherited), or None.

        `pid` itself when its group is invisible from its pid namespace; else a
        pending descendant with such a group that `pid` cannot join either (the
        group is invisible from `pid`'s namespace too, e.g. `pid` is the init of
        a nested namespace that forked it before leaving the group).
        """
        proc = self._proc(pid)
        if group_hidden_inside(proc):
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
        stuck = hidden_at(self._proc(pid).ns_pgids, len(self._proc(pid).ns_pgids) - 1)
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

    def _join(self, pid: int, proc: process_pb2.Process) -> None:
        if self.pgid[pid] == proc.pgid:
            return
        if proc.pgid == pid:
            self.plan.add(pid, Action.SETPGID, pgid=0, reason="process group leader")
            self._set_pgid(pid, pid)
            return
        if proc.ns_pgids and proc.ns_pgids[-1] == 0:
            raise Unplannable(f"{pid}: its process group {proc.pgid} is not visible in its "
                              "pid namespace, so it can only be inherited, and its creator "
                              "is in another group")
        if self.group_size.get(proc.pgid, 0) > 0:
            self._enter_group(pid, proc.pgid)
            return
        self.deferred.append((pid, proc.pgid))

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
                or hidden_at(leaf.ns_pgids, level) or level >= len(leaf.ns_pgids):
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
            raise Unplannable(f"no process of session {proc.sid} can create group {pgid}")

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
        self._lead_again(leader, f"recreate group {pgid} now: {leaf.pid} can only inherit "
                                 f"it; moves to group {leader.pgid} at the end")
        return True

    def _lead_again(self, leader: process_pb2.Process, reason: str) -> None:
        """The leader that left its group later leads it now; it moves at the end (`late`)."""
        self.plan.add(leader.pid, Action.SETPGID, pgid=0, reason=reason)
        self._set_pgid(leader.pid, leader.pid)
        self.late.append((leader.pid, leader.pgid))

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
                raise Unplannable(
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
                    self._lead_again(leader, f"recreate group {pgid} before it moves to "
                                             f"group {leader.pgid}")
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
            raise Unplannable("process group leaders " + ", ".join(str(m[0]) for m in moves)
                              + " each end in a group that no longer exists when they move")
        needed = {target for _, target in moves}
        safe = [m for m in ready if self.group_size.get(m[0], 0) > 1 or m[0] not in needed]
        return (safe or ready)[0]
