"""The rehearsal sandbox: fresh pid, mount, net, IPC and UTS namespaces, bound to our life.

Its init is cloned by criu-model with clone3 (set_tid [1] in the new pid
namespace, Linux 5.5) and immediately exec's the worker (worker.py), so it
carries none of criu-model's memory, threads or fds. Three guards make sure
it never outlives criu-model, whatever happens:

* PR_SET_PDEATHSIG(SIGKILL), set before exec: the kernel kills the init when
  the thread that created it dies (criu-model SIGKILLed included). A signal
  from an ancestor pid namespace reaches a namespace init (kernel/signal.c,
  ``force`` for SEND_SIG_NOINFO), and the init's death kills every process of
  the namespace (zap_pid_ns_processes).
* the control socket: the init reads EOF when criu-model is gone and exits
  (covers a parent that died before the prctl took effect).
* ``close()``: SIGKILL to the init and waitpid, on every exit path of
  ``rehearse`` (exception, Ctrl-C, SIGTERM turned into an exception).

Nothing is mounted, bound or left running outside: all mounts are made in
the sandbox's own mount namespace after making it MS_PRIVATE.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from criu_model.errors import AccessDenied, CriuModelError, KernelUnsupported
from criu_model.restore.worker import MAX_MESSAGE, clone3, set_pdeathsig

# include/uapi/linux/sched.h
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
SANDBOX_FLAGS = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS


@dataclass
class Sandbox:
    """A running sandbox init (pid 1 inside; ``pid`` is its pid here)."""

    pid: int
    ctl: socket.socket
    pidns: int = 0              # inode of the sandbox's pid namespace (tests: nobody left in it)
    kept: bool = False
    closed: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    def close(self) -> None:
        """Kill the init (so the whole namespace) and reap it, unless kept."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(OSError):
            self.ctl.close()
        if self.kept:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        # waitpid returns once the init is reaped, which the kernel allows only after
        # every other process of its namespace has exited (zap_pid_ns_processes).
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)

    def keep(self) -> None:
        """Leave it running: the init clears its death signal when parked."""
        self.kept = True


def start(floor: int, flags: int = 0) -> Sandbox:
    """Create the sandbox init with `flags` added to the namespaces; it waits for setup."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ctl_fd = floor - 1
    argv = [sys.executable, "-m", "criu_model.restore.worker", str(ctl_fd), str(floor)]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONDONTWRITEBYTECODE": "1"}
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    if sys.path[0] and os.path.isdir(os.path.join(sys.path[0], "criu_model")):
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [sys.path[0],
                                                          env.get("PYTHONPATH")]))
    theirs_fd = theirs.fileno()
    try:
        pid = clone3(SANDBOX_FLAGS | flags, [1])
    except OSError as err:
        ours.close()
        theirs.close()
        if err.errno == 1:
            raise AccessDenied(None, "clone3 with new namespaces",
                               "needs CAP_SYS_ADMIN (namespaces) and CAP_CHECKPOINT_RESTORE "
                               "or CAP_SYS_ADMIN (set_tid)") from err
        raise KernelUnsupported("clone3 set_tid with new namespaces",
                                f"{err} (clone3: Linux 5.3, set_tid: 5.5)") from err
    if pid == 0:  # the init: as little Python as possible before exec
        try:
            set_pdeathsig(signal.SIGKILL)
            if theirs_fd == ctl_fd:
                # dup2 onto itself changes nothing: FD_CLOEXEC stayed, exec closed it (the
                # init then died at once: a criu-model holding one more fd hit it)
                os.set_inheritable(ctl_fd, True)
            else:
                os.dup2(theirs_fd, ctl_fd, inheritable=True)
            os.closerange(0, ctl_fd)
            os.closerange(ctl_fd + 1, 2**31 - 1)   # close_range(2) underneath (Linux 5.9)
            os.execve(sys.executable, argv, env)
        finally:
            os._exit(127)
    theirs.close()
    try:
        pidns = os.stat(f"/proc/{pid}/ns/pid").st_ino
    except OSError:
        pidns = 0
    return Sandbox(pid, ours, pidns)


def receive(sock: socket.socket, what: str, who: str = "the sandbox", timeout: float = 10.0
            ) -> tuple[dict[str, Any], list[int]]:
    """One JSON reply and the fds sent with it; CriuModelError when the sender died or hung."""
    import json

    sock.settimeout(timeout)
    try:
        msg, fds, _f, _a = socket.recv_fds(sock, MAX_MESSAGE, 4)
    except TimeoutError as err:
        raise CriuModelError(f"rehearsal: {who} did not answer {what}") from err
    finally:
        sock.settimeout(None)
    if not msg:
        raise CriuModelError(f"rehearsal: {who} died during {what}")
    return dict(json.loads(msg)), list(fds)


def await_reply(sock: socket.socket, what: str, timeout: float = 10.0) -> dict[str, object]:
    """One JSON reply, or CriuModelError when the sandbox process died or hung."""
    return receive(sock, what, timeout=timeout)[0]


def pidns_members(pidns: int) -> list[int]:
    """Pids here of every live (not zombie) process in pid namespace `pidns`.

    A dead init stays a zombie until its new parent (after criu-model's death: a
    subreaper or the host's init) reaps it; it holds nothing but its exit status.
    """
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}/ns/pid").st_ino != pidns:
                    continue
                with open(f"/proc/{name}/stat", "rb") as f:
                    if f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X"):
                        continue
            except OSError:
                continue
            out.append(int(name))
    return out


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    """True once `pid` no longer exists (tests: no sandbox process survives)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
            if state in (b"Z", b"X"):
                return True
        except (FileNotFoundError, ProcessLookupError):
            return True
        time.sleep(0.01)
    return False
