"""The command ends with os._exit once main() returned (cli.run_and_exit).

Skipping the interpreter's teardown must change nothing a caller sees: every
byte written to a pipe or a file arrives, exit statuses stay what they were,
atexit handlers run, a reader that goes away early is no error, and a
command that leaves a non-daemon thread running still waits for it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import criu_model

CLI = [sys.executable, "-m", "criu_model"]
# Block-buffered streams, as a user's shell gives them (this environment may set
# PYTHONUNBUFFERED, under which nothing would wait in a buffer to be lost).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}


@pytest.fixture(scope="module")
def snap_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.geteuid() != 0:
        pytest.skip("needs root to dump a process")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.2)
        out = tmp_path_factory.mktemp("exit") / "snap"
        criu_model.write(criu_model.dump([proc.pid]), out)
        return out
    finally:
        proc.kill()
        proc.wait()


def test_everything_written_arrives(snap_dir: Path, tmp_path: Path) -> None:
    piped = subprocess.run([*CLI, "show", str(snap_dir), "--json"], capture_output=True,
                           check=True, env=ENV)
    assert json.loads(piped.stdout)["processes"], "the JSON arrived whole"
    assert piped.stderr == b""
    # the same bytes into a file (a block-buffered stdout) as into a pipe
    target = tmp_path / "out.json"
    with open(target, "wb") as f:
        subprocess.run([*CLI, "show", str(snap_dir), "--json"], stdout=f, check=True, env=ENV)
    assert target.read_bytes() == piped.stdout


def test_exit_statuses_are_kept(snap_dir: Path) -> None:
    assert subprocess.run([*CLI, "--help"], capture_output=True).returncode == 0
    assert subprocess.run([*CLI, "--version"], capture_output=True).returncode == 0
    assert subprocess.run([*CLI, "show"], capture_output=True).returncode == 2
    gone = subprocess.run([*CLI, "show", str(snap_dir / "nowhere")], capture_output=True)
    assert gone.returncode == 1 and b"no such snapshot directory" in gone.stderr
    same = subprocess.run([*CLI, "diff", str(snap_dir), str(snap_dir)], capture_output=True)
    assert same.returncode == 0


def test_a_reader_that_leaves_early_is_no_error(snap_dir: Path) -> None:
    proc = subprocess.Popen([*CLI, "show", str(snap_dir), "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=ENV)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(10)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait() == 0
    assert b"Exception ignored" not in err and b"Traceback" not in err


def _run_with(main_body: str) -> subprocess.CompletedProcess[str]:
    """run_and_exit() in a fresh interpreter, with ``main_body`` as main()."""
    script = "\n".join([
        "import atexit, sys, threading, time",
        "from criu_model import cli",
        "def fake_main():",
        textwrap.indent(textwrap.dedent(main_body).strip("\n"), "    "),
        "cli.main = fake_main",
        "cli.run_and_exit()",
    ])
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=30, env=ENV)


def test_atexit_handlers_and_buffered_output_are_not_lost() -> None:
    done = _run_with("""
        atexit.register(lambda: print("atexit ran", file=sys.stderr))
        sys.stdout.write("no newline, still buffered")
        return 3
    """)
    assert done.returncode == 3
    assert done.stdout == "no newline, still buffered"
    assert "atexit ran" in done.stderr


def test_a_live_non_daemon_thread_is_waited_for() -> None:
    done = _run_with("""
        def late():
            time.sleep(0.3)
            print("thread finished", flush=True)
        threading.Thread(target=late).start()
        return 0
    """)
    assert done.returncode == 0
    assert "thread finished" in done.stdout


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
def test_a_full_output_is_one_clear_error(snap_dir: Path) -> None:
    for view in ([], ["fds"], ["--json"]):
        with open("/dev/full", "wb") as full:
            done = subprocess.run([*CLI, "show", str(snap_dir), *view], stdout=full,
                                  stderr=subprocess.PIPE, env=ENV)
        assert done.returncode == 1, view
        assert done.stderr.decode().strip().splitlines() == [
            "criu-model: error: cannot write the output: No space left on device"], view
