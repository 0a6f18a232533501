"""The program every sandbox process runs: execute the plan steps addressed to it, then park.

The sandbox init is this module exec'd fresh (``python -m criu_model.restore.worker
CTL_FD FLOOR``) right after clone3 made it pid 1 of the new namespaces, so
nothing of criu-model's heap, threads or fds leaks into the sandbox. Every
other sandbox process is a clone3 copy of its creator's worker, as the plan
says, except a CLONE_VM child: it runs no Python (clonevm.py), and its creator
runs its steps through a syscall mailbox (run_remote). Each worker holds one
SOCK_SEQPACKET control socket to the conductor (criu-model, outside): one JSON
command in, one JSON reply out, fds attached with SCM_RIGHTS where a step
moves one. Steps run one at a time in plan
order, because the kernel's rules (setpgid, setsid, reparenting) depend on
the order across processes.

Only the standard library is imported here (plus the ctypes wrappers of
criu_model.kernel): the init starts in ~30 ms and forks cheaply.

fd numbers: the planner's service fds (1 << 20 and up) cannot exist (fs.nr_open
is 1 << 20 by default and the rehearsal never raises a host sysctl), so they
are virtual: service fd 1 << 20 + n is held at real fd FLOOR + n (above every
dumped fd number) and translated in every step. The number is fixed, not the
lowest free one, so processes sharing one fd table (CLONE_FILES) find each
other's service fds. The control socket sits at FLOOR - 1; a CLONE_FILES child's,
in the table it shares, at a number the conductor gives above every service fd.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import resource
import signal
import socket
import sys
import threading
from typing import Any

from criu_model.kernel.clone3 import CLONE_ARGS_SIZE_VER1, CloneArgs
from criu_model.kernel.libc import syscall_number
from criu_model.restore.memory import run_job  # once in the init, not in each clone

F_ADD_SEALS, F_SEAL_SEAL = 1033, 0x1
F_SETPIPE_SZ, F_GETPIPE_SZ = 1031, 1032   # Linux 2.6.35
TCP_REPAIR = 19
O_TMPFILE_BIT = 0o20000000
SERVICE_FD_BASE = 1 << 20      # planner/files.py: the planner's service fds start here
# One control message at most (a SOCK_SEQPACKET record must fit the socket's send
# buffer, ~208 KiB by default): the conductor keeps batches and the setup far below.
MAX_MESSAGE = 1 << 17
MAX_FDS = 16                   # fds one command carries (a memory job: its memfd + page files)
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND = 2, 4, 8, 0x1000
TIOCSCTTY, TIOCNOTTY, TIOCGPTN, TIOCSPTLCK = 0x540E, 0x5422, 0x80045430, 0x40045431
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
CLONE_VM, CLONE_FILES, CLONE_SIGHAND, CLONE_THREAD = 0x100, 0x400, 0x800, 0x10000
O_ACCMODE = 0o3
O_CLOEXEC = 0o2000000
# f_flags a restorer may set again with F_SETFL (fs/fcntl.c SETFL_MASK).
SETFL_MASK = os.O_APPEND | os.O_NONBLOCK | getattr(os, "O_DIRECT", 0) | getattr(os, "O_NOATIME", 0)
# Devices that are safe to open for writing: writing them changes nothing on the host.
HARMLESS_DEVICES = frozenset({"/dev/null", "/dev/zero", "/dev/full", "/dev/random",
                              "/dev/urandom"})

# PyDLL keeps the GIL held across the call: a fork (clone3) while another
# thread could take the GIL would leave the child waiting on a lock forever.
_pylibc = ctypes.PyDLL(None, use_errno=True)
_pylibc.syscall.restype = ctypes.c_long
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
_libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong]


def fcntl_ioctl(fd: int, request: int, arg: int | bytes) -> Any:
    import fcntl
    return fcntl.ioctl(fd, request, arg)


def _check(ret: int, what: str) -> int:
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def clone3(flags: int, set_tid: list[int], exit_signal: int = signal.SIGCHLD) -> int:
    """Fork with clone3 (Linux 5.3; set_tid 5.5): 0 in the child, its pid in the parent.

    Python's own fork hooks run around it (PyOS_*Fork*), as os.fork() does.
    """
    tids = (ctypes.c_int * max(len(set_tid), 1))(*set_tid)
    args = CloneArgs(flags=flags, exit_signal=exit_signal,
                     set_tid=ctypes.addressof(tids) if set_tid else 0,
                     set_tid_size=len(set_tid))
    ctypes.pythonapi.PyOS_BeforeFork()
    ret = _pylibc.syscall(ctypes.c_long(syscall_number("clone3")),
                          ctypes.c_void_p(ctypes.addressof(args)),
                          ctypes.c_size_t(CLONE_ARGS_SIZE_VER1))
    err = ctypes.get_errno()
    if ret == 0:
        ctypes.pythonapi.PyOS_AfterFork_Child()
        return 0
    ctypes.pythonapi.PyOS_AfterFork_Parent()
    if ret < 0:
        raise OSError(err, f"clone3: {os.strerror(err)}")
    return int(ret)


def setns(fd: int, nstype: int) -> None:
    """setns(2) (Linux 3.0; os.setns is Python 3.12+)."""
    _check(_libc.setns(fd, nstype), "setns")


# A parked thread made by clone3 (x86_64): glibc's syscall() ends in `ret`, which in the
# new thread pops the address we put at the top of its stack: this loop, which calls
# pause(2) forever and touches neither the stack nor the TLS it shares with its creator.
_PARK_LOOP_X86_64 = bytes([0xB8, 0x22, 0, 0, 0,   # mov eax, 34 (__NR_pause)
                           0x0F, 0x05,            # syscall
                           0xEB, 0xF7])           # jmp back 9 bytes
_THREAD_STACK = 64 * 1024
_kept: list[object] = []   # code and stacks of raw threads: alive as long as the process


def clone_thread(flags: int, set_tid: list[int]) -> int:
    """A thread with its planned tids (clone3 set_tid, Linux 5.5) that only parks.

    Only on x86_64 (the `ret` trick above); elsewhere the caller falls back to
    threading.Thread, whose tids the kernel chooses.
    """
    import mmap
    import platform
    import struct

    if platform.machine() != "x86_64":
        raise OSError(errno.ENOSYS, "raw threads are only made on x86_64")
    if not _kept:
        code = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE
                         | mmap.PROT_EXEC)
        code.write(_PARK_LOOP_X86_64)
        _kept.append(code)
    code_addr = ctypes.addressof(ctypes.c_char.from_buffer(_kept[0]))  # type: ignore[arg-type]
    stack = mmap.mmap(-1, _THREAD_STACK)
    _kept.append(stack)
    base = ctypes.addressof(ctypes.c_char.from_buffer(stack))
    struct.pack_into("Q", stack, _THREAD_STACK - 16, code_addr)
    tids = (ctypes.c_int * max(len(set_tid), 1))(*set_tid)
    args = CloneArgs(flags=flags, exit_signal=0, stack=base, stack_size=_THREAD_STACK - 16,
                     set_tid=ctypes.addressof(tids) if set_tid else 0,
                     set_tid_size=len(set_tid))
    ret = _pylibc.syscall(ctypes.c_long(syscall_number("clone3")),
                          ctypes.c_void_p(ctypes.addressof(args)),
                          ctypes.c_size_t(CLONE_ARGS_SIZE_VER1))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"clone3 (thread): {os.strerror(err)}")
    return int(ret)


def write_queued(fd: int, a: dict[str, Any]) -> None:
    """Put the dumped queue back into a new pipe (its size is set first: it fits).

    The bytes come in the memfd the conductor lent with the step (`data_fd`).
    Non-blocking, so a queue larger than the pipe fails the step (EAGAIN)
    instead of parking the worker.
    """
    src = a.get("_data_fd")
    if src is None:
        return
    data = os.pread(src, os.fstat(src).st_size, 0)
    if not data:
        return
    was_blocking = os.get_blocking(fd)
    os.set_blocking(fd, False)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.set_blocking(fd, was_blocking)


def copy_range(src: int, dst: int, offset: int, length: int) -> None:
    """Bytes [offset, offset + length) of `src` to the same offsets of `dst`, in the
    kernel (copy_file_range, Linux 4.5; both are memfds: one filesystem)."""
    done = 0
    while done < length:
        got = os.copy_file_range(src, dst, length - done, offset + done, offset + done)
        if got <= 0:
            raise OSError(errno.EIO, f"contents end at {offset + done}")
        done += got


TCP_REPAIR_QUEUE, TCP_QUEUE_SEQ = 20, 21
TCP_RECV_QUEUE, TCP_SEND_QUEUE = 1, 2
TCP_FIN_WAIT1 = 4


RCV_SHUTDOWN, SEND_SHUTDOWN = 1, 2


def replay_shutdown(pair: list[int], bits: list[int]) -> None:
    """A unix socketpair's sk_shutdown bits: shutdown(SHUT_WR) of each end that sent one
    (its peer's RCV bit follows, net/unix/af_unix.c unix_shutdown), then SHUT_RD of an end
    whose RCV bit its peer's SEND does not explain."""
    for fd, mine in zip(pair, bits, strict=True):
        if mine & SEND_SHUTDOWN:
            with socket.socket(fileno=fd) as sock:
                try:
                    sock.shutdown(socket.SHUT_WR)
                finally:
                    sock.detach()
    for fd, mine, theirs in zip(pair, bits, reversed(bits), strict=True):
        if mine & RCV_SHUTDOWN and not theirs & SEND_SHUTDOWN:
            with socket.socket(fileno=fd) as sock:
                try:
                    sock.shutdown(socket.SHUT_RD)
                finally:
                    sock.detach()


def isn(src: str, sport: int, dst: str, dport: int) -> int:
    """A sequence number for the data one end sends: a function of its 4-tuple only, so
    the peer, made elsewhere, expects exactly it (as its receive sequence number)."""
    h = 2166136261
    for byte in f"{src}|{sport}|{dst}|{dport}".encode():
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF       # FNV-1a
    return h


def repaired(family: int, src: str, sport: int, dst: str, dport: int) -> int:
    """A connected TCP socket in repair mode (no handshake), with the 4-tuple's numbers."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE)
        # an unsigned 32-bit value: packed (setsockopt's int must fit a C int)
        sock.setsockopt(socket.IPPROTO_TCP, TCP_QUEUE_SEQ,
                        isn(src, sport, dst, dport).to_bytes(4, sys.byteorder))
        sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE)
        sock.setsockopt(socket.IPPROTO_TCP, TCP_QUEUE_SEQ,
                        isn(dst, dport, src, sport).to_bytes(4, sys.byteorder))
        sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR_QUEUE, 0)
        sock.bind((src, sport))
        sock.connect((dst, dport))
        return sock.detach()
    finally:
        sock.close()


def wait_acked(sock: socket.socket, timeout: float = 2.0) -> None:
    """Until the FIN just sent from ESTABLISHED is acknowledged (FIN-WAIT-1 left): on the
    loopback the peer's softirq answers at once, but not within our call."""
    import time

    deadline = time.monotonic() + timeout
    while sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == TCP_FIN_WAIT1:
        if time.monotonic() > deadline:
            raise OSError(errno.ETIMEDOUT, "the FIN was not acknowledged")
        time.sleep(0.0005)


def set_pipe_size(fd: int, size: int) -> None:
    """The dumped capacity (F_GETPIPE_SZ); as root the pipe-max-size limit does not bind."""
    import fcntl
    if fcntl.fcntl(fd, F_GETPIPE_SZ) != size:
        fcntl.fcntl(fd, F_SETPIPE_SZ, size)


F_OFD_SETLK = 37               # Linux 3.15
# inotify_add_watch flags that steer the call and are not part of the watch's mask
# (IN_ONLYDIR, IN_DONT_FOLLOW, IN_MASK_CREATE, IN_MASK_ADD): the target is an fd here
IN_ADD_ONLY_FLAGS = 0x01000000 | 0x02000000 | 0x10000000 | 0x20000000


def take_lock(fd: int, lock: dict[str, Any]) -> None:
    """flock(2), a POSIX record lock (F_SETLK), an OFD lock (F_OFD_SETLK) or a lease
    (F_SETLEASE) as dumped; never waits (a conflict is an error the judge reports)."""
    import fcntl
    import struct

    write = str(lock["mode"]).upper() == "WRITE"
    kind = str(lock["type"]).upper()
    if kind == "LEASE":    # F_SETLEASE (Linux 2.4): on a stand-in only (executor.py)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK if write else fcntl.F_RDLCK)
        return
    if kind == "FLOCK":
        fcntl.flock(fd, (fcntl.LOCK_EX if write else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        return
    start = int(lock["start"])
    length = 0 if lock.get("end") is None else int(lock["end"]) - start + 1   # 0: to EOF
    # struct flock (x86_64 and arm64): short l_type, short l_whence, off_t l_start,
    # off_t l_len, pid_t l_pid (padded)
    arg = struct.pack("hhqqi4x", fcntl.F_WRLCK if write else fcntl.F_RDLCK, os.SEEK_SET,
                      start, length, 0)
    fcntl.fcntl(fd, fcntl.F_SETLK if kind == "POSIX" else F_OFD_SETLK, arg)


def make_node(path: str, node: dict[str, Any]) -> None:
    """A deleted node made again in the scratch tmpfs: its type, owner and mode (chown
    first: it would clear set-id bits; chmod after, past the umask). It may exist
    already: made by an earlier opener of it, or (a directory) by the setup, to hold
    a path planned below it; then only its owner and mode are set."""
    import contextlib
    import stat

    kind, mode = str(node["node"]), int(node.get("mode", 0))
    uid, gid = int(node.get("uid", 0)), int(node.get("gid", 0))
    if kind == "symlink":
        with contextlib.suppress(FileExistsError):
            os.symlink(str(node["target"]), path)
        os.lchown(path, uid, gid)      # a symlink's mode is always 0777
        return
    with contextlib.suppress(FileExistsError):
        if kind == "directory":
            os.mkdir(path, 0o700)
        else:
            fmt = {"character device": stat.S_IFCHR, "block device": stat.S_IFBLK,
                   "fifo": stat.S_IFIFO, "socket file": stat.S_IFSOCK}[kind]
            rdev = 0
            if node.get("rdev"):
                major, minor = (int(x) for x in str(node["rdev"]).split(":"))
                rdev = os.makedev(major, minor)
            os.mknod(path, fmt | 0o600, rdev)
    os.chown(path, uid, gid)
    os.chmod(path, mode)


def bind_deleted(sock: socket.socket, name: bytes) -> None:
    """bind() a unix socket whose node was deleted since (ZDTM del_standalone_un: another
    socket or a FIFO has the path now): what is at the path in the scratch tmpfs is set
    aside for the call, the socket's own node unlinked, and it is put back. sock_diag
    reports the name bind() was given, not the node."""
    aside = name + b".criu-model-aside"
    moved = os.path.lexists(name)
    if moved:
        os.rename(name, aside)
    try:
        sock.bind(name)
        os.unlink(name)
    finally:
        if moved:
            os.rename(aside, name)


def dead_pidfd() -> int:
    """A pidfd of a process that has exited and been reaped (ZDTM pidfd_dead): a child
    that exits at once, its pidfd taken before it is reaped. Its pid number is free again
    once reaped (the pidfd keeps the struct pid, not the number)."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        return os.pidfd_open(pid)
    finally:
        os.waitpid(pid, 0)


def make_again(path: str, spec: dict[str, int]) -> None:
    """A file at a path a deleted file of the snapshot held (in the scratch tmpfs: the
    conductor lets no other path through): sparse at its size, its owner and mode;
    left alone if an earlier opener made it already."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_CLOEXEC, 0o600)
    except FileExistsError:
        return
    try:
        os.ftruncate(fd, int(spec.get("size", 0)))
        os.fchown(fd, int(spec.get("uid", 0)), int(spec.get("gid", 0)))
        os.fchmod(fd, int(spec.get("mode", 0o644)))
    finally:
        os.close(fd)


def remove_node(path: str, node: str) -> None:
    if node == "directory":
        os.rmdir(path)
    else:
        os.unlink(path)


SO_SNDBUF, SO_RCVBUF, SO_SNDBUFFORCE, SO_RCVBUFFORCE = 7, 8, 32, 33
SO_LINGER, SO_BINDTODEVICE = 13, 25
_FORCE = {SO_SNDBUF: SO_SNDBUFFORCE, SO_RCVBUF: SO_RCVBUFFORCE}


def _groups(text: Any) -> int:
    """The group mask of a probed netlink address ("groups HEX", collect/sockopt.py)."""
    return int(str(text).split()[-1], 16)


def probed_socket(p: dict[str, Any]) -> int:
    """A socket sock_diag did not list, made from its getsockopt probe: socket(), each
    recorded option that differs here set again, SO_BINDTODEVICE, bind, connect (the
    conductor lets only sandbox addresses through: it has its own network namespace).

    The kernel doubles a buffer size it is given (net/core/sock.c sk_setsockopt): half
    the read value is set, with the FORCE variants so the netns's rmem_max/wmem_max do
    not cap it. An option already at its recorded value is left alone (setting TCP_MAXSEG
    to the default it reads would pin it).
    """
    import struct

    domain, stype = int(p["domain"]), int(p["type"])
    sock = socket.socket(domain, stype, int(p["protocol"]))
    try:
        for level, name, value in p.get("options", []):
            if sock.getsockopt(level, name) == value:
                continue
            if level == socket.SOL_SOCKET and name in _FORCE:
                sock.setsockopt(level, _FORCE[name], value // 2)
            else:
                sock.setsockopt(level, name, value)
        if p.get("linger"):
            onoff, linger = (int(x) for x in p["linger"])
            if (onoff, linger) != struct.unpack("ii", sock.getsockopt(socket.SOL_SOCKET,
                                                                      SO_LINGER, 8)):
                sock.setsockopt(socket.SOL_SOCKET, SO_LINGER, struct.pack("ii", onoff, linger))
        if p.get("bound_device"):
            sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, str(p["bound_device"]).encode())
        if "src" in p:
            if domain == socket.AF_NETLINK:   # "groups HEX" and the port id (sockopt.py)
                sock.bind((int(p.get("sport", 0)), _groups(p["src"])))
            else:
                any_addr = "::" if domain == socket.AF_INET6 else "0.0.0.0"
                sock.bind((str(p["src"]) or any_addr, int(p.get("sport", 0))))
        if p.get("dst") and domain == socket.AF_NETLINK:
            sock.connect((int(p.get("dport", 0)), _groups(p["dst"])))
        elif p.get("dst"):
            sock.connect((str(p["dst"]), int(p.get("dport", 0))))
        return sock.detach()
    finally:
        sock.close()


SOL_NETLINK, NETLINK_ADD_MEMBERSHIP = 270, 1
# NETLINK_DIAG_FLAGS bits (uapi netlink_diag.h) -> the option that sets each
_NETLINK_FLAG_OPTIONS = ((0x2, 3), (0x4, 4), (0x8, 5), (0x10, 8), (0x20, 10))


def netlink_socket(stype: int, n: dict[str, Any]) -> int:
    """A netlink socket as netlink_diag showed it: bound to its portid with groups 1-32
    in the bind mask (larger ones joined with NETLINK_ADD_MEMBERSHIP), its flags' options
    set, connected to its default destination (portid, group) if it had one."""
    sock = socket.socket(socket.AF_NETLINK, stype, int(n["protocol"]))
    try:
        for bit, option in _NETLINK_FLAG_OPTIONS:
            if int(n.get("flags", 0)) & bit:
                sock.setsockopt(SOL_NETLINK, option, 1)
        groups = [int(g) for g in n.get("groups", [])]
        mask = sum(1 << (g - 1) for g in groups if 1 <= g <= 32)
        sock.bind((int(n["portid"]), mask))
        for g in groups:
            if g > 32:
                sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, g)
        if n.get("dst_portid") or n.get("dst_group"):
            # nl_groups is a mask; the kernel keeps ffs() of it as dst_group (the group
            # number netlink_diag reports: ZDTM sk-netlink's 32 was connected as 6)
            group = int(n.get("dst_group", 0))
            sock.connect((int(n["dst_portid"]), 1 << (group - 1) if 1 <= group <= 32 else 0))
        return sock.detach()
    finally:
        sock.close()


def allow_ping() -> None:
    """ICMP ping sockets for our gid: net.ipv4.ping_group_range is per network namespace
    (Linux 3.0; "1 0", nobody, in a new one), and this is the sandbox's own /proc."""
    gid = os.getgid()
    try:
        with open("/proc/sys/net/ipv4/ping_group_range", "w") as f:
            f.write(f"{gid} {gid}")
    except OSError:
        pass   # (a user namespace's netns) the ping socket's step fails: EACCES is reported


def set_pdeathsig(sig: int) -> None:
    _check(_libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")


def loopback_up() -> None:
    """SIOCSIFFLAGS IFF_UP on lo: no dependency on iproute2."""
    import fcntl
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | IFF_UP))


def _mount(src: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    _check(_libc.mount(src.encode(), target.encode(), fstype.encode() if fstype else None,
                       flags, data.encode() if data else None), f"mount {target}")


def leave_terminal() -> None:
    """Give up criu-model's controlling tty (TIOCNOTTY by a non-leader detaches only the
    caller, drivers/tty/tty_jobctrl.c): no sandbox process inherits it, as the plan's
    restorer has none."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | O_CLOEXEC)
    except OSError:
        return    # no controlling tty
    try:
        fcntl_ioctl(fd, TIOCNOTTY, 0)
    finally:
        os.close(fd)


def private_devpts() -> None:
    """A devpts instance of our own (newinstance, Linux 2.6.29; always new since 4.7) at
    /dev/pts with its ptmx over /dev/ptmx: ptys are numbered from 0 here and none is
    taken from the host."""
    _mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
           "newinstance,ptmxmode=0666,mode=0620")
    _mount("/dev/pts/ptmx", "/dev/ptmx", None, MS_BIND, None)


def setup_mounts(scratch: list[dict[str, Any]]) -> None:
    """Make every mount private (nothing propagates to the host), a /proc of our
    pid namespace, and a tmpfs over each directory holding files opened for writing,
    with those files recreated there (same path, same size, sparse)."""
    _mount("none", "/", None, MS_REC | MS_PRIVATE, None)
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    for entry in scratch:   # shallowest directory first
        # nodev except where a deleted device node is made again (executor.node_refusal
        # lets only the memory devices, or O_PATH opens, through): this namespace only
        nodev = 0 if entry.get("devices") else MS_NODEV
        _mount("criu-model-rehearsal", entry["dir"], "tmpfs", MS_NOSUID | nodev,
               "mode=0755")
        for sub in entry.get("subdirs", []):
            os.makedirs(os.path.join(entry["dir"], sub), exist_ok=True)
        for name, size in entry["files"]:
            path = os.path.join(entry["dir"], name)
            if size < 0:
                os.mkfifo(path, 0o644)
                continue
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                os.ftruncate(fd, size)
            finally:
                os.close(fd)


class Worker:
    """One sandbox process: its control socket and its virtual (service) fds."""

    def __init__(self, ctl_fd: int, floor: int) -> None:
        self.ctl = socket.socket(fileno=ctl_fd)
        self.floor = floor
        self.virtual: set[int] = set()        # service fds this process placed
        self.ctl_base = 0     # CLONE_FILES children's control sockets: from here up
        self.children: dict[int, int] = {}    # actor key -> pid in our namespace
        self.threads: list[threading.Thread] = []
        # CLONE_VM children (no Python runs in them): actor key -> their mailbox, whose
        # steps this worker runs (clonevm.py); `_remote` is set while one runs
        self.vm_children: dict[int, Remote] = {}
        self._remote: Remote | None = None
        self.lent: list[int] = []             # fds lent with the current step
        self.helpers: dict[int, int] = {}     # real fd -> its helper peer (halfclose.py)
        self.handed_out: list[int] = []       # fds a step gives the conductor (its reply)

    # ------------------------------------------------------------ fds

    def real(self, fd: int) -> int:
        """The real number of planned fd `fd` (a service fd: FLOOR + its index)."""
        if fd >= SERVICE_FD_BASE:
            return self.floor + (fd - SERVICE_FD_BASE)
        return fd

    def place(self, tmp: int, fd: int, flags: int) -> None:
        """Move a freshly made fd to its planned number (virtual or real); close tmp."""
        cloexec = bool(flags & O_CLOEXEC)
        if self._remote is not None and self._remote.pidfd_at >= 0:
            self._remote.take(tmp, self.real(fd), cloexec)
            os.close(tmp)
            return
        if fd >= SERVICE_FD_BASE:
            os.dup2(tmp, self.real(fd), inheritable=not cloexec)
            os.close(tmp)
            self.virtual.add(fd)
        elif tmp == fd:
            os.set_inheritable(fd, not cloexec)
        else:
            os.dup2(tmp, fd, inheritable=not cloexec)
            os.close(tmp)

    def set_status_flags(self, fd: int, flags: int) -> None:
        import fcntl
        cur = fcntl.fcntl(fd, fcntl.F_GETFL)
        want = (cur & ~SETFL_MASK) | (flags & SETFL_MASK)
        if want != cur:
            fcntl.fcntl(fd, fcntl.F_SETFL, want)

    # ------------------------------------------------------------ steps

    def do_open(self, a: dict[str, Any]) -> None:
        kind = a["kind"]
        flags = int(a["flags"])
        if kind in ("regular", "directory", "opath"):
            path = a["path"]
            # f_flags keep bits that only mean something at open time: an O_TMPFILE file
            # (O_TMPFILE_BIT | O_DIRECTORY, Linux 3.11) is reopened as the plain file it is.
            oflags = flags & ~(os.O_CREAT | os.O_TRUNC | os.O_EXCL | O_CLOEXEC | os.O_NOCTTY
                               | O_TMPFILE_BIT)
            if kind != "directory":
                oflags &= ~os.O_DIRECTORY
            if path.startswith("/dev/") and flags & O_ACCMODE and path not in HARMLESS_DEVICES:
                raise OSError(errno.EPERM, f"{path}: a device opened for writing")
            if a.get("make_node"):
                make_node(path, a["make_node"])
            if a.get("node") == "symlink":
                oflags |= os.O_NOFOLLOW   # the link itself (O_PATH), never its target
            if a.get("recreate"):   # its path was a deleted file's, unlinked just before
                make_again(path, a["recreate"])
            tmp = os.open(path, oflags | O_CLOEXEC)
            if a.get("pos") and kind == "regular":
                os.lseek(tmp, int(a["pos"]), os.SEEK_SET)
            if a.get("unlink"):   # a deleted file: its stand-in goes once the last opens it
                os.unlink(path)
            if a.get("remove_node"):   # deleted again, once its last opener holds it
                remove_node(path, str(a["node"]))
        elif kind == "fifo":
            # O_RDWR first (a FIFO open for one end blocks until the other exists), then
            # the planned end; the stand-in lives in the scratch tmpfs.
            rdwr = os.open(a["path"], os.O_RDWR | os.O_NONBLOCK | O_CLOEXEC)
            try:
                tmp = os.open(a["path"], (flags & ~(O_CLOEXEC | os.O_CREAT | os.O_TRUNC))
                              | O_CLOEXEC)
                if a.get("pipe_size"):
                    set_pipe_size(rdwr, int(a["pipe_size"]))
                write_queued(rdwr, a)
                if a.get("unlink"):   # a deleted FIFO: gone once its last opener holds it
                    os.unlink(a["path"])
            finally:
                os.close(rdwr)
        elif kind == "pipe" and a.get("reopen") is not None:
            # another description of a pipe made here: /proc/self/fd never blocks on one
            tmp = os.open(f"/proc/self/fd/{self.real(int(a['reopen']))}",
                          (flags & ~(O_CLOEXEC | os.O_CREAT | os.O_TRUNC)) | O_CLOEXEC)
        elif kind == "pipe":   # the other end is outside: pipe(), keep one end
            r, w = os.pipe()
            if a.get("pipe_size"):
                set_pipe_size(r, int(a["pipe_size"]))
            write_queued(w, a)
            keep, drop = (w, r) if flags & O_ACCMODE == os.O_WRONLY else (r, w)
            os.close(drop)
            tmp = keep
            self.set_status_flags(tmp, flags)
        elif kind == "eventfd":
            efd_flags = os.EFD_SEMAPHORE if a.get("semaphore") else 0
            tmp = os.eventfd(int(a.get("count", 0)), efd_flags | os.EFD_CLOEXEC)
            self.set_status_flags(tmp, flags)
        elif kind == "memfd":
            lent = self.lent[0] if a.get("contents") and self.lent else -1
            try:
                tmp = self._memfd(a, lent)
            finally:
                # the lent fd may sit at this fd's planned number: closed (and forgotten
                # by the serve loop) before the memfd is placed there
                if lent >= 0:
                    os.close(lent)
                    self.lent.clear()
            if flags & O_ACCMODE != os.O_RDWR:
                # memfd_create is O_RDWR: a read-only (or write-only) description, as a
                # program gets by opening /proc/PID/fd/N of one (ZDTM memfd01), is opened
                # again through /proc/self/fd with the dumped access mode
                narrow = os.open(f"/proc/self/fd/{tmp}", (flags & O_ACCMODE) | O_CLOEXEC)
                os.close(tmp)
                tmp = narrow
        elif kind == "signalfd":
            mask = (ctypes.c_ulong * 16)()    # sigset_t: 1024 bits
            for sig in a.get("signals", []):
                mask[(sig - 1) // 64] |= 1 << ((sig - 1) % 64)
            tmp = _check(_libc.signalfd(-1, ctypes.byref(mask), O_CLOEXEC), "signalfd")
        elif kind == "timerfd":
            tmp = self._timerfd(a)
        elif kind == "socket":
            tmp = self._socket(a)
        elif kind == "nsfs":   # /proc/HOLDER/ns/TYPE of a sandbox process (the conductor's)
            tmp = os.open(str(a["path"]), os.O_RDONLY | O_CLOEXEC)
        elif kind == "epoll":
            tmp = _check(_libc.epoll_create1(O_CLOEXEC), "epoll_create1")  # Linux 2.6.27
        elif kind == "pidfd" and int(a["target"]) < 0:
            tmp = dead_pidfd()
        elif kind == "pidfd":
            tmp = os.pidfd_open(int(a["target"]))   # Linux 5.3; the conductor translated it
        else:
            raise OSError(errno.ENOSYS, f"open of kind {kind} is not rehearsed")
        if kind in ("memfd", "signalfd", "timerfd", "pidfd", "epoll", "socket"):
            self.set_status_flags(tmp, flags)
        if kind in ("pipe", "fifo") and a.get("pipe_size"):
            set_pipe_size(tmp, int(a["pipe_size"]))
        for lock in a.get("apply_locks", ()):
            take_lock(tmp, lock)
        self.place(tmp, int(a["fd"]), flags)

    def _socket(self, a: dict[str, Any]) -> int:
        """A unix socket (bound by name, listening), or an inet listener or UDP socket
        bound on the sandbox's own loopback: nothing is bound outside the sandbox."""
        if a.get("outside_peer"):   # connected to a peer outside: a socketpair's end,
            mine, peer = socket.socketpair(socket.AF_UNIX, int(a["type"]))   # its name
            try:                                                      # bound after
                name = bytes.fromhex(a.get("name_hex", ""))
                if name:
                    mine.bind(name)
            except BaseException:
                mine.close()
                peer.close()
                raise
            held = peer.detach()      # to the conductor, which holds it; never at the
            if held == self.real(int(a["fd"])):     # number this fd is placed at
                moved = os.dup(held)
                os.close(held)
                held = moved
            self.handed_out.append(held)
            return mine.detach()
        if a.get("probe"):
            return probed_socket(a["probe"])
        if a.get("netlink"):
            return netlink_socket(int(a["type"]), a["netlink"])
        family, stype, state = int(a["family"]), int(a["type"]), int(a["state"])
        if a.get("peer_closed"):   # connected, its peer closed: a socketpair, half closed
            sock, other = socket.socketpair(socket.AF_UNIX, stype)
            other.close()
        else:
            sock = socket.socket(family, stype)
        try:
            if family == socket.AF_UNIX:
                name = bytes.fromhex(a.get("name_hex", ""))
                if name and a.get("unlink"):
                    bind_deleted(sock, name)
                elif name:
                    sock.bind(name)
            else:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if a.get("reuseport"):   # another listener shares the port (planner)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind((a["src"], int(a["sport"])))
            if state == 10:   # TCP_LISTEN, for unix listeners too
                sock.listen(int(a.get("backlog") or 0))
                for _ in range(int(a.get("orphans", 0))):   # queued by clients now gone
                    with socket.socket(family, stype) as client:
                        client.setblocking(False)
                        client.connect(bytes.fromhex(a["name_hex"]))
            if a.get("connect_inet"):  # a connected UDP socket: its default destination
                sock.connect((a["dst"], int(a["dport"])))
            if a.get("shutdown") and stype == socket.SOCK_DGRAM and family != socket.AF_UNIX:
                # a UDP socket's sk_shutdown bits (RCV 1, SEND 2: how = bits - 1); the kernel
                # sets them even unconnected, answering ENOTCONN (ZDTM socket_udp_shutdown)
                try:
                    sock.shutdown(int(a["shutdown"]) - 1)
                except OSError as err:
                    if err.errno != errno.ENOTCONN:
                        raise
            if a.get("shutdown_first"):   # SHUT_RD before connect(): no peer gets SEND
                sock.shutdown(socket.SHUT_RD)
            if a.get("connect_hex"):   # a connection still in a listener's accept queue
                sock.setblocking(False)   # a full queue is an error, not a wait
                sock.connect(bytes.fromhex(a["connect_hex"]))
            return sock.detach()
        finally:
            sock.close()

    @staticmethod
    def _tcp_repair(a: dict[str, Any]) -> int:
        """An established connection without a handshake (TCP_REPAIR, Linux 3.5): in repair
        mode connect() only sets the state, and bind() may share a listener's port
        (SK_FORCE_REUSE). The socket stays in repair mode: parked, nothing is sent. The
        snapshot holds no sequence numbers: each end takes ones derived from its 4-tuple
        (`isn`), so two ends of one connection agree and may leave repair mode to close
        it for real (halfclose.py)."""
        return repaired(int(a["family"]), a["src"], int(a["sport"]), a["dst"], int(a["dport"]))

    def tcp(self, actions: list[list[Any]], arg: str = "") -> None:
        """Actions on sockets after the skeleton: a repaired connection's close sequence
        (halfclose.py), a late connect(2) to the name `arg` (hex): [action, fd, helper]."""
        for action, fd, helper in actions:
            real = self.real(int(fd))
            if action == "helper":       # the peer's part, with the mirrored 4-tuple
                with socket.socket(fileno=os.dup(real)) as me:
                    family, src, dst = me.family, me.getsockname(), me.getpeername()
                self.helpers[real] = repaired(family, dst[0], dst[1], src[0], src[1])
                continue
            target = self.helpers[real] if helper else real
            sock = socket.socket(fileno=target)
            try:
                if action == "off":
                    sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 0)
                elif action == "silent_shutdown":   # the FIN queued as sent, never sent
                    sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
                    sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE)
                    sock.shutdown(socket.SHUT_WR)
                elif action == "shutdown_wait":     # a real FIN, and its ACK
                    sock.shutdown(socket.SHUT_WR)
                    wait_acked(sock)
                elif action == "shut_rd":           # RCV_SHUTDOWN only: nothing is sent
                    sock.shutdown(socket.SHUT_RD)
                elif action == "connect_unix":      # a one-way datagram connect
                    sock.connect(bytes.fromhex(arg))
                elif action == "drop_helper":       # closed in repair mode: nothing sent
                    sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
                    del self.helpers[real]
                    sock.close()
                    continue
                else:
                    raise OSError(errno.ENOSYS, f"tcp action {action}")
            finally:
                sock.detach()

    @staticmethod
    def _memfd(a: dict[str, Any], contents: int = -1) -> int:
        """memfd_create (Linux 3.17) at its size, its captured contents copied in from the
        conductor's memfd `contents` (the `contents` ranges: a sparse one keeps its
        holes), then the seals (a seal against writing would refuse the copy)."""
        import fcntl
        seals = int(a.get("seals") or 0)
        mfd_flags = os.MFD_CLOEXEC | (os.MFD_HUGETLB if a.get("hugetlb") else 0)
        if a.get("seals") is not None:
            mfd_flags |= os.MFD_ALLOW_SEALING
        fd = os.memfd_create(str(a.get("name", "")), mfd_flags)
        os.ftruncate(fd, int(a.get("size", 0)))
        if contents >= 0:
            for offset, length in a["contents"]:
                copy_range(contents, fd, int(offset), int(length))
        if a.get("pos"):
            os.lseek(fd, int(a["pos"]), os.SEEK_SET)
        if seals:
            fcntl.fcntl(fd, F_ADD_SEALS, seals & ~F_SEAL_SEAL)  # F_SEAL_SEAL last
            if seals & F_SEAL_SEAL:
                fcntl.fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL)
        return fd

    @staticmethod
    def _timerfd(a: dict[str, Any]) -> int:
        """timerfd_create (Linux 2.6.25), armed as dumped; pending ticks are not rehearsed."""
        fd = _check(_libc.timerfd_create(int(a.get("clockid", 1)), O_CLOEXEC), "timerfd")
        value, interval = int(a.get("value_ns", 0)), int(a.get("interval_ns", 0))
        if value:
            spec = (ctypes.c_long * 4)(interval // 10**9, interval % 10**9,
                                       value // 10**9, value % 10**9)
            _check(_libc.timerfd_settime(fd, 0, ctypes.byref(spec), None), "timerfd_settime")
        return fd

    def do_inotify(self, a: dict[str, Any], targets: list[int]) -> None:
        """inotify_init1 (Linux 2.6.27) and each watch at its dumped wd.

        wds come from a cyclic allocator (idr_alloc_cyclic, fs/notify/inotify): a watch
        removed and added again gets the next number, so a watch is re-added until it
        gets its wd. Each removal queues an IN_IGNORED event, drained before the fd is
        placed (the dump does not hold queued events: the queue starts empty).
        """
        flags = int(a["flags"])
        ifd = _check(_libc.inotify_init1(O_CLOEXEC | os.O_NONBLOCK), "inotify_init1")
        try:
            order = sorted(zip(a.get("watches", []), targets, strict=True),
                           key=lambda wt: int(wt[0]["wd"]))
            for watch, target in order:
                want = int(watch["wd"])
                mask = int(watch["mask"]) & ~IN_ADD_ONLY_FLAGS
                path = f"/proc/self/fd/{target}".encode()
                got = _check(_libc.inotify_add_watch(ifd, path, mask), "inotify_add_watch")
                while got < want:
                    _check(_libc.inotify_rm_watch(ifd, got), "inotify_rm_watch")
                    got = _check(_libc.inotify_add_watch(ifd, path, mask), "inotify_add_watch")
                if got != want:
                    raise OSError(errno.EEXIST, f"inotify gave wd {got}, the dump has {want}")
            while True:
                try:
                    os.read(ifd, 1 << 16)
                except BlockingIOError:
                    break
            self.set_status_flags(ifd, flags)
        except BaseException:
            os.close(ifd)
            raise
        finally:
            # The lent targets sit at the lowest free numbers, maybe the one planned for
            # this fd: closed (and forgotten by the serve loop) before it is placed.
            for fd in targets:
                os.close(fd)
            targets.clear()
        self.place(ifd, int(a["fd"]), flags)

    def do_open_pty(self, a: dict[str, Any]) -> None:
        """/dev/ptmx until TIOCGPTN says the planned index, the others closed; unlock;
        then the slave files (O_NOCTTY: the controlling tty is a step of its own)."""
        import struct
        index = int(a["index"])
        opened: list[int] = []
        master = -1
        try:
            for _ in range(index + 64):
                fd = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | O_CLOEXEC)
                got = struct.unpack("I", fcntl_ioctl(fd, TIOCGPTN, b"\0" * 4))[0]
                if got == index:
                    master = fd
                    break
                opened.append(fd)
                if got > index:
                    raise OSError(errno.EBUSY, f"pty {index} is taken")
        finally:
            for fd in opened:
                os.close(fd)
        if master < 0:
            raise OSError(errno.EBUSY, f"pty {index} not reached")
        fcntl_ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
        flags = [int(f) for f in a.get("flags", [])]
        made = [master]
        for _ in a["files"][1:]:
            made.append(os.open(f"/dev/pts/{index}", os.O_RDWR | os.O_NOCTTY | O_CLOEXEC))
        for tmp, fd, fl in zip(made, a["fds"], flags or [0] * len(made), strict=True):
            self.set_status_flags(tmp, fl)
            self.place(tmp, int(fd), fl)

    def _on_tty(self, a: dict[str, Any], call: Any) -> None:
        if a.get("fd") is not None:
            call(self.real(int(a["fd"])))
            return
        fd = os.open(str(a["path"]), os.O_RDWR | os.O_NOCTTY | O_CLOEXEC)
        try:
            call(fd)
        finally:
            os.close(fd)

    def do_pair(self, a: dict[str, Any], kind: str) -> None:
        """pipe() or socketpair() as the step says: each end's flags (and a pipe's which
        end it is), the pipe's capacity, the socketpair's type."""
        ends = a["ends"]          # [{"flags", "read_end"?}] in files order
        if kind == "pipe":
            r, w = os.pipe()
            if a.get("pipe_size"):
                set_pipe_size(r, int(a["pipe_size"]))
            write_queued(w, a)
            made = [r if e["read_end"] else w for e in ends]
        else:
            sa, sb = socket.socketpair(socket.AF_UNIX, int(a.get("type", socket.SOCK_STREAM)))
            for sock, end in zip((sa, sb), ends, strict=True):
                if end.get("name_hex"):     # bound before it connected, or accepted
                    name = bytes.fromhex(end["name_hex"])
                    try:
                        sock.bind(name)
                        if end.get("unlink"):   # its node was deleted since
                            os.unlink(name)
                    except OSError as err:
                        raise OSError(err.errno, f"bind {name!r}: "
                                                 f"{err.strerror}") from err
            made = [sa.detach(), sb.detach()]
        if kind == "socketpair":
            replay_shutdown(made, [int(e.get("shutdown", 0)) for e in ends])
        for tmp, end, fd in zip(made, ends, a["fds"], strict=True):
            self.set_status_flags(tmp, int(end["flags"]))
            self.place(tmp, int(fd), int(end["flags"]))

    def do_accept(self, a: dict[str, Any]) -> None:
        """accept() on the listener at `listener` (a copy of its fd: its blocking flag,
        shared by the description, is left alone); never waits long: the client
        connected in the step before."""
        import select

        lst = socket.socket(fileno=os.dup(self.real(int(a["listener"]))))
        try:
            if not select.select([lst], [], [], 5.0)[0]:
                raise OSError(errno.ETIMEDOUT, "accept: no connection is queued")
            conn, _addr = lst.accept()
        finally:
            lst.close()
        tmp = conn.detach()
        if a.get("shutdown"):     # [client's, server's] sk_shutdown bits (ZDTM sockets03)
            replay_shutdown([self.real(int(a["client"])), tmp], [int(b) for b in a["shutdown"]])
        self.set_status_flags(tmp, int(a["flags"]))
        self.place(tmp, int(a["fd"]), int(a["flags"]))

    def do_clone(self, a: dict[str, Any]) -> dict[str, Any]:
        flags = int(a.get("flags_value", 0))
        if flags & CLONE_THREAD:
            try:
                return {"thread": True, "tid": clone_thread(flags, list(a["set_tid"]))}
            except OSError as err:
                if err.errno != errno.ENOSYS:
                    raise
            # threading.Thread cannot choose its tid (set_tid): only the count is rehearsed.
            t = threading.Thread(target=_park_thread, daemon=True)
            t.start()
            self.threads.append(t)
            return {"thread": True, "tid": None}
        if flags & CLONE_VM:
            out = self._clone_vm(flags, a)
            if out is not None:
                return out
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # The conductor learns the child's pid in its own namespace from the credentials
        # the kernel attaches to the child's first message (SCM_CREDENTIALS, translated).
        parent_end.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        # CLONE_FILES: one fd table for both. The child's control socket moves to its own
        # number before the clone (after it, a close by one would race an open by the
        # other), and neither closes a socket of the other's.
        shared = bool(flags & CLONE_FILES)
        if shared:
            high = int(a["ctl_fd"])
            os.dup2(child_end.fileno(), high, inheritable=False)
            child_end.close()
            child_end = socket.socket(fileno=high)
        pid = clone3(flags & ~(CLONE_VM | CLONE_SIGHAND), list(a["set_tid"]))
        if pid == 0:
            if shared:
                parent_end.detach()
                self.ctl.detach()
                self.ctl = child_end
            else:
                # Our own table, a copy: our control socket at FLOOR - 1 (where the
                # creator's was, or not: a CLONE_FILES child's is above), and none of the
                # copied control sockets of the workers that share the creator's table.
                parent_end.close()
                os.dup2(child_end.fileno(), self.floor - 1, inheritable=False)
                child_end.close()
                self.ctl.detach()
                self.ctl = socket.socket(fileno=self.floor - 1)
                if self.ctl_base:
                    os.closerange(self.ctl_base, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
            self.children = {}
            self.threads = []
            raise _Child  # unwinds to the loop, which keeps serving (now as the child)
        if shared:
            child_end.detach()
        else:
            child_end.close()
        self.children[int(a["child"])] = pid
        return {"pid": pid, "_fd": parent_end}

    def _clone_vm(self, flags: int, a: dict[str, Any]) -> dict[str, Any] | None:
        """A child sharing our address space: a mailbox child (clonevm.py), whose steps
        we run from now on. None where it cannot be made (not x86_64): then a plain clone
        without CLONE_VM/CLONE_SIGHAND, and the conductor reports the sharing as not
        rehearsed.

        Without CLONE_FILES its fd table is a copy of ours: it gets a pidfd of us at the
        number the conductor gave (to take the fds we make for it) and closes the copies
        of the control sockets, as a forked worker does.
        """
        from criu_model.restore import clonevm

        shared = bool(flags & CLONE_FILES)
        high = -1
        if not shared:
            high = int(a["ctl_fd"])
            pidfd = os.pidfd_open(os.getpid())
            os.dup2(pidfd, high, inheritable=False)
            os.close(pidfd)
        try:
            child = clonevm.spawn(flags, list(a["set_tid"]))
        except OSError as err:
            if err.errno != errno.ENOSYS:
                raise
            return None
        finally:
            if high >= 0:
                os.close(high)
        remote = Remote(child, high)
        if not shared:
            child.call("close", self.floor - 1)
            if self.ctl_base and self.ctl_base < high:
                child.call("close_range", self.ctl_base, high - 1, 0)
            child.call("close_range", high + 1, 0xFFFFFFFF, 0)
        self.children[int(a["child"])] = child.pid
        self.vm_children[int(a["child"])] = remote
        return {"pid": child.pid, "vm": True}

    def run_remote(self, remote: Remote, step: dict[str, Any]) -> dict[str, Any]:
        """A step of a CLONE_VM child, run by us through its mailbox: the calls that act
        on the caller (setsid, setpgid, dup2, close, ioctl, chdir) run in the child; fds are made
        here and moved into its table (place). Anything else is not rehearsed there."""
        act = step["action"]
        child = remote.child
        if act == "setsid":
            child.call("setsid")
        elif act == "setpgid" and step.get("target", step["actor"]) == step["actor"]:
            child.call("setpgid", 0, int(step["pgid"]))
        elif act == "exit":
            child.exit(int(step.get("code", step.get("status", 0))), int(step.get("signal") or 0))
            remote.pidfd_at = -1
            del self.vm_children[int(step["actor"])]
        elif act == "dup2":
            old, new = self.real(int(step["old"])), self.real(int(step["new"]))
            child.call("dup2", old, new)
            if step.get("cloexec"):
                child.call("fcntl", new, 2, 1)   # F_SETFD FD_CLOEXEC
        elif act == "close":
            child.call("close", self.real(int(step["fd"])))
        elif act == "ioctl_tiocsctty" and step.get("fd") is not None:
            child.call("ioctl", self.real(int(step["fd"])), TIOCSCTTY, 0)
        elif act == "unshare":
            child.call("unshare", int(step["flags_value"]))
        elif act == "chdir":
            path = ctypes.create_string_buffer(str(step["path"]).encode())  # shared memory
            child.call("chdir", ctypes.addressof(path))
        elif act in ("open", "pipe", "socketpair", "tcp_repair", "open_pty") and not any(
                str(lock.get("type", "")).upper() == "POSIX"
                for lock in step.get("apply_locks", ())):
            self._remote = remote
            try:
                self.run_step({**step, "actor": None})
            finally:
                self._remote = None
        else:
            raise OSError(errno.ENOSYS, f"{act} is not rehearsed in a CLONE_VM child (its "
                                        "creator runs its steps through a syscall mailbox)")
        return {}

    def release_vm_children(self) -> None:
        """Before we park or exit: each CLONE_VM child closes its pidfd of us; it stays
        in its mailbox loop (parked) until the sandbox dies."""
        import contextlib

        for remote in self.vm_children.values():
            if remote.pidfd_at >= 0 and remote.child.alive:
                with contextlib.suppress(OSError):   # it died: the judge sees it missing
                    remote.child.call("close", remote.pidfd_at)
                remote.pidfd_at = -1

    def run_step(self, step: dict[str, Any]) -> dict[str, Any]:
        remote = self.vm_children.get(step.get("actor"))  # type: ignore[arg-type]
        if remote is not None:
            return self.run_remote(remote, step)
        act = step["action"]
        if act == "clone3":
            return self.do_clone(step)
        if act == "setsid":
            os.setsid()
        elif act == "setpgid":
            target = step.get("target", step["actor"])
            pid = 0 if target == step["actor"] else self.children[int(target)]
            os.setpgid(pid, int(step["pgid"]))
        elif act == "prctl_set_child_subreaper":
            _check(_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl")
        elif act == "exit":
            return {"exit": True}
        elif act == "exit_by_parent":   # a namespace init: the conductor sends the signal
            self._send({"ok": True}, [])
            self._park(False)
        elif act == "wait":
            os.waitpid(self.children.pop(int(step["child"])), 0)
        elif act == "open":
            self.do_open(step)
        elif act in ("pipe", "socketpair"):
            self.do_pair(step, act)
        elif act == "dup2":
            # dup2 clears FD_CLOEXEC; a "cloexec" argument (not planned yet) sets it again.
            # `new` may be a service fd (a planner's spare: epoll watches, files.py)
            os.dup2(self.real(int(step["old"])), self.real(int(step["new"])),
                    inheritable=not step.get("cloexec", False))
        elif act == "close":
            fd = int(step["fd"])
            os.close(self.real(fd))
            self.virtual.discard(fd)
        elif act == "chdir":
            os.chdir(str(step["path"]))
        elif act == "accept":     # the server end of a connection its client just made
            self.do_accept(step)
        elif act == "lock":       # POSIX locks, once the fds are final (planner: LOCK)
            for lock in step.get("apply_locks", ()):
                take_lock(self.real(int(step["fd"])), lock)
        elif act == "epoll_ctl_add":
            import struct
            # struct epoll_event is packed on x86_64 (12 bytes), padded elsewhere (16)
            fmt = "=IQ" if __import__("platform").machine() == "x86_64" else "IxxxxQ"
            event = ctypes.create_string_buffer(struct.pack(fmt, int(step["events"]),
                                                            int(step.get("data", 0))))
            _check(_libc.epoll_ctl(self.real(int(step["epfd"])), 1,   # EPOLL_CTL_ADD
                                   self.real(int(step["tfd"])), event), "epoll_ctl")
        elif act == "tcp_repair":
            tmp = self._tcp_repair(step)
            self.set_status_flags(tmp, int(step["flags"]))
            self.place(tmp, int(step["fd"]), int(step["flags"]))
        elif act == "open_pty":
            self.do_open_pty(step)
        elif act == "ioctl_tiocsctty":
            self._on_tty(step, lambda fd: fcntl_ioctl(fd, TIOCSCTTY, 0))
        elif act == "ioctl_tiocnotty":
            fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | O_CLOEXEC)
            try:
                fcntl_ioctl(fd, TIOCNOTTY, 0)
            finally:
                os.close(fd)
        elif act == "tcsetpgrp":
            # A background caller would get SIGTTOU: ignored for the call (termios(3)).
            old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
            try:
                fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | O_CLOEXEC)
                try:
                    os.tcsetpgrp(fd, int(step["pgid"]))
                finally:
                    os.close(fd)
            finally:
                signal.signal(signal.SIGTTOU, old)
        elif act == "unshare":
            _check(_libc.unshare(int(step["flags_value"])), "unshare")
        else:
            raise OSError(errno.ENOSYS, f"{act} is not rehearsed")
        return {}

    # ------------------------------------------------------------ the loop

    def serve(self) -> None:
        """Answer commands until told to park or exit; EOF (criu-model died) ends us."""
        while True:
            try:
                msg, fds, _flags, _addr = socket.recv_fds(self.ctl, MAX_MESSAGE, MAX_FDS)
            except OSError:
                os._exit(2)
            if not msg:
                os._exit(3)   # the conductor is gone: the sandbox must not outlive it
            cmd = json.loads(msg)
            op = cmd["op"]
            reply: dict[str, Any] = {"ok": True}
            attach: list[int] = []
            keep: list[socket.socket] = []
            try:
                self.lent = fds if op == "step" else []   # fds a step uses (contents)
                if op == "step":
                    out = self.run_step(cmd["step"])
                    if "_fd" in out:
                        sock = out.pop("_fd")
                        keep.append(sock)
                        attach.append(sock.fileno())
                    for fd in self.handed_out:      # sent with the reply, then closed
                        keep.append(socket.socket(fileno=fd))
                        attach.append(fd)
                    self.handed_out = []
                    if out.pop("exit", False):
                        self._exit(cmd["step"], reply)
                    reply.update(out)
                elif op == "steps":       # a batch of one actor's consecutive steps
                    results: list[dict[str, Any]] = []
                    reply["results"] = results
                    # a step with data_fd takes the next lent fd; they arrived at the
                    # lowest free numbers, which the steps may plan for: moved up first
                    fds = [self._out_of_the_way(fd) for fd in fds]
                    lent = iter(fds)
                    for st in cmd["steps"]:
                        if st.get("data_fd"):
                            st["_data_fd"] = next(lent)
                        out = self._guarded(st)
                        if "_fd" in out:
                            sock = out.pop("_fd")
                            keep.append(sock)
                            attach.append(sock.fileno())
                        exiting = out.pop("exit", False)
                        results.append(out)
                        if exiting and out.get("ok"):
                            self._send(reply, attach)
                            self._exit(st, None)
                elif op == "send_fd":     # SCM_RIGHTS through the conductor
                    attach.append(self.real(int(cmd["fd"])))
                elif op == "recv_fd":
                    self.place(fds.pop(), int(cmd["to_fd"]), 0)
                elif op == "inotify":      # an open step, with its watch targets' fds
                    self.do_inotify(cmd["step"], fds)
                elif op == "seal":         # seals added after the memory steps
                    import fcntl
                    fcntl.fcntl(self.real(int(cmd["fd"])), F_ADD_SEALS, int(cmd["seals"]))
                elif op == "tcp":          # a half-closed connection's close sequence
                    self.tcp(cmd["do"], str(cmd.get("arg", "")))
                elif op == "setns_path":   # /proc/PID/ns/TYPE of the holder
                    nsfd = os.open(cmd["path"], os.O_RDONLY | O_CLOEXEC)
                    try:
                        setns(nsfd, 0)
                    finally:
                        os.close(nsfd)
                elif op == "memory":      # map_vmas + fill_pages: job, host root, pages
                    reply.update(run_job(fds[0], fds[1], fds[2:]))
                elif op == "park":
                    self._send(reply, [])
                    self._park(bool(cmd.get("keep")))
                else:
                    reply = {"ok": False, "errno": errno.ENOSYS, "error": f"unknown op {op}"}
            except _Child:
                self._send({"ok": True, "child": True}, [])
                continue
            except OSError as err:
                reply = {"ok": False, "errno": err.errno or 0, "error": str(err)}
            except (KeyError, ValueError, TypeError) as err:
                reply = {"ok": False, "errno": errno.EINVAL, "error": f"bad step: {err!r}"}
            except Exception as err:  # noqa: BLE001 - a worker bug is reported, never fatal
                reply = {"ok": False, "errno": 0, "error": f"worker bug: {err!r}"}
            for fd in fds:
                os.close(fd)
            self._send(reply, attach)
            for sock in keep:
                sock.close()

    @staticmethod
    def _out_of_the_way(fd: int) -> int:
        """`fd` moved to the top of the table (F_DUPFD_CLOEXEC from RLIMIT_NOFILE - 64:
        above every planned, service and control fd), the old number closed."""
        import fcntl
        top = resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 4 * MAX_FDS
        moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, top)
        os.close(fd)
        return moved

    def _guarded(self, step: dict[str, Any]) -> dict[str, Any]:
        """One step of a batch: its result, an error answered instead of raised."""
        try:
            out = self.run_step(step)
        except _Child:
            raise
        except OSError as err:
            return {"ok": False, "errno": err.errno or 0, "error": str(err)}
        except (KeyError, ValueError, TypeError) as err:
            return {"ok": False, "errno": errno.EINVAL, "error": f"bad step: {err!r}"}
        except Exception as err:  # noqa: BLE001 - a worker bug is reported, never fatal
            return {"ok": False, "errno": 0, "error": f"worker bug: {err!r}"}
        return {"ok": True, **out}

    def _send(self, reply: dict[str, Any], fds: list[int]) -> None:
        try:
            socket.send_fds(self.ctl, [json.dumps(reply).encode()], fds)
        except OSError:
            os._exit(2)

    def _exit(self, step: dict[str, Any], reply: dict[str, Any] | None) -> None:
        """Answer (unless done), then exit with the planned status (a zombie: nobody
        reaps it)."""
        if reply is not None:
            self._send(reply, [])
        self.release_vm_children()
        self.ctl.close()
        sig = step.get("signal")
        if sig:
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file anywhere
            if sig not in (signal.SIGKILL, signal.SIGSTOP):   # those cannot be caught
                signal.signal(int(sig), signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, [int(sig)])
            os.kill(os.getpid(), int(sig))
        os._exit(int(step.get("code", step.get("status", 0))) & 0xFF)

    def _park(self, keep: bool) -> None:
        """Close the control socket and sleep until killed, running nothing of the program."""
        if keep:
            set_pdeathsig(0)     # --keep: outlive criu-model on purpose
        self.release_vm_children()
        self.ctl.close()
        while True:
            signal.pause()


