"""Sharing identity on real processes: file ids, task ids, epoll targets, kcmp call counts."""

from __future__ import annotations

import contextlib
import math
import os
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from criu_model.collect.sharing import (
    NO_OBJECT,
    EpollTarget,
    FdKey,
    FileIdIndex,
    SharingStats,
    assign_file_ids,
    assign_task_ids,
    match_epoll_targets,
    null_sentinel,
    task_shares,
)
from criu_model.kernel.kcmp import KcmpResult, KcmpType, kcmp
from tests.proctree import Tree

ME = os.getpid()
SLEEPER = [sys.executable, "-c", "import signal\nwhile True: signal.pause()"]


# ----------------------------------------------------------------- helpers


def fd_key(pid: int, fd: int) -> FdKey:
    """The prefilter key read straight from /proc, independent of the fd collector."""
    st = os.stat(f"/proc/{pid}/fd/{fd}")
    info: dict[str, str] = {}
    with open(f"/proc/{pid}/fdinfo/{fd}") as f:
        for line in f:
            name, _, value = line.partition(":")
            info.setdefault(name, value.strip())
    return FdKey(pid, fd, st.st_dev, st.st_ino, int(info["pos"]), int(info["flags"], 8),
                 int(info["mnt_id"]))


def keys(*pairs: tuple[int, int]) -> list[FdKey]:
    return [fd_key(pid, fd) for pid, fd in pairs]


