"""Rehearsal of kernel state beyond the skeleton: pipe buffers, task sharing, locks...

Each class: a real process that holds it, dumped, rehearsed, judged matched;
and a deliberate mismatch, to show the judge can fail.
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
from criu_model.restore import RehearsalReport, rehearse
from criu_model.restore.judge import MATCHED, MISMATCHED, NOT_REHEARSED, Entry
from criu_model.restore.sandbox import pidns_members, wait_gone
from criu_model.snapshot import Snapshot

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, set_tid)")

# fds 0-2: /dev/null, three opens (what the other rehearsal tests do); the ready pipe
# (whatever number pytest gave it) moves to 250, out of the way of the fds under test
_PROLOGUE = """
import fcntl, os, signal, sys
READY = 250
os.dup2(int(sys.argv[2]), READY, inheritable=False)
os.close(int(sys.argv[2]))
for _ in range(3):
    os.close(_)
for _ in range(3):
    os.set_inheritable(os.open("/dev/null", os.O_RDWR), True)
def ready():
    os.write(READY, b"ready\\n")
    os.close(READY)
"""


@contextlib.contextmanager
def _program(body: str, tmp: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run PROLOGUE + body (argv: TMP READY_FD) until it calls ready(); kill it after."""
    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-c", _PROLOGUE + body, str(tmp), str(w)],
                            pass_fds=(w,), start_new_session=True)
    os.close(w)
    try:
        assert os.read(r, 6) == b"ready\n"
        assert os.read(r, 1) == b""       # and closed: the dump never sees that fd
        yield proc
    finally:
        proc.kill()
        proc.wait()
        os.close(r)


def _run(snap: Snapshot) -> RehearsalReport:
    report = rehearse(snap, criu_model.plan(snap, live=False, pid_ns="new"))
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    assert pidns_members(report.sandbox_pidns) == []
    return report


def _by(report: RehearsalReport, kind: str, ident: str) -> Entry:
    return next(e for e in report.entries if e.kind == kind and e.id == ident)


# ------------------------------------------------------------------ pipes and FIFOs

_PIPES = """
r1, w1 = os.pipe()                      # 3, 4: shrunk to 4 pages, empty
fcntl.fcntl(w1, 1031, 4 * 4096)         # F_SETPIPE_SZ
r2, w2 = os.pipe()                      # 5, 6: five bytes queued
os.write(w2, b"hello")
path = os.path.join(sys.argv[1], "fifo")
os.mkfifo(path)
f = os.open(path, os.O_RDWR)            # 7: a FIFO grown to 32 pages
fcntl.fcntl(f, 1031, 32 * 4096)
for fd in (r1, w1, r2, w2, f):
    os.set_inheritable(fd, True)
ready()
signal.pause()
"""


@pytest.fixture
def pipes(tmp_path: Path) -> Iterator[tuple[Snapshot, int]]:
    with _program(_PIPES, tmp_path) as proc:
        yield criu_model.dump([proc.pid]), proc.pid


def test_pipe_buffers(pipes: tuple[Snapshot, int]) -> None:
    snap, pid = pipes
    sizes = {fd.fd: fd.pipe.pipe_size for fd in snap.fds_by_pid[pid].fds
             if fd.HasField("pipe")}
    assert sizes == {3: 16384, 4: 16384, 5: 65536, 6: 65536, 7: 131072}
    report = _run(snap)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    assert _by(report, "pipe_buffer", f"{pid}:3,{pid}:4").status == MATCHED
    assert _by(report, "pipe_buffer", f"{pid}:7").status == MATCHED      # the FIFO
    queued = _by(report, "pipe_buffer", f"{pid}:5,{pid}:6")
    assert queued.status == NOT_REHEARSED
    assert queued.reason.startswith("queued bytes are not captured (5 bytes were queued")


def test_pipe_size_the_kernel_rounds_is_a_mismatch(pipes: tuple[Snapshot, int]) -> None:
    """A snapshot asking for 3 pages: F_SETPIPE_SZ rounds up to a power of two."""
    snap, pid = pipes
    for fd in snap.fds_by_pid[pid].fds:
        if fd.fd in (3, 4):
            fd.pipe.pipe_size = 3 * 4096
    report = _run(snap)
    entry = _by(report, "pipe_buffer", f"{pid}:3,{pid}:4")
    assert entry.status == MISMATCHED
    assert entry.mismatches == [{"field": "pipe_size", "expected": 12288, "actual": 16384}]
