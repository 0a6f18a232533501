"""A pipe held through more open file descriptions than pipe() makes (ZDTM pipe01, pipe02).

A program that opens /proc/self/fd/N of a pipe end gets another description of
the same pipe. Each was planned as a pipe of its own; the rehearsal showed the
ends split into separate pipes. Now pipe() makes one read and one write end and
every other description is opened again through /proc/self/fd.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import criu_model
from criu_model.restore import rehearse
from criu_model.restore.judge import MATCHED, MISMATCHED
from criu_model.restore.sandbox import wait_gone
from criu_model.snapshot import Snapshot
from tests.restore.progtree import dump_program

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, set_tid)")

_PROGRAM = """
import os, signal, sys
ready = int(sys.argv[1])
r, w = os.pipe()
os.write(w, b"queued once")
r2 = os.open(f"/proc/self/fd/{r}", os.O_RDONLY | os.O_NONBLOCK)
w2 = os.open(f"/proc/self/fd/{w}", os.O_WRONLY)
lonely_r, lonely_w = os.pipe()
lonely_r2 = os.open(f"/proc/self/fd/{lonely_r}", os.O_RDONLY)
os.close(lonely_w)                      # two read descriptions, no writer
for fd in (r, w, r2, w2, lonely_r, lonely_r2):
    os.set_inheritable(fd, True)
os.write(ready, b"ready")
os.close(ready)
signal.pause()
"""


@pytest.fixture(scope="module")
def reopened() -> Iterator[tuple[Snapshot, int]]:
    snap, pid, _ = dump_program(_PROGRAM)
    yield snap, pid


def _pipes(report: object) -> list[object]:
    """The program's pipes (not its stdout, the helper's pipe)."""
    return [e for e in report.entries  # type: ignore[attr-defined]
            if e.kind == "pipe" and not e.id.endswith(":1")]


def test_every_description_of_one_pipe(reopened: tuple[Snapshot, int]) -> None:
    snap, _pid = reopened
    plan = criu_model.plan(snap, live=False, pid_ns="new")
    assert sum(1 for s in plan.steps if s.args.get("reopen") is not None) == 3
    report = rehearse(snap, plan)
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    pipes = _pipes(report)
    assert sorted(len(e.id.split(",")) for e in pipes) == [2, 4]   # type: ignore
    assert all(e.status == MATCHED for e in pipes)   # type: ignore[attr-defined]
    buffers = [e for e in report.entries if e.kind == "pipe_buffer"]
    assert buffers and all(e.status == MATCHED for e in buffers)


def test_pipes_of_their_own_are_caught(reopened: tuple[Snapshot, int]) -> None:
    """The old plan: each extra description a pipe() of its own."""
    snap, _pid = reopened
    plan = criu_model.plan(snap, live=False, pid_ns="new")
    for step in plan.steps:
        if step.args.pop("reopen", None) is not None:
            step.args.pop("path")
    report = rehearse(snap, plan)
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    assert [e for e in _pipes(report) if e.status == MISMATCHED]  # type: ignore[attr-defined]