@contextlib.contextmanager
def sleepers(count: int, pass_fds: Sequence[int] = ()) -> Iterator[list[int]]:
    """`count` sleeping python children that inherited `pass_fds` (same numbers)."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(count):
            procs.append(subprocess.Popen(SLEEPER, pass_fds=tuple(pass_fds),
                                          stdin=subprocess.DEVNULL))
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()


@contextlib.contextmanager
def opened(path: Path, count: int = 1, flags: int = os.O_RDONLY) -> Iterator[list[int]]:
    fds = [os.open(path, flags) for _ in range(count)]
    try:
        yield fds
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "data file"
    path.write_bytes(b"0123456789" * 100)
    return path


# ----------------------------------------------------------------- file ids


def test_fd_inherited_across_fork_has_one_id(data_file: Path) -> None:
    with opened(data_file) as (fd,):
        os.lseek(fd, 7, os.SEEK_SET)
        with sleepers(1, pass_fds=[fd]) as (child,):
            parent_key, child_key = keys((ME, fd), (child, fd))
            # our fd is O_CLOEXEC, the child's copy is not: the prefilter must ignore that bit
            assert parent_key.flags & os.O_CLOEXEC and not child_key.flags & os.O_CLOEXEC
            assert parent_key.group == child_key.group
            ids, stats = assign_file_ids([parent_key, child_key])
    assert ids == {(ME, fd): 1, (child, fd): 1}
    assert stats.kcmp_calls == 1 and stats.ids == 1 and stats.groups == 1


def test_same_path_opened_twice_gets_two_ids(data_file: Path) -> None:
    with opened(data_file, 2) as (a, b):
        ka, kb = keys((ME, a), (ME, b))
        assert ka.group == kb.group  # the prefilter cannot tell them apart: kcmp must
        ids, stats = assign_file_ids([ka, kb])
    assert ids[(ME, a)] != ids[(ME, b)]
    assert stats.kcmp_calls == 1 and stats.ids == 2


def test_dup_and_dup_to_other_number_after_lseek_share_the_id(data_file: Path) -> None:
    with opened(data_file, 2) as (fd, other):
        dup = os.dup(fd)
        os.lseek(fd, 33, os.SEEK_SET)  # moves the position of every fd of the description
        high = os.dup2(fd, 200)
        try:
            os.lseek(other, 33, os.SEEK_SET)  # same file, same pos, another description
            found = keys((ME, fd), (ME, dup), (ME, high), (ME, other))
            assert {k.pos for k in found} == {33}
            ids, _ = assign_file_ids(found)
        finally:
            os.close(dup)
            os.close(high)
    assert ids[(ME, fd)] == ids[(ME, dup)] == ids[(ME, high)]
    assert ids[(ME, other)] != ids[(ME, fd)]


def test_pipe_ends_differ_and_read_end_is_shared_with_child() -> None:
    r, w = os.pipe()
    try:
        with sleepers(1, pass_fds=[r]) as (child,):
            found = keys((ME, r), (ME, w), (child, r))
            assert found[0].ino == found[1].ino  # one pipe inode for both ends
            ids, _ = assign_file_ids(found)
    finally:
        os.close(r)
        os.close(w)
    assert ids[(ME, r)] != ids[(ME, w)]
    assert ids[(child, r)] == ids[(ME, r)]


def test_ids_are_numbered_in_first_seen_order(data_file: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.write_bytes(b"x")
    with opened(data_file, 2) as (a, b), opened(other) as (c,):
        dup = os.dup(a)
        try:
            found = keys((ME, c), (ME, b), (ME, a), (ME, dup))
            ids, stats = assign_file_ids(found)
            again, _ = assign_file_ids(found)
        finally:
            os.close(dup)
    assert [ids[(k.pid, k.fd)] for k in found] == [1, 2, 3, 3]
    assert again == ids
    assert stats.singleton_groups == 1


def test_singleton_groups_need_no_kcmp(tmp_path: Path) -> None:
    paths = [tmp_path / f"f{i}" for i in range(5)]
    for path in paths:
        path.write_bytes(b"x")
    fds = [os.open(path, os.O_RDONLY) for path in paths]
    try:
        ids, stats = assign_file_ids(keys(*((ME, fd) for fd in fds)))
    finally:
        for fd in fds:
            os.close(fd)
    assert sorted(ids.values()) == [1, 2, 3, 4, 5]
    assert stats.kcmp_calls == 0 and stats.singleton_groups == 5


def test_fd_closed_meanwhile_gets_its_own_id_and_is_reported(data_file: Path) -> None:
    with opened(data_file, 3) as (a, b, c):
        dup = os.dup(a)
        found = keys((ME, a), (ME, b), (ME, dup), (ME, c))
        os.close(b)  # both closed between listing and the sharing pass
        os.close(dup)
        ids, stats = assign_file_ids(found)
    assert sorted(stats.closed) == sorted([(ME, b), (ME, dup)])
    assert set(ids) == {(k.pid, k.fd) for k in found}  # every fd still has an id...
    assert len(set(ids.values())) == 4  # ...and the closed ones have ids of their own
    assert stats.gone_pids == set()


def test_closed_first_fd_of_a_group_is_found_when_compared(data_file: Path) -> None:
    with opened(data_file, 2) as (a, b):
        found = keys((ME, a), (ME, b))
        os.close(a)  # a becomes the group's representative without a kcmp call
        ids, stats = assign_file_ids(found)
    assert stats.closed == [(ME, a)]
    assert ids[(ME, a)] != ids[(ME, b)]


def test_closed_representative_is_replaced_by_its_twin(data_file: Path) -> None:
    with opened(data_file, 2) as (a, b):
        dup = os.dup(a)
        found = keys((ME, a), (ME, dup), (ME, b))
        index = FileIdIndex.build(found[:2])  # a represents the description, dup is a spare
        shared = index.ids[(ME, dup)]
        os.close(a)
        index.add(found[2])  # comparing with the closed rep fails: the twin takes over
        index.add(fd_key(ME, dup))  # still found by way of the twin
        os.close(dup)
    assert index.stats.closed == [(ME, a)]
    assert index.ids[(ME, dup)] == shared
    assert index.ids[(ME, b)] not in (shared, index.ids[(ME, a)])


@pytest.mark.parametrize("reap", [True, False], ids=["reaped", "zombie"])
def test_process_gone_mid_pass_is_left_out_and_reported(data_file: Path, reap: bool) -> None:
    with opened(data_file, 2) as (a, b):
        victim = subprocess.Popen(SLEEPER, pass_fds=(a, b))
        try:
            with sleepers(1, pass_fds=[a]) as (survivor,):
                found = keys((victim.pid, a), (victim.pid, b), (ME, a), (ME, b),
                             (survivor, a))
                victim.kill()
                if reap:
                    victim.wait()
                else:  # exited but not reaped: kcmp still finds it, its fd table is gone
                    os.waitid(os.P_PID, victim.pid, os.WEXITED | os.WNOWAIT)
                ids, stats = assign_file_ids(found)
        finally:
            victim.kill()
            victim.wait()
    assert stats.gone_pids == {victim.pid}
    assert set(ids) == {(ME, a), (ME, b), (survivor, a)}
    assert ids[(ME, a)] == ids[(survivor, a)] != ids[(ME, b)]


def _max_bisect_calls(slots: int, n: int) -> int:
    """Upper bound of the calls to place n items among at most `slots` representatives."""
    return n * max(1, math.ceil(math.log2(slots + 1)))


def test_many_inherited_fds_take_n_log_n_kcmp_calls(data_file: Path) -> None:
    descriptions, children = 20, 8
    with opened(data_file, descriptions) as fds, sleepers(children, pass_fds=fds) as kids:
        found = [fd_key(pid, fd) for pid in [ME, *kids] for fd in fds]
        ids, stats = assign_file_ids(found)
    n = len(found)
    assert stats.groups == 1  # one file, pos 0, same flags: one candidate group
    assert len(set(ids.values())) == descriptions
    for kid in kids:
        assert [ids[(kid, fd)] for fd in fds] == [ids[(ME, fd)] for fd in fds]
    assert stats.kcmp_calls <= n * math.log2(n)
    assert stats.kcmp_calls <= _max_bisect_calls(descriptions, n)
    assert stats.kcmp_calls < n * (n - 1) // 2 // 10  # nowhere near all pairs


def test_many_distinct_descriptions_in_one_group_stay_n_log_n(data_file: Path) -> None:
    with opened(data_file, 64) as fds:
        ids, stats = assign_file_ids(keys(*((ME, fd) for fd in fds)))
    assert len(set(ids.values())) == 64
    assert stats.kcmp_calls <= _max_bisect_calls(64, 64)  # 64 * 7, vs 2016 pairs


# ----------------------------------------------------------------- epoll targets


def _kdev_to_dev(kdev: int) -> int:
    """fdinfo prints the kernel's dev_t (major << 20 | minor)."""
    return os.makedev(kdev >> 20, kdev & 0xFFFFF)


