"""Read and validate a snapshot directory.

A snapshot is complete only if its inventory exists: the writer puts the
inventory in last and renames the directory into place afterwards. Every
image listed in the inventory must exist with the recorded entry count and
CRC. Every violation is an ImageError naming the file and the byte offset.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from criu_model.errors import AccessDenied, ImageError, InconsistentImage, TruncatedImage
from criu_model.images import framing
from criu_model.images.digest import sha256
from criu_model.images.files import exists, read_file, read_image
from criu_model.images.pb import inventory_pb2
from criu_model.images.registry import IMAGES, INVENTORY
from criu_model.images.validate import validate
from criu_model.snapshot import Snapshot


def _read(path: Path) -> bytes:
    return read_file(path)


def _check_access(root: Path) -> None:
    """A missing directory, or one this user may not read, as one clear line (not EACCES)."""
    try:
        st = os.stat(root)
    except PermissionError as err:
        raise AccessDenied(None, f"snapshot {root}", "a directory on its path is not "
                           "searchable by this user") from err
    except OSError as err:
        raise ImageError(str(root), None, "no such snapshot directory") from err
    if not stat.S_ISDIR(st.st_mode):
        raise ImageError(str(root), None, "no such snapshot directory")
    if not os.access(root, os.R_OK | os.X_OK, effective_ids=True):
        raise AccessDenied(None, f"snapshot {root}",
                           f"the directory is mode {stat.S_IMODE(st.st_mode):04o} and owned by "
                           f"uid {st.st_uid} (snapshots are private: they may hold memory "
                           "contents); run as that user or root")


def load(directory: str | os.PathLike[str]) -> Snapshot:
    """Load and validate the snapshot in `directory` (or a CRIU dump or archive there)."""
    from criu_model.formats import detect

    if detect(directory) is not None:  # a criu dump -D directory, a checkpoint archive
        from criu_model.formats.criu import load_criu

        return load_criu(directory)
    root = Path(directory)
    _check_access(root)
    inv_path = root / INVENTORY.name
    if not exists(inv_path):
        raise TruncatedImage(str(inv_path), None, "missing: not a complete snapshot "
                             "(an interrupted dump never has an inventory)")
    _, inv_entries, _ = read_image(inv_path, INVENTORY)
    if len(inv_entries) != 1:
        raise InconsistentImage(str(inv_path), framing.HEADER_SIZE,
                                f"holds {len(inv_entries)} entries, expected exactly 1")
    inventory = inv_entries[0]
    assert isinstance(inventory, inventory_pb2.Inventory)

    snap = Snapshot(inventory=inventory)
    offsets: dict[str, list[int]] = {}
    recorded = {rec.name: rec for rec in inventory.images}
    for image in IMAGES:
        rec = recorded.get(image.name)
        if rec is None:
            # Written by an older version that had no such image: empty. Images
            # of a newer minor version that we do not know are simply not read.
            continue
        path = root / image.name
        data = _read(path)
        if sha256(data) != rec.sha256:
            raise ImageError(str(path), None, f"the whole file ({len(data)} bytes) does not "
                             "match the sha256 recorded in inventory.img (replaced or "
                             "corrupted after the dump; the checksum covers the whole file, so "
                             "no byte offset can be named)")
        _, messages, offs = read_image(path, image, data)
        if len(messages) != rec.entries:
            raise InconsistentImage(str(path), None, f"holds {len(messages)} entries, "
                                    f"inventory.img records {rec.entries}")
        setattr(snap, image.attr, messages)
        offsets[image.name] = offs
    validate(snap, root, offsets)
    if inventory.parent_snapshot:
        where = Path(inventory.parent_snapshot)
        snap.parent_dir = (where if where.is_absolute() else root.absolute() / where).resolve()
    if inventory.pages_captured:
        from criu_model.pages.store import open_pages

        snap.page_store = open_pages(root, inventory, snap.pagemap, offsets.get("pagemap.img"))
    elif snap.pagemap:
        raise InconsistentImage(str(root / "pagemap.img"), None, "holds page runs, but the "
                                "inventory says no page contents were captured")
    return snap
