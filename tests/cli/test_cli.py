"""The real `criu-model` command in a subprocess: output, exit codes, faults."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from criu_model.dumper import HOLD_ENV
from tests.conftest import unused_pid

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="ptrace freezing of a sibling needs root")

# A parent that forks N sleeping children and reports their pids on stdout.
# The children reset SIGCHLD to default so their own state is ordinary.
TREE_SCRIPT = r"""
import os, signal, sys, time
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # reap at once: a killed child vanishes
n = int(sys.argv[1])
kids = []
for _ in range(n):
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        while True:
            time.sleep(1)
    kids.append(pid)
print(" ".join(map(str, kids)), flush=True)
while True:
    time.sleep(1)
"""


class Tree:
    def __init__(self, n: int) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", TREE_SCRIPT, str(n)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.children = [int(p) for p in self.proc.stdout.readline().split()]
        self.pid = self.proc.pid

    def kill(self) -> None:
        for pid in [*self.children, self.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait()


@pytest.fixture
def tree() -> Iterator[Tree]:
    t = Tree(2)
    try:
        yield t
    finally:
        t.kill()


def run(*args: str, env: dict[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "criu_model", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def status_field(pid: int, name: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise KeyError(name)


def assert_released(pids: list[int]) -> None:
    """Not traced, not stopped: the dump left the targets as it found them."""
    for pid in pids:
        assert status_field(pid, "TracerPid") == "0", pid
        assert status_field(pid, "State")[0] in "SR", pid


@ROOT_ONLY
def test_dump_show_round_trip(tree: Tree, tmp_path: Path) -> None:
    out = tmp_path / "snap"
    res = run("dump", str(tree.pid), "-D", str(out))
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("dumped 3 processes, 3 threads, ")
    assert "frozen" in res.stdout and str(out) in res.stdout
    assert_released([tree.pid, *tree.children])

    res = run("show", str(out), "tree")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split()[:4] == ["PID", "PGID", "SID", "S"]
    assert lines[1].split()[0] == str(tree.pid)
    assert {line.split()[0] for line in lines[2:]} == {str(c) for c in tree.children}

    res = run("show", str(out), "procs")
    assert res.returncode == 0
    assert all(str(p) in res.stdout for p in [tree.pid, *tree.children])

    res = run("show", str(out), "mems", str(tree.pid))
    assert res.returncode == 0, res.stderr
    assert "[heap]" in res.stdout or "heap" in res.stdout
    assert "VMAs" in res.stdout

    res = run("show", str(out), "--json")
    assert res.returncode == 0
    doc = json.loads(res.stdout)
    assert doc["format_version"] == "1.4"
    assert doc["root_pids"] == [tree.pid]
    procs = {p["pid"]: p for p in doc["processes"]}
    assert set(procs) == {tree.pid, *tree.children}
    root = procs[tree.pid]
    assert root["ppid"] == os.getpid()
    assert root["ns_pids"][0] == tree.pid
    assert root["threads"] == [tree.pid]
    assert root["state"] in ("S", "R")
    assert root["cmdline"][:2] == [sys.executable, "-c"]
    assert root["comm"] == Path(f"/proc/{tree.pid}/comm").read_text().rstrip("\n")
    maps = Path(f"/proc/{tree.pid}/maps").read_text().splitlines()
    assert len(root["vmas"]) == len(maps)
    first = maps[0].split()
    lo, hi = (int(x, 16) for x in first[0].split("-"))
    assert (root["vmas"][0]["start"], root["vmas"][0]["end"]) == (lo, hi)
    assert root["vmas"][0]["prot"] == first[1]
    for child in tree.children:
        assert procs[child]["ppid"] == tree.pid
        assert procs[child]["pgid"] == root["pgid"]


def test_nonexistent_pid(tmp_path: Path) -> None:
    pid = unused_pid()
    res = run("dump", str(pid), "-D", str(tmp_path / "s"))
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and str(pid) in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("bad", ["abc", "12x", "-5", "0"])
def test_non_numeric_pid(tmp_path: Path, bad: str) -> None:
    res = run("dump", "--", bad, "-D", str(tmp_path / "s")) if bad.startswith("-") else \
        run("dump", bad, "-D", str(tmp_path / "s"))
    assert res.returncode == 2, res.stderr   # a usage error, as the README promises
    assert res.stderr.count("\n") == 1 and "not a pid" in res.stderr
    assert list(tmp_path.iterdir()) == []


@ROOT_ONLY
def test_untraceable_pid_1(tmp_path: Path) -> None:
    """pid 1 refuses ptrace even for root here: clear error, nothing written."""
    res = run("dump", "1", "-D", str(tmp_path / "s"))
    if res.returncode == 0:
        pytest.skip("this machine lets us trace pid 1")
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and "permission denied" in res.stderr
    assert "Traceback" not in res.stderr
    assert list(tmp_path.iterdir()) == []


@ROOT_ONLY
def test_existing_dir_needs_force(tree: Tree, tmp_path: Path) -> None:
    out = tmp_path / "snap"
    out.mkdir()
    res = run("dump", str(tree.pid), "-D", str(out))
    assert res.returncode == 1 and "--force" in res.stderr
    res = run("dump", str(tree.pid), "-D", str(out), "--force")
    # --force replaces a snapshot, never a directory that is something else
    assert res.returncode == 1 and "not a criu-model snapshot" in res.stderr
    assert out.is_dir() and list(out.iterdir()) == []
    out.rmdir()
    assert run("dump", str(tree.pid), "-D", str(out)).returncode == 0
    res = run("dump", str(tree.pid), "-D", str(out), "--force")
    assert res.returncode == 0, res.stderr
    assert run("show", str(out), "procs").returncode == 0


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run().returncode == 2
    assert run("dump").returncode == 2
    assert run("show", str(tmp_path), "bogusview").returncode == 2


def test_show_corrupt_snapshot(tmp_path: Path) -> None:
    (tmp_path / "inventory.img").write_bytes(b"CRMI\x00garbage")
    res = run("show", str(tmp_path))
    assert res.returncode == 1
    assert "inventory.img" in res.stderr and "byte" in res.stderr
    assert "Traceback" not in res.stderr


@ROOT_ONLY
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_dump_releases_targets(tree: Tree, tmp_path: Path, sig: int) -> None:
    out = tmp_path / "snap"
    proc = subprocess.Popen([sys.executable, "-m", "criu_model", "dump", str(tree.pid), "-D",
                             str(out)], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, HOLD_ENV: "30"})
    deadline = time.monotonic() + 20
    while status_field(tree.pid, "TracerPid") == "0":  # wait until frozen
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert_released([tree.pid, *tree.children])
    assert list(tmp_path.iterdir()) == []


@ROOT_ONLY
@pytest.mark.parametrize("freeze", ["ptrace", "none"])
def test_target_exits_during_dump(tree: Tree, tmp_path: Path, freeze: str) -> None:
    out = tmp_path / "snap"
    proc = subprocess.Popen([sys.executable, "-m", "criu_model", "dump", str(tree.pid), "-D",
                             str(out), "--freeze", freeze], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, HOLD_ENV: "1"})
    assert "holding" in proc.stderr.readline()   # the tree is discovered: kill one now
    victim = tree.children[0]
    os.kill(victim, signal.SIGKILL)
    _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err
    if proc.returncode == 0:
        res = run("show", str(out), "--json")
        assert res.returncode == 0, res.stderr
        doc = json.loads(res.stdout)
        dumped = {p["pid"]: p for p in doc["processes"]}
        if victim in dumped:
            # Killed while ptrace-stopped, it stays a zombie until its tracer
            # (the dumper) lets go: then it is truthfully dumped as one.
            assert dumped[victim]["state"] == "Z"
        else:
            assert f"skipped pid {victim}" in err
            assert {s["pid"] for s in doc["inventory"]["skipped"]} == {victim}
    else:
        assert proc.returncode == 1 and err.count("\n") == 1
        assert not out.exists()
    assert_released([tree.pid, tree.children[1]])


def test_check_table() -> None:
    res = run("check")
    assert res.returncode == 0, res.stderr
    for name in ("kcmp", "map_files", "clone3", "PAGEMAP_SCAN", "soft-dirty", "ptrace",
                 "freezer", "pidfd"):
        assert name.lower() in res.stdout.lower(), name
    doc = json.loads(run("check", "--json").stdout)
    assert all(isinstance(f["available"], bool) and f["detail"] for f in doc)
