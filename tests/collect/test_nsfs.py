"""An open namespace file (/proc/self/ns/net held open, ZDTM proc-self) has a kind and a plan."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

import criu_model
from criu_model.images.pb import files_pb2
from criu_model.planner import Action, plan

CHILD = r"""
import os, time
net = os.open("/proc/self/ns/net", os.O_RDONLY)
uts = os.open("/proc/self/ns/uts", os.O_RDONLY)
print(net, uts, flush=True)
time.sleep(60)
"""

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="ptrace freezing needs root")


@pytest.fixture
def holder() -> Iterator[tuple[int, int, int]]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        net, uts = (int(x) for x in proc.stdout.readline().split())  # type: ignore[union-attr]
        time.sleep(0.05)
        yield proc.pid, net, uts
    finally:
        proc.kill()
        proc.wait()


def test_namespace_files_are_named_and_planned(holder: tuple[int, int, int]) -> None:
    pid, net, uts = holder
    snap = criu_model.dump([pid])
    fds = {f.fd: f for f in snap.fds_by_pid[pid].fds}
    inodes = {ns.type: ns.inode for ns in snap.by_pid[pid].namespaces}
    for n, kind in ((net, "net"), (uts, "uts")):
        fd = fds[n]
        assert fd.kind == files_pb2.FD_NSFS and fd.WhichOneof("state") == "nsfs"
        assert (fd.nsfs.type, fd.nsfs.inode) == (kind, inodes[kind])
    p = plan(snap, live=False)
    assert p.feasible, [x.message for x in p.problems if x.severity == "blocker"]
    opens = [s for s in p.steps if s.action is Action.OPEN and s.args.get("kind") == "nsfs"]
    assert sorted(s.args["path"] for s in opens) == [f"/proc/{pid}/ns/net", f"/proc/{pid}/ns/uts"]
    # a namespace no process of the snapshot is in: nothing to reopen it from
    fds[net].nsfs.inode = 1
    blocked = plan(snap, live=False)
    assert [x.kind for x in blocked.problems if x.severity == "blocker"] == ["nsfs-no-holder"]
