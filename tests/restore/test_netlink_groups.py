"""A netlink socket's default destination group (found rehearsing ZDTM sk-netlink).

connect() takes a group mask; the kernel keeps the number of its lowest bit, and
that is what netlink_diag reports (dst_group). The number was passed back as a mask:
group 32 came back as group 6.
"""

from __future__ import annotations

import os

import pytest

from criu_model.restore.judge import MATCHED, MISMATCHED
from tests.restore.progtree import dump_program, rehearsed

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, set_tid)")

_PROGRAM = """
import os, signal, socket, sys
ready = int(sys.argv[1])
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
s.bind((0, 0))
s.connect((0, 1 << 31))                 # the kernel, group 32
os.set_inheritable(s.fileno(), True)
print(s.detach(), flush=True)
os.write(ready, b"ready")
os.close(ready)
signal.pause()
"""


def test_destination_group_32() -> None:
    snap, pid, (fd,) = dump_program(_PROGRAM)
    sock = next(s for s in snap.sockets if s.WhichOneof("kind") == "netlink")
    assert sock.netlink.dst_group == 32
    report = rehearsed(snap)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    entry = next(e for e in report.entries if e.kind == "fd" and e.id == f"{pid}:{fd}")
    assert entry.status == MATCHED
