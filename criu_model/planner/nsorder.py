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

    def attach(self, builder: Builder) -> None:
        self.base = builder.base
        self.current[self.base] = dict(self.host)
        for ns_type, inode in self.host.items():
            self.holder[(ns_type, inode)] = self.base
        builder.ns_flags = self.clone_flags
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
        mine = dict(self.current.get(creator, {}))
        for ns_type, inode in self.wanted.get(child, {}).items():
            if flags & NS_FLAG[ns_type]:
                mine[ns_type] = inode
                self.holder[(ns_type, inode)] = child
        self.current[child] = mine

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
