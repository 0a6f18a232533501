"""Namespace files (found rehearsing ZDTM proc-self and timens_nested).

An fd on /proc/PID/ns/TYPE was not rehearsed. It is opened again from the process of
the tree in that namespace (in the sandbox, where that process has the sandbox's
namespace), and the judge checks the fd is that process's namespace there.
"""

from __future__ import annotations

import os

import pytest

import criu_model
from criu_model.restore import rehearse
from criu_model.restore.judge import MATCHED, MISMATCHED
from criu_model.restore.sandbox import wait_gone
from tests.restore.progtree import dump_program

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, set_tid)")

_PROGRAM = """
import ctypes, os, signal, sys
ready = int(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
r, w = os.pipe()
child = os.fork()
if child == 0:
    os.close(ready)
    assert libc.unshare(0x04000000) == 0     # CLONE_NEWUTS: a namespace of its own
    os.close(r)
    os.write(w, b"x")
    signal.pause()
os.close(w)
assert os.read(r, 1) == b"x"
mine = os.open("/proc/self/ns/net", os.O_RDONLY)
theirs = os.open(f"/proc/{child}/ns/uts", os.O_RDONLY)
print(child, mine, theirs, flush=True)
os.write(ready, b"ready")
os.close(ready)
signal.pause()
"""


def test_namespace_files_are_rehearsed() -> None:
    snap, pid, line = dump_program(_PROGRAM)
    child, mine, theirs = line
    plan = criu_model.plan(snap, live=False, pid_ns="new")
    report = rehearse(snap, plan)
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    by_id = {e.id: e for e in report.entries if e.kind == "fd"}
    assert by_id[f"{pid}:{mine}"].status == by_id[f"{pid}:{theirs}"].status \
        == MATCHED
    # a planner bug: the child's UTS namespace file opened from the parent
    step = next(s for s in plan.steps if s.args.get("kind") == "nsfs"
                and s.args.get("holder") == child)
    step.args["holder"] = pid
    report = rehearse(snap, plan)
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    entry = next(e for e in report.entries if e.kind == "fd" and e.id == f"{pid}:{theirs}")
    assert entry.status == MISMATCHED
    assert entry.mismatches[0]["field"] == "namespace"
    assert entry.mismatches[0]["expected"] == f"uts of {child}"
