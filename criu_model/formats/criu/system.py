"""The tree's kernel context from CRIU images: namespaces, mounts, cgroups, file locks, ttys.

    ids-PID.img          ::= TaskKobjIds   *_ns_id: CRIU's numbers, one per namespace
    mountpoints-N.img    ::= MAGICS { ENTRY(MntEntry) }      N: a mnt_ns_id
    cgroup.img           ::= MAGICS ENTRY(CgroupEntry)       sets of (controller, path)
    filelocks.img        ::= MAGICS { ENTRY(FileLockEntry) } pid + fd of each lock
    tty-info.img         ::= MAGICS { ENTRY(TtyInfo) }       per tty: session, pgrp, termios
    tty-data.img         ::= MAGICS { ENTRY(TtyData) }       input queued in a pty

CRIU names namespaces by its own ids, not by inode: those ids go where
criu-model keeps the inode (they tell which processes share a namespace), and
"namespaces" stays unreadable so a diff against a live dump compares none of
them. Facts criu-model's schema has no place for (cgroup controller trees and
their properties, termios, window sizes, queued tty input) are kept raw in the
inventory's collector notes or in the fd's ``extra`` map under "criu:" keys.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from google.protobuf import text_format

from criu_model.formats.criu.pb import core_pb2, files_pb2
from criu_model.images.pb import files_pb2 as cf
from criu_model.images.pb import mount_pb2

if TYPE_CHECKING:
    from criu_model.formats.criu.mapping import CriuDump
    from criu_model.snapshot import Snapshot

NOT_IN_CRIU = "not in CRIU images"

# TaskKobjIds field -> /proc/PID/ns name
NS_FIELDS = (("pid_ns_id", "pid"), ("net_ns_id", "net"), ("ipc_ns_id", "ipc"),
             ("uts_ns_id", "uts"), ("mnt_ns_id", "mnt"), ("user_ns_id", "user"),
             ("cgroup_ns_id", "cgroup"), ("time_ns_id", "time"))
NS_REASON = (f"{NOT_IN_CRIU}: CRIU numbers namespaces by its own ids, not inodes; the ids "
             "are given as the inodes here (they tell which processes share a namespace)")

# CLONE_NEW* (include/uapi/linux/sched.h), as ns-files' ns_cflag
CLONE_NS = {0x00020000: "mnt", 0x02000000: "cgroup", 0x04000000: "uts", 0x08000000: "ipc",
            0x10000000: "user", 0x20000000: "pid", 0x40000000: "net", 0x00000080: "time"}

# CRIU's fstype enum (images/mnt.proto) -> the kernel's filesystem name
FSTYPES = {1: "proc", 2: "sysfs", 3: "devtmpfs", 4: "binfmt_misc", 5: "tmpfs", 6: "devpts",
           7: "simfs", 8: "pstore", 9: "securityfs", 10: "fusectl", 11: "debugfs",
           12: "cgroup", 13: "aufs", 14: "mqueue", 15: "fuse", 17: "overlay", 18: "autofs",
           19: "tracefs", 23: "cgroup2"}
# MS_* per-mount flags in the order mountinfo prints them (fs/proc_namespace.c)
MNT_OPTS = ((2, "nosuid"), (4, "nodev"), (8, "noexec"), (1024, "noatime"),
            (2048, "nodiratime"), (1 << 21, "relatime"), (256, "nosymfollow"))
SB_OPTS = ((16, "sync"), (128, "dirsync"), (64, "mand"), (1 << 25, "lazytime"))
MS_RDONLY = 1

FL_POSIX, FL_FLOCK, FL_OFD = 1, 2, 4
LOCK_MAND, LOCK_READ, LOCK_WRITE = 32, 64, 128  # flock(LOCK_MAND | ...), before Linux 5.15
F_RDLCK, F_WRLCK, F_UNLCK = 0, 1, 2


def _unreadable(msg: object, fields: dict[str, str]) -> None:
    for name, reason in fields.items():
        msg.unreadable.add(field=name, reason=reason)  # type: ignore[attr-defined]


def _set_reason(msg: object, field: str, reason: str) -> None:
    for u in msg.unreadable:  # type: ignore[attr-defined]
        if u.field == field:
            u.reason = reason
            return
    msg.unreadable.add(field=field, reason=reason)  # type: ignore[attr-defined]


def _drop_reason(msg: object, field: str) -> None:
    keep = [u for u in msg.unreadable if u.field != field]  # type: ignore[attr-defined]
    del msg.unreadable[:]  # type: ignore[attr-defined]
    msg.unreadable.extend(keep)  # type: ignore[attr-defined]


def ns_ids(ids: core_pb2.TaskKobjIds | None) -> list[tuple[str, int]]:
    """(type, CRIU id) of every namespace an ids entry names."""
    if ids is None:
        return []
    return [(name, getattr(ids, f)) for f, name in NS_FIELDS
            if ids.HasField(f) and getattr(ids, f)]


def namespaces(snap: Snapshot, ids_of: dict[int, core_pb2.TaskKobjIds]) -> None:
    """Process.namespaces from ids-PID.img (CRIU ids in the inode field, marked unreadable)."""
    for proc in snap.processes:
        found = ns_ids(ids_of.get(proc.pid))
        for ns_type, ns_id in found:
            proc.namespaces.add(type=ns_type, inode=ns_id)
        if found:
            _set_reason(proc, "namespaces", NS_REASON)


def ns_file(fd: cf.Fd, nsf: files_pb2.NsFile) -> None:
    """An open /proc/PID/ns/TYPE file: its type from CLONE_NEW*, CRIU's ns id as the inode."""
    fd.kind = cf.FD_NSFS
    fd.flags = nsf.flags
    fd.nsfs.type = CLONE_NS.get(nsf.ns_cflag, f"unknown({nsf.ns_cflag:#x})")
    fd.nsfs.inode = nsf.ns_id
    fd.unreadable.add(field="nsfs.inode", reason=NS_REASON)


