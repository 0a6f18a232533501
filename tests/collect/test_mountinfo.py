"""mountinfo: line parser on captured samples, and real mount namespaces."""

from __future__ import annotations

import os

import pytest

from criu_model.collect.mountinfo import (
    MountinfoParseError,
    collect_mountinfo,
    parse_mount_line,
    parse_mountinfo,
    unescape,
)
from criu_model.errors import ProcessGone
from tests.proctree import Tree

SAMPLE = (
    b"27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard\n"
    b"36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue\n"
    b"40 27 0:38 /a\\040b /my\\011mnt\\012x\\134y ro,nosuid shared:7 propagate_from:3 unbindable"
    b" - fuse.my\\040fs src\\040dev rw,opt=a\\054b\n"
    b"41 27 0:39 / /empty\\040source rw - tmpfs  rw,size=4k\n"
)


def test_plain_line() -> None:
    m = parse_mountinfo(SAMPLE)[0]
    assert (m.mount_id, m.parent_id, m.dev_major, m.dev_minor) == (27, 1, 254, 0)
    assert (m.root, m.mount_point, m.options) == (b"/", b"/", "rw,relatime")
    assert list(m.optional_fields) == []
    assert (m.fstype, m.source, m.super_options) == ("ext4", b"/dev/vda", "rw,discard")


def test_optional_fields() -> None:
    m = parse_mountinfo(SAMPLE)[1]
    assert list(m.optional_fields) == ["master:1", "shared:2"]
    assert (m.root, m.mount_point, m.fstype) == (b"/mnt1", b"/mnt2", "ext3")


def test_escapes_decoded_in_paths_kept_in_options() -> None:
    m = parse_mountinfo(SAMPLE)[2]
    assert m.root == b"/a b"
    assert m.mount_point == b"/my\tmnt\nx\\y"
    assert list(m.optional_fields) == ["shared:7", "propagate_from:3", "unbindable"]
    assert m.fstype == "fuse.my fs"
    assert m.source == b"src dev"
    assert m.super_options == "rw,opt=a\\054b"  # an escaped comma must stay escaped


def test_empty_source() -> None:
    m = parse_mountinfo(SAMPLE)[3]
    assert (m.mount_point, m.fstype, m.source, m.super_options) == (
        b"/empty source", "tmpfs", b"", "rw,size=4k")


@pytest.mark.parametrize(("raw", "decoded"), [
    (b"plain", b"plain"),
    (b"\\040", b" "),
    (b"a\\134\\040b", b"a\\ b"),
    (b"\\377\\000", b"\xff\x00"),
    (b"trailing\\", b"trailing\\"),
    (b"\\04", b"\\04"),           # too short: not an escape
    (b"\\089", b"\\089"),         # not octal digits
])
def test_unescape(raw: bytes, decoded: bytes) -> None:
    assert unescape(raw) == decoded


@pytest.mark.parametrize("bad", [
    b"27 1 254:0 / / rw,relatime ext4 /dev/vda rw",    # no separator
    b"x 1 254:0 / / rw - ext4 /dev/vda rw",
    b"27 1 254 / / rw - ext4 /dev/vda rw",
    b"27 1 254:0 / / rw - ext4",
])
def test_malformed(bad: bytes) -> None:
    with pytest.raises(MountinfoParseError):
        parse_mount_line(bad)


def test_own_namespace() -> None:
    ns = collect_mountinfo(os.getpid())
    assert ns.ns_inode == os.stat("/proc/self/ns/mnt").st_ino
    assert ns.read_from_pid == os.getpid()
    by_point = {m.mount_point: m for m in ns.mounts}
    assert by_point[b"/proc"].fstype == "proc"
    root = by_point[b"/"]
    st = os.stat("/")
    assert (root.dev_major, root.dev_minor) == (os.major(st.st_dev), os.minor(st.st_dev))
    ids = {m.mount_id for m in ns.mounts}
    assert len(ids) == len(ns.mounts)


def test_gone_process() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    with pytest.raises(ProcessGone):
        collect_mountinfo(pid)


def test_private_mount_namespace(mountns_proc: Tree) -> None:
    member = mountns_proc["main"]
    ns = collect_mountinfo(member.pid)
    assert ns.ns_inode == os.stat(f"/proc/{member.pid}/ns/mnt").st_ino
    assert ns.ns_inode != os.stat("/proc/self/ns/mnt").st_ino
    mount_dir = os.fsencode(member.info["mount_dir"])
    ours = [m for m in ns.mounts if m.mount_point == mount_dir]
    assert len(ours) == 1, [m.mount_point for m in ns.mounts]
    tmpfs = ours[0]
    assert tmpfs.fstype == "tmpfs"
    assert tmpfs.source == b"cm test src"
    assert "size=64k" in tmpfs.super_options
    assert list(tmpfs.optional_fields) == []  # we made everything private
    parents = {m.mount_id for m in ns.mounts}
    assert tmpfs.parent_id in parents
    # ... and the host does not see it.
    host = collect_mountinfo(os.getpid())
    assert mount_dir not in {m.mount_point for m in host.mounts}
