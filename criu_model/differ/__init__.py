"""What changed between two snapshots: `criu_model.diff(a, b)`.

A pure function over two loaded (or freshly dumped) Snapshots. Objects are
first *matched* across the snapshots, then every modeled field of a matched
pair is compared *generically* from the protobuf descriptors, so a field
added to a .proto is diffed without touching this package.

    result      Change, Missing, Diff and the --only AREAS
    match       matching rules: processes, threads, fds, VMAs, sockets, mounts, ghosts
    fields      the generic field comparison and the VOLATILE set
    partition   open-file and task sharing, compared as a partition of holders
    summaries   descriptions of whole added/removed objects

Unknown is not a change: a field one side recorded as ``unreadable`` (or a
whole collection, such as an fd table) is not compared; nor is a field absent
from the older side when the two snapshots have different format versions
(unset on the wire there, set on the newer side), or an image the older side
does not have at all. Those are listed in ``Diff.missing``, never in
``Diff.changes``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from criu_model.differ.fields import VOLATILE
from criu_model.differ.match import Differ
from criu_model.differ.result import AREAS, OPS, WHATS, Change, Diff, Missing, parse_areas
from criu_model.differ.summaries import fd_target, socket_label
from criu_model.snapshot import Snapshot

__all__ = ["AREAS", "OPS", "VOLATILE", "WHATS", "Change", "Diff", "Missing", "diff",
           "fd_target", "parse_areas", "socket_label"]


def diff(a: Snapshot, b: Snapshot, *, include_volatile: bool = False,
         pids: Collection[int] | None = None, only: Iterable[str] | str | None = None
         ) -> Diff:
    """Every difference between snapshots `a` (before) and `b` (after).

    `include_volatile` also compares the VOLATILE fields. `pids` keeps the
    changes involving those processes and the processes added (or removed)
    anywhere under them; `only` keeps the changes in those areas (AREAS, e.g.
    "tree,fds"). Raises UsageError for an unknown area.
    """
    areas = parse_areas(only) if only is not None else None
    result = Differ(a, b, include_volatile).run()
    if pids is not None or areas is not None:
        keep = None if pids is None else _with_born(result, a, b, set(pids))
        result = result.filter(pids=keep, only=areas)
    return result


def _with_born(result: Diff, a: Snapshot, b: Snapshot, pids: set[int]) -> set[int]:
    """`pids` and the processes added under them (in B's tree, at any depth, through
    children that already existed) or removed from under them (in A's)."""
    whole = {(ch.op, ch.pid) for ch in result.changes
             if ch.what == "process" and ch.field is None and ch.pid is not None}
    born = {pid for pid in b.subtree(pids) if ("added", pid) in whole}
    gone = {pid for pid in a.subtree(pids) if ("removed", pid) in whole}
    return pids | born | gone
