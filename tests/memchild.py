"""A real two-process tree with known memory contents, for the page tests.

Parent side::

    with spawn_mem_tree(tmp_path) as tree:
        tree.root.pid, tree.kid.pid, tree.root.regions["anon"]   # (addr, length, sha256)
        tree.command("write 5")      # root rewrites 5 pages of "anon", reports again
        tree.command("touch 40 8")   # a fresh stamp into pages 40..47 of "anon"

Child side (this file run as a script, ``python memchild.py REPORT_FD DIR``):
the root maps and fills, then forks the kid (which shares everything
copy-on-write and writes KID_WRITES pages of "anon" itself):

- ``anon``: 4 MiB private anonymous, pages 0..ANON_PAGES-1 written with a
  distinct pattern; page ZERO_PAGE read only (maps the shared zero page);
  page UNTOUCHED never accessed; NEEDLE planted at NEEDLE_OFFSET;
- ``heap``: 48 KiB from malloc (glibc's brk heap), filled;
- ``stack``: argv and the environment strings at the top of [stack] (stable);
- ``shared``: 1 MiB MAP_SHARED|MAP_ANONYMOUS, first 256 KiB written (root only);
- ``memfd``: a 1 MiB memfd mapped MAP_SHARED, first 128 KiB written;
- ``private_file``: a 64 KiB file mapped MAP_PRIVATE, pages 1 and 3 written
  (written copies), the others clean file pages;
- ``shared_file``: a 16 KiB file mapped MAP_SHARED (its contents are the file's).

Each process reports the sha256 of each region, computed from its own
memory, then blocks reading commands (the root on stdin, the kid on nothing).
Teardown kills both, even when the test failed.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import mmap
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")
ANON_SIZE = 4 << 20
ANON_PAGES = 512           # written pages of "anon"
ZERO_PAGE = 600            # read, never written: the zero page
UNTOUCHED = 700            # never accessed
KID_WRITES = (5, 6, 100)   # pages of "anon" the kid writes after the fork
WRITE_BASE = 200           # "write N" rewrites pages WRITE_BASE.. in the root
NEEDLE = b"CRIU-MODEL-NEEDLE-7f3a9c"
NEEDLE_OFFSET = 77 * PAGE + 123


@dataclass
class MemProc:
    role: str
    pid: int
    regions: dict[str, tuple[int, int, str]] = field(default_factory=dict)


@dataclass
class MemTree:
    proc: subprocess.Popen[bytes]
    report: int
    root: MemProc = field(default_factory=lambda: MemProc("root", 0))
    kid: MemProc = field(default_factory=lambda: MemProc("kid", 0))

    def _line(self, timeout: float = 20.0) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        buf = b""
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.report], [], [], left)[0]:
                raise TimeoutError("memchild did not report")
            chunk = os.read(self.report, 1)
            if not chunk:
                raise RuntimeError("memchild died")
            buf += chunk
        return json.loads(buf)

    def _take(self, msg: dict[str, object]) -> None:
        proc = self.root if msg["role"] == "root" else self.kid
        proc.pid = int(msg["pid"])  # type: ignore[arg-type]
        proc.regions = {k: tuple(v) for k, v in msg["regions"].items()}  # type: ignore[union-attr,misc]

    def command(self, text: str) -> None:
        """Send one command to the root and wait for its new report and its sleep."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()
        self._take(self._line())
        _wait_asleep(self.root.pid)


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return f.read().rsplit(b")", 1)[1].split()[0].decode()


def _wait_asleep(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tids = os.listdir(f"/proc/{pid}/task")
        if all(_state_task(pid, int(t)) == "S" for t in tids):
            return
        time.sleep(0.005)
    raise TimeoutError(f"pid {pid} did not fall asleep")


def _state_task(pid: int, tid: int) -> str:
    with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
        return f.read().rsplit(b")", 1)[1].split()[0].decode()


@contextlib.contextmanager
def spawn_mem_tree(directory: Path) -> Iterator[MemTree]:
    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, __file__, str(w), str(directory)],
                            stdin=subprocess.PIPE, pass_fds=(w,))
    os.close(w)
    tree = MemTree(proc, r)
    try:
        for _ in range(2):
            tree._take(tree._line())
        _wait_asleep(tree.root.pid)
        _wait_asleep(tree.kid.pid)
        yield tree
    finally:
        for pid in (tree.kid.pid, tree.root.pid):
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
        proc.kill()
        proc.wait()
        os.close(r)


