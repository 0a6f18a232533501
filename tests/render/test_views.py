"""`show DIR VIEW`: per-view JSON, filters, pty names, narrow terminals, piped output."""

from __future__ import annotations

import io
import json
import re

import pytest
from rich.console import Console

from criu_model.errors import BadArgument
from criu_model.render import text as render
from criu_model.render.views import FD_KINDS, make_selection
from tests.render.conftest import LONG_ARG, ViewTree
from tests.render.helpers import run_on_tty, run_piped


def _json(*args: str) -> dict:
    res = run_piped(*args, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_show_json_without_a_view_is_still_the_whole_snapshot(view_tree: ViewTree) -> None:
    whole = _json("show", str(view_tree.dir))
    assert "view" not in whole and whole["format_version"]
    assert {p["pid"] for p in whole["processes"]} == {view_tree.root, view_tree.kid1,
                                                      view_tree.kid2, view_tree.grand}


def test_each_view_json_is_just_its_rows(view_tree: ViewTree) -> None:
    d, t = str(view_tree.dir), view_tree
    order = [p.pid for p in t.snap.processes]   # parents first (pids may wrap: not sorted)
    fds = _json("show", d, "fds", str(t.root))
    assert fds["view"] == "fds" and set(fds) == {"view", "filters", "fds"}
    assert {f["pid"] for f in fds["fds"]} == {t.root}
    assert {"fd", "kind", "path", "file_id", "pos", "flags"} <= set(fds["fds"][0])
    procs = _json("show", d, "procs")
    assert [p["pid"] for p in procs["processes"]] == order
    assert sorted(order) == sorted([t.root, t.kid1, t.kid2, t.grand])
    assert LONG_ARG in procs["processes"][0]["cmdline"]
    assert procs["processes"][0]["comm"] == "cm-viewroot"
    tree = _json("show", d, "tree")
    assert {p["pid"]: p["depth"] for p in tree["processes"]} == {
        t.root: 0, t.kid1: 1, t.kid2: 1, t.grand: 2}
    rows = [p["pid"] for p in tree["processes"]]
    assert rows[0] == t.root and rows.index(t.grand) == rows.index(t.kid2) + 1   # ps -ejH
    assert next(p for p in tree["processes"] if p["pid"] == t.kid2)["children"] == [t.grand]
    socks = _json("show", d, "sockets")
    assert sorted(s["netid"] for s in socks["sockets"]) == ["tcp", "u_str", "u_str"]
    listener = next(s for s in socks["sockets"] if s["netid"] == "tcp")
    assert listener["sport"] == t.port and listener["state"] == "LISTEN"
    assert sorted(h["pid"] for h in listener["holders"]) == sorted(
        [t.root, t.kid1, t.kid2, t.grand])
    shared = _json("show", d, "shared")
    assert shared["view"] == "shared" and shared["files"] and shared["tasks"] == []
    assert all(len({h["pid"] for h in f["holders"]}) == 4 for f in shared["files"])
    ns = _json("show", d, "ns")
    assert {n["type"] for n in ns["namespaces"]} >= {"net", "pid", "mnt", "user"}
    mems = _json("show", d, "mems", str(t.kid1))
    assert mems["vmas"] and {v["pid"] for v in mems["vmas"]} == {t.kid1}
    assert {"start", "end", "prot", "kind", "path"} <= set(mems["vmas"][0])
    threads = _json("show", d, "threads", str(t.root))
    assert [x["tid"] for x in threads["threads"]] == [t.root]


def test_filters_in_text_and_json_agree(view_tree: ViewTree) -> None:
    d, t = str(view_tree.dir), view_tree
    sub = _json("show", d, "procs", "--pid", str(t.kid2), "--children")
    assert [p["pid"] for p in sub["processes"]] == [t.kid2, t.grand]
    assert sub["filters"]["pid"] == [t.kid2] and sub["filters"]["children"] is True
    tree = run_piped("show", d, "tree", "--pid", str(t.kid2), "--children")
    rows = tree.stdout.splitlines()[1:]
    assert [int(r.split()[0]) for r in rows] == [t.kid2, t.grand]
    assert rows[1].split()[-1] == "cm-viewgrand" and "  cm-viewgrand" in rows[1]
    kids = _json("show", d, "procs", "--comm", "cm-viewkid*")
    assert sorted(p["pid"] for p in kids["processes"]) == sorted([t.kid1, t.kid2])
    assert _json("show", d, "procs", "--state", "zombie")["processes"] == []
    sleeping = _json("show", d, "procs", "--state", "S")["processes"]
    assert len(sleeping) == 4
    ttys = _json("show", d, "fds", "--pid", str(t.root), "--kind", "tty")["fds"]
    assert [f["fd"] for f in ttys] == sorted(f["fd"] for f in ttys) and len(ttys) == 2
    text_rows = run_piped("show", d, "fds", "--pid", str(t.root), "--kind", "tty")
    assert [int(r.split()[1]) for r in text_rows.stdout.splitlines()[1:]] == \
        [f["fd"] for f in ttys]
    tcp = _json("show", d, "sockets", "--kind", "tcp")["sockets"]
    assert [s["sport"] for s in tcp] == [t.port]
    listen = _json("show", d, "sockets", "--state", "listen")["sockets"]
    assert [s["inode"] for s in listen] == [s["inode"] for s in tcp]
    only_kid = _json("show", d, "sockets", "--pid", str(t.kid1), "--kind", "unix")["sockets"]
    assert len(only_kid) == 2
    stack = _json("show", d, "mems", str(t.root), "--kind", "stack")["vmas"]
    assert [v["kind"] for v in stack] == ["stack"]
    pipes = _json("show", d, "shared", "--kind", "pipe")["files"]
    assert pipes and {f["kind"] for f in pipes} == {"pipe"}
    nets = _json("show", d, "ns", "--kind", "net")["namespaces"]
    assert [n["type"] for n in nets] == ["net"]


@pytest.mark.parametrize("argv, named", [
    (["fds", "--kind", "bogus"], "pipe"),
    (["sockets", "--kind", "bogus"], "tcp"),
    (["mems", "1", "--kind", "bogus"], "stack"),
    (["procs", "--state", "Q"], "zombie"),
    (["sockets", "--state", "SLEEPY"], "LISTEN"),
    (["tree", "--kind", "pipe"], "fds"),
    (["procs", "--children"], "--pid"),
    (["mems"], "PID"),
    (["procs", "12"], "--pid"),
])
def test_bad_filters_are_usage_errors_naming_the_allowed(view_tree: ViewTree,
                                                         argv: list[str], named: str) -> None:
    res = run_piped("show", str(view_tree.dir), *argv)
    assert res.returncode == 2, res
    assert res.stdout == "" and len(res.stderr.strip().splitlines()) == 1
    assert named in res.stderr and "Traceback" not in res.stderr


def test_unknown_pid_filter_says_what_the_snapshot_holds(view_tree: ViewTree) -> None:
    res = run_piped("show", str(view_tree.dir), "fds", "--pid", "999999999")
    assert res.returncode == 1 and str(view_tree.root) in res.stderr
    with pytest.raises(BadArgument, match="allowed: " + " ".join(FD_KINDS[:3])):
        make_selection("fds", kind="nope")


def test_pty_master_is_named_by_its_index(view_tree: ViewTree) -> None:
    index = view_tree.pty.rsplit("/", 1)[1]
    out = run_piped("show", str(view_tree.dir), "fds", str(view_tree.root)).stdout
    master = [r for r in out.splitlines() if "ptmx" in r]
    assert len(master) == 1 and master[0].endswith(f"/dev/ptmx (pts/{index})")
    assert any(r.endswith(view_tree.pty) for r in out.splitlines())   # the slave


def _console(width: int) -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=width, force_terminal=True, color_system=None,
                   highlight=False), buf


