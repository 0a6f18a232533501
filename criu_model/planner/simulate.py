"""A pure-Python model of the kernel rules a restore depends on.

It executes plan steps against a tiny process/pid-namespace/fd-table world
and refuses what the kernel refuses (with the kernel's errno), so a plan that
simulates cleanly and ends in the dumped state is a plan the kernel accepts.
Rules modelled (kernel/fork.c, kernel/pid.c, kernel/sys.c, kernel/exit.c):

* fork copies pgid, sid, the fd table (shared with CLONE_FILES) and
  pid_ns_for_children; CLONE_NEWPID makes the child pid 1 of a new namespace.
* clone3 set_tid: [0] is the innermost level; at most one entry per level;
  a level whose namespace has no init yet only accepts 1 (EINVAL); a taken
  number fails with EEXIST; unlisted levels get the next free number.
* setsid() fails (EPERM) when a process group with the caller's id exists.
* setpgid(): only on self or a child that has not exec'd (EACCES), only
  within one session (EPERM), never on a session leader (EPERM), and the
  target group must exist in the same session (EPERM).
* namespaces other than pid: a child inherits its creator's, a CLONE_NEW*
  flag gives it a fresh one, setns() joins another task's; CLONE_NEWUSER
  with CLONE_FS is EINVAL; the other namespaces a clone creates are owned by
  its (possibly new) user namespace; joining any namespace needs CAP_SYS_ADMIN
  in its owning user namespace (the caller's is it or an ancestor); a set_tid number
  needs CAP_CHECKPOINT_RESTORE in the user namespace owning that pid
  namespace level (EPERM), which a process in a child user namespace lacks.
* exit: children go to the nearest child-subreaper ancestor in the same pid
  namespace, else to the namespace init; a zombie keeps its pid, pgid and sid
  until reaped. The root namespace init reaps its zombies at once.
* ttys (drivers/tty/tty_jobctrl.c): the controlling tty is inherited by fork
  and dropped by setsid(); TIOCSCTTY works only for a session leader without
  one, on a tty no other session controls (EPERM); a session leader's exit
  (or TIOCNOTTY) frees it for the whole session; tcsetpgrp() needs a group of
  the tty's session; a pty index exists once (EBUSY).
"""

from __future__ import annotations

import errno
import itertools
from dataclasses import dataclass, field
from typing import Any

from criu_model.planner.model import NS_FLAG, NS_TYPES, RESTORER, Action, CloneFlag, Step

WORLD_INIT = -(10**9)           # key of pid 1 of the root namespace (systemd)
PID_MAX = 4_194_304
_FIRST_FREE = 3_000_000         # where kernel-chosen pids start in the model


class KernelError(Exception):
    """A syscall the modelled kernel refuses; names the step and the errno."""

    def __init__(self, err: int, what: str) -> None:
        self.errno = err
        super().__init__(f"{errno.errorcode.get(err, err)}: {what}")


class PidNs:
    _ids = itertools.count(1)

    def __init__(self, parent: PidNs | None, first_free: int = _FIRST_FREE,
                 owner: int = 0) -> None:
        self.id = next(self._ids)
        self.parent = parent
        self.owner = owner                # the user namespace that owns it
        self.level: int = 0 if parent is None else parent.level + 1
        self.used: dict[int, Pid] = {}
        self.last = first_free if parent is None else 1
        self.reaper: Task | None = None

    def chain(self) -> list[PidNs]:
        out: list[PidNs] = []
        ns: PidNs | None = self
        while ns is not None:
            out.append(ns)
            ns = ns.parent
        return out[::-1]

    def next_free(self) -> int:
        nr = self.last + 1
        while nr in self.used:
            nr += 1
        if nr >= PID_MAX:
            raise KernelError(errno.EAGAIN, f"pid namespace {self.id} is full")
        return nr


class Pid:
    """struct pid: one number per namespace level, alive while referenced."""

    def __init__(self, ns: PidNs, numbers: list[int]) -> None:
        self.ns = ns
        self.numbers = numbers           # outermost first
        self.refs = 0

    def nr_in(self, ns: PidNs) -> int:
        """pid_nr_ns(): 0 when not visible from `ns`."""
        if ns.level > self.ns.level:
            return 0
        chain = self.ns.chain()
        return self.numbers[ns.level] if chain[ns.level] is ns else 0

    def get(self) -> Pid:
        self.refs += 1
        return self

    def put(self) -> None:
        self.refs -= 1
        if self.refs == 0:
            for ns, nr in zip(self.ns.chain(), self.numbers, strict=True):
                ns.used.pop(nr, None)


