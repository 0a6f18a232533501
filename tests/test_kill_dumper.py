"""A fast sample of scripts/reliability/kill_ptrace_dump.py: a SIGKILLed dumper leaves
no target stopped or traced, and no directory that looks complete but is not."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "reliability" / "kill_ptrace_dump.py"


@pytest.mark.skipif(os.geteuid() != 0, reason="ptrace freezing of a sibling needs root")
def test_sigkilled_ptrace_dumps_leave_nothing_stopped() -> None:
    spec = importlib.util.spec_from_file_location("kill_ptrace_dump", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    kills, left, _complete, bad = module.run(iterations=6, procs=12, seed=7)
    assert kills >= 1
    assert left == 0 and bad == 0
