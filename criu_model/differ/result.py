"""The result of a diff: Change, Missing, Diff, and the --only areas.

Kept apart from the comparison itself so the renderers and the CLI can use
the result types without the matching machinery.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from criu_model.errors import UsageError

OPS = ("added", "removed", "changed", "replaced")
WHATS = ("process", "namespace", "thread", "fd", "fd_table", "ghost", "socket", "vma",
         "memory", "mount", "sharing")
# --only categories. Every change belongs to exactly one.
AREAS = ("tree", "proc", "threads", "creds", "limits", "signals", "timers", "sched", "ns",
         "cgroups", "fds", "sockets", "vmas", "memory", "mounts", "sharing")
_AREA_ALIASES = {"namespaces": "ns", "tasks": "tree", "files": "fds", "pages": "memory",
                 "vma": "vmas", "fd": "fds", "socket": "sockets", "mount": "mounts",
                 "cgroup": "cgroups", "thread": "threads", "timer": "timers",
                 "signal": "signals", "rlimits": "limits", "cred": "creds"}

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
    `holders` is set when one change stands for the same change of one open
    file in several processes: every (pid, fd) that holds it; `pid`/`fd` are
    then the first holder's.
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
    holders: tuple[tuple[int, int], ...] = ()

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
        """Counts per kind of object; an object with several changed fields counts once.

        ``not_comparable`` counts the fields (and whole collections or images) not
        compared because one side does not know them: the counts of ``missing``."""
        out: dict[str, Any] = {
            "processes": dict.fromkeys(("added", "removed", "changed"), 0),
            "threads": dict.fromkeys(("added", "removed", "changed"), 0),
            "fds": dict.fromkeys(("opened", "closed", "replaced", "changed"), 0),
            "vmas": dict.fromkeys(("added", "removed", "changed"), 0),
            "sockets": dict.fromkeys(("added", "removed", "changed"), 0),
            "mounts": dict.fromkeys(("added", "removed", "changed"), 0),
            "sharing": dict.fromkeys(("added", "removed", "changed"), 0),
            "memory": dict.fromkeys(("vmas", "changed", "added", "removed"), 0),
            "changes": len(self.changes),
            "not_comparable": sum(m.count for m in self.missing),
        }
        changed: dict[str, set[Any]] = {k: set() for k in _SUMMARY_BUCKETS.values()}
        whole_process: set[int | None] = set()
        touched: set[int | None] = set()
        for ch in self.changes:
            if is_page_change(ch):
                out["memory"]["vmas"] += 1
                for name in ("changed", "added", "removed"):
                    out["memory"][name] += ch.after.get(name, 0)
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
        missing = [m for m in self.missing
                   if areas is None or m.what != "memory" or "memory" in areas]
        return Diff(keep, missing, self.versions, self.include_volatile)


def is_page_change(ch: Change) -> bool:
    """A change of memory contents (dump --pages), with its page counts in ``after``."""
    return ch.what == "memory" and ch.field == "pages" and isinstance(ch.after, dict)


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


_WHAT_ORDER = {w: i for i, w in enumerate(WHATS)}
_OP_ORDER = {"removed": 0, "replaced": 1, "changed": 2, "added": 3}


def order_key(ch: Change) -> tuple[Any, ...]:
    """Per process by pid, then by kind of object, fd/start/tid, key and field."""
    return (ch.pid is None, ch.pid or 0,
            0 if ch.what == "process" and ch.field is None else 1,
            _WHAT_ORDER.get(ch.what, 99), ch.tid or 0,
            -1 if ch.fd is None else ch.fd, ch.start or 0, ch.key or "",
            ch.field or "", _OP_ORDER.get(ch.op, 9))
