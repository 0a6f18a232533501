"""Files, sockets and sharing through the real command: dump, then the JSON contract and views."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_cli import ROOT_ONLY, run

# Parent: a file opened twice, one dup, a socketpair, a TCP listener; then a
# child inherits all of it. Reports "PARENT CHILD PORT PATH" when ready.
SCRIPT = r"""
import os, signal, socket, sys
path = sys.argv[1]
a = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
b = os.open(path, os.O_RDWR)
c = os.dup(a)
os.lseek(a, 7, os.SEEK_SET)
s1, s2 = socket.socketpair()
lis = socket.socket(); lis.bind(("127.0.0.1", 0)); lis.listen(4)
for fd in (a, b, c, s1.fileno(), s2.fileno(), lis.fileno()):
    os.set_inheritable(fd, True)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    os.write(w, b"x")
    signal.pause()
    os._exit(0)
os.read(r, 1)
print(os.getpid(), pid, lis.getsockname()[1], a, b, c, s1.fileno(), s2.fileno(), lis.fileno(),
      flush=True)
signal.pause()
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[dict[str, int]]:
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path / "data")],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    names = ("parent", "child", "port", "a", "b", "c", "s1", "s2", "lis")
    info = dict(zip(names, map(int, proc.stdout.readline().split()), strict=True))
    try:
        yield info
    finally:
        os.kill(info["child"], signal.SIGKILL)
        proc.kill()
        proc.wait()


@ROOT_ONLY
def test_fds_sockets_sharing_contract(holder: dict[str, int], tmp_path: Path) -> None:
    out = tmp_path / "snap"
    res = run("dump", str(holder["parent"]), "-D", str(out))
    assert res.returncode == 0, res.stderr
    doc = json.loads(run("show", str(out), "--json").stdout)
    procs = {p["pid"]: p for p in doc["processes"]}
    parent, child = procs[holder["parent"]], procs[holder["child"]]
    pfd: dict[int, Any] = {f["fd"]: f for f in parent["fds"]}
    cfd: dict[int, Any] = {f["fd"]: f for f in child["fds"]}
    for f in pfd.values():
        assert {"fd", "kind", "path", "file_id", "pos", "flags"} <= set(f)
    a, b, c = pfd[holder["a"]], pfd[holder["b"]], pfd[holder["c"]]
    assert a["kind"] == b["kind"] == "regular"
    assert a["path"] == str(tmp_path / "data")
    assert a["pos"] == c["pos"] == 7 and b["pos"] == 0
    assert a["file_id"] == c["file_id"] != b["file_id"]          # dup shares, reopen doesn't
    assert cfd[holder["a"]]["file_id"] == a["file_id"]            # inherited across fork
    s1, s2 = pfd[holder["s1"]]["socket"], pfd[holder["s2"]]["socket"]
    assert (s1["family"], s1["type"], s1["state"]) == ("unix", "stream", "ESTABLISHED")
    assert s1["peer_inode"] == s2["inode"] and s2["peer_inode"] == s1["inode"]
    assert s1["name"] is None
    lis = pfd[holder["lis"]]["socket"]
    assert (lis["family"], lis["state"], lis["src"], lis["sport"]) == \
        ("inet", "LISTEN", "127.0.0.1", holder["port"])
    assert cfd[holder["lis"]]["file_id"] == pfd[holder["lis"]]["file_id"]
    assert set(parent["shares"]) == {"files", "fs", "sighand", "vm"}
    assert parent["shares"]["files"] != child["shares"]["files"]   # fork copies the table

    fds_view = run("show", str(out), "fds", str(holder["parent"])).stdout
    line = next(ln for ln in fds_view.splitlines() if ln.split()[1] == str(holder["a"]))
    assert line.split()[2:6] == ["regular", "rw", "7", str(a["file_id"])]
    assert line.split()[6] == "*"  # shared with the child
    socks = run("show", str(out), "sockets").stdout
    assert f"127.0.0.1:{holder['port']}" in socks
    assert f"pid={holder['child']},fd={holder['lis']}" in socks
    shared = run("show", str(out), "shared").stdout
    assert f"{holder['parent']}:{holder['a']} {holder['parent']}:{holder['c']}" in shared
