"""CRIU dump beside a criu-model dump: what CRIU does not record is "missing", never a change.

fixtures/criu-model-tree is a criu-model dump of the same program (scn.c, tree
mode) run here: another instance, so pids, addresses and inodes differ, but
every kind of object is there. It tells which fields criu-model fills; the
CRIU mapping must fill each of them too or mark it unreadable ("not in CRIU
images"). The second test fills, in a copy of a CRIU import, every field the
import marks unreadable (as criu-model would read them) and diffs the two.
"""

from __future__ import annotations

import io
from collections import defaultdict

from google.protobuf.descriptor import FieldDescriptor as FD
from google.protobuf.message import Message
from rich.console import Console

import criu_model
from criu_model.formats.criu import load_criu
from criu_model.formats.criu.mapping import NOT_IN_CRIU
from criu_model.render.text import show_namespaces
from tests.formats.conftest import FIXTURES

OURS = FIXTURES / "criu-model-tree"


def _paths(msg: Message, prefix: str, out: set[str], unread: set[str]) -> None:
    for u in getattr(msg, "unreadable", ()):
        unread.add(prefix + u.field)
    for f, v in msg.ListFields():
        if f.name == "unreadable":
            continue
        path = prefix + f.name
        if f.type == FD.TYPE_MESSAGE and not f.message_type.GetOptions().map_entry:
            for item in (v if f.is_repeated else [v]):
                out.add(path)
                _paths(item, path + ".", out, unread)
        elif v not in (0, b"", "", False):
            out.add(path)


def _fields(snap: criu_model.Snapshot) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Paths set and marked unreadable, per kind of object (fds by kind, sockets by family)."""
    have: dict[str, set[str]] = defaultdict(set)
    unread: dict[str, set[str]] = defaultdict(set)
    for top in ("processes", "memory", "ghosts"):
        for m in getattr(snap, top):
            _paths(m, "", have[top], unread[top])
    for table in snap.fds:
        for fd in table.fds:
            _paths(fd, "", have[f"fd.{fd.kind}"], unread[f"fd.{fd.kind}"])
    for sock in snap.sockets:
        _paths(sock, "", have[f"socket.{sock.family}"], unread[f"socket.{sock.family}"])
    return have, unread


def _covered(path: str, unread: set[str]) -> bool:
    return any(path == u or path.startswith((u + ".", u + "_")) or u.startswith(path + ".")
               for u in unread)


def test_every_field_criu_model_fills_is_mapped_or_marked() -> None:
    ours, _ = _fields(criu_model.load(OURS))
    have, unread = _fields(load_criu(FIXTURES / "tree-full"))
    gaps = {kind: sorted(p for p in paths - have[kind] if not _covered(p, unread[kind]))
            for kind, paths in ours.items() if kind in have}
    assert {k: v for k, v in gaps.items() if v} == {}
    assert all(NOT_IN_CRIU in r.reason for p in load_criu(FIXTURES / "tree-full").processes
               for r in p.unreadable if r.field in ("start_time", "cwd.ino", "exe.dev"))


def _fill_path(msg: Message, parts: list[str]) -> None:
    f = msg.DESCRIPTOR.fields_by_name.get(parts[0])
    if f is None:
        return
    if f.type == FD.TYPE_MESSAGE and not f.message_type.GetOptions().map_entry:
        items = list(getattr(msg, f.name)) if f.is_repeated else [getattr(msg, f.name)]
        for item in items:
            if len(parts) > 1:
                _fill_path(item, parts[1:])
            else:
                first = next((s for s in item.DESCRIPTOR.fields if not s.is_repeated
                              and s.type in (FD.TYPE_UINT64, FD.TYPE_UINT32)), None)
                if first is not None:
                    setattr(item, first.name, 77)
        return
    if f.is_repeated or len(parts) > 1:
        return
    setattr(msg, f.name, {FD.TYPE_BOOL: True, FD.TYPE_STRING: "R",
                          FD.TYPE_BYTES: b"x"}.get(f.type, 4242))


def _fill(msg: Message) -> None:
    """Give every unreadable field of msg (and its sub-messages) a value, as a live read would."""
    for u in list(getattr(msg, "unreadable", ())):
        _fill_path(msg, u.field.split("."))
    if "unreadable" in msg.DESCRIPTOR.fields_by_name:
        del msg.unreadable[:]  # type: ignore[attr-defined]
    for f, v in msg.ListFields():
        if f.type == FD.TYPE_MESSAGE and not f.message_type.GetOptions().map_entry:
            for item in (v if f.is_repeated else [v]):
                _fill(item)


def _filled() -> tuple[criu_model.Snapshot, criu_model.Snapshot]:
    a, b = load_criu(FIXTURES / "tree-full"), load_criu(FIXTURES / "tree-full")
    for top in ("processes", "memory", "fds", "sockets", "ghosts"):
        for m in getattr(b, top):
            _fill(m)
    for mm in b.memory:  # what criu-model reads of a file mapping, CRIU does not record
        for v in mm.vmas:
            if v.path and not v.map_file_known:
                v.map_file_known, v.map_file_dev, v.map_file_ino = True, 2049, 1000 + v.start % 997
                v.dev_major, v.dev_minor = 8, 1
    return a, b


def test_fields_criu_does_not_record_are_missing_in_a_not_changes() -> None:
    a, b = _filled()
    result = criu_model.diff(a, b)
    missing = {(m.what, m.field) for m in result.missing if m.side == "a"}
    for need in [("process", "start_time"), ("process", "exe.ino"), ("process", "cwd.dev"),
                 ("process", "exit_signal"), ("socket", "cookie"),
                 ("socket", "unix.vfs_ino")]:
        assert need in missing
    # Field-level changes of processes, fds and sockets: none. (Objects matched by an
    # identity CRIU lacks are the differ's part, see the next test.)
    assert [(c.what, c.field) for c in result.changes
            if c.field is not None and c.what in ("process", "fd", "socket")] == []


def test_a_criu_import_beside_a_filled_copy_is_identical_but_for_missing() -> None:
    """Objects are matched without the identities CRIU lacks (VMAs by kind and path, fds
    without dev/ino, ghosts by path, threads under their process's marks)."""
    a, b = _filled()
    result = criu_model.diff(a, b)
    assert result.changes == []
    missing = {(m.what, m.field) for m in result.missing if m.side == "a"}
    for need in [("vma", "inode"), ("vma", "map_file_ino"), ("fd", "ino"), ("fd", "dev"),
                 ("fd", "eventfd.id"), ("thread", "state"), ("ghost", "ino")]:
        assert need in missing
    assert result.summary["not_comparable"] == sum(m.count for m in result.missing) > 0


def test_show_ns_marks_criu_ids_as_not_inodes() -> None:
    out = io.StringIO()
    show_namespaces(load_criu(FIXTURES / "tree-full"), Console(file=out, width=400))
    lines = out.getvalue().splitlines()
    row = next(x for x in lines if x.startswith("mnt "))
    assert row.split()[1].endswith("?")
    assert lines[-1].startswith("?: not an inode number: not in CRIU images")
    out = io.StringIO()
    show_namespaces(criu_model.load(OURS), Console(file=out, width=400))
    assert "?" not in out.getvalue()
