"""One line instead of a traceback (issue 13, item 7).

A dump into a read-only filesystem, a user who may not read root's snapshot,
Ctrl-C during start-up, a checksum mismatch: each is one line on stderr with
the documented exit status.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from criu_model.errors import CriuModelError, ImageError
from criu_model.images import load, write
from tests.images.sample import sample_snapshot

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount, setuid, ptrace)")
CLI = [sys.executable, "-m", "criu_model"]


def _one_line(err: bytes) -> str:
    text = err.decode()
    assert "Traceback" not in text, text
    assert text.count("\n") == 1, text
    return text


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A small tmpfs mounted read-only (EROFS even for root)."""
    mnt = tmp_path / "ro"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


@ROOT_ONLY
def test_dump_into_read_only_filesystem(read_only_dir: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        out = subprocess.run([*CLI, "dump", str(sleeper.pid), "-D", str(read_only_dir / "x")],
                             capture_output=True, timeout=60)
        assert out.returncode == 1
        assert "read-only file system" in _one_line(out.stderr)
        status = Path(f"/proc/{sleeper.pid}/status").read_text()
        assert "TracerPid:\t0" in status and "State:\tS" in status
    finally:
        sleeper.kill()
        sleeper.wait()
    # Past the CLI's early check (the filesystem went read-only during the dump): the
    # writer's own error, still a CriuModelError.
    with pytest.raises(CriuModelError, match="Read-only file system"):
        write(sample_snapshot(), read_only_dir / "y")


@pytest.fixture
def roots_snapshot() -> Iterator[Path]:
    """A 0700 snapshot of root's in a directory anyone can traverse."""
    base = Path(tempfile.mkdtemp(prefix="cm-private-"))
    try:
        base.chmod(0o711)
        yield write(sample_snapshot(), base / "snap")
    finally:
        shutil.rmtree(base)


def _world_can_import() -> bool:
    """Whether another user can run this interpreter and import rich (a 0700 virtualenv
    cannot be read by nobody); tried for real, once."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return False
    probe = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            sys.executable, "-c", "import rich.console"], cwd="/",
                           capture_output=True, timeout=60)
    return probe.returncode == 0


@ROOT_ONLY
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
@pytest.mark.skipif(not _world_can_import(), reason="the interpreter or its packages are not "
                    "readable by another user (a 0700 virtualenv)")
@pytest.mark.parametrize(("command", "status"), [("show", 1), ("diff", 2), ("plan", 1)])
def test_other_user_on_roots_snapshot(roots_snapshot: Path, command: str, status: int) -> None:
    args = {"show": ["show", str(roots_snapshot)],
            "diff": ["diff", str(roots_snapshot), str(roots_snapshot)],
            "plan": ["plan", str(roots_snapshot), "--offline"]}[command]
    repo = str(Path(__file__).resolve().parents[2])   # this checkout, not another install
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          *CLI, *args], capture_output=True, timeout=60, cwd="/",
                         env={**os.environ, "PYTHONPATH": repo})
    assert out.returncode == status, out.stderr
    line = _one_line(out.stderr)
    assert "permission denied for snapshot" in line and "mode 0700" in line, line


def test_checksum_mismatch_says_whole_file(tmp_path: Path) -> None:
    a = write(sample_snapshot(1), tmp_path / "a")
    b = write(sample_snapshot(2), tmp_path / "b")
    (a / "processes.img").write_bytes((b / "processes.img").read_bytes())
    with pytest.raises(ImageError, match=r"processes\.img: the whole file \(\d+ bytes\)"):
        load(a)


# An import hook that raises KeyboardInterrupt when the CLI imports rich.console,
# exactly as a Ctrl-C during that import would.
_INTERRUPT_IMPORT = r"""
import sys
class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == "rich.console":
            raise KeyboardInterrupt
sys.meta_path.insert(0, Interrupt())
from criu_model.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def test_ctrl_c_while_the_cli_imports() -> None:
    out = subprocess.run([sys.executable, "-c", _INTERRUPT_IMPORT, "check"], capture_output=True,
                         timeout=60)
    assert out.returncode == 130
    assert "interrupted" in _one_line(out.stderr)


def test_ctrl_c_while_parsing(monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    from criu_model import cli

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_build_parser", interrupted)
    assert cli.main(["check"]) == 130
    assert "interrupted" in capsys.readouterr().err


def _our_frames(err: str) -> list[str]:
    """Traceback lines inside criu-model's own modules (what the CLI can guard)."""
    return [line for line in err.splitlines()
            if line.strip().startswith("File ") and "/criu_model/" in line]


def _python_start_up() -> float:
    """Seconds this interpreter takes to start and exit doing nothing (site included)."""
    times = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True, timeout=60)
        times.append(time.perf_counter() - started)
    return sorted(times)[1]


def test_sigint_during_start_up_never_shows_our_traceback(tmp_path: Path) -> None:
    """Real SIGINTs over the first 0.2 s of `show`: one line and 130 (or done, 0).

    A signal inside Python's own start-up (site, the console script's import
    line: ~15 ms on an idle machine, before any criu-model code runs) is
    Python's traceback and tolerated; one with a frame in criu_model/ is not.
    Half the signals land after Python's measured start-up, and most of
    those must end cleanly.
    """
    snap = write(sample_snapshot(), tmp_path / "snap")
    rng = random.Random(13)
    python = _python_start_up()
    ours: list[str] = []
    late: list[tuple[float, int, str]] = []
    for i in range(24):
        delay = rng.uniform(0.0, 0.2) if i % 2 else python + rng.uniform(0.0, 0.2)
        proc = subprocess.Popen([*CLI, "show", str(snap)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        text = err.decode()
        if _our_frames(text):
            ours.append(f"{delay:.3f}s: {text}")
        if i % 2 == 0:
            late.append((delay, proc.returncode, text))
    assert not ours, "\n".join(ours)
    clean = [d for d, status, text in late if status in (0, 130) and "Traceback" not in text]
    assert len(clean) >= len(late) * 3 // 4, (python, late)