def epoll_targets(pid: int, epfd: int) -> list[EpollTarget]:
    """The tfd lines of an epoll fd's fdinfo, in kernel order, without toff."""
    out = []
    with open(f"/proc/{pid}/fdinfo/{epfd}") as f:
        for line in f:
            if not line.startswith("tfd:"):
                continue
            words = line.replace(":", " ").split()
            fields = {words[i]: words[i + 1] for i in range(0, len(words) - 1, 2)}
            out.append(EpollTarget(int(fields["tfd"]), _kdev_to_dev(int(fields["sdev"], 16)),
                                   int(fields["ino"], 16), int(fields["pos"])))
    return out


def test_epoll_targets_match_files_even_after_fd_numbers_are_reused() -> None:
    ep = select.epoll()
    r, w = os.pipe()
    r2, w2 = os.pipe()
    keep_r = os.dup(r)  # the registered file lives on under another number
    try:
        ep.register(r, select.EPOLLIN)
        os.close(r)
        os.dup2(r2, r)  # number r now names another pipe...
        ep.register(r, select.EPOLLIN)  # ...registered too: two targets with tfd == r
        ep.register(w, select.EPOLLOUT)  # plain case: still under its own number
        targets = epoll_targets(ME, ep.fileno())
        assert sorted(t.tfd for t in targets) == sorted([r, r, w])
        index = FileIdIndex.build(keys((ME, keep_r), (ME, r), (ME, w), (ME, r2)))
        got = match_epoll_targets(ME, ep.fileno(), targets, index)
        first_pipe = os.fstat(w).st_ino
        expected = []
        for target in targets:
            if target.tfd == w:
                expected.append(index.ids[(ME, w)])
            elif target.ino == first_pipe:  # registered as r, now only open as keep_r
                expected.append(index.ids[(ME, keep_r)])
            else:  # registered as r after the number was reused for the second pipe
                assert target.ino == os.fstat(r2).st_ino
                expected.append(index.ids[(ME, r)])
        assert got == expected
        assert index.ids[(ME, r)] == index.ids[(ME, r2)]
        assert len({index.ids[(ME, keep_r)], index.ids[(ME, w)], index.ids[(ME, r)]}) == 3
    finally:
        ep.close()
        for fd in (r, w, r2, w2, keep_r):
            with contextlib.suppress(OSError):
                os.close(fd)


def test_epoll_targets_are_found_by_bisection_among_many_descriptions() -> None:
    """eventfds share one anonymous inode: 16 descriptions in one candidate group."""
    events = [os.eventfd(0) for _ in range(16)]
    ep = select.epoll()
    moved: dict[int, int] = {}
    try:
        assert len({fd_key(ME, fd).group for fd in events}) == 1
        for fd in events[1::3]:
            ep.register(fd, select.EPOLLIN)
            moved[fd] = os.dup(fd)  # registered number closed below: no fast path
        for fd in moved:
            os.close(fd)
        alive = [fd for fd in events if fd not in moved] + list(moved.values())
        index = FileIdIndex.build(keys(*((ME, fd) for fd in alive)))
        targets = epoll_targets(ME, ep.fileno())
        got = match_epoll_targets(ME, ep.fileno(), targets, index)
        assert got == [index.ids[(ME, moved[t.tfd])] for t in targets]
        assert index.stats.kcmp_calls <= _max_bisect_calls(16, len(alive) + 2 * len(targets))
    finally:
        ep.close()
        for fd in [*events, *moved.values()]:
            with contextlib.suppress(OSError):
                os.close(fd)


