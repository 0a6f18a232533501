"""The conductor: runs a plan's steps for real, one at a time, inside the sandbox.

Each step goes to the worker of its actor (worker.py) over that worker's
control socket, in plan order, and the conductor waits for the answer: the
kernel's rules depend on the order across processes (a group must exist before
another process joins it, a helper exits before its orphans are reparented).
A step the kernel refuses is recorded with its errno and the rehearsal goes on,
so the judge sees everything that followed from it. A step we do not execute
yet is recorded as not rehearsed with the reason, and so are the fds and
processes that depend on it: never silently skipped.

The steps say what the system calls take (a pipe's ends and capacity, a
socketpair's type, a probed socket's numeric domain and options as level and
number); what a step names only by its file key (a socket's addresses, a
ghost's contents, a lock's holder) is read from the snapshot.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import socket
import stat
import struct
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from criu_model.errors import CriuModelError, UsageError
from criu_model.images.pb import files_pb2, mm_pb2, sockets_pb2
from criu_model.names import printable
from criu_model.planner import NEW_NS_INIT
from criu_model.planner.files import PROC_FD_PATH
from criu_model.planner.model import RESTORER, Action, Plan, Step
from criu_model.progress import Report
from criu_model.restore.sandbox import Sandbox, await_reply, receive, start
from criu_model.restore.worker import (
    HARMLESS_DEVICES,
    MAX_FDS,
    MAX_MESSAGE,
    O_ACCMODE,
    SERVICE_FD_BASE,
)
from criu_model.snapshot import Snapshot, namespace_inode

_OPEN_KINDS = frozenset({"regular", "directory", "opath", "pipe", "fifo", "eventfd", "memfd",
                         "inotify",
                         "signalfd", "timerfd", "pidfd", "epoll", "socket", "nsfs"})
_NOT_YET = {
    Action.LAST_PID_CLONE: "the ns_last_pid fallback is not rehearsed (clone3 set_tid is)",
}
# What the workers execute; any other action (a newer planner's too) is not rehearsed.
_EXECUTED = frozenset({Action.CLONE, Action.SETSID, Action.SETPGID, Action.SUBREAPER,
                       Action.EXIT, Action.WAIT, Action.OPEN, Action.PIPE, Action.SOCKETPAIR,
                       Action.DUP2, Action.CLOSE, Action.UNSHARE, Action.SETNS, Action.SETNS_PID,
                       Action.SEND_FD, Action.EPOLL_ADD, Action.OPEN_PTY,
                       Action.SET_CTTY, Action.DROP_CTTY, Action.SET_FG,
                       Action.TCP_REPAIR, Action.MAP_VMAS, Action.FILL_PAGES, Action.LOCK,
                       Action.CHDIR, Action.ACCEPT})
# What a CLONE_VM child's creator runs for it through its mailbox (worker.run_remote):
# a step that acts on the caller runs in the child; any other is not rehearsed there.
_REMOTE = frozenset({Action.SETSID, Action.SETPGID, Action.EXIT, Action.OPEN, Action.PIPE,
                     Action.SOCKETPAIR, Action.DUP2, Action.CLOSE, Action.UNSHARE,
                     Action.TCP_REPAIR, Action.OPEN_PTY, Action.SET_CTTY, Action.MAP_VMAS,
                     Action.FILL_PAGES, Action.CHDIR})
_MEMORY_TIMEOUT = 300.0   # seconds for one process's memory job (a GiB fills in ~1 s)
_BATCH = 64   # steps per message: a few KiB, far below MAX_MESSAGE
_TCP_LISTEN, _TCP_CLOSE = 10, 7
_SANDBOX_ADDRS = frozenset({"0.0.0.0", "::", "::1", "::ffff:127.0.0.1"})
_UNSAFE_SCRATCH = frozenset({"/", "/proc", "/sys", "/dev", "/run", "/etc", "/usr", "/bin",
                             "/lib", "/sbin", "/boot"})
# Deleted nodes (planner/files.py node_recipe "node"): device kinds need a scratch tmpfs
# without nodev; the memory devices (drivers/char/mem.c: null, zero, full, random,
# urandom) are the only ones opened for real: any other device is the host's hardware.
_DEVICE_NODES = frozenset({"character device", "block device"})
_HARMLESS_RDEV = frozenset({"1:3", "1:5", "1:7", "1:8", "1:9"})
O_PATH = getattr(os, "O_PATH", 0o10000000)
_CLONE_NEWUSER = 0x10000000
_F_SEAL_SEAL, _F_SEAL_FUTURE_WRITE = 0x1, 0x10


def node_refusal(step: Step) -> str:
    """Why the open of a deleted node (step arg `node`) is not rehearsed ("" when it is).

    An O_PATH open calls no driver (fs/open.c do_dentry_open: FMODE_PATH), so any
    device node is fine then; otherwise only the memory devices: opening another
    device's node would act on the host's hardware (a tty, a disk, a tape rewinds).
    A FIFO or socket file opened for I/O is not a plain open (it blocks, or ENXIO).
    """
    node = str(step.args.get("node", ""))
    flags = int(step.args.get("flags", 0))
    path_only = bool(flags & O_PATH)
    if node in _DEVICE_NODES and not path_only \
            and str(step.args.get("rdev")) not in _HARMLESS_RDEV:
        return f"a deleted {node} {step.args.get('rdev')}: opening it would open the " \
               "host's device (only the memory devices 1:3, 1:5, 1:7, 1:8, 1:9 are opened)"
    if node == "socket file" and not path_only:    # open(2) of a socket is ENXIO
        return "a socket file is opened only with O_PATH (I/O goes through connect)"
    if node == "fifo" and not path_only:   # a FIFO held for I/O is planned as kind fifo
        return "a FIFO node opened for I/O is planned as a FIFO, not as a node"
    if node == "symlink" and "target" not in step.args:
        return "a deleted symlink without its target"
    if node not in (*_DEVICE_NODES, "directory", "symlink", "fifo", "socket file"):
        return f"a deleted {node or 'node'} of a kind the rehearsal does not make"
    return ""


def ghost_pieces(ghost: files_pb2.GhostFile) -> list[tuple[int, bytes]]:
    """(offset, bytes) of a captured file's data: the whole file, or a sparse one's extents."""
    if ghost.extents:
        return [(e.offset, e.data) for e in ghost.extents]
    return [(0, ghost.data)] if ghost.data else []


def ghost_memfd(ghost: files_pb2.GhostFile) -> int:
    """A memfd of criu-model's holding a captured file at its size (holes stay holes)."""
    return memfd_holding("criu-model-contents", ghost.size, ghost_pieces(ghost))


