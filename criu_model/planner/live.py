"""Dry run against this machine: read-only checks of what the restore would meet.

Nothing here changes the system except binding a socket to a port for an
instant (closed at once) to learn whether the port is taken.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

from criu_model.collect.mountinfo import MountinfoParseError, parse_mountinfo
from criu_model.collect.stat import StatParseError, parse_stat
from criu_model.features import probe_clone3_set_tid, probe_kcmp, probe_pidfd
from criu_model.images.pb import files_pb2, sockets_pb2
from criu_model.kernel.fhandle import open_by_handle
from criu_model.planner.model import NS_FLAG, Action, CloneFlag, Plan, Severity
from criu_model.planner.nsorder import host_namespaces
from criu_model.planner.simulate import PID_MAX
from criu_model.snapshot import Snapshot

CAP_DAC_READ_SEARCH = 2
CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
CAP_CHECKPOINT_RESTORE = 40  # Linux 5.9
TCP_LISTEN = 10
_NS_TYPES = ("user", "pid", "mnt", "net", "ipc", "uts", "cgroup", "time")


def set_tid_available(plan: Plan) -> bool:
    feature = probe_clone3_set_tid()[1]
    if not feature.available:
        plan.problem(Severity.WARNING, "kernel-feature",
                     f"clone3 set_tid is missing ({feature.detail}): falling back to "
                     "ns_last_pid", fix="use Linux 5.5 or later")
    return feature.available


def _pid_max() -> int:
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        return PID_MAX


def _pids_in_use(cttys: dict[int, int] | None = None) -> set[int]:
    """Every pid number alive here, as a task, a thread, a group or a session id.

    cttys: filled with each controlled tty's device (stat tty_nr) -> its session.
    """
    used: set[int] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        used.add(int(entry.name))
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                data = f.read()
            fields = parse_stat(data)
            used.update((fields.pgid, fields.sid))
            if cttys is not None and fields.tty_nr and fields.sid == fields.pid:
                cttys[fields.tty_nr] = fields.sid
            used.update(int(t) for t in os.listdir(f"/proc/{entry.name}/task"))
        except (OSError, StatParseError):
            continue
    return used


def _check_pids(plan: Plan, used: set[int]) -> None:
    """Planned pids already in use here: one blocker per process, its threads counted in.

    (A 200-thread process that still runs gave 201 identical lines.)
    """
    pid_max = _pid_max()
    taken: dict[int, list[int]] = {}  # process -> its pids in use (its own, its threads')
    for step in plan.steps:
        if step.action not in (Action.CLONE, Action.LAST_PID_CLONE):
            continue
        set_tid = step.args.get("set_tid") or [step.args.get("pid", 0)]
        planned = plan.processes.get(step.args["child"])
        helper = planned is not None and planned.helper and planned.reason.startswith("orphan")
        if plan.pid_ns == "new":
            continue  # a fresh namespace is empty: only pid_max matters
        outer = set_tid[-1]
        if outer in used:
            if helper:
                plan.problem(Severity.WARNING, "pid-in-use",
                             f"pid {outer} is already in use here (a helper's pid: any free "
                             "pid works)", pid=outer)
            else:
                thread = "CLONE_THREAD" in (step.args.get("flags") or ())
                taken.setdefault(step.actor if thread else outer, []).append(outer)
        if outer >= pid_max:
            plan.problem(Severity.BLOCKER, "pid-above-max",
                         f"pid {outer} is above this machine's pid_max {pid_max}",
                         fix=f"sysctl kernel.pid_max={outer + 1}", pid=outer)
    for pid, pids in taken.items():
        threads = [p for p in pids if p != pid]
        what = f"pid {pid}" if pid in pids else f"threads of pid {pid}"
        more = f" (and {len(threads)} of its thread ids)" if threads and pid in pids else \
            (f": {len(threads)} thread ids" if threads else "")
        plan.problem(Severity.BLOCKER, "pid-in-use", f"{what} is already in use here{more}",
                     fix="stop the process using it (is the dumped tree still running?), "
                         "or restore with --pid-ns new", pid=pid)


def _check_files(snap: Snapshot, plan: Plan) -> None:
    seen: set[bytes] = set()
    for table in snap.fds:
        for fd in table.fds:
            if fd.WhichOneof("state") != "file" or fd.deleted or not fd.path:
                continue
            if fd.path in seen or not fd.path.startswith(b"/"):
                continue
            seen.add(fd.path)
            path = fd.path.decode(errors="replace")
            try:
                st = os.stat(fd.path)
            except FileNotFoundError:
                plan.problem(Severity.BLOCKER, "file-missing",
                             f"{path} (fd {fd.fd} of pid {table.pid}) no longer exists",
                             fix="restore the file", pid=table.pid, path=path, fd=fd.fd)
                continue
            except OSError as err:
                plan.problem(Severity.BLOCKER, "file-unreadable", f"{path}: {err.strerror}",
                             pid=table.pid, path=path, fd=fd.fd)
                continue
            changed = []
            if fd.file.dev and st.st_dev != fd.file.dev:
                changed.append("device")
            if fd.file.ino and st.st_ino != fd.file.ino:
                changed.append("inode")
            if fd.kind == files_pb2.FD_REGULAR and (st.st_mode & 0o170000) == 0o100000:
                if st.st_size != fd.file.size:
                    changed.append(f"size {fd.file.size} -> {st.st_size}")
                if fd.file.mtime_ns and st.st_mtime_ns != fd.file.mtime_ns:
                    changed.append("mtime")
            if changed:
                plan.problem(Severity.WARNING, "file-changed",
                             f"{path} changed since the dump: {', '.join(changed)}",
                             fix="the restored process sees the new contents", pid=table.pid,
                             path=path, fd=fd.fd)


def _check_mounts(snap: Snapshot, plan: Plan) -> None:
    for ns in snap.mounts:
        for mount in ns.mounts:
            point = mount.mount_point
            if point and not os.path.isdir(point):
                plan.problem(Severity.WARNING, "mountpoint-missing",
                             f"mount point {point.decode(errors='replace')} does not exist here",
                             fix="create it, or restore into a fresh mount namespace",
                             path=point.decode(errors="replace"))


def _bind_conflict(sock: sockets_pb2.Socket, reuse: bool = False) -> int:
    """errno of binding the socket's local address now (0: free); the socket closes at once.

    With ``reuse`` the probe sets SO_REUSEADDR, which a TCP bind needs to get past
    connections in TIME-WAIT: free with it and taken without, nothing holds the port
    but such leftovers.
    """
    family = socket.AF_INET6 if sock.family == sockets_pb2.FAMILY_INET6 else socket.AF_INET
    kind = socket.SOCK_STREAM if sock.inet.protocol == socket.IPPROTO_TCP else socket.SOCK_DGRAM
    try:
        with socket.socket(family, kind) as probe:
            if reuse:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((sock.inet.src, sock.inet.sport))
    except OSError as err:
        return err.errno or errno.EADDRINUSE
    return 0


def _check_sockets(snap: Snapshot, plan: Plan) -> None:
    held = {fd.socket.inode for t in snap.fds for fd in t.fds if fd.WhichOneof("state") == "socket"}
    probed: set[tuple[int, str, int]] = set()  # a listener and its accepted sockets share a port
    bound: set[bytes] = set()
    for sock in snap.sockets:
        if sock.inode not in held:
            continue
        kind = sock.WhichOneof("kind")
        if kind == "inet" and sock.inet.sport and sock.inet.protocol in (6, 17):
            address = (sock.inet.protocol, sock.inet.src, sock.inet.sport)
            if address in probed:
                continue
            probed.add(address)
            code = _bind_conflict(sock)
            proto = "TCP" if sock.inet.protocol == 6 else "UDP"
            if code == errno.EADDRINUSE and proto == "TCP" and not _bind_conflict(sock, True):
                plan.problem(Severity.WARNING, "port-time-wait",
                             f"TCP port {sock.inet.sport} on {sock.inet.src} is held only by "
                             "connections in TIME-WAIT (no process holds it): a socket with "
                             "SO_REUSEADDR binds it, one without fails until they expire "
                             "(up to 60 s)", fix="restore with SO_REUSEADDR, or wait a minute",
                             port=sock.inet.sport)
            elif code == errno.EADDRINUSE:
                plan.problem(Severity.BLOCKER, "port-in-use",
                             f"{proto} port {sock.inet.sport} on {sock.inet.src} is already "
                             "bound here", fix="stop the process holding it",
                             port=sock.inet.sport)
        elif (kind == "unix" and sock.unix.name and not sock.unix.abstract
              and not sock.unix.peer_inode and sock.unix.name not in bound
              and os.path.lexists(sock.unix.name)):
            # Only what binds the path counts (a listener, an unconnected datagram
            # socket), once: accepted connections carry their listener's name too.
            bound.add(sock.unix.name)
            name = sock.unix.name.decode(errors="replace")
            plan.problem(Severity.BLOCKER, "unix-path-in-use",
                         f"unix socket path {name} already exists",
                         fix="remove it if nothing listens there", path=name)


def _check_ttys(plan: Plan, controlled: dict[int, int]) -> None:
    """pty indexes the plan needs, and this machine's ttys it opens or takes."""
    for step in plan.steps:
        a = step.args
        if step.action is Action.OPEN_PTY:
            path = f"/dev/pts/{a['index']}"
            if os.path.lexists(path):
                plan.problem(Severity.BLOCKER, "pty-in-use",
                             f"pty {a['index']} ({path}) exists here: opening /dev/ptmx "
                             "cannot give that index again",
                             fix="close the terminal using it (is the dumped tree still "
                                 "running?)", pid=step.actor, path=path)
        elif (step.action is Action.OPEN and a.get("tty") and a.get("path")) or \
                (step.action is Action.SET_CTTY and a.get("host")):
            path = a["path"]
            if not os.path.exists(path):
                plan.problem(Severity.BLOCKER, "tty-missing",
                             f"{path} (a tty of the snapshot not made by the restore) does "
                             "not exist here", fix="restore where that terminal exists",
                             pid=step.actor, path=path)
            elif step.action is Action.SET_CTTY and a["tty"] in controlled:
                plan.problem(Severity.BLOCKER, "tty-busy",
                             f"{path} is the controlling tty of session "
                             f"{controlled[a['tty']]} here: TIOCSCTTY would fail (EPERM)",
                             fix="end that session, or restore from another terminal",
                             pid=step.actor, path=path)


