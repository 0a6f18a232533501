"""Consistency of a snapshot before planning, and of the simulated end state after.

An inconsistent snapshot raises InconsistentImage naming the pids; a plan
whose simulation does not end in the dumped state is a planner bug and is
reported as a blocker listing the differences.
"""

from __future__ import annotations

from collections import defaultdict

from criu_model.errors import InconsistentImage
from criu_model.planner.files import file_key
from criu_model.planner.model import Plan, Severity
from criu_model.planner.pids import is_ns_init
from criu_model.planner.simulate import KernelError, ProcState, Simulator, simulate
from criu_model.planner.ttys import planned_cttys
from criu_model.snapshot import Snapshot

_IMAGE = "processes.img"


def check_snapshot(snap: Snapshot) -> None:
    """Raise InconsistentImage for trees no sequence of syscalls could have made."""
    by_pid = snap.by_pid
    roots = set(snap.inventory.root_pids)
    bad: list[str] = []
    for proc in snap.processes:
        levels = len(proc.ns_pids)
        if levels and (len(proc.ns_pgids) != levels or len(proc.ns_sids) != levels):
            bad.append(f"pid {proc.pid}: NSpid has {levels} levels but NSpgid/NSsid "
                       f"have {len(proc.ns_pgids)}/{len(proc.ns_sids)}")
        if levels and proc.ns_pids[0] != proc.pid:
            bad.append(f"pid {proc.pid}: NSpid starts with {proc.ns_pids[0]}")
        if (proc.ppid not in by_pid and proc.pid not in roots and proc.ppid > 1
                and not is_ns_init(proc)):
            bad.append(f"pid {proc.pid}: parent {proc.ppid} is not in the snapshot, and "
                       f"{proc.pid} is neither a dumped root nor a namespace init")
        if proc.sid == proc.pid and proc.pgid != proc.pid:
            bad.append(f"pid {proc.pid} leads session {proc.sid} but is in group {proc.pgid}")
        session_leader = by_pid.get(proc.sid)
        if session_leader is not None and session_leader.sid != proc.sid:
            bad.append(f"pid {proc.pid} is in session {proc.sid}, but pid {proc.sid} is alive "
                       f"in session {session_leader.sid}")
        group_leader = by_pid.get(proc.pgid)
        if group_leader is not None and group_leader.sid != proc.sid:
            bad.append(f"pid {proc.pid} (session {proc.sid}) is in group {proc.pgid}, whose "
                       f"leader is in session {group_leader.sid}")
        parent = by_pid.get(proc.ppid)
        if parent is not None and parent.state == "Z":
            bad.append(f"pid {proc.pid}: its parent {proc.ppid} is a zombie (an exiting "
                       "process's children are reparented)")
        if proc.ppid in by_pid and proc.ppid == proc.pid:
            bad.append(f"pid {proc.pid} is its own parent")
    groups: dict[int, set[int]] = defaultdict(set)
    for proc in snap.processes:
        groups[proc.pgid].add(proc.sid)
    for pgid, sids in groups.items():
        if len(sids) > 1:
            bad.append(f"process group {pgid} spans sessions {sorted(sids)}")
    if bad:
        raise InconsistentImage(_IMAGE, None, "; ".join(bad[:10]))


def expected_state(snap: Snapshot, base: int) -> dict[int, ProcState]:
    """The end state the restore must reach, in the simulator's terms."""
    out: dict[int, ProcState] = {}
    tables = snap.fds_by_pid
    cttys = planned_cttys(snap)
    for proc in snap.processes:
        zombie = proc.state == "Z"
        fds: tuple[tuple[int, int], ...] = ()
        epoll: list[tuple[int, tuple[int, ...]]] = []
        if not zombie and proc.pid in tables:
            table = tables[proc.pid].fds
            fds = tuple(sorted((fd.fd, file_key(proc.pid, fd)) for fd in table))
            seen: set[int] = set()
            for fd in table:
                key = file_key(proc.pid, fd)
                if fd.WhichOneof("state") == "epoll" and key not in seen:
                    seen.add(key)
                    targets = tuple(sorted({t.file_id for t in fd.epoll.targets if t.file_id}))
                    if targets:
                        epoll.append((key, targets))
        out[proc.pid] = ProcState(
            ns_pids=tuple(proc.ns_pids) or (proc.pid,),
            parent=proc.ppid if proc.ppid in snap.by_pid else base,
            ns_pgids=tuple(proc.ns_pgids) or (proc.pgid,),
            ns_sids=tuple(proc.ns_sids) or (proc.sid,),
            zombie=zombie,
            exit_code=proc.exit_code if zombie else 0,
            threads=tuple(tuple(t.ns_tids) or (t.tid,) for t in proc.threads[1:]),
            fds=fds,
            epoll=tuple(sorted(epoll)),
            ctty=cttys[proc.pid][0],
            tpgid=cttys[proc.pid][1],
        )
    return out


def _partitions(values: dict[int, int]) -> set[frozenset[int]]:
    groups: dict[int, set[int]] = defaultdict(set)
    for pid, value in values.items():
        groups[value].add(pid)
    return {frozenset(g) for g in groups.values() if len(g) > 1}


