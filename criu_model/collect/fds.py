"""Collect every file descriptor of one process: /proc/PID/fd + fdinfo + stat.

Per fd we make a fixed number of reads (one fdinfo read, one readlink, one
stat through the magic link), so thousands of fds cost linear time. The kind
is told apart from the link text (``pipe:[N]``, ``socket:[N]``,
``anon_inode:[eventfd]``...), the fdinfo keys and ``st_mode``/``st_rdev``.

Three things fdinfo does not show are read without touching the target:

* the F_SETOWN owner and F_SETSIG signal, and a pipe's queued bytes: we take a
  copy of the target's fd with ``pidfd_getfd`` (Linux 5.6), which refers to the
  *same* open file description, and ask F_GETOWN_EX / F_GETSIG / FIONREAD /
  F_GETPIPE_SZ, all read-only; a read end's queued bytes themselves are copied
  with tee(2), which leaves them in the pipe (kernel/pipes.py). A socket is
  copied only where receiving it changes nothing (``__receive_sock``
  re-charges it to the receiver's net_cls/net_prio cgroup: see
  collect/sockprobe.py), and then identified
  with read-only getsockopt/getsockname queries. Without ``pidfd_getfd``
  (old kernel, ptrace refused) a pipe read end is reopened read-only through
  /proc instead (a new reader of a pipe that has one already is harmless); a
  write end never is, because a new reader would change what the target's
  writes do.
* a memfd's seals and the contents of deleted files and memfds: we open
  /proc/PID/fd/N read-only, a *new* open file description, so the target's
  file position is untouched. Nothing is ever read out of a pipe (tee copies
  its bytes without taking them).

A fd closed between listing and reading (ENOENT on its link or fdinfo) is
skipped and counted in ``FdTable.vanished``; when the whole process is gone we
raise :class:`ProcessGone`.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import re
import stat
import struct
import termios
from collections.abc import Sequence

from criu_model.collect import fdinfo
from criu_model.collect.fdinfo import FdinfoText
from criu_model.collect.locks import waiting_locks
from criu_model.collect.procfs import PROC_ROOT, ProcDir, read_all, task_state
from criu_model.errors import PTRACE_HINT, AccessDenied, CriuModelError, ProcessGone
from criu_model.images.pb import files_pb2
from criu_model.kernel.devnum import (
    TTY_MAJOR,
    UNIX98_PTY_MAJOR_COUNT,
    UNIX98_PTY_MINORS,
    UNIX98_PTY_SLAVE_MAJOR,
    VT_MINORS,
)
from criu_model.kernel.extents import data_extents
from criu_model.kernel.flags import ACCMODE, OpenFlag
from criu_model.kernel.kcmp import KcmpType, raw_kcmp
from criu_model.kernel.libc import libc, syscall
from criu_model.kernel.pipes import peek_pipe

DEFAULT_GHOST_LIMIT = 1 << 20

# include/uapi/asm-generic/fcntl.h (x86_64 and aarch64 values)
O_RDONLY = 0o0
O_WRONLY = int(OpenFlag.WRONLY)
O_RDWR = int(OpenFlag.RDWR)
O_PATH = int(OpenFlag.PATH)
O_CLOEXEC = int(OpenFlag.CLOEXEC)

F_GETSIG = 11
F_GETOWN_EX = 16
F_GETPIPE_SZ = 1032
F_GET_SEALS = 1034
FIONREAD = termios.FIONREAD
_OWNER_EX = struct.Struct("ii")  # struct f_owner_ex { int type; pid_t pid; }
_INT = struct.Struct("i")

# include/uapi/linux/magic.h
TMPFS_MAGIC = 0x01021994
HUGETLBFS_MAGIC = 0x958458F6
_STATFS_SIZE = 120  # struct statfs on 64-bit: f_type is the first long

# include/uapi/linux/major.h
PTY_MASTER_MAJOR = 2          # legacy BSD ptys
PTY_SLAVE_MAJOR = 3
TTYAUX_MAJOR = 5              # 0 /dev/tty, 1 /dev/console, 2 /dev/ptmx
UNIX98_PTY_MASTER_MAJOR = 128  # 128..135
_TTYAUX_CTTY, _TTYAUX_CONSOLE, _TTYAUX_PTMX = 0, 1, 2

_DELETED = b" (deleted)"
_PIPE = b"pipe:["
_SOCKET = b"socket:["
_NSFS = re.compile(rb"([a-z]+):\[(\d+)\]")
_NS_TYPES = frozenset({b"net", b"uts", b"ipc", b"mnt", b"pid", b"user", b"cgroup", b"time"})
_ANON = b"anon_inode:"
_MEMFD = b"/memfd:"

# Name after "anon_inode:" -> kind, and the fdinfo body parser of that kind.
_ANON_KINDS: dict[bytes, int] = {
    b"[eventfd]": files_pb2.FD_EVENTFD,
    b"[eventpoll]": files_pb2.FD_EPOLL,
    b"inotify": files_pb2.FD_INOTIFY,
    b"[fanotify]": files_pb2.FD_FANOTIFY,
    b"[signalfd]": files_pb2.FD_SIGNALFD,
    b"[timerfd]": files_pb2.FD_TIMERFD,
    b"[pidfd]": files_pb2.FD_PIDFD,    # also on pidfs (Linux 6.9+), which keeps the name
    b"[io_uring]": files_pb2.FD_IO_URING,
}
# Anon-inode kind -> (Fd oneof field, fdinfo parser): one registry, no if-chain.
_ANON_PARSERS = {
    files_pb2.FD_EVENTFD: ("eventfd", fdinfo.parse_eventfd),
    files_pb2.FD_EPOLL: ("epoll", fdinfo.parse_epoll),
    files_pb2.FD_INOTIFY: ("inotify", fdinfo.parse_inotify),
    files_pb2.FD_FANOTIFY: ("fanotify", fdinfo.parse_fanotify),
    files_pb2.FD_SIGNALFD: ("signalfd", fdinfo.parse_signalfd),
    files_pb2.FD_TIMERFD: ("timerfd", fdinfo.parse_timerfd),
    files_pb2.FD_PIDFD: ("pidfd", fdinfo.parse_pidfd),
}

# Filesystems whose ->flush() runs on *every* close (not only the last) and may
# call a userspace daemon or the network: closing our pidfd_getfd copy there
# could block on a frozen FUSE server. We do not probe those fds.
_FLUSHING_FS = frozenset({b"fuse", b"fuseblk", b"nfs", b"nfs4", b"cifs", b"smb3", b"ceph",
                          b"9p", b"afs", b"orangefs", b"gfs2", b"ocfs2"})
_FUSE_SUBTYPE = b"fuse."

_NOT_RESTORABLE_IO_URING = "io_uring rings and their in-flight requests cannot be restored"


def share_key(fd: files_pb2.Fd) -> tuple[int, int, int, int]:
    """Prefilter key of the sharing pass: equal for fds that may share a description.

    O_CLOEXEC is per fd, not per open file description, so it is masked out.
    """
    return fd.dev, fd.ino, fd.pos, fd.flags & ~O_CLOEXEC


class GhostStore:
    """Contents of deleted files and memfds, captured once per (dev, ino) per dump.

    One store is shared by every ``collect_fds`` call of a dump; ``files()``
    returns the GhostFile entries of ghosts.img, referenced by ``GhostRef.ghost_id``.
    """

    def __init__(self) -> None:
        self._by_key: dict[tuple[int, int], files_pb2.GhostFile] = {}

    def get(self, dev: int, ino: int) -> files_pb2.GhostFile | None:
        return self._by_key.get((dev, ino))

    def add(self, dev: int, ino: int, *, size: int, path: bytes,
            data: bytes | list[tuple[int, bytes]] | None,
            reason: str = "") -> files_pb2.GhostFile:
        """Record a file; ``data`` None means not captured and ``reason`` says why.

        ``data`` is the whole file, or (offset, bytes) extents of a sparse one.
        """
        ghost = files_pb2.GhostFile(id=len(self._by_key) + 1, size=size, path=path,
                                    dev=dev, ino=ino, captured=data is not None)
        if isinstance(data, bytes):
            ghost.data = data
            ghost.data_bytes = len(data)
        elif data is not None:
            for offset, chunk in data:
                ghost.extents.add(offset=offset, data=chunk)
            ghost.data_bytes = sum(len(chunk) for _o, chunk in data)
        else:
            ghost.unreadable.add(field="data", reason=reason)
        self._by_key[(dev, ino)] = ghost
        return ghost

    def files(self) -> list[files_pb2.GhostFile]:
        return list(self._by_key.values())


class _Vanished(Exception):
    """One fd disappeared between listing and reading it."""


def _fs_magic(path: bytes) -> int | None:
    """statfs(path).f_type, or None when statfs fails."""
    buf = ctypes.create_string_buffer(_STATFS_SIZE)
    if libc.statfs(path, buf) != 0:
        return None
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


def _tty(rdev: int) -> files_pb2.Tty | None:
    """Tty message for a tty character device number; None for other devices."""
    major, minor = os.major(rdev), os.minor(rdev)
    if major not in _TTY_MAJORS:  # /dev/null and friends: no message to build
        return None
    tty = files_pb2.Tty(rdev_major=major, rdev_minor=minor)
    if UNIX98_PTY_SLAVE_MAJOR <= major < UNIX98_PTY_SLAVE_MAJOR + UNIX98_PTY_MAJOR_COUNT:
        tty.driver, tty.index = "pts", (major - UNIX98_PTY_SLAVE_MAJOR) * UNIX98_PTY_MINORS + minor
    elif UNIX98_PTY_MASTER_MAJOR <= major < UNIX98_PTY_MASTER_MAJOR + UNIX98_PTY_MAJOR_COUNT:
        tty.driver, tty.is_master = "ptmx", True
    elif major == TTYAUX_MAJOR and minor == _TTYAUX_PTMX:
        tty.driver, tty.is_master = "ptmx", True  # index from fdinfo tty-index
    elif major == TTYAUX_MAJOR and minor == _TTYAUX_CTTY:
        tty.driver = "ctty"
    elif major == TTYAUX_MAJOR and minor == _TTYAUX_CONSOLE:
        tty.driver = "console"
    elif major == TTY_MAJOR:
        if minor < VT_MINORS:
            tty.driver, tty.index = "vt", minor
        else:
            tty.driver, tty.index = "serial", minor - VT_MINORS
    elif major == PTY_MASTER_MAJOR:
        tty.driver, tty.is_master, tty.index = "pty_legacy", True, minor
    elif major == PTY_SLAVE_MAJOR:
        tty.driver, tty.index = "pty_legacy", minor
    else:
        return None
    return tty


# Every major _tty() names a driver for (the others return None at once).
_TTY_MAJORS = frozenset({
    *range(UNIX98_PTY_SLAVE_MAJOR, UNIX98_PTY_SLAVE_MAJOR + UNIX98_PTY_MAJOR_COUNT),
    *range(UNIX98_PTY_MASTER_MAJOR, UNIX98_PTY_MASTER_MAJOR + UNIX98_PTY_MAJOR_COUNT),
    TTYAUX_MAJOR, TTY_MAJOR, PTY_MASTER_MAJOR, PTY_SLAVE_MAJOR})


def _regular(st: os.stat_result) -> files_pb2.RegularFile:
    return files_pb2.RegularFile(size=st.st_size, mtime_ns=st.st_mtime_ns, mode=st.st_mode,
                                 dev=st.st_dev, ino=st.st_ino, nlink=st.st_nlink,
                                 rdev=st.st_rdev, uid=st.st_uid, gid=st.st_gid)


def _link_target(link_path: bytes, st: os.stat_result) -> bytes:
    """The target of the symlink an O_PATH|O_NOFOLLOW fd holds (readlinkat(fd, "")).

    readlink on /proc/PID/fd/N gives the link's own path; opening that magic
    link with O_PATH (no O_NOFOLLOW) lands on the symlink itself, not its
    target: a new O_PATH description, which no file operation runs for.
    """
    copy = os.open(link_path, O_PATH | O_CLOEXEC)
    try:
        got = os.fstat(copy)
        if (got.st_dev, got.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISLNK(got.st_mode):
            raise OSError(errno.ESTALE, "fd was replaced while reading it")
        return os.readlink(b"", dir_fd=copy)
    finally:
        os.close(copy)


class _Probe:
    """Copies of the target's fds through pidfd_getfd, for read-only fcntl/ioctl queries.

    The pidfd is opened at the first copy: a process whose fds were all known
    from another's (see :class:`_Seen`) needs none.
    """

    def __init__(self, pid: int, enabled: bool) -> None:
        self.pid = pid
        self.pidfd: int | None = None
        self.usable = enabled  # False once pidfd_open or pidfd_getfd refused
        self.reason = "" if enabled else "not probed: not reading the live /proc"

    def _open(self) -> bool:
        if self.pidfd is None and self.usable:
            try:
                self.pidfd = syscall("pidfd_open", self.pid, 0)
            except OSError as err:
                self.reason = f"pidfd_open: {os.strerror(err.errno)}"
                self.usable = False
            except KeyError:
                self.reason = "pidfd_open: syscall number unknown on this architecture"
                self.usable = False
        return self.pidfd is not None

    def copy(self, fd: int) -> int | None:
        """A copy of the target's fd (same open file description); None if refused."""
        if not self._open():
            return None
        try:
            return syscall("pidfd_getfd", self.pidfd, fd, 0)
        except OSError as err:
            if err.errno == errno.EBADF:
                raise _Vanished from err
            # EPERM: ptrace access refused (e.g. pid 1 here); ENOSYS: before Linux 5.6.
            self.reason = f"pidfd_getfd: {os.strerror(err.errno)} ({PTRACE_HINT})"
            self.usable = False
            self.close()
            return None

    def close(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


# fd number, fdinfo text, link text and the stat fields a message takes
FdSeen = tuple[int, bytes, bytes, int, int, int, int, int, int, int, int, int]


class _Seen:
    """What one (fd number, fdinfo, link, stat) gave in a dump: the serialized Fd
    before its probe, and the first fd (``pid``, ``fd``) probed cleanly with it
    and its whole message (``probed``). Another process's fd that kcmp says is
    the same open file description has the same owner, signal and pipe state,
    so that message is its own: one kcmp call instead of pidfd_getfd, two or four
    fcntl/ioctl and a close (a forked tree inherits most of its fds)."""

    __slots__ = ("fd", "parsed", "pid", "probed")

    def __init__(self, parsed: bytes) -> None:
        self.parsed = parsed
        self.pid = self.fd = 0
        self.probed: bytes | None = None


FdsSeen = dict[FdSeen, _Seen]
_MAX_SEEN = 1 << 12
_KCMP_FILE = int(KcmpType.FILE)


class _Collector:
    """Reads one process's fds; one instance per collect_fds call."""

    def __init__(self, pid: int, proc_root: str, ghost_limit: int, ghosts: GhostStore,
                 probe: _Probe, fstypes: dict[int, bytes], seen: FdsSeen | None) -> None:
        self.pid = pid
        self.seen = seen
        self.kcmp = raw_kcmp() if seen is not None else None
        self.proc = ProcDir(pid, proc_root)
        self.fd_dir = os.fsencode(f"{proc_root}/{pid}/fd")
        self.info_dir = f"{proc_root}/{pid}/fdinfo"
        self.root = os.fsencode(f"{proc_root}/{pid}/root")
        self.ghost_limit = ghost_limit
        self.ghosts = ghosts
        self.probe = probe
        self.fstypes = fstypes
        self._read_mountinfo = False

    def fstype(self, mnt_id: int) -> bytes:
        """Filesystem type of mount ``mnt_id``; b"" if this process's mountinfo lacks it.

        Mount ids are unique system-wide (one IDA for every namespace), so the
        types are shared by the processes of a dump: a process's mountinfo is
        read (once) only when it holds a file on a mount no other one showed.
        """
        if mnt_id not in self.fstypes and not self._read_mountinfo:
            self._read_mountinfo = True
            for line in self.proc.read("mountinfo").split(b"\n"):
                head, sep, tail = line.partition(b" - ")
                if sep:
                    self.fstypes.setdefault(int(head.split(b" ", 1)[0]),
                                            tail.split(b" ", 1)[0])
        return self.fstypes.get(mnt_id, b"")

    # -- one fd ---------------------------------------------------------------

    def read_fd(self, n: int) -> files_pb2.Fd:
        """Everything about fd ``n``; raises _Vanished when it was closed meanwhile."""
        link_path = b"%s/%d" % (self.fd_dir, n)
        try:
            raw = read_all(f"{self.info_dir}/{n}", single=True)  # single_open()
            link = os.readlink(link_path)
        except FileNotFoundError as err:
            raise _Vanished from err
        st: os.stat_result | None = None
        stat_error = ""
        try:
            st = os.stat(link_path)
        except FileNotFoundError as err:
            raise _Vanished from err
        except OSError as err:
            if err.errno in (errno.EACCES, errno.EPERM, errno.ESRCH):
                raise
            stat_error = f"stat: {os.strerror(err.errno)}"
        key: FdSeen | None = None
        if self.seen is not None and st is not None and not link.endswith(_DELETED):
            # Forked processes hold the same fds: what their fdinfo, link and stat
            # give (before the probe) is parsed and classified once per dump.
            key = (n, raw, link, st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid,
                   st.st_gid, st.st_size, st.st_mtime_ns, st.st_rdev)
            seen = self.seen.get(key)
            if seen is not None:
                if seen.probed is not None and seen.pid != self.pid and self.kcmp and \
                        self.kcmp(self.pid, seen.pid, _KCMP_FILE, n, seen.fd) == 0:
                    return files_pb2.Fd.FromString(seen.probed)
                fd = files_pb2.Fd.FromString(seen.parsed)
                self._probe_kept(fd, n, seen)
                return fd
        try:
            info = fdinfo.split_fdinfo(raw)
        except ValueError as err:
            return _unparsable(n, link, raw, err)
        # one constructor call rather than field writes: this runs for every fd
        fd = files_pb2.Fd(
            fd=n, flags=info.flags, pos=info.pos, mnt_id=info.mnt_id,
            dev=st.st_dev if st is not None else 0,
            ino=info.ino if info.ino is not None else (st.st_ino if st is not None else 0))
        if info.locks:
            fd.locks.extend(info.locks)
        if stat_error:
            fd.unreadable.add(field="stat", reason=stat_error)
        try:
            self._classify(fd, n, link, info, st)
        except ValueError as err:
            return _unparsable(n, link, raw, err)
        if key is not None and self.seen is not None and st is not None \
                and not stat.S_ISLNK(st.st_mode):
            # Classifying anything else reads nothing more (a deleted file's ghost,
            # a memfd's seals or a symlink's target would): the same inputs give
            # the same message.
            if len(self.seen) >= _MAX_SEEN:
                self.seen.clear()
            seen = self.seen[key] = _Seen(fd.SerializeToString())
            self._probe_kept(fd, n, seen)
            return fd
        self._probe(fd, n)
        return fd

    def _probe_kept(self, fd: files_pb2.Fd, n: int, seen: _Seen) -> None:
        """Probe ``fd``; the first clean probe of a kept fd becomes its ``probed`` message."""
        notes = len(fd.unreadable)
        self._probe(fd, n)
        if seen.probed is None and self.probe.pidfd is not None \
                and fd.kind != files_pb2.FD_SOCKET and len(fd.unreadable) == notes:
            seen.pid, seen.fd, seen.probed = self.pid, n, fd.SerializeToString()

    def _classify(self, fd: files_pb2.Fd, n: int, link: bytes, info: FdinfoText,
                  st: os.stat_result | None) -> None:
        extra = fd.extra
        if link.startswith(_PIPE):
            fd.kind = files_pb2.FD_PIPE
            self._pipe(fd, n)
            fdinfo.parse_generic(info.body, extra)
        elif link.startswith(_SOCKET):
            fd.kind = files_pb2.FD_SOCKET
            fd.socket.inode = int(link[len(_SOCKET):-1])
            fdinfo.parse_generic(info.body, extra)
        elif link.startswith(_ANON):
            self._anon(fd, link[len(_ANON):], info)
        elif link.startswith(b"/"):
            self._path(fd, n, link, info, st)
        elif (ns := _NSFS.fullmatch(link)) is not None and ns.group(1) in _NS_TYPES:
            # an open namespace file (/proc/PID/ns/net held open): nsfs, Linux 3.19
            fd.kind = files_pb2.FD_NSFS
            fd.path = link
            fd.nsfs.type = ns.group(1).decode()
            fd.nsfs.inode = int(ns.group(2))
            fdinfo.parse_generic(info.body, extra)
        else:
            # any pseudo file a newer kernel invents
            fd.kind = files_pb2.FD_UNKNOWN
            fd.path = link
            fd.unknown.raw = info.raw_body()
            fd.unknown.reason = f"link {link.decode('ascii', 'backslashreplace')!r} is no path " \
                                "and no pseudo-file kind we model"

    def _anon(self, fd: files_pb2.Fd, name: bytes, info: FdinfoText) -> None:
        kind = _ANON_KINDS.get(name, files_pb2.FD_UNKNOWN)
        fd.kind = kind
        parser = _ANON_PARSERS.get(kind)
        if parser is not None:
            field, parse = parser
            getattr(fd, field).CopyFrom(parse(info.body, fd.extra))
            if kind == files_pb2.FD_EVENTFD and not fd.eventfd.HasField("semaphore"):
                fd.unreadable.add(field="eventfd.semaphore",
                                  reason="fdinfo lacks eventfd-semaphore (printed since Linux 6.5)")
        elif kind == files_pb2.FD_IO_URING:
            fd.io_uring.raw = info.raw_body()
            fd.io_uring.reason = _NOT_RESTORABLE_IO_URING
        else:
            fd.path = _ANON + name
            fd.unknown.raw = info.raw_body()
            shown = name.decode("ascii", "backslashreplace")
            fd.unknown.reason = f"anon inode {shown} is not modelled"

    def _path(self, fd: files_pb2.Fd, n: int, link: bytes, info: FdinfoText,
              st: os.stat_result | None) -> None:
        path, deleted = link, False
        if link.endswith(_DELETED) and not self._still_linked(link, st):
            path, deleted = link[: -len(_DELETED)], True
        fd.path, fd.deleted = path, deleted
        extra = fd.extra
        if st is None:
            fd.kind = files_pb2.FD_OPATH if fd.flags & O_PATH else files_pb2.FD_REGULAR
            fdinfo.parse_generic(info.body, extra)
            return
        mode = st.st_mode
        if fd.flags & O_PATH:
            fd.kind = files_pb2.FD_OPATH
            self._file(fd, n, st, deleted)
        elif stat.S_ISDIR(mode):
            fd.kind = files_pb2.FD_DIRECTORY
            fd.file.CopyFrom(_regular(st))
        elif stat.S_ISFIFO(mode):
            fd.kind = files_pb2.FD_FIFO
            self._pipe(fd, n)
        elif stat.S_ISCHR(mode) and (tty := _tty(st.st_rdev)) is not None:
            fd.kind = files_pb2.FD_TTY
            index = fdinfo.parse_tty_index(info.body, extra)
            if index is not None:
                tty.index = index
            elif not tty.HasField("index"):
                fd.unreadable.add(field="tty.index", reason="fdinfo lacks tty-index")
            fd.tty.CopyFrom(tty)
            return
        elif deleted and path.startswith(_MEMFD) and stat.S_ISREG(mode) \
                and (magic := _fs_magic(b"%s/%d" % (self.fd_dir, n))) in (TMPFS_MAGIC,
                                                                          HUGETLBFS_MAGIC):
            fd.kind = files_pb2.FD_MEMFD
            self._memfd(fd, n, st, path, magic == HUGETLBFS_MAGIC)
        else:
            fd.kind = files_pb2.FD_REGULAR
            self._file(fd, n, st, deleted)
        fdinfo.parse_generic(info.body, extra)

    def _still_linked(self, link: bytes, st: os.stat_result | None) -> bool:
        """A file literally named "x (deleted)" that exists is not deleted."""
        if st is None:
            return False
        try:
            other = os.lstat(self.root + link)
        except OSError:
            return False
        return (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino)

    def _file(self, fd: files_pb2.Fd, n: int, st: os.stat_result, deleted: bool) -> None:
        fd.file.CopyFrom(_regular(st))
        if deleted and stat.S_ISREG(st.st_mode):
            fd.file.ghost.CopyFrom(self._ghost(fd, n, st, None))
        elif stat.S_ISLNK(st.st_mode):
            try:
                fd.file.link_target = _link_target(b"%s/%d" % (self.fd_dir, n), st)
            except OSError as err:
                if err.errno == errno.ENOENT:
                    raise _Vanished from err
                fd.unreadable.add(field="file.link_target",
                                  reason=f"readlinkat: {os.strerror(err.errno)}")

    def _memfd(self, fd: files_pb2.Fd, n: int, st: os.stat_result, path: bytes,
               hugetlb: bool) -> None:
        memfd = fd.memfd
        memfd.name, memfd.size, memfd.hugetlb = path[len(_MEMFD):], st.st_size, hugetlb
        try:
            with _Reopened(b"%s/%d" % (self.fd_dir, n), st) as copy:
                memfd.seals = fcntl.fcntl(copy.fd, F_GET_SEALS)
                memfd.ghost.CopyFrom(self._ghost(fd, n, st, copy))
        except OSError as err:
            fd.unreadable.add(field="memfd.seals", reason=f"reopen: {os.strerror(err.errno)}")
            memfd.ghost.CopyFrom(self._ghost(fd, n, st, None))

    def _ghost(self, fd: files_pb2.Fd, n: int, st: os.stat_result,
               opened: _Reopened | None) -> files_pb2.GhostRef:
        ghost = self.ghosts.get(st.st_dev, st.st_ino)
        if ghost is None:
            data, reason = self._contents(fd, n, st, opened)
            ghost = self.ghosts.add(st.st_dev, st.st_ino, size=st.st_size, path=fd.path,
                                    data=data, reason=reason)
        return files_pb2.GhostRef(ghost_id=ghost.id, captured=ghost.captured, size=st.st_size)

    def _contents(self, fd: files_pb2.Fd, n: int, st: os.stat_result,
                  opened: _Reopened | None) -> tuple[bytes | list[tuple[int, bytes]] | None, str]:
        # A sparse file is held against the limit by the blocks it occupies (its
        # data), not its apparent size: a 2 GiB file of holes costs nothing.
        if st.st_size > self.ghost_limit and st.st_blocks * 512 > self.ghost_limit:
            return None, (f"size {st.st_size} ({st.st_blocks * 512} bytes allocated) is above "
                          f"the ghost limit {self.ghost_limit}")
        if any(lock.type in (files_pb2.LOCK_LEASE, files_pb2.LOCK_DELEG) for lock in fd.locks):
            return None, "the file has a lease: opening it would start a lease break"
        try:
            if opened is not None:
                return opened.read_data(self.ghost_limit, st.st_size), ""
            with _Reopened(b"%s/%d" % (self.fd_dir, n), st) as copy:
                return copy.read_data(self.ghost_limit, st.st_size), ""
        except _TooBig as err:
            return None, str(err)
        except OSError as err:
            return None, f"reopen through /proc: {os.strerror(err.errno)}"

    def _pipe(self, fd: files_pb2.Fd, n: int) -> None:
        access = fd.flags & ACCMODE
        pipe = fd.pipe
        pipe.pipe_ino = fd.ino
        pipe.read_end = access in (O_RDONLY, O_RDWR)
        pipe.write_end = access in (O_WRONLY, O_RDWR)

    # -- state behind the open file description (owner, queued bytes) ----------

    def _probe(self, fd: files_pb2.Fd, n: int) -> None:
        if fd.kind == files_pb2.FD_SOCKET:
            # socket (~2 ms to import) only for a tree that holds sockets
            from criu_model.collect.sockprobe import receive_is_harmless

            harmless, why = receive_is_harmless()
            if not harmless:
                fd.unreadable.add(field="owner", reason=why)
                fd.unreadable.add(field="socket.probe", reason=why)
                return
        if fd.flags & O_PATH:
            fd.owner_pid = 0  # fcntl(F_SETOWN) is EBADF on O_PATH fds: never an owner
            return
        is_pipe = fd.WhichOneof("state") == "pipe"
        if fd.path.startswith(b"/") and fd.kind != files_pb2.FD_MEMFD:
            fstype = self.fstype(fd.mnt_id)
            if fstype in _FLUSHING_FS or fstype.startswith(_FUSE_SUBTYPE):
                fd.unreadable.add(field="owner", reason="not probed: closing a copy calls the "
                                  f"{fstype.decode(errors='replace')} flush, which may block")
                return
        try:
            copy = self.probe.copy(n)
        except _Vanished:
            fd.unreadable.add(field="owner", reason="fd closed while probing it")
            return
        if copy is None:
            if is_pipe:
                self._pipe_by_reopen(fd, n)
            elif fd.kind == files_pb2.FD_SOCKET:
                fd.unreadable.add(field="socket.probe", reason=self.probe.reason)
            return
        try:
            kind, pid = _OWNER_EX.unpack(fcntl.fcntl(copy, F_GETOWN_EX, bytes(_OWNER_EX.size)))
            fd.owner_type = kind
            fd.owner_pid = -pid if kind == files_pb2.OWNER_PGRP else pid
            fd.owner_signum = fcntl.fcntl(copy, F_GETSIG)
            if is_pipe:
                _pipe_queue(fd.pipe, copy)
                self._pipe_data(fd, copy)
        except OSError as err:
            fd.unreadable.add(field="owner", reason=f"fcntl: {os.strerror(err.errno)}")
        try:
            if fd.kind == files_pb2.FD_SOCKET:
                from criu_model.collect.sockprobe import identify

                fd.socket.probe.CopyFrom(identify(copy))
        except OSError as err:
            fd.unreadable.add(field="socket.probe",
                              reason=f"getsockopt: {os.strerror(err.errno)}")
        finally:
            os.close(copy)

    def _pipe_data(self, fd: files_pb2.Fd, copy: int) -> None:
        """The queued bytes, copied with tee(2) (they stay in the pipe), up to the limit.

        Only through a read end (tee needs one: a pipe held by its write end alone
        is never opened for reading, which would add a reader).
        """
        pipe = fd.pipe
        if not pipe.queued_bytes:
            return
        if not pipe.read_end:
            fd.unreadable.add(field="pipe.data", reason=WRITE_END_ONLY)
            return
        if pipe.queued_bytes > self.ghost_limit:
            fd.unreadable.add(field="pipe.data", reason=f"{pipe.queued_bytes} bytes queued, "
                              f"above the ghost limit {self.ghost_limit}")
            return
        try:
            pipe.data = peek_pipe(copy, self.ghost_limit)
        except OSError as err:
            fd.unreadable.add(field="pipe.data", reason=f"tee: {os.strerror(err.errno)}")

    def _pipe_by_reopen(self, fd: files_pb2.Fd, n: int) -> None:
        if not fd.pipe.read_end:
            fd.unreadable.add(field="pipe.queued_bytes",
                              reason=f"write end, and {self.probe.reason}: reopening it "
                                     "for reading would add a reader")
            return
        try:
            with _Reopened(b"%s/%d" % (self.fd_dir, n), None, nonblock=True) as copy:
                _pipe_queue(fd.pipe, copy.fd)
                self._pipe_data(fd, copy.fd)
        except OSError as err:
            fd.unreadable.add(field="pipe.queued_bytes",
                              reason=f"reopen through /proc: {os.strerror(err.errno)}")


def _unparsable(n: int, link: bytes, raw: bytes, err: ValueError) -> files_pb2.Fd:
    """An fdinfo text we cannot parse: keep it whole, the dump goes on."""
    fd = files_pb2.Fd(fd=n, kind=files_pb2.FD_UNKNOWN, path=link)
    fd.unknown.raw = raw
    fd.unknown.reason = f"fdinfo not understood: {err}"
    return fd


WRITE_END_ONLY = ("no fd of the dump reads this pipe: looking into it would add a reader "
                  "(tee(2) needs a read end)")


def settle_pipe_data(tables: Sequence[files_pb2.FdTable]) -> None:
    """One copy of a pipe's bytes per dump: on its first reading fd, in dump order.

    A write end's "not captured" mark goes when a read end of the dump holds
    the data; it stays for a pipe the dump only writes to.
    """
    pipes = [fd for table in tables for fd in table.fds if fd.HasField("pipe")]
    captured: set[int] = set()
    for fd in pipes:
        if fd.pipe.HasField("data"):
            if fd.pipe.pipe_ino in captured:
                fd.pipe.ClearField("data")
            captured.add(fd.pipe.pipe_ino)
    if not captured:
        return
    for fd in pipes:
        if fd.pipe.pipe_ino in captured and any(u.field == "pipe.data" for u in fd.unreadable):
            keep = [u for u in fd.unreadable if u.field != "pipe.data"]
            del fd.unreadable[:]
            fd.unreadable.extend(keep)


def _pipe_queue(pipe: files_pb2.Pipe, copy: int) -> None:
    """FIONREAD and F_GETPIPE_SZ: both only read the pipe's counters, never its data."""
    pipe.queued_bytes = _INT.unpack(fcntl.ioctl(copy, FIONREAD, bytes(_INT.size)))[0]
    pipe.pipe_size = fcntl.fcntl(copy, F_GETPIPE_SZ)


class _TooBig(Exception):
    """The file grew above the ghost limit while we read it."""


class _Reopened:
    """/proc/PID/fd/N opened read-only: a new open file description, checked to be the same file."""

    def __init__(self, path: bytes, expect: os.stat_result | None, nonblock: bool = False) -> None:
        self.path = path
        self.expect = expect
        self.flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | (os.O_NONBLOCK if nonblock else 0)
        self.fd = -1

    def __enter__(self) -> _Reopened:
        try:
            # O_NOATIME: reading a ghost must not change the target's file times.
            self.fd = os.open(self.path, self.flags | os.O_NOATIME)
        except PermissionError:
            self.fd = os.open(self.path, self.flags)
        if self.expect is not None:
            got = os.fstat(self.fd)
            if (got.st_dev, got.st_ino) != (self.expect.st_dev, self.expect.st_ino):
                os.close(self.fd)
                raise OSError(errno.ESTALE, "fd was replaced while reading it")
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    def read_data(self, limit: int, size: int) -> bytes | list[tuple[int, bytes]]:
        """The whole file, or the (offset, data) extents of a file with holes.

        SEEK_DATA/SEEK_HOLE (Linux 3.1) move only this copy's position (a new
        open file description), never the target's. At most ``limit`` bytes of data.
        """
        extents = data_extents(self.fd, size)
        if extents is None or extents == [(0, size)] or not size:  # dense, or cannot tell
            return self.read(limit)
        total = sum(hi - lo for lo, hi in extents)
        if total > limit:
            raise _TooBig(f"{total} bytes of data (size {size}) are above the ghost limit {limit}")
        return [(lo, os.pread(self.fd, hi - lo, lo)) for lo, hi in extents]

    def read(self, limit: int) -> bytes:
        """The whole file with pread (no position anywhere is moved), at most ``limit`` bytes."""
        chunks, offset = [], 0
        while True:
            chunk = os.pread(self.fd, min(1 << 20, limit + 1 - offset), offset)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            offset += len(chunk)
            if offset > limit:
                raise _TooBig(f"file grew above the ghost limit {limit} while reading it")


def _process_gone(proc: ProcDir) -> bool:
    """True when the process exited (no /proc entry, or a zombie without fds)."""
    return task_state(proc) in (None, "Z", "X")


def collect_fds(pid: int, proc_root: str = PROC_ROOT, *, ghost_limit: int = DEFAULT_GHOST_LIMIT,
                ghosts: GhostStore, proc_locks: Sequence[files_pb2.FileLock] | None = None,
                fstypes: dict[int, bytes] | None = None,
                seen: FdsSeen | None = None) -> files_pb2.FdTable:
    """Every fd of process ``pid``, ascending, with its kind-specific state.

    ``ghosts`` collects deleted-file and memfd contents for the whole dump.
    ``proc_locks`` (``locks.read_proc_locks()``, read once per dump) adds the
    lock requests the process is blocked on. ``fstypes`` (mount id -> filesystem
    type), shared by the caller across one dump, saves reading every process's
    mountinfo. ``seen``, shared the same way, keeps the message each (fd number,
    fdinfo, link, stat) gave, and the probed one of its first fd, which another
    process's fd of the same open file description (kcmp) takes as it is: forked
    processes repeat their fds. Raises ProcessGone if the process exits
    meanwhile; permission refused is recorded as Unreadable("fds").
    """
    proc = ProcDir(pid, proc_root)
    table = files_pb2.FdTable(pid=pid)
    try:
        numbers = sorted(int(name) for name in proc.listdir("fd"))
    except AccessDenied as err:
        table.unreadable.add(field="fds", reason=str(err))
        return table
    probe = _Probe(pid, enabled=proc_root == PROC_ROOT)
    collector = _Collector(pid, proc_root, ghost_limit, ghosts, probe,
                           {} if fstypes is None else fstypes, seen)
    try:
        for n in numbers:
            try:
                table.fds.append(collector.read_fd(n))
            except _Vanished as err:
                if _process_gone(proc):
                    raise ProcessGone(pid, f"exited while reading fd {n}") from err
                table.vanished += 1
            except PermissionError:
                # Refused for one fd means refused for all (ptrace access mode check).
                del table.fds[:]
                table.unreadable.add(field="fds",
                                     reason=str(AccessDenied(pid, f"fd {n}", PTRACE_HINT)))
                return table
            except ProcessLookupError as err:
                raise ProcessGone(pid, f"reading fd {n}") from err
            except OSError as err:
                raise CriuModelError(f"process {pid}: reading fd {n}: {err.strerror}") from err
    finally:
        reason = probe.reason
        probed = probe.usable
        probe.close()
    if not probed and table.fds:
        table.unreadable.add(field="fds.owner", reason=reason)
    if proc_locks is not None:
        table.waiting_locks.extend(waiting_locks(proc_locks, pid))
    return table
