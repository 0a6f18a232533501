"""Pictures of snapshots as Graphviz DOT text: the tree, its sessions and groups, what is shared.

Why DOT: it is plain text, needs nothing installed, and ``dot`` lays a tree
out better than anything we would write. SVG/PNG come from
:func:`criu_model.graphviz.run_dot`.

What :func:`graph_dot` draws:

- one box per process (comm, pid, nspid inside a pid namespace, thread count),
  a parent -> child edge per process whose parent is in the snapshot; more
  than FAN_AFTER leaf children of one parent in one group are a grid cluster
  ("190 children of pid 7") with one edge, so a wide tree stays near square;
- sessions as clusters, and each process group as a cluster inside its session;
- zombies grey and dashed, labelled ``zombie``;
- what processes share: a pipe as writer -> reader edges (blue), a connected
  socket pair (unix peers, or two ends of a TCP connection both in the
  snapshot) as an undirected dashed purple edge, any other open file
  description held by several processes as one small note with dotted edges
  to its holders. An object with more than ``max_edges`` holders is drawn once,
  with edges only to the topmost holders (those whose parent does not hold it:
  their descendants inherited it) and its holder count in the label, so 200
  processes that inherited the same stdout give one note and one edge, not 200.

:func:`diff_graph_dot` draws the newer tree of a diff, processes coloured by
what happened to them (added green, removed red, kept from the older
snapshot, changed orange with their first changes listed), with a legend.
A reused pid (a removal plus an addition) is two boxes.

Every piece of data (comm, paths, socket names) goes through
:func:`dot_text`: escaped for the terminal rules of names.printable first
(control bytes, newlines, bytes that are not UTF-8 become ``\\xNN``), then for
DOT (backslash, double quote, and ``&`` since Graphviz decodes HTML entities
in plain labels too).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from criu_model.errors import UsageError
from criu_model.images.pb import files_pb2, process_pb2, sockets_pb2
from criu_model.names import fd_kind_name, printable, socket_type_name, unix_name
from criu_model.snapshot import Snapshot

if TYPE_CHECKING:
    from criu_model.differ import Change, Diff

MAX_EDGES = 4   # edges drawn for one shared object before it is summarised
FAN_AFTER = 12  # leaf children of one parent (in one group) drawn one by one before a grid
PATH_LIMIT = 40  # characters of a path shown in a file note (its start elided)

_FONT = "Helvetica"
_RANKDIRS = ("LR", "TB", "RL", "BT")
# Pale session backgrounds, cycled so that neighbouring sessions differ.
_SESSION_COLOURS = ("#eef4fb", "#f3f8ec", "#fbf3e8", "#f5eefa", "#eaf7f6", "#fbeef0")
_PIPE_COLOUR = "#1f5fbf"
_SOCKET_COLOUR = "#8e3fbf"
_FILE_COLOUR = "#808080"
_ZOMBIE = 'style="rounded,filled,dashed", fillcolor="#e0e0e0", fontcolor="#555555"'
# Diff status -> (fill, border, extra style)
_STATUS_STYLE = {
    "added": ("#c8f0c0", "#2e7d32", ""),
    "removed": ("#f6c6c6", "#c62828", ",dashed"),
    "changed": ("#ffdca8", "#e65100", ""),
    "unchanged": ("#ffffff", "#555555", ""),
}
_GREY_TEXT = ', fontcolor="#555555"'
_MARK = {"added": "+", "removed": "-", "changed": "~", "replaced": "~"}


def dot_text(value: str | bytes, limit: int | None = None, *, keep_end: bool = False) -> str:
    """Data as the inside of a DOT double-quoted string: shown literally, never parsed.

    `limit` elides long values in the middle, or at the start with `keep_end`
    (a path keeps its file name, which is what tells two notes apart).
    """
    s = printable(value)
    if limit is not None and len(s) > limit:
        if keep_end:
            s = "…" + s[len(s) - limit + 1:]
        else:
            head = limit // 2
            s = s[:head] + "…" + s[len(s) - (limit - head - 1):]
    # Escaped after eliding, so a cut escape sequence cannot end in a lone backslash.
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("&", "&amp;")


def _label(*lines: str) -> str:
    """Already escaped lines as one quoted DOT label (centred lines)."""
    return '"' + "\\n".join(lines) + '"'


# ------------------------------------------------------------------ processes


def _process_lines(proc: process_pb2.Process) -> list[str]:
    """Label lines of a process box (escaped)."""
    head = f"pid {proc.pid}"
    if len(proc.ns_pids) > 1:
        head += f" (ns pid {proc.ns_pids[-1]})"
    if len(proc.threads) > 1:
        head += f" · {len(proc.threads)} threads"
    lines = [dot_text(proc.comm) or "?", head]
    if proc.state == "Z":
        lines.append(dot_text(_zombie_text(proc)))
    elif proc.state not in ("", "S", "R", "I"):
        lines.append(f"state {dot_text(proc.state)}")
    return lines


def _zombie_text(proc: process_pb2.Process) -> str:
    if any(u.field == "exit_code" for u in proc.unreadable):
        return "zombie"
    status = proc.exit_code   # the wait status, as waitpid(2) would report it
    if status & 0x7F:
        return f"zombie (killed by signal {status & 0x7F})"
    return f"zombie (exit {(status >> 8) & 0xFF})"


def _tooltip(proc: process_pb2.Process) -> str:
    cmd = " ".join(printable(a) for a in proc.cmdline) or printable(proc.comm)
    return dot_text(f"{proc.pid}: {cmd}", limit=200)


@dataclass
class _Node:
    """One process box: its DOT id, its parent's (when drawn), its statement."""

    proc: process_pb2.Process
    id: str                  # "p123"; "p123_old" for a removed process whose pid was reused
    parent: str | None       # the parent's node id, None when the parent is not drawn
    line: str = ""           # the DOT node statement
    edge_style: str = ""     # extra attributes of the edge from its parent


