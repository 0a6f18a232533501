"""criu-model: the kernel-visible state of Linux process trees, as CRIU sees it.

Public API::

    snap = criu_model.dump([pid])             # in memory, targets thawed on return
    path = criu_model.write(snap, "dump-dir")  # atomic snapshot directory
    snap = criu_model.load("dump-dir")         # validated
    rows = criu_model.check()                  # kernel features on this machine
    changes = criu_model.diff(snap_a, snap_b)  # semantic difference of two snapshots
    result = criu_model.plan(snap)             # restore plan + dry run (planner.Plan)

Names are imported lazily: `show` on a snapshot should not pay for loading
the collectors, and the collectors should not pay for rich.
"""

from __future__ import annotations

import importlib

# Not `from typing import ...`: typing costs ~5 ms of every start-up, and a
# Ctrl-C in that window would show a traceback before the CLI can catch it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "dump": "criu_model.dumper",
    "diff": "criu_model.differ",
    "plan": "criu_model.planner",
    "load": "criu_model.images",
    "write": "criu_model.images",
    "check": "criu_model.features",
    "Snapshot": "criu_model.snapshot",
    "CriuModelError": "criu_model.errors",
}

if TYPE_CHECKING:
    from criu_model.differ import diff
    from criu_model.dumper import dump
    from criu_model.errors import CriuModelError
    from criu_model.features import check
    from criu_model.images import load, write
    from criu_model.planner import plan
    from criu_model.snapshot import Snapshot


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'criu_model' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = ["CriuModelError", "Snapshot", "__version__", "check", "diff", "dump", "load", "plan",
           "write"]
