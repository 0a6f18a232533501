"""What changed between two snapshots: `criu_model.diff(a, b)`.

A pure function over two loaded (or freshly dumped) Snapshots. Objects are
first *matched* across the snapshots, then every modeled field of a matched
pair is compared *generically* from the protobuf descriptors, so a field
added to a .proto is diffed without touching this module.

Matching
    processes   by (pid, start_time): a reused pid is a removal plus an addition
    threads     by tid
    fds         by (pid, fd); another open file at the same number (kind, dev,
                ino, path, access mode, pipe/socket inode or eventfd id differ)
                is ``replaced``; pos/flags/state of the same file are ``changed``
    VMAs        by (start, file identity): a grown heap is a change of ``end``;
                another file at the same start is a removal plus an addition
    sockets     by inode, then leftovers by address tuple (a socket re-created
                on the same endpoint: its ``inode`` is reported as changed)
    mounts      by mount namespace inode, then mount id
    ghosts      (captured deleted files) by (dev, ino)
    sharing     file ids and task share ids are numbers private to each
                snapshot, so they are never compared; the *partition* is: for
                open files, which (pid, fd) hold the same open file; for tasks,
                which pids share files/fs/sighand/vm. A file or task object
                that became or stopped being shared between processes is one
                ``sharing`` change. Only processes present on both sides count.

Volatile fields (hidden unless ``include_volatile``; see VOLATILE): CPU times,
vsize, rss, page counts of VMAs, timerfd remaining time and pending ticks,
socket queue lengths and buffer usage (rqueue, wqueue, sk_meminfo except the
rcvbuf/sndbuf settings), TCP_INFO counters (state, options and window scales
are kept), inet retransmit count and timer, a regular file's mtime (its size
and the fd position still show a write), how the dump was taken
(page_counts_method, the pid a mountinfo was read from, fds vanished while
listing), and a running/sleeping flip of a task state among R, S, D, I
(a change to or from Z, T, t or X is never volatile). A pipe's queued bytes are
*not* volatile: data left unread in a pipe is state a restore must recreate.

Unknown is not a change: a field one side recorded as ``unreadable`` (or a
whole collection, such as an fd table) is not compared; nor is a field absent
from the older side when the two snapshots have different format versions
(unset on the wire there, set on the newer side), or an image the older side
does not have at all. Those are listed in ``Diff.missing``, never in
``Diff.changes``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from criu_model.errors import UsageError
from criu_model.images import framing
from criu_model.images.pb import files_pb2, mm_pb2, mount_pb2, process_pb2, sockets_pb2
from criu_model.render.json import (
    fd_kind_name,
    message_to_json,
    prot_text,
    socket_family_name,
    text,
    unix_name,
)
from criu_model.snapshot import Snapshot, namespace_inode

OPS = ("added", "removed", "changed", "replaced")
WHATS = ("process", "namespace", "thread", "fd", "fd_table", "ghost", "socket", "vma",
         "memory", "mount", "sharing")
# --only categories. Every change belongs to exactly one.
AREAS = ("tree", "proc", "threads", "creds", "limits", "signals", "timers", "sched", "ns",
         "cgroups", "fds", "sockets", "vmas", "mounts", "sharing")
_AREA_ALIASES = {"namespaces": "ns", "tasks": "tree", "files": "fds", "memory": "vmas",
                 "vma": "vmas", "fd": "fds", "socket": "sockets", "mount": "mounts",
                 "cgroup": "cgroups", "thread": "threads", "timer": "timers",
                 "signal": "signals", "rlimits": "limits", "cred": "creds"}

_PKG = "criu_model.v1."
# (message, field) pairs whose value changes from moment to moment in a quiet
# tree. Skipped unless include_volatile; when shown, the Change says so.
VOLATILE: frozenset[tuple[str, str]] = frozenset(
    (_PKG + msg, name) for msg, names in {
        "Process": ("utime_ticks", "stime_ticks", "vsize", "rss_pages"),
        "Thread": ("utime_ticks", "stime_ticks"),
        "Vma": ("pages",),
        "PageCounts": ("resident", "swapped", "file", "exclusive"),
        "MemoryMap": ("page_counts_method",),
        "Timerfd": ("it_value_ns", "ticks"),
        "RegularFile": ("mtime_ns",),
        "FdTable": ("vanished",),
        "Socket": ("rqueue", "wqueue"),
        "SkMemInfo": ("rmem_alloc", "wmem_alloc", "fwd_alloc", "wmem_queued", "optmem",
                      "backlog", "drops"),
        "TcpInfo": ("ca_state", "retransmits", "probes", "backoff", "rto_us", "mss",
                    "rcv_mss", "unacked", "lost", "retrans", "pmtu", "rtt_us", "rttvar_us",
                    "snd_cwnd", "advmss", "total_retrans"),
        "InetSocket": ("retransmits", "timer"),
        "MountNamespace": ("read_from_pid",),
    }.items() for name in names)
# Task states that flip between two dumps of an idle tree (fs/proc/array.c).
_TRANSIENT_STATES = frozenset("RSDI")
# Fields whose volatility depends on the values: (message, field) -> predicate.
_VOLATILE_WHEN: dict[tuple[str, str], Callable[[Any, Any], bool]] = {
    (_PKG + "Process", "state"): lambda a, b: a in _TRANSIENT_STATES and b in _TRANSIENT_STATES,
    (_PKG + "Thread", "state"): lambda a, b: a in _TRANSIENT_STATES and b in _TRANSIENT_STATES,
}
# Numbers private to one snapshot (sharing-pass ids, ghost ids): comparing
# them across snapshots is meaningless. Sharing is compared as a partition.
_NEVER: frozenset[tuple[str, str]] = frozenset({
    (_PKG + "Fd", "file_id"), (_PKG + "EpollTarget", "file_id"),
    (_PKG + "GhostRef", "ghost_id"), (_PKG + "Process", "shares"),
})
# Keys and sub-collections handled by matching, not by the generic walk.
_MATCHED: frozenset[tuple[str, str]] = frozenset({
    (_PKG + "Process", "pid"), (_PKG + "Process", "threads"), (_PKG + "Process", "namespaces"),
    (_PKG + "Thread", "tid"), (_PKG + "FdTable", "pid"), (_PKG + "FdTable", "fds"),
    (_PKG + "Fd", "fd"), (_PKG + "MemoryMap", "pid"), (_PKG + "MemoryMap", "vmas"),
    (_PKG + "Vma", "start"), (_PKG + "Socket", "inode"), (_PKG + "MountNamespace", "ns_inode"),
    (_PKG + "MountNamespace", "mounts"), (_PKG + "Mount", "mount_id"), (_PKG + "GhostFile", "id"),
})
# Repeated messages matched element by element on a key; others compare as a whole list.
_KEYED: dict[str, Callable[[Any], str]] = {
    _PKG + "Rlimit": lambda m: m.resource,
    _PKG + "CgroupMembership": lambda m: str(m.hierarchy_id),
    _PKG + "PosixTimer": lambda m: str(m.id),
    _PKG + "EpollTarget": lambda m: str(m.tfd),
    _PKG + "InotifyWatch": lambda m: str(m.wd),
}
# Top-level Process/Thread field -> --only area (default "proc" / "threads").
_PROCESS_AREAS = {
    "ppid": "tree", "pgid": "tree", "sid": "tree", "ns_pids": "tree", "ns_pgids": "tree",
    "ns_sids": "tree", "start_time": "tree", "state": "tree", "tty_nr": "tree",
    "exit_code": "tree", "exit_signal": "tree", "is_kthread": "tree",
    "creds": "creds", "rlimits": "limits",
    "sig_ignored": "signals", "sig_caught": "signals", "sig_shared_pending": "signals",
    "timers": "timers", "sched_policy": "sched", "nice": "sched", "rt_priority": "sched",
    "utime_ticks": "sched", "stime_ticks": "sched", "vsize": "vmas", "rss_pages": "vmas",
    "cgroups": "cgroups",
}
_THREAD_AREAS = {"sig_blocked": "signals", "sig_pending": "signals", "sched_policy": "sched",
                 "nice": "sched", "rt_priority": "sched", "utime_ticks": "sched",
                 "stime_ticks": "sched"}
# The leader thread repeats these process fields: compare them once, on the process.
_LEADER_DUPLICATES = frozenset(
    f.name for f in process_pb2.Thread.DESCRIPTOR.fields
    if f.name in process_pb2.Process.DESCRIPTOR.fields_by_name)
_TASK_SHARES = tuple(f.name for f in process_pb2.TaskShares.DESCRIPTOR.fields)
_BIG_BYTES = 256  # longer bytes values are shown as a size and a digest
_PER_PROCESS = frozenset({"process", "thread", "namespace", "fd", "fd_table", "vma", "memory"})
_SUMMARY_BUCKETS = {"thread": "threads", "fd": "fds", "vma": "vmas", "socket": "sockets",
                    "mount": "mounts", "sharing": "sharing"}
_FD_OPS = {"added": "opened", "removed": "closed"}


@dataclass(frozen=True, slots=True)
class Change:
    """One difference. `before` is the value in A, `after` in B (JSON-ready values).

    op: added | removed | changed | replaced. what: process, thread, namespace,
    fd, fd_table, ghost, socket, vma, memory, mount, sharing. `field` is a dotted
    path inside the object (``creds.cap_eff``, ``rlimits[RLIMIT_NOFILE].soft``)
    or None for the whole object. `pids` lists every process involved (the
    holders of a socket or shared file, the members of a mount namespace).
    """

    op: str
    what: str
    pid: int | None
    area: str
    field: str | None = None
    before: Any = None
    after: Any = None
    fd: int | None = None
    tid: int | None = None
    start: int | None = None
    key: str | None = None
    pids: tuple[int, ...] = ()
    volatile: bool = False

    def involves(self, pids: Collection[int]) -> bool:
        return self.pid in pids or any(p in pids for p in self.pids)


@dataclass(frozen=True, slots=True)
class Missing:
    """Something not compared because one side does not know it (`side`: "a" or "b")."""

    what: str
    field: str | None
    side: str
    reason: str
    count: int = 1


@dataclass
class Diff:
    changes: list[Change]
    missing: list[Missing] = field(default_factory=list)
    versions: tuple[str, str] = ("", "")
    include_volatile: bool = False

    @property
    def identical(self) -> bool:
        return not self.changes

    @property
    def summary(self) -> dict[str, Any]:
        """Counts per kind of object; an object with several changed fields counts once."""
        out: dict[str, Any] = {
            "processes": dict.fromkeys(("added", "removed", "changed"), 0),
            "threads": dict.fromkeys(("added", "removed", "changed"), 0),
            "fds": dict.fromkeys(("opened", "closed", "replaced", "changed"), 0),
            "vmas": dict.fromkeys(("added", "removed", "changed"), 0),
            "sockets": dict.fromkeys(("added", "removed", "changed"), 0),
            "mounts": dict.fromkeys(("added", "removed", "changed"), 0),
            "sharing": dict.fromkeys(("added", "removed", "changed"), 0),
            "changes": len(self.changes),
        }
        changed: dict[str, set[Any]] = {k: set() for k in _SUMMARY_BUCKETS.values()}
        whole_process: set[int | None] = set()
        touched: set[int | None] = set()
        for ch in self.changes:
            whole = ch.field is None and ch.op != "changed"
            if ch.what == "process" and whole:
                out["processes"][ch.op] += 1
                whole_process.add(ch.pid)
                continue
            if ch.what in _PER_PROCESS:
                touched.add(ch.pid)
            bucket = _SUMMARY_BUCKETS.get(ch.what)
            if bucket == "sharing":
                out[bucket][ch.op] += 1
            elif bucket is not None and whole:
                name = _FD_OPS.get(ch.op, ch.op) if bucket == "fds" else ch.op
                if name in out[bucket]:
                    out[bucket][name] += 1
            elif bucket is not None:
                changed[bucket].add((ch.pid, ch.tid, ch.fd, ch.start, ch.key))
        out["processes"]["changed"] = len(touched - whole_process)
        for bucket, items in changed.items():
            if bucket != "sharing":
                out[bucket]["changed"] = len(items)
        return out

    def filter(self, *, pids: Collection[int] | None = None,
               only: Iterable[str] | None = None) -> Diff:
        """Keep the changes involving `pids` and in the `only` areas."""
        areas = parse_areas(only) if only is not None else None
        keep = [ch for ch in self.changes
                if (pids is None or ch.involves(pids)) and (areas is None or ch.area in areas)]
        return Diff(keep, self.missing, self.versions, self.include_volatile)


def parse_areas(only: Iterable[str] | str) -> frozenset[str]:
    """'tree,fds' or ["tree", "fds"] -> a set of AREAS; UsageError names the bad one."""
    items = only.split(",") if isinstance(only, str) else [
        part for item in only for part in item.split(",")]
    areas = set()
    for item in items:
        name = item.strip().lower()
        if not name:
            continue
        name = _AREA_ALIASES.get(name, name)
        if name not in AREAS:
            raise UsageError(f"unknown --only area {item!r} (choose from {', '.join(AREAS)})")
        areas.add(name)
    return frozenset(areas)


# ------------------------------------------------------------ generic walk


@dataclass(frozen=True, slots=True)
class _Scope:
    """Where a field lives: the fixed attributes of every Change emitted inside it."""

    what: str
    pid: int | None
    area: str | None = None  # None: derived from the top-level field name
    area_map: dict[str, str] | None = None
    default_area: str = "proc"
    fd: int | None = None
    tid: int | None = None
    start: int | None = None
    key: str | None = None
    pids: tuple[int, ...] = ()


_SCALAR, _MESSAGE, _REP_SCALAR, _REP_MESSAGE, _KEYED_LIST, _MAP = range(6)


@dataclass(frozen=True, slots=True)
class _FieldPlan:
    name: str
    kind: int
    desc: FieldDescriptor
    presence: bool
    volatile: bool
    volatile_when: Callable[[Any, Any], bool] | None


def _is_absent(kind: int, present: bool | None, value: Any) -> bool:
    """True if the value is what an older writer that lacks the field leaves."""
    if present is not None:
        return not present
    if kind == _MESSAGE:
        return value.ByteSize() == 0
    if kind in (_REP_SCALAR, _REP_MESSAGE, _KEYED_LIST, _MAP):
        return len(value) == 0
    return not value


def _plain(desc: FieldDescriptor, value: Any) -> Any:
    """A single (non-repeated) value as JSON-ready data."""
    if desc.type == FieldDescriptor.TYPE_MESSAGE:
        return message_to_json(value)
    if desc.type == FieldDescriptor.TYPE_BYTES:
        if len(value) > _BIG_BYTES:
            return f"<{len(value)} bytes, sha256 {hashlib.sha256(value).hexdigest()[:16]}>"
        return text(value)
    if desc.type == FieldDescriptor.TYPE_ENUM:
        named = desc.enum_type.values_by_number.get(value)
        return named.name if named is not None else value
    return value


def _norm(path: str) -> str:
    """'timers[3].sigval' -> 'timers.3.sigval', the form Unreadable names are compared in."""
    return path.replace("[", ".").replace("]", "")


class _Walker:
    """Compares matched objects field by field; collects Changes and Missing."""

    def __init__(self, include_volatile: bool, older: str | None, older_version: str) -> None:
        self.include_volatile = include_volatile
        self.older = older
        self.older_version = older_version
        self.changes: list[Change] = []
        self.missing: dict[tuple[str, str | None, str, str], int] = {}
        self._plans: dict[str, tuple[tuple[_FieldPlan, ...], tuple[str, ...]]] = {}
        self._strip_plans: dict[str, tuple[tuple[str, ...], tuple[tuple[str, bool], ...]]] = {}

    # -- plans ------------------------------------------------------------

    def _plan(self, desc: Descriptor) -> tuple[tuple[_FieldPlan, ...], tuple[str, ...]]:
        cached = self._plans.get(desc.full_name)
        if cached is not None:
            return cached
        plans = []
        for f in desc.fields:
            ident = (desc.full_name, f.name)
            if ident in _NEVER or ident in _MATCHED or f.name == "unreadable":
                continue
            volatile = ident in VOLATILE
            if volatile and not self.include_volatile:
                continue
            entry = f.message_type
            if entry is not None and entry.GetOptions().map_entry:
                kind = _MAP
            elif f.is_repeated:
                if entry is None:
                    kind = _REP_SCALAR
                elif entry.full_name in _KEYED:
                    kind = _KEYED_LIST
                else:
                    kind = _REP_MESSAGE
            else:
                kind = _MESSAGE if entry is not None else _SCALAR
            presence = (not f.is_repeated) and f.has_presence
            plans.append(_FieldPlan(f.name, kind, f, presence, volatile,
                                    _VOLATILE_WHEN.get(ident)))
        oneofs = tuple(o.name for o in desc.oneofs if not o.name.startswith("_"))
        result = (tuple(plans), oneofs)
        self._plans[desc.full_name] = result
        return result

    def _strip_plan(self, desc: Descriptor) -> tuple[tuple[str, ...], tuple[tuple[str, bool], ...]]:
        """(volatile fields, (field, repeated) holding messages that contain volatile ones)."""
        cached = self._strip_plans.get(desc.full_name)
        if cached is not None:
            return cached
        self._strip_plans[desc.full_name] = ((), ())  # recursion guard
        clear = tuple(f.name for f in desc.fields if (desc.full_name, f.name) in VOLATILE)
        nested = []
        for f in desc.fields:
            sub = f.message_type
            if f.name in clear or sub is None or sub.GetOptions().map_entry:
                continue
            inner = self._strip_plan(sub)
            if inner[0] or inner[1]:
                nested.append((f.name, f.is_repeated))
        result = (clear, tuple(nested))
        self._strip_plans[desc.full_name] = result
        return result

    def _strip(self, msg: Message) -> None:
        clear, nested = self._strip_plan(msg.DESCRIPTOR)
        for name in clear:
            msg.ClearField(name)
        for name, repeated in nested:
            if repeated:
                for item in getattr(msg, name):
                    self._strip(item)
            elif msg.HasField(name):
                self._strip(getattr(msg, name))

    def same(self, x: Message, y: Message) -> bool:
        """Equal, or equal but for volatile fields while those are hidden.

        Copying and clearing is several times faster than walking the fields
        in Python, and most objects of a re-dump differ only in volatile ones.
        """
        if x == y:
            return True
        if self.include_volatile:
            return False
        clear, nested = self._strip_plan(x.DESCRIPTOR)
        if not clear and not nested:
            return False
        cx, cy = type(x)(), type(y)()
        cx.CopyFrom(x)
        cy.CopyFrom(y)
        self._strip(cx)
        self._strip(cy)
        return cx == cy

    # -- emission -----------------------------------------------------------

    def emit(self, scope: _Scope, op: str, path: str | None, before: Any, after: Any,
             volatile: bool = False) -> None:
        if scope.area is not None:
            area = scope.area
        elif path is None:
            area = scope.default_area
        else:
            top = path.split(".", 1)[0].split("[", 1)[0]
            area = (scope.area_map or {}).get(top, scope.default_area)
        self.changes.append(Change(op, scope.what, scope.pid, area, path, before, after,
                                   scope.fd, scope.tid, scope.start, scope.key, scope.pids,
                                   volatile))

    def note_missing(self, what: str, path: str | None, side: str, reason: str) -> None:
        key = (what, path, side, reason)
        self.missing[key] = self.missing.get(key, 0) + 1

    def _unknown(self, unknown: dict[str, tuple[str, str]], path: str
                 ) -> tuple[str, str] | None:
        """(side, reason) if `path` was recorded unreadable on a side."""
        if not unknown:
            return None
        norm = _norm(path)
        for name, why in unknown.items():
            if (norm == name or norm.startswith(name + ".") or norm.startswith(name + "_")
                    or name.startswith(norm + ".")):
                return why
        return None

    def _report(self, scope: _Scope, path: str, plan: _FieldPlan, before: Any, after: Any,
                a_absent: bool, b_absent: bool, unknown: dict[str, tuple[str, str]],
                op: str = "changed") -> None:
        why = self._unknown(unknown, path)
        if why is not None:
            self.note_missing(scope.what, path, why[0], why[1])
            return
        if self.older is not None and (a_absent if self.older == "a" else b_absent):
            self.note_missing(scope.what, path, self.older,
                              f"not recorded by format {self.older_version}")
            return
        self.emit(scope, op, path, before, after, plan.volatile)

    # -- the walk -----------------------------------------------------------

    def unreadable_of(self, a: Message, b: Message, prefix: str = ""
                      ) -> dict[str, tuple[str, str]]:
        out: dict[str, tuple[str, str]] = {}
        for side, msg in (("a", a), ("b", b)):
            for item in getattr(msg, "unreadable", ()):
                out.setdefault(_norm(prefix + item.field), (side, item.reason))
        return out

    def walk(self, a: Message, b: Message, scope: _Scope, prefix: str = "",
             unknown: dict[str, tuple[str, str]] | None = None,
             skip: frozenset[str] = frozenset()) -> None:
        """Compare every planned field of two messages of the same type."""
        plans, oneofs = self._plan(a.DESCRIPTOR)
        if unknown is None:
            unknown = {}
        if "unreadable" in a.DESCRIPTOR.fields_by_name and (a.unreadable or b.unreadable):
            unknown = {**unknown, **self.unreadable_of(a, b, prefix)}
        skipped: set[str] = set(skip)
        for oneof in oneofs:
            wa, wb = a.WhichOneof(oneof), b.WhichOneof(oneof)
            members = a.DESCRIPTOR.oneofs_by_name[oneof].fields
            if wa != wb:
                path = prefix + oneof
                if self._unknown(unknown, path) is None:
                    self.emit(scope, "changed", path, wa, wb)
                skipped.update(f.name for f in members)
            else:
                skipped.update(f.name for f in members if f.name != wa)
        for plan in plans:
            name = plan.name
            if name in skipped:
                continue
            va = getattr(a, name)
            vb = getattr(b, name)
            if plan.presence:
                ha, hb = a.HasField(name), b.HasField(name)
                if ha != hb:
                    desc = plan.desc
                    self._report(scope, prefix + name, plan,
                                 _plain(desc, va) if ha else None,
                                 _plain(desc, vb) if hb else None,
                                 not ha, not hb, unknown)
                    continue
                if not ha:
                    continue
            if va == vb:
                continue
            kind = plan.kind
            path = prefix + name
            if kind == _SCALAR:
                if plan.volatile_when is not None and plan.volatile_when(va, vb):
                    if not self.include_volatile:
                        continue
                    self.emit(scope, "changed", path, va, vb, True)
                    continue
                self._report(scope, path, plan, _plain(plan.desc, va), _plain(plan.desc, vb),
                             _is_absent(kind, None, va), _is_absent(kind, None, vb), unknown)
            elif kind == _MESSAGE:
                if self.older is not None and (va.ByteSize() == 0 or vb.ByteSize() == 0):
                    side_absent = (va.ByteSize() == 0, vb.ByteSize() == 0)
                    if (side_absent[0] if self.older == "a" else side_absent[1]):
                        self.note_missing(scope.what, path, self.older,
                                          f"not recorded by format {self.older_version}")
                        continue
                self.walk(va, vb, scope, path + ".", unknown)
            elif kind == _REP_SCALAR:
                self._report(scope, path, plan, [_plain(plan.desc, v) for v in va],
                             [_plain(plan.desc, v) for v in vb], not va, not vb, unknown)
            elif kind == _REP_MESSAGE:
                self._report(scope, path, plan, [message_to_json(v) for v in va],
                             [message_to_json(v) for v in vb], not va, not vb, unknown)
            elif kind == _KEYED_LIST:
                self._keyed(va, vb, scope, path, plan, unknown)
            else:
                self._map(va, vb, scope, path, plan, unknown)

    def _keyed(self, va: Any, vb: Any, scope: _Scope, path: str, plan: _FieldPlan,
               unknown: dict[str, tuple[str, str]]) -> None:
        keyfn = _KEYED[plan.desc.message_type.full_name]
        ia = {keyfn(m): m for m in va}
        ib = {keyfn(m): m for m in vb}
        if len(ia) != len(va) or len(ib) != len(vb):  # duplicate keys: compare whole lists
            self._report(scope, path, plan, [message_to_json(v) for v in va],
                         [message_to_json(v) for v in vb], not va, not vb, unknown)
            return
        if self.older is not None and (not va if self.older == "a" else not vb):
            self.note_missing(scope.what, path, self.older,
                              f"not recorded by format {self.older_version}")
            return
        for key, ma in ia.items():
            mb = ib.get(key)
            sub = f"{path}[{key}]"
            if mb is None:
                self._report(scope, sub, plan, message_to_json(ma), None, False, True,
                             unknown, op="removed")
            elif ma != mb:
                self.walk(ma, mb, scope, sub + ".", unknown)
        for key, mb in ib.items():
            if key not in ia:
                self._report(scope, f"{path}[{key}]", plan, None, message_to_json(mb),
                             True, False, unknown, op="added")

    def _map(self, va: Any, vb: Any, scope: _Scope, path: str, plan: _FieldPlan,
             unknown: dict[str, tuple[str, str]]) -> None:
        value_desc = plan.desc.message_type.fields_by_name["value"]
        for key in sorted(set(va) | set(vb), key=str):
            in_a, in_b = key in va, key in vb
            if in_a and in_b and va[key] == vb[key]:
                continue
            self._report(scope, f"{path}[{key}]", plan,
                         _plain(value_desc, va[key]) if in_a else None,
                         _plain(value_desc, vb[key]) if in_b else None,
                         not in_a, not in_b, unknown)


# ------------------------------------------------------------ summaries


def _process_summary(snap: Snapshot, proc: process_pb2.Process) -> dict[str, Any]:
    mm = snap.memory_by_pid.get(proc.pid)
    table = snap.fds_by_pid.get(proc.pid)
    return {"comm": text(proc.comm), "ppid": proc.ppid, "pgid": proc.pgid, "sid": proc.sid,
            "start_time": proc.start_time, "state": proc.state,
            "cmdline": [text(c) for c in proc.cmdline], "threads": len(proc.threads),
            "fds": len(table.fds) if table else 0, "vmas": len(mm.vmas) if mm else 0}


def fd_target(fd: files_pb2.Fd) -> str:
    """A one-word description of what the fd points at: a path, 'pipe:[N]', ..."""
    if fd.path:
        return text(fd.path) + (" (deleted)" if fd.deleted else "")
    if fd.HasField("socket"):
        return f"socket:[{fd.socket.inode}]"
    if fd.HasField("pipe"):
        return f"pipe:[{fd.pipe.pipe_ino}]"
    return fd_kind_name(fd.kind)


def _fd_summary(fd: files_pb2.Fd) -> dict[str, Any]:
    return {"kind": fd_kind_name(fd.kind), "target": fd_target(fd), "flags": fd.flags,
            "pos": fd.pos}


def _vma_summary(vma: mm_pb2.Vma) -> dict[str, Any]:
    return {"end": vma.end, "prot": prot_text(vma), "offset": vma.offset,
            "kind": mm_pb2.VmaKind.Name(vma.kind).removeprefix("VMA_").lower(),
            "path": text(vma.path) + (" (deleted)" if vma.deleted else "") if vma.path else None}


def socket_label(sock: sockets_pb2.Socket) -> str:
    """'unix stream /run/x.sock -> 1234', 'inet stream 127.0.0.1:80 -> 10.0.0.2:5555'."""
    from criu_model.render.json import SOCKET_TYPES

    family = socket_family_name(sock.family)
    kind = sock.WhichOneof("kind")
    head = f"{family} {SOCKET_TYPES.get(sock.type, str(sock.type))}"
    if kind == "unix":
        peer = f" -> {sock.unix.peer_inode}" if sock.unix.peer_inode else ""
        return f"{head} {unix_name(sock) or '*'}{peer}"
    if kind == "inet":
        i = sock.inet
        dst = f" -> {i.dst}:{i.dport}" if i.dport else ""
        return f"{head} {i.src}:{i.sport}{dst}"
    if kind == "netlink":
        return f"{head} proto={sock.netlink.protocol} portid={sock.netlink.portid}"
    if kind == "packet":
        return f"{head} proto={sock.packet.protocol:#06x} ifindex={sock.packet.ifindex}"
    return head


def _socket_summary(sock: sockets_pb2.Socket) -> dict[str, Any]:
    from criu_model.render.json import SOCKET_STATES

    return {"inode": sock.inode, "label": socket_label(sock),
            "state": SOCKET_STATES.get(sock.state) if sock.state else None}


def _socket_tuple(sock: sockets_pb2.Socket) -> tuple[Any, ...] | None:
    """The endpoint a socket is known by, or None when it has none worth matching on."""
    kind = sock.WhichOneof("kind")
    if kind == "unix":
        return ("unix", sock.type, sock.unix.name) if sock.unix.name else None
    if kind == "inet":
        i = sock.inet
        if not i.sport:
            return None
        return ("inet", sock.family, sock.type, i.protocol, i.src, i.sport, i.dst, i.dport)
    if kind == "netlink":
        n = sock.netlink
        return ("netlink", n.protocol, n.portid) if n.portid else None
    return None


def _mount_summary(m: mount_pb2.Mount) -> dict[str, Any]:
    return {"mount_point": text(m.mount_point), "fstype": m.fstype, "source": text(m.source),
            "options": m.options}


# ------------------------------------------------------------ union-find


class _Groups:
    """Connected components of (side, group id) nodes linked by shared members."""

    def __init__(self) -> None:
        self.parent: dict[Any, Any] = {}

    def find(self, x: Any) -> Any:
        parent = self.parent
        parent.setdefault(x, x)
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    def union(self, x: Any, y: Any) -> None:
        rx, ry = self.find(x), self.find(y)
        if rx != ry:
            self.parent[ry] = rx

    def components(self) -> dict[Any, list[Any]]:
        out: dict[Any, list[Any]] = {}
        for node in list(self.parent):
            out.setdefault(self.find(node), []).append(node)
        return out


def _partition_changes(groups_a: dict[int, list[Any]], groups_b: dict[int, list[Any]],
                       stable: Iterable[tuple[Any, int, int]],
                       pid_of: Callable[[Any], int]
                       ) -> Iterator[tuple[str, list[Any], list[Any], set[int]]]:
    """Components whose sharing between processes differs: (op, holders A, holders B, pids).

    `groups_x` maps a group id (file id, share id) to its members; `stable`
    yields (member, id in A, id in B) for members present on both sides.
    Two sides agree when the sets of processes that share each object (groups
    spanning at least two processes) are the same within the component.
    """
    # Fast path: a group with exactly the same members on both sides is unchanged
    # (members are listed in snapshot order, so equal lists mean equal groups).
    same = ({tuple(m) for m in groups_a.values()} & {tuple(m) for m in groups_b.values()})
    if same:
        groups_a = {g: m for g, m in groups_a.items() if tuple(m) not in same}
        groups_b = {g: m for g, m in groups_b.items() if tuple(m) not in same}
    uf = _Groups()
    for gid in groups_a:
        uf.find(("a", gid))
    for gid in groups_b:
        uf.find(("b", gid))
    for _, ga, gb in stable:
        if ga in groups_a and gb in groups_b:
            uf.union(("a", ga), ("b", gb))
    for nodes in uf.components().values():
        held_a = [m for side, gid in nodes if side == "a" for m in groups_a[gid]]
        held_b = [m for side, gid in nodes if side == "b" for m in groups_b[gid]]
        shared_a = {frozenset(map(pid_of, groups_a[g])) for s, g in nodes if s == "a"}
        shared_b = {frozenset(map(pid_of, groups_b[g])) for s, g in nodes if s == "b"}
        shared_a = {ps for ps in shared_a if len(ps) > 1}
        shared_b = {ps for ps in shared_b if len(ps) > 1}
        if shared_a == shared_b:
            continue
        op = "changed" if held_a and held_b else ("added" if held_b else "removed")
        pids = {pid_of(m) for m in held_a} | {pid_of(m) for m in held_b}
        yield op, held_a, held_b, pids


# ------------------------------------------------------------ the diff


def _version(snap: Snapshot) -> tuple[int, int]:
    inv = snap.inventory
    return (inv.format_major or framing.FORMAT_MAJOR, inv.format_minor)


def _version_text(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def _images(snap: Snapshot) -> set[str] | None:
    """Image names the snapshot was loaded from; None for an in-memory dump (all of them)."""
    return {rec.name for rec in snap.inventory.images} or None


class _Differ:
    def __init__(self, a: Snapshot, b: Snapshot, include_volatile: bool) -> None:
        self.a, self.b = a, b
        va, vb = _version(a), _version(b)
        older = None if va == vb else ("a" if va < vb else "b")
        older_version = _version_text(min(va, vb))
        self.w = _Walker(include_volatile, older, older_version)
        self.versions = (_version_text(va), _version_text(vb))
        self.older = older
        images_a, images_b = _images(a), _images(b)
        self.absent: dict[str, str] = {}  # image name -> side that lacks it
        if older is not None:
            have = images_a if older == "a" else images_b
            other = images_b if older == "a" else images_a
            if have is not None:
                for name in (other or set()) - have:
                    self.absent[name] = older
        self.matched: list[int] = []
        self.no_file_ids: set[int] = set()  # pids whose open-file identity is unknown
        self.tables_differ = False  # some matched fd table differs (file ids included)
        self.stable_fds: list[tuple[tuple[int, int], int, int]] = []

    def run(self) -> Diff:
        self._processes()
        if self._have("fds.img", "fd"):
            self._fds()
            self._sharing_files()
        self._sharing_tasks()
        if self._have("mm.img", "vma"):
            self._memory()
        if self._have("sockets.img", "socket"):
            self._sockets()
        if self._have("mounts.img", "mount"):
            self._mounts()
        if self._have("ghosts.img", "ghost"):
            self._ghosts()
        missing = [Missing(what, path, side, reason, count)
                   for (what, path, side, reason), count in self.w.missing.items()]
        return Diff(sorted(self.w.changes, key=_order), missing, self.versions,
                    self.w.include_volatile)

    def _have(self, image: str, what: str) -> bool:
        side = self.absent.get(image)
        if side is None:
            return True
        self.w.note_missing(what, None, side, f"{image} is not in the format "
                            f"{self.w.older_version} snapshot")
        return False

    # -- processes and threads ---------------------------------------------

    def _processes(self) -> None:
        w, a, b = self.w, self.a, self.b
        by_a, by_b = a.by_pid, b.by_pid
        for pid, pa in by_a.items():
            pb = by_b.get(pid)
            if pb is None or not _same_process(pa, pb):
                w.emit(_Scope("process", pid, "tree"), "removed", None,
                       _process_summary(a, pa), None)
                continue
            self.matched.append(pid)
            if w.same(pa, pb):
                continue
            scope = _Scope("process", pid, None, _PROCESS_AREAS, "proc")
            w.walk(pa, pb, scope)
            self._namespaces(pa, pb)
            self._threads(pa, pb)
        for pid, pb in by_b.items():
            pa = by_a.get(pid)
            if pa is None or not _same_process(pa, pb):
                w.emit(_Scope("process", pid, "tree"), "added", None, None,
                       _process_summary(b, pb))

    def _namespaces(self, pa: process_pb2.Process, pb: process_pb2.Process) -> None:
        if pa.namespaces == pb.namespaces:
            return
        ia = {ns.type: ns for ns in pa.namespaces}
        ib = {ns.type: ns for ns in pb.namespaces}
        scope = _Scope("namespace", pa.pid, "ns")
        unknown = self.w.unreadable_of(pa, pb)
        for ns_type in sorted(set(ia) | set(ib)):
            na, nb = ia.get(ns_type), ib.get(ns_type)
            if na is not None and nb is not None and na == nb:
                continue
            why = self.w._unknown(unknown, f"namespaces.{ns_type}")
            if why is not None:
                self.w.note_missing("namespace", ns_type, *why)
                continue
            if (na is None and self.w.older == "a") or (nb is None and self.w.older == "b"):
                self.w.note_missing("namespace", ns_type, self.w.older or "",
                                    f"not recorded by format {self.w.older_version}")
                continue
            op = "added" if na is None else ("removed" if nb is None else "changed")
            self.w.emit(scope, op, ns_type, na.inode if na else None,
                        nb.inode if nb else None)

    def _threads(self, pa: process_pb2.Process, pb: process_pb2.Process) -> None:
        if pa.threads == pb.threads:
            return
        w = self.w
        ta = {t.tid: t for t in pa.threads}
        tb = {t.tid: t for t in pb.threads}
        for tid, t in ta.items():
            other = tb.get(tid)
            scope = _Scope("thread", pa.pid, None, _THREAD_AREAS, "threads", tid=tid)
            if other is None:
                w.emit(scope, "removed", None, {"comm": text(t.comm), "state": t.state}, None)
            elif not w.same(t, other):
                w.walk(t, other, scope,
                       skip=_LEADER_DUPLICATES if tid == pa.pid else frozenset())
        for tid, t in tb.items():
            if tid not in ta:
                w.emit(_Scope("thread", pa.pid, None, _THREAD_AREAS, "threads", tid=tid),
                       "added", None, None, {"comm": text(t.comm), "state": t.state})

    # -- fds -------------------------------------------------------------

    def _fds(self) -> None:
        w = self.w
        tables_a, tables_b = self.a.fds_by_pid, self.b.fds_by_pid
        for pid in self.matched:
            ta, tb = tables_a.get(pid), tables_b.get(pid)
            if ta is None or tb is None:
                continue
            unknown = w.unreadable_of(ta, tb)
            if "fds" in unknown or "file_id" in unknown:
                self.no_file_ids.add(pid)
            if "fds" in unknown:
                w.note_missing("fd", None, *unknown["fds"])
                continue
            if ta == tb:
                self.stable_fds.extend(((pid, fd.fd), fd.file_id, fd.file_id)
                                       for fd in ta.fds)
                continue
            self.tables_differ = True
            w.walk(ta, tb, _Scope("fd_table", pid, "fds"))
            fa = {fd.fd: fd for fd in ta.fds}
            fb = {fd.fd: fd for fd in tb.fds}
            for n, da in fa.items():
                db = fb.get(n)
                scope = _Scope("fd", pid, "fds", fd=n)
                if db is None:
                    w.emit(scope, "removed", None, _fd_summary(da), None)
                    continue
                if _fd_identity(da) != _fd_identity(db):
                    w.emit(scope, "replaced", None, _fd_summary(da), _fd_summary(db))
                    continue
                self.stable_fds.append(((pid, n), da.file_id, db.file_id))
                if not w.same(da, db):
                    w.walk(da, db, scope)
            for n, db in fb.items():
                if n not in fa:
                    w.emit(_Scope("fd", pid, "fds", fd=n), "added", None, None,
                           _fd_summary(db))

    def _sharing_files(self) -> None:
        if not self.tables_differ:
            return  # every table equal, file ids included: the same partition
        matched = set(self.matched) - self.no_file_ids

        def groups(snap: Snapshot) -> dict[int, list[tuple[int, int]]]:
            out: dict[int, list[tuple[int, int]]] = {}
            for table in snap.fds:
                pid = table.pid
                if pid not in matched:
                    continue
                for fd in table.fds:
                    file_id = fd.file_id
                    if file_id:
                        group = out.get(file_id)
                        if group is None:
                            out[file_id] = [(pid, fd.fd)]
                        else:
                            group.append((pid, fd.fd))
            return out

        def fd_at(snap: Snapshot, holder: tuple[int, int]) -> files_pb2.Fd:
            return next(fd for fd in snap.fds_by_pid[holder[0]].fds if fd.fd == holder[1])

        ga, gb = groups(self.a), groups(self.b)
        stable = [(h, fa, fb) for h, fa, fb in self.stable_fds if fa and fb]
        for op, held_a, held_b, pids in _partition_changes(ga, gb, stable, lambda h: h[0]):
            sample = fd_at(self.b, held_b[0]) if held_b else fd_at(self.a, held_a[0])
            self.w.emit(_Scope("sharing", min(pids), "sharing", key="file " + fd_target(sample),
                               pids=tuple(sorted(pids))), op, "holders",
                        [f"{p}:{n}" for p, n in sorted(held_a)] or None,
                        [f"{p}:{n}" for p, n in sorted(held_b)] or None)

    def _sharing_tasks(self) -> None:
        by_a, by_b = self.a.by_pid, self.b.by_pid
        for kind in _TASK_SHARES:
            ga: dict[int, list[int]] = {}
            gb: dict[int, list[int]] = {}
            stable = []
            for pid in self.matched:
                pa, pb = by_a[pid], by_b[pid]
                ia, ib = getattr(pa.shares, kind), getattr(pb.shares, kind)
                if ia:
                    ga.setdefault(ia, []).append(pid)
                if ib:
                    gb.setdefault(ib, []).append(pid)
                if ia and ib:
                    stable.append((pid, ia, ib))
            for op, held_a, held_b, pids in _partition_changes(ga, gb, stable, lambda p: p):
                self.w.emit(_Scope("sharing", min(pids), "sharing", key=kind,
                                   pids=tuple(sorted(pids))), op, kind,
                            _pid_groups(held_a, ga), _pid_groups(held_b, gb))

    # -- memory ------------------------------------------------------------

    def _memory(self) -> None:
        w = self.w
        mem_a, mem_b = self.a.memory_by_pid, self.b.memory_by_pid
        for pid in self.matched:
            ma, mb = mem_a.get(pid), mem_b.get(pid)
            if ma is None or mb is None or w.same(ma, mb):
                continue
            w.walk(ma, mb, _Scope("memory", pid, "vmas"))
            xs, ys = ma.vmas, mb.vmas
            if len(xs) == len(ys) and all(
                    x.start == y.start and _vma_identity(x) == _vma_identity(y)
                    for x, y in zip(xs, ys, strict=True) if x != y):
                for x, y in zip(xs, ys, strict=True):  # the same VMAs, in the same order
                    if not w.same(x, y):
                        w.walk(x, y, _Scope("vma", pid, "vmas", start=x.start))
                continue
            va = {(v.start, _vma_identity(v)): v for v in ma.vmas}
            vb = {(v.start, _vma_identity(v)): v for v in mb.vmas}
            for key, x in va.items():
                y = vb.get(key)
                scope = _Scope("vma", pid, "vmas", start=x.start)
                if y is None:
                    w.emit(scope, "removed", None, _vma_summary(x), None)
                elif not w.same(x, y):
                    w.walk(x, y, scope)
            for key, y in vb.items():
                if key not in va:
                    w.emit(_Scope("vma", pid, "vmas", start=y.start), "added", None, None,
                           _vma_summary(y))

    # -- sockets -------------------------------------------------------------

    def _sockets(self) -> None:
        w = self.w
        holders_a, holders_b = _socket_holders(self.a), _socket_holders(self.b)
        sa, sb = self.a.sockets_by_inode, self.b.sockets_by_inode
        pairs = [(sa[i], sb[i]) for i in sa if i in sb]
        left_a = [s for i, s in sa.items() if i not in sb]
        left_b = [s for i, s in sb.items() if i not in sa]
        by_tuple_a = _unique_by(left_a, _socket_tuple)
        by_tuple_b = _unique_by(left_b, _socket_tuple)
        retupled = set()
        for tup, x in by_tuple_a.items():
            y = by_tuple_b.get(tup)
            if y is not None:
                pairs.append((x, y))
                retupled.update((x.inode, y.inode))

        def scope_for(inode_a: int | None, inode_b: int | None, sock: sockets_pb2.Socket
                      ) -> _Scope:
            pids = sorted(set(holders_a.get(inode_a, ())) | set(holders_b.get(inode_b, ())))
            return _Scope("socket", pids[0] if pids else None, "sockets",
                          key=f"{sock.inode} {socket_label(sock)}", pids=tuple(pids))

        for x, y in pairs:
            if w.same(x, y):
                continue
            scope = scope_for(x.inode, y.inode, y)
            if x.inode != y.inode:
                w.emit(scope, "changed", "inode", x.inode, y.inode)
            w.walk(x, y, scope)
        for x in left_a:
            if x.inode not in retupled:
                w.emit(scope_for(x.inode, None, x), "removed", None, _socket_summary(x), None)
        for y in left_b:
            if y.inode not in retupled:
                w.emit(scope_for(None, y.inode, y), "added", None, None, _socket_summary(y))

    # -- mounts and ghosts -----------------------------------------------------

    def _mounts(self) -> None:
        w = self.w
        members = _mount_members(self.a, self.b)
        na, nb = self.a.mounts_by_ns, self.b.mounts_by_ns
        for ino in sorted(set(na) | set(nb)):
            x, y = na.get(ino), nb.get(ino)
            pids = tuple(sorted(members.get(ino, ())))
            scope = _Scope("mount", pids[0] if pids else None, "mounts", key=f"mnt:{ino}",
                           pids=pids)
            if x is None or y is None:
                w.emit(_Scope("namespace", scope.pid, "mounts", key=f"mnt:{ino}", pids=pids),
                       "added" if x is None else "removed", None,
                       None if x is None else {"mounts": len(x.mounts)},
                       None if y is None else {"mounts": len(y.mounts)})
                continue
            if x == y:
                continue
            unknown = w.unreadable_of(x, y)
            if "mounts" in unknown:
                w.note_missing("mount", None, *unknown["mounts"])
                continue
            w.walk(x, y, scope)
            ma = {m.mount_id: m for m in x.mounts}
            mb = {m.mount_id: m for m in y.mounts}
            for mid, m in ma.items():
                other = mb.get(mid)
                sub = _Scope("mount", scope.pid, "mounts",
                             key=f"mnt:{ino} {mid} {text(m.mount_point)}", pids=pids)
                if other is None:
                    w.emit(sub, "removed", None, _mount_summary(m), None)
                elif m != other:
                    w.walk(m, other, sub)
            for mid, m in mb.items():
                if mid not in ma:
                    w.emit(_Scope("mount", scope.pid, "mounts",
                                  key=f"mnt:{ino} {mid} {text(m.mount_point)}", pids=pids),
                           "added", None, None, _mount_summary(m))

    def _ghosts(self) -> None:
        w = self.w
        ga = {(g.dev, g.ino): g for g in self.a.ghosts}
        gb = {(g.dev, g.ino): g for g in self.b.ghosts}
        for ident in sorted(set(ga) | set(gb)):
            x, y = ga.get(ident), gb.get(ident)
            sample = y if y is not None else x
            assert sample is not None
            scope = _Scope("ghost", None, "fds", key=f"{text(sample.path)} ino {ident[1]}")
            if x is None or y is None:
                summary = {"path": text(sample.path), "size": sample.size,
                           "captured": sample.captured}
                w.emit(scope, "added" if x is None else "removed", None,
                       None if x is None else summary, None if y is None else summary)
            elif x != y:
                w.walk(x, y, scope)


def _same_process(pa: process_pb2.Process, pb: process_pb2.Process) -> bool:
    """Same pid and start time (0, not read, matches anything)."""
    return not pa.start_time or not pb.start_time or pa.start_time == pb.start_time


def _fd_identity(fd: files_pb2.Fd) -> tuple[Any, ...]:
    """What makes two fds at one number the same open file.

    dev is left out when stat() failed on either dump (then it is 0); the
    access mode cannot change on an open file, so a new one means a new file.
    """
    state = fd.WhichOneof("state")
    extra: tuple[Any, ...] = ()
    if state == "socket":
        extra = (fd.socket.inode,)
    elif state == "pipe":
        extra = (fd.pipe.pipe_ino,)
    elif state == "eventfd" and fd.eventfd.HasField("id"):
        extra = (fd.eventfd.id,)
    stat_ok = not any(u.field == "stat" for u in fd.unreadable)
    return (fd.kind, fd.dev if stat_ok else None, fd.ino, fd.path, fd.flags & os.O_ACCMODE,
            *extra)


def _vma_identity(vma: mm_pb2.Vma) -> tuple[Any, ...]:
    """The file behind a VMA (map_files identity when known), or its kind for anon memory."""
    if vma.map_file_known:
        return (vma.kind, vma.map_file_dev, vma.map_file_ino)
    return (vma.kind, vma.dev_major, vma.dev_minor, vma.inode)


def _pid_groups(members: list[int], groups: dict[int, list[int]]) -> list[list[int]] | None:
    """The groups (of two or more pids) among `members`, as sorted lists."""
    wanted = set(members)
    out = sorted(sorted(g) for g in groups.values() if len(g) > 1 and wanted & set(g))
    return out or None


def _socket_holders(snap: Snapshot) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for table in snap.fds:
        for fd in table.fds:
            if fd.HasField("socket"):
                out.setdefault(fd.socket.inode, []).append(table.pid)
    return out


def _unique_by(items: list[Any], keyfn: Callable[[Any], Any]) -> dict[Any, Any]:
    """items by key, leaving out None keys and keys that are not unique."""
    out: dict[Any, Any] = {}
    dup: set[Any] = set()
    for item in items:
        key = keyfn(item)
        if key is None:
            continue
        if key in out:
            dup.add(key)
        out[key] = item
    for key in dup:
        del out[key]
    return out


def _mount_members(*snaps: Snapshot) -> dict[int, set[int]]:
    out: dict[int, set[int]] = {}
    for snap in snaps:
        for proc in snap.processes:
            ino = namespace_inode(proc, "mnt")
            if ino is not None:
                out.setdefault(ino, set()).add(proc.pid)
    return out


_WHAT_ORDER = {w: i for i, w in enumerate(WHATS)}
_OP_ORDER = {"removed": 0, "replaced": 1, "changed": 2, "added": 3}


def _order(ch: Change) -> tuple[Any, ...]:
    """Per process by pid, then by kind of object, fd/start/tid, key and field."""
    return (ch.pid is None, ch.pid or 0,
            0 if ch.what == "process" and ch.field is None else 1,
            _WHAT_ORDER.get(ch.what, 99), ch.tid or 0,
            -1 if ch.fd is None else ch.fd, ch.start or 0, ch.key or "",
            ch.field or "", _OP_ORDER.get(ch.op, 9))


def diff(a: Snapshot, b: Snapshot, *, include_volatile: bool = False,
         pids: Collection[int] | None = None, only: Iterable[str] | str | None = None
         ) -> Diff:
    """Every difference between snapshots `a` (before) and `b` (after).

    `include_volatile` also compares the VOLATILE fields. `pids` keeps the
    changes involving those processes; `only` keeps the changes in those
    areas (AREAS, e.g. "tree,fds"). Raises UsageError for an unknown area.
    """
    areas = parse_areas(only) if only is not None else None
    result = _Differ(a, b, include_volatile).run()
    if pids is not None or areas is not None:
        result = result.filter(pids=None if pids is None else set(pids), only=areas)
    return result
