"""Planner: real round trips, dry-run conflicts, bad input, and the simulation property."""

from __future__ import annotations

import json
import os
import random
import socket
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import criu_model
from criu_model.errors import InconsistentImage
from criu_model.images.pb import files_pb2, inventory_pb2, process_pb2
from criu_model.planner import NEW_NS_INIT, RESTORER, Action, Severity, plan
from criu_model.planner.check import compare
from criu_model.planner.model import CloneFlag
from criu_model.planner.simulate import KernelError, Simulator, simulate
from criu_model.render.plan import plan_to_json
from criu_model.snapshot import Snapshot
from tests.plan.simtrees import random_world, to_snapshot
from tests.plan.trees import planner_tree
from tests.test_sharing import clone_helper

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="unshare(CLONE_NEWPID) needs root")


def _blockers(p: criu_model.planner.Plan, kind: str | None = None) -> list[object]:
    return [x for x in p.problems if x.severity is Severity.BLOCKER
            and (kind is None or x.kind == kind)]


@pytest.fixture
def real_tree(tmp_path: Path):  # type: ignore[no-untyped-def]
    kept = tmp_path / "kept file"
    kept.write_bytes(b"contents")
    with planner_tree(str(kept)) as built:
        snap = criu_model.dump([built.pids["root"]])
        yield built, snap, kept


@needs_root
def test_real_tree_round_trip(real_tree) -> None:  # type: ignore[no-untyped-def]
    built, snap, _ = real_tree
    by_pid = snap.by_pid
    pids = built.pids
    # The tree really has what the plan must recreate.
    assert by_pid[pids["zombie"]].state == "Z"
    assert by_pid[pids["member"]].pgid not in by_pid          # dead group leader
    assert by_pid[pids["orph"]].ppid == pids["root"] != by_pid[pids["orph"]].sid
    assert list(by_pid[pids["ns3"]].ns_pids)[1:] == [3, 2]    # two nested levels
    assert len(by_pid[pids["root"]].threads) == 3
    p = plan(snap, live=False)
    assert p.feasible, p.problems
    assert not [x for x in p.problems if x.kind == "plan-verification-failed"]
    procs = p.processes
    assert procs[pids["ns1"]].new_pid_ns and procs[pids["ns1"]].set_tid == [1, pids["ns1"]]
    assert procs[pids["ns3"]].set_tid == [2, 3, pids["ns3"]]
    dead_group = by_pid[pids["member"]].pgid
    assert procs[dead_group].helper and "group" in procs[dead_group].reason
    orphan_parent = procs[pids["orph"]].parent
    assert procs[orphan_parent].helper and "orphan" in procs[orphan_parent].reason
    exits = [s for s in p.steps if s.action is Action.EXIT and s.actor == pids["zombie"]]
    assert exits and exits[0].args["code"] == 5
    # Inherited, not transferred: every fd of this tree descends from root's opens.
    assert p.transfers == 0 and p.inherited > 0
    # Independently re-simulate and compare: the end state is the dump.
    sim = simulate(p.steps)
    assert compare(snap, sim, RESTORER, 0) == []


