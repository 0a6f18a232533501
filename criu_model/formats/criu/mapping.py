"""CRIU images -> criu-model Snapshot, honestly.

Everything CRIU records that criu_model.v1 has a field for goes there. What
CRIU does not record (start times, NSpid of outer pid namespaces, page counts,
dev/inode of mappings, exit signals...) is named in the message's
`unreadable` list with the reason "not in CRIU images", never left as a 0
that would read like a value. Inventory fields have no `unreadable`; they
are reported as collectors that did not run (`inventory.<field>`).
"""

from __future__ import annotations

import os
import stat
import struct
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from google.protobuf.message import Message

from criu_model.errors import InconsistentImage
from criu_model.formats.criu import system
from criu_model.formats.criu.framing import CriuImage
from criu_model.formats.criu.pages import PageRun, PagesFile, page_runs, page_size
from criu_model.formats.criu.pb import core_pb2, files_pb2, sockets_pb2
from criu_model.images import framing as cm_framing
from criu_model.images.pb import (
    common_pb2,
    inventory_pb2,
    mm_pb2,
    process_pb2,
    regs_pb2,
)
from criu_model.images.pb import (
    files_pb2 as cf,
)
from criu_model.images.pb import (
    sockets_pb2 as cs,
)
from criu_model.snapshot import Snapshot

NOT_IN_CRIU = "not in CRIU images"
# The memfd name CRIU 4.x gives a shared anonymous mapping ("/dev/zero (deleted)" in maps)
SHARED_ANON_MEMFD = b"/dev/zero"

# CRIU task states (criu/include/pstree.h, compel): what core's tc.task_state holds.
TASK_ALIVE, TASK_DEAD, TASK_STOPPED = 1, 2, 3
_STATE_LETTER = {TASK_DEAD: "Z", TASK_STOPPED: "T"}

RLIMIT_NAMES = ("RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE",
                "RLIMIT_RSS", "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS",
                "RLIMIT_LOCKS", "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE", "RLIMIT_NICE",
                "RLIMIT_RTPRIO", "RLIMIT_RTTIME")

# core's sigactions: one per signal 1..64, SIGKILL (9) and SIGSTOP (19) left out.
SIGACTION_SIGNALS = tuple(s for s in range(1, 65) if s not in (9, 19))
SIG_DFL, SIG_IGN = 0, 1

# VMA status bits (criu/include/image.h).
VMA_AREA_STACK = 1 << 1
VMA_AREA_VSYSCALL = 1 << 2
VMA_AREA_VDSO = 1 << 3
VMA_AREA_HEAP = 1 << 5
VMA_FILE_PRIVATE = 1 << 6
VMA_FILE_SHARED = 1 << 7
VMA_ANON_SHARED = 1 << 8
VMA_ANON_PRIVATE = 1 << 9
VMA_AREA_SYSVIPC = 1 << 10
VMA_AREA_VVAR = 1 << 12
VMA_AREA_MEMFD = 1 << 14
MAP_SHARED = 0x01

O_ACCMODE, O_WRONLY, O_RDWR = 0o3, 0o1, 0o2
O_PATH = 0o10000000
O_CLOEXEC = 0o2000000
FD_CLOEXEC = 1

# remap-fpath types
REMAP_LINKED, REMAP_GHOST, REMAP_PROCFS = 0, 1, 2

# timer notify (include/uapi/asm-generic/siginfo.h); names as /proc/PID/timers prints them
SIGEV_THREAD_ID = 4
_SIGEV = {0: "signal", 1: "none", 2: "thread"}

NETWORK_LOCK = {0: "iptables", 1: "nftables", 2: "skip"}
LSM = {0: "none", 1: "selinux", 2: "apparmor"}
SHUTDOWN = {0: 0, 1: 1, 2: 2, 3: 3}  # CRIU's sk_shutdown is already SHUT_RD 1 | SHUT_WR 2

AF_INET, AF_INET6 = 2, 10

TTY_DRIVER = {1: "pts", 2: "console", 3: "vt", 4: "ctty", 5: "ext", 6: "serial"}
PTMX_MAJOR, PTS_MAJORS = 5, range(136, 144)


def kdev_to_user(dev: int) -> int:
    """A kernel-internal dev_t (major << 20 | minor), as CRIU stores it, in stat()'s encoding."""
    return os.makedev(dev >> 20, dev & 0xFFFFF)


def _caps(words: Iterable[int]) -> int:
    value = 0
    for i, word in enumerate(words):
        value |= (word & 0xFFFFFFFF) << (32 * i)
    return value


def _signo_mask(queue: core_pb2.SignalQueue) -> int:
    """Pending signals as a SigPnd-style mask (bit N-1 for signal N), from raw siginfos."""
    mask = 0
    for info in queue.signals:
        if len(info.siginfo) >= 4:
            signo = struct.unpack_from("<i", info.siginfo, 0)[0]
            if 1 <= signo <= 64:
                mask |= 1 << (signo - 1)
    return mask


def _unreadable(msg: Message, reason_by_field: dict[str, str]) -> None:
    for name, reason in reason_by_field.items():
        msg.unreadable.add(field=name, reason=reason)  # type: ignore[attr-defined]


@dataclass
class CriuDump:
    """The decoded images of one CRIU directory, indexed for the mapping."""

    root: str
    images: dict[str, CriuImage]
    not_read: list[tuple[str, str]] = field(default_factory=list)  # (file, why)
    pages_files: dict[int, PagesFile] = field(default_factory=dict)  # pages_id -> file
    container: dict[str, object] = field(default_factory=dict)  # archives: config.dump facts
    directory: str | None = None  # a real directory (parent/ dumps are looked for there)
    runs_cache: dict[str, tuple[int, list[PageRun]]] = field(default_factory=dict)

    def one(self, name: str) -> CriuImage | None:
        return self.images.get(name)

    def entries(self, name: str) -> list[Message]:
        image = self.images.get(name)
        return image.entries if image is not None else []

    def path(self, name: str) -> str:
        return os.path.join(self.root, name)


class _Files:
    """files.img (or the per-kind images of older CRIU) indexed by file id."""

    def __init__(self, dump: CriuDump, handlers: dict[str, tuple[int, str]]) -> None:
        self.by_id: dict[int, files_pb2.FileEntry] = {}
        for entry in dump.entries("files.img"):
            assert isinstance(entry, files_pb2.FileEntry)
            self.by_id[entry.id] = entry
        for name, (fd_type, attr) in handlers.items():
            for sub in dump.entries(name):
                fe = files_pb2.FileEntry(type=fd_type, id=sub.id)  # type: ignore[attr-defined]
                getattr(fe, attr).CopyFrom(sub)
                self.by_id.setdefault(fe.id, fe)
        self.remaps: dict[int, files_pb2.RemapFilePath] = {}
        for remap in dump.entries("remap-fpath.img"):
            assert isinstance(remap, files_pb2.RemapFilePath)
            self.remaps[remap.orig_id] = remap
        self.memfd_inodes: dict[int, files_pb2.MemfdInode] = {}
        for inode in dump.entries("memfd.img"):
            assert isinstance(inode, files_pb2.MemfdInode)
            self.memfd_inodes[inode.inode_id] = inode
        self.tty_info: dict[int, files_pb2.TtyInfo] = {}
        for info in dump.entries("tty-info.img"):
            assert isinstance(info, files_pb2.TtyInfo)
            self.tty_info[info.id] = info
        self.tty_data: dict[int, bytes] = {}
        for td in dump.entries("tty-data.img"):
            assert isinstance(td, files_pb2.TtyData)
            self.tty_data[td.tty_id] = self.tty_data.get(td.tty_id, b"") + td.data
        self.pipe_data: dict[tuple[str, int], files_pb2.PipeData] = {}
        self.pipe_bytes: dict[tuple[str, int], bytes] = {}  # the queued bytes themselves
        for img in ("pipes-data.img", "fifo-data.img"):
            image = dump.one(img)
            if image is None:
                continue
            for pd, extra in zip(image.entries, image.extras, strict=True):
                assert isinstance(pd, files_pb2.PipeData)
                self.pipe_data[(img, pd.pipe_id)] = pd
                self.pipe_bytes[(img, pd.pipe_id)] = extra
        self.sk_queued: dict[int, int] = defaultdict(int)    # file id -> bytes queued
        for pkt in dump.entries("sk-queues.img"):
            assert isinstance(pkt, sockets_pb2.SkPacket)
            self.sk_queued[pkt.id_for] += pkt.length
        self.tcp: dict[int, sockets_pb2.TcpStream] = {}       # inode -> stream
        for name, image in dump.images.items():
            if image.kind == "TCP_STREAM" and image.entries and name.startswith("tcp-stream-"):
                try:
                    ino = int(name[len("tcp-stream-"):-len(".img")], 16)
                except ValueError:
                    continue
                stream = image.entries[0]
                assert isinstance(stream, sockets_pb2.TcpStream)
                self.tcp[ino] = stream

    def reg_name(self, file_id: int) -> tuple[bytes, bool] | None:
        """(path, deleted) of a REG entry, the deletion told by remap-fpath.img."""
        fe = self.by_id.get(file_id)
        if fe is None or not fe.HasField("reg"):
            return None
        remap = self.remaps.get(file_id)
        deleted = remap is not None and remap.remap_type in (REMAP_GHOST, REMAP_LINKED)
        return fe.reg.name, deleted


