"""The judge: the kernel's word on a rehearsal.

The parked sandbox is dumped with criu-model's own collector and held against
the snapshot, object by object: every process (pids at every level below the
sandbox's, parent, group, session, zombie and exit status, thread count),
every fd (number, kind, flags, position, path), every set of fds that share
one open file description, and every pipe and socketpair link. Each object
is matched, mismatched (both values given) or not rehearsed (the reason).
The sandbox's own level is cut off: its ns_pids are [here, sandbox, inner...]
and the snapshot's are [outermost, inner...], so ``sandbox[1:] == snapshot``.
"""

from __future__ import annotations

import os
import socket
import stat
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from criu_model.images.pb import files_pb2, process_pb2, sockets_pb2
from criu_model.names import fd_kind_name, printable
from criu_model.planner.files import deleted_node, option_from_history
from criu_model.planner.model import Action
from criu_model.restore.executor import Execution
from criu_model.snapshot import Snapshot, namespace_inode

NS_TYPES = ("user", "mnt", "uts", "ipc", "net", "pid", "cgroup", "time")

MATCHED, MISMATCHED, NOT_REHEARSED = "matched", "mismatched", "not_rehearsed"
OUTSIDE = "outside"     # a parent that is not in the snapshot (the sandbox's init or helper)
# f_flags the judge compares: what a restore must reproduce (O_LARGEFILE is the kernel's).
FLAG_NAMES: tuple[tuple[int, str], ...] = (
    (os.O_APPEND, "O_APPEND"), (os.O_NONBLOCK, "O_NONBLOCK"), (0o2000000, "O_CLOEXEC"),
    (getattr(os, "O_DIRECT", 0o40000), "O_DIRECT"), (getattr(os, "O_NOATIME", 0o1000000),
                                                      "O_NOATIME"),
    (getattr(os, "O_PATH", 0o10000000), "O_PATH"), (os.O_SYNC, "O_SYNC"),
)
_ACC = {0: "O_RDONLY", 1: "O_WRONLY", 2: "O_RDWR", 3: "O_ACCMODE"}
_FLAG_MASK = 3
for _bit, _name in FLAG_NAMES:
    _FLAG_MASK |= _bit


def flags_text(flags: int) -> str:
    """O_WRONLY|O_APPEND|O_CLOEXEC: only the bits the judge compares."""
    return "|".join([_ACC[flags & 3]] + [n for b, n in FLAG_NAMES if flags & b == b])


@dataclass
class Entry:
    """One object of the report."""

    kind: str                     # process, fd, shared_file, pipe, socketpair, vma, step
    id: str
    status: str
    mismatches: list[dict[str, Any]] = field(default_factory=list)  # field, expected, actual
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "id": self.id, "status": self.status}
        if self.mismatches:
            out["mismatches"] = self.mismatches
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass
class RehearsalReport:
    entries: list[Entry] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)   # phase -> seconds
    sandbox_pid: int | None = None                              # the init, here
    sandbox_pidns: int = 0                                      # its pid namespace inode
    kept: bool = False
    feasible: bool = True                                       # the plan's verdict
    memory: dict[str, Any] = field(default_factory=dict)        # memory steps' totals

    def count(self, status: str) -> int:
        return sum(1 for e in self.entries if e.status == status)

    @property
    def ok(self) -> bool:
        """Everything rehearsed matched."""
        return self.count(MISMATCHED) == 0

    def summary(self) -> dict[str, int]:
        return {MATCHED: self.count(MATCHED), MISMATCHED: self.count(MISMATCHED),
                NOT_REHEARSED: self.count(NOT_REHEARSED)}

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok, "feasible": self.feasible,
                               "summary": self.summary(),
                               "timings_ms": {k: round(v * 1000, 2)
                                              for k, v in self.timings.items()},
                               "entries": [e.to_json() for e in self.entries]}
        if self.memory:
            out["memory"] = self.memory
        if self.kept:
            out["sandbox_pid"] = self.sandbox_pid
        return out


def _entry(kind: str, ident: str, pairs: list[tuple[str, Any, Any]]) -> Entry:
    bad = [{"field": f, "expected": e, "actual": a} for f, e, a in pairs if e != a]
    return Entry(kind, ident, MISMATCHED if bad else MATCHED, bad)


