"""`criu-model show DIR [VIEW] [PID] [filters] [--json] [--wide]`: one snapshot, one side.

Views are dispatched by name through `_VIEWS` below. A new view (e.g. `graph`,
drawn by render/graph.py) is one name in `VIEWS`, one line in `VIEW_HELP` and
one function in `_VIEWS`; its JSON (if any) goes in render/json.view_to_json.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from criu_model.argtypes import parse_pid
from criu_model.cli import memory
from criu_model.errors import BadArgument, UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.console import Console

    from criu_model.render.views import Selection
    from criu_model.snapshot import Snapshot

# name -> what it shows (the --help text). `memory` reads page contents, not a table.
VIEW_HELP = {
    "tree": "the process tree, like ps -ejH (the default)",
    "procs": "one row per process: ids, tty, state, threads, uid, cmdline",
    "mems": "mems PID: the memory layout (VMAs) of PID, like pmap -X",
    "fds": "fds [PID]: one row per fd: kind, flags, position, file id, target",
    "sockets": "every socket, like ss -xtuanp, with the pids and fds holding it",
    "shared": "open files, fd tables, fs, sighand, vm held by more than one process",
    "ns": "one row per namespace, like lsns, with its owner and parent",
    "threads": "threads PID: every thread's registers, signal mask and rseq (--pages)",
    "memory": "memory PID ADDR [LEN]: a hexdump of dumped memory (--pages)",
    "graph": "a picture: the tree, sessions and groups as clusters, what is shared as "
             "edges (--format dot|svg|png, -o FILE)",
    "container": "what a Podman/CRI-O/containerd checkpoint archive says of its container",
}
VIEWS = tuple(VIEW_HELP)
# The views that take a positional PID (for fds it is optional; a filter like --pid).
_PID_VIEWS = ("mems", "fds", "threads", "memory")

_EPILOG = """views:
{views}

filters (tree, procs, fds, sockets, mems, shared, ns):
  --pid PID [--children]  only PID (repeatable), with --children its whole subtree
  --comm NAME             processes whose comm is NAME (or matches a pattern like 'py*')
  --state STATE           processes in STATE: R S D T t Z X P I (or running, sleeping,
                          zombie...); in the sockets view a socket state (LISTEN,
                          ESTABLISHED, UNCONN...)
  --kind KIND             fds/shared: an fd kind (regular pipe socket tty...); sockets: a
                          family or netid (unix inet inet6 netlink packet tcp udp u_str...);
                          mems: a VMA kind (file anon heap stack...); ns: a namespace type

--json prints the whole snapshot for `show DIR --json`, and just the view's rows for
`show DIR VIEW --json`: {{"view": VIEW, "filters": {{...}}, LIST: [...]}} (see README).
On a terminal tables fit its width (key columns whole, long ones wrapped or cut);
piped output is never cut; --wide gives full width on a terminal too."""


# One line of `criu-model --help` (registered alone when another command runs).
HELP = "inspect a snapshot directory (tree, procs, fds, sockets, ...)"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `show` on the main parser's subparsers."""
    views = "\n".join(f"  {name:<9} {what}" for name, what in VIEW_HELP.items())
    p: argparse.ArgumentParser = subparsers.add_parser(
        "show", help=HELP,
        description="Print one view of snapshot DIR.",
        epilog=_EPILOG.format(views=views), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", metavar="DIR", help="a snapshot directory (dump -D, import -D)")
    p.add_argument("view", nargs="?", default=None, choices=VIEWS, metavar="VIEW",
                   help="one of: " + " ".join(VIEWS) + " (default tree)")
    p.add_argument("pid", nargs="?", metavar="PID",
                   help="the process of the mems, threads and memory views (fds: optional)")
    p.add_argument("more", nargs="*", metavar="ADDR [LEN]",
                   help="memory view: address (hex as pmap prints it, or decimal) and length "
                        f"(default {memory.DEFAULT_LENGTH})")
    p.add_argument("--pid", dest="pids", action="append", default=[], metavar="PID",
                   help="only this process (repeatable)")
    p.add_argument("--children", action="store_true", help="with --pid: also its descendants")
    p.add_argument("--comm", metavar="NAME", help="only processes with this comm (or pattern)")
    p.add_argument("--state", metavar="STATE",
                   help="only processes in STATE (sockets view: sockets in STATE)")
    p.add_argument("--kind", metavar="KIND",
                   help="only fds / sockets / VMAs / namespaces of KIND (see below)")
    p.add_argument("--raw", action="store_true", help="memory view: the bytes, unformatted")
    p.add_argument("--json", action="store_true",
                   help="JSON: the whole snapshot without VIEW, else just the view's data")
    p.add_argument("--wide", action="store_true",
                   help="never shorten a column, even on a narrow terminal")
    p.add_argument("--format", choices=("dot", "svg", "png"), default="dot",
                   help="graph view: DOT text (default, needs nothing), or SVG/PNG "
                        "through Graphviz's dot")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="graph view: write the picture to FILE (a PNG needs it on a terminal)")
    return p