def memfd_holding(name: str, size: int, pieces: Iterable[tuple[int, bytes]]) -> int:
    """A memfd of criu-model's, `size` long, with each (offset, bytes) piece written;
    lent to a worker with a step (contents, queued bytes: any size, no JSON)."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, size)
        for offset, chunk in pieces:
            view = memoryview(chunk)
            while view:
                view = view[os.pwrite(fd, view, offset + len(chunk) - len(view)):]
    except BaseException:
        os.close(fd)
        raise
    return fd


@dataclass
class StepOutcome:
    index: int
    step: Step
    status: str                 # "done", "failed", "not_rehearsed"
    detail: str = ""
    errno: int = 0


@dataclass
class Execution:
    """What the conductor did: per step, and the objects it could not make."""

    outcomes: list[StepOutcome] = field(default_factory=list)
    missing_fds: dict[tuple[int, int], str] = field(default_factory=dict)  # (actor, fd)
    missing_procs: dict[int, str] = field(default_factory=dict)            # actor -> why
    thread_note: dict[int, str] = field(default_factory=dict)              # actor -> note
    scratch: list[str] = field(default_factory=list)                        # tmpfs dirs
    # (pid, vma start) -> (status, detail): restore/memory.py DONE, IN_USE, NOT_REHEARSED
    # or FAILED; a VMA of a process whose map_vmas step ran is always here.
    vmas: dict[tuple[int, int], tuple[str, str]] = field(default_factory=dict)
    memory: dict[str, float] = field(default_factory=dict)   # fill totals (bytes, seconds)
    # (actor, file key) -> why its locks were not taken; a key with locks taken is absent
    lock_notes: dict[tuple[int, int], str] = field(default_factory=dict)


def is_ping(step: Step) -> bool:
    """An ICMP (or ICMPv6) ping socket: SOCK_DGRAM of IPPROTO_ICMP / IPPROTO_ICMPV6."""
    return step.args.get("family") in ("inet", "inet6") \
        and step.args.get("type") == socket.SOCK_DGRAM \
        and step.args.get("protocol") in (socket.IPPROTO_ICMP, socket.IPPROTO_ICMPV6)


def _sandbox_addr(addr: str) -> bool:
    return addr in ("", *_SANDBOX_ADDRS) or addr.startswith("127.")


def probe_refusal(step: Step, probe: files_pb2.SocketProbe) -> str:
    """Why a socket recreated from its getsockopt probe is not rehearsed ("" if it is).

    Its addresses must be the sandbox's own (loopback or any: it has its own network
    namespace with lo only), and so must the device it is bound to.
    """
    a = step.args
    if a.get("family") not in ("inet", "inet6", "netlink"):
        return f"a {a.get('family')} socket from a probe is not rehearsed yet"
    if a.get("family") != "netlink":
        for name in ("src", "dst"):
            if name in a and not _sandbox_addr(str(a[name])):
                return f"{a[name]} is not an address of the sandbox's loopback"
    device = str(a.get("bound_device", ""))
    if device not in ("", "lo"):
        return f"bound to device {device}: the sandbox has only lo"
    unknown = list(a.get("unknown_options", ()))
    if unknown:
        return f"options the rehearsal cannot set: {', '.join(unknown)}"
    if "domain" not in a or "setsockopt" not in a:
        return "the step lacks the socket's numeric domain or its options (an older plan)"
    return ""


def probe_wire(step: Step, probe: files_pb2.SocketProbe) -> dict[str, Any]:
    """What the worker needs to make a socket from its probe, all from the step: the
    numeric domain, each option as level, number, value, the bind and connect addresses
    (the planner leaves a raw socket's "port", its protocol, out). `probe` is the
    snapshot's, kept for restorers that want more than the step says."""
    a = step.args
    out: dict[str, Any] = {"domain": int(a["domain"]), "type": int(a["type"]),
                           "protocol": int(a["protocol"]),
                           "options": [list(o) for o in a.get("setsockopt", ())]}
    if a.get("linger"):
        out["linger"] = list(a["linger"])
    if a.get("bound_device"):
        out["bound_device"] = str(a["bound_device"])
    if "src" in a:
        out["src"], out["sport"] = str(a["src"]), int(a.get("sport", 0))
    if a.get("dst"):
        out["dst"], out["dport"] = str(a["dst"]), int(a.get("dport", 0))
    return out


def file_index(snap: Snapshot) -> dict[int, files_pb2.Fd]:
    """The planner's file key (planner/files.py file_key) -> one snapshot Fd of that file."""
    out: dict[int, files_pb2.Fd] = {}
    for table in snap.fds:
        for fd in table.fds:
            key = fd.file_id if fd.file_id else -((table.pid << 24) | fd.fd) - 1
            out.setdefault(key, fd)
    return out


def _floor(snap: Snapshot, plan: Plan) -> int:
    """First fd above every dumped number: workers keep their own fds from here up."""
    top = max((fd.fd for t in snap.fds for fd in t.fds), default=2)
    for step in plan.steps:
        for name in ("fd", "new"):
            value = step.args.get(name)
            if isinstance(value, int) and value < SERVICE_FD_BASE:
                top = max(top, value)
    return max(top + 2, 16)


_FD_ARGS = frozenset({"fd", "fds", "old", "new", "epfd", "tfd", "to_fd"})


def _service_count(plan: Plan) -> int:
    """How many service fd numbers the plan uses (1 << 20 + n: n + 1 at most)."""
    top = -1
    for step in plan.steps:
        for name, value in step.args.items():
            if name not in _FD_ARGS:
                continue            # flags_value and others may exceed 1 << 20 too
            values = value if isinstance(value, list) else [value]
            for v in values:
                if isinstance(v, int) and not isinstance(v, bool) and v >= SERVICE_FD_BASE:
                    top = max(top, v - SERVICE_FD_BASE)
    return top + 1


def _node_is(path: bytes, sock: sockets_pb2.Socket) -> bool:
    """Whether the host's `path` is still this socket's node (else it was unlinked)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_ino == sock.unix.vfs_ino and stat.S_ISSOCK(st.st_mode)


def _pair_names(step: Step, files: dict[int, files_pb2.Fd],
                sockets: Mapping[int, sockets_pb2.Socket]) -> list[str]:
    """The paths the ends of a socketpair step are bound to (a connected socket bound
    before connect(), or accepted on a listener: ZDTM deleted_unix_sock)."""
    out = []
    for key in step.args.get("files", []):
        fd = files.get(int(key))
        sock = sockets.get(fd.socket.inode) if fd is not None and fd.HasField("socket") \
            else None
        if sock is not None and sock.HasField("unix") and sock.unix.name \
                and not sock.unix.abstract:
            out.append(sock.unix.name.decode(errors="replace"))
    return out


def _writes(step: Step) -> bool:
    """Opened for writing, or leased: either gets a stand-in in a scratch tmpfs (a lease
    on the host's file would be broken by, and would hold up, the host's openers)."""
    flags = int(step.args.get("flags", 0))
    return bool(flags & O_ACCMODE or flags & (os.O_TRUNC | os.O_CREAT)) or any(
        str(lock.get("type")).upper() == "LEASE" for lock in step.args.get("locks", ()))


def scratch_plan(plan: Plan, files: dict[int, files_pb2.Fd],
                 sockets: Mapping[int, sockets_pb2.Socket] | None = None,
                 ) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """Directories to cover with a tmpfs inside the sandbox (so a file opened for writing is
    a sparse stand-in there, at its own path), and the open steps refused (index -> why)."""
    refused: dict[int, str] = {}
    dirs: set[str] = set()
    opens = [(i, s) for i, s in enumerate(plan.steps)
             if s.action is Action.OPEN and "path" in s.args
             and (s.args.get("kind") in ("regular", "fifo") or s.args.get("node"))]
    nodes: set[str] = set()     # paths of deleted nodes: the open step makes them
    bound: set[str] = set()     # unix socket paths: bind() makes them
    devices: set[str] = set()   # directories holding a device node: no nodev there
    cwds: dict[int, str] = {}   # actor -> its working directory (chdir steps)
    for index, step in enumerate(plan.steps):
        if step.action is Action.CHDIR:
            cwds[step.actor] = str(step.args["path"])
            continue
        names = [str(step.args.get("name", ""))] \
            if step.action is Action.OPEN and step.args.get("kind") == "socket" else \
            _pair_names(step, files, sockets or {}) if step.action is Action.SOCKETPAIR \
            else []
        for name in names:
            if not name or name.startswith("@"):
                continue    # unnamed, or abstract: the sandbox's network namespace's own
            if not name.startswith("/"):
                # a relative name binds in the process's working directory: covered too,
                # never the host's (ZDTM sk-unix-rel bound into criu-model's own cwd)
                cwd = cwds.get(step.actor)
                if cwd is None:
                    refused[index] = f"unix socket {name}: a relative name, and its " \
                                     "process's working directory is unknown"
                    continue
                name = posixpath.join(cwd, name)
            parent = posixpath.dirname(name)   # bind() would create the socket file here
            if parent in _UNSAFE_SCRATCH or not os.path.isdir(parent):
                refused[index] = f"unix socket {name}: its directory is not covered by a " \
                                 "scratch tmpfs"
            else:
                dirs.add(parent)
                bound.add(name)
    for index, step in opens:
        path = str(step.args["path"])
        fd = files.get(int(step.args.get("file", 0)))
        deleted = fd is not None and fd.deleted
        fifo = step.args.get("kind") == "fifo"   # opening the host's would wake its peers
        node = str(step.args.get("node", ""))
        if node and (why := node_refusal(step)):
            refused[index] = why
            continue
        if not deleted and not fifo and (not _writes(step) or path in HARMLESS_DEVICES):
            continue
        parent = posixpath.dirname(path)
        why = f"is a deleted {node} (made again there)" if node else \
            "is deleted (recreated from its contents)" if deleted else \
            "is a FIFO" if fifo else "is leased" if not int(step.args.get("flags", 0)) \
            & (O_ACCMODE | os.O_TRUNC | os.O_CREAT) else "is opened for writing"
        if parent in _UNSAFE_SCRATCH or path.startswith(("/dev/", "/proc/", "/sys/")):
            refused[index] = f"{path} {why} in {parent}, which the rehearsal does not " \
                             "cover with a scratch tmpfs"
            continue
        if not os.path.isdir(parent):
            refused[index] = f"{path} {why}, but its directory {parent} is gone here"
            continue
        dirs.add(parent)
        if node:
            nodes.add(path)
            if node in _DEVICE_NODES:
                devices.add(parent)
    # Keep the outermost directories only; everything planned below one is recreated.
    tops = sorted(d for d in dirs if not any(d.startswith(o + "/") for o in dirs if o != d))
    entries = []
    # Every planned path below a covered directory is recreated there: files (sparse, at
    # their size) and directories, so opens that only read are not hidden by the tmpfs.
    paths = [(i, s) for i, s in enumerate(plan.steps) if s.action is Action.OPEN
             and s.args.get("kind") in ("regular", "directory", "opath", "fifo")
             and "path" in s.args]
    for top in tops:
        # a socket's directory below the top (a deleted file in /tmp covers all of /tmp),
        # and every working directory there
        sub: set[str] = {posixpath.dirname(p[len(top) + 1:]) for p in bound
                         if p.startswith(top + "/") and "/" in p[len(top) + 1:]}
        sub.update(c[len(top) + 1:] for c in cwds.values() if c.startswith(top + "/"))
        made: dict[str, int] = {}
        for index, step in paths:
            path = str(step.args["path"])
            if not path.startswith(top + "/") or index in refused:
                continue
            rel = path[len(top) + 1:]
            fd = files.get(int(step.args.get("file", 0)))
            if path in nodes:
                if "/" in rel:
                    sub.add(posixpath.dirname(rel))
                continue
            if fd is not None and stat.S_ISDIR(fd.file.mode):
                sub.add(rel)
                continue
            if step.args.get("kind") == "fifo":
                made[rel] = -1      # mkfifo
            elif fd is not None and fd.deleted:
                made[rel] = fd.file.ghost.size   # the deleted one's stand-in, if both held
            else:                                # a path (the live one: made again after)
                made.setdefault(rel, fd.file.size if fd is not None else 0)
            if "/" in rel:
                sub.add(posixpath.dirname(rel))
        entry: dict[str, Any] = {"dir": top, "subdirs": sorted(sub),
                                 "files": sorted(made.items())}
        if any(d == top or d.startswith(top + "/") for d in devices):
            entry["devices"] = True   # mounted without nodev: a device node opens there
        entries.append(entry)
    return entries, refused


class Conductor:
    """Drives the workers; owns the sandbox only through `sandbox` (closed by the caller)."""

    def __init__(self, snap: Snapshot, plan: Plan) -> None:
        self.snap = snap
        self.plan = plan
        self.files = file_index(snap)
        self.result = Execution()
        self.channels: dict[int, socket.socket] = {}
        self.sandbox: Sandbox | None = None
        self.host_pid: dict[int, int] = {}      # actor -> its pid in criu-model's namespace
        self._gone: dict[int, str] = {}
        self._batch: list[tuple[int, Step, dict[str, Any]]] = []
        self._batch_fds: list[int] = []   # lent with the batch (steps with data_fd, in order)
        self._root_fd = -1      # O_PATH of our root, lent to memory jobs (closed in park)
        # actor -> its memory job in flight: (step index, step, job memfd, job, VMA count)
        self._pending: dict[int, tuple[int, Step, int, dict[str, Any], int]] = {}
        self._fills: list[tuple[int, Step]] = []
        # MAP_SHARED anonymous objects: key -> (creator, start, end) of the VMA that makes
        # it, and, once made, key -> the map_files path its other holders open ('' failed)
        self._creating: dict[tuple[int, int, int], tuple[int, int, int]] = {}
        self._objects: dict[tuple[int, int, int], str] = {}
        self._sysv_keys: set[tuple[int, int, int]] = set()   # of them, SysV segments
        self._tcp_refused: dict[int, str] = {}       # file key -> why (halfclose.py)
        self._tcp_recipes: list[list[tuple[str, int, bool]]] = []
        self._tcp_key_of: dict[int, int] = {}
        self._late_seals: list[tuple[tuple[int, int], int]] = []   # memfd -> seals later
        self.outside_peers: list[socket.socket] = []   # unix peers outside (held here)
        self._late_connects: list[tuple[int, sockets_pb2.Socket]] = []   # inode, its peer
        self._memory_t0 = 0.0
        # CLONE_VM children: actor -> the creator whose worker runs their steps (they run
        # no Python of their own, restore/clonevm.py); their map_vmas steps wait for it
        self._via: dict[int, int] = {}
        self._vm_maps: list[tuple[int, Step]] = []

    # ------------------------------------------------------------ setup

    def create(self) -> Sandbox:
        steps = self.plan.steps
        if self.plan.pid_ns != "new" or not steps or steps[0].action is not Action.CLONE \
                or steps[0].args.get("child") != NEW_NS_INIT:
            raise UsageError("a rehearsal needs a plan made with pid_ns='new' (its first step "
                             "creates the fresh pid namespace's init)")
        scratch, self._refused = scratch_plan(self.plan, self.files,
                                              self.snap.sockets_by_inode)
        self._plan_half_closed()
        self.result.scratch = [e["dir"] for e in scratch]
        extra = int(steps[0].args.get("flags_value", 0))
        self.floor = _floor(self.snap, self.plan)
        self._next_ctl = self.floor + _service_count(self.plan) + 1
        self.sandbox = start(self.floor, extra)
        ptys = any(s.action is Action.OPEN_PTY for s in steps)
        setup: dict[str, Any] = {"scratch": scratch, "ptys": ptys, "ctl_base": self._next_ctl}
        if any(s.action is Action.OPEN and is_ping(s) for s in steps):
            setup["ping"] = True   # net.ipv4.ping_group_range of the sandbox's netns only
        message = json.dumps(setup).encode()
        if len(message) > MAX_MESSAGE:
            raise CriuModelError(f"rehearsal: {len(scratch)} scratch directories are more "
                                 "than one setup message holds")
        socket.send_fds(self.sandbox.ctl, [message], [])
        reply = await_reply(self.sandbox.ctl, "setting up the sandbox")
        if not reply.get("ok"):
            raise CriuModelError(f"rehearsal: sandbox setup failed: {reply.get('error')}")
        self.channels[NEW_NS_INIT] = self.sandbox.ctl
        self._fill_ghosts()
        self.host_pid[NEW_NS_INIT] = self.sandbox.pid
        self.result.outcomes.append(StepOutcome(0, steps[0], "done", "the sandbox init"))
        return self.sandbox

    def _fill_ghosts(self) -> None:
        """Deleted files' captured contents, written into the sandbox's scratch tmpfs
        through /proc/INIT/root (its mount namespace: nothing of the host is written);
        the last open of each such path unlinks it again."""
        assert self.sandbox is not None
        self._unlink_at: set[int] = set()
        last: dict[str, int] = {}
        made: dict[str, int] = {}
        # open steps of deleted nodes: each makes its node unless it exists (an earlier
        # opener's step may have been skipped); the last opener removes it
        self._node_make: set[int] = set()
        self._node_remove: set[int] = set()   # ... and that remove it (the last opener)
        for index, step in enumerate(self.plan.steps):
            fd = self.files.get(int(step.args.get("file", 0))) \
                if step.action is Action.OPEN else None
            if fd is not None and step.args.get("node") and index not in self._refused:
                path = str(step.args["path"])
                made.setdefault(path, index)
                self._node_make.add(index)
                last[path] = index
                continue
            if fd is None or not fd.deleted or step.args.get("kind") not in ("regular", "fifo") \
                    or index in self._refused:
                continue
            path = str(step.args["path"])
            last[path] = index       # a FIFO made by the setup: unlinked by its last opener
            if step.args.get("kind") == "fifo":
                continue
            ghost = self.snap.ghosts_by_id.get(fd.file.ghost.ghost_id)
            if ghost is not None and ghost.captured and (ghost.data or ghost.extents):
                with open(f"/proc/{self.sandbox.pid}/root{path}", "r+b") as f:
                    for offset, chunk in ghost_pieces(ghost):   # a sparse one: extents
                        f.seek(offset)
                        f.write(chunk)
        self._node_remove = {i for p, i in last.items() if p in made}
        self._unlink_at = {i for p, i in last.items() if p not in made}
        # A live file at a path a deleted one held (the program unlinked it and created
        # it again: ZDTM unlink_fstat01+): made again after the deleted one's unlink.
        self._recreate: dict[int, dict[str, int]] = {}
        for index, step in enumerate(self.plan.steps):
            fd = self.files.get(int(step.args.get("file", 0))) \
                if step.action is Action.OPEN else None
            path = str(step.args.get("path", ""))
            if fd is not None and not fd.deleted and step.args.get("kind") == "regular" \
                    and path in last and index > last[path] and path not in made:
                self._recreate[index] = {"size": fd.file.size, "mode": fd.file.mode & 0o7777,
                                         "uid": fd.file.uid, "gid": fd.file.gid}

    # ------------------------------------------------------------ steps

    def run(self, progress: Report | None = None) -> Execution:
        """Every step in plan order; `progress` hears (steps done, steps, note)."""
        total = len(self.plan.steps)
        for index, step in enumerate(self.plan.steps[1:], start=1):
            self._one(index, step)
            if progress is not None:
                progress(index, total, "")
        self._flush()
        self._close_half_closed()
        if progress is not None:
            progress(total, total, "memory" if self._pending else "")
        self._connect_late()
        self._finish_memory()
        self.result.outcomes.sort(key=lambda o: o.index)
        return self.result

    def _skip(self, index: int, step: Step, why: str) -> None:
        self.result.outcomes.append(StepOutcome(index, step, "not_rehearsed", why))
        args = step.args
        if step.action in (Action.CLONE, Action.LAST_PID_CLONE):
            self.result.missing_procs.setdefault(int(args["child"]), why)
            self._gone.setdefault(int(args["child"]), why)
        for fd in self._made_fds(step):
            self.result.missing_fds.setdefault((step.actor, fd), why)

    @staticmethod
    def _made_fds(step: Step) -> list[int]:
        a = step.args
        if step.action in (Action.OPEN, Action.TCP_REPAIR, Action.ACCEPT):
            return [int(a["fd"])]
        if step.action in (Action.PIPE, Action.SOCKETPAIR, Action.OPEN_PTY):
            return [int(f) for f in a.get("fds", [])]
        return []

    def _one(self, index: int, step: Step) -> None:
        a = step.args
        actor = step.actor
        missing = self.result.missing_fds
        if actor == RESTORER:
            return self._skip(index, step, "a step of the restorer itself: it would run "
                                           "outside the sandbox")
        if actor not in self.channels:
            why = self._gone.get(actor, "its actor does not exist")
            return self._skip(index, step, f"actor {actor} is not running: {why}")
        if actor in self._via and step.action not in _REMOTE:
            return self._skip(index, step, f"{step.action} is not rehearsed in a CLONE_VM "
                                           "child (its creator runs its steps through a "
                                           "syscall mailbox)")
        if step.action is Action.MAP_VMAS and actor in self._via:
            self._vm_maps.append((index, step))   # its address space is its creator's
            return None
        if step.action is Action.MAP_VMAS:
            return self._map_vmas(index, step)
        if step.action is Action.FILL_PAGES:
            return self._fill_pages(index, step)
        reason = _NOT_YET.get(step.action) or self._unsupported_open(index, step) \
            or self._unsupported_repair(step)
        if not reason and step.action not in _EXECUTED:
            reason = f"{step.action} is not rehearsed yet"
        if reason:
            return self._skip(index, step, reason)
        if step.action is Action.DUP2 and (actor, int(a["old"])) in missing:
            missing[(actor, int(a["new"]))] = missing[(actor, int(a["old"]))]
            return self._skip(index, step, f"fd {a['old']} was not made")
        if step.action is Action.EPOLL_ADD and ((actor, int(a["epfd"])) in missing
                                                or (actor, int(a["tfd"])) in missing):
            return self._skip(index, step, "fd its epoll or its target was not made")
        if step.action is Action.OPEN and (why := self._names_missing_fd(step)):
            return self._skip(index, step, why)
        if step.action is Action.ACCEPT and (actor, int(a["listener"])) in missing:
            return self._skip(index, step, f"its listener (fd {a['listener']}) was not made")
        if step.action is Action.LOCK and (actor, int(a["fd"])) in missing:
            return self._skip(index, step, f"fd {a['fd']} was not made")
        if step.action is Action.CLOSE and (actor, int(a["fd"])) in missing:
            return self._skip(index, step, f"fd {a['fd']} was not made")
        if step.action is Action.SET_CTTY and a.get("fd") is None and a.get("host"):
            return self._skip(index, step, f"the host's tty {a.get('path')} is not touched")
        if step.action is Action.SET_CTTY and (actor, int(a.get("fd", -1))) in missing:
            return self._skip(index, step, f"fd {a['fd']} was not made")
        if step.action is Action.OPEN and a.get("kind") == "tty":
            return self._skip(index, step, "a tty opened by path (the host's) is not touched")
        if step.action is Action.SEND_FD:
            return self._send_fd(index, step)
        if step.action is Action.SETNS:
            return self._setns(index, step)
        if step.action is Action.SETNS_PID:
            return self._setns_pid(index, step)
        planned = self.plan.processes.get(actor)
        if step.action is Action.EXIT and a.get("signal") and planned is not None \
                and planned.new_pid_ns:
            return self._kill_init(index, step)
        wire = {"actor": actor, "action": str(step.action), **a}
        if (step.action is Action.OPEN and a.get("kind") == "socket") \
                or step.action is Action.TCP_REPAIR:
            wire.update(self._socket(step))
        if index in getattr(self, "_unlink_at", ()):
            wire["unlink"] = True
        if index in getattr(self, "_recreate", {}):
            wire["recreate"] = self._recreate[index]
        if index in getattr(self, "_node_make", ()):
            # the deleted node, made in the scratch tmpfs by its first opener
            wire["make_node"] = {k: a[k] for k in ("node", "mode", "uid", "gid", "rdev",
                                                   "target") if k in a}
        if index in getattr(self, "_node_remove", ()):
            wire["remove_node"] = True
        if step.action in (Action.OPEN, Action.LOCK) and a.get("locks"):
            wire.pop("locks")
            wire["apply_locks"] = self._locks(step)
        if step.action is Action.OPEN and a.get("kind") == "nsfs":
            # the holder's namespace here: /proc numbers processes at the sandbox level
            holder = self.plan.processes[int(a["holder"])]
            wire["path"] = f"/proc/{holder.set_tid[-1]}/ns/{a['ns']}"
        if step.action is Action.SOCKETPAIR:
            wire["ends"] = [{**end, **self._end_name(int(key))}
                            for end, key in zip(a["ends"], a["files"], strict=True)]
        if a.get("queued"):
            # the pipe's captured bytes (on its first reader's fd in the dump), written
            # back by the worker right after it makes the pipe
            key = int(a["files"][0]) if step.action is Action.PIPE else int(a.get("file", 0))
            data = self._pipe_data(key)
            if data:
                # in a memfd lent with the batch: up to a pipe's 1 MiB would not fit a
                # control message as JSON (ZDTM fifo: a full 64 KiB FIFO killed the worker)
                wire["data_fd"] = True
                # (_queue takes it off the wire)
                wire["_lend"] = memfd_holding("criu-model-queued", len(data), [(0, data)])
        if step.action is Action.CLONE and int(a.get("flags_value", 0)) & 0x500 \
                and not int(a.get("flags_value", 0)) & 0x10000:
            # CLONE_FILES without CLONE_THREAD: the child's control socket needs a number
            # of its own in the table it shares, above every service fd (worker.py); a
            # CLONE_VM child's copied table holds its pidfd of the creator there
            wire["ctl_fd"] = self._next_ctl
            self._next_ctl += 1
        if step.action is Action.OPEN and a.get("kind") == "inotify":
            return self._open_inotify(index, step, wire)
        if wire.get("family") == socket.AF_UNIX and wire.get("peer_outside"):
            return self._open_outside_peer(index, step, wire)
        if step.action is Action.OPEN and a.get("kind") == "memfd":
            self._defer_seals(step, wire)
            ghost = self._ghost_of(int(a.get("file", 0)))
            if ghost is not None and not a.get("hugetlb"):   # hugetlbfs: no write(2)
                return self._open_memfd(index, step, wire, ghost)
        self._queue(index, step, wire)
        return None

    def _names_missing_fd(self, step: Step) -> str:
        """Why an open of /proc/PID/fd/N or /proc/PID/fdinfo/N of a sandbox process
        cannot run: that fd was not made (ZDTM fanotify00 reads its fanotify fd's
        fdinfo). "" when the path names no such fd."""
        m = PROC_FD_PATH.match(str(step.args.get("path", "")))
        if m is None:
            return ""
        pid, fd = m.group(1), int(m.group(3))
        actor = step.actor
        planned = self.plan.processes.get(actor)
        own = pid == "self" or int(pid) == actor or (
            planned is not None and int(pid) in planned.set_tid)
        why = self.result.missing_fds.get((actor, fd)) if own else None
        return f"it opens {m.group(0)}, an fd that was not made ({why})" if why else ""

    def _defer_seals(self, step: Step, wire: dict[str, Any]) -> None:
        """F_SEAL_FUTURE_WRITE (and F_SEAL_SEAL, which must come last) of a memfd that a
        process maps shared and writable: such a mapping was made before the seal, so it
        is added after the memory steps (`_seal_late`), not at the open."""
        seals = int(step.args.get("seals") or 0)
        fd = self.files.get(int(step.args.get("file", 0)))
        if not seals & _F_SEAL_FUTURE_WRITE or fd is None:
            return
        ident = (fd.dev, fd.ino)
        if not any(v.shared and v.prot & 2 and v.kind == mm_pb2.VMA_MEMFD
                   and (v.map_file_dev, v.map_file_ino) == ident
                   for mm in self.snap.memory_by_pid.values() for v in mm.vmas):
            return
        late = seals & (_F_SEAL_FUTURE_WRITE | _F_SEAL_SEAL)
        wire["seals"] = seals & ~late
        self._late_seals.append((ident, late))

    def _seal_late(self) -> None:
        """The deferred seals, through a live holder's fd of each memfd (seals belong to
        the inode: any fd adds them)."""
        for ident, late in self._late_seals:
            holder = next(((t.pid, fd.fd) for t in self.snap.fds if t.pid in self.channels
                           for fd in t.fds if fd.kind == files_pb2.FD_MEMFD
                           and (fd.dev, fd.ino) == ident
                           and (t.pid, fd.fd) not in self.result.missing_fds), None)
            if holder is None:
                continue
            reply, _ = self._ask(holder[0], {"op": "seal", "fd": holder[1], "seals": late},
                                 "sealing a memfd")
            if not reply.get("ok"):
                self.result.outcomes.append(StepOutcome(
                    len(self.plan.steps), Step(holder[0], Action.OPEN,
                                               {"fd": holder[1], "seals": late},
                                               "F_ADD_SEALS after the mappings"),
                    "failed", str(reply.get("error")), int(reply.get("errno", 0))))

    def _ghost_of(self, key: int) -> files_pb2.GhostFile | None:
        """The captured contents of file `key` (a memfd or a deleted file), or None."""
        fd = self.files.get(key)
        if fd is None:
            return None
        ref = fd.memfd.ghost if fd.HasField("memfd") else fd.file.ghost
        ghost = self.snap.ghosts_by_id.get(ref.ghost_id) if ref.captured else None
        return ghost if ghost is not None and ghost.captured else None

    def _open_memfd(self, index: int, step: Step, wire: dict[str, Any],
                    ghost: files_pb2.GhostFile) -> None:
        """A memfd with its captured contents: they travel in a memfd of ours (lent with
        the step, any size), copied in by the worker before it adds the seals."""
        data = ghost_memfd(ghost)
        try:
            wire["contents"] = [[e.offset, len(e.data)] for e in ghost.extents] \
                if ghost.extents else [[0, len(ghost.data)]]
            reply, _ = self._ask(step.actor, {"op": "step", "step": wire}, f"step {index}",
                                 [data])
        finally:
            os.close(data)
        self._record(index, step, reply)
        return None

    def _open_inotify(self, index: int, step: Step, wire: dict[str, Any]) -> None:
        """An inotify instance and its watches. The targets are named by file handle only:
        the conductor opens each on the host (open_by_handle_at, O_PATH: a watch only
        observes its inode) and lends the fds to the worker for inotify_add_watch."""
        watches = list(step.args.get("watches", []))
        if len(watches) > MAX_FDS:
            return self._skip(index, step, f"{len(watches)} watches are more than one "
                                           "command carries")
        targets: list[int] = []
        try:
            for watch in watches:
                fd, why = self._watch_target(watch)
                if why:
                    return self._skip(index, step, f"watch {watch.get('wd')}: {why}")
                targets.append(fd)
            reply, _ = self._ask(step.actor, {"op": "inotify", "step": wire}, f"step {index}",
                                 targets)
        finally:
            for fd in targets:
                os.close(fd)
        self._record(index, step, reply)
        return None

    def _watch_target(self, watch: dict[str, Any]) -> tuple[int, str]:
        """An O_PATH fd of the watched inode here, or why there is none."""
        from criu_model.collect.mountinfo import MountinfoParseError, parse_mountinfo
        from criu_model.kernel.fhandle import open_by_handle

        if not hasattr(self, "_mounts"):
            try:
                with open("/proc/self/mountinfo", "rb") as f:
                    mounts = parse_mountinfo(f.read())
            except (OSError, MountinfoParseError):
                mounts = []
            self._mounts: dict[int, bytes] = {}
            for m in mounts:
                self._mounts.setdefault(os.makedev(m.dev_major, m.dev_minor), m.mount_point)
        mount = self._mounts.get(int(watch.get("dev", 0)))
        if mount is None:
            return -1, "its filesystem is not mounted here"
        try:
            mount_fd = os.open(mount, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as err:
            return -1, f"cannot open its mount {os.fsdecode(mount)}: {err.strerror}"
        try:
            fd = open_by_handle(mount_fd, int(watch.get("handle_type", 0)),
                                bytes.fromhex(str(watch.get("handle", ""))))
        except OSError as err:
            return -1, f"its file handle does not open here: {err.strerror}"
        finally:
            os.close(mount_fd)
        if watch.get("ino") and os.fstat(fd).st_ino != int(watch["ino"]):
            os.close(fd)
            return -1, f"its handle now names another inode than {watch['ino']}"
        return fd, ""

    # Consecutive steps of one actor travel in one message (one round trip, not one
    # per step); a clone or an exit ends the batch, since what follows depends on it.

    def _queue(self, index: int, step: Step, wire: dict[str, Any]) -> None:
        lend = wire.pop("_lend", None)   # an fd the step lends its worker (data_fd)
        if self._batch and (self._batch[0][1].actor != step.actor
                            or (lend is not None and len(self._batch_fds) >= MAX_FDS)):
            self._flush()
        self._batch.append((index, step, wire))
        if lend is not None:
            self._batch_fds.append(lend)   # closed once the batch is sent
        if step.action in (Action.CLONE, Action.EXIT) or len(self._batch) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        lent, self._batch_fds = self._batch_fds, []
        if not batch:
            return
        actor = batch[0][1].actor
        try:
            reply, fds = self._exchange(actor, {"op": "steps",
                                                "steps": [w for _, _, w in batch]},
                                        f"steps {batch[0][0]}-{batch[-1][0]}", lent)
        finally:
            for fd in lent:
                os.close(fd)
        results = reply.get("results", [])
        for n, (index, step, _) in enumerate(batch):
            result = results[n] if n < len(results) else \
                {"ok": False, "error": reply.get("error", "not run"), "errno": 0}
            self._finish(index, step, result, fds if n == len(batch) - 1 else [])

    def _finish(self, index: int, step: Step, reply: dict[str, Any], fds: list[int]) -> None:
        a = step.args
        actor = step.actor
        if not reply.get("ok"):
            self.result.outcomes.append(StepOutcome(index, step, "failed",
                                                    str(reply.get("error")),
                                                    int(reply.get("errno", 0))))
            if step.action is Action.CLONE:
                self._gone[int(a["child"])] = f"its clone3 (step {index}) failed"
            return None
        self.result.outcomes.append(StepOutcome(index, step, "done"))
        if step.action is Action.CLONE:
            self._adopt(index, step, reply, fds)
        elif step.action is Action.EXIT:
            sock = self.channels.pop(actor)
            if actor not in self._via:       # a CLONE_VM child's is its creator's
                with contextlib.suppress(OSError):
                    sock.close()
            for child in [c for c, via in self._via.items() if via == actor]:
                self._gone.setdefault(child, f"its creator {actor}, which ran its steps, "
                                             f"exited (step {index})")
                self.channels.pop(child, None)
            self._gone[actor] = f"it exited (step {index})"
            self._await_death(actor)
        return None

    def _adopt(self, index: int, step: Step, reply: dict[str, Any], fds: list[int]) -> None:
        child = int(step.args["child"])
        inherit = {k: v for k, v in self.result.missing_fds.items() if k[0] == step.actor}
        for (_, fd), why in inherit.items():
            self.result.missing_fds.setdefault((child, fd), why)
        if step.action is Action.CLONE and not reply.get("vm") \
                and int(step.args.get("flags_value", 0)) & 0x100 \
                and not int(step.args.get("flags_value", 0)) & 0x10000:
            self.result.thread_note[child] = \
                "CLONE_VM/CLONE_SIGHAND sharing is not rehearsed here (its mailbox child " \
                "runs x86_64 code only): a Python fork keeps its own address space"
        if reply.get("vm"):
            return self._adopt_vm(step.actor, child, int(reply["pid"]))
        if reply.get("thread"):
            if reply.get("tid") is None:
                self.result.thread_note[step.actor] = \
                    "threads are made with threading.Thread here (not x86_64): the count " \
                    "is rehearsed, their tids (set_tid) are not"
            return
        sock = socket.socket(fileno=fds[0])
        self.channels[child] = sock
        sock.settimeout(10.0)
        try:
            msg, anc, _f, _a = sock.recvmsg(1 << 12, socket.CMSG_SPACE(12))
        except TimeoutError as err:
            raise CriuModelError(f"rehearsal: {child} was not born (step {index})") from err
        finally:
            sock.settimeout(None)
        if not msg or not json.loads(msg).get("child"):
            raise CriuModelError(f"rehearsal: {child} died at birth (step {index})")
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                self.host_pid[child] = struct.unpack("iII", data[:12])[0]
        # Off again: credentials on every reply would crowd out the fds they carry.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 0)

    def _adopt_vm(self, creator: int, child: int, pid: int) -> None:
        """A CLONE_VM child: its steps go to its creator's worker; its pid here is found
        among the creator's children by its pid in the creator's namespace (NSpid)."""
        self._via[child] = creator
        self.channels[child] = self.channels[creator]
        host = self.host_pid.get(creator)
        if host is None:
            return
        with contextlib.suppress(OSError):
            with open(f"/proc/{host}/task/{host}/children") as f:
                kids = [int(k) for k in f.read().split()]
            for kid in kids:
                with open(f"/proc/{kid}/status") as f:
                    nspid = next((line.split()[1:] for line in f
                                  if line.startswith("NSpid:")), [])
                if nspid and int(nspid[-1]) == pid:
                    self.host_pid[child] = kid
                    return

    def _await_death(self, actor: int, timeout: float = 5.0) -> None:
        """The worker answers before it exits: wait until the kernel has it dead (a zombie
        or reaped), so the next step sees what the exit changed (reparented orphans)."""
        host = self.host_pid.get(actor)
        if host is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{host}/stat", "rb") as f:
                    if f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X"):
                        return
            except (FileNotFoundError, ProcessLookupError):
                return
            time.sleep(0.0002)
        raise CriuModelError(f"rehearsal: actor {actor} did not exit")

    def _kill_init(self, index: int, step: Step) -> None:
        """A pid namespace's init ignores a signal sent from inside its namespace, itself
        included (SIGNAL_UNKILLABLE, kernel/signal.c sig_task_ignored): it can only die of
        one sent from an ancestor namespace, so the conductor sends it."""
        actor = step.actor
        host = self.host_pid.get(actor)
        if host is None:
            return self._skip(index, step, "its pid here is unknown: cannot signal it")
        self._ask(actor, {"op": "step", "step": {"action": "exit_by_parent"}},
                  f"step {index}")
        with contextlib.suppress(OSError):
            self.channels.pop(actor).close()
        os.kill(host, int(step.args["signal"]))
        self._gone[actor] = f"it exited (step {index})"
        self._await_death(actor)
        self.result.outcomes.append(StepOutcome(
            index, step, "done", "signal sent from outside its namespace: a namespace init "
                                 "ignores its own"))
        return None

    def _locks(self, step: Step) -> list[dict[str, Any]]:
        """The open step's locks the worker takes, or none and the reason kept.

        Only on a file that exists in the sandbox alone (a stand-in in a scratch tmpfs,
        a memfd): a lock on the host's own file would be seen by the host's processes
        (and could make them wait). POSIX locks belong to a process: taken only when the
        opener is their owner, and so are leases (F_SETLEASE records its caller; the
        scratch plan gives a leased file a stand-in). Delegations are not rehearsed.
        """
        a = step.args
        key = (step.actor, int(a.get("file", 0)))
        path = str(a.get("path", ""))
        inside = a.get("kind") == "memfd" or any(path.startswith(d + "/")
                                                 for d in self.result.scratch)
        why = ""
        if not inside:
            why = f"{path or 'the file'} is the host's file: a lock on it would be seen " \
                  "outside the sandbox"
        for lock in a["locks"]:
            kind = str(lock["type"]).upper()
            if kind not in ("FLOCK", "POSIX", "OFD", "LEASE"):
                why = why or f"{kind.lower()} locks are not rehearsed yet"
            elif kind == "LEASE" and (lock.get("breaking")
                                      or str(lock["mode"]).upper() not in ("READ", "WRITE")):
                why = why or "a lease being broken: F_SETLEASE cannot make one mid-break"
            elif kind in ("POSIX", "LEASE") and lock["pid"] != step.actor:
                why = why or f"a {kind} lock of process {lock['pid']}, opened by {step.actor}"
        if why:
            self.result.lock_notes[key] = why
            return []
        return list(a["locks"])

    def _pipe_data(self, key: int) -> bytes:
        """The bytes the dump captured for the pipe of file `key` (b"" if none)."""
        fd = self.files.get(key)
        if fd is None or fd.WhichOneof("state") != "pipe":
            return b""
        return self.snap.pipe_data.get(fd.pipe.pipe_ino, b"")

    def _end_name(self, key: int) -> dict[str, Any]:
        """A socketpair end's name, if it is bound (a client bound before connect(), an
        end accepted on a listener): bound again after socketpair(), in the sandbox
        only; a node deleted on the host is unlinked again (ZDTM deleted_unix_sock)."""
        fd = self.files.get(key)
        sock = self.snap.sockets_by_inode.get(fd.socket.inode) \
            if fd is not None and fd.HasField("socket") else None
        name = sock.unix.name if sock is not None and sock.HasField("unix") else b""
        if not name:
            return {}
        # (a relative name's node is left: the host's cwd is not criu-model's)
        return {"name_hex": name.hex(),
                "unlink": name.startswith(b"/") and not _node_is(name, sock)}

    def _unsupported_open(self, index: int, step: Step) -> str:
        if step.action is Action.SOCKETPAIR and index in self._refused:
            return self._refused[index]    # an end's name would bind outside the sandbox
        if step.action is not Action.OPEN:
            return ""
        kind = str(step.args.get("kind"))
        if index in self._refused:
            return self._refused[index]
        if kind not in _OPEN_KINDS:
            return f"{kind} files are not rehearsed yet"
        if kind == "nsfs":
            holder = self.plan.processes.get(int(step.args.get("holder", 0)))
            if "holder" not in step.args or holder is None:
                return "a namespace file of a namespace no process of the tree is in"
            if int(step.args["holder"]) in self._gone:
                return f"its holder {step.args['holder']} is not running here"
        fd = self.files.get(int(step.args.get("file", 0)))
        if step.args.get("node"):
            return self._node_userns(step)
        if fd is not None and fd.deleted and kind == "regular" and not fd.file.ghost.captured:
            return "a deleted file whose contents were not captured"
        if fd is not None and fd.deleted and kind not in ("regular", "memfd", "fifo"):
            return f"deleted {kind} files are not rehearsed yet"
        if kind == "socket":
            return self._socket_refusal(index, step)
        if kind == "pidfd":
            target = int(step.args.get("target", -1))
            me, them = self.plan.processes.get(step.actor), self.plan.processes.get(target)
            if target < 0:
                return ""      # of a process that had exited: a helper child's (worker)
            if them is None:
                return "a pidfd of a process outside the snapshot is not rehearsed yet"
            if target in self._gone:
                return f"its target {target} is not running here: {self._gone[target]}"
            if me is None or len(me.set_tid) != 1:
                return "a pidfd opened inside a nested pid namespace is not rehearsed yet"
        return ""

    def _node_userns(self, step: Step) -> str:
        """mknod of a device needs CAP_MKNOD in the initial user namespace (fs/namei.c
        vfs_mknod: capable(), not ns_capable): not in a user namespace the plan makes."""
        if step.args.get("node") not in _DEVICE_NODES:
            return ""
        if int(self.plan.steps[0].args.get("flags_value", 0)) & _CLONE_NEWUSER:
            return f"mknod of a {step.args['node']} needs CAP_MKNOD in the initial user " \
                   "namespace: the sandbox is in a user namespace of its own"
        me = self.snap.by_pid.get(step.actor)
        root = self.snap.processes[0] if self.snap.processes else None
        if me is not None and root is not None and \
                namespace_inode(me, "user") != namespace_inode(root, "user"):
            return f"mknod of a {step.args['node']} needs CAP_MKNOD in the initial user " \
                   f"namespace: process {step.actor} is in a user namespace of its own"
        return ""

    def pending_listener(self, sock: sockets_pb2.Socket) -> sockets_pb2.Socket | None:
        """The listener in whose accept queue `sock` waits (connected, not accepted yet),
        or None; the dump leaves such a client's own peer 0."""
        return self.snap.accept_queues.get(sock.inode)

    def _stream_listener(self, step: Step) -> sockets_pb2.Socket | None:
        """The listener a client connects to so that its accept() makes the other end
        (the planner's `listener` argument naming a listening socket), or None."""
        peer = self.snap.sockets_by_inode.get(int(step.args.get("listener", 0)))
        return peer if peer is not None and peer.state == _TCP_LISTEN else None

    def _dgram_peer(self, step: Step) -> sockets_pb2.Socket | None:
        """The datagram socket the planner says this one connects to by name (its
        `listener` argument on a socket that does not listen), or None."""
        peer = self.snap.sockets_by_inode.get(int(step.args.get("listener", 0)))
        return peer if peer is not None and peer.state != _TCP_LISTEN else None

    def _listener_opened(self, listener: sockets_pb2.Socket) -> bool:
        """Its open step ran and the kernel took it (so a connect can reach it)."""
        self._flush()    # its open may still be queued
        keys = {k for k, fd in self.files.items()
                if fd.HasField("socket") and fd.socket.inode == listener.inode}
        return any(o.status == "done" and o.step.action is Action.OPEN
                   and int(o.step.args.get("file", 0)) in keys for o in self.result.outcomes)

    @staticmethod
    def _named_peer(sock: sockets_pb2.Socket, peer: sockets_pb2.Socket) -> bool:
        """A datagram socket connected to a named one of the snapshot that is not
        connected back (a one-way connect(2)): made by connecting to that name."""
        return sock.type != socket.SOCK_STREAM and bool(peer.unix.name) \
            and peer.unix.peer_inode != sock.inode

    def _open_outside_peer(self, index: int, step: Step, wire: dict[str, Any]) -> None:
        """A unix socket connected to a peer outside the snapshot: one end of a socketpair
        of its type; the other end, the outside peer, is handed to criu-model, which holds
        it (outside the sandbox's processes, as the original peer was) until the sandbox
        is torn down, so the connection stays open while it is judged."""
        wire["outside_peer"] = True
        reply, fds = self._ask(step.actor, {"op": "step", "step": wire}, f"step {index}")
        for fd in fds:
            self.outside_peers.append(socket.socket(fileno=fd))
        self._record(index, step, reply)
        return None

    def close(self) -> None:
        """Drop what criu-model holds for the sandbox (the outside peers)."""
        for sock in self.outside_peers:
            sock.close()
        self.outside_peers.clear()

    def _socket(self, step: Step) -> dict[str, Any]:
        """What the worker needs to make a socket (the open step carries addresses only)."""
        fd = self.files.get(int(step.args.get("file", 0)))
        sock = self.snap.sockets_by_inode.get(fd.socket.inode) if fd is not None else None
        if sock is None and fd is not None and fd.socket.HasField("probe"):
            return {"probe": probe_wire(step, fd.socket.probe)}
        assert sock is not None
        out: dict[str, Any] = {"type": sock.type, "state": sock.state,
                               "backlog": sock.wqueue}
        kind = sock.WhichOneof("kind")
        if kind == "unix":
            out["family"] = socket.AF_UNIX
            out["name_hex"] = sock.unix.name.hex()
            if sock.unix.name.startswith(b"/") and not _node_is(sock.unix.name, sock):
                out["unlink"] = True    # its node was deleted (or is another file's now)
            out["backlog"] = sock.unix.backlog or sock.wqueue
            listener = self.pending_listener(sock) or self._stream_listener(step)
            if listener is not None:   # connect again: the same accept queue, or accept()ed
                out["connect_hex"] = listener.unix.name.hex()
            elif step.args.get("connect_self"):
                out["connect_hex"] = sock.unix.name.hex()
            elif sock.unix.peer_inode:
                peer = self._dgram_peer(step) or self.snap.sockets_by_inode.get(
                    sock.unix.peer_inode)
                if peer is not None and self._named_peer(sock, peer):
                    if self._listener_opened(peer):
                        out["connect_hex"] = peer.unix.name.hex()   # connect(2) by name
                    else:   # made later in the plan: connected once the skeleton stands
                        self._late_connects.append((sock.inode, peer))
                else:   # its peer is outside: a socketpair's other end
                    out["peer_outside"] = True
        elif kind == "netlink":
            n = sock.netlink
            out["family"] = socket.AF_NETLINK
            out["netlink"] = {"protocol": n.protocol, "portid": n.portid,
                              "dst_portid": n.dst_portid, "dst_group": n.dst_group,
                              "groups": list(n.groups), "flags": n.flags}
        else:
            out["family"] = socket.AF_INET6 if ":" in sock.inet.src else socket.AF_INET
            out["src"], out["sport"] = sock.inet.src, sock.inet.sport
            out["dst"], out["dport"] = sock.inet.dst, sock.inet.dport
            if sock.type == socket.SOCK_DGRAM and sock.state == 1:
                out["connect_inet"] = True     # a connected UDP socket
            if sock.type == socket.SOCK_DGRAM and sock.HasField("shutdown") and sock.shutdown:
                out["shutdown"] = sock.shutdown
        return out

    def _unsupported_repair(self, step: Step) -> str:
        if step.action is not Action.TCP_REPAIR:
            return ""
        for addr in (str(step.args.get("src")), str(step.args.get("dst"))):
            if addr not in _SANDBOX_ADDRS and not addr.startswith("127."):
                return f"{addr} is not an address of the sandbox's loopback"
        return self._tcp_refused.get(int(step.args.get("file", 0)), "")

    def _plan_half_closed(self) -> None:
        """Per connection with a half-closed end: the close sequence that reaches the dumped
        states (halfclose.py), or why none does (kept per file: its ends are refused)."""
        from criu_model.restore import halfclose

        self._tcp_refused, self._tcp_recipes = {}, []
        ends = []
        key_of: dict[int, int] = {}     # socket inode -> file key of its step
        for step in self.plan.steps:
            if step.action is not Action.TCP_REPAIR:
                continue
            fd = self.files.get(int(step.args.get("file", 0)))
            sock = self.snap.sockets_by_inode.get(fd.socket.inode) if fd is not None else None
            if sock is not None and sock.WhichOneof("kind") == "inet":
                ends.append((int(step.args.get("file", 0)), sock))
                key_of[sock.inode] = int(step.args.get("file", 0))
        inside = {(s.inet.src, s.inet.sport, s.inet.dst, s.inet.dport)
                  for s in self.snap.sockets if s.WhichOneof("kind") == "inet"}
        for members in halfclose.connections(ends).values():
            socks = [sock for _key, sock in members]
            if not any(s.state in halfclose.HALF_CLOSED for s in socks):
                continue
            if len(socks) == 2:
                recipe, why = halfclose.pair_recipe((socks[0].inode, socks[0].state),
                                                    (socks[1].inode, socks[1].state))
            elif len(socks) == 1 and (socks[0].inet.dst, socks[0].inet.dport, socks[0].inet.src,
                                      socks[0].inet.sport) not in inside:
                recipe, why = halfclose.alone_recipe(socks[0].inode, socks[0].state)
            else:
                recipe, why = [], "its peer is in the snapshot but not planned with TCP_REPAIR"
            if why:
                for key, _sock in members:
                    self._tcp_refused[key] = f"a half-closed TCP connection: {why}"
            else:
                self._tcp_recipes.append(recipe)
        self._tcp_key_of = key_of

    def _close_half_closed(self) -> None:
        """Run each planned close sequence on the ends' final holders (after the skeleton:
        every socket is at its dumped number); a failure is that end's step failing."""
        made = {int(o.step.args.get("file", 0)) for o in self.result.outcomes
                if o.step.action is Action.TCP_REPAIR and o.status == "done"}
        for recipe in self._tcp_recipes:
            holders: dict[int, tuple[int, int]] = {}
            for _action, inode, _helper in recipe:
                holder = self._tcp_holder(inode)
                if holder is None or self._tcp_key_of.get(inode) not in made:
                    break
                holders[inode] = holder
            else:
                self._run_recipe(recipe, holders)
            # (otherwise an end was not made: its step or fd is reported already)
        from criu_model.restore import halfclose

        for step in self.plan.steps:
            # SHUT_RD where no FIN came in (the states a received FIN leaves are the
            # recipes'): it only sets RCV_SHUTDOWN, nothing is sent
            key = int(step.args.get("file", 0))
            if step.action is not Action.TCP_REPAIR or not int(step.args.get("shutdown", 0)) \
                    & 1 or key not in made:
                continue
            fd = self.files.get(key)
            sock = self.snap.sockets_by_inode.get(fd.socket.inode) if fd is not None else None
            if sock is None or sock.state not in halfclose.NO_FIN_IN:
                continue
            holder = self._tcp_holder(sock.inode)
            if holder is not None:
                self._run_recipe([("shut_rd", sock.inode, False)], {sock.inode: holder})

    def _run_recipe(self, recipe: list[tuple[str, int, bool]],
                    holders: dict[int, tuple[int, int]], arg: str = "") -> None:
        """One close sequence, in order, each action on its end's holder; a refused
        action is a failed step of that end (the rest of the sequence is not run)."""
        for action, inode, helper in recipe:
            actor, fd = holders[inode]
            reply, _ = self._ask(actor, {"op": "tcp", "do": [[action, fd, helper]],
                                         "arg": arg}, f"socket {inode} ({action})")
            if not reply.get("ok"):
                index = next((o.index for o in self.result.outcomes
                              if o.step.action is Action.TCP_REPAIR
                              and int(o.step.args.get("file", 0))
                              == self._tcp_key_of.get(inode)), 0)
                self.result.outcomes.append(StepOutcome(
                    index, Step(actor, Action.TCP_REPAIR, {"socket": inode},
                                f"half-close: {action}"),
                    "failed", f"{action}: {reply.get('error')}", int(reply.get("errno", 0))))
                break

    def _connect_late(self) -> None:
        """One-way datagram connects whose target was made after them: connect(2) by the
        target's name now, through the socket's final holder (a refusal is its step's)."""
        for inode, peer in self._late_connects:
            holder = self._tcp_holder(inode)
            if holder is None:
                continue    # its fd is reported as not made
            if not self._listener_opened(peer):
                # its peer was never made: the fd stands unconnected, not rehearsed
                self.result.missing_fds.setdefault(
                    holder, f"its peer {printable(peer.unix.name)} was not made")
                continue
            self._run_recipe([("connect_unix", inode, False)], {inode: holder},
                             peer.unix.name.hex())

    def _tcp_holder(self, inode: int) -> tuple[int, int] | None:
        """(actor, fd) of a running process whose dumped fd holds socket `inode`."""
        for table in self.snap.fds:
            if table.pid not in self.channels:
                continue
            for fd in table.fds:
                if fd.HasField("socket") and fd.socket.inode == inode \
                        and (table.pid, fd.fd) not in self.result.missing_fds:
                    return table.pid, fd.fd
        return None

    def _socket_refusal(self, index: int, step: Step) -> str:
        fd = self.files.get(int(step.args.get("file", 0)))
        sock = self.snap.sockets_by_inode.get(fd.socket.inode) if fd is not None else None
        if sock is None and fd is not None and fd.socket.HasField("probe") \
                and "family" in step.args:
            return probe_refusal(step, fd.socket.probe)
        if sock is None:
            return "a socket the dump could not describe"
        kind = sock.WhichOneof("kind")
        if kind == "unix":
            listener = self.pending_listener(sock) or self._stream_listener(step)
            if listener is not None and not self._listener_opened(listener):
                return f"its listener {printable(listener.unix.name)} is not rehearsed"
            target = listener or self._dgram_peer(step)
            if target is not None and target is not sock \
                    and target.unix.name.startswith(b"/") \
                    and not _node_is(target.unix.name, target):
                return f"its peer's node {printable(target.unix.name)} was deleted since " \
                       "it connected: connect() by name would reach what is there now"
            if sock.unix.peer_inode and listener is None \
                    and not step.args.get("connect_self"):
                peer = self._dgram_peer(step) or self.snap.sockets_by_inode.get(
                    sock.unix.peer_inode)
                if peer is not None and not self._named_peer(sock, peer):
                    return "a connected unix socket whose peer in the snapshot is not " \
                           "planned with it (no socketpair step)"
                if sock.unix.name and sock.unix.name in self.snap.unix_listeners:
                    return f"accepted on the tree's listener {printable(sock.unix.name)} " \
                           "from a client outside: its name is the listener's, bound once"
            name = sock.unix.name
            if name and not sock.unix.abstract and index in self._refused:
                return self._refused[index]
            return ""
        if kind == "netlink":
            return ""      # the sandbox's own network namespace: its portids are free
        if kind == "inet" and sock.state in (_TCP_LISTEN, _TCP_CLOSE):
            if sock.inet.src not in _SANDBOX_ADDRS and not sock.inet.src.startswith("127."):
                return f"{sock.inet.src} is not an address of the sandbox's loopback"
            return ""
        if kind == "inet" and sock.state == 1 and sock.type == socket.SOCK_DGRAM:
            # a connected UDP socket (ZDTM socket_udp): bind, then connect() again, on
            # the sandbox's loopback only
            for addr in (sock.inet.src, sock.inet.dst):
                if not _sandbox_addr(addr) and not addr.startswith("127."):
                    return f"{addr} is not an address of the sandbox's loopback"
            return ""
        return f"{kind} sockets in state {sock.state} are not rehearsed yet"

    def _send_fd(self, index: int, step: Step) -> None:
        a = step.args
        to = int(a["to"])
        if (step.actor, int(a["fd"])) in self.result.missing_fds:
            self.result.missing_fds[(to, int(a["to_fd"]))] = \
                self.result.missing_fds[(step.actor, int(a["fd"]))]
            return self._skip(index, step, f"fd {a['fd']} was not made")
        if to not in self.channels:
            return self._skip(index, step, f"receiver {to} is not running")
        reply, fds = self._ask(step.actor, {"op": "send_fd", "fd": a["fd"]}, f"step {index}")
        if reply.get("ok") and fds:
            try:
                reply, _ = self._ask(to, {"op": "recv_fd", "to_fd": a["to_fd"]},
                                     f"step {index}", fds[:1])
            finally:
                for fd in fds:
                    os.close(fd)
        self._record(index, step, reply)
        return None

    def _setns(self, index: int, step: Step) -> None:
        holder = self.plan.processes.get(int(step.args["holder"]))
        if holder is None or int(step.args["holder"]) in self._gone:
            return self._skip(index, step, f"holder {step.args['holder']} is not running")
        # The sandbox's /proc numbers processes at the sandbox level: set_tid[-1].
        wire = {"op": "setns_path", "path": f"/proc/{holder.set_tid[-1]}/ns/{step.args['ns']}"}
        reply, _ = self._ask(step.actor, wire, f"step {index}")
        self._record(index, step, reply)
        return None

    def _setns_pid(self, index: int, step: Step) -> None:
        """pid_ns_for_children := the active pid namespace of `ns_init` (setns(2) on
        /proc/PID/ns/pid, Linux 3.8): the creator's next clone lands there. Back home is
        /proc/self/ns/pid (its own active one) or the sandbox init's, pid 1."""
        ns_init = int(step.args["ns_init"])
        if ns_init == NEW_NS_INIT:
            path = "/proc/1/ns/pid"
        elif ns_init == step.actor:
            path = "/proc/self/ns/pid"
        else:
            holder = self.plan.processes.get(ns_init)
            if holder is None or ns_init in self._gone or not holder.set_tid:
                return self._skip(index, step, f"namespace init {ns_init} is not running")
            path = f"/proc/{holder.set_tid[-1]}/ns/pid"   # numbered at the sandbox level
        reply, _ = self._ask(step.actor, {"op": "setns_path", "path": path}, f"step {index}")
        self._record(index, step, reply)
        return None

    def _map_vmas(self, index: int, step: Step) -> None:
        """One memory job per process: every VMA mapped, and filled as its fill_pages steps
        say (they follow in the plan); each VMA's outcome is kept for those steps and the
        judge. The VMAs are read from the snapshot: the step carries only their count.

        The job is sent and not waited for: address spaces are independent, so the
        sandbox processes map and fill theirs at the same time (and while the next job is
        built); the reply is collected before anything else is asked of that process.
        """
        from criu_model.restore import memory

        actor = step.actor
        self._await_creators(actor)
        job, page_fds, decisions = memory.memory_job(self.snap, actor, self._objects)
        vmas = self.result.vmas
        self._holders_here(actor, job, decisions)
        for d in decisions:
            if d.skip:
                vmas[(actor, d.start)] = (memory.NOT_REHEARSED, d.skip)
        if 2 + len(page_fds) > MAX_FDS:
            why = f"a chain of {len(page_fds)} page stores is more than one command carries"
            for v in job["vmas"]:
                vmas[(actor, int(v["start"]))] = (memory.NOT_REHEARSED, why)
            return self._skip(index, step, why)
        self._flush()
        job_fd = memory.job_memfd(job)
        try:
            if self._root_fd < 0:
                self._root_fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            socket.send_fds(self.channels[actor], [json.dumps({"op": "memory"}).encode()],
                            [job_fd, self._root_fd, *page_fds])
        except BaseException:
            os.close(job_fd)
            raise
        if not self._pending:
            self._memory_t0 = time.perf_counter()
        self._pending[actor] = (index, step, job_fd, job, len(decisions))
        for d in decisions:   # sent: its later holders wait for this job
            if d.creates is not None and d.creates not in self._creating:
                self._creating[d.creates] = (actor, d.start, d.end)
        made = {(actor, int(v["start"])) for v in job["vmas"]
                if v.get("sysv") and v["sysv"]["create"]}
        for d in decisions:
            if d.creates is not None and (actor, d.start) in made:
                self._sysv_keys.add(d.creates)
        if made:
            # a segment's id comes from shm_next_id, one per IPC namespace: no other
            # creator may run between its write and the shmget, so this job ends first
            self._collect(actor)
        return None

    def _holders_here(self, actor: int, job: dict[str, Any],
                      decisions: list[Any]) -> None:
        """A memfd or deleted file another process holds: its fd's /proc path in the
        sandbox (numbered at the sandbox level: set_tid[-1]), or why it is not there."""
        skip: dict[int, str] = {}
        for v in job["vmas"]:
            source = v.get("memfd") or {}
            own = (actor, int(source["fd"])) if "fd" in source else None
            if own is not None and own in self.result.missing_fds:
                # its own fd was not made: that number may hold anything (ZDTM
                # shmemfd-priv mapped the memory job's memfd)
                skip[int(v["start"])] = f"its fd {own[1]} was not made: " \
                                        f"{self.result.missing_fds[own]}"
                continue
            if "holder" not in source:
                continue
            pid, fd = (int(x) for x in source.pop("holder"))
            planned = self.plan.processes.get(pid)
            why = self.result.missing_fds.get((pid, fd)) or self._gone.get(pid) or \
                ("" if planned is not None and planned.set_tid else "its holder is not planned")
            if why:
                skip[int(v["start"])] = f"its holder {pid}:{fd} was not made: {why}"
            else:
                source["open"] = f"/proc/{planned.set_tid[-1]}/fd/{fd}"
        if skip:
            job["vmas"] = [v for v in job["vmas"] if int(v["start"]) not in skip]
            for d in decisions:
                if d.start in skip:
                    d.skip, d.creates = skip[d.start], None

    def _await_creators(self, actor: int) -> None:
        """Collect the jobs that create the shared objects `actor` maps (it maps the same
        objects through their creator's /proc/PID/map_files, which must exist first)."""
        from criu_model.pages.memory import vma_owner

        mm = self.snap.memory_by_pid.get(actor)
        for vma in mm.vmas if mm else ():
            if vma.kind == mm_pb2.VMA_MEMFD and vma.map_file_known:
                key: tuple[int, int, int] | None = (0, vma.map_file_dev, vma.map_file_ino)
            elif not vma.shared:
                continue
            else:
                key = vma_owner(actor, vma)[0]
            creator = self._creating.get(key) if key is not None else None
            if creator is not None and creator[0] in self._pending:
                self._collect(creator[0])

    def _objects_made(self, actor: int) -> None:
        """After `actor`'s job: the objects it created, by the path later holders open."""
        from criu_model.restore import memory

        planned = self.plan.processes.get(actor)
        for key, (creator, lo, hi) in self._creating.items():
            if creator != actor or key in self._objects:
                continue
            done = self.result.vmas.get((actor, lo), ("", ""))[0] == memory.DONE
            if key in self._sysv_keys:   # its holders shmat it by id
                self._objects[key] = memory.SYSV_MADE if done else ""
                continue
            # the sandbox's /proc numbers processes at the sandbox level: set_tid[-1]
            self._objects[key] = f"/proc/{planned.set_tid[-1]}/map_files/{lo:x}-{hi:x}" \
                if done and planned is not None and planned.set_tid else ""

    def _collect(self, actor: int) -> None:
        """The reply of `actor`'s memory job, and each VMA's outcome from it."""
        from criu_model.restore import memory

        index, step, job_fd, job, count = self._pending.pop(actor)
        vmas = self.result.vmas
        try:
            reply, fds = receive(self.channels[actor], f"step {index} (map_vmas)",
                                 who=f"actor {actor}", timeout=_MEMORY_TIMEOUT)
            for fd in fds:
                os.close(fd)
            result = memory.read_result(job_fd) if reply.get("ok") else {}
        finally:
            os.close(job_fd)
        stats = self.result.memory
        stats["wall_s"] = time.perf_counter() - self._memory_t0
        if not reply.get("ok"):
            for v in job["vmas"]:
                vmas[(actor, int(v["start"]))] = (memory.FAILED, str(reply.get("error")))
            self._objects_made(actor)
            return self._record(index, step, reply)
        mapped = 0
        for at, status, detail, _pages in result.get("vmas", []):
            vmas[(actor, int(at))] = (str(status), str(detail))
            mapped += status == memory.DONE
        self._objects_made(actor)
        stats["vmas"] = stats.get("vmas", 0) + count
        stats["mapped"] = stats.get("mapped", 0) + mapped
        stats["bytes"] = stats.get("bytes", 0) + int(result.get("bytes", 0))
        stats["fill_s"] = stats.get("fill_s", 0.0) + float(result.get("fill_s", 0.0))
        self.result.outcomes.append(StepOutcome(index, step, "done",
                                                f"{mapped} of {count} VMAs mapped"))
        return None

    def _fill_pages(self, index: int, step: Step) -> None:
        """Done by the process's map_vmas job: its outcome is that VMA's (once collected)."""
        self._fills.append((index, step))

    def _finish_memory(self) -> None:
        from criu_model.restore import memory

        for actor in list(self._pending):
            self._collect(actor)
        self._vm_memory()
        self._seal_late()
        fills, self._fills = self._fills, []
        for index, step in fills:
            got = self.result.vmas.get((step.actor, int(step.args["start"])))
            if got is None:
                self._skip(index, step, "its VMA was not mapped (no map_vmas step ran)")
                continue
            status, detail = got
            if status == memory.DONE:
                self.result.outcomes.append(StepOutcome(index, step, "done"))
            elif status == memory.FAILED:
                self.result.outcomes.append(StepOutcome(index, step, "failed", detail))
            else:
                self._skip(index, step, detail)

    def _vm_memory(self) -> None:
        """A CLONE_VM child's VMAs are its creator's (one address space): each takes the
        outcome its creator's job had at the same address."""
        from criu_model.restore import memory

        vmas = self.result.vmas
        for index, step in self._vm_maps:
            actor = step.actor
            creator = self._via[actor]
            mm = self.snap.memory_by_pid.get(actor)
            for vma in mm.vmas if mm else ():
                vmas[(actor, vma.start)] = vmas.get(
                    (creator, vma.start),
                    (memory.NOT_REHEARSED, f"not mapped by its creator {creator}, whose "
                                           "address space it shares (CLONE_VM)"))
            self.result.outcomes.append(StepOutcome(
                index, step, "done", f"the address space of its creator {creator} "
                                     "(CLONE_VM): mapped there"))
        self._vm_maps = []

    def _record(self, index: int, step: Step, reply: dict[str, Any]) -> None:
        if reply.get("ok"):
            self.result.outcomes.append(StepOutcome(index, step, "done"))
        else:
            self.result.outcomes.append(StepOutcome(index, step, "failed",
                                                    str(reply.get("error")),
                                                    int(reply.get("errno", 0))))

    def _ask(self, actor: int, cmd: dict[str, Any], what: str,
             fds: list[int] | None = None) -> tuple[dict[str, Any], list[int]]:
        """One command, after every queued step (plan order is kept)."""
        self._flush()
        return self._exchange(actor, cmd, what, fds)

    def _exchange(self, actor: int, cmd: dict[str, Any], what: str,
                  fds: list[int] | None = None) -> tuple[dict[str, Any], list[int]]:
        owner = self._via.get(actor, actor)   # a CLONE_VM child's channel is its creator's
        if owner in self._pending:
            self._collect(owner)
        sock = self.channels[actor]
        socket.send_fds(sock, [json.dumps(cmd).encode()], fds or [])
        return receive(sock, what, who=f"actor {actor}")

    # ------------------------------------------------------------ parking

    def park(self, keep: bool) -> None:
        """Every live worker closes its control socket and sleeps; the init last."""
        if self._root_fd >= 0:
            os.close(self._root_fd)
            self._root_fd = -1
        for child in self._via:              # parked by their creator's worker
            self.channels.pop(child, None)
        order = [k for k in self.channels if k != NEW_NS_INIT] + [NEW_NS_INIT]
        for actor in order:
            sock = self.channels.get(actor)
            if sock is None:
                continue
            cmd = {"op": "park", "keep": keep and actor == NEW_NS_INIT}
            self._ask(actor, cmd, "parking")
            sock.settimeout(5.0)
            try:
                while socket.recv_fds(sock, MAX_MESSAGE, 4)[0]:
                    pass   # EOF: its control socket is closed, the fd table is final
            finally:
                sock.settimeout(None)
            if actor != NEW_NS_INIT:
                sock.close()
            del self.channels[actor]