@pytest.fixture
def clone_files_tree(tmp_path: Path, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """The real tree plus a clone(CLONE_FILES|SIGCHLD) pair (skipped without gcc)."""
    helper: Path = request.getfixturevalue(clone_helper.__name__)
    kept = tmp_path / "kept file"
    kept.write_bytes(b"contents")
    with planner_tree(str(kept), str(helper)) as built:
        yield built, criu_model.dump([built.pids["root"]])


@needs_root
def test_real_clone_files_child_round_trip(clone_files_tree) -> None:  # type: ignore[no-untyped-def]
    built, snap = clone_files_tree
    parent, child = built.pids["cfparent"], built.pids["cfchild"]
    by_pid = snap.by_pid
    # The dump really saw one fd table shared by two processes that share nothing else.
    assert by_pid[child].ppid == parent and by_pid[parent].ppid == built.pids["root"]
    assert by_pid[child].shares.files == by_pid[parent].shares.files != 0
    assert by_pid[child].shares.vm != by_pid[parent].shares.vm
    tables = snap.fds_by_pid
    assert [f.fd for f in tables[child].fds] == [f.fd for f in tables[parent].fds]
    p = plan(snap, live=False)
    assert p.feasible, p.problems
    assert not [x for x in p.problems if x.kind == "plan-verification-failed"]
    planned = p.processes[child]
    assert planned.parent == parent and planned.flags & CloneFlag.FILES
    assert not planned.flags & (CloneFlag.VM | CloneFlag.SIGHAND)
    doc = json.loads(json.dumps(plan_to_json(p)))   # what `plan --json` prints
    clone = next(s for s in doc["steps"] if s.get("child") == child)
    assert clone["action"] == "clone3" and clone["actor"] == parent
    assert "CLONE_FILES" in clone["flags"] and "CLONE_VM" not in clone["flags"]
    # The child opens nothing itself: its table is its parent's.
    assert not [s for s in p.steps if s.actor == child
                and s.action not in (Action.EXIT, Action.MAP_VMAS, Action.FILL_PAGES)]
    sim = simulate(p.steps)
    assert compare(snap, sim, RESTORER, 0) == []
    shared = sim.sharing()
    assert shared["files"][child] == shared["files"][parent]
    assert shared["vm"][child] != shared["vm"][parent]
    state = sim.state()
    assert state[child].fds == state[parent].fds == tuple(
        sorted((f.fd, f.file_id) for f in tables[parent].fds))


@needs_root
def test_live_dry_run_reports_conflicts(real_tree) -> None:  # type: ignore[no-untyped-def]
    built, snap, kept = real_tree
    p = plan(snap, live=True)
    in_use = {x.pid for x in _blockers(p, "pid-in-use")}
    for role in ("root", "sess", "member", "orph", "ns1", "ns2", "ns3", "zombie"):
        assert built.pids[role] in in_use, role
    port = built.info["port"]
    assert any(x.port == port for x in _blockers(p, "port-in-use"))
    assert not p.feasible
    kept.unlink()
    p = plan(snap, live=True)
    missing = _blockers(p, "file-missing")
    assert [x.path for x in missing] == [str(kept)]


@needs_root
def test_new_pid_ns_has_no_pid_conflicts(real_tree) -> None:  # type: ignore[no-untyped-def]
    _, snap, _ = real_tree
    p = plan(snap, live=True, pid_ns="new")
    assert not _blockers(p, "pid-in-use")
    assert not [x for x in p.problems if x.kind == "plan-verification-failed"]
    assert p.processes[NEW_NS_INIT].set_tid == [1]


def _proc(pid: int, ppid: int, pgid: int, sid: int, **kw: object) -> process_pb2.Process:
    return process_pb2.Process(pid=pid, ppid=ppid, pgid=pgid, sid=sid, ns_pids=[pid],
                               ns_pgids=[pgid], ns_sids=[sid], state="S", **kw)


def _snap(*procs: process_pb2.Process, roots: tuple[int, ...] = (100,)) -> Snapshot:
    return Snapshot(inventory=inventory_pb2.Inventory(root_pids=roots), processes=list(procs))


def test_inconsistent_snapshot_names_pids() -> None:
    snap = _snap(_proc(100, 1, 100, 100), _proc(101, 555, 100, 100))
    with pytest.raises(InconsistentImage, match=r"101.*555"):
        plan(snap, live=False)
    snap = _snap(_proc(100, 1, 100, 100), _proc(101, 100, 101, 101),
                 _proc(102, 100, 101, 100))
    with pytest.raises(InconsistentImage, match="102"):
        plan(snap, live=False)


def test_clone_files_and_shared_fds() -> None:
    root = _proc(100, 1, 100, 100, shares=process_pb2.TaskShares(files=7, fs=1, vm=1,
                                                                 sighand=1))
    kid = _proc(101, 100, 100, 100, shares=process_pb2.TaskShares(files=7, fs=2, vm=2,
                                                                  sighand=2))
    other = _proc(102, 100, 102, 102, shares=process_pb2.TaskShares(files=8, fs=3, vm=3,
                                                                    sighand=3))
    shared = files_pb2.Fd(fd=3, file_id=11, kind=files_pb2.FD_REGULAR, path=b"/etc/hostname",
                          file=files_pb2.RegularFile())
    ep = files_pb2.Fd(fd=4, file_id=12, kind=files_pb2.FD_EPOLL,
                      epoll=files_pb2.Epoll(targets=[files_pb2.EpollTarget(tfd=3, file_id=11)]))
    tables = [files_pb2.FdTable(pid=100, fds=[shared, ep]),
              files_pb2.FdTable(pid=101, fds=[shared, ep]),
              files_pb2.FdTable(pid=102, fds=[files_pb2.Fd(fd=9, file_id=11,
                                                           kind=files_pb2.FD_REGULAR,
                                                           file=files_pb2.RegularFile())])]
    snap = Snapshot(inventory=inventory_pb2.Inventory(root_pids=[100]),
                    processes=[root, kid, other], fds=tables)
    p = plan(snap, live=False)
    assert p.feasible, p.problems
    assert "CLONE_FILES" in next(s for s in p.steps if s.args.get("child") == 101).args["flags"]
    adds = [s for s in p.steps if s.action is Action.EPOLL_ADD]
    opens = [i for i, s in enumerate(p.steps) if s.action is Action.OPEN and s.args["file"] == 11]
    assert len(adds) == 1 and opens and opens[0] < p.steps.index(adds[0])
    assert p.transfers == 0  # 102 inherits from its parent 100, the opener


def test_simulator_kernel_rules() -> None:
    sim = Simulator()
    sim.clone(RESTORER, 1, [500], 0)
    with pytest.raises(KernelError, match="EEXIST"):
        sim.clone(RESTORER, 2, [500], 0)
    sim.setpgid(1, 1, 0)
    with pytest.raises(KernelError, match="EPERM"):
        sim.setsid(1)                       # a group leader
    sim.clone(1, 3, [0, 7], 0x20000000)
    with pytest.raises(KernelError, match="EINVAL"):
        sim.clone(3, 4, [5, 9, 0], 0x20000000)   # new namespace: only pid 1 there
    sim.clone(3, 5, [], 0)
    assert sim.tasks[5].pid.numbers[1] == 2
    sim.exit(3, 0) if False else None
    sim.clone(RESTORER, 6, [600], 0)
    sim.setsid(6)
    with pytest.raises(KernelError, match="EPERM"):
        sim.setpgid(6, 6, 0)                 # a session leader


# derandomize: CI runs the same 60 examples every time; scripts/fuzz_plan.py sweeps
# many more seeds (known residue: about 1 tree in 4,000 beyond seed 10,000 is unplanned).
@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), steps=st.integers(5, 60))
def test_property_simulated_plan_ends_in_the_snapshot(seed: int, steps: int) -> None:
    # Every shape: sessions and groups change at any time, also after forks, and
    # namespace inits change session whenever they like.
    snap = to_snapshot(random_world(random.Random(seed), steps))
    if not snap.processes:
        return
    p = plan(snap, live=False)
    failures = [x for x in p.problems if x.kind == "plan-verification-failed"]
    assert not failures, failures
    assert p.feasible, p.problems
    sim = simulate(p.steps)
    assert compare(snap, sim, RESTORER, 0) == []


