"""DOT text -> SVG or PNG through Graphviz's ``dot`` executable.

Why a subprocess and not a binding: ``dot`` is the one Graphviz piece every
distribution ships (Debian/Ubuntu package ``graphviz``), and DOT output must
work without it, so nothing here is imported until a picture is rendered.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import BinaryIO

from criu_model.errors import CriuModelError, UsageError
from criu_model.names import printable

FORMATS = ("dot", "svg", "png")
BINARY_FORMATS = frozenset({"png"})   # not for a terminal: the CLI wants -o FILE for these
INSTALL_HINT = "install Graphviz (Debian/Ubuntu: apt-get install graphviz)"


class GraphvizMissing(CriuModelError):
    """No ``dot`` executable: SVG/PNG need Graphviz (DOT output does not)."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        super().__init__(f"rendering {fmt} needs the Graphviz 'dot' program, which is not "
                         f"on PATH: {INSTALL_HINT}, or use --format dot")


class GraphvizFailed(CriuModelError):
    """``dot`` ran but refused the input or timed out; its first stderr lines are kept."""


def dot_executable() -> str | None:
    """Path of ``dot``, or None when Graphviz is not installed."""
    return shutil.which("dot")


def run_dot(source: str, fmt: str, *, timeout: float = 60.0, dot: str | None = None) -> bytes:
    """`source` rendered as `fmt` (one of FORMATS); "dot" returns the source itself.

    The source goes on stdin (no temporary file); `timeout` bounds a layout
    that runs away on a huge graph. Raises UsageError for an unknown format,
    GraphvizMissing without ``dot``, GraphvizFailed when it fails.
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown graph format {fmt!r} (choose from {', '.join(FORMATS)})")
    data = source.encode("utf-8")
    if fmt == "dot":
        return data
    exe = dot or dot_executable()
    if exe is None:
        raise GraphvizMissing(fmt)
    try:
        done = subprocess.run([exe, f"-T{fmt}"], input=data, capture_output=True,
                              timeout=timeout, check=False)
    except FileNotFoundError as err:   # removed between which() and exec
        raise GraphvizMissing(fmt) from err
    except subprocess.TimeoutExpired as err:
        raise GraphvizFailed(f"Graphviz dot took more than {timeout:g} s to lay the graph "
                             "out; try --format dot and a smaller view") from err
    if done.returncode != 0 or not done.stdout:
        detail = " / ".join(printable(line) for line in
                            done.stderr.decode("utf-8", "replace").splitlines()[:3])
        raise GraphvizFailed(f"Graphviz dot -T{fmt} failed (exit {done.returncode})"
                             + (f": {detail}" if detail else ""))
    return done.stdout


def write_picture(data: bytes, fmt: str, path: str | None, stdout: BinaryIO) -> None:
    """Write a picture to `path` (None or "-": `stdout`); PNG never goes to a terminal.

    A PNG on a terminal is binary noise that can move the cursor or change the
    title; DOT and SVG are text and may go there. Raises UsageError (the CLI's
    exit 2) instead.
    """
    if path is not None and path != "-":
        try:
            with open(path, "wb") as out:
                out.write(data)
        except OSError as err:
            raise CriuModelError(f"cannot write the picture to {path}: "
                                 f"{err.strerror or err}") from err
        return
    if fmt in BINARY_FORMATS and stdout.isatty():
        raise UsageError(f"{fmt} is binary: give -o FILE, or redirect stdout to a file or pipe")
    stdout.write(data)
    stdout.flush()
