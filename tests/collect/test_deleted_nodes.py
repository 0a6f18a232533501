"""Deleted files with no contents (ZDTM rmdir_open, deleted_dev, symlink01): recorded and planned.

A deleted directory, a deleted character device (1:3, /dev/null's number) and a
deleted symlink held with O_PATH|O_NOFOLLOW carry no data; what recreating
them needs is their type, mode, rdev, owner and (a symlink) target.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import criu_model
from criu_model.images.pb import files_pb2
from criu_model.planner import Action, plan

CHILD = r"""
import os, sys, time
d = sys.argv[1]
os.symlink("../some target\nwith a newline", f"{d}/link")
link = os.open(f"{d}/link", os.O_PATH | os.O_NOFOLLOW)
os.unlink(f"{d}/link")
os.mkdir(f"{d}/dir", 0o710)
dfd = os.open(f"{d}/dir", os.O_RDONLY | os.O_DIRECTORY)
os.rmdir(f"{d}/dir")
os.mknod(f"{d}/null", 0o640 | 0o020000, os.makedev(1, 3))
os.chown(f"{d}/null", 12, 34)
os.chmod(f"{d}/null", 0o640)
nfd = os.open(f"{d}/null", os.O_WRONLY)
os.unlink(f"{d}/null")
print(link, dfd, nfd, flush=True)
time.sleep(60)
"""

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mknod and ptrace freezing need root")


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[int, int, int, int, Path]]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)],
                            stdout=subprocess.PIPE, text=True)
    try:
        link, dfd, nfd = (int(x) for x in proc.stdout.readline().split())  # type: ignore[union-attr]
        time.sleep(0.05)
        yield proc.pid, link, dfd, nfd, tmp_path
    finally:
        proc.kill()
        proc.wait()


def test_deleted_nodes_are_recorded_and_planned(
        holder: tuple[int, int, int, int, Path]) -> None:
    pid, link, dfd, nfd, tmp = holder
    before = sorted(os.listdir(tmp))
    snap = criu_model.dump([pid])
    fds = {f.fd: f for f in snap.fds_by_pid[pid].fds}
    sl, d, dev = fds[link], fds[dfd], fds[nfd]
    assert sl.kind == files_pb2.FD_OPATH and sl.deleted
    assert sl.path == str(tmp / "link").encode()
    assert stat.S_ISLNK(sl.file.mode) and sl.file.link_target == b"../some target\nwith a newline"
    assert d.kind == files_pb2.FD_DIRECTORY and d.deleted
    assert stat.S_ISDIR(d.file.mode) and stat.S_IMODE(d.file.mode) == 0o710 & ~_umask()
    assert (d.file.uid, d.file.gid) == (0, 0) and d.file.HasField("uid")
    assert dev.kind == files_pb2.FD_REGULAR and dev.deleted
    assert stat.S_ISCHR(dev.file.mode) and stat.S_IMODE(dev.file.mode) == 0o640
    assert (os.major(dev.file.rdev), os.minor(dev.file.rdev)) == (1, 3)
    assert (dev.file.uid, dev.file.gid) == (12, 34)
    assert not any(u.field.startswith("file.") for f in fds.values() for u in f.unreadable)
    # nothing of the target was touched: its directory is as it was
    assert sorted(os.listdir(tmp)) == before == []

    p = plan(snap, live=False)
    assert p.feasible, [x.message for x in p.problems if x.severity == "blocker"]
    opens = {s.args["fd"]: s for s in p.steps if s.action is Action.OPEN and s.actor == pid}
    got = {n: opens[n].args for n in (link, dfd, nfd)}
    assert got[link]["node"] == "symlink"
    assert got[link]["target"] == "../some target\nwith a newline"
    assert got[dfd]["node"] == "directory" and got[dfd]["mode"] == 0o710 & ~_umask()
    assert got[nfd]["node"] == "character device" and got[nfd]["rdev"] == "1:3"
    assert (got[nfd]["uid"], got[nfd]["gid"], got[nfd]["mode"]) == (12, 34, 0o640)
    assert "rmdir" in opens[dfd].reason and "mknod" in opens[nfd].reason

    # a symlink whose target could not be read stays a blocker
    sl.file.ClearField("link_target")
    blocked = plan(snap, live=False)
    assert [x.kind for x in blocked.problems if x.severity == "blocker"] == \
        ["deleted-symlink-target"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
