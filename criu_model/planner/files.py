"""Shared-file plan: one opener per open file description, inheritance first.

Every file is first opened at a *service fd* (SERVICE_FD_BASE + its index),
above every fd number any process needs, and travels there: inherited through
fork from the process that opened it, or sent over a unix socket
(SCM_RIGHTS). At the end each fd table moves its files to the dumped numbers
with dup2(service, fd) and closes all service fds; since service fds never
collide with a dumped fd number, no dup2 clobbers an fd still needed.
The opener of a file is the lowest common creation ancestor of its holders
(so every holder inherits it), unless that is the restorer or a helper: then
the first holder opens it and the holders outside its subtree receive it.
A file only one fd table holds is opened last, straight at its fd number,
so no child inherits (and has to close) it.
"""

from __future__ import annotations

import os
import re
import socket
import stat
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from criu_model.images.pb import files_pb2, sockets_pb2
from criu_model.kernel.devnum import decode_dev
from criu_model.names import SOCKET_STATES, fd_kind_name, unix_name
from criu_model.planner.model import RESTORER, Action, CloneFlag, Plan, Severity
from criu_model.planner.recipes import common_state, fd_recipe, lock_args
from criu_model.planner.sessions import NEW_NS_INIT, Builder
from criu_model.planner.ttys import is_pty, tty_device, tty_name
from criu_model.snapshot import Snapshot

PROC_FD_PATH = re.compile(r"^/proc/(\d+|self)/(fd|fdinfo)/(\d+)$")
SERVICE_FD_BASE = 1 << 20   # above every dumped fd number (checked), below NR_OPEN
TCP_ESTABLISHED = 1
TCP_SYN_SENT = 2
TCP_LISTEN = 10
# After a FIN was sent or received (FIN-WAIT-1/2, CLOSE-WAIT, LAST-ACK, CLOSING): a
# repaired connection, then shutdown() replays the FIN(s), as CRIU restores them.
TCP_HALF_CLOSED = frozenset({4, 5, 8, 9, 11})
AF_UNIX_STREAM = 1
O_CLOEXEC = 0o2000000  # f_flags bit in fdinfo (asm-generic/fcntl.h)


# A deleted file that has no contents to capture, by st_mode type: how it is made again.
NODE_KINDS = {stat.S_IFDIR: "directory", stat.S_IFCHR: "character device",
              stat.S_IFBLK: "block device", stat.S_IFLNK: "symlink", stat.S_IFIFO: "fifo",
              stat.S_IFSOCK: "socket file"}
NODE_MAKERS = {"directory": "mkdir", "character device": "mknod", "block device": "mknod",
               "symlink": "symlink to its recorded target", "fifo": "mkfifo",
               "socket file": "mknod S_IFSOCK"}


def deleted_node(fd: files_pb2.Fd) -> str | None:
    """The kind of node a deleted non-regular file is ("directory"...), None otherwise."""
    if not fd.deleted or fd.WhichOneof("state") != "file" or not fd.file.mode:
        return None
    return NODE_KINDS.get(stat.S_IFMT(fd.file.mode))


def node_recipe(fd: files_pb2.Fd) -> dict[str, Any]:
    """The step arguments that recreate a deleted node: type, mode, rdev, owner, target."""
    f = fd.file
    recipe: dict[str, Any] = {"node": deleted_node(fd), "mode": stat.S_IMODE(f.mode),
                              "uid": f.uid, "gid": f.gid}
    if stat.S_ISCHR(f.mode) or stat.S_ISBLK(f.mode):
        major, minor = os.major(f.rdev), os.minor(f.rdev)
        recipe["rdev"] = f"{major}:{minor}"
    if f.HasField("link_target"):
        recipe["target"] = f.link_target.decode(errors="replace")
    return recipe


_TCP_CLOSE = 7
_PROBED_FAMILIES = {socket.AF_INET: "inet", socket.AF_INET6: "inet6",
                    socket.AF_NETLINK: "netlink"}
_ANY_ADDRESS = ("", "0.0.0.0", "::")


def unplannable_probe(fd: files_pb2.Fd) -> str:
    """Why a socket sock_diag did not report cannot be recreated ("" when it can).

    Identified by getsockopt (collect/sockprobe.py): unbound or unconnected
    TCP, UDP, ICMP ping, raw and netlink sockets are recreated from the probe.
    """
    if not fd.socket.HasField("probe"):
        reasons = [u.reason for u in fd.unreadable if u.field in ("socket", "socket.probe")]
        return "; ".join(reasons) or "it was not identified"
    probe = fd.socket.probe
    if probe.domain not in _PROBED_FAMILIES:
        try:
            family = socket.AddressFamily(probe.domain).name
        except ValueError:
            family = f"family {probe.domain}"
        return f"a {family} socket (type {probe.type}), which is recreated only from sock_diag"
    if probe.listening or (probe.HasField("tcp_state") and probe.tcp_state != _TCP_CLOSE):
        return f"a TCP socket in state {probe.tcp_state} that sock_diag should have listed"
    return ""


def option_from_history(name: str, value: int) -> bool:
    """Whether a probed option's value is the socket's history, not a setting: TCP_MAXSEG
    reads the path's MSS once a socket has been connected (it reads the user's only
    for a closed or listening socket, and setsockopt refuses more than 32767, the
    kernel's MAX_TCP_WINDOW: ZDTM socket-tcp-close2's 32768 was an EINVAL)."""
    return name == "TCP_MAXSEG" and int(value) > 32767


def probe_option_numbers() -> dict[str, tuple[int, int]]:
    """Probe option name -> (level, optname): the table the dump reads them with."""
    from criu_model.collect import sockprobe

    tables = (sockprobe._SOCKET_INTS, sockprobe._IP_INTS, sockprobe._RAW_INTS,
              sockprobe._IPV6_INTS, sockprobe._TCP_INTS)
    return {name: (level, number) for table in tables for level, number, name in table}


