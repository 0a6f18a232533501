"""`criu-model import SRC -D DIR`: convert a CRIU dump into a criu-model snapshot once.

SRC is a CRIU image directory or a checkpoint archive (.tar, .tar.gz, .tar.zst
as Podman/CRI-O write them). The snapshot is written like a dump's (atomic,
0700/0600), so every command reads it without going through CRIU's images again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from criu_model.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console


# One line of `criu-model --help` (registered alone when another command runs).
HELP = "convert a CRIU image directory or checkpoint archive to a snapshot"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `import` on the main parser's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "import", help=HELP,
        description="Read a CRIU dump (a `criu dump -D` directory, or a Podman/CRI-O "
                    "checkpoint archive) and write it as a criu-model snapshot. What CRIU "
                    "does not record is marked unreadable (\"not in CRIU images\").")
    p.add_argument("src", metavar="SRC", help="CRIU image directory or checkpoint archive")
    p.add_argument("-D", "--dir", required=True, metavar="DIR",
                   help="the snapshot directory to write")
    p.add_argument("--force", action="store_true",
                   help="replace DIR if it is a criu-model snapshot")
    return p


def run(args: argparse.Namespace, console: Console) -> int:
    """Run `criu-model import`; 0 on success (errors are CriuModelError, one line)."""
    from criu_model.formats import detect
    from criu_model.formats.criu import import_pages, load_criu
    from criu_model.images import write

    kind = detect(args.src)
    if kind is None:
        raise UsageError(f"{args.src} is neither a CRIU image directory nor a checkpoint "
                         "archive (a criu-model snapshot needs no import)")
    if Path(args.dir).exists() and not args.force:
        raise UsageError(f"{args.dir} already exists (use --force to replace it)")
    snap = load_criu(args.src)
    # CRIU's pages-N.img, read in place until now, become our pages.img: the
    # snapshot stands alone (parent dumps included).
    import_pages(snap, Path(args.dir).absolute().parent)
    path = write(snap, args.dir, force=args.force)
    not_mapped = [c for c in snap.inventory.collectors
                  if c.name.startswith("criu-image:") and not c.ran]
    for item in not_mapped:
        print(f"criu-model: {item.name[len('criu-image:'):]}: {item.reason}", file=sys.stderr)
    console.print(f"imported {len(snap.processes)} processes, {snap.thread_count} threads, "
                  f"{snap.fd_count} fds, {snap.vma_count} VMAs from {kind} {args.src} -> "
                  f"{path}", soft_wrap=True, markup=False, highlight=False)
    return 0
