#!/usr/bin/env python3
"""Time `criu_model.diff` on two synthetic 1,000-process snapshots.

Each side: 1,000 processes (creds, 16 rlimits, 8 namespaces, 12 cgroups,
30 environ entries, 1-3 threads), 20,000 fds (regular files, pipes, unix
sockets; fd 0-2 shared along the tree), ~30 VMAs per process with page
counts. B differs from A in a handful of real places and, like a re-dump of
a live tree, in volatile fields of every process (CPU time, rss, page counts).
Target: under 1 s. Prints milliseconds; never fails on timing.

Usage: scripts/bench/bench_diff.py [N_PROCESSES] [ROUNDS]
"""

from __future__ import annotations

import statistics
import sys
import time

import criu_model
from criu_model.images.pb import files_pb2, inventory_pb2, mm_pb2, process_pb2, sockets_pb2
from criu_model.snapshot import Snapshot

FDS_PER_PROCESS = 20
RLIMITS = ("CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE", "MEMLOCK", "AS",
           "LOCKS", "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME")
NAMESPACES = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")


def _process(pid: int, ppid: int) -> process_pb2.Process:
    p = process_pb2.Process(pid=pid, ppid=ppid, pgid=1000, sid=1000, ns_pids=[pid],
                            ns_pgids=[1000], ns_sids=[1000], start_time=50_000 + pid,
                            comm=b"worker-%d" % pid, state="S", umask=0o22,
                            cmdline=[b"/usr/bin/worker", b"--id", str(pid).encode()],
                            environ=[b"VAR%d=value-%d" % (i, i) for i in range(30)],
                            utime_ticks=10, stime_ticks=5, vsize=1 << 30, rss_pages=2000)
    p.exe.path = b"/usr/bin/worker"
    p.cwd.path = b"/srv"
    p.root.path = b"/"
    p.creds.uids.extend([1000] * 4)
    p.creds.gids.extend([1000] * 4)
    p.creds.groups.extend([1000, 27, 100])
    p.creds.cap_bnd = (1 << 41) - 1
    for name in RLIMITS:
        p.rlimits.add(resource="RLIMIT_" + name, soft=1024, hard=4096)
    for i, ns in enumerate(NAMESPACES):
        p.namespaces.add(type=ns, inode=4026531834 + i, dev=4)
    for i in range(12):
        p.cgroups.add(hierarchy_id=i, controllers=f"ctl{i}", path=b"/system.slice/worker")
    for k in range(1 + pid % 3):
        p.threads.add(tid=pid if k == 0 else 500_000 + pid * 4 + k, comm=p.comm, state="S",
                      utime_ticks=3)
    p.shares.files, p.shares.fs, p.shares.sighand, p.shares.vm = pid, pid, pid, pid
    return p


def _fds(pid: int, sockets: list[sockets_pb2.Socket]) -> files_pb2.FdTable:
    table = files_pb2.FdTable(pid=pid)
    for n in range(FDS_PER_PROCESS):
        fd = table.fds.add(fd=n, flags=0o2, pos=n * 10, mnt_id=25, file_id=pid * 100 + n)
        if n < 3:  # the tty, inherited by everyone: one open file
            fd.kind, fd.path, fd.dev, fd.ino, fd.file_id = files_pb2.FD_TTY, b"/dev/pts/0", 5, 3, 1
            fd.tty.index, fd.tty.driver = 0, "pts"
        elif n % 5 == 0:
            fd.kind, fd.ino = files_pb2.FD_PIPE, 900_000 + pid * 100 + n
            fd.path = b"pipe:[%d]" % fd.ino
            fd.pipe.pipe_ino, fd.pipe.read_end, fd.pipe.queued_bytes = fd.ino, True, 0
        elif n % 7 == 0:
            inode = 700_000 + pid * 100 + n
            fd.kind, fd.ino, fd.path = files_pb2.FD_SOCKET, inode, b"socket:[%d]" % inode
            fd.socket.inode = inode
            sock = sockets_pb2.Socket(inode=inode, family=sockets_pb2.FAMILY_UNIX, type=1,
                                      state=1, cookie=inode, uid=1000, shutdown=0)
            sock.unix.peer_inode = inode + 1
            sock.meminfo.rcvbuf = sock.meminfo.sndbuf = 212992
            sockets.append(sock)
        else:
            fd.kind, fd.dev, fd.ino = files_pb2.FD_REGULAR, 2049, 10_000 + pid * 100 + n
            fd.path = b"/var/lib/worker/%d/data-%d.db" % (pid, n)
            fd.file.size, fd.file.mode, fd.file.dev, fd.file.ino = 4096, 0o100644, 2049, fd.ino
            fd.file.mtime_ns, fd.file.nlink = 1_700_000_000_000_000_000, 1
    return table


