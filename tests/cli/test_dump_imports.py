"""What a state-only `criu-model dump` imports: no table library, no page machinery."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import needs_root


@needs_root
def test_state_only_dump_imports_no_rich_pages_or_planner(tmp_path: Path) -> None:
    target = subprocess.Popen(["sleep", "60"])
    try:
        script = ("import sys\nfrom criu_model.cli import main\n"
                  f"code = main(['dump', '{target.pid}', '-D', '{tmp_path / 'snap'}'])\n"
                  "print('EXIT', code)\nprint('\\n'.join(sys.modules))")
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             timeout=60)
    finally:
        target.kill()
        target.wait()
    lines = out.stdout.split()
    assert "EXIT" in lines and lines[lines.index("EXIT") + 1] == "0", out.stderr
    mods = set(lines)
    assert "criu_model.dumper" in mods  # it did dump
    for heavy in ("rich", "criu_model.render.text", "criu_model.pages.capture",
                  "criu_model.pages.sink", "criu_model.collect.regs", "criu_model.planner",
                  "criu_model.differ", "pyroute2", "platform", "uuid"):
        assert heavy not in mods, heavy
