"""parse_cgroup on captured /proc/PID/cgroup texts (hybrid v1 + v2 machine)."""

from __future__ import annotations

import pytest

from criu_model.collect.cgroup import CgroupLine, CgroupParseError, parse_cgroup

HYBRID = b"""9:name=systemd:/
4:memory:/process_api/cb77d096
3:cpu,cpuacct:/a
0::/criu-model-test-1
"""


def test_hybrid() -> None:
    assert parse_cgroup(HYBRID) == [
        CgroupLine(9, "name=systemd", b"/"),
        CgroupLine(4, "memory", b"/process_api/cb77d096"),
        CgroupLine(3, "cpu,cpuacct", b"/a"),
        CgroupLine(0, "", b"/criu-model-test-1"),
    ]


def test_path_with_colon_and_deleted_suffix() -> None:
    assert parse_cgroup(b"0::/a:b/c (deleted)\n") == [CgroupLine(0, "", b"/a:b/c (deleted)")]


@pytest.mark.parametrize("bad", [b"0:/\n", b"x::/\n"])
def test_malformed(bad: bytes) -> None:
    with pytest.raises(CgroupParseError):
        parse_cgroup(bad)
