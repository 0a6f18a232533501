"""`criu-model plan DIR`: how the snapshot would be restored, and why it would fail here.

Exit status: 0 feasible, 3 at least one blocker, 1 error (a CriuModelError:
cli.main prints its one line). With --rehearse: 0 everything rehearsed matched
(and the plan is feasible), 4 a mismatch (a planner bug or a step the kernel
refused), 3 matched but the plan has blockers, 1 error.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

EXIT_FEASIBLE, EXIT_BLOCKED, EXIT_MISMATCH = 0, 3, 4


# planner.PID_NS_MODES, spelled out so `--help` need not import the planner
# (tests/cli/test_cli_imports.py checks that they agree).
PID_NS_MODES = ("same", "new")


# One line of `criu-model --help` (registered alone when another command runs).
HELP = "plan the restore of a snapshot and dry-run it against this machine"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `plan` on the main parser's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "plan", help=HELP,
        description="Print how DIR would be restored (steps per process, helpers and why), "
                    "every problem found, and a verdict. Exit status: 0 feasible, "
                    "3 blocked, 1 error.")
    p.add_argument("dir", metavar="DIR", help="the snapshot to plan (dump -D, import -D)")
    p.add_argument("--offline", action="store_true",
                   help="skip the dry run against this machine")
    p.add_argument("--pid-ns", choices=PID_NS_MODES, default="same",
                   help="restore into this pid namespace (same) or a fresh one (new)")
    p.add_argument("--json", action="store_true", help="one JSON object (see README)")
    p.add_argument("--rehearse", action="store_true",
                   help="run the plan's process and fd skeleton for real in a throw-away "
                        "sandbox (new pid/mount/net/ipc/uts namespaces; implies --pid-ns new "
                        "and --offline) and compare it with the snapshot; exit 4 on a mismatch")
    p.add_argument("--keep", action="store_true",
                   help="with --rehearse: leave the parked sandbox running and print how to "
                        "end it")
    return p


def run(args: argparse.Namespace, console: Console) -> int:
    """Run `criu-model plan`; returns 0 (feasible), 3 (blocked) or 1 (error)."""
    from criu_model.images import load
    from criu_model.planner import plan
    from criu_model.render.json import print_json
    from criu_model.render.plan import plan_to_json, show_plan

    if args.rehearse:
        return _rehearse(args, console)
    if args.keep:
        from criu_model.errors import UsageError
        raise UsageError("--keep needs --rehearse")
    result = plan(load(args.dir), live=not args.offline, pid_ns=args.pid_ns)
    if args.json:
        print_json(plan_to_json(result))
    else:
        show_plan(result, console)
    return EXIT_FEASIBLE if result.feasible else EXIT_BLOCKED


def _rehearse(args: argparse.Namespace, console: Console) -> int:
    """`plan --rehearse`: the sandbox is the dry run, so the plan is made offline, pid_ns new."""
    import sys

    from criu_model.images import load
    from criu_model.planner import plan
    from criu_model.progress import bar_for_terminal
    from criu_model.render.json import print_json
    from criu_model.restore import rehearse
    from criu_model.restore.report import write_report

    snap = load(args.dir)
    made = plan(snap, live=False, pid_ns="new")
    bar = bar_for_terminal("rehearsing", unit="steps")
    try:
        report = rehearse(snap, made, keep=args.keep, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        print_json(report.to_json())
    else:
        write_report(report, console.file if console.file is not None else sys.stdout)
    if not report.ok:
        return EXIT_MISMATCH
    return EXIT_FEASIBLE if report.feasible else EXIT_BLOCKED
