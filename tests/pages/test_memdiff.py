"""diff --only memory on real processes: exactly the pages a process wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import criu_model
from criu_model.pages.layout import PAGE_SIZE
from tests.memchild import ANON_SIZE, WRITE_BASE, MemTree, spawn_mem_tree

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: ptrace, map_files, PFNs")


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[MemTree]:
    with spawn_mem_tree(tmp_path) as tree:
        yield tree


def _anon_change(result: criu_model.differ.Diff, pid: int, start: int):  # type: ignore[name-defined]
    found = [ch for ch in result.changes if ch.what == "memory" and ch.pid == pid
             and ch.start <= start < ch.after["end"]]  # the VMA holding the mapping
    return found[0] if found else None


def _within(addrs: list[int], start: int) -> list[int]:
    return sorted(a for a in addrs if start <= a < start + ANON_SIZE)


def test_memory_diff_reports_exactly_the_written_pages(tree: MemTree, tmp_path: Path) -> None:
    a = criu_model.write(criu_model.dump([tree.root.pid], pages=True, pages_dir=str(tmp_path)),
                         tmp_path / "a")
    tree.command("write 7")
    b = criu_model.write(criu_model.dump([tree.root.pid], pages=True, pages_dir=str(tmp_path),
                                         parent=a), tmp_path / "b")
    snap_a, snap_b = criu_model.load(a), criu_model.load(b)
    start = tree.root.regions["anon"][0]
    result = criu_model.diff(snap_a, snap_b, only="memory", include_volatile=True)
    ch = _anon_change(result, tree.root.pid, start)
    assert ch is not None
    # (the kernel may merge the mapping with the interpreter's own arenas next to
    # it, whose pages move too: look at the mapping's own range)
    assert _within(ch.after["pages"]["changed"], start) == \
        [start + (WRITE_BASE + i) * PAGE_SIZE for i in range(7)]
    assert not _within(ch.after["pages"]["added"] + ch.after["pages"]["removed"], start)
    assert _anon_change(result, tree.kid.pid, start) is None  # the kid wrote nothing
    assert criu_model.diff(snap_a, snap_a, only="memory").identical
    # the CLI, in JSON
    res = subprocess.run([sys.executable, "-m", "criu_model", "diff", str(a), str(b),
                          "--only", "memory", "--json"], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 1, res.stderr
    doc = json.loads(res.stdout)
    entry = next(e for e in doc["changes"] if e["pid"] == tree.root.pid
                 and e["start"] <= start < e["end"])
    assert entry["what"] == "memory" and entry["changed"] >= 7
    assert "pages" not in entry  # addresses only with --all
    assert doc["summary"]["memory"]["changed"] >= 7
    text = subprocess.run([sys.executable, "-m", "criu_model", "diff", str(a), str(b),
                           "--only", "memory"], capture_output=True, text=True, timeout=60)
    line = next(x for x in text.stdout.splitlines() if f"~ memory {entry['start']:x}-" in x)
    assert f"{entry['changed']} pages changed" in line


def test_live_memory_diff(tree: MemTree, tmp_path: Path) -> None:
    a = criu_model.write(criu_model.dump([tree.root.pid], pages=True, pages_dir=str(tmp_path)),
                         tmp_path / "a")
    tree.command("write 3")
    res = subprocess.run([sys.executable, "-m", "criu_model", "diff", str(a), "--live",
                          "--pages", "--only", "memory", "--json", "--all"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1, res.stderr
    start = tree.root.regions["anon"][0]
    entry = next(e for e in json.loads(res.stdout)["changes"]
                 if e["pid"] == tree.root.pid and e["start"] <= start < e["end"])
    assert _within(entry["pages"]["changed"], start) == \
        [start + (WRITE_BASE + i) * PAGE_SIZE for i in range(3)]
    plain = criu_model.write(criu_model.dump([tree.root.pid]), tmp_path / "plain")
    res = subprocess.run([sys.executable, "-m", "criu_model", "diff", str(plain), "--live",
                          "--pages"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "without --pages" in res.stderr