def _memory(pid: int) -> mm_pb2.MemoryMap:
    mm = mm_pb2.MemoryMap(pid=pid, page_counts_method="pagemap_scan")
    addr = 0x5555_0000_0000
    kinds = [mm_pb2.VMA_FILE] * 20 + [mm_pb2.VMA_ANON] * 6 + [
        mm_pb2.VMA_HEAP, mm_pb2.VMA_STACK, mm_pb2.VMA_VVAR, mm_pb2.VMA_VDSO]
    for i, kind in enumerate(kinds):
        v = mm.vmas.add(start=addr, end=addr + 0x21000, prot=5 if i % 3 == 0 else 1,
                        offset=i * 0x1000, kind=kind)
        if kind == mm_pb2.VMA_FILE:
            v.path = b"/usr/lib/libfoo%d.so" % (i // 4)
            v.dev_major, v.dev_minor, v.inode = 8, 1, 1000 + i // 4
            v.map_file_known, v.map_file_dev, v.map_file_ino = True, 2049, v.inode
        v.pages.resident, v.pages.file = 12, 10
        addr += 0x100000
    return mm


def build(n: int) -> Snapshot:
    procs, tables, mems, socks = [], [], [], []
    for i in range(n):
        pid = 1000 + i
        procs.append(_process(pid, 1 if i == 0 else 1000 + (i - 1) // 10))
        tables.append(_fds(pid, socks))
        mems.append(_memory(pid))
    inv = inventory_pb2.Inventory(format_major=1, format_minor=0, root_pids=[1000])
    return Snapshot(inventory=inv, processes=procs, memory=mems, fds=tables,
                    sockets=sorted(socks, key=lambda s: s.inode))


def mutate(snap: Snapshot) -> int:
    """Volatile noise everywhere plus a few real changes; returns the number of real ones."""
    for p in snap.processes:
        p.utime_ticks += 3
        p.rss_pages += 17
        p.threads[0].stime_ticks += 1
    for mm in snap.memory:
        for v in mm.vmas[::3]:
            v.pages.resident += 1
    for s in snap.sockets[::5]:
        s.rqueue = 10
    snap.processes[10].creds.cap_eff = 1
    snap.processes[20].pgid = 1020
    snap.fds[30].fds[7].pos += 100
    del snap.fds[40].fds[9]
    snap.memory[50].vmas[26].end += 0x10000
    snap.processes[60].namespaces[3].inode = 4026532999
    return 6


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    a, b = build(n), build(n)
    real = mutate(b)
    print(f"{n} processes, {sum(len(t.fds) for t in a.fds)} fds, "
          f"{sum(len(m.vmas) for m in a.memory)} VMAs, {len(a.sockets)} sockets per side")
    times, loud_times = [], []
    for _ in range(rounds):
        for snap in (a, b):  # cached indexes would flatter the later rounds
            for attr in ("by_pid", "fds_by_pid", "memory_by_pid", "sockets_by_inode"):
                snap.__dict__.pop(attr, None)
        t0 = time.perf_counter()
        result = criu_model.diff(a, b)
        times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        loud = criu_model.diff(a, b, include_volatile=True)
        loud_times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    same = criu_model.diff(a, a)
    self_ms = (time.perf_counter() - t0) * 1e3
    assert len(result.changes) == real, result.changes
    assert same.identical
    print(f"diff (volatile hidden): median {statistics.median(times) * 1e3:.0f} ms, "
          f"best {min(times) * 1e3:.0f} ms -> {len(result.changes)} changes (target < 1000 ms)")
    print(f"diff --all:             median {statistics.median(loud_times) * 1e3:.0f} ms "
          f"-> {len(loud.changes)} changes")
    print(f"diff of a snapshot with itself: {self_ms:.0f} ms")


if __name__ == "__main__":
    main()