class Judge:
    """Compares the snapshot with the dump of the parked sandbox."""

    def __init__(self, snap: Snapshot, sandbox: Snapshot, execution: Execution) -> None:
        self.snap = snap
        self.box = sandbox
        self.ex = execution
        self.entries: list[Entry] = []
        # sandbox pid here -> the snapshot's outermost pid (its key), for processes below
        # the sandbox init
        self.key_of: dict[int, int] = {}
        self.box_by_key: dict[int, process_pb2.Process] = {}
        for proc in sandbox.processes:
            if len(proc.ns_pids) > 1:
                self.key_of[proc.pid] = proc.ns_pids[1]
        wanted = {tuple(p.ns_pids): p.pid for p in snap.processes}
        for proc in sandbox.processes:
            key = wanted.get(tuple(proc.ns_pids[1:]))
            if key is not None:
                self.box_by_key[key] = proc

    def judge(self) -> list[Entry]:
        for proc in self.snap.processes:
            self._process(proc)
        self._extra_processes()
        self._fds()
        self._groups("shared_file", self._file_group, "fds sharing one open file description")
        self._groups("pipe", self._pipe_group, "ends of one pipe")
        self._pipe_buffers()
        self._probe_queues()
        self._locks()
        self._groups("socketpair", self._pair_group, "connected unix sockets")
        self._socket_peers()
        self._namespaces()
        self._task_shares()
        self._memory()
        self._steps()
        return self.entries

    # ------------------------------------------------------------ processes

    def _parent(self, proc: process_pb2.Process, keys: dict[int, Any]) -> Any:
        return proc.ppid if proc.ppid in keys else OUTSIDE

    def _process(self, proc: process_pb2.Process) -> None:
        ident = f"{proc.pid}"
        box = self.box_by_key.get(proc.pid)
        if box is None:
            why = self.ex.missing_procs.get(proc.pid)
            if why:
                self.entries.append(Entry("process", ident, NOT_REHEARSED, reason=why))
            else:
                self.entries.append(Entry("process", ident, MISMATCHED, [
                    {"field": "pids", "expected": list(proc.ns_pids), "actual": None}],
                    reason="no sandbox process has these pids"))
            return
        box_parent = self.key_of.get(box.ppid)
        expected_parent = proc.ppid if proc.ppid in self.snap.by_pid else OUTSIDE
        actual_parent = box_parent if box_parent in self.snap.by_pid and \
            self.box_by_key.get(box_parent) is not None and \
            self.box_by_key[box_parent].pid == box.ppid else OUTSIDE
        zombie = proc.state == "Z"
        pairs: list[tuple[str, Any, Any]] = [
            ("pids", list(proc.ns_pids), list(box.ns_pids[1:])),
            ("ppid", expected_parent, actual_parent),
            ("pgid", list(proc.ns_pgids), list(box.ns_pgids[1:])),
            ("sid", list(proc.ns_sids), list(box.ns_sids[1:])),
            ("zombie", zombie, box.state == "Z"),
        ]
        untouched = self._host_ctty.get(proc.pid, "")
        if not zombie:
            if not untouched:
                pairs.append(("tty_nr", proc.tty_nr, box.tty_nr))
            if proc.cwd.path and not proc.cwd.deleted:
                pairs.append(("cwd", printable(proc.cwd.path), printable(box.cwd.path)))
            if proc.HasField("tpgid") and not untouched:   # format 1.1 and later
                pairs.append(("tpgid", proc.tpgid, self._inner_tpgid(box)))
        if zombie:
            pairs.append(("exit_code", proc.exit_code, box.exit_code))
        else:
            pairs.append(("threads", len(proc.threads), len(box.threads)))
        note = self.ex.thread_note.get(proc.pid)
        if not zombie and not note:
            pairs.append(("thread_tids", sorted(list(t.ns_tids) for t in proc.threads),
                          sorted(list(t.ns_tids[1:]) for t in box.threads)))
        entry = _entry("process", ident, pairs)
        if note and len(proc.threads) > 1:
            entry.reason = note
        if untouched:    # a host tty (ZDTM vt): tty_nr and tpgid not compared
            entry.reason = "; ".join(filter(None, [entry.reason, f"its controlling tty is "
                                                   f"not set: {untouched}"]))
        self.entries.append(entry)

    def _ns_pair(self, want: files_pb2.Fd, got: files_pb2.Fd) -> tuple[str, str]:
        """A namespace file as `TYPE of PID`: the first process of the tree in it (its
        snapshot pid); in the sandbox, the same if the fd is that process's namespace
        there, else its inode."""
        kind = want.nsfs.type
        holder = next((p.pid for p in self.snap.processes if p.state not in ("Z", "X")
                       and any((ns.type.removesuffix("_for_children"), ns.inode)
                               == (kind, want.nsfs.inode) for ns in p.namespaces)), None)
        expected = f"{kind} of {holder}" if holder is not None else f"{kind}:[{want.nsfs.inode}]"
        if not got.HasField("nsfs"):
            return expected, "-"
        box = self.box_by_key.get(holder) if holder is not None else None
        there = {ns.inode for ns in box.namespaces
                 if ns.type.removesuffix("_for_children") == kind} if box is not None else set()
        return expected, (expected if got.nsfs.inode in there and holder is not None
                          else f"{got.nsfs.type}:[{got.nsfs.inode}]")

    @cached_property
    def _host_ctty(self) -> dict[int, str]:
        """Processes whose controlling-tty step was not rehearsed (the host's tty), and
        why: their tty_nr and tpgid cannot be the snapshot's."""
        return {o.step.actor: o.detail for o in self.ex.outcomes
                if o.step.action is Action.SET_CTTY and o.status == "not_rehearsed"}

    def _inner_tpgid(self, box: process_pb2.Process) -> int | None:
        """The sandbox's tpgid (a pid here) as the snapshot numbers it."""
        if not box.HasField("tpgid"):
            return None
        if box.tpgid <= 0:
            return box.tpgid
        return self.key_of.get(box.tpgid, box.tpgid)

    def _extra_processes(self) -> None:
        matched = {p.pid for p in self.box_by_key.values()}
        for proc in self.box.processes:
            if proc.pid in matched or list(proc.ns_pids[1:]) == [1]:
                continue   # the sandbox init (pid 1 there) is the plan's helper -1
            self.entries.append(Entry("process", f"sandbox:{list(proc.ns_pids[1:])}",
                                      MISMATCHED, [{"field": "pids", "expected": None,
                                                    "actual": list(proc.ns_pids[1:])}],
                                      reason="a process the snapshot does not have (a helper "
                                             "that never exited?)"))

    # ------------------------------------------------------------ fds

    def _live_tables(self) -> Iterator[files_pb2.FdTable]:
        """The snapshot's fd tables of processes that are not zombies (whose fds a
        sandbox process holds again)."""
        for table in self.snap.fds:
            proc = self.snap.by_pid.get(table.pid)
            if proc is not None and proc.state != "Z":
                yield table

    def _box_fds(self, key: int) -> dict[int, files_pb2.Fd]:
        box = self.box_by_key.get(key)
        if box is None:
            return {}
        table = self.box.fds_by_pid.get(box.pid)
        return {fd.fd: fd for fd in table.fds} if table is not None else {}

    def _fds(self) -> None:
        for table in self._live_tables():
            box_proc = self.box_by_key.get(table.pid)
            got = self._box_fds(table.pid)
            for fd in table.fds:
                ident = f"{table.pid}:{fd.fd}"
                why = self.ex.missing_fds.get((table.pid, fd.fd))
                if box_proc is None:
                    why = why or self.ex.missing_procs.get(table.pid)
                    if why:
                        self.entries.append(Entry("fd", ident, NOT_REHEARSED, reason=why))
                    else:
                        self.entries.append(Entry("fd", ident, MISMATCHED, [
                            {"field": "fd", "expected": fd.fd, "actual": None}],
                            reason="its process is missing from the sandbox"))
                    continue
                if why:
                    self.entries.append(Entry("fd", ident, NOT_REHEARSED, reason=why))
                    continue
                self.entries.append(self._fd(ident, fd, got.get(fd.fd), table.fds,
                                             list(got.values())))
            for number in sorted(set(got) - {fd.fd for fd in table.fds}):
                self.entries.append(Entry("fd", f"{table.pid}:{number}", MISMATCHED, [
                    {"field": "fd", "expected": None, "actual": number}],
                    reason=f"an fd the snapshot does not have ({fd_kind_name(got[number].kind)})"))

    def _fd(self, ident: str, want: files_pb2.Fd, got: files_pb2.Fd | None,
            want_table: Iterable[files_pb2.Fd] = (),
            got_table: Iterable[files_pb2.Fd] = ()) -> Entry:
        if got is None:
            return Entry("fd", ident, MISMATCHED, [{"field": "fd", "expected": want.fd,
                                                    "actual": None}])
        pairs: list[tuple[str, Any, Any]] = [
            ("kind", fd_kind_name(want.kind), fd_kind_name(got.kind)),
            ("flags", flags_text(want.flags & _FLAG_MASK), flags_text(got.flags & _FLAG_MASK)),
        ]
        state = want.WhichOneof("state")
        if state == "file" and want.kind == files_pb2.FD_REGULAR:
            pairs.append(("pos", want.pos, got.pos))
        if state == "file":
            pairs.append(("path", printable(want.path), printable(got.path)))
            pairs.append(("deleted", want.deleted, got.deleted))
        if state == "file" and deleted_node(want) is not None:
            pairs.extend(_node_pairs(want, got))
        if state == "file" and want.kind == files_pb2.FD_REGULAR and not want.file.rdev:
            pairs.append(("size", want.file.size, got.file.size if got.HasField("file")
                          else None))
        if state == "pipe":
            pairs.append(("pipe_end", _pipe_end(want), _pipe_end(got)))
            if want.kind == files_pb2.FD_FIFO:     # its node: at its path, or deleted
                pairs.append(("path", printable(want.path), printable(got.path)))
                pairs.append(("deleted", want.deleted, got.deleted))
        if state == "socket":
            pairs.extend(self._socket_pairs(want, got))
        if state == "epoll":
            pairs.append(("epoll_targets", _targets(want, want_table),
                          _targets(got, got_table)))
        if state == "nsfs":    # which namespace: the one a process of the tree is in
            pairs.append(("namespace", *self._ns_pair(want, got)))
        if state == "pidfd":   # whose: a process of the tree (by its snapshot pid), or -1
            got_pid = got.pidfd.pid if got.HasField("pidfd") else None
            pairs.append(("pidfd_target", want.pidfd.pid,
                          self.key_of.get(got_pid, f"sandbox pid {got_pid}")
                          if got_pid is not None and got_pid > 0 else got_pid))
        if state == "signalfd":
            pairs.append(("sigmask", want.signalfd.sigmask,
                          got.signalfd.sigmask if got.HasField("signalfd") else None))
        if state == "timerfd":
            pairs.append(("clockid", want.timerfd.clockid,
                          got.timerfd.clockid if got.HasField("timerfd") else None))
        if state == "memfd":
            pairs.append(("path", printable(want.path), printable(got.path)))
            g = got.memfd if got.HasField("memfd") else None
            if want.memfd.HasField("seals"):
                pairs.append(("seals", _seals(want.memfd.seals),
                              _seals(g.seals) if g is not None and g.HasField("seals")
                              else None))
            if not want.memfd.hugetlb:    # (hugetlbfs takes no write(2): not written back)
                pairs.extend(self._contents(want.memfd.ghost,
                                            g.ghost if g is not None else None))
        if state == "file" and want.deleted and want.kind == files_pb2.FD_REGULAR:
            pairs.extend(self._contents(want.file.ghost, got.file.ghost
                                        if got.HasField("file") else None))
        if state == "inotify":
            pairs.append(("inotify_watches", _watches(want), _watches(got)))
        if state == "eventfd":
            pairs.append(("eventfd_count", want.eventfd.count,
                          got.eventfd.count if got.HasField("eventfd") else None))
        entry = _entry("fd", ident, pairs)
        if state == "memfd" and want.memfd.hugetlb and want.memfd.ghost.captured:
            entry.reason = "its contents are not rehearsed: a hugetlbfs memfd takes no " \
                           "write(2) (they would go through a mapping of huge pages)"
        return entry

    def _contents(self, want: files_pb2.GhostRef, got: files_pb2.GhostRef | None
                  ) -> list[tuple[str, Any, Any]]:
        """A memfd's or deleted file's captured bytes against the sandbox's own capture
        (its dump reads them the same way): compared when the snapshot holds them."""
        mine = self.snap.ghosts_by_id.get(want.ghost_id) if want.captured else None
        if mine is None or not mine.captured:
            return []
        theirs = self.box.ghosts_by_id.get(got.ghost_id) \
            if got is not None and got.captured else None
        return [("contents", _ghost_digest(mine),
                 _ghost_digest(theirs) if theirs is not None and theirs.captured else None)]

    def _socket_pairs(self, want: files_pb2.Fd, got: files_pb2.Fd) -> list[tuple[str, Any,
                                                                                  Any]]:
        a = self.snap.sockets_by_inode.get(want.socket.inode)
        b = self.box.sockets_by_inode.get(got.socket.inode) if got.HasField("socket") else None
        if a is None and want.socket.HasField("probe"):
            return _probe_pairs(want.socket.probe, got.socket.probe
                                if got.HasField("socket") and got.socket.HasField("probe")
                                else None)

        def desc(s: Any, snap: Snapshot) -> dict[str, Any] | None:
            if s is None:
                return None
            out: dict[str, Any] = {"family": s.family, "type": s.type, "state": s.state}
            if a is not None and a.HasField("shutdown"):     # SHUT_RD 1 | SHUT_WR 2
                out["shutdown"] = _shutdown(s.shutdown) if s.HasField("shutdown") else None
            if s.WhichOneof("kind") == "unix":
                out["name"] = printable(s.unix.name)
                if s.unix.pending:
                    out["pending"] = len(s.unix.pending)     # connections not accepted yet
                listener = snap.accept_queues.get(s.inode)
                if listener is not None:
                    out["peer"] = f"waits in the accept queue of {printable(listener.unix.name)}"
            elif s.WhichOneof("kind") == "netlink":
                n = s.netlink
                out.update(protocol=n.protocol, portid=n.portid, groups=sorted(n.groups),
                           flags=n.flags & ~1)      # NDIAG_FLAG_CB_RUNNING: a dump running
                if n.dst_portid or n.dst_group:
                    out["peer"] = f"{n.dst_portid} group {n.dst_group}"
            elif s.WhichOneof("kind") == "inet":
                out["addr"] = f"{s.inet.src}:{s.inet.sport}"
                if s.inet.dport:
                    out["peer"] = f"{s.inet.dst}:{s.inet.dport}"
            return out

        want_desc, got_desc = desc(a, self.snap), desc(b, self.box)
        if a is not None and self._clients_missing(a) and want_desc and got_desc:
            # a datagram socket is ESTABLISHED because its clients connected: one of them
            # was not rehearsed, so its state says nothing (its entry gives the reason)
            want_desc.pop("state", None)
            got_desc.pop("state", None)
        return [("socket", want_desc, got_desc)]

    def _clients_missing(self, sock: sockets_pb2.Socket) -> bool:
        """Whether a unix datagram socket has a client (a socket of the snapshot connected
        to it) that the rehearsal did not make."""
        return sock.WhichOneof("kind") == "unix" and sock.type == socket.SOCK_DGRAM \
            and sock.inode in self._peers_of_missing

    @cached_property
    def _peers_of_missing(self) -> set[int]:
        """Peer inodes of the unix sockets held at fds the rehearsal did not make (one
        pass over the tables, not one per socket judged)."""
        missing = {fd.socket.inode for t in self.snap.fds for fd in t.fds
                   if fd.HasField("socket") and (t.pid, fd.fd) in self.ex.missing_fds}
        return {s.unix.peer_inode for s in self.snap.sockets
                if s.inode in missing and s.WhichOneof("kind") == "unix"
                and s.unix.peer_inode and s.unix.peer_inode != s.inode}

    # ------------------------------------------------------------ links between fds

    def _file_group(self, pid: int, fd: files_pb2.Fd, snap: Snapshot) -> Hashable | None:
        return fd.file_id or None

    def _pipe_group(self, pid: int, fd: files_pb2.Fd, snap: Snapshot) -> Hashable | None:
        return fd.pipe.pipe_ino if fd.kind == files_pb2.FD_PIPE else None

    def _pair_group(self, pid: int, fd: files_pb2.Fd, snap: Snapshot) -> Hashable | None:
        if not fd.HasField("socket"):
            return None
        sock = snap.sockets_by_inode.get(fd.socket.inode)
        if sock is None or sock.WhichOneof("kind") != "unix" or not sock.unix.peer_inode:
            return None
        if sock.inode in snap.accept_queues:
            return None   # its peer is not an fd but an embryo in an accept queue
        peer = snap.sockets_by_inode.get(sock.unix.peer_inode)
        if peer is not None and (peer.unix.peer_inode != sock.inode or peer is sock):
            return None   # not a pair: a datagram socket's peer (_socket_peers)
        return tuple(sorted((sock.inode, sock.unix.peer_inode)))

    def _socket_peers(self) -> None:
        """A unix socket connected to a socket of the tree that is not its pair (datagram
        sockets connect many to one, or to themselves): its peer in the sandbox is the
        socket at the same place (process and fd) as its dumped peer."""
        def places(snap: Snapshot, key_of: Callable[[int], int | None]
                   ) -> dict[int, tuple[int, int]]:
            out: dict[int, tuple[int, int]] = {}
            for table in snap.fds:
                key = key_of(table.pid)
                for fd in table.fds:
                    if key is not None and fd.HasField("socket"):
                        out.setdefault(fd.socket.inode, (key, fd.fd))
            return out

        box_keys = {p.pid: k for k, p in self.box_by_key.items()}
        want_at = places(self.snap, lambda pid: pid)
        got_at = places(self.box, box_keys.get)
        got_sock = {at: self.box.sockets_by_inode.get(inode) for inode, at in got_at.items()}
        for sock in self.snap.sockets:
            if sock.WhichOneof("kind") != "unix" or not sock.unix.peer_inode:
                continue
            peer = self.snap.sockets_by_inode.get(sock.unix.peer_inode)
            if peer is None or (peer.unix.peer_inode == sock.inode and peer is not sock):
                continue   # outside the tree, or a pair (_pair_group)
            mine, theirs = want_at.get(sock.inode), want_at.get(peer.inode)
            if mine is None or theirs is None:
                continue
            ident = f"{mine[0]}:{mine[1]} -> {theirs[0]}:{theirs[1]}"
            why = next((self.ex.missing_fds.get(m) for m in (mine, theirs)
                        if m in self.ex.missing_fds), None)
            if why:
                self.entries.append(Entry("socket_peer", ident, NOT_REHEARSED, reason=why))
                continue
            got = got_sock.get(mine)
            actual = got_at.get(got.unix.peer_inode) if got is not None and \
                got.HasField("unix") and got.unix.peer_inode else None
            self.entries.append(_entry("socket_peer", ident, [
                ("peer", f"{theirs[0]}:{theirs[1]}",
                 f"{actual[0]}:{actual[1]}" if actual else None)]))

    def _partition(self, snap: Snapshot, key_of: Callable[[int], int | None],
                   group: Callable[[int, files_pb2.Fd, Snapshot], Hashable | None]
                   ) -> dict[Hashable, set[tuple[int, int]]]:
        out: dict[Hashable, set[tuple[int, int]]] = defaultdict(set)
        zombies = {p.pid for p in snap.processes if p.state == "Z"}
        for table in snap.fds:
            key = key_of(table.pid)
            if key is None or table.pid in zombies:
                continue
            for fd in table.fds:
                g = group(table.pid, fd, snap)
                if g is not None:
                    out[g].add((key, fd.fd))
        return out

    def _groups(self, kind: str, group: Callable[[int, files_pb2.Fd, Snapshot],
                                                   Hashable | None], what: str) -> None:
        """One entry per group of the snapshot: do the same fds form one group there?"""
        want = self._partition(self.snap, lambda pid: pid, group)
        box_keys = {p.pid: k for k, p in self.box_by_key.items()}
        got = self._partition(self.box, box_keys.get, group)
        got_of: dict[tuple[int, int], frozenset[tuple[int, int]]] = {}
        for members in got.values():
            group = frozenset(members)    # one object per group: hashed once
            for m in members:
                got_of[m] = group
        for members in want.values():
            rehearsed = {m for m in members if m not in self.ex.missing_fds
                         and m[0] not in self.ex.missing_procs}
            if len(members) < 2 and kind == "socketpair":
                # One end whose peer no fd of the snapshot holds (outside, or a one-way
                # datagram connect): no fd of the sandbox may be its peer either.
                only = next(iter(members))
                if only not in rehearsed:
                    self.entries.append(Entry(kind, _holders(members), NOT_REHEARSED,
                                              reason="its fd was not rehearsed"))
                elif len(got_of.get(only, {only})) > 1:
                    self.entries.append(Entry(kind, _holders(members), MISMATCHED, [
                        {"field": "holders", "expected": _holders(members),
                         "actual": _holders(got_of[only])}]))
                else:
                    self.entries.append(Entry(kind, _holders(members), MATCHED))
                continue
            if len(members) < 2 and kind == "shared_file":
                # A description held once: its only check is that nobody else shares it.
                only = next(iter(members))
                if only in rehearsed and len(got_of.get(only, {only})) > 1:
                    self.entries.append(Entry(kind, _holders(members), MISMATCHED, [
                        {"field": "holders", "expected": _holders(members),
                         "actual": _holders(got_of[only])}]))
                continue
            ident = f"{_holders(members)}"
            if len(rehearsed) < (2 if kind != "pipe" else 1):
                self.entries.append(Entry(kind, ident, NOT_REHEARSED,
                                          reason=f"too few of its fds were rehearsed ({what})"))
                continue
            actual = {got_of.get(m, frozenset({m})) for m in rehearsed}
            expected_text = _holders(rehearsed)
            actual_text = " / ".join(sorted(_holders(a) for a in actual))
            if len(actual) == 1 and next(iter(actual)) == frozenset(rehearsed):
                self.entries.append(Entry(kind, ident, MATCHED))
            else:
                self.entries.append(Entry(kind, ident, MISMATCHED, [
                    {"field": "holders", "expected": expected_text, "actual": actual_text}],
                    reason=f"{what}: the sandbox groups them differently"))

    def _pipe_buffers(self) -> None:
        """Per pipe or FIFO: its capacity (set with F_SETPIPE_SZ as dumped) and its queue.

        The dump holds the queued bytes where a reader of the tree could copy them
        (tee): those must be back, byte for byte; a queue it could only count is
        not rehearsed, and says why; an empty pipe must be empty here.
        """
        pipes: dict[int, list[tuple[int, files_pb2.Fd]]] = defaultdict(list)
        for table in self._live_tables():
            for fd in table.fds:
                if fd.WhichOneof("state") == "pipe" and fd.pipe.pipe_ino:
                    pipes[fd.pipe.pipe_ino].append((table.pid, fd))
        for holders in pipes.values():
            ident = _holders({(pid, fd.fd) for pid, fd in holders})
            rehearsed = [(pid, fd) for pid, fd in holders
                         if (pid, fd.fd) not in self.ex.missing_fds
                         and pid not in self.ex.missing_procs]
            if not rehearsed:
                self.entries.append(Entry("pipe_buffer", ident, NOT_REHEARSED,
                                          reason="none of its fds was rehearsed"))
                continue
            pid, want = rehearsed[0]
            got = self._box_fds(pid).get(want.fd)
            if got is None or got.WhichOneof("state") != "pipe":
                self.entries.append(Entry("pipe_buffer", ident, MISMATCHED, [
                    {"field": "pipe", "expected": f"{pid}:{want.fd}", "actual": None}],
                    reason="its fd is not a pipe in the sandbox"))
                continue
            pairs: list[tuple[str, Any, Any]] = []
            if want.pipe.HasField("pipe_size"):
                pairs.append(("pipe_size", want.pipe.pipe_size, got.pipe.pipe_size
                              if got.pipe.HasField("pipe_size") else None))
            queued = next((fd.pipe.queued_bytes for _p, fd in holders
                           if fd.pipe.HasField("queued_bytes")), None)
            here = got.pipe.queued_bytes if got.pipe.HasField("queued_bytes") else None
            data = self.snap.pipe_data.get(want.pipe.pipe_ino)
            if queued == 0 or data is not None:
                pairs.append(("queued_bytes", queued, here))
            if data is not None:  # the bytes themselves, as the sandbox's dump read them
                back = self.box.pipe_data.get(got.pipe.pipe_ino)
                pairs.append(("data", _digest(data), _digest(back)))
            entry = _entry("pipe_buffer", ident, pairs)
            if entry.status == MATCHED and queued != 0 and data is None:
                entry = Entry("pipe_buffer", ident, NOT_REHEARSED, reason=(
                    f"its {queued} queued bytes were not captured: "
                    + next((u.reason for _p, fd in holders for u in fd.unreadable
                            if u.field == "pipe.data"), "no reader of the dump held them")
                    if queued else "its queued bytes were not readable at the dump"))
            self.entries.append(entry)

    def _probe_queues(self) -> None:
        """Per socket known only by its getsockopt probe, with queue counts (TCP, raw): an empty
        queue must be empty here; queued bytes the dump could only count (SIOCINQ,
        SIOCOUTQ) are not rehearsed, and say so."""
        seen: set[int] = set()
        for table in self._live_tables():
            got_fds = self._box_fds(table.pid)
            for fd in table.fds:
                probe = fd.socket.probe if fd.HasField("socket") and \
                    fd.socket.HasField("probe") else None
                if probe is None or fd.socket.inode in seen or \
                        fd.socket.inode in self.snap.sockets_by_inode or not (
                        probe.HasField("rqueue") or probe.HasField("wqueue")):
                    continue      # (a socket sock_diag lists is judged by its description)
                seen.add(fd.socket.inode)
                ident = f"{table.pid}:{fd.fd}"
                why = self.ex.missing_fds.get((table.pid, fd.fd)) or \
                    self.ex.missing_procs.get(table.pid)
                if why:
                    self.entries.append(Entry("socket_queue", ident, NOT_REHEARSED, reason=why))
                    continue
                want = _queues(probe)
                if any(want.values()):
                    self.entries.append(Entry("socket_queue", ident, NOT_REHEARSED, reason=(
                        "its queued bytes were counted, not captured: "
                        + ", ".join(f"{k} {v}" for k, v in want.items()))))
                    continue
                got = got_fds.get(fd.fd)
                theirs = got.socket.probe if got is not None and got.HasField("socket") \
                    and got.socket.HasField("probe") else None
                self.entries.append(_entry("socket_queue", ident, [
                    ("queues", want, _queues(theirs) if theirs is not None else None)]))

    def _locks(self) -> None:
        """Per fd holding file locks: the same locks (kind, mode, range, owner) there.

        The owner of a POSIX or flock lock is a pid: the sandbox's, read here, is
        translated to the snapshot's; the inode is not compared (a stand-in).
        """
        for table in self._live_tables():
            got_fds = self._box_fds(table.pid)
            for fd in table.fds:
                held = [lk for lk in fd.locks if not lk.blocked]
                if not held:
                    continue
                ident = f"{table.pid}:{fd.fd}"
                key = fd.file_id if fd.file_id else -((table.pid << 24) | fd.fd) - 1
                why = self.ex.missing_fds.get((table.pid, fd.fd)) or \
                    self.ex.missing_procs.get(table.pid) or \
                    self.ex.lock_notes.get((self._opener(key), key), "")
                if why:
                    self.entries.append(Entry("lock", ident, NOT_REHEARSED, reason=why))
                    continue
                got = got_fds.get(fd.fd)
                actual = [lk for lk in got.locks if not lk.blocked] if got is not None else []
                self.entries.append(_entry("lock", ident, [
                    ("locks", sorted(self._lock_text(lk, False) for lk in held),
                     sorted(self._lock_text(lk, True) for lk in actual))]))

    def _opener(self, key: int) -> int:
        """The actor of the open step of file `key` (lock notes are kept by opener)."""
        if not hasattr(self, "_openers"):
            self._openers = {int(o.step.args.get("file", 0)): o.step.actor
                             for o in self.ex.outcomes if o.step.action is Action.OPEN}
        return self._openers.get(key, 0)

    def _lock_text(self, lock: files_pb2.FileLock, sandbox: bool) -> str:
        kind = files_pb2.LockType.Name(lock.type).removeprefix("LOCK_") \
            if lock.type in files_pb2.LockType.values() else f"unknown({lock.type})"
        mode = files_pb2.LockMode.Name(lock.mode).removeprefix("LOCK_") \
            if lock.mode in files_pb2.LockMode.values() else f"unknown({lock.mode})"
        end = "EOF" if lock.to_eof else str(lock.end)
        owner = lock.pid
        if sandbox and owner > 0:
            owner = self.key_of.get(owner, owner)
        return f"{kind} {mode} {lock.start}-{end} pid {owner}"

    # ------------------------------------------------------------ namespaces

    def _namespaces(self) -> None:
        """Per type, which live processes share one namespace: the same sets in both."""
        box_key = {p.pid: k for k, p in self.box_by_key.items()}
        for ns_type in NS_TYPES:
            want: dict[int, set[int]] = defaultdict(set)
            for proc in self.snap.processes:
                inode = namespace_inode(proc, ns_type)
                if inode and proc.state != "Z":
                    want[inode].add(proc.pid)
            got_of: dict[int, int] = {}
            for proc in self.box.processes:
                inode = namespace_inode(proc, ns_type)
                if inode and proc.pid in box_key and proc.state != "Z":
                    got_of[box_key[proc.pid]] = inode
            for members in want.values():
                ident = f"{ns_type}:" + ",".join(map(str, sorted(members)))
                rehearsed = {m for m in members if m not in self.ex.missing_procs}
                if not rehearsed:
                    self.entries.append(Entry("namespace", ident, NOT_REHEARSED,
                                              reason="none of its processes was rehearsed"))
                    continue
                inodes = {got_of.get(m) for m in rehearsed}
                together = {m for m, i in got_of.items() if i in inodes}
                if len(inodes) == 1 and None not in inodes and together == rehearsed:
                    self.entries.append(Entry("namespace", ident, MATCHED))
                else:
                    split = defaultdict(list)
                    for m in sorted(together | rehearsed):
                        split[got_of.get(m)].append(str(m))
                    actual = " / ".join(",".join(v) for v in split.values())
                    self.entries.append(Entry("namespace", ident, MISMATCHED, [
                        {"field": "members", "expected": ",".join(map(str, sorted(rehearsed))),
                         "actual": actual}], reason=f"processes sharing one {ns_type} "
                                                    "namespace: the sandbox splits them"))

    # ------------------------------------------------------------ task sharing

    def _task_shares(self) -> None:
        """Processes (not threads) sharing an fd table, fs, signal handlers or an address
        space (kcmp ids of the dump): the same groups in the sandbox, and nobody else in
        them. CLONE_VM (and CLONE_SIGHAND, which needs it) children are mailbox children
        (clonevm.py, x86_64); elsewhere the executor's note says why not rehearsed."""
        box_key = {p.pid: k for k, p in self.box_by_key.items()}
        live = [p for p in self.snap.processes if p.state != "Z"
                and p.pid not in self.ex.missing_procs]
        for kind in ("files", "fs", "sighand", "vm"):
            want: dict[int, set[int]] = defaultdict(set)
            for proc in live:
                ident = getattr(proc.shares, kind)
                if ident:
                    want[ident].add(proc.pid)
            got: dict[int, int] = {}
            for proc in self.box.processes:
                ident = getattr(proc.shares, kind)
                if ident and proc.pid in box_key and proc.state != "Z":
                    got[box_key[proc.pid]] = ident
            for members in want.values():
                inodes = {got.get(m) for m in members}
                together = {m for m, i in got.items() if i in inodes}
                if len(members) < 2:
                    if together - members:        # shared here, not in the snapshot
                        self.entries.append(Entry("task_share", f"{kind}:{_pids(members)}",
                                                  MISMATCHED, [{"field": "members",
                                                                "expected": _pids(members),
                                                                "actual": _pids(together)}]))
                    continue
                ident = f"{kind}:{_pids(members)}"
                note = next((self.ex.thread_note[m] for m in members
                             if m in self.ex.thread_note), "")
                if kind in ("vm", "sighand") and note:
                    self.entries.append(Entry("task_share", ident, NOT_REHEARSED, reason=note))
                    continue
                if len(inodes) == 1 and None not in inodes and together == members:
                    self.entries.append(Entry("task_share", ident, MATCHED))
                    continue
                split: dict[int | None, list[int]] = defaultdict(list)
                for m in sorted(together | members):
                    split[got.get(m)].append(m)
                self.entries.append(Entry("task_share", ident, MISMATCHED, [
                    {"field": "members", "expected": _pids(members),
                     "actual": " / ".join(_pids(v) for v in split.values())}],
                    reason=f"processes sharing one {kind} (CLONE_"
                           f"{'FILES' if kind == 'files' else kind.upper()}): the sandbox "
                           "splits them"))

    # ------------------------------------------------------------ memory

    def _memory(self) -> None:
        """One entry per dumped VMA of every live process (see memory_judge.py)."""
        from concurrent.futures import ThreadPoolExecutor

        from criu_model.restore.memory_judge import judge_objects, judge_vmas

        jobs = []
        for proc in self.snap.processes:
            mm = self.snap.memory_by_pid.get(proc.pid)
            if mm is None or not mm.vmas or proc.state in ("Z", "X"):
                continue
            box = self.box_by_key.get(proc.pid)
            box_mm = self.box.memory_by_pid.get(box.pid) if box is not None else None
            why = self.ex.missing_procs.get(proc.pid) or \
                ("" if box is not None else "its process is missing from the sandbox")
            jobs.append((self.snap, proc.pid, box.pid if box else 0, box_mm, self.ex.vmas,
                         why))
        # Reading the sandbox's memory back is mostly preadv of /proc/PID/mem, which
        # releases the GIL: two processes at a time overlap it (the index and hash work
        # of each process is its own).
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="criu-model-judge") as pool:
            for entries in pool.map(lambda job: judge_vmas(*job), jobs):
                self.entries.extend(entries)
        self.entries.extend(judge_objects(self.snap, {j[1]: j[3] for j in jobs}, self.ex.vmas))

    # ------------------------------------------------------------ steps

    def _steps(self) -> None:
        for out in self.ex.outcomes:
            step = out.step
            if step.action in (Action.MAP_VMAS, Action.FILL_PAGES) and out.status != "failed":
                continue   # each VMA has its own entry, with the reason
            if step.action is Action.FILL_PAGES:
                continue   # a failed fill is its VMA's mismatch
            ident = f"{out.index} ({step.actor}: {step.action})"
            if out.status == "failed":
                self.entries.append(Entry("step", ident, MISMATCHED, [
                    {"field": "result", "expected": "success", "actual": out.detail}],
                    reason="the kernel refused a planned step"))
            elif out.status == "not_rehearsed" and _standalone(out.detail, step.args):
                self.entries.append(Entry("step", ident, NOT_REHEARSED, reason=out.detail))


