"""The cgroup freeze survives its dumper: guardian, per-cgroup lock, churn (issue 13, 1-3).

Real processes in real cgroup v2 groups, driven through the real command in a
subprocess. Every test cgroup is thawed, killed (``cgroup.kill``, Linux 5.14)
and removed afterwards, even when the test fails.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from criu_model import cgroup_guard
from criu_model.collect.tree import discover
from criu_model.errors import AlreadyFrozen, CriuModelError, TargetBusy
from criu_model.freeze import cgroup2_mount, frozen, thaw_cgroup
from tests.test_freeze import _events, _write

REPO = Path(__file__).resolve().parent.parent
HOLD_ENV = "CRIU_MODEL_TEST_HOLD_FROZEN"

# A tree of N processes: the root waits for "go" on stdin (so the test can put
# it in a cgroup first: its children are born there), forks N - 1 sleepers,
# one of which keeps forking short-lived children when argv[2] is "churn",
# prints "ready", then forks one more sleeper (printing its pid) for each
# "fork" line on stdin until stdin closes.
TREE = r"""
import os, sys, time
n, churn = int(sys.argv[1]), sys.argv[2] == "churn"
sys.stdin.readline()
def sleeper():
    os.close(0)
    while True:
        time.sleep(3600)
def churner():
    os.close(0)
    while True:
        if os.fork() == 0:
            time.sleep(0.03)
            os._exit(0)
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        time.sleep(0.002)
for i in range(n - 1):
    if os.fork() == 0:
        churner() if churn and i == 0 else sleeper()
print("ready", flush=True)
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        sleeper()
    print(pid, flush=True)
"""


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)
    return True


class Cgroup:
    """A fresh child cgroup of the v2 mount; close() thaws, kills its members, removes it."""

    def __init__(self) -> None:
        mount = cgroup2_mount()
        if os.geteuid() != 0 or mount is None or not os.access(mount[0], os.W_OK):
            pytest.skip("needs root and a writable cgroup2 mount")
        self.mount = mount[0]
        self.name = f"/criu-model-test-{uuid.uuid4().hex[:8]}"
        self.dir = self.mount.rstrip("/") + self.name
        os.mkdir(self.dir)

    def add(self, pid: int) -> None:
        _write(f"{self.dir}/cgroup.procs", str(pid))

    def frozen(self) -> bool:
        return _events(self.dir)["frozen"] == "1"

    def close(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            _write(f"{self.dir}/cgroup.freeze", "0")
            _write(f"{self.dir}/cgroup.kill", "1")  # Linux 5.14; works on frozen tasks too
            wait_for(lambda: _events(self.dir)["populated"] == "0")
            os.rmdir(self.dir)


class ProcTree:
    """`n` processes born inside `cgroup`; close() kills them (with the cgroup) and reaps."""

    def __init__(self, cgroup: Cgroup, n: int, churn: bool = False) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", TREE, str(n),
                                      "churn" if churn else "calm"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.pid = self.proc.pid
        assert self.proc.stdin is not None and self.proc.stdout is not None
        cgroup.add(self.pid)
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()
        assert select.select([self.proc.stdout], [], [], 10)[0], "the tree never got ready"
        assert self.proc.stdout.readline() == b"ready\n"

    def fork(self) -> int:
        """One more child of the root, born in the cgroup after discovery: its pid."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"fork\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def cgroup() -> Iterator[Cgroup]:
    group = Cgroup()
    try:
        yield group
    finally:
        group.close()


@pytest.fixture
def tree(cgroup: Cgroup) -> Iterator[ProcTree]:
    t = ProcTree(cgroup, 5)
    try:
        yield t
    finally:
        t.close()


def _cli(*args: str, env: dict[str, str] | None = None, **kw: object) -> subprocess.Popen[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "criu_model", *args], cwd=REPO,
                            env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)  # type: ignore[call-overload]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "criu_model", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)


@contextlib.contextmanager
def _held_dump(cgroup: Cgroup, pid: int, target: Path, hold: float = 5
               ) -> Iterator[subprocess.Popen[str]]:
    """A cgroup dump of `pid` holding the tree frozen; killed at the end if still running.

    The dumper leads its own process group, as a shell job would.
    """
    dumper = _cli("dump", str(pid), "-D", str(target), "--freeze", "cgroup",
                  env={HOLD_ENV: str(hold)}, start_new_session=True)
    try:
        assert dumper.stderr is not None
        assert select.select([dumper.stderr], [], [], 20)[0], "the dumper said nothing"
        line = dumper.stderr.readline()
        assert "test hook: holding" in line, line + dumper.stderr.read()
        assert cgroup.frozen()
        yield dumper
    finally:
        with contextlib.suppress(ProcessLookupError):
            dumper.kill()
        dumper.communicate(timeout=20)


