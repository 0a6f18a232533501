"""kcmp(2) on our own process and a real child."""

from __future__ import annotations

import errno
import os
import select
import subprocess
import sys
from collections.abc import Iterator

import pytest

from criu_model.kernel.kcmp import KcmpResult, KcmpType, kcmp, kcmp_epoll_tfd

ME = os.getpid()


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    try:
        yield r, w
    finally:
        os.close(r)
        os.close(w)


@pytest.fixture
def child(pipe: tuple[int, int]) -> Iterator[subprocess.Popen[bytes]]:
    """A child that inherited the pipe's read end (same fd number), waiting on stdin."""
    r, _w = pipe
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                            stdin=subprocess.PIPE,
                            pass_fds=(r,))
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_same_open_file_description(pipe: tuple[int, int]) -> None:
    r, w = pipe
    dup = os.dup(r)
    try:
        assert kcmp(ME, ME, KcmpType.FILE, r, dup) is KcmpResult.EQUAL
        assert kcmp(ME, ME, KcmpType.FILE, r, w) is not KcmpResult.EQUAL
    finally:
        os.close(dup)


def test_two_opens_of_one_file_are_different_descriptions() -> None:
    a = os.open("/proc/self/stat", os.O_RDONLY)
    b = os.open("/proc/self/stat", os.O_RDONLY)
    try:
        assert kcmp(ME, ME, KcmpType.FILE, a, b) in (KcmpResult.LESS, KcmpResult.GREATER)
    finally:
        os.close(a)
        os.close(b)


def test_ordering_is_antisymmetric(pipe: tuple[int, int]) -> None:
    r, w = pipe
    forward = kcmp(ME, ME, KcmpType.FILE, r, w)
    backward = kcmp(ME, ME, KcmpType.FILE, w, r)
    assert {forward, backward} == {KcmpResult.LESS, KcmpResult.GREATER}


def test_inherited_fd_is_shared_with_child(pipe: tuple[int, int],
                                           child: subprocess.Popen[bytes]) -> None:
    r, w = pipe
    assert kcmp(ME, child.pid, KcmpType.FILE, r, r) is KcmpResult.EQUAL
    assert kcmp(ME, child.pid, KcmpType.FILE, w, r) is not KcmpResult.EQUAL
    # fork without CLONE_VM/FILES/FS/SIGHAND: none of those are shared.
    for kind in (KcmpType.VM, KcmpType.FILES, KcmpType.FS, KcmpType.SIGHAND):
        assert kcmp(ME, child.pid, kind) is not KcmpResult.EQUAL, kind
        assert kcmp(child.pid, child.pid, kind) is KcmpResult.EQUAL, kind


def test_own_resources_equal_themselves() -> None:
    for kind in (KcmpType.VM, KcmpType.FILES, KcmpType.FS, KcmpType.SIGHAND, KcmpType.IO,
                 KcmpType.SYSVSEM):
        assert kcmp(ME, ME, kind) is KcmpResult.EQUAL, kind


def test_bad_fd_is_ebadf(pipe: tuple[int, int]) -> None:
    r, _w = pipe
    with pytest.raises(OSError) as info:
        kcmp(ME, ME, KcmpType.FILE, r, 1_000_000)
    assert info.value.errno == errno.EBADF


def test_missing_pid_is_esrch() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    with pytest.raises(ProcessLookupError):
        kcmp(ME, proc.pid, KcmpType.VM)


def test_epoll_target(pipe: tuple[int, int]) -> None:
    r, w = pipe
    ep = select.epoll()
    try:
        ep.register(r, select.EPOLLIN)
        dup = os.dup(r)
        try:
            # The watched file, seen through another fd of the same description.
            assert kcmp_epoll_tfd(ME, dup, ME, ep.fileno(), r) is KcmpResult.EQUAL
            assert kcmp_epoll_tfd(ME, w, ME, ep.fileno(), r) is not KcmpResult.EQUAL
        finally:
            os.close(dup)
        with pytest.raises(OSError) as info:  # w is not registered in the epoll
            kcmp_epoll_tfd(ME, r, ME, ep.fileno(), w)
        assert info.value.errno == errno.ENOENT
    finally:
        ep.close()


def test_epoll_type_needs_its_own_function() -> None:
    with pytest.raises(ValueError, match="kcmp_epoll_tfd"):
        kcmp(ME, ME, KcmpType.EPOLL_TFD, 0, 0)
