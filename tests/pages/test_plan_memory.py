"""Memory in the restore plan: map and fill steps with byte counts, and what a verdict covers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import criu_model
from criu_model.pages.layout import PAGE_SIZE
from criu_model.planner.memory import check_memory_available
from criu_model.planner.model import Action, Plan, Severity
from tests.memchild import ANON_PAGES, MemTree, spawn_mem_tree

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: ptrace, map_files, PFNs")


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[MemTree]:
    with spawn_mem_tree(tmp_path) as tree:
        yield tree


def test_plan_lists_memory_steps_with_byte_counts(tree: MemTree, tmp_path: Path) -> None:
    snap = criu_model.load(criu_model.write(
        criu_model.dump([tree.root.pid], pages=True, pages_dir=str(tmp_path)), tmp_path / "s"))
    p = criu_model.plan(snap, live=False, pid_ns="new")
    assert p.feasible, p.problems
    maps = {s.actor: s for s in p.steps if s.action is Action.MAP_VMAS}
    assert set(maps) == {tree.root.pid, tree.kid.pid}
    assert maps[tree.root.pid].args["count"] == len(snap.memory_by_pid[tree.root.pid].vmas)
    start = tree.root.regions["anon"][0]
    fill = next(s for s in p.steps if s.action is Action.FILL_PAGES
                and s.actor == tree.root.pid and s.args["start"] <= start < s.args["end"])
    assert fill.args["stored"] >= ANON_PAGES and fill.args["zero"] >= 1
    assert fill.args["bytes"] == (fill.args["stored"] + fill.args["inherited"]) * PAGE_SIZE
    assert p.covers == "skeleton+memory" and any("sigactions" in x for x in p.lacks)
    plain = criu_model.dump([tree.root.pid])
    q = criu_model.plan(plain, live=False, pid_ns="new")
    assert q.covers == "skeleton" and "could not resume" in q.lacks[0]
    assert not [s for s in q.steps if s.action is Action.FILL_PAGES]
    out = subprocess.run([sys.executable, "-m", "criu_model", "plan", str(tmp_path / "s"),
                          "--offline", "--pid-ns", "new"], capture_output=True, text=True,
                         timeout=60)
    lines = out.stdout.splitlines()
    assert lines[-2].startswith("covers the skeleton and the memory") and "fill_pages" in out.stdout


def test_memory_available_is_checked(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 100 kB\nMemAvailable:      1024 kB\n")
    p = Plan("same")
    check_memory_available(p, 2 << 20, str(meminfo))
    assert [(x.severity, x.kind) for x in p.problems] == [(Severity.BLOCKER, "memory")]
    ok = Plan("same")
    check_memory_available(ok, 512 << 10, str(meminfo))
    assert not ok.problems