@dataclass
class _Fan:
    """Many leaf children of one parent in one group: drawn as a grid, with one edge.

    190 children in one rank make a picture as tall as 190 boxes, and one edge
    each (or ``unflatten``-style staggering) is a thicket; a labelled grid
    with a single parent edge reads at a glance.
    """

    parent: str              # node id
    parent_pid: int
    sid: int
    pgid: int
    members: list[str] = field(default_factory=list)   # node ids

    @property
    def cluster(self) -> str:
        return f"cluster_kids_{self.parent}_{self.sid}_{self.pgid}"

    def rows(self) -> list[list[str]]:
        """Rows of about sqrt(0.3 n) boxes: near square for boxes ~3x wider than tall."""
        width = max(2, round(math.sqrt(len(self.members) * 0.3)))
        return [self.members[i:i + width] for i in range(0, len(self.members), width)]


def _fans(nodes: list[_Node]) -> dict[str, _Fan]:
    """member id -> its fan, for every parent with more than FAN_AFTER leaves in one group."""
    parents = {n.parent for n in nodes if n.parent is not None}
    pids = {n.id: n.proc.pid for n in nodes}
    buckets: dict[tuple[str, int, int], _Fan] = {}
    for node in nodes:
        if node.parent is not None and node.id not in parents:
            key = (node.parent, node.proc.sid, node.proc.pgid)
            fan = buckets.setdefault(key, _Fan(node.parent, pids[node.parent], *key[1:]))
            fan.members.append(node.id)
    return {member: fan for fan in buckets.values() if len(fan.members) > FAN_AFTER
            for member in fan.members}


@dataclass
class _Cluster:
    """One session, its groups, and the nodes of each group, in snapshot order."""

    sid: int
    groups: dict[int, list[str]] = field(default_factory=dict)   # pgid -> node lines
    fans: dict[int, dict[str, tuple[_Fan, list[str]]]] = field(default_factory=dict)


def _clusters(nodes: list[_Node], fans: dict[str, _Fan]) -> list[_Cluster]:
    sessions: dict[int, _Cluster] = {}
    for node in nodes:
        proc = node.proc
        session = sessions.setdefault(proc.sid, _Cluster(proc.sid))
        session.groups.setdefault(proc.pgid, [])
        fan = fans.get(node.id)
        if fan is None:
            session.groups[proc.pgid].append(node.line)
        else:
            session.fans.setdefault(proc.pgid, {}).setdefault(
                fan.cluster, (fan, []))[1].append(node.line)
    return [sessions[sid] for sid in sorted(sessions)]


