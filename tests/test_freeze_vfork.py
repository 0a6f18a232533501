"""A vfork parent cannot be frozen: the dump says so at once, not after the 10 s timeout."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import criu_model
from criu_model.errors import CriuModelError

VFORK_C = r"""
#include <unistd.h>
int main(void) {
    pid_t p = vfork();
    if (p == 0) { sleep(20); _exit(0); }   /* the parent waits in vfork meanwhile */
    pause();
    return 0;
}
"""

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="ptrace freezing needs root"),
    pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to build a vfork parent"),
]


@pytest.fixture
def vfork_parent(tmp_path: Path) -> Iterator[tuple[int, int]]:
    src = tmp_path / "vf.c"
    src.write_text(VFORK_C)
    subprocess.run(["gcc", "-O2", "-o", str(tmp_path / "vf"), str(src)], check=True)
    proc = subprocess.Popen([str(tmp_path / "vf")])
    try:
        deadline = time.monotonic() + 5
        child = 0
        while time.monotonic() < deadline:
            kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            if kids and Path(f"/proc/{proc.pid}/stat").read_text().rsplit(") ", 1)[1][0] == "D":
                child = int(kids[0])
                break
            time.sleep(0.01)
        assert child, "the vfork child never appeared"
        yield proc.pid, child
    finally:
        for pid in (child, proc.pid):
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
        proc.wait()


def test_vfork_parent_is_named_quickly(vfork_parent: tuple[int, int]) -> None:
    parent, child = vfork_parent
    started = time.monotonic()
    with pytest.raises(CriuModelError, match=rf"process {parent} is a vfork parent.*{child}"):
        criu_model.dump([parent])
    assert time.monotonic() - started < 3  # was 10 s and a generic message
    # released: not traced, still waiting for its child (state D), which still sleeps
    status = Path(f"/proc/{parent}/status").read_text()
    assert "TracerPid:\t0" in status
    assert Path(f"/proc/{child}/stat").read_text().rsplit(") ", 1)[1][0] == "S"