@pytest.mark.parametrize("whom", ["dumper", "its process group"])
def test_killed_dumper_is_thawed_by_its_guardian(cgroup: Cgroup, tree: ProcTree,
                                                tmp_path: Path, whom: str) -> None:
    """SIGKILL in the frozen window; the guardian (own session) survives a group kill too."""
    target = tmp_path / "snap"
    with _held_dump(cgroup, tree.pid, target) as dumper:
        if whom == "dumper":
            dumper.send_signal(signal.SIGKILL)
        else:
            os.killpg(dumper.pid, signal.SIGKILL)
        dumper.wait(timeout=10)
        assert wait_for(lambda: not cgroup.frozen(), timeout=2), \
            "the cgroup stayed frozen after the dumper was SIGKILLed"
    with open(f"{cgroup.dir}/cgroup.freeze") as f:
        assert f.read().strip() == "0"
    assert not target.exists()
    assert cgroup_guard.read_marker(cgroup.dir) is None
    # The lock died with the dumper and its guardian: the next dump works.
    done = _run("dump", str(tree.pid), "-D", str(tmp_path / "again"), "--freeze", "cgroup")
    assert done.returncode == 0, done.stderr
    assert not cgroup.frozen()


def test_normal_dump_dismisses_its_guardian(cgroup: Cgroup, tree: ProcTree) -> None:
    with frozen([tree.pid], "cgroup") as report:
        assert cgroup.frozen()
        assert cgroup_guard.read_marker(cgroup.dir) is not None
        guardian = report.guardian_pid
        assert guardian is not None and Path(f"/proc/{guardian}").exists()
        # The guardian is outside the frozen cgroup and not stopped by it.
        with open(f"{cgroup.dir}/cgroup.procs") as f:
            assert str(guardian) not in f.read().split()
    assert not cgroup.frozen()
    assert not Path(f"/proc/{guardian}").exists()  # reaped, not a zombie
    assert cgroup_guard.read_marker(cgroup.dir) is None


def test_guardian_dead_before_the_freeze_means_no_freeze(cgroup: Cgroup, tree: ProcTree,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    real_start = cgroup_guard.start_guardian

    def start_and_kill(directory: str, keep_fds: tuple[int, ...] = ()
                       ) -> cgroup_guard.Guardian:
        guardian = real_start(directory, keep_fds)
        os.kill(guardian.pid, signal.SIGKILL)
        os.waitpid(guardian.pid, 0)
        return guardian

    monkeypatch.setattr(cgroup_guard, "start_guardian", start_and_kill)
    with pytest.raises(CriuModelError, match=r"guardian .* died before the freeze"), \
            frozen([tree.pid], "cgroup"):
        pass
    assert not cgroup.frozen()
    fd = cgroup_guard.try_lock(cgroup.dir)  # released
    assert fd is not None
    os.close(fd)


def test_pre_frozen_cgroup_is_refused_and_thaw_thaws_it(cgroup: Cgroup, tree: ProcTree,
                                                        tmp_path: Path) -> None:
    _write(f"{cgroup.dir}/cgroup.freeze", "1")
    assert wait_for(cgroup.frozen)
    done = _run("dump", str(tree.pid), "-D", str(tmp_path / "snap"), "--freeze", "cgroup")
    assert done.returncode == 1
    assert f"cgroup {cgroup.name} is already frozen" in done.stderr
    assert f"criu-model thaw {cgroup.name}" in done.stderr
    assert cgroup.frozen()  # not ours: left as it was
    assert not (tmp_path / "snap").exists()
    thawed = _run("thaw", cgroup.name)
    assert thawed.returncode == 0, thawed.stderr
    assert f"thawed cgroup {cgroup.name}" in thawed.stdout
    assert not cgroup.frozen()
    again = _run("thaw", cgroup.dir)  # the directory under the mount works too
    assert again.returncode == 0, again.stderr
    assert "is not frozen" in again.stdout
    # The library keeps leaving a frozen cgroup alone when asked to.
    _write(f"{cgroup.dir}/cgroup.freeze", "1")
    with pytest.raises(AlreadyFrozen, match="already frozen"), frozen([tree.pid], "cgroup"):
        pass
    with frozen([tree.pid], "cgroup", frozen_ok=True) as report:
        assert report.already_frozen
    assert cgroup.frozen()
    assert thaw_cgroup(cgroup.name).was_frozen
    assert not cgroup.frozen()


def test_dead_dumper_marker_is_named(cgroup: Cgroup, tree: ProcTree) -> None:
    """A marker left by a dumper whose guardian died too names that dumper."""
    _write(f"{cgroup.dir}/cgroup.freeze", "1")
    gone = subprocess.Popen(["true"])
    gone.wait()
    cgroup_guard.set_marker(cgroup.dir, gone.pid, 0)
    with pytest.raises(AlreadyFrozen, match=f"by criu-model pid {gone.pid}.*died"), \
            frozen([tree.pid], "cgroup"):
        pass
    result = thaw_cgroup(cgroup.dir)
    assert result.was_frozen and "died" in result.frozen_by
    assert cgroup_guard.read_marker(cgroup.dir) is None


def test_ancestor_frozen_is_named(cgroup: Cgroup) -> None:
    child = f"{cgroup.dir}/inner"
    os.mkdir(child)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        _write(f"{child}/cgroup.procs", str(sleeper.pid))
        _write(f"{cgroup.dir}/cgroup.freeze", "1")
        assert wait_for(lambda: _events(child)["frozen"] == "1")
        with pytest.raises(AlreadyFrozen, match=f"its ancestor {cgroup.name} is frozen"), \
                frozen([sleeper.pid], "cgroup"):
            pass
        assert _run("thaw", f"{cgroup.name}/inner").returncode == 1
    finally:
        sleeper.kill()
        sleeper.wait()
        _write(f"{cgroup.dir}/cgroup.freeze", "0")
        wait_for(lambda: _events(child)["populated"] == "0")
        os.rmdir(child)


def test_second_concurrent_dump_names_the_first(cgroup: Cgroup, tree: ProcTree,
                                                tmp_path: Path) -> None:
    with _held_dump(cgroup, tree.pid, tmp_path / "one") as first:
        second = _run("dump", str(tree.pid), "-D", str(tmp_path / "two"), "--freeze", "cgroup")
        assert second.returncode == 1
        assert f"being dumped by pid {first.pid}" in second.stderr, second.stderr
        assert not (tmp_path / "two").exists()
        # thaw refuses too: the first dump thaws it when done.
        busy = _run("thaw", cgroup.name)
        assert busy.returncode == 1
        assert f"pid {first.pid}" in busy.stderr
        with pytest.raises(TargetBusy, match=f"pid {first.pid}"), \
                frozen([tree.pid], "cgroup"):
            pass
        assert cgroup.frozen()
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=10)
    assert wait_for(lambda: not cgroup.frozen(), timeout=2)


