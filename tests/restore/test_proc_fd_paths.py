"""A process that opened its own /proc/self/fdinfo/N (found rehearsing ZDTM fanotify00).

Such a file is opened once every other fd of the process is at its number (fd N may
come after it); when fd N was not made (its kind is not rehearsed), the open is not
rehearsed and says so, instead of failing as a step the kernel refused.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import criu_model
from criu_model.restore import rehearse
from criu_model.restore.judge import MATCHED, MISMATCHED, NOT_REHEARSED
from criu_model.restore.sandbox import wait_gone
from criu_model.snapshot import Snapshot
from tests.restore.progtree import dump_program

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, fanotify)")

_PROGRAM = """
import ctypes, os, signal, sys
ready = int(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
ev = os.eventfd(3)
os.dup2(ev, 9, inheritable=False)
os.close(ev)
info = os.open("/proc/self/fdinfo/9", os.O_RDONLY)        # below 9: opened after it
fan = libc.fanotify_init(0, os.O_RDONLY)                 # FAN_CLASS_NOTIF: not rehearsed
assert fan >= 0, ctypes.get_errno()
os.dup2(fan, 12, inheritable=False)
os.close(fan)
fan_info = os.open("/proc/self/fdinfo/12", os.O_RDONLY)
print(info, fan_info, flush=True)
os.write(ready, b"ready")
os.close(ready)
signal.pause()
"""


@pytest.fixture(scope="module")
def proc_paths() -> Iterator[tuple[Snapshot, int, int, int]]:
    snap, pid, line = dump_program(_PROGRAM)
    info, fan_info = line
    yield snap, pid, info, fan_info


def test_own_fdinfo_opened_last_or_said_why_not(
        proc_paths: tuple[Snapshot, int, int, int]) -> None:
    snap, pid, info, fan_info = proc_paths
    report = rehearse(snap, criu_model.plan(snap, live=False, pid_ns="new"))
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    by_id = {e.id: e for e in report.entries if e.kind == "fd"}
    assert by_id[f"{pid}:9"].status == by_id[f"{pid}:{info}"].status == MATCHED
    assert by_id[f"{pid}:12"].status == NOT_REHEARSED
    skipped = by_id[f"{pid}:{fan_info}"]
    assert skipped.status == NOT_REHEARSED
    assert f"/proc/{pid}/fdinfo/12, an fd that was not made" in skipped.reason
