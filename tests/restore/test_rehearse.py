"""Rehearsal on real trees: the kernel runs the plan's skeleton and our collector judges it.

Every test checks that nothing of the sandbox survives (no process left in its pid
namespace) and that the host's mount table is untouched.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import criu_model
from criu_model.restore import RehearsalReport, rehearse
from criu_model.restore.judge import MATCHED, MISMATCHED, NOT_REHEARSED, Entry
from criu_model.restore.rehearsal import HOLD_ENV
from criu_model.restore.sandbox import pidns_members, wait_gone
from criu_model.snapshot import Snapshot
from tests.restore.skeleton import DATA_POS, ZOMBIE_STATUS, spawn_tree

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, set_tid)")


def _mounts() -> list[str]:
    # Mount ids and the mount points: what a leaked mount would change.
    return sorted(" ".join(line.split()[:5]) for line in
                  Path("/proc/self/mountinfo").read_text().splitlines())


@pytest.fixture
def host_untouched() -> Iterator[None]:
    before = _mounts()
    yield
    assert _mounts() == before


def _empty(pidns: int) -> list[int]:
    """Who is still in the pid namespace after a grace period (killing takes a moment)."""
    deadline = time.monotonic() + 5
    while pidns_members(pidns) and time.monotonic() < deadline:
        time.sleep(0.01)
    return pidns_members(pidns)


def _gone(report: RehearsalReport) -> None:
    assert report.sandbox_pid is not None
    assert wait_gone(report.sandbox_pid)
    assert pidns_members(report.sandbox_pidns) == []   # rehearse waited for all of them


def _by(report: RehearsalReport, kind: str, ident: str) -> Entry:
    return next(e for e in report.entries if e.kind == kind and e.id == ident)


@pytest.fixture
def data_file(tmp_path: Path) -> str:
    path = tmp_path / "data"
    path.write_bytes(b"x" * 100)
    return str(path)


@pytest.fixture
def tree_snap(data_file: str) -> Iterator[tuple[Snapshot, dict[str, int]]]:
    with spawn_tree(data_file) as tree:
        snap = criu_model.dump([tree.pids["root"]])
        yield snap, tree.pids


def test_real_tree_rehearses_clean(tree_snap: tuple[Snapshot, dict[str, int]],
                                   host_untouched: None) -> None:
    snap, pids = tree_snap
    report = rehearse(snap, criu_model.plan(snap, live=False, pid_ns="new"))
    _gone(report)
    bad = [e.to_json() for e in report.entries if e.status == MISMATCHED]
    assert bad == []
    assert report.ok
    root, a, b, b1, z = (pids[r] for r in ("root", "a", "b", "b1", "z"))
    for pid in (root, a, b, b1, z):
        assert _by(report, "process", str(pid)).status == MATCHED
    assert _by(report, "fd", f"{root}:5").status == MATCHED      # pos 42, read-only
    assert snap.fds_by_pid[root].fds[3].pos == DATA_POS
    assert snap.by_pid[z].exit_code >> 8 == ZOMBIE_STATUS
    assert len(snap.by_pid[b].threads) == 2
    assert _by(report, "process", str(b)).reason == ""   # its thread has its own tid too
    kinds = {e.kind for e in report.entries if e.status == MATCHED}
    assert {"process", "fd", "shared_file", "pipe", "socketpair"} <= kinds
    # fds 5 and 6 of root and fd 5 of a: one description
    assert _by(report, "shared_file", f"{root}:5,{root}:6,{a}:5").status == MATCHED
    assert _by(report, "pipe", f"{root}:7,{a}:7").status == MATCHED
    # what is not rehearsed says why
    for entry in report.entries:
        if entry.status == NOT_REHEARSED:
            assert entry.reason


def test_corrupted_setpgid_is_caught(tree_snap: tuple[Snapshot, dict[str, int]]) -> None:
    snap, pids = tree_snap
    plan = criu_model.plan(snap, live=False, pid_ns="new")
    step = next(s for s in plan.steps if s.action == "setpgid" and s.actor == pids["a"])
    step.args["pgid"] = pids["root"]       # stays in root's group instead of leading its own
    report = rehearse(snap, plan)
    _gone(report)
    assert not report.ok
    entry = _by(report, "process", str(pids["a"]))
    assert entry.status == MISMATCHED
    assert {"field": "pgid", "expected": [pids["a"]], "actual": [pids["root"]]} \
        in entry.mismatches


def _start_logged(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """`setsid sh -c 'echo hello; exec sleep 1000' >x.log 2>&1`: fds 1 and 2, one file."""
    log = tmp_path / "x.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["sh", "-c", "echo hello; exec sleep 1000"], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    deadline = time.monotonic() + 5
    while log.read_bytes() != b"hello\n" or \
            not os.readlink(f"/proc/{proc.pid}/exe").endswith("sleep"):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return proc, log


def test_log_redirect_sharing_is_planned_and_rehearsed(tmp_path: Path,
                                                       host_untouched: None) -> None:
    """Issue 12 item 5, first bug: `>x.log 2>&1` was planned as two opens (the rehearsal
    caught it: the sandbox grouped fds 1 and 2 apart); now opened once and dup'ed."""
    proc, log = _start_logged(tmp_path)
    try:
        snap = criu_model.dump([proc.pid])
    finally:
        proc.kill()
        proc.wait()
    stat = log.stat()
    report = rehearse(snap, criu_model.plan(snap, live=False, pid_ns="new"))
    _gone(report)
    pid = proc.pid
    assert _by(report, "fd", f"{pid}:1").status == MATCHED   # path, O_WRONLY, pos 6: each fine
    assert _by(report, "fd", f"{pid}:2").status == MATCHED
    shared = _by(report, "shared_file", f"{pid}:1,{pid}:2")
    assert shared.status == MATCHED, shared.mismatches
    assert report.ok, [e.to_json() for e in report.entries if e.status == MISMATCHED]
    dup = [s for s in criu_model.plan(snap, live=False, pid_ns="new").steps
           if s.actor == pid and str(s.action) == "dup2" and s.args.get("new") == 2]
    assert dup and dup[0].args["old"] == 1   # fd 2 is a dup of fd 1, not a second open
    # opened for writing in a scratch tmpfs inside the sandbox: the host file is untouched
    assert log.read_bytes() == b"hello\n"
    assert log.stat().st_mtime_ns == stat.st_mtime_ns


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "criu_model", *args], capture_output=True,
                          text=True, timeout=60, env=env)


