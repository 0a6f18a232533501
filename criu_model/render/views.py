"""What each `show` view holds, filtered like ps/lsof/ss: the rows, not their look.

text.py and json.py format the same rows, so `show DIR fds --pid 7 --kind pipe`
and the same with `--json` always agree on *which* fds they show.

Filters (a :class:`Selection`): ``--pid PID`` (repeatable; ``--children`` adds
every descendant), ``--comm NAME`` (exact, or a shell pattern like ``py*``),
``--state STATE`` (a process state letter R S D T t Z X P I or its name; in the
sockets view a socket state such as LISTEN) and ``--kind KIND`` (an fd kind, a
socket family or ss netid, a VMA kind, a namespace type: per view). A value
outside the allowed set is a BadArgument (exit 2) naming the allowed values.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from criu_model.errors import BadArgument, UsageError
from criu_model.images.pb import files_pb2, mm_pb2, process_pb2, sockets_pb2
from criu_model.names import (
    PROCESS_STATES,
    SOCKET_NETIDS,
    SOCKET_STATES,
    fd_kind_name,
    socket_family_name,
    socket_netid,
    text,
    vma_kind_name,
)
from criu_model.snapshot import Snapshot

NAMESPACE_TYPES = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")


def _names(enum: object, prefix: str, skip: str) -> tuple[str, ...]:
    return tuple(v.name.removeprefix(prefix).lower()
                 for v in enum.DESCRIPTOR.values if v.name != skip)   # type: ignore[attr-defined]


FD_KINDS = _names(files_pb2.FdKind, "FD_", "FD_KIND_UNSPECIFIED")
VMA_KINDS = _names(mm_pb2.VmaKind, "VMA_", "VMA_KIND_UNSPECIFIED")
SOCKET_FAMILIES = _names(sockets_pb2.SocketFamily, "FAMILY_", "SOCKET_FAMILY_UNSPECIFIED")
SOCKET_KINDS = SOCKET_FAMILIES + tuple(dict.fromkeys(SOCKET_NETIDS.values()))

# Which filters each view takes, and what --kind means there.
KIND_VALUES: dict[str, tuple[str, ...]] = {
    "fds": FD_KINDS, "sockets": SOCKET_KINDS, "mems": VMA_KINDS, "shared": FD_KINDS,
    "ns": NAMESPACE_TYPES,
}
PROCESS_FILTER_VIEWS = ("tree", "procs", "fds", "sockets", "mems", "shared", "ns", "threads")


@dataclass(frozen=True)
class Selection:
    """The filters of one `show` run; the defaults select everything."""

    view: str = "tree"
    pids: frozenset[int] = frozenset()
    children: bool = False
    comm: str | None = None
    state: str | None = None     # a process state letter, or a socket state name (sockets)
    kind: str | None = None

    @property
    def filters_processes(self) -> bool:
        """Whether some process filter is set (else every process is in)."""
        return bool(self.pids or self.comm is not None
                    or (self.state is not None and self.view != "sockets"))

    def to_json(self) -> dict[str, object]:
        """The filters as given, for the view's JSON ("filters")."""
        return {"pid": sorted(self.pids), "children": self.children, "comm": self.comm,
                "state": self.state, "kind": self.kind}


def make_selection(view: str, pids: frozenset[int] = frozenset(), children: bool = False,
                   comm: str | None = None, state: str | None = None,
                   kind: str | None = None) -> Selection:
    """A checked Selection: a filter a view does not take, or an unknown value, is a
    BadArgument naming what is allowed."""
    if (pids or children or comm is not None or state is not None) \
            and view not in PROCESS_FILTER_VIEWS:
        raise BadArgument(f"the {view} view takes no filters")
    if children and not pids:
        raise BadArgument("--children needs --pid PID")
    if kind is not None:
        allowed = KIND_VALUES.get(view)
        if allowed is None:
            raise BadArgument(f"--kind does not apply to the {view} view (it filters "
                              f"{', '.join(KIND_VALUES)})")
        kind = kind.lower()
        if kind not in allowed:
            raise BadArgument(f"unknown --kind {kind!r} for {view}; allowed: "
                              f"{' '.join(allowed)}")
    if state is not None:
        state = _socket_state(state) if view == "sockets" else _process_state(state)
    return Selection(view=view, pids=pids, children=children, comm=comm, state=state,
                     kind=kind)


