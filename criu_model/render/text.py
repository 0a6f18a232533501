"""Terminal views of a snapshot, built with rich (plain text when not a tty)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from criu_model.errors import UsageError
from criu_model.images.pb import files_pb2, mm_pb2, process_pb2, sockets_pb2
from criu_model.kernel.devnum import tty_name
from criu_model.kernel.flags import open_flags_text
from criu_model.names import (
    fd_kind_name,
    printable,
    prot_text,
    socket_family_name,
    socket_state_name,
    socket_type_name,
    text,
    unix_name,
    vma_kind_name,
)
from criu_model.snapshot import Snapshot, namespace_inode

if TYPE_CHECKING:
    from criu_model.features import Feature


class PlainTable(Table):
    """A table whose str cells are data: escaped (printable), never read as rich markup."""

    def add_row(self, *renderables: RenderableType | None, **kwargs: Any) -> None:
        super().add_row(*(Text(printable(c)) if isinstance(c, str) else c
                          for c in renderables), **kwargs)


def line(*parts: str | tuple[str, str]) -> Text:
    """One output line from data (escaped) and (data, style) pairs: no markup, no emoji."""
    return Text.assemble(*((printable(p[0]), p[1]) if isinstance(p, tuple) else printable(p)
                           for p in parts))


def _table(*columns: str, right: Iterable[str] = ()) -> Table:
    table = PlainTable(box=None, pad_edge=False, show_edge=False, header_style="bold")
    right_set = set(right)
    for col in columns:
        table.add_column(col, justify="right" if col in right_set else "left", no_wrap=True)
    return table


def emit(console: Console, renderable: Table, *, empty: str | None = None) -> None:
    """Print a table; piped output gets no trailing padding (rich pads cells).

    With `empty`, a table without rows prints that line instead of a lone header.
    """
    if empty is not None and not renderable.row_count:
        console.print(empty)
        return
    if console.is_terminal:
        console.print(renderable)
        return
    with console.capture() as captured:
        console.print(renderable)
    console.file.write("\n".join(line.rstrip() for line in captured.get().splitlines()) + "\n")


def _comm(data: bytes) -> str:
    # Control bytes in a comm would move the terminal or break the one-line-per-process layout.
    return printable(data)


def _ns(ids: Iterable[int]) -> str:
    return ",".join(str(i) for i in ids)


def show_tree(snap: Snapshot, console: Console) -> None:
    """pid/pgid/sid/comm as an indented tree, like `ps -ejH`."""
    kids = snap.children()
    table = _table("PID", "PGID", "SID", "S", "NSPID", "CMD", right=("PID", "PGID", "SID"))

    def walk(pid: int, depth: int) -> None:
        proc = snap.by_pid[pid]
        label = Text("  " * depth) + Text(_comm(proc.comm), style="bold" if depth == 0 else "")
        if len(proc.threads) > 1:
            label.append(f" ({len(proc.threads)} threads)", style="dim")
        table.add_row(str(pid), str(proc.pgid), str(proc.sid), proc.state,
                      _ns(proc.ns_pids), label)
        for child in kids[pid]:
            walk(child, depth + 1)

    for root in snap.tree_roots():
        walk(root, 0)
    emit(console, table)


def show_procs(snap: Snapshot, console: Console) -> None:
    """One row per process with its main attributes."""
    table = _table("PID", "PPID", "PGID", "SID", "NSPID", "TTY", "TPGID", "S", "THR", "UID",
                   "VMAS", "COMM", "CMDLINE",
                   right=("PID", "PPID", "PGID", "SID", "TPGID", "THR", "UID", "VMAS"))
    mm = snap.memory_by_pid
    for proc in snap.processes:
        uid = str(proc.creds.uids[0]) if proc.creds.uids else "?"
        vmas = str(len(mm[proc.pid].vmas)) if proc.pid in mm else "-"
        cmd = " ".join(printable(a) for a in proc.cmdline)
        tpgid = str(proc.tpgid) if proc.HasField("tpgid") else "?"   # "?": format 1.0
        table.add_row(str(proc.pid), str(proc.ppid), str(proc.pgid), str(proc.sid),
                      _ns(proc.ns_pids), tty_name(proc.tty_nr) if proc.tty_nr else "?", tpgid,
                      proc.state, str(len(proc.threads)), uid, vmas,
                      _comm(proc.comm), cmd[:60] + ("…" if len(cmd) > 60 else ""))
    emit(console, table)


def show_mems(snap: Snapshot, pid: int, console: Console) -> None:
    """The memory layout of one process, like pmap -X."""
    mm = snap.memory_by_pid.get(pid)
    if mm is None:
        raise UsageError(f"pid {pid} is not in this snapshot "
                         f"(it holds {', '.join(str(p) for p in snap.by_pid)})")
    counted = snap.has_pages
    page_cols = ("STORED", "ZERO", "INHERIT", "SHARED") if counted else ()
    table = _table("START", "END", "PERM", "OFFSET", "DEV", "INODE", "KIND", "RSS", "SWAP",
                   "EXCL", *page_cols, "PATH",
                   right=("OFFSET", "INODE", "RSS", "SWAP", "EXCL", *page_cols))
    for vma in mm.vmas:
        has_pages = vma.HasField("pages")
        path = text(vma.path) + (" (deleted)" if vma.deleted else "")
        cells: list[str] = []
        if counted:
            cells = _stored_cells(snap, pid, vma)
        table.add_row(f"{vma.start:x}", f"{vma.end:x}", prot_text(vma), f"{vma.offset:x}",
                      f"{vma.dev_major:02x}:{vma.dev_minor:02x}", str(vma.inode),
                      vma_kind_name(vma.kind),
                      *(str(n) if has_pages else "?" for n in
                        (vma.pages.resident, vma.pages.swapped, vma.pages.exclusive)),
                      *cells, path)
    emit(console, table)
    for item in mm.unreadable:
        console.print(line(("not read:", "yellow"), f" {item.field}: {item.reason}"))
    method = mm.page_counts_method or "not read"
    console.print(line(f"{len(mm.vmas)} VMAs; page counts (pages) via {method}"))
    if counted:
        console.print("STORED: in pages.img; ZERO: the zero page; INHERIT: unchanged since the "
                      "parent snapshot; SHARED: the VMA maps a shared object stored once "
                      "(its pages counted in STORED/ZERO/INHERIT); '-': not stored (file or "
                      "kernel pages)")


def _stored_cells(snap: Snapshot, pid: int, vma: mm_pb2.Vma) -> list[str]:
    """STORED, ZERO, INHERIT, SHARED cells of one VMA of a --pages snapshot."""
    from criu_model.pages.layout import PARENT, STORED, ZERO
    from criu_model.pages.memory import vma_owner, vma_page_counts

    key, _base, _why = vma_owner(pid, vma)
    if key is None:
        return ["-", "-", "-", "-"]
    counts = vma_page_counts(snap, pid, vma) or {}
    return [str(counts.get(STORED, 0)), str(counts.get(ZERO, 0)), str(counts.get(PARENT, 0)),
            "" if key[0] else "yes"]


def _fd_target(fd: files_pb2.Fd, sockets: dict[int, sockets_pb2.Socket]) -> str:
    """What the fd points at, in the kind's own terms."""
    state = fd.WhichOneof("state")
    path = text(fd.path) + (" (deleted)" if fd.deleted else "")
    if state == "pipe":
        ends = "rw" if fd.pipe.read_end and fd.pipe.write_end else \
            ("r" if fd.pipe.read_end else "w")
        queued = (f" queued={fd.pipe.queued_bytes}" if fd.pipe.HasField("queued_bytes")
                  else "")
        return f"{path or f'pipe:[{fd.pipe.pipe_ino}]'} {ends}{queued}"
    if state == "socket":
        sock = sockets.get(fd.socket.inode)
        name = path or f"socket:[{fd.socket.inode}]"
        if sock is None:
            return f"{name} (not in sock_diag)"
        local, peer = _endpoints(sock)
        state_name = socket_state_name(sock.state) or "-"
        return (f"{name} {socket_family_name(sock.family)} "
                f"{socket_type_name(sock.type)} {state_name} {local} -> {peer}")
    if state == "eventfd":
        return f"{path} count={fd.eventfd.count}"
    if state == "epoll":
        return f"{path} targets=" + ",".join(str(t.tfd) for t in fd.epoll.targets)
    if state == "inotify":
        return f"{path} watches={len(fd.inotify.watches)}"
    if state == "signalfd":
        return f"{path} mask={fd.signalfd.sigmask:#x}"
    if state == "timerfd":
        t = fd.timerfd
        return f"{path} clock={t.clockid} value={t.it_value_ns}ns interval={t.it_interval_ns}ns"
    if state == "pidfd":
        return f"{path} pid={fd.pidfd.pid}"
    if state == "memfd":
        return f"{path} size={fd.memfd.size}"
    if state == "io_uring":
        return f"{path} (not restorable)"
    return path


