"""Pipes and FIFOs holding more bytes than a control message (found rehearsing ZDTM fifo).

A full 64 KiB FIFO was shipped to its worker as hex inside the JSON step, which
no longer fit one control message: the worker died and the rehearsal ended in an
error. The bytes now travel in a memfd lent with the step.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import criu_model
from criu_model.restore import rehearse
from criu_model.restore.judge import MATCHED, MISMATCHED
from criu_model.restore.sandbox import wait_gone
from criu_model.snapshot import Snapshot
from tests.restore.progtree import dump_program

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, set_tid)")

_PROGRAM = """
import fcntl, os, signal, sys
ready = int(sys.argv[2])
r, w = os.pipe()
fcntl.fcntl(w, 1031, 1 << 20)                       # F_SETPIPE_SZ: 1 MiB
os.write(w, bytes(range(256)) * 4096)               # full: 1 MiB queued
path = os.path.join(sys.argv[1], "fifo")
os.mkfifo(path)
f = os.open(path, os.O_RDWR)
os.set_blocking(f, False)
try:
    while True:
        os.write(f, b"fifo-bytes" * 410)            # until the 64 KiB FIFO is full
except BlockingIOError:
    pass
os.write(ready, b"ready")
os.close(ready)
signal.pause()
"""


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Snapshot]:
    work: Path = tmp_path_factory.mktemp("big-queues")
    yield dump_program(_PROGRAM, str(work))[0]


def test_full_pipe_and_fifo_are_rehearsed(full: Snapshot) -> None:
    queued = sorted(len(fd.pipe.data) for t in full.fds_by_pid.values() for fd in t.fds
                    if fd.HasField("pipe") and fd.pipe.data)
    assert queued[-1] == 1 << 20 and queued[0] >= 40 * 1024   # hex of either: > 64 KiB
    report = rehearse(full, criu_model.plan(full, live=False, pid_ns="new"))
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    buffers = [e for e in report.entries if e.kind == "pipe_buffer"]
    assert len(buffers) >= 2 and all(e.status == MATCHED for e in buffers)
