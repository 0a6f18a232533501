"""CRIU image framing: damaged images are ImageError naming file and offset, never a crash."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from criu_model.errors import BadMagic, ImageError, TruncatedImage
from criu_model.formats.criu import decode_image, load_criu, read_files, to_criu_model
from criu_model.formats.criu import magic as cmagic
from criu_model.formats.criu.framing import CriuImage
from tests.formats.conftest import FIXTURES

TREE = FIXTURES / "tree-full"
FILES = {p.name: p.read_bytes() for p in sorted(TREE.iterdir()) if p.name != "truth.json"}


def _u32(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}I", *values)


def test_reads_the_common_and_the_inventory_magic() -> None:
    core = decode_image("x/core-6391.img", "core-6391.img", FILES["core-6391.img"])
    assert isinstance(core, CriuImage) and core.kind == "CORE" and core.offsets == [8]
    inv = decode_image("x/inventory.img", "inventory.img", FILES["inventory.img"])
    assert isinstance(inv, CriuImage) and inv.offsets == [4]  # no common magic in front
    stats = decode_image("x/stats-dump", "stats-dump", FILES["stats-dump"])
    assert isinstance(stats, CriuImage) and stats.kind == "STATS"  # service magic


def test_truncated_entry_names_file_and_offset() -> None:
    data = FILES["files.img"]
    with pytest.raises(TruncatedImage) as err:
        decode_image("d/files.img", "files.img", data[:-3])
    assert err.value.path == "d/files.img" and err.value.offset is not None
    assert "only" in str(err.value) and "left" in str(err.value)
    with pytest.raises(TruncatedImage, match="size field needs 4"):
        decode_image("d/files.img", "files.img", data + b"\x01\x00")


def test_announced_extra_data_beyond_the_end() -> None:
    data = FILES["pipes-data.img"]
    with pytest.raises(TruncatedImage, match="announces 11 bytes of data"):
        decode_image("d/pipes-data.img", "pipes-data.img", data[:-1])


def test_wrong_magic_for_the_name_is_named() -> None:
    pstree = FILES["pstree.img"]
    with pytest.raises(BadMagic) as err:
        decode_image("d/core-1.img", "core-1.img", pstree)
    assert "PSTREE (0x50273030)" in str(err.value) and "expected the CRIU CORE" in str(err.value)
    assert err.value.offset == 4
    with pytest.raises(BadMagic, match="not in CRIU's magic table"):
        decode_image("d/core-1.img", "core-1.img", _u32(cmagic.IMG_COMMON, 0x12345678))


def test_unknown_images_are_listed_not_fatal() -> None:
    mnts = _u32(cmagic.IMG_COMMON, cmagic.MAGICS["NETDEV"]) + _u32(2) + b"\x08\x01"
    assert decode_image("d/netdev-5.img", "netdev-5.img", mnts) == (
        "netdev-5.img", "not read: CRIU NETDEV image (0x57373951), criu-model has no mapping")
    odd = decode_image("d/whatever.img", "whatever.img", _u32(cmagic.IMG_COMMON, 7))
    assert isinstance(odd, tuple) and "not in CRIU's magic table" in odd[1]
    files = [(n, (lambda d=d: d), len(d)) for n, d in FILES.items()]
    files.append(("netdev-5.img", lambda: mnts, len(mnts)))
    snap = to_criu_model(read_files(str(TREE), files))
    runs = {c.name: c for c in snap.inventory.collectors}
    assert not runs["criu-image:netdev-5.img"].ran
    assert "NETDEV" in runs["criu-image:netdev-5.img"].reason


def test_unknown_fields_are_kept() -> None:
    data = FILES["pstree.img"]
    # Append field 15 (varint 42) to the first entry: a newer CRIU's field.
    size = struct.unpack_from("<I", data, 8)[0]
    entry = data[12:12 + size] + b"\x78\x2a"
    patched = data[:8] + _u32(len(entry)) + entry + data[12 + size:]
    image = decode_image("d/pstree.img", "pstree.img", patched)
    assert isinstance(image, CriuImage)
    assert image.entries[0].pid == 6391  # type: ignore[attr-defined]
    assert image.entries[0].SerializeToString().endswith(b"\x78\x2a")


def test_a_missing_core_is_inconsistent(criu_copy) -> None:
    d: Path = criu_copy("sleep")
    (d / "core-6819.img").unlink()
    with pytest.raises(ImageError, match=r"core-6819\.img is missing"):
        load_criu(d)


def _load_with(name: str, data: bytes) -> None:
    files = [(n, (lambda d=(data if n == name else d): d), len(data if n == name else d))
             for n, d in FILES.items()]
    to_criu_model(read_files(str(TREE), files))


SMALL = sorted(n for n, d in FILES.items() if len(d) < 4000 and not n.startswith("pages-"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(SMALL), data=st.data())
def test_corrupted_images_give_image_error_only(name: str, data: st.DataObject) -> None:
    raw = bytearray(FILES[name])
    how = data.draw(st.sampled_from(["truncate", "flip", "insert", "size"]))
    if how == "truncate":
        raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
    elif how == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            at = data.draw(st.integers(0, len(raw) - 1))
            raw[at] = data.draw(st.integers(0, 255))
    elif how == "insert":
        at = data.draw(st.integers(0, len(raw)))
        raw[at:at] = data.draw(st.binary(min_size=1, max_size=16))
    else:
        at = data.draw(st.sampled_from([4, 8]))
        if at + 4 <= len(raw):
            raw[at:at + 4] = _u32(data.draw(st.integers(0, 2**32 - 1)))
    try:
        _load_with(name, bytes(raw))
    except ImageError as err:
        assert err.path  # names the file (or the directory for cross-image contradictions)


def test_a_sparse_ghost_becomes_data_extents() -> None:
    from criu_model.formats.criu.pb import files_pb2

    head = files_pb2.GhostFile.FromString(FILES["ghost-file-1.img"][12:12 + struct.unpack_from(
        "<I", FILES["ghost-file-1.img"], 8)[0]])
    head.chunks, head.size = True, 1 << 31
    body = _u32(cmagic.IMG_COMMON, cmagic.MAGICS["GHOST_FILE"])
    payload = head.SerializeToString()
    body += _u32(len(payload)) + payload
    for off, data in ((0, b"start"), (1 << 30, b"middle")):
        chunk = files_pb2.GhostChunk(len=len(data), off=off).SerializeToString()
        body += _u32(len(chunk)) + chunk + data
    files = [(n, (lambda d=(body if n == "ghost-file-1.img" else d): d), 0)
             for n, d in FILES.items()]
    snap = to_criu_model(read_files(str(TREE), files))
    ghost = snap.ghosts_by_id[1]
    assert ghost.size == 1 << 31 and ghost.data == b"" and ghost.data_bytes == 11
    assert [(e.offset, e.data) for e in ghost.extents] == [(0, b"start"), (1 << 30, b"middle")]
    with pytest.raises(TruncatedImage, match="ghost chunk 2 announces 6 bytes"):
        decode_image("d/ghost-file-1.img", "ghost-file-1.img", body[:-1])
