"""Matching objects across two snapshots, then comparing each matched pair.

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
    sharing     as a partition, see criu_model.differ.sharing
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from criu_model.differ.fields import Scope, Walker
from criu_model.differ.memory import from_criu, memory_contents
from criu_model.differ.partition import file_sharing, task_sharing
from criu_model.differ.result import Change, Diff, Missing, order_key
from criu_model.differ.summaries import (
    fd_summary,
    fd_target,
    mount_summary,
    process_summary,
    socket_label,
    socket_summary,
    vma_summary,
)
from criu_model.images import framing
from criu_model.images.pb import files_pb2, mm_pb2, mount_pb2, process_pb2, sockets_pb2
from criu_model.kernel.flags import ACCMODE
from criu_model.names import text
from criu_model.snapshot import Snapshot, namespace_inode

_PROCESS_AREAS = {
    "ppid": "tree", "pgid": "tree", "sid": "tree", "ns_pids": "tree", "ns_pgids": "tree",
    "ns_sids": "tree", "start_time": "tree", "state": "tree", "tty_nr": "tree", "tpgid": "tree",
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


def _version(snap: Snapshot) -> tuple[int, int]:
    inv = snap.inventory
    return (inv.format_major or framing.FORMAT_MAJOR, inv.format_minor)


def _version_text(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def _images(snap: Snapshot) -> set[str] | None:
    """Image names the snapshot was loaded from; None for an in-memory dump (all of them)."""
    return {rec.name for rec in snap.inventory.images} or None


class Differ:
    """One comparison of snapshot `a` (before) with `b` (after); `run()` gives the Diff."""

    def __init__(self, a: Snapshot, b: Snapshot, include_volatile: bool) -> None:
        self.a, self.b = a, b
        va, vb = _version(a), _version(b)
        older = None if va == vb else ("a" if va < vb else "b")
        older_version = _version_text(min(va, vb))
        self.w = Walker(include_volatile, older, older_version)
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
        if self._have("pagemap.img", "memory"):
            memory_contents(self.w, self.a, self.b, self.matched)
        if self._have("sockets.img", "socket"):
            self._sockets()
        if self._have("mounts.img", "mount"):
            self._mounts()
        if self._have("ghosts.img", "ghost"):
            self._ghosts()
        missing = [Missing(what, path, side, reason, count)
                   for (what, path, side, reason), count in self.w.missing.items()]
        return Diff(sorted(self.w.changes, key=order_key), missing, self.versions,
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
                w.emit(Scope("process", pid, "tree"), "removed", None,
                       process_summary(a, pa), None)
                continue
            self.matched.append(pid)
            if w.same(pa, pb):
                continue
            scope = Scope("process", pid, None, _PROCESS_AREAS, "proc")
            w.walk(pa, pb, scope)
            self._namespaces(pa, pb)
            self._threads(pa, pb)
        for pid, pb in by_b.items():
            pa = by_a.get(pid)
            if pa is None or not _same_process(pa, pb):
                w.emit(Scope("process", pid, "tree"), "added", None, None,
                       process_summary(b, pb))

    def _namespaces(self, pa: process_pb2.Process, pb: process_pb2.Process) -> None:
        if pa.namespaces == pb.namespaces:
            return
        ia = {ns.type: ns for ns in pa.namespaces}
        ib = {ns.type: ns for ns in pb.namespaces}
        scope = Scope("namespace", pa.pid, "ns")
        unknown = self.w.unreadable_of(pa, pb)
        for ns_type in sorted(set(ia) | set(ib)):
            na, nb = ia.get(ns_type), ib.get(ns_type)
            if na is not None and nb is not None and (na.inode, na.dev) == (nb.inode, nb.dev):
                continue   # owner and parent never change; 0 on one side: an older format
            why = self.w.unknown_reason(unknown, f"namespaces.{ns_type}")
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
        # A process marks per-thread fields it could not read as "threads.FIELD"
        # (CRIU records no thread state): not comparable in any of its threads.
        unknown = _inner(w.unreadable_of(pa, pb), "threads")
        if "" in unknown:
            w.note_missing("thread", None, *unknown[""])
            return
        ta = {t.tid: t for t in pa.threads}
        tb = {t.tid: t for t in pb.threads}
        for tid, t in ta.items():
            other = tb.get(tid)
            scope = Scope("thread", pa.pid, None, _THREAD_AREAS, "threads", tid=tid)
            if other is None:
                w.emit(scope, "removed", None, {"comm": text(t.comm), "state": t.state}, None)
            elif not w.same(t, other):
                w.walk(t, other, scope, unknown=unknown,
                       skip=_LEADER_DUPLICATES if tid == pa.pid else frozenset())
        for tid, t in tb.items():
            if tid not in ta:
                w.emit(Scope("thread", pa.pid, None, _THREAD_AREAS, "threads", tid=tid),
                       "added", None, None, {"comm": text(t.comm), "state": t.state})

    # -- fds -------------------------------------------------------------

    def _fds(self) -> None:
        first = len(self.w.changes)
        self._fd_pairs()
        self.w.changes[first:] = _merge_shared(self.w.changes[first:], self.a, self.b,
                                               self.no_file_ids)

    def _fd_pairs(self) -> None:
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
            w.walk(ta, tb, Scope("fd_table", pid, "fds"))
            fa = {fd.fd: fd for fd in ta.fds}
            fb = {fd.fd: fd for fd in tb.fds}
            for n, da in fa.items():
                db = fb.get(n)
                scope = Scope("fd", pid, "fds", fd=n)
                if db is None:
                    w.emit(scope, "removed", None, fd_summary(da), None)
                    continue
                if _fd_identity(da, db) != _fd_identity(db, da):
                    w.emit(scope, "replaced", None, fd_summary(da), fd_summary(db))
                    continue
                self.stable_fds.append(((pid, n), da.file_id, db.file_id))
                if not w.same(da, db):
                    w.walk(da, db, scope)
            for n, db in fb.items():
                if n not in fa:
                    w.emit(Scope("fd", pid, "fds", fd=n), "added", None, None,
                           fd_summary(db))

    def _sharing_files(self) -> None:
        if not self.tables_differ:
            return  # every table equal, file ids included: the same partition
        file_sharing(self.w, self.a, self.b, set(self.matched) - self.no_file_ids,
                     self.stable_fds)

    def _sharing_tasks(self) -> None:
        task_sharing(self.w, self.a, self.b, self.matched)

    # -- memory ------------------------------------------------------------

    def _memory(self) -> None:
        w = self.w
        mem_a, mem_b = self.a.memory_by_pid, self.b.memory_by_pid
        for pid in self.matched:
            ma, mb = mem_a.get(pid), mem_b.get(pid)
            if ma is None or mb is None or w.same(ma, mb):
                continue
            w.walk(ma, mb, Scope("memory", pid, "vmas"))
            # A memory map marks fields of all its VMAs as "vmas.FIELD" (CRIU images name
            # mapped files by path, with no dev/inode): not compared in any VMA, and
            # VMAs are then matched by kind and path instead of file identity.
            unknown = _inner(w.unreadable_of(ma, mb), "vmas")
            if "" in unknown:
                w.note_missing("vma", None, *unknown[""])
                continue
            ident = _vma_name if any(f in unknown for f in _VMA_IDENTITY_FIELDS) \
                else _vma_identity
            xs, ys = self._vvar_folded(list(ma.vmas), list(mb.vmas))
            if len(xs) == len(ys) and all(
                    x.start == y.start and ident(x) == ident(y)
                    for x, y in zip(xs, ys, strict=True) if x != y):
                for x, y in zip(xs, ys, strict=True):  # the same VMAs, in the same order
                    if not w.same(x, y):
                        w.walk(x, y, Scope("vma", pid, "vmas", start=x.start), unknown=unknown)
                continue
            va = {(v.start, ident(v)): v for v in xs}
            vb = {(v.start, ident(v)): v for v in ys}
            for key, x in va.items():
                y = vb.get(key)
                scope = Scope("vma", pid, "vmas", start=x.start)
                if y is None:
                    w.emit(scope, "removed", None, vma_summary(x), None)
                elif not w.same(x, y):
                    w.walk(x, y, scope, unknown=unknown)
            for key, y in vb.items():
                if key not in va:
                    w.emit(Scope("vma", pid, "vmas", start=y.start), "added", None, None,
                           vma_summary(y))

    def _vvar_folded(self, xs: list[mm_pb2.Vma], ys: list[mm_pb2.Vma]
                     ) -> tuple[list[mm_pb2.Vma], list[mm_pb2.Vma]]:
        """The two VMA lists, with a criu-model side's [vvar] + [vvar_vclock] as one VMA
        where a CRIU side has one [vvar] spanning both (CRIU merges what Linux 6.13
        split): noted as not comparable, not reported as a VMA added and an end changed."""
        for criu_side, single, split in (("a", xs, ys), ("b", ys, xs)):
            if not from_criu(self.a if criu_side == "a" else self.b):
                continue
            merged = _fold_vvar(single, split)
            if merged is not None:
                self.w.note_missing("vma", "vvar_vclock", criu_side, _VVAR_MERGED)
                return (xs, merged) if criu_side == "a" else (merged, ys)
        return xs, ys

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
                      ) -> Scope:
            pids = sorted(set(holders_a.get(inode_a, ())) | set(holders_b.get(inode_b, ())))
            return Scope("socket", pids[0] if pids else None, "sockets",
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
                w.emit(scope_for(x.inode, None, x), "removed", None, socket_summary(x), None)
        for y in left_b:
            if y.inode not in retupled:
                w.emit(scope_for(None, y.inode, y), "added", None, None, socket_summary(y))

    # -- mounts and ghosts -----------------------------------------------------

    def _mounts(self) -> None:
        w = self.w
        na, nb = self.a.mounts_by_ns, self.b.mounts_by_ns
        members_a, members_b = _mount_members(self.a), _mount_members(self.b)
        pairs = [(ino, ino) for ino in sorted(na.keys() & nb.keys())
                 if _ns_named(na[ino]) and _ns_named(nb[ino])]
        paired = {ino for ino, _ in pairs}
        left_a = [ino for ino in sorted(na) if ino not in paired]
        left_b = [ino for ino in sorted(nb) if ino not in paired]
        # A namespace numbered by an id that is not its inode (CRIU's) is matched by
        # its members: the one namespace of the other side they share pids with.
        for ia, ib in _by_members(left_a, left_b, members_a, members_b):
            if not (_ns_named(na[ia]) and _ns_named(nb[ib])):
                pairs.append((ia, ib))
                left_a.remove(ia)
                left_b.remove(ib)
        # Then the same id on both sides (two dumps numbered alike, as two CRIU dumps are).
        for ino in [i for i in left_a if i in left_b]:
            pairs.append((ino, ino))
            left_a.remove(ino)
            left_b.remove(ino)
        for ino_a, ino_b in sorted(pairs):
            x, y = na[ino_a], nb[ino_b]
            ino = ino_b if _ns_named(y) or not _ns_named(x) else ino_a
            pids = tuple(sorted(members_a.get(ino_a, set()) | members_b.get(ino_b, set())))
            if x == y:
                continue
            scope = Scope("mount", pids[0] if pids else None, "mounts", key=f"mnt:{ino}",
                          pids=pids)
            unknown = w.unreadable_of(x, y)
            if ino_a != ino_b and "ns_inode" in unknown:
                w.note_missing("mount", "ns_inode", *unknown["ns_inode"])
            if "mounts" in unknown:
                w.note_missing("mount", None, *unknown["mounts"])
                continue
            w.walk(x, y, scope)
            ma = {m.mount_id: m for m in x.mounts}
            mb = {m.mount_id: m for m in y.mounts}
            for mid, m in ma.items():
                other = mb.get(mid)
                sub = Scope("mount", scope.pid, "mounts",
                            key=f"mnt:{ino} {mid} {text(m.mount_point)}", pids=pids)
                if other is None:
                    w.emit(sub, "removed", None, mount_summary(m), None)
                elif m != other:
                    w.walk(m, other, sub)
            for mid, m in mb.items():
                if mid not in ma:
                    w.emit(Scope("mount", scope.pid, "mounts",
                                 key=f"mnt:{ino} {mid} {text(m.mount_point)}", pids=pids),
                           "added", None, None, mount_summary(m))
        for side, inos, spaces in (("a", left_a, na), ("b", left_b, nb)):
            for ino in inos:
                pids = tuple(sorted(members_a.get(ino, set()) | members_b.get(ino, set())))
                summary = {"mounts": len(spaces[ino].mounts)}
                w.emit(Scope("namespace", pids[0] if pids else None, "mounts",
                             key=f"mnt:{ino}", pids=pids),
                       "removed" if side == "a" else "added", None,
                       summary if side == "a" else None, summary if side == "b" else None)

    def _ghosts(self) -> None:
        """Ghosts by (dev, ino); one whose dev or ino a side marks unreadable (CRIU names a
        memfd by its own id) by its path when that is unique, then by id."""
        w = self.w

        def named(g: files_pb2.GhostFile) -> bool:
            return not any(u.field in ("dev", "ino") for u in g.unreadable)

        ga = {(g.dev, g.ino): g for g in self.a.ghosts if named(g)}
        gb = {(g.dev, g.ino): g for g in self.b.ghosts if named(g)}
        pairs = [(ga[i], gb[i]) for i in sorted(ga.keys() & gb.keys())]
        left_a = [g for i, g in ga.items() if i not in gb] + \
            [g for g in self.a.ghosts if not named(g)]
        left_b = [g for i, g in gb.items() if i not in ga] + \
            [g for g in self.b.ghosts if not named(g)]
        for keyfn in (lambda g: g.path or None, lambda g: g.id or None):
            by_a, by_b = _unique_by(left_a, keyfn), _unique_by(left_b, keyfn)
            found = [(x, by_b[k]) for k, x in by_a.items()
                     if k in by_b and not (named(x) and named(by_b[k]))]
            pairs += found
            gone_a, gone_b = {id(x) for x, _ in found}, {id(y) for _, y in found}
            left_a = [g for g in left_a if id(g) not in gone_a]
            left_b = [g for g in left_b if id(g) not in gone_b]

        def scope_of(g: files_pb2.GhostFile) -> Scope:
            return Scope("ghost", None, "fds", key=f"{text(g.path)} ino {g.ino}")

        def summary(g: files_pb2.GhostFile) -> dict[str, Any]:
            return {"path": text(g.path), "size": g.size, "captured": g.captured}

        for x, y in pairs:
            if x != y:
                w.walk(x, y, scope_of(y if named(y) else x))
        for x in left_a:
            w.emit(scope_of(x), "removed", None, summary(x), None)
        for y in left_b:
            w.emit(scope_of(y), "added", None, None, summary(y))


def _file_ids(snap: Snapshot) -> dict[tuple[int, int], int]:
    return {(t.pid, fd.fd): fd.file_id for t in snap.fds for fd in t.fds if fd.file_id}


def _fd_key(snap: Snapshot, where: tuple[int, int]) -> str | None:
    """What a shared file is, for the one change that stands for all its holders."""
    table = snap.fds_by_pid.get(where[0])
    fd = next((f for f in table.fds if f.fd == where[1]), None) if table else None
    return fd_target(fd) if fd is not None else None


def _merge_shared(changes: list[Change], a: Snapshot, b: Snapshot, no_ids: set[int]
                  ) -> list[Change]:
    """One change for the same change of one open file in several processes.

    A file description shared by N processes (inherited, passed) whose position or
    state moved shows the same change at N (pid, fd)s: they become one Change with
    every holder, placed where the first was. Grouped by the file ids on the side(s)
    the change concerns, and only when field, before and after are equal; per-fd
    differences (close-on-exec, one holder's own replacement) stay apart.
    """
    ids_a, ids_b = _file_ids(a), _file_ids(b)
    groups: dict[tuple[Any, ...], list[Change]] = {}
    keys: list[tuple[Any, ...] | None] = []
    for ch in changes:
        key = None
        if ch.what == "fd" and ch.fd is not None and ch.pid is not None \
                and ch.pid not in no_ids:
            where = (ch.pid, ch.fd)
            ia = ids_a.get(where) if ch.op != "added" else 0
            ib = ids_b.get(where) if ch.op != "removed" else 0
            if ia is not None and ib is not None:
                key = (ch.op, ch.field, repr(ch.before), repr(ch.after), ia, ib)
                groups.setdefault(key, []).append(ch)
        keys.append(key)
    out: list[Change] = []
    for ch, key in zip(changes, keys, strict=True):
        group = groups.get(key) if key is not None else None
        if group is None or len({c.pid for c in group}) < 2:
            out.append(ch)
        elif group[0] is ch:
            holders = tuple(sorted((c.pid, c.fd) for c in group
                                   if c.pid is not None and c.fd is not None))
            out.append(replace(ch, pid=holders[0][0], fd=holders[0][1],
                               pids=tuple(sorted({p for p, _ in holders})), holders=holders,
                               key=_fd_key(a if ch.op == "removed" else b, holders[0])))
    return out


def _same_process(pa: process_pb2.Process, pb: process_pb2.Process) -> bool:
    """Same pid and start time (0, not read, matches anything)."""
    return not pa.start_time or not pb.start_time or pa.start_time == pb.start_time


def _fd_identity(fd: files_pb2.Fd, other: files_pb2.Fd) -> tuple[Any, ...]:
    """What makes two fds at one number the same open file (`other`: the fd it is held against).

    dev and ino are left out when either fd marks them unreadable (stat()
    failed, or a CRIU image that names files by path only: then they are 0 or
    CRIU's own numbers), the eventfd id likewise; the access mode cannot change
    on an open file, so a new one means a new file.
    """
    unknown = {u.field for u in fd.unreadable} | {u.field for u in other.unreadable}
    stat_ok = "stat" not in unknown
    state = fd.WhichOneof("state")
    extra: tuple[Any, ...] = ()
    if state == "socket":
        extra = (fd.socket.inode,)
    elif state == "pipe":
        extra = (fd.pipe.pipe_ino,)
    elif state == "eventfd" and fd.eventfd.HasField("id") and "eventfd.id" not in unknown \
            and "eventfd" not in unknown:
        extra = (fd.eventfd.id,)
    return (fd.kind, fd.dev if stat_ok and "dev" not in unknown else None,
            fd.ino if "ino" not in unknown else None, fd.path, fd.flags & ACCMODE, *extra)


_VVAR_MERGED = ("not in CRIU images: CRIU records [vvar] and [vvar_vclock] (split out of "
                "[vvar] in Linux 6.13) as one [vvar] VMA")


def _fold_vvar(single: list[mm_pb2.Vma], split: list[mm_pb2.Vma]) -> list[mm_pb2.Vma] | None:
    """`split` with an adjacent [vvar], [vvar_vclock] pair merged into one VMA, when
    `single` has one [vvar] VMA spanning exactly that pair; else None."""
    spans = {(v.start, v.end) for v in single
             if v.kind == mm_pb2.VMA_VVAR and v.path == b"[vvar]"}
    for i in range(len(split) - 1):
        x, y = split[i], split[i + 1]
        if (x.path == b"[vvar]" and y.path == b"[vvar_vclock]" and x.end == y.start
                and (x.start, y.end) in spans):
            whole = mm_pb2.Vma()
            whole.CopyFrom(x)
            whole.end = y.end
            return [*split[:i], whole, *split[i + 2:]]
    return None


def _vma_identity(vma: mm_pb2.Vma) -> tuple[Any, ...]:
    """The file behind a VMA (map_files identity when known), or its kind for anon memory."""
    if vma.map_file_known:
        return (vma.kind, vma.map_file_dev, vma.map_file_ino)
    return (vma.kind, vma.dev_major, vma.dev_minor, vma.inode)


def _vma_name(vma: mm_pb2.Vma) -> tuple[Any, ...]:
    """The file behind a VMA by name, for a side that lacks its dev/inode (CRIU images).

    The offset is not part of it (as in _vma_identity): a moved offset at the
    same start and path is a change of ``offset``.
    """
    return (vma.kind, vma.path, vma.deleted)


# Vma fields _vma_identity reads: when a side marks one unreadable, VMAs are matched by name.
_VMA_IDENTITY_FIELDS = ("map_file_known", "map_file_dev", "map_file_ino", "dev_major",
                        "dev_minor", "inode")


def _inner(unknown: dict[str, tuple[str, str]], name: str) -> dict[str, tuple[str, str]]:
    """The unreadable entries under `name.` (a parent's marks for its items), relative to them.

    A mark of `name` itself is kept under the key "" (the whole collection)."""
    out: dict[str, tuple[str, str]] = {}
    for field, why in unknown.items():
        if field == name:
            out[""] = why
        elif field.startswith(name + "."):
            out[field[len(name) + 1:]] = why
    return out


def _socket_holders(snap: Snapshot) -> dict[int, list[int]]:
    """socket inode -> holder pids (one entry per fd, as the summaries count them)."""
    return {inode: [pid for pid, _ in held] for inode, held in snap.socket_holders.items()}


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


def _mount_members(snap: Snapshot) -> dict[int, set[int]]:
    """mount namespace inode (or the id a CRIU image gives it) -> member pids."""
    out: dict[int, set[int]] = {}
    for proc in snap.processes:
        ino = namespace_inode(proc, "mnt")
        if ino is not None:
            out.setdefault(ino, set()).add(proc.pid)
    return out


def _ns_named(ns: mount_pb2.MountNamespace) -> bool:
    """True if the namespace is known by its inode (not by an id of the dumper's own)."""
    return not any(u.field == "ns_inode" for u in ns.unreadable)


def _by_members(left_a: list[int], left_b: list[int], members_a: dict[int, set[int]],
                members_b: dict[int, set[int]]) -> list[tuple[int, int]]:
    """Pairs of namespaces that share member pids with each other and with no other."""
    touch_a = {ia: [ib for ib in left_b if members_a.get(ia, set()) & members_b.get(ib, set())]
               for ia in left_a}
    touch_b = {ib: [ia for ia in left_a if members_a.get(ia, set()) & members_b.get(ib, set())]
               for ib in left_b}
    return [(ia, hits[0]) for ia, hits in touch_a.items()
            if len(hits) == 1 and touch_b[hits[0]] == [ia]]


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
