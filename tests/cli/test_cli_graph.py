"""`show DIR graph`, `diff A B --graph` and `show ARCHIVE container` through the real command."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import criu_model
from tests.conftest import needs_root

FIXTURES = Path(__file__).resolve().parents[1] / "formats" / "fixtures"


def _cli(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "criu_model", *map(str, args)],
                          capture_output=True, timeout=120)


def _grow_on_usr1(signum: int, frame: object) -> None:
    """The change between the two dumps: the root forks one more child."""
    if os.fork() == 0:
        while True:
            signal.pause()


@pytest.fixture
def two_snaps(tmp_path: Path) -> Iterator[tuple[Path, Path, int, int]]:
    """A parent and child, dumped; then the parent forks another child, dumped again."""
    r, w = os.pipe()
    root = os.fork()
    if root == 0:
        os.close(r)
        signal.signal(signal.SIGUSR1, _grow_on_usr1)
        kid = os.fork()
        if kid == 0:
            while True:
                signal.pause()
        os.write(w, str(kid).encode())
        while True:
            signal.pause()
    os.close(w)
    kid = int(os.read(r, 32))
    try:
        a = criu_model.write(criu_model.dump([root]), tmp_path / "a")
        os.kill(root, signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while len(criu_model.dump([root], page_counts=False).processes) < 3:
            assert time.monotonic() < deadline, "the root never forked its new child"
            time.sleep(0.01)
        b = criu_model.write(criu_model.dump([root]), tmp_path / "b")
        yield a, b, root, kid
    finally:
        subprocess.run(["pkill", "-KILL", "-P", str(root)], check=False)
        os.kill(root, signal.SIGKILL)
        os.waitpid(root, 0)


@needs_root
def test_show_graph_dot_svg_png(two_snaps: tuple[Path, Path, int, int], tmp_path: Path) -> None:
    a, _b, root, kid = two_snaps
    dot = _cli("show", a, "graph")
    assert dot.returncode == 0 and dot.stdout.startswith(b"digraph")
    assert f"pid {root}".encode() in dot.stdout and f"pid {kid}".encode() in dot.stdout
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed (apt-get install graphviz)")
    svg = _cli("show", a, "graph", "--format", "svg")
    assert svg.returncode == 0 and b"<svg" in svg.stdout and f"pid {kid}".encode() in svg.stdout
    png = tmp_path / "tree.png"
    done = _cli("show", a, "graph", "--format", "png", "-o", png)
    assert done.returncode == 0 and done.stdout == b""
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


@needs_root
def test_diff_graph_marks_the_added_child(two_snaps: tuple[Path, Path, int, int]) -> None:
    a, b, _root, _kid = two_snaps
    out = _cli("diff", a, b, "--graph", "dot")
    assert out.returncode == 1, out.stderr  # differences, as diff(1)
    assert out.stdout.startswith(b"digraph") and b"added" in out.stdout.lower()
    both = _cli("diff", a, b, "--graph", "dot", "--json")
    assert both.returncode == 2 and b"not both" in both.stderr


@needs_root
def test_graph_refusals_are_one_line(two_snaps: tuple[Path, Path, int, int],
                                     tmp_path: Path) -> None:
    a, _b, root, _kid = two_snaps
    for args in (("--pid", str(root)), ("--json",)):
        out = _cli("show", a, "graph", *args)
        assert out.returncode == 2 and out.stderr.count(b"\n") == 1, out.stderr
    bad = _cli("show", a, "graph", "-o", tmp_path / "no" / "such" / "dir.dot")
    assert bad.returncode == 1 and b"cannot write the picture" in bad.stderr


def test_container_view_of_an_archive(tmp_path: Path) -> None:
    from tests.formats.test_criu_archive import CONFIG, _archive

    path = _archive(tmp_path / "ckpt.tar", dict(CONFIG, runtime="crun"),
                    {"annotations": {"io.container.manager": "libpod"}})
    out = _cli("show", path, "container")
    assert out.returncode == 0, out.stderr
    rows = dict(line.split(None, 1) for line in out.stdout.decode().splitlines()
                if line.split(None, 1)[0] in ("Container", "Engine"))
    assert rows == {"Container": "scn-test", "Engine": "Podman"}
    js = _cli("show", path, "container", "--json")
    assert js.returncode == 0 and b'"view": "container"' in js.stdout
    assert b'"runtime": "crun"' in js.stdout


def test_container_view_of_a_directory_is_refused() -> None:
    out = _cli("show", FIXTURES / "sleep", "container")
    assert out.returncode == 1 and b"not a checkpoint archive" in out.stderr
    assert out.stderr.count(b"\n") == 1