def test_epoll_target_held_outside_the_index_is_none(data_file: Path) -> None:
    ep = select.epoll()
    r, w = os.pipe()
    try:
        ep.register(r, select.EPOLLIN)
        index = FileIdIndex.build(keys((ME, w)))  # the read end is not among the candidates
        targets = epoll_targets(ME, ep.fileno())
        assert match_epoll_targets(ME, ep.fileno(), targets, index) == [None]
    finally:
        ep.close()
        os.close(r)
        os.close(w)


def test_epoll_in_another_process_matches_a_shared_fd() -> None:
    """The epoll fd and the target file live in a child; our own fd is the candidate."""
    r, w = os.pipe()
    script = ("import os, select, signal, sys\n"
              "ep = select.epoll()\n"
              f"ep.register({r}, select.EPOLLIN)\n"
              f"os.close({r})\n"  # the child keeps no fd for it: only our copy remains
              "os.write(1, b'%d\\n' % ep.fileno())\n"
              "while True: signal.pause()\n")
    child = subprocess.Popen([sys.executable, "-c", script], pass_fds=(r,),
                             stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        epfd = int(child.stdout.readline())
        index = FileIdIndex.build(keys((ME, r), (ME, w)))
        targets = epoll_targets(child.pid, epfd)
        got = match_epoll_targets(child.pid, epfd, targets, index)
        assert got == [index.ids[(ME, r)]]
        child.kill()
        child.wait()  # the epoll side is gone: no match, reported, our fds untouched
        assert match_epoll_targets(child.pid, epfd, targets, index) == [None]
        assert index.stats.gone_pids == {child.pid}
        assert set(index.ids) == {(ME, r), (ME, w)}
    finally:
        child.kill()
        child.wait()
        os.close(r)
        os.close(w)


# ----------------------------------------------------------------- task ids


@pytest.fixture(scope="module")
def clone_helper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny C program: clone(flags | SIGCHLD) a child, print both pids, sleep."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not found: needed to build the clone() helper")
    out = tmp_path_factory.mktemp("clone") / "clone_helper"
    src = out.with_suffix(".c")
    src.write_text(CLONE_HELPER_C)
    subprocess.run([gcc, "-O1", "-Wall", "-Werror", "-o", str(out), str(src)], check=True)
    return out


CLONE_HELPER_C = r"""
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

static int child(void *arg) { (void)arg; for (;;) pause(); return 0; }

int main(int argc, char **argv) {
    int flags = SIGCHLD;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "files")) flags |= CLONE_FILES;
        else if (!strcmp(argv[i], "fs")) flags |= CLONE_FS;
        else if (!strcmp(argv[i], "vm")) flags |= CLONE_VM;
        else if (!strcmp(argv[i], "sighand")) flags |= CLONE_SIGHAND;
        else if (!strcmp(argv[i], "io")) flags |= CLONE_IO;
        else if (!strcmp(argv[i], "sysvsem")) flags |= CLONE_SYSVSEM;
        else if (!strcmp(argv[i], "ioprio")) {
            /* ioprio_set(IOPRIO_WHO_PROCESS, self, BE/4) gives us an io_context */
            if (syscall(SYS_ioprio_set, 1, 0, (2 << 13) | 4) != 0) {
                perror("ioprio_set");
                return 2;
            }
        } else { fprintf(stderr, "unknown flag %s\n", argv[i]); return 2; }
    }
    size_t size = 256 * 1024;
    char *stack = malloc(size);
    if (stack == NULL) return 2;
    int pid = clone(child, stack + size, flags, NULL);
    if (pid < 0) { perror("clone"); return 2; }
    printf("%d %d\n", getpid(), pid);
    fflush(stdout);
    for (;;) pause();
}
"""


