"""A parent directory another user can write to: the writer must never be redirected."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from criu_model.errors import CriuModelError
from criu_model.images import load, write
from tests.images.sample import sample_snapshot


def test_temporary_directory_swapped_for_a_symlink_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The attacker wins the race every time: right after our mkdir, the temporary
    directory is renamed away and a symlink to their directory put in its place."""
    from criu_model.images import writer

    shared = tmp_path / "shared"   # ours: the swap below stands for a race we lost
    shared.mkdir()
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    real = writer._write_all

    def swapped(snap: object, files: dict[str, bytes], parent_fd: int, tmp_name: str) -> None:
        os.rename(tmp_name, tmp_name + ".moved", src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
        os.symlink(theirs, tmp_name, dir_fd=parent_fd)
        real(snap, files, parent_fd, tmp_name)  # type: ignore[arg-type]

    monkeypatch.setattr(writer, "_write_all", swapped)
    with pytest.raises(CriuModelError, match="temporary"):
        write(sample_snapshot(), shared / "snap")
    assert list(theirs.iterdir()) == []           # nothing written where the link points
    assert not (shared / "snap").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a watcher as nobody")
def test_a_watcher_as_nobody_never_gets_our_images() -> None:
    """A real attacker (uid 65534) renames every temporary directory it sees and puts a
    symlink to its own directory there; 20 writes: the images land in the snapshot or the
    write fails, and the attacker's directory stays empty."""
    import shutil
    import tempfile

    tmp_path = Path(tempfile.mkdtemp(prefix="cm-hostile-", dir="/tmp"))  # reachable by nobody
    try:
        _watched_writes(tmp_path)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _watched_writes(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chown(shared, 65534, 65534)
    shared.chmod(0o777)
    tmp_path.chmod(0o755)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    theirs.chmod(0o777)
    watcher = subprocess.Popen(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
         "import os, sys, time\n"
         "d, t = sys.argv[1], sys.argv[2]\n"
         "end = time.monotonic() + 30\n"
         "while time.monotonic() < end:\n"
         "    for n in os.listdir(d):\n"
         "        if '.tmp-' in n and not n.endswith('.x'):\n"
         "            try:\n"
         "                os.rename(os.path.join(d, n), os.path.join(d, n + '.x'))\n"
         "                os.symlink(t, os.path.join(d, n))\n"
         "            except OSError:\n"
         "                pass\n",
         str(shared), str(theirs)], cwd="/")
    try:
        time.sleep(0.3)
        if watcher.poll() is not None:
            pytest.skip("cannot run a watcher as nobody here")
        for i in range(20):
            with pytest.raises(CriuModelError, match="can be changed by another user"):
                write(sample_snapshot(), shared / f"snap{i}")
    finally:
        watcher.kill()
        watcher.wait()
    assert list(theirs.iterdir()) == []
    assert not [n for n in os.listdir(shared) if n.startswith("snap")]


def test_a_sticky_shared_directory_is_fine(tmp_path: Path) -> None:
    """/tmp-like (world-writable, sticky): others cannot rename our entries there."""
    shared = tmp_path / "sticky"
    shared.mkdir()
    shared.chmod(0o1777)
    assert load(write(sample_snapshot(), shared / "snap")).processes


def test_swapped_after_writing_is_not_renamed_into_place(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The last check before the rename: the name must still be our directory."""
    from criu_model.images import writer

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    real = writer._fsync

    def swap_then_fsync(fd: int) -> None:
        real(fd)
        for n in os.listdir(tmp_path):
            if ".tmp-" in n:
                os.rename(tmp_path / n, tmp_path / (n + ".moved"))
                os.symlink(theirs, tmp_path / n)

    monkeypatch.setattr(writer, "_fsync", swap_then_fsync)
    with pytest.raises(CriuModelError, match="was swapped"):
        write(sample_snapshot(), tmp_path / "snap")
    assert not (tmp_path / "snap").exists() and list(theirs.iterdir()) == []