def _mount_points() -> dict[int, bytes]:
    """st_dev -> a mount point of that filesystem in our mount namespace."""
    try:
        mounts = parse_mountinfo(Path("/proc/self/mountinfo").read_bytes())
    except (OSError, MountinfoParseError):
        return {}
    out: dict[int, bytes] = {}
    for m in mounts:
        out.setdefault(os.makedev(m.dev_major, m.dev_minor), m.mount_point)
    return out


def _watch_target(mount: bytes, watch: files_pb2.InotifyWatch | files_pb2.FanotifyMark
                  ) -> str | None:
    """Why the watch's target cannot be reached here (None: it exists, or we cannot tell)."""
    try:
        mount_fd = os.open(mount, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # not O_PATH: EBADF
    except OSError:
        return None
    try:
        fd = open_by_handle(mount_fd, watch.fhandle_type, watch.f_handle)
    except OSError as err:
        if err.errno in (errno.ESTALE, errno.ENOENT):
            return "it was deleted"
        return None   # EPERM (no CAP_DAC_READ_SEARCH), EINVAL, ...: cannot tell
    finally:
        os.close(mount_fd)
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if st.st_nlink == 0:
        return "it was deleted (the inode lingers only until the last reference goes)"
    return None if not watch.ino or st.st_ino == watch.ino else \
        f"its handle now names inode {st.st_ino}"


def _check_watches(snap: Snapshot, plan: Plan) -> None:
    """inotify watches and fanotify inode marks: is each target still there?"""
    mounts = _mount_points()
    seen: set[tuple[int, bytes]] = set()
    for table in snap.fds:
        for fd in table.fds:
            state = fd.WhichOneof("state")
            if state == "inotify":
                watches: list[files_pb2.InotifyWatch | files_pb2.FanotifyMark] = \
                    list(fd.inotify.watches)
            elif state == "fanotify":
                watches = [m for m in fd.fanotify.marks
                           if m.type == files_pb2.FANOTIFY_MARK_INODE]
            else:
                continue
            for watch in watches:
                if not watch.f_handle or (watch.sdev, watch.f_handle) in seen:
                    continue
                seen.add((watch.sdev, watch.f_handle))
                what = f"{state} watch on inode {watch.ino} (fd {fd.fd} of pid {table.pid})"
                mount = mounts.get(watch.sdev)
                if mount is None:
                    plan.problem(Severity.BLOCKER, "watch-target-missing",
                                 f"{what}: its filesystem (device "
                                 f"{os.major(watch.sdev)}:{os.minor(watch.sdev)}) is not "
                                 "mounted here", fix="mount it before restoring",
                                 pid=table.pid, fd=fd.fd)
                    continue
                why = _watch_target(mount, watch)
                if why is not None:
                    plan.problem(Severity.BLOCKER, "watch-target-missing", f"{what}: {why}",
                                 fix="recreate the watched file, or close the watch before "
                                     "dumping", pid=table.pid, fd=fd.fd)


def _caps() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def _created_ns_types(plan: Plan) -> set[str]:
    """Namespace types the plan creates (CLONE_NEW*) or joins (setns)."""
    flags = 0
    types: set[str] = set()
    for step in plan.steps:
        if step.action in (Action.CLONE, Action.LAST_PID_CLONE):
            flags |= step.args.get("flags_value", 0)
        elif step.action is Action.SETNS:
            types.add(step.args["ns"])
        elif step.action is Action.UNSHARE:
            flags |= step.args["flags_value"]
    types.update(t for t, flag in NS_FLAG.items() if flags & flag)
    if flags & CloneFlag.NEWPID:
        types.add("pid")
    return types


def _check_kernel(snap: Snapshot, plan: Plan) -> None:
    caps = _caps()
    if not caps & (1 << CAP_CHECKPOINT_RESTORE | 1 << CAP_SYS_ADMIN):
        plan.problem(Severity.BLOCKER, "capability",
                     "choosing pids with clone3 set_tid needs CAP_CHECKPOINT_RESTORE or "
                     "CAP_SYS_ADMIN", fix="run the restore as root")
    tcp = any(s.action is Action.TCP_REPAIR for s in plan.steps)
    if tcp and not caps & (1 << CAP_NET_ADMIN):
        plan.problem(Severity.BLOCKER, "capability", "TCP_REPAIR needs CAP_NET_ADMIN",
                     fix="run the restore as root")
    opens = {s.args.get("kind") for s in plan.steps if s.action is Action.OPEN}
    kcmp = probe_kcmp()
    if not kcmp.available:
        plan.problem(Severity.WARNING, "kernel-feature",
                     f"kcmp is missing ({kcmp.detail}): the restored tree's shared files, "
                     "fd tables and address spaces cannot be checked against the plan",
                     fix="enable CONFIG_KCMP (CONFIG_CHECKPOINT_RESTORE before 5.12)")
    if "pidfd" in opens and not probe_pidfd().available:
        plan.problem(Severity.BLOCKER, "kernel-feature",
                     f"the snapshot holds pidfds but pidfd_open is missing "
                     f"({probe_pidfd().detail})", fix="use Linux 5.3 or later")
    if opens & {"inotify", "fanotify"} and not caps & (1 << CAP_DAC_READ_SEARCH):
        plan.problem(Severity.BLOCKER, "capability",
                     "re-adding inotify/fanotify watches by file handle (open_by_handle_at) "
                     "needs CAP_DAC_READ_SEARCH", fix="run the restore as root")
    if any(s.action is Action.OPEN_PTY for s in plan.steps) and \
            not os.path.exists("/dev/ptmx"):
        plan.problem(Severity.BLOCKER, "kernel-feature",
                     "the snapshot has ptys but /dev/ptmx does not exist here",
                     fix="mount devpts (CONFIG_UNIX98_PTYS)", path="/dev/ptmx")
    for ns_type in sorted(_created_ns_types(plan), key=_NS_TYPES.index):
        if not os.path.exists(f"/proc/self/ns/{ns_type}"):
            plan.problem(Severity.BLOCKER, "kernel-feature",
                         f"this kernel has no {ns_type} namespaces (/proc/self/ns/{ns_type})",
                         fix=f"enable CONFIG_{ns_type.upper()}_NS")


def _check_host_namespaces(snap: Snapshot, plan: Plan) -> None:
    """The roots are restored into the restorer's namespaces: are they the dumped ones?"""
    differ = []
    for ns_type, inode in sorted(host_namespaces(snap).items()):
        try:
            mine = os.stat(f"/proc/self/ns/{ns_type}").st_ino
        except OSError:
            continue   # no such namespace type here: _check_kernel says so if it matters
        if mine != inode:
            differ.append(f"{ns_type} {inode} (here {mine})")
    if differ:
        plan.problem(Severity.WARNING, "host-namespaces",
                     "the tree's roots were dumped in other namespaces than this restore "
                     "runs in, and are restored into this one's: " + ", ".join(differ),
                     fix="run the restore inside the dumped namespaces (nsenter --target "
                         "a process still in them), or accept the new ones")


def dry_run(snap: Snapshot, plan: Plan) -> None:
    """Add every problem this machine would cause to `plan.problems`."""
    controlled: dict[int, int] = {}    # tty -> the session it controls here
    _check_pids(plan, _pids_in_use(controlled))
    _check_files(snap, plan)
    _check_mounts(snap, plan)
    _check_sockets(snap, plan)
    _check_ttys(plan, controlled)
    _check_watches(snap, plan)
    _check_kernel(snap, plan)
    _check_host_namespaces(snap, plan)
