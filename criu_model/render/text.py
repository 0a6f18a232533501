"""Terminal views of a snapshot, built with rich (plain text when not a tty).

Width. On a terminal, every table fits its width: the key columns (pid, fd,
kind, state...) stay whole and the long ones (cmdline, target, holders, paths)
wrap or are shortened. Piped output and --wide (the CLI gives their console a
width of 100,000) are never cut: full values, one row per line, like `ps -ww`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from criu_model.images.pb import files_pb2, mm_pb2, sockets_pb2
from criu_model.kernel.devnum import tty_name
from criu_model.kernel.flags import open_flags_text
from criu_model.names import (
    fd_kind_name,
    printable,
    prot_text,
    pty_index_text,
    socket_family_name,
    socket_netid,
    socket_state_name,
    socket_type_name,
    text,
    unix_name,
    vma_kind_name,
)
from criu_model.render import views
from criu_model.render.views import Selection
from criu_model.snapshot import Snapshot, namespace_inode

if TYPE_CHECKING:
    from criu_model.features import Feature

# At or above this width the console is not a terminal's: piped output or --wide.
_UNLIMITED = 10_000
# A terminal this wide keeps the columns a narrower one leaves out (NSPID, DEV, INODE).
ROOMY = 120
# `shared` on a terminal: a holder list longer than this is summarised.
HOLDERS_SHOWN = 8


def compact(console: Console) -> bool:
    """Whether output must fit a terminal's width (not piped, not --wide)."""
    return console.is_terminal and console.width < _UNLIMITED


class PlainTable(Table):
    """A table whose str cells are data: escaped (printable), never read as rich markup.

    It remembers each column's widest cell, so :func:`emit` can keep key columns
    whole on a narrow terminal.
    """

    key_columns: frozenset[str] = frozenset()
    tail_columns: frozenset[str] = frozenset()   # shortened from the left ("…/bin/python3")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.natural: list[int] = []

    def add_row(self, *renderables: RenderableType | None, **kwargs: Any) -> None:
        cells = [Text(printable(c)) if isinstance(c, str) else c for c in renderables]
        if len(self.natural) < len(cells):
            self.natural += [0] * (len(cells) - len(self.natural))
        for i, cell in enumerate(cells):
            if isinstance(cell, Text):
                width = max((Text(part).cell_len for part in cell.plain.split("\n")),
                            default=0)
                self.natural[i] = max(self.natural[i], width)
        super().add_row(*cells, **kwargs)


def line(*parts: str | tuple[str, str]) -> Text:
    """One output line from data (escaped) and (data, style) pairs: no markup, no emoji."""
    return Text.assemble(*((printable(p[0]), p[1]) if isinstance(p, tuple) else printable(p)
                           for p in parts))


def _table(*columns: str, right: Iterable[str] = (), key: Iterable[str] = (),
           tail: Iterable[str] = ()) -> PlainTable:
    """A borderless table; `key` columns are never shortened on a narrow terminal, `tail`
    columns (paths: the file name says most) lose their beginning rather than wrap."""
    table = PlainTable(box=None, pad_edge=False, show_edge=False, header_style="bold")
    table.key_columns = frozenset(key)
    table.tail_columns = frozenset(tail)
    right_set = set(right)
    for col in columns:
        table.add_column(col, justify="right" if col in right_set else "left", no_wrap=True)
    return table


def _fit(table: Table, width: int) -> None:
    """Key columns keep their widest cell; the others may wrap (never below their header).

    A table wider than the terminal also loses one of its two spaces between columns,
    as ps does, before anything is wrapped."""
    natural = getattr(table, "natural", [])
    keys = getattr(table, "key_columns", frozenset())
    tails = getattr(table, "tail_columns", frozenset())
    widths = [max(len(str(c.header)), natural[i] if i < len(natural) else 0)
              for i, c in enumerate(table.columns)]
    if sum(widths) + 2 * (len(table.columns) - 1) <= width:
        return
    table.padding = (0, 1, 0, 0)
    for i, col in enumerate(table.columns):
        header = len(str(col.header))
        widest = widths[i]
        budget = width - (sum(widths) - widest) - (len(widths) - 1)
        if col.header in tails and budget >= max(8, header):
            col._cells[:] = [_cut_left(cell, budget) for cell in col._cells]
            col.no_wrap, col.min_width = True, min(widest, budget)
        elif col.header in keys:
            col.no_wrap, col.min_width = True, widest
        else:
            col.no_wrap, col.overflow, col.min_width = False, "fold", min(widest, header)


