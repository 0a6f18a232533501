"""`criu-model grep` and `show DIR memory PID ADDR [LEN]`: looking into dumped memory."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from criu_model.errors import BadArgument, UsageError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from rich.console import Console

    from criu_model.pages.search import Hit
    from criu_model.progress import Bar

EXIT_FOUND, EXIT_NOT_FOUND, EXIT_TROUBLE = 0, 1, 2
ERROR_EXIT = EXIT_TROUBLE  # as grep(1): 1 means "not found"
DEFAULT_LENGTH = 256


def parse_address(value: str) -> int:
    """An address as pmap and /proc/PID/maps print it (hex, with or without 0x) or decimal."""
    text = value.strip().lower()
    try:
        if text.startswith("0x"):
            return int(text, 16)
        if any(c in "abcdef" for c in text):
            return int(text, 16)
        return int(text, 10)
    except ValueError as err:
        raise UsageError(f"{value!r} is not an address (hex like 0x7f12a000 or decimal)") \
            from err


def show_memory(args: argparse.Namespace, extra: list[str], console: Console) -> int:
    """`show DIR memory PID ADDR [LEN] [--raw]`."""
    from criu_model.argtypes import parse_pid
    from criu_model.images import load
    from criu_model.render.memory import show_hexdump

    if len(extra) < 2 or len(extra) > 3:
        raise BadArgument("show DIR memory needs PID ADDR [LEN]")
    pid = parse_pid(extra[0])
    addr = parse_address(extra[1])
    length = parse_address(extra[2]) if len(extra) == 3 else DEFAULT_LENGTH
    snap = load(args.dir)
    data = snap.read_memory(pid, addr, length)
    if args.raw and args.json:
        raise BadArgument("give --raw or --json, not both")
    if args.raw:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    elif args.json:  # the view's JSON: where, how much, and the bytes as hex
        from criu_model.render.json import print_json

        print_json({"view": "memory", "pid": pid, "addr": addr, "length": len(data),
                    "hex": data.hex()})
    else:
        show_hexdump(data, addr, console)
    return 0


# One line of `criu-model --help` (registered alone when another command runs).
HELP = "search the dumped memory of a snapshot (dump --pages)"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `grep` on the main parser's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "grep", help=HELP,
        description="Every occurrence of PATTERN in the captured memory: pid, address, VMA "
                    "and some context. Exit status: 0 found, 1 not found, 2 trouble.")
    p.add_argument("dir", metavar="DIR", help="a snapshot dumped with --pages")
    p.add_argument("pattern", metavar="PATTERN", help="bytes to find (UTF-8; \\xNN escapes)")
    p.add_argument("--pid", metavar="PID", help="only this process")
    p.add_argument("--regex", action="store_true", help="PATTERN is a Python regular expression")
    p.add_argument("-i", "--ignore-case", action="store_true",
                   help="ASCII letters match in either case")
    p.add_argument("--context", type=int, default=16, metavar="N",
                   help="bytes shown around each hit (default 16)")
    p.add_argument("--max", type=int, default=0, metavar="N", help="stop after N hits")
    p.add_argument("--json", action="store_true", help="a JSON list of hits")
    return p


def _pattern(text: str) -> bytes:
    r"""The pattern's bytes: UTF-8, where \xNN stands for one byte (also in --regex)."""
    out = bytearray()
    i = 0
    raw = text.encode()
    while i < len(raw):
        if raw[i:i + 2] == b"\\x" and i + 4 <= len(raw):
            try:
                out.append(int(raw[i + 2:i + 4], 16))
                i += 4
                continue
            except ValueError:
                pass
        out.append(raw[i])
        i += 1
    return bytes(out)


def run(args: argparse.Namespace, console: Console) -> int:
    """Run `criu-model grep`; 0 found, 1 not found (trouble: ERROR_EXIT)."""
    import itertools

    from criu_model.argtypes import parse_pid
    from criu_model.images import load
    from criu_model.pages.search import grep
    from criu_model.progress import bar_for_terminal
    from criu_model.render.json import print_json
    from criu_model.render.memory import hit_to_json, show_hits

    snap = load(args.dir)
    bar = bar_for_terminal("grep")
    hits = grep(snap, _pattern(args.pattern) if not args.regex else args.pattern.encode(),
                regex=args.regex, pid=parse_pid(args.pid) if args.pid else None,
                context=max(0, args.context), ignore_case=args.ignore_case, progress=bar)
    if args.max > 0:
        hits = itertools.islice(hits, args.max)
    if bar is not None:
        hits = _clearing(hits, bar)
    try:
        if args.json:
            found = [hit_to_json(h) for h in hits]
            print_json(found)
            return EXIT_FOUND if found else EXIT_NOT_FOUND
        return EXIT_FOUND if show_hits(hits, console) else EXIT_NOT_FOUND
    finally:
        if bar is not None:
            bar.close()


def _clearing(hits: Iterator[Hit], bar: Bar) -> Iterator[Hit]:
    """Clear the progress line before each hit is printed (the bar redraws after)."""
    for hit in hits:
        bar.close()
        yield hit
