"""The JSON view of a snapshot (`show --json`).

The contract keys documented in the README are built explicitly; everything
else is derived generically from the protobuf schema, so a field added to a
.proto shows up in JSON without touching this file. Bytes (comm, paths,
argv) are decoded as UTF-8 with backslash escapes for anything else, so the
output is always valid JSON and never loses the fact that a byte was odd.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from criu_model.images import framing
from criu_model.images.pb import files_pb2, mm_pb2, sockets_pb2
from criu_model.names import (  # re-exported: the vocabulary's home was here before names.py
    SOCKET_STATES,
    SOCKET_TYPES,
    fd_kind_name,
    message_to_json,
    prot_text,
    socket_family_name,
    socket_state_name,
    socket_type_name,
    text,
    unix_name,
    vma_kind_name,
)
from criu_model.snapshot import Snapshot

__all__ = [
    "SOCKET_STATES",
    "SOCKET_TYPES",
    "fd_kind_name",
    "message_to_json",
    "print_json",
    "prot_text",
    "snapshot_to_json",
    "socket_family_name",
    "socket_state_name",
    "socket_type_name",
    "text",
    "unix_name",
    "vma_kind_name",
]


def print_json(obj: Any) -> None:
    """The one way every command prints its JSON: indented, newline-terminated."""
    json.dump(obj, sys.stdout, indent=1)
    sys.stdout.write("\n")


def vma_to_json(vma: mm_pb2.Vma) -> dict[str, Any]:
    out = message_to_json(vma)
    out["prot"] = prot_text(vma)
    out["path"] = text(vma.path) if vma.path else None
    out["kind"] = vma_kind_name(vma.kind)
    return out


def socket_to_json(sock: sockets_pb2.Socket) -> dict[str, Any]:
    """All of a socket's fields, with the contract's names and readable enums."""
    out = message_to_json(sock)
    kind = sock.WhichOneof("kind")
    for field in sock.DESCRIPTOR.oneofs_by_name["kind"].fields:
        if field.name != kind:
            out.pop(field.name, None)
    out["family"] = socket_family_name(sock.family)
    out["type"] = socket_type_name(sock.type)
    out["state"] = socket_state_name(sock.state)
    if kind == "unix":
        out["peer_inode"] = sock.unix.peer_inode
        out["name"] = unix_name(sock)
    elif kind == "inet":
        inet = sock.inet
        out.update(src=inet.src, sport=inet.sport, dst=inet.dst, dport=inet.dport)
    return out


def fd_to_json(fd: files_pb2.Fd, sockets: dict[int, sockets_pb2.Socket]) -> dict[str, Any]:
    out = message_to_json(fd)
    out["kind"] = fd_kind_name(fd.kind)
    out["path"] = text(fd.path) if fd.path else None
    state = fd.WhichOneof("state")
    # The oneof member that is set, under its own name; the others are noise.
    for field in fd.DESCRIPTOR.oneofs_by_name["state"].fields:
        if field.name != state:
            out.pop(field.name, None)
    if state == "socket":
        sock = sockets.get(fd.socket.inode)
        out["socket"] = socket_to_json(sock) if sock is not None else \
            {"inode": fd.socket.inode, "family": None, "type": None, "state": None}
        if fd.socket.HasField("probe"):  # what getsockopt said (sock_diag or not)
            out["socket"]["probe"] = message_to_json(fd.socket.probe)
    return out


def _process_objects(snap: Snapshot) -> Iterator[dict[str, Any]]:
    """Each process of the contract, one at a time (a stream for big snapshots)."""
    from criu_model.render.threads import registers_to_json  # threads.py imports this module

    for proc in snap.processes:
        obj = message_to_json(proc, _PROCESS_DONE_APART)
        obj["comm"] = text(proc.comm)
        obj["threads"] = [t.tid for t in proc.threads]
        obj["thread_info"] = [message_to_json(t) for t in proc.threads]
        obj["cmdline"] = [text(a) for a in proc.cmdline]
        mm = snap.memory_by_pid.get(proc.pid)
        obj["vmas"] = [vma_to_json(v) for v in mm.vmas] if mm else []
        obj["memory"] = message_to_json(mm, _VMAS) if mm else None
        table = snap.fds_by_pid.get(proc.pid)
        obj["fds"] = [fd_to_json(fd, snap.sockets_by_inode) for fd in table.fds] if table else []
        obj["fd_table"] = message_to_json(table, _FDS) if table else None
        obj["registers"] = registers_to_json(snap.registers_by_pid.get(proc.pid))
        obj["pages"] = _page_totals(snap, (proc.pid, 0, 0))
        yield obj


# Converted by the lines above in their own shape: not twice.
_PROCESS_DONE_APART = frozenset({"comm", "threads", "cmdline"})
_VMAS = frozenset({"vmas"})
_FDS = frozenset({"fds"})


def _snapshot_parts(snap: Snapshot) -> tuple[dict[str, Any], dict[str, Any]]:
    """The keys before "processes" and after it."""
    inv = snap.inventory
    head = {
        "format_version": f"{inv.format_major or framing.FORMAT_MAJOR}."
                          f"{inv.format_minor}",
        "root_pids": list(inv.root_pids),
        "inventory": message_to_json(inv),
    }
    tail = {
        "mount_namespaces": [message_to_json(m) for m in snap.mounts],
        "sockets": [socket_to_json(s) for s in snap.sockets],
        "ghost_files": [_ghost_to_json(g) for g in snap.ghosts],
        "shared_memory": _shared_memory(snap),
    }
    return head, tail


def snapshot_to_json(snap: Snapshot) -> dict[str, Any]:
    """The whole snapshot as one JSON-ready object (see the README's contract)."""
    head, tail = _snapshot_parts(snap)
    return {**head, "processes": list(_process_objects(snap)), **tail}


def write_snapshot_json(snap: Snapshot, out: TextIO) -> None:
    """`show DIR --json`, streamed: the same object as snapshot_to_json, written as it
    is made (one process a line, by the C encoder), so an 800-process snapshot neither
    waits for one giant dict nor holds it in memory."""
    head, tail = _snapshot_parts(snap)
    encode = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode
    out.write("{\n")
    for key, value in head.items():
        out.write(f"{json.dumps(key)}: {encode(value)},\n")
    out.write('"processes": [\n')
    for i, obj in enumerate(_process_objects(snap)):
        out.write((",\n" if i else "") + encode(obj))
    out.write("\n]")
    for key, value in tail.items():
        out.write(f",\n{json.dumps(key)}: {encode(value)}")
    out.write("\n}\n")


def _shared_memory(snap: Snapshot) -> list[dict[str, Any]]:
    store = snap.page_store
    out: list[dict[str, Any]] = []
    for key in store.owner_keys() if store else ():
        index = store.owner(key) if store and not key[0] else None
        if index is not None:
            out.append({"path": text(index.object_path), "dev": index.object_dev,
                        "ino": index.object_ino, "size": index.object_size,
                        "pages": _page_totals(snap, key)})
    return out


def _ghost_to_json(ghost: Any) -> dict[str, Any]:
    """A captured file without its bytes: extents as offset and length."""
    out = {k: v for k, v in message_to_json(ghost).items() if k not in ("data", "extents")}
    out["extents"] = [{"offset": e.offset, "length": len(e.data)} for e in ghost.extents]
    return out


_STATE_NAMES = {1: "stored", 2: "zero", 3: "inherited"}


def _page_totals(snap: Snapshot, key: tuple[int, int, int]) -> dict[str, int] | None:
    """Pages of one owner per state (dump --pages), None when contents were not captured."""
    if snap.page_store is None:
        return None
    index = snap.page_store.owner(key)
    totals = {name: 0 for name in _STATE_NAMES.values()}
    if index is not None:
        for state, n in zip(index.state, index.npages, strict=True):
            name = _STATE_NAMES.get(state, f"unknown({state})")
            totals[name] = totals.get(name, 0) + n
    return totals


# --- per-view JSON (`show DIR VIEW --json`) ---------------------------------------------
#
# Each view is one object: {"view": NAME, "filters": {...}, LIST_KEY: [...]} where the
# list holds what the text view shows (the same rows: render/views.py picks them), under
# the whole-snapshot JSON's field names, plus "pid" where a row belongs to a process.


def _process_row(snap: Snapshot, proc: Any) -> dict[str, Any]:
    """The `procs`/`tree` row: the contract's process keys without fds, vmas, registers."""
    from criu_model.kernel.devnum import tty_name

    mm = snap.memory_by_pid.get(proc.pid)
    return {
        "pid": proc.pid, "ppid": proc.ppid, "pgid": proc.pgid, "sid": proc.sid,
        "ns_pids": list(proc.ns_pids), "state": proc.state, "comm": text(proc.comm),
        "threads": [t.tid for t in proc.threads],
        "cmdline": [text(a) for a in proc.cmdline],
        "tty_nr": proc.tty_nr, "tty": tty_name(proc.tty_nr) if proc.tty_nr else None,
        "tpgid": proc.tpgid if proc.HasField("tpgid") else None,
        "uid": proc.creds.uids[0] if proc.creds.uids else None,
        "vma_count": len(mm.vmas) if mm else None,
        "shares": message_to_json(proc.shares),
    }


def view_to_json(snap: Snapshot, sel: Any) -> dict[str, Any]:
    """`show DIR VIEW --json`: one view's data under the documented contract."""
    from criu_model.render import views

    view = sel.view
    out: dict[str, Any] = {"view": view, "filters": sel.to_json()}
    if view == "tree":
        kids = snap.children()
        rows = views.tree_rows(snap, sel)
        out["processes"] = [{**_process_row(snap, proc), "depth": depth,
                             "children": kids.get(proc.pid, [])} for proc, depth in rows]
    elif view == "procs":
        out["processes"] = [_process_row(snap, p) for p in views.processes(snap, sel)]
    elif view == "fds":
        out["fds"] = [{"pid": pid, **fd_to_json(fd, snap.sockets_by_inode)}
                      for pid, fd in views.fd_rows(snap, sel)]
    elif view == "sockets":
        from criu_model.names import socket_netid

        holders = snap.socket_holders
        out["sockets"] = [{**socket_to_json(s), "netid": socket_netid(s),
                           "holders": [{"pid": pid, "fd": fd, "comm": _comm_of(snap, pid)}
                                       for pid, fd in holders.get(s.inode, ())]}
                          for s in views.socket_rows(snap, sel)]
    elif view == "shared":
        out["files"] = [{"file_id": file_id, "kind": fd_kind_name(held[0][1].kind),
                         "path": text(held[0][1].path) if held[0][1].path else None,
                         "holders": [{"pid": pid, "fd": fd.fd} for pid, fd in held]}
                        for file_id, held in views.shared_files(snap, sel)]
        out["tasks"] = [{"object": kind, "id": ident, "pids": pids}
                        for kind, ident, pids in views.shared_tasks(snap, sel)]
    elif view == "ns":
        out["namespaces"] = [{**message_to_json(ns), "pids": pids}
                             for ns, pids in views.namespace_rows(snap, sel)]
    elif view == "mems":
        out["vmas"] = [{"pid": mm.pid, **vma_to_json(v)}
                       for mm, vmas in views.vma_rows(snap, sel) for v in vmas]
    elif view == "threads":
        from criu_model.render.threads import registers_to_json

        pid = views.threads_pid(snap, sel)
        views.selected_pids(snap, sel)   # a pid not dumped: the "not in this snapshot" error
        proc = snap.by_pid[pid]
        regs = registers_to_json(snap.registers_by_pid.get(pid))
        by_tid = {t["tid"]: t for t in regs["threads"]} if regs else {}
        out["threads"] = [{"pid": pid, **message_to_json(t),
                           "registers": by_tid.get(t.tid)} for t in proc.threads]
    else:
        from criu_model.errors import BadArgument

        raise BadArgument(f"the {view} view has no JSON form (show DIR --json is the whole "
                          "snapshot)")
    return out


def _comm_of(snap: Snapshot, pid: int) -> str | None:
    proc = snap.by_pid.get(pid)
    return text(proc.comm) if proc is not None else None
