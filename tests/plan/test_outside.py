"""A tree dumped from inside a pid namespace whose session leader is outside it.

Such a dump reads NSsid/NSpgid 0 for the launcher's session and group (as CI
runners and containers started without setsid do). The plan must leave those
processes in the restorer's session, not try to recreate a "session 0".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a new pid namespace"),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare"),
]

# Runs as pid 1 of a fresh pid namespace (with its own /proc): it is in the
# outer session and group, which it sees as 0.
_INSIDE = textwrap.dedent("""
    import json, os, signal, sys, time
    import criu_model
    from criu_model.planner import plan

    r, w = os.pipe()
    a = os.fork()
    if a == 0:
        c = os.fork()                      # forked before a's setpgid: keeps group 0
        if c == 0:
            time.sleep(60); os._exit(0)
        os.setpgid(0, 0)
        b = os.fork()                      # born in a's group, session still 0
        if b == 0:
            time.sleep(60); os._exit(0)
        os.write(w, b"x")
        time.sleep(60); os._exit(0)
    os.read(r, 1)
    try:
        snap = criu_model.dump([a])
        p = plan(snap, live=False)
        print(json.dumps({
            "a": a, "mine": [os.getpgid(0), os.getsid(0)],
            "procs": {x.pid: [x.ppid, x.pgid, x.sid] for x in snap.processes},
            "feasible": p.feasible,
            "problems": [[x.severity.value, x.kind, x.pid, x.message] for x in p.problems],
            "setsids": [s.actor for s in p.steps if s.action.value == "setsid"],
            "helpers": [k for k, v in p.processes.items() if v.helper],
        }))
    finally:
        os.killpg(a, signal.SIGKILL)
        for pid in os.listdir("/proc"):
            if pid.isdigit() and int(pid) != 1:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
""")


def test_session_outside_the_dump_namespace_is_inherited_not_recreated() -> None:
    out = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable,
                          "-c", _INSIDE], capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout)
    assert got["mine"] == [0, 0]                  # the launcher is outside, as in CI
    a = got["a"]
    procs = {int(k): v for k, v in got["procs"].items()}
    assert len(procs) == 3
    assert procs[a] == [1, a, 0]                  # own group, hidden session
    kids = {pid: v for pid, v in procs.items() if pid != a}
    assert sorted(v[1] for v in kids.values()) == [0, a]   # c kept group 0, b is in a's
    assert all(v[0] == a and v[2] == 0 for v in kids.values())
    assert got["feasible"], got["problems"]
    assert got["setsids"] == [] and got["helpers"] == []
    kinds = {k: (sev, pid) for sev, k, pid, _ in got["problems"]}
    assert kinds["session-outside"] == ("warning", min(procs))