@dataclass
class _Ctx:
    dump: CriuDump
    files: _Files
    snap: Snapshot
    ghosts: dict[int, cf.GhostFile] = field(default_factory=dict)
    objects: dict[int, tuple[int, bytes]] = field(default_factory=dict)  # shmid -> size, path
    sockets: dict[int, cs.Socket] = field(default_factory=dict)


# -- processes ------------------------------------------------------------

def _core(dump: CriuDump, tid: int) -> core_pb2.CoreEntry | None:
    entries = dump.entries(f"core-{tid}.img")
    if not entries:
        return None
    core = entries[0]
    assert isinstance(core, core_pb2.CoreEntry)
    return core


def _ids(dump: CriuDump, pid: int, core: core_pb2.CoreEntry | None) -> core_pb2.TaskKobjIds | None:
    entries = dump.entries(f"ids-{pid}.img")
    if entries:
        ids = entries[0]
        assert isinstance(ids, core_pb2.TaskKobjIds)
        return ids
    if core is not None and core.HasField("ids"):  # images before ids-PID.img
        return core.ids
    return None


def _creds(dump: CriuDump, pid: int, core: core_pb2.CoreEntry | None) -> core_pb2.Creds | None:
    if core is not None and core.thread_core.HasField("creds"):
        return core.thread_core.creds
    entries = dump.entries(f"creds-{pid}.img")  # CRIU before creds moved into core
    if entries:
        creds = entries[0]
        assert isinstance(creds, core_pb2.Creds)
        return creds
    return None


def _seccomp_filters(dump: CriuDump, last: int) -> int:
    """Length of the filter chain ending at index `last` of seccomp.img (prev links)."""
    entries = dump.entries("seccomp.img")
    filters = list(entries[0].seccomp_filters) if entries else []  # type: ignore[attr-defined]
    count, index, seen = 0, last, set()
    while 0 <= index < len(filters) and index not in seen:
        seen.add(index)
        count += 1
        f = filters[index]
        index = f.prev - 1 if f.HasField("prev") and f.prev else -1
    return count


def _fill_creds(proc: process_pb2.Process, creds: core_pb2.Creds | None,
                tcore: core_pb2.ThreadCore | None, dump: CriuDump) -> None:
    if creds is None:
        _unreadable(proc, {"creds": f"{NOT_IN_CRIU} (no creds in core or creds-PID.img)"})
        return
    c = proc.creds
    c.uids.extend([creds.uid, creds.euid, creds.suid, creds.fsuid])
    c.gids.extend([creds.gid, creds.egid, creds.sgid, creds.fsgid])
    c.groups.extend(creds.groups)
    c.cap_inh = _caps(creds.cap_inh)
    c.cap_prm = _caps(creds.cap_prm)
    c.cap_eff = _caps(creds.cap_eff)
    c.cap_bnd = _caps(creds.cap_bnd)
    c.cap_amb = _caps(creds.cap_amb)
    c.no_new_privs = bool(creds.no_new_privs)
    if creds.HasField("secbits"):
        c.securebits = creds.secbits
    if tcore is not None and tcore.HasField("seccomp_mode"):
        c.seccomp_mode = tcore.seccomp_mode
        if tcore.seccomp_mode == 2:
            c.seccomp_filters = _seccomp_filters(dump, tcore.seccomp_filter)


def _fill_task(proc: process_pb2.Process, tc: core_pb2.TaskCore) -> None:
    proc.comm = tc.comm
    proc.personality = tc.personality
    proc.flags = tc.flags
    proc.exit_code = tc.exit_code
    if tc.task_state == TASK_STOPPED and tc.HasField("stop_signo"):
        # a stopped task's exit_code (/proc/PID/stat) is its stop signal
        proc.exit_code = tc.stop_signo
    for i, lim in enumerate(tc.rlimits.rlimits):
        name = RLIMIT_NAMES[i] if i < len(RLIMIT_NAMES) else f"RLIMIT_{i}"
        proc.rlimits.add(resource=name, soft=lim.cur, hard=lim.max)
    for signo, sa in zip(SIGACTION_SIGNALS, tc.sigactions, strict=False):
        if sa.sigaction == SIG_IGN:
            proc.sig_ignored |= 1 << (signo - 1)
        elif sa.sigaction != SIG_DFL:
            proc.sig_caught |= 1 << (signo - 1)
    proc.sig_shared_pending = _signo_mask(tc.signals_s)
    for t in tc.timers.posix:
        notify = t.it_sigev_notify
        timer = proc.timers.add(id=t.it_id, signal=t.si_signo, sigval=t.sival_ptr,
                                notify=_SIGEV.get(notify & ~SIGEV_THREAD_ID,
                                                  f"unknown({notify})"),
                                clock_id=t.clock_id)
        if notify & SIGEV_THREAD_ID:
            timer.notify_tid = t.notify_thread_id


def _thread(dump: CriuDump, tid: int, leader_tc: core_pb2.TaskCore | None) -> process_pb2.Thread:
    th = process_pb2.Thread(tid=tid, ns_tids=[tid])
    core = _core(dump, tid)
    if core is None:
        return th
    tcore = core.thread_core
    if tcore.HasField("comm"):
        th.comm = tcore.comm
    elif leader_tc is not None:
        th.comm = leader_tc.comm
    if tcore.HasField("blk_sigset"):
        th.sig_blocked = tcore.blk_sigset
    elif leader_tc is not None:  # the leader's mask is in tc
        th.sig_blocked = leader_tc.blk_sigset
    th.sig_pending = _signo_mask(tcore.signals_p)
    th.sched_policy = tcore.sched_policy
    th.nice = tcore.sched_nice
    th.rt_priority = tcore.sched_prio
    return th


def _path_ref(files: _Files, file_id: int) -> common_pb2.PathRef | None:
    named = files.reg_name(file_id)
    if named is None:
        return None
    path, deleted = named
    return common_pb2.PathRef(path=path, deleted=deleted)


def _no_identity(why: dict[str, str], attr: str) -> None:
    """cwd/root/exe: CRIU names the file by path (a REG entry), without dev and inode."""
    for part in ("dev", "ino"):
        why[f"{attr}.{part}"] = f"{NOT_IN_CRIU}: CRIU names {attr} by path only"