def compare(snap: Snapshot, sim: Simulator, base: int, level_offset: int) -> list[str]:
    """Differences between the simulated end state and the snapshot (empty: equal)."""
    want = expected_state(snap, base)
    got = sim.state(level_offset)
    diffs: list[str] = []
    for pid, expected in want.items():
        actual = got.get(pid)
        if actual is None:
            diffs.append(f"pid {pid} missing after the restore")
            continue
        if actual != expected:
            for name in ProcState.__dataclass_fields__:
                a, e = getattr(actual, name), getattr(expected, name)
                if name == "epoll" or e is None:
                    continue   # epoll: compared per file below; None: not comparable
                if a != e:
                    diffs.append(f"pid {pid}: {name} is {_cut(a)}, dumped {_cut(e)}")
    extra = [k for k, s in got.items() if k not in want and k > 0 and not s.zombie]
    diffs.extend(f"process {k} left over after the restore" for k in extra)
    want_epoll = {k: t for s in want.values() for k, t in s.epoll}
    got_epoll = {k: t for s in got.values() for k, t in s.epoll}
    for key, targets in want_epoll.items():
        if got_epoll.get(key, ()) != targets:
            diffs.append(f"epoll file {key}: targets {got_epoll.get(key, ())}, dumped {targets}")
    shares = sim.sharing()
    live = {p.pid for p in snap.processes if p.state != "Z"}
    for kind in ("files", "fs", "sighand", "vm"):
        dumped = {p.pid: getattr(p.shares, kind) for p in snap.processes
                  if p.pid in live and getattr(p.shares, kind)}
        simulated = {pid: v for pid, v in shares[kind].items() if pid in dumped}
        if _partitions(dumped) != _partitions(simulated):
            got_groups = sorted(map(sorted, _partitions(simulated)))
            want_groups = sorted(map(sorted, _partitions(dumped)))
            diffs.append(f"{kind} sharing differs: simulated {got_groups}, dumped {want_groups}")
    diffs.extend(_namespace_diffs(snap, sim, live))
    return diffs


def _namespace_diffs(snap: Snapshot, sim: Simulator, live: set[int]) -> list[str]:
    """Processes that share a namespace in the dump share it after the restore, and only they.

    Singletons count too: a process alone in its namespace must not end in another's.
    """
    diffs = []
    simulated = sim.namespaces()
    for ns_type, ids in simulated.items():
        dumped = {p.pid: ns.inode for p in snap.processes if p.pid in live
                  for ns in p.namespaces if ns.type == ns_type and ns.inode}
        if not dumped:
            continue
        want = _all_groups(dumped)
        got = _all_groups({pid: v for pid, v in ids.items() if pid in dumped})
        if want != got:
            diffs.append(f"{ns_type} namespaces differ: simulated "
                         f"{sorted(map(sorted, got))}, dumped {sorted(map(sorted, want))}")
    return diffs + _owner_diffs(snap, sim, live)


def _owner_diffs(snap: Snapshot, sim: Simulator, live: set[int]) -> list[str]:
    """Each namespace's owning user namespace (and a user namespace's parent) as dumped.

    Only where the dump knows the owner and some dumped process holds it: the
    restorer's own user namespace stands for the one outside the tree.
    """
    simulated = sim.namespaces()
    sim_id: dict[tuple[str, int], int] = {}   # dumped (type, inode) -> simulated id
    for proc in snap.processes:
        if proc.pid in live:
            for ns in proc.namespaces:
                if ns.type in simulated and proc.pid in simulated[ns.type]:
                    sim_id.setdefault((ns.type, ns.inode), simulated[ns.type][proc.pid])
    diffs: list[str] = []
    seen: set[tuple[str, int]] = set()
    for proc in snap.processes:
        for ns in proc.namespaces:
            key = (ns.type, ns.inode)
            owner = sim_id.get(("user", ns.owner_user))
            if key in seen or key not in sim_id or not ns.owner_user or owner is None:
                continue
            seen.add(key)
            got = sim.owner_of(ns.type, sim_id[key])
            if got != owner:
                diffs.append(f"{ns.type} namespace {ns.inode}: owned by user namespace "
                             f"{ns.owner_user} when dumped, not after the restore")
    return diffs


def _all_groups(values: dict[int, int]) -> set[frozenset[int]]:
    groups: dict[int, set[int]] = defaultdict(set)
    for pid, value in values.items():
        groups[value].add(pid)
    return {frozenset(g) for g in groups.values()}


def _cut(value: object) -> str:
    text = str(value)
    return text if len(text) < 120 else text[:117] + "..."


def verify(snap: Snapshot, plan: Plan, base: int) -> Simulator | None:
    """Simulate the plan; a refusal or a different end state is a blocker (planner bug)."""
    try:
        sim = simulate(plan.steps)
    except KernelError as err:
        plan.problem(Severity.BLOCKER, "plan-verification-failed",
                     f"the simulated kernel refuses the plan: {err}",
                     fix="this is a criu-model bug: please report it with the snapshot")
        return None
    diffs = compare(snap, sim, base, 1 if plan.pid_ns == "new" else 0)
    if diffs:
        plan.problem(Severity.BLOCKER, "plan-verification-failed",
                     f"the simulated restore does not end in the dumped state "
                     f"({len(diffs)} differences): " + "; ".join(diffs[:8]),
                     fix="this is a criu-model bug: please report it with the snapshot")
    return sim
