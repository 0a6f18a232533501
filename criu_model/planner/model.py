"""The plan as data: who is created by whom with which pids, the ordered steps, the problems.

Actors are identified by an int key: a dumped process by its pid in the
snapshot's outermost namespace, the restorer by RESTORER (0), helpers that
need a given pid by that pid (a dead leader's id), and helpers whose pid the
kernel may choose by negative keys (-1, -2, ...).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

RESTORER = 0  # the process that runs the restore (a child subreaper)


class Severity(enum.StrEnum):
    BLOCKER = "blocker"
    WARNING = "warning"


class Action(enum.StrEnum):
    """What one step does; each maps to one or a few syscalls."""

    SUBREAPER = "prctl_set_child_subreaper"
    SETNS_PID = "setns_pid"        # pid_ns_for_children := the namespace of `ns_init`
    SETNS = "setns"                # args: ns (type), holder (actor already in it)
    UNSHARE = "unshare"            # args: flags, flags_value (CLONE_NEW*, user first)
    ACCEPT = "accept"              # args: listener (fd), fd, file, flags: the server end of a
                                   # connection made again by connect() to a listener
    CHDIR = "chdir"                # args: path (the dumped cwd; before its files: a unix
                                   # socket's relative name binds there)
    CLONE = "clone3"               # args: child, set_tid (innermost first), flags
    LAST_PID_CLONE = "ns_last_pid_clone"  # racy fallback: write ns_last_pid then clone
    SETSID = "setsid"
    SETPGID = "setpgid"            # args: pgid (0: own pid), in the actor's namespace
    EXIT = "exit"                  # args: code or signal
    WAIT = "wait"                  # args: child
    OPEN = "open"                  # args: file, fd (service fd), kind, path...
    PIPE = "pipe"                  # args: read_file, write_file, read_fd, write_fd
    SOCKETPAIR = "socketpair"      # args: files, fds
    SEND_FD = "send_fd"            # SCM_RIGHTS: args: file, to, fd (receiver's service fd)
    DUP2 = "dup2"                  # args: old, new
    CLOSE = "close"                # args: fd
    EPOLL_ADD = "epoll_ctl_add"    # args: epfd, tfd
    # POSIX record locks (F_SETLK): they belong to the process, and closing any fd of
    # the file drops them all, so they are taken once the fds are final. args: fd, file,
    # locks, path, kind
    LOCK = "lock"
    TCP_REPAIR = "tcp_repair"      # restore an established (or half-closed) TCP connection
    OPEN_PTY = "open_pty"          # args: index, tty, files/fds (the master first)
    SET_CTTY = "ioctl_tiocsctty"   # args: tty, and fd (held) or path (opened O_NOCTTY)
    DROP_CTTY = "ioctl_tiocnotty"  # a non-leader leaves the controlling tty it inherited
    SET_FG = "tcsetpgrp"           # args: tty, pgid (in the actor's pid namespace)
    MAP_VMAS = "map_vmas"          # args: count, kinds (the address space, after the skeleton)
    FILL_PAGES = "fill_pages"      # args: start, end, stored, inherited, zero, bytes


class CloneFlag(enum.IntFlag):
    """The clone3 flags the planner uses (include/uapi/linux/sched.h)."""

    VM = 0x00000100
    FS = 0x00000200
    FILES = 0x00000400
    SIGHAND = 0x00000800
    THREAD = 0x00010000
    NEWTIME = 0x00000080           # clone3 only (the low byte is the exit signal in clone)
    NEWNS = 0x00020000
    NEWCGROUP = 0x02000000
    NEWUTS = 0x04000000
    NEWIPC = 0x08000000
    NEWUSER = 0x10000000
    NEWPID = 0x20000000
    NEWNET = 0x40000000


# Namespace types other than pid, in creation order: the user namespace first, so
# the others are owned by it (pid namespaces are planned with set_tid, see pids.py).
NS_TYPES: tuple[str, ...] = ("user", "mnt", "uts", "ipc", "net", "cgroup", "time")
NS_FLAG: dict[str, CloneFlag] = {
    "user": CloneFlag.NEWUSER, "mnt": CloneFlag.NEWNS, "uts": CloneFlag.NEWUTS,
    "ipc": CloneFlag.NEWIPC, "net": CloneFlag.NEWNET, "cgroup": CloneFlag.NEWCGROUP,
    "time": CloneFlag.NEWTIME,
}


def flag_names(flags: int) -> list[str]:
    return [f"CLONE_{f.name}" for f in CloneFlag if f.name and flags & f]


@dataclass
class Step:
    actor: int
    action: Action
    args: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"actor": self.actor, "action": str(self.action)}
        out.update(self.args)
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass
class PlannedProcess:
    key: int                    # actor key (see module docstring)
    parent: int                 # key of the process that creates it
    set_tid: list[int]          # kernel order: [0] is the pid in the innermost namespace
    helper: bool = False
    new_pid_ns: bool = False
    reason: str = ""            # why a helper exists
    flags: int = 0              # CloneFlag
    zombie: bool = False

    @property
    def pid(self) -> int:
        """Outermost planned pid (the key for dumped processes)."""
        return self.set_tid[-1] if self.set_tid else self.key


@dataclass
class Problem:
    severity: Severity
    kind: str
    message: str
    fix: str = ""
    pid: int | None = None
    path: str | None = None
    port: int | None = None
    fd: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": str(self.severity), "kind": self.kind,
                               "message": self.message}
        if self.fix:
            out["fix"] = self.fix
        for name in ("pid", "path", "port", "fd"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


@dataclass
class Plan:
    pid_ns: str                                    # "same" or "new"
    processes: dict[int, PlannedProcess] = field(default_factory=dict)  # creation order
    steps: list[Step] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    racy: bool = False                             # ns_last_pid fallback used
    transfers: int = 0                             # SCM_RIGHTS transfers left
    inherited: int = 0                             # fd holders served by fork inheritance
    # What the verdict covers: "skeleton" (processes, files, address-space layout) or
    # "skeleton+memory" (pages, and registers when captured), and what is still missing.
    covers: str = "skeleton"
    lacks: list[str] = field(default_factory=list)

    @property
    def feasible(self) -> bool:
        return not any(p.severity is Severity.BLOCKER for p in self.problems)

    def add(self, actor: int, action: Action, reason: str = "", **args: Any) -> Step:
        step = Step(actor, action, args, reason)
        self.steps.append(step)
        return step

    def problem(self, severity: Severity, kind: str, message: str, **where: Any) -> None:
        self.problems.append(Problem(severity, kind, message, **where))
