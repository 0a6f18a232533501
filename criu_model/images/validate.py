"""Cross-reference checks on a loaded snapshot.

Framing and protobuf parsing prove each file is intact; these checks prove
the files agree with each other, so show/diff/plan never build on a snapshot
that refers to things it does not contain.
"""

from __future__ import annotations

from pathlib import Path

from criu_model.errors import InconsistentImage
from criu_model.images.pb import files_pb2
from criu_model.images.validate_regs import validate_registers
from criu_model.snapshot import Snapshot, namespace_inode


def _at(offsets: dict[str, list[int]], name: str, index: int) -> int | None:
    offs = offsets.get(name)
    return offs[index] if offs and index < len(offs) else None


def validate(snap: Snapshot, root: Path, offsets: dict[str, list[int]]) -> None:
    """Raise InconsistentImage on the first broken cross-reference."""
    _validate(snap, root, offsets)
    validate_pagemap(snap, root, offsets)
    validate_registers(snap, root, offsets)


def _validate(snap: Snapshot, root: Path, offsets: dict[str, list[int]]) -> None:
    inv = snap.inventory
    proc_img = str(root / "processes.img")
    seen: set[int] = set()
    for i, proc in enumerate(snap.processes):
        if proc.pid in seen:
            raise InconsistentImage(proc_img, _at(offsets, "processes.img", i),
                                    f"pid {proc.pid} appears twice")
        seen.add(proc.pid)
        if proc.threads and proc.threads[0].tid != proc.pid:
            raise InconsistentImage(proc_img, _at(offsets, "processes.img", i),
                                    f"pid {proc.pid}: first thread is {proc.threads[0].tid}, "
                                    "expected the thread-group leader")
        if proc.ns_pids and proc.ns_pids[0] != proc.pid:
            raise InconsistentImage(proc_img, _at(offsets, "processes.img", i),
                                    f"pid {proc.pid}: ns_pids starts with {proc.ns_pids[0]}")
        # NSpgid/NSsid list the ids outermost first: the first is the pgid/sid itself.
        for name, levels, value in (("pgid", proc.ns_pgids, proc.pgid),
                                    ("sid", proc.ns_sids, proc.sid)):
            if levels and levels[0] != value:
                raise InconsistentImage(proc_img, _at(offsets, "processes.img", i),
                                        f"pid {proc.pid}: ns_{name}s starts with {levels[0]}, "
                                        f"but its {name} is {value}")
    _validate_threads(snap, proc_img, offsets)

    roots = set(inv.root_pids)
    skipped = {s.pid for s in inv.skipped}
    for pid in roots:
        if pid not in seen and pid not in skipped:
            raise InconsistentImage(str(root / "inventory.img"), None,
                                    f"root pid {pid} is neither dumped nor recorded as skipped")
    for i, proc in enumerate(snap.processes):
        if proc.pid not in roots and proc.ppid not in seen:
            raise InconsistentImage(proc_img, _at(offsets, "processes.img", i),
                                    f"pid {proc.pid} has parent {proc.ppid}, which is not in "
                                    "the snapshot and the process is not a root")

    mm_img = str(root / "mm.img")
    mm_seen: set[int] = set()
    for i, mm in enumerate(snap.memory):
        if mm.pid not in seen or mm.pid in mm_seen:
            what = "is not a dumped process" if mm.pid not in seen else "has two memory maps"
            raise InconsistentImage(mm_img, _at(offsets, "mm.img", i), f"pid {mm.pid} {what}")
        mm_seen.add(mm.pid)
        prev_end = 0
        for vma in mm.vmas:
            if vma.end <= vma.start or vma.start < prev_end:
                raise InconsistentImage(mm_img, _at(offsets, "mm.img", i),
                                        f"pid {mm.pid}: VMA {vma.start:#x}-{vma.end:#x} is empty, "
                                        "unsorted or overlaps the previous one")
            prev_end = vma.end

    mnt_namespaces = {m.ns_inode for m in snap.mounts}
    for i, proc in enumerate(snap.processes):
        ino = namespace_inode(proc, "mnt")
        if ino is not None and ino not in mnt_namespaces:
            raise InconsistentImage(proc_img, _at(offsets, "processes.img", i),
                                    f"pid {proc.pid} is in mount namespace {ino}, which "
                                    "mounts.img does not hold")

    fds_img = str(root / "fds.img")
    ghost_ids = {g.id for g in snap.ghosts}
    socket_inodes = {s.inode for s in snap.sockets}
    fd_seen: set[int] = set()
    for i, table in enumerate(snap.fds):
        if table.pid not in seen or table.pid in fd_seen:
            what = "is not a dumped process" if table.pid not in seen else "has two fd tables"
            raise InconsistentImage(fds_img, _at(offsets, "fds.img", i),
                                    f"fd table of pid {table.pid}: the pid {what}")
        fd_seen.add(table.pid)
        numbers: set[int] = set()
        for fd in table.fds:
            if fd.fd in numbers:
                raise InconsistentImage(fds_img, _at(offsets, "fds.img", i),
                                        f"fd table of pid {table.pid}: fd {fd.fd} appears twice")
            numbers.add(fd.fd)
            if fd.HasField("socket") and fd.socket.inode not in socket_inodes and \
                    not any(u.field == "socket" for u in fd.unreadable):
                raise InconsistentImage(fds_img, _at(offsets, "fds.img", i),
                                        f"pid {table.pid} fd {fd.fd} is socket "
                                        f"{fd.socket.inode}, which sockets.img does not hold")
            ghost = _ghost_ref(fd)
            if ghost is not None and ghost.ghost_id not in ghost_ids:
                raise InconsistentImage(fds_img, _at(offsets, "fds.img", i),
                                        f"pid {table.pid} fd {fd.fd} refers to ghost file "
                                        f"{ghost.ghost_id}, which ghosts.img does not hold")

    if snap.fds:   # the dumper writes a table for every process (empty for a zombie)
        for i, mm in enumerate(snap.memory):
            proc = snap.by_pid[mm.pid]
            if mm.vmas and proc.state not in "ZX" and mm.pid not in fd_seen:
                at = _at(offsets, "mm.img", i)
                where = f"mm.img entry {i}" + ("" if at is None else f" at byte {at}")
                raise InconsistentImage(fds_img, None,
                                        f"pid {mm.pid} is a live process with a memory map "
                                        f"({where}) but has no fd table")