def _cut_left(cell: RenderableType, width: int) -> RenderableType:
    """'…' and the last width-1 characters of a text cell longer than `width`."""
    if isinstance(cell, Text) and cell.cell_len > width:
        return Text("…" + cell.plain[-(width - 1):])
    return cell


def emit(console: Console, renderable: Table, *, empty: str | None = None) -> None:
    """Print a table; piped output gets no trailing padding (rich pads cells).

    With `empty`, a table without rows prints that line instead of a lone header.
    """
    if empty is not None and not renderable.row_count:
        console.print(empty)
        return
    if console.is_terminal:
        if compact(console):
            _fit(renderable, console.width)
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


def show_tree(snap: Snapshot, console: Console, sel: Selection | None = None) -> None:
    """pid/pgid/sid/comm as an indented tree, like `ps -ejH`."""
    table = _table("PID", "PGID", "SID", "S", "NSPID", "CMD", right=("PID", "PGID", "SID"),
                   key=("PID", "PGID", "SID", "S"))
    for proc, depth in views.tree_rows(snap, sel or Selection("tree")):
        label = Text("  " * depth) + Text(_comm(proc.comm), style="bold" if depth == 0 else "")
        if len(proc.threads) > 1:
            label.append(f" ({len(proc.threads)} threads)", style="dim")
        table.add_row(str(proc.pid), str(proc.pgid), str(proc.sid), proc.state,
                      _ns(proc.ns_pids), label)
    emit(console, table, empty="(no process matches)" if sel and sel.filters_processes else None)


def show_procs(snap: Snapshot, console: Console, sel: Selection | None = None) -> None:
    """One row per process with its main attributes; the cmdline is shortened on a terminal
    (with "…"), never when piped."""
    procs = views.processes(snap, sel or Selection("procs"))
    # On a narrow terminal NSPID goes when it only repeats PID (one pid namespace).
    nspid = not compact(console) or console.width >= ROOMY or \
        any(list(p.ns_pids) != [p.pid] for p in procs)
    table = _table("PID", "PPID", "PGID", "SID", *(("NSPID",) if nspid else ()), "TTY",
                   "TPGID", "S", "THR", "UID", "VMAS", "COMM", "CMDLINE",
                   right=("PID", "PPID", "PGID", "SID", "TPGID", "THR", "UID", "VMAS"),
                   key=("PID", "PPID", "PGID", "SID", "S", "TTY", "TPGID", "THR", "UID",
                        "VMAS", "COMM"))
    mm = snap.memory_by_pid
    for proc in procs:
        uid = str(proc.creds.uids[0]) if proc.creds.uids else "?"
        vmas = str(len(mm[proc.pid].vmas)) if proc.pid in mm else "-"
        cmd = " ".join(printable(a) for a in proc.cmdline)
        tpgid = str(proc.tpgid) if proc.HasField("tpgid") else "?"   # "?": format 1.0
        table.add_row(str(proc.pid), str(proc.ppid), str(proc.pgid), str(proc.sid),
                      *((_ns(proc.ns_pids),) if nspid else ()),
                      tty_name(proc.tty_nr) if proc.tty_nr else "?", tpgid,
                      proc.state, str(len(proc.threads)), uid, vmas,
                      _comm(proc.comm), Text(cmd, no_wrap=True, overflow="ellipsis"))
    emit(console, table, empty="(no process matches)")


