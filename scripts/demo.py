#!/usr/bin/env python3
"""Start a small process tree, checkpoint it with criu-model, look into it, change it,
diff it against the live tree, plan its restore and rehearse the plan; clean up.

Uses only the public API and the CLI. The tree: a root with a child in its
own process group, a child that called setsid() with a child of its own, a
multi-threaded child, and a zombie; the root keeps a marked string in memory
and, on SIGUSR1, opens a file and forks a helper. Run as root (or where
ptrace of your own children is allowed). The snapshot is removed at the end
unless SNAPSHOT_DIR is given.

Usage: scripts/demo.py [SNAPSHOT_DIR]
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import psutil

import criu_model


def _name(comm: str) -> None:
    """Set our comm (what `ps` and the snapshot show) through /proc/self/comm."""
    with open("/proc/self/comm", "w") as f:
        f.write(comm)


def _sleep_forever() -> None:
    while True:
        signal.pause()


MARK = b"demo-secret-4f2a"
_KEEP: list[object] = []


def _on_usr1(signum: int, frame: object) -> None:
    """The change the demo diffs: a new file open, and a forked helper."""
    _KEEP.append(os.open("/dev/zero", os.O_RDONLY))
    if os.fork() == 0:
        _name("demo-helper")
        _sleep_forever()


def build_tree(ready_w: int) -> None:
    """Runs in the root process of the demo tree; never returns."""
    _name("demo-root")
    os.setsid()  # its own session, without the caller's terminal: a tree a restore can own
    # A known tree, whatever the caller's terminal, CI socket or inherited fds are.
    ready_w = fcntl.fcntl(ready_w, fcntl.F_DUPFD, 3)  # clear of 0-2 even if they were closed
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(3, ready_w)
    os.closerange(ready_w + 1, os.sysconf("SC_OPEN_MAX"))
    _KEEP.append(bytearray(MARK + b" kept in the root's memory"))
    signal.signal(signal.SIGUSR1, _on_usr1)
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


def _run(*args: str, tail: int = 0, keep: str = "") -> int:
    """Run the real command and print it, like a terminal session (or an excerpt)."""
    note = f"    (last {tail} lines)" if tail else ""
    note = f"    (lines with {keep!r}, and the verdict)" if keep else note
    print(f"$ criu-model {' '.join(args)}{note}")
    res = subprocess.run([sys.executable, "-m", "criu_model", *args], capture_output=True,
                         text=True, timeout=120)
    lines = (res.stdout + res.stderr).rstrip("\n").splitlines()
    if keep:
        lines = [ln for ln in lines if keep in ln][:3] + lines[-1:]
    elif tail:
        lines = lines[-tail:]
    print("\n".join(lines) + "\n")
    return res.returncode


def main() -> int:
    given = len(sys.argv) > 1
    work = None if given else tempfile.mkdtemp()
    out = sys.argv[1] if given else os.path.join(work or "", "snap")
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
        # A checkpoint: state, page contents and registers, streamed next to the snapshot.
        snap = criu_model.dump([root], pages=True, pages_dir=os.path.dirname(out) or ".")
        criu_model.write(snap, out)
        print(f"dumped {len(snap.processes)} processes of the demo tree into {out} "
              f"({snap.inventory.page_stats.stored} pages stored)\n")
        for view in (["tree"], ["procs"], ["fds", str(root)], ["shared"]):
            if _run("show", out, *view) != 0:
                return 1
        _run("grep", out, MARK.decode(), "--pid", str(root))
        os.kill(root, signal.SIGUSR1)  # the root opens a file and forks a helper
        time.sleep(0.3)
        _run("diff", out, "--live", "--only", "tree,fds")
        _run("plan", out, "--offline", tail=2)
        _run("plan", out, keep="BLOCKER")  # live: the tree still runs, its pids collide
        _run("plan", out, "--rehearse", tail=1)
        return 0
    finally:
        tree = psutil.Process(root)
        for proc in [*tree.children(recursive=True), tree]:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        os.waitpid(root, 0)
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