def _process_state(value: str) -> str:
    if value in PROCESS_STATES:
        return value
    by_name = {name.replace(" ", "-"): letter for letter, name in PROCESS_STATES.items()}
    letter = by_name.get(value.lower().replace(" ", "-"))
    if letter is None:
        allowed = " ".join(f"{k} ({v})" for k, v in PROCESS_STATES.items())
        raise BadArgument(f"unknown --state {value!r}; allowed: {allowed}")
    return letter


def _socket_state(value: str) -> str:
    name = value.upper().replace("_", "-")
    if name not in SOCKET_STATES.values():
        raise BadArgument(f"unknown socket --state {value!r}; allowed: "
                          f"{' '.join(SOCKET_STATES.values())}")
    return name


def selected_pids(snap: Snapshot, sel: Selection) -> set[int]:
    """The pids the process filters let through (all of them without filters).

    A --pid that is not in the snapshot is a UsageError naming what is: a typo must
    not look like "no such fds"."""
    missing = sorted(p for p in sel.pids if p not in snap.by_pid)
    if missing:
        raise UsageError(f"pid {', '.join(map(str, missing))} is not in this snapshot "
                         f"(it holds {', '.join(str(p) for p in snap.by_pid)})")
    pids = set(snap.by_pid)
    if sel.pids:
        pids = snap.subtree(sel.pids) if sel.children else set(sel.pids)
    if sel.comm is not None:
        pids = {p for p in pids if _comm_matches(snap.by_pid[p], sel.comm)}
    if sel.state is not None and sel.view != "sockets":
        pids = {p for p in pids if snap.by_pid[p].state == sel.state}
    return pids


def _comm_matches(proc: process_pb2.Process, pattern: str) -> bool:
    comm = text(proc.comm)
    if any(c in pattern for c in "*?["):
        import fnmatch  # 8 ms of re compilation: only for a pattern

        return fnmatch.fnmatchcase(comm, pattern)
    return comm == pattern


def processes(snap: Snapshot, sel: Selection) -> list[process_pb2.Process]:
    """The selected processes, in snapshot order (parents before children)."""
    pids = selected_pids(snap, sel)
    return [p for p in snap.processes if p.pid in pids]


def tree_rows(snap: Snapshot, sel: Selection) -> list[tuple[process_pb2.Process, int]]:
    """(process, depth) in `ps -ejH` order; depth counts selected ancestors only, so a
    filtered tree stays a tree."""
    pids = selected_pids(snap, sel)
    kids = snap.children()
    out: list[tuple[process_pb2.Process, int]] = []

    def walk(pid: int, depth: int) -> None:
        shown = pid in pids
        if shown:
            out.append((snap.by_pid[pid], depth))
        for child in kids.get(pid, ()):
            walk(child, depth + 1 if shown else depth)

    for root in snap.tree_roots():
        walk(root, 0)
    return out


def fd_rows(snap: Snapshot, sel: Selection) -> Iterator[tuple[int, files_pb2.Fd]]:
    """(pid, fd) of the selected processes, filtered by --kind (an fd kind)."""
    pids = selected_pids(snap, sel)
    for table in snap.fds:
        if table.pid not in pids:
            continue
        for fd in table.fds:
            if sel.kind is None or fd_kind_name(fd.kind) == sel.kind:
                yield table.pid, fd


def fd_tables(snap: Snapshot, sel: Selection) -> list[files_pb2.FdTable]:
    """The fd tables of the selected processes (for their vanished/unreadable notes)."""
    pids = selected_pids(snap, sel)
    return [t for t in snap.fds if t.pid in pids]