def _emit_clusters(clusters: list[_Cluster]) -> Iterator[str]:
    for index, session in enumerate(clusters):
        colour = _SESSION_COLOURS[index % len(_SESSION_COLOURS)]
        yield f"  subgraph cluster_s{session.sid} {{"
        yield (f'    label="session {session.sid}"; style="rounded,filled"; '
               f'fillcolor="{colour}"; color="#8a9bb0"; labeljust=l;')
        for pgid in sorted(session.groups):
            yield f"    subgraph cluster_s{session.sid}_g{pgid} {{"
            yield (f'      label="group {pgid}"; style="rounded,dashed"; color="#9a9a9a"; '
                   'fontsize=9; labeljust=l;')
            for node in session.groups[pgid]:
                yield f"      {node}"
            for name, (fan, lines) in session.fans.get(pgid, {}).items():
                yield f"      subgraph {name} {{"
                yield (f'        label="{len(fan.members)} children of pid {fan.parent_pid}"; '
                       'style="rounded"; color="#555555"; fontsize=9; labeljust=l;')
                for node in lines:
                    yield f"        {node}"
                yield "      }"
            yield "    }"
        yield "  }"


def _header(rankdir: str) -> list[str]:
    if rankdir not in _RANKDIRS:   # written into the DOT unquoted
        raise UsageError(f"rankdir must be one of {', '.join(_RANKDIRS)}, not {rankdir!r}")
    return ["digraph criu_model {",
           f'  graph [rankdir={rankdir}, fontname="{_FONT}", fontsize=11, nodesep=0.12, '
           'ranksep=0.35, newrank=true, compound=true, outputorder=edgesfirst];',
           f'  node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="{_FONT}", '
           'fontsize=10, margin="0.08,0.03", height=0.3];',
           f'  edge [fontname="{_FONT}", fontsize=8, arrowsize=0.6];']


@dataclass(frozen=True)
class _Key:
    """One legend entry: our own text (not data), its colours."""

    text: str
    colour: str = "#000000"
    fill: str | None = None     # a box, as the nodes it explains
    border: str | None = None


def _title(title: str, keys: Iterable[_Key]) -> str:
    """The graph label: the title, and below it a one-line legend of what is drawn.

    An HTML-like label (coloured runs and boxes in one line, instead of a legend
    cluster as big as a small tree): the title, the only data in it, is
    HTML-escaped after names.printable.
    """
    cells = []
    for key in keys:
        if key.fill is not None:
            cells.append(f'<TD BGCOLOR="{key.fill}" COLOR="{key.border}" BORDER="1" '
                         f'STYLE="rounded">{html.escape(key.text)}</TD>')
        else:
            cells.append(f'<TD><FONT COLOR="{key.colour}">{html.escape(key.text)}</FONT></TD>')
    legend = (f'<TR><TD><FONT POINT-SIZE="8"><TABLE BORDER="0" CELLSPACING="6" '
              f'CELLPADDING="2"><TR>{"".join(cells)}</TR></TABLE></FONT></TD></TR>'
              if cells else "")
    shown = printable(title)
    if len(shown) > 120:
        shown = shown[:119] + "…"
    return (f'  label=<<TABLE BORDER="0" CELLSPACING="0"><TR><TD>{html.escape(shown)}</TD></TR>'
            f'{legend}</TABLE>>; labelloc=t; fontsize=11;')


# --------------------------------------------------------------- what is shared


@dataclass
class _Holding:
    """Who holds one kernel object, and how it is described."""

    key: str                 # node id / edge id stem: "pipe_123", "file_45"
    label: list[str]         # escaped lines for a summary note
    holders: dict[int, list[int]] = field(default_factory=dict)   # pid -> its fds

    def add(self, pid: int, fd: int) -> None:
        self.holders.setdefault(pid, []).append(fd)


def _target(fd: files_pb2.Fd, sockets: dict[int, sockets_pb2.Socket]) -> str:
    """What an fd points at, in a few words (raw text; escaped by the caller)."""
    if fd.HasField("socket"):
        sock = sockets.get(fd.socket.inode)
        what = f"socket:[{fd.socket.inode}]"
        if sock is not None and sock.WhichOneof("kind") == "unix":
            name = unix_name(sock)
            return f"{what} unix {socket_type_name(sock.type)}" + (f" {name}" if name else "")
        return what
    if fd.path:
        return printable(fd.path) + (" (deleted)" if fd.deleted else "")
    if fd.HasField("pipe"):
        return f"pipe:[{fd.pipe.pipe_ino}]"
    return fd_kind_name(fd.kind)


def _path(value: str) -> str:
    return dot_text(value, PATH_LIMIT, keep_end=True)


