"""Controlling ttys in the plan: a real pty session round trip, the dry run, kernel rules."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

import pytest
from rich.console import Console

import criu_model
from criu_model.images.pb import files_pb2, inventory_pb2, process_pb2
from criu_model.kernel.devnum import decode_dev, encode_dev, pts_device, tty_name
from criu_model.planner import RESTORER, Action, Severity, plan
from criu_model.planner.check import compare
from criu_model.planner.simulate import KernelError, Simulator, simulate
from criu_model.render.text import show_procs
from criu_model.snapshot import Snapshot
from tests.proctree import Tree, spawn

needs_pty = pytest.mark.skipif(not os.path.exists("/dev/ptmx"), reason="no /dev/ptmx here")


@pytest.fixture
def tty_tree() -> Iterator[tuple[Tree, Snapshot]]:
    with spawn("tty") as tree:
        yield tree, criu_model.dump([tree["ttyroot"].pid])


@needs_pty
def test_real_pty_session_round_trip(tty_tree: tuple[Tree, Snapshot]) -> None:
    tree, snap = tty_tree
    root, lead, fg, notty = (tree[r].pid for r in ("ttyroot", "lead", "fg", "notty"))
    index = int(tree["lead"].info["tty"].rsplit("/", 1)[1])
    dev = pts_device(index)
    by_pid = snap.by_pid
    # The dump shows what was built: the leader's tty, the foreground group, the dropout.
    assert (by_pid[lead].tty_nr, by_pid[lead].tpgid) == (dev, fg)
    assert (by_pid[fg].tty_nr, by_pid[fg].tpgid) == (dev, fg)
    assert (by_pid[notty].tty_nr, by_pid[notty].tpgid) == (0, -1)
    assert by_pid[root].tty_nr == 0

    p = plan(snap, live=False)
    assert p.feasible, p.problems
    ptys = [s for s in p.steps if s.action is Action.OPEN_PTY]
    assert [(s.actor, s.args["index"], s.args["tty"]) for s in ptys] == [(root, index, dev)]
    assert len(ptys[0].args["files"]) == 2           # the master and one slave file
    order = [(s.actor, s.action) for s in p.steps]
    take = order.index((lead, Action.SET_CTTY))
    assert order.index((lead, Action.SETSID)) < take  # a session leader takes it ...
    forks = [i for i, s in enumerate(p.steps) if s.action is Action.CLONE
             and s.args["child"] in (fg, notty)]
    assert forks and take < min(forks)                # ... before its members inherit it
    assert (notty, Action.DROP_CTTY) in order
    fgset = next(s for s in p.steps if s.action is Action.SET_FG)
    assert (fgset.actor, fgset.args["pgid"]) == (lead, fg)
    assert compare(snap, simulate(p.steps), RESTORER, 0) == []

    # `show procs` names the tty and the foreground group, as ps -j does.
    out = io.StringIO()
    show_procs(snap, Console(file=out, width=300))
    rows = {int(line.split()[0]): line.split() for line in out.getvalue().splitlines()[1:]}
    assert rows[lead][5:7] == [f"pts/{index}", str(fg)]
    assert rows[notty][5:7] == ["?", "-1"]

    # Live, with the original still running: its pty index is taken.
    live = plan(snap)
    taken = [x for x in live.problems if x.kind == "pty-in-use"]
    assert taken and taken[0].path == f"/dev/pts/{index}"
    assert taken[0].severity is Severity.BLOCKER


def test_tty_device_numbers_match_stat() -> None:
    assert pts_device(0) == 34816 and pts_device(3) == 34819     # 136:0, 136:3
    assert decode_dev(pts_device(300)) == (137, 44)
    assert decode_dev(encode_dev(4, 1)) == (4, 1)
    assert decode_dev(encode_dev(136, 1 << 12)) == (136, 1 << 12)
    assert [tty_name(x) for x in (pts_device(300), encode_dev(4, 1), encode_dev(4, 65))] == \
        ["pts/300", "tty1", "ttyS1"]


def test_simulator_tty_rules() -> None:
    dev = pts_device(5)
    sim = Simulator()
    sim.clone(RESTORER, 1, [500], 0)
    sim.open_pty(1, dev, [10, 11], [100, 101])
    with pytest.raises(KernelError, match="EBUSY"):
        sim.open_pty(1, dev, [12], [102])             # one pty per index
    with pytest.raises(KernelError, match="EPERM"):
        sim.set_ctty(1, 101, dev)                     # not a session leader
    sim.setsid(1)
    with pytest.raises(KernelError, match="ENOTTY"):
        sim.set_ctty(1, 100, dev)                     # the master is not this tty
    sim.set_ctty(1, 101, dev)
    sim.clone(1, 2, [501], 0)
    assert sim.tasks[2].ctty is sim.tasks[1].ctty     # inherited by fork
    sim.clone(RESTORER, 3, [502], 0)
    sim.setsid(3)
    sim.clone(1, 4, [503], 0)
    sim.setsid(4)
    assert sim.tasks[4].ctty is None                  # setsid() drops it
    sim.tasks[3].files[101] = sim.tasks[1].files[101]
    with pytest.raises(KernelError, match="EPERM"):
        sim.set_ctty(3, 101, dev)                     # controls another session
    with pytest.raises(KernelError, match="EPERM"):
        sim.set_fg(1, 502)                            # a group of another session
    sim.setpgid(2, 2, 0)
    sim.set_fg(1, 501)
    assert sim.state()[2].tpgid == 501
    sim.exit(1, 0)                                    # the leader's exit frees the tty
    assert sim.tasks[2].ctty is None and sim.state()[2].tpgid == -1
    sim.set_ctty(3, 101, dev)                         # free again


def _proc(pid: int, ppid: int, pgid: int, sid: int, **kw: object) -> process_pb2.Process:
    return process_pb2.Process(pid=pid, ppid=ppid, pgid=pgid, sid=sid, ns_pids=[pid],
                               ns_pgids=[pgid], ns_sids=[sid], state="S", **kw)


def _pty_fds(index: int, master: bool, slave: bool, fid: int) -> list[files_pb2.Fd]:
    out = []
    if master:
        out.append(files_pb2.Fd(fd=3, file_id=fid, kind=files_pb2.FD_TTY, path=b"/dev/ptmx",
                                tty=files_pb2.Tty(index=index, is_master=True,
                                                  driver="ptmx", rdev_major=5, rdev_minor=2)))
    if slave:
        out.append(files_pb2.Fd(fd=4, file_id=fid + 1, kind=files_pb2.FD_TTY,
                                path=f"/dev/pts/{index}".encode(),
                                tty=files_pb2.Tty(index=index, driver="pts",
                                                  rdev_major=136, rdev_minor=index)))
    return out


def test_shell_job_without_its_shell_keeps_no_tty() -> None:
    # A job of a shell that was not dumped: its session leader is outside.
    dev = pts_device(7)
    job = _proc(200, 1, 200, 150, tty_nr=dev, tpgid=200)
    snap = Snapshot(inventory=inventory_pb2.Inventory(root_pids=[200]), processes=[job],
                    fds=[files_pb2.FdTable(pid=200, fds=_pty_fds(7, False, True, 40))])
    p = plan(snap, live=False)
    kinds = {x.kind: x for x in p.problems}
    assert "ctty-not-restored" in kinds and kinds["ctty-not-restored"].severity is \
        Severity.WARNING
    assert "pty-master-outside" in kinds
    assert p.feasible, p.problems
    assert not [s for s in p.steps if s.action is Action.SET_CTTY]
    opened = [s for s in p.steps if s.action is Action.OPEN and s.args.get("tty") == dev]
    assert opened and opened[0].args["path"] == "/dev/pts/7"


def test_leader_before_its_pty_is_an_explained_blocker() -> None:
    # The leader's tty is a pty its own child creates later: no order gives it the tty
    # before it forks (the kernel would need SCM_RIGHTS first; not planned).
    dev = pts_device(9)
    lead = _proc(300, 1, 300, 300, tty_nr=dev, tpgid=300)
    kid = _proc(301, 300, 300, 300, tty_nr=dev, tpgid=300)
    snap = Snapshot(inventory=inventory_pb2.Inventory(root_pids=[300]), processes=[lead, kid],
                    fds=[files_pb2.FdTable(pid=301, fds=_pty_fds(9, True, True, 60))])
    p = plan(snap, live=False)
    blockers = [x for x in p.problems if x.severity is Severity.BLOCKER]
    assert [x.kind for x in blockers] == ["ctty-order"] and blockers[0].pid == 300
