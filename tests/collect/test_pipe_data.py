"""A pipe's queued bytes are captured with tee(2) and left in the pipe for its reader."""

from __future__ import annotations

import os
import signal
import time

import criu_model
from tests.conftest import needs_root

PAYLOAD = b"queued-in-the-pipe:" + bytes(range(256)) * 40  # 10,259 bytes, every byte value


@needs_root
def test_queued_bytes_are_copied_and_left_in_place() -> None:
    inner_r, inner_w = os.pipe()   # both ends in the tree: the root reads, the child wrote
    outer_r, outer_w = os.pipe()   # the tree only writes to it: we (outside) read
    ready_r, ready_w = os.pipe()
    root = os.fork()
    if root == 0:
        os.setpgid(0, 0)  # one group: the test kills the whole tree
        os.close(outer_r)
        os.close(ready_r)
        kid = os.fork()
        if kid == 0:
            os.close(inner_r)
            os.write(inner_w, PAYLOAD)
            os.write(outer_w, b"out" * 10)
            os.write(ready_w, b"k")
            while True:
                signal.pause()
        os.close(inner_w)
        while True:
            signal.pause()
    os.close(inner_r)
    os.close(inner_w)
    os.close(outer_w)
    assert os.read(ready_r, 1) == b"k"
    try:
        time.sleep(0.05)
        snap = criu_model.dump([root])
        readers = [(t.pid, fd) for t in snap.fds for fd in t.fds
                   if fd.WhichOneof("state") == "pipe" and fd.pipe.read_end
                   and fd.pipe.queued_bytes == len(PAYLOAD)]
        assert [pid for pid, _fd in readers] == [root]  # the kid closed its read end
        (_, fd), = readers
        assert fd.pipe.data == PAYLOAD
        writers = [w for t in snap.fds for w in t.fds if w.WhichOneof("state") == "pipe"
                   and not w.pipe.read_end]
        outer = [w for w in writers if w.pipe.queued_bytes == 30]
        assert outer and all(not w.pipe.HasField("data") for w in outer)
        assert all(any(u.field == "pipe.data" and "would add a reader" in u.reason
                       for u in w.unreadable) for w in outer)
        inner = [w for w in writers if w.pipe.pipe_ino == fd.pipe.pipe_ino]
        assert inner and all(not any(u.field == "pipe.data" for u in w.unreadable)
                             for w in inner)  # its bytes were captured through the root
        assert os.read(outer_r, 100) == b"out" * 10  # nothing of it was taken
    finally:
        os.killpg(root, signal.SIGKILL)
        os.waitpid(root, 0)
        os.close(outer_r)
        os.close(ready_r)
        os.close(ready_w)


@needs_root
def test_the_reader_still_reads_every_byte_after_the_dump(tmp_path) -> None:
    r, w = os.pipe()
    os.write(w, PAYLOAD)
    holder = os.fork()
    if holder == 0:
        os.close(w)
        signal.pause()  # SIGUSR1 ends the pause; then read and report through the exit code
        os._exit(0)
    kid = os.fork()
    if kid == 0:  # reads only when told: after the dump
        os.close(w)
        signal.signal(signal.SIGUSR1, lambda *_: None)
        signal.pause()
        got = b""
        while len(got) < len(PAYLOAD):
            got += os.read(r, 65536)
        os._exit(0 if got == PAYLOAD else 3)
    os.close(r)
    try:
        time.sleep(0.05)
        snap = criu_model.write(criu_model.dump([kid]), tmp_path / "snap")
        loaded = criu_model.load(snap)
        (fd,) = [f for t in loaded.fds for f in t.fds if f.WhichOneof("state") == "pipe"
                 and f.pipe.queued_bytes == len(PAYLOAD)]
        assert fd.pipe.data == PAYLOAD
        os.kill(kid, signal.SIGUSR1)
        _, status = os.waitpid(kid, 0)
        kid = 0
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    finally:
        for pid in (kid, holder):
            if pid:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        os.close(w)