def _fds_text(fds: list[int]) -> str:
    shown = ",".join(str(f) for f in fds[:6])
    return f"fd {shown}" + ("…" if len(fds) > 6 else "")


def _topmost(pids: Iterable[int], snap: Snapshot) -> list[int]:
    """Holders whose parent is not a holder: where an inherited object entered the tree."""
    held = set(pids)
    return sorted(p for p in held if snap.by_pid[p].ppid not in held or
                  snap.by_pid[p].ppid == p)


class _SharedEdges:
    """Builds the DOT lines for everything shared between processes of one snapshot."""

    def __init__(self, snap: Snapshot, max_edges: int) -> None:
        self.snap = snap
        self.max_edges = max(1, max_edges)
        self.nodes: list[str] = []
        self.edges: list[str] = []
        self.kinds: set[str] = set()    # "pipe", "socket", "file": what the legend explains

    def build(self) -> tuple[list[str], list[str]]:
        snap = self.snap
        pipes: dict[int, tuple[_Holding, _Holding]] = {}   # ino -> (writers, readers)
        files: dict[int, _Holding] = {}
        for table in snap.fds:
            if table.pid not in snap.by_pid:
                continue
            for fd in table.fds:
                if fd.HasField("pipe"):
                    ino = fd.pipe.pipe_ino
                    if ino not in pipes:
                        name = printable(fd.path) if fd.path else f"pipe:[{ino}]"
                        pipes[ino] = (_Holding(f"pipe_{ino}", [_path(name)]),
                                      _Holding(f"pipe_{ino}", []))
                    writers, readers = pipes[ino]
                    if fd.pipe.write_end:
                        writers.add(table.pid, fd.fd)
                    if fd.pipe.read_end:
                        readers.add(table.pid, fd.fd)
                elif fd.file_id:
                    holding = files.get(fd.file_id)
                    if holding is None:
                        what = _target(fd, snap.sockets_by_inode)
                        holding = files[fd.file_id] = _Holding(
                            f"file_{fd.file_id}",
                            [dot_text(fd_kind_name(fd.kind)), _path(what)])
                    holding.add(table.pid, fd.fd)
        for ino in sorted(pipes):
            self._pipe(*pipes[ino])
        for file_id in sorted(files):
            if len(files[file_id].holders) > 1:
                self.kinds.add("file")
                self._note(files[file_id], _FILE_COLOUR, "dotted", directed=None)
        self._connections()
        return self.nodes, self.edges

    def _pipe(self, writers: _Holding, readers: _Holding) -> None:
        pids = set(writers.holders) | set(readers.holders)
        if len(pids) < 2:
            return
        pairs = [(w, r) for w in sorted(writers.holders) for r in sorted(readers.holders)
                 if w != r]
        covered = {p for pair in pairs for p in pair}
        if pairs and len(pairs) <= self.max_edges and covered == pids:
            for w, r in pairs:
                tip = dot_text(f"pipe: pid {w} "
                               f"{_fds_text(writers.holders[w])} writes, pid {r} "
                               f"{_fds_text(readers.holders[r])} reads")
                self.kinds.add("pipe")
                self.edges.append(
                    f'p{w} -> p{r} [id="{writers.key}_{w}_{r}", color="{_PIPE_COLOUR}", '
                    f'penwidth=1.6, constraint=false, tooltip="{tip}"];')
            return
        # Many holders, or one end held outside the snapshot: one pipe note.
        note = _Holding(writers.key, list(writers.label))
        for pid in sorted(pids):
            for fd in writers.holders.get(pid, []) + readers.holders.get(pid, []):
                note.add(pid, fd)
        note.label.append(f"{len(writers.holders)} writing, {len(readers.holders)} reading here")
        roles = {p: ("w" if p in writers.holders else "") + ("r" if p in readers.holders else "")
                 for p in pids}
        self.kinds.add("pipe")
        self._note(note, _PIPE_COLOUR, "solid", directed=roles)

    def _note(self, holding: _Holding, colour: str, style: str,
              directed: dict[int, str] | None) -> None:
        """One small node for a shared object, with edges to (the topmost of) its holders."""
        pids = sorted(holding.holders)
        label = list(holding.label)
        fd_lists = {tuple(fds) for fds in holding.holders.values()}
        if len(fd_lists) == 1:   # the same fd everywhere (inherited): it tells stdin from stdout
            label[0] = f"{_fds_text(list(fd_lists.pop()))} · {label[0]}"
        shown = pids
        if len(pids) > self.max_edges:
            shown = _topmost(pids, self.snap)
            label.append(f"held by {len(pids)} processes")
            if len(shown) > self.max_edges:
                label.append(f"drawn: {self.max_edges} of {len(shown)} topmost holders")
                shown = shown[:self.max_edges]
            else:
                label.append("drawn: the topmost holder" if len(shown) == 1 else
                             f"drawn: the {len(shown)} topmost holders")
        node = holding.key
        self.nodes.append(
            f'{node} [id="{node}", label={_label(*label)}, shape=note, style=filled, '
            f'fillcolor="#fafafa", color="{colour}", fontcolor="#333333", fontsize=8, '
            'margin="0.04,0.02", height=0.2];')
        for index, pid in enumerate(shown):
            tip = dot_text(f"pid {pid} {_fds_text(holding.holders[pid])}")
            # The first edge ranks the note next to a holder; the others must not
            # stretch the tree's layout.
            attrs = (f'id="{node}_{pid}", color="{colour}", style={style}, '
                     f'constraint={"true" if index == 0 else "false"}, tooltip="{tip}"')
            role = directed.get(pid, "") if directed is not None else ""
            if role == "w":
                self.edges.append(f"p{pid} -> {node} [{attrs}];")
            elif role == "r":
                self.edges.append(f"{node} -> p{pid} [{attrs}];")
            else:
                self.edges.append(f"{node} -> p{pid} [{attrs}, dir=none];")

    def _connections(self) -> None:
        """Unix peers and loopback TCP connections whose two ends are both held here."""
        snap = self.snap
        holders = {ino: sorted({pid for pid, _ in held if pid in snap.by_pid})
                   for ino, held in snap.socket_holders.items()}
        by_tuple: dict[tuple[str, int, str, int], int] = {}
        for sock in snap.sockets:
            if sock.WhichOneof("kind") == "inet" and sock.inet.dport:
                i = sock.inet
                by_tuple[(i.src, i.sport, i.dst, i.dport)] = sock.inode
        seen: set[tuple[int, int]] = set()
        for sock in snap.sockets:
            kind = sock.WhichOneof("kind")
            peer = 0
            what = ""
            if kind == "unix" and sock.unix.peer_inode:
                peer = sock.unix.peer_inode
                what = f"unix {socket_type_name(sock.type)}"
            elif kind == "inet" and sock.inet.dport:
                i = sock.inet
                peer = by_tuple.get((i.dst, i.dport, i.src, i.sport), 0)
                what = f"tcp {i.src}:{i.sport} - {i.dst}:{i.dport}" if i.protocol == 6 else \
                    f"inet {i.src}:{i.sport} - {i.dst}:{i.dport}"
            if not peer:
                continue
            pair = (min(sock.inode, peer), max(sock.inode, peer))
            if pair in seen:
                continue
            seen.add(pair)
            ends = [(a, b) for a in holders.get(sock.inode, []) for b in holders.get(peer, [])
                    if a != b]
            for a, b in ends[:self.max_edges]:
                tip = dot_text(f"{what}: socket:[{sock.inode}] of pid {a}, "
                               f"socket:[{peer}] of pid {b}")
                self.kinds.add("socket")
                self.edges.append(
                    f'p{a} -> p{b} [id="sock_{pair[0]}_{pair[1]}_{a}_{b}", dir=none, '
                    f'style=dashed, color="{_SOCKET_COLOUR}", penwidth=1.4, '
                    f'constraint=false, tooltip="{tip}"];')


