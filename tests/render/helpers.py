"""Running the real command on a terminal of a given width (a pty) or through a pipe."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_piped(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """`criu-model ARGS` with stdout a pipe (what scripts and grep see)."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    return subprocess.run([sys.executable, "-m", "criu_model", *map(str, args)],
                          capture_output=True, text=True, timeout=60, env=env)


def run_on_tty(columns: int, *args: str | Path) -> tuple[int, list[str]]:
    """`criu-model ARGS` with stdout a pty `columns` wide: (status, lines without colour)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["TERM"] = "xterm"
    proc = subprocess.Popen([sys.executable, "-m", "criu_model", *map(str, args)],
                            stdout=slave, stderr=subprocess.DEVNULL, env=env)
    os.close(slave)
    out = b""
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:   # EIO: the slave side is closed
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
        status = proc.wait(timeout=60)
    text = _ANSI.sub("", out.decode(errors="replace")).replace("\r\n", "\n")
    return status, [line.rstrip() for line in text.split("\n") if line.strip()]
