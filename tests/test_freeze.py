"""Freezing real processes with ptrace and the cgroup v2 freezer, and always thawing."""

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

import pytest

from criu_model import freeze
from criu_model.errors import AccessDenied, UsageError
from criu_model.freeze import FreezeMethod, cgroup2_mount, frozen

# A multi-threaded child: a counter thread, idle threads, a SIGUSR1 handler
# that reports on stdout, and a main thread answering "ping" with the counter.
CHILD = r"""
import os, signal, sys, threading, time
counter = 0
def count():
    global counter
    while True:
        counter += 1
        time.sleep(0.001)
def on_usr1(sig, frame):
    os.write(1, b"signal %d\n" % sig)
signal.signal(signal.SIGUSR1, on_usr1)
for _ in range(int(sys.argv[1])):
    threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
threading.Thread(target=count, daemon=True).start()
os.write(1, b"ready\n")
buf = b""
while True:
    data = os.read(0, 100)
    if not data:
        break
    buf += data
    while b"\n" in buf:
        _, buf = buf.split(b"\n", 1)
        os.write(1, b"pong %d\n" % counter)
"""
IDLE_THREADS = 2
THREADS = IDLE_THREADS + 2  # + counter + main


class Target:
    """A running child we can talk to, killed and reaped by close()."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, str(IDLE_THREADS)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        self.pid = self.proc.pid
        self._buf = b""
        self.events: list[str] = []
        assert self.readline() == "ready"
        while len(self.tids()) < THREADS:  # threads start asynchronously
            time.sleep(0.005)

    def readline(self, timeout: float = 5.0) -> str | None:
        """The next output line, None if nothing within `timeout`."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                return None
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def send_ping(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"ping\n")

    def ping(self, timeout: float = 5.0) -> int:
        """The counter value; other lines (signal reports) are kept in `events`."""
        self.send_ping()
        return self.read_pong(timeout)

    def read_pong(self, timeout: float = 5.0) -> int:
        while True:
            line = self.readline(timeout)
            assert line is not None, "target did not answer"
            if line.startswith("pong "):
                return int(line.split()[1])
            self.events.append(line)

    def wait_signal_report(self, sig: int) -> None:
        """Wait until the target's Python handler reported `sig` exactly once.

        A process-directed signal may be taken by any thread; CPython then runs
        the Python-level handler in the main thread at its next bytecode, and
        our main thread sleeps in read(): a ping wakes it up.
        """
        self.ping()
        expected = f"signal {sig}"
        if expected not in self.events:
            assert self.readline() == expected
            self.events.append(expected)
        assert self.events.count(expected) == 1
        assert self.readline(timeout=0.2) is None

    def tids(self) -> list[int]:
        return sorted(int(t) for t in os.listdir(f"/proc/{self.pid}/task"))

    def states(self) -> dict[int, str]:
        """State of every live thread; threads that exit while we look are left out."""
        out = {}
        for tid in self.tids():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                out[tid] = thread_state(self.pid, tid)
        return out

    def tracers(self) -> set[int]:
        out = set()
        for tid in self.tids():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                out.add(tracer_pid(self.pid, tid))
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def thread_state(pid: int, tid: int) -> str:
    with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
        stat = f.read()
    return stat[stat.rfind(b")") + 2:][:1].decode()


def tracer_pid(pid: int, tid: int) -> int:
    with open(f"/proc/{pid}/task/{tid}/status") as f:
        for line in f:
            if line.startswith("TracerPid:"):
                return int(line.split()[1])
    raise AssertionError("no TracerPid line")


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.005)


@pytest.fixture
def target() -> Iterator[Target]:
    t = Target()
    try:
        yield t
    finally:
        t.close()


@pytest.fixture
def target2() -> Iterator[Target]:
    t = Target()
    try:
        yield t
    finally:
        t.close()


def assert_released(t: Target) -> None:
    """Nobody traces it any more and it runs again: the counter keeps counting."""
    assert t.tracers() == {0}
    assert not set(t.states().values()) & {"t"}
    first = t.ping()
    time.sleep(0.05)
    assert t.ping() > first


# ------------------------------------------------------------------- ptrace


def test_ptrace_freezes_every_thread_then_releases(target: Target) -> None:
    before = target.ping()
    start_ns = time.time_ns()
    with frozen([target.pid], FreezeMethod.PTRACE) as report:
        assert report.tids == target.tids()
        assert len(report.tids) == THREADS
        assert set(target.states().values()) == {"t"}
        assert target.tracers() == {os.getpid()}
        target.send_ping()
        assert target.readline(timeout=0.3) is None  # frozen: no answer
        assert set(target.states().values()) == {"t"}
    assert report.method is FreezeMethod.PTRACE
    assert start_ns <= report.frozen_at_ns <= time.time_ns()
    assert report.frozen_for_ns >= 300_000_000
    assert report.duration_ns == report.frozen_for_ns
    assert report.skipped == [] and report.release_errors == []
    assert target.read_pong() >= before  # the ping sent while frozen is answered now
    assert_released(target)


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt, SystemExit])
def test_exception_inside_with_still_detaches(target: Target,
                                              exc: type[BaseException]) -> None:
    with pytest.raises(exc), frozen([target.pid], FreezeMethod.PTRACE):
        assert set(target.states().values()) == {"t"}
        raise exc()
    assert_released(target)