_TREE_KEY = _Key("→ parent to child")
_KEYS = {
    "pipe": _Key("→ pipe, writer to reader", _PIPE_COLOUR),
    "socket": _Key("- - connected sockets", _SOCKET_COLOUR),
    "file": _Key("··· open file shared (note: what, held by)", _FILE_COLOUR),
}
_ZOMBIE_KEY = _Key("zombie", "#555555", "#e0e0e0", "#000000")


# --------------------------------------------------------------------- pictures


def graph_dot(snap: Snapshot, *, max_edges: int = MAX_EDGES, shared: bool = True,
              legend: bool = True, rankdir: str = "LR", title: str | None = None) -> str:
    """The snapshot's process tree as DOT text (see the module docstring).

    `shared` adds the pipes, sockets and files shared between processes;
    `max_edges` is how many holders of one object get an edge before it is
    summarised; `legend` adds the one-line key under the title. `rankdir`
    "LR" keeps wide trees readable (siblings stack); "TB" is top-down.
    """
    if title is None:
        inv = snap.inventory
        title = f"{len(snap.processes)} processes, {snap.thread_count} threads"
        if inv.hostname:
            title = f"{printable(inv.hostname)}: {title}"
    lines = _header(rankdir)
    nodes = []
    for proc in snap.processes:
        style = f", {_ZOMBIE}" if proc.state == "Z" else ""
        parent = f"p{proc.ppid}" if proc.ppid in snap.by_pid and proc.ppid != proc.pid else None
        nodes.append(_Node(proc, f"p{proc.pid}", parent,
                           f'p{proc.pid} [id="p{proc.pid}", label={_label(*_process_lines(proc))}'
                           f', tooltip="{_tooltip(proc)}"{style}];'))
    lines.extend(_layout(nodes))
    keys = [_TREE_KEY]
    if shared:
        drawer = _SharedEdges(snap, max_edges)
        extra_nodes, edges = drawer.build()
        lines.extend("  " + n for n in extra_nodes)
        lines.extend("  " + e for e in edges)
        keys.extend(key for kind, key in _KEYS.items() if kind in drawer.kinds)
    if any(p.state == "Z" for p in snap.processes):
        keys.append(_ZOMBIE_KEY)
    lines.append(_title(title, keys if legend else ()))
    lines.append("}")
    return "\n".join(lines) + "\n"


