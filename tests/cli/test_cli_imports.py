"""Commands import only what they use (start-up time), and the literals kept for that agree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _modules_after(code: str) -> set[str]:
    script = code + "\nimport sys\nprint('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=60)
    return set(out.stdout.split())


def test_cli_import_leaves_heavy_machinery_out() -> None:
    mods = _modules_after("import criu_model.cli")
    for heavy in ("pyroute2", "criu_model.differ", "criu_model.planner", "criu_model.dumper",
                  "criu_model.collect.sockets", "criu_model.features", "rich",
                  "google.protobuf", "criu_model.images", "criu_model.freeze"):
        assert heavy not in mods, heavy   # --help and usage errors need none of them


def test_show_imports_no_collector_and_no_planner() -> None:
    mods = _modules_after("import criu_model.cli, criu_model.images, criu_model.render.text")
    for heavy in ("pyroute2", "criu_model.dumper", "criu_model.planner", "criu_model.differ",
                  "criu_model.collect.sockets"):
        assert heavy not in mods, heavy


def test_area_and_pid_ns_literals_agree() -> None:
    from criu_model.cli import diff as cli_diff
    from criu_model.cli import dump as cli_dump
    from criu_model.cli import plan as cli_plan
    from criu_model.collect.fds import DEFAULT_GHOST_LIMIT
    from criu_model.differ import AREAS
    from criu_model.freeze import FreezeMethod
    from criu_model.planner import PID_NS_MODES

    assert cli_diff.AREAS == AREAS
    assert cli_plan.PID_NS_MODES == PID_NS_MODES
    assert cli_dump.DEFAULT_GHOST_LIMIT == DEFAULT_GHOST_LIMIT
    assert tuple(m.value for m in FreezeMethod) == cli_diff.FREEZE_METHODS


def _modules_running(argv: list[str]) -> set[str]:
    """The modules loaded after `criu-model ARGV` ran in-process (its exit status ignored)."""
    script = ("import sys\nfrom criu_model.cli import main\n"
              f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
              "sys.stdout.flush()\nprint('\\n' + '\\n'.join(sys.modules))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    return set(out.stdout.split())


def test_help_loads_no_command_machinery() -> None:
    mods = _modules_running(["--help"])
    assert "criu_model.cli.show" in mods   # the sub-parsers are registered...
    for heavy in ("rich", "google.protobuf", "criu_model.images", "criu_model.render.text",
                  "criu_model.differ", "criu_model.planner", "criu_model.dumper"):
        assert heavy not in mods, heavy     # ...but nothing they run is loaded


def test_each_command_loads_only_its_machinery(tmp_path: Path) -> None:
    """A usage error after parsing (a bad DIR) still runs the command: what does it load?"""
    missing = str(tmp_path / "missing")
    show = _modules_running(["show", missing, "fds"])
    assert "criu_model.images" in show       # it did try to load the snapshot
    plan = _modules_running(["plan", missing, "--offline"])
    assert "criu_model.planner" in plan
    diff = _modules_running(["diff", missing, missing])
    assert "criu_model.differ" in diff
    for mods in (show, plan, diff):
        assert "pyroute2" not in mods and "criu_model.dumper" not in mods
    assert "criu_model.planner" not in show | diff
    assert "criu_model.differ" not in show | plan


def test_json_output_needs_no_rich(tmp_path: Path) -> None:
    """A snapshot's view as JSON: the images and the JSON renderer, no rich, no tables."""
    from criu_model.images import write
    from criu_model.images.framing import FORMAT_MAJOR, FORMAT_MINOR
    from criu_model.images.pb import inventory_pb2, process_pb2
    from criu_model.snapshot import Snapshot

    proc = process_pb2.Process(pid=4242, ppid=1, pgid=4242, sid=4242, comm=b"x", state="S")
    snap = Snapshot(inventory=inventory_pb2.Inventory(format_major=FORMAT_MAJOR,
                                                      format_minor=FORMAT_MINOR,
                                                      root_pids=[4242]),
                    processes=[proc])
    path = str(write(snap, str(tmp_path / "snap")))
    mods = _modules_running(["show", path, "procs", "--json"])
    assert "criu_model.render.json" in mods and "criu_model.images" in mods
    assert "rich" not in mods and "criu_model.render.text" not in mods
    text_mods = _modules_running(["show", path, "procs"])
    assert "rich.console" in text_mods and "criu_model.render.text" in text_mods