def _process(ctx: _Ctx, entry: core_pb2.PstreeEntry) -> process_pb2.Process:
    dump = ctx.dump
    pid = entry.pid
    proc = process_pb2.Process(pid=pid, ppid=entry.ppid, pgid=entry.pgid, sid=entry.sid,
                               ns_pids=[pid], ns_pgids=[entry.pgid], ns_sids=[entry.sid])
    core = _core(dump, pid)
    if core is None:
        raise InconsistentImage(dump.path("pstree.img"), None,
                                f"pid {pid} is in the tree, but core-{pid}.img is missing")
    tc = core.tc if core.HasField("tc") else None
    why: dict[str, str] = {
        "ns_pids": f"{NOT_IN_CRIU}: CRIU records pids in the dumped tree's pid namespace "
                   "only, not those of outer levels",
        "start_time": NOT_IN_CRIU,
        "cmdline": f"{NOT_IN_CRIU} as text (it lies in the dumped memory, mm_arg_start..end)",
        "environ": f"{NOT_IN_CRIU} as text (it lies in the dumped memory, mm_env_start..end)",
        "namespaces": f"{NOT_IN_CRIU}: CRIU numbers namespaces by its own ids, not inodes",
        "cgroups": f"{NOT_IN_CRIU} (no cgroup.img, or no set of this task in it)",
        "exit_signal": NOT_IN_CRIU,
        "tty_nr": NOT_IN_CRIU,
        "tpgid": NOT_IN_CRIU,
        "utime_ticks": NOT_IN_CRIU, "stime_ticks": NOT_IN_CRIU,
        "vsize": NOT_IN_CRIU, "rss_pages": NOT_IN_CRIU,
    }
    if pid == (dump.entries("pstree.img")[0].pid if dump.entries("pstree.img") else -1):
        why["ppid"] = f"{NOT_IN_CRIU}: CRIU writes 0 as the root task's parent"
    state = tc.task_state if tc is not None else 0
    if tc is not None:
        _fill_task(proc, tc)
    else:
        why["comm"] = f"{NOT_IN_CRIU} (core-{pid}.img has no task core)"
    if state in _STATE_LETTER:
        proc.state = _STATE_LETTER[state]
    else:
        why["state"] = (f"{NOT_IN_CRIU}: CRIU records alive/stopped/dead only (task_state "
                        f"{state}); alive is any of R, S, D")
    if state == TASK_DEAD:
        # A zombie's threads[0] in pstree.img is garbage (CRIU never sets its
        # virtual pid); its only thread is the leader. CRIU keeps only its comm,
        # state and exit code: the zeros of the rest are not values.
        proc.threads.add(tid=pid, ns_tids=[pid], comm=proc.comm, state="Z")
        proc.flags = proc.personality = 0
        del proc.rlimits[:]
        proc.sig_ignored = proc.sig_caught = proc.sig_shared_pending = 0
        for attr in ("flags", "personality", "rlimits", "sig_ignored", "sig_caught",
                     "sig_shared_pending", "threads.sig_blocked", "sched_policy", "nice"):
            why[attr] = f"{NOT_IN_CRIU} for a zombie (CRIU keeps its comm and exit code only)"
        why.update({"creds": f"{NOT_IN_CRIU} for a zombie", "shares": f"{NOT_IN_CRIU} for a "
                    "zombie (no ids image)", "cwd": f"{NOT_IN_CRIU} for a zombie",
                    "root": f"{NOT_IN_CRIU} for a zombie", "exe": f"{NOT_IN_CRIU} for a zombie"})
        _unreadable(proc, why)
        return proc
    tcore = core.thread_core if core.HasField("thread_core") else None
    _fill_creds(proc, _creds(dump, pid, core), tcore, dump)
    if tcore is not None:
        proc.sched_policy = tcore.sched_policy
        proc.nice = tcore.sched_nice
        proc.rt_priority = tcore.sched_prio
    tids = list(entry.threads) or [pid]
    if tids[0] != pid and pid in tids:
        tids.remove(pid)
        tids.insert(0, pid)
    for tid in tids:
        th = _thread(dump, tid, tc)
        if not th.comm and tid == pid:
            th.comm = proc.comm
        proc.threads.append(th)
    why["threads.state"] = f"{NOT_IN_CRIU}: CRIU records no per-thread state"
    ids = _ids(dump, pid, core)
    if ids is not None:
        proc.shares.files, proc.shares.fs = ids.files_id, ids.fs_id
        proc.shares.sighand, proc.shares.vm = ids.sighand_id, ids.vm_id
    else:
        why["shares"] = f"{NOT_IN_CRIU} (ids-{pid}.img is missing)"
    fs_entries = dump.entries(f"fs-{pid}.img")
    if fs_entries:
        fs = fs_entries[0]
        assert isinstance(fs, core_pb2.FsEntry)
        for attr, fid in (("cwd", fs.cwd_id), ("root", fs.root_id)):
            ref = _path_ref(ctx.files, fid)
            if ref is None:
                why[attr] = f"fs-{pid}.img names file id {fid}, not a regular file in files.img"
            else:
                getattr(proc, attr).CopyFrom(ref)
                _no_identity(why, attr)
        if fs.HasField("umask"):
            proc.umask = fs.umask
        else:
            why["umask"] = NOT_IN_CRIU
    else:
        why.update({"cwd": f"{NOT_IN_CRIU} (fs-{pid}.img is missing)",
                    "root": f"{NOT_IN_CRIU} (fs-{pid}.img is missing)"})
    mm_entries = dump.entries(f"mm-{pid}.img")
    if mm_entries:
        mm = mm_entries[0]
        assert isinstance(mm, core_pb2.MmEntry)
        why["cmdline"] = (f"{NOT_IN_CRIU} as text, and its pages (mm_arg_start..end) are not "
                          f"in this dump's pagemap-{pid}.img/pages files")
        why["environ"] = (f"{NOT_IN_CRIU} as text, and its pages (mm_env_start..end) are not "
                          f"in this dump's pagemap-{pid}.img/pages files")
        _args_from_memory(dump, proc, mm, why)
        exe = _path_ref(ctx.files, mm.exe_file_id)
        if exe is not None:
            proc.exe.CopyFrom(exe)
            _no_identity(why, "exe")
        else:
            why["exe"] = f"mm-{pid}.img names file id {mm.exe_file_id}, not in files.img"
    _unreadable(proc, why)
    return proc


# -- memory ---------------------------------------------------------------

def _vma_kind(v: core_pb2.VmaEntry, stack_at: int) -> int:
    s = v.status
    for bit, kind in ((VMA_AREA_VSYSCALL, mm_pb2.VMA_VSYSCALL), (VMA_AREA_VDSO, mm_pb2.VMA_VDSO),
                      (VMA_AREA_VVAR, mm_pb2.VMA_VVAR), (VMA_AREA_HEAP, mm_pb2.VMA_HEAP),
                      (VMA_AREA_STACK, mm_pb2.VMA_STACK), (VMA_AREA_SYSVIPC, mm_pb2.VMA_SYSV_SHM),
                      (VMA_AREA_MEMFD, mm_pb2.VMA_MEMFD)):
        if s & bit:
            return kind
    if v.start <= stack_at < v.end:
        return mm_pb2.VMA_STACK
    if s & (VMA_FILE_PRIVATE | VMA_FILE_SHARED):
        return mm_pb2.VMA_FILE
    if s & VMA_ANON_SHARED:
        return mm_pb2.VMA_SHARED_ANON
    if s & VMA_ANON_PRIVATE:
        return mm_pb2.VMA_ANON
    return mm_pb2.VMA_OTHER


_SPECIAL_PATH = {mm_pb2.VMA_HEAP: b"[heap]", mm_pb2.VMA_STACK: b"[stack]",
                 mm_pb2.VMA_VDSO: b"[vdso]", mm_pb2.VMA_VVAR: b"[vvar]",
                 mm_pb2.VMA_VSYSCALL: b"[vsyscall]", mm_pb2.VMA_SHARED_ANON: b"/dev/zero"}


