"""`criu-model diff`: what changed between two snapshots, or since a snapshot.

Exit statuses as diff(1): 0 no differences, 1 differences, 2 trouble (bad
arguments, unreadable snapshot, dump failure). Trouble is a CriuModelError
raised from here; cli.main prints its one line and exits with ERROR_EXIT
(not its usual 1, which means "differences" here).
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from criu_model.argtypes import parse_pid
from criu_model.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from criu_model.snapshot import Snapshot

EXIT_SAME, EXIT_DIFFERENT, EXIT_TROUBLE = 0, 1, 2
ERROR_EXIT = EXIT_TROUBLE
# differ.AREAS, spelled out so `criu-model --help` need not import the differ
# (tests/cli/test_cli_diff.py checks that they agree).
# freeze.FreezeMethod's values, for the same reason (checked by the same test).
FREEZE_METHODS = ("none", "ptrace", "cgroup")
AREAS = ("tree", "proc", "threads", "creds", "limits", "signals", "timers", "sched", "ns",
         "cgroups", "fds", "sockets", "vmas", "memory", "mounts", "sharing")


# One line of `criu-model --help` (registered alone when another command runs).
HELP = "what changed between two snapshots (or since one, with --live)"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `diff` on the main parser's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "diff", help=HELP,
        description="Compare snapshot DIR_A with DIR_B, or with the live processes "
                    "(--live). Exit status: 0 no differences, 1 differences, 2 trouble.")
    p.add_argument("dir_a", metavar="DIR_A", help="the 'before' snapshot")
    p.add_argument("dir_b", metavar="DIR_B", nargs="?", help="the 'after' snapshot")
    p.add_argument("--live", action="store_true",
                   help="compare with the same root pids dumped now (in memory, nothing "
                        "written)")
    p.add_argument("--all", action="store_true",
                   help="also show volatile fields (CPU times, page counts, queue lengths...)")
    p.add_argument("--pid", action="append", default=[], metavar="PID",
                   help="only changes involving PID (repeatable)")
    p.add_argument("--only", metavar="AREAS",
                   help="only these comma-separated areas: " + ",".join(AREAS))
    p.add_argument("--json", action="store_true", help="one JSON object (see README)")
    p.add_argument("--graph", choices=("dot", "svg", "png"), metavar="FORMAT",
                   help="a picture instead of text: the newer tree, added processes green, "
                        "removed red, changed orange (dot, or svg/png through Graphviz)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="with --graph: write the picture to FILE (a PNG needs it on a terminal)")
    p.add_argument("--freeze", choices=FREEZE_METHODS, default="ptrace",
                   help="with --live: how to keep the tree still (default: ptrace)")
    p.add_argument("--no-pages", action="store_true",
                   help="with --live: skip per-VMA page counts")
    p.add_argument("--pages", action="store_true",
                   help="with --live: also capture page contents (into a temporary file) "
                        "and compare them with DIR_A's (a --pages snapshot)")
    return p


def _empty_like(snap: Snapshot) -> Snapshot:
    """A live side where every root has exited: nothing is left."""
    from criu_model.images import framing
    from criu_model.images.pb import inventory_pb2
    from criu_model.snapshot import Snapshot

    return Snapshot(inventory=inventory_pb2.Inventory(
        format_major=framing.FORMAT_MAJOR, format_minor=framing.FORMAT_MINOR,
        root_pids=snap.inventory.root_pids))


def _live(before: Snapshot, args: argparse.Namespace) -> Snapshot:
    """Dump the roots of `before` that still exist, as `before` was dumped (pages or not)."""
    roots = [pid for pid in before.inventory.root_pids if os.path.exists(f"/proc/{pid}")]
    if not roots:
        return _empty_like(before)
    from criu_model.dumper import dump

    had_pages = any(m.page_counts_method for m in before.memory)
    if args.pages and not before.has_pages:
        raise UsageError(f"{args.dir_a} was dumped without --pages: there are no page "
                         "contents to compare with")
    return dump(roots, freeze=args.freeze, page_counts=had_pages and not args.no_pages,
                pages=args.pages)


def run(args: argparse.Namespace, console: Console) -> int:
    """Run `criu-model diff`; returns the exit status (0 same, 1 different, 2 trouble)."""
    from criu_model.differ import diff, parse_areas
    from criu_model.images import load
    from criu_model.render.diff import diff_to_json, show_diff
    from criu_model.render.json import print_json

    if args.live == (args.dir_b is not None):
        raise UsageError("give either DIR_B or --live, not both and not neither")
    pids = {parse_pid(p) for p in args.pid} or None
    only = parse_areas(args.only) if args.only is not None else None
    a = load(args.dir_a)
    b = _live(a, args) if args.live else load(args.dir_b)
    result = diff(a, b, include_volatile=args.all, pids=pids, only=only)
    if args.graph is not None:
        if args.json:
            raise UsageError("give --graph or --json, not both")
        import sys

        from criu_model.graphviz import write_picture
        from criu_model.render.graph import render_diff_graph

        write_picture(render_diff_graph(a, b, args.graph, result=result), args.graph,
                      args.output, sys.stdout.buffer)
    elif args.json:
        print_json(diff_to_json(result))
    else:
        show_diff(result, console, a, b)
    return EXIT_SAME if result.identical else EXIT_DIFFERENT
