"""The in-memory snapshot: the protobuf messages themselves, plus indexes.

There is no parallel dataclass model: collectors fill the messages, images
write them, and show/diff/plan read them. Indexes are derived on demand.
"""

from __future__ import annotations

from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from criu_model.images.pb import (
    files_pb2,
    inventory_pb2,
    mm_pb2,
    mount_pb2,
    pages_pb2,
    process_pb2,
    regs_pb2,
    sockets_pb2,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from criu_model.pages.sink import PageSink
    from criu_model.pages.store import PageStore


_TCP_LISTEN = 10   # include/net/tcp_states.h: unix sockets use it too


# The constructor's arguments, in order.
_FIELDS = ("inventory", "processes", "memory", "mounts", "fds", "ghosts", "sockets", "registers",
           "pagemap", "page_store", "page_sink", "parent_dir")


class _DataclassFields:
    """``Snapshot.__dataclass_fields__``, made on first use.

    Snapshot was a dataclass; ``dataclasses.replace(snap, processes=...)`` and
    ``dataclasses.fields`` still work on it through the fields of a dataclass
    twin with the same constructor arguments, without importing dataclasses
    (and inspect with it, ~5 ms) in every command that never asks.
    """

    def __get__(self, obj: object, owner: type | None = None) -> dict[str, Any]:
        return _dataclass_twin().__dataclass_fields__  # type: ignore[no-any-return]


@cache
def _dataclass_twin() -> type:
    import dataclasses

    return dataclasses.make_dataclass("Snapshot", [
        ("inventory", object),
        *((name, object, dataclasses.field(default=None)) for name in _FIELDS[1:])])


class Snapshot:
    """The messages of one snapshot, image by image, and indexes built from them.

    A plain class, not a dataclass: importing dataclasses (and inspect with it)
    costs ~5 ms of every command's start-up.
    """

    __dataclass_fields__ = _DataclassFields()

    def __init__(self, inventory: inventory_pb2.Inventory,
                 processes: list[process_pb2.Process] | None = None,
                 memory: list[mm_pb2.MemoryMap] | None = None,
                 mounts: list[mount_pb2.MountNamespace] | None = None,
                 fds: list[files_pb2.FdTable] | None = None,
                 ghosts: list[files_pb2.GhostFile] | None = None,
                 sockets: list[sockets_pb2.Socket] | None = None,
                 registers: list[regs_pb2.ProcessRegs] | None = None,
                 pagemap: list[pages_pb2.PageRuns] | None = None,
                 page_store: PageStore | None = None, page_sink: PageSink | None = None,
                 parent_dir: Path | None = None) -> None:
        self.inventory = inventory
        self.processes: list[process_pb2.Process] = processes if processes is not None else []
        self.memory: list[mm_pb2.MemoryMap] = memory if memory is not None else []
        self.mounts: list[mount_pb2.MountNamespace] = mounts if mounts is not None else []
        self.fds: list[files_pb2.FdTable] = fds if fds is not None else []
        self.ghosts: list[files_pb2.GhostFile] = ghosts if ghosts is not None else []
        # by inode, ascending
        self.sockets: list[sockets_pb2.Socket] = sockets if sockets is not None else []
        # regs.img
        self.registers: list[regs_pb2.ProcessRegs] = registers if registers is not None else []
        # pagemap.img
        self.pagemap: list[pages_pb2.PageRuns] = pagemap if pagemap is not None else []
        # Page contents (dump --pages): read through page_store; a fresh dump's
        # data is still in page_sink (an unnamed file) until images.write links it.
        self.page_store = page_store
        self.page_sink = page_sink
        self.parent_dir = parent_dir  # the parent snapshot (incremental page dumps), absolute

    def __repr__(self) -> str:
        return (f"Snapshot({len(self.processes)} processes, root pids "
                f"{list(self.inventory.root_pids)})")

    @cached_property
    def by_pid(self) -> dict[int, process_pb2.Process]:
        return {p.pid: p for p in self.processes}

    @cached_property
    def memory_by_pid(self) -> dict[int, mm_pb2.MemoryMap]:
        return {m.pid: m for m in self.memory}

    @cached_property
    def fds_by_pid(self) -> dict[int, files_pb2.FdTable]:
        return {t.pid: t for t in self.fds}

    @cached_property
    def ghosts_by_id(self) -> dict[int, files_pb2.GhostFile]:
        return {g.id: g for g in self.ghosts}

    @cached_property
    def sockets_by_inode(self) -> dict[int, sockets_pb2.Socket]:
        return {s.inode: s for s in self.sockets}

    @cached_property
    def socket_holders(self) -> dict[int, list[tuple[int, int]]]:
        """socket inode -> every (pid, fd) that holds it, in snapshot order."""
        out: dict[int, list[tuple[int, int]]] = {}
        for table in self.fds:
            for fd in table.fds:
                if fd.HasField("socket"):
                    out.setdefault(fd.socket.inode, []).append((table.pid, fd.fd))
        return out

    @cached_property
    def unix_listeners(self) -> dict[bytes, sockets_pb2.Socket]:
        """Name -> the listening unix socket bound to it (the last one, if several were)."""
        return {s.unix.name: s for s in self.sockets if s.WhichOneof("kind") == "unix"
                and s.state == _TCP_LISTEN and s.unix.name}

    @cached_property
    def accept_queues(self) -> dict[int, sockets_pb2.Socket]:
        """Client socket inode -> the unix listener in whose accept queue it waits.

        A listener's ``pending`` (UNIX_DIAG_ICONS) lists the peers of its queued
        embryos: the clients that connected and were not accepted yet.
        """
        return {c: s for s in self.sockets if s.WhichOneof("kind") == "unix"
                for c in s.unix.pending}

    @cached_property
    def pipe_data(self) -> dict[int, bytes]:
        """Pipe inode -> its captured queued bytes (on the first reading fd of the dump)."""
        out: dict[int, bytes] = {}
        for table in self.fds:
            for fd in table.fds:
                if fd.WhichOneof("state") == "pipe" and fd.pipe.HasField("data"):
                    out.setdefault(fd.pipe.pipe_ino, fd.pipe.data)
        return out

    @cached_property
    def registers_by_pid(self) -> dict[int, regs_pb2.ProcessRegs]:
        return {r.pid: r for r in self.registers}

    @property
    def has_pages(self) -> bool:
        """Whether page contents were captured (dump --pages)."""
        return self.page_store is not None

    def read_memory(self, pid: int, addr: int, length: int) -> bytes:
        """The dumped bytes of ``pid`` at [addr, addr + length); NotCaptured where none."""
        from criu_model.pages.memory import read_memory

        return read_memory(self, pid, addr, length)

    @cached_property
    def mounts_by_ns(self) -> dict[int, mount_pb2.MountNamespace]:
        return {m.ns_inode: m for m in self.mounts}

    def children(self) -> dict[int, list[int]]:
        """pid -> child pids present in the snapshot, in snapshot order."""
        kids: dict[int, list[int]] = {p.pid: [] for p in self.processes}
        for p in self.processes:
            if p.ppid in kids and p.ppid != p.pid:
                kids[p.ppid].append(p.pid)
        return kids

    def subtree(self, roots: Iterable[int]) -> set[int]:
        """``roots`` present in the snapshot and all their descendants in it."""
        kids = self.children()
        out: set[int] = set()
        todo = [p for p in roots if p in self.by_pid]
        while todo:
            pid = todo.pop()
            if pid not in out:
                out.add(pid)
                todo.extend(kids.get(pid, ()))
        return out

    def tree_roots(self) -> list[int]:
        """Processes whose parent is not in the snapshot, in snapshot order."""
        pids = self.by_pid
        return [p.pid for p in self.processes if p.ppid not in pids]

    @property
    def thread_count(self) -> int:
        return sum(len(p.threads) for p in self.processes)

    @property
    def vma_count(self) -> int:
        return sum(len(m.vmas) for m in self.memory)

    @property
    def fd_count(self) -> int:
        return sum(len(t.fds) for t in self.fds)


def namespace_inode(proc: process_pb2.Process, ns_type: str) -> int | None:
    """Inode of one of the process's namespaces ("mnt", "pid", ...), if recorded."""
    for ns in proc.namespaces:
        if ns.type == ns_type:
            return ns.inode
    return None
