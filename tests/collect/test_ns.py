"""read_namespaces: the (inode, dev) of each /proc/PID/ns entry, as stat() gives them."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from criu_model.collect.ns import _link_inode, read_namespaces
from criu_model.collect.procfs import ProcDir


def _by_stat(pid: int) -> dict[str, tuple[int, int]]:
    out = {}
    for name in os.listdir(f"/proc/{pid}/ns"):
        st = os.stat(f"/proc/{pid}/ns/{name}")
        out[name] = (st.st_ino, st.st_dev)
    return out


def test_identities_agree_with_stat() -> None:
    found, failed = read_namespaces(ProcDir(os.getpid()))
    assert not failed
    assert {ns.type: (ns.inode, ns.dev) for ns in found} == _by_stat(os.getpid())


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="a new UTS and IPC namespace needs root and unshare(1)")
def test_a_process_in_its_own_namespaces() -> None:
    child = subprocess.Popen(["unshare", "--uts", "--ipc", "sleep", "60"])
    try:
        for _ in range(100):  # until unshare has exec'd sleep in the new namespaces
            if os.readlink(f"/proc/{child.pid}/exe").endswith("sleep"):
                break
            time.sleep(0.01)
        found, failed = read_namespaces(ProcDir(child.pid))
        expected = _by_stat(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not failed
    got = {ns.type: (ns.inode, ns.dev) for ns in found}
    assert got == expected
    mine = _by_stat(os.getpid())
    assert got["uts"] != mine["uts"] and got["ipc"] != mine["ipc"]
    assert got["user"] == mine["user"]


def test_link_text() -> None:
    assert _link_inode("net:[4026531840]") == 4026531840
    assert _link_inode("time_for_children:[4026531834]") == 4026531834
    for odd in ("net:4026531840", "net:[]", "net:[12x]", "anon_inode:[eventfd"):
        assert _link_inode(odd) is None
