"""Terminal escapes in data never reach the terminal (issue 13, item 10).

A real process whose comm, thread name, cwd, open file, unix socket name and
memfd name carry ESC ] 0 ; title BEL (a complete window-title sequence), a
newline and a C1 CSI is dumped; every text view (show, diff, diff of memory
contents, heat, plan, grep) must print the names escaped (``\\x1b``), with no
control byte but the newlines between rows.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from criu_model.images import load, write
from tests.proctree import _all_asleep

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="ptrace dump of a sibling needs root")

NAME = b"\x1b]0;T\x07\nzq"          # 9 bytes: fits a comm (15)
PATH_NAME = NAME + b"\xc2\x9b2J\xff"  # and a C1 CSI (U+009B) plus a byte that is not UTF-8
ESCAPED = "\\x1b]0;T\\x07\\nzq"
NEEDLE = b"cm-escape-needle"

CHILD = r"""
import ctypes, mmap, os, signal, socket, sys, threading
name, path_name, needle = (bytes.fromhex(a) for a in sys.argv[1:4])
libc = ctypes.CDLL(None, use_errno=True)
os.mkdir(path_name)
os.chdir(path_name)
f = open(path_name, "wb")
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(b"s" + name)
s.listen()
m = os.memfd_create(path_name.decode("utf-8", "surrogateescape"))
os.ftruncate(m, 4096)
os.write(m, needle + b"\x1b]0;inside\x07" * 300)
mem = mmap.mmap(m, 4096, mmap.MAP_SHARED)
libc.prctl(15, name)
if os.fork() == 0:          # shares every file with its parent: the shared view lists them
    signal.pause()
named = threading.Event()
def worker():
    libc.prctl(15, name)
    named.set()
    signal.pause()
threading.Thread(target=worker, daemon=True).start()
named.wait()
def touch(signum, frame):   # SIGUSR1: change the memfd, for the memory diff and heat
    mem[:7] = b"changed"
signal.signal(signal.SIGUSR1, touch)
print(os.getpid(), flush=True)
while True:
    signal.pause()
"""


@pytest.fixture
def escaped_proc(tmp_path: Path) -> Iterator[int]:
    """The hostile-named process (and its forked child), killed afterwards."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, NAME.hex(), PATH_NAME.hex(),
                             NEEDLE.hex()], cwd=tmp_path, stdout=subprocess.PIPE,
                            start_new_session=True)
    try:
        assert proc.stdout is not None
        pid = int(proc.stdout.readline())
        deadline = time.monotonic() + 10
        while not _all_asleep(pid) or len(os.listdir(f"/proc/{pid}/task")) < 2:
            assert time.monotonic() < deadline, "child never settled"
            time.sleep(0.01)
        yield pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _cli(*args: str | Path, ok: tuple[int, ...] = (0,)) -> bytes:
    out = subprocess.run([sys.executable, "-m", "criu_model", *map(str, args)],
                         capture_output=True, timeout=60)
    assert out.returncode in ok, (args, out.returncode, out.stderr.decode(errors="replace"))
    return out.stdout


def _assert_clean(view: str, out: bytes, expect_name: bool = True) -> None:
    """No control byte but row-separating newlines, no C1, no row split by a name."""
    bad = sorted({b for b in out if (b < 0x20 and b != 0x0A) or b == 0x7F})
    assert not bad, f"{view}: raw control bytes {bad} in {out!r}"
    decoded = out.decode("utf-8")   # strict: every byte that was not UTF-8 is escaped
    c1 = sorted({hex(ord(ch)) for ch in decoded if 0x80 <= ord(ch) < 0xA0})
    assert not c1, f"{view}: raw C1 controls {c1}"
    for row in decoded.splitlines():
        assert not row.lstrip().startswith("zq"), f"{view}: a name split a row: {row!r}"
    if expect_name:
        assert ESCAPED in decoded, f"{view}: the name is not shown escaped:\n{decoded}"


def test_every_text_view_escapes_control_bytes(escaped_proc: int, tmp_path: Path) -> None:
    pid = escaped_proc
    snap_dir = tmp_path / "snap"
    _cli("dump", pid, "-D", snap_dir, "--pages")
    views: dict[str, tuple[list[str | int], bool]] = {
        "tree": (["tree"], True), "procs": (["procs"], True), "fds": (["fds", pid], True),
        "sockets": (["sockets"], True), "shared": (["shared"], True), "ns": (["ns"], False),
        "mems": (["mems", pid], True), "threads": (["threads", pid], True),
    }
    for view, (args, expect) in views.items():
        _assert_clean(f"show {view}", _cli("show", snap_dir, *map(str, args)), expect)

    _assert_clean("plan", _cli("plan", snap_dir, "--offline", ok=(0, 3)))
    hits = json.loads(_cli("grep", snap_dir, NEEDLE.decode(), "--json"))
    assert hits, "the needle in the memfd mapping was not found"
    _assert_clean("grep", _cli("grep", snap_dir, NEEDLE.decode()))
    _assert_clean("show memory", _cli("show", snap_dir, "memory", pid, hex(hits[0]["addr"]),
                                      "4096"), expect_name=False)

    # diff of memory contents and heat: the memfd (named by its hostile name) changed.
    later = tmp_path / "later"
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while not _all_asleep(pid):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    _cli("dump", pid, "-D", later, "--pages", "--parent", snap_dir)
    _assert_clean("diff memory", _cli("diff", snap_dir, later, "--only", "memory", ok=(1,)))
    _assert_clean("heat", _cli("heat", snap_dir, later))

    # diff: B lacks the hostile-named fds and thread of A.
    plain = tmp_path / "plain"
    _cli("dump", pid, "-D", plain)
    snap = load(plain)
    table = snap.fds_by_pid[pid]
    keep = [fd for fd in table.fds if NAME not in fd.path]
    del table.fds[:]
    table.fds.extend(keep)
    proc = snap.by_pid[pid]
    threads = [t for t in proc.threads if t.tid == pid]
    del proc.threads[:]
    proc.threads.extend(threads)
    write(snap, tmp_path / "changed")
    _assert_clean("diff", _cli("diff", plain, tmp_path / "changed", ok=(1,)))
