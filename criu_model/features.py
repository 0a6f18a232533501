"""`criu-model check`: which kernel features this machine offers.

Every probe *tries* the feature (never compares version strings) and is
cached once per run with functools.cache, so collectors can ask cheaply too.
The kernel version in each comment is where the feature appeared; it is only
used to explain a failure.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import os
import socket
import struct
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from criu_model.errors import AccessDenied, CriuModelError
from criu_model.freeze import FreezeMethod, cgroup2_mount, frozen
from criu_model.kernel import clone3
from criu_model.kernel.kcmp import KcmpResult, KcmpType, kcmp
from criu_model.kernel.pagemap import PAGEMAP_ENTRY_SIZE, PagemapEntry, pagemap_scan_support
from criu_model.kernel.pidfd import pidfd_open


@dataclass(frozen=True)
class Feature:
    name: str
    available: bool
    detail: str  # one line: why yes, or why not (errno and the kernel/config it implies)


def _errname(err: OSError) -> str:
    return errno.errorcode.get(err.errno or 0, str(err.errno))


@functools.cache
def probe_kcmp() -> Feature:
    # kcmp: Linux 3.5, CONFIG_CHECKPOINT_RESTORE (CONFIG_KCMP since 5.12).
    fd = os.open("/", os.O_RDONLY | os.O_CLOEXEC)
    try:
        same = kcmp(os.getpid(), os.getpid(), KcmpType.FILE, fd, fd)
    except OSError as err:
        why = ("kernel < 3.5 or built without CONFIG_KCMP" if err.errno == errno.ENOSYS
               else err.strerror)
        return Feature("kcmp", False, f"{_errname(err)}: {why}")
    finally:
        os.close(fd)
    if same is not KcmpResult.EQUAL:
        return Feature("kcmp", False, f"kcmp of an fd with itself gave {same.name}")
    return Feature("kcmp", True, "kcmp(KCMP_FILE) works (Linux 3.5+)")


@functools.cache
def probe_map_files() -> Feature:
    # /proc/PID/map_files: Linux 3.3 (CONFIG_CHECKPOINT_RESTORE); before 4.3
    # reading it needed CAP_SYS_ADMIN.
    with open("/proc/self/maps", "rb") as maps:
        first = maps.readline().split(b" ", 1)[0].decode()
    try:
        os.stat(f"/proc/self/map_files/{first}")
    except FileNotFoundError:
        return Feature("map_files", False, "ENOENT: no /proc/PID/map_files "
                                           "(kernel < 3.3 or no CONFIG_CHECKPOINT_RESTORE)")
    except PermissionError as err:
        return Feature("map_files", False, f"{_errname(err)}: needs CAP_SYS_ADMIN (kernel < 4.3)")
    return Feature("map_files", True, "stat of /proc/self/map_files/<first mapping> works")


# --- sock_diag: one SOCK_DIAG_BY_FAMILY dump request per family (Linux 3.3).
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_ALL_STATES = 0xFFFFFFFF
# struct unix_diag_req: family, protocol, pad, states, ino, show, cookie[2]
_UNIX_REQ = struct.Struct("=BBHIII8s")
# struct inet_diag_req_v2: family, protocol, ext, pad, states, inet_diag_sockid (48 bytes)
_INET_REQ = struct.Struct("=BBBBI48s")
# struct netlink_diag_req: family, protocol, pad, ino, show, cookie[2]
_NETLINK_REQ = struct.Struct("=BBHII8s")
# struct packet_diag_req: family, protocol, pad, ino, show, cookie[2]
_PACKET_REQ = struct.Struct("=BBHII8s")
_NDIAG_PROTO_ALL = 0xFF
_IPPROTO_RAW = 255


@dataclass(frozen=True)
class _DiagFamily:
    name: str
    request: bytes
    module: str  # the kernel option / module that answers it
    since: str


def _diag_families() -> list[_DiagFamily]:
    def inet(family: int, proto: int) -> bytes:
        return _INET_REQ.pack(family, proto, 0, 0, _ALL_STATES, bytes(48))

    return [
        _DiagFamily("unix", _UNIX_REQ.pack(socket.AF_UNIX, 0, 0, _ALL_STATES, 0, 0, bytes(8)),
                    "CONFIG_UNIX_DIAG", "3.3"),
        _DiagFamily("inet_tcp", inet(socket.AF_INET, socket.IPPROTO_TCP),
                    "CONFIG_INET_TCP_DIAG", "3.3"),
        _DiagFamily("inet_udp", inet(socket.AF_INET, socket.IPPROTO_UDP),
                    "CONFIG_INET_UDP_DIAG", "3.3"),
        _DiagFamily("inet6_tcp", inet(socket.AF_INET6, socket.IPPROTO_TCP),
                    "CONFIG_INET_TCP_DIAG with IPv6", "3.3"),
        _DiagFamily("inet6_udp", inet(socket.AF_INET6, socket.IPPROTO_UDP),
                    "CONFIG_INET_UDP_DIAG with IPv6", "3.3"),
        _DiagFamily("inet_raw", inet(socket.AF_INET, _IPPROTO_RAW),
                    "CONFIG_INET_RAW_DIAG", "4.14"),
        _DiagFamily("netlink", _NETLINK_REQ.pack(socket.AF_NETLINK, _NDIAG_PROTO_ALL, 0, 0, 0,
                                                 bytes(8)),
                    "CONFIG_NETLINK_DIAG", "3.10"),
        _DiagFamily("packet", _PACKET_REQ.pack(socket.AF_PACKET, 0, 0, 0, 0, bytes(8)),
                    "CONFIG_PACKET_DIAG", "3.10"),
    ]


def _sock_diag_errno(request: bytes, timeout: float = 2.0) -> int:
    """Send one dump request; 0 if the kernel answered it, else the errno."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                       NETLINK_SOCK_DIAG) as sock:
        sock.settimeout(timeout)
        header = _NLMSGHDR.pack(_NLMSGHDR.size + len(request), SOCK_DIAG_BY_FAMILY,
                                NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
        sock.send(header + request)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = sock.recv(65536)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
                if kind in (NLMSG_ERROR, NLMSG_DONE):
                    # Both carry an int: -errno (0 for a clean DONE). A dump whose
                    # family handler is missing ends in DONE with -ENOENT.
                    has_code = length >= _NLMSGHDR.size + 4
                    (code,) = struct.unpack_from("=i", data, offset + _NLMSGHDR.size) \
                        if has_code else (0,)
                    return -code
                if length < _NLMSGHDR.size:
                    return errno.EPROTO
                offset += (length + 3) & ~3
            if not data:
                break
        return errno.ETIMEDOUT


@functools.cache
def probe_sock_diag() -> tuple[Feature, ...]:
    features = []
    for family in _diag_families():
        name = f"sock_diag:{family.name}"
        try:
            code = _sock_diag_errno(family.request)
        except OSError as err:
            features.append(Feature(name, False, f"{_errname(err)}: NETLINK_SOCK_DIAG socket: "
                                                 f"{err.strerror}"))
            continue
        if code == 0:
            features.append(Feature(name, True, f"dump answered ({family.module}, "
                                                f"Linux {family.since}+)"))
        else:
            why = ("no handler: kernel built without " + family.module
                   if code in (errno.ENOENT, errno.EINVAL) else os.strerror(code))
            features.append(Feature(name, False,
                                    f"{errno.errorcode.get(code, str(code))}: {why}"))
    return tuple(features)


@functools.cache
def probe_clone3_set_tid() -> tuple[Feature, ...]:
    # clone3: Linux 5.3; set_tid: Linux 5.5 (see kernel/clone3.py for the probe).
    base = clone3.probe_clone3()
    set_tid = clone3.probe_set_tid()
    return (Feature("clone3", base.available, base.detail),
            Feature("clone3_set_tid", set_tid.available, set_tid.detail))


@functools.cache
def probe_pagemap_scan() -> Feature:
    # PAGEMAP_SCAN ioctl on /proc/PID/pagemap: Linux 6.7.
    support = pagemap_scan_support()
    return Feature("pagemap_scan", support.supported, support.reason)


@functools.cache
def probe_soft_dirty() -> Feature:
    """Clear our own soft-dirty bits, dirty one page, see if pagemap bit 55 says so.

    Writing clear_refs touches only *this* process (costs us some write
    faults). Without CONFIG_MEM_SOFT_DIRTY (3.11, x86 and a few other arches)
    the write is accepted but bit 55 is never set.
    """
    page_size = os.sysconf("SC_PAGE_SIZE")
    try:
        with open("/proc/self/clear_refs", "wb", buffering=0) as clear_refs:
            clear_refs.write(b"4")
    except OSError as err:
        return Feature("soft-dirty", False, f"{_errname(err)}: writing 4 to clear_refs: "
                                            f"{err.strerror}")
    buf = (ctypes.c_char * (2 * page_size))()
    address = (ctypes.addressof(buf) + page_size - 1) & ~(page_size - 1)
    ctypes.memset(address, 1, 1)  # dirty one page of ours after the clear
    fd = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    try:
        raw = os.pread(fd, PAGEMAP_ENTRY_SIZE, address // page_size * PAGEMAP_ENTRY_SIZE)
    finally:
        os.close(fd)
    entry = PagemapEntry(int.from_bytes(raw, "little") & ~((1 << 55) - 1))
    if PagemapEntry.SOFT_DIRTY in entry:
        return Feature("soft-dirty", True, "pagemap bit 55 set on a page written after "
                                           "clear_refs=4 (CONFIG_MEM_SOFT_DIRTY)")
    return Feature("soft-dirty", False, "pagemap bit 55 never set: no CONFIG_MEM_SOFT_DIRTY")


@functools.cache
def probe_ptrace_seize() -> Feature:
    """Seize, interrupt and detach a throwaway `sleep` child (PTRACE_SEIZE: Linux 3.4)."""
    try:
        child = subprocess.Popen(["sleep", "30"], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError as err:
        return Feature("ptrace_seize", False, f"cannot start a test child: {err.strerror}")
    try:
        with frozen([child.pid], FreezeMethod.PTRACE) as report:
            stopped = bool(report.tids)
    except AccessDenied as err:
        return Feature("ptrace_seize", False, f"EPERM: {err.why}")
    except CriuModelError as err:
        return Feature("ptrace_seize", False, str(err))
    finally:
        child.kill()
        child.wait()
    if not stopped:
        return Feature("ptrace_seize", False, "the test child never reached its stop")
    return Feature("ptrace_seize", True, "seize + interrupt + detach of a child works "
                                         "(Linux 3.4+)")


@functools.cache
def probe_cgroup_freezer() -> Feature:
    # cgroup.freeze in every non-root cgroup v2 directory: Linux 5.2.
    try:
        mount = cgroup2_mount()
    except OSError as err:
        return Feature("cgroup2_freezer", False, f"reading mountinfo: {err.strerror}")
    if mount is None:
        return Feature("cgroup2_freezer", False, "no cgroup2 filesystem mounted")
    point = mount[0]
    try:
        children = [e.path for e in os.scandir(point) if e.is_dir(follow_symlinks=False)]
    except OSError as err:
        return Feature("cgroup2_freezer", False, f"listing {point}: {err.strerror}")
    for child in children:
        if os.path.exists(f"{child}/cgroup.freeze"):
            return Feature("cgroup2_freezer", True, f"{child}/cgroup.freeze exists")
    if children:
        return Feature("cgroup2_freezer", False,
                       f"cgroup2 at {point} but no cgroup.freeze in its cgroups: kernel < 5.2")
    if not os.access(point, os.W_OK):
        return Feature("cgroup2_freezer", False,
                       f"cgroup2 at {point} has no child cgroup and we cannot create one")
    return Feature("cgroup2_freezer", True, f"cgroup2 at {point}, a child cgroup can be made")


@functools.cache
def probe_pidfd() -> Feature:
    # pidfd_open: Linux 5.3.
    try:
        fd = pidfd_open(os.getpid())
    except OSError as err:
        why = "kernel < 5.3" if err.errno == errno.ENOSYS else err.strerror
        return Feature("pidfd", False, f"{_errname(err)}: {why}")
    os.close(fd)
    return Feature("pidfd", True, "pidfd_open works (Linux 5.3+)")


@functools.cache
def probe_ns_owner() -> Feature:
    # ioctl_ns NS_GET_USERNS / NS_GET_PARENT: Linux 4.9.
    from criu_model.collect.nsowner import NS_GET_USERNS
    fd = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        owner = fcntl.ioctl(fd, NS_GET_USERNS)
    except OSError as err:
        why = "kernel < 4.9" if err.errno in (errno.ENOTTY, errno.EINVAL) else err.strerror
        return Feature("ns_owner", False, f"{_errname(err)}: {why}")
    finally:
        os.close(fd)
    os.close(owner)
    return Feature("ns_owner", True, "ioctl NS_GET_USERNS works (Linux 4.9+)")


_PROBES: tuple[Callable[[], Feature | tuple[Feature, ...]], ...] = (
    probe_kcmp,
    probe_map_files,
    probe_sock_diag,
    probe_clone3_set_tid,
    probe_pagemap_scan,
    probe_soft_dirty,
    probe_ptrace_seize,
    probe_cgroup_freezer,
    probe_pidfd,
    probe_ns_owner,
)

FEATURE_NAMES = (
    "kcmp", "map_files",
    "sock_diag:unix", "sock_diag:inet_tcp", "sock_diag:inet_udp", "sock_diag:inet6_tcp",
    "sock_diag:inet6_udp", "sock_diag:inet_raw", "sock_diag:netlink", "sock_diag:packet",
    "clone3", "clone3_set_tid", "pagemap_scan", "soft-dirty", "ptrace_seize",
    "cgroup2_freezer", "pidfd", "ns_owner",
)


def check() -> list[Feature]:
    """Probe every feature (cached after the first call), in FEATURE_NAMES order."""
    features: list[Feature] = []
    for probe in _PROBES:
        result = probe()
        features.extend(result if isinstance(result, tuple) else (result,))
    return features