def _standalone(detail: str, args: dict[str, Any]) -> bool:
    """A skipped step that no process or fd entry already reports."""
    if ("fd" in args and "kind" in args) or "fds" in args or "child" in args:
        return False
    return not detail.startswith(("fd ", "actor ", "receiver "))


def _node_pairs(want: files_pb2.Fd, got: files_pb2.Fd) -> list[tuple[str, Any, Any]]:
    """A deleted node made again (directory, device, symlink): what its inode must be.

    Its type and permission bits, its device number, its owner and a symlink's target:
    what the sandbox's own dump reads from the fd (fstat, readlink of O_PATH).
    """
    f = want.file
    g = got.file if got.HasField("file") else None

    def dev(rdev: int) -> str:
        return f"{os.major(rdev)}:{os.minor(rdev)}"

    pairs: list[tuple[str, Any, Any]] = [
        ("file.mode", f"{f.mode:o}", f"{g.mode:o}" if g is not None else None),
        ("owner", f"{f.uid}:{f.gid}", f"{g.uid}:{g.gid}" if g is not None else None)]
    if stat.S_ISCHR(f.mode) or stat.S_ISBLK(f.mode):
        pairs.append(("rdev", dev(f.rdev), dev(g.rdev) if g is not None else None))
    if f.HasField("link_target"):
        pairs.append(("link_target", printable(f.link_target),
                      printable(g.link_target) if g is not None and g.HasField("link_target")
                      else None))
    return pairs


