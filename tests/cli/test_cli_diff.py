"""`criu-model diff` as a real command: exit statuses, text and JSON, filters, --live."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_differ import Target

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="ptrace dumps of the target need root")
CHANGE_KEYS = {"op", "what", "area", "pid"}
OPTIONAL_KEYS = {"fd", "tid", "start", "key", "pids", "field", "before", "after", "volatile"}


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    return subprocess.run([sys.executable, "-m", "criu_model", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd, env=env)


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Target]:
    t = Target(tmp_path)
    try:
        yield t
    finally:
        t.kill()


def dump(t: Target, path: Path) -> Path:
    t.wait_asleep()
    res = run("dump", str(t.pid), "-D", str(path))
    assert res.returncode == 0, res.stderr
    return path


@pytest.fixture
def two_snapshots(target: Target, tmp_path: Path) -> tuple[Target, Path, Path, int]:
    """A before/after pair: between them the target opened one file and its child setsid()."""
    (tmp_path / "new-file").write_text("x")
    target.cmd("nop")
    a = dump(target, tmp_path / "a")
    fd = int(target.cmd("open", tmp_path / "new-file")[0])
    target.cmd("setsid_child")
    b = dump(target, tmp_path / "b")
    return target, a, b, fd


@ROOT_ONLY
def test_exit_statuses_and_text(two_snapshots: tuple[Target, Path, Path, int]) -> None:
    t, a, b, fd = two_snapshots
    same = run("diff", str(a), str(a))
    assert same.returncode == 0, same.stderr
    assert same.stdout.strip() == "no differences"

    res = run("diff", str(a), str(b))
    assert res.returncode == 1, res.stderr
    lines = res.stdout.splitlines()
    # Grouped per process, by pid, each group headed by its pid.
    target_at = lines.index(next(x for x in lines if x.startswith(f"~ pid {t.pid} ")))
    keeper_at = lines.index(next(x for x in lines if x.startswith(f"~ pid {t.keeper} ")))
    assert (target_at < keeper_at) == (t.pid < t.keeper)
    assert any(x.strip().startswith(f"+ fd {fd}: regular ") and x.endswith("new-file")
               for x in lines)
    assert f"    ~ sid: {t.pid} → {t.keeper}" in lines
    assert lines[-1].startswith("processes: 0 added, 0 removed, 2 changed; "
                                "fds: 1 opened, 0 closed, 0 replaced, 0 changed; VMAs:")
    assert "\x1b[" not in res.stdout  # piped: no color codes


@ROOT_ONLY
def test_json_shape(two_snapshots: tuple[Target, Path, Path, int]) -> None:
    t, a, b, fd = two_snapshots
    res = run("diff", str(a), str(b), "--json")
    assert res.returncode == 1, res.stderr
    doc = json.loads(res.stdout)
    assert set(doc) == {"identical", "versions", "include_volatile", "summary", "changes",
                        "missing"}
    assert doc["identical"] is False and doc["versions"] == {"a": "1.4", "b": "1.4"}
    assert doc["summary"]["fds"]["opened"] == 1
    assert doc["summary"]["changes"] == len(doc["changes"])
    for ch in doc["changes"]:
        assert CHANGE_KEYS <= set(ch) <= CHANGE_KEYS | OPTIONAL_KEYS, ch
        assert ch["op"] in ("added", "removed", "changed", "replaced")
    added = [c for c in doc["changes"] if c["what"] == "fd"]
    assert len(added) == 1
    assert added[0]["op"] == "added" and added[0]["pid"] == t.pid and added[0]["fd"] == fd
    assert "before" not in added[0] and added[0]["after"]["kind"] == "regular"
    sid = next(c for c in doc["changes"] if c.get("field") == "sid")
    assert (sid["pid"], sid["before"], sid["after"]) == (t.keeper, t.pid, t.keeper)

    same = json.loads(run("diff", str(a), str(a), "--json").stdout)
    assert same["identical"] is True and same["changes"] == []


@ROOT_ONLY
def test_filters(two_snapshots: tuple[Target, Path, Path, int]) -> None:
    t, a, b, _ = two_snapshots
    res = run("diff", str(a), str(b), "--json", "--pid", str(t.keeper))
    assert res.returncode == 1
    assert {c["pid"] for c in json.loads(res.stdout)["changes"]} == {t.keeper}
    res = run("diff", str(a), str(b), "--json", "--only", "fds")
    assert {c["what"] for c in json.loads(res.stdout)["changes"]} == {"fd"}
    res = run("diff", str(a), str(b), "--only", "creds,mounts")
    assert res.returncode == 0 and res.stdout.strip() == "no differences"
    res = run("diff", str(a), str(b), "--only", "nonsense")
    assert res.returncode == 2 and "nonsense" in res.stderr
    assert res.stderr.count("\n") == 1


@ROOT_ONLY
def test_live(target: Target, tmp_path: Path) -> None:
    (tmp_path / "later").write_text("x")
    target.cmd("nop")
    a = dump(target, tmp_path / "a")
    work = tmp_path / "cwd"
    work.mkdir()
    res = run("diff", str(a), "--live", cwd=work)
    assert res.returncode == 0, res.stdout + res.stderr
    fd = int(target.cmd("open", tmp_path / "later")[0])
    target.wait_asleep()
    res = run("diff", str(a), "--live", "--json", cwd=work)
    assert res.returncode == 1, res.stderr
    changes = json.loads(res.stdout)["changes"]
    assert [(c["op"], c["what"], c["pid"], c.get("fd")) for c in changes] == [
        ("added", "fd", target.pid, fd)]
    assert list(work.iterdir()) == []  # the live side is never written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "cwd", "later"]


def test_trouble_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "inventory.img").write_bytes(b"CRMI\x00garbage")
    res = run("diff", str(bad), str(bad))
    assert res.returncode == 2
    assert "inventory.img" in res.stderr and res.stderr.count("\n") == 1
    assert "Traceback" not in res.stderr
    assert run("diff", str(tmp_path / "nope"), str(tmp_path / "nope")).returncode == 2
    assert run("diff", str(bad)).returncode == 2              # neither DIR_B nor --live
    assert run("diff", str(bad), str(bad), "--live").returncode == 2
    assert run("diff").returncode == 2                         # argparse


@ROOT_ONLY
def test_truncated_image_names_the_file(target: Target, tmp_path: Path) -> None:
    a = dump(target, tmp_path / "a")
    fds_img = a / "fds.img"
    fds_img.write_bytes(fds_img.read_bytes()[:-7])
    res = run("diff", str(a), str(a))
    assert res.returncode == 2
    assert "fds.img" in res.stderr and "Traceback" not in res.stderr