class Remote:
    """A CLONE_VM child as its creator holds it: the mailbox, and the number of its
    pidfd of the creator (-1: none, as with CLONE_FILES, where the table is one)."""

    def __init__(self, child: Any, pidfd_at: int) -> None:
        self.child = child
        self.pidfd_at = pidfd_at

    def take(self, tmp: int, fd: int, cloexec: bool) -> None:
        """Our fd `tmp` into the child's table at `fd` (pidfd_getfd gives it
        FD_CLOEXEC; dup3 sets the planned flag)."""
        got = self.child.call("pidfd_getfd", self.pidfd_at, tmp, 0)
        if got == fd:
            if not cloexec:
                self.child.call("fcntl", fd, 2, 0)   # F_SETFD: clear FD_CLOEXEC
            return
        try:
            self.child.call("dup3", got, fd, O_CLOEXEC if cloexec else 0)
        finally:
            self.child.call("close", got)


class _Child(Exception):
    """Raised in the child right after clone3: it keeps serving as the new process."""


def _park_thread() -> None:
    while True:
        threading.Event().wait()


def main(argv: list[str]) -> None:
    """The sandbox init: set up the namespaces' insides, then serve as actor -1."""
    ctl_fd, floor = int(argv[0]), int(argv[1])
    # The init shares criu-model's session and group (the restorer's, outside the sandbox):
    # a Ctrl-C or hang-up on that terminal must not end parked processes behind the
    # conductor's back (criu-model tears the sandbox down itself). Inherited by every fork.
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard > floor + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # room for the service fds
    worker = Worker(ctl_fd, floor)
    try:
        msg, _fds, _f, _a = socket.recv_fds(worker.ctl, MAX_MESSAGE, 0)
        setup = json.loads(msg)
        worker.ctl_base = int(setup.get("ctl_base", 0))
        setup_mounts(setup.get("scratch", []))
        if setup.get("ptys"):
            private_devpts()
        leave_terminal()
        loopback_up()
        if setup.get("ping"):
            allow_ping()
        worker._send({"ok": True}, [])
    except OSError as err:
        worker._send({"ok": False, "errno": err.errno or 0, "error": str(err)}, [])
        os._exit(1)
    worker.serve()


if __name__ == "__main__":
    main(sys.argv[1:])
