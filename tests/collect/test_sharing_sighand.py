"""task_shares: sighand ids found within mm groups (CLONE_SIGHAND needs CLONE_VM)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from criu_model.collect.sharing import SharingStats, assign_task_ids, task_shares
from criu_model.kernel.kcmp import KcmpType


@contextmanager
def _sleepers(n: int, zombie: bool = False) -> Iterator[list[int]]:
    procs = [subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL) for _ in range(n)]
    dead = None
    if zombie:
        dead = os.fork()
        if dead == 0:
            os._exit(0)
        os.waitid(os.P_PID, dead, os.WEXITED | os.WNOWAIT)  # a zombie: NULL mm, sighand kept
    try:
        yield [p.pid for p in procs] + ([dead] if dead else [])
    finally:
        for p in procs:
            p.send_signal(signal.SIGKILL)
            p.wait()
        if dead:
            os.waitpid(dead, 0)


def _calls(pids: list[int], kind: KcmpType) -> tuple[dict[int, int], int]:
    stats = SharingStats()
    ids = assign_task_ids(pids, kind, stats=stats)
    return ids, stats.kcmp_calls


def test_processes_alone_in_their_mm_need_no_sighand_kcmp() -> None:
    with _sleepers(12) as pids:
        stats = SharingStats()
        shares = task_shares(pids, stats=stats)
        full, _ = _calls(pids, KcmpType.SIGHAND)
        others = sum(_calls(pids, kind)[1]
                     for kind in (KcmpType.FILES, KcmpType.FS, KcmpType.VM))
    assert {pid: s["sighand"] for pid, s in shares.items()} == full  # same ids, same numbers
    assert len(set(full.values())) == len(pids)
    assert stats.kcmp_calls == others  # the sighand pass made no call


def test_with_an_exited_task_everybody_is_compared() -> None:
    with _sleepers(6, zombie=True) as pids:
        stats = SharingStats()
        shares = task_shares(pids, stats=stats)
        full, sighand_calls = _calls(pids, KcmpType.SIGHAND)
        others = sum(_calls(pids, kind)[1]
                     for kind in (KcmpType.FILES, KcmpType.FS, KcmpType.VM))
    assert shares[pids[-1]]["vm"] == 0  # the zombie has no mm
    assert {pid: s["sighand"] for pid, s in shares.items()} == full
    assert sighand_calls > 0 and stats.kcmp_calls == others + sighand_calls


def test_sentinel_forked_early_is_a_zombie_when_used_and_reaped_on_close() -> None:
    from criu_model.collect.sharing import NullSentinel

    with NullSentinel() as sentinel:
        pid = sentinel.zombie()
        with open(f"/proc/{pid}/stat", "rb") as f:
            assert f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
        assert sentinel.zombie() == pid  # waited for once
        with _sleepers(3) as pids:
            assert task_shares(pids, sentinel=sentinel) == task_shares(pids)
    assert not os.path.exists(f"/proc/{pid}")  # reaped
    with pytest.raises(ValueError, match="reaped"):
        sentinel.zombie()
