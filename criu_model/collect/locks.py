"""Parse file-lock lines: /proc/locks and the ``lock:`` lines of fdinfo.

Both come from fs/locks.c ``lock_get_status()``, one lock per line::

    ID: [-> ]TYPE QUALIFIER MODE PID MAJ:MIN:INO START END

``TYPE`` is POSIX, FLOCK, OFDLCK, LEASE, DELEG (ACCESS and UNKNOWN on some
kernels); ``QUALIFIER`` is ADVISORY (MANDATORY before Linux 5.15 removed
mandatory locking; ACTIVE/BREAKING/BREAKER for leases; *NOINODE*); ``MODE`` is
READ, WRITE or UNLCK; ``PID`` is -1 for OFD locks; ``MAJ:MIN`` are hex and
``INO`` decimal (``<none>:0`` without an inode); ``END`` is ``EOF`` for a lock
to the end of the file. A ``->`` marks a request blocked on the lock above it.
Fdinfo prints the same text after ``lock:\\t`` for the locks set through that
open file, so one parser serves both. We parse from both ends because the
middle columns changed across kernels.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from criu_model.collect.procfs import read_all
from criu_model.errors import CriuModelError, KernelUnsupported
from criu_model.images.pb import files_pb2

_TYPES: dict[bytes, int] = {
    b"POSIX": files_pb2.LOCK_POSIX,
    b"ACCESS": files_pb2.LOCK_POSIX,   # an F_ACCESS probe (old kernels), POSIX family
    b"FLOCK": files_pb2.LOCK_FLOCK,
    b"OFDLCK": files_pb2.LOCK_OFD,
    b"LEASE": files_pb2.LOCK_LEASE,
    b"DELEG": files_pb2.LOCK_DELEG,
}
_MODES: dict[bytes, int] = {
    b"READ": files_pb2.LOCK_READ,
    b"WRITE": files_pb2.LOCK_WRITE,
    b"UNLCK": files_pb2.LOCK_UNLCK,
}
_BLOCKED = b"->"
_MANDATORY = b"MANDATORY"
_EOF = b"EOF"
_NO_INODE = b"<none>"
_TAIL_FIELDS = 4  # PID DEV START END


def _parse_dev_ino(text: bytes) -> tuple[int, int]:
    """``fe:00:2162859`` -> (st_dev encoding, inode); ``<none>:0`` -> (0, 0)."""
    if text.startswith(_NO_INODE):
        return 0, 0
    major, minor, ino = text.split(b":")
    return os.makedev(int(major, 16), int(minor, 16)), int(ino)


def parse_lock_line(line: bytes) -> files_pb2.FileLock:
    """Parse one lock line with or without its ``ID:`` prefix; ValueError if malformed."""
    text = line.strip()
    head, sep, rest = text.partition(b": ")
    if sep and head.isdigit():
        text = rest.strip()
    tokens = text.split()
    lock = files_pb2.FileLock(raw=text.decode("ascii", "backslashreplace"))
    while tokens and tokens[0] == _BLOCKED:
        lock.blocked = True
        tokens.pop(0)
    if len(tokens) < 2 + _TAIL_FIELDS:
        raise ValueError(f"lock line has too few fields: {line!r}")
    kind, *middle = tokens[: -_TAIL_FIELDS]
    pid, dev_ino, start, end = tokens[-_TAIL_FIELDS:]
    lock.type = _TYPES.get(kind, files_pb2.LOCK_OTHER)
    lock.mode = _MODES.get(middle[-1], files_pb2.LOCK_MODE_UNSPECIFIED)
    lock.mandatory = _MANDATORY in middle
    lock.pid = int(pid)
    lock.dev, lock.ino = _parse_dev_ino(dev_ino)
    lock.start = int(start)
    if end == _EOF:
        lock.to_eof = True
    else:
        lock.end = int(end)
    return lock


def parse_proc_locks(data: bytes) -> list[files_pb2.FileLock]:
    """Every line of /proc/locks, waiters included (``blocked``)."""
    return [parse_lock_line(line) for line in data.splitlines() if line.strip()]


def read_proc_locks(proc_root: str = "/proc") -> list[files_pb2.FileLock]:
    """Read /proc/locks once per dump (it lists the locks of the whole system)."""
    try:
        data = read_all(f"{proc_root}/locks")
    except FileNotFoundError as err:
        raise KernelUnsupported("/proc/locks", "kernel built without CONFIG_FILE_LOCKING") from err
    except OSError as err:
        raise CriuModelError(f"reading /proc/locks: {err.strerror}") from err
    return parse_proc_locks(data)


def waiting_locks(locks: Iterable[files_pb2.FileLock], pid: int) -> list[files_pb2.FileLock]:
    """The lock requests process ``pid`` is blocked on (fdinfo shows only held locks)."""
    return [lock for lock in locks if lock.blocked and lock.pid == pid]


# Blocking lock calls, by machine: (fcntl, flock) syscall numbers. A thread
# waiting for a lock sleeps in one of them: fcntl with F_SETLKW (7) or
# F_OFD_SETLKW (38), or flock without LOCK_NB (4).
_LOCK_SYSCALLS = {"x86_64": (72, 73), "aarch64": (25, 32)}
_F_SETLKW, _F_OFD_SETLKW, _LOCK_NB = 7, 38, 4


def may_wait_for_locks(pids: Iterable[int], proc_root: str = "/proc") -> bool:
    """Whether a thread of ``pids`` may be sleeping in a blocking lock call.

    /proc/locks costs an RCU grace period per read (fs/locks.c locks_start()
    takes file_rwsem for writing: 6-20 ms measured on 6.18, even when it is
    empty), so a dump reads it only when a thread sits in fcntl(F_SETLKW,
    F_OFD_SETLKW) or flock() without LOCK_NB, as /proc/TID/syscall says
    (read-only; a few µs per thread). When that cannot be told (an unknown
    machine, a file we may not read) the answer is True: read /proc/locks.
    """
    numbers = _LOCK_SYSCALLS.get(os.uname().machine)
    if numbers is None:
        return True
    fcntl_nr, flock_nr = numbers
    for pid in pids:
        try:
            tids = os.listdir(f"{proc_root}/{pid}/task")
        except FileNotFoundError:
            continue  # gone: the freeze will say so
        except OSError:
            return True
        for tid in tids:
            try:
                words = read_all(f"{proc_root}/{pid}/task/{tid}/syscall", single=True).split()
            except FileNotFoundError:
                continue
            except OSError:
                return True
            if len(words) < 3 or not words[0].isdigit():
                continue  # "running", or "-1 SP PC": not in a syscall
            nr, arg1 = int(words[0]), int(words[2], 16)
            if nr == fcntl_nr and arg1 in (_F_SETLKW, _F_OFD_SETLKW):
                return True
            if nr == flock_nr and not arg1 & _LOCK_NB:
                return True
    return False
