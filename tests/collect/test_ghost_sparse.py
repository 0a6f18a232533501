"""A deleted sparse file is captured by its data extents, held against the limit by its data."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import criu_model

CHILD = r"""
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
os.pwrite(fd, b"head-of-file", 0)
os.pwrite(fd, b"middle", 1 << 20)
os.pwrite(fd, b"tail", (2 << 30) - 4)          # 2 GiB apparent, a few blocks of data
os.unlink(sys.argv[1])
print(fd, flush=True)
time.sleep(60)
"""

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="ptrace freezing needs root")


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[int, int]]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "sparse.bin")],
                            stdout=subprocess.PIPE, text=True)
    try:
        fd = int(proc.stdout.readline())  # type: ignore[union-attr]
        time.sleep(0.05)
        yield proc.pid, fd
    finally:
        proc.kill()
        proc.wait()


def test_sparse_deleted_file_keeps_its_extents(holder: tuple[int, int], tmp_path: Path) -> None:
    pid, n = holder
    snap = criu_model.load(criu_model.write(criu_model.dump([pid]), tmp_path / "snap"))
    fd = next(f for f in snap.fds_by_pid[pid].fds if f.fd == n)
    assert fd.deleted and fd.file.ghost.captured, fd
    ghost = snap.ghosts_by_id[fd.file.ghost.ghost_id]
    assert ghost.size == 2 << 30 and not ghost.data
    got = {e.offset: e.data for e in ghost.extents}
    # each extent is whole blocks of the filesystem: find our bytes inside them
    def at(offset: int, length: int) -> bytes:
        for start, data in got.items():
            if start <= offset < start + len(data):
                return data[offset - start:offset - start + length]
        raise AssertionError(f"no extent holds offset {offset}")
    assert at(0, 12) == b"head-of-file"
    assert at(1 << 20, 6) == b"middle"
    assert at((2 << 30) - 4, 4) == b"tail"
    assert ghost.data_bytes == sum(len(e.data) for e in ghost.extents) < 1 << 20