def _memory(ctx: _Ctx, pid: int, mm: core_pb2.MmEntry) -> mm_pb2.MemoryMap:
    out = mm_pb2.MemoryMap(pid=pid)
    files = ctx.files
    for v in mm.vmas:
        kind = _vma_kind(v, mm.mm_start_stack)
        vma = out.vmas.add(start=v.start, end=v.end, prot=v.prot & 7,
                           shared=bool(v.flags & MAP_SHARED), offset=v.pgoff, kind=kind)
        if v.status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED) or kind == mm_pb2.VMA_MEMFD:
            fe = files.by_id.get(v.shmid)
            inode = files.memfd_inodes.get(fe.memfd.inode_id) \
                if fe is not None and fe.HasField("memfd") else None
            if inode is not None and inode.name == SHARED_ANON_MEMFD and vma.shared:
                # CRIU 4.x dumps shared anonymous memory (shmem named "dev/zero", shown
                # as "/dev/zero (deleted)" in maps) as a memfd of that name.
                vma.kind, vma.path, vma.deleted = mm_pb2.VMA_SHARED_ANON, b"/dev/zero", True
                _shared_object(ctx, vma, inode.shmid, inode.size)
            elif fe is not None and fe.HasField("memfd"):
                vma.kind = mm_pb2.VMA_MEMFD
                vma.path = b"/memfd:" + (inode.name if inode is not None else b"")
                vma.deleted = True
                if inode is not None and vma.shared:
                    _shared_object(ctx, vma, inode.shmid, inode.size)
            else:
                named = files.reg_name(v.shmid)
                if named is not None:
                    vma.path, vma.deleted = named
        elif kind in _SPECIAL_PATH:
            vma.path = _SPECIAL_PATH[kind]
            vma.deleted = kind == mm_pb2.VMA_SHARED_ANON
            if kind == mm_pb2.VMA_SHARED_ANON:
                _shared_object(ctx, vma, v.shmid, v.pgoff + v.end - v.start)
    _unreadable(out, {
        "vmas.pages": f"{NOT_IN_CRIU}: pagemap-*.img lists the pages CRIU dumped, not "
                      "resident/swapped/file/exclusive counts",
        "vmas.inode": f"{NOT_IN_CRIU}: mappings name their file by CRIU file id (path "
                      "only), no dev/inode",
        "vmas.dev_major": f"{NOT_IN_CRIU}: mappings name their file by path only",
        "vmas.dev_minor": f"{NOT_IN_CRIU}: mappings name their file by path only",
        "vmas.map_file_known": f"{NOT_IN_CRIU}: file mappings have no map_files identity; "
                               "shared memory objects only their inode (shmid)",
        "vmas.map_file_ino": f"{NOT_IN_CRIU} for file mappings (shared memory: CRIU's shmid)",
        "vmas.map_file_dev": f"{NOT_IN_CRIU}: a shared memory object is named by its inode "
                             "(shmid) only; its device is given as 0",
        "page_counts_method": f"{NOT_IN_CRIU}: no page counts (see vmas.pages)",
    })
    return out


def _shared_object(ctx: _Ctx, vma: mm_pb2.Vma, shmid: int, size: int) -> None:
    """A shared anonymous or memfd mapping: its object is CRIU's pagemap-shmem-<shmid>.img.

    CRIU's shmid is the object's inode number (map_files st_ino); the device
    is not recorded, so the owner is (0, 0, shmid).
    """
    vma.map_file_known, vma.map_file_dev, vma.map_file_ino = True, 0, shmid
    known = ctx.objects.get(shmid)
    ctx.objects[shmid] = (max(size, known[0]) if known else size, vma.path)


# -- registers ------------------------------------------------------------

MTYPE_X86_64 = 1
X86_NATIVE, X86_COMPAT = 1, 2
# struct user_regs_struct (arch/x86/include/asm/user_64.h): CRIU's fields 1..27 in order.
_X86_64_REGS = ("r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx",
                "dx", "si", "di", "orig_ax", "ip", "cs", "flags", "sp", "ss", "fs_base",
                "gs_base", "ds", "es", "fs", "gs")
# struct user_regs_struct of i386 (asm/user_32.h), from the same CRIU fields.
_I386_REGS = ("bx", "cx", "dx", "si", "di", "bp", "ax", "ds", "es", "fs", "gs", "orig_ax",
              "ip", "cs", "flags", "sp", "ss")


def _fxsave(fp: core_pb2.UserX86Fpregs) -> bytes | None:
    """struct user_fpregs_struct (512 bytes) from CRIU's fields; None if they are short."""
    if len(fp.st_space) != 32 or len(fp.xmm_space) != 64:
        return None
    padding = list(fp.padding)[:24]
    padding += [0] * (24 - len(padding))
    return struct.pack("<4H2Q2I32I64I24I", fp.cwd & 0xFFFF, fp.swd & 0xFFFF, fp.twd & 0xFFFF,
                       fp.fop & 0xFFFF, fp.rip, fp.rdp, fp.mxcsr, fp.mxcsr_mask,
                       *fp.st_space, *fp.xmm_space, *padding)


def _thread_regs(dump: CriuDump, tid: int, sigmask: int) -> regs_pb2.ThreadRegs:
    out = regs_pb2.ThreadRegs(tid=tid)
    core = _core(dump, tid)
    why: dict[str, str] = {"audit_arch": NOT_IN_CRIU}
    if core is None or core.mtype != MTYPE_X86_64 or not core.HasField("thread_info"):
        arch = core.mtype if core is not None else "none"
        why["prstatus"] = f"CRIU registers of machine type {arch} are not mapped (x86_64 only)"
        _unreadable(out, why)
        return out
    gp = core.thread_info.gpregs
    if gp.mode == X86_COMPAT:
        out.arch = "i386"
        out.prstatus = struct.pack("<17I", *(getattr(gp, r) & 0xFFFFFFFF for r in _I386_REGS))
    else:
        out.arch = "x86_64"
        out.prstatus = struct.pack("<27Q", *(getattr(gp, r) for r in _X86_64_REGS))
    fx = _fxsave(core.thread_info.fpregs) if core.thread_info.HasField("fpregs") else None
    if fx is None:
        why["fpregs"] = f"{NOT_IN_CRIU} in full (st_space/xmm_space short or absent)"
    else:
        out.fpregs = fx
    why["xstate"] = (f"{NOT_IN_CRIU} as the kernel's XSAVE area: CRIU keeps its components "
                     "(ymmh, AVX-512, pkru...) as separate fields")
    out.sigmask = sigmask
    rseq = core.thread_core.rseq_entry
    if core.thread_core.HasField("rseq_entry"):
        out.rseq.abi_pointer, out.rseq.abi_size = rseq.rseq_abi_pointer, rseq.rseq_abi_size
        out.rseq.signature = rseq.signature
    else:
        why["rseq"] = NOT_IN_CRIU
    _unreadable(out, why)
    return out


def _registers(ctx: _Ctx) -> None:
    for proc in ctx.snap.processes:
        if proc.state == "Z":
            continue
        regs = regs_pb2.ProcessRegs(pid=proc.pid)
        for th in proc.threads:
            regs.threads.append(_thread_regs(ctx.dump, th.tid, th.sig_blocked))
        ctx.snap.registers.append(regs)


# -- pages ----------------------------------------------------------------

def _shmem_contents(dump: CriuDump, shmid: int, size: int
                    ) -> bytes | list[tuple[int, bytes]] | None:
    """A shared memory object's bytes (memfd contents) from pagemap-shmem-ID.img, or None.

    The whole object when its runs cover it, else the (offset, bytes) extents
    of its runs, adjacent ones merged: CRIU dumps the pages a shmem file holds,
    so a page it left out is a hole, as criu-model keeps a sparse file
    (SEEK_DATA on shmem answers by page).
    """
    name = f"pagemap-shmem-{shmid}.img"
    pages_id, runs = page_runs(dump, name)
    ps = page_size(dump, name)
    pf = dump.pages_files.get(pages_id)
    if ps is None or pf is None or any(r.offset is None for r in runs) or size > MAX_KEPT:
        return None
    extents: list[tuple[int, bytearray]] = []
    for r in sorted(runs, key=lambda r: r.vaddr):
        assert r.offset is not None
        if r.vaddr >= size:
            continue
        take = min(r.nr_pages * ps, size - r.vaddr)
        chunk = pf.pread(r.offset * ps, take)
        if extents and extents[-1][0] + len(extents[-1][1]) == r.vaddr:
            extents[-1][1].extend(chunk)
        else:
            extents.append((r.vaddr, bytearray(chunk)))
    if not size or [(o, len(c)) for o, c in extents] == [(0, size)]:
        return bytes(extents[0][1]) if extents else b""
    return [(o, bytes(c)) for o, c in extents]


class ProcessMemory:
    """The pages CRIU dumped of one process (pagemap-PID.img + its pages file), read on demand.

    Only pages in this dump (not in a parent dump, not lazy-only) can be read;
    anything else answers None, never zeros.
    """

    def __init__(self, dump: CriuDump, pid: int) -> None:
        name = f"pagemap-{pid}.img"
        self.pages_id, self.runs = page_runs(dump, name)
        self.page_size = page_size(dump, name)
        self._file = dump.pages_files.get(self.pages_id)

    def read(self, addr: int, length: int) -> bytes | None:
        ps = self.page_size
        if ps is None or self._file is None or length < 0 or length > MAX_KEPT:
            return None
        out = bytearray()
        at, end = addr, addr + length
        while at < end:
            run = next((r for r in self.runs if r.vaddr <= at < r.vaddr + r.nr_pages * ps), None)
            if run is None or run.offset is None:
                return None
            take = min(end, run.vaddr + run.nr_pages * ps) - at
            start = run.offset * ps + (at - run.vaddr)
            if start + take > self._file.size:
                return None
            out += self._file.pread(start, take)
            at += take
        return bytes(out)


