"""read_all: whole files, also through the single-read path of single_open() /proc files."""

from __future__ import annotations

import os
from pathlib import Path

from criu_model.collect.procfs import SINGLE_RECORD, ProcDir, read_all


def test_single_record_files_read_whole() -> None:
    me = ProcDir(os.getpid())
    for name in sorted(SINGLE_RECORD):
        with open(f"/proc/self/{name}", "rb") as f:
            whole = f.read()
        got = me.read(name)
        if name in ("limits", "cgroup", "personality"):
            assert got == whole, name
        else:  # times, memory sizes and registers move between two reads: same lines
            assert [line.split()[:1] for line in got.splitlines()] == \
                [line.split()[:1] for line in whole.splitlines()], name
        assert got.endswith(b"\n"), name


def test_single_read_still_reads_a_file_longer_than_one_chunk(tmp_path: Path) -> None:
    big = tmp_path / "big"
    data = os.urandom(200_000)
    big.write_bytes(data)
    assert read_all(str(big), single=True) == data
    assert read_all(str(big)) == data
    (tmp_path / "empty").write_bytes(b"")
    assert read_all(str(tmp_path / "empty"), single=True) == b""
