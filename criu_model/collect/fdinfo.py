"""Pure parsers of /proc/PID/fdinfo/N texts.

Every fdinfo starts with the common header of fs/proc/fd.c ``seq_show()``::

    pos:    DECIMAL
    flags:  0OCTAL         (f_flags, plus O_CLOEXEC from the fd table)
    mnt_id: DECIMAL
    ino:    DECIMAL        (Linux 5.14+; absent before)
    lock:   ...            (zero or more, see locks.py)

followed by what the file's ``show_fdinfo`` prints. Those bodies have two
shapes: ``key: value`` lines (eventfd, signalfd, timerfd, pidfd, tty) and
lines of ``key:value`` tokens, one per object (epoll targets, inotify watches,
fanotify marks). Number bases differ per key and are the kernel's, not ours:
eventfd-count, epoll events/data/ino/sdev and every inotify/fanotify field are
hex. ``sdev`` values are the kernel's internal dev_t (major << 20 | minor);
we convert them to the st_dev encoding so they compare with ``os.stat``.

Keys we do not know are kept raw in an ``extra`` map so a newer kernel never
breaks collection. Parsers take bytes and return protobuf messages; they never
touch /proc, so tests feed them captured samples.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, MutableMapping

from criu_model.collect.locks import parse_lock_line
from criu_model.images.pb import files_pb2

_NS_PER_S = 1_000_000_000
_KDEV_MINOR_BITS = 20  # include/linux/kdev_t.h: MINORBITS
_KDEV_MINOR_MASK = (1 << _KDEV_MINOR_BITS) - 1
_INT32_SIGN = 1 << 31
_UINT32 = 1 << 32

_TOKEN_RE = re.compile(rb"([A-Za-z_][\w-]*):\s*(\S*)")
_PAIR_RE = re.compile(rb"\(\s*(\d+),\s*(\d+)\s*\)")


def kdev_to_dev(kdev: int) -> int:
    """Kernel-internal dev_t (``sb->s_dev`` as fdinfo prints it) -> st_dev encoding."""
    return os.makedev(kdev >> _KDEV_MINOR_BITS, kdev & _KDEV_MINOR_MASK)


def _hex_s32(text: bytes) -> int:
    """A hex-printed int that the kernel may print as ffffffff for -1."""
    value = int(text, 16)
    return value - _UINT32 if value >= _INT32_SIGN else value


class FdinfoText:
    """The common header of one fdinfo file, and its kind-specific body lines."""

    __slots__ = ("body", "flags", "ino", "locks", "mnt_id", "pos")

    def __init__(self) -> None:
        self.pos = 0
        self.flags = 0
        self.mnt_id = 0
        self.ino: int | None = None
        self.locks: list[files_pb2.FileLock] = []
        self.body: list[bytes] = []

    def raw_body(self) -> bytes:
        return b"".join(line + b"\n" for line in self.body)


def split_fdinfo(data: bytes) -> FdinfoText:
    """Split fdinfo into its header fields and body lines; ValueError if malformed."""
    info = FdinfoText()
    for line in data.split(b"\n"):
        if not line:
            continue
        key, sep, value = line.partition(b":")
        if not sep:
            info.body.append(line)
        elif key == b"pos":
            info.pos = int(value)
        elif key == b"flags":
            info.flags = int(value, 8)
        elif key == b"mnt_id":
            info.mnt_id = int(value)
        elif key == b"ino":
            info.ino = int(value)
        elif key == b"lock":
            info.locks.append(parse_lock_line(value))
        else:
            info.body.append(line)
    return info


def tokens(line: bytes) -> dict[str, bytes]:
    """``tfd: 5 events: 19 pos:0`` -> {"tfd": b"5", ...}; a leading bare word is skipped."""
    return {key.decode(): value for key, value in _TOKEN_RE.findall(line)}


def key_values(lines: Iterable[bytes]) -> dict[str, bytes]:
    """``key:\\tvalue`` lines -> dict; the key may hold spaces (``settime flags``)."""
    result: dict[str, bytes] = {}
    for line in lines:
        key, _, value = line.partition(b":")
        name = key.strip().decode("ascii", "backslashreplace")
        value = value.strip()
        result[name] = result[name] + b"\n" + value if name in result else value
    return result


def _keep(extra: MutableMapping[str, str], items: dict[str, bytes]) -> None:
    for key, value in items.items():
        extra[key] = value.decode("ascii", "backslashreplace")


def _take(items: dict[str, bytes], key: str) -> bytes | None:
    return items.pop(key, None)


def parse_eventfd(body: list[bytes], extra: MutableMapping[str, str]) -> files_pb2.Eventfd:
    """fs/eventfd.c: ``eventfd-count: %16llx``, ``eventfd-id: %d``, ``eventfd-semaphore: %d``."""
    items = key_values(body)
    msg = files_pb2.Eventfd()
    count = _take(items, "eventfd-count")
    if count is not None:
        msg.count = int(count, 16)
    ident = _take(items, "eventfd-id")
    if ident is not None:
        msg.id = int(ident)
    semaphore = _take(items, "eventfd-semaphore")  # printed since Linux 6.5
    if semaphore is not None:
        msg.semaphore = semaphore != b"0"
    _keep(extra, items)
    return msg


def parse_epoll(body: list[bytes], extra: MutableMapping[str, str]) -> files_pb2.Epoll:
    """fs/eventpoll.c: ``tfd: %8d events: %8x data: %16llx  pos:%lli ino:%lx sdev:%x``."""
    msg = files_pb2.Epoll()
    rest = []
    for line in body:
        if not line.startswith(b"tfd:"):
            rest.append(line)
            continue
        items = tokens(line)
        target = msg.targets.add(
            tfd=int(items.pop("tfd")),
            events=int(items.pop("events", b"0"), 16),
            data=int(items.pop("data", b"0"), 16),
            pos=int(items.pop("pos", b"0")),
            ino=int(items.pop("ino", b"0"), 16),
        )
        sdev = items.pop("sdev", None)
        if sdev is not None:
            target.sdev = kdev_to_dev(int(sdev, 16))
        _keep(target.extra, items)
    _keep(extra, key_values(rest))
    return msg


def _fhandle(items: dict[str, bytes], msg: files_pb2.InotifyWatch | files_pb2.FanotifyMark) -> None:
    """fs/notify/fdinfo.c show_mark_fhandle: `` fhandle-bytes:%x fhandle-type:%x f_handle:HEX``."""
    nbytes = items.pop("fhandle-bytes", None)
    if nbytes is not None:
        msg.fhandle_bytes = int(nbytes, 16)
    ftype = items.pop("fhandle-type", None)
    if ftype is not None:
        msg.fhandle_type = _hex_s32(ftype)
    handle = items.pop("f_handle", None)
    if handle:
        msg.f_handle = bytes.fromhex(handle.decode("ascii"))


def parse_inotify(body: list[bytes], extra: MutableMapping[str, str]) -> files_pb2.Inotify:
    """``inotify wd:%x ino:%lx sdev:%x mask:%x ignored_mask:%x`` + file handle; all hex."""
    msg = files_pb2.Inotify()
    rest = []
    for line in body:
        if not line.startswith(b"inotify "):
            rest.append(line)
            continue
        items = tokens(line)
        watch = msg.watches.add(
            wd=_hex_s32(items.pop("wd")),
            ino=int(items.pop("ino", b"0"), 16),
            sdev=kdev_to_dev(int(items.pop("sdev", b"0"), 16)),
            mask=int(items.pop("mask", b"0"), 16),
            ignored_mask=int(items.pop("ignored_mask", b"0"), 16),
        )
        _fhandle(items, watch)
        _keep(watch.extra, items)
    _keep(extra, key_values(rest))
    return msg


def _fanotify_mark(items: dict[str, bytes]) -> files_pb2.FanotifyMark:
    """Inode marks carry ino+sdev, mount marks mnt_id, filesystem marks only sdev."""
    mark = files_pb2.FanotifyMark()
    if "ino" in items:
        mark.type = files_pb2.FANOTIFY_MARK_INODE
        mark.ino = int(items.pop("ino"), 16)
    elif "mnt_id" in items:
        mark.type = files_pb2.FANOTIFY_MARK_MOUNT
        mark.mnt_id = int(items.pop("mnt_id"), 16)
    elif "sdev" in items:
        mark.type = files_pb2.FANOTIFY_MARK_FILESYSTEM
    else:
        mark.type = files_pb2.FANOTIFY_MARK_OTHER
    sdev = items.pop("sdev", None)
    if sdev is not None:
        mark.sdev = kdev_to_dev(int(sdev, 16))
    mark.mflags = int(items.pop("mflags", b"0"), 16)
    mark.mask = int(items.pop("mask", b"0"), 16)
    mark.ignored_mask = int(items.pop("ignored_mask", b"0"), 16)
    _fhandle(items, mark)
    _keep(mark.extra, items)
    return mark


def parse_fanotify(body: list[bytes], extra: MutableMapping[str, str]) -> files_pb2.Fanotify:
    """``fanotify flags:%x event-flags:%x`` then one ``fanotify ...`` line per mark."""
    msg = files_pb2.Fanotify()
    rest = []
    for line in body:
        if not line.startswith(b"fanotify "):
            rest.append(line)
            continue
        items = tokens(line)
        if "flags" in items:
            msg.flags = int(items.pop("flags"), 16)
            msg.event_flags = int(items.pop("event-flags", b"0"), 16)
            _keep(extra, items)
        else:
            msg.marks.append(_fanotify_mark(items))
    _keep(extra, key_values(rest))
    return msg


def parse_signalfd(body: list[bytes], extra: MutableMapping[str, str]) -> files_pb2.Signalfd:
    """fs/signalfd.c: ``sigmask:\\t%016llx`` (bit N-1 for signal N)."""
    items = key_values(body)
    msg = files_pb2.Signalfd()
    mask = _take(items, "sigmask")
    if mask is not None:
        msg.sigmask = int(mask, 16)
    _keep(extra, items)
    return msg


def _pair_ns(text: bytes) -> int:
    match = _PAIR_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"expected '(SEC, NSEC)', got {text!r}")
    return int(match.group(1)) * _NS_PER_S + int(match.group(2))


def parse_timerfd(body: list[bytes], extra: MutableMapping[str, str]) -> files_pb2.Timerfd:
    """fs/timerfd.c: clockid, ticks, ``settime flags: 0%o``, it_value/it_interval ``(s, ns)``."""
    items = key_values(body)
    msg = files_pb2.Timerfd()
    clockid = _take(items, "clockid")
    if clockid is not None:
        msg.clockid = int(clockid)
    ticks = _take(items, "ticks")
    if ticks is not None:
        msg.ticks = int(ticks)
    settime = _take(items, "settime flags")
    if settime is not None:
        msg.settime_flags = int(settime, 8)
    value = _take(items, "it_value")
    if value is not None:
        msg.it_value_ns = _pair_ns(value)
    interval = _take(items, "it_interval")
    if interval is not None:
        msg.it_interval_ns = _pair_ns(interval)
    _keep(extra, items)
    return msg


def parse_pidfd(body: list[bytes], extra: MutableMapping[str, str]) -> files_pb2.Pidfd:
    """kernel/pid.c / fs/pidfs.c: ``Pid:\\t%d`` (-1 once exited) and ``NSpid:\\t%d...``."""
    items = key_values(body)
    msg = files_pb2.Pidfd()
    pid = _take(items, "Pid")
    if pid is not None:
        msg.pid = int(pid)
    nspid = _take(items, "NSpid")
    if nspid is not None:
        msg.ns_pids.extend(int(p) for p in nspid.split())
    _keep(extra, items)
    return msg


def parse_tty_index(body: list[bytes], extra: MutableMapping[str, str]) -> int | None:
    """drivers/tty/pty.c pty_show_fdinfo: ``tty-index:\\t%d`` on a ptmx master."""
    items = key_values(body)
    index = _take(items, "tty-index")
    _keep(extra, items)
    return None if index is None else int(index)


def parse_generic(body: list[bytes], extra: MutableMapping[str, str]) -> None:
    """Body of a kind that prints nothing we model: keep every line raw."""
    _keep(extra, key_values(body))