def test_cli_exit_codes_and_json(tmp_path: Path, data_file: str) -> None:
    with spawn_tree(data_file) as tree:
        good = str(criu_model.write(criu_model.dump([tree.pids["root"]]), str(tmp_path / "g")))
    proc, _log = _start_logged(tmp_path)
    try:
        bad = str(criu_model.write(criu_model.dump([proc.pid]), str(tmp_path / "b")))
    finally:
        proc.kill()
        proc.wait()
    run = _cli("plan", good, "--rehearse", "--json")
    assert run.returncode == 0, run.stderr
    out: dict[str, Any] = json.loads(run.stdout)
    assert out["ok"] and out["summary"]["mismatched"] == 0 and out["summary"]["matched"] > 10
    assert {"kind", "id", "status"} <= set(out["entries"][0])
    run = _cli("plan", bad, "--rehearse")   # the >x.log 2>&1 case, fixed in the planner
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip().splitlines()[-1].startswith("rehearsed: ")
    assert ", 0 mismatched" in run.stdout.strip().splitlines()[-1]
    run = _cli("plan", good, "--keep")
    assert run.returncode not in (0, 3, 4) and "--keep needs --rehearse" in run.stderr


def _inner_pid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    raise AssertionError(f"no NSpid for {pid}")


def test_keep_leaves_it_parked(tmp_path: Path, data_file: str) -> None:
    with spawn_tree(data_file) as tree:
        snap_dir = str(criu_model.write(criu_model.dump([tree.pids["root"]]),
                                        str(tmp_path / "s")))
        root = tree.pids["root"]
    run = _cli("plan", snap_dir, "--rehearse", "--keep")
    line = next(ln for ln in run.stdout.splitlines() if "kill -9" in ln)
    pid = int(line.rsplit(" ", 1)[1])
    try:
        assert run.returncode == 0, run.stdout + run.stderr
        assert _inner_pid(pid) == 1   # pid 1 in the sandbox
        pidns = os.stat(f"/proc/{pid}/ns/pid").st_ino
        members = pidns_members(pidns)
        assert len(members) >= 5       # init + root, a, b, z (b1 too)
        assert root in {_inner_pid(m) for m in members}
    finally:
        os.kill(pid, signal.SIGKILL)
    assert wait_gone(pid)
    assert _empty(pidns) == []


