"""Dump orchestration: discover, freeze, collect, thaw. Writes nothing.

The result is an in-memory Snapshot; ``images.write`` puts it on disk. Keeping
the two apart lets ``diff --live`` compare against the live system without
touching the disk, and guarantees that a failed or interrupted dump never
produces a snapshot directory at all.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from criu_model import __version__
from criu_model.argtypes import parse_pid
from criu_model.collect.fds import (
    DEFAULT_GHOST_LIMIT,
    FdsSeen,
    GhostStore,
    collect_fds,
    settle_pipe_data,
)
from criu_model.collect.locks import may_wait_for_locks, read_proc_locks, waiting_locks
from criu_model.collect.maps import LineCache
from criu_model.collect.memory import FileIds, collect_memory
from criu_model.collect.mountinfo import collect_mountinfo
from criu_model.collect.nsowner import fill_ownership
from criu_model.collect.process import collect_process
from criu_model.collect.procfs import PROC_ROOT, ProcDir, read_all
from criu_model.collect.shares import fill_sharing
from criu_model.collect.sharing import NullSentinel
from criu_model.collect.sockdump import SocketDump
from criu_model.collect.stat import parse_stat
from criu_model.collect.tree import discover, scan
from criu_model.errors import AccessDenied, BadArgument, ProcessGone, UsageError
from criu_model.freeze import FreezeMethod, frozen
from criu_model.images import framing
from criu_model.images.pb import (
    files_pb2,
    inventory_pb2,
    mm_pb2,
    mount_pb2,
    process_pb2,
    regs_pb2,
)
from criu_model.snapshot import Snapshot, namespace_inode

_FREEZE_PB = {
    FreezeMethod.NONE: inventory_pb2.FREEZE_NONE,
    FreezeMethod.PTRACE: inventory_pb2.FREEZE_PTRACE,
    FreezeMethod.CGROUP: inventory_pb2.FREEZE_CGROUP,
}
# New processes may appear between discovery and freezing; after this many
# rounds of "freeze, rediscover, found more" we give up rather than loop.
_MAX_FREEZE_ROUNDS = 3
if TYPE_CHECKING:
    from criu_model.pages.capture import PageCapture
    from criu_model.progress import Report

# Test hook: seconds to hold the tree frozen before collecting, so tests can
# deliver SIGINT/SIGTERM or kill a target at a known point of the dump.
HOLD_ENV = "CRIU_MODEL_TEST_HOLD_FROZEN"


class _Collected(NamedTuple):
    processes: list[process_pb2.Process]
    memory: list[mm_pb2.MemoryMap]
    fds: list[files_pb2.FdTable]
    ghosts: list[files_pb2.GhostFile]
    sockets: SocketDump
    skipped: list[tuple[int, str]]


def _boot_time_ns(proc_root: str) -> int:
    for line in read_all(f"{proc_root}/stat").splitlines():
        if line.startswith(b"btime "):
            return int(line.split()[1]) * 1_000_000_000
    return 0


def _collect_all(pids: list[int], roots: set[int], proc_root: str, page_counts: bool,
                 ghost_limit: int, proc_locks: list[files_pb2.FileLock],
                 capture: PageCapture | None = None) -> _Collected:
    """Every collector over the frozen tree, then the passes over all of it.

    The zombie the sharing pass compares NULL objects with is forked first:
    by the time that pass needs it, it has exited (nobody waits for a new
    child to be scheduled, milliseconds on a busy machine).
    """
    with NullSentinel() as sentinel:
        return _collect_each(pids, roots, proc_root, page_counts, ghost_limit, proc_locks,
                             capture, sentinel)


def _collect_each(pids: list[int], roots: set[int], proc_root: str, page_counts: bool,
                  ghost_limit: int, proc_locks: list[files_pb2.FileLock],
                  capture: PageCapture | None, sentinel: NullSentinel) -> _Collected:
    file_ids: FileIds = {}  # one map_files stat per shared library, not per process
    line_cache = LineCache()  # forked workers repeat maps lines: decode each once
    processes: dict[int, process_pb2.Process] = {}
    memory: dict[int, mm_pb2.MemoryMap] = {}
    fds: dict[int, files_pb2.FdTable] = {}
    skipped: list[tuple[int, str]] = []
    ghosts = GhostStore()
    fstypes: dict[int, bytes] = {}  # mount id -> filesystem type, from the first mountinfo
    fds_seen: FdsSeen = {}  # forked processes hold the same fds: classify each once
    me = os.getpid()
    for pid in pids:
        if pid == me:
            # Dumping an ancestor of criu-model itself: we are busy, not state.
            skipped.append((pid, "the dumping process (criu-model itself) is not dumped"))
            continue
        try:
            proc = collect_process(pid, proc_root)
            mm = collect_memory(pid, proc_root, pages=page_counts, file_ids=file_ids,
                                line_cache=line_cache)
            table = collect_fds(pid, proc_root, ghost_limit=ghost_limit, ghosts=ghosts,
                                fstypes=fstypes, seen=fds_seen)
        except ProcessGone:
            skipped.append((pid, "exited during the dump"))
            continue
        processes[pid], memory[pid], fds[pid] = proc, mm, table
    if capture is not None:  # page contents after the layouts: the total is known first
        _capture_pages(capture, processes, memory, fds, skipped, proc_root)
    for table in fds.values():
        table.waiting_locks.extend(waiting_locks(proc_locks, table.pid))
    settle_pipe_data(list(fds.values()))
    fill_ownership(processes.values(), proc_root)
    sockets = _collect_sockets(list(fds.values()))
    stats = fill_sharing(list(processes.values()), list(fds.values()), sentinel)
    for pid in stats.gone_pids:
        if processes.pop(pid, None) is not None:
            skipped.append((pid, "exited during the dump"))
    # A process whose parent exited mid-dump was reparented out of the tree:
    # keep only what is still connected to a root, so the snapshot is a tree.
    kept: list[process_pb2.Process] = []
    connected: set[int] = set()
    for pid in pids:  # parents come before children
        proc = processes.get(pid)
        if proc is None:
            continue
        if pid in roots or proc.ppid in connected:
            connected.add(pid)
            kept.append(proc)
        else:
            skipped.append((pid, f"reparented to {proc.ppid} (outside the tree) during the dump"))
    return _Collected(kept, [memory[p.pid] for p in kept], [fds[p.pid] for p in kept],
                      ghosts.files(), sockets, skipped)


def _capture_pages(capture: PageCapture, processes: dict[int, process_pb2.Process],
                   memory: dict[int, mm_pb2.MemoryMap], fds: dict[int, files_pb2.FdTable],
                   skipped: list[tuple[int, str]], proc_root: str) -> None:
    """Store the pages of every live process; one that exits meanwhile is dropped."""
    live = [pid for pid, proc in processes.items() if proc.state not in "ZX"]
    capture.expected_bytes = sum(capture.expected(memory[pid].vmas) for pid in live)
    parents = {processes[pid].ppid for pid in live}  # each comes before its children
    for n, pid in enumerate(live, 1):
        capture.note = f"process {n}/{len(live)} (pid {pid})"
        mm = memory[pid]
        try:
            notes = capture.capture_process(pid, processes[pid].start_time, mm.vmas,
                                            f"{proc_root}/{pid}", ppid=processes[pid].ppid,
                                            referred=pid in parents)
        except ProcessGone:
            skipped.append((pid, "exited during the dump"))
            del processes[pid], memory[pid], fds[pid]
            continue
        for name, reason in notes:
            mm.unreadable.add(field=name, reason=reason)


def _collect_sockets(tables: list[files_pb2.FdTable]) -> SocketDump:
    """One sock_diag dump per family for the sockets the tree holds, joined by inode.

    A socket no family reported (another network namespace, a family without
    a diag handler) is marked unreadable on each fd that holds it.
    """
    inodes = {fd.socket.inode for t in tables for fd in t.fds if fd.HasField("socket")}
    if not inodes:
        return SocketDump()
    from criu_model.collect.sockets import collect_sockets  # only when needed

    dump = collect_sockets(inodes)
    for table in tables:
        for fd in table.fds:
            if fd.HasField("socket") and fd.socket.inode in dump.missing:
                probed = fd.socket.HasField("probe")
                fd.unreadable.add(field="socket", reason=(
                    "not reported by sock_diag (unbound or unconnected, another network "
                    "namespace, or a family without a diag handler)" + (
                        "; identified by getsockopt on a copy instead (socket.probe)"
                        if probed else "")))
    return dump


def _collect_registers(processes: list[process_pb2.Process], method: FreezeMethod,
                       proc_root: str) -> list[regs_pb2.ProcessRegs]:
    """CPU state of every thread: readable only from threads we hold in a ptrace-stop."""
    from criu_model.collect.regs import collect_registers, registers_not_captured

    if method is FreezeMethod.PTRACE:
        return [collect_registers(p.pid, [t.tid for t in p.threads], proc_root)
                for p in processes if p.state not in "ZX"]
    why = (f"--freeze {method.value}: registers are read only through ptrace, from "
           "threads the dump holds stopped")
    return [registers_not_captured(p.pid, why) for p in processes if p.state not in "ZX"]


def _restore_states(processes: list[process_pb2.Process], before: dict[int, str]) -> None:
    """Record each task's state as it was before we froze it.

    A task that died meanwhile (Z/X) keeps what it shows now: that is news.
    """
    for proc in processes:
        if proc.state not in "ZX" and proc.pid in before:
            proc.state = before[proc.pid]
        for thread in proc.threads:
            if thread.state not in "ZX" and thread.tid in before:
                thread.state = before[thread.tid]


def _collect_mounts(processes: list[process_pb2.Process], proc_root: str
                    ) -> list[mount_pb2.MountNamespace]:
    """mountinfo once per mount namespace, read from its first live member."""
    members: dict[int, list[int]] = {}
    for proc in processes:
        ino = namespace_inode(proc, "mnt")
        if ino is not None:
            members.setdefault(ino, []).append(proc.pid)
    result = []
    for ino, pids in members.items():
        ns: mount_pb2.MountNamespace | None = None
        reason = "every member exited before its mountinfo was read"
        for pid in pids:
            try:
                ns = collect_mountinfo(pid, proc_root)
                break
            except ProcessGone:
                continue
            except AccessDenied as err:
                reason = str(err)
                break
        if ns is None or ns.ns_inode != ino:
            ns = mount_pb2.MountNamespace(ns_inode=ino, read_from_pid=pids[0])
            ns.unreadable.add(field="mounts", reason=reason)
        result.append(ns)
    return result


def _open_parent(parent: str | os.PathLike[str], roots: list[int], proc_root: str
                 ) -> Snapshot:
    """The parent of an incremental page dump: a --pages snapshot of this same tree."""
    from criu_model.images import load

    snap = load(parent)
    where = os.fspath(parent)
    if not snap.inventory.pages_captured:
        raise UsageError(f"--parent {where} was dumped without --pages: it has no page "
                         "contents to compare with")
    if list(snap.inventory.root_pids) != roots:
        raise UsageError(f"--parent {where} is a snapshot of another tree (root pids "
                         f"{list(snap.inventory.root_pids)}, here {roots})")
    for pid in roots:
        before = snap.by_pid.get(pid)
        try:
            now = parse_stat(ProcDir(pid, proc_root).read("stat")).start_time
        except ProcessGone:
            continue
        if before is not None and before.start_time != now:
            raise UsageError(f"--parent {where} is a snapshot of another tree: pid {pid} there "
                             "is another process (its start time differs)")
    return snap


def _pid_max(proc_root: str) -> int | None:
    try:
        return int(read_all(f"{proc_root}/sys/kernel/pid_max"))
    except (OSError, ValueError):
        return None


def _check_root(pid: int, proc_root: str) -> None:
    """A root pid that can be dumped, or the one line saying why not (before freezing)."""
    proc = ProcDir(pid, proc_root)
    if not proc.exists():
        limit = _pid_max(proc_root)
        if limit is not None and pid >= limit:
            raise BadArgument(f"{pid} is not a valid pid (pid_max is {limit})")
        raise ProcessGone(pid, "no such process")
    try:
        kthread = parse_stat(proc.read("stat")).is_kthread
    except (ProcessGone, AccessDenied, ValueError):
        return   # gone meanwhile, or unreadable: the dump itself says so
    if kthread:
        raise UsageError(f"pid {pid} is a kernel thread: nothing to dump (it has no user "
                         "memory, files or registers of its own)")


def _drop_died(collected: _Collected, states_before: dict[int, str], roots: set[int],
               capture: PageCapture | None) -> None:
    """Leave out processes that were alive when frozen and are zombies now.

    A task killed mid-dump cannot go away while we hold it: ptrace keeps it
    a zombie until its tracer (the dumper) lets go, and its frozen parent could
    not reap it anyway. Its zombie state is the dump's doing, not the tree's,
    so it is skipped like a process that vanished; so are its children, which
    the kernel reparented when it died. A process that was a zombie when frozen
    is a real zombie and stays. Without a freeze (no states) nothing is known.
    """
    dead = frozenset("ZX")
    died = {p.pid: states_before[p.pid] for p in collected.processes
            if p.state in dead and states_before.get(p.pid, "Z") not in dead}
    if not died:
        return
    dropped: set[int] = set()
    for proc in collected.processes:   # parents come before children
        if proc.pid in died:
            reason = f"killed during the dump (it was {died[proc.pid]} when frozen)"
        elif proc.ppid in dropped and proc.pid not in roots:
            reason = f"its parent {proc.ppid} was killed during the dump"
        else:
            continue
        dropped.add(proc.pid)
        collected.skipped.append((proc.pid, reason))
        if capture is not None:
            capture.owners.pop((proc.pid, 0, 0), None)
    collected.processes[:] = [p for p in collected.processes if p.pid not in dropped]
    collected.memory[:] = [m for m in collected.memory if m.pid not in dropped]
    collected.fds[:] = [t for t in collected.fds if t.pid not in dropped]


def dump(root_pids: Sequence[int | str], *, freeze: FreezeMethod | str = FreezeMethod.PTRACE,
         page_counts: bool = True, pages: bool = False, pages_dir: str | None = None,
         parent: str | os.PathLike[str] | None = None,
         ghost_limit: int = DEFAULT_GHOST_LIMIT, proc_root: str = PROC_ROOT,
         progress: Report | None = None) -> Snapshot:
    """Dump the trees under `root_pids` into an in-memory Snapshot.

    Targets are frozen with `freeze` while their state is read and always
    thawed/detached before this returns or raises. Contents of deleted files
    and memfds up to `ghost_limit` bytes each are captured. ``page_counts``
    fills the per-VMA page counts; ``pages`` also captures page contents,
    streamed into an unnamed file in ``pages_dir`` (default: the temporary
    directory; give the snapshot's parent directory so writing it links the
    file instead of copying it). ``parent`` (a --pages snapshot of the same
    tree) makes the dump incremental: pages unchanged since then are not stored.
    ``progress(read, expected, note)`` hears how many page bytes were read so far.
    """
    started_wall = time.time_ns()
    started = time.perf_counter_ns()
    roots = list(dict.fromkeys(parse_pid(p) for p in root_pids))
    if not roots:
        raise UsageError("no pid given")
    method = FreezeMethod(freeze)
    for pid in roots:
        _check_root(pid, proc_root)
    if parent is not None and not pages:
        raise UsageError("--parent needs --pages (an incremental dump of page contents)")
    parent_snap = _open_parent(parent, roots, proc_root) if parent is not None else None
    capture: PageCapture | None = None
    if pages:  # the page machinery is imported only by dumps that store pages
        from criu_model.pages.capture import PageCapture
        from criu_model.pages.sink import PageSink

        capture = PageCapture(PageSink(pages_dir), parent=(
            parent_snap.page_store.parent_owner
            if parent_snap is not None and parent_snap.page_store is not None else None),
            progress=progress)
    try:
        snap = _dump(roots, method, page_counts, ghost_limit, proc_root, capture,
                     started_wall, started)
        if capture is not None:
            capture.sink.drain()  # every page written (the targets are thawed already)
    except BaseException:
        if capture is not None:
            capture.sink.close()
        if parent_snap is not None and parent_snap.page_store is not None:
            parent_snap.page_store.close()
        raise
    if capture is not None:
        inv = snap.inventory
        inv.pages_captured = True
        inv.page_stats.CopyFrom(inventory_pb2.PageStats(
            **capture.stats.fields(capture.sink.bytes_written)))
        inv.collectors.add(name="pages_data", ran=True,
                           reason=f"{capture.stats.stored} pages stored")
        snap.pagemap = capture.messages()
        snap.page_sink = capture.sink
        from criu_model.pages.store import PageStore

        snap.page_store = PageStore(snap.pagemap, capture.sink.fd, capture.sink.bytes_written,
                                    f"{capture.sink.directory}/(pages of the dump)",
                                    owns_fd=False)
        if parent_snap is not None:
            snap.parent_dir = Path(os.fspath(parent)).absolute()
            record = next(r for r in parent_snap.inventory.images if r.name == "pagemap.img")
            inv.parent_snapshot = str(snap.parent_dir)
            inv.parent_pagemap_sha256 = record.sha256
            inv.parent_time_ns = parent_snap.inventory.time_ns
            snap.page_store.parent = parent_snap.page_store  # reads inherited pages
    return snap


def _dump(roots: list[int], method: FreezeMethod, page_counts: bool, ghost_limit: int,
          proc_root: str, capture: PageCapture | None, started_wall: int,
          started: int) -> Snapshot:
    for attempt in range(_MAX_FREEZE_ROUNDS):
        before = scan(proc_root)
        pids = discover(roots, proc_root, found=before)
        # The lock requests the tree waits on are read before the freeze: stopping a
        # thread interrupts its wait, which takes its request off /proc/locks. That
        # read costs an RCU grace period (6-20 ms), so only when a thread may wait.
        proc_locks = (read_proc_locks(proc_root) if may_wait_for_locks(pids, proc_root)
                      else [])
        with frozen(pids, method, proc_root) as report:
            now = discover(roots, proc_root, found=scan(proc_root, before))
            if set(now) - set(pids) and attempt + 1 < _MAX_FREEZE_ROUNDS:
                continue  # the tree grew before it was frozen: freeze the new members too
            hold = float(os.environ.get(HOLD_ENV, "0") or 0)
            if hold > 0:
                # Tests wait for this line: the tree is discovered (and frozen) now.
                print(f"criu-model: test hook: holding for {hold} s", file=sys.stderr,
                      flush=True)
                time.sleep(hold)
            collected = _collect_all(pids, set(roots), proc_root, page_counts, ghost_limit,
                                     proc_locks, capture)
            _drop_died(collected, report.states_before, set(roots), capture)
            _restore_states(collected.processes, report.states_before)
            registers = (_collect_registers(collected.processes, method, proc_root)
                         if capture is not None else [])
            mounts = _collect_mounts(collected.processes, proc_root)
        break
    if not collected.processes:
        raise ProcessGone(roots[0], "every process of the tree exited during the dump")

    inv = inventory_pb2.Inventory(
        format_major=framing.FORMAT_MAJOR,
        format_minor=framing.FORMAT_MINOR,
        tool_version=__version__,
        kernel_release=os.uname().release,
        hostname=os.uname().nodename,  # gethostname(2) is this on Linux
        time_ns=started_wall,
        root_pids=roots,
        freeze_method=_FREEZE_PB[method],
        frozen_at_ns=report.frozen_at_ns,
        frozen_for_ns=report.frozen_for_ns,
        boot_time_ns=_boot_time_ns(proc_root),
        clock_ticks=os.sysconf("SC_CLK_TCK"),
        page_size=os.sysconf("SC_PAGE_SIZE"),
    )
    # Only processes absent from the snapshot are "skipped"; a zombie the
    # freezer left alone is still dumped. Collection's reason is the final word.
    dumped = {p.pid for p in collected.processes}
    skipped = {pid: why for pid, why in report.skipped if pid not in dumped}
    skipped.update(collected.skipped)
    for pid, reason in skipped.items():
        inv.skipped.add(pid=pid, reason=reason)
    methods = sorted({m.page_counts_method for m in collected.memory if m.page_counts_method})
    inv.collectors.add(name="tree", ran=True)
    inv.collectors.add(name=f"freeze:{method.value}", ran=True)
    inv.collectors.add(name="process", ran=True)
    inv.collectors.add(name="memory", ran=True)
    inv.collectors.add(name="pages", ran=page_counts and bool(methods),
                       reason=("method: " + ", ".join(methods)) if methods else
                       ("disabled (--no-page-counts)" if not page_counts
                        else "pagemap unreadable"))
    if capture is None:
        inv.collectors.add(name="registers", ran=False,
                           reason="a state-only dump: registers are captured with --pages")
    else:
        inv.collectors.add(name="registers", ran=method is FreezeMethod.PTRACE,
                           reason="" if method is FreezeMethod.PTRACE else
                           f"--freeze {method.value}: registers need the ptrace freeze")
    inv.collectors.add(name="mountinfo", ran=True)
    inv.collectors.add(name="fds", ran=True, reason=f"ghost limit {ghost_limit} bytes")
    for run in collected.sockets.families:
        inv.collectors.add(name=f"sockets.{run.name}", ran=run.collected, reason=run.reason)
    if not collected.sockets.families:
        inv.collectors.add(name="sockets", ran=False, reason="the tree holds no sockets")
    inv.dump_duration_ns = time.perf_counter_ns() - started
    return Snapshot(inventory=inv, processes=collected.processes, memory=collected.memory,
                    mounts=mounts, fds=collected.fds, ghosts=collected.ghosts,
                    sockets=sorted(collected.sockets.sockets.values(), key=lambda s: s.inode),
                    registers=registers)
