"""Per-kind file state in the plan: what a restorer needs to remake each fd, and its checks."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import criu_model
from criu_model.planner import RESTORER, Action, Severity, Step, plan
from criu_model.planner.check import compare
from criu_model.planner.simulate import simulate
from criu_model.snapshot import Snapshot
from tests.collect.fdkinds import Child, spawn

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to read other fdinfo")


@pytest.fixture
def plannable(tmp_path: Path) -> Iterator[tuple[Child, Snapshot, Path]]:
    with spawn("plannable", str(tmp_path)) as child:
        yield child, criu_model.dump([child.pid]), tmp_path


def _open_of(steps: list[Step], pid: int, fd: int) -> dict[str, Any]:
    found = [s for s in steps if s.actor == pid and s.action is Action.OPEN
             and s.args.get("fd") == fd]
    assert len(found) == 1, (fd, found)
    return found[0].args


def test_plan_carries_each_kinds_state(plannable: tuple[Child, Snapshot, Path]) -> None:
    child, snap, _ = plannable
    info, pid = child.info, child.pid
    p = plan(snap, live=False)
    assert p.feasible, p.problems
    steps = p.steps
    sem = _open_of(steps, pid, info["eventfd"]["sem"])
    assert (sem["kind"], sem["count"], sem["semaphore"]) == ("eventfd", 5, True)
    assert _open_of(steps, pid, info["eventfd"]["plain"])["semaphore"] is False
    watches = _open_of(steps, pid, info["inotify"]["fd"])["watches"]
    assert sorted([w["wd"], w["mask"], w["ino"], w["dev"]] for w in watches) == \
        sorted(info["inotify"]["watches"])
    assert all(w["handle"] for w in watches)
    timer = _open_of(steps, pid, info["timerfd"]["fd"])
    assert timer["clockid"] == info["timerfd"]["clock"]
    assert timer["interval_ns"] == info["timerfd"]["interval_ns"]
    assert 0 < timer["value_ns"] <= info["timerfd"]["value_ns"]
    assert _open_of(steps, pid, info["signalfd"]["fd"])["signals"] == \
        [signal.SIGUSR1, signal.SIGUSR2]
    memfd = _open_of(steps, pid, info["memfd"]["fd"])
    assert (memfd["name"], memfd["size"], memfd["seals"]) == \
        (info["memfd"]["name"], len(info["memfd"]["data"]), info["memfd"]["seals"])
    flock = _open_of(steps, pid, info["locks"]["flock"])["locks"]
    assert [(x["type"], x["mode"]) for x in flock] == [("flock", "write")]
    # POSIX locks: not on the open (a close drops them), a lock step on the final fd
    assert "locks" not in _open_of(steps, pid, info["locks"]["posix"])
    posix = [s.args["locks"] for s in steps if s.action is Action.LOCK and s.actor == pid
             and s.args["fd"] == info["locks"]["posix"]]
    assert [[(x["type"], x["start"], x["end"], x["pid"]) for x in lk] for lk in posix] == \
        [[("posix", 10, 14, pid)]]
    pidfd = _open_of(steps, pid, info["pidfd"]["fd"])
    assert pidfd["target"] == info["pidfd"]["pid"] == os.getpid()
    outside = [x for x in p.problems if x.kind == "pidfd-target-outside"]
    assert outside and outside[0].severity is Severity.WARNING
    assert compare(snap, simulate(steps), RESTORER, 0) == []


def test_dry_run_reports_a_deleted_watch_target(
        plannable: tuple[Child, Snapshot, Path]) -> None:
    child, snap, tmp = plannable
    assert not [x for x in plan(snap).problems if x.kind == "watch-target-missing"]
    (tmp / "b").rmdir()   # the watched directory goes away after the dump
    missing = [x for x in plan(snap).problems if x.kind == "watch-target-missing"]
    ino_b = next(w[2] for w in child.info["inotify"]["watches"] if w[1] != 0x100)
    assert len(missing) == 1 and missing[0].severity is Severity.BLOCKER
    assert f"inode {ino_b}" in missing[0].message and "deleted" in missing[0].message


def test_dry_run_names_missing_features_and_capabilities(
        plannable: tuple[Child, Snapshot, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    # This machine has every feature: pretend it lacks kcmp and pidfd_open, and that the
    # restorer runs without capabilities, to check each is reported with what needs it.
    _, snap, _ = plannable
    from criu_model.features import Feature
    from criu_model.planner import live

    monkeypatch.setattr(live, "probe_kcmp", lambda: Feature("kcmp", False, "ENOSYS"))
    monkeypatch.setattr(live, "probe_pidfd", lambda: Feature("pidfd", False, "ENOSYS"))
    monkeypatch.setattr(live, "_caps", lambda: 0)
    problems = [(x.severity, x.kind, x.message) for x in plan(snap).problems]
    kinds = {(sev, kind) for sev, kind, _ in problems}
    assert (Severity.WARNING, "kernel-feature") in kinds
    messages = " | ".join(m for _, _, m in problems)
    assert "kcmp is missing" in messages and "pidfd_open is missing" in messages
    assert "CAP_DAC_READ_SEARCH" in messages and "CAP_CHECKPOINT_RESTORE" in messages