def show_fds(snap: Snapshot, pid: int | None, console: Console) -> None:
    """One line per fd; '*' marks an open file shared with another process."""
    if pid is not None and pid not in snap.by_pid:
        raise UsageError(f"pid {pid} is not in this snapshot")
    holders: dict[int, set[int]] = {}
    for table in snap.fds:
        for fd in table.fds:
            if fd.file_id:
                holders.setdefault(fd.file_id, set()).add(table.pid)
    table_out = _table("PID", "FD", "KIND", "FLAGS", "POS", "FILE_ID", "S", "TARGET",
                       right=("PID", "FD", "POS", "FILE_ID"))
    for table in snap.fds:
        if pid is not None and table.pid != pid:
            continue
        for fd in table.fds:
            shared = "*" if len(holders.get(fd.file_id, ())) > 1 else ""
            table_out.add_row(str(table.pid), str(fd.fd), fd_kind_name(fd.kind),
                              open_flags_text(fd.flags), str(fd.pos),
                              str(fd.file_id) if fd.file_id else "?", shared,
                              _fd_target(fd, snap.sockets_by_inode))
    emit(console, table_out)
    for table in snap.fds:
        if pid is not None and table.pid != pid:
            continue
        if table.vanished:
            console.print(line(f"pid {table.pid}: {table.vanished} fds closed while being read"))
        for item in table.unreadable:
            console.print(line((f"pid {table.pid}: not read:", "yellow"),
                               f" {item.field}: {item.reason}"))


