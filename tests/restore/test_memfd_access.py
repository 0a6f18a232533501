"""A read-only description of a memfd (found rehearsing ZDTM memfd01).

memfd_create always gives O_RDWR; a program that opens /proc/self/fd/N of a memfd
read-only holds an O_RDONLY description, which the sandbox made O_RDWR. The
worker now opens such a memfd again through /proc/self/fd with the dumped mode.
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
import os, signal, sys
ready = int(sys.argv[1])
m = os.memfd_create("access-test", 0)
os.write(m, b"contents")
ro = os.open(f"/proc/self/fd/{m}", os.O_RDONLY)
os.dup2(ro, 7)
os.close(ro)
os.close(m)                             # only the read-only description is left, at 7
os.write(ready, b"ready")
os.close(ready)
signal.pause()
"""


def test_read_only_memfd_is_read_only_in_the_sandbox() -> None:
    snap, pid, _ = dump_program(_PROGRAM)
    fd = next(f for f in snap.fds_by_pid[pid].fds if f.fd == 7)
    assert fd.flags & os.O_ACCMODE == os.O_RDONLY
    report = rehearse(snap, criu_model.plan(snap, live=False, pid_ns="new"))
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    entry = next(e for e in report.entries if e.kind == "fd" and e.id == f"{pid}:7")
    assert entry.status == MATCHED