def probe_recipe(probe: files_pb2.SocketProbe, args: dict[str, Any]) -> str:
    """Step arguments and reason for a socket recreated from its getsockopt probe: what
    socket(2) and setsockopt(2) take (the numeric domain; each option as level, number,
    value; SO_LINGER as onoff, linger), and the options no table names (left unset)."""
    numbers = probe_option_numbers()
    args.update(family=_PROBED_FAMILIES[probe.domain], domain=probe.domain, type=probe.type,
                protocol=probe.protocol, options=dict(sorted(probe.options.items())),
                setsockopt=[[*numbers[name], int(value)]
                            for name, value in sorted(probe.options.items())
                            if name in numbers and not option_from_history(name, value)])
    if "SO_LINGER.onoff" in probe.options:
        args["linger"] = [int(probe.options["SO_LINGER.onoff"]),
                          int(probe.options.get("SO_LINGER.linger", 0))]
    unknown = sorted(n for n in probe.options if n not in numbers
                     and not n.startswith("SO_LINGER."))
    if unknown:
        args["unknown_options"] = unknown
    steps = [f"socket({_PROBED_FAMILIES[probe.domain]}, type {probe.type}, protocol "
             f"{probe.protocol})", "setsockopt the recorded options"]
    if probe.bound_device:
        args["bound_device"] = probe.bound_device
        steps.append(f"SO_BINDTODEVICE {probe.bound_device}")
    raw = probe.type == socket.SOCK_RAW and probe.domain != socket.AF_NETLINK
    port = 0 if raw else probe.sport   # a raw socket's "port" is its protocol
    if port or probe.src not in (*_ANY_ADDRESS, "groups 0"):
        args.update(src=probe.src, sport=port)
        steps.append("bind")
    if probe.dst and probe.dst not in _ANY_ADDRESS:
        args.update(dst=probe.dst, dport=probe.dport)
        steps.append("connect")
    return ", ".join(steps) + " (not in sock_diag: identified by getsockopt)"


def file_key(pid: int, fd: files_pb2.Fd) -> int:
    """The file_id, or a per-fd key when the sharing pass could not identify it."""
    return fd.file_id if fd.file_id else -((pid << 24) | fd.fd) - 1


@dataclass
class _File:
    key: int
    fd: files_pb2.Fd
    pid: int
    holders: list[int] = field(default_factory=list)  # table owners, creation order
    group: int = 0                                      # pipe/socketpair: shared creation