# -- mounts -----------------------------------------------------------------

def _mount_options(flags: int) -> str:
    return ",".join(["ro" if flags & MS_RDONLY else "rw",
                     *(name for bit, name in MNT_OPTS if flags & bit)])


def _super_options(sb_flags: int, options: str) -> str:
    parts = ["ro" if sb_flags & MS_RDONLY else "rw",
             *(name for bit, name in SB_OPTS if sb_flags & bit)]
    return ",".join([*parts, options] if options else parts)


def mount(m: core_pb2.MntEntry) -> mount_pb2.Mount:
    """One MntEntry as a mountinfo line would have given it."""
    out = mount_pb2.Mount(mount_id=m.mnt_id, parent_id=m.parent_mnt_id,
                          dev_major=m.root_dev >> 20, dev_minor=m.root_dev & 0xFFFFF,
                          root=os.fsencode(m.root), mount_point=os.fsencode(m.mountpoint),
                          options=_mount_options(m.flags), source=os.fsencode(m.source),
                          super_options=_super_options(m.sb_flags, m.options))
    out.fstype = m.fsname if m.fsname else FSTYPES.get(m.fstype, f"unknown({m.fstype})")
    if m.shared_id:
        out.optional_fields.append(f"shared:{m.shared_id}")
    if m.master_id:
        out.optional_fields.append(f"master:{m.master_id}")
    return out


def mounts(snap: Snapshot, dump: CriuDump) -> list[str]:
    """MountNamespace per mount namespace of the tree; notes for the inventory."""
    holders: dict[int, int] = {}
    for proc in snap.processes:
        for ns in proc.namespaces:
            if ns.type == "mnt":
                holders.setdefault(ns.inode, proc.pid)
    notes = []
    for ns_id in sorted(holders):
        name = f"mountpoints-{ns_id}.img"
        ns = mount_pb2.MountNamespace(ns_inode=ns_id, read_from_pid=holders[ns_id])
        entries = [e for e in dump.entries(name) if isinstance(e, core_pb2.MntEntry)]
        if entries:
            ns.mounts.extend(mount(e) for e in entries)
            _unreadable(ns, {"ns_inode": NS_REASON})
            notes.append(f"{name}: {len(entries)} mounts")
        else:
            _unreadable(ns, {"mounts": f"{NOT_IN_CRIU}: CRIU dumps the mounts of a mount "
                             "namespace of the tree's own only (this one it shares with "
                             "the dumper)", "ns_inode": NS_REASON})
        snap.mounts.append(ns)
    return notes


# -- cgroups ----------------------------------------------------------------

