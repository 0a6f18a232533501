"""`criu-model plan` as a real command: text, JSON contract, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import criu_model
from criu_model.images.pb import inventory_pb2, process_pb2
from criu_model.snapshot import Snapshot


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "criu_model", *args], capture_output=True,
                          text=True, timeout=60)


def _write(tmp_path: Path, procs: list[process_pb2.Process], roots: list[int]) -> str:
    snap = Snapshot(inventory=inventory_pb2.Inventory(root_pids=roots), processes=procs)
    return str(criu_model.write(snap, str(tmp_path / "snap")))


def _p(pid: int, ppid: int, pgid: int, sid: int, state: str = "S") -> process_pb2.Process:
    proc = process_pb2.Process(pid=pid, ppid=ppid, pgid=pgid, sid=sid, ns_pids=[pid],
                               ns_pgids=[pgid], ns_sids=[sid], state=state,
                               exit_code=3 << 8 if state == "Z" else 0)
    proc.threads.add(tid=pid, ns_tids=[pid])
    return proc


@pytest.fixture
def snap_dir(tmp_path: Path) -> str:
    # 4000000 leads a session whose group 4000009 lost its leader; 4000003 is a zombie.
    return _write(tmp_path, [_p(4000000, 1, 4000000, 4000000),
                             _p(4000001, 4000000, 4000009, 4000000),
                             _p(4000002, 4000001, 4000009, 4000000),
                             _p(4000003, 4000000, 4000000, 4000000, "Z")], [4000000])


def test_text_output_offline(snap_dir: str) -> None:
    out = _run("plan", snap_dir, "--offline")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "restorer"
    helper = next(line for line in lines if line.lstrip().startswith("4000009"))
    assert "helper" in helper and "group leader 4000009 is gone" in helper
    child = next(i for i, line in enumerate(lines) if line.strip().startswith("4000002 "))
    parent = next(i for i, line in enumerate(lines) if line.strip().startswith("4000001 "))
    assert len(lines[child]) - len(lines[child].lstrip()) > \
        len(lines[parent]) - len(lines[parent].lstrip())   # indented under its creator
    assert lines[-1].startswith("feasible, 0 warning(s); 4 processes, 1 helpers")


def test_json_contract(snap_dir: str) -> None:
    out = _run("plan", snap_dir, "--offline", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["feasible"] is True and doc["problems"] == []
    procs = {p["pid"]: p for p in doc["processes"]}
    assert procs[4000002]["set_tid"] == [4000002] and procs[4000002]["parent"] == 4000001
    assert procs[4000009]["helper"] is True and procs[4000000]["new_pid_ns"] is False
    actions = [(s["actor"], s["action"]) for s in doc["steps"]]
    assert (4000000, "setsid") in actions and (4000009, "setpgid") in actions
    zombie_exit = next(s for s in doc["steps"] if s["actor"] == 4000003 and s["action"] == "exit")
    assert zombie_exit["code"] == 3


def test_blocker_exit_3_and_inconsistent_exit_1(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    big = _write(tmp_path / "a", [_p(pid_max + 5, 1, pid_max + 5, pid_max + 5)], [pid_max + 5])
    out = _run("plan", big, "--json")
    doc = json.loads(out.stdout)
    assert out.returncode == 3 and doc["feasible"] is False
    assert any(p["kind"] == "pid-above-max" and p["pid"] == pid_max + 5 for p in doc["problems"])
    bad = _write(tmp_path / "b", [_p(10, 1, 10, 10), _p(11, 777, 10, 10)], [10])
    out = _run("plan", bad)
    assert out.returncode == 1
    assert out.stderr.startswith("criu-model: error: ") and "777" in out.stderr
    assert "processes.img" in out.stderr
