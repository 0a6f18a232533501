"""`criu-model dump PID...`: freeze live trees, read them, write one snapshot directory."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from criu_model.argtypes import parse_pid
from criu_model.cli.diff import FREEZE_METHODS
from criu_model.errors import AccessDenied, CriuModelError

if TYPE_CHECKING:
    from rich.console import Console

# collect.fds.DEFAULT_GHOST_LIMIT, spelled out so `--help` need not import the
# collectors (tests/cli/test_cli_imports.py checks that they agree).
DEFAULT_GHOST_LIMIT = 1 << 20


def _size(text: str) -> int:
    """'1M' -> 1048576; argparse turns the ValueError into a usage error (exit 2)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("B")
    factor = units.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in units else text
    if not number.isdigit():
        raise ValueError(text)
    return int(number) * factor


# One line of `criu-model --help` (registered alone when another command runs).
HELP = "dump live process trees into a snapshot directory"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `dump` on the main parser's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "dump", help=HELP,
        description="Freeze each PID's tree, read its kernel-visible state and write one "
                    "snapshot directory (atomically: a crash leaves no half snapshot).")
    p.add_argument("pids", nargs="+", metavar="PID", help="root pid of a tree to dump")
    p.add_argument("-D", "--dir", help="snapshot directory (default: ./dump-PID-TIME)")
    p.add_argument("--freeze", choices=FREEZE_METHODS, default="ptrace",
                   help="how to keep the tree still while reading it (default: ptrace)")
    p.add_argument("--pages", action="store_true",
                   help="also capture page contents (memory), and registers with ptrace")
    p.add_argument("--parent", metavar="PREV",
                   help="with --pages: an incremental dump, storing only pages changed "
                        "since snapshot PREV (of the same tree)")
    p.add_argument("--no-page-counts", action="store_true",
                   help="skip the per-VMA page counts (resident, swapped, ...) of pagemap")
    p.add_argument("--no-pages", action="store_true", dest="no_pages_old",
                   help=argparse.SUPPRESS)  # the old name of --no-page-counts
    p.add_argument("--ghost-limit", type=_size, default=DEFAULT_GHOST_LIMIT, metavar="SIZE",
                   help="capture deleted files and memfds up to SIZE bytes each "
                        "(K/M/G suffixes; default 1M)")
    p.add_argument("--force", action="store_true", help="replace an existing directory")
    return p


def _check_writable(parent: Path) -> None:
    """Refuse a directory the snapshot cannot be written into before freezing anything.

    The writer reports it too (as one line), but only after the tree was frozen and read.
    """
    if not parent.is_dir():
        return   # a missing parent is the writer's message
    if os.access(parent, os.W_OK | os.X_OK, effective_ids=True):
        from criu_model.images.writer import check_parent

        check_parent(parent)  # another user could swap the snapshot there
        return
    if os.statvfs(parent).f_flag & os.ST_RDONLY:
        raise CriuModelError(f"cannot write a snapshot into {parent}: read-only file system "
                             "(nothing was frozen or dumped)")
    raise AccessDenied(None, f"writing a snapshot into {parent}",
                       "the directory is not writable by this user (nothing was frozen or "
                       "dumped)")


def _remove_stale(parent: Path) -> None:
    """Dead dumpers' temporary directories go now; say what went, and what stays and why."""
    from criu_model.images.stale import remove_stale
    from criu_model.names import printable

    for left in remove_stale(parent):
        if left.removed:
            print(printable(f"criu-model: removed {left.path}: {left.why}"), file=sys.stderr)
        elif not left.running:
            print(printable(f"criu-model: kept {left.path}: {left.why}"), file=sys.stderr)


def run(args: argparse.Namespace, console: Console) -> int:
    """Run `criu-model dump`; 0 once the snapshot is written."""
    roots = [parse_pid(p) for p in args.pids]
    target = args.dir or f"dump-{roots[0]}-{time.strftime('%Y%m%d-%H%M%S')}"
    if Path(target).exists() and not args.force:
        # Checked before freezing anything: fail fast, touch nothing.
        raise CriuModelError(f"{target} already exists (use --force to replace it)")
    _check_writable(Path(target).absolute().parent)
    _remove_stale(Path(target).absolute().parent)
    if args.no_pages_old:
        print("criu-model: --no-pages is now --no-page-counts (page counts, not contents)",
              file=sys.stderr)
    parent = Path(target).absolute().parent
    from criu_model.dumper import dump
    from criu_model.images import write
    from criu_model.names import printable
    from criu_model.render.summary import dump_summary

    bar = None
    if args.pages:  # reading gigabytes takes seconds: say how far it is, on a terminal
        from criu_model.progress import bar_for_terminal

        bar = bar_for_terminal("dump: pages")
    try:
        snap = dump(roots, freeze=args.freeze, page_counts=not (args.no_page_counts or
                                                               args.no_pages_old),
                    pages=args.pages, pages_dir=str(parent) if parent.is_dir() else None,
                    parent=args.parent, ghost_limit=args.ghost_limit, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    path = write(snap, target, force=args.force)
    for item in snap.inventory.skipped:
        print(printable(f"criu-model: skipped pid {item.pid}: {item.reason}"), file=sys.stderr)
    for row in dump_summary(snap, str(path)).splitlines():
        print(printable(row))
    return 0
