"""Command line: parse arguments, call the library, print one clear line on error.

Exit codes: 0 success, 1 failure (one line on stderr; traceback only with
--debug), 2 usage error (argparse), 130 interrupted.
"""

from __future__ import annotations

import sys

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
_INTERRUPTED_EARLY = "criu-model: interrupted (before anything was done)"

# Ctrl-C while the modules below load (~80 ms of a start-up) is an interruption
# like any other: one line and 130, never a KeyboardInterrupt traceback.
try:
    import argparse
    import os
    import signal
    import time
    from collections.abc import Sequence
    from pathlib import Path
    from types import FrameType
    from typing import TYPE_CHECKING

    from criu_model import (
        __version__,
        cli_diff,
        cli_heat,
        cli_import,
        cli_memory,
        cli_plan,
        cli_thaw,
    )
    from criu_model.argtypes import parse_pid
    from criu_model.errors import AccessDenied, BadArgument, CriuModelError, UsageError
except KeyboardInterrupt:
    print(_INTERRUPTED_EARLY, file=sys.stderr)
    raise SystemExit(EXIT_INTERRUPTED) from None

if TYPE_CHECKING:
    from rich.console import Console

# collect.fds.DEFAULT_GHOST_LIMIT, spelled out so `--help` need not import the
# collectors (tests/cli/test_cli_imports.py checks that they agree).
DEFAULT_GHOST_LIMIT = 1 << 20


class Terminated(BaseException):
    """SIGTERM, raised like KeyboardInterrupt so every `finally` (thaw, cleanup) runs."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def _size(text: str) -> int:
    """'1M' -> 1048576; argparse turns the ValueError into a usage error (exit 2)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("B")
    factor = units.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in units else text
    if not number.isdigit():
        raise ValueError(text)
    return int(number) * factor


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="criu-model",
        description="Dump, inspect, diff and plan the restore of Linux process trees.")
    parser.add_argument("--version", action="version", version=f"criu-model {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("dump", help="dump live process trees into a snapshot directory")
    p.add_argument("pids", nargs="+", metavar="PID", help="root pid of a tree to dump")
    p.add_argument("-D", "--dir", help="snapshot directory (default: ./dump-PID-TIME)")
    p.add_argument("--freeze", choices=cli_diff.FREEZE_METHODS, default="ptrace",
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

    p = sub.add_parser("show", help="inspect a snapshot directory")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("view", nargs="?", default="tree",
                   choices=["tree", "procs", "mems", "fds", "sockets", "shared", "ns",
                            "threads", "memory"],
                   help="tree (default), procs, mems PID, fds [PID], sockets, shared, ns, "
                        "threads PID (registers), memory PID ADDR [LEN] (hexdump)")
    p.add_argument("pid", nargs="?", help="pid for the mems, fds, threads and memory views")
    p.add_argument("more", nargs="*", metavar="ADDR [LEN]",
                   help="memory view: address (hex as pmap prints it, or decimal) and length "
                        f"(default {cli_memory.DEFAULT_LENGTH})")
    p.add_argument("--raw", action="store_true", help="memory view: the bytes, unformatted")
    p.add_argument("--json", action="store_true", help="the whole snapshot as JSON")

    cli_diff.add_parser(sub)
    cli_plan.add_parser(sub)
    cli_memory.add_parser(sub)
    cli_heat.add_parser(sub)
    cli_thaw.add_parser(sub)
    cli_import.add_parser(sub)

    p = sub.add_parser("check", help="which kernel features this machine offers")
    p.add_argument("--json", action="store_true")
    return parser


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


def _cmd_dump(args: argparse.Namespace, console: Console) -> int:
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
    from criu_model.render import text as render

    snap = dump(roots, freeze=args.freeze, page_counts=not (args.no_page_counts or
                                                           args.no_pages_old),
                pages=args.pages, pages_dir=str(parent) if parent.is_dir() else None,
                parent=args.parent, ghost_limit=args.ghost_limit)
    path = write(snap, target, force=args.force)
    for item in snap.inventory.skipped:
        print(printable(f"criu-model: skipped pid {item.pid}: {item.reason}"), file=sys.stderr)
    for row in render.dump_summary(snap, str(path)).splitlines():
        console.print(render.line(row), soft_wrap=True)
    return EXIT_OK


def _cmd_show(args: argparse.Namespace, console: Console) -> int:
    if args.view == "memory":
        return cli_memory.show_memory(args, [a for a in (args.pid, *args.more) if a], console)
    if args.more:
        raise UsageError(f"unexpected arguments for the {args.view} view: {' '.join(args.more)}")
    from criu_model.images import load
    from criu_model.render import text as render
    from criu_model.render.json import write_snapshot_json

    snap = load(args.dir)
    if args.json:
        write_snapshot_json(snap, sys.stdout)
    elif args.view == "tree":
        render.show_tree(snap, console)
    elif args.view == "procs":
        render.show_procs(snap, console)
    elif args.view == "sockets":
        render.show_sockets(snap, console)
    elif args.view == "shared":
        render.show_shared(snap, console)
    elif args.view == "ns":
        render.show_namespaces(snap, console)
    elif args.view == "fds":
        render.show_fds(snap, None if args.pid is None else parse_pid(args.pid), console)
    elif args.view == "threads":
        from criu_model.render.threads import show_threads

        if args.pid is None:
            raise BadArgument("show DIR threads needs a PID")
        show_threads(snap, parse_pid(args.pid), console)
    else:
        if args.pid is None:
            raise BadArgument("show DIR mems needs a PID")
        render.show_mems(snap, parse_pid(args.pid), console)
    return EXIT_OK


def _cmd_check(args: argparse.Namespace, console: Console) -> int:
    from criu_model.features import check
    from criu_model.render import text as render
    from criu_model.render.json import print_json

    features = check()
    if args.json:
        print_json([{"name": f.name, "available": f.available, "detail": f.detail}
                    for f in features])
    else:
        render.show_check(features, console)
    return EXIT_OK


_COMMANDS = {"dump": _cmd_dump, "show": _cmd_show, "diff": cli_diff.run, "plan": cli_plan.run,
             "grep": cli_memory.run, "heat": cli_heat.run, "import": cli_import.run,
             "check": _cmd_check, "thaw": cli_thaw.run}
# The exit status for a CriuModelError, where a command's own statuses give 1
# another meaning: diff follows diff(1) (1 = differences, 2 = trouble).
_ERROR_EXIT = {"diff": cli_diff.EXIT_TROUBLE, "grep": 2}


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; Ctrl-C before a command runs (parsing, set-up) exits 130 quietly."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print(_INTERRUPTED_EARLY, file=sys.stderr)
        return EXIT_INTERRUPTED


def _main(argv: Sequence[str] | None) -> int:
    args = _build_parser().parse_args(argv)
    from rich.console import Console  # after parsing: --help and usage errors need no rich

    from criu_model.names import printable

    # Piped output is for grep and scripts: never truncate or wrap it.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 100_000)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _COMMANDS[args.command](args, console)
    except CriuModelError as err:
        if args.debug:
            raise
        print(printable(f"criu-model: error: {err}"), file=sys.stderr)
        if isinstance(err, BadArgument):   # a malformed value: a usage error, as argparse's
            return EXIT_USAGE
        return _ERROR_EXIT.get(args.command, EXIT_FAIL)
    except (KeyboardInterrupt, Terminated):
        print("criu-model: interrupted; targets were released, nothing was written",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK  # `criu-model show ... | head`
    finally:
        signal.signal(signal.SIGTERM, previous)
