"""Byte framing of one image file.

Grammar (all integers little-endian)::

    IMAGE   ::= HEADER { ENTRY } TRAILER
    HEADER  ::= MAGIC KIND MAJOR MINOR          12 bytes
    MAGIC   ::= "CRMI"                          4 bytes, same for every image
    KIND    ::= u32                             which image this is (see registry)
    MAJOR   ::= u16   MINOR ::= u16             format version of the writer
    ENTRY   ::= SIZE PAYLOAD
    SIZE    ::= u32, < END_MARK and <= MAX_ENTRY
    PAYLOAD ::= SIZE bytes of one serialized protobuf message
    TRAILER ::= END_MARK COUNT CRC
    END_MARK::= u32 0xFFFFFFFF
    COUNT   ::= u32 number of entries
    CRC     ::= u32 zlib.crc32 of every byte before CRC

The trailer makes a file cut exactly between two entries detectable, and the
CRC catches corruption that still parses as protobuf. Every error names the
file and the byte offset where reading stopped.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from typing import NamedTuple

from criu_model.errors import BadMagic, ImageError, TruncatedImage

MAGIC = b"CRMI"
FORMAT_MAJOR = 1
FORMAT_MINOR = 4
# Readers accept MAJOR in this range: schema changes are additive within a
# major, and version N reads N-1.
READABLE_MAJORS = range(max(1, FORMAT_MAJOR - 1), FORMAT_MAJOR + 1)

END_MARK = 0xFFFFFFFF
MAX_ENTRY = 256 * 1024 * 1024  # one entry above this is corruption, not data

_HEADER = struct.Struct("<4sIHH")
_U32 = struct.Struct("<I")
_TRAILER = struct.Struct("<III")
HEADER_SIZE = _HEADER.size


class Header(NamedTuple):
    """KIND, MAJOR and MINOR of an image header."""

    kind: int
    major: int
    minor: int


def encode(kind: int, payloads: Iterable[bytes], major: int = FORMAT_MAJOR,
           minor: int = FORMAT_MINOR) -> bytes:
    """Frame already-serialized entries into a complete image."""
    parts = [_HEADER.pack(MAGIC, kind, major, minor)]
    count = 0
    for payload in payloads:
        if len(payload) > MAX_ENTRY:
            raise ValueError(f"entry of {len(payload)} bytes exceeds {MAX_ENTRY}")
        parts.append(_U32.pack(len(payload)))
        parts.append(payload)
        count += 1
    body = b"".join(parts) + _U32.pack(END_MARK) + _U32.pack(count)
    return body + _U32.pack(zlib.crc32(body))


def decode(data: bytes, path: str, expected_kind: int) -> tuple[Header, list[tuple[int, bytes]]]:
    """Split an image into (offset, payload) entries, validating the framing.

    Raises BadMagic for a wrong magic, kind or unsupported version,
    TruncatedImage when the data ends early, ImageError for anything else
    (trailing garbage, count or CRC mismatch).
    """
    if len(data) < HEADER_SIZE:
        raise TruncatedImage(path, len(data),
                             f"file is {len(data)} bytes, the header needs {HEADER_SIZE}")
    magic, kind, major, minor = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise BadMagic(path, 0, f"bad magic {magic!r}, expected {MAGIC!r}")
    if kind != expected_kind:
        raise BadMagic(path, 4, f"image kind {kind:#010x}, expected {expected_kind:#010x}")
    if major not in READABLE_MAJORS:
        raise BadMagic(path, 8, f"format version {major}.{minor} is not readable by this "
                       f"criu-model (reads {READABLE_MAJORS.start}.x to {FORMAT_MAJOR}.x)")
    entries: list[tuple[int, bytes]] = []
    off = HEADER_SIZE
    end = len(data)
    while True:
        if off + 4 > end:
            raise TruncatedImage(path, off, "file ends inside an entry size or before the trailer")
        (size,) = _U32.unpack_from(data, off)
        if size == END_MARK:
            break
        if size > MAX_ENTRY:
            raise ImageError(path, off, f"entry size {size} exceeds the {MAX_ENTRY}-byte limit")
        if off + 4 + size > end:
            raise TruncatedImage(path, off, f"entry of {size} bytes runs past the end of the file "
                                 f"({end - off - 4} bytes left)")
        entries.append((off, data[off + 4:off + 4 + size]))
        off += 4 + size
    if off + _TRAILER.size > end:
        raise TruncatedImage(path, off, "file ends inside the trailer")
    _, count, crc = _TRAILER.unpack_from(data, off)
    if off + _TRAILER.size != end:
        raise ImageError(path, off + _TRAILER.size,
                         f"{end - off - _TRAILER.size} bytes of garbage after the trailer")
    if count != len(entries):
        raise ImageError(path, off + 4,
                         f"trailer counts {count} entries, the file holds {len(entries)}")
    actual = zlib.crc32(data[:off + 8])
    if crc != actual:
        raise ImageError(path, off + 8, f"checksum mismatch (stored {crc:#010x}, "
                         f"computed {actual:#010x}): the file is corrupt")
    return Header(kind, major, minor), entries
