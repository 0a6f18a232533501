"""Namespaces, mounts, cgroups, file locks, ttys from CRIU images (formats/criu/system.py).

The fixtures' tree has no mount namespace, cgroup.img, locks or ttys of its
own (CRIU wrote none), so those images are written here from CRIU's schema
into a copy of the `sleep` dump; namespaces come from the real ids-*.img.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from google.protobuf.message import Message

import criu_model
from criu_model.formats.criu import load_criu
from criu_model.formats.criu import magic as cmagic
from criu_model.formats.criu.pb import core_pb2, files_pb2
from criu_model.formats.criu.system import NS_REASON, new_encode_dev
from criu_model.images.pb import files_pb2 as cf
from tests.formats.conftest import FIXTURES

PID = 6819
IDS = {"pid": 1, "net": 2, "ipc": 3, "uts": 4, "mnt": 6, "user": 7, "cgroup": 8, "time": 5}


def _image(kind: str, msgs: list[Message]) -> bytes:
    out = struct.pack("<II", cmagic.IMG_COMMON, cmagic.MAGICS[kind])
    for m in msgs:
        body = m.SerializeToString()
        out += struct.pack("<I", len(body)) + body
    return out


def _append(path: Path, msgs: list[Message]) -> None:
    data = path.read_bytes()
    for m in msgs:
        body = m.SerializeToString()
        data += struct.pack("<I", len(body)) + body
    path.write_bytes(data)


def _why(msg, name: str) -> str | None:
    return next((u.reason for u in msg.unreadable if u.field == name), None)


def test_namespaces_from_ids_are_criu_ids_marked_unreadable() -> None:
    snap = load_criu(FIXTURES / "tree-full")
    for proc in snap.processes:
        if proc.state == "Z":
            assert not proc.namespaces
            continue
        assert {ns.type: ns.inode for ns in proc.namespaces} == IDS
        assert _why(proc, "namespaces") == NS_REASON
    mnt = snap.mounts_by_ns[6]
    assert not mnt.mounts and "tree's own only" in _why(mnt, "mounts")
    runs = {c.name: c.reason for c in snap.inventory.collectors}
    assert runs["criu.namespaces"] == ("shared with the dumping CRIU (inventory root_ids): "
                                       "cgroup, ipc, mnt, net, pid, time, user, uts")
    # the same ids in both dumps: no namespace change between them
    assert not [c for c in criu_model.diff(snap, load_criu(FIXTURES / "tree-before")).changes
                if c.what == "namespace"]


def test_mountpoints_of_the_trees_mount_namespace(criu_copy) -> None:
    d = criu_copy("sleep")
    kdev = lambda major, minor: major << 20 | minor  # noqa: E731
    (d / "mountpoints-6.img").write_bytes(_image("MNTS", [
        core_pb2.MntEntry(fstype=17, mnt_id=100, root_dev=kdev(0, 40), parent_mnt_id=99,
                          flags=0, root="/", mountpoint="/", source="overlay",
                          options="lowerdir=/l,upperdir=/u", sb_flags=0, shared_id=1),
        core_pb2.MntEntry(fstype=1, mnt_id=101, root_dev=kdev(0, 22), parent_mnt_id=100,
                          flags=2 | 4 | 8 | (1 << 21), root="/", mountpoint="/proc",
                          source="proc", options="", sb_flags=0),
        core_pb2.MntEntry(fstype=16, fsname="fuse.sshfs", mnt_id=102, root_dev=kdev(0, 50),
                          parent_mnt_id=100, flags=1, root="/x", mountpoint="/mnt/remote",
                          source="host:/x", options="user_id=0", sb_flags=1, master_id=3),
    ]))
    snap = load_criu(d)
    ns = snap.mounts_by_ns[6]
    assert ns.read_from_pid == PID and _why(ns, "mounts") is None
    m = {x.mount_id: x for x in ns.mounts}
    assert (m[100].fstype, m[100].mount_point, m[100].options, m[100].super_options,
            list(m[100].optional_fields)) == ("overlay", b"/", "rw", "rw,lowerdir=/l,"
                                              "upperdir=/u", ["shared:1"])
    assert (m[101].fstype, m[101].options, m[101].dev_minor) == (
        "proc", "rw,nosuid,nodev,noexec,relatime", 22)
    assert (m[102].fstype, m[102].options, m[102].super_options, m[102].root,
            list(m[102].optional_fields)) == ("fuse.sshfs", "ro", "ro,user_id=0", b"/x",
                                              ["master:3"])
    runs = {c.name: c for c in snap.inventory.collectors}
    assert "mounts" not in runs and runs["criu.mounts"].reason == "mountpoints-6.img: 3 mounts"


def test_cgroup_img_places_each_task_in_its_set(criu_copy) -> None:
    d = criu_copy("sleep")
    cg = core_pb2.CgroupEntry()
    cg.sets.add(id=1).ctls.extend([core_pb2.CgMemberEntry(name="cpu,cpuacct", path="/a"),
                                   core_pb2.CgMemberEntry(name="", path="/scn.slice")])
    cg.sets.add(id=2).ctls.add(name="", path="/other")
    ctl = cg.controllers.add(cnames=["cpu"])
    ctl.dirs.add(dir_name="a").properties.add(name="cpu.shares", value="512")
    (d / "cgroup.img").write_bytes(_image("CGROUP", [cg]))
    snap = load_criu(d)  # sleep's core has no cg_set: the inventory's root_cg_set (1)
    proc = snap.by_pid[PID]
    assert [(c.controllers, c.path) for c in proc.cgroups] == [("cpu,cpuacct", b"/a"),
                                                               ("", b"/scn.slice")]
    assert _why(proc, "cgroups") is None and "controllers" in _why(proc,
                                                                   "cgroups.hierarchy_id")
    runs = {c.name: c.reason for c in snap.inventory.collectors}
    assert "2 cgroup sets, 1 processes placed" in runs["criu.cgroup"]
    assert "1 properties kept in cgroup.img only" in runs["criu.cgroup"]


def test_file_locks_land_on_the_fds_holding_them(criu_copy) -> None:
    d = criu_copy("sleep")
    (d / "filelocks.img").write_bytes(_image("FILE_LOCKS", [
        files_pb2.FileLockEntry(flag=1, type=1, pid=PID, fd=0, start=0, len=0),
        files_pb2.FileLockEntry(flag=2, type=32 | 64, pid=PID, fd=1, start=0, len=0),
        files_pb2.FileLockEntry(flag=4, type=0, pid=PID, fd=2, start=10, len=5),
        files_pb2.FileLockEntry(flag=1, type=1, pid=PID, fd=99, start=0, len=0),  # no fd 99
    ]))
    snap = load_criu(d)
    fds = {fd.fd: fd for fd in snap.fds_by_pid[PID].fds}
    # fds 0-2 are one open file (/dev/null): the kernel shows each lock in the fdinfo
    # of all three (the POSIX one too: the same process), so the mapping puts it on each.
    assert {fd.file_id for fd in fds.values()} == {4}
    for n in (0, 1, 2):
        assert [lk.type for lk in fds[n].locks] == [cf.LOCK_POSIX, cf.LOCK_FLOCK, cf.LOCK_OFD]
    posix, flock, ofd = fds[0].locks
    assert (posix.type, posix.mode, posix.to_eof, posix.pid) == (cf.LOCK_POSIX, cf.LOCK_WRITE,
                                                                 True, PID)
    assert (flock.type, flock.mode, flock.mandatory) == (cf.LOCK_FLOCK, cf.LOCK_READ, True)
    assert (ofd.type, ofd.pid, ofd.start, ofd.end, ofd.to_eof) == (cf.LOCK_OFD, -1, 10, 14,
                                                                   False)
    assert "pid and fd" in _why(fds[0], "locks.ino")
    table = snap.fds_by_pid[PID]
    assert _why(table, "locks") is None and _why(table, "waiting_locks")
    runs = {c.name: c.reason for c in snap.inventory.collectors}
    assert runs["criu.file_locks"] == "3 locks placed on their fds"


def test_a_pty_its_session_and_an_open_namespace_file(criu_copy) -> None:
    d = criu_copy("sleep")
    tty = files_pb2.FileEntry(type=files_pb2.TTY, id=7)
    tty.tty.id, tty.tty.tty_info_id, tty.tty.flags = 7, 1, 0o2
    tty.tty.fown.SetInParent()
    ns = files_pb2.FileEntry(type=files_pb2.NS, id=8)
    ns.nsf.id, ns.nsf.ns_id, ns.nsf.ns_cflag, ns.nsf.flags = 8, 2, 0x40000000, 0
    _append(d / "files.img", [tty, ns])
    _append(d / "fdinfo-2.img", [files_pb2.FdinfoEntry(id=7, flags=0, type=files_pb2.TTY,
                                                       fd=5),
                                 files_pb2.FdinfoEntry(id=8, flags=1, type=files_pb2.NS,
                                                       fd=6)])
    info = files_pb2.TtyInfo(id=1, type=1, locked=False, exclusive=False, packet_mode=False,
                             sid=PID, pgrp=PID, rdev=os.makedev(136, 3))
    info.pty.index = 3
    info.winsize.ws_row, info.winsize.ws_col = 24, 80
    (d / "tty-info.img").write_bytes(_image("TTY_INFO", [info]))
    (d / "tty-data.img").write_bytes(_image("TTY_DATA", [files_pb2.TtyData(tty_id=1,
                                                                           data=b"ls\n")]))
    snap = load_criu(d)
    fds = {fd.fd: fd for fd in snap.fds_by_pid[PID].fds}
    t = fds[5]
    assert (t.kind, t.tty.driver, t.tty.index, t.tty.rdev_major, t.tty.rdev_minor) == (
        cf.FD_TTY, "pts", 3, 136, 3)
    assert t.extra["criu:tty.winsize"] == "ws_row: 24 ws_col: 80"
    assert bytes.fromhex(t.extra["criu:tty.queued_input"]) == b"ls\n"
    assert t.extra["criu:tty.sid"] == str(PID)
    proc = snap.by_pid[PID]
    assert proc.tty_nr == new_encode_dev(136, 3) == 34819 and proc.tpgid == PID
    assert _why(proc, "tty_nr") is None and _why(proc, "tpgid") is None
    n = fds[6]
    assert (n.kind, n.nsfs.type, n.nsfs.inode) == (cf.FD_NSFS, "net", IDS["net"])
    assert _why(n, "nsfs.inode") == NS_REASON
