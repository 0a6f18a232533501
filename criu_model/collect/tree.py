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
from bisect import insort
from collections import deque

from criu_model.collect.procfs import PROC_ROOT, read_all
from criu_model.collect.stat import parse_ppid
from criu_model.errors import ProcessGone


def _read_ppid(proc_root: str, pid: int) -> int | None:
    """Parent pid of `pid`, or None if it vanished (a normal race while scanning)."""
    try:
        return parse_ppid(read_all(f"{proc_root}/{pid}/stat", single=True))
    except (FileNotFoundError, ProcessLookupError):
        return None


class Scan:
    """One pass over /proc: ppid -> child pids (ascending), and every pid listed."""

    __slots__ = ("children", "pids")

    def __init__(self, children: dict[int, list[int]], pids: set[int]) -> None:
        self.children = children
        self.pids = pids


def scan(proc_root: str = PROC_ROOT, previous: Scan | None = None) -> Scan:
    """The parent of every process visible in `proc_root`.

    With ``previous`` (a scan of a few milliseconds ago: the dumper's rescan
    once the tree is frozen) only pids that were not listed then are read: a
    process's parent changes only when its parent exits (reparenting moves it
    out of a tree, never into one, and the dump drops what left), and a pid
    listed both times is the same process unless the pid space wrapped in
    between. Pids gone since are left out. This halves a dump's /proc scan.
    """
    pids = {int(name) for name in os.listdir(proc_root) if name.isdigit()}
    if previous is None:
        children: dict[int, list[int]] = {}
        for pid in sorted(pids):
            ppid = _read_ppid(proc_root, pid)
            if ppid is not None:
                children.setdefault(ppid, []).append(pid)
        return Scan(children, pids)
    children = {}
    for ppid, kids in previous.children.items():
        alive = [kid for kid in kids if kid in pids]
        if alive:
            children[ppid] = alive
    for pid in sorted(pids - previous.pids):
        ppid = _read_ppid(proc_root, pid)
        if ppid is not None:
            insort(children.setdefault(ppid, []), pid)
    return Scan(children, pids)


def children_map(proc_root: str = PROC_ROOT) -> dict[int, list[int]]:
    """ppid -> child pids (ascending) of every process visible in `proc_root`."""
    return scan(proc_root).children


def discover(root_pids: list[int], proc_root: str = PROC_ROOT, *,
             found: Scan | None = None) -> list[int]:
    """Every root and all its descendants, each parent before its children.

    Roots are walked breadth-first in the given order. A root that lies inside
    another root's tree is not walked on its own (it is reached from the outer
    root, after its parent), so the result has no duplicates and stays
    parent-first whatever the order of the roots. Raises ProcessGone if a
    root does not exist; a descendant that vanishes meanwhile is left out.
    ``found`` walks that scan instead of scanning /proc again.
    """
    children = (found or scan(proc_root)).children
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
