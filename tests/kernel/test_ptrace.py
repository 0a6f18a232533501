"""The raw ptrace wrappers against a real `sleep` child."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from criu_model.kernel import ptrace


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    return stat[stat.rfind(b")") + 2:][:1].decode()


def _tracer(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("TracerPid:")).split()[1])


def _wait_stop(pid: int, timeout: float = 5.0) -> ptrace.WaitStatus:
    deadline = time.monotonic() + timeout
    while True:
        status = ptrace.wait_tracee(pid, nohang=True)
        if status is not None:
            return status
        assert time.monotonic() < deadline, "tracee never stopped"
        time.sleep(0.001)


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_seize_interrupt_detach(child: subprocess.Popen[bytes]) -> None:
    ptrace.seize(child.pid)
    assert _tracer(child.pid) == os.getpid()
    assert _state(child.pid) != "t"  # SEIZE alone does not stop it
    ptrace.interrupt(child.pid)
    status = _wait_stop(child.pid)
    assert status.is_event_stop and not status.is_signal_stop and not status.exited
    assert status.event == ptrace.PtraceEvent.STOP
    assert _state(child.pid) == "t"
    ptrace.detach(child.pid)
    assert _tracer(child.pid) == 0
    deadline = time.monotonic() + 5
    while _state(child.pid) != "S":  # woken by the detach, back to its nanosleep
        assert time.monotonic() < deadline
        time.sleep(0.001)
    assert child.poll() is None


def test_detach_of_a_running_tracee_fails_with_esrch(child: subprocess.Popen[bytes]) -> None:
    """Why freeze.py interrupts and waits before detaching on error paths."""
    ptrace.seize(child.pid)
    with pytest.raises(ProcessLookupError):
        ptrace.detach(child.pid)
    ptrace.interrupt(child.pid)
    assert _wait_stop(child.pid).is_event_stop
    ptrace.detach(child.pid)
    assert _tracer(child.pid) == 0


def test_signal_delivery_stop_and_reinjection(child: subprocess.Popen[bytes]) -> None:
    ptrace.seize(child.pid)
    os.kill(child.pid, signal.SIGUSR1)
    status = _wait_stop(child.pid)
    assert status.is_signal_stop and status.stop_signal == signal.SIGUSR1
    assert child.poll() is None  # held in the stop, not yet delivered
    ptrace.detach(child.pid, signal.SIGUSR1)  # inject it: default action kills sleep
    assert child.wait(timeout=5) == -signal.SIGUSR1


def test_suppressed_signal_is_lost(child: subprocess.Popen[bytes]) -> None:
    """Detaching with 0 from a signal-delivery-stop discards the signal: the
    reason freeze.py records and re-injects it."""
    ptrace.seize(child.pid)
    os.kill(child.pid, signal.SIGUSR1)
    assert _wait_stop(child.pid).stop_signal == signal.SIGUSR1
    ptrace.detach(child.pid, 0)
    time.sleep(0.05)
    assert child.poll() is None


def test_wait_reports_death_of_tracee(child: subprocess.Popen[bytes]) -> None:
    ptrace.seize(child.pid)
    os.kill(child.pid, signal.SIGKILL)
    status = _wait_stop(child.pid)
    assert status.exited and not status.stopped
    assert os.WTERMSIG(status.raw) == signal.SIGKILL
    with pytest.raises(ChildProcessError):  # reaped: we were tracer and parent
        ptrace.wait_tracee(child.pid, nohang=True)


def test_wait_on_a_non_tracee_is_echild() -> None:
    with pytest.raises(ChildProcessError):
        ptrace.wait_tracee(1, nohang=True)


def test_seize_pid1_is_refused_here() -> None:
    try:
        ptrace.seize(1)
    except PermissionError:
        assert _tracer(1) == 0
        return
    # Another kernel let us: undo it before skipping.
    ptrace.interrupt(1)
    _wait_stop(1)
    ptrace.detach(1)
    pytest.skip("this kernel lets root ptrace pid 1")


def test_seize_of_a_missing_pid_is_esrch() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    with pytest.raises(ProcessLookupError):
        ptrace.seize(proc.pid)


def test_wait_status_decoding() -> None:
    event_stop = ptrace.WaitStatus((ptrace.PtraceEvent.STOP << 16) | (signal.SIGTRAP << 8) | 0x7F)
    assert event_stop.is_event_stop and event_stop.stop_signal == signal.SIGTRAP
    signal_stop = ptrace.WaitStatus((signal.SIGUSR1 << 8) | 0x7F)
    assert signal_stop.is_signal_stop and not signal_stop.is_event_stop
    killed = ptrace.WaitStatus(signal.SIGKILL)
    assert killed.exited and not killed.stopped
    exited = ptrace.WaitStatus(3 << 8)
    assert exited.exited and os.WEXITSTATUS(exited.raw) == 3
