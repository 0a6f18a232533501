"""Enum values a newer writer may use (issue 13, item 5): shown as unknown(N), never a crash.

A table over (patched field, view): every view of a snapshot carrying FdKind,
VmaKind or SocketFamily 99 (or a socket type/state, or lock type this version
has no name for) runs to its normal exit status and names the value
``unknown(99)``; the planner makes each such object a blocker with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from criu_model.cli import main
from criu_model.images import write
from criu_model.images.pb import files_pb2, sockets_pb2
from criu_model.snapshot import Snapshot
from tests.images.sample import sample_snapshot

SOCKET_INODE = 77


def _snapshot() -> Snapshot:
    """sample.py's two processes sharing a regular file and a unix listener."""
    snap = sample_snapshot(1)
    for proc in snap.processes:
        proc.ns_pgids.append(proc.pgid)
        proc.ns_sids.append(proc.sid)
    for pid in (100, 101):
        table = files_pb2.FdTable(pid=pid)
        table.fds.add(fd=0, kind=files_pb2.FD_REGULAR, path=b"/dev/null", file_id=1,
                      file=files_pb2.RegularFile())
        table.fds.add(fd=3, kind=files_pb2.FD_SOCKET, path=b"socket:[77]", file_id=2,
                      socket=files_pb2.SocketRef(inode=SOCKET_INODE))
        snap.fds.append(table)
    sock = sockets_pb2.Socket(inode=SOCKET_INODE, family=sockets_pb2.FAMILY_UNIX, type=1,
                              state=10)
    sock.unix.name = b"/tmp/cm-unknown.sock"
    snap.sockets.append(sock)
    return snap


def _fd(snap: Snapshot) -> files_pb2.Fd:
    return snap.fds[0].fds[0]


PATCHES: dict[str, tuple[Callable[[Snapshot], None], str]] = {
    "fd kind": (lambda s: setattr(_fd(s), "kind", 99), "unknown fd kind 99: written by a newer "
                                                        "criu-model"),
    "vma kind": (lambda s: setattr(s.memory[0].vmas[1], "kind", 99),
                 "unknown VMA kind 99: written by a newer criu-model"),
    "socket family": (lambda s: setattr(s.sockets[0], "family", 99),
                      "unknown socket family 99: written by a newer criu-model"),
    "socket type": (lambda s: setattr(s.sockets[0], "type", 99), "unknown socket type 99"),
    "socket state": (lambda s: setattr(s.sockets[0], "state", 99), "unknown socket state 99"),
    "lock type": (lambda s: _fd(s).locks.add(type=99, mode=1, pid=100),
                  "unknown lock type 99: written by a newer criu-model"),
}
# (argv after the command, exit statuses allowed); {a}: the patched snapshot, {b}: the base.
VIEWS: dict[str, tuple[list[str], tuple[int, ...]]] = {
    "show --json": (["show", "{a}", "--json"], (0,)),
    "show tree": (["show", "{a}", "tree"], (0,)),
    "show procs": (["show", "{a}", "procs"], (0,)),
    "show fds": (["show", "{a}", "fds"], (0,)),
    "show sockets": (["show", "{a}", "sockets"], (0,)),
    "show shared": (["show", "{a}", "shared"], (0,)),
    "show mems": (["show", "{a}", "mems", "100"], (0,)),
    "diff": (["diff", "{b}", "{a}"], (1,)),
    "diff --json": (["diff", "{a}", "{b}", "--json"], (1,)),
    "plan": (["plan", "{a}", "--offline"], (3,)),
    "plan --json": (["plan", "{a}", "--offline", "--json"], (3,)),
}

# Views that print the patched value: there it reads unknown(99).
SHOWN: dict[str, set[str]] = {
    "fd kind": {"show --json", "show fds", "show shared", "diff", "diff --json"},
    "vma kind": {"show --json", "show mems", "diff --json"},
    "socket family": {"show --json", "show fds", "show sockets", "show shared", "diff",
                      "diff --json"},
    "socket type": {"show --json", "show fds", "show shared", "diff"},
    "socket state": {"show --json", "show fds", "show sockets", "show shared"},
    "lock type": {"plan --json"},
}


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("unknown")
    out = {"base": write(_snapshot(), root / "base")}
    for name, (patch, _) in PATCHES.items():
        snap = _snapshot()
        patch(snap)
        out[name] = write(snap, root / name.replace(" ", "-"))
    return out


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("patched", PATCHES)
def test_views_name_unknown_values(dirs: dict[str, Path], patched: str, view: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    argv, statuses = VIEWS[view]
    argv = [a.format(a=dirs[patched], b=dirs["base"]) for a in argv]
    status = main(argv)
    out, err = capsys.readouterr()
    assert status in statuses, (argv, status, err)
    assert not err
    if view in SHOWN[patched]:
        assert "unknown(99)" in out, out
    if view.startswith("plan"):
        reason = PATCHES[patched][1]
        if view == "plan --json":
            problems = json.loads(out)["problems"]
            assert any(p["severity"] == "blocker" and p["kind"] == "unknown-value" and
                       reason in p["message"] for p in problems), problems
        else:
            assert reason in out, out


def test_base_snapshot_is_clean(dirs: dict[str, Path], capsys: pytest.CaptureFixture[str]
                                ) -> None:
    """The table's baseline: without a patch the plan has no unknown-value blocker."""
    main(["plan", str(dirs["base"]), "--offline", "--json"])
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert not [p for p in problems if p["kind"] == "unknown-value"], problems
