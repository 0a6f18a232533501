#!/usr/bin/env python3
"""The floor for a Python page dumper, timed by bench_pages.py as a whole process.

    pages_floor.py PID ADDR SIZE OUT [CHUNK] [--fsync] [--threads]

Reads SIZE bytes at ADDR of process PID with process_vm_readv, CHUNK bytes
(default 1 MiB) per call into one reused buffer, and write()s each chunk to
OUT (a new file, 0600). --fsync: fsync it at the end, as criu-model's writer
does (free on tmpfs, the disk's write time on ext4). --threads: one thread
reads into a ring of 4 buffers while another writes them (both calls release
the GIL), so reading and writing overlap as in a dumper with a writer thread.
No freezing, no page map, no hashing: only moving the bytes. Imports nothing
but ctypes and os (and threading with --threads), so its start-up is the
interpreter's.
"""

import ctypes
import os
import sys


class IoVec(ctypes.Structure):
    _fields_ = (("base", ctypes.c_void_p), ("len", ctypes.c_size_t))


def reader(pid, addr, size, chunk):
    libc = ctypes.CDLL(None, use_errno=True)
    readv = libc.process_vm_readv
    readv.restype = ctypes.c_ssize_t
    readv.argtypes = (ctypes.c_int, ctypes.POINTER(IoVec), ctypes.c_ulong,
                      ctypes.POINTER(IoVec), ctypes.c_ulong, ctypes.c_ulong)
    local, remote = IoVec(0, chunk), IoVec(0, chunk)

    def read_into(buf, done):
        n = min(chunk, size - done)
        local.base, local.len = ctypes.addressof(buf), n
        remote.base, remote.len = addr + done, n
        got = readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
        if got <= 0:
            err = ctypes.get_errno()
            raise SystemExit(f"process_vm_readv at {addr + done:#x}: {os.strerror(err)}")
        return got
    return read_into


def write_all(fd, view, n):
    pos = 0
    while pos < n:
        pos += os.write(fd, view[pos:n])


def copy_simple(read_into, fd, size, chunk):
    buf = ctypes.create_string_buffer(chunk)
    view = memoryview(buf).cast("B")
    done = 0
    while done < size:
        got = read_into(buf, done)
        write_all(fd, view, got)
        done += got


def copy_threaded(read_into, fd, size, chunk, depth=4):
    import queue
    import threading

    bufs = [ctypes.create_string_buffer(chunk) for _ in range(depth)]
    free, full = queue.Queue(), queue.Queue()
    for i in range(depth):
        free.put(i)
    failed = []

    def write_loop():
        try:
            while True:
                item = full.get()
                if item is None:
                    return
                i, n = item
                write_all(fd, memoryview(bufs[i]).cast("B"), n)
                free.put(i)
        except OSError as err:
            failed.append(err)
            free.put(-1)

    writer = threading.Thread(target=write_loop)
    writer.start()
    try:
        done = 0
        while done < size:
            i = free.get()
            if i < 0:
                break
            got = read_into(bufs[i], done)
            full.put((i, got))
            done += got
    finally:
        full.put(None)
        writer.join()
    if failed:
        raise failed[0]


def main():
    argv = [a for a in sys.argv[1:] if not a.startswith("--")]
    flags = {a for a in sys.argv[1:] if a.startswith("--")}
    pid, addr, size = int(argv[0]), int(argv[1]), int(argv[2])
    out = argv[3]
    chunk = int(argv[4]) if len(argv) > 4 else 1 << 20
    read_into = reader(pid, addr, size, chunk)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        if "--threads" in flags:
            copy_threaded(read_into, fd, size, chunk)
        else:
            copy_simple(read_into, fd, size, chunk)
        if "--fsync" in flags:
            os.fsync(fd)
    finally:
        os.close(fd)


if __name__ == "__main__":
    main()
