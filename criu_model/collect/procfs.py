"""Reading /proc/PID/... with one error translation point.

Every collector reads through :class:`ProcDir`, so ENOENT/ESRCH become
:class:`ProcessGone` and EPERM/EACCES become :class:`AccessDenied` in one
place. The proc root is swappable so parser tests can point at a fake tree.
Files are read with raw ``os.open``/``os.read``: /proc files are small and
Python file objects cost more than the read itself when dumping 200 processes.
"""

from __future__ import annotations

import os

from criu_model.collect.stat import parse_state
from criu_model.errors import ProcessGone, from_oserror

PROC_ROOT = "/proc"
_CHUNK = 65536

# /proc/PID files made with single_open() (the ONE() entries of fs/proc/base.c;
# fdinfo too): the kernel formats the whole file at once and gives all of it to a
# read with room for it, so a short read is the end and the read that would
# return EOF is saved (~3,000 of them in a 200-process dump).
SINGLE_RECORD = frozenset({"stat", "status", "limits", "cgroup", "personality", "syscall"})
# cmdline and environ are no single_open() files, but their read handlers
# (get_mm_cmdline() and environ_read() in fs/proc/base.c) copy in a loop until
# the buffer is full or the area ends: a short read is the end there too.
SHORT_READ_ENDS = SINGLE_RECORD | {"cmdline", "environ"}


def read_all(path: str, single: bool = False) -> bytes:
    """Read a whole file with unbuffered reads (no translation: callers wrap).

    ``single``: a /proc file done at a short read (see SHORT_READ_ENDS).
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunk = os.read(fd, _CHUNK)
        if not chunk or (single and len(chunk) < _CHUNK):
            return chunk
        chunks = [chunk]
        while True:
            chunk = os.read(fd, _CHUNK)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


class ProcDir:
    """Access to /proc/PID (or /proc/PID/task/TID) with errors translated."""

    __slots__ = ("path", "pid", "proc_root")

    def __init__(self, pid: int, proc_root: str = PROC_ROOT, tid: int | None = None) -> None:
        self.pid = pid
        self.proc_root = proc_root
        self.path = f"{proc_root}/{pid}" if tid is None else f"{proc_root}/{pid}/task/{tid}"

    def task(self, tid: int) -> ProcDir:
        """The /proc/PID/task/TID directory of one thread."""
        return ProcDir(self.pid, self.proc_root, tid)

    # Plain try/except rather than a context manager: these run thousands of
    # times per dump and the generator machinery cost ~13% of collect_process.
    def read(self, name: str) -> bytes:
        try:
            return read_all(f"{self.path}/{name}", name in SHORT_READ_ENDS)
        except OSError as err:
            raise from_oserror(err, self.pid, name) from err

    def readlink(self, name: str) -> bytes:
        try:
            return os.readlink(os.fsencode(f"{self.path}/{name}"))
        except OSError as err:
            raise from_oserror(err, self.pid, name) from err

    def listdir(self, name: str = "") -> list[str]:
        try:
            return os.listdir(f"{self.path}/{name}" if name else self.path)
        except OSError as err:
            raise from_oserror(err, self.pid, name or "directory") from err

    def stat(self, name: str) -> os.stat_result:
        try:
            return os.stat(f"{self.path}/{name}")
        except OSError as err:
            raise from_oserror(err, self.pid, name) from err

    def exists(self) -> bool:
        return os.path.exists(self.path)


def task_state(task: ProcDir) -> str | None:
    """One-letter state of a process or thread ('Z' for a zombie), None if it is gone."""
    try:
        return parse_state(task.read("stat"))
    except ProcessGone:
        return None
