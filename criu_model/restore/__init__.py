"""Executes plan steps for real: the rehearsal sandbox and its judge today, a restorer later.

planner/ decides, restore/ does. Public API::

    report = rehearse(snapshot, plan(snapshot, live=False, pid_ns="new"))
    report.ok, report.summary(), report.to_json()

The worker (worker.py) is the program each sandbox process runs; sandbox.py
makes and guards the namespaces; executor.py conducts the steps; memory.py
maps and fills each process's address space (conductor and sandbox sides);
judge.py compares the parked sandbox with the snapshot, memory_judge.py its
memory, read back page by page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from criu_model.restore.judge import RehearsalReport
    from criu_model.restore.rehearsal import rehearse

__all__ = ["RehearsalReport", "rehearse"]


def __getattr__(name: str) -> Any:
    # Lazy: the sandbox worker imports criu_model.restore.worker and must not pay for
    # the dumper and the planner.
    if name == "rehearse":
        from criu_model.restore.rehearsal import rehearse
        return rehearse
    if name == "RehearsalReport":
        from criu_model.restore.judge import RehearsalReport
        return RehearsalReport
    raise AttributeError(f"module 'criu_model.restore' has no attribute {name!r}")
