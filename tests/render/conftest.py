"""A real tree for the views: a pty, a file, a pipe, sockets, a long cmdline, a subtree.

The parent (comm cm-viewroot) holds a pty master and its slave, a regular file, a
pipe, a socketpair and a TCP listener, and forks two children that inherit them all;
the second child forks a grandchild. Dumped once per module (criu_model.dump).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import criu_model
from criu_model.images import write
from criu_model.snapshot import Snapshot

SCRIPT = r"""
import ctypes, os, signal, socket, sys
libc = ctypes.CDLL(None)
libc.prctl(15, b"cm-viewroot", 0, 0, 0)
m, s = os.openpty()
f = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
r, w = os.pipe()
a, b = socket.socketpair()
lis = socket.socket(); lis.bind(("127.0.0.1", 0)); lis.listen(4)
for fd in (m, s, f, r, w, a.fileno(), b.fileno(), lis.fileno()):
    os.set_inheritable(fd, True)
tell_r, tell_w = os.pipe()
kids = []
# Each child says "ready" only once it has named itself: the tree is dumped as
# soon as the root prints, and a comm set a moment later would be a race.
for name in (b"cm-viewkid1", b"cm-viewkid2"):
    pid = os.fork()
    if pid == 0:
        os.close(tell_r)
        libc.prctl(15, name, 0, 0, 0)
        if name == b"cm-viewkid2":
            g = os.fork()
            if g == 0:
                libc.prctl(15, b"cm-viewgrand", 0, 0, 0)
                os.write(tell_w, f"g {os.getpid()}\n".encode())
                os.close(tell_w)
                while True:
                    signal.pause()
        os.write(tell_w, b"k 0\n")
        os.close(tell_w)
        while True:
            signal.pause()
    kids.append(pid)
os.close(tell_w)
said = b""
while said.count(b"\n") < 3:
    said += os.read(tell_r, 64)
os.close(tell_r)
grand = next(int(w[1]) for w in (line.split() for line in said.splitlines()) if w[0] == b"g")
print(os.getpid(), *kids, grand, os.ttyname(s), lis.getsockname()[1], flush=True)
while True:
    signal.pause()
"""

LONG_ARG = "a-very-long-argument-" * 8   # makes CMDLINE far wider than 80 columns


@dataclass
class ViewTree:
    root: int
    kid1: int
    kid2: int
    grand: int
    pty: str          # "/dev/pts/N" of the slave
    port: int
    snap: Snapshot
    dir: Path


@pytest.fixture(scope="module")
def view_tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ViewTree]:
    tmp = tmp_path_factory.mktemp("views")
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp / "data file"), LONG_ARG],
                            stdout=subprocess.PIPE, text=True)
    pids: list[int] = []
    try:
        assert proc.stdout is not None
        root, kid1, kid2, grand, pty, port = proc.stdout.readline().split()
        pids = [int(root), int(kid1), int(kid2), int(grand)]
        snap = criu_model.dump([int(root)])
        path = write(snap, str(tmp / "snap"))
        yield ViewTree(*pids, pty, int(port), snap, Path(path))
    finally:
        for pid in reversed(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.wait()
