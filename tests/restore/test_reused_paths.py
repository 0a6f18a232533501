"""Paths a program unlinked and used again (found rehearsing ZDTM unlink_fstat01+,
del_standalone_un and fifo_upon_unix_socket00).

- A deleted file and the live file made again at its path: the live one is made
  again in the scratch tmpfs after the deleted one's stand-in is unlinked (its open
  failed with ENOENT).
- Two unix listeners bound to one path, the first's node deleted: the deleted one
  binds with what is at the path set aside for the call, and unlinks its own node
  (the second bind failed with EADDRINUSE).
- A client of a datagram socket whose node is now another file (a FIFO) cannot
  connect by name again: not rehearsed, with the reason, and its server's state
  (ESTABLISHED because of it) is not compared.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import criu_model
from criu_model.restore import rehearse
from criu_model.restore.judge import MATCHED, MISMATCHED, NOT_REHEARSED
from criu_model.restore.sandbox import wait_gone
from criu_model.snapshot import Snapshot
from tests.restore.progtree import dump_program

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, set_tid)")

_PROGRAM = """
import os, signal, socket, sys
d, ready = sys.argv[1], int(sys.argv[2])
keep = []
f = os.path.join(d, "data")
old = os.open(f, os.O_WRONLY | os.O_CREAT, 0o644)
os.write(old, b"old contents")
os.unlink(f)
new = os.open(f, os.O_WRONLY | os.O_CREAT, 0o640)   # the same path, a new file
os.ftruncate(new, 4096)
s = os.path.join(d, "sock")
first = socket.socket(socket.AF_UNIX)
first.bind(s)
first.listen(1)
os.unlink(s)                                     # the first's node: deleted
second = socket.socket(socket.AF_UNIX)
second.bind(s)                                   # the path, bound again
second.listen(1)
g = os.path.join(d, "dgram")
srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
srv.bind(g)
cli = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
cli.connect(g)
os.unlink(g)
os.mkfifo(g)                                     # a FIFO where the server's node was
fifo = os.open(g, os.O_RDWR)
for sk in (first, second, srv, cli):
    os.set_inheritable(sk.detach(), True)
os.write(ready, b"ready")
os.close(ready)
signal.pause()
"""


@pytest.fixture(scope="module")
def reused(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Snapshot, int]]:
    work: Path = tmp_path_factory.mktemp("reused-paths")
    snap, pid, _ = dump_program(_PROGRAM, str(work))
    yield snap, pid


def test_reused_paths_are_rehearsed(reused: tuple[Snapshot, int]) -> None:
    snap, pid = reused
    report = rehearse(snap, criu_model.plan(snap, live=False, pid_ns="new"))
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    table = {f.fd: f for f in snap.fds_by_pid[pid].fds}
    by_id = {e.id: e for e in report.entries if e.kind == "fd"}
    files = [n for n, f in table.items() if f.path.endswith(b"/data")]
    socks = [n for n, f in table.items() if f.HasField("socket")]
    assert len(files) == 2 and len(socks) == 4
    for n in files + socks:
        entry = by_id[f"{pid}:{n}"]
        client = snap.sockets_by_inode[table[n].socket.inode].unix.peer_inode \
            if table[n].HasField("socket") else 0
        if client:       # the datagram client: its peer's node is a FIFO now
            assert entry.status == NOT_REHEARSED and "was deleted since" in entry.reason
        else:
            assert entry.status == MATCHED, entry.to_json()
