"""Framing of CRIU image files, little-endian throughout::

    IMAGE    ::= [IMG_COMMON | IMG_SERVICE] MAGIC { ENTRY }   (inventory.img: MAGIC only)
    ENTRY    ::= SIZE:u32 PAYLOAD[SIZE] [EXTRA]
    PAYLOAD  ::= one protobuf message (the kind's message, see registry.py)
    EXTRA    ::= raw bytes whose length a field of PAYLOAD gives (pipe data,
                 socket queues, TCP queues) -- or, for ghost files, the rest

    PAGEMAP  ::= MAGICS ENTRY(PagemapHead) { ENTRY(PagemapEntry) }
    pages-N.img ::= raw pages, no magic (RAW_IMAGE)

Every failure is an ImageError naming the file and the byte offset, so a
damaged checkpoint is reported, never a traceback.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError, Message

from criu_model.errors import BadMagic, ImageError, TruncatedImage
from criu_model.formats.criu import magic

_U32 = struct.Struct("<I")


@dataclass
class CriuImage:
    """One decoded CRIU image file: its kind, entries and where each starts."""

    name: str                      # file name inside the image directory
    kind: str                      # CRIU magic name, e.g. "CORE"
    entries: list[Message] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)   # byte offset of each entry's size
    extras: list[bytes] = field(default_factory=list)  # raw data after each entry (b"" if none)
    head: Message | None = None    # PAGEMAP's PagemapHead
    chunks: list[tuple[int, bytes]] = field(default_factory=list)  # chunked GHOST_FILE data


def read_magic(path: str, data: bytes) -> tuple[int, int]:
    """(CRIU magic number, offset of the first entry), skipping IMG_COMMON/IMG_SERVICE."""
    if len(data) < 4:
        raise TruncatedImage(path, 0, f"{len(data)} bytes: too short for a CRIU magic")
    first = _U32.unpack_from(data, 0)[0]
    if first in (magic.IMG_COMMON, magic.IMG_SERVICE):
        if len(data) < 8:
            raise TruncatedImage(path, 4, "ends after the common magic, before the image magic")
        return _U32.unpack_from(data, 4)[0], 8
    return first, 4


def check_magic(path: str, data: bytes, kind: str) -> int:
    """Offset of the first entry, if the file carries the magic of `kind`; else BadMagic."""
    number, off = read_magic(path, data)
    want = magic.MAGICS[kind]
    if number != want:
        raise BadMagic(path, off - 4, f"magic {magic.describe(number)}, expected the CRIU "
                       f"{kind} magic 0x{want:08x}")
    return off


def _entry(path: str, data: bytes, off: int, index: int) -> tuple[int, int]:
    """(payload start, payload end) of the entry whose size field is at off."""
    if len(data) - off < 4:
        raise TruncatedImage(path, off, f"entry {index}: {len(data) - off} bytes left, "
                             "a size field needs 4")
    size = _U32.unpack_from(data, off)[0]
    start = off + 4
    if size > len(data) - start:
        raise TruncatedImage(path, off, f"entry {index} says {size} bytes, only "
                             f"{len(data) - start} left in the file")
    return start, start + size


def _parse(path: str, cls: type[Message], payload: bytes, off: int, index: int) -> Message:
    msg = cls()
    try:
        msg.ParseFromString(payload)
    except (DecodeError, RecursionError, ValueError) as err:
        raise ImageError(path, off, f"entry {index} is not a valid CRIU "
                         f"{cls.DESCRIPTOR.name} ({len(payload)} bytes): {err}") from err
    return msg


ExtraLen = Callable[[Message], int]


def read_entries(path: str, name: str, kind: str, data: bytes, cls: type[Message],
                 extra_len: ExtraLen | None = None) -> CriuImage:
    """Every entry of a plain image (optionally with raw data after each)."""
    off = check_magic(path, data, kind)
    image = CriuImage(name=name, kind=kind)
    index = 0
    while off < len(data):
        start, end = _entry(path, data, off, index)
        msg = _parse(path, cls, data[start:end], off, index)
        extra = b""
        if extra_len is not None:
            n = extra_len(msg)
            if n > len(data) - end:
                raise TruncatedImage(path, end, f"entry {index} announces {n} bytes of data, "
                                     f"only {len(data) - end} left")
            extra = data[end:end + n]
            end += n
        image.entries.append(msg)
        image.offsets.append(off)
        image.extras.append(extra)
        off = end
        index += 1
    return image


def read_pagemap(path: str, name: str, data: bytes, head_cls: type[Message],
                 cls: type[Message]) -> CriuImage:
    """A pagemap image: one head entry (pages_id), then page runs."""
    off = check_magic(path, data, "PAGEMAP")
    if off >= len(data):
        raise TruncatedImage(path, off, "pagemap image without its head entry")
    start, end = _entry(path, data, off, 0)
    image = CriuImage(name=name, kind="PAGEMAP", head=_parse(path, head_cls, data[start:end],
                                                             off, 0))
    off, index = end, 1
    while off < len(data):
        start, end = _entry(path, data, off, index)
        image.entries.append(_parse(path, cls, data[start:end], off, index))
        image.offsets.append(off)
        image.extras.append(b"")
        off, index = end, index + 1
    return image


def read_ghost(path: str, name: str, data: bytes, cls: type[Message],
               chunk_cls: type[Message]) -> CriuImage:
    """A ghost file: its entry, then the contents (raw to the end, or as chunks)."""
    off = check_magic(path, data, "GHOST_FILE")
    start, end = _entry(path, data, off, 0)
    head = _parse(path, cls, data[start:end], off, 0)
    image = CriuImage(name=name, kind="GHOST_FILE", entries=[head], offsets=[off])
    if not getattr(head, "chunks", False):
        image.extras.append(data[end:])
        return image
    # Chunked ghosts (sparse files): {ENTRY(GhostChunk) len bytes}; kept as
    # (offset, bytes) pairs, assembled (or not, when too large) by the mapping.
    off, index = end, 1
    while off < len(data):
        start, end = _entry(path, data, off, index)
        chunk = _parse(path, chunk_cls, data[start:end], off, index)
        length, where = int(getattr(chunk, "len", 0)), int(getattr(chunk, "off", 0))
        if length > len(data) - end:
            raise TruncatedImage(path, end, f"ghost chunk {index} announces {length} bytes, "
                                 f"only {len(data) - end} left")
        image.chunks.append((where, data[end:end + length]))
        off, index = end + length, index + 1
    image.extras.append(b"")
    return image
