"""Run a small program that builds some kernel state, dump it, rehearse the plan.

The program gets its arguments and, last, the write end of a pipe; it writes
b"ready" there and closes it (and may print one line on stdout first) once its
state is built, then pauses. Everything it started is killed after the dump.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from typing import Any

import criu_model
from criu_model.planner.model import Plan
from criu_model.restore import RehearsalReport, rehearse
from criu_model.restore.judge import Entry
from criu_model.restore.sandbox import pidns_members, wait_gone
from criu_model.snapshot import Snapshot


def dump_program(program: str, *args: str, extra_pids: bool = False, **dump_args: Any
                 ) -> tuple[Snapshot, int, list[int]]:
    """(snapshot, pid, the ints of its stdout line) of `program` (python -c) once ready,
    dumped with `dump_args` (criu_model.dump's keywords).

    extra_pids: the line's ints are pids of processes with groups or sessions of their
    own (killpg misses them): they are killed too.
    """
    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-c", program, *args, str(w)], pass_fds=(w,),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            start_new_session=True)
    os.close(w)
    line: list[int] = []
    try:
        ready = os.read(r, 5)
        assert proc.stdout is not None
        if ready == b"ready":
            line = [int(x) for x in proc.stdout.readline().split()] if _printed(proc) else []
        assert ready == b"ready", f"the program failed: {proc.stdout.read()!r}"
        assert os.read(r, 1) == b""   # and it closed the pipe: the dump never sees it
        snap = criu_model.dump([proc.pid], **dump_args)
    finally:
        for pid in line if extra_pids else []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait()
        os.close(r)
    return snap, proc.pid, line


def _printed(proc: subprocess.Popen[bytes]) -> bool:
    """Whether the program printed its line (it prints before it writes ready)."""
    import select

    return bool(proc.stdout is not None and select.select([proc.stdout], [], [], 0)[0])


def rehearsed(snap: Snapshot, plan: Plan | None = None, **kwargs: Any) -> RehearsalReport:
    """Rehearse `plan` (a fresh pid_ns="new" plan by default); the sandbox must be gone."""
    report = rehearse(snap, plan or criu_model.plan(snap, live=False, pid_ns="new"), **kwargs)
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    assert pidns_members(report.sandbox_pidns) == []
    return report


def entry(report: RehearsalReport, kind: str, ident: str) -> Entry:
    return next(e for e in report.entries if e.kind == kind and e.id == ident)


def mismatches(report: RehearsalReport) -> list[dict[str, Any]]:
    return [e.to_json() for e in report.entries if e.status == "mismatched"]
