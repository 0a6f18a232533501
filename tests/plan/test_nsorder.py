"""Planner: namespace creation order (user first), setns to earlier holders, and the check."""

from __future__ import annotations

import os

import pytest

import criu_model
from criu_model.images.pb import inventory_pb2, process_pb2
from criu_model.planner import RESTORER, Action, plan
from criu_model.planner.check import compare
from criu_model.planner.model import CloneFlag, Step
from criu_model.planner.simulate import KernelError, Simulator, simulate
from criu_model.snapshot import Snapshot
from tests.proctree import Tree

HOST = {"user": 10, "mnt": 11, "uts": 12, "ipc": 13, "net": 14, "cgroup": 15, "time": 16}


def _proc(pid: int, ppid: int, **ns: int) -> process_pb2.Process:
    inodes = {**HOST, **ns}
    return process_pb2.Process(
        pid=pid, ppid=ppid, pgid=100, sid=100, ns_pids=[pid], ns_pgids=[100], ns_sids=[100],
        state="S", namespaces=[process_pb2.Namespace(type=t, inode=i) for t, i in inodes.items()])


def _snap(*procs: process_pb2.Process) -> Snapshot:
    return Snapshot(inventory=inventory_pb2.Inventory(root_pids=[100]), processes=list(procs))


def _clone(p: criu_model.planner.Plan, child: int) -> Step:
    return next(s for s in p.steps if s.action is Action.CLONE and s.args["child"] == child)


def test_child_in_new_user_and_mnt_namespace() -> None:
    snap = _snap(_proc(100, 1), _proc(101, 100, user=20, mnt=21))
    p = plan(snap, live=False)
    assert p.feasible, p.problems
    step = _clone(p, 101)
    assert step.args["flags_value"] == CloneFlag.NEWUSER | CloneFlag.NEWNS
    assert {"CLONE_NEWUSER", "CLONE_NEWNS"} <= set(step.args["flags"])   # the JSON names
    assert not [s for s in p.steps if s.action is Action.SETNS]
    sim = simulate(p.steps)
    ns = sim.namespaces()
    assert ns["user"][101] != ns["user"][100] and ns["mnt"][101] != ns["mnt"][100]
    assert ns["net"][101] == ns["net"][100]
    assert sim.userns_parent[ns["user"][101]] == ns["user"][100]


def test_siblings_share_a_net_namespace_their_parent_lacks() -> None:
    snap = _snap(_proc(100, 1), _proc(101, 100, net=30), _proc(102, 100, net=30, user=31),
                 _proc(103, 100))
    p = plan(snap, live=False)
    assert p.feasible, p.problems
    assert _clone(p, 101).args["flags_value"] == CloneFlag.NEWNET
    # 102 gets its own user namespace by clone, then joins 101's net namespace.
    assert _clone(p, 102).args["flags_value"] == CloneFlag.NEWUSER
    joins = [s for s in p.steps if s.action is Action.SETNS]
    assert [(s.actor, s.args["ns"], s.args["holder"]) for s in joins] == [(102, "net", 101)]
    assert p.steps.index(_clone(p, 102)) < p.steps.index(joins[0])
    assert _clone(p, 103).args["flags_value"] == 0
    sim = simulate(p.steps)
    assert compare(snap, sim, RESTORER, 0) == []
    ns = sim.namespaces()["net"]
    assert ns[101] == ns[102] != ns[100] == ns[103]


def test_user_namespace_joined_first() -> None:
    snap = _snap(_proc(100, 1), _proc(101, 100, user=40, uts=41),
                 _proc(102, 100, user=40, uts=41))
    p = plan(snap, live=False)
    assert p.feasible, p.problems
    joins = [s.args["ns"] for s in p.steps if s.action is Action.SETNS and s.actor == 102]
    assert joins == ["user", "uts"]
    assert compare(snap, simulate(p.steps), RESTORER, 0) == []


def test_compare_catches_a_wrong_namespace_partition() -> None:
    snap = _snap(_proc(100, 1), _proc(101, 100, net=30), _proc(102, 100, net=30))
    p = plan(snap, live=False)
    wrong = [s for s in p.steps if s.action is not Action.SETNS]
    diffs = compare(snap, simulate(wrong), RESTORER, 0)
    assert any(d.startswith("net namespaces differ") for d in diffs), diffs


def test_simulator_namespace_rules() -> None:
    sim = Simulator()
    sim.clone(RESTORER, 1, [500], int(CloneFlag.NEWUSER))
    with pytest.raises(KernelError, match="EPERM"):
        sim.clone(1, 2, [501], 0)     # set_tid in a pid ns its user ns does not own
    sim.clone(1, 3, [], 0)            # a kernel-chosen pid is fine
    sim.clone(1, 4, [1], int(CloneFlag.NEWPID))   # pid 1 of a pid ns its user ns owns
    sim.clone(4, 5, [7], 0)          # set_tid inside it is allowed
    sim.clone(RESTORER, 6, [600], 0)
    sim.setns(6, "user", 1)           # the parent user namespace's root may join
    with pytest.raises(KernelError, match="EPERM"):
        sim.setns(1, "user", RESTORER)  # ...but not the other way round
    with pytest.raises(KernelError, match="EINVAL"):
        sim.clone(RESTORER, 7, [700], int(CloneFlag.NEWUSER | CloneFlag.FS))


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="namespaces need root")


@needs_root
def test_real_mount_and_uts_namespace(mountns_proc: Tree) -> None:
    pid = mountns_proc["main"].pid
    snap = criu_model.dump([pid])
    proc = snap.by_pid[pid]
    mine = {t: os.stat(f"/proc/self/ns/{t}").st_ino for t in ("mnt", "uts", "net")}
    recorded = {ns.type: ns.inode for ns in proc.namespaces}
    assert recorded["mnt"] != mine["mnt"] and recorded["uts"] != mine["uts"]
    assert recorded["net"] == mine["net"]
    p = plan(snap, live=False)
    assert p.feasible, p.problems
    # The root is created in the namespaces it was dumped in: the host's, by definition.
    assert not [s for s in p.steps if s.action is Action.SETNS]
    sim = simulate(p.steps)
    assert compare(snap, sim, RESTORER, 0) == []


def test_set_tid_in_child_user_namespace_is_an_explained_blocker() -> None:
    # 101 lives in a user namespace of its own but in the outer pid namespace: it
    # lacks CAP_CHECKPOINT_RESTORE over that pid namespace, so it cannot give its
    # child 102 its pid (the simulator refuses it with EPERM, as the kernel does).
    snap = _snap(_proc(100, 1), _proc(101, 100, user=20), _proc(102, 101, user=20))
    p = plan(snap, live=False)
    kinds = [x.kind for x in p.problems]
    assert "set-tid-in-child-userns" in kinds
    assert "plan-verification-failed" not in kinds
    blocker = next(x for x in p.problems if x.kind == "set-tid-in-child-userns")
    assert blocker.pid == 101 and "102" in blocker.message and "unshare" in blocker.fix
    assert not p.feasible
    # Its creator, in the parent user namespace, may set its pids, also when it is the
    # init of a new pid namespace its new user namespace owns.
    snap = _snap(_proc(100, 1), _proc(101, 100, user=20))
    init = snap.by_pid[101]
    init.ns_pids[:] = [101, 1]
    init.ns_pgids[:] = [100, 0]
    init.ns_sids[:] = [100, 0]
    init.namespaces.add(type="pid", inode=77)
    p = plan(snap, live=False)
    assert p.feasible, p.problems
    assert p.processes[101].set_tid == [1, 101]
    assert compare(snap, simulate(p.steps), RESTORER, 0) == []
