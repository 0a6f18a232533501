"""A process whose controlling tty is the host's (found rehearsing ZDTM vt).

The rehearsal never opens a host tty, so such a process has no controlling tty in
the sandbox: its tty_nr and tpgid were reported as mismatches of a step that was
never run. The process entry now says why they are not compared.
"""

from __future__ import annotations

import fcntl
import os
import pty
import subprocess
import sys
import termios

import pytest

import criu_model
from criu_model.restore import rehearse
from criu_model.restore.judge import MATCHED, MISMATCHED
from criu_model.restore.sandbox import wait_gone

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, set_tid)")


def test_host_controlling_tty_is_not_a_mismatch() -> None:
    master, slave = pty.openpty()          # the master stays here: outside the tree
    r, w = os.pipe()

    def ctty() -> None:
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([sys.executable, "-c", "import os, signal, sys; "
                             "os.write(int(sys.argv[1]), b'ready'); signal.pause()", str(w)],
                            pass_fds=(w,), stdin=slave, stdout=slave, stderr=slave,
                            preexec_fn=ctty)
    os.close(w)
    os.close(slave)
    try:
        assert os.read(r, 5) == b"ready"
        snap = criu_model.dump([proc.pid])
    finally:
        proc.kill()
        proc.wait()
        os.close(r)
        os.close(master)
    assert snap.by_pid[proc.pid].tty_nr != 0
    report = rehearse(snap, criu_model.plan(snap, live=False, pid_ns="new"))
    assert report.sandbox_pid is not None and wait_gone(report.sandbox_pid)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    entry = next(e for e in report.entries if e.kind == "process" and e.id == str(proc.pid))
    assert entry.status == MATCHED and "its controlling tty is not set" in entry.reason