def cgroups(snap: Snapshot, dump: CriuDump, cg_set_of: dict[int, int]) -> str | None:
    """Process.cgroups from cgroup.img's set of each task (core tc.cg_set); a note."""
    entries = dump.entries("cgroup.img")
    if not entries:
        return None
    cg = entries[0]
    assert isinstance(cg, core_pb2.CgroupEntry)
    sets = {s.id: s for s in cg.sets}
    inv = dump.entries("inventory.img")
    root_set = inv[0].root_cg_set if inv else 0  # type: ignore[attr-defined]
    mapped = 0
    for proc in snap.processes:
        cg_set = sets.get(cg_set_of.get(proc.pid, root_set))
        if cg_set is None:
            continue
        for ctl in cg_set.ctls:
            proc.cgroups.add(controllers=ctl.name, path=os.fsencode(ctl.path))
        _drop_reason(proc, "cgroups")
        _unreadable(proc, {"cgroups.hierarchy_id": f"{NOT_IN_CRIU}: CRIU names a "
                           "hierarchy by its controllers"})
        mapped += 1
    props = sum(_count_props(d.dirs) for d in cg.controllers)
    return (f"{len(sets)} cgroup sets, {mapped} processes placed; {len(cg.controllers)} "
            f"controllers with {props} properties kept in cgroup.img only (criu-model's "
            "schema has no place for cgroup directory trees and their values)")


def _count_props(dirs: Iterable[core_pb2.CgroupDirEntry]) -> int:
    return sum(len(d.properties) + _count_props(d.children) for d in dirs)


# -- file locks ---------------------------------------------------------------

def _lock(e: files_pb2.FileLockEntry) -> cf.FileLock:
    if e.flag & FL_OFD:
        kind = cf.LOCK_OFD
    elif e.flag & FL_FLOCK:
        kind = cf.LOCK_FLOCK
    elif e.flag & FL_POSIX:
        kind = cf.LOCK_POSIX
    else:
        kind = cf.LOCK_OTHER
    lock = cf.FileLock(type=kind, pid=-1 if kind == cf.LOCK_OFD else e.pid, start=e.start)
    if kind == cf.LOCK_FLOCK and e.type & LOCK_MAND:
        # /proc/locks says READ, WRITE or RW for these (fs/locks.c); RW is kept in raw
        lock.mandatory = True
        lock.mode = cf.LOCK_WRITE if e.type & LOCK_WRITE else cf.LOCK_READ
    else:
        lock.mode = {F_RDLCK: cf.LOCK_READ, F_WRLCK: cf.LOCK_WRITE,
                     F_UNLCK: cf.LOCK_UNLCK}.get(e.type, cf.LOCK_MODE_UNSPECIFIED)
    if e.len == 0:
        lock.to_eof = True
    else:
        lock.end = e.start + e.len - 1
    lock.raw = f"criu filelocks.img: {text_format.MessageToString(e, as_one_line=True)}"
    return lock


def file_locks(snap: Snapshot, dump: CriuDump) -> int:
    """filelocks.img onto the fds that hold the locks (Fd.locks); returns how many.

    CRIU refuses to dump a tree that holds locks it cannot resolve, or (4.x)
    any locks without --file-locks: without filelocks.img the tree held none.
    """
    tables = {t.pid: {fd.fd: fd for fd in t.fds} for t in snap.fds}
    by_file: dict[int, list[tuple[int, cf.Fd]]] = {}
    for t in snap.fds:
        for fd in t.fds:
            if fd.file_id:
                by_file.setdefault(fd.file_id, []).append((t.pid, fd))
    count = 0
    for e in dump.entries("filelocks.img"):
        assert isinstance(e, files_pb2.FileLockEntry)
        owner = tables.get(e.pid, {}).get(e.fd)
        if owner is None:
            continue
        lock = _lock(e)
        count += 1
        # CRIU records a lock once, by the pid and fd it was found on; the kernel shows
        # it in the fdinfo of every fd it belongs to (fs/locks.c show_fd_locks): a
        # flock or OFD lock is owned by the open file, so on every fd of that open
        # file in any process; a POSIX lock on the owner process's fds of it.
        holders = by_file.get(owner.file_id, [(e.pid, owner)]) if owner.file_id \
            else [(e.pid, owner)]
        if lock.type == cf.LOCK_POSIX:
            holders = [(pid, fd) for pid, fd in holders if pid == e.pid]
        for _pid, fd in holders:
            fd.locks.append(lock)
            if not any(u.field == "locks.dev" for u in fd.unreadable):
                _unreadable(fd, {
                    "locks.dev": f"{NOT_IN_CRIU}: a lock is recorded by pid and fd",
                    "locks.ino": f"{NOT_IN_CRIU}: a lock is recorded by pid and fd",
                    "locks.raw": f"{NOT_IN_CRIU}: the /proc/locks line (raw holds CRIU's "
                                 "entry instead)"})
    for table in snap.fds:
        _drop_reason(table, "locks")
        _unreadable(table, {"waiting_locks": f"{NOT_IN_CRIU}: CRIU dumps held locks only"})
    return count


