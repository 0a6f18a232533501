"""Working directories, unix sockets bound by relative names, and connections queued by
clients that are gone (found rehearsing ZDTM sk-unix-rel and sk-unix-listen03).

The plan had no working directory, so a socket bound by a relative name was bound
again in criu-model's own working directory, on the host. A process now gets a
chdir step first (the judge compares cwd), a relative name is resolved against it
to cover its directory with the scratch tmpfs (or refused), and a listener's
connections whose clients are not in the snapshot are queued again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import criu_model
from criu_model.planner.model import Action
from criu_model.restore import rehearse
from criu_model.restore.judge import MATCHED, MISMATCHED, NOT_REHEARSED
from criu_model.restore.sandbox import wait_gone
from criu_model.snapshot import Snapshot
from tests.restore.progtree import dump_program

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, set_tid)")

_PROGRAM = """
import os, signal, socket, sys
ready = int(sys.argv[2])
os.chdir(sys.argv[1])
lsn = socket.socket(socket.AF_UNIX)
lsn.bind("rel.sock")                     # a relative name
lsn.listen(4)
gone = socket.socket(socket.AF_UNIX)
gone.connect("rel.sock")
gone.close()                             # its connection stays queued, its client gone
os.set_inheritable(lsn.detach(), True)
os.write(ready, b"ready")
os.close(ready)
signal.pause()
"""


@pytest.fixture(scope="module")
def relative(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Snapshot, int, Path]]:
    work: Path = tmp_path_factory.mktemp("relative-unix")
    snap, pid, _ = dump_program(_PROGRAM, str(work))
    yield snap, pid, work


def _fd_entry(report: object, snap: Snapshot, pid: int) -> object:
    fd = next(f.fd for f in snap.fds_by_pid[pid].fds if f.HasField("socket"))
    return next(e for e in report.entries  # type: ignore[attr-defined]
                if e.kind == "fd" and e.id == f"{pid}:{fd}")


def test_cwd_relative_name_and_queued_orphan(relative: tuple[Snapshot, int, Path]) -> None:
    snap, pid, work = relative
    sock = next(s for s in snap.sockets if s.state == 10)
    assert sock.unix.name == b"rel.sock" and len(sock.unix.pending) == 1
    plan = criu_model.plan(snap, live=False, pid_ns="new")
    assert [s.args["path"] for s in plan.steps if s.action is Action.CHDIR
            and s.actor == pid] == [str(work)]
    assert any(p.kind == "unix-pending-outside" for p in plan.problems)
    here = sorted(os.listdir(os.getcwd()))
    report = rehearse(snap, plan)
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    assert sorted(os.listdir(os.getcwd())) == here      # nothing bound on the host
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    process = next(e for e in report.entries if e.kind == "process" and e.id == str(pid))
    assert process.status == MATCHED
    assert _fd_entry(report, snap, pid).status == MATCHED   # type: ignore[attr-defined]


def test_without_its_cwd(relative: tuple[Snapshot, int, Path]) -> None:
    """The old plan (no chdir): the cwd is a mismatch, and the relative name is refused
    instead of bound in criu-model's working directory."""
    snap, pid, _work = relative
    plan = criu_model.plan(snap, live=False, pid_ns="new")
    plan.steps = [s for s in plan.steps if s.action is not Action.CHDIR]
    here = sorted(os.listdir(os.getcwd()))
    report = rehearse(snap, plan)
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    assert sorted(os.listdir(os.getcwd())) == here
    process = next(e for e in report.entries if e.kind == "process" and e.id == str(pid))
    assert process.status == MISMATCHED
    assert [m["field"] for m in process.mismatches] == ["cwd"]
    entry = _fd_entry(report, snap, pid)
    assert entry.status == NOT_REHEARSED   # type: ignore[attr-defined]
    assert "working directory is unknown" in entry.reason   # type: ignore[attr-defined]


_MOVED = """
import os, signal, socket, sys
ready = int(sys.argv[2])
os.chdir(sys.argv[1])
srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
srv.bind("moved.dgram")                  # relative to a directory it leaves
cli = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
cli.connect("moved.dgram")
os.chdir("/")                            # ZDTM fifo_upon_unix_socket01
for s in (srv, cli):
    os.set_inheritable(s.fileno(), True)
print(srv.detach(), cli.detach(), flush=True)
os.write(ready, b"ready")
os.close(ready)
signal.pause()
"""


def test_relative_name_after_a_chdir(tmp_path: Path) -> None:
    """The name no longer resolves to its directory: the server is refused, and its
    client, whose peer was never made, is not rehearsed (it was an unconnected socket
    reported as a mismatch)."""
    from tests.restore.progtree import dump_program, rehearsed

    snap, pid, (srv, cli) = dump_program(_MOVED, str(tmp_path))
    report = rehearsed(snap)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    by_id = {e.id: e for e in report.entries if e.kind == "fd"}
    assert by_id[f"{pid}:{srv}"].status == NOT_REHEARSED
    assert by_id[f"{pid}:{cli}"].status == NOT_REHEARSED
    assert "was not made" in by_id[f"{pid}:{cli}"].reason
