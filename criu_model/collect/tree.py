"""Find every process of the trees under some root pids.

Without CONFIG_PROC_CHILDREN (no /proc/PID/task/TID/children, as on this
machine) the only way to know a process's children is to read the parent pid
of every process on the system. One pass over /proc/*/stat builds the whole
parent -> children map; the walk is then in memory. /proc lists only thread
group leaders, and stat's ppid is the tgid of the parent, so threads never
appear as tree members.
"""

from __future__ import annotations

import os
from collections import deque

from criu_model.collect.procfs import PROC_ROOT, read_all
from criu_model.collect.stat import parse_ppid
from criu_model.errors import ProcessGone


def _read_ppid(proc_root: str, pid: int) -> int | None:
    """Parent pid of `pid`, or None if it vanished (a normal race while scanning)."""
    try:
        return parse_ppid(read_all(f"{proc_root}/{pid}/stat"))
    except (FileNotFoundError, ProcessLookupError):
        return None


def children_map(proc_root: str = PROC_ROOT) -> dict[int, list[int]]:
    """ppid -> child pids (ascending) of every process visible in `proc_root`."""
    children: dict[int, list[int]] = {}
    pids = sorted(int(name) for name in os.listdir(proc_root) if name.isdigit())
    for pid in pids:
        ppid = _read_ppid(proc_root, pid)
        if ppid is not None:
            children.setdefault(ppid, []).append(pid)
    return children


def discover(root_pids: list[int], proc_root: str = PROC_ROOT) -> list[int]:
    """Every root and all its descendants, each parent before its children.

    Roots are walked breadth-first in the given order. A root that lies inside
    another root's tree is not walked on its own (it is reached from the outer
    root, after its parent), so the result has no duplicates and stays
    parent-first whatever the order of the roots. Raises ProcessGone if a
    root does not exist; a descendant that vanishes meanwhile is left out.
    """
    children = children_map(proc_root)
    parent_of = {child: ppid for ppid, kids in children.items() for child in kids}
    roots = list(dict.fromkeys(root_pids))
    for root in roots:
        if root not in parent_of:
            # Not seen by the scan: gone, or created after it. Check it directly.
            ppid = _read_ppid(proc_root, root)
            if ppid is None:
                raise ProcessGone(root, "no such process")
            parent_of[root] = ppid
    root_set = set(roots)

    def inside_other_root(pid: int) -> bool:
        seen = {pid}
        ppid = parent_of.get(pid, 0)
        while ppid and ppid not in seen:
            if ppid in root_set:
                return True
            seen.add(ppid)
            ppid = parent_of.get(ppid, 0)
        return False

    result: list[int] = []
    visited: set[int] = set()
    for root in roots:
        if inside_other_root(root):
            continue
        queue = deque([root])
        visited.add(root)
        while queue:
            pid = queue.popleft()
            result.append(pid)
            for child in children.get(pid, ()):
                if child not in visited:
                    visited.add(child)
                    queue.append(child)
    return result
