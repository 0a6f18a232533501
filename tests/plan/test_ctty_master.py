"""A controlling tty no process holds a slave fd of (ZDTM pty03, tty00) is planned.

(a) a session leader took its pty as controlling tty and closed the slave,
keeping only the master; (b) a parent holds the master of the tty its child
session leader controls, and the child holds no fd of it. Both were refused
with ctty-order; the master is now made before the leader's setsid() needs it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

import criu_model
from criu_model.images.pb import files_pb2
from criu_model.kernel.devnum import pts_device
from criu_model.planner import Action, plan

CHILD = r"""
import fcntl, os, pty, sys, termios, time
master, slave = pty.openpty()
index = os.ttyname(slave).rsplit("/", 1)[1]
if sys.argv[1] == "single":
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    os.close(slave)
    print(os.getpid(), index, master, flush=True)
else:
    r, w = os.pipe()
    kid = os.fork()
    if kid == 0:
        os.close(master)
        os.close(r)
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        os.close(slave)
        os.write(w, b"x")
        os.close(w)
        time.sleep(60)
        os._exit(0)
    os.close(slave)
    os.close(w)
    os.close(r) if os.read(r, 1) else None
    print(kid, index, master, flush=True)
time.sleep(60)
"""

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="ptrace freezing needs root"),
              pytest.mark.skipif(not os.path.exists("/dev/ptmx"), reason="no /dev/ptmx here")]


@pytest.fixture(params=["single", "child"])
def pty_holder(request: pytest.FixtureRequest) -> Iterator[tuple[str, int, int, int, int]]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, request.param],
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    leader = 0
    try:
        out = proc.stdout.readline().split()  # type: ignore[union-attr]
        leader, index, master = (int(x) for x in out)
        time.sleep(0.05)
        yield request.param, proc.pid, leader, index, master
    finally:
        if leader and leader != proc.pid:
            os.kill(leader, 9)   # the child session leader; its parent reaps it
        proc.kill()
        proc.wait()


def test_ctty_without_slave_fd_is_planned(pty_holder: tuple[str, int, int, int, int]) -> None:
    _mode, root, leader, index, master = pty_holder
    snap = criu_model.dump([root])
    dev = pts_device(index)
    lead = snap.by_pid[leader]
    # The dump shows what was built: the leader's tty, and no slave fd anywhere.
    assert lead.sid == leader and lead.tty_nr == dev
    ttys = [(p, f) for p, t in snap.fds_by_pid.items() for f in t.fds
            if f.WhichOneof("state") == "tty"]
    assert [(p, f.fd, f.tty.is_master, f.tty.index) for p, f in ttys] == \
        [(root, master, True, index)]

    p = plan(snap, live=False)
    assert p.feasible, [x.message for x in p.problems if x.severity == "blocker"]
    assert not [x for x in p.problems if x.kind == "ctty-order"]
    steps = list(p.steps)
    made = next(i for i, s in enumerate(steps) if s.action is Action.OPEN_PTY)
    assert steps[made].actor == root and steps[made].args["index"] == index
    take = next(i for i, s in enumerate(steps) if s.action is Action.SET_CTTY)
    assert steps[take].actor == leader and steps[take].args["tty"] == dev
    setsid = next(i for i, s in enumerate(steps) if s.action is Action.SETSID
                  and s.actor == leader)
    assert made < setsid < take
    # the master ends at its dumped number in its holder only
    assert any(s.action is Action.DUP2 and s.actor == root and s.args["new"] == master
               for s in steps)
    assert files_pb2.FD_TTY in {f.kind for f in snap.fds_by_pid[root].fds}
