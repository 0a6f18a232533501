"""`check()`: every probe answers, and what we know of this machine holds.

Machine-specific facts are asserted against an *independent* probe written
here, so on another kernel the test follows that kernel instead of failing.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct
import subprocess

import pytest

from criu_model import features
from criu_model.features import FEATURE_NAMES, Feature, check
from criu_model.kernel import clone3
from criu_model.kernel.libc import libc, syscall_number
from criu_model.kernel.pidfd import pidfd_open


@pytest.fixture(scope="module")
def table() -> dict[str, Feature]:
    return {f.name: f for f in check()}


def test_every_feature_is_reported(table: dict[str, Feature]) -> None:
    assert [f.name for f in check()] == list(FEATURE_NAMES)
    for feature in table.values():
        assert isinstance(feature.available, bool)
        assert feature.detail.strip(), feature.name
        assert "\n" not in feature.detail


def test_probes_run_once_per_run() -> None:
    first = check()
    assert check() == first
    assert features.probe_ptrace_seize() is features.probe_ptrace_seize()


def test_public_api_exports_check() -> None:
    import criu_model

    assert criu_model.check is check


def _raw_errno(name: str, *args: int, returns_fd: bool = False) -> int:
    """0 if the raw syscall succeeded, else its errno (independent of our wrappers)."""
    ret = libc.syscall(ctypes.c_long(syscall_number(name)), *[ctypes.c_long(a) for a in args])
    if ret < 0:
        return ctypes.get_errno()
    if returns_fd:
        os.close(ret)
    return 0


def test_kcmp_matches_the_kernel(table: dict[str, Feature]) -> None:
    kcmp_vm = 1
    err = _raw_errno("kcmp", os.getpid(), os.getpid(), kcmp_vm, 0, 0)
    assert table["kcmp"].available == (err == 0)
    assert table["kcmp"].available  # this machine


def test_pidfd_matches_the_kernel(table: dict[str, Feature]) -> None:
    err = _raw_errno("pidfd_open", os.getpid(), 0, returns_fd=True)
    assert table["pidfd"].available == (err == 0)
    if err != errno.ENOSYS:
        assert table["pidfd"].available


def test_ns_owner_matches_the_kernel(table: dict[str, Feature]) -> None:
    # Independently: the owner of our own user namespace's net namespace is a user
    # namespace, so the returned fd links to "user:[...]".
    fd = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        owner = fcntl.ioctl(fd, 0xB701)   # NS_GET_USERNS = _IO(0xb7, 0x1)
    except OSError:
        owner = -1
    finally:
        os.close(fd)
    assert table["ns_owner"].available == (owner >= 0)
    if owner >= 0:
        assert os.readlink(f"/proc/self/fd/{owner}").startswith("user:[")
        os.close(owner)


def _pagemap_scan_independent() -> bool:
    """PAGEMAP_SCAN on an empty range with fcntl.ioctl: ENOTTY before Linux 6.7."""
    arg = struct.pack("=12Q", 96, *([0] * 11))  # struct pm_scan_arg, only .size set
    with open("/proc/self/pagemap", "rb") as f:
        try:
            fcntl.ioctl(f.fileno(), 0xC0606610, arg)
        except OSError as err:
            assert err.errno in (errno.ENOTTY, errno.EINVAL)
            return False
    return True


def test_pagemap_scan_matches_the_kernel(table: dict[str, Feature]) -> None:
    expected = _pagemap_scan_independent()
    assert table["pagemap_scan"].available == expected
    if expected:
        assert "6.7" in table["pagemap_scan"].detail


def _soft_dirty_compiled_in() -> bool:
    """With CONFIG_MEM_SOFT_DIRTY new VMAs carry VM_SOFTDIRTY, shown as 'sd' in smaps."""
    with open("/proc/self/smaps") as f:
        return any(line.startswith("VmFlags:") and " sd" in line for line in f)


def test_soft_dirty_matches_the_kernel(table: dict[str, Feature]) -> None:
    expected = _soft_dirty_compiled_in()
    assert table["soft-dirty"].available == expected
    if not expected:  # this machine
        assert "CONFIG_MEM_SOFT_DIRTY" in table["soft-dirty"].detail


def test_ptrace_seize_works_for_root(table: dict[str, Feature]) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    assert table["ptrace_seize"].available, table["ptrace_seize"].detail


def test_cgroup_freezer_matches_mounts(table: dict[str, Feature]) -> None:
    with open("/proc/self/mounts") as f:
        has_cgroup2 = any(line.split()[2] == "cgroup2" for line in f)
    if not has_cgroup2:
        assert not table["cgroup2_freezer"].available
    elif os.geteuid() == 0:
        assert table["cgroup2_freezer"].available, table["cgroup2_freezer"].detail


def test_sock_diag_unix_and_unavailable_details(table: dict[str, Feature]) -> None:
    assert table["sock_diag:unix"].available  # unix_diag: every kernel we run on
    for name, feature in table.items():
        if name.startswith("sock_diag:") and not feature.available:
            # errno name first, then the kernel option that would provide it
            assert feature.detail.split(":")[0] in errno.errorcode.values(), feature.detail


# --- the clone3 and pidfd wrappers the probes use


def _children_and_threads() -> tuple[int, int]:
    threads = len(os.listdir("/proc/self/task"))
    try:
        pid, _ = os.waitpid(-1, os.WNOHANG)
        children = 0 if pid == 0 else 1
    except ChildProcessError:
        children = 0
    return children, threads


def test_clone3_probes_create_nothing() -> None:
    before = _children_and_threads()
    base = clone3.probe_clone3()
    set_tid = clone3.probe_set_tid()
    assert _children_and_threads() == before
    assert base.detail and set_tid.detail
    if _raw_errno("clone3", 0, 0) == errno.ENOSYS:
        assert not base.available and not set_tid.available
    else:
        assert base.available
        assert set_tid.available  # this machine: Linux >= 5.5


def test_clone_args_layout() -> None:
    assert ctypes.sizeof(clone3.CloneArgs) == clone3.CLONE_ARGS_SIZE_VER2
    assert clone3.CloneArgs.set_tid.offset == clone3.CLONE_ARGS_SIZE_VER0
    assert clone3.CloneArgs.cgroup.offset == clone3.CLONE_ARGS_SIZE_VER1


def test_pidfd_open_self_and_missing() -> None:
    fd = pidfd_open(os.getpid())
    try:
        assert "pidfd" in os.readlink(f"/proc/self/fd/{fd}")  # anon_inode:[pidfd] or pidfs
        assert not os.get_inheritable(fd)
    finally:
        os.close(fd)
    gone = subprocess.Popen(["true"])
    gone.wait()
    with pytest.raises(ProcessLookupError):
        pidfd_open(gone.pid)