def test_sigint_during_freeze_is_raised_after_release(target: Target) -> None:
    """A Ctrl-C arriving while threads are being seized waits for the cleanup."""
    real_interrupt = freeze.ptrace.interrupt
    fired: list[int] = []

    def interrupt_then_ctrl_c(tid: int) -> None:
        if not fired:
            fired.append(tid)
            os.kill(os.getpid(), signal.SIGINT)  # blocked now: pending until cleanup ends
        real_interrupt(tid)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(freeze.ptrace, "interrupt", interrupt_then_ctrl_c)
        with pytest.raises(KeyboardInterrupt):  # noqa: SIM117 - the order matters
            with frozen([target.pid], FreezeMethod.PTRACE):
                pass
    assert fired
    assert_released(target)


def test_interrupt_in_the_middle_of_thaw_still_releases_everything(target: Target) -> None:
    """Ctrl-C taken by another thread of ours lands mid-thaw: every thread is
    still detached (the interrupted one retried), then the interrupt propagates."""
    real_detach = freeze.ptrace.detach
    calls: list[int] = []

    def detach_once_interrupted(tid: int, sig: int = 0) -> None:
        calls.append(tid)
        if len(calls) == 1:
            raise KeyboardInterrupt
        real_detach(tid, sig)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(freeze.ptrace, "detach", detach_once_interrupted)
        with pytest.raises(KeyboardInterrupt):  # noqa: SIM117 - the order matters
            with frozen([target.pid], FreezeMethod.PTRACE) as report:
                pass
    assert sorted(calls) == sorted([target.pid, *target.tids()])  # first one retried
    assert report.frozen_for_ns > 0
    assert_released(target)


def test_pid1_access_denied_and_nothing_left_seized(target: Target) -> None:
    try:
        with frozen([target.pid, 1], FreezeMethod.PTRACE):
            pass
    except AccessDenied as err:
        assert err.pid == 1
        assert "ptrace" in str(err)
    else:
        pytest.skip("this kernel lets us ptrace pid 1")
    assert tracer_pid(1, 1) == 0
    assert_released(target)


def test_vanished_process_is_skipped(target: Target) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()  # reaped: its pid no longer exists
    with frozen([gone.pid, target.pid], FreezeMethod.PTRACE) as report:
        assert report.tids == target.tids()
    assert report.skipped == [(gone.pid, "exited while freezing")]
    assert_released(target)


def test_process_dying_while_frozen_is_skipped(target: Target, target2: Target) -> None:
    """The target is killed between SEIZE and INTERRUPT: dropped, no exception."""
    real_interrupt = freeze.ptrace.interrupt

    def kill_first(tid: int) -> None:
        if tid == target.pid and target.proc.returncode is None:
            os.kill(target.pid, signal.SIGKILL)
            wait_for(lambda: thread_state(target.pid, target.pid) in "ZX")
        real_interrupt(tid)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(freeze.ptrace, "interrupt", kill_first)
        with frozen([target.pid, target2.pid], FreezeMethod.PTRACE) as report:
            assert report.tids == target2.tids()
    assert report.skipped == [(target.pid, "exited while freezing")]
    # We were its tracer and its parent: the wait that saw it die reaped it.
    status = report.exit_statuses[target.pid]
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert not os.path.exists(f"/proc/{target.pid}")
    assert_released(target2)