# view -> (render call, a regex every data row must match at its start: the key columns)
_KEY_ROWS = {
    "procs": r"^\s*(?P<pid>\d+)\s+\d+\s+\d+\s+\d+\s+(?:[\d,]+\s+)?\S+\s+-?\d+\s+S\s+\d+\s+\d+"
             r"\s+\d+\s+cm-view",
    "fds": r"^\s*(?P<pid>\d+)\s+\d+\s+(?:regular|pipe|tty|socket)\s",
    "tree": r"^\s*(?P<pid>\d+)\s+\d+\s+\d+\s+S\s",
    "sockets": r"^(?:u_str|tcp)\s+(?:ESTABLISHED|LISTEN)\s+\d+\s+\d+\s",
    "mems": r"^[0-9a-f]{8,}\s+[0-9a-f]{8,}\s+[r-][w-][x-][ps]\s+[0-9a-f]+\s+"
            r"(?:[0-9a-f]{2}:[0-9a-f]{2}\s+\d+\s+)?[a-z_]+\s",
}


@pytest.mark.parametrize("width", [80, 200])
def test_tables_fit_a_terminal_and_keep_key_columns(view_tree: ViewTree, width: int) -> None:
    snap, t = view_tree.snap, view_tree
    calls = {"procs": lambda c: render.show_procs(snap, c),
             "fds": lambda c: render.show_fds(snap, None, c),
             "tree": lambda c: render.show_tree(snap, c),
             "sockets": lambda c: render.show_sockets(snap, c),
             "shared": lambda c: render.show_shared(snap, c),
             "ns": lambda c: render.show_namespaces(snap, c),
             "mems": lambda c: render.show_mems(snap, t.root, c)}
    for view, call in calls.items():
        console, buf = _console(width)
        call(console)
        lines = buf.getvalue().splitlines()
        assert all(len(line) <= width for line in lines), (view, max(map(len, lines)))
        pattern = _KEY_ROWS.get(view)
        if pattern is None:
            continue
        rows = [m for line in lines if (m := re.match(pattern, line))]
        expected = {"procs": 4, "tree": 4, "sockets": 3,
                    "fds": sum(len(x.fds) for x in snap.fds),
                    "mems": len(snap.memory_by_pid[t.root].vmas)}[view]
        assert len(rows) == expected, (view, width, lines[:6])
        if "pid" in pattern:
            assert {int(m["pid"]) for m in rows} == {t.root, t.kid1, t.kid2, t.grand}
    console, buf = _console(width)
    render.show_mems(snap, t.root, console)
    names = tuple({v.path.rsplit(b"/", 1)[1].decode()
                   for v in snap.memory_by_pid[t.root].vmas if b"python" in v.path})
    python = [line for line in buf.getvalue().splitlines() if "python" in line]
    assert names and python and all(line.rstrip().endswith(names) for line in python)
    console, buf = _console(width)
    render.show_procs(snap, console)
    first = buf.getvalue().splitlines()[1]
    assert "…" in first                       # the cmdline is shortened, in one line
    assert first.startswith(f"{t.root} ") or first.lstrip().startswith(f"{t.root} ")


def test_narrow_terminal_through_the_command(view_tree: ViewTree) -> None:
    d = str(view_tree.dir)
    for width in (80, 200):
        status, lines = run_on_tty(width, "show", d, "fds")
        assert status == 0 and all(len(line) <= width for line in lines)
        rows = [line for line in lines if re.match(_KEY_ROWS["fds"], line)]
        assert len(rows) == sum(len(x.fds) for x in view_tree.snap.fds)
        status, lines = run_on_tty(width, "show", d, "procs")
        assert status == 0 and all(len(line) <= width for line in lines)
        assert [int(line.split()[0]) for line in lines[1:]] == \
            [p.pid for p in view_tree.snap.processes]
    # --wide: full values on the terminal too (the terminal wraps them, we do not cut)
    status, lines = run_on_tty(80, "show", d, "procs", "--wide")
    assert status == 0 and LONG_ARG in "".join(lines)


def test_piped_output_is_never_cut(view_tree: ViewTree) -> None:
    out = run_piped("show", str(view_tree.dir), "procs").stdout.splitlines()
    assert len(out) == 5 and all(LONG_ARG in row for row in out[1:])
    assert "…" not in "".join(out)