def show_mems(snap: Snapshot, pid: int | None, console: Console,
              sel: Selection | None = None) -> None:
    """The memory layout of one process (or of each selected one), like pmap -X."""
    if sel is None:
        sel = Selection("mems", pids=frozenset({pid}) if pid is not None else frozenset())
    rows = views.vma_rows(snap, sel)
    for mm, vmas in rows:
        if len(rows) > 1:
            comm = _comm(snap.by_pid[mm.pid].comm)
            console.print(line((f"pid {mm.pid}", "bold"), f" {comm}"))
        _show_one_mm(snap, mm, vmas, console)
    if not rows:
        console.print("(no process matches)")


def _show_one_mm(snap: Snapshot, mm: mm_pb2.MemoryMap, vmas: list[mm_pb2.Vma],
                 console: Console) -> None:
    pid = mm.pid
    counted = snap.has_pages
    page_cols = ("STORED", "ZERO", "INHERIT", "SHARED") if counted else ()
    # On a narrow terminal DEV and INODE go (the path names the file): room for PATH.
    ident = not compact(console) or console.width >= ROOMY
    table = _table("START", "END", "PERM", "OFFSET", *(("DEV", "INODE") if ident else ()),
                   "KIND", "RSS", "SWAP", "EXCL", *page_cols, "PATH",
                   right=("OFFSET", "INODE", "RSS", "SWAP", "EXCL", *page_cols),
                   key=("START", "END", "PERM", "OFFSET", "KIND", "RSS", "SWAP", "EXCL",
                        *page_cols), tail=("PATH",))
    for vma in vmas:
        has_pages = vma.HasField("pages")
        path = text(vma.path) + (" (deleted)" if vma.deleted else "")
        cells: list[str] = []
        if counted:
            cells = _stored_cells(snap, pid, vma)
        dev = (f"{vma.dev_major:02x}:{vma.dev_minor:02x}", str(vma.inode)) if ident else ()
        table.add_row(f"{vma.start:x}", f"{vma.end:x}", prot_text(vma), f"{vma.offset:x}",
                      *dev, vma_kind_name(vma.kind),
                      *(str(n) if has_pages else "?" for n in
                        (vma.pages.resident, vma.pages.swapped, vma.pages.exclusive)),
                      *cells, path)
    emit(console, table)
    for item in mm.unreadable:
        console.print(line(("not read:", "yellow"), f" {item.field}: {item.reason}"))
    method = mm.page_counts_method or "not read"
    shown = f"{len(vmas)} of {len(mm.vmas)}" if len(vmas) != len(mm.vmas) else str(len(vmas))
    console.print(line(f"{shown} VMAs; page counts (pages) via {method}"))
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


