"""`show DIR ns`: namespaces like lsns(8), with the owner and parent from ioctl_ns(2)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.cli.test_cli import ROOT_ONLY, run


@ROOT_ONLY
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_show_ns_lists_each_namespace_with_owner_and_holders(tmp_path: Path) -> None:
    root = subprocess.Popen(["sh", "-c", "unshare -U -n --map-root-user sleep 60 & wait"])
    kid = 0
    try:
        for _ in range(500):
            kids = Path(f"/proc/{root.pid}/task/{root.pid}/children").read_text().split()
            if kids and Path(f"/proc/{kids[0]}/comm").read_text() == "sleep\n":
                kid = int(kids[0])
                break
            time.sleep(0.02)
        assert kid, "the unshared child did not start"
        out = tmp_path / "snap"
        dumped = run("dump", str(root.pid), "-D", str(out))
        assert dumped.returncode == 0, dumped.stderr
    finally:
        if kid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(kid, signal.SIGKILL)
        root.kill()
        root.wait()
    user = os.stat("/proc/self/ns/user").st_ino
    rows = {}
    for line in run("show", str(out), "ns").stdout.splitlines()[1:]:
        cols = line.split()
        rows[(cols[0], int(cols[1]))] = cols[2:]
    child_user = next(k[1] for k, v in rows.items() if k[0] == "user" and v[-1] == str(kid))
    child_net = next(k[1] for k, v in rows.items() if k[0] == "net" and v[-1] == str(kid))
    assert rows[("user", child_user)][:3] == [str(user), str(user), "1"]   # owner = parent
    assert rows[("net", child_net)][:3] == [str(child_user), "-", "1"]
    assert rows[("user", user)][-2:] == ["1", str(root.pid)]
    # The JSON carries the same fields.
    procs = json.loads(run("show", str(out), "--json").stdout)["processes"]
    net = next(ns for p in procs if p["pid"] == kid for ns in p["namespaces"]
               if ns["type"] == "net")
    assert (net["inode"], net["owner_user"]) == (child_net, child_user)