def test_grandchild_dying_while_frozen_is_handed_back_to_its_parent() -> None:
    """A traced zombie that is not our child must be released to its real
    parent, or that parent's wait() would hang forever."""
    parent = subprocess.Popen(["sh", "-c", "sleep 60 & echo $!; wait $!; echo reaped $?"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        grandchild = int(parent.stdout.readline())
        real_interrupt = freeze.ptrace.interrupt

        def kill_first(tid: int) -> None:
            os.kill(grandchild, signal.SIGKILL)
            wait_for(lambda: thread_state(grandchild, grandchild) in "ZX")
            real_interrupt(tid)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(freeze.ptrace, "interrupt", kill_first)
            with frozen([grandchild], FreezeMethod.PTRACE) as report:
                assert report.tids == []
        assert report.skipped == [(grandchild, "exited while freezing")]
        assert parent.stdout.readline() == f"reaped {128 + signal.SIGKILL}\n"
        assert parent.wait(timeout=5) == 0
    finally:
        parent.kill()
        parent.wait()


def test_threads_created_and_exiting_while_freezing(target: Target) -> None:
    """A process churning short-lived threads: new threads found by re-listing,
    exited ones dropped; once frozen, no thread is left running."""
    churn = subprocess.Popen([sys.executable, "-c",
                              "import threading\n"
                              "while True:\n"
                              "    ts = [threading.Thread(target=sum, args=((1,),))"
                              " for _ in range(4)]\n"
                              "    [t.start() for t in ts]; [t.join() for t in ts]\n"])
    try:
        time.sleep(0.2)
        for _ in range(5):
            with frozen([churn.pid, target.pid], FreezeMethod.PTRACE) as report:
                tids = sorted(int(t) for t in os.listdir(f"/proc/{churn.pid}/task"))
                assert {thread_state(churn.pid, t) for t in tids} == {"t"}
                assert set(tids) <= set(report.tids)
            assert report.skipped == [] and report.release_errors == []
            for tid in os.listdir(f"/proc/{churn.pid}/task"):
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # thread ended
                    assert tracer_pid(churn.pid, int(tid)) == 0
        assert churn.poll() is None
    finally:
        churn.kill()
        churn.wait()
    assert_released(target)


def test_zombie_is_skipped_and_left_for_its_parent(target: Target) -> None:
    zombie = subprocess.Popen(["sh", "-c", "exit 7"])
    try:
        wait_for(lambda: thread_state(zombie.pid, zombie.pid) == "Z")
        with frozen([zombie.pid, target.pid], FreezeMethod.PTRACE) as report:
            assert report.tids == target.tids()
        assert report.skipped == [(zombie.pid, "zombie: already dead, nothing to freeze")]
    finally:
        assert zombie.wait() == 7  # still ours to reap, status intact
    assert_released(target)


def test_signal_sent_while_frozen_is_delivered_after_detach(target: Target) -> None:
    with frozen([target.pid], FreezeMethod.PTRACE):
        os.kill(target.pid, signal.SIGUSR1)
        assert target.readline(timeout=0.3) is None  # the handler cannot run yet
        assert set(target.states().values()) == {"t"}
    target.wait_signal_report(signal.SIGUSR1)
    assert_released(target)


def test_signal_arriving_during_freeze_is_reinjected(target: Target) -> None:
    """A signal-delivery-stop seen while waiting for the interrupt stop is held,
    then delivered by PTRACE_DETACH: the target's handler still runs once."""
    real_interrupt = freeze.ptrace.interrupt
    sent: list[int] = []

    def signal_first(tid: int) -> None:
        if not sent:
            sent.append(tid)
            os.kill(target.pid, signal.SIGUSR1)  # seized, so some thread stops for it
            wait_for(lambda: "t" in target.states().values())
        real_interrupt(tid)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(freeze.ptrace, "interrupt", signal_first)
        with frozen([target.pid], FreezeMethod.PTRACE) as report:
            assert set(target.states().values()) == {"t"}
            assert list(report.held_signals.values()) == [signal.SIGUSR1]
            assert target.readline(timeout=0.2) is None
    target.wait_signal_report(signal.SIGUSR1)  # delivered, exactly once
    assert_released(target)


def test_stopped_process_stays_stopped(target: Target) -> None:
    os.kill(target.pid, signal.SIGSTOP)
    wait_for(lambda: set(target.states().values()) == {"T"})
    with frozen([target.pid], FreezeMethod.PTRACE) as report:
        assert report.tids == target.tids()
        assert set(target.states().values()) == {"t"}
    # Detached threads wake, see the group stop still in effect and stop again.
    wait_for(lambda: set(target.states().values()) == {"T"})
    assert target.tracers() == {0}
    os.kill(target.pid, signal.SIGCONT)
    assert_released(target)


def test_the_dumper_itself_is_skipped(target: Target) -> None:
    """A tree dumped from above contains us: we are skipped, not seized."""
    with frozen([os.getpid(), target.pid], "ptrace") as report:
        assert report.tids == target.tids()
    assert report.skipped == [(os.getpid(), "the dumping process itself cannot be frozen")]
    assert_released(target)


def test_cgroup_holding_the_dumper_is_refused(cgroup_dir: str, target: Target) -> None:
    _write(f"{cgroup_dir}/cgroup.procs", str(target.pid))
    _write(f"{cgroup_dir}/cgroup.procs", str(os.getpid()))
    try:
        with pytest.raises(UsageError, match="criu-model itself"), \
                frozen([target.pid], "cgroup"):
            pass
        assert _events(cgroup_dir)["frozen"] == "0"
    finally:
        _write(f"{cgroup2_mount()[0]}/cgroup.procs", str(os.getpid()))  # type: ignore[index]


def test_none_method_freezes_nothing(target: Target) -> None:
    with frozen([target.pid], "none") as report:
        first = target.ping()
        time.sleep(0.05)
        assert target.ping() > first
    assert report.method is FreezeMethod.NONE
    assert report.tids == []
    assert target.tracers() == {0}


# ------------------------------------------------------------------- cgroup


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _events(directory: str) -> dict[str, str]:
    with open(f"{directory}/cgroup.events") as f:
        return dict(line.split() for line in f if line.strip())


@pytest.fixture
def cgroup_dir() -> Iterator[str]:
    """A fresh child cgroup of the v2 mount; emptied and removed afterwards."""
    mount = cgroup2_mount()
    if mount is None or not os.access(mount[0], os.W_OK):
        pytest.skip("no writable cgroup2 mount")
    root = mount[0]
    directory = f"{root}/criu-model-test-{uuid.uuid4().hex[:8]}"
    os.mkdir(directory)
    try:
        yield directory
    finally:
        _write(f"{directory}/cgroup.freeze", "0")
        with open(f"{directory}/cgroup.procs") as f:
            for pid in f.read().split():
                with contextlib.suppress(ProcessLookupError):
                    _write(f"{root}/cgroup.procs", pid)
        wait_for(lambda: _events(directory)["populated"] == "0")
        os.rmdir(directory)


def test_cgroup_freeze_and_thaw(cgroup_dir: str, target: Target) -> None:
    _write(f"{cgroup_dir}/cgroup.procs", str(target.pid))
    before = target.ping()
    with frozen([target.pid], FreezeMethod.CGROUP) as report:
        assert _events(cgroup_dir)["frozen"] == "1"
        assert report.cgroup == cgroup_dir
        assert report.tids == target.tids()
        # Frozen tasks sleep in the freezer trap; nobody ptraces them.
        assert set(target.states().values()) <= {"S", "D"}
        assert target.tracers() == {0}
        target.send_ping()
        assert target.readline(timeout=0.3) is None
    assert not report.already_frozen
    assert report.frozen_for_ns >= 300_000_000
    assert _events(cgroup_dir)["frozen"] == "0"
    assert target.read_pong() >= before
    assert_released(target)


def test_cgroup_root_is_refused(target: Target) -> None:
    mount = cgroup2_mount()
    if mount is None:
        pytest.skip("no cgroup2 mount")
    if freeze.cgroup_of(target.pid) != "/":
        pytest.skip("the test runs outside the root cgroup")
    with pytest.raises(UsageError, match="root cgroup"), frozen([target.pid], "cgroup"):
        pass
    assert_released(target)


def test_cgroup_with_outsiders_is_refused(cgroup_dir: str, target: Target,
                                          target2: Target) -> None:
    for t in (target, target2):
        _write(f"{cgroup_dir}/cgroup.procs", str(t.pid))
    with pytest.raises(UsageError, match=f"outside the tree \\({target2.pid}\\)"), \
            frozen([target.pid], "cgroup"):
        pass
    assert _events(cgroup_dir)["frozen"] == "0"
    with frozen([target.pid, target2.pid], "cgroup") as report:
        assert sorted(report.tids) == sorted(target.tids() + target2.tids())


def test_cgroup_frozen_by_someone_else_stays_frozen(cgroup_dir: str, target: Target) -> None:
    """Refused by default (tests/test_freeze_guard.py); read as it is with frozen_ok."""
    _write(f"{cgroup_dir}/cgroup.procs", str(target.pid))
    _write(f"{cgroup_dir}/cgroup.freeze", "1")
    with frozen([target.pid], FreezeMethod.CGROUP, frozen_ok=True) as report:
        assert _events(cgroup_dir)["frozen"] == "1"
    assert report.already_frozen
    assert _events(cgroup_dir)["frozen"] == "1"  # not ours to thaw
    _write(f"{cgroup_dir}/cgroup.freeze", "0")
    assert_released(target)


def test_cgroup_mountinfo_parsing(tmp_path: object) -> None:
    path = f"{tmp_path}/mountinfo"
    with open(path, "w") as f:
        f.write("31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
                "40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n"
                "41 31 0:38 /sub /mnt/with\\040space rw,relatime - cgroup2 cgroup2 rw\n"
                "42 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw\n")
    assert cgroup2_mount(path) == ("/sys/fs/cgroup/unified", "/")
    with open(path, "w") as f:
        f.write("41 31 0:38 /sub /mnt/with\\040space rw,relatime - cgroup2 cgroup2 rw\n")
    assert cgroup2_mount(path) == ("/mnt/with space", "/sub")
    with open(path, "w") as f:
        f.write("31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n")
    assert cgroup2_mount(path) is None
