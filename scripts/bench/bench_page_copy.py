#!/usr/bin/env python3
"""Ways to move a target's pages into a page file, measured side by side in one run.

    scripts/bench/bench_page_copy.py [--mib N] [--runs N] [--dir /dev/shm]

A child maps N MiB of private anonymous memory and writes every page; each
method copies all of it into a fresh file in --dir (tmpfs by default), timed
in this process (no interpreter start), median of --runs, with the ratio to
the first (the baseline: process_vm_readv into one reused 1 MiB buffer, then
write). Prints a table; never fails on a timing.

- readv+write: the baseline.
- readv+write, writer thread: what criu_model/pages/sink.py does (a ring of
  three buffers; reading the next megabyte overlaps writing the last).
- /proc/PID/mem pread+write: the path for pages that may be shared (it does
  not pin, so it never makes the kernel unshare a copy-on-write page).
- mmap of the output: ftruncate, mmap MAP_SHARED, process_vm_readv straight
  into the mapping (no write; the kernel allocates the file's pages on fault).
- vmsplice+splice: readv into the buffer, vmsplice it into a pipe, splice the
  pipe into the file.
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from criu_model.kernel.vmread import IoVec, RemoteReader

CHUNK = 1 << 20
libc = ctypes.CDLL(None, use_errno=True)
libc.vmsplice.argtypes = (ctypes.c_int, ctypes.POINTER(IoVec), ctypes.c_ulong, ctypes.c_uint)
libc.vmsplice.restype = ctypes.c_ssize_t

TARGET = r"""
import mmap, sys, ctypes
size = int(sys.argv[1])
m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for off in range(0, size, 4096):
    m[off:off + 8] = off.to_bytes(8, "little")
anchor = ctypes.c_char.from_buffer(m)
print(ctypes.addressof(anchor), flush=True)
sys.stdin.read()
"""


def readv_write(pid: int, addr: int, size: int, out: int) -> None:
    r = RemoteReader(pid, CHUNK)
    for off in range(0, size, CHUNK):
        n = r.read([(addr + off, CHUNK)])
        os.write(out, r.view[:n])


def readv_write_thread(pid: int, addr: int, size: int, out: int) -> None:
    r = RemoteReader(pid, CHUNK, buffers=3)
    q: queue.SimpleQueue[tuple[memoryview, threading.Event] | None] = queue.SimpleQueue()

    def writer() -> None:
        while (item := q.get()) is not None:
            os.write(out, item[0])
            item[1].set()

    t = threading.Thread(target=writer)
    t.start()
    for off in range(0, size, CHUNK):
        n = r.read([(addr + off, CHUNK)])
        done = r.hand_off()
        q.put((r.view[:n], done))
        r.rotate()
    q.put(None)
    t.join()


def mem_pread_write(pid: int, addr: int, size: int, out: int) -> None:
    fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    try:
        for off in range(0, size, CHUNK):
            n = os.preadv(fd, [view], addr + off)
            os.write(out, view[:n])
    finally:
        os.close(fd)


def mmap_output(pid: int, addr: int, size: int, out: int) -> None:
    os.ftruncate(out, size)
    m = mmap.mmap(out, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    anchor = ctypes.c_char.from_buffer(m)
    base = ctypes.addressof(anchor)
    local, remote = IoVec(), IoVec()
    try:
        for off in range(0, size, CHUNK):
            local.iov_base, local.iov_len = base + off, CHUNK
            remote.iov_base, remote.iov_len = addr + off, CHUNK
            libc.process_vm_readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    finally:
        del anchor
        m.close()


def vmsplice_splice(pid: int, addr: int, size: int, out: int) -> None:
    r = RemoteReader(pid, CHUNK)
    rfd, wfd = os.pipe()
    try:
        import fcntl
        fcntl.fcntl(wfd, 1031, CHUNK)  # F_SETPIPE_SZ: the whole chunk fits in the pipe
        iov = IoVec()
        pos = 0
        for off in range(0, size, CHUNK):
            n = r.read([(addr + off, CHUNK)])
            done = 0
            while done < n:  # the pipe may take less than asked
                iov.iov_base, iov.iov_len = ctypes.addressof(r.buffer) + done, n - done
                left = libc.vmsplice(wfd, ctypes.byref(iov), 1, 0)
                done += left
                while left > 0:
                    moved = os.splice(rfd, out, left, offset_dst=pos)
                    pos += moved
                    left -= moved
    finally:
        os.close(rfd)
        os.close(wfd)


METHODS: list[tuple[str, Callable[[int, int, int, int], None]]] = [
    ("readv+write (baseline)", readv_write),
    ("readv+write, writer thread (ours)", readv_write_thread),
    ("/proc/PID/mem pread+write", mem_pread_write),
    ("mmap of the output", mmap_output),
    ("vmsplice+splice", vmsplice_splice),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=512)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default="/dev/shm")
    args = ap.parse_args()
    size = args.mib << 20
    child = subprocess.Popen([sys.executable, "-c", TARGET, str(size)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    path = Path(args.dir) / f".bench-page-copy-{os.getpid()}"
    try:
        addr = int(child.stdout.readline())  # type: ignore[union-attr]
        times: dict[str, list[float]] = {name: [] for name, _ in METHODS}
        for _ in range(args.runs):
            for name, fn in (METHODS if _ % 2 == 0 else METHODS[::-1]):  # alternating order
                out = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    t = time.perf_counter()
                    fn(child.pid, addr, size, out)
                    times[name].append(time.perf_counter() - t)
                    if os.fstat(out).st_size != size:
                        print(f"  {name}: wrote {os.fstat(out).st_size} bytes, not {size}")
                finally:
                    os.close(out)
                    path.unlink()
        base = statistics.median(times[METHODS[0][0]])
        print(f"{args.mib} MiB to {args.dir}, median of {args.runs} (seconds; GiB/s; vs baseline)")
        for name, _ in METHODS:
            med = statistics.median(times[name])
            print(f"  {name:<36} {med:7.3f} s  {size / med / 2**30:5.2f} GiB/s  {med / base:5.2f}x")
    finally:
        child.kill()
        child.wait()
        if path.exists():
            path.unlink()


if __name__ == "__main__":
    main()