class FilePlan:
    """Decides openers, emits opens during creation and the install steps after it."""

    def __init__(self, snap: Snapshot, plan: Plan, creators: dict[int, int]) -> None:
        self.snap = snap
        self.plan = plan
        self.files: dict[int, _File] = {}
        self.wanted: dict[int, list[tuple[int, int]]] = {}   # owner -> [(fd, key)]
        self.needs: dict[int, set[int]] = defaultdict(set)   # owner -> keys needed
        self.service: dict[int, int] = {}
        self.held: dict[int, set[int]] = defaultdict(set)    # actor -> service keys
        self.opens: dict[int, list[int]] = defaultdict(list)  # opener -> file/group keys
        self.owner_of: dict[int, int] = {}
        self._groups: dict[int, list[int]] = {}
        self._ptys: set[int] = set()        # group keys of ptys (the master first)
        self.pty_devices: set[int] = set()  # slave devices of the ptys with a master here
        self.created_ttys: set[int] = set()
        self.host_ttys: dict[int, str] = {}  # device -> path, for ttys the restore opens
        self.private: set[int] = set()
        self._tcp_ends: set[tuple[str, int, str, int]] | None = None
        self._pipes_refilled: set[int] = set()
        self._cwd: dict[int, str] = {}      # actor -> its working directory, once set
        self._dgram_to: set[int] | None = None
        self._targets: set[int] | None = None
        self._listen_ports: Counter[tuple[str, int, int]] | None = None
        self._collect()
        self._choose_openers(creators)

    # ------------------------------------------------------------ analysis

    def _collect(self) -> None:
        tables = self.snap.fds_by_pid
        first_owner: dict[int, int] = {}
        for proc in self.snap.processes:
            if proc.state == "Z" or proc.pid not in tables:
                continue
            share = proc.shares.files
            if share and share in first_owner:
                self.owner_of[proc.pid] = first_owner[share]
                continue
            if share:
                first_owner[share] = proc.pid
            self.owner_of[proc.pid] = proc.pid
            rows = []
            for fd in tables[proc.pid].fds:
                key = file_key(proc.pid, fd)
                rows.append((fd.fd, key))
                entry = self.files.get(key)
                if entry is None:
                    entry = self.files[key] = _File(key, fd, proc.pid)
                if proc.pid not in entry.holders:
                    entry.holders.append(proc.pid)
                self.needs[proc.pid].add(key)
                self._problems(proc.pid, fd)
                if fd.WhichOneof("state") == "epoll":
                    for target in fd.epoll.targets:
                        if target.file_id:
                            self.needs[proc.pid].add(target.file_id)
                if fd.fd >= SERVICE_FD_BASE:
                    self.plan.problem(Severity.BLOCKER, "fd-too-high",
                                      f"fd {fd.fd} of pid {proc.pid} collides with the "
                                      "planner's service fds", pid=proc.pid, fd=fd.fd)
            self.wanted[proc.pid] = rows
        for index, key in enumerate(self.files):
            self.service[key] = SERVICE_FD_BASE + index
        # Both ends of a pipe, or both sockets of a pair, are made by one call.
        by_pipe: dict[int, list[int]] = defaultdict(list)
        by_sock = {s.inode: s for s in self.snap.sockets}
        for key, entry in self.files.items():
            state = entry.fd.WhichOneof("state")
            if state == "pipe" and entry.fd.kind == files_pb2.FD_PIPE:
                by_pipe[entry.fd.pipe.pipe_ino].append(key)
            elif state == "socket":
                sock = by_sock.get(entry.fd.socket.inode)
                if sock is not None and sock.WhichOneof("kind") == "unix" and sock.unix.peer_inode:
                    pair = tuple(sorted((sock.inode, sock.unix.peer_inode)))
                    by_pipe[-hash(pair) & ((1 << 62) - 1) | (1 << 62)].append(key)
        for keys in by_pipe.values():
            is_pipe = self.files[keys[0]].fd.WhichOneof("state") == "pipe"
            if len(keys) == 2 or (is_pipe and len(keys) > 2):
                if is_pipe:   # the pipe() pair first: a read end, then a write end
                    keys.sort(key=lambda k: not self.files[k].fd.pipe.read_end)
                    writer = next((k for k in keys if not self.files[k].fd.pipe.read_end), None)
                    if writer is not None:
                        keys.remove(writer)
                        keys.insert(1, writer)
                self._group(keys)
        self._group_ptys()

    def _group(self, keys: list[int]) -> None:
        self._groups[keys[0]] = keys
        for key in keys:
            self.files[key].group = keys[0]

    def _group_ptys(self) -> None:
        """A pty's master and slave files are made together (the master first)."""
        by_index: dict[int, list[int]] = defaultdict(list)
        for key, entry in self.files.items():
            if entry.fd.WhichOneof("state") != "tty":
                continue
            tty = entry.fd.tty
            if is_pty(tty):
                by_index[tty.index].insert(0 if tty.is_master else len(by_index[tty.index]),
                                           key)
            elif tty_device(tty):
                self.host_ttys[tty_device(tty)] = entry.fd.path.decode(errors="replace")
        for index, keys in by_index.items():
            if self.files[keys[0]].fd.tty.is_master:
                self._group(keys)
                self._ptys.add(keys[0])
                self.pty_devices.add(tty_device(self.files[keys[0]].fd.tty))
                continue
            self.plan.problem(Severity.WARNING, "pty-master-outside",
                              f"/dev/pts/{index} is open in the snapshot but its master is "
                              "not (a terminal outside the dumped tree): the restore opens "
                              "the existing /dev/pts/" + str(index),
                              fix="run the restore from that terminal, or dump its owner too",
                              path=f"/dev/pts/{index}")
            pts = tty_device(self.files[keys[0]].fd.tty)
            self.host_ttys[pts] = tty_name(pts)

    def _problems(self, pid: int, fd: files_pb2.Fd) -> None:
        state = fd.WhichOneof("state")
        where: dict[str, Any] = {"pid": pid, "fd": fd.fd}
        if state in ("io_uring", "unknown"):
            reason = getattr(fd, state).reason or "no way to recreate it"
            self.plan.problem(Severity.BLOCKER, "unrestorable-fd",
                              f"fd {fd.fd} of pid {pid} is {fd_kind_name(fd.kind)}: {reason}",
                              fix="close it before dumping", **where)
        elif state == "socket" and fd.socket.inode not in self.snap.sockets_by_inode \
                and (why := unplannable_probe(fd)):
            self.plan.problem(Severity.BLOCKER, "socket-unidentified",
                              f"fd {fd.fd} of pid {pid} is socket {fd.socket.inode}, which "
                              f"sock_diag did not report: {why}",
                              fix="close it before dumping, or dump where it can be probed",
                              **where)
        elif state == "nsfs" and self._ns_holder(fd) is None:
            self.plan.problem(Severity.BLOCKER, "nsfs-no-holder",
                              f"fd {fd.fd} of pid {pid} holds {fd.nsfs.type} namespace "
                              f"{fd.nsfs.inode}, which no process of the snapshot is in: "
                              "nothing to reopen it from", fix="dump a process of that "
                              "namespace too, or close the fd", **where)
        elif state == "file" and fd.deleted and deleted_node(fd) is not None:
            if stat.S_ISLNK(fd.file.mode) and not fd.file.HasField("link_target"):
                self.plan.problem(Severity.BLOCKER, "deleted-symlink-target",
                                  f"fd {fd.fd} of pid {pid} holds a deleted symlink whose "
                                  "target could not be read: it cannot be recreated",
                                  path=fd.path.decode(errors="replace"), **where)
        elif state == "file" and fd.deleted and not fd.file.ghost.captured:
            self.plan.problem(Severity.BLOCKER, "deleted-not-captured",
                              f"fd {fd.fd} of pid {pid} is a deleted file whose contents "
                              "were not captured", fix="dump again with a larger --ghost-limit",
                              path=fd.path.decode(errors="replace"), **where)
        elif state == "memfd" and not fd.memfd.ghost.captured:
            self.plan.problem(Severity.BLOCKER, "deleted-not-captured",
                              f"memfd fd {fd.fd} of pid {pid}: contents not captured",
                              fix="dump again with a larger --ghost-limit", **where)

    def _ctty_master(self, key: int) -> bool:
        """A pty master whose slave is a session's controlling tty (ZDTM pty03, tty00).

        The leader takes its tty right after its setsid(), from the pty made by
        the master's opener: so the master is opened when its opener is created,
        not late at its fd, even when no other process holds it.
        """
        if key not in self._ptys:
            return False
        dev = tty_device(self.files[key].fd.tty)
        return any(p.tty_nr == dev and p.sid == p.pid and p.state != "Z"
                   for p in self.snap.processes)

    def _ancestors(self, key: int, creators: dict[int, int]) -> list[int]:
        out = [key]
        while key in creators:
            key = creators[key]
            out.append(key)
        return out

    def _choose_openers(self, creators: dict[int, int]) -> None:
        bases = {RESTORER, NEW_NS_INIT}
        needers: dict[int, set[int]] = defaultdict(set)
        for owner, keys_needed in self.needs.items():
            for k in keys_needed:
                needers[k].add(owner)
        done: set[int] = set()
        for key, entry in self.files.items():
            if key in done:
                continue
            keys = self._groups.get(entry.group, [key]) if entry.group else [key]
            done.update(keys)
            holders = [h for k in keys for h in self.files[k].holders]
            paths = [self._ancestors(h, creators) for h in holders]
            common = set(paths[0]).intersection(*map(set, paths[1:]))
            lca = next((a for a in paths[0] if a in common), RESTORER)
            # Helpers run no file code: a helper LCA means the first holder opens.
            opener = lca if lca not in bases and lca in self.snap.by_pid else holders[0]
            # A flock is owned by the process that took it (/proc/locks): when that is
            # an ancestor of every holder, it opens the file and takes the lock, and
            # its children inherit the description (ZDTM file_locks03)
            taker = next((lk.pid for k in keys for lk in self.files[k].fd.locks
                          if lk.type == files_pb2.LOCK_FLOCK and not lk.blocked), None)
            if taker is not None and taker != opener and taker in self.snap.by_pid \
                    and self.snap.by_pid[taker].state not in ("Z", "X") \
                    and all(taker in path for path in paths):
                opener = taker
            # (a socket others connect to is made with the processes, before its clients)
            if len(keys) == 1 and holders == [opener] and needers[key] == {opener} \
                    and not self._ctty_master(keys[0]) and key not in self._connect_targets():
                self.private.add(key)   # opened late, straight at its fd: nobody inherits it
                continue
            self.opens[opener].append(keys[0])
            for k in keys:
                self.files[k].holders = holders if len(keys) > 1 else self.files[k].holders

    # ------------------------------------------------------------ builder hooks

    def attach(self, builder: Builder) -> None:
        builder.on_clone.append(self._on_clone)
        builder.on_created.append(self._on_created)

    def _on_clone(self, creator: int, child: int, flags: int) -> None:
        if creator in self._cwd:      # a fork inherits its creator's working directory
            self._cwd[child] = self._cwd[creator]
        if flags & CloneFlag.FILES:
            self.held[child] = self.held[creator]
        else:
            self.held[child] = set(self.held[creator])

    def _on_created(self, pid: int) -> None:
        self._chdir(pid)
        targets = self._connect_targets()
        # a socket others connect to by name first: bound before its clients connect
        for key in sorted(self.opens.get(pid, []), key=lambda k: k not in targets):
            keys = self._groups.get(key, [key])
            entry = self.files[key]
            if key in self._ptys:
                self._open_pty(pid, keys, [self.service[k] for k in keys])
            elif entry.fd.WhichOneof("state") == "pipe" and len(keys) >= 2 \
                    and not self._one_pair(keys):
                self._open_pipe_set(pid, keys)
            elif len(keys) == 2 and entry.fd.WhichOneof("state") == "socket" \
                    and self._accept_pair(pid, keys):
                pass
            elif len(keys) == 2:
                self._pair_step(pid, keys)
            else:
                self._open(pid, entry)
            self.held[pid].update(keys)

    def _listener_named(self, sock: sockets_pb2.Socket) -> sockets_pb2.Socket | None:
        """The tree's unix listener whose name an accepted socket carries, or None."""
        found = self.snap.unix_listeners.get(sock.unix.name) if sock.unix.name else None
        return found if found is not None and found.inode != sock.inode \
            and found.type == sock.type else None

    def _accept_pair(self, pid: int, keys: list[int]) -> bool:
        """A connection accepted on one of the tree's listeners, both ends in the tree (ZDTM
        sockets00): its server end carries the listener's name, which no socketpair end
        can bind while the listener holds it. Made as it was: a client connect()s to the
        listener and the listener accepts. Only when `pid` holds the listener already."""
        socks = [self.snap.sockets_by_inode.get(self.files[k].fd.socket.inode) for k in keys]
        if None in socks:
            return False
        for server, client in ((0, 1), (1, 0)):
            listener = self._listener_named(socks[server])   # type: ignore[arg-type]
            lkey = next((k for k in self.held[pid] if self.files[k].fd.HasField("socket")
                         and self.files[k].fd.socket.inode == listener.inode), None) \
                if listener is not None else None
            if lkey is None:
                continue
            c_fd, s_fd = self.files[keys[client]].fd, self.files[keys[server]].fd
            target = unix_name(listener)   # type: ignore[arg-type]
            args: dict[str, Any] = {"file": keys[client], "fd": self.service[keys[client]],
                                    "kind": "socket", "flags": c_fd.flags, "pos": 0,
                                    "socket_inode": c_fd.socket.inode, "connect": target,
                                    "listener": listener.inode}   # type: ignore[union-attr]
            if socks[client].unix.name:   # type: ignore[union-attr]
                args["name"] = unix_name(socks[client])   # type: ignore[arg-type]
            bits = [int(s.shutdown) if s.HasField("shutdown") else 0   # type: ignore
                    for s in (socks[client], socks[server])]
            if bits[0] & 1 and not bits[1] & 2:
                # the client's SHUT_RD its peer's SEND does not explain: a shutdown before
                # connect() (after it, the peer would get SEND too: ZDTM sockets03)
                args["shutdown_first"] = 1
                bits[0] &= ~1
            args.update(common_state(c_fd))
            self.plan.add(pid, Action.OPEN, reason=f"the client end of a connection accepted "
                          f"on {target}: socket, connect() to it", **args)
            extra: dict[str, Any] = {"shutdown": bits, "client": self.service[keys[client]]} \
                if any(bits) else {}
            self.plan.add(pid, Action.ACCEPT, listener=self.service[lkey],
                          fd=self.service[keys[server]], file=keys[server], flags=s_fd.flags,
                          reason="its server end: accept() on the listener" + (
                              ", then the ends' shutdown() replayed" if extra else ""),
                          **extra, **common_state(s_fd))
            return True
        return False

    def _chdir(self, pid: int) -> None:
        """The process's working directory, before any of its files: a unix socket bound
        by a relative name (ZDTM sk-unix-rel) binds relative to it."""
        proc = self.snap.by_pid.get(pid)
        if proc is None or not proc.HasField("cwd") or not proc.cwd.path:
            return
        path = proc.cwd.path.decode(errors="replace")
        if proc.cwd.deleted:
            self.plan.problem(Severity.WARNING, "cwd-deleted",
                              f"pid {pid} works in {path}, a directory deleted since: the "
                              "restore leaves it in the restorer's", pid=pid,
                              fix="none: a deleted directory cannot be entered again")
            return
        if self._cwd.get(pid) == path:
            return                   # inherited from its creator, which went there first
        self.plan.add(pid, Action.CHDIR, path=path, reason="its working directory")
        self._cwd[pid] = path

    def _pair_step(self, pid: int, keys: list[int]) -> None:
        """pipe(2) or socketpair(2) making the two files `keys` (with a pipe's queue)."""
        entry = self.files[keys[0]]
        is_pipe = entry.fd.WhichOneof("state") == "pipe"
        extra = self._pipe_queue(entry.fd) if is_pipe else {}
        extra.update(self._pair_ends([self.files[k].fd for k in keys], is_pipe))
        self.plan.add(pid, Action.PIPE if is_pipe else Action.SOCKETPAIR, files=keys,
                      fds=[self.service[k] for k in keys],
                      reason="one call creates both ends" + (
                          f", then its {extra['queued']} queued bytes written back"
                          if "queued" in extra else ""), **extra)

    def _one_pair(self, keys: list[int]) -> bool:
        """Whether a pipe's descriptions are one read end and one write end (one pipe())."""
        return len(keys) == 2 and {self.files[k].fd.pipe.read_end for k in keys} == {True, False}

    def _open_pipe_set(self, pid: int, keys: list[int]) -> None:
        """One pipe held through more open file descriptions than pipe() makes (ZDTM
        pipe01/pipe02: an end opened again through /proc/self/fd): pipe() for the first
        read and write ends (or one end, the other closed), every other description
        opened through /proc/self/fd of one of them, which never blocks on a pipe."""
        entry = self.files[keys[0]]
        if self._one_pair(keys[:2]):
            made = keys[:2]
            self._pair_step(pid, made)
        else:
            made = keys[:1]
            self._open(pid, entry)
        source = self.service[made[0]]
        for key in keys[len(made):]:
            fd = self.files[key].fd
            self.plan.add(pid, Action.OPEN, file=key, fd=self.service[key], kind="pipe",
                          flags=fd.flags, pos=0, reopen=source,
                          path=f"/proc/self/fd/{source}",
                          reason="another open file description of the same pipe: "
                                 "opened again through /proc/self/fd",
                          **common_state(fd))

    def _pair_ends(self, fds: list[files_pb2.Fd], is_pipe: bool) -> dict[str, Any]:
        """What pipe(2)/socketpair(2) and the F_SETFL after it need, per end in files order:
        its flags and (a pipe) which end it is; the pipe's capacity (F_SETPIPE_SZ) or the
        socketpair's type."""
        ends: list[dict[str, Any]] = []
        out: dict[str, Any] = {"ends": ends}
        for fd in fds:
            end: dict[str, Any] = {"flags": fd.flags}
            if is_pipe:
                end["read_end"] = fd.pipe.read_end
                if fd.pipe.HasField("pipe_size"):
                    out.setdefault("pipe_size", fd.pipe.pipe_size)
            ends.append(end)
        if not is_pipe:
            socks = [self.snap.sockets_by_inode.get(fd.socket.inode) for fd in fds]
            sock = socks[0]
            out["type"] = sock.type if sock is not None and sock.type else socket.SOCK_STREAM
            for end, sk in zip(ends, socks, strict=True):
                if sk is not None and sk.HasField("shutdown") and sk.shutdown:
                    end["shutdown"] = sk.shutdown   # replayed: shutdown(2) of each end
        return out

    def _open(self, pid: int, entry: _File, at: int | None = None) -> None:
        fd = entry.fd
        args: dict[str, Any] = {"file": entry.key,
                                "fd": self.service[entry.key] if at is None else at,
                                "kind": fd_kind_name(fd.kind), "flags": fd.flags, "pos": fd.pos}
        if fd.path:
            args["path"] = fd.path.decode(errors="replace")
        action = Action.OPEN
        reason = ""
        state = fd.WhichOneof("state")
        if state == "file" and fd.deleted and (node := deleted_node(fd)) is not None:
            args.update(node_recipe(fd))
            reason = (f"deleted {node}: {NODE_MAKERS[node]} in a scratch directory "
                      f"(mode {stat.S_IMODE(fd.file.mode):o}, owner {fd.file.uid}:"
                      f"{fd.file.gid}), opened with the same flags, then "
                      f"{'rmdir' if node == 'directory' else 'unlink'}")
        elif state == "file" and fd.deleted:
            reason = "deleted file: recreated from its captured contents, then unlinked"
        elif state == "pipe" and fd.kind == files_pb2.FD_FIFO:
            reason = "FIFO: opened O_RDWR first so the open does not block, then reopened"
        elif state == "pipe":
            reason = "the other end is not in the snapshot: pipe(), the unused end closed"
        elif state == "socket":
            sock = self.snap.sockets_by_inode.get(fd.socket.inode)
            if sock is not None:
                args["socket_inode"] = sock.inode
                action, reason = self._socket(sock, args)
            elif fd.socket.HasField("probe") and not unplannable_probe(fd):
                reason = probe_recipe(fd.socket.probe, args)
        elif state == "epoll":
            reason = "epoll_create1; targets are added once they exist"
        elif state == "nsfs":
            holder = self._ns_holder(fd)
            if holder is not None:
                args["path"] = f"/proc/{holder[0]}/ns/{holder[1]}"
                args.update(ns=fd.nsfs.type, holder=holder[0])
                reason = "a namespace file: reopened from a process of that namespace"
        elif state == "tty":
            if entry.key in self._ptys:
                self._open_pty(pid, [entry.key], [args["fd"]])
                return
            if tty_device(fd.tty):
                args["tty"] = tty_device(fd.tty)
            reason = "opened by path, O_NOCTTY (the controlling tty is set apart)"
        elif (recipe := fd_recipe(fd)) is not None:
            args.update(recipe[0])
            reason = recipe[1]
        if state == "pipe" and fd.pipe.HasField("pipe_size"):
            args["pipe_size"] = fd.pipe.pipe_size     # F_GETPIPE_SZ: set again
        if state == "pipe" and (queue := self._pipe_queue(fd)):
            args.update(queue)
            reason += f"; its {queue['queued']} queued bytes written back first"
        args.update(common_state(fd))
        self.plan.add(pid, action, reason=reason, **args)

    def _open_pty(self, pid: int, keys: list[int], fds: list[int]) -> None:
        master = self.files[keys[0]].fd
        dev = tty_device(master.tty)
        self.created_ttys.add(dev)
        self.plan.add(pid, Action.OPEN_PTY, index=master.tty.index, tty=dev,
                      files=keys, fds=fds, flags=[self.files[k].fd.flags for k in keys],
                      reason=f"open /dev/ptmx until TIOCGPTN gives {master.tty.index} (the "
                             "others closed), TIOCSPTLCK 0, then "
                             f"{tty_name(dev)} O_NOCTTY for each slave file")

    def tty_source(self, pid: int, dev: int) -> dict[str, object] | None:
        """How `pid` reaches tty `dev` now: a held slave fd, a path, or None (not yet made)."""
        for key in self.held[pid]:
            entry = self.files.get(key)
            if entry is not None and entry.fd.WhichOneof("state") == "tty" \
                    and not entry.fd.tty.is_master and tty_device(entry.fd.tty) == dev:
                return {"fd": self.service[key]}
        if dev in self.created_ttys:
            return {"path": tty_name(dev), "host": False}
        if dev in self.pty_devices:
            return None
        major, minor = decode_dev(dev)
        return {"path": self.host_ttys.get(dev, f"/dev/char/{major}:{minor}"), "host": True}

    def _ns_holder(self, fd: files_pb2.Fd) -> tuple[int, str] | None:
        """(pid, /proc/PID/ns entry) of a process of the snapshot in fd's namespace."""
        want = (fd.nsfs.type, fd.nsfs.inode)
        for proc in self.snap.processes:
            if proc.state in ("Z", "X"):
                continue
            for ns in proc.namespaces:
                kind = ns.type.removesuffix("_for_children")
                if (kind, ns.inode) == want:
                    return proc.pid, ns.type
        return None

    def _pipe_queue(self, fd: files_pb2.Fd) -> dict[str, int]:
        """{"queued": N} when the dump captured the N bytes queued in fd's pipe, else {}.

        The bytes are on one fd of the pipe (the first reader in dump order);
        the step that makes the pipe writes them back before anyone reads.
        """
        if fd.pipe.pipe_ino in self._pipes_refilled:
            return {}  # once: a FIFO may be opened twice
        self._pipes_refilled.add(fd.pipe.pipe_ino)
        n = len(self.snap.pipe_data.get(fd.pipe.pipe_ino, b""))
        return {"queued": n} if n else {}

    def check_pending_connects(self) -> None:
        """A waiting client connects after its listener listens, or the plan says why not."""
        listening: dict[int, int] = {}
        for index, step in enumerate(self.plan.steps):
            if step.action is not Action.OPEN or step.args.get("kind") != "socket":
                continue
            if "listener" not in step.args:
                if step.args.get("socket_inode"):
                    listening.setdefault(int(step.args["socket_inode"]), index)
                continue
            if int(step.args["listener"]) not in listening:
                self.plan.problem(Severity.BLOCKER, "unix-connect-order",
                                  f"pid {step.actor} connects to {step.args['connect']} "
                                  "before the listener is made", pid=step.actor,
                                  fix="not supported yet: the client would have to be "
                                      "created after the listener's holder")

    def _shared_port(self, sock: sockets_pb2.Socket) -> bool:
        """Whether another inet listener of the snapshot is bound to the same address,
        port and protocol (only SO_REUSEPORT on both allows that)."""
        if self._listen_ports is None:   # counted once, not once per listener planned
            self._listen_ports = Counter((s.inet.src, s.inet.sport, s.inet.protocol)
                                         for s in self.snap.sockets
                                         if s.WhichOneof("kind") == "inet"
                                         and s.state == TCP_LISTEN)
        return self._listen_ports[(sock.inet.src, sock.inet.sport, sock.inet.protocol)] > 1

    def _dgram_targets(self) -> set[int]:
        """Inodes of the datagram sockets some socket of the snapshot connects to."""
        if self._dgram_to is None:
            self._dgram_to = {s.unix.peer_inode for s in self.snap.sockets
                              if s.WhichOneof("kind") == "unix" and s.type == socket.SOCK_DGRAM
                              and s.unix.peer_inode and s.unix.peer_inode != s.inode}
        return self._dgram_to

    def _connect_targets(self) -> set[int]:
        """File keys of the sockets others connect to by name (datagram peers, listeners
        with clients waiting): opened before the other files of their opener."""
        if self._targets is None:
            inodes = self._dgram_targets() | {s.inode for s in self.snap.accept_queues.values()}
            for sock in self.snap.sockets:    # listeners whose accepted ends are held
                listener = self._listener_named(sock) if sock.WhichOneof("kind") == "unix" \
                    and sock.state != TCP_LISTEN else None
                if listener is not None:
                    inodes.add(listener.inode)
            self._targets = {k for k, e in self.files.items()
                             if e.fd.HasField("socket") and e.fd.socket.inode in inodes}
        return self._targets

    def _peer_inside(self, sock: sockets_pb2.Socket) -> bool:
        """Whether the other end of a TCP connection is a socket of the snapshot."""
        if self._tcp_ends is None:
            self._tcp_ends = {(s.inet.src, s.inet.sport, s.inet.dst, s.inet.dport)
                              for s in self.snap.sockets if s.WhichOneof("kind") == "inet"}
        i = sock.inet
        return (i.dst, i.dport, i.src, i.sport) in self._tcp_ends

    def _socket(self, sock: sockets_pb2.Socket, args: dict[str, Any]) -> tuple[Action, str]:
        kind = sock.WhichOneof("kind")
        if kind == "inet":
            args.update(src=sock.inet.src, sport=sock.inet.sport, dst=sock.inet.dst,
                        dport=sock.inet.dport, protocol=sock.inet.protocol)
            tcp = sock.inet.protocol == 6
            if sock.HasField("shutdown") and sock.shutdown:
                args["shutdown"] = sock.shutdown   # RCV 1 (SHUT_RD or a FIN in), SEND 2
            if tcp and (sock.state == TCP_ESTABLISHED or sock.state in TCP_HALF_CLOSED) \
                    and not self._peer_inside(sock):
                # As for unix sockets: the other end is not restored with the tree.
                self.plan.problem(Severity.WARNING, "tcp-peer-outside",
                                  f"TCP connection {sock.inet.src}:{sock.inet.sport} -> "
                                  f"{sock.inet.dst}:{sock.inet.dport} has its peer outside "
                                  "the snapshot: the peer must still hold its end (same "
                                  "addresses, sequence numbers) for the repaired connection "
                                  "to carry on", port=sock.inet.sport,
                                  fix="dump the peer's tree too, or expect a reset")
            if tcp and sock.state == TCP_ESTABLISHED:
                return Action.TCP_REPAIR, "established TCP: TCP_REPAIR, sequence numbers " \
                                          "and queues restored, then repair off"
            if tcp and sock.state in TCP_HALF_CLOSED:
                state = SOCKET_STATES[sock.state]
                args["state"] = state
                return Action.TCP_REPAIR, f"half-closed TCP ({state}): TCP_REPAIR as " \
                                          "established, then shutdown() replays the FIN(s)"
            if tcp and sock.state == TCP_SYN_SENT:
                self.plan.problem(Severity.WARNING, "tcp-handshake-restarts",
                                  f"TCP socket {sock.inode} was connecting to {sock.inet.dst}:"
                                  f"{sock.inet.dport} (SYN-SENT): the restore connects again",
                                  port=sock.inet.sport, fix="none needed if the peer is up")
                return Action.OPEN, "socket, bind, connect() again (non-blocking)"
            if sock.state == TCP_LISTEN and self._shared_port(sock):
                # Another listener of the tree on the same address and port: the kernel
                # let both bind only with SO_REUSEPORT on each (ZDTM socket-tcp-reuseport)
                args["reuseport"] = True
                return Action.OPEN, "socket, SO_REUSEPORT (another listener shares its " \
                                    "port), bind, listen"
            if sock.state == TCP_LISTEN:
                return Action.OPEN, "socket, bind, listen"
            if not tcp and sock.state == TCP_ESTABLISHED:
                return Action.OPEN, "socket, bind, connect() (a connected datagram socket: " \
                                    "its default destination)"
            return Action.OPEN, "socket, bind"
        if kind == "unix":
            name = unix_name(sock)  # a path, or "@name" when abstract (as ss prints it)
            if sock.state == TCP_LISTEN:
                if name:
                    args["name"] = name
                gone = [c for c in sock.unix.pending if c not in self.snap.sockets_by_inode]
                if gone:
                    # Connections queued by clients that are not in the snapshot (closed
                    # since, or another tree's: ZDTM sk-unix-listen03): queued again by
                    # clients that close at once, so accept() still returns them.
                    args["orphans"] = len(gone)
                    self.plan.problem(Severity.WARNING, "unix-pending-outside",
                                      f"unix listener {name or sock.inode} has {len(gone)} "
                                      "connection(s) queued by clients outside the snapshot: "
                                      "they are queued again from clients that close at once "
                                      "(accept() returns a socket that reads EOF; what the "
                                      "client sent is not restored)",
                                      fix="dump the clients' trees too")
                    return Action.OPEN, f"unix listener: socket, bind, listen, then " \
                                        f"{len(gone)} connection(s) from clients that close"
                return Action.OPEN, "unix listener: socket, bind, listen"
            listener = self.snap.accept_queues.get(sock.inode)
            if listener is not None:
                # A client that connected and was not accepted yet: its peer is an
                # embryo in the listener's queue, held by no fd. It connects again
                # and waits in the same queue (the listener accepts it when it runs).
                target = unix_name(listener)
                args["connect"] = target
                args["listener"] = listener.inode
                return Action.OPEN, f"unix client waiting in the accept queue of {target}: " \
                                    "socket, connect() again (queued, not accepted)"
            if sock.type == socket.SOCK_DGRAM and sock.unix.peer_inode == sock.inode \
                    and name:
                args["name"] = name       # connected to itself (ZDTM sockets_dgram)
                args["connect_self"] = True
                return Action.OPEN, "unix datagram socket connected to itself: socket, " \
                                    "bind, connect() to its own name"
            peer = self.snap.sockets_by_inode.get(sock.unix.peer_inode) \
                if sock.unix.peer_inode else None
            if sock.type == socket.SOCK_DGRAM and peer is not None and peer.unix.name \
                    and peer.unix.peer_inode != sock.inode:
                # A datagram socket connected to another socket of the tree, which many
                # may connect to (not a pair: ZDTM sockets_dgram): connect() by its name.
                if name:
                    args["name"] = name
                target = unix_name(peer)
                args["connect"] = target
                args["listener"] = peer.inode
                return Action.OPEN, f"unix datagram socket connected to {target}: socket, " \
                                    "bind, connect() once its peer is bound"
            if sock.unix.peer_inode:
                if name and sock.unix.name in self.snap.unix_listeners:
                    # The server end of a connection accepted on one of the tree's own
                    # listeners (socat UNIX-LISTEN:...,fork): its name is the listener's.
                    # Connecting to that name would reach the tree itself.
                    self.plan.problem(Severity.WARNING, "unix-peer-outside",
                                      f"unix socket {sock.inode} was accepted on {name} from a "
                                      "client outside the snapshot: it cannot be recreated "
                                      "(the client has to connect again)",
                                      fix="dump the client's tree too")
                    return Action.OPEN, "accepted unix connection whose client is outside: " \
                                        "an unconnected socket stands in for it"
                if name:
                    args["name"] = name
                self.plan.problem(Severity.WARNING, "unix-peer-outside",
                                  f"unix socket {sock.inode} is connected to a socket outside "
                                  "the snapshot", fix="dump the peer's tree too")
                return Action.OPEN, "connected unix socket whose peer is outside: reconnected " \
                                    "by name if it has one"
            if sock.state == TCP_ESTABLISHED and sock.type == socket.SOCK_DGRAM \
                    and sock.inode in self._dgram_targets():
                # ESTABLISHED because the tree's own clients connected to it: they do so
                # again once it is bound (unix_dgram_connect sets both ends' state).
                if name:
                    args["name"] = name
                return Action.OPEN, "unix datagram socket its clients connect to: socket, bind"
            if sock.state == TCP_ESTABLISHED:
                # Connected, and its peer is gone (closed: the kernel reports no peer inode
                # and both directions shut down). A socketpair whose other end is closed
                # at once is that socket: reads see EOF, writes fail with EPIPE.
                args["peer_closed"] = True
                if name:
                    args["name"] = name
                return Action.OPEN, "connected unix socket whose peer has closed: " \
                                    "socketpair(), the other end closed at once"
            if name:
                args["name"] = name
        return Action.OPEN, ""

    def _names_own_fd(self, owner: int, key: int) -> bool:
        """Whether file `key` is one of `owner`'s own /proc/PID/fd/N or fdinfo/N files."""
        m = PROC_FD_PATH.match(self.files[key].fd.path.decode(errors="replace"))
        return m is not None and m.group(1) in ("self", str(owner))

    def _posix_locks(self, owner: int, rows: list[tuple[int, int]]) -> None:
        """`owner`'s POSIX locks, once its fds are final (Action.LOCK): taken at the open
        they would be dropped by the close of the service fd (ZDTM file_locks00)."""
        done: set[int] = set()
        for fd_number, key in rows:
            fd = self.files[key].fd
            mine = [lk for lk in lock_args(fd, posix=True) if lk["pid"] == owner]
            if not mine or key in done:
                continue
            done.add(key)
            args: dict[str, Any] = {"fd": fd_number, "file": key, "locks": mine,
                                    "kind": fd_kind_name(fd.kind)}
            if fd.path:
                args["path"] = fd.path.decode(errors="replace")
            self.plan.add(owner, Action.LOCK, reason="POSIX locks belong to the process: "
                          "taken once its fds are final (a close would drop them)", **args)

    def _foreign_target(self, owner: int, epfd: int, target: files_pb2.EpollTarget,
                        final: dict[int, int], flags: dict[int, int]) -> None:
        """A watch whose fd number now holds another file, or none (ZDTM epoll01).

        The kernel keys a watch by (file, fd number) and keeps it until the file is
        released, not when the fd is closed or reused, so the number it was added
        with outlives the fd. It is added again under that number: the target's file
        dup'ed there for the call, then the final occupant put back.
        """
        tfd = target.tfd
        occupant = final.get(tfd)
        spare = SERVICE_FD_BASE + len(self.files)   # one past every file's service fd
        if occupant is not None:
            self.plan.add(owner, Action.DUP2, old=tfd, new=spare,
                          reason=f"fd {tfd} set aside while a watch is added under its number")
        self.plan.add(owner, Action.DUP2, old=self.service[target.file_id], new=tfd,
                      reason="the watch's file at the fd number it was added with")
        self.plan.add(owner, Action.EPOLL_ADD, epfd=epfd, tfd=tfd, events=target.events,
                      data=target.data, reason="a watch that outlived its fd number")
        if occupant is None:
            self.plan.add(owner, Action.CLOSE, fd=tfd)
            return
        cloexec = {"cloexec": True} if flags.get(tfd, 0) & O_CLOEXEC else {}
        self.plan.add(owner, Action.DUP2, old=spare, new=tfd, reason=f"fd {tfd} back",
                      **cloexec)
        self.plan.add(owner, Action.CLOSE, fd=spare)

    # ------------------------------------------------------------ after creation

    def transfers(self) -> None:
        """SCM_RIGHTS for every holder that did not inherit a file it needs."""
        for owner, needed in self.needs.items():
            have = self.held[owner]
            for key in sorted(needed - have, key=lambda k: self.service.get(k, 0)):
                if key not in self.service or key in self.private:
                    continue
                source = next((a for a in self.plan.processes if key in self.held.get(a, ())
                               and a in self.wanted), None)
                if source is None:
                    source = next((a for a, h in self.held.items() if key in h), None)
                if source is None:
                    self.plan.problem(Severity.BLOCKER, "unplannable",
                                      f"file {key} needed by pid {owner} is never opened "
                                      "(its opener could not be created)", pid=owner)
                    continue
                self.plan.add(source, Action.SEND_FD, fd=self.service[key], to=owner,
                              to_fd=self.service[key], file=key,
                              reason="SCM_RIGHTS: not inherited through fork")
                have.add(key)
                self.plan.transfers += 1
        self.plan.inherited = sum(len(n) for n in self.needs.values()) - self.plan.transfers

    def check_pidfds(self) -> None:
        """A pidfd is opened after the process it refers to is created (or says why not)."""
        created: dict[int, int] = {}
        for index, step in enumerate(self.plan.steps):
            if step.action in (Action.CLONE, Action.LAST_PID_CLONE):
                created.setdefault(step.args["child"], index)
            elif step.action is Action.OPEN and step.args.get("kind") == "pidfd":
                target = step.args.get("target", -1)
                if target < 0:
                    continue
                if target not in self.snap.by_pid:
                    self.plan.problem(Severity.WARNING, "pidfd-target-outside",
                                      f"a pidfd of pid {step.actor} refers to pid {target}, "
                                      "which is not in the snapshot: after the restore it "
                                      "refers to whatever process has that pid, if any",
                                      pid=step.actor)
                elif created.get(target, len(self.plan.steps)) > index:
                    self.plan.problem(Severity.BLOCKER, "pidfd-order",
                                      f"pid {step.actor} opens a pidfd of {target} before "
                                      f"{target} is created", pid=step.actor,
                                      fix="not supported yet: the pidfd would have to be "
                                          "sent once its target exists")

    def install(self) -> None:
        """dup2 to the dumped numbers, add epoll targets, close every service fd."""
        tables = self.snap.fds_by_pid
        for owner, rows in self.wanted.items():
            flags = {f.fd: f.flags for f in tables[owner].fds} if owner in tables else {}
            opened_at: dict[int, int] = {}
            # /proc/self/fd/N and /proc/self/fdinfo/N name one of its own fds: opened last,
            # once every other fd is at its number (ZDTM fanotify00 reads an fdinfo)
            targets = self._connect_targets()
            ordered = sorted(rows, key=lambda row: (
                row[1] in self.private and self._names_own_fd(owner, row[1]),
                row[1] not in targets))
            for fd, key in ordered:
                # dup2 clears FD_CLOEXEC: the step says when it must be set again
                # (dup3(O_CLOEXEC)); a rehearsal showed every moved fd losing it.
                cloexec = {"cloexec": True} if flags.get(fd, 0) & O_CLOEXEC else {}
                if key in self.private and key not in opened_at:
                    self._open(owner, self.files[key], at=fd)
                    opened_at[key] = fd
                elif key in self.private:
                    # One open file description at several fds of one process (a
                    # program started with `>log 2>&1`): opened once, dup'ed for the
                    # others, or the restored writes would overwrite each other.
                    self.plan.add(owner, Action.DUP2, old=opened_at[key], new=fd,
                                  reason=f"shares one open file description with fd "
                                         f"{opened_at[key]}", **cloexec)
                else:
                    self.plan.add(owner, Action.DUP2, old=self.service[key], new=fd, **cloexec)
            final = dict(rows)
            for fd, key in rows:
                entry = self.files[key]
                if entry.fd.WhichOneof("state") != "epoll" or entry.pid != owner:
                    continue
                for target in entry.fd.epoll.targets:
                    if not target.file_id or target.file_id not in self.service:
                        continue
                    if final.get(target.tfd) == target.file_id:
                        self.plan.add(owner, Action.EPOLL_ADD, epfd=fd, tfd=target.tfd,
                                      events=target.events, data=target.data,
                                      reason="the target exists now")
                    else:
                        self._foreign_target(owner, fd, target, final, flags)
            for key in sorted(self.held[owner], key=self.service.__getitem__):
                self.plan.add(owner, Action.CLOSE, fd=self.service[key])
            self.held[owner].clear()
            self._posix_locks(owner, rows)
