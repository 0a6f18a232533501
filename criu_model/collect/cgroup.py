"""Parse /proc/PID/cgroup: one ``hierarchy-ID:controllers:path`` line per hierarchy.

cgroup v2 is the line with ID 0 and no controllers (``0::/path``); in a hybrid
setup like this machine's there are v1 lines too. The path is the rest of the
line after the second colon, so a path containing ``:`` stays whole.
"""

from __future__ import annotations

from typing import NamedTuple


class CgroupLine(NamedTuple):
    hierarchy_id: int
    controllers: str
    path: bytes


class CgroupParseError(ValueError):
    """The text is not a /proc/PID/cgroup listing."""


def parse_cgroup(data: bytes) -> list[CgroupLine]:
    """Every membership line, in the kernel's order."""
    result = []
    for line in data.split(b"\n"):
        if not line:
            continue
        parts = line.split(b":", 2)
        if len(parts) != 3:
            raise CgroupParseError(f"malformed cgroup line {line!r}")
        try:
            hierarchy_id = int(parts[0])
        except ValueError as err:
            raise CgroupParseError(f"malformed cgroup line {line!r}") from err
        result.append(CgroupLine(hierarchy_id, parts[1].decode("utf-8", "backslashreplace"),
                                 parts[2]))
    return result
