"""The memory commands as a user runs them: dump --pages, show memory/mems/threads, grep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.memchild import NEEDLE, NEEDLE_OFFSET, MemTree, spawn_mem_tree

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: ptrace, map_files, PFNs")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "criu_model", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def dumped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MemTree, Path]]:
    tmp = tmp_path_factory.mktemp("clipages")
    with spawn_mem_tree(tmp) as tree:
        res = run("dump", str(tree.root.pid), "-D", str(tmp / "snap"), "--pages")
        assert res.returncode == 0, res.stderr
        yield tree, tmp / "snap"


def test_show_memory_hexdump_and_raw(dumped: tuple[MemTree, Path]) -> None:
    tree, snap = dumped
    addr = tree.root.regions["anon"][0] + NEEDLE_OFFSET
    res = run("show", str(snap), "memory", str(tree.root.pid), f"{addr:#x}", "32")
    assert res.returncode == 0, res.stderr
    first = res.stdout.splitlines()[0]
    assert first.startswith(f"{addr:012x}: 4352 4955 2d4d") and "CRIU-MODEL-NEEDL" in first
    raw = subprocess.run([sys.executable, "-m", "criu_model", "show", str(snap), "memory",
                          str(tree.root.pid), f"{addr:x}", str(len(NEEDLE)), "--raw"],
                         capture_output=True, timeout=60)
    assert raw.stdout == NEEDLE
    js = run("show", str(snap), "memory", str(tree.root.pid), f"{addr:#x}",
             str(len(NEEDLE)), "--json")
    assert js.returncode == 0, js.stderr
    assert json.loads(js.stdout) == {"view": "memory", "pid": tree.root.pid, "addr": addr,
                                     "length": len(NEEDLE), "hex": NEEDLE.hex()}
    both = run("show", str(snap), "memory", str(tree.root.pid), f"{addr:#x}", "4", "--raw",
               "--json")
    assert both.returncode == 2
    # decimal addresses work too; an address outside every VMA is one clear line
    assert run("show", str(snap), "memory", str(tree.root.pid), str(addr), "4").returncode == 0
    bad = run("show", str(snap), "memory", str(tree.root.pid), "0x1000", "4")
    assert bad.returncode == 1 and "outside every VMA" in bad.stderr
    assert bad.stderr.count("\n") == 1
    assert run("show", str(snap), "memory", str(tree.root.pid)).returncode == 2  # usage
    assert run("show", str(snap), "mems").returncode == 2
    assert run("show", str(snap), "threads").returncode == 2


def test_grep(dumped: tuple[MemTree, Path]) -> None:
    tree, snap = dumped
    addr = tree.root.regions["anon"][0] + NEEDLE_OFFSET
    res = run("grep", str(snap), NEEDLE.decode(), "--pid", str(tree.kid.pid))
    assert res.returncode == 0, res.stderr
    assert f"{tree.kid.pid} {addr:#x} [anon]" in res.stdout
    res = run("grep", str(snap), NEEDLE.decode(), "--json")
    hits = json.loads(res.stdout)
    assert {(h["pid"], h["addr"]) for h in hits} >= {(tree.root.pid, addr), (tree.kid.pid, addr)}
    assert run("grep", str(snap), "no-such-bytes-anywhere-\\x01\\x02").returncode == 1
    assert run("grep", str(snap), "(", "--regex").returncode == 2


def _hex(text: str) -> int:
    try:
        return int(text, 16)
    except ValueError:
        return -1


def test_show_mems_has_stored_counts_and_threads_registers(dumped: tuple[MemTree, Path]
                                                           ) -> None:
    tree, snap = dumped
    res = run("show", str(snap), "mems", str(tree.kid.pid))
    assert res.returncode == 0, res.stderr
    header = res.stdout.splitlines()[0].split()
    assert header[header.index("EXCL") + 1:header.index("EXCL") + 5] == \
        ["STORED", "ZERO", "INHERIT", "SHARED"]
    anon = tree.root.regions["anon"][0]
    row = next(cells for cells in (line.split() for line in res.stdout.splitlines()[1:])
               if len(cells) > 2 and _hex(cells[0]) <= anon < _hex(cells[1]))
    # (the kernel may have merged the mapping with a neighbour: compare with RSS)
    stored, zero = int(row[header.index("STORED")]), int(row[header.index("ZERO")])
    assert stored >= 512 and stored + zero == int(row[header.index("RSS")])
    res = run("show", str(snap), "threads", str(tree.root.pid))
    assert res.returncode == 0 and "rip" in res.stdout and "sigactions" in res.stdout


def test_state_only_snapshot_has_no_memory(dumped: tuple[MemTree, Path], tmp_path: Path) -> None:
    tree, _ = dumped
    res = run("dump", str(tree.root.pid), "-D", str(tmp_path / "plain"))
    assert res.returncode == 0, res.stderr
    assert not (tmp_path / "plain" / "pages.img").exists()
    res = run("show", str(tmp_path / "plain"), "memory", str(tree.root.pid), "0x1000")
    assert res.returncode == 1 and "without --pages" in res.stderr
    assert run("grep", str(tmp_path / "plain"), "x").returncode == 2
    old = run("dump", str(tree.root.pid), "-D", str(tmp_path / "old"), "--no-pages")
    assert old.returncode == 0 and "--no-page-counts" in old.stderr