def _layout(nodes: list[_Node]) -> Iterator[str]:
    """Clusters with their nodes, then parent -> child edges."""
    fans = _fans(nodes)
    yield from _emit_clusters(_clusters(nodes, fans))
    yield from _tree_edges(nodes, fans)


def _tree_edges(nodes: list[_Node], fans: dict[str, _Fan]) -> Iterator[str]:
    """Parent -> child edges; a fan gets one edge to its grid and invisible ones that lay it."""
    done: set[str] = set()
    for node in nodes:
        if node.parent is None:
            continue
        fan = fans.get(node.id)
        if fan is None:
            yield (f'  {node.parent} -> {node.id} [id="tree_{node.parent}_{node.id}"'
                   f'{node.edge_style}];')
            continue
        if fan.cluster in done:
            continue
        done.add(fan.cluster)
        rows = fan.rows()
        yield (f'  {fan.parent} -> {rows[0][0]} [id="tree_{fan.cluster[8:]}", '
               f'lhead={fan.cluster}];')
        for row in rows:
            if row is not rows[0]:
                yield f"  {fan.parent} -> {row[0]} [style=invis];"
            for left, right in pairwise(row):
                yield f"  {left} -> {right} [style=invis];"


_PER_PROCESS = frozenset({"process", "thread", "namespace", "fd", "fd_table", "vma", "memory"})


@dataclass
class ProcessStatus:
    """What a diff did to each process: whole ones added or removed, changes of the others."""

    added: set[int] = field(default_factory=set)
    removed: set[int] = field(default_factory=set)   # a reused pid is in both
    changes: dict[int, list[Change]] = field(default_factory=dict)


def process_status(result: Diff) -> ProcessStatus:
    """Sort the changes of `result` by the process they are drawn on."""
    out = ProcessStatus()
    for ch in result.changes:
        if ch.what == "process" and ch.field is None and ch.op in ("added", "removed"):
            if ch.pid is not None:
                (out.added if ch.op == "added" else out.removed).add(ch.pid)
            continue
        involved: Iterable[int | None]
        if ch.what in _PER_PROCESS:
            involved = (ch.pid,)
        elif ch.what == "sharing":
            involved = _regrouped(ch) or ch.pids or (ch.pid,)
        else:   # sockets, ghosts, mounts: every process involved
            involved = ch.pids or (ch.pid,)
        for pid in involved:
            if pid is not None:
                out.changes.setdefault(pid, []).append(ch)
    return out


