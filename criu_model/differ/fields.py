"""Generic, descriptor-driven comparison of two matched protobuf messages.

Every modeled field of a matched pair is compared from the protobuf
descriptors, so a field added to a .proto is diffed without touching this
package. Keys and sub-collections that matching handles (_MATCHED) and
numbers private to one snapshot (_NEVER) are skipped here.

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
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from criu_model.differ.result import Change
from criu_model.names import enum_value, message_to_json, text

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
_BIG_BYTES = 256  # longer bytes values are shown as a size and a digest


@dataclass(frozen=True, slots=True)
class Scope:
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
        return enum_value(desc, value)
    return value


def _norm(path: str) -> str:
    """'timers[3].sigval' -> 'timers.3.sigval', the form Unreadable names are compared in."""
    return path.replace("[", ".").replace("]", "")


class Walker:
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

    def emit(self, scope: Scope, op: str, path: str | None, before: Any, after: Any,
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

    def unknown_reason(self, unknown: dict[str, tuple[str, str]], path: str
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

    def _report(self, scope: Scope, path: str, plan: _FieldPlan, before: Any, after: Any,
                a_absent: bool, b_absent: bool, unknown: dict[str, tuple[str, str]],
                op: str = "changed") -> None:
        why = self.unknown_reason(unknown, path)
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

    def walk(self, a: Message, b: Message, scope: Scope, prefix: str = "",
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
                if self.unknown_reason(unknown, path) is None:
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
                inner = self._item_fields(unknown, path)
                if inner:
                    self._items_without(scope, path, plan, va, vb, inner)
                    continue
                self._report(scope, path, plan, [message_to_json(v) for v in va],
                             [message_to_json(v) for v in vb], not va, not vb, unknown)
            elif kind == _KEYED_LIST:
                self._keyed(va, vb, scope, path, plan, unknown)
            else:
                self._map(va, vb, scope, path, plan, unknown)

    @staticmethod
    def _item_fields(unknown: dict[str, tuple[str, str]], path: str
                     ) -> dict[str, tuple[str, str]]:
        """Fields of a repeated message's items one side marked unreadable ("locks.dev"),
        by item field name; empty when the list itself is marked (or nothing is)."""
        if not unknown:
            return {}
        norm = _norm(path)
        if any(norm == name or norm.startswith(name + ".") or norm.startswith(name + "_")
               for name in unknown):
            return {}
        prefix = norm + "."
        return {name[len(prefix):].split(".")[0]: why for name, why in unknown.items()
                if name.startswith(prefix)}

    def _items_without(self, scope: Scope, path: str, plan: _FieldPlan, va: Any, vb: Any,
                       inner: dict[str, tuple[str, str]]) -> None:
        """A repeated message compared item by item without the fields a side does not
        know: those are noted as not comparable, the rest must agree."""
        def stripped(items: Any) -> list[Any]:
            out = []
            for item in items:
                copy = type(item)()
                copy.CopyFrom(item)
                for name in inner:
                    if name in copy.DESCRIPTOR.fields_by_name:
                        copy.ClearField(name)
                out.append(copy)
            return out

        for name, (side, reason) in inner.items():
            self.note_missing(scope.what, f"{path}.{name}", side, reason)
        ca, cb = stripped(va), stripped(vb)
        if ca != cb:
            self.emit(scope, "changed", path, [message_to_json(v) for v in ca],
                      [message_to_json(v) for v in cb], plan.volatile)

    def _keyed(self, va: Any, vb: Any, scope: Scope, path: str, plan: _FieldPlan,
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

    def _map(self, va: Any, vb: Any, scope: Scope, path: str, plan: _FieldPlan,
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
