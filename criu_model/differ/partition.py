"""Sharing compared as a partition, never by id.

File ids and task share ids are numbers private to each snapshot, so they are
never compared; the *partition* is: for open files, which (pid, fd) hold the
same open file; for tasks, which pids share files/fs/sighand/vm. A file or task
object that became or stopped being shared between processes is one
``sharing`` change. Only processes present on both sides count.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Any

from criu_model.differ.fields import Scope, Walker
from criu_model.differ.summaries import fd_target
from criu_model.images.pb import files_pb2, process_pb2
from criu_model.snapshot import Snapshot

_TASK_SHARES = tuple(f.name for f in process_pb2.TaskShares.DESCRIPTOR.fields)


class _Groups:
    """Connected components of (side, group id) nodes linked by shared members."""

    def __init__(self) -> None:
        self.parent: dict[Any, Any] = {}

    def find(self, x: Any) -> Any:
        parent = self.parent
        parent.setdefault(x, x)
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    def union(self, x: Any, y: Any) -> None:
        rx, ry = self.find(x), self.find(y)
        if rx != ry:
            self.parent[ry] = rx

    def components(self) -> dict[Any, list[Any]]:
        out: dict[Any, list[Any]] = {}
        for node in list(self.parent):
            out.setdefault(self.find(node), []).append(node)
        return out


def _partition_changes(groups_a: dict[int, list[Any]], groups_b: dict[int, list[Any]],
                       stable: Iterable[tuple[Any, int, int]],
                       pid_of: Callable[[Any], int]
                       ) -> Iterator[tuple[str, list[Any], list[Any], set[int]]]:
    """Components whose sharing between processes differs: (op, holders A, holders B, pids).

    `groups_x` maps a group id (file id, share id) to its members; `stable`
    yields (member, id in A, id in B) for members present on both sides.
    Two sides agree when the sets of processes that share each object (groups
    spanning at least two processes) are the same within the component.
    """
    # Fast path: a group with exactly the same members on both sides is unchanged
    # (members are listed in snapshot order, so equal lists mean equal groups).
    same = ({tuple(m) for m in groups_a.values()} & {tuple(m) for m in groups_b.values()})
    if same:
        groups_a = {g: m for g, m in groups_a.items() if tuple(m) not in same}
        groups_b = {g: m for g, m in groups_b.items() if tuple(m) not in same}
    uf = _Groups()
    for gid in groups_a:
        uf.find(("a", gid))
    for gid in groups_b:
        uf.find(("b", gid))
    for _, ga, gb in stable:
        if ga in groups_a and gb in groups_b:
            uf.union(("a", ga), ("b", gb))
    for nodes in uf.components().values():
        held_a = [m for side, gid in nodes if side == "a" for m in groups_a[gid]]
        held_b = [m for side, gid in nodes if side == "b" for m in groups_b[gid]]
        shared_a = {frozenset(map(pid_of, groups_a[g])) for s, g in nodes if s == "a"}
        shared_b = {frozenset(map(pid_of, groups_b[g])) for s, g in nodes if s == "b"}
        shared_a = {ps for ps in shared_a if len(ps) > 1}
        shared_b = {ps for ps in shared_b if len(ps) > 1}
        if shared_a == shared_b:
            continue
        op = "changed" if held_a and held_b else ("added" if held_b else "removed")
        pids = {pid_of(m) for m in held_a} | {pid_of(m) for m in held_b}
        yield op, held_a, held_b, pids


def file_sharing(w: Walker, a: Snapshot, b: Snapshot, matched: Collection[int],
                 stable_fds: Iterable[tuple[tuple[int, int], int, int]]) -> None:
    """Emit a change per open file whose holders across processes differ.

    `matched` are the pids compared (whose open-file identity is known);
    `stable_fds` yields ((pid, fd), file id in A, file id in B) for the fds
    that are the same open file on both sides.
    """

    def groups(snap: Snapshot) -> dict[int, list[tuple[int, int]]]:
        out: dict[int, list[tuple[int, int]]] = {}
        for table in snap.fds:
            pid = table.pid
            if pid not in matched:
                continue
            for fd in table.fds:
                file_id = fd.file_id
                if file_id:
                    group = out.get(file_id)
                    if group is None:
                        out[file_id] = [(pid, fd.fd)]
                    else:
                        group.append((pid, fd.fd))
        return out

    def fd_at(snap: Snapshot, holder: tuple[int, int]) -> files_pb2.Fd:
        return next(fd for fd in snap.fds_by_pid[holder[0]].fds if fd.fd == holder[1])

    ga, gb = groups(a), groups(b)
    stable = [(h, fa, fb) for h, fa, fb in stable_fds if fa and fb]
    for op, held_a, held_b, pids in _partition_changes(ga, gb, stable, lambda h: h[0]):
        sample = fd_at(b, held_b[0]) if held_b else fd_at(a, held_a[0])
        w.emit(Scope("sharing", min(pids), "sharing", key="file " + fd_target(sample),
                     pids=tuple(sorted(pids))), op, "holders",
               [f"{p}:{n}" for p, n in sorted(held_a)] or None,
               [f"{p}:{n}" for p, n in sorted(held_b)] or None)


def task_sharing(w: Walker, a: Snapshot, b: Snapshot, matched: Iterable[int]) -> None:
    """Emit a change per files/fs/sighand/vm object whose sharing pids differ."""
    by_a, by_b = a.by_pid, b.by_pid
    for kind in _TASK_SHARES:
        ga: dict[int, list[int]] = {}
        gb: dict[int, list[int]] = {}
        stable = []
        for pid in matched:
            pa, pb = by_a[pid], by_b[pid]
            ia, ib = getattr(pa.shares, kind), getattr(pb.shares, kind)
            if ia:
                ga.setdefault(ia, []).append(pid)
            if ib:
                gb.setdefault(ib, []).append(pid)
            if ia and ib:
                stable.append((pid, ia, ib))
        for op, held_a, held_b, pids in _partition_changes(ga, gb, stable, lambda p: p):
            w.emit(Scope("sharing", min(pids), "sharing", key=kind,
                         pids=tuple(sorted(pids))), op, kind,
                   _pid_groups(held_a, ga), _pid_groups(held_b, gb))


def _pid_groups(members: list[int], groups: dict[int, list[int]]) -> list[list[int]] | None:
    """The groups (of two or more pids) among `members`, as sorted lists."""
    wanted = set(members)
    out = sorted(sorted(g) for g in groups.values() if len(g) > 1 and wanted & set(g))
    return out or None