def test_churning_tree_is_dumped_and_stranger_refused(cgroup: Cgroup,
                                                      tmp_path: Path) -> None:
    churn = ProcTree(cgroup, 6, churn=True)
    try:
        for i in range(3):
            done = _run("dump", str(churn.pid), "-D", str(tmp_path / f"snap{i}"),
                        "--freeze", "cgroup")
            assert done.returncode == 0, done.stderr
            assert "outside the tree" not in done.stderr
            assert not cgroup.frozen()
        stranger = subprocess.Popen(["sleep", "60"])
        try:
            cgroup.add(stranger.pid)
            refused = _run("dump", str(churn.pid), "-D", str(tmp_path / "x"),
                           "--freeze", "cgroup")
            assert refused.returncode == 1
            assert f"outside the tree ({stranger.pid})" in refused.stderr, refused.stderr
            assert not cgroup.frozen()
            assert not (tmp_path / "x").exists()
        finally:
            stranger.kill()
            stranger.wait()
    finally:
        churn.close()


def test_child_forked_after_discovery_is_a_member(cgroup: Cgroup, tree: ProcTree) -> None:
    pids = discover([tree.pid])
    new = tree.fork()
    assert new not in pids
    with frozen(pids, "cgroup") as report:
        assert cgroup.frozen()
        assert report.joined == [new]
        assert new in report.tids
        assert new in discover([tree.pid])  # what the dumper's re-discovery then finds
    assert not cgroup.frozen()


def test_stranger_arriving_while_freezing_is_refused(cgroup: Cgroup, tree: ProcTree,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The check after freezing catches one moved in after the first check."""
    from criu_model import freeze

    stranger = subprocess.Popen(["sleep", "60"])
    real_wait = freeze._CgroupFreezer._wait_frozen

    def wait_then_move(self: freeze._CgroupFreezer, directory: str) -> None:
        cgroup.add(stranger.pid)
        real_wait(self, directory)

    monkeypatch.setattr(freeze._CgroupFreezer, "_wait_frozen", wait_then_move)
    try:
        with pytest.raises(freeze.UsageError, match=f"outside the tree \\({stranger.pid}\\)"), \
                frozen([tree.pid], "cgroup"):
            pass
        assert not cgroup.frozen()
    finally:
        stranger.kill()
        stranger.wait()