_NODE_NAMES = {stat.S_IFDIR: "directory", stat.S_IFCHR: "chr", stat.S_IFBLK: "blk",
               stat.S_IFLNK: "symlink", stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket"}


def _deleted_node(f: files_pb2.RegularFile) -> str:
    """"directory 0710 0:0", "chr 1:3 0640 12:34", "symlink -> TARGET"; "" for a file."""
    kind = _NODE_NAMES.get(stat.S_IFMT(f.mode)) if f.mode else None
    if kind is None:
        return ""
    out = kind
    if kind in ("chr", "blk"):
        out += f" {os.major(f.rdev)}:{os.minor(f.rdev)}"
    out += f" {stat.S_IMODE(f.mode):04o}"
    if f.HasField("uid"):
        out += f" {f.uid}:{f.gid}"
    if kind == "symlink":
        out += f" -> {text(f.link_target)}" if f.HasField("link_target") else " -> ?"
    return out


def _fd_target(fd: files_pb2.Fd, sockets: dict[int, sockets_pb2.Socket]) -> str:
    """What the fd points at, in the kind's own terms."""
    state = fd.WhichOneof("state")
    path = text(fd.path) + (" (deleted)" if fd.deleted else "")
    if state == "file" and fd.deleted and (node := _deleted_node(fd.file)):
        return f"{path} {node}"
    if state == "pipe":
        ends = "rw" if fd.pipe.read_end and fd.pipe.write_end else \
            ("r" if fd.pipe.read_end else "w")
        queued = (f" queued={fd.pipe.queued_bytes}" if fd.pipe.HasField("queued_bytes")
                  else "")
        if fd.pipe.HasField("data"):
            queued += " (bytes captured)"
        return f"{path or f'pipe:[{fd.pipe.pipe_ino}]'} {ends}{queued}"
    if state == "socket":
        sock = sockets.get(fd.socket.inode)
        name = path or f"socket:[{fd.socket.inode}]"
        if sock is None and fd.socket.HasField("probe"):
            p = fd.socket.probe
            tcp = (f" {socket_state_name(p.tcp_state)}" if p.HasField("tcp_state") else
                   " LISTEN" if p.listening else "")
            peer = f"{p.dst}:{p.dport}" if p.dst else "*:*"
            return (f"{name} {socket_family_name(p.domain)} {socket_type_name(p.type)}{tcp} "
                    f"{p.src}:{p.sport} -> {peer} (getsockopt)")
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
    if state == "tty":
        pts = pty_index_text(fd)
        return f"{path} ({pts})" if pts else path
    return path


def show_fds(snap: Snapshot, pid: int | None, console: Console,
             sel: Selection | None = None) -> None:
    """One line per fd; '*' marks an open file shared with another process."""
    if sel is None:
        sel = Selection("fds", pids=frozenset({pid}) if pid is not None else frozenset())
    holders: dict[int, set[int]] = {}
    for table in snap.fds:
        for fd in table.fds:
            if fd.file_id:
                holders.setdefault(fd.file_id, set()).add(table.pid)
    table_out = _table("PID", "FD", "KIND", "FLAGS", "POS", "FILE_ID", "S", "TARGET",
                       right=("PID", "FD", "POS", "FILE_ID"), key=("PID", "FD", "KIND", "S"))
    for fd_pid, fd in views.fd_rows(snap, sel):
        shared = "*" if len(holders.get(fd.file_id, ())) > 1 else ""
        table_out.add_row(str(fd_pid), str(fd.fd), fd_kind_name(fd.kind),
                          open_flags_text(fd.flags), str(fd.pos),
                          str(fd.file_id) if fd.file_id else "?", shared,
                          _fd_target(fd, snap.sockets_by_inode))
    emit(console, table_out, empty="(no fd matches)")
    for table in views.fd_tables(snap, sel):
        if table.vanished:
            console.print(line(f"pid {table.pid}: {table.vanished} fds closed while being read"))
        for item in table.unreadable:
            console.print(line((f"pid {table.pid}: not read:", "yellow"),
                               f" {item.field}: {item.reason}"))


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


def show_sockets(snap: Snapshot, console: Console, sel: Selection | None = None) -> None:
    """Like `ss -xtuanp`, from the snapshot: every socket with its owning pids and fds."""
    def owner(pid: int, fd: int) -> str:
        comm = _comm(snap.by_pid[pid].comm) if pid in snap.by_pid else "?"
        return f'("{comm}",pid={pid},fd={fd})'

    owners = {inode: [owner(pid, fd) for pid, fd in held]
              for inode, held in snap.socket_holders.items()}
    out = _table("NETID", "STATE", "RECV-Q", "SEND-Q", "LOCAL", "PEER", "PROCESS",
                 right=("RECV-Q", "SEND-Q"), key=("NETID", "STATE", "RECV-Q", "SEND-Q"))
    for sock in views.socket_rows(snap, sel or Selection("sockets")):
        local, peer = _endpoints(sock)
        held = owners.get(sock.inode, [])
        shown = held if not compact(console) or len(held) <= HOLDERS_SHOWN else \
            [*held[:HOLDERS_SHOWN], f"… and {len(held) - HOLDERS_SHOWN} more"]
        # a terminal wraps the list between holders: ", " (ss's "," when piped)
        out.add_row(socket_netid(sock), socket_state_name(sock.state) or "-",
                    str(sock.rqueue), str(sock.wqueue), local, peer,
                    (", " if compact(console) else ",").join(shown))
    emit(console, out, empty="(no socket matches)" if sel and (sel.filters_processes or sel.kind
                                                              or sel.state) else None)
    for run in snap.inventory.collectors:
        if run.name.startswith("sockets.") and not run.ran:
            console.print(line(("not collected:", "yellow"), f" {run.name}: {run.reason}"))


def _holders_text(items: list[str], console: Console) -> str:
    """Every holder when piped or --wide; on a terminal the first few and how many more."""
    if compact(console) and len(items) > HOLDERS_SHOWN:
        return " ".join(items[:HOLDERS_SHOWN]) + f" … and {len(items) - HOLDERS_SHOWN} more"
    return " ".join(items)


def show_shared(snap: Snapshot, console: Console, sel: Selection | None = None) -> None:
    """Kernel objects held by more than one process: open files, fd tables, fs, sighand, vm.

    On a terminal a long holder list is summarised ("27811:0 … and 412 more"); piped
    output and --wide list every holder."""
    sel = sel or Selection("shared")
    files = _table("FILE_ID", "KIND", "HOLDERS (pid:fd)", "TARGET", right=("FILE_ID",),
                   key=("FILE_ID", "KIND"))
    for file_id, held in views.shared_files(snap, sel):
        fd = held[0][1]
        files.add_row(str(file_id), fd_kind_name(fd.kind),
                      _holders_text([f"{pid}:{f.fd}" for pid, f in held], console),
                      _fd_target(fd, snap.sockets_by_inode))
    console.print("[bold]open files shared between processes[/]")
    emit(console, files, empty="(none)")
    tasks = _table("OBJECT", "ID", "PROCESSES", right=("ID",), key=("OBJECT", "ID"))
    for kind, ident, pids in views.shared_tasks(snap, sel):
        tasks.add_row(kind, str(ident), _holders_text([str(p) for p in pids], console))
    console.print("[bold]task objects shared between processes[/]")
    emit(console, tasks, empty="(none)")


def show_namespaces(snap: Snapshot, console: Console, sel: Selection | None = None) -> None:
    """One row per namespace, like lsns(8), plus its owning user namespace and parent."""
    sel = sel or Selection("ns")
    table = _table("TYPE", "NS", "OWNER", "PARENT", "NPROCS", "PIDS",
                   right=("NS", "OWNER", "PARENT", "NPROCS"),
                   key=("TYPE", "NS", "OWNER", "PARENT", "NPROCS"))
    # Ids a process marks unreadable (CRIU numbers namespaces by its own ids) are shown
    # with a "?" and the reason under the table: they group processes, they are no inodes.
    unread = {proc.pid: {u.field: u.reason for u in proc.unreadable
                         if u.field == "namespaces" or u.field.startswith("namespaces.")}
              for proc in snap.processes}
    notes: dict[str, None] = {}
    for ns, pids in views.namespace_rows(snap, sel):
        why = next((r for p in pids for f, r in unread.get(p, {}).items()
                    if f in ("namespaces", f"namespaces.{ns.type}")), None)
        if why is not None:
            notes[why] = None
        table.add_row(ns.type, f"{ns.inode}?" if why is not None else str(ns.inode),
                      str(ns.owner_user or "-"), str(ns.parent or "-"),
                      str(len(pids)), _pid_list(pids, None if not compact(console) else 12))
    emit(console, table, empty="(no namespaces recorded)")
    for why in notes:
        console.print(line(f"?: not an inode number: {why}"))
    shown = views.selected_pids(snap, sel)
    pending = [(proc.pid, ns) for proc in snap.processes if proc.pid in shown
               for ns in proc.namespaces
               if ns.type.endswith("_for_children")
               and ns.inode != namespace_inode(proc, ns.type.removesuffix("_for_children"))]
    for pid, ns in pending:
        console.print(line(f"pid {pid}: {ns.type} is {ns.inode} (owner {ns.owner_user or '-'}): "
                           "its next children are born there"))


def _pid_list(pids: list[int], limit: int | None = 12) -> str:
    if limit is None or len(pids) <= limit:
        return " ".join(map(str, pids))
    return " ".join(map(str, pids[:limit])) + f" (+{len(pids) - limit})"


def show_check(features: list[Feature], console: Console) -> None:
    table = _table("FEATURE", "OK", "WHY")
    for feat in features:
        ok = Text("yes", style="green") if feat.available else Text("no", style="red")
        table.add_row(feat.name, ok, feat.detail)
    emit(console, table)