def _nul_split(data: bytes) -> list[bytes]:
    """argv/envp as /proc/PID/cmdline shows them: NUL-separated, the last NUL dropped."""
    if not data:
        return []
    return data[:-1].split(b"\0") if data.endswith(b"\0") else data.split(b"\0")


def _args_from_memory(dump: CriuDump, proc: process_pb2.Process, mm: core_pb2.MmEntry,
                      why: dict[str, str]) -> None:
    """cmdline and environ, from the dumped stack pages when this dump holds them."""
    memory = ProcessMemory(dump, proc.pid)
    for attr, start, end in (("cmdline", mm.mm_arg_start, mm.mm_arg_end),
                             ("environ", mm.mm_env_start, mm.mm_env_end)):
        data = memory.read(start, end - start) if end >= start else None
        if data is not None:
            getattr(proc, attr).extend(_nul_split(data))
            why.pop(attr, None)


# -- files ----------------------------------------------------------------

def _unix_name(raw: bytes) -> tuple[bytes, bool]:
    """CRIU keeps a path's trailing NUL; criu-model keeps only the abstract leading NUL."""
    if raw.startswith(b"\0"):
        return raw, True
    return raw.rstrip(b"\0"), False


def _inet_addr(family: int, words: Iterable[int]) -> str:
    raw = b"".join(struct.pack("<I", w & 0xFFFFFFFF) for w in words)
    import ipaddress

    if family == AF_INET6:
        return str(ipaddress.IPv6Address(raw[:16].ljust(16, b"\0")))
    return str(ipaddress.IPv4Address(raw[:4].ljust(4, b"\0")))


_MEMINFO_NOT_IN_CRIU = ("rmem_alloc", "wmem_alloc", "fwd_alloc", "wmem_queued", "optmem",
                        "backlog", "drops")


def _meminfo(sock: cs.Socket, opts: sockets_pb2.SkOpts) -> None:
    """SO_RCVBUF/SO_SNDBUF from CRIU's options; the usage counters are not dumped."""
    sock.meminfo.rcvbuf = opts.so_rcvbuf
    sock.meminfo.sndbuf = opts.so_sndbuf
    _unreadable(sock, {f"meminfo.{name}": f"{NOT_IN_CRIU}: CRIU keeps SO_RCVBUF/SO_SNDBUF, "
                       "not sock_diag's usage counters" for name in _MEMINFO_NOT_IN_CRIU})
    _unreadable(sock, {"raw_attrs": f"{NOT_IN_CRIU}: CRIU keeps no raw sock_diag attributes"})


def _socket(ctx: _Ctx, fe: files_pb2.FileEntry) -> cs.Socket | None:
    files = ctx.files
    if fe.HasField("usk"):
        u = fe.usk
        sock = cs.Socket(inode=u.ino, family=cs.FAMILY_UNIX, type=u.type, state=u.state)
        name, abstract = _unix_name(u.name)
        sock.unix.name, sock.unix.abstract = name, abstract
        sock.unix.peer_inode = u.peer
        if u.state == 10:  # TCP_LISTEN
            sock.unix.backlog = u.backlog
        sock.rqueue = files.sk_queued.get(fe.id, 0)
        # CRIU always reads the shutdown state and writes it only when not NONE.
        sock.shutdown = SHUTDOWN.get(u.shutdown, 0)
        _meminfo(sock, u.opts)
        _unreadable(sock, {"wqueue": NOT_IN_CRIU, "cookie": NOT_IN_CRIU, "uid": NOT_IN_CRIU,
                           "unix.vfs_ino": NOT_IN_CRIU, "unix.vfs_dev": NOT_IN_CRIU})
        return sock
    if fe.HasField("isk"):
        i = fe.isk
        family = cs.FAMILY_INET6 if i.family == AF_INET6 else cs.FAMILY_INET
        sock = cs.Socket(inode=i.ino, family=family, type=i.type, state=i.state)
        sock.inet.src = _inet_addr(i.family, i.src_addr)
        sock.inet.dst = _inet_addr(i.family, i.dst_addr)
        sock.inet.sport, sock.inet.dport = i.src_port, i.dst_port
        sock.inet.protocol = i.proto
        sock.inet.v6only = i.v6only
        sock.shutdown = SHUTDOWN.get(i.shutdown, 0)  # written only when not NONE, as for unix
        _meminfo(sock, i.opts)
        why = {"cookie": NOT_IN_CRIU, "uid": NOT_IN_CRIU, "inet.ifindex": NOT_IN_CRIU}
        stream = files.tcp.get(i.ino)
        if i.proto == 6 and stream is None:
            why["inet.tcp_info"] = f"{NOT_IN_CRIU} (no tcp-stream image: not established)"
        if i.state == 10:
            sock.wqueue = i.backlog  # a listener's wqueue is its backlog, as sock_diag says
            why["rqueue"] = f"{NOT_IN_CRIU}: connections waiting in accept() are not counted"
        elif stream is not None:
            sock.rqueue, sock.wqueue = stream.inq_len, stream.outq_len
            sock.inet.tcp_info.state = i.state
            sock.inet.tcp_info.options = stream.opt_mask
            sock.inet.tcp_info.snd_wscale = stream.snd_wscale
            sock.inet.tcp_info.rcv_wscale = stream.rcv_wscale
            why["inet.tcp_info"] = (f"{NOT_IN_CRIU} beyond state, options and window scales "
                                    "(tcp-stream-*.img)")
        else:
            why.update({"rqueue": NOT_IN_CRIU, "wqueue": NOT_IN_CRIU})
        _unreadable(sock, why)
        return sock
    if fe.HasField("nlsk"):
        n = fe.nlsk
        sock = cs.Socket(inode=n.ino, family=cs.FAMILY_NETLINK, type=3, state=n.state)
        sock.netlink.protocol, sock.netlink.portid = n.protocol, n.portid
        sock.netlink.dst_portid, sock.netlink.dst_group = n.dst_portid, n.dst_group
        for w, word in enumerate(n.groups):
            for bit in range(32):
                if word >> bit & 1:
                    sock.netlink.groups.append(32 * w + bit + 1)
        _meminfo(sock, n.opts)
        _unreadable(sock, {"type": f"{NOT_IN_CRIU} (netlink sockets are restored as "
                           "SOCK_RAW)", "cookie": NOT_IN_CRIU, "rqueue": NOT_IN_CRIU,
                           "wqueue": NOT_IN_CRIU})
        return sock
    return None


MAX_KEPT = 256 << 20  # memfd contents assembled in memory from pages, at most


def _ghost_contents(known: cf.GhostFile, image: CriuImage) -> None:
    """Raw contents after the entry, or (sparse files) CRIU's chunks as data extents."""
    if image.chunks:
        for off, data in image.chunks:
            known.extents.add(offset=off, data=data)
        known.data_bytes = sum(len(d) for _, d in image.chunks)
    else:
        known.data = image.extras[0] if image.extras else b""
        known.data_bytes = len(known.data)
    known.captured = True


def _ghost(ctx: _Ctx, remap: files_pb2.RemapFilePath, name: bytes) -> cf.GhostRef:
    gid = remap.remap_id
    known = ctx.ghosts.get(gid)
    if known is None:
        image = ctx.dump.one(f"ghost-file-{gid:x}.img")
        known = cf.GhostFile(id=gid, path=name)
        if image is not None and image.entries:
            head = image.entries[0]
            assert isinstance(head, files_pb2.GhostFile)
            known.dev, known.ino = kdev_to_user(head.dev), head.ino
            _ghost_contents(known, image)
            known.size = head.size if head.HasField("size") else known.data_bytes
        else:
            _unreadable(known, {"data": f"ghost-file-{gid:x}.img is missing"})
        ctx.ghosts[gid] = known
    return cf.GhostRef(ghost_id=gid, captured=known.captured, size=known.size)