def _validate_threads(snap: Snapshot, proc_img: str, offsets: dict[str, list[int]]) -> None:
    """Every tid names one thread of one process: never another process's pid, never twice."""
    pids = {proc.pid for proc in snap.processes}
    owner: dict[int, int] = {}
    for i, proc in enumerate(snap.processes):
        for thread in proc.threads:
            if thread.tid != proc.pid and thread.tid in pids:
                raise InconsistentImage(proc_img, _at(offsets, "processes.img", i),
                                        f"pid {proc.pid}: thread {thread.tid} is also the pid "
                                        "of another process")
            if thread.tid in owner:
                other = owner[thread.tid]
                whose = "its own" if other == proc.pid else f"pid {other}'s"
                raise InconsistentImage(proc_img, _at(offsets, "processes.img", i),
                                        f"pid {proc.pid}: thread {thread.tid} is also one of "
                                        f"{whose} threads")
            owner[thread.tid] = proc.pid


def _ghost_ref(fd: files_pb2.Fd) -> files_pb2.GhostRef | None:
    """The ghost (captured contents) reference of a deleted file or memfd, if any."""
    if fd.HasField("file") and fd.file.HasField("ghost"):
        return fd.file.ghost
    if fd.HasField("memfd") and fd.memfd.HasField("ghost"):
        return fd.memfd.ghost
    return None


def validate_pagemap(snap: Snapshot, root: Path, offsets: dict[str, list[int]]) -> None:
    """Every process owner of pagemap.img is a dumped process (one start time each)."""
    path = str(root / "pagemap.img")
    for i, runs in enumerate(snap.pagemap):
        if runs.pid and runs.pid not in snap.by_pid:
            raise InconsistentImage(path, _at(offsets, "pagemap.img", i),
                                    f"page runs of pid {runs.pid}, which is not a dumped process")
        if runs.pid and runs.start_time != snap.by_pid[runs.pid].start_time:
            raise InconsistentImage(path, _at(offsets, "pagemap.img", i),
                                    f"page runs of pid {runs.pid} carry another start time")
        if not runs.pid and not runs.object_ino:
            raise InconsistentImage(path, _at(offsets, "pagemap.img", i),
                                    "page runs with neither a pid nor a shared object")
