"""`criu-model heat SNAP...`: which memory a program writes, and what migrating it costs."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from criu_model.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console

DEFAULT_BANDWIDTH = "1Gbit"


def parse_bandwidth(text: str) -> float:
    """'125M' bytes/s (K, M, G: powers of 1000), or with 'bit' for bits: '1Gbit', '100Mbit'."""
    value = text.strip().lower().removesuffix("/s").removesuffix("ps")
    bits = value.endswith("bit") or (value.endswith("b") and not value.endswith("ib"))
    value = value.removesuffix("bit").removesuffix("b") if bits else value.removesuffix("ib")
    scale = {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}.get(value[-1:], 1.0)
    number = value[:-1] if value[-1:] in "kmgt" else value
    try:
        rate = float(number) * scale
    except ValueError as err:
        raise UsageError(f"{text!r} is not a bandwidth (e.g. 125M for bytes/s, 1Gbit)") from err
    rate = rate / 8 if bits else rate
    if rate <= 0:
        raise UsageError("the bandwidth must be positive")
    return rate


# One line of `criu-model --help` (registered alone when another command runs).
HELP = "hot memory over a series of --pages snapshots, pre-copy estimate"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `heat` on the main parser's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "heat", help=HELP,
        description="Per VMA and page range, in how many intervals of the series the memory "
                    "changed (hottest first), and what an iterative pre-copy live migration "
                    "would need at --bandwidth: rounds, bytes sent, downtime.")
    p.add_argument("snaps", nargs="+", metavar="SNAP", help="snapshots of one tree, in time "
                   "order (e.g. dump --pages --parent every second)")
    p.add_argument("--bandwidth", default=DEFAULT_BANDWIDTH, metavar="RATE",
                   help="link for the estimate: bytes/s with K/M/G, or bits with 'bit' "
                        f"(default {DEFAULT_BANDWIDTH})")
    p.add_argument("--downtime", type=float, default=0.3, metavar="SECONDS",
                   help="stop and copy once a round fits in this (default 0.3)")
    p.add_argument("--top", type=int, default=20, metavar="N", help="VMAs shown (default 20)")
    p.add_argument("--svg", metavar="FILE", help="also draw a heat strip per VMA into FILE")
    p.add_argument("--sort", action="store_true", help="order the snapshots by time first")
    p.add_argument("--allow-gaps", action="store_true",
                   help="compare even when a snapshot's parent is not the one before it")
    p.add_argument("--json", action="store_true", help="one JSON object (see README)")
    return p


def run(args: argparse.Namespace, console: Console) -> int:
    """Run `criu-model heat`; 0 once the table (and --svg) is written."""
    from criu_model.images import load
    from criu_model.pages.heat import heat, precopy
    from criu_model.render.heat import heat_svg, heat_to_json, show_heat
    from criu_model.render.json import print_json

    bandwidth = parse_bandwidth(args.bandwidth)
    pairs = [(name, load(name)) for name in args.snaps]
    if args.sort:
        pairs.sort(key=lambda p: p[1].inventory.time_ns)
    names, snaps = [p[0] for p in pairs], [p[1] for p in pairs]
    h = heat(snaps, names, allow_gaps=args.allow_gaps)
    pre = precopy(h.memory_bytes, h.dirty_rate, h.working_set_bytes, bandwidth,
                  max_downtime=args.downtime)
    if args.svg:
        with open(args.svg, "w", encoding="utf-8") as f:
            f.write(heat_svg(h, top=args.top))
    if args.json:
        print_json(heat_to_json(h, pre))
    else:
        show_heat(h, pre, console, top=args.top)
    return 0
