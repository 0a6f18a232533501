"""parse_status and its value decoders on captured /proc/PID/status texts."""

from __future__ import annotations

import os

import pytest

from criu_model.collect.status import parse_ids, parse_mask, parse_octal, parse_status

# Captured on Linux 6.18 (trimmed of the memory lines), for a process in a
# child pid namespace: NSpid/NSpgid/NSsid have two levels.
STATUS = b"""Name:\tcm (x) y\\nz)
Umask:\t0027
State:\tS (sleeping)
Tgid:\t10499
Ngid:\t0
Pid:\t10499
PPid:\t10498
TracerPid:\t0
Uid:\t0\t1\t2\t3
Gid:\t4\t5\t6\t7
FDSize:\t64
Groups:\t10 20 30\x20
NStgid:\t10499\t2
NSpid:\t10499\t2
NSpgid:\t10498\t1
NSsid:\t10498\t1
Kthread:\t0
Threads:\t1
SigQ:\t2/96365
SigPnd:\t0000000000002000
ShdPnd:\t0000000000000200
SigBlk:\t0000000000002200
SigIgn:\t0000000001000800
SigCgt:\t0000000000000003
CapInh:\t0000000000000000
CapPrm:\t000001fffeffffff
CapEff:\t000001fffeffffff
CapBnd:\t000001fffeffffff
CapAmb:\t0000000000000000
NoNewPrivs:\t1
Seccomp:\t2
Seccomp_filters:\t3
Speculation_Store_Bypass:\tvulnerable
Cpus_allowed_list:\t0-1
voluntary_ctxt_switches:\t5
nonvoluntary_ctxt_switches:\t1
"""

# A zombie has no fs_struct: no Umask: line. Groups: is empty.
ZOMBIE_STATUS = b"""Name:\tpython3
State:\tZ (zombie)
Tgid:\t6485
Pid:\t6485
PPid:\t6444
Uid:\t0\t0\t0\t0
Gid:\t0\t0\t0\t0
Groups:\t
NSpid:\t6485
SigPnd:\t0000000000000000
"""


def test_keys_and_values() -> None:
    status = parse_status(STATUS)
    assert status[b"Name"] == b"cm (x) y\\nz)"  # the kernel escapes comm here
    assert status[b"State"] == b"S (sleeping)"
    assert parse_octal(status[b"Umask"]) == 0o027
    assert parse_ids(status[b"Uid"]) == [0, 1, 2, 3]
    assert parse_ids(status[b"Gid"]) == [4, 5, 6, 7]
    assert parse_ids(status[b"Groups"]) == [10, 20, 30]
    assert parse_ids(status[b"NSpid"]) == [10499, 2]
    assert parse_ids(status[b"NSsid"]) == [10498, 1]
    assert parse_mask(status[b"SigPnd"]) == 1 << 13
    assert parse_mask(status[b"SigIgn"]) == (1 << 24) | (1 << 11)
    assert parse_mask(status[b"CapEff"]) == 0x1FFFEFFFFFF
    assert status[b"Seccomp_filters"] == b"3"
    assert status[b"Cpus_allowed_list"] == b"0-1"


def test_zombie_lines() -> None:
    status = parse_status(ZOMBIE_STATUS)
    assert b"Umask" not in status
    assert parse_ids(status[b"Groups"]) == []
    assert status[b"State"] == b"Z (zombie)"


def test_value_with_colon_kept_whole() -> None:
    assert parse_status(b"Weird:\ta:b:c\n")[b"Weird"] == b"a:b:c"


def test_lines_without_colon_ignored() -> None:
    assert parse_status(b"garbage\n\nPid:\t1\n") == {b"Pid": b"1"}


@pytest.mark.parametrize("bad", [b"xyz", b""])
def test_bad_mask(bad: bytes) -> None:
    with pytest.raises(ValueError):
        parse_mask(bad)


def test_own_status() -> None:
    with open(f"/proc/{os.getpid()}/status", "rb") as f:
        status = parse_status(f.read())
    assert int(status[b"Pid"]) == os.getpid()
    assert parse_ids(status[b"Uid"]) == [*os.getresuid(), os.getresuid()[1]]
    umask = os.umask(0)
    os.umask(umask)
    assert parse_octal(status[b"Umask"]) == umask
