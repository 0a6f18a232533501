"""Parsing command-line values, kept apart so any command can use them without
importing the collectors."""

from __future__ import annotations

from criu_model.errors import BadArgument


def parse_pid(text: str | int) -> int:
    """A pid from the command line: a positive decimal integer."""
    if isinstance(text, int):
        pid = text
    else:
        if not text.strip().isdigit():
            raise BadArgument(f"{text!r} is not a pid (expected a positive integer)")
        pid = int(text)
    if pid <= 0:
        raise BadArgument(f"{pid} is not a pid (expected a positive integer)")
    return pid
