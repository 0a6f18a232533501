"""A deleted file above the default capture limit (found rehearsing ZDTM ghost_multi_hole).

The snapshot held its 3 MiB (dumped with a higher --ghost-limit), but the sandbox's own
dump used the default 1 MiB limit, so the contents were compared with nothing. The
sandbox is dumped with a limit at least the snapshot's largest captured file.
"""

from __future__ import annotations

import os

import pytest

from criu_model.restore.judge import MATCHED, MISMATCHED
from tests.restore.progtree import dump_program, rehearsed

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, set_tid)")

_PROGRAM = """
import os, signal, sys
d, ready = sys.argv[1], int(sys.argv[2])
f = os.open(os.path.join(d, "big"), os.O_RDWR | os.O_CREAT, 0o644)
os.write(f, os.urandom(3 << 20))
os.unlink(os.path.join(d, "big"))
print(f, flush=True)
os.write(ready, b"ready")
os.close(ready)
signal.pause()
"""


def test_big_deleted_file_is_compared(tmp_path: object) -> None:
    snap, pid, (fd,) = dump_program(_PROGRAM, str(tmp_path), ghost_limit=4 << 20)
    assert max(g.size for g in snap.ghosts if g.captured) == 3 << 20
    report = rehearsed(snap)
    assert [e.to_json() for e in report.entries if e.status == MISMATCHED] == []
    assert next(e for e in report.entries if e.kind == "fd"
                and e.id == f"{pid}:{fd}").status == MATCHED
