"""A mapping of an fd the rehearsal could not make (found rehearsing ZDTM shmemfd-priv).

A program opened /proc/self/map_files of a shared anonymous mapping ("/dev/zero
(deleted)") and mapped that fd privately. The fd is not rehearsed (a deleted file in
/dev); the memory step still mapped "its fd" by number, and the number held the
memory job's own memfd. Such a VMA is now not rehearsed, naming the missing fd.
"""

from __future__ import annotations

import os

import pytest

from criu_model.restore.judge import MISMATCHED, NOT_REHEARSED
from tests.restore.progtree import dump_program, rehearsed

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, set_tid)")

_PROGRAM = """
import ctypes, mmap, os, signal, sys
ready = int(sys.argv[1])
shared = mmap.mmap(-1, 3 * 4096, flags=mmap.MAP_SHARED)
start = ctypes.addressof(ctypes.c_char.from_buffer(shared))
fd = os.open(f"/proc/self/map_files/{start:x}-{start + 3 * 4096:x}", os.O_RDWR)
private = mmap.mmap(fd, 4096, flags=mmap.MAP_PRIVATE)
there = ctypes.addressof(ctypes.c_char.from_buffer(private))
print(fd, there, flush=True)
os.write(ready, b"ready")
os.close(ready)
signal.pause()
"""


def test_vma_of_a_missing_fd_is_not_rehearsed() -> None:
    snap, pid, (fd, start) = dump_program(_PROGRAM)
    report = rehearsed(snap)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    held = next(e for e in report.entries if e.kind == "fd" and e.id == f"{pid}:{fd}")
    assert held.status == NOT_REHEARSED
    vma = next(e for e in report.entries if e.kind == "vma" and e.id.startswith(
        f"{pid}:{start:#x}-"))
    assert vma.status == NOT_REHEARSED and f"its fd {fd} was not made" in vma.reason