_NETID = {("unix", "stream"): "u_str", ("unix", "dgram"): "u_dgr", ("unix", "seqpacket"): "u_seq",
          ("inet", "stream"): "tcp", ("inet6", "stream"): "tcp", ("inet", "dgram"): "udp",
          ("inet6", "dgram"): "udp", ("inet", "raw"): "raw", ("inet6", "raw"): "raw",
          ("netlink", "raw"): "nl", ("netlink", "dgram"): "nl", ("packet", "raw"): "p_raw",
          ("packet", "dgram"): "p_dgr"}


def _endpoints(sock: sockets_pb2.Socket) -> tuple[str, str]:
    kind = sock.WhichOneof("kind")
    if kind == "unix":
        peer = f"* {sock.unix.peer_inode}" if sock.unix.peer_inode else "*"
        return f"{unix_name(sock) or '*'} {sock.inode}", peer
    if kind == "inet":
        i = sock.inet
        wrap = (lambda a: f"[{a}]") if sock.family == sockets_pb2.FAMILY_INET6 else (lambda a: a)
        return f"{wrap(i.src)}:{i.sport}", f"{wrap(i.dst)}:{i.dport}" if i.dport else "*:*"
    if kind == "netlink":
        n = sock.netlink
        return f"proto={n.protocol} portid={n.portid}", f"portid={n.dst_portid}"
    if kind == "packet":
        return f"proto={sock.packet.protocol:#06x} if={sock.packet.ifindex}", "*"
    return str(sock.inode), "*"


def show_sockets(snap: Snapshot, console: Console) -> None:
    """Like `ss -xtuanp`, from the snapshot: every socket with its owning pids and fds."""
    def owner(pid: int, fd: int) -> str:
        comm = _comm(snap.by_pid[pid].comm) if pid in snap.by_pid else "?"
        return f'("{comm}",pid={pid},fd={fd})'

    owners = {inode: [owner(pid, fd) for pid, fd in held]
              for inode, held in snap.socket_holders.items()}
    out = _table("NETID", "STATE", "RECV-Q", "SEND-Q", "LOCAL", "PEER", "PROCESS",
                 right=("RECV-Q", "SEND-Q"))
    for sock in snap.sockets:
        family = socket_family_name(sock.family)
        netid = _NETID.get((family, socket_type_name(sock.type)), family)
        local, peer = _endpoints(sock)
        out.add_row(netid, socket_state_name(sock.state) or "-",
                    str(sock.rqueue), str(sock.wqueue), local, peer,
                    ",".join(owners.get(sock.inode, [])))
    emit(console, out)
    for run in snap.inventory.collectors:
        if run.name.startswith("sockets.") and not run.ran:
            console.print(line(("not collected:", "yellow"), f" {run.name}: {run.reason}"))


