"""`criu-model show DIR [VIEW] [PID]`: one snapshot, seen from one side.

Views are dispatched by name through `_VIEWS` below; a new view (e.g. `graph`,
from render/graph.py) is one entry in `VIEWS` and one function here.
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

    from criu_model.snapshot import Snapshot

VIEWS = ("tree", "procs", "mems", "fds", "sockets", "shared", "ns", "threads", "memory")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `show` on the main parser's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser("show", help="inspect a snapshot directory")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("view", nargs="?", default="tree", choices=VIEWS,
                   help="tree (default), procs, mems PID, fds [PID], sockets, shared, ns, "
                        "threads PID (registers), memory PID ADDR [LEN] (hexdump)")
    p.add_argument("pid", nargs="?", help="pid for the mems, fds, threads and memory views")
    p.add_argument("more", nargs="*", metavar="ADDR [LEN]",
                   help="memory view: address (hex as pmap prints it, or decimal) and length "
                        f"(default {memory.DEFAULT_LENGTH})")
    p.add_argument("--raw", action="store_true", help="memory view: the bytes, unformatted")
    p.add_argument("--json", action="store_true", help="the whole snapshot as JSON")
    return p


def _tree(snap: Snapshot, args: argparse.Namespace, console: Console) -> None:
    from criu_model.render import text as render

    render.show_tree(snap, console)


def _procs(snap: Snapshot, args: argparse.Namespace, console: Console) -> None:
    from criu_model.render import text as render

    render.show_procs(snap, console)


def _sockets(snap: Snapshot, args: argparse.Namespace, console: Console) -> None:
    from criu_model.render import text as render

    render.show_sockets(snap, console)


def _shared(snap: Snapshot, args: argparse.Namespace, console: Console) -> None:
    from criu_model.render import text as render

    render.show_shared(snap, console)


def _ns(snap: Snapshot, args: argparse.Namespace, console: Console) -> None:
    from criu_model.render import text as render

    render.show_namespaces(snap, console)


def _fds(snap: Snapshot, args: argparse.Namespace, console: Console) -> None:
    from criu_model.render import text as render

    render.show_fds(snap, None if args.pid is None else parse_pid(args.pid), console)


def _threads(snap: Snapshot, args: argparse.Namespace, console: Console) -> None:
    from criu_model.render.threads import show_threads

    if args.pid is None:
        raise BadArgument("show DIR threads needs a PID")
    show_threads(snap, parse_pid(args.pid), console)


def _mems(snap: Snapshot, args: argparse.Namespace, console: Console) -> None:
    from criu_model.render import text as render

    if args.pid is None:
        raise BadArgument("show DIR mems needs a PID")
    render.show_mems(snap, parse_pid(args.pid), console)


# View name -> its text renderer. `memory` is handled before loading (it reads pages).
_VIEWS: dict[str, Callable[[Snapshot, argparse.Namespace, Console], None]] = {
    "tree": _tree, "procs": _procs, "mems": _mems, "fds": _fds, "sockets": _sockets,
    "shared": _shared, "ns": _ns, "threads": _threads,
}


def run(args: argparse.Namespace, console: Console) -> int:
    """Run `criu-model show`; 0 once the view is printed."""
    if args.view == "memory":
        return memory.show_memory(args, [a for a in (args.pid, *args.more) if a], console)
    if args.more:
        raise UsageError(f"unexpected arguments for the {args.view} view: {' '.join(args.more)}")
    from criu_model.images import load

    snap = load(args.dir)
    if args.json:
        from criu_model.render.json import write_snapshot_json

        write_snapshot_json(snap, sys.stdout)
    else:
        _VIEWS[args.view](snap, args, console)
    return 0
