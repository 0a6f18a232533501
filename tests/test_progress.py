"""Progress: the bar a person sees at a terminal, and the reports a page dump and a grep give."""

from __future__ import annotations

import io
from pathlib import Path

import criu_model
from criu_model.pages.search import grep
from criu_model.progress import Bar, bar_for_terminal
from tests.conftest import needs_root
from tests.memchild import NEEDLE, spawn_mem_tree


def test_bar_draws_a_share_and_clears_its_line() -> None:
    out = io.StringIO()
    bar = Bar("dump", stream=out, delay_s=0)
    bar(512 << 20, 1 << 30, "process 1/2")
    text = out.getvalue()
    assert text.startswith("\r") and "dump [" in text and " 50%" in text
    assert "512.0 MiB of 1.0 GiB" in text and "process 1/2" in text
    assert len(text) <= 80  # one line of the fallback width, never wrapped
    bar.close()
    assert out.getvalue().endswith("\r") and out.getvalue().count("\r") == 3


def test_bar_is_silent_for_quick_work_and_off_the_terminal() -> None:
    out = io.StringIO()
    with Bar("grep", unit="pages", stream=out, delay_s=60) as bar:
        bar(10, 100, "")
    assert out.getvalue() == ""
    # pytest captures stderr: not a terminal, so the CLI gets no bar at all
    assert bar_for_terminal("dump") is None


@needs_root
def test_page_dump_and_grep_report_progress(tmp_path: Path) -> None:
    calls: list[tuple[int, int, str]] = []
    with spawn_mem_tree(tmp_path) as tree:
        snap = criu_model.dump([tree.root.pid], pages=True, pages_dir=str(tmp_path),
                               progress=lambda done, total, note: calls.append((done, total,
                                                                                note)))
    assert calls, "a page dump reported no progress"
    done = [c[0] for c in calls]
    assert done == sorted(done) and done[-1] == snap.inventory.page_stats.read_bytes
    expected = calls[0][1]
    assert expected > 0 and all(c[1] == expected for c in calls)
    # the estimate comes from page counts: the same order as what was read
    assert expected // 4 <= done[-1] <= expected * 2
    assert {c[2] for c in calls} >= {f"process 1/2 (pid {tree.root.pid})"}
    seen: list[tuple[int, int]] = []
    hits = list(grep(snap, NEEDLE, progress=lambda d, t, _n: seen.append((d, t))))
    assert hits and seen and seen[0][0] == 0
    assert all(d < t for d, t in seen) and len({t for _d, t in seen}) == 1


@needs_root
def test_cli_dump_and_grep_draw_a_bar_on_a_terminal_only(tmp_path: Path) -> None:
    """The real command on a pty: the bar is on stderr, cleared before the output."""
    import os
    import pty
    import subprocess
    import sys

    from criu_model.progress import DELAY_ENV

    env = dict(os.environ, **{DELAY_ENV: "0"})
    with spawn_mem_tree(tmp_path) as tree:
        def run(*args: str, tty: bool) -> tuple[int, bytes, bytes]:
            master, slave = pty.openpty()
            err = slave if tty else subprocess.PIPE
            proc = subprocess.Popen([sys.executable, "-m", "criu_model", *args],
                                    stdout=subprocess.PIPE, stderr=err, env=env)
            os.close(slave)
            out, piped = proc.communicate(timeout=120)
            seen = b""
            while tty:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the pty's last writer is gone
                    break
                if not chunk:
                    break
                seen += chunk
            os.close(master)
            return proc.returncode, out, seen if tty else piped

        code, out, err = run("dump", str(tree.root.pid), "-D", str(tmp_path / "s1"),
                             "--pages", tty=True)
        assert code == 0 and out.startswith(b"dumped ")
        assert b"dump: pages" in err and b"MiB" in err and err.endswith(b"\r")
        code, out, err = run("dump", str(tree.root.pid), "-D", str(tmp_path / "s2"),
                             "--pages", tty=False)
        assert code == 0 and err == b""  # piped stderr: never a bar
    code, out, err = run("grep", str(tmp_path / "s1"), NEEDLE.decode("latin-1"), tty=True)
    assert code == 0 and NEEDLE in out and b"grep" in err and b"\r" in err
    # plan --rehearse counts the plan's steps, then says it judges; the report follows
    code, out, err = run("plan", str(tmp_path / "s1"), "--rehearse", tty=True)
    assert code in (0, 3) and b"rehearsed:" in out
    assert b"rehearsing" in err and b" steps" in err and b"judging" in err


def test_criu_import_reports_the_bytes_it_copies(tmp_path: Path) -> None:
    """`import` copies a CRIU dump's pages: the reports count up to the pagemaps' total."""
    from criu_model.formats.criu import import_pages, load_criu
    from tests.formats.conftest import FIXTURES

    snap = load_criu(FIXTURES / "tree-full")
    calls: list[tuple[int, int, str]] = []
    import_pages(snap, tmp_path, progress=lambda d, t, n: calls.append((d, t, n)))
    try:
        done = [c[0] for c in calls]
        assert done == sorted(done) and len({c[1] for c in calls}) == 1
        assert done[-1] == calls[-1][1] == snap.inventory.page_stats.stored * 4096 > 0
        assert calls[-1][2].startswith("owner ")
    finally:
        assert snap.page_sink is not None
        snap.page_sink.close()


@needs_root
def test_rehearsal_reports_its_steps() -> None:
    """rehearse(progress=) hears every step in order, up to the plan's length, then judging."""
    import subprocess

    import criu_model
    from criu_model.restore import rehearse

    proc = subprocess.Popen(["sleep", "1000"], stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        snap = criu_model.dump([proc.pid])
    finally:
        proc.kill()
        proc.wait()
    plan = criu_model.plan(snap, live=False, pid_ns="new")
    calls: list[tuple[int, int, str]] = []
    report = rehearse(snap, plan, progress=lambda d, t, n: calls.append((d, t, n)))
    assert report.ok
    done = [c[0] for c in calls]
    assert done == sorted(done) and {c[1] for c in calls} == {len(plan.steps)}
    assert done[-1] == len(plan.steps) and calls[-1][2] == "judging"
