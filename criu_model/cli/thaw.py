"""`criu-model thaw CGROUP`: undo a cgroup freeze that nobody will undo.

A cgroup dump's guardian thaws the tree when its dumper dies; this is for
what is left when both die (or another tool froze it and forgot). The thaw
is refused while a criu-model dump holds the cgroup: that dump thaws it.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


# One line of `criu-model --help` (registered alone when another command runs).
HELP = "thaw a cgroup v2 group left frozen (cgroup.freeze 1)"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `thaw` on the main parser's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "thaw", help=HELP,
        description="Write 0 to CGROUP's cgroup.freeze and wait until it reports thawed. "
                    "Refused while a criu-model dump holds the cgroup (it thaws it itself).")
    p.add_argument("cgroup", metavar="CGROUP",
                   help="the cgroup as /proc/PID/cgroup names it (/mygroup) or its "
                        "directory under the cgroup2 mount")
    return p


def run(args: argparse.Namespace, console: Console) -> int:
    """Run `criu-model thaw`: 0 once the cgroup is thawed (or was not frozen)."""
    from criu_model.freeze import thaw_cgroup
    from criu_model.names import printable

    result = thaw_cgroup(args.cgroup)
    if result.was_frozen:
        console.print(printable(f"thawed cgroup {result.cgroup} (it was frozen "
                                f"{result.frozen_by})"),
                      markup=False, highlight=False, soft_wrap=True)
    else:
        console.print(printable(f"cgroup {result.cgroup} is not frozen: nothing to do"),
                      markup=False, highlight=False, soft_wrap=True)
    return 0
