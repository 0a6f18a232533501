"""CLONE_VM and CLONE_SIGHAND between processes that are not threads, rehearsed.

The tree under test is built with criu_model.restore.clonevm (the mailbox child the
rehearsal itself uses): its children share the parent's address space, one also its
signal handlers, and each has a session, group and fd table of its own. The kernel
(kcmp, /proc) is the judge: dumped, rehearsed, and every entry must match.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import criu_model
from criu_model.restore import RehearsalReport
from criu_model.restore.judge import MATCHED, MISMATCHED, Entry
from criu_model.snapshot import Snapshot
from tests.restore.progtree import rehearsed

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, set_tid)"),
    pytest.mark.skipif(os.uname().machine != "x86_64",
                       reason="the CLONE_VM mailbox child is x86_64 machine code"),
]

ROOT = str(Path(__file__).resolve().parents[2])

_TREE = """
import os, signal, sys
sys.path.insert(0, {root!r})
from criu_model.restore.clonevm import spawn
ready = int(sys.argv[1])
for fd in range(3):
    os.close(fd)
for _ in range(3):
    os.set_inheritable(os.open("/dev/null", os.O_RDWR), True)
r, w = os.pipe()                       # 3, 4
os.set_inheritable(r, True)
os.set_inheritable(w, True)
a = spawn(0x100 | 0x800, [])           # CLONE_VM | CLONE_SIGHAND
a.call("close", ready)
a.call("setsid")
a.call("dup2", w, 9)                   # its own table: 0-2, 3, 4 and 9
b = spawn(0x100, [])                   # CLONE_VM alone
b.call("close", ready)
b.call("setpgid", 0, 0)
b.call("close", w)                     # 0-2 and 3
os.write(ready, f"{{a.pid}} {{b.pid}}\\n".encode())
os.close(ready)
while True:
    signal.pause()
"""


@pytest.fixture(scope="module")
def vm_tree() -> Iterator[tuple[Snapshot, int, int, int]]:
    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-c", _TREE.format(root=ROOT), str(w)],
                            pass_fds=(w,), start_new_session=True)
    os.close(w)
    kids: list[int] = []
    try:
        kids = [int(x) for x in os.read(r, 100).split()]
        a, b = kids
        assert os.read(r, 1) == b""
        snap = criu_model.dump([proc.pid])
    finally:
        # the children have sessions and groups of their own: killpg misses them
        for pid in (proc.pid, *kids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        proc.wait()
        os.close(r)
    yield snap, proc.pid, a, b


def _by(report: RehearsalReport, kind: str, ident: str) -> Entry:
    return next(e for e in report.entries if e.kind == kind and e.id == ident)


def test_dump_sees_the_sharing(vm_tree: tuple[Snapshot, int, int, int]) -> None:
    snap, root, a, b = vm_tree
    by = snap.by_pid
    assert {by[root].shares.vm} == {by[a].shares.vm, by[b].shares.vm} != {0}
    assert by[a].shares.sighand == by[root].shares.sighand != by[b].shares.sighand
    assert by[a].sid == a and by[b].pgid == b
    fds = {p: sorted(f.fd for f in snap.fds_by_pid[p].fds) for p in (root, a, b)}
    assert fds == {root: [0, 1, 2, 3, 4], a: [0, 1, 2, 3, 4, 9], b: [0, 1, 2, 3]}


def test_rehearsed_with_its_sharing(vm_tree: tuple[Snapshot, int, int, int]) -> None:
    snap, root, a, b = vm_tree
    report = rehearsed(snap)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    assert _by(report, "task_share", f"vm:{root},{a},{b}").status == MATCHED
    assert _by(report, "task_share", f"sighand:{root},{a}").status == MATCHED
    for pid in (a, b):
        assert _by(report, "process", str(pid)).status == MATCHED
    for fd in (0, 3, 4, 9):
        assert _by(report, "fd", f"{a}:{fd}").status == MATCHED
    assert _by(report, "fd", f"{b}:3").status == MATCHED
    # the pipe's ends in the three tables: one pipe, each end one description
    assert _by(report, "pipe", next(e.id for e in report.entries if e.kind == "pipe"
                                    and f"{a}:9" in e.id)).status == MATCHED


def test_lost_clone_vm_is_a_mismatch(vm_tree: tuple[Snapshot, int, int, int]) -> None:
    snap, root, a, b = vm_tree
    plan = criu_model.plan(snap, live=False, pid_ns="new")
    step = next(s for s in plan.steps if s.action == "clone3" and s.args["child"] == b)
    step.args["flags_value"] &= ~0x100      # a planner bug: its own address space
    report = rehearsed(snap, plan)
    entry = _by(report, "task_share", f"vm:{root},{a},{b}")
    assert entry.status == MISMATCHED
    assert entry.mismatches[0]["expected"] == f"{root},{a},{b}"


def test_mailbox_child_runs_calls_and_reports_errors() -> None:
    import errno

    from criu_model.restore.clonevm import spawn

    child = spawn(0x100, [])
    try:
        assert child.call("setsid") == child.pid          # it acted on itself
        with open(f"/proc/{child.pid}/stat") as f:
            assert int(f.read().rsplit(")", 1)[1].split()[3]) == child.pid   # its session
        with pytest.raises(OSError) as err:
            child.call("close", 1 << 20)
        assert err.value.errno == errno.EBADF
        child.exit(7)
        assert os.waitpid(child.pid, 0)[1] >> 8 == 7
        with pytest.raises(OSError) as err:
            child.call("setsid")
        assert err.value.errno == errno.ESRCH
    finally:
        if child.alive:
            os.kill(child.pid, 9)
            os.waitpid(child.pid, 0)