# Sub-messages of FileEntry that carry the file's owner (F_GETOWN_EX, F_GETSIG).
_FOWN_FIELDS = ("reg", "pipe", "usk", "isk", "nlsk", "psk", "efd", "epfd", "sgfd", "tfd", "ify",
                "ffy", "tty", "memfd", "pidfd")
F_OWNER_PGRP = 2


def _owner(fd: cf.Fd, fe: files_pb2.FileEntry, why: dict[str, str]) -> None:
    """CRIU's fown (F_GETOWN_EX type and pid, F_GETSIG) as criu-model's owner fields."""
    for name in _FOWN_FIELDS:
        if fe.HasField(name):
            sub = getattr(fe, name)
            if sub.HasField("fown"):
                own = sub.fown
                fd.owner_type = own.pid_type if own.pid_type in (0, 1, 2) else 0
                fd.owner_pid = -own.pid if own.pid_type == F_OWNER_PGRP else own.pid
                fd.owner_signum = own.signum
                return
    why["owner"] = f"{NOT_IN_CRIU} for this kind"


MEMFD_GHOST_BASE = 1 << 32  # memfd ghosts get ids apart from remap-fpath's ghost ids


def _memfd_ghost(ctx: _Ctx, inode: files_pb2.MemfdInode) -> cf.GhostRef:
    gid = MEMFD_GHOST_BASE + inode.inode_id
    known = ctx.ghosts.get(gid)
    if known is None:
        known = cf.GhostFile(id=gid, size=inode.size, path=b"/memfd:" + inode.name)
        data = _shmem_contents(ctx.dump, inode.shmid, inode.size)
        if data is None:
            _unreadable(known, {"data": f"pagemap-shmem-{inode.shmid}.img or its pages are "
                                "missing or in a parent dump, or the memfd is larger than "
                                f"{MAX_KEPT >> 20} MiB"})
        elif isinstance(data, bytes):
            known.data, known.captured, known.data_bytes = data, True, len(data)
        else:
            for offset, chunk in data:
                known.extents.add(offset=offset, data=chunk)
            known.captured, known.data_bytes = True, sum(len(c) for _o, c in data)
        _unreadable(known, {"ino": f"{NOT_IN_CRIU}: CRIU names a memfd by its own inode id",
                            "dev": f"{NOT_IN_CRIU}: a memfd's device (shmem) is not recorded"})
        ctx.ghosts[gid] = known
    return cf.GhostRef(ghost_id=gid, captured=known.captured, size=known.size)


def _fd(ctx: _Ctx, pid: int, info: files_pb2.FdinfoEntry,
        table: dict[int, int]) -> cf.Fd:
    files = ctx.files
    fd = cf.Fd(fd=info.fd, file_id=info.id)
    cloexec = O_CLOEXEC if info.flags & FD_CLOEXEC else 0
    why: dict[str, str] = {"dev": NOT_IN_CRIU}
    fe = files.by_id.get(info.id)
    if fe is None:
        raise InconsistentImage(ctx.dump.path("files.img"), None,
                                f"pid {pid} fd {info.fd} refers to file id {info.id}, "
                                "which files.img does not have")
    t = fe.type
    if fe.HasField("reg"):
        r = fe.reg
        fd.flags, fd.pos, fd.path = r.flags | cloexec, r.pos, r.name
        if r.mnt_id >= 0:
            fd.mnt_id = r.mnt_id
        fmt = stat.S_IFMT(r.mode)
        if r.flags & O_PATH:
            fd.kind = cf.FD_OPATH
        elif fmt == stat.S_IFDIR:
            fd.kind = cf.FD_DIRECTORY
        else:
            fd.kind = cf.FD_REGULAR
        fd.file.mode, fd.file.size = r.mode, r.size
        remap = files.remaps.get(fe.id)
        if remap is not None and remap.remap_type in (REMAP_GHOST, REMAP_LINKED):
            fd.deleted = True
            if remap.remap_type == REMAP_GHOST:
                fd.file.ghost.CopyFrom(_ghost(ctx, remap, r.name))
        why.update({"ino": NOT_IN_CRIU, "file.mtime_ns": NOT_IN_CRIU, "file.nlink": NOT_IN_CRIU,
                    "file.dev": NOT_IN_CRIU, "file.ino": NOT_IN_CRIU, "file.rdev": NOT_IN_CRIU,
                    "file.uid": f"{NOT_IN_CRIU}: a regular file entry has its mode, not its owner",
                    "file.gid": f"{NOT_IN_CRIU}: a regular file entry has its mode, not its owner"})
        if not r.HasField("size"):
            why["file.size"] = f"{NOT_IN_CRIU} (CRIU records sizes of mapped files only)"
    elif fe.HasField("pipe") or fe.HasField("fifo"):
        if fe.HasField("pipe"):
            p, img = fe.pipe, "pipes-data.img"
            fd.kind, fd.flags = cf.FD_PIPE, p.flags | cloexec
            pipe_id = p.pipe_id
        else:
            img = "fifo-data.img"
            fd.kind = cf.FD_FIFO
            pipe_id = fe.fifo.pipe_id
            reg = files.by_id.get(fe.fifo.regf_id)
            if reg is not None and reg.HasField("reg"):
                fd.path, fd.flags, fd.pos = reg.reg.name, reg.reg.flags | cloexec, reg.reg.pos
        acc = fd.flags & O_ACCMODE
        fd.pipe.pipe_ino = pipe_id
        fd.pipe.read_end = acc in (0, O_RDWR)
        fd.pipe.write_end = acc in (O_WRONLY, O_RDWR)
        fd.ino = pipe_id
        data = files.pipe_data.get((img, pipe_id))
        # CRIU dumps every pipe's queued data: a pipe without an entry holds none.
        fd.pipe.queued_bytes = data.bytes if data is not None else 0
        if data is not None and data.HasField("size"):
            fd.pipe.pipe_size = data.size
        else:
            why["pipe.pipe_size"] = NOT_IN_CRIU
    elif fe.HasField("usk") or fe.HasField("isk") or fe.HasField("nlsk") or fe.HasField("psk"):
        sub = (fe.usk if fe.HasField("usk") else fe.isk if fe.HasField("isk")
               else fe.nlsk if fe.HasField("nlsk") else fe.psk)
        fd.kind, fd.flags = cf.FD_SOCKET, sub.flags | cloexec
        ino = getattr(sub, "ino", 0)
        fd.ino, fd.socket.inode = ino, ino
        if fe.HasField("psk"):
            why["socket.inode"] = f"{NOT_IN_CRIU}: CRIU's packet socket entry has no inode"
        why["socket.probe"] = (f"{NOT_IN_CRIU}: criu-model's getsockopt probe; CRIU's "
                               "socket entry is mapped into sockets instead")
        sock = _socket(ctx, fe)
        if sock is not None and sock.inode not in ctx.sockets:
            ctx.sockets[sock.inode] = sock
    elif fe.HasField("efd"):
        fd.kind, fd.flags = cf.FD_EVENTFD, fe.efd.flags | cloexec
        fd.eventfd.count = fe.efd.counter
    elif fe.HasField("epfd"):
        fd.kind, fd.flags = cf.FD_EPOLL, fe.epfd.flags | cloexec
        for tfd in fe.epfd.tfd:
            fd.epoll.targets.add(tfd=tfd.tfd, events=tfd.events, data=tfd.data, pos=tfd.pos,
                                 ino=tfd.inode, sdev=kdev_to_user(tfd.dev),
                                 file_id=table.get(tfd.tfd, 0))
    elif fe.HasField("ify"):
        fd.kind, fd.flags = cf.FD_INOTIFY, fe.ify.flags | cloexec
        for wd in fe.ify.wd:
            fh = wd.f_handle
            handle = b"".join(struct.pack("<Q", w) for w in fh.handle)[:fh.bytes]
            fd.inotify.watches.add(wd=wd.wd, ino=wd.i_ino, sdev=kdev_to_user(wd.s_dev),
                                   mask=wd.mask, ignored_mask=wd.ignored_mask,
                                   fhandle_bytes=fh.bytes, fhandle_type=fh.type,
                                   f_handle=handle)
    elif fe.HasField("ffy"):
        f = fe.ffy
        fd.kind, fd.flags = cf.FD_FANOTIFY, f.flags | cloexec
        fd.fanotify.flags, fd.fanotify.event_flags = f.faflags, f.evflags
        for m in f.mark:
            mark = fd.fanotify.marks.add(mflags=m.mflags, mask=m.mask,
                                         ignored_mask=m.ignored_mask, sdev=kdev_to_user(m.s_dev))
            if m.type == 1:
                mark.type = cf.FANOTIFY_MARK_INODE
                mark.ino = m.ie.i_ino
                fh = m.ie.f_handle
                mark.fhandle_bytes, mark.fhandle_type = fh.bytes, fh.type
                mark.f_handle = b"".join(struct.pack("<Q", w) for w in fh.handle)[:fh.bytes]
            elif m.type == 2:
                mark.type, mark.mnt_id = cf.FANOTIFY_MARK_MOUNT, m.me.mnt_id
            else:
                mark.type = cf.FANOTIFY_MARK_OTHER
    elif fe.HasField("sgfd"):
        fd.kind, fd.flags = cf.FD_SIGNALFD, fe.sgfd.flags | cloexec
        fd.signalfd.sigmask = fe.sgfd.sigmask
    elif fe.HasField("tfd"):
        t_ = fe.tfd
        fd.kind, fd.flags = cf.FD_TIMERFD, t_.flags | cloexec
        fd.timerfd.clockid, fd.timerfd.ticks = t_.clockid, t_.ticks
        fd.timerfd.settime_flags = t_.settime_flags
        fd.timerfd.it_value_ns = t_.vsec * 1_000_000_000 + t_.vnsec
        fd.timerfd.it_interval_ns = t_.isec * 1_000_000_000 + t_.insec
    elif fe.HasField("memfd"):
        m = fe.memfd
        fd.kind, fd.flags, fd.pos = cf.FD_MEMFD, m.flags | cloexec, m.pos
        inode = files.memfd_inodes.get(m.inode_id)
        if inode is not None:
            fd.memfd.name, fd.memfd.size, fd.memfd.seals = inode.name, inode.size, inode.seals
            fd.memfd.hugetlb = bool(inode.hugetlb_flag)
            fd.path = b"/memfd:" + inode.name
        else:
            why["memfd"] = f"memfd.img has no inode {m.inode_id}"
        fd.deleted = True
        if inode is not None:
            fd.memfd.ghost.CopyFrom(_memfd_ghost(ctx, inode))
    elif fe.HasField("tty"):
        fd.kind, fd.flags = cf.FD_TTY, fe.tty.flags | cloexec
        info_ = files.tty_info.get(fe.tty.tty_info_id)
        if info_ is not None:
            # st_rdev as fstat(2) gives it (makedev's encoding), not the kernel's dev_t
            major, minor = os.major(info_.rdev), os.minor(info_.rdev)
            fd.tty.rdev_major, fd.tty.rdev_minor = major, minor
            fd.tty.driver = TTY_DRIVER.get(info_.type, f"unknown({info_.type})")
            fd.tty.is_master = info_.type == 1 and major == PTMX_MAJOR
            if info_.HasField("pty"):
                fd.tty.index = info_.pty.index
            if fd.tty.driver == "pts" and fd.tty.is_master:
                fd.tty.driver = "ptmx"
            system.tty_extra(fd, info_, files.tty_data.get(info_.id))
        reg = files.by_id.get(fe.tty.regf_id) if fe.tty.HasField("regf_id") else None
        if reg is not None and reg.HasField("reg"):
            fd.path, fd.pos = reg.reg.name, reg.reg.pos
    elif fe.HasField("nsf"):
        system.ns_file(fd, fe.nsf)
    elif fe.HasField("pidfd"):
        fd.kind, fd.flags = cf.FD_PIDFD, fe.pidfd.flags | cloexec
        fd.pidfd.pid = fe.pidfd.nspid
        fd.pidfd.ns_pids.append(fe.pidfd.nspid)
        fd.ino = fe.pidfd.ino
    else:
        fd.kind = cf.FD_UNKNOWN
        fd.unknown.raw = fe.SerializeToString()
        fd.unknown.reason = (f"CRIU file kind {files_pb2.FdType.Name(t)}"
                             if t in files_pb2.FdType.values() else f"CRIU file kind {t}")
        fd.unknown.reason += " has no criu-model mapping"
    _owner(fd, fe, why)
    if not fd.ino:
        why.setdefault("ino", f"{NOT_IN_CRIU} for this kind (an anonymous inode, or CRIU's own "
                       "id instead of the inode)")
    if fd.kind == cf.FD_EVENTFD:
        why["eventfd.id"] = NOT_IN_CRIU
        why["eventfd.semaphore"] = (f"{NOT_IN_CRIU}: CRIU's eventfd entry has the counter "
                                    "and the open flags, not EFD_SEMAPHORE")
    why["extra"] = f"{NOT_IN_CRIU}: fdinfo lines criu-model keeps raw are not in CRIU images"
    if fd.kind not in (cf.FD_REGULAR, cf.FD_DIRECTORY, cf.FD_OPATH, cf.FD_MEMFD, cf.FD_FIFO):
        why["pos"] = f"{NOT_IN_CRIU} for this kind"
    if not fd.mnt_id:
        why["mnt_id"] = NOT_IN_CRIU
    _unreadable(fd, why)
    return fd


