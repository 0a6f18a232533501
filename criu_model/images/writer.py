"""Write a Snapshot to a directory atomically.

Everything goes to a hidden temporary sibling (mode 0700, files 0600: images
may later hold memory contents) which is renamed into place only once every
image and finally the inventory are written and fsynced. A crash or Ctrl-C
leaves at most a ``.NAME.tmp-*`` directory, which ``load`` refuses because it
is not the requested path, never a directory that loads as complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from google.protobuf.message import Message

from criu_model.errors import CriuModelError, UsageError
from criu_model.images import framing
from criu_model.images.pb import inventory_pb2
from criu_model.images.registry import IMAGES, INVENTORY
from criu_model.snapshot import Snapshot


def serialize(kind: int, entries: list[Message]) -> bytes:
    """One image file's bytes; deterministic so a re-write is byte-identical."""
    return framing.encode(kind, (e.SerializeToString(deterministic=True) for e in entries))


def _write_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def render_images(snap: Snapshot) -> dict[str, bytes]:
    """File name -> bytes for every image, the inventory (with its image records) last."""
    files: dict[str, bytes] = {}
    inv = inventory_pb2.Inventory()
    inv.CopyFrom(snap.inventory)
    inv.format_major = framing.FORMAT_MAJOR
    inv.format_minor = framing.FORMAT_MINOR
    del inv.images[:]
    for image in IMAGES:
        entries = getattr(snap, image.attr)
        data = serialize(image.kind, entries)
        files[image.name] = data
        inv.images.add(name=image.name, entries=len(entries),
                       sha256=hashlib.sha256(data).digest())
    files[INVENTORY.name] = serialize(INVENTORY.kind, [inv])
    return files


def write(snap: Snapshot, directory: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Write the snapshot to `directory`, atomically; refuse an existing one unless force."""
    target = Path(directory).absolute()
    if target.exists() and not force:
        raise UsageError(f"{target} already exists (use --force to replace it)")
    parent = target.parent
    if not parent.is_dir():
        raise UsageError(f"{parent} is not a directory")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=parent))
    except PermissionError as err:
        raise CriuModelError(f"cannot create a directory in {parent}: {err.strerror}") from err
    try:
        for name, data in render_images(snap).items():
            _write_file(tmp / name, data)
        _fsync_dir(tmp)
        if target.exists():  # force: move the old one aside, then swap
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=parent))
            os.rename(target, old / "old")
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
        _fsync_dir(parent)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CriuModelError(f"writing snapshot {target}: {err.strerror or err}") from err
    except BaseException:  # Ctrl-C, SIGTERM: never leave the temporary directory
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
