"""Writing and reading snapshot directories: atomicity, validation, re-write identity."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from criu_model.errors import ImageError, InconsistentImage, TruncatedImage, UsageError
from criu_model.images import load, write
from criu_model.images.registry import IMAGES
from criu_model.images.writer import render_images
from tests.images.sample import sample_snapshot


def test_round_trip_is_byte_identical(tmp_path: Path) -> None:
    snap = sample_snapshot()
    out = write(snap, tmp_path / "snap")
    loaded = load(out)
    assert [p.pid for p in loaded.processes] == [100, 101, 102]
    assert loaded.processes[1].comm == b"a (b)\n"
    assert loaded.memory[0].vmas[1].end == 0x4000
    assert loaded.inventory.format_major == 1
    assert {r.name for r in loaded.inventory.images} == {i.name for i in IMAGES}
    again = write(loaded, tmp_path / "again")
    for name in os.listdir(out):
        assert (out / name).read_bytes() == (again / name).read_bytes(), name


def test_modes_are_private(tmp_path: Path) -> None:
    out = write(sample_snapshot(), tmp_path / "snap")
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    for f in out.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600


def test_existing_directory_refused_unless_force(tmp_path: Path) -> None:
    target = tmp_path / "snap"
    target.mkdir()
    (target / "keep").write_text("x")
    with pytest.raises(UsageError, match="already exists"):
        write(sample_snapshot(), target)
    # --force replaces only a snapshot: any other directory or file stays
    with pytest.raises(UsageError, match="not a criu-model snapshot"):
        write(sample_snapshot(), target, force=True)
    assert (target / "keep").exists()
    (tmp_path / "afile").write_text("y")
    with pytest.raises(UsageError, match="not a criu-model snapshot"):
        write(sample_snapshot(), tmp_path / "afile", force=True)
    assert (tmp_path / "afile").read_text() == "y"
    (tmp_path / "afile").unlink()
    (target / "keep").unlink()
    write(sample_snapshot(), target / "inner")  # a snapshot inside, to be replaced
    (target / "inner").rename(tmp_path / "inner")
    target.rmdir()
    (tmp_path / "inner").rename(target)
    (target / "keep").write_text("x")  # extra file inside a real snapshot goes with it
    write(sample_snapshot(), target, force=True)
    assert not (target / "keep").exists()
    assert load(target).processes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snap"]  # no temp leftovers


def test_interrupted_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from criu_model.images import writer

    calls = 0
    real = writer._write_file

    def interrupted(dir_fd: int, name: str, data: bytes) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt
        return real(dir_fd, name, data)

    monkeypatch.setattr(writer, "_write_file", interrupted)
    open_fds = sorted(os.listdir("/proc/self/fd"))
    with pytest.raises(KeyboardInterrupt):
        write(sample_snapshot(), tmp_path / "snap")
    assert list(tmp_path.iterdir()) == []
    assert sorted(os.listdir("/proc/self/fd")) == open_fds  # the image written first is closed


def test_missing_inventory_is_incomplete(tmp_path: Path) -> None:
    out = write(sample_snapshot(), tmp_path / "snap")
    (out / "inventory.img").unlink()
    with pytest.raises(TruncatedImage, match=r"inventory\.img"):
        load(out)


def test_missing_image(tmp_path: Path) -> None:
    out = write(sample_snapshot(), tmp_path / "snap")
    (out / "mm.img").unlink()
    with pytest.raises(TruncatedImage, match=r"mm\.img.*missing"):
        load(out)


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such snapshot"):
        load(tmp_path / "nope")


@pytest.mark.parametrize(("breakage", "message"), [
    ("dup_pid", "appears twice"),
    ("orphan", "not in the snapshot"),
    ("mm_pid", "is not a dumped process"),
    ("vma_overlap", "overlaps"),
    ("mnt_ns", "mount namespace"),
    ("root", "root pid"),
])
def test_cross_references(tmp_path: Path, breakage: str, message: str) -> None:
    snap = sample_snapshot()
    if breakage == "dup_pid":
        snap.processes[2].pid = 101
        snap.processes[2].threads[0].tid = 101
        snap.processes[2].ns_pids[0] = 101
        snap.memory.pop()
    elif breakage == "orphan":
        snap.processes[2].ppid = 999
    elif breakage == "mm_pid":
        snap.memory[1].pid = 555
    elif breakage == "vma_overlap":
        snap.memory[0].vmas[1].start = 0x2000
    elif breakage == "mnt_ns":
        snap.processes[1].namespaces[0].inode = 7
    elif breakage == "root":
        snap.inventory.root_pids.append(4242)
    out = write(snap, tmp_path / "snap")
    with pytest.raises(InconsistentImage, match=message) as info:
        load(out)
    assert str(out) in str(info.value)


def test_image_replaced_after_dump(tmp_path: Path) -> None:
    a = write(sample_snapshot(1), tmp_path / "a")
    b = write(sample_snapshot(2), tmp_path / "b")
    (a / "processes.img").write_bytes((b / "processes.img").read_bytes())
    with pytest.raises(ImageError, match=r"processes\.img.*checksum"):
        load(a)


def test_older_snapshot_without_an_image_reads_as_empty(tmp_path: Path) -> None:
    """A writer that did not know mounts.img yet: the reader treats it as empty."""
    snap = sample_snapshot()
    for p in snap.processes:
        del p.namespaces[:]
    out = write(snap, tmp_path / "snap")
    files = render_images(snap)
    (out / "mounts.img").unlink()
    from criu_model.images.pb import inventory_pb2
    from criu_model.images.reader import read_image
    from criu_model.images.registry import INVENTORY
    from criu_model.images.writer import serialize

    _, (inv,), _ = read_image(out / "inventory.img", INVENTORY, files["inventory.img"])
    assert isinstance(inv, inventory_pb2.Inventory)
    kept = [r for r in inv.images if r.name != "mounts.img"]
    del inv.images[:]
    inv.images.extend(kept)
    (out / "inventory.img").write_bytes(serialize(INVENTORY.kind, [inv]))
    assert load(out).mounts == []


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["inventory.img", *(i.name for i in IMAGES)]), data=st.data())
def test_corrupt_file_in_snapshot_is_image_error(tmp_path: Path, name: str,
                                                 data: st.DataObject) -> None:
    files = render_images(sample_snapshot())
    good = files[name]
    how = data.draw(st.sampled_from(["truncate", "flip", "empty"]))
    if how == "truncate":
        bad = good[:data.draw(st.integers(0, len(good) - 1))]
    elif how == "flip":
        buf = bytearray(good)
        buf[data.draw(st.integers(0, len(buf) - 1))] ^= data.draw(st.integers(1, 255))
        bad = bytes(buf)
    else:
        bad = b""
    out = Path(tempfile.mkdtemp(dir=tmp_path))
    for fname, content in files.items():
        (out / fname).write_bytes(bad if fname == name else content)
    with pytest.raises(ImageError) as info:
        load(out)
    assert name in str(info.value)


def test_format_1_2_snapshot_still_loads(tmp_path: Path) -> None:
    """A 1.2 writer had no pagemap.img/regs.img and wrote minor 2 in every header."""
    import hashlib

    from criu_model.images import framing
    from criu_model.images.pb import inventory_pb2
    from criu_model.images.registry import INVENTORY

    snap = sample_snapshot()
    out = tmp_path / "old"
    out.mkdir()
    inv = inventory_pb2.Inventory()
    inv.CopyFrom(snap.inventory)
    inv.format_major, inv.format_minor = 1, 2
    del inv.images[:]
    for image in IMAGES:
        if image.name in ("pagemap.img", "regs.img"):
            continue
        entries = getattr(snap, image.attr)
        data = framing.encode(image.kind, (e.SerializeToString() for e in entries), minor=2)
        (out / image.name).write_bytes(data)
        inv.images.add(name=image.name, entries=len(entries),
                       sha256=hashlib.sha256(data).digest())
    (out / INVENTORY.name).write_bytes(framing.encode(INVENTORY.kind,
                                                      [inv.SerializeToString()], minor=2))
    old = load(out)
    assert [p.pid for p in old.processes] == [p.pid for p in snap.processes]
    assert old.page_store is None and old.registers == [] and old.pagemap == []


def test_streamed_json_equals_the_whole_object() -> None:
    """show --json streams (one process a line): the same object as snapshot_to_json."""
    import io
    import json

    from criu_model.render.json import snapshot_to_json, write_snapshot_json

    snap = sample_snapshot()
    out = io.StringIO()
    write_snapshot_json(snap, out)
    assert json.loads(out.getvalue()) == json.loads(json.dumps(snapshot_to_json(snap)))
    assert out.getvalue().count("\n") >= len(snap.processes) + 5