def _fd_tables(ctx: _Ctx) -> None:
    dump = ctx.dump
    for proc in ctx.snap.processes:
        if proc.state == "Z":
            continue
        ids = _ids(dump, proc.pid, _core(dump, proc.pid))
        if ids is None:
            continue
        name = f"fdinfo-{ids.files_id}.img"
        if name not in dump.images:
            raise InconsistentImage(dump.path(f"ids-{proc.pid}.img"), None,
                                    f"pid {proc.pid} has files_id {ids.files_id}, but {name} "
                                    "is missing")
        infos = [e for e in dump.entries(name) if isinstance(e, files_pb2.FdinfoEntry)]
        table_ids = {e.fd: e.id for e in infos}
        table = cf.FdTable(pid=proc.pid)
        for info in sorted(infos, key=lambda e: e.fd):
            table.fds.append(_fd(ctx, proc.pid, info, table_ids))
        ctx.snap.fds.append(table)
    _write_only_pipes(ctx)


def _write_only_pipes(ctx: _Ctx) -> None:
    """Each pipe's (or FIFO's) queued bytes from pipes-data/fifo-data, on its first read
    end; one the dump holds only write ends of: CRIU leaves its queued bytes out (it
    reads them through a read end), so "none queued" is not known."""
    ends: dict[tuple[str, int], list[cf.Fd]] = defaultdict(list)
    for table in ctx.snap.fds:
        for fd in table.fds:
            if fd.WhichOneof("state") == "pipe":
                img = "pipes-data.img" if fd.kind == cf.FD_PIPE else "fifo-data.img"
                ends[(img, fd.pipe.pipe_ino)].append(fd)
    for key, fds in ends.items():
        data = ctx.files.pipe_bytes.get(key)
        reader = next((fd for fd in fds if fd.pipe.read_end), None)
        if data and reader is not None:  # on the first reader in dump order, as a dump has it
            reader.pipe.data = data
        if key in ctx.files.pipe_data or reader is not None:
            continue
        for fd in fds:
            fd.pipe.ClearField("queued_bytes")
            _unreadable(fd, {"pipe.queued_bytes": (
                f"{NOT_IN_CRIU}: CRIU reads a pipe's queued bytes through a read end, and "
                "no fd of the dump reads this one")})


# -- inventory ------------------------------------------------------------

