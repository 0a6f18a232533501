"""A lease mid-break (found rehearsing ZDTM file_lease02).

/proc/locks shows a write lease being downgraded as `LEASE BREAKING READ`: its mode is
where it is going, and F_SETLEASE(F_RDLCK) on the writer's fd is the kernel's EAGAIN.
The step marks such a lease `breaking`, and the rehearsal leaves it not rehearsed.
"""

from __future__ import annotations

from criu_model.collect.locks import parse_lock_line
from criu_model.images.pb import files_pb2
from criu_model.planner.recipes import lock_args


def test_breaking_leases_are_marked() -> None:
    fd = files_pb2.Fd(fd=5)
    for line in (b"1: LEASE  BREAKING  READ 17847 fe:00:2179122 0 EOF",
                 b"2: LEASE  ACTIVE    READ 17847 fe:00:2179123 0 EOF"):
        fd.locks.append(parse_lock_line(line))
    held = lock_args(fd, posix=False)
    assert [(x["type"], x["mode"], x.get("breaking", False)) for x in held] == \
        [("lease", "read", True), ("lease", "read", False)]
