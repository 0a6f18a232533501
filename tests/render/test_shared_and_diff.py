"""Many holders of one file (`show shared`), and what `diff` says about shared files,
new ptys and processes born under a --pid."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

import criu_model
from criu_model.differ import Diff, Missing
from criu_model.images import write
from criu_model.render import text as render
from criu_model.render.diff import diff_to_json, show_diff
from tests.render.helpers import run_on_tty, run_piped

KIDS = 12
# A parent with a file and a pipe, KIDS children inheriting both. On SIGUSR1 the
# parent moves the shared file's offset, opens a pty and forks one more child, then
# writes "done" to stdout.
SCRIPT = r"""
import os, signal, sys, time
f = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
os.write(f, b"0123456789")
os.lseek(f, 0, os.SEEK_SET)
r, w = os.pipe()
kids = []
for _ in range(int(sys.argv[2])):
    pid = os.fork()
    if pid == 0:
        while True:
            signal.pause()
    kids.append(pid)
state = {}
def later(sig, frame):
    os.lseek(f, 7, os.SEEK_SET)
    state["pty"] = os.openpty()
    pid = os.fork()
    if pid == 0:
        while True:
            signal.pause()
    print("done", pid, os.ttyname(state["pty"][1]), flush=True)
signal.signal(signal.SIGUSR1, later)
print(*kids, flush=True)
while True:
    signal.pause()
"""


class Holders:
    def __init__(self, tmp: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp / "shared"),
                                      str(KIDS)], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.kids = [int(p) for p in self.proc.stdout.readline().split()]
        self.pid = self.proc.pid
        self.late: list[int] = []

    def change(self) -> tuple[int, str]:
        """SIGUSR1: the new child's pid and the new pty's slave path."""
        os.kill(self.pid, signal.SIGUSR1)
        assert self.proc.stdout is not None
        _, child, pts = self.proc.stdout.readline().split()
        self.late.append(int(child))
        deadline = time.monotonic() + 10
        while _state(self.pid) != "S":   # back asleep in pause()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        return int(child), pts

    def kill(self) -> None:
        for pid in [*self.kids, *self.late, self.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait()


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


@pytest.fixture
def holders(tmp_path: Path) -> Iterator[Holders]:
    h = Holders(tmp_path)
    try:
        yield h
    finally:
        h.kill()


def test_shared_summarises_long_holder_lists_on_a_terminal_only(holders: Holders,
                                                                tmp_path: Path) -> None:
    snap = criu_model.dump([holders.pid])
    buf = io.StringIO()
    render.show_shared(snap, Console(file=buf, width=80, force_terminal=True,
                                     color_system=None))
    text = buf.getvalue()
    more = KIDS + 1 - render.HOLDERS_SHOWN
    words = " ".join(text.split())     # the summary may wrap inside its column
    order = [p.pid for p in snap.processes]   # holders in snapshot order (pids may wrap)
    assert f"{order[0]}:0 {order[1]}:0" in words and f"… and {more} more" in words
    assert f"{order[-1]}:" not in words
    assert all(len(line) <= 80 for line in text.splitlines())
    path = write(snap, str(tmp_path / "snap"))
    piped = run_piped("show", path, "shared").stdout
    row = next(r for r in piped.splitlines() if r.split()[1:2] == ["pipe"])
    assert all(f"{pid}:" in row for pid in holders.kids) and "more" not in piped
    status, lines = run_on_tty(80, "show", path, "shared", "--wide")
    assert status == 0 and all(f"{pid}:" in "".join(lines) for pid in holders.kids)


def test_diff_one_change_per_shared_file_new_pty_and_pid_subtree(holders: Holders,
                                                                 tmp_path: Path) -> None:
    before = write(criu_model.dump([holders.pid]), str(tmp_path / "a"))
    child, pts = holders.change()
    after = write(criu_model.dump([holders.pid]), str(tmp_path / "b"))
    res = run_piped("diff", before, after, "--json")
    assert res.returncode == 1, res.stderr
    changes = json.loads(res.stdout)["changes"]
    pos = [c for c in changes if c["what"] == "fd" and c.get("field") == "pos"]
    assert len(pos) == 1, pos                       # not one per process
    assert (pos[0]["before"], pos[0]["after"]) == (0, 7)
    assert sorted(h["pid"] for h in pos[0]["holders"]) == sorted([holders.pid, *holders.kids])
    assert pos[0]["pids"] == sorted([holders.pid, *holders.kids])
    opened = [c for c in changes if c["what"] == "fd" and c["op"] == "added"]
    index = pts.rsplit("/", 1)[1]
    assert any(c["after"]["target"] == f"/dev/ptmx (pts/{index})" for c in opened), opened
    text = run_piped("diff", before, after).stdout
    assert f"/dev/ptmx (pts/{index})" in text
    held = [line for line in text.splitlines() if " held by " in line]
    assert len(held) == 1 and "pos: 0 → 7" in held[0]
    first = min([holders.pid, *holders.kids])
    assert f"open file {tmp_path / 'shared'} held by {first}:3 " in held[0]
    assert pos[0]["key"] == str(tmp_path / "shared")
    # --pid PARENT keeps the child forked since A (its own change names only itself)
    sub = json.loads(run_piped("diff", before, after, "--json", "--pid",
                               str(holders.pid)).stdout)["changes"]
    assert any(c["what"] == "process" and c["op"] == "added" and c["pid"] == child
               for c in sub)
    other = json.loads(run_piped("diff", before, after, "--json", "--pid",
                                 str(holders.kids[0])).stdout)["changes"]
    assert not any(c["what"] == "process" and c["pid"] == child for c in other)


def test_diff_says_how_many_fields_were_not_comparable() -> None:
    """One line counts what one side does not know, by side and kind of reason."""
    result = Diff([], [Missing("process", "start_time", "a", "not in CRIU images", 11),
                       Missing("fd", "ino", "a", "not in CRIU images: path only", 53),
                       Missing("process", "environ", "b", "EACCES")])
    out = io.StringIO()
    show_diff(result, Console(file=out, width=200))
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["no differences", "65 fields not comparable: 64 unknown in A (not in "
                         "CRIU images), 1 unknown in B (EACCES)"]
    assert lines[2:] == [
        "not compared: process start_time: unknown in A: not in CRIU images (11x)",
        "not compared: fd ino: unknown in A: not in CRIU images: path only (53x)",
        "not compared: process environ: unknown in B: EACCES"]
    assert diff_to_json(result)["summary"]["not_comparable"] == 65
    out = io.StringIO()
    show_diff(Diff([]), Console(file=out, width=200))
    assert out.getvalue() == "no differences\n"  # nothing unknown: no count line
