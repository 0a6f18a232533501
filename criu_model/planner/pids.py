"""Pid-namespace structure of a snapshot and the set_tid arrays that recreate it.

A namespace is named by its *chain*: the outermost pids of the inits of every
nested namespace from the snapshot's outermost level inwards; () is the
outermost level itself. A process's chain has len(ns_pids) - 1 entries.
"""

from __future__ import annotations

from collections import defaultdict

from criu_model.images.pb import process_pb2
from criu_model.planner.model import Plan, Severity
from criu_model.snapshot import Snapshot, namespace_inode

Chain = tuple[int, ...]


def kernel_order(ns_pids: list[int] | tuple[int, ...]) -> list[int]:
    """NSpid is outermost first; clone3 wants set_tid[0] = the innermost pid."""
    return list(reversed(ns_pids))


def visible_prefix(numbers: list[int] | tuple[int, ...]) -> list[int]:
    """NSpgid/NSsid entries before the first 0: the levels where that pid exists."""
    out: list[int] = []
    for nr in numbers:
        if nr == 0:
            break
        out.append(nr)
    return out


def is_ns_init(proc: process_pb2.Process) -> bool:
    return len(proc.ns_pids) >= 2 and proc.ns_pids[-1] == 1


class Namespaces:
    """Which nested pid namespace every process lives in."""

    def __init__(self, snap: Snapshot, plan: Plan) -> None:
        self.snap = snap
        self.chain: dict[int, Chain] = {}
        self.broken: set[int] = set()
        inits: dict[int, process_pb2.Process] = {}
        for proc in snap.processes:
            inode = namespace_inode(proc, "pid")
            if is_ns_init(proc) and inode:
                inits[inode] = proc
        self._inits = inits
        for proc in snap.processes:
            self._chain_of(proc, plan)
        self._spare: dict[Chain, int] = defaultdict(int)
        for proc in snap.processes:
            chain = self.chain.get(proc.pid)
            if chain is None:
                continue
            for depth in range(len(chain) + 1):
                sub = chain[:depth]
                for seq in (proc.ns_pids, proc.ns_pgids, proc.ns_sids):
                    if depth < len(seq):
                        self._spare[sub] = max(self._spare[sub], seq[depth])
                for thread in proc.threads:
                    if depth < len(thread.ns_tids):
                        self._spare[sub] = max(self._spare[sub], thread.ns_tids[depth])

    def _find_init(self, proc: process_pb2.Process) -> process_pb2.Process | None:
        inode = namespace_inode(proc, "pid")
        if inode and inode in self._inits:
            return self._inits[inode]
        # No inode recorded: walk up the parents within the same number of levels.
        seen: set[int] = set()
        cur: process_pb2.Process | None = proc
        while cur is not None and cur.pid not in seen and len(cur.ns_pids) == len(proc.ns_pids):
            if is_ns_init(cur):
                return cur
            seen.add(cur.pid)
            cur = self.snap.by_pid.get(cur.ppid)
        return None

    def _chain_of(self, proc: process_pb2.Process, plan: Plan) -> Chain | None:
        if proc.pid in self.chain:
            return self.chain[proc.pid]
        if proc.pid in self.broken:
            return None
        levels = max(len(proc.ns_pids), 1)
        if levels == 1:
            self.chain[proc.pid] = ()
            return ()
        init = self._find_init(proc)
        if init is None:
            self.broken.add(proc.pid)
            plan.problem(Severity.BLOCKER, "pid-ns-init-missing",
                         f"pid {proc.pid} lives in a nested pid namespace whose init is not in "
                         "the snapshot, so that namespace cannot be recreated",
                         fix="dump the tree from the namespace's init", pid=proc.pid)
            return None
        outer = self._parent_chain(init, plan)
        if outer is None:
            self.broken.add(proc.pid)
            return None
        chain = (*outer, init.pid)
        self.chain[proc.pid] = chain
        return chain

    def _parent_chain(self, init: process_pb2.Process, plan: Plan) -> Chain | None:
        levels = len(init.ns_pids)
        if levels == 2:
            return ()
        parent = self.snap.by_pid.get(init.ppid)
        if parent is None or len(parent.ns_pids) != levels - 1:
            self.broken.add(init.pid)
            plan.problem(Severity.BLOCKER, "pid-ns-parent-unknown",
                         f"the parent namespace of pid namespace init {init.pid} cannot be "
                         "told from the snapshot (its parent is not one level up)",
                         fix="dump the tree from the outermost namespace's init", pid=init.pid)
            return None
        return self._chain_of(parent, plan)

    def creation_chain(self, pid: int) -> Chain:
        """The namespace the creator's child lands in before CLONE_NEWPID."""
        chain = self.chain[pid]
        proc = self.snap.by_pid[pid]
        return chain[:-1] if is_ns_init(proc) else chain

    def spare_set_tid(self, chain: Chain) -> list[int]:
        """Free pids (kernel order) for a helper whose pid does not matter.

        Chosen above every number the snapshot uses in each namespace, so a
        helper never takes a pid a dumped process still needs.
        """
        numbers = []
        for depth in range(len(chain) + 1):
            sub = chain[:depth]
            self._spare[sub] += 1
            numbers.append(self._spare[sub])
        return kernel_order(numbers)