def _regrouped(ch: Change) -> list[int]:
    """The holders whose part in a sharing change differs (not every holder of the object).

    One process closing its copy of an inherited stdout changes the holders of
    that file; only that process changed. Shapes (differ/partition.py): open
    files as ["PID:FD", ...], task objects as [[PID, ...], ...]; None when absent.
    """
    def shares(value: Any) -> dict[int, frozenset[Any]]:
        out: dict[int, set[Any]] = {}
        for item in value or ():
            if isinstance(item, str) and ":" in item:     # an open file: "pid:fd"
                pid, fd = item.split(":", 1)
                out.setdefault(int(pid), set()).add(fd)
            elif isinstance(item, list):                 # a task object: one group
                for pid in item:
                    out.setdefault(int(pid), set()).update(item)
        return {pid: frozenset(v) for pid, v in out.items()}

    try:
        before, after = shares(ch.before), shares(ch.after)
    except (TypeError, ValueError):
        return []
    return sorted(pid for pid in before.keys() | after.keys()
                  if before.get(pid) != after.get(pid))


# Where a change is listed in a box: the process's own fields first, sharing last.
_WHAT_RANK = {"process": 0, "thread": 1, "namespace": 2, "fd": 3, "fd_table": 3, "socket": 4,
              "ghost": 4, "vma": 5, "memory": 5, "mount": 6, "sharing": 7}
_PLURAL = {"fd": "fds", "vma": "VMAs", "thread": "threads", "socket": "sockets",
           "namespace": "namespaces", "sharing": "shared objects", "memory": "memory changes",
           "mount": "mounts", "ghost": "deleted files", "fd_table": "fd tables",
           "process": "fields"}


# Process fields listed first, with their values (short, and decimal in `diff` too).
_KEY_FIELDS = ("state", "ppid", "pgid", "sid", "comm", "exit_code", "nice")


def _short_value(value: Any) -> str | None:
    if isinstance(value, bool | int) or (isinstance(value, str) and len(value) <= 16):
        return printable(str(value))
    return None


def _change_text(ch: Change) -> str:
    """'~ state S → Z', '+ fd 5 /dev/null', '~ fd 3 pos' (raw text: escaped by the caller)."""
    subject = {"fd": f"fd {ch.fd}", "thread": f"thread {ch.tid}",
               "vma": f"vma {ch.start:x}" if ch.start is not None else "vma",
               "socket": f"socket {ch.key}", "sharing": f"shared {ch.key or ch.field}",
               "fd_table": "fd table", "memory": "memory", "mount": f"mount {ch.key}",
               "ghost": f"ghost {ch.key}", "namespace": f"namespace {ch.field or ch.key}",
               }.get(ch.what, "")
    if ch.field is not None and ch.what not in ("namespace", "sharing"):
        subject = f"{subject} {ch.field}" if subject else ch.field
    whole = ch.after if ch.op == "added" else ch.before
    if ch.what == "fd" and ch.field is None and isinstance(whole, dict) and whole.get("target"):
        subject += f" {whole['target']}"   # which file: what tells `+ fd 5` apart
    if ch.op == "changed" and ch.what == "process" and ch.field in _KEY_FIELDS:
        before, after = _short_value(ch.before), _short_value(ch.after)
        if before is not None and after is not None:
            subject += f" {before} → {after}"
    return f"{_MARK.get(ch.op, '~')} {subject or ch.what}"


def _change_lines(changes: list[Change], limit: int) -> list[str]:
    """At most `limit` lines (escaped) for a box: own fields one by one, the rest counted.

    A process that exits loses 38 VMAs and 5 fds: "- 38 VMAs" says it, three
    VMA lines and "+49 more" would not.
    """
    def rank(ch: Change) -> int:
        return _KEY_FIELDS.index(ch.field) if ch.field in _KEY_FIELDS else len(_KEY_FIELDS)

    own = [_change_text(ch) for ch in sorted((c for c in changes if c.what == "process"),
                                              key=rank)]
    groups: dict[tuple[str, str], list[Change]] = {}
    for ch in sorted(changes, key=lambda c: _WHAT_RANK.get(c.what, 9)):
        if ch.what != "process":
            groups.setdefault((ch.op, ch.what), []).append(ch)
    counted = []
    for (op, what), group in groups.items():
        if len(group) == 1:
            counted.append(_change_text(group[0]))
        else:
            objects = {(c.fd, c.tid, c.start, c.key) for c in group}
            counted.append(f"{_MARK.get(op, '~')} {len(objects)} {_PLURAL.get(what, what)}")
    if len(own) + len(counted) > limit:
        keep = max(1, limit - 1 - len(counted))   # room for "~ N other fields"
        if len(own) > keep:
            own = [*own[:keep], f"~ {len(own) - keep} other fields"]
    lines = own + counted
    if len(lines) > limit:
        lines = [*lines[:limit - 1], f"+{len(lines) - limit + 1} more"]
    return [dot_text(text, limit=44) for text in lines]