def _probe_pairs(want: files_pb2.SocketProbe, got: files_pb2.SocketProbe | None
                 ) -> list[tuple[str, Any, Any]]:
    """A socket sock_diag did not list, held against the sandbox's own probe of it: what
    it is, where it is bound or connected, and its options (only the ones that differ are
    shown). Queues are judged apart (Judge._probe_queues)."""

    def desc(p: files_pb2.SocketProbe | None) -> dict[str, Any] | None:
        if p is None:
            return None
        out: dict[str, Any] = {"domain": p.domain, "type": p.type, "protocol": p.protocol,
                               "listening": p.listening, "addr": f"{p.src}:{p.sport}"}
        if p.HasField("tcp_state"):
            out["tcp_state"] = p.tcp_state
        if p.dst:
            out["peer"] = f"{p.dst}:{p.dport}"
        if p.bound_device:
            out["bound_device"] = p.bound_device
        return out

    theirs = dict(got.options) if got is not None else {}
    differ = sorted(k for k in set(want.options) | set(theirs)
                    if want.options.get(k) != theirs.get(k)
                    and not option_from_history(k, want.options.get(k, 0)))
    return [("socket", desc(want), desc(got)),
            ("socket.options", {k: want.options.get(k) for k in differ},
             {k: theirs.get(k) for k in differ})]


