"""Parse /proc/PID/limits into (resource, soft, hard) triples.

The file (fs/proc/base.c, proc_pid_limits) is a header line, then one line
per resource in RLIMIT_* order, printed as ``"%-25s %-20s %-20s %-10s"``:
description, soft, hard, unit (absent for nice/rtprio). Descriptions contain
spaces, so we cut at the fixed 25-column width rather than splitting words.
"""

from __future__ import annotations

from typing import NamedTuple

RLIM_INFINITY = 2**64 - 1
_UNLIMITED = b"unlimited"
_NAME_WIDTH = 25

# The kernel's descriptions (lnames[] in fs/proc/base.c) -> resource names.
RESOURCE_NAMES: dict[bytes, str] = {
    b"Max cpu time": "RLIMIT_CPU",
    b"Max file size": "RLIMIT_FSIZE",
    b"Max data size": "RLIMIT_DATA",
    b"Max stack size": "RLIMIT_STACK",
    b"Max core file size": "RLIMIT_CORE",
    b"Max resident set": "RLIMIT_RSS",
    b"Max processes": "RLIMIT_NPROC",
    b"Max open files": "RLIMIT_NOFILE",
    b"Max locked memory": "RLIMIT_MEMLOCK",
    b"Max address space": "RLIMIT_AS",
    b"Max file locks": "RLIMIT_LOCKS",
    b"Max pending signals": "RLIMIT_SIGPENDING",
    b"Max msgqueue size": "RLIMIT_MSGQUEUE",
    b"Max nice priority": "RLIMIT_NICE",
    b"Max realtime priority": "RLIMIT_RTPRIO",
    b"Max realtime timeout": "RLIMIT_RTTIME",
}


class Limit(NamedTuple):
    resource: str
    soft: int
    hard: int


class LimitsParseError(ValueError):
    """The text is not a /proc/PID/limits table."""


def _value(text: bytes) -> int:
    return RLIM_INFINITY if text == _UNLIMITED else int(text)


def parse_limits(data: bytes) -> list[Limit]:
    """Every resource line; a description we do not know becomes ``RLIMIT_<index>``.

    Lines are printed in RLIMIT_* number order, so the index of an unknown
    line (a newer kernel) is its resource number.
    """
    lines = data.split(b"\n")
    if not lines or not lines[0].startswith(b"Limit"):
        raise LimitsParseError(f"no header in limits text {data[:40]!r}")
    result = []
    for index, line in enumerate(lines[1:]):
        if not line:
            continue
        name = line[:_NAME_WIDTH].rstrip()
        values = line[_NAME_WIDTH:].split()
        try:
            soft, hard = _value(values[0]), _value(values[1])
        except (IndexError, ValueError) as err:
            raise LimitsParseError(f"malformed limits line {line!r}") from err
        result.append(Limit(RESOURCE_NAMES.get(name, f"RLIMIT_{index}"), soft, hard))
    return result
