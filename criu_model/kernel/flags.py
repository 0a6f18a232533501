"""Named kernel flag sets shared by collectors and views (no inline bit tests)."""

from __future__ import annotations

import enum


class OpenFlag(enum.IntFlag):
    """f_flags as /proc/PID/fdinfo prints them (include/uapi/asm-generic/fcntl.h)."""

    WRONLY = 0o1
    RDWR = 0o2
    CREAT = 0o100
    EXCL = 0o200
    NOCTTY = 0o400
    TRUNC = 0o1000
    APPEND = 0o2000
    NONBLOCK = 0o4000
    DSYNC = 0o10000
    FASYNC = 0o20000
    DIRECT = 0o40000
    LARGEFILE = 0o100000
    DIRECTORY = 0o200000
    NOFOLLOW = 0o400000
    NOATIME = 0o1000000
    CLOEXEC = 0o2000000
    SYNC = 0o4010000
    PATH = 0o10000000
    TMPFILE = 0o20200000


ACCMODE = 0o3


def open_flags_text(flags: int) -> str:
    """'rw,append,cloexec'-style text: access mode first, then the other flags.

    O_LARGEFILE is left out: the kernel sets it on every 64-bit open.
    """
    mode = {0: "r", OpenFlag.WRONLY: "w", OpenFlag.RDWR: "rw"}.get(flags & ACCMODE, "?")
    if flags & OpenFlag.PATH:
        mode = "path"
    names = [mode]
    for flag in (OpenFlag.APPEND, OpenFlag.NONBLOCK, OpenFlag.CLOEXEC, OpenFlag.DIRECT,
                 OpenFlag.NOATIME, OpenFlag.FASYNC, OpenFlag.DIRECTORY, OpenFlag.NOFOLLOW,
                 OpenFlag.NOCTTY):
        if flags & flag == flag and flag.name:
            names.append(flag.name.lower())
    if flags & OpenFlag.SYNC == OpenFlag.SYNC:
        names.append("sync")
    elif flags & OpenFlag.DSYNC:
        names.append("dsync")
    return ",".join(names)