# -- ttys ---------------------------------------------------------------------

def new_encode_dev(major: int, minor: int) -> int:
    """The dev_t encoding of /proc/PID/stat's tty_nr (include/linux/kdev_t.h)."""
    return (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)


def tty_extra(fd: cf.Fd, info: files_pb2.TtyInfo, data: bytes | None) -> None:
    """What criu-model's Tty has no field for, kept raw in fd.extra under "criu:" keys."""
    for attr in ("locked", "exclusive", "packet_mode", "sid", "pgrp"):
        if info.HasField(attr):
            fd.extra[f"criu:tty.{attr}"] = str(int(getattr(info, attr)))
    for attr in ("termios", "termios_locked", "winsize"):
        if info.HasField(attr):
            fd.extra[f"criu:tty.{attr}"] = text_format.MessageToString(
                getattr(info, attr), as_one_line=True)
    if data is not None:
        fd.extra["criu:tty.queued_input"] = data.hex()


def controlling_ttys(snap: Snapshot, infos: Iterable[files_pb2.TtyInfo]) -> int:
    """tty_nr and tpgid of the processes whose session owns a dumped tty; how many."""
    by_sid = {i.sid: i for i in infos if i.sid}
    count = 0
    for proc in snap.processes:
        info = by_sid.get(proc.sid)
        if info is None or proc.state == "Z":
            continue
        proc.tty_nr = new_encode_dev(os.major(info.rdev), os.minor(info.rdev))  # st_rdev
        proc.tpgid = info.pgrp
        _drop_reason(proc, "tty_nr")
        _drop_reason(proc, "tpgid")
        count += 1
    return count


def apply(snap: Snapshot, dump: CriuDump, ids_of: dict[int, core_pb2.TaskKobjIds],
          cg_set_of: dict[int, int]) -> list[tuple[str, str]]:
    """Everything above, in order; (collector name, note) pairs for the inventory."""
    notes: list[tuple[str, str]] = []
    namespaces(snap, ids_of)
    mounted = mounts(snap, dump)
    if mounted:
        notes.append(("criu.mounts", "; ".join(mounted)))
    cg = cgroups(snap, dump, cg_set_of)
    if cg:
        notes.append(("criu.cgroup", cg))
    locks = file_locks(snap, dump)
    if dump.entries("filelocks.img"):
        notes.append(("criu.file_locks", f"{locks} locks placed on their fds"))
    infos = [i for i in dump.entries("tty-info.img") if isinstance(i, files_pb2.TtyInfo)]
    if infos:
        ctty = controlling_ttys(snap, infos)
        notes.append(("criu.tty", f"{len(infos)} ttys; tty_nr/tpgid of {ctty} processes "
                      "from their session's tty; termios, window size and queued input "
                      "kept raw in fd extra (criu:tty.*)"))
    inv = dump.entries("inventory.img")
    root = inv[0].root_ids if inv and inv[0].HasField("root_ids") else None  # type: ignore
    if root is not None:
        shared = {name: ns_id for name, ns_id in ns_ids(root)}
        tree = {(n, i) for p in snap.processes for n, i in
                ((ns.type, ns.inode) for ns in p.namespaces)}
        with_dumper = sorted(n for n, i in shared.items() if (n, i) in tree)
        notes.append(("criu.namespaces", "shared with the dumping CRIU (inventory root_ids): "
                      + (", ".join(with_dumper) or "none")))
    return notes
