"""Dead dumpers' temporary directories are removed, and nothing else (issue 13, item 11)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from criu_model.images.stale import remove_stale
from tests.conftest import unused_pid


def _tmp_dir(parent: Path, pid: int, *files: str, name: str = "snap") -> Path:
    path = parent / f".{name}.tmp-{pid}-deadbeef"
    path.mkdir(mode=0o700)
    for f in files:
        (path / f).write_bytes(b"x")
    return path


def test_only_dead_dumpers_unfinished_directories_go(tmp_path: Path) -> None:
    dead = unused_pid()
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        stale = _tmp_dir(tmp_path, dead, "processes.img", "fds.img")
        empty = _tmp_dir(tmp_path, dead, name="other")          # killed right after mkdir
        running = _tmp_dir(tmp_path, sleeper.pid, "mm.img", name="busy")
        complete = _tmp_dir(tmp_path, dead, "inventory.img", name="done")
        foreign = _tmp_dir(tmp_path, dead, "notes.txt", name="mine")
        target = tmp_path / "precious"
        target.mkdir()
        (target / "data.img").write_bytes(b"keep")
        link = tmp_path / f".link.tmp-{dead}-0badf00d"
        link.symlink_to(target)
        odd = tmp_path / ".snap.tmp-abc"
        odd.mkdir()

        found = {f.path.name: f for f in remove_stale(tmp_path)}
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not stale.exists() and not empty.exists()
    assert found[stale.name].removed and f"pid {dead}, which is gone" in found[stale.name].why
    for kept in (running, complete, foreign):
        assert kept.exists() and not found[kept.name].removed, found[kept.name]
    assert found[running.name].running
    assert "inventory.img" in found[complete.name].why
    assert "notes.txt" in found[foreign.name].why
    assert link.is_symlink() and (target / "data.img").read_bytes() == b"keep"
    assert "not a directory" in found[link.name].why
    assert odd.exists() and odd.name not in found


def test_missing_parent_is_nothing_to_do(tmp_path: Path) -> None:
    assert remove_stale(tmp_path / "nowhere") == []


def test_another_users_directory_is_kept(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        return
    path = _tmp_dir(tmp_path, unused_pid(), "processes.img")
    os.chown(path, 65534, 65534)
    (left,) = remove_stale(tmp_path)
    assert path.exists() and not left.removed and "owned by uid 65534" in left.why