@pytest.fixture
def cloned(clone_helper: Path) -> Iterator[Callable[..., tuple[int, int]]]:
    """Start helpers on demand; returns (parent, child) pids; kills all afterwards."""
    started: list[tuple[subprocess.Popen[bytes], int]] = []

    def start(*flags: str) -> tuple[int, int]:
        proc = subprocess.Popen([str(clone_helper), *flags], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            proc.wait()
            raise RuntimeError(f"clone helper {flags} failed: exit {proc.returncode}")
        parent, child = map(int, line.split())
        started.append((proc, os.pidfd_open(child)))
        return parent, child

    try:
        yield start
    finally:
        for proc, pidfd in started:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            os.close(pidfd)
            proc.kill()
            proc.wait()


def test_clone_files_child_shares_only_the_fd_table(cloned: Callable[..., tuple[int, int]]
                                                    ) -> None:
    parent, child = cloned("files")
    shares = task_shares([parent, child])
    assert shares[parent]["files"] == shares[child]["files"] != NO_OBJECT
    for kind in ("fs", "sighand", "vm"):
        assert shares[parent][kind] != shares[child][kind], kind


def test_clone_vm_fs_sighand_files_child_shares_everything(
        cloned: Callable[..., tuple[int, int]]) -> None:
    parent, child = cloned("vm", "fs", "sighand", "files")
    other, _ = cloned()
    shares = task_shares([parent, child, other])
    assert shares[parent] == shares[child]
    assert all(ident != NO_OBJECT for ident in shares[child].values())
    for kind, ident in shares[other].items():
        assert ident != shares[parent][kind], kind


def test_threads_share_files_fs_sighand_vm(threads_proc: Tree) -> None:
    main = threads_proc["main"].pid
    tids = [int(tid) for tid in threads_proc["main"].info["threads"]]
    shares = task_shares([main, *tids])
    assert len({tuple(sorted(s.items())) for s in shares.values()}) == 1
    assert set(shares[main].values()) == {1}


def test_unrelated_processes_share_nothing() -> None:
    with sleepers(2) as (a, b):
        shares = task_shares([a, b, ME])
    for kind in ("files", "fs", "sighand", "vm"):
        ids = [shares[pid][kind] for pid in (a, b, ME)]
        assert len(set(ids)) == 3 and NO_OBJECT not in ids, kind


def test_io_and_sysvsem_null_pointers_are_not_sharing() -> None:
    with sleepers(2) as (a, b):
        for kind in (KcmpType.IO, KcmpType.SYSVSEM):
            # the trap: the raw syscall calls two NULL pointers "equal"
            assert kcmp(a, b, kind) is KcmpResult.EQUAL, kind
            assert assign_task_ids([a, b], kind) == {a: NO_OBJECT, b: NO_OBJECT}, kind


def test_real_io_contexts_and_undo_lists_are_told_apart(
        cloned: Callable[..., tuple[int, int]]) -> None:
    io_parent, io_child = cloned("ioprio", "io")  # CLONE_IO: one io_context for both
    own_parent, own_child = cloned("ioprio")  # each gets its own io_context
    sem_parent, sem_child = cloned("sysvsem")  # CLONE_SYSVSEM allocates and shares an undo list
    pids = [io_parent, io_child, own_parent, own_child, sem_parent, sem_child]
    io = assign_task_ids(pids, KcmpType.IO)
    assert io[io_parent] == io[io_child] != NO_OBJECT
    assert len({io[io_parent], io[own_parent], io[own_child]}) == 3
    assert NO_OBJECT not in (io[own_parent], io[own_child])
    assert io[sem_parent] == io[sem_child] == NO_OBJECT
    sem = assign_task_ids(pids, KcmpType.SYSVSEM)
    assert sem[sem_parent] == sem[sem_child] != NO_OBJECT
    assert {sem[pid] for pid in pids[:4]} == {NO_OBJECT}


def test_zombie_has_no_mm_files_fs() -> None:
    with null_sentinel() as zombie, sleepers(1) as (alive,):
        shares = task_shares([zombie, alive])
    assert shares[zombie]["vm"] == shares[zombie]["files"] == shares[zombie]["fs"] == NO_OBJECT
    assert shares[zombie]["sighand"] != NO_OBJECT  # kept until reaped
    assert NO_OBJECT not in shares[alive].values()


def test_gone_pid_is_left_out_and_reported() -> None:
    with sleepers(1) as (alive,):
        dead = subprocess.Popen(["true"])
        dead.wait()  # reaped: the pid names nobody (until reused, far in the future)
        stats = SharingStats()
        shares = task_shares([alive, dead.pid, ME], stats=stats)
    assert stats.gone_pids == {dead.pid}
    assert set(shares) == {alive, ME}


def test_task_ids_take_n_log_n_calls() -> None:
    with sleepers(12) as kids:
        stats = SharingStats()
        ids = assign_task_ids([ME, *kids], KcmpType.FILES, stats=stats)
    n = len(kids) + 1
    assert len(set(ids.values())) == n
    # one extra slot: the NULL sentinel
    assert stats.kcmp_calls <= _max_bisect_calls(n + 1, n)
    assert stats.kcmp_calls < n * (n - 1) // 2


def test_file_kind_is_rejected_for_tasks() -> None:
    with pytest.raises(ValueError):
        assign_task_ids([ME], KcmpType.FILE)
