"""`criu-model check`: the table of kernel features this machine offers."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


# One line of `criu-model --help` (registered alone when another command runs).
HELP = "which kernel features this machine offers"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `check` on the main parser's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "check", help=HELP,
        description="Probe the kernel features criu-model uses (kcmp, PAGEMAP_SCAN, "
                    "soft-dirty, pidfd, sock_diag...) and print what is available and why not.")
    p.add_argument("--json", action="store_true",
                   help="a JSON list of {name, available, detail}")
    return p


def run(args: argparse.Namespace, console: Console) -> int:
    """Run `criu-model check`; 0 (the table is the answer, not the status)."""
    from criu_model.features import check
    from criu_model.render import text as render
    from criu_model.render.json import print_json

    features = check()
    if args.json:
        print_json([{"name": f.name, "available": f.available, "detail": f.detail}
                    for f in features])
    else:
        render.show_check(features, console)
    return 0
