"""Foreign checkpoint formats read into a criu-model Snapshot.

`detect(path)` tells what a path holds without reading more than a few
bytes, so `load()` can route a CRIU directory or archive here and keep its
own path for criu-model snapshots.
"""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

_CRMI = int.from_bytes(b"CRMI", "little")  # every criu-model image starts with it
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.zstd")


def _first_u32s(path: Path, n: int = 2) -> tuple[int, ...]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ()
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ()
        data = os.read(fd, 4 * n)
    except OSError:
        return ()
    finally:
        os.close(fd)
    return struct.unpack(f"<{len(data) // 4}I", data[: len(data) // 4 * 4])


def detect(path: str | os.PathLike[str]) -> str | None:
    """"criu-dir", "criu-archive", or None (a criu-model snapshot, or not ours to judge).

    A directory is CRIU's when its inventory.img carries CRIU's inventory
    magic, or -- left by a refused dump, without inventory.img -- when any of
    its *.img files starts with CRIU's common magic. criu-model's own
    inventory starts with "CRMI", so a snapshot is never taken for CRIU's.
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except OSError:
        return None
    if stat.S_ISREG(st.st_mode):
        name = p.name.lower()
        return "criu-archive" if name.endswith(ARCHIVE_SUFFIXES) else None
    if not stat.S_ISDIR(st.st_mode):
        return None
    head = _first_u32s(p / "inventory.img", 1)
    if head and head[0] == _CRMI:
        return None  # ours: decided without importing the CRIU reader (~18 ms)
    from criu_model.formats.criu import magic

    if head:
        return "criu-dir" if head[0] == magic.MAGICS["INVENTORY"] else None
    try:
        names = sorted(os.listdir(p))
    except OSError:
        return None
    for name in names[:4096]:
        if name.endswith(".img") and not name.startswith("pages-"):
            head = _first_u32s(p / name, 1)
            if head and head[0] in (magic.IMG_COMMON, magic.IMG_SERVICE):
                return "criu-dir"
    return None
