"""Rehearsal of deleted files that have no contents: a directory, a device node, a symlink.

The holder (like tests/collect/test_deleted_nodes.py's) opens each and removes it;
the rehearsal makes each again in a scratch tmpfs over its directory (inside the
sandbox's mount namespace: the host's directory stays empty), opens it with the
dumped flags and removes it; the judge reads type, mode, owner, rdev and target
from the sandbox's own dump. A deliberate mismatch shows the judge can fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import criu_model
from criu_model.restore import rehearse
from criu_model.restore.judge import MATCHED, MISMATCHED, NOT_REHEARSED
from criu_model.restore.sandbox import pidns_members, wait_gone
from criu_model.snapshot import Snapshot
from tests.restore.progtree import rehearsed
from tests.restore.test_state import _by, _program

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mknod, namespaces)")

_NODES = """
d = sys.argv[1]
os.symlink("../some target\\nwith a newline", f"{d}/link")
link = os.open(f"{d}/link", os.O_PATH | os.O_NOFOLLOW)       # 3
os.unlink(f"{d}/link")
os.mkdir(f"{d}/dir", 0o710)
dfd = os.open(f"{d}/dir", os.O_RDONLY | os.O_DIRECTORY)       # 4
again = os.open(f"{d}/dir", os.O_RDONLY | os.O_DIRECTORY)     # 5: a second description
os.rmdir(f"{d}/dir")
os.mknod(f"{d}/null", 0o640 | 0o020000, os.makedev(1, 3))
os.chown(f"{d}/null", 12, 34)
os.chmod(f"{d}/null", 0o640)
nfd = os.open(f"{d}/null", os.O_WRONLY)                       # 6
os.unlink(f"{d}/null")
for fd in (link, dfd, again, nfd):
    os.set_inheritable(fd, True)
ready()
signal.pause()
"""


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[Snapshot, int, Path]]:
    with _program(_NODES, tmp_path) as proc:
        yield criu_model.dump([proc.pid]), proc.pid, tmp_path


def test_deleted_nodes_are_made_again(nodes: tuple[Snapshot, int, Path]) -> None:
    snap, pid, tmp = nodes
    assert os.listdir(tmp) == []
    report = rehearsed(snap)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    for fd in (3, 4, 5, 6):
        assert _by(report, "fd", f"{pid}:{fd}").status == MATCHED, fd
    plan = criu_model.plan(snap, live=False, pid_ns="new")
    dirs = [s for s in plan.steps if s.action == "open" and s.args.get("node") == "directory"]
    assert len(dirs) == 2        # two opens of one deleted directory: made once, removed once
    assert os.listdir(tmp) == []            # the host's directory was never written


def test_a_node_made_with_another_mode_is_caught(nodes: tuple[Snapshot, int, Path]) -> None:
    """A restorer (here: a plan edited to lie) making the directory 0700 and the device
    1:5 (/dev/zero's number) is caught by what the sandbox's dump reads back."""
    snap, pid, _tmp = nodes
    plan = criu_model.plan(snap, live=False, pid_ns="new")
    opens = {s.args["fd"]: s for s in plan.steps if s.action == "open" and s.actor == pid}
    for fd in (4, 5):            # both opens of the directory (each may make it)
        opens[fd].args["mode"] = 0o700
    opens[6].args["rdev"] = "1:5"
    report = rehearse(snap, plan)
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    assert pidns_members(report.sandbox_pidns) == []
    d, dev = _by(report, "fd", f"{pid}:4"), _by(report, "fd", f"{pid}:6")
    assert (d.status, dev.status) == (MISMATCHED, MISMATCHED)
    assert _by(report, "fd", f"{pid}:5").mismatches == d.mismatches   # one inode
    assert d.mismatches == [{"field": "file.mode", "expected": "40710", "actual": "40700"}]
    assert dev.mismatches == [{"field": "rdev", "expected": "1:3", "actual": "1:5"}]
    assert _by(report, "fd", f"{pid}:3").status == MATCHED


def test_a_host_device_is_not_opened(nodes: tuple[Snapshot, int, Path]) -> None:
    """A deleted node of another device (8:0, a disk) opened for writing: not rehearsed,
    with the reason, instead of opening the host's disk."""
    snap, pid, _tmp = nodes
    plan = criu_model.plan(snap, live=False, pid_ns="new")
    step = next(s for s in plan.steps if s.action == "open" and s.args.get("fd") == 6)
    step.args["rdev"] = "8:0"
    report = rehearse(snap, plan)
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    entry = _by(report, "fd", f"{pid}:6")
    assert entry.status == NOT_REHEARSED
    assert "8:0" in entry.reason and "host's device" in entry.reason
    assert _by(report, "fd", f"{pid}:4").status == MATCHED


_FIFO = """
d = sys.argv[1]
os.mkfifo(f"{d}/fifo", 0o640)
rw = os.open(f"{d}/fifo", os.O_RDWR)                          # 3
r = os.open(f"{d}/fifo", os.O_RDONLY | os.O_NONBLOCK)         # 4
w = os.open(f"{d}/fifo", os.O_WRONLY)                         # 5
os.write(w, b"queued in a deleted FIFO")
os.unlink(f"{d}/fifo")
for fd in (rw, r, w):
    os.set_inheritable(fd, True)
ready()
signal.pause()
"""


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[tuple[Snapshot, int, Path]]:
    with _program(_FIFO, tmp_path) as proc:
        yield criu_model.dump([proc.pid]), proc.pid, tmp_path


def test_deleted_fifo_held_for_io(fifo: tuple[Snapshot, int, Path]) -> None:
    """A FIFO unlinked while its readers and writers hold it: made in the scratch tmpfs,
    opened at each end, its queued bytes written back, then unlinked again."""
    snap, pid, tmp = fifo
    assert all(fd.deleted for fd in snap.fds_by_pid[pid].fds if fd.fd in (3, 4, 5))
    report = rehearsed(snap)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    for fd in (3, 4, 5):
        assert _by(report, "fd", f"{pid}:{fd}").status == MATCHED, fd
    assert _by(report, "pipe_buffer", f"{pid}:3,{pid}:4,{pid}:5").status == MATCHED
    assert os.listdir(tmp) == []            # the host's directory was never written


def test_a_fifo_left_linked_is_caught(fifo: tuple[Snapshot, int, Path],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A restorer that forgets to unlink the FIFO: every fd of it is a mismatch."""
    from criu_model.restore.executor import Conductor

    snap, pid, _tmp = fifo
    real = Conductor._fill_ghosts

    def forgetful(self: Conductor) -> None:
        real(self)
        self._unlink_at = set()

    monkeypatch.setattr(Conductor, "_fill_ghosts", forgetful)
    report = rehearsed(snap)
    for fd in (3, 4, 5):
        entry = _by(report, "fd", f"{pid}:{fd}")
        assert entry.status == MISMATCHED
        assert {"field": "deleted", "expected": True, "actual": False} in entry.mismatches
