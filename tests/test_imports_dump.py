"""What a state-only `criu-model dump` of a one-process tree loads (start-up cost, issue 15).

Beyond tests/cli/test_dump_imports.py. Not a timing test: each module named here
costs 1.5-5 ms to import and the dump has no use for it, so a change that pulls
one back in fails here.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

from criu_model.images.pb import inventory_pb2
from criu_model.snapshot import Snapshot
from tests.conftest import needs_root


def _modules_after_dump(pid: int, out: Path) -> set[str]:
    script = ("import sys\nfrom criu_model.cli import main\n"
              f"rc = main(['dump', '{pid}', '-D', {str(out)!r}])\n"
              "sys.stdout.flush()\nprint('\\nRC', rc)\nprint('\\n'.join(sys.modules))")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert "RC 0" in res.stdout, res.stderr
    return set(res.stdout.split())


@needs_root
def test_state_only_dump_leaves_unused_modules_out(tmp_path: Path) -> None:
    target = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL)
    try:
        mods = _modules_after_dump(target.pid, tmp_path / "snap")
    finally:
        target.kill()
        target.wait()
    assert (tmp_path / "snap" / "inventory.img").exists()
    assert "criu_model.dumper" in mods and "google.protobuf" in mods  # it did dump
    for unused in (
        "dataclasses", "inspect",  # 5 ms: no dataclass on the dump path
        "socket", "criu_model.collect.sockprobe",  # only for a tree with sockets
        "shutil",  # only to remove a temporary directory
        "hashlib", "_hashlib",  # small images are hashed without OpenSSL
        "pyroute2", "criu_model.collect.sockets",
        "rich", "criu_model.render.text",  # the dump prints plain lines
        "criu_model.planner", "criu_model.differ", "criu_model.pages",
        "criu_model.cgroup_guard",  # the cgroup freeze only
    ):
        assert unused not in mods, unused


def test_snapshot_module_does_not_import_dataclasses() -> None:
    script = "import sys, criu_model.snapshot\nprint('dataclasses' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_dataclasses_replace_still_works_on_a_snapshot() -> None:
    snap = Snapshot(inventory_pb2.Inventory(root_pids=[7]), processes=["p"], memory=["m"])
    new = dataclasses.replace(snap, memory=["n"])
    assert type(new) is Snapshot and new is not snap
    assert (new.inventory, new.processes, new.memory) == (snap.inventory, ["p"], ["n"])
    assert new.fds == [] and new.page_store is None
    assert [f.name for f in dataclasses.fields(snap)][:3] == ["inventory", "processes", "memory"]
