"""The in-memory snapshot: the protobuf messages themselves, plus indexes.

There is no parallel dataclass model: collectors fill the messages, images
write them, and show/diff/plan read them. Indexes are derived on demand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

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


@dataclass
class Snapshot:
    inventory: inventory_pb2.Inventory
    processes: list[process_pb2.Process] = field(default_factory=list)
    memory: list[mm_pb2.MemoryMap] = field(default_factory=list)
    mounts: list[mount_pb2.MountNamespace] = field(default_factory=list)
    fds: list[files_pb2.FdTable] = field(default_factory=list)
    ghosts: list[files_pb2.GhostFile] = field(default_factory=list)
    sockets: list[sockets_pb2.Socket] = field(default_factory=list)  # by inode, ascending
    registers: list[regs_pb2.ProcessRegs] = field(default_factory=list)  # regs.img
    pagemap: list[pages_pb2.PageRuns] = field(default_factory=list)  # pagemap.img
    # Page contents (dump --pages): read through page_store; a fresh dump's
    # data is still in page_sink (an unnamed file) until images.write links it.
    page_store: PageStore | None = None
    page_sink: PageSink | None = None
    parent_dir: Path | None = None  # the parent snapshot (incremental page dumps), absolute

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