def _shutdown(bits: int) -> str:
    """sk_shutdown as the calls that set it: RCV_SHUTDOWN 1 (SHUT_RD, or a FIN received),
    SEND_SHUTDOWN 2 (SHUT_WR)."""
    return "|".join(n for b, n in ((1, "RD"), (2, "WR")) if bits & b) or "none"


def _queues(probe: files_pb2.SocketProbe) -> dict[str, int | None]:
    """A probed socket's queue counts (None: the kind has none or it was not read)."""
    return {name: getattr(probe, name) if probe.HasField(name) else None
            for name in ("rqueue", "wqueue")}


def _targets(fd: files_pb2.Fd, table: Iterable[files_pb2.Fd]) -> list[str]:
    """An epoll's targets as `tfd:events:data -> fds`: data is the program's cookie
    (restored), fds where the owner holds the watched file now (a watch keeps the number
    it was added with, which may have moved on: its file is told by where it is held)."""
    if not fd.HasField("epoll"):
        return []
    held: dict[int, list[int]] = defaultdict(list)
    for other in table:
        if other.file_id:
            held[other.file_id].append(other.fd)
    return sorted(f"{t.tfd}:{t.events:#x}:{t.data:#x} -> "
                  f"{','.join(map(str, sorted(held.get(t.file_id, [])))) or '-'}"
                  for t in fd.epoll.targets)


