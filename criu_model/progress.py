"""Progress of long work (a page dump, a grep, a CRIU import), for a person at a terminal.

The library reports progress through a plain callable, ``Report(done, total,
note)``: ``done`` and ``total`` in one unit of the caller's choosing (bytes,
pages, files), ``total`` 0 when unknown. The work never looks at who listens.
The CLI hands in a :class:`Bar` when stderr is a terminal and nothing
otherwise, so scripts, pipes and CI logs never see a carriage return.

The bar is drawn by hand (no rich): a dump's start-up must not pay for a
table library, and a line redrawn at most ten times a second costs nothing
next to the work.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

Report = Callable[[int, int, str], None]

_INTERVAL_S = 0.1


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


class Bar:
    """One redrawn stderr line: label, a bar when the total is known, counts and rate.

    ``unit="bytes"`` shows sizes and a rate per second; anything else shows
    plain counts. Nothing is drawn in the first ``delay_s`` seconds, so quick
    work stays silent. ``close()`` clears the line.
    """

    def __init__(self, label: str, unit: str = "bytes", *, stream: TextIO | None = None,
                 delay_s: float = 0.5) -> None:
        self.label = label
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.monotonic()
        self.delay_s = delay_s
        self._next = self.started + delay_s
        self._drawn = False
        self._note = ""

    def __call__(self, done: int, total: int, note: str = "") -> None:
        now = time.monotonic()
        # a new note is a new phase: drawn at once (past the quiet start), since the
        # phase may be long and the last drawn line would stand for it
        if now < self._next and (note == self._note or now < self.started + self.delay_s):
            return
        self._note = note
        self._next = now + _INTERVAL_S
        self._draw(done, total, note, now)

    def _draw(self, done: int, total: int, note: str, now: float) -> None:
        width = _columns(self.stream)
        rate = done / max(now - self.started, 1e-6)
        if self.unit == "bytes":
            counts = f"{_size(done)}" + (f" of {_size(total)}" if total else "")
            counts += f", {_size(rate)}/s"
        else:
            counts = f"{done}" + (f"/{total}" if total else "") + f" {self.unit}"
        tail = f" {counts}" + (f"  {note}" if note else "")
        head = self.label
        if total:
            share = min(1.0, done / total)
            room = max(0, min(30, width - len(head) - len(tail) - 10))
            filled = int(share * room)
            head += f" [{'#' * filled}{'.' * (room - filled)}] {share * 100:3.0f}%"
        line = (head + tail)[: max(0, width - 1)]
        self.stream.write("\r" + line.ljust(width - 1))
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """Clear the line, so the command's own output starts on a clean one."""
        if self._drawn:
            self.stream.write("\r" + " " * (_columns(self.stream) - 1) + "\r")
            self.stream.flush()
            self._drawn = False

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _columns(stream: TextIO) -> int:
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 80
    return max(20, columns) if columns else 80  # a pty nobody sized says 0


# Tests set this (seconds) to see a bar on short work; users never need it.
DELAY_ENV = "CRIU_MODEL_TEST_PROGRESS_DELAY"


def bar_for_terminal(label: str, unit: str = "bytes") -> Bar | None:
    """A Bar when stderr is a terminal, else None (nothing is ever drawn)."""
    try:
        tty = sys.stderr.isatty()
    except (AttributeError, ValueError):
        tty = False
    if not tty:
        return None
    try:
        delay = float(os.environ.get(DELAY_ENV, "0.5"))
    except ValueError:
        delay = 0.5
    return Bar(label, unit, delay_s=delay)