@dataclass(eq=False)
class FileObj:
    key: int
    targets: set[int] = field(default_factory=set)   # epoll: target file keys
    tty: int = 0                                      # a tty's device (stat tty_nr coding)


@dataclass(eq=False)
class TtyObj:
    """A tty: the session it controls (its leader's pid) and its foreground group."""

    dev: int
    session: Pid | None = None
    fg: Pid | None = None


@dataclass(eq=False)
class Task:
    key: int
    pid: Pid
    ns: PidNs
    ns_children: PidNs
    parent: Task | None
    pgrp: Pid
    session: Pid
    files: dict[int, FileObj]
    fs: object
    sighand: object
    vm: object
    leader: Task | None = None           # thread group leader, None for a leader itself
    children: list[Task] = field(default_factory=list)
    threads: list[Task] = field(default_factory=list)
    zombie: bool = False
    exit_code: int = 0
    subreaper: bool = False
    execed: bool = False
    nsset: dict[str, int] = field(default_factory=lambda: dict.fromkeys(NS_TYPES, 0))
    ctty: TtyObj | None = None           # signal->tty: inherited by fork, cleared by setsid


@dataclass(frozen=True)
class ProcState:
    """What the end-state check compares for one process."""

    ns_pids: tuple[int, ...]
    parent: int
    ns_pgids: tuple[int, ...]
    ns_sids: tuple[int, ...]
    zombie: bool
    exit_code: int
    threads: tuple[tuple[int, ...], ...]
    fds: tuple[tuple[int, int], ...]
    epoll: tuple[tuple[int, tuple[int, ...]], ...]
    ctty: int = 0                        # device of the controlling tty, 0 for none
    tpgid: int | None = -1               # its foreground group (outermost level); None: any


