"""discover(): on a fake /proc for the ordering rules, on real trees for the rest."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from criu_model.collect.tree import children_map, discover, scan
from criu_model.errors import ProcessGone
from tests.proctree import Tree


def fake_proc(root: Path, parents: dict[int, int], comms: dict[int, str] | None = None) -> str:
    """A directory shaped like /proc: NUM/stat for each pid, plus non-pid entries."""
    comms = comms or {}
    for pid, ppid in parents.items():
        (root / str(pid)).mkdir()
        comm = comms.get(pid, f"p{pid}")
        (root / str(pid) / "stat").write_bytes(
            f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 100\n".encode())
    (root / "self").mkdir()
    (root / "sys").mkdir()
    return str(root)


#      1
#     / \
#    2   3
#   / \    \
#  4   9    5 -- 6
#  (10 is unrelated, child of 0)
PARENTS = {1: 0, 2: 1, 3: 1, 4: 2, 9: 2, 5: 3, 6: 5, 10: 0}


def test_children_map(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, PARENTS)
    assert children_map(proc) == {0: [1, 10], 1: [2, 3], 2: [4, 9], 3: [5], 5: [6]}


def test_rescan_reads_only_new_pids_and_drops_gone_ones(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, PARENTS)
    first = scan(proc)
    # After the first pass: 9 exits, 7 (a new child of 3) and 8 (its child) appear;
    # 4's stat now names another parent, which a rescan does not read again.
    shutil.rmtree(tmp_path / "9")
    for pid, ppid in ((7, 3), (8, 7)):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_bytes(f"{pid} (p{pid}) S {ppid} 0\n".encode())
    (tmp_path / "4" / "stat").write_bytes(b"4 (p4) S 10 0\n")
    again = scan(proc, first)
    assert again.children == {0: [1, 10], 1: [2, 3], 2: [4], 3: [5, 7], 5: [6], 7: [8]}
    assert discover([1], proc, found=again) == [1, 2, 3, 4, 5, 7, 6, 8]
    assert scan(proc).children[10] == [4]  # a full scan reads everybody again
    assert first.children[2] == [4, 9]  # the earlier scan is left as it was


def test_breadth_first_parents_first(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, PARENTS)
    assert discover([1], proc) == [1, 2, 3, 4, 9, 5, 6]
    assert discover([3], proc) == [3, 5, 6]
    assert discover([6], proc) == [6]


def test_two_roots_in_order(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, PARENTS)
    assert discover([10, 3], proc) == [10, 3, 5, 6]
    assert discover([3, 10], proc) == [3, 5, 6, 10]


@pytest.mark.parametrize("roots", [[1, 5], [5, 1], [5, 1, 5], [2, 1, 3]])
def test_nested_roots_deduplicated_parent_first(tmp_path: Path, roots: list[int]) -> None:
    proc = fake_proc(tmp_path, PARENTS)
    assert discover(roots, proc) == [1, 2, 3, 4, 9, 5, 6]


def test_comm_with_parenthesis_and_numbers(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, PARENTS, comms={4: "x) S 3 (y", 9: ") 1 )"})
    assert discover([2], proc) == [2, 4, 9]


def test_missing_root(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, PARENTS)
    with pytest.raises(ProcessGone) as info:
        discover([1, 77], proc)
    assert info.value.pid == 77


def test_real_family(family_tree: Tree) -> None:
    t = family_tree
    pids = discover([t["root"].pid])
    assert sorted(pids) == sorted(t.pids)
    assert pids[0] == t["root"].pid
    assert t["zombie"].pid in pids
    position = {pid: i for i, pid in enumerate(pids)}
    for child, parent in [("b2", "b1"), ("s1", "s"), ("s2", "s"), ("a1", "root")]:
        assert position[t[parent].pid] < position[t[child].pid]


def test_real_two_roots(family_tree: Tree, threads_proc: Tree) -> None:
    fam, thr = family_tree, threads_proc
    pids = discover([thr["main"].pid, fam["s"].pid])
    assert pids == [thr["main"].pid, fam["s"].pid, fam["s1"].pid, fam["s2"].pid]
    # threads are not processes
    assert not set(map(int, thr["main"].info["threads"])) & set(pids)


def test_real_nonexistent_root() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    with pytest.raises(ProcessGone):
        discover([os.getpid(), pid])


def test_real_pid_namespace(pidns_tree: Tree) -> None:
    t = pidns_tree
    assert discover([t["unsharer"].pid]) == [t["unsharer"].pid, t["nsinit"].pid, t["nschild"].pid]