def _tree(snap: Snapshot, sel: Selection, console: Console) -> None:
    from criu_model.render import text as render

    render.show_tree(snap, console, sel)


def _procs(snap: Snapshot, sel: Selection, console: Console) -> None:
    from criu_model.render import text as render

    render.show_procs(snap, console, sel)


def _sockets(snap: Snapshot, sel: Selection, console: Console) -> None:
    from criu_model.render import text as render

    render.show_sockets(snap, console, sel)


def _shared(snap: Snapshot, sel: Selection, console: Console) -> None:
    from criu_model.render import text as render

    render.show_shared(snap, console, sel)


def _ns(snap: Snapshot, sel: Selection, console: Console) -> None:
    from criu_model.render import text as render

    render.show_namespaces(snap, console, sel)


def _fds(snap: Snapshot, sel: Selection, console: Console) -> None:
    from criu_model.render import text as render

    render.show_fds(snap, None, console, sel)


def _threads(snap: Snapshot, sel: Selection, console: Console) -> None:
    from criu_model.render import views
    from criu_model.render.threads import show_threads

    show_threads(snap, views.threads_pid(snap, sel), console)


def _mems(snap: Snapshot, sel: Selection, console: Console) -> None:
    from criu_model.render import text as render

    render.show_mems(snap, None, console, sel)


# View name -> its text renderer. `memory` is handled before loading (it reads pages).
# The place for `graph`: "graph": _graph, with _graph calling render/graph.py.
_VIEWS: dict[str, Callable[[Snapshot, Selection, Console], None]] = {
    "tree": _tree, "procs": _procs, "mems": _mems, "fds": _fds, "sockets": _sockets,
    "shared": _shared, "ns": _ns, "threads": _threads,
}


def _graph(args: argparse.Namespace) -> int:
    """`show DIR graph`: DOT always; SVG/PNG through Graphviz (one line when it is missing)."""
    if args.json:
        raise BadArgument("the graph view has no JSON form (--format dot is text)")
    from criu_model.graphviz import write_picture
    from criu_model.images import load
    from criu_model.render.graph import render_graph

    write_picture(render_graph(load(args.dir), args.format), args.format, args.output,
                  sys.stdout.buffer)
    return 0


def _container(args: argparse.Namespace, console: Console) -> int:
    """`show ARCHIVE container`: the archive's container metadata, no CRIU image decoded."""
    from criu_model.formats.criu.archive import container_metadata, container_rows
    from criu_model.names import printable

    info = container_metadata(args.dir)
    if args.json:
        from criu_model.render.json import print_json

        print_json({"view": "container", **info})
        return 0
    rows = container_rows(info)
    width = max((len(label) for label, _ in rows), default=0)
    for label, text in rows:
        print(printable(f"{label:<{width}}  {text}"))
    return 0


def _selection(args: argparse.Namespace) -> Selection:
    """The view's filters, checked before the snapshot is read (a typo costs nothing)."""
    from criu_model.render.views import make_selection

    pids = [parse_pid(p) for p in args.pids]
    if args.pid is not None:
        if args.view not in _PID_VIEWS:
            raise BadArgument(f"the {args.view} view takes no PID argument "
                              f"(filter with --pid {args.pid})")
        pids.append(parse_pid(args.pid))
    elif args.view in ("mems", "threads") and not pids:
        raise BadArgument(f"show DIR {args.view} needs a PID")
    return make_selection(args.view, pids=frozenset(pids), children=args.children,
                          comm=args.comm, state=args.state, kind=args.kind)


def run(args: argparse.Namespace, console: Console) -> int:
    """Run `criu-model show`; 0 once the view is printed."""
    if args.view == "memory":
        return memory.show_memory(args, [a for a in (args.pid, *args.more) if a], console)
    if args.more:
        raise UsageError(f"unexpected arguments for the {args.view} view: {' '.join(args.more)}")
    filtered = bool(args.pids or args.children or args.comm or args.state or args.kind)
    if args.view in ("graph", "container"):
        if filtered or args.pid is not None:
            raise BadArgument(f"the {args.view} view takes no PID or filter")
        return _graph(args) if args.view == "graph" else _container(args, console)
    whole = args.json and args.view is None and not filtered
    args.view = args.view or "tree"
    sel = None if whole else _selection(args)
    from criu_model.images import load

    snap = load(args.dir)
    if whole:
        from criu_model.render.json import write_snapshot_json

        write_snapshot_json(snap, sys.stdout)
    elif args.json:
        from criu_model.render.json import print_json, view_to_json

        assert sel is not None
        print_json(view_to_json(snap, sel))
    else:
        assert sel is not None
        _VIEWS[args.view](snap, sel, console)
    return 0
