"""One exception hierarchy for everything criu-model raises on purpose.

The CLI catches :class:`CriuModelError` and prints ``str(err)`` as one line;
anything else escaping is a bug and shows a traceback.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager


class CriuModelError(Exception):
    """Base of every error criu-model raises deliberately."""


class ProcessGone(CriuModelError):
    """The process vanished (ESRCH, or its /proc entry disappeared mid-read)."""

    def __init__(self, pid: int, detail: str = "") -> None:
        self.pid = pid
        msg = f"process {pid} is gone"
        super().__init__(f"{msg}: {detail}" if detail else msg)


class AccessDenied(CriuModelError):
    """EPERM/EACCES: the message says which capability or ptrace rule is missing."""

    def __init__(self, pid: int | None, what: str, why: str) -> None:
        self.pid = pid
        self.what = what
        self.why = why
        who = f"process {pid}: " if pid is not None else ""
        super().__init__(f"{who}permission denied for {what}: {why}")


class KernelUnsupported(CriuModelError):
    """A kernel feature we need is missing; names the feature and version/config."""

    def __init__(self, feature: str, detail: str) -> None:
        self.feature = feature
        super().__init__(f"kernel lacks {feature}: {detail}")


class UsageError(CriuModelError):
    """The caller asked for something that cannot be done (bad pid text, existing dir)."""


class BadArgument(UsageError):
    """A command-line value that is not what it must be (not a pid, beyond pid_max).

    The CLI exits 2 for it, as argparse does for its own usage errors.
    """


class TargetBusy(CriuModelError):
    """Someone else holds the target (another tracer, another dumper's cgroup lock)."""

    def __init__(self, message: str, holder: int | None = None) -> None:
        self.holder = holder  # the other holder's pid, when known
        super().__init__(message)


class AlreadyFrozen(TargetBusy):
    """The tree's cgroup was frozen before us: not ours to thaw behind the owner's back."""

    def __init__(self, message: str, cgroup: str, holder: int | None = None) -> None:
        self.cgroup = cgroup
        super().__init__(message, holder)


class ImageError(CriuModelError):
    """A snapshot image is unreadable; always names the file and byte offset."""

    def __init__(self, path: str, offset: int | None, detail: str) -> None:
        self.path = path
        self.offset = offset
        where = f"{path}" if offset is None else f"{path} at byte {offset}"
        super().__init__(f"{where}: {detail}")


class BadMagic(ImageError):
    """The file does not start with our magic, or has an unsupported version."""


class TruncatedImage(ImageError):
    """The file ends before its framing says it should."""


class InconsistentImage(ImageError):
    """Entries parse, but refer to things that do not exist or contradict each other."""


# ptrace(2): root still needs CAP_SYS_PTRACE and the target must not be pid 1
# of our own namespace under yama/lockdown, etc. The hint is shown to the user.
PTRACE_HINT = (
    "needs CAP_SYS_PTRACE or same uid, and the target must allow ptrace "
    "(yama ptrace_scope, not a kernel thread, not init of a protected namespace)"
)


def from_oserror(err: OSError, pid: int, what: str) -> CriuModelError:
    """The one translation of an OSError met while reading /proc/PID/... .

    ENOENT/ESRCH mean the whole process is gone: a single vanished fd is the
    caller's business (it catches FileNotFoundError itself, before this).
    """
    if isinstance(err, ProcessLookupError) or err.errno == errno.ESRCH:
        return ProcessGone(pid, what)
    if isinstance(err, FileNotFoundError):
        return ProcessGone(pid, f"{what} vanished")
    if isinstance(err, PermissionError):
        return AccessDenied(pid, what, PTRACE_HINT)
    return CriuModelError(f"process {pid}: reading {what}: {err.strerror}")


@contextmanager
def translate_oserror(pid: int, what: str) -> Iterator[None]:
    """`from_oserror` as a context manager, for code off the hot path."""
    try:
        yield
    except OSError as err:
        raise from_oserror(err, pid, what) from err


class NotCaptured(CriuModelError):
    """Memory asked for that the snapshot does not hold (outside every VMA, or not stored)."""
