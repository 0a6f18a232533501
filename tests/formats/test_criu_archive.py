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
    assert "engine=Podman" in runs["criu.container"]
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


# -- container metadata (show ARCHIVE container) --------------------------

def _archive(path: Path, config: object, spec: object, mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tar:
        src = FIXTURES / "sleep"
        for f in sorted(src.iterdir()):
            if f.name != "truth.json":
                _add(tar, f"checkpoint/{f.name}", f.read_bytes())
        for name, doc in (("config.dump", config), ("spec.dump", spec)):
            _add(tar, name, doc if isinstance(doc, bytes) else json.dumps(doc).encode())
        _add(tar, "network.status", b"{}")
    return path


def test_container_metadata_of_a_podman_archive(tmp_path: Path) -> None:
    from criu_model.formats.criu.archive import container_metadata, container_rows

    podman = dict(CONFIG, runtime="crun", rootfsImageRef="sha256:abc",
                  restoredTime="0001-01-01T00:00:00Z")
    path = _archive(tmp_path / "p.tar", podman,
                    {"annotations": {"io.container.manager": "libpod"}})
    info = container_metadata(path)
    pages = (FIXTURES / "sleep" / "pages-1.img").stat().st_size
    total = sum(f.stat().st_size for f in (FIXTURES / "sleep").iterdir()
                if f.name != "truth.json")
    assert info == {"archive": str(path), "compression": "none", "engine": "Podman",
                    "id": "1f2e3d4c5b6a", "name": "scn-test",
                    "image": "docker.io/library/scn:1", "image_ref": "sha256:abc",
                    "runtime": "crun", "created": "2026-12-01T08:00:00Z",
                    "checkpointed": "2026-12-01T08:40:00Z", "checkpoint_bytes": total,
                    "pages_bytes": pages, "files": ["config.dump", "network.status",
                                                    "spec.dump"]}
    rows = dict(container_rows(info))
    assert rows["Container"] == "scn-test" and rows["Engine"] == "Podman"
    assert rows["Pages size"] == f"136.0 KiB ({pages} bytes)"
    assert "Restored" not in rows  # Go's zero time is no value


def test_container_metadata_of_cri_o_and_containerd(tmp_path: Path) -> None:
    from criu_model.formats.criu.archive import container_metadata

    crio = {"annotations": {"io.container.manager": "cri-o",
                            "io.kubernetes.cri-o.Metadata": json.dumps({"name": "counter"}),
                            "io.kubernetes.cri-o.Created": "2026-11-30T10:00:00Z",
                            "io.kubernetes.cri-o.IP.0": "10.88.0.7",
                            "io.kubernetes.pod.name": "counters",
                            "io.kubernetes.pod.namespace": "default"}}
    info = container_metadata(_archive(tmp_path / "k.tar.gz", {"id": "c0ffee" * 8,
                                                               "name": "k8s_counter"},
                                       crio, "w:gz"))
    assert (info["engine"], info["name"], info["pod"], info["namespace"], info["ip"],
            info["created"], info["compression"]) == (
        "CRI-O", "counter", "counters", "default", "10.88.0.7", "2026-11-30T10:00:00Z", "gz")
    ctrd = {"annotations": {"io.kubernetes.cri.container-name": "web",
                            "io.kubernetes.cri.sandbox-name": "webpod",
                            "io.kubernetes.cri.sandbox-namespace": "prod"}}
    info = container_metadata(_archive(tmp_path / "c.tar", {"id": "x"}, ctrd))
    assert (info["engine"], info["name"], info["pod"], info["namespace"]) == (
        "containerd", "web", "webpod", "prod")


def test_container_metadata_refuses_what_is_no_archive(tmp_path: Path) -> None:
    from criu_model.formats.criu.archive import container_metadata

    with pytest.raises(ImageError, match="not a checkpoint archive"):
        container_metadata(FIXTURES / "sleep")
    bad = _archive(tmp_path / "b.tar", b"{not json", {"annotations": []})
    info = container_metadata(bad)
    assert "config.dump: not JSON" in info["unreadable"][0] and "engine" not in info
    empty = tmp_path / "e.tar"
    with tarfile.open(empty, "w") as tar:
        _add(tar, "README", b"hi")
    with pytest.raises(ImageError, match="not a container checkpoint"):
        container_metadata(empty)


def test_zst_archive_without_zstandard_names_the_package(tmp_path: Path, monkeypatch) -> None:
    import builtins

    real = builtins.__import__

    def no_zstd(name: str, *args: object, **kw: object) -> object:
        if name == "zstandard":
            raise ImportError("no zstandard")
        return real(name, *args, **kw)

    path = tmp_path / "c.tar.zst"
    path.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(60))
    monkeypatch.setattr(builtins, "__import__", no_zstd)
    with pytest.raises(ImageError, match=r"zstandard.*criu-model\[zstd\]"):
        load_criu(path)