# Seeds (fixed step count below) whose unrestricted trees once ended unplanned: a process in
# a nested pid namespace that can only inherit a group made outside it (from a parent that
# visits that group, leads it briefly, or was itself born in it), and a session passed down
# through a child session leader forked before its parent's setsid().
_REGRESSION_SEEDS = (52, 140, 248, 265, 409, 448)


def _unrestricted(seed: int) -> Snapshot:
    rng = random.Random(seed)
    return to_snapshot(random_world(rng, rng.randint(5, 60)))


@pytest.mark.parametrize("seed", _REGRESSION_SEEDS)
def test_inherited_outer_groups_are_planned(seed: int) -> None:
    snap = _unrestricted(seed)
    assert any(len(p.ns_pgids) > 1 and p.ns_pgids[-1] == 0 and p.pgid != p.sid
               for p in snap.processes) or seed == 52   # 52: the session case
    p = plan(snap, live=False)
    assert p.feasible, p.problems
    assert compare(snap, simulate(p.steps), RESTORER, 0) == []


# Unrestricted seeds that once ended unplanned (or, 4975, with a wrong plan): a namespace
# init born in a session or group its namespace cannot see (its children kept it, also
# through child session leaders and nested inits); a group visible only outside a nested
# namespace whose leader is gone (helper) or moved on (it leads it again until the end),
# or made by a descendant of the process that must hand it on; an orphan that can only
# inherit its group; an orphan maker under a subreaper set too early. Then (17480..58321):
# such a group made in a sibling's subtree or by an orphan (made first), joined late by
# the creator (joins early); 44635 (a wrong plan): two leaders that end in each other's
# groups, moved while each target group still has a member.
_ONCE_UNPLANNABLE = (30, 191, 253, 273, 275, 291, 294, 738, 932, 985, 988, 1084, 1496, 1510,
                     1658, 1659, 1843, 1848, 1871, 1904, 1926, 1967, 1998, 2172, 2253, 2530,
                     2534, 2707, 2762, 2838, 2992, 4975, 17480, 20297, 20744, 20943, 30809,
                     34176, 43525, 43948, 44635, 58321)


