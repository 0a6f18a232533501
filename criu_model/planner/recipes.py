"""How each kind of open file is made again: the syscalls and the state they take.

One function per fd kind turns the dumped state into the arguments of the
plan's open step and a one-line recipe (the kernel interfaces a restorer
calls). The simulator only models file identity and sharing; these
arguments are what a restorer needs beyond it, and what the dry run checks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from criu_model.images.pb import files_pb2
from criu_model.names import enum_name

Recipe = tuple[dict[str, Any], str]

_EFD_SEMAPHORE = 1
_SIGNALS = 64


def _mask_signals(mask: int) -> list[int]:
    return [n for n in range(1, _SIGNALS + 1) if mask >> (n - 1) & 1]


def _eventfd(fd: files_pb2.Fd) -> Recipe:
    e = fd.eventfd
    semaphore = e.HasField("semaphore") and e.semaphore
    args = {"count": e.count, "semaphore": semaphore if e.HasField("semaphore") else None}
    return args, (f"eventfd({e.count}, {'EFD_SEMAPHORE' if semaphore else '0'} | flags)"
                  + ("" if e.HasField("semaphore") else "; semaphore mode unknown (kernel < 6.5)"))


def _signalfd(fd: files_pb2.Fd) -> Recipe:
    signals = _mask_signals(fd.signalfd.sigmask)
    return {"signals": signals}, f"signalfd(-1, {{{', '.join(map(str, signals))}}}, flags)"


def _timerfd(fd: files_pb2.Fd) -> Recipe:
    t = fd.timerfd
    args = {"clockid": t.clockid, "value_ns": t.it_value_ns, "interval_ns": t.it_interval_ns,
            "settime_flags": t.settime_flags, "ticks": t.ticks}
    armed = "disarmed" if not t.it_value_ns else \
        f"timerfd_settime(next in {t.it_value_ns} ns, every {t.it_interval_ns} ns)"
    ticks = f", TFD_IOC_SET_TICKS {t.ticks}" if t.ticks else ""
    return args, f"timerfd_create(clock {t.clockid}), {armed}{ticks}"


def _watch_args(w: files_pb2.InotifyWatch | files_pb2.FanotifyMark) -> dict[str, Any]:
    return {"ino": w.ino, "dev": w.sdev, "mask": w.mask, "handle_type": w.fhandle_type,
            "handle": w.f_handle.hex()}


def _inotify(fd: files_pb2.Fd) -> Recipe:
    watches = [{"wd": w.wd, **_watch_args(w)} for w in fd.inotify.watches]
    return {"watches": watches}, (
        f"inotify_init1, then {len(watches)} watch(es): open_by_handle_at each target, "
        "inotify_add_watch through /proc/self/fd, removing and re-adding until the kernel "
        "hands out the dumped wd")


def _fanotify(fd: files_pb2.Fd) -> Recipe:
    f = fd.fanotify
    marks = [{"type": enum_name(files_pb2.FanotifyMarkType.DESCRIPTOR, m.type, "FANOTIFY_MARK_"),
              "mnt_id": m.mnt_id, "mflags": m.mflags,
              "ignored_mask": m.ignored_mask, **_watch_args(m)} for m in f.marks]
    return {"init_flags": f.flags, "event_flags": f.event_flags, "marks": marks}, (
        f"fanotify_init({f.flags:#x}, {f.event_flags:#o}), then fanotify_mark per mark "
        "(inode marks through open_by_handle_at, mount marks by mount id)")


def _pidfd(fd: files_pb2.Fd) -> Recipe:
    pid = fd.pidfd.pid
    if pid < 0:
        return {"target": pid}, ("pidfd of a process that had exited: pidfd_open of a "
                                 "helper child that then exits and is reaped")
    return {"target": pid}, f"pidfd_open({pid}) once that process exists"


def _memfd(fd: files_pb2.Fd) -> Recipe:
    m = fd.memfd
    name = fd.path.decode(errors="replace").removeprefix("/memfd:")
    args: dict[str, Any] = {"name": name, "size": m.size, "hugetlb": m.hugetlb}
    seals = ""
    if m.HasField("seals"):
        args["seals"] = m.seals
        seals = f", F_ADD_SEALS {m.seals:#x}" if m.seals else ""
    return args, (f"memfd_create({name!r}{', MFD_HUGETLB' if m.hugetlb else ''}), its "
                  f"{m.size} captured bytes written back{seals}")


_RECIPES: dict[str, Callable[[files_pb2.Fd], Recipe]] = {
    "eventfd": _eventfd, "signalfd": _signalfd, "timerfd": _timerfd, "inotify": _inotify,
    "fanotify": _fanotify, "pidfd": _pidfd, "memfd": _memfd,
}


def fd_recipe(fd: files_pb2.Fd) -> Recipe | None:
    """Kind-specific arguments and recipe of `fd`'s open step; None for the other kinds."""
    make = _RECIPES.get(fd.WhichOneof("state") or "")
    return make(fd) if make is not None else None


def lock_args(fd: files_pb2.Fd, posix: bool) -> list[dict[str, Any]]:
    """The held locks of `fd` as step arguments: the POSIX ones (posix=True, see
    Action.LOCK) or the others (flock, OFD, leases: on the open file description)."""
    return [{"type": enum_name(files_pb2.LockType.DESCRIPTOR, lock.type, "LOCK_"),
             "mode": enum_name(files_pb2.LockMode.DESCRIPTOR, lock.mode, "LOCK_"),
             "start": lock.start, "end": None if lock.to_eof else lock.end, "pid": lock.pid,
             # a lease mid-break (/proc/locks "BREAKING"): its mode is where it is going
             **({"breaking": True} if " BREAKING " in f" {lock.raw} " else {})}
            for lock in fd.locks
            if not lock.blocked and (lock.type == files_pb2.LOCK_POSIX) == posix]


def common_state(fd: files_pb2.Fd) -> dict[str, Any]:
    """Per-file state any kind can carry: locks (but POSIX ones) and the F_SETOWN owner."""
    out: dict[str, Any] = {}
    held = lock_args(fd, posix=False)
    if held:
        out["locks"] = held
    if fd.HasField("owner_pid") and fd.owner_pid:
        owner = enum_name(files_pb2.OwnerType.DESCRIPTOR, fd.owner_type, "OWNER_")
        out["owner"] = {"pid": fd.owner_pid, "type": owner, "signal": fd.owner_signum}
    return out
