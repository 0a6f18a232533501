"""Paths of the CRIU image fixtures (tests/formats/fixtures/README.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TREES = ("tree-full", "tree-before", "tree-after", "sleep")


def truth(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name / "truth.json").read_text())


@pytest.fixture
def criu_copy(tmp_path: Path):
    """A writable copy of one fixture directory, to damage."""
    import shutil

    def make(name: str) -> Path:
        dst = tmp_path / name
        shutil.copytree(FIXTURES / name, dst)
        return dst
    return make