def socket_rows(snap: Snapshot, sel: Selection) -> list[sockets_pb2.Socket]:
    """Sockets: held by a selected process (with process filters), of --kind (family or
    netid), in --state (a socket state)."""
    out = list(snap.sockets)
    if sel.filters_processes:
        pids = selected_pids(snap, sel)
        holders = snap.socket_holders
        out = [s for s in out if any(pid in pids for pid, _ in holders.get(s.inode, ()))]
    if sel.kind is not None:
        out = [s for s in out if sel.kind in (socket_family_name(s.family), socket_netid(s))]
    if sel.state is not None:
        out = [s for s in out if SOCKET_STATES.get(s.state) == sel.state]
    return out


def vma_rows(snap: Snapshot, sel: Selection) -> list[tuple[mm_pb2.MemoryMap, list[mm_pb2.Vma]]]:
    """Per selected process with a memory map: its VMAs of --kind."""
    if not sel.pids:
        raise BadArgument("show DIR mems needs a PID")
    pids = selected_pids(snap, sel)
    out = []
    for mm in snap.memory:
        if mm.pid in pids:
            vmas = [v for v in mm.vmas if sel.kind is None or vma_kind_name(v.kind) == sel.kind]
            out.append((mm, vmas))
    if not out and len(sel.pids) == 1 and not sel.children and sel.comm is None \
            and sel.state is None:
        raise UsageError(f"pid {next(iter(sel.pids))} has no memory map in this snapshot "
                         "(a zombie has none)")
    return out


Holders = list[tuple[int, files_pb2.Fd]]


def shared_files(snap: Snapshot, sel: Selection) -> list[tuple[int, Holders]]:
    """Open file descriptions held by more than one process: (file_id, [(pid, fd)...]),
    shown when a selected process holds one, of --kind."""
    pids = selected_pids(snap, sel)
    holders: dict[int, Holders] = {}
    for table in snap.fds:
        for fd in table.fds:
            if fd.file_id:
                holders.setdefault(fd.file_id, []).append((table.pid, fd))
    out = []
    for file_id, held in sorted(holders.items()):
        if len({pid for pid, _ in held}) < 2 or not any(pid in pids for pid, _ in held):
            continue
        if sel.kind is not None and fd_kind_name(held[0][1].kind) != sel.kind:
            continue
        out.append((file_id, held))
    return out


TASK_OBJECTS = ("files", "fs", "sighand", "vm")


def shared_tasks(snap: Snapshot, sel: Selection) -> list[tuple[str, int, list[int]]]:
    """Task objects (fd table, fs, sighand, vm) held by more than one process:
    (object, id, pids), shown when a selected process holds one (none with --kind)."""
    if sel.kind is not None:
        return []
    pids = selected_pids(snap, sel)
    out = []
    for kind in TASK_OBJECTS:
        groups: dict[int, list[int]] = {}
        for proc in snap.processes:
            ident = getattr(proc.shares, kind)
            if ident:
                groups.setdefault(ident, []).append(proc.pid)
        out.extend((kind, ident, members) for ident, members in sorted(groups.items())
                   if len(members) > 1 and any(p in pids for p in members))
    return out


def namespace_rows(snap: Snapshot, sel: Selection
                   ) -> list[tuple[process_pb2.Namespace, list[int]]]:
    """One (namespace, member pids) per namespace a selected process is in, of --kind."""
    pids = selected_pids(snap, sel)
    rows: dict[tuple[str, int], tuple[process_pb2.Namespace, list[int]]] = {}
    for proc in snap.processes:
        for ns in proc.namespaces:
            if ns.type.endswith("_for_children"):
                continue
            rows.setdefault((ns.type, ns.inode), (ns, []))[1].append(proc.pid)
    return [row for key, row in sorted(rows.items())
            if any(p in pids for p in row[1]) and (sel.kind is None or key[0] == sel.kind)]


def threads_pid(snap: Snapshot, sel: Selection) -> int:
    """The one process the threads view shows."""
    if len(sel.pids) != 1 or sel.children or sel.comm is not None or sel.state is not None:
        raise BadArgument("show DIR threads needs one PID (and no other filter)")
    return next(iter(sel.pids))