def diff_graph_dot(old: Snapshot, new: Snapshot, result: Diff, *, max_changes: int = 5,
                   rankdir: str = "LR", title: str | None = None) -> str:
    """The newer tree of `result` (a diff of `old` -> `new`) as DOT, coloured by change.

    Removed processes are kept as nodes from `old`, under their old parent
    when it is still drawn. Each changed process lists up to `max_changes`
    lines: its own fields (short values shown), then the other changes counted
    by kind ("- 38 VMAs"); `criu-model diff` has the details.
    """
    status = process_status(result)
    new_ids = {p.pid: f"p{p.pid}" for p in new.processes}
    gone = [p for p in old.processes if p.pid in status.removed]
    old_ids = {p.pid: f"p{p.pid}_old" if p.pid in new_ids else f"p{p.pid}" for p in gone}
    drawn: list[tuple[process_pb2.Process, str, str | None, str]] = []
    for proc in new.processes:
        state = ("added" if proc.pid in status.added else
                 "changed" if proc.pid in status.changes else "unchanged")
        parent = new_ids.get(proc.ppid) if proc.ppid != proc.pid else None
        drawn.append((proc, new_ids[proc.pid], parent, state))
    for proc in gone:   # its old parent: removed too (drawn from old), or still here
        parent = (old_ids.get(proc.ppid) or new_ids.get(proc.ppid)) \
            if proc.ppid != proc.pid else None
        drawn.append((proc, old_ids[proc.pid], parent, "removed"))
    counts = {name: sum(1 for *_, state in drawn if state == name) for name in _STATUS_STYLE}
    if title is None:
        title = (f"diff: {counts['added']} added, {counts['removed']} removed, "
                 f"{counts['changed']} changed of {len(drawn)} processes")
    lines = _header(rankdir)
    nodes = []
    for proc, node_id, parent, state in drawn:
        fill, border, extra = _STATUS_STYLE[state]
        label = _process_lines(proc)
        if state in ("added", "removed"):
            label.append(state)
        if state == "changed":
            label.extend(_change_lines(status.changes[proc.pid], max_changes))
        zombie = proc.state == "Z"
        style = "rounded,filled" + (",dashed" if zombie else "") + extra
        edge = ""
        if state in ("added", "removed"):
            edge = f', color="{border}", penwidth=1.4' + (
                ", style=dashed" if state == "removed" else "")
        nodes.append(_Node(proc, node_id, parent,
                           f'{node_id} [id="{node_id}", class="{state}", '
                           f'label={_label(*label)}, tooltip="{_tooltip(proc)}", '
                           f'style="{style}", fillcolor="{fill}", color="{border}", '
                           f'penwidth={1.0 if state == "unchanged" else 1.8}'
                           f'{_GREY_TEXT if zombie else ""}];', edge))
    lines.extend(_layout(nodes))
    lines.append(_title(title, [_Key(f"{name} ({counts[name]})", "#000000", fill, border)
                                for name, (fill, border, _extra) in _STATUS_STYLE.items()]))
    lines.append("}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ for the CLI


def render_graph(snap: Snapshot, fmt: str = "dot", *, max_edges: int = MAX_EDGES,
                 shared: bool = True, timeout: float = 60.0) -> bytes:
    """`show DIR graph`: the picture as bytes in `fmt` (dot, svg, png).

    DOT never needs Graphviz; svg/png raise GraphvizMissing without `dot`.
    """
    from criu_model.graphviz import run_dot

    return run_dot(graph_dot(snap, max_edges=max_edges, shared=shared), fmt, timeout=timeout)


def render_diff_graph(old: Snapshot, new: Snapshot, fmt: str = "dot", *,
                      result: Diff | None = None, timeout: float = 60.0) -> bytes:
    """`diff A B --graph`: the picture of the diff as bytes in `fmt`.

    Pass the CLI's `result` (after --pid/--only filters) so the picture shows
    what the text shows; without it the full diff is computed.
    """
    from criu_model.graphviz import run_dot

    if result is None:
        from criu_model.differ import diff

        result = diff(old, new)
    return run_dot(diff_graph_dot(old, new, result), fmt, timeout=timeout)
