"""Planner: namespace creation order (user first), setns to earlier holders, and the check."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from rich.console import Console

import criu_model
from criu_model.images.pb import inventory_pb2, process_pb2
from criu_model.planner import RESTORER, Action, plan
from criu_model.planner.check import compare
from criu_model.planner.model import CloneFlag, Step
from criu_model.planner.simulate import KernelError, Simulator, simulate
from criu_model.render.plan import show_plan
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
    # 102 joins 101's net namespace (owned by the outer user namespace) while it can,
    # and only then makes its own user namespace: from inside it, setns would be EPERM.
    assert _clone(p, 102).args["flags_value"] == 0
    joins = [s for s in p.steps if s.action is Action.SETNS]
    assert [(s.actor, s.args["ns"], s.args["holder"]) for s in joins] == [(102, "net", 101)]
    unshare = next(s for s in p.steps if s.action is Action.UNSHARE)
    assert (unshare.actor, unshare.args["flags"]) == (102, ["CLONE_NEWUSER"])
    assert p.steps.index(_clone(p, 102)) < p.steps.index(joins[0]) < p.steps.index(unshare)
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


def _owned(proc: process_pb2.Process, ns_type: str, owner: int) -> process_pb2.Process:
    next(ns for ns in proc.namespaces if ns.type == ns_type).owner_user = owner
    return proc


def test_dumped_owner_orders_the_user_namespace_after_what_the_outer_one_owns() -> None:
    # 101: net 21 made first (owned by the host's user namespace 10), then user 20 with
    # uts 22 (owned by 20): clone with CLONE_NEWNET, then unshare(USER|UTS).
    kid = _owned(_owned(_proc(101, 100, user=20, net=21, uts=22), "net", 10), "uts", 20)
    kid.namespaces[0].owner_user = 10     # the user namespace's parent
    snap = _snap(_owned(_proc(100, 1), "net", 10), kid)
    p = plan(snap, live=False)
    assert p.feasible, p.problems
    assert _clone(p, 101).args["flags"] == ["CLONE_NEWNET"]
    unshare = [s for s in p.steps if s.action is Action.UNSHARE]
    assert [(s.actor, sorted(s.args["flags"])) for s in unshare] == \
        [(101, ["CLONE_NEWUSER", "CLONE_NEWUTS"])]
    sim = simulate(p.steps)
    assert compare(snap, sim, RESTORER, 0) == []
    out = io.StringIO()
    show_plan(p, Console(file=out, width=200))
    text = out.getvalue().splitlines()
    line = next(i for i, x in enumerate(text) if x.strip().startswith("101 "))
    assert text[line].endswith("set_tid=[101]  CLONE_NEWNET")
    assert "unshare flags=CLONE_NEWUTS,CLONE_NEWUSER" in text[line + 1]
    ns = sim.namespaces()
    assert sim.owner_of("net", ns["net"][101]) == ns["user"][100]
    assert sim.owner_of("uts", ns["uts"][101]) == ns["user"][101]
    # Without the recorded owner the user namespace comes first, and the check sees
    # that this ends with the wrong owner.
    plain = _snap(_proc(100, 1), _proc(101, 100, user=20, net=21, uts=22))
    default = plan(plain, live=False)
    assert _clone(default, 101).args["flags_value"] == \
        CloneFlag.NEWUSER | CloneFlag.NEWNET | CloneFlag.NEWUTS
    diffs = compare(snap, simulate(default.steps), RESTORER, 0)
    assert diffs == ["net namespace 21: owned by user namespace 10 when dumped, not after "
                     "the restore"]


def test_a_third_owner_is_an_explained_blocker() -> None:
    kid = _owned(_proc(101, 100, user=20, net=21), "net", 99)   # 99: held by nobody
    p = plan(_snap(_proc(100, 1), kid), live=False)
    blocker = [x for x in p.problems if x.severity.value == "blocker"]
    assert [(x.kind, x.pid) for x in blocker] == [("ns-owner", 101)]
    assert "owned by user namespace 99" in blocker[0].message


def test_a_pid_namespace_init_that_must_leave_its_user_namespace_late() -> None:
    # 101 starts a pid namespace, is in user namespace 20 and in net 21, which the host's
    # user namespace 10 owns: the net namespace must come first, so the clone that makes
    # the pid namespace happens before user 20 exists. Fine if 10 owns the pid namespace.
    def init(pid_owner: int) -> Snapshot:
        kid = _owned(_proc(101, 100, user=20, net=21), "net", 10)
        kid.namespaces.add(type="pid", inode=30, owner_user=pid_owner)
        kid.ns_pids[:] = [101, 1]
        kid.ns_pgids[:] = [100, 0]
        kid.ns_sids[:] = [100, 0]
        return _snap(_proc(100, 1), kid)

    p = plan(init(10), live=False)
    assert p.feasible, p.problems
    assert set(_clone(p, 101).args["flags"]) == {"CLONE_NEWNET", "CLONE_NEWPID"}
    assert compare(init(10), simulate(p.steps), RESTORER, 0) == []
    # Owned by its own user namespace 20: no order makes both; said, not mis-planned.
    p = plan(init(20), live=False)
    blockers = [(x.kind, x.pid) for x in p.problems if x.severity.value == "blocker"]
    assert blockers == [("ns-owner", 101)]
    assert "new pid namespace" in p.problems[0].message


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
    sim.clone(RESTORER, 8, [800], int(CloneFlag.NEWNET))
    with pytest.raises(KernelError, match="EPERM"):
        sim.setns(1, "net", 8)          # owned by the outer user namespace
    sim.clone(RESTORER, 9, [900], 0)
    sim.setns(9, "net", 8)
    sim.unshare(9, int(CloneFlag.NEWUSER | CloneFlag.NEWUTS))
    mine = sim.tasks[9].nsset
    assert sim.owner_of("uts", mine["uts"]) == mine["user"]
    assert sim.owner_of("user", mine["user"]) == sim.tasks[RESTORER].nsset["user"]
    sim.clone(9, 10, [], int(CloneFlag.THREAD | CloneFlag.SIGHAND | CloneFlag.VM))
    with pytest.raises(KernelError, match="EINVAL"):
        sim.unshare(9, int(CloneFlag.NEWUSER))   # multithreaded


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


@needs_root
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_real_ownership_net_before_user_and_user_first() -> None:
    # a: unshare -n, then unshare -U (its net namespace is owned by our user namespace);
    # b: both at once (the kernel makes the user namespace first: it owns the net one).
    script = ("unshare -n unshare -U --map-root-user sleep 60 & "
              "unshare -U -n --map-root-user sleep 60 & wait")
    root = subprocess.Popen(["sh", "-c", script])
    try:
        deadline = time.monotonic() + 10
        kids: list[int] = []
        while time.monotonic() < deadline:
            kids = [int(k) for k in Path(f"/proc/{root.pid}/task/{root.pid}/children")
                    .read_text().split()]
            if len(kids) == 2 and all(Path(f"/proc/{k}/comm").read_text() == "sleep\n"
                                      for k in kids):
                break
            time.sleep(0.02)
        snap = criu_model.dump([root.pid])
    finally:
        root.kill()
        for kid in kids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(kid, 9)
        root.wait()
    host_user = os.stat("/proc/self/ns/user").st_ino

    def ns_of(pid: int) -> dict[str, process_pb2.Namespace]:
        return {ns.type: ns for ns in snap.by_pid[pid].namespaces}

    a, b = sorted(kids, key=lambda k: ns_of(k)["net"].owner_user != host_user)
    assert ns_of(a)["net"].owner_user == host_user == ns_of(a)["user"].parent
    assert ns_of(b)["net"].owner_user == ns_of(b)["user"].inode
    assert ns_of(a)["user"].owner_user == host_user     # a user namespace's owner: parent
    p = plan(snap, live=False)
    assert p.feasible, p.problems
    assert _clone(p, a).args["flags"] == ["CLONE_NEWNET"]
    assert [s.args["flags"] for s in p.steps if s.action is Action.UNSHARE and
            s.actor == a] == [["CLONE_NEWUSER"]]
    assert set(_clone(p, b).args["flags"]) == {"CLONE_NEWUSER", "CLONE_NEWNET"}
    assert compare(snap, simulate(p.steps), RESTORER, 0) == []


def _sleeping(argv: list[str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(argv)
    for _ in range(500):
        if Path(f"/proc/{proc.pid}/comm").read_text() == "sleep\n":
            return proc
        time.sleep(0.01)
    proc.kill()
    raise AssertionError(f"{argv} did not start")


@needs_root
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_dry_run_warns_when_the_roots_namespaces_are_not_ours() -> None:
    inside, plain = _sleeping(["unshare", "-n", "sleep", "60"]), _sleeping(["sleep", "60"])
    try:
        away, here = criu_model.dump([inside.pid]), criu_model.dump([plain.pid])
    finally:
        for proc in (inside, plain):
            proc.kill()
            proc.wait()
    warned = [x for x in plan(away).problems if x.kind == "host-namespaces"]
    net = next(ns.inode for ns in away.by_pid[inside.pid].namespaces if ns.type == "net")
    assert len(warned) == 1 and warned[0].severity.value == "warning"
    assert f"net {net} (here {os.stat('/proc/self/ns/net').st_ino})" in warned[0].message
    assert "mnt" not in warned[0].message
    assert not [x for x in plan(here).problems if x.kind == "host-namespaces"]
