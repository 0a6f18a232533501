"""JSON-ready descriptions of whole objects, for added/removed/replaced changes."""

from __future__ import annotations

from typing import Any

from criu_model.images.pb import files_pb2, mm_pb2, mount_pb2, process_pb2, sockets_pb2
from criu_model.names import (
    fd_kind_name,
    prot_text,
    pty_index_text,
    socket_family_name,
    socket_state_name,
    socket_type_name,
    text,
    unix_name,
    vma_kind_name,
)
from criu_model.snapshot import Snapshot


def process_summary(snap: Snapshot, proc: process_pb2.Process) -> dict[str, Any]:
    mm = snap.memory_by_pid.get(proc.pid)
    table = snap.fds_by_pid.get(proc.pid)
    return {"comm": text(proc.comm), "ppid": proc.ppid, "pgid": proc.pgid, "sid": proc.sid,
            "start_time": proc.start_time, "state": proc.state,
            "cmdline": [text(c) for c in proc.cmdline], "threads": len(proc.threads),
            "fds": len(table.fds) if table else 0, "vmas": len(mm.vmas) if mm else 0}


def fd_target(fd: files_pb2.Fd) -> str:
    """A one-word description of what the fd points at: a path, 'pipe:[N]', ...

    A pty master names its pty ('/dev/ptmx (pts/3)'): every master's path is the same."""
    if fd.path:
        pts = pty_index_text(fd)
        return text(fd.path) + (" (deleted)" if fd.deleted else "") + \
            (f" ({pts})" if pts else "")
    if fd.HasField("socket"):
        return f"socket:[{fd.socket.inode}]"
    if fd.HasField("pipe"):
        return f"pipe:[{fd.pipe.pipe_ino}]"
    return fd_kind_name(fd.kind)


def fd_summary(fd: files_pb2.Fd) -> dict[str, Any]:
    return {"kind": fd_kind_name(fd.kind), "target": fd_target(fd), "flags": fd.flags,
            "pos": fd.pos}


def vma_summary(vma: mm_pb2.Vma) -> dict[str, Any]:
    return {"end": vma.end, "prot": prot_text(vma), "offset": vma.offset,
            "kind": vma_kind_name(vma.kind),
            "path": text(vma.path) + (" (deleted)" if vma.deleted else "") if vma.path else None}


def socket_label(sock: sockets_pb2.Socket) -> str:
    """'unix stream /run/x.sock -> 1234', 'inet stream 127.0.0.1:80 -> 10.0.0.2:5555'."""
    family = socket_family_name(sock.family)
    kind = sock.WhichOneof("kind")
    head = f"{family} {socket_type_name(sock.type)}"
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


def socket_summary(sock: sockets_pb2.Socket) -> dict[str, Any]:
    return {"inode": sock.inode, "label": socket_label(sock),
            "state": socket_state_name(sock.state)}


def mount_summary(m: mount_pb2.Mount) -> dict[str, Any]:
    return {"mount_point": text(m.mount_point), "fstype": m.fstype, "source": text(m.source),
            "options": m.options}
