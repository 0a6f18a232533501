"""`show fds` names what a deleted node was, a pipe whose bytes were captured, a probed socket."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import criu_model
from tests.conftest import needs_root

HOLDER = r"""
import os, signal, socket, stat, sys
d = sys.argv[1]
os.mkdir(f"{d}/gone-dir", 0o710)
a = os.open(f"{d}/gone-dir", os.O_RDONLY | os.O_DIRECTORY)
os.rmdir(f"{d}/gone-dir")
os.mknod(f"{d}/gone-null", 0o640 | stat.S_IFCHR, os.makedev(1, 3))
os.chown(f"{d}/gone-null", 12, 34)
b = os.open(f"{d}/gone-null", os.O_RDWR)
os.unlink(f"{d}/gone-null")
os.symlink("/etc/hostname", f"{d}/gone-link")
c = os.open(f"{d}/gone-link", os.O_PATH | os.O_NOFOLLOW)
os.unlink(f"{d}/gone-link")
r, w = os.pipe()
os.write(w, b"twelve bytes")
tcp = socket.socket()            # never bound: sock_diag does not list it
print(a, b, c, r, tcp.fileno(), flush=True)
signal.pause()
"""


@needs_root
def test_fd_targets_of_deleted_nodes_pipe_bytes_and_probed_sockets(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        a, b, c, r, tcp = map(int, proc.stdout.readline().split())
        snap = criu_model.write(criu_model.dump([proc.pid]), tmp_path / "snap")
    finally:
        proc.kill()
        proc.wait()
    out = subprocess.run([sys.executable, "-m", "criu_model", "show", str(snap), "fds",
                          str(proc.pid)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = {int(line.split()[1]): line for line in out.stdout.splitlines()[1:]}
    assert rows[a].endswith("gone-dir (deleted) directory 0710 0:0")
    assert rows[b].endswith("gone-null (deleted) chr 1:3 0640 12:34")
    assert rows[c].endswith("gone-link (deleted) symlink 0777 0:0 -> /etc/hostname")
    assert rows[r].endswith(" r queued=12 (bytes captured)")
    assert rows[tcp].endswith(" inet stream UNCONN 0.0.0.0:0 -> *:* (getsockopt)")  # as ss
    assert os.path.exists(tmp_path / "snap")
    js = subprocess.run([sys.executable, "-m", "criu_model", "show", str(snap), "fds",
                         str(proc.pid), "--json"], capture_output=True, text=True, timeout=60)
    import json

    sock = next(f for f in json.loads(js.stdout)["fds"] if f["fd"] == tcp)["socket"]
    assert sock["family"] is None  # sock_diag did not list it; the probe did
    assert (sock["probe"]["domain"], sock["probe"]["type"], sock["probe"]["protocol"]) == \
        (2, 1, 6)
