"""parse_stat / parse_ppid on captured /proc/PID/stat lines, comm edge cases first."""

from __future__ import annotations

import os

import pytest

from criu_model.collect.stat import StatParseError, TaskFlag, parse_ppid, parse_stat

# Captured on this machine (Linux 6.18): a sleeping python, a zombie that
# exited with status 7 (exit_code 7 << 8), and a kernel worker thread.
PYTHON = (b"6444 (python3) S 6441 6441 2267 34816 6441 4194560 1234 0 0 0 12 3 0 0 20 0 1 0 "
          b"392150 28266496 5547 18446744073709551615 1 1 0 0 0 0 0 16781312 2 0 0 0 17 1 0 0 "
          b"0 0 0 0 0 0 0 0 0 0 0\n")
ZOMBIE = (b"6485 (python3) Z 6444 6441 2267 0 -1 4227148 222 0 0 0 0 0 0 0 20 0 1 0 392158 0 0 "
          b"18446744073709551615 0 0 0 0 0 0 0 16781312 2 1 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 "
          b"1792\n")
KWORKER = (b"10 (kworker/0:0H-events_highpri) I 2 0 0 0 -1 69238880 0 0 0 0 0 0 0 0 0 -20 1 0 "
           b"24 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 1 0 0 17 0 0 0 0 0 0 0 0 0 "
           b"0 0 0 0 0\n")


def with_comm(comm: bytes) -> bytes:
    return PYTHON.replace(b"(python3)", b"(" + comm + b")")


def test_plain_line() -> None:
    st = parse_stat(PYTHON)
    assert (st.pid, st.comm, st.state) == (6444, b"python3", "S")
    assert (st.ppid, st.pgid, st.sid, st.tty_nr) == (6441, 6441, 2267, 34816)
    assert st.flags == 4194560 and not st.is_kthread
    assert (st.utime, st.stime, st.nice, st.num_threads) == (12, 3, 0, 1)
    assert (st.start_time, st.vsize, st.rss_pages) == (392150, 28266496, 5547)
    assert (st.exit_signal, st.rt_priority, st.policy, st.exit_code) == (17, 0, 0, 0)


def test_zombie_keeps_wait_status_in_exit_code() -> None:
    st = parse_stat(ZOMBIE)
    assert st.state == "Z"
    assert st.exit_code == 7 << 8
    assert st.vsize == 0 and st.rss_pages == 0


def test_kernel_thread() -> None:
    st = parse_stat(KWORKER)
    assert st.comm == b"kworker/0:0H-events_highpri"  # workqueue names exceed 16 bytes
    assert st.state == "I"
    assert st.is_kthread and st.flags & TaskFlag.WQ_WORKER
    assert (st.ppid, st.nice) == (2, -20)


@pytest.mark.parametrize("comm", [
    b"a b",
    b")",
    b") S 1 1 1",          # looks like the fields that follow
    b"(x) (y)",
    b"new\nline)",
    b"",
    b"  ",
    b"\xff\xfe)(",
])
def test_comm_may_contain_anything(comm: bytes) -> None:
    st = parse_stat(with_comm(comm))
    assert st.comm == comm
    assert (st.pid, st.state, st.ppid, st.pgid, st.sid) == (6444, "S", 6441, 6441, 2267)
    assert st.exit_code == 0
    assert parse_ppid(with_comm(comm)) == 6441


def test_old_kernel_without_exit_code() -> None:
    # Linux < 3.5 stops at field 44 (cguest_time).
    fields = PYTHON.split(b" ")
    old = b" ".join(fields[:44]) + b"\n"
    st = parse_stat(old)
    assert st.exit_code is None
    assert st.policy == 0 and st.ppid == 6441


@pytest.mark.parametrize("bad", [b"", b"123", b"12 (x", b"12 (x) S", b"x (y) S 1 2 3"])
def test_malformed(bad: bytes) -> None:
    with pytest.raises(StatParseError):
        parse_stat(bad)


def test_parse_ppid_malformed() -> None:
    with pytest.raises(StatParseError):
        parse_ppid(b"12 (x)")


def test_own_stat_matches_os() -> None:
    with open(f"/proc/{os.getpid()}/stat", "rb") as f:
        st = parse_stat(f.read())
    assert st.pid == os.getpid()
    assert st.ppid == os.getppid()
    assert st.pgid == os.getpgid(0)
    assert st.sid == os.getsid(0)
    assert st.state == "R"
    assert st.nice == os.getpriority(os.PRIO_PROCESS, 0)
