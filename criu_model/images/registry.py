"""One registry from image file to its kind number, message type and Snapshot field.

Adding an image kind means adding one line here (and the field on Snapshot);
reading, writing, validation and `show --json` follow from it.
"""

from __future__ import annotations

from typing import NamedTuple

from google.protobuf.message import Message

from criu_model.images.pb import (
    files_pb2,
    inventory_pb2,
    mm_pb2,
    mount_pb2,
    pages_pb2,
    process_pb2,
    regs_pb2,
    sockets_pb2,
)


def _kind(tag: bytes) -> int:
    """Kind numbers are four ASCII letters, so `xxd` shows what a file is."""
    return int.from_bytes(tag, "little")


class ImageKind(NamedTuple):
    """One image file of a snapshot and the message its entries hold."""

    name: str                 # file name inside the snapshot directory
    kind: int                 # KIND field of the header
    message: type[Message]
    attr: str                 # Snapshot attribute holding the list of entries


INVENTORY = ImageKind("inventory.img", _kind(b"INVT"), inventory_pb2.Inventory, "inventory")

# Every image but the inventory, in the order they are written and read.
IMAGES: tuple[ImageKind, ...] = (
    ImageKind("processes.img", _kind(b"PROC"), process_pb2.Process, "processes"),
    ImageKind("mm.img", _kind(b"MMAP"), mm_pb2.MemoryMap, "memory"),
    ImageKind("mounts.img", _kind(b"MNTS"), mount_pb2.MountNamespace, "mounts"),
    ImageKind("fds.img", _kind(b"FDST"), files_pb2.FdTable, "fds"),
    ImageKind("ghosts.img", _kind(b"GHST"), files_pb2.GhostFile, "ghosts"),
    ImageKind("sockets.img", _kind(b"SOCK"), sockets_pb2.Socket, "sockets"),
    ImageKind("pagemap.img", _kind(b"PMAP"), pages_pb2.PageRuns, "pagemap"),
    ImageKind("regs.img", _kind(b"REGS"), regs_pb2.ProcessRegs, "registers"),
)

PAGEMAP = next(k for k in IMAGES if k.attr == "pagemap")
BY_NAME: dict[str, ImageKind] = {k.name: k for k in (INVENTORY, *IMAGES)}
