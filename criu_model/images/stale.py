"""Temporary snapshot directories left by dumpers that died (SIGKILL, a crash, power loss).

The writer builds a snapshot in ``.NAME.tmp-PID-XXXXXXXX`` next to NAME and
renames it into place when complete; a dumper killed before the rename leaves
it behind, hidden and never loaded (it has no inventory). The next dump into
the same directory removes such leftovers, but only when all of this holds:
the name has exactly the writer's shape, it is a real directory (not a
symlink) owned by us, the PID in its name is not running (a live dumper, or
any process that now has that pid, keeps it), and it holds no inventory.img
(so it never was a complete snapshot) and nothing but image files.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import NamedTuple

# The writer's name: f".{name}.tmp-{os.getpid()}-{uuid4().hex[:8]}" (images/writer.py).
_TMP_NAME = re.compile(r"\.(?P<name>.+)\.tmp-(?P<pid>[1-9][0-9]*)-[0-9a-f]{8}")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Leftover(NamedTuple):
    """One temporary directory found next to a snapshot, and what was done with it."""

    path: Path
    pid: int
    removed: bool
    why: str       # why it was kept, or what it was
    running: bool  # its dumper's pid is running: a dump in progress (never worth a word)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True   # exists, another user's
    return True


def _kept_because(parent_fd: int, entry: str, pid: int) -> str | None:
    """Why `entry` must stay, or None if it is a dead dumper's unfinished directory."""
    try:
        st = os.stat(entry, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return "gone meanwhile"
    if not stat.S_ISDIR(st.st_mode):
        return "not a directory"
    if st.st_uid != os.geteuid():
        return f"owned by uid {st.st_uid}"
    if _alive(pid):
        return f"pid {pid} is running (a dump in progress, or the pid was reused)"
    try:
        fd = os.open(entry, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as err:
        return f"cannot open it: {err.strerror}"
    try:
        names = os.listdir(fd)
    finally:
        os.close(fd)
    if "inventory.img" in names:
        return "it holds an inventory.img (a complete snapshot)"
    strangers = [n for n in names if not n.endswith(".img")]
    if strangers:
        return f"it holds files the writer does not make ({', '.join(sorted(strangers)[:3])})"
    return None


def remove_stale(parent: str | os.PathLike[str]) -> list[Leftover]:
    """Remove dead dumpers' temporary directories in `parent`; report every one found.

    Never raises for what it finds: a directory it cannot judge or remove is
    kept and reported (the dump goes on either way).
    """
    where = Path(parent)
    try:
        parent_fd = os.open(where, _DIR_FLAGS)
    except OSError:
        return []   # no parent yet, or unreadable: the writer says so
    found: list[Leftover] = []
    try:
        for entry in os.listdir(parent_fd):
            match = _TMP_NAME.fullmatch(entry)
            if match is None:
                continue
            pid = int(match["pid"])
            if pid == os.getpid():
                continue
            why = _kept_because(parent_fd, entry, pid)
            if why is None:
                try:
                    # rmtree with dir_fd never follows a symlink planted inside.
                    import shutil  # only when there is something to remove

                    shutil.rmtree(entry, dir_fd=parent_fd)
                except OSError as err:
                    why = f"could not remove it: {err.strerror}"
            found.append(Leftover(where / entry, pid, why is None,
                                  why or f"left by dumper pid {pid}, which is gone",
                                  running=_alive(pid)))
    finally:
        os.close(parent_fd)
    return found
