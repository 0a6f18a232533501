"""Namespace creation order per process (other than pid namespaces, see pids.py).

For every dumped process whose namespaces differ from its creator's: a
namespace no earlier process holds is created by a CLONE_NEW* flag on the
process's own clone3; one an earlier process already holds is joined with
setns() right after the process is created, before it opens files or forks.

Ownership decides the order. Namespaces a clone creates are owned by the
user namespace it creates with them, so by default the user namespace comes
first (CLONE_NEWUSER on the clone, user setns first). But joining a namespace
needs CAP_SYS_ADMIN in its owner, which a process no longer has once it is in
a child user namespace; and a namespace the dump shows owned by the creator's
user namespace must be made before the process leaves it. Such a process is
cloned with only those namespaces, joins the outer-owned ones, and only then
enters its user namespace (unshare(CLONE_NEWUSER) with the namespaces it owns,
or setns). A type a process has no record of is left as inherited.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from criu_model.images.pb import process_pb2
from criu_model.planner.model import NS_FLAG, NS_TYPES, Action, Plan, Severity, flag_names
from criu_model.planner.pids import Chain, is_ns_init
from criu_model.planner.sessions import Builder
from criu_model.snapshot import Snapshot

NsSet = dict[str, int]   # type -> inode


def host_namespaces(snap: Snapshot) -> NsSet:
    """The namespaces the restore runs in: the dumped roots' (the first one's with any)."""
    for proc in snap.processes:
        if proc.ppid not in snap.by_pid:
            recorded = {ns.type: ns.inode for ns in proc.namespaces
                        if ns.type in NS_FLAG and ns.inode}
            if recorded:
                return recorded
    return {}


class NsOrder:
    """Decides, per process, which namespaces its clone3 creates and which it joins."""

    def __init__(self, snap: Snapshot, plan: Plan) -> None:
        self.snap = snap
        self.plan = plan
        self.wanted: dict[int, NsSet] = {}
        for proc in snap.processes:
            recorded = {ns.type: ns.inode for ns in proc.namespaces
                        if ns.type in NS_FLAG and ns.inode}
            if recorded:
                self.wanted[proc.pid] = recorded
        self.host: NsSet = host_namespaces(snap)
        self.current: dict[int, NsSet] = {}
        self.holder: dict[tuple[str, int], int] = {}
        self.base = 0
        self.user_parent: dict[int, int] = {}         # user ns inode -> its parent's
        self.pidns_owner: dict[Chain, int | None] = {}  # pid ns chain -> owning user ns
        self.owner: dict[tuple[str, int], int | None] = {}   # planned owner of each ns
        self.dumped_owner: dict[tuple[str, int], int] = {
            (ns.type, ns.inode): ns.owner_user for p in snap.processes
            for ns in p.namespaces if ns.owner_user and ns.type in NS_FLAG}
        self.after: dict[int, _Entry] = {}   # pid -> what it does right after creation
        self.failed = False                  # an ownership the plan cannot make

    def attach(self, builder: Builder) -> None:
        self.base = builder.base
        self.current[self.base] = dict(self.host)
        for ns_type, inode in self.host.items():
            self.holder[(ns_type, inode)] = self.base
        builder.ns_flags = self.clone_flags
        builder.set_tid_denied = self.set_tid_denied
        builder.on_new_pid_ns.append(self._on_new_pid_ns)
        self.pidns_owner[()] = self.host.get("user")
        for ns_type, inode in self.host.items():
            self.owner[(ns_type, inode)] = None if ns_type == "user" else self.host.get("user")
        builder.on_clone.append(self._on_clone)
        builder.on_created.insert(0, self._on_created)   # before any file is opened

    def clone_flags(self, pid: int, creator: int) -> int:
        """CLONE_NEW* for `pid`'s clone3; what it does after creation goes to `after`."""
        have = self.current.get(creator, {})
        want = self.wanted.get(pid, {})
        new = {t: i for t, i in want.items() if i != have.get(t) and (t, i) not in self.holder}
        joins = {t: i for t, i in want.items() if i != have.get(t) and (t, i) in self.holder}
        outer, inner = have.get("user"), want.get("user", have.get("user"))
        entry = _Entry()
        self.after[pid] = entry
        for ns_type, inode in new.items():
            owner = self.dumped_owner.get((ns_type, inode))
            if ns_type != "user" and owner not in (None, outer, inner):
                self._refuse(pid, f"its {ns_type} namespace {inode} is owned by user "
                                  f"namespace {owner}, neither its own ({inner}) nor its "
                                  f"creator's ({outer})")
        if inner == outer:
            entry.late_joins = joins
            return self._flags(new)
        # Made or joined before leaving `outer`: the dump says `outer` owns it, or
        # `inner` will not cover its owner (a fresh user namespace covers nothing yet).
        early_new = {t: i for t, i in new.items()
                     if t != "user" and self.dumped_owner.get((t, i)) == outer}
        early_joins = {t: i for t, i in joins.items() if t != "user"
                       and ("user" in new or not self._covers(inner, self.owner.get((t, i))))}
        if not early_new and not early_joins:
            entry.late_joins = joins
            return self._flags(new)
        proc = self.snap.by_pid[pid]
        if is_ns_init(proc) and self._pid_owner(proc) in (None, inner):
            # Its clone makes the pid namespace too, owned by the user namespace it is in.
            self._refuse(pid, f"its new pid namespace is owned by its user namespace "
                              f"{inner}, but it must first make or join namespaces its "
                              f"creator's user namespace {outer} owns")
        entry.early_joins = early_joins
        entry.user = "create" if "user" in new else "join"
        entry.late_new = {t: i for t, i in new.items() if t != "user" and t not in early_new}
        entry.late_joins = {t: i for t, i in joins.items() if t not in early_joins}
        return self._flags(early_new)

    @staticmethod
    def _pid_owner(proc: process_pb2.Process) -> int | None:
        """The recorded owner of the pid namespace `proc` is in, None if unknown."""
        return next((ns.owner_user for ns in proc.namespaces
                     if ns.type == "pid" and ns.owner_user), None)

    @staticmethod
    def _flags(types: dict[str, int]) -> int:
        flags = 0
        for ns_type in types:
            flags |= NS_FLAG[ns_type]
        return flags

    def _refuse(self, pid: int, why: str) -> None:
        self.failed = True
        self.plan.problem(Severity.BLOCKER, "ns-owner", f"pid {pid}: {why}", pid=pid,
                          fix="not supported yet: a namespace owned by a third user namespace "
                              "needs its own creator process in the plan")

    def _made(self, pid: int, types: dict[str, int], flags: int) -> None:
        """Record namespaces `pid` just created (clone or unshare): user first."""
        mine = self.current[pid]
        if flags & NS_FLAG["user"]:
            inode = types["user"]
            if mine.get("user") is not None:
                self.user_parent[inode] = mine["user"]   # type: ignore[assignment]
            mine["user"] = inode
            self.holder[("user", inode)] = pid
        for ns_type, inode in types.items():
            if ns_type != "user" and flags & NS_FLAG[ns_type]:
                mine[ns_type] = inode
                self.holder[(ns_type, inode)] = pid
                self.owner[(ns_type, inode)] = mine.get("user")

    def _on_clone(self, creator: int, child: int, flags: int) -> None:
        self.current[child] = dict(self.current.get(creator, {}))
        self._made(child, self.wanted.get(child, {}), flags)

    def _on_new_pid_ns(self, init: int, chain: Chain) -> None:
        """A pid namespace is owned by its init's user namespace at clone time."""
        self.pidns_owner[chain] = self.current.get(init, {}).get("user")

    def _covers(self, mine: int | None, owner: int | None) -> bool:
        """Is `mine` the user namespace `owner` or an ancestor of it? (Unknown: yes.)"""
        if mine is None or owner is None:
            return True
        seen: set[int] = set()
        cur: int | None = owner
        while cur is not None and cur not in seen:
            if cur == mine:
                return True
            seen.add(cur)
            cur = self.user_parent.get(cur)
        return False

    def set_tid_denied(self, creator: int, child: int, levels: list[Chain]) -> str | None:
        """Why `creator` lacks CAP_CHECKPOINT_RESTORE over one of `levels`, or None."""
        mine = self.current.get(creator, {}).get("user")
        for chain in levels:
            owner = self.pidns_owner.get(chain)
            if not self._covers(mine, owner):
                return (f"{creator} is in user namespace {mine}, which is not the user "
                        f"namespace {owner} owning that pid namespace nor an ancestor of it")
        return None

    def _on_created(self, pid: int) -> None:
        """The joins and the user namespace the clone could not do, in a legal order."""
        entry = self.after.get(pid)
        if entry is None:
            return
        self._join(pid, entry.early_joins, "before it leaves its creator's user namespace")
        want = self.wanted.get(pid, {})
        if entry.user == "create":
            types = {"user": want["user"], **entry.late_new}
            flags = self._flags(types)
            self.plan.add(pid, Action.UNSHARE, flags=flag_names(flags), flags_value=flags,
                          reason="its user namespace (and what it owns), after the namespaces "
                                 "its creator's user namespace owns")
            self._made(pid, types, flags)
        elif entry.user == "join":
            self._join(pid, {"user": want["user"]}, "")
            if entry.late_new:
                flags = self._flags(entry.late_new)
                self.plan.add(pid, Action.UNSHARE, flags=flag_names(flags), flags_value=flags,
                              reason="namespaces its user namespace owns")
                self._made(pid, entry.late_new, flags)
        self._join(pid, entry.late_joins, "")

    def _join(self, pid: int, types: dict[str, int], why: str) -> None:
        """setns() into namespaces an earlier process made, the user namespace first."""
        mine = self.current[pid]
        for ns_type in NS_TYPES:
            inode = types.get(ns_type)
            if inode is None or mine.get(ns_type) == inode:
                continue
            holder = self.holder[(ns_type, inode)]
            self.plan.add(pid, Action.SETNS, ns=ns_type, holder=holder,
                          reason=f"join the {ns_type} namespace {holder} created"
                                 + (f", {why}" if why else ""))
            mine[ns_type] = inode


@dataclass
class _Entry:
    """What one process does about namespaces right after its clone3."""

    early_joins: dict[str, int] = field(default_factory=dict)
    user: str = ""                    # "", "create" (unshare) or "join" (setns)
    late_new: dict[str, int] = field(default_factory=dict)
    late_joins: dict[str, int] = field(default_factory=dict)