class Simulator:
    """The world: a root namespace with its init, and the restorer (a child of init)."""

    def __init__(self, first_free: int = _FIRST_FREE) -> None:
        self.root_ns = PidNs(None, first_free)
        self.tasks: dict[int, Task] = {}
        self.userns_parent: dict[int, int] = {}     # child user namespace -> its parent
        self.ns_owner: dict[int, int] = {}          # other namespace -> owning user namespace
        self.ttys: dict[int, TtyObj] = {}           # device -> tty
        self._ns_ids = itertools.count(1)          # 0: every initial namespace
        init = self._new_task(WORLD_INIT, None, self.root_ns, [1], files={})
        self.root_ns.reaper = init
        init.pgrp = init.session = init.pid.get().get()
        restorer = self._spawn(init, RESTORER, [], 0)
        restorer.pgrp.put()
        restorer.session.put()
        restorer.pgrp = restorer.session = restorer.pid.get().get()
        # The restorer's own session and group are outside the restored tree: the end
        # state shows them as 0, as a dump shows a session whose leader it cannot see.
        self._outside = restorer.pid
        self.steps_run = 0

    # ------------------------------------------------------------ helpers

    def _userns_covers(self, mine: int, owner: int | None) -> bool:
        """Is `mine` the user namespace `owner` or an ancestor of it (root there has caps)?"""
        cur: int | None = owner
        while cur is not None:
            if cur == mine:
                return True
            cur = self.userns_parent.get(cur)
        return False

    def _alloc(self, ns: PidNs, set_tid: list[int], userns: int = 0) -> Pid:
        chain = ns.chain()
        if len(set_tid) > len(chain):
            raise KernelError(errno.EINVAL, f"set_tid has {len(set_tid)} entries for "
                                            f"{len(chain)} levels")
        numbers = [0] * len(chain)
        for depth, level_ns in enumerate(reversed(chain)):
            wanted = set_tid[depth] if depth < len(set_tid) else 0
            if wanted:
                if not 0 < wanted < PID_MAX:
                    raise KernelError(errno.EINVAL, f"set_tid {wanted} out of range")
                if wanted != 1 and level_ns.reaper is None:
                    raise KernelError(errno.EINVAL, f"set_tid {wanted}: namespace level "
                                                    f"{level_ns.level} has no init yet")
                if not self._userns_covers(userns, level_ns.owner):
                    raise KernelError(errno.EPERM, f"set_tid {wanted}: no "
                                                   "CAP_CHECKPOINT_RESTORE in the user "
                                                   "namespace owning that pid namespace")
                if wanted in level_ns.used:
                    raise KernelError(errno.EEXIST, f"pid {wanted} is in use at level "
                                                    f"{level_ns.level}")
                nr = wanted
            elif level_ns.reaper is None and not level_ns.used:
                nr = 1
            else:
                nr = level_ns.next_free()
            numbers[level_ns.level] = nr
        pid = Pid(ns, numbers)
        for level_ns, nr in zip(chain, numbers, strict=True):
            level_ns.used[nr] = pid
            if level_ns.parent is not None or not wanted:
                level_ns.last = max(level_ns.last, nr)
        return pid

    def _new_task(self, key: int, parent: Task | None, ns: PidNs, set_tid: list[int],
                  files: dict[int, FileObj], userns: int = 0) -> Task:
        """`userns`: the caller's user namespace (set_tid needs capabilities there)."""
        if key in self.tasks:
            raise KernelError(errno.EEXIST, f"actor {key} already exists (planner bug)")
        pid = self._alloc(ns, set_tid, userns).get()
        task = Task(key, pid, ns, ns, parent, pid, pid, files, object(), object(), object())
        self.tasks[key] = task
        return task

    def _new_nsset(self, parent: Task, flags: int) -> dict[str, int]:
        nsset = dict(parent.nsset)
        for ns_type, flag in NS_FLAG.items():   # the user namespace first: it owns the rest
            if flags & flag:
                nsset[ns_type] = next(self._ns_ids)
                if ns_type == "user":
                    self.userns_parent[nsset["user"]] = parent.nsset["user"]
                else:
                    self.ns_owner[nsset[ns_type]] = nsset["user"]
        return nsset

    def owner_of(self, ns_type: str, ns_id: int) -> int | None:
        """The user namespace owning a namespace (a user namespace: its parent)."""
        if ns_type == "user":
            return self.userns_parent.get(ns_id)
        return self.ns_owner.get(ns_id, 0)   # 0: the initial namespaces' owner

    def _spawn(self, parent: Task, key: int, set_tid: list[int], flags: int) -> Task:
        ns = parent.ns_children
        if flags & CloneFlag.NEWUSER and flags & CloneFlag.FS:
            raise KernelError(errno.EINVAL, "CLONE_NEWUSER with CLONE_FS")
        nsset = self._new_nsset(parent, flags)
        if flags & CloneFlag.NEWPID:
            ns = PidNs(ns, owner=nsset["user"])
        files = parent.files if flags & CloneFlag.FILES else dict(parent.files)
        task = self._new_task(key, parent, ns, set_tid, files, parent.nsset["user"])
        task.nsset = nsset
        if flags & CloneFlag.NEWPID:
            ns.reaper = task
        task.fs = parent.fs if flags & CloneFlag.FS else object()
        task.sighand = parent.sighand if flags & CloneFlag.SIGHAND else object()
        task.vm = parent.vm if flags & CloneFlag.VM else object()
        task.pgrp = parent.pgrp.get()
        task.session = parent.session.get()
        task.ctty = parent.ctty
        parent.children.append(task)
        return task

    def task(self, key: int) -> Task:
        task = self.tasks.get(key)
        if task is None or task.zombie:
            raise KernelError(errno.ESRCH, f"actor {key} does not exist or has exited")
        return task

    def _group_exists(self, pgrp_nr: int, ns: PidNs) -> Pid | None:
        pid = ns.used.get(pgrp_nr)
        if pid is None:
            return None
        for t in self.tasks.values():
            if t.pgrp is pid and t.leader is None:
                return pid
        return None

    # ------------------------------------------------------------ syscalls

    def clone(self, actor: int, child: int, set_tid: list[int], flags: int) -> None:
        parent = self.task(actor)
        if flags & CloneFlag.NEWPID and flags & CloneFlag.THREAD:
            raise KernelError(errno.EINVAL, "CLONE_NEWPID with CLONE_THREAD")
        if flags & CloneFlag.THREAD:
            if not flags & CloneFlag.SIGHAND or not flags & CloneFlag.VM:
                raise KernelError(errno.EINVAL, "CLONE_THREAD needs CLONE_SIGHAND|CLONE_VM")
            if parent.ns_children is not parent.ns:
                raise KernelError(errno.EINVAL, "CLONE_THREAD after setns(CLONE_NEWPID)")
            leader = parent.leader or parent
            thread = self._new_task(child, leader.parent, leader.ns, set_tid, leader.files,
                                    parent.nsset["user"])
            thread.leader, thread.fs, thread.sighand, thread.vm = (
                leader, leader.fs, leader.sighand, leader.vm)
            thread.pgrp, thread.session = leader.pgrp.get(), leader.session.get()
            thread.nsset = leader.nsset
            leader.threads.append(thread)
            return
        if flags & CloneFlag.SIGHAND and not flags & CloneFlag.VM:
            raise KernelError(errno.EINVAL, "CLONE_SIGHAND needs CLONE_VM")
        self._spawn(parent.leader or parent, child, set_tid, flags)

    def last_pid_clone(self, actor: int, child: int, pid: int, flags: int) -> None:
        parent = self.task(actor)
        ns = parent.ns_children if not flags & CloneFlag.NEWPID else None
        if ns is not None:
            ns.last = pid - 1
        self.clone(actor, child, [], flags)

    def setns_pid(self, actor: int, ns_init: int) -> None:
        task = self.task(actor)
        target = self.task(ns_init).ns
        if task.ns not in target.chain():
            raise KernelError(errno.EINVAL, "setns into a pid namespace that is not ours "
                                            "or a descendant")
        task.ns_children = target

    def setns(self, actor: int, ns_type: str, holder: int) -> None:
        task = self.task(actor)
        target = self.task(holder).nsset[ns_type]
        if ns_type == "user" and not self._userns_covers(task.nsset["user"], target):
            raise KernelError(errno.EPERM, f"setns user by {actor}: no CAP_SYS_ADMIN in "
                                           f"{holder}'s user namespace")
        if ns_type == "user" and task.threads:
            raise KernelError(errno.EINVAL, f"setns user by {actor}: it is multithreaded")
        if ns_type != "user" and not self._userns_covers(task.nsset["user"],
                                                         self.owner_of(ns_type, target)):
            raise KernelError(errno.EPERM, f"setns {ns_type} by {actor}: no CAP_SYS_ADMIN in "
                                           f"the user namespace owning {holder}'s {ns_type} "
                                           "namespace")
        task.nsset[ns_type] = target

    def unshare(self, actor: int, flags: int) -> None:
        """unshare(CLONE_NEW*): fresh namespaces for the caller, the user one first."""
        task = self.task(actor)
        if flags & CloneFlag.NEWUSER:
            if task.threads:
                raise KernelError(errno.EINVAL, f"unshare user by {actor}: it is multithreaded")
            if any(t is not task and t.fs is task.fs for t in self.tasks.values()):
                raise KernelError(errno.EINVAL, f"unshare user by {actor}: its fs is shared")
        if flags & ~sum(NS_FLAG.values()):
            raise KernelError(errno.EINVAL, f"unshare by {actor}: flags {flags:#x}")
        task.nsset = self._new_nsset(task, flags)

    def setsid(self, actor: int) -> None:
        task = self.task(actor)
        own = task.pid
        if self._group_exists(own.nr_in(task.ns), task.ns) is own:
            raise KernelError(errno.EPERM, f"setsid by {actor}: it is a process group leader")
        task.session.put()
        task.pgrp.put()
        task.session = own.get()
        task.pgrp = own.get()
        task.ctty = None    # setsid() leaves the controlling tty (proc_clear_tty)

    def setpgid(self, actor: int, target_key: int, pgid: int) -> None:
        caller = self.task(actor)
        target = self.task(target_key)
        if target is not caller:
            if target.parent is not caller:
                raise KernelError(errno.ESRCH, f"setpgid: {target_key} is not {actor}'s child")
            if target.session is not caller.session:
                raise KernelError(errno.EPERM, "setpgid: child in another session")
            if target.execed:
                raise KernelError(errno.EACCES, "setpgid: the child has exec'd")
        if target.session is target.pid:
            raise KernelError(errno.EPERM, f"setpgid: {target_key} is a session leader")
        if pgid == 0 or caller.ns.used.get(pgid) is target.pid:
            group = target.pid
        else:
            group = self._group_in_session(pgid, caller.ns, target.session, "setpgid",
                                           errno.EPERM)
        target.pgrp.put()
        target.pgrp = group.get()

    def subreaper(self, actor: int) -> None:
        self.task(actor).subreaper = True

    def _reaper_for(self, father: Task) -> Task:
        ns = father.ns
        up = father.parent
        while up is not None and up is not ns.reaper and up.ns is ns:
            if up.subreaper and not up.zombie:
                return up
            up = up.parent
        if ns.reaper is None or ns.reaper is father:
            raise KernelError(errno.EINVAL, f"{father.key} is the init of its namespace: "
                                            "its exit would kill the namespace")
        return ns.reaper

    def exit(self, actor: int, code: int) -> None:
        task = self.task(actor)
        if task.leader is not None:
            raise KernelError(errno.EINVAL, "the planner only exits whole processes")
        for thread in task.threads:
            self._release(thread)
        task.threads.clear()
        if task.children:
            reaper = self._reaper_for(task)
            for child in task.children:
                child.parent = reaper
                reaper.children.append(child)
            task.children = []
            if reaper.key == WORLD_INIT:
                for child in [c for c in reaper.children if c.zombie]:
                    self._reap(reaper, child)
        if task.session is task.pid and task.ctty is not None:
            self._disassociate(task)   # a session leader's exit frees its tty
        task.zombie = True
        task.exit_code = code
        task.files = {}
        if task.parent is not None and task.parent.key == WORLD_INIT:
            self._reap(task.parent, task)

    def _release(self, task: Task) -> None:
        task.pid.put()
        task.pgrp.put()
        task.session.put()
        del self.tasks[task.key]

    def _reap(self, parent: Task, child: Task) -> None:
        parent.children.remove(child)
        self._release(child)

    def wait(self, actor: int, child_key: int) -> None:
        parent = self.task(actor)
        child = self.tasks.get(child_key)
        if child is None or child.parent is not parent or not child.zombie:
            raise KernelError(errno.ECHILD, f"wait: {child_key} is not a zombie child of {actor}")
        self._reap(parent, child)

    # ------------------------------------------------------------ files

    def _install(self, task: Task, fd: int, obj: FileObj) -> None:
        if fd in task.files:
            raise KernelError(errno.EBUSY, f"fd {fd} of {task.key} is taken (planner bug)")
        task.files[fd] = obj

    def _fd(self, task: Task, fd: int) -> FileObj:
        obj = task.files.get(fd)
        if obj is None:
            raise KernelError(errno.EBADF, f"fd {fd} is not open in {task.key}")
        return obj

    # ------------------------------------------------------------ ttys

    def open_pty(self, actor: int, dev: int, keys: list[int], fds: list[int]) -> None:
        """open /dev/ptmx until it yields the index, then open the slave files.

        keys[0] is the master: TIOCSCTTY on it would take the master side, not
        this tty, so only the slave files count as this tty.
        """
        task = self.task(actor)
        if dev in self.ttys:
            raise KernelError(errno.EBUSY, f"pty {dev:#x} already exists: its index is taken")
        self.ttys[dev] = TtyObj(dev)
        for i, (key, fd) in enumerate(zip(keys, fds, strict=True)):
            self._install(task, fd, FileObj(key, tty=dev if i else 0))

    def _tty_fd(self, task: Task, fd: int | None, path_dev: int, host: bool) -> TtyObj:
        if fd is not None:
            dev = self._fd(task, fd).tty
            if not dev:
                raise KernelError(errno.ENOTTY, f"fd {fd} of {task.key} is not a tty")
        else:
            dev = path_dev
            if host and dev not in self.ttys:
                self.ttys[dev] = TtyObj(dev)   # a tty of this machine, opened by path
        tty = self.ttys.get(dev)
        if tty is None:
            raise KernelError(errno.ENOENT, f"tty {dev:#x} does not exist yet")
        return tty

    def set_ctty(self, actor: int, fd: int | None, dev: int, host: bool = False) -> None:
        """ioctl(TIOCSCTTY, 0): only a session leader without one, on a free tty."""
        task = self.task(actor)
        tty = self._tty_fd(task, fd, dev, host)
        if task.session is not task.pid:
            raise KernelError(errno.EPERM, f"TIOCSCTTY by {actor}: not a session leader")
        if task.ctty is not None:
            raise KernelError(errno.EPERM, f"TIOCSCTTY by {actor}: it has a controlling tty")
        if tty.session is not None:
            raise KernelError(errno.EPERM, f"TIOCSCTTY by {actor}: tty {dev:#x} controls "
                                           "another session")
        task.ctty, tty.session, tty.fg = tty, task.session, task.pgrp

    def drop_ctty(self, actor: int) -> None:
        """ioctl(TIOCNOTTY) on /dev/tty: a leader would free it for its whole session."""
        task = self.task(actor)
        if task.ctty is None:
            raise KernelError(errno.ENOTTY, f"TIOCNOTTY by {actor}: no controlling tty")
        if task.session is task.pid:
            self._disassociate(task)
        task.ctty = None

    def _disassociate(self, leader: Task) -> None:
        tty = leader.ctty
        for t in self.tasks.values():
            if t.session is leader.session and t.ctty is tty:
                t.ctty = None
        if tty is not None:
            tty.session = tty.fg = None

    def set_fg(self, actor: int, pgid: int) -> None:
        """tcsetpgrp on the controlling tty: the group must be in the tty's session."""
        task = self.task(actor)
        tty = task.ctty
        if tty is None or tty.session is not task.session:
            raise KernelError(errno.ENOTTY, f"tcsetpgrp by {actor}: no controlling tty")
        tty.fg = self._group_in_session(pgid, task.ns, task.session, "tcsetpgrp", errno.ESRCH)

    def _group_in_session(self, pgid: int, ns: PidNs, session: Pid, call: str,
                          missing: int) -> Pid:
        """Group `pgid` as `ns` numbers it; setpgid and tcsetpgrp both refuse (EPERM) a
        group of another session, and differ only in the errno for a missing one."""
        group = self._group_exists(pgid, ns)
        if group is None:
            raise KernelError(missing, f"{call}: no process group {pgid}")
        owner = next(t for t in self.tasks.values() if t.pgrp is group)
        if owner.session is not session:
            raise KernelError(errno.EPERM, f"{call}: group {pgid} is in another session")
        return group

    def run(self, step: Step) -> None:
        """Execute one step; KernelError when the kernel would refuse it."""
        a = step.args
        act = step.action
        self.steps_run += 1
        if act is Action.CLONE:
            self.clone(step.actor, a["child"], list(a["set_tid"]), a.get("flags_value", 0))
        elif act is Action.LAST_PID_CLONE:
            self.last_pid_clone(step.actor, a["child"], a["pid"], a.get("flags_value", 0))
        elif act is Action.SETSID:
            self.setsid(step.actor)
        elif act is Action.SETPGID:
            self.setpgid(step.actor, a.get("target", step.actor), a["pgid"])
        elif act is Action.SETNS:
            self.setns(step.actor, a["ns"], a["holder"])
        elif act is Action.UNSHARE:
            self.unshare(step.actor, a["flags_value"])
        elif act is Action.SETNS_PID:
            self.setns_pid(step.actor, a["ns_init"])
        elif act is Action.SUBREAPER:
            self.subreaper(step.actor)
        elif act is Action.EXIT:
            task = self.task(step.actor)
            if a.get("signal") and a.get("by") != "parent" and task.ns.parent is not None \
                    and task.ns.reaper is task:
                # kernel/signal.c: SIGNAL_UNKILLABLE; found by rehearsing (simtrees seed 52)
                raise KernelError(errno.EPERM, "a pid-namespace init ignores a signal it "
                                  "sends itself: its parent must send it")
            self.exit(step.actor, a.get("status", 0))
        elif act is Action.WAIT:
            self.wait(step.actor, a["child"])
        elif act in (Action.OPEN, Action.TCP_REPAIR):
            dev = int(a.get("tty", 0))
            if dev and dev not in self.ttys:
                self.ttys[dev] = TtyObj(dev)     # a tty that exists on the host
            self._install(self.task(step.actor), a["fd"], FileObj(a["file"], tty=dev))
        elif act is Action.OPEN_PTY:
            self.open_pty(step.actor, int(a["tty"]), list(a["files"]), list(a["fds"]))
        elif act is Action.SET_CTTY:
            self.set_ctty(step.actor, a.get("fd"), int(a["tty"]), bool(a.get("host")))
        elif act is Action.DROP_CTTY:
            self.drop_ctty(step.actor)
        elif act is Action.SET_FG:
            self.set_fg(step.actor, a["pgid"])
        elif act in (Action.PIPE, Action.SOCKETPAIR):
            task = self.task(step.actor)
            for key, fd in zip(a["files"], a["fds"], strict=True):
                self._install(task, fd, FileObj(key))
        elif act is Action.SEND_FD:
            obj = self._fd(self.task(step.actor), a["fd"])
            self._install(self.task(a["to"]), a["to_fd"], obj)
        elif act is Action.DUP2:
            task = self.task(step.actor)
            task.files[a["new"]] = self._fd(task, a["old"])
        elif act is Action.CLOSE:
            task = self.task(step.actor)
            self._fd(task, a["fd"])
            del task.files[a["fd"]]
        elif act is Action.ACCEPT:
            task = self.task(step.actor)
            self._fd(task, a["listener"])          # the listener is held
            self._install(task, a["fd"], FileObj(a["file"]))
        elif act is Action.CHDIR:
            self.task(step.actor)   # the working directory is not modeled: it must exist
        elif act is Action.LOCK:
            self._fd(self.task(step.actor), a["fd"])   # locks are not modeled: the fd exists
        elif act is Action.EPOLL_ADD:
            task = self.task(step.actor)
            self._fd(task, a["epfd"]).targets.add(self._fd(task, a["tfd"]).key)
        elif act in (Action.MAP_VMAS, Action.FILL_PAGES):
            self.task(step.actor)  # memory is not modeled: the actor must merely exist
        else:
            raise KernelError(errno.ENOSYS, f"unknown action {act}")

    # ------------------------------------------------------------ end state

    def state(self, level_offset: int = 0) -> dict[int, ProcState]:
        """Per process (thread group leader) key: what the check compares.

        Numbers are per namespace level from the snapshot's outermost level,
        which is world level `level_offset` (1 when restoring into a new pid ns).
        """
        out: dict[int, ProcState] = {}
        for task in self.tasks.values():
            if task.leader is not None:
                continue
            chain = task.ns.chain()[level_offset:]
            pids = tuple(task.pid.numbers[level_offset:])
            out[task.key] = ProcState(
                ns_pids=pids,
                parent=task.parent.key if task.parent is not None else WORLD_INIT,
                ns_pgids=tuple(self._nr(task.pgrp, ns) for ns in chain),
                ns_sids=tuple(self._nr(task.session, ns) for ns in chain),
                zombie=task.zombie,
                exit_code=task.exit_code,
                threads=tuple(tuple(t.pid.numbers[level_offset:]) for t in task.threads),
                fds=tuple(sorted((fd, obj.key) for fd, obj in task.files.items())),
                epoll=tuple(sorted((obj.key, tuple(sorted(obj.targets)))
                                   for obj in task.files.values() if obj.targets)),
                ctty=task.ctty.dev if task.ctty is not None and not task.zombie else 0,
                tpgid=self._tpgid(task, chain[0] if chain else None),
            )
        return out

    def _nr(self, pid: Pid, ns: PidNs) -> int:
        return 0 if pid is self._outside else pid.nr_in(ns)

    @staticmethod
    def _tpgid(task: Task, ns: PidNs | None) -> int:
        """stat field 8: the foreground group as the outermost level sees it, -1 without."""
        if task.zombie or task.ctty is None or ns is None:
            return -1
        return task.ctty.fg.nr_in(ns) if task.ctty.fg is not None else 0

    def sharing(self) -> dict[str, dict[int, int]]:
        """kind -> key -> identity of the shared object (id()), for leaders only."""
        out: dict[str, dict[int, int]] = {"files": {}, "fs": {}, "sighand": {}, "vm": {}}
        for task in self.tasks.values():
            if task.leader is None and not task.zombie:
                out["files"][task.key] = id(task.files)
                out["fs"][task.key] = id(task.fs)
                out["sighand"][task.key] = id(task.sighand)
                out["vm"][task.key] = id(task.vm)
        return out


    def namespaces(self) -> dict[str, dict[int, int]]:
        """ns type -> live leader key -> namespace id (ids only mean identity)."""
        out: dict[str, dict[int, int]] = {t: {} for t in NS_TYPES}
        for task in self.tasks.values():
            if task.leader is None and not task.zombie:
                for ns_type in NS_TYPES:
                    out[ns_type][task.key] = task.nsset[ns_type]
        return out


def simulate(steps: list[Step]) -> Simulator:
    """Run every step; KernelError names the first one the kernel would refuse."""
    sim = Simulator()
    for index, step in enumerate(steps):
        try:
            sim.run(step)
        except KernelError as err:
            raise KernelError(err.errno, f"step {index} ({step.actor}: {step.action} "
                                         f"{_short(step.args)}): {err}") from err
    return sim


def _short(args: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in list(args.items())[:4])
