"""Commands import only what they use (start-up time), and the literals kept for that agree."""

from __future__ import annotations

import subprocess
import sys


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
    from criu_model import cli_diff, cli_plan
    from criu_model.differ import AREAS
    from criu_model.planner import PID_NS_MODES

    assert cli_diff.AREAS == AREAS
    assert cli_plan.PID_NS_MODES == PID_NS_MODES
    from criu_model import cli
    from criu_model.collect.fds import DEFAULT_GHOST_LIMIT
    from criu_model.freeze import FreezeMethod

    assert cli.DEFAULT_GHOST_LIMIT == DEFAULT_GHOST_LIMIT
    assert tuple(m.value for m in FreezeMethod) == cli_diff.FREEZE_METHODS
