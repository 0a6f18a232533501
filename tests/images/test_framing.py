"""Framing: round trips, and every corruption gives an ImageError with an offset."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from criu_model.errors import BadMagic, ImageError, TruncatedImage
from criu_model.images import framing

KIND = 0x54534554
ENTRIES = [b"", b"a", b"\x00" * 300, bytes(range(256))]


def test_round_trip() -> None:
    data = framing.encode(KIND, ENTRIES)
    header, entries = framing.decode(data, "x.img", KIND)
    assert header == framing.Header(KIND, framing.FORMAT_MAJOR, framing.FORMAT_MINOR)
    assert [payload for _, payload in entries] == ENTRIES
    assert entries[0][0] == framing.HEADER_SIZE  # offsets point at the size field


def test_layout_is_little_endian_and_documented() -> None:
    data = framing.encode(KIND, [b"xy"])
    assert data[:4] == b"CRMI"
    assert struct.unpack_from("<IHH", data, 4) == (KIND, framing.FORMAT_MAJOR,
                                                   framing.FORMAT_MINOR)
    assert struct.unpack_from("<I", data, 12) == (2,)
    assert data[16:18] == b"xy"
    assert struct.unpack_from("<II", data, 18) == (0xFFFFFFFF, 1)


@pytest.mark.parametrize(("data", "exc", "offset"), [
    (b"", TruncatedImage, 0),
    (b"CRM", TruncatedImage, 3),
    (b"XXXX" + b"\0" * 20, BadMagic, 0),
])
def test_bad_headers(data: bytes, exc: type[ImageError], offset: int) -> None:
    with pytest.raises(exc) as info:
        framing.decode(data, "f.img", KIND)
    assert info.value.offset == offset
    assert "f.img" in str(info.value)


def test_wrong_kind_and_version() -> None:
    with pytest.raises(BadMagic, match="image kind"):
        framing.decode(framing.encode(KIND + 1, []), "f.img", KIND)
    with pytest.raises(BadMagic, match=r"format version 9\.0") as info:
        framing.decode(framing.encode(KIND, [], major=9, minor=0), "f.img", KIND)
    assert info.value.offset == 8


def test_cut_between_entries_is_truncated() -> None:
    data = framing.encode(KIND, [b"abc", b"def"])
    cut = framing.HEADER_SIZE + 4 + 3  # right after the first entry
    with pytest.raises(TruncatedImage) as info:
        framing.decode(data[:cut], "f.img", KIND)
    assert info.value.offset == cut


def test_flipped_payload_byte_fails_crc() -> None:
    data = bytearray(framing.encode(KIND, [b"abc"]))
    data[framing.HEADER_SIZE + 5] ^= 0x01
    with pytest.raises(ImageError, match="checksum"):
        framing.decode(bytes(data), "f.img", KIND)


def test_trailing_garbage() -> None:
    with pytest.raises(ImageError, match="garbage"):
        framing.decode(framing.encode(KIND, [b"a"]) + b"z", "f.img", KIND)


@settings(max_examples=400, deadline=None)
@given(entries=st.lists(st.binary(max_size=40), max_size=5), data=st.data())
def test_any_corruption_is_an_image_error(entries: list[bytes], data: st.DataObject) -> None:
    good = framing.encode(KIND, entries)
    how = data.draw(st.sampled_from(["truncate", "flip", "insert", "replace"]))
    buf = bytearray(good)
    if how == "truncate":
        buf = buf[:data.draw(st.integers(0, len(buf) - 1))]
    elif how == "flip":
        pos = data.draw(st.integers(0, len(buf) - 1))
        buf[pos] ^= data.draw(st.integers(1, 255))
    elif how == "insert":
        pos = data.draw(st.integers(0, len(buf)))
        buf[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
    else:
        buf = bytearray(data.draw(st.binary(max_size=64)))
    if bytes(buf) == good:
        return
    with pytest.raises(ImageError) as info:
        framing.decode(bytes(buf), "f.img", KIND)
    assert "f.img" in str(info.value)
