#!/usr/bin/env python3
"""Start a small process tree, dump it with criu-model, show it, clean up.

Uses only the public API and the CLI. The tree: a root with a child in its
own process group, a child that called setsid() with a child of its own, a
multi-threaded child, and a zombie. Run as root (or where ptrace of your own
children is allowed).

Usage: scripts/demo.py [SNAPSHOT_DIR]
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import threading
import time

import psutil

import criu_model
from criu_model.cli import main as cli


def _name(comm: str) -> None:
    """Set our comm (what `ps` and the snapshot show) through /proc/self/comm."""
    with open("/proc/self/comm", "w") as f:
        f.write(comm)


def _sleep_forever() -> None:
    while True:
        signal.pause()


def build_tree(ready_w: int) -> None:
    """Runs in the root process of the demo tree; never returns."""
    _name("demo-root")
    os.setpgid(0, 0)
    os.pipe()  # both ends inherited by every child: one open file each, shared
    if os.fork() == 0:  # a worker in its own process group
        _name("demo-group")
        os.setpgid(0, 0)
        os.write(ready_w, b"g")
        _sleep_forever()
    if os.fork() == 0:  # a session leader with a child
        _name("demo-session")
        os.setsid()
        if os.fork() == 0:
            _name("demo-sess-kid")
            os.write(ready_w, b"s")
            _sleep_forever()
        _sleep_forever()
    if os.fork() == 0:  # three threads
        _name("demo-threads")
        for _ in range(2):
            threading.Thread(target=_sleep_forever, daemon=True).start()
        os.write(ready_w, b"t")
        _sleep_forever()
    if os.fork() == 0:  # exits at once and stays a zombie: the root never waits
        _name("demo-zombie")
        os._exit(7)
    _sleep_forever()


def main() -> int:
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(tempfile.mkdtemp(), "snap")
    r, w = os.pipe()
    root = os.fork()
    if root == 0:
        os.close(r)
        build_tree(w)
    os.close(w)
    try:
        got = b""
        while len(got) < 3:
            got += os.read(r, 16)
        time.sleep(0.1)  # let the zombie exit
        snap = criu_model.dump([root])
        criu_model.write(snap, out)
        print(f"dumped {len(snap.processes)} processes of the demo tree into {out}\n")
        for view in (["tree"], ["procs"], ["fds", str(root)], ["shared"]):
            print(f"$ criu-model show {out} {' '.join(view)}")
            if cli(["show", out, *view]) != 0:
                return 1
            print()
        return 0
    finally:
        tree = psutil.Process(root)
        for proc in [*tree.children(recursive=True), tree]:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        os.waitpid(root, 0)


if __name__ == "__main__":
    raise SystemExit(main())
