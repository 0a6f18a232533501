"""Corrupt snapshots that parse but contradict themselves (issue 13, item 6).

Each was found by fuzzing: it loaded, and `plan` then reported
plan-verification-failed (a planner bug, by the README). Loading must refuse
it as InconsistentImage naming the image and the entry.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from criu_model.errors import InconsistentImage
from criu_model.images import load, write
from criu_model.images.pb import files_pb2
from criu_model.snapshot import Snapshot
from tests.images.sample import sample_snapshot


def _snapshot() -> Snapshot:
    """sample.py's three processes, with NSpgid/NSsid and an fd table each, as a dump has."""
    snap = sample_snapshot(2)
    for proc in snap.processes:
        proc.ns_pgids.append(proc.pgid)
        proc.ns_sids.append(proc.sid)
        table = files_pb2.FdTable(pid=proc.pid)
        for n in (0, 1, 2):
            table.fds.add(fd=n, kind=files_pb2.FD_REGULAR, path=b"/dev/null",
                          file=files_pb2.RegularFile())
        snap.fds.append(table)
    return snap


def _dup_fd(snap: Snapshot) -> None:
    snap.fds[1].fds[2].fd = 1


def _drop_table(snap: Snapshot) -> None:
    del snap.fds[1]


def _tid_is_pid(snap: Snapshot) -> None:
    snap.processes[1].threads.add(tid=102, comm=b"t", state="S")


def _tid_twice(snap: Snapshot) -> None:
    snap.processes[1].threads.add(tid=555, comm=b"t", state="S")
    snap.processes[2].threads.add(tid=555, comm=b"t", state="S")


def _ns_sid(snap: Snapshot) -> None:
    snap.processes[2].ns_sids[0] = 999


def _ns_pgid(snap: Snapshot) -> None:
    snap.processes[2].ns_pgids[0] = 101


CASES: dict[str, tuple[Callable[[Snapshot], None], str, str]] = {
    "duplicate fd": (_dup_fd, "fds.img", r"fd table of pid 101: fd 1 appears twice"),
    "dropped fd table": (_drop_table, "fds.img",
                         r"pid 101 is a live process with a memory map \(mm.img entry 1 at "
                         r"byte \d+\) but has no fd table"),
    "tid is another pid": (_tid_is_pid, "processes.img",
                           r"pid 101: thread 102 is also the pid of another process"),
    "tid in two processes": (_tid_twice, "processes.img",
                             r"pid 102: thread 555 is also one of pid 101's threads"),
    "ns_sids[0] != sid": (_ns_sid, "processes.img",
                          r"pid 102: ns_sids starts with 999, but its sid is 100"),
    "ns_pgids[0] != pgid": (_ns_pgid, "processes.img",
                            r"pid 102: ns_pgids starts with 101, but its pgid is 100"),
}


def test_consistent_snapshot_loads(tmp_path: Path) -> None:
    assert len(load(write(_snapshot(), tmp_path / "ok")).fds) == 3


@pytest.mark.parametrize("case", CASES)
def test_contradiction_is_inconsistent_image(tmp_path: Path, case: str) -> None:
    breakage, image, message = CASES[case]
    snap = _snapshot()
    breakage(snap)
    out = write(snap, tmp_path / "snap")
    with pytest.raises(InconsistentImage, match=message) as info:
        load(out)
    assert info.value.path == str(out / image)
    if image == "processes.img":   # the entry's own offset
        assert info.value.offset is not None and info.value.offset > 0


def test_zombie_without_fd_table_loads(tmp_path: Path) -> None:
    """A zombie has no files (the dumper writes an empty table, older ones none)."""
    snap = _snapshot()
    snap.processes[1].state = "Z"
    del snap.fds[1]
    assert load(write(snap, tmp_path / "zombie")).processes[1].state == "Z"