def _inventory(dump: CriuDump, pstree: list[core_pb2.PstreeEntry]) -> inventory_pb2.Inventory:
    inv = inventory_pb2.Inventory(format_major=cm_framing.FORMAT_MAJOR,
                                  format_minor=cm_framing.FORMAT_MINOR)
    entries = dump.entries("inventory.img")
    c = entries[0] if entries else core_pb2.Inventory()
    assert isinstance(c, core_pb2.Inventory)
    inv.tool_version = (f"criu (image format v1.1, img_version {c.img_version}; "
                        "the CRIU release is not in CRIU images)")
    if pstree:
        inv.root_pids.append(pstree[0].pid)
    stats = dump.entries("stats-dump")
    if stats:
        d = stats[0].dump  # type: ignore[attr-defined]
        inv.frozen_for_ns = d.frozen_time * 1000
        inv.dump_duration_ns = (d.freezing_time + d.frozen_time) * 1000
    options = [f"img_version={c.img_version}"]
    if c.HasField("network_lock_method"):
        options.append("network_lock=" + NETWORK_LOCK.get(c.network_lock_method,
                                                          f"unknown({c.network_lock_method})"))
    if c.HasField("lsmtype"):
        options.append("lsm=" + LSM.get(c.lsmtype, f"unknown({c.lsmtype})"))
    if c.HasField("pre_dump_mode"):
        options.append(f"pre_dump_mode={c.pre_dump_mode}")
    if c.tcp_close:
        options.append("tcp_close")
    if c.allow_uprobes:
        options.append("allow_uprobes")
    if dump.one("tcp-stream-0.img") is not None or any(
            i.kind == "TCP_STREAM" for i in dump.images.values()):
        options.append("tcp_established (tcp-stream images present)")
    if c.HasField("dump_criu_run_id"):
        options.append("run_id=" + c.dump_criu_run_id.decode(errors="replace"))
    if c.plugins_entry.plugins:
        options.append("plugins=" + b",".join(c.plugins_entry.plugins).decode(errors="replace"))
    inv.collectors.add(name="criu.options", ran=True, reason=", ".join(options))
    if stats:
        d = stats[0].dump  # type: ignore[attr-defined]
        inv.collectors.add(name="criu.stats", ran=True, reason=(
            f"freezing {d.freezing_time} us, frozen {d.frozen_time} us, memdump "
            f"{d.memdump_time} us, memwrite {d.memwrite_time} us, pages scanned "
            f"{d.pages_scanned}, written {d.pages_written}"))
    if dump.container:
        inv.collectors.add(name="criu.container", ran=True, reason=", ".join(
            f"{k}={v}" for k, v in dump.container.items()))
    if not any(n.startswith("mountpoints-") for n in dump.images) and not any(
            n.startswith("mountpoints-") for n, _ in dump.not_read):
        inv.collectors.add(name="mounts", ran=False, reason=f"{NOT_IN_CRIU}: CRIU dumps the "
                           "mounts of a mount namespace of the tree's own only")
    for attr in ("kernel_release", "hostname", "time_ns", "boot_time_ns", "clock_ticks",
                 "page_size", "freeze_method"):
        inv.collectors.add(name=f"inventory.{attr}", ran=False, reason=NOT_IN_CRIU)
    kinds: dict[str, int] = defaultdict(int)
    for image in dump.images.values():
        kinds[image.kind] += 1
    for kind in sorted(kinds):
        inv.collectors.add(name=f"criu.{kind}", ran=True,
                           reason=f"{kinds[kind]} image file(s) read")
    for name, why in dump.not_read:
        inv.collectors.add(name=f"criu-image:{name}", ran=False, reason=why)
    return inv


def _link_pending(sockets: dict[int, cs.Socket]) -> None:
    """A connection not yet accepted: CRIU records the client's peer as the listener.

    sock_diag lists such clients under the listener (UNIX_DIAG_ICONS), as
    criu-model's `pending`; the client's real peer, the embryo socket in the
    listener's queue, is not in CRIU images.
    """
    for sock in sockets.values():
        if sock.WhichOneof("kind") != "unix" or sock.state == 10:
            continue
        peer = sockets.get(sock.unix.peer_inode)
        if peer is not None and peer.WhichOneof("kind") == "unix" and peer.state == 10:
            peer.unix.pending.append(sock.inode)
            sock.unreadable.add(field="unix.peer_inode", reason=(
                f"{NOT_IN_CRIU}: the embryo socket a pending connection is joined to is not "
                "dumped; CRIU names the listener instead"))


def _system(ctx: _Ctx) -> None:
    """Namespaces, mounts, cgroups, file locks and ttys (system.py)."""
    dump = ctx.dump
    ids_of: dict[int, core_pb2.TaskKobjIds] = {}
    cg_set_of: dict[int, int] = {}
    for proc in ctx.snap.processes:
        core = _core(dump, proc.pid)
        if proc.state != "Z":
            ids = _ids(dump, proc.pid, core)
            if ids is not None:
                ids_of[proc.pid] = ids
        if core is not None and core.HasField("tc") and core.tc.HasField("cg_set"):
            cg_set_of[proc.pid] = core.tc.cg_set
    for name, note in system.apply(ctx.snap, dump, ids_of, cg_set_of):
        ctx.snap.inventory.collectors.add(name=name, ran=True, reason=note)


def _attach_pages(ctx: _Ctx) -> None:
    """CRIU's pagemaps as the snapshot's page store, read in place (see pages.py).

    An owner whose pages file is missing (or of another page size) is left
    out, and its process's memory is marked not captured with the reason; a
    file cut short stays: reading past its end names the file and offset.
    """
    from criu_model.formats.criu.pages import open_store
    from criu_model.pages.capture import NOT_CAPTURED_FIELD

    dump, snap = ctx.dump, ctx.snap
    store = open_store(dump, dump.directory)
    pages = store.pages
    for inode in ctx.files.memfd_inodes.values():
        ctx.objects.setdefault(inode.shmid, (inode.size, b"/memfd:" + inode.name))
    dropped = {}
    for key, owner in list(pages.owners.items()):
        if key[0] == 0:
            owner.object_size, owner.object_path = ctx.objects.get(key[2], (0, b""))
        if owner.pages is None and any(r.offset is not None for r in owner.runs):
            dropped[key] = pages.owners.pop(key)
    inv = snap.inventory
    for name, why in pages.notes:
        inv.collectors.add(name=f"criu-pages:{name}", ran=False, reason=why)
    for mm in snap.memory:
        owner = dropped.get((mm.pid, 0, 0))
        if owner is not None:
            mm.unreadable.add(field=NOT_CAPTURED_FIELD, reason=f"page contents not in the "
                              f"dump: {os.path.basename(owner.pages_name)} is missing")
    if pages.lazy_pages:
        inv.collectors.add(name="criu-pages:lazy", ran=False, reason=(
            f"{pages.lazy_pages} pages are marked PE_LAZY without PE_PRESENT: CRIU left "
            "them on the dumping host's page server, they are in no image"))
    if not pages.owners:
        store.close()
        return
    stored = sum(r.nr_pages for o in pages.owners.values() for r in o.runs
                 if r.offset is not None)
    inv.pages_captured = True
    inv.page_stats.stored = stored
    inv.page_stats.inherited = pages.parent_pages
    inv.page_stats.shared_objects = sum(1 for k in pages.owners if not k[0])
    inv.collectors.add(name="pages_data", ran=True, reason=(
        f"{stored} pages of {len(pages.owners)} owners read in place from CRIU's "
        f"pages-*.img{f', {pages.parent_pages} in parent dumps' if pages.parent_pages else ''}"
        "; CRIU skips zero pages (absent here, not marked zero)"))
    snap.page_store = store


def to_snapshot(dump: CriuDump, old_handlers: dict[str, tuple[int, str]]) -> Snapshot:
    """Map the decoded images of one CRIU dump onto a criu-model Snapshot."""
    pstree = [e for e in dump.entries("pstree.img") if isinstance(e, core_pb2.PstreeEntry)]
    snap = Snapshot(inventory=_inventory(dump, pstree))
    ctx = _Ctx(dump=dump, files=_Files(dump, old_handlers), snap=snap)
    seen: set[int] = set()
    for entry in pstree:
        if entry.pid in seen:
            raise InconsistentImage(dump.path("pstree.img"), None,
                                    f"pid {entry.pid} appears twice")
        seen.add(entry.pid)
        snap.processes.append(_process(ctx, entry))
    for proc in snap.processes:
        mm_entries = dump.entries(f"mm-{proc.pid}.img")
        if proc.state != "Z" and mm_entries:
            mm = mm_entries[0]
            assert isinstance(mm, core_pb2.MmEntry)
            snap.memory.append(_memory(ctx, proc.pid, mm))
    _fd_tables(ctx)
    _registers(ctx)
    _attach_pages(ctx)
    _system(ctx)
    snap.ghosts.extend(ctx.ghosts[k] for k in sorted(ctx.ghosts))
    _link_pending(ctx.sockets)
    snap.sockets.extend(ctx.sockets[k] for k in sorted(ctx.sockets))
    return snap
