"""render/graph.py and graphviz.py on snapshots of real trees, rendered by the real ``dot``.

The tree (built by _BUILDER in a fresh interpreter, always SIGKILLed):

- [root] session and group leader with a hostile comm (quote, backslash,
  newline, ESC, a byte that is not UTF-8, an HTML entity); holds a file whose
  path is hostile too, which every member inherits;
- [writer] and [reader] hold the two ends of one pipe (root closed both);
- [sp_a] setpgid(0, 0) holds one end of a socketpair, its child [sp_b] the other;
- [sess] setsid() (SIGCHLD ignored: its children are reaped at once), with
  [kid] (its own group, three threads) and [leaf];
- [zombie] exited with status 3, never reaped;
- [m0..] `many` more sleeping children of root (for the 200-process picture).

On SIGUSR1 root opens /dev/null and forks [late]: with [leaf] killed, that
gives the diff picture one added, one removed and one changed process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import criu_model
from criu_model.errors import CriuModelError, UsageError
from criu_model.graphviz import GraphvizFailed, GraphvizMissing, run_dot, write_picture
from criu_model.names import printable
from criu_model.render.graph import (
    diff_graph_dot,
    dot_text,
    graph_dot,
    render_diff_graph,
    render_graph,
)
from criu_model.snapshot import Snapshot

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="dumping a tree needs root (ptrace)")
needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None,
    reason="Graphviz 'dot' is not installed (Debian/Ubuntu: apt-get install graphviz)")

HOSTILE_COMM = b'a"b\\c\nd\x1b\xff&lt;}'          # 14 bytes: PR_SET_NAME keeps 15
HOSTILE_FILE = 'sh"a\\red\n&amp;\x07.txt'
ZOMBIE_STATUS = 3
SVG = "{http://www.w3.org/2000/svg}"

_BUILDER = r'''
import ctypes, json, os, signal, socket, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
report_fd, args = int(sys.argv[1]), json.loads(sys.argv[2])
libc.prctl(1, signal.SIGKILL, 0, 0, 0)            # PR_SET_PDEATHSIG

def name(comm):
    libc.prctl(15, ctypes.c_char_p(comm), 0, 0, 0)  # PR_SET_NAME

def report(role):
    os.write(report_fd, (json.dumps({"role": role, "pid": os.getpid()}) + "\n").encode())

def forever():
    while True:
        signal.pause()

def fork(role, setup=lambda: None, closes=()):
    pid = os.fork()
    if pid:
        return pid
    try:
        for f in closes:
            os.close(f)
        setup()
        name(("cm-" + role).encode())
        report(role)
        forever()
    finally:
        os._exit(1)

name(bytes.fromhex(args["comm"]))
shared = os.open(args["shared"], os.O_RDWR | os.O_CREAT, 0o600)
r, w = os.pipe()
a, b = socket.socketpair()
fork("writer", closes=(r, a.fileno(), b.fileno()))
fork("reader", closes=(w, a.fileno(), b.fileno()))

def sp_a():
    os.setpgid(0, 0)
    fork("sp_b", closes=(a.fileno(),))    # sp_b keeps b
    os.close(b.fileno())
fork("sp_a", sp_a, closes=(r, w))

def kid():
    os.setpgid(0, 0)
    stop = threading.Event()
    for _ in range(2):
        threading.Thread(target=stop.wait, daemon=True).start()

def sess():
    os.setsid()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    fork("kid", kid)
    fork("leaf")
fork("sess", sess, closes=(r, w, a.fileno(), b.fileno()))

if os.fork() == 0:
    name(b"cm-zombie")
    report("zombie")
    os._exit(args["zombie_status"])
for i in range(args["many"]):
    fork(f"m{i}", closes=(r, w, a.fileno(), b.fileno()))
os.close(r); os.close(w); a.close(); b.close()

def change(*_):
    os.open("/dev/null", os.O_RDONLY)
    fork("late")
signal.signal(signal.SIGUSR1, change)
report("root")
forever()
'''
_ROLES = ("root", "writer", "reader", "sp_a", "sp_b", "sess", "kid", "leaf", "zombie")


@dataclass
class Built:
    proc: subprocess.Popen[bytes]
    report_fd: int
    pids: dict[str, int] = field(default_factory=dict)


def _asleep(pid: int) -> bool:
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            data = Path(f"/proc/{pid}/task/{tid}/stat").read_bytes()
            if data[data.rindex(b")") + 2:][:1] not in (b"S", b"Z"):
                return False
    except (FileNotFoundError, ProcessLookupError):
        return False
    return True


def _state(pid: int) -> str:
    data = Path(f"/proc/{pid}/stat").read_bytes()
    return data[data.rindex(b")") + 2:][:1].decode()


def _await(built: Built, roles: set[str], timeout: float = 20.0) -> None:
    """Read reports until every role has one, then wait until each is asleep (or a zombie)."""
    deadline = time.monotonic() + timeout
    buf = b""
    while roles - set(built.pids):
        if time.monotonic() > deadline or built.proc.poll() is not None:
            raise RuntimeError(f"tree not built: {sorted(roles - set(built.pids))}")
        ready, _, _ = select.select([built.report_fd], [], [], 0.1)
        if ready:
            buf += os.read(built.report_fd, 65536)
            *lines, buf = buf.split(b"\n")
            for line in lines:
                rec = json.loads(line)
                built.pids[rec["role"]] = rec["pid"]
    for role in roles:
        while not _asleep(built.pids[role]):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{role} never slept")
            time.sleep(0.005)


@contextlib.contextmanager
def graph_tree(shared_path: Path, many: int = 0) -> Iterator[Built]:
    """Build the tree of the module docstring; always SIGKILL every member."""
    import psutil

    rfd, wfd = os.pipe()
    args = {"comm": HOSTILE_COMM.hex(), "shared": str(shared_path), "many": many,
            "zombie_status": ZOMBIE_STATUS}
    proc = subprocess.Popen([sys.executable, "-c", _BUILDER, str(wfd), json.dumps(args)],
                            pass_fds=(wfd,), stdin=subprocess.DEVNULL, start_new_session=True)
    os.close(wfd)
    built = Built(proc, rfd)
    try:
        _await(built, set(_ROLES) | {f"m{i}" for i in range(many)})
        yield built
    finally:
        victims = set(built.pids.values())
        with contextlib.suppress(psutil.NoSuchProcess):
            victims.update(p.pid for p in psutil.Process(proc.pid).children(recursive=True))
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.wait()
        os.close(rfd)


def _dump_and_load(pid: int, where: Path) -> Snapshot:
    """Dump, write and load again: the pictures are drawn from a snapshot directory."""
    criu_model.write(criu_model.dump([pid]), where)
    return criu_model.load(where)


@dataclass
class Dumped:
    snap: Snapshot
    pids: dict[str, int]


@pytest.fixture(scope="module")
def dumped(tmp_path_factory: pytest.TempPathFactory) -> Dumped:
    if os.geteuid() != 0:
        pytest.skip("dumping a tree needs root (ptrace)")
    base = tmp_path_factory.mktemp("graph")
    with graph_tree(base / HOSTILE_FILE) as built:
        snap = _dump_and_load(built.pids["root"], base / "snap")
        return Dumped(snap, dict(built.pids))


def _svg(dot: str) -> ET.Element:
    svg = run_dot(dot, "svg")
    return ET.fromstring(svg)   # well-formed XML, or this raises


def _texts(svg: ET.Element) -> list[str]:
    return [t.text or "" for t in svg.iter(f"{SVG}text")]


def _edges(dot: str) -> list[str]:
    return [line.strip() for line in dot.splitlines() if " -> " in line]


# ----------------------------------------------------------------------- DOT


@needs_root
def test_dot_clusters_sessions_and_groups(dumped: Dumped) -> None:
    dot = graph_dot(dumped.snap)
    for proc in dumped.snap.processes:
        assert f"subgraph cluster_s{proc.sid} {{" in dot
        assert f"subgraph cluster_s{proc.sid}_g{proc.pgid} {{" in dot
    sids = {p.sid for p in dumped.snap.processes}
    assert len(sids) == 2   # root's and sess's
    pids = dumped.pids
    # Each process sits inside its own group's cluster, which sits inside its session's.
    by_pid = dumped.snap.by_pid
    for role in ("root", "sp_a", "sp_b", "kid", "leaf"):
        proc = by_pid[pids[role]]
        group = dot.index(f"subgraph cluster_s{proc.sid}_g{proc.pgid} {{")
        session = dot.rindex(f"subgraph cluster_s{proc.sid} {{", 0, group)
        node = dot.index(f"p{proc.pid} [id=")
        assert session < group < node < dot.index("    }", group)


@needs_root
def test_dot_tree_edges_threads_and_zombie(dumped: Dumped) -> None:
    dot = graph_dot(dumped.snap)
    pids = dumped.pids
    for proc in dumped.snap.processes:
        if proc.pid != pids["root"]:
            assert f'p{proc.ppid} -> p{proc.pid} [id="tree_p{proc.ppid}_p{proc.pid}"]' in dot
    kid = next(line for line in dot.splitlines() if f'p{pids["kid"]} [id=' in line)
    assert "3 threads" in kid
    zombie = next(line for line in dot.splitlines() if f'p{pids["zombie"]} [id=' in line)
    assert "dashed" in zombie and "#e0e0e0" in zombie
    assert f"zombie (exit {ZOMBIE_STATUS})" in zombie
    root = next(line for line in dot.splitlines() if f'p{pids["root"]} [id=' in line)
    assert "zombie (" not in root and "#e0e0e0" not in root


@needs_root
def test_dot_pipe_socketpair_and_shared_file(dumped: Dumped) -> None:
    dot = graph_dot(dumped.snap)
    pids = dumped.pids
    edges = _edges(dot)
    pipe = [e for e in edges if e.startswith(f"p{pids['writer']} -> p{pids['reader']} ")]
    assert len(pipe) == 1 and 'id="pipe_' in pipe[0]   # one edge for the one shared pipe
    # The pipe inherited from the report pipe is a note (its reader is the test), not an edge.
    assert len([e for e in edges if re.match(r'p\d+ -> p\d+ \[id="pipe_', e)]) == 1
    sock = [e for e in edges if 'id="sock_' in e]
    assert len(sock) == 1
    assert sock[0].startswith((f"p{pids['sp_a']} -> p{pids['sp_b']} ",
                               f"p{pids['sp_b']} -> p{pids['sp_a']} "))
    assert "dir=none" in sock[0] and "dashed" in sock[0]
    # The hostile file is held by root and all its living descendants but the
    # zombie: more than MAX_EDGES, so one note with one edge, to its topmost holder.
    fid = next(fd.file_id for t in dumped.snap.fds if t.pid == pids["root"] for fd in t.fds
               if fd.path.endswith(os.fsencode(HOSTILE_FILE)))
    note = f"file_{fid}"
    assert f"{note} [id=" in dot
    to_note = [e for e in edges if e.startswith(f"{note} -> ")]
    assert [e.split()[2] for e in to_note] == [f"p{pids['root']}"]
    holders = {t.pid for t in dumped.snap.fds for fd in t.fds if fd.file_id == fid}
    assert f"held by {len(holders)} processes" in dot
    # With room for every holder, one edge each.
    wide = graph_dot(dumped.snap, max_edges=100)
    assert {e.split()[2] for e in _edges(wide) if e.startswith(f"{note} -> ")} == \
        {f"p{pid}" for pid in holders}


@needs_root
def test_dot_without_shared_draws_only_the_tree(dumped: Dumped) -> None:
    dot = graph_dot(dumped.snap, shared=False)
    assert all('id="tree_' in e for e in _edges(dot))
    assert "parent to child" in dot and "zombie</TD>" in dot
    assert "writer to reader" not in dot and "connected sockets" not in dot


@needs_root
def test_legend_names_what_is_drawn(dumped: Dumped) -> None:
    label = graph_dot(dumped.snap).splitlines()[-2]
    assert label.startswith("  label=<")
    for key in ("parent to child", "writer to reader", "connected sockets",
                "open file shared", "zombie"):
        assert key in label
    assert "parent to child" not in graph_dot(dumped.snap, legend=False).splitlines()[-2]


@needs_root
def test_rankdir_is_checked(dumped: Dumped) -> None:
    assert "rankdir=TB," in graph_dot(dumped.snap, rankdir="TB")
    with pytest.raises(UsageError, match="rankdir must be one of"):
        graph_dot(dumped.snap, rankdir='LR]; x [label="y"')


def test_dot_text_escapes_for_dot_and_terminal() -> None:
    assert dot_text(b'"') == '\\"'
    assert dot_text(b"\\") == "\\\\"
    assert dot_text(b"a\nb") == "a\\\\nb"          # shown as the two characters \n
    assert dot_text(b"\x1b[31m") == "\\\\x1b[31m"
    assert dot_text(b"\xff") == "\\\\xff"
    assert dot_text("&lt;") == "&amp;lt;"
    assert dot_text("\u202e") == "\\\\u202e"        # bidi override: never reorders a label
    long = dot_text("/" + "d" * 100 + "/name.txt", limit=30)
    assert len(long) == 30 and long.endswith("name.txt") and "…" in long
    # Eliding never leaves a lone backslash that would escape the closing quote.
    assert not re.search(r'(?<!\\)(\\\\)*\\$', dot_text(b"\x1b" * 40, limit=7))


# ---------------------------------------------------------------- rendered


@needs_root
@needs_dot
def test_svg_names_every_pid_and_shows_hostile_names_literally(dumped: Dumped) -> None:
    svg = _svg(graph_dot(dumped.snap))
    texts = _texts(svg)
    joined = "\n".join(texts)
    for proc in dumped.snap.processes:
        assert re.search(rf"\bpid {proc.pid}\b", joined), proc.pid
    # The comm is shown exactly as the terminal views show it: escaped, not interpreted.
    assert printable(HOSTILE_COMM) in texts
    assert printable(HOSTILE_COMM) == 'a"b\\c\\nd\\x1b\\xff&lt;}'
    assert any(printable(HOSTILE_FILE) in t for t in texts), texts
    ids = {g.get("id") for g in svg.iter(f"{SVG}g")}
    assert {f"p{pid}" for pid in dumped.pids.values()} <= ids
    # The title is an HTML-like label: escaped for that too.
    title = '<B>&amp;"x"\n\x1b'
    assert printable(title) in _texts(_svg(graph_dot(dumped.snap, title=title)))
    assert any(i and i.startswith("pipe_") for i in ids)
    clusters = [g for g in svg.iter(f"{SVG}g") if g.get("class") == "cluster"]
    titles = {g.findtext(f"{SVG}title") for g in clusters}
    for proc in dumped.snap.processes:
        assert f"cluster_s{proc.sid}" in titles and f"cluster_s{proc.sid}_g{proc.pgid}" in titles


@needs_root
@needs_dot
def test_png_is_a_png(dumped: Dumped, tmp_path: Path) -> None:
    png = render_graph(dumped.snap, "png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert render_graph(dumped.snap, "dot").decode().startswith("digraph criu_model {")
    assert render_graph(dumped.snap, "svg").lstrip().startswith(b"<?xml")


@needs_root
@needs_dot
def test_two_hundred_processes_stay_legible(tmp_path: Path) -> None:
    with graph_tree(tmp_path / "shared.txt", many=190) as built:
        snap = criu_model.dump([built.pids["root"]])
    root = snap.by_pid[built.pids["root"]]
    assert len(snap.processes) >= 199
    dot = graph_dot(snap)
    edges = _edges(dot)
    # root's leaf children in its own group (all but sp_a, sess and their kids) form one grid.
    leaves = [p.pid for p in snap.processes if p.ppid == root.pid and p.pgid == root.pgid]
    fan = f"cluster_kids_p{root.pid}_{root.sid}_{root.pgid}"
    start = dot.index(f"subgraph {fan} {{")
    body = dot[start:dot.index("      }", start)]
    assert f'label="{len(leaves)} children of pid {root.pid}"' in body
    assert all(f"p{pid} [id=" in body for pid in leaves)
    visible = [e for e in edges if "style=invis" not in e]
    tree = [e for e in visible if 'id="tree_' in e]
    assert len(tree) == len(snap.processes) - 1 - len(leaves) + 1   # one edge into the grid
    assert [e for e in tree if f"lhead={fan}" in e] == [
        next(e for e in tree if e.startswith(f"p{root.pid} -> ") and "lhead" in e)]
    # stdin, the report pipe, the hostile file...: all inherited, so a handful of edges.
    shared = [e for e in visible if 'id="tree_' not in e and not e.startswith("legend_")]
    assert len(shared) < 20, shared
    started = time.monotonic()
    svg = _svg(dot)
    assert time.monotonic() - started < 30
    joined = "\n".join(_texts(svg))
    assert all(re.search(rf"\bpid {p.pid}\b", joined) for p in snap.processes)
    # Near square, not one column 190 boxes tall (that was 983 x 9671 pixels).
    png = render_graph(snap, "png")
    width, height = struct.unpack(">II", png[16:24])
    assert width < 2500 and height < 2500, (width, height)


@needs_root
@needs_dot
def test_diff_picture_colours_added_removed_changed(tmp_path: Path) -> None:
    with graph_tree(tmp_path / "shared.txt") as built:
        pids = built.pids
        old = _dump_and_load(pids["root"], tmp_path / "a")
        os.kill(pids["leaf"], signal.SIGKILL)   # sess ignores SIGCHLD: reaped at once
        os.kill(pids["writer"], signal.SIGKILL)   # root never reaps: a zombie
        os.kill(pids["root"], signal.SIGUSR1)   # opens a fd, forks [late]
        _await(built, {"late"})
        deadline = time.monotonic() + 10
        while (Path(f"/proc/{pids['leaf']}").exists() or _state(pids["writer"]) != "Z") \
                and time.monotonic() < deadline:
            time.sleep(0.005)
        new = _dump_and_load(pids["root"], tmp_path / "b")
    result = criu_model.diff(old, new)
    dot = diff_graph_dot(old, new, result)
    lines = dot.splitlines()

    def node(pid: int) -> str:
        return next(line for line in lines if f"p{pid} [id=" in line)

    late, leaf, root = node(built.pids["late"]), node(pids["leaf"]), node(pids["root"])
    assert 'class="added"' in late and "#c8f0c0" in late and "\\nadded" in late
    assert 'class="removed"' in leaf and "#f6c6c6" in leaf and "dashed" in leaf
    assert 'class="changed"' in root and "#ffdca8" in root and "+ fd " in root
    # The zombie writer dropped out of every inherited file: only it changed, not the
    # other holders of those files.
    writer = node(pids["writer"])
    assert 'class="changed"' in writer and "~ state S → Z" in writer
    assert re.search(r"\\n- \d+ fds\\n", writer) and "shared objects" in writer
    for role in ("reader", "sp_a", "sp_b", "sess", "kid", "zombie"):
        assert 'class="unchanged"' in node(pids[role]), role
    # The removed process stays under its old parent; the added one under its new one.
    assert f'p{pids["sess"]} -> p{pids["leaf"]} ' in dot
    assert f'p{pids["root"]} -> p{built.pids["late"]} ' in dot
    assert "cluster_legend" not in dot   # the legend is a line of the graph label
    for name in ("added (1)", "removed (1)", "changed (2)", "unchanged ("):
        assert name in dot
    svg = _svg(dot)
    joined = "\n".join(_texts(svg))
    assert "added (1)" in joined and f"pid {pids['leaf']}" in joined
    assert render_diff_graph(old, new, "png", result=result).startswith(b"\x89PNG")
    # Without a result, the full diff is computed.
    assert render_diff_graph(old, new, "dot").decode() == dot


@needs_root
@needs_dot
def test_diff_picture_draws_a_reused_pid_twice(dumped: Dumped) -> None:
    old = dumped.snap
    reader = dumped.pids["reader"]
    procs = []
    for proc in old.processes:
        proc = type(proc).FromString(proc.SerializeToString())
        if proc.pid == reader:
            proc.start_time += 1   # another process under the same pid
            proc.comm = b"cm-reborn"
        procs.append(proc)
    new = dataclasses.replace(old, processes=procs)
    result = criu_model.diff(old, new)
    dot = diff_graph_dot(old, new, result)
    born = next(line for line in dot.splitlines() if f"p{reader} [id=" in line)
    died = next(line for line in dot.splitlines() if f"p{reader}_old [id=" in line)
    assert 'class="added"' in born and "cm-reborn" in born
    assert 'class="removed"' in died and "cm-reader" in died
    root = dumped.pids["root"]
    assert f"p{root} -> p{reader} " in dot and f"p{root} -> p{reader}_old " in dot
    assert "added (1)" in dot and "removed (1)" in dot
    svg = _svg(dot)
    assert {f"p{reader}", f"p{reader}_old"} <= {g.get("id") for g in svg.iter(f"{SVG}g")}


# ---------------------------------------------------------------- graphviz.py


def test_missing_dot_names_the_package(monkeypatch: pytest.MonkeyPatch,
                                       tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))   # an empty directory: no dot anywhere
    with pytest.raises(GraphvizMissing) as err:
        run_dot("digraph { a -> b }", "svg")
    assert isinstance(err.value, CriuModelError)
    assert "apt-get install graphviz" in str(err.value)
    assert "--format dot" in str(err.value)
    # DOT output never needs Graphviz.
    assert run_dot("digraph { a -> b }", "dot") == b"digraph { a -> b }"


def test_unknown_format_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="choose from dot, svg, png"):
        run_dot("digraph {}", "gif")


@needs_dot
def test_dot_failure_is_reported_with_its_message() -> None:
    with pytest.raises(GraphvizFailed, match=r"dot -Tsvg failed \(exit 1\).*syntax error"):
        run_dot("digraph { a -> ", "svg")


def test_slow_dot_times_out(tmp_path: Path) -> None:
    slow = tmp_path / "dot"
    slow.write_text("#!/bin/sh\nexec sleep 5\n")
    slow.chmod(0o755)
    with pytest.raises(GraphvizFailed, match=r"more than 0\.2 s"):
        run_dot("digraph {}", "svg", timeout=0.2, dot=str(slow))


def test_png_is_refused_on_a_terminal_but_not_in_a_file_or_pipe(tmp_path: Path) -> None:
    import pty

    master, slave = pty.openpty()
    try:
        with open(slave, "wb", closefd=False) as tty:
            with pytest.raises(UsageError, match="png is binary: give -o FILE"):
                write_picture(b"\x89PNG", "png", None, tty)
            write_picture(b"digraph {}\n", "dot", None, tty)   # text may go to a terminal
        assert os.read(master, 100).startswith(b"digraph {}")
    finally:
        os.close(master)
        os.close(slave)
    write_picture(b"\x89PNG", "png", str(tmp_path / "x.png"), sys.stdout.buffer)
    assert (tmp_path / "x.png").read_bytes() == b"\x89PNG"
    r, w = os.pipe()
    with open(w, "wb") as pipe:
        write_picture(b"\x89PNG", "png", None, pipe)
    with open(r, "rb") as reader:
        assert reader.read() == b"\x89PNG"