# ------------------------------------------------------------------ child side


def _addr(m: mmap.mmap) -> int:
    anchor = ctypes.c_char.from_buffer(m)
    try:
        return ctypes.addressof(anchor)
    finally:
        del anchor


def _sha(addr: int, length: int) -> str:
    return hashlib.sha256(ctypes.string_at(addr, length)).hexdigest()


def _page(i: int, salt: bytes) -> bytes:
    return (salt + i.to_bytes(4, "little")) * (PAGE // (len(salt) + 4)) + bytes(
        PAGE % (len(salt) + 4))


def _stack_top() -> tuple[int, int]:
    """argv and the environment strings at the top of [stack] (stat fields 48-51):
    stack memory that no running frame changes."""
    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    arg_start, env_end = int(fields[45]), int(fields[48])  # fields 48 and 51 of stat(5)
    return arg_start, env_end - arg_start


def _child(report: int, directory: Path) -> None:
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    anon = mmap.mmap(-1, ANON_SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    for i in range(ANON_PAGES):
        anon[i * PAGE:(i + 1) * PAGE] = _page(i, b"anon")
    anon[NEEDLE_OFFSET:NEEDLE_OFFSET + len(NEEDLE)] = NEEDLE
    _ = anon[ZERO_PAGE * PAGE]
    heap = libc.malloc(48 << 10)
    ctypes.memmove(heap, b"heap-pattern!" * ((48 << 10) // 13), (48 << 10) // 13 * 13)
    shared = mmap.mmap(-1, 1 << 20, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    shared[:256 << 10] = b"S" * (256 << 10)
    mfd = os.memfd_create("cm-test-memfd")
    os.ftruncate(mfd, 1 << 20)
    memfd = mmap.mmap(mfd, 1 << 20, flags=mmap.MAP_SHARED)
    memfd[:128 << 10] = bytes(range(256)) * (512)
    pfile = directory / "private.bin"
    pfile.write_bytes(b"".join(_page(i, b"file") for i in range(16)))
    with open(pfile, "rb") as f:
        private = mmap.mmap(f.fileno(), 16 * PAGE, flags=mmap.MAP_PRIVATE,
                            prot=mmap.PROT_READ | mmap.PROT_WRITE)
    for i in (0, 2):
        _ = private[i * PAGE]  # clean file pages, faulted in
    for i in (1, 3):
        private[i * PAGE:i * PAGE + 8] = b"WRITTEN!"
    sfile = directory / "shared.bin"
    sfile.write_bytes(b"f" * 4 * PAGE)
    with open(sfile, "r+b") as f:
        shared_file = mmap.mmap(f.fileno(), 4 * PAGE, flags=mmap.MAP_SHARED)
    regions_of = {
        "anon": (_addr(anon), ANON_PAGES * PAGE),
        "heap": (heap, (48 << 10) // 13 * 13),
        "stack": _stack_top(),
        "shared": (_addr(shared), 256 << 10),
        "memfd": (_addr(memfd), 128 << 10),
        "private_file": (_addr(private), 4 * PAGE),
        "shared_file": (_addr(shared_file), 4 * PAGE),
        "zero_page": (_addr(anon) + ZERO_PAGE * PAGE, PAGE),
    }

    def tell(role: str) -> None:
        regions = {k: (a, n, _sha(a, n)) for k, (a, n) in regions_of.items()}
        os.write(report, json.dumps({"role": role, "pid": os.getpid(),
                                     "regions": regions}).encode() + b"\n")

    pid = os.fork()
    if pid == 0:
        for i in KID_WRITES:
            anon[i * PAGE:(i + 1) * PAGE] = _page(i, b"kid!")
        regions_of["stack"] = _stack_top()
        tell("kid")
        while True:
            time.sleep(3600)
    tell("root")
    stamp = 0
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "write":
            for i in range(WRITE_BASE, WRITE_BASE + int(args[0])):
                anon[i * PAGE:(i + 1) * PAGE] = _page(i, b"new!")
        elif cmd == "touch":  # a fresh stamp into pages FIRST..FIRST+N-1 of "anon"
            stamp += 1
            for i in range(int(args[0]), int(args[0]) + int(args[1])):
                anon[i * PAGE:i * PAGE + 8] = stamp.to_bytes(8, "little")
        tell("root")
    os.kill(pid, 9)


if __name__ == "__main__":
    _child(int(sys.argv[1]), Path(sys.argv[2]))
