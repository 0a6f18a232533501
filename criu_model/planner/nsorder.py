"""Namespace creation order per process (other than pid namespaces, see pids.py).

For every dumped process whose namespaces differ from its creator's: a
namespace no earlier process holds is created by a CLONE_NEW* flag on the
process's own clone3; one an earlier process already holds is joined with
setns() right after the process is created, before it opens files or forks.
The user namespace comes first in both cases, so the other namespaces
created with it are owned by it. A type a process has no record of is left
as inherited.
"""

from __future__ import annotations

from criu_model.planner.model import NS_FLAG, NS_TYPES, Action, Plan
from criu_model.planner.pids import Chain
from criu_model.planner.sessions import Builder
from criu_model.snapshot import Snapshot

NsSet = dict[str, int]   # type -> inode


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
        roots = [p.pid for p in snap.processes if p.ppid not in snap.by_pid]
        # The restore runs in the namespaces of the dumped roots (the first one's).
        self.host: NsSet = next((self.wanted[p] for p in roots if p in self.wanted), {})
        self.current: dict[int, NsSet] = {}
        self.holder: dict[tuple[str, int], int] = {}
        self.base = 0
        self.user_parent: dict[int, int] = {}         # user ns inode -> its parent's
        self.pidns_owner: dict[Chain, int | None] = {}  # pid ns chain -> owning user ns

    def attach(self, builder: Builder) -> None:
        self.base = builder.base
        self.current[self.base] = dict(self.host)
        for ns_type, inode in self.host.items():
            self.holder[(ns_type, inode)] = self.base
        builder.ns_flags = self.clone_flags
        builder.set_tid_denied = self.set_tid_denied
        builder.on_new_pid_ns.append(self._on_new_pid_ns)
        self.pidns_owner[()] = self.host.get("user")
        builder.on_clone.append(self._on_clone)
        builder.on_created.insert(0, self._on_created)   # before any file is opened

    def clone_flags(self, pid: int, creator: int) -> int:
        """CLONE_NEW* for every namespace of `pid` that nobody holds yet."""
        flags = 0
        have = self.current.get(creator, {})
        for ns_type, inode in self.wanted.get(pid, {}).items():
            if inode != have.get(ns_type) and (ns_type, inode) not in self.holder:
                flags |= NS_FLAG[ns_type]
        return flags

    def _on_clone(self, creator: int, child: int, flags: int) -> None:
        parent_user = self.current.get(creator, {}).get("user")
        mine = dict(self.current.get(creator, {}))
        for ns_type, inode in self.wanted.get(child, {}).items():
            if flags & NS_FLAG[ns_type]:
                mine[ns_type] = inode
                self.holder[(ns_type, inode)] = child
                if ns_type == "user" and parent_user is not None:
                    self.user_parent[inode] = parent_user
        self.current[child] = mine

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
        """setns() into namespaces an earlier process created, the user namespace first."""
        want = self.wanted.get(pid)
        if not want:
            return
        mine = self.current[pid]
        for ns_type in NS_TYPES:
            inode = want.get(ns_type)
            if inode is None or mine.get(ns_type) == inode:
                continue
            holder = self.holder[(ns_type, inode)]
            self.plan.add(pid, Action.SETNS, ns=ns_type, holder=holder,
                          reason=f"join the {ns_type} namespace {holder} created")
            mine[ns_type] = inode
