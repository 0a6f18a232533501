"""Two TCP listeners on one port (SO_REUSEPORT: found rehearsing ZDTM socket-tcp-reuseport).

sock_diag does not report socket options, but two listeners of the tree bound to
the same address and port tell: the kernel let them bind only with SO_REUSEPORT on
each. The second bind failed with EADDRINUSE; the plan now sets the option.
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
import os, signal, socket, sys
ready = int(sys.argv[1])
first = socket.socket()
first.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
first.bind(("127.0.0.1", 0))
first.listen(8)
second = socket.socket()
second.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
second.bind(first.getsockname())
second.listen(8)
for s in (first, second):
    os.set_inheritable(s.detach(), True)
os.write(ready, b"ready")
os.close(ready)
signal.pause()
"""


def test_listeners_sharing_a_port() -> None:
    snap, pid, _ = dump_program(_PROGRAM)
    plan = criu_model.plan(snap, live=False, pid_ns="new")
    opens = [s for s in plan.steps if s.args.get("kind") == "socket"]
    assert len(opens) == 2 and all(s.args.get("reuseport") for s in opens)
    report = rehearse(snap, plan)
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    held = {f"{pid}:{f.fd}" for f in snap.fds_by_pid[pid].fds if f.HasField("socket")}
    fds = [e for e in report.entries if e.kind == "fd" and e.id in held]
    assert len(fds) == 2 and all(e.status == MATCHED for e in fds)
    # without the option the second bind fails: the judge says so
    for step in opens:
        del step.args["reuseport"]
    report = rehearse(snap, plan)
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    assert any(e.kind == "step" and e.status == MISMATCHED and "Address already in use"
               in str(e.mismatches) for e in report.entries)
