"""Cross-reference checks of regs.img against processes.img.

Kept apart from validate.py so the registers feature stays in its own files;
``validate()`` calls :func:`validate_registers` after the process checks.
"""

from __future__ import annotations

from pathlib import Path

from criu_model.errors import InconsistentImage
from criu_model.snapshot import Snapshot

IMAGE = "regs.img"


def validate_registers(snap: Snapshot, root: Path, offsets: dict[str, list[int]]) -> None:
    """Each ProcessRegs belongs to one dumped process, each of its threads to that process.

    The dump reads registers only of threads it listed in the Process message,
    so a tid outside it means the files do not belong together.
    """
    path = str(root / IMAGE)
    entry_offsets = offsets.get(IMAGE, [])
    seen: set[int] = set()
    for i, regs in enumerate(snap.registers):
        at = entry_offsets[i] if i < len(entry_offsets) else None
        proc = snap.by_pid.get(regs.pid)
        if proc is None or regs.pid in seen:
            what = "is not a dumped process" if proc is None else "has two register entries"
            raise InconsistentImage(path, at, f"pid {regs.pid} {what}")
        seen.add(regs.pid)
        tids = {t.tid for t in proc.threads}
        thread_seen: set[int] = set()
        for thread in regs.threads:
            if thread.tid not in tids or thread.tid in thread_seen:
                what = (f"is not a thread of pid {regs.pid} in processes.img"
                        if thread.tid not in tids else "appears twice")
                raise InconsistentImage(path, at, f"pid {regs.pid}: thread {thread.tid} {what}")
            thread_seen.add(thread.tid)
