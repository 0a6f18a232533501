"""Controlling ttys: who takes which tty with TIOCSCTTY, who drops it, the foreground group.

The kernel keeps the controlling tty per process (signal->tty): fork copies
it, setsid() drops it, and only a session leader without one may take a tty
that no other session controls. So a leader takes its tty right after its
setsid(), before it forks the members that have it (they inherit it); a
process that must end without it drops it (TIOCNOTTY) once creation is over,
after it forked its own children; the leader sets the foreground group
(tcsetpgrp) when every group exists. A session whose leader is not alive in
the snapshot cannot take a tty (a shell job whose shell was not dumped, or a
dead leader, which freed the tty for the whole session): left without one,
with a warning.

Devices are numbered as /proc/PID/stat prints tty_nr (new_encode_dev).
"""

from __future__ import annotations

from collections.abc import Callable

from criu_model.images.pb import files_pb2
from criu_model.kernel.devnum import encode_dev, pts_device
from criu_model.kernel.devnum import tty_name as short_tty_name
from criu_model.planner.model import Action, CloneFlag, Plan, Severity
from criu_model.snapshot import Snapshot

NO_TPGID = -1


def is_pty(tty: files_pb2.Tty) -> bool:
    return tty.driver in ("pts", "ptmx") and tty.HasField("index")


def tty_device(tty: files_pb2.Tty) -> int:
    """The tty a tty fd refers to (a pty master: its slave side); 0 for /dev/tty.

    /dev/tty is an alias of the opener's controlling tty, not a tty of its own.
    """
    if is_pty(tty):
        return pts_device(tty.index)
    if tty.driver == "ctty":
        return 0
    return encode_dev(tty.rdev_major, tty.rdev_minor)


def tty_name(dev: int) -> str:
    """A tty's path when it has a well-known one (/dev/pts/N, /dev/tty1), else MAJOR:MINOR."""
    name = short_tty_name(dev)
    return name if ":" in name else f"/dev/{name}"


def planned_cttys(snap: Snapshot) -> dict[int, tuple[int, int | None]]:
    """Per process: the (controlling tty, foreground group) the restore reproduces.

    tpgid None: not comparable (an old snapshot without it, or a foreground
    group no process of the snapshot is in, which no step can recreate).
    """
    groups = {p.pgid for p in snap.processes if p.state != "Z"}
    out: dict[int, tuple[int, int | None]] = {}
    for proc in snap.processes:
        leader = snap.by_pid.get(proc.sid)
        if proc.state == "Z" or not proc.tty_nr or leader is None or leader.state == "Z":
            out[proc.pid] = (0, NO_TPGID)
            continue
        tpgid = proc.tpgid if proc.HasField("tpgid") and proc.tpgid in groups else None
        out[proc.pid] = (proc.tty_nr, tpgid)
    return out


class CttyPlan:
    """Adds the TIOCSCTTY / TIOCNOTTY / tcsetpgrp steps to a plan being built."""

    def __init__(self, snap: Snapshot, plan: Plan,
                 tty_source: Callable[[int, int], dict[str, object] | None]) -> None:
        """tty_source(pid, dev): how `pid` reaches tty `dev` now ({"fd": n} or
        {"path": p, "host": bool}), or None when the tty does not exist yet."""
        self.snap = snap
        self.plan = plan
        self.tty_source = tty_source
        self.want = planned_cttys(snap)
        self.failed = False   # a leader cannot take its tty: the plan is partial
        self.leaders = {p.pid: p.tty_nr for p in snap.processes
                        if p.sid == p.pid and self.want[p.pid][0]}
        self._lost_warnings()

    def _lost_warnings(self) -> None:
        lost: dict[int, list[int]] = {}
        for proc in self.snap.processes:
            if proc.tty_nr and proc.state != "Z" and not self.want[proc.pid][0]:
                lost.setdefault(proc.sid, []).append(proc.pid)
        for sid, pids in sorted(lost.items()):
            dev = self.snap.by_pid[pids[0]].tty_nr
            self.plan.problem(
                Severity.WARNING, "ctty-not-restored",
                f"{tty_name(dev)} is the controlling tty of session {sid} "
                f"(pids {', '.join(map(str, pids))}), whose leader is not alive in the "
                "snapshot: only a session leader can take a tty, so they end without one",
                fix="dump from the session leader (e.g. the shell) to keep the terminal",
                pid=pids[0])
        for proc in self.snap.processes:
            if self.want[proc.pid][0] and proc.HasField("tpgid") \
                    and self.want[proc.pid][1] is None and proc.pid == proc.sid:
                self.plan.problem(
                    Severity.WARNING, "tty-foreground-gone",
                    f"the foreground group {proc.tpgid} of {tty_name(proc.tty_nr)} has no "
                    "process in the snapshot: the leader's group is left in the foreground",
                    pid=proc.pid)

    def on_settled(self, pid: int) -> None:
        """After `pid`'s setsid(), before it forks its session's members."""
        dev = self.leaders.get(pid)
        if not dev:
            return
        source = self.tty_source(pid, dev)
        if source is None:
            self.plan.problem(
                Severity.BLOCKER, "ctty-order",
                f"session leader {pid} must take {tty_name(dev)} before it forks its "
                "session, but the pty's master is opened later in the plan",
                fix="not supported yet: the pty would have to be created earlier", pid=pid)
            self.failed = True
            return
        how = "an fd it holds" if "fd" in source else "open O_NOCTTY, then close"
        self.plan.add(pid, Action.SET_CTTY, tty=dev, name=tty_name(dev), **source,
                      reason=f"controlling tty of session {pid} ({how}), before its "
                             "members are forked")

    def finish(self) -> None:
        """TIOCNOTTY where a process inherited a tty it must not have; tcsetpgrp."""
        have = self._track()
        for proc in self.snap.processes:
            if proc.state == "Z":
                continue
            if have.get(proc.pid, 0) and not self.want[proc.pid][0]:
                self.plan.add(proc.pid, Action.DROP_CTTY, tty=have[proc.pid],
                              reason="inherited a controlling tty the dump does not show: "
                                     "open /dev/tty, TIOCNOTTY, close")
        for pid, dev in self.leaders.items():
            tpgid = self.want[pid][1]
            if tpgid is None or tpgid == NO_TPGID or have.get(pid) != dev:
                continue
            leader = self.snap.by_pid[pid]
            if tpgid == leader.pgid:
                continue   # its own group: TIOCSCTTY already made it the foreground
            depth = max(len(leader.ns_pids) - 1, 0)
            member = next(p for p in self.snap.processes if p.pgid == tpgid)
            number = member.ns_pgids[depth] if depth < len(member.ns_pgids) else tpgid
            if not number:
                continue   # not visible from the leader's namespace: left as is
            self.plan.add(pid, Action.SET_FG, tty=dev, pgid=number,
                          reason=f"foreground group of {tty_name(dev)} (SIGTTOU blocked)")

    def _track(self) -> dict[int, int]:
        """Each actor's controlling tty after the steps planned so far."""
        have: dict[int, int] = {}
        for step in self.plan.steps:
            a = step.args
            if step.action in (Action.CLONE, Action.LAST_PID_CLONE):
                if not int(a.get("flags_value", 0)) & CloneFlag.THREAD:
                    have[a["child"]] = have.get(step.actor, 0)
            elif step.action is Action.SETSID:
                have[step.actor] = 0
            elif step.action is Action.SET_CTTY:
                have[step.actor] = int(a["tty"])
            elif step.action is Action.DROP_CTTY:
                have[step.actor] = 0
        return have
