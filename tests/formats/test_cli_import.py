"""`criu-model import SRC -D DIR`, pages included (formats.criu.import_pages)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from rich.console import Console

import criu_model
from criu_model.cli import import_ as cli_import
from criu_model.errors import UsageError
from tests.formats.conftest import FIXTURES


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli_import.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["import", *argv])


def test_import_writes_a_snapshot_that_loads(tmp_path: Path, capsys) -> None:
    out = tmp_path / "snap"
    console = Console(file=None, width=200)
    assert cli_import.run(_args(str(FIXTURES / "tree-after"), "-D", str(out)), console) == 0
    said = capsys.readouterr().out
    assert "imported 12 processes, 15 threads" in said and "criu-dir" in said
    snap = criu_model.load(out)
    assert 6722 in snap.by_pid and snap.inventory.tool_version.startswith("criu ")
    result = criu_model.plan(snap, live=False)
    assert result.processes or result.steps
    assert snap.page_store is not None and snap.read_memory(6391, 0x55B95B92C480, 23) == \
        b"/tmp/criu-fixtures/work"
    # Importing over it needs --force; importing a criu-model snapshot is refused.
    with pytest.raises(UsageError, match="already exists"):
        cli_import.run(_args(str(FIXTURES / "sleep"), "-D", str(out)), console)
    assert cli_import.run(_args(str(FIXTURES / "sleep"), "-D", str(out), "--force"),
                          console) == 0
    assert list(criu_model.load(out).by_pid) == [6819]
    with pytest.raises(UsageError, match="needs no import"):
        cli_import.run(_args(str(out), "-D", str(tmp_path / "again")), console)


def test_import_of_a_refused_dump_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(criu_model.CriuModelError) as err:
        cli_import.run(_args(str(FIXTURES / "tree-refused-partial"), "-D",
                             str(tmp_path / "x")), Console())
    assert "left by a refused dump" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "x").exists()
