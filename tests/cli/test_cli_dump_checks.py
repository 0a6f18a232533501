"""The small dump faults of issue 13, item 11: each is one clear line or a clean skip."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from criu_model.dumper import HOLD_ENV
from tests.cli.test_cli import ROOT_ONLY, Tree
from tests.conftest import kthreadd_or_skip, unused_pid

CLI = [sys.executable, "-m", "criu_model"]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, env=env)


def test_pid_beyond_pid_max_is_not_a_valid_pid(tmp_path: Path) -> None:
    limit = int(Path("/proc/sys/kernel/pid_max").read_text())
    res = _run("dump", str(limit + 12345), "-D", str(tmp_path / "s"))
    assert res.returncode == 2, res.stderr   # a usage error
    assert res.stderr == (f"criu-model: error: {limit + 12345} is not a valid pid "
                          f"(pid_max is {limit})\n")
    assert list(tmp_path.iterdir()) == []


def test_kernel_thread_has_nothing_to_dump(tmp_path: Path) -> None:
    pid = kthreadd_or_skip()
    res = _run("dump", str(pid), "-D", str(tmp_path / "s"))
    assert res.returncode == 1
    assert res.stderr.startswith(f"criu-model: error: pid {pid} is a kernel thread: nothing "
                                 "to dump") and res.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


@ROOT_ONLY
def test_target_killed_mid_dump_is_skipped_not_a_zombie(tmp_path: Path) -> None:
    """Killed while ptrace-stopped, a child is a zombie only because we hold it: skipped."""
    tree = Tree(2)
    try:
        out = tmp_path / "snap"
        proc = subprocess.Popen([*CLI, "dump", str(tree.pid), "-D", str(out)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, HOLD_ENV: "1"})
        assert proc.stderr is not None
        assert "holding" in proc.stderr.readline()   # frozen: kill one now
        victim, survivor = tree.children
        os.kill(victim, signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert f"skipped pid {victim}: killed during the dump (it was S when frozen)" in err
        doc = json.loads(_run("show", str(out), "--json").stdout)
        assert {p["pid"] for p in doc["processes"]} == {tree.pid, survivor}
        assert [s["pid"] for s in doc["inventory"]["skipped"]] == [victim]
    finally:
        tree.kill()


@ROOT_ONLY
def test_stale_temporary_directory_is_removed_by_the_next_dump(tmp_path: Path) -> None:
    stale = tmp_path / f".snap.tmp-{unused_pid()}-0123abcd"
    stale.mkdir(mode=0o700)
    (stale / "processes.img").write_bytes(b"half written")
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        res = _run("dump", str(sleeper.pid), "-D", str(tmp_path / "snap"))
    finally:
        sleeper.kill()
        sleeper.wait()
    assert res.returncode == 0, res.stderr
    assert f"criu-model: removed {stale}: left by dumper pid" in res.stderr
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snap"]


@pytest.mark.parametrize("bad", ["abc", "0"])
def test_invalid_pid_in_show_is_a_usage_error(tmp_path: Path, bad: str) -> None:
    from criu_model.images import write
    from tests.images.sample import sample_snapshot

    snap = write(sample_snapshot(), tmp_path / "snap")
    res = _run("show", str(snap), "fds", bad)
    assert res.returncode == 2 and "not a pid" in res.stderr