_HOLDER = """
import sys
import criu_model
from criu_model.restore import rehearse
snap = criu_model.load(sys.argv[1])
rehearse(snap, criu_model.plan(snap, live=False, pid_ns="new"))
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_rehearser_death_kills_the_sandbox(tmp_path: Path, data_file: str, sig: int) -> None:
    with spawn_tree(data_file) as tree:
        snap_dir = str(criu_model.write(criu_model.dump([tree.pids["root"]]),
                                        str(tmp_path / "s")))
    env = dict(os.environ, **{HOLD_ENV: "30"})
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, snap_dir], env=env,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stderr is not None
        line = holder.stderr.readline()
        assert line.startswith("rehearsal-held "), line + holder.stderr.read()
        pid, pidns = (int(v) for v in line.split()[1:])
        assert len(pidns_members(pidns)) >= 5
        holder.send_signal(sig)
        holder.wait(timeout=10)
    finally:
        holder.kill()
        holder.wait()
    assert wait_gone(pid)
    assert _empty(pidns) == []


_CLOEXEC_TREE = """
import os, signal, sys
fd = os.open(sys.argv[1], os.O_RDONLY)   # Python's fds are O_CLOEXEC
if os.fork() == 0:
    signal.pause()
print(fd, flush=True)
signal.pause()
"""


def test_dup2_keeps_cloexec(data_file: str) -> None:
    """Planner gap found by rehearsal: a file inherited by a child travels at a service
    fd and is moved by dup2, which clears FD_CLOEXEC. The dup2 step now says "cloexec"
    (dup3(O_CLOEXEC)), and the rehearsed flags match."""
    proc = subprocess.Popen([sys.executable, "-c", _CLOEXEC_TREE, data_file],
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    try:
        assert proc.stdout is not None
        fd = int(proc.stdout.readline())
        snap = criu_model.dump([proc.pid])
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    child = next(p.pid for p in snap.processes if p.pid != proc.pid)
    report = rehearse(snap, criu_model.plan(snap, live=False, pid_ns="new"))
    _gone(report)
    for pid in (proc.pid, child):
        entry = _by(report, "fd", f"{pid}:{fd}")
        assert entry.status == MATCHED, entry.mismatches
    assert _by(report, "shared_file", f"{min(proc.pid, child)}:{fd},{max(proc.pid, child)}"
                                      f":{fd}").status == MATCHED


# Seeds of tests/plan/simtrees.py's random trees: 52 holds a pid-namespace init that
# died of SIGKILL (a namespace init ignores its own kill(): the conductor signals it),
# 26 and 35 threads whose tids a later sibling's set_tid needs; 578 and 2500 a creator
# that must setns into a nested pid namespace for a clone (setns_pid) and back.
_SEEDS = (0, 1, 2, 3, 26, 35, 52, 578, 2500)


@pytest.mark.parametrize("seed", _SEEDS)
def test_random_trees_the_kernel_runs(seed: int) -> None:
    """Issue 12 item 4: the simulator, the kernel and the snapshot agree on random trees."""
    import random

    from tests.plan.simtrees import random_world, to_snapshot

    rng = random.Random(seed)
    snap = to_snapshot(random_world(rng, rng.randint(5, 60), init_setsid=None))
    plan = criu_model.plan(snap, live=False, pid_ns="new")
    assert plan.feasible     # the simulator verified it
    report = rehearse(snap, plan)
    _gone(report)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    if seed in (578, 2500):
        assert any(s.action == "setns_pid" for s in plan.steps)
        assert not [e for e in report.entries if e.status != MATCHED]


@pytest.mark.parametrize("kind", ["regular", "dirs", "fifo", "eventfd", "signalfd", "timerfd",
                                  "memfd", "epoll", "deleted"])
def test_fd_kinds(tmp_path: Path, kind: str) -> None:
    """Each kind the executor makes, judged on its own (tests/collect/fdkinds.py)."""
    from tests.collect.fdkinds import spawn

    with spawn(kind, str(tmp_path)) as child:
        snap = criu_model.dump([child.pid])
    report = rehearse(snap, criu_model.plan(snap, live=False, pid_ns="new"))
    _gone(report)
    bad = [e for e in report.entries if e.status == MISMATCHED]
    assert [e.to_json() for e in bad] == []
    if kind == "deleted":
        # fds 3 and 5 are one description (dup): opened once, dup'ed (was two opens)
        deleted = [e for e in report.entries if e.kind == "fd" and e.status == MATCHED
                   and snap.fds_by_pid[child.pid].fds and e.id.endswith((":3", ":4", ":5"))]
        assert len(deleted) == 3        # path, deleted, size, pos: recreated from the ghost


_SOCKETS = """
import os, signal, socket, sys
for _ in range(3):    # fds 0-2: three opens (one shared description would hit the dup bug)
    os.close(_)