def show_shared(snap: Snapshot, console: Console) -> None:
    """Kernel objects held by more than one process: open files, fd tables, fs, sighand, vm."""
    holders: dict[int, list[tuple[int, files_pb2.Fd]]] = {}
    for table in snap.fds:
        for fd in table.fds:
            if fd.file_id:
                holders.setdefault(fd.file_id, []).append((table.pid, fd))
    files = _table("FILE_ID", "KIND", "HOLDERS (pid:fd)", "TARGET", right=("FILE_ID",))
    for file_id, held in sorted(holders.items()):
        if len({pid for pid, _ in held}) < 2:
            continue
        fd = held[0][1]
        files.add_row(str(file_id), fd_kind_name(fd.kind),
                      " ".join(f"{pid}:{f.fd}" for pid, f in held),
                      _fd_target(fd, snap.sockets_by_inode))
    console.print("[bold]open files shared between processes[/]")
    emit(console, files, empty="(none)")
    tasks = _table("OBJECT", "ID", "PROCESSES", right=("ID",))
    for kind in ("files", "fs", "sighand", "vm"):
        groups: dict[int, list[int]] = {}
        for proc in snap.processes:
            ident = getattr(proc.shares, kind)
            if ident:
                groups.setdefault(ident, []).append(proc.pid)
        for ident, pids in sorted(groups.items()):
            if len(pids) > 1:
                tasks.add_row(kind, str(ident), " ".join(map(str, pids)))
    console.print("[bold]task objects shared between processes[/]")
    emit(console, tasks, empty="(none)")


def show_namespaces(snap: Snapshot, console: Console) -> None:
    """One row per namespace, like lsns(8), plus its owning user namespace and parent."""
    rows: dict[tuple[str, int], tuple[process_pb2.Namespace, list[int]]] = {}
    for proc in snap.processes:
        for ns in proc.namespaces:
            if ns.type.endswith("_for_children"):
                continue   # shown where it differs from the process's own, below
            rows.setdefault((ns.type, ns.inode), (ns, []))[1].append(proc.pid)
    table = _table("TYPE", "NS", "OWNER", "PARENT", "NPROCS", "PIDS",
                   right=("NS", "OWNER", "PARENT", "NPROCS"))
    for (ns_type, inode), (ns, pids) in sorted(rows.items()):
        table.add_row(ns_type, str(inode), str(ns.owner_user or "-"), str(ns.parent or "-"),
                      str(len(pids)), _pid_list(pids))
    emit(console, table, empty="(no namespaces recorded)")
    pending = [(proc.pid, ns) for proc in snap.processes for ns in proc.namespaces
               if ns.type.endswith("_for_children")
               and ns.inode != namespace_inode(proc, ns.type.removesuffix("_for_children"))]
    for pid, ns in pending:
        console.print(line(f"pid {pid}: {ns.type} is {ns.inode} (owner {ns.owner_user or '-'}): "
                           "its next children are born there"))


def _pid_list(pids: list[int], limit: int = 12) -> str:
    more = f" (+{len(pids) - limit})" if len(pids) > limit else ""
    return " ".join(map(str, pids[:limit])) + more


def show_check(features: list[Feature], console: Console) -> None:
    table = _table("FEATURE", "OK", "WHY")
    for feat in features:
        ok = Text("yes", style="green") if feat.available else Text("no", style="red")
        table.add_row(feat.name, ok, feat.detail)
    emit(console, table)


def dump_summary(snap: Snapshot, path: str | None) -> str:
    """The one line `dump` prints."""
    inv = snap.inventory
    took = inv.dump_duration_ns / 1e6
    frozen = inv.frozen_for_ns / 1e6
    where = f" -> {path}" if path else ""
    skipped = f", {len(inv.skipped)} skipped" if inv.skipped else ""
    line = (f"dumped {len(snap.processes)} processes, {snap.thread_count} threads, "
            f"{snap.vma_count} VMAs{skipped} in {took:.1f} ms (frozen {frozen:.1f} ms)"
            f"{where}")
    if inv.pages_captured:
        st = inv.page_stats
        line += (f"\npages: {st.stored} stored ({st.bytes_written / 2**20:.1f} MiB written), "
                 f"{st.deduplicated} shared copy-on-write stored once, {st.zero} zero, "
                 f"{st.inherited} unchanged since the parent, {st.file_clean} clean file pages "
                 f"left in their files; {st.shared_objects} shared memory objects")
    return line
