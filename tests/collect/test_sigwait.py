"""glibc's SIGEV_THREAD timer helper (ZDTM pthread_timers): masks as the live thread shows them.

The helper thread sleeps in sigwaitinfo(SIGTIMER=32) with every other signal
blocked; freezing it makes the call return and restores 32 to its blocked
mask, and a timer tick during the freeze is left pending. The dump must record
what the thread shows when it is not frozen (issue 14 item 6).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import criu_model
from criu_model.collect.process import collect_process
from criu_model.collect.status import awaited_signals, parse_syscall
from criu_model.freeze import FreezeMethod, cgroup2_mount, frozen

SIGTIMER_BIT = 1 << (32 - 1)

HELPER = r"""
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
static void tick(union sigval v) { (void)v; }
int main(void) {
    timer_t t;
    struct sigevent ev = {0};
    ev.sigev_notify = SIGEV_THREAD;
    ev.sigev_notify_function = tick;
    if (timer_create(CLOCK_MONOTONIC, &ev, &t)) return 1;
    struct itimerspec its = {{0, 20000000}, {0, 20000000}};  /* every 20 ms */
    if (timer_settime(t, 0, &its, NULL)) return 1;
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
}
"""


def test_parse_syscall_forms() -> None:
    assert parse_syscall(b"running\n") is None
    assert parse_syscall(b"-1 0x7ffd 0x4010\n") is None
    call = parse_syscall(b"128 0x7f00 0x7f10 0x0 0x8 0x0 0x1 0x7ffe 0x7f20\n")
    assert call == (128, [0x7F00, 0x7F10, 0, 8, 0, 1])
    mem = {0x7F00: (SIGTIMER_BIT | 1 << 8).to_bytes(8, "little")}
    # SIGKILL (bit 8) can never be blocked: it is not part of the correction
    assert awaited_signals(call, lambda a, n: mem.get(a), "x86_64") == SIGTIMER_BIT
    assert awaited_signals(call, lambda a, n: None, "x86_64") == 0
    assert awaited_signals((7, [0x7F00, 0, 0, 8, 0, 0]), lambda a, n: mem[a], "x86_64") == 0


pytestmark_root = pytest.mark.skipif(os.geteuid() != 0, reason="freezing needs root")


@pytest.fixture(scope="module")
def helper_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    src = tmp_path_factory.mktemp("timers") / "timers.c"
    src.write_text(HELPER)
    out = src.with_suffix("")
    subprocess.run(["gcc", "-O1", "-o", str(out), str(src), "-lrt"], check=True)
    return out


@pytest.fixture
def timers(helper_binary: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([str(helper_binary)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        time.sleep(0.05)
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _masks(pid: int, tid: int) -> tuple[int, int, int]:
    with open(f"/proc/{pid}/task/{tid}/status", "rb") as f:
        fields = dict(line.split(b":", 1) for line in f if b":" in line)
    return tuple(int(fields[k].strip(), 16) for k in (b"SigBlk", b"SigPnd", b"ShdPnd"))


def _waiting(pid: int, tid: int) -> bool:
    """The thread sleeps in rt_sigtimedwait (x86_64 128, aarch64 137)."""
    try:
        with open(f"/proc/{pid}/task/{tid}/syscall", "rb") as f:
            return f.read().split(b" ", 1)[0] in (b"128", b"137")
    except OSError:
        return False


def _helper_tid(pid: int) -> int:
    """glibc's helper; each tick also starts a short-lived thread for the callback."""
    for _ in range(100):
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task") if _waiting(pid, int(t))]
        if len(tids) == 1:
            return tids[0]
        time.sleep(0.001)
    raise AssertionError("no thread waits in sigwaitinfo")


def _live_samples(pid: int, tid: int, count: int = 20) -> set[tuple[int, int, int]]:
    """Masks sampled while the helper waits (between ticks it runs the loop)."""
    out = set()
    while count:
        # waiting before and after the read, and no tick in delivery (queued, not yet
        # taken by the waiter: a moment where SigPnd/ShdPnd show it): under load either
        # made a sample of something else than the waiting state, and the test flaky
        if _waiting(pid, tid):
            masks = _masks(pid, tid)
            if _waiting(pid, tid) and not (masks[1] | masks[2]) & SIGTIMER_BIT:
                out.add(masks)
                count -= 1
        time.sleep(0.002)
    return out


@pytestmark_root
def test_timer_helper_masks_equal_live_samples(timers: subprocess.Popen[str]) -> None:
    pid = timers.pid
    tid = _helper_tid(pid)
    samples = _live_samples(pid, tid)
    assert len(samples) == 1, samples
    blocked, pending, shared = samples.pop()
    assert not blocked & SIGTIMER_BIT and not pending  # what the live helper shows
    with frozen([pid], FreezeMethod.PTRACE):
        time.sleep(0.05)  # two ticks while frozen
        raw_blocked, raw_pending, _ = _masks(pid, tid)
        # what the freeze leaks: 32 blocked again, and a tick pending
        assert raw_blocked & SIGTIMER_BIT and raw_pending & SIGTIMER_BIT
        proc = collect_process(pid)
        thread = next(t for t in proc.threads if t.tid == tid)
        assert (thread.sig_blocked, thread.sig_pending, proc.sig_shared_pending) == \
            (blocked, pending, shared)
    for _ in range(3):
        snap = criu_model.dump([pid], freeze="ptrace")
        proc = snap.by_pid[pid]
        thread = next(t for t in proc.threads if t.tid == tid)
        assert (thread.sig_blocked, thread.sig_pending, proc.sig_shared_pending) == \
            (blocked, pending, shared)
    assert _live_samples(pid, tid) == {(blocked, pending, shared)}


@pytestmark_root
def test_timer_helper_masks_under_the_cgroup_freezer(timers: subprocess.Popen[str]) -> None:
    mount = cgroup2_mount()
    if mount is None or not os.access(mount[0], os.W_OK):
        pytest.skip("no writable cgroup2 mount")
    pid = timers.pid
    tid = _helper_tid(pid)
    (live,) = _live_samples(pid, tid)
    directory = f"{mount[0]}/criu-model-sigwait-{uuid.uuid4().hex[:8]}"
    os.mkdir(directory)
    try:
        Path(directory, "cgroup.procs").write_text(str(pid))
        snap = criu_model.dump([pid], freeze="cgroup")
        proc = snap.by_pid[pid]
        thread = next(t for t in proc.threads if t.tid == tid)
        assert (thread.sig_blocked, thread.sig_pending, proc.sig_shared_pending) == live
    finally:
        timers.kill()
        timers.wait()
        for _ in range(500):
            if "populated 0" in Path(directory, "cgroup.events").read_text():
                break
            time.sleep(0.01)
        os.rmdir(directory)