for _ in range(3):
    os.set_inheritable(os.open("/dev/null", os.O_RDWR), True)
u = socket.socket(socket.AF_UNIX); u.bind(os.path.join(sys.argv[1], "listener.sock"))
u.listen(5)
a = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); a.bind(b"\\0cm-rehearse-abstract")
t = socket.socket(); t.bind(("127.0.0.1", 0)); t.listen(7)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("127.0.0.1", 0))
t6 = socket.socket(socket.AF_INET6); t6.bind(("::1", 0)); t6.listen(3)
c = socket.create_connection(t.getsockname())
s, _ = t.accept()
os.write(int(sys.argv[2]), b"ready\\n")
signal.pause()
"""


def test_sockets_bound_inside(tmp_path: Path, host_untouched: None) -> None:
    """Unix listeners (path and abstract), TCP listeners, an established TCP connection
    (both ends, under TCP_REPAIR) and UDP on the sandbox's loopback: the same names and
    ports, bound where the host cannot see them."""
    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-c", _SOCKETS, str(tmp_path), str(w)],
                            pass_fds=(w,))
    os.close(w)
    try:
        assert os.read(r, 6) == b"ready\n"
        snap = criu_model.dump([proc.pid])
    finally:
        proc.kill()
        proc.wait()
        os.close(r)
    report = rehearse(snap, criu_model.plan(snap, live=False, pid_ns="new"))
    _gone(report)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    held = {f"{proc.pid}:{fd.fd}" for fd in snap.fds_by_pid[proc.pid].fds
            if fd.HasField("socket")}
    sockets = [e for e in report.entries if e.kind == "fd" and e.id in held]
    assert len(sockets) == 7 and all(e.status == MATCHED for e in sockets)
    assert os.listdir(tmp_path) == ["listener.sock"]   # the sandbox bound in its own tmpfs


def test_ptys_and_controlling_ttys(host_untouched: None) -> None:
    """A pty (a private devpts inside), a session's controlling tty, its foreground
    group and a member that left it (tests/proctree.py `tty`)."""
    from tests.proctree import spawn

    with spawn("tty") as tree:
        snap = criu_model.dump([tree.root.pid])
        roles = {r: m.pid for r, m in tree.members.items()}
    report = rehearse(snap, criu_model.plan(snap, live=False, pid_ns="new"))
    _gone(report)
    for role in ("ttyroot", "lead", "fg", "notty"):
        assert _by(report, "process", str(roles[role])).status == MATCHED   # tty_nr, tpgid
    assert snap.by_pid[roles["lead"]].tpgid == roles["fg"]
    assert snap.by_pid[roles["notty"]].tty_nr == 0
    # the pty's files travel through service fds: dup2 now keeps O_CLOEXEC (was the gap)
    bad = [m for e in report.entries if e.status == MISMATCHED for m in e.mismatches]
    assert bad == []
