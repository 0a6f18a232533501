"""Shared fixtures: real process trees from tests/proctree.py, always torn down."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.proctree import Tree, spawn

needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root (CAP_SYS_ADMIN for namespaces and mounts)")


@pytest.fixture
def family_tree(tmp_path: Path) -> Iterator[Tree]:
    """Groups, a second session, a deleted cwd and a zombie (see proctree.py)."""
    gone = tmp_path / "gone dir"
    gone.mkdir()
    ino = gone.stat().st_ino
    with spawn("family", args={"deleted_cwd": str(gone)}) as tree:
        tree["a1"].info["cwd_ino"] = ino
        yield tree


@pytest.fixture
def threads_proc() -> Iterator[Tree]:
    """One process with three named threads, one with a pending blocked signal."""
    with spawn("threads") as tree:
        yield tree


@pytest.fixture
def pidns_tree() -> Iterator[Tree]:
    """unshare(CLONE_NEWPID) + fork: a pid-namespace init and its child (root only)."""
    if os.geteuid() != 0:
        pytest.skip("unshare(CLONE_NEWPID) needs CAP_SYS_ADMIN")
    with spawn("pidns") as tree:
        yield tree


@pytest.fixture
def mountns_proc(tmp_path: Path) -> Iterator[Tree]:
    """A process in its own mount + uts namespace with a tmpfs at a path with spaces."""
    if os.geteuid() != 0:
        pytest.skip("unshare(CLONE_NEWNS) and mount need CAP_SYS_ADMIN")
    mount_dir = tmp_path / "mnt with\tspace"
    mount_dir.mkdir()
    with spawn("mountns", args={"mount_dir": str(mount_dir), "hostname": "cm-test-host"}) as tree:
        tree["main"].info["mount_dir"] = str(mount_dir)
        yield tree


RICH_ENV_VAR = "CRIU_MODEL_TEST_VAR"
RICH_ENV_VALUE = "hello world=1"
RICH_EXTRA_ARGV = ("arg with space", "", "ünïcode")


@pytest.fixture
def rich_proc(tmp_path: Path) -> Iterator[Tree]:
    """One process with umask, rlimit, nice, signals, timers... set (see proctree.py)."""
    cwd = tmp_path / "work dir"
    cwd.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), RICH_ENV_VAR: RICH_ENV_VALUE}
    with spawn("rich", cwd=str(cwd), env=env, extra_argv=RICH_EXTRA_ARGV) as tree:
        tree["main"].info["cwd"] = str(cwd)
        yield tree


CGROUP2_ROOT = Path("/sys/fs/cgroup/unified")


@pytest.fixture
def cgroup2_dir() -> Iterator[Path]:
    """A fresh cgroup v2 directory, removed afterwards (its members must be gone by then)."""
    if os.geteuid() != 0 or not (CGROUP2_ROOT / "cgroup.procs").exists():
        pytest.skip(f"needs root and cgroup v2 at {CGROUP2_ROOT}")
    path = CGROUP2_ROOT / f"criu-model-test-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    try:
        yield path
    finally:
        path.rmdir()


def unused_pid() -> int:
    """A pid with no process right now (searched downwards from pid_max)."""
    pid = int(Path("/proc/sys/kernel/pid_max").read_text()) - 1
    while Path(f"/proc/{pid}").exists():
        pid -= 1
    return pid


def kthreadd_or_skip() -> int:
    """Pid 2 when it is kthreadd; inside a pid namespace no kernel thread is visible."""
    from criu_model.collect.stat import TaskFlag
    try:
        data = Path("/proc/2/stat").read_bytes()
    except FileNotFoundError:
        pytest.skip("no pid 2 here: kernel threads are not visible (a pid namespace?)")
    flags = int(data[data.rindex(b")") + 2 :].split()[6])
    if not flags & TaskFlag.KTHREAD or b"(kthreadd)" not in data:
        pytest.skip("pid 2 is not kthreadd here (a pid namespace?)")
    return 2