def _watches(fd: files_pb2.Fd) -> list[str]:
    """An inotify fd's watches as `wd dev:ino mask` (the handle is the inode's, not compared)."""
    return sorted(f"{w.wd} {os.major(w.sdev)}:{os.minor(w.sdev)}:{w.ino} mask {w.mask:#x}"
                  for w in fd.inotify.watches) if fd.HasField("inotify") else []


def _pipe_end(fd: files_pb2.Fd) -> str:
    return "rw" if fd.pipe.read_end and fd.pipe.write_end else \
        "read" if fd.pipe.read_end else "write"


def _pids(members: set[int] | list[int]) -> str:
    return ",".join(map(str, sorted(members)))


def _digest(data: bytes | None) -> str | None:
    """A short, comparable stand-in for bytes in a report: length and sha256 prefix."""
    if data is None:
        return None
    import hashlib

    return f"{len(data)} bytes sha256:{hashlib.sha256(data).hexdigest()[:16]}"


_SEAL_NAMES = ((0x1, "SEAL"), (0x2, "SHRINK"), (0x4, "GROW"), (0x8, "WRITE"),
               (0x10, "FUTURE_WRITE"), (0x20, "EXEC"))


def _seals(seals: int) -> str:
    """F_GET_SEALS as F_SEAL_ names (fcntl.h), unknown bits in hex."""
    names = [f"F_SEAL_{n}" for bit, n in _SEAL_NAMES if seals & bit]
    rest = seals & ~sum(bit for bit, _n in _SEAL_NAMES)
    return "|".join(names + ([f"{rest:#x}"] if rest else [])) or "none"


def _ghost_digest(ghost: files_pb2.GhostFile) -> str:
    """Size and a digest of a captured file's bytes (holes read as zeros, so a dense and
    a sparse capture of the same bytes agree)."""
    import hashlib

    h = hashlib.sha256()
    pos = 0
    pieces = [(e.offset, e.data) for e in ghost.extents] if ghost.extents else \
        [(0, ghost.data)]
    zero = bytes(1 << 16)
    for offset, data in pieces:
        while pos < offset:
            n = min(offset - pos, len(zero))
            h.update(zero[:n])
            pos += n
        h.update(data)
        pos += len(data)
    while pos < ghost.size:
        n = min(ghost.size - pos, len(zero))
        h.update(zero[:n])
        pos += n
    return f"{ghost.size} bytes sha256:{h.hexdigest()[:16]}"


def _holders(members: set[tuple[int, int]] | frozenset[tuple[int, int]]) -> str:
    return ",".join(f"{p}:{f}" for p, f in sorted(members))


def judge(snap: Snapshot, sandbox: Snapshot, execution: Execution) -> list[Entry]:
    """Every object of `snap` held against the dump of the parked sandbox."""
    return Judge(snap, sandbox, execution).judge()
