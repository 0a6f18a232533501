"""Podman-style checkpoint archives, built here from a fixture, read without extracting."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

import criu_model
from criu_model.errors import ImageError
from criu_model.formats import detect
from criu_model.formats.criu import load_criu
from tests.formats.conftest import FIXTURES

CONFIG = {"id": "1f2e3d4c5b6a", "name": "scn-test", "rootfsImageName": "docker.io/library/scn:1",
          "ociRuntime": "runc", "createdTime": "2026-12-01T08:00:00Z",
          "checkpointedTime": "2026-12-01T08:40:00Z"}


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def build(path: Path, tree: str = "tree-full", mode: str = "w",
          extra: list[tarfile.TarInfo] | None = None) -> Path:
    """checkpoint/ + config.dump + spec.dump + stats-dump at the top, as Podman writes."""
    src = FIXTURES / tree
    with tarfile.open(path, mode) as tar:
        for f in sorted(src.iterdir()):
            if f.name == "stats-dump":
                _add(tar, "stats-dump", f.read_bytes())
            elif f.name != "truth.json":
                _add(tar, f"checkpoint/{f.name}", f.read_bytes())
        _add(tar, "config.dump", json.dumps(CONFIG).encode())
        _add(tar, "spec.dump", json.dumps({"annotations": {"io.container.manager":
                                                          "libpod"}}).encode())
        _add(tar, "rootfs-diff.tar", bytes(10240))
        for info in extra or []:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return path


@pytest.mark.parametrize(("suffix", "mode"), [(".tar", "w"), (".tar.gz", "w:gz")])
def test_archive_loads_like_the_directory(tmp_path: Path, suffix: str, mode: str) -> None:
    path = build(tmp_path / f"checkpoint{suffix}", mode=mode)
    assert detect(path) == "criu-archive"
    snap = load_criu(path)
    direct = load_criu(FIXTURES / "tree-full")
    assert criu_model.diff(direct, snap).identical
    runs = {c.name: c.reason for c in snap.inventory.collectors}
    assert "name=scn-test" in runs["criu.container"]
    assert "image=docker.io/library/scn:1" in runs["criu.container"]
    assert "engine=libpod" in runs["criu.container"]
    assert "rootfs_diff_bytes=10240" in runs["criu.container"]
    assert "criu.STATS" in runs  # stats-dump read from the archive's top
    ghost = next(g for g in snap.ghosts if g.path.startswith(b"/memfd:"))
    assert ghost.captured  # pages-10.img read from inside the archive


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = 1 if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize("bad", [
    _member("/etc/criu-model-test"),
    _member("../criu-model-test"),
    _member("checkpoint/../../criu-model-test"),
    _member("checkpoint/core-1.img", tarfile.SYMTYPE, "/etc/passwd"),
    _member("checkpoint/core-2.img", tarfile.SYMTYPE, "../../etc/passwd"),
    _member("checkpoint/core-3.img", tarfile.LNKTYPE, "../outside"),
])
def test_hostile_members_are_refused(tmp_path: Path, bad: tarfile.TarInfo) -> None:
    path = build(tmp_path / "evil.tar", extra=[bad])
    before = set(os.listdir(tmp_path))
    with pytest.raises(ImageError, match="refused") as err:
        load_criu(path)
    assert str(path) in str(err.value)
    assert set(os.listdir(tmp_path)) == before  # nothing extracted anywhere
    assert not Path("/etc/criu-model-test").exists()


def test_a_link_inside_is_not_followed(tmp_path: Path) -> None:
    path = build(tmp_path / "links.tar", tree="sleep",
                 extra=[_member("checkpoint/extra.img", tarfile.SYMTYPE, "files.img")])
    snap = load_criu(path)
    runs = {c.name: c for c in snap.inventory.collectors}
    assert not runs["criu-image:extra.img"].ran


def test_not_a_checkpoint(tmp_path: Path) -> None:
    empty = tmp_path / "empty.tar"
    with tarfile.open(empty, "w") as tar:
        _add(tar, "README", b"hi")
    with pytest.raises(ImageError, match="holds no CRIU images"):
        load_criu(empty)
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tar at all" * 10)
    with pytest.raises(ImageError, match="not a readable tar archive"):
        load_criu(junk)
    zst = tmp_path / "c.tar.zst"
    zst.write_bytes(b"\x28\xb5\x2f\xfd")
    with pytest.raises(ImageError):
        load_criu(zst)