@pytest.mark.parametrize("seed", _ONCE_UNPLANNABLE)
def test_once_unplannable_trees_are_planned(seed: int) -> None:
    snap = _unrestricted(seed)
    p = plan(snap, live=False)
    assert p.feasible, p.problems
    assert compare(snap, simulate(p.steps), RESTORER, 0) == []


def test_unrestricted_trees_plan_or_say_why() -> None:
    """Every shape: a plan that round-trips (a creation order always exists)."""
    planned = empty = 0
    for seed in range(200):
        snap = _unrestricted(seed)
        if not snap.processes:
            empty += 1
            continue
        p = plan(snap, live=False)
        kinds = {x.kind for x in p.problems if x.severity is Severity.BLOCKER}
        assert "plan-verification-failed" not in kinds, (seed, p.problems)
        assert not kinds, (seed, p.problems)
        assert compare(snap, simulate(p.steps), RESTORER, 0) == [], seed
        planned += 1
    assert planned == 200 - empty and planned >= 190


def test_sessions_outside_the_dump_namespace_stay_with_the_restorer() -> None:
    """Dumped inside a pid namespace, the launcher's session and group read as 0: they
    are inherited from the restorer, never recreated by a helper numbered 0."""
    hidden = unplannable = 0
    for seed in (*range(120), 19022):   # 19022: a group helper made by the restorer
        rng = random.Random(seed)
        snap = to_snapshot(random_world(rng, rng.randint(5, 60)), hide_outside=True)
        if not snap.processes:
            continue
        outside = [x.pid for x in snap.processes if x.sid == 0]
        hidden += bool(outside)
        p = plan(snap, live=False)
        blockers = [x for x in p.problems if x.severity is Severity.BLOCKER]
        if blockers:   # a group leader that went back to the hidden group: no setpgid names it
            assert [x.kind for x in blockers] == ["unplannable"], (seed, blockers)
            assert "outside the dumper's pid namespace" in blockers[0].message, seed
            unplannable += 1
            continue
        assert 0 not in p.processes, seed   # key 0 is the restorer, never a helper
        assert all(0 not in x.set_tid for x in p.processes.values()), seed
        assert compare(snap, simulate(p.steps), RESTORER, 0) == [], seed
        warned = [x for x in p.problems if x.kind == "session-outside"]
        assert bool(warned) == bool(outside), seed
    assert hidden >= 60 and unplannable <= 12


def test_port_conflict_detected_offline_free() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        assert s.getsockname()[1] > 0


def test_a_namespace_init_that_died_of_a_signal_is_signalled_by_its_parent() -> None:
    """Found by rehearsing random trees (seed 52): a pid-namespace init ignores a signal it
    sends itself, so its zombie's exit step says the parent sends it, and the simulator,
    held to the kernel, refuses the step without that."""
    import random

    from criu_model.planner.simulate import KernelError
    from tests.plan.simtrees import random_world, to_snapshot

    rng = random.Random(52)
    snap = to_snapshot(random_world(rng, rng.randint(5, 60), init_setsid=None))
    p = plan(snap, live=False, pid_ns="new")
    assert p.feasible, p.problems
    inits = {k for k, planned in p.processes.items() if planned.new_pid_ns}
    exits = [s for s in p.steps if s.action is Action.EXIT and s.actor in inits
             and s.args.get("signal")]
    assert exits and all(s.args["by"] == "parent" for s in exits)
    for s in exits:
        del s.args["by"]
    with pytest.raises(KernelError, match="ignores a signal it sends itself"):
        simulate(p.steps)
