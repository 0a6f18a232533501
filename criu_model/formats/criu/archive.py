"""Container checkpoint archives (Podman, CRI-O, Kubernetes) read in place.

    ARCHIVE  ::= tar[.gz|.zst] of: checkpoint/ (CRIU's image directory),
                 config.dump, spec.dump (JSON), stats-dump, rootfs-diff.tar, ...

Nothing is extracted: members are read into memory through tarfile, and a
member whose name is absolute or climbs out with "..", or a link that points
out of the archive, is refused as an ImageError before anything is read. Links
inside are never followed (their images are listed as not read).
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from criu_model.errors import ImageError
from criu_model.formats.criu.mapping import CriuDump

IMAGES_DIR = "checkpoint"
METADATA = ("config.dump", "spec.dump")
MAX_METADATA = 16 << 20  # bytes of config.dump/spec.dump parsed as JSON, at most


def _safe_name(archive: str, member: tarfile.TarInfo) -> str:
    """The member's normalized relative name; ImageError if it could land outside."""
    name = member.name
    if name.startswith("/") or os.path.isabs(name):
        raise ImageError(archive, member.offset, f"member {name!r} has an absolute path: "
                         "refused (never extracted outside)")
    norm = posixpath.normpath(name)
    if norm == ".." or norm.startswith("../") or "/../" in f"/{name}/":
        raise ImageError(archive, member.offset, f"member {name!r} climbs out with '..': "
                         "refused (never extracted outside)")
    if member.issym() or member.islnk():
        target = member.linkname
        base = posixpath.dirname(norm) if member.issym() else ""
        resolved = posixpath.normpath(posixpath.join(base, target))
        if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
            raise ImageError(archive, member.offset, f"member {name!r} links to {target!r}, "
                             "outside the archive: refused")
    return "" if norm == "." else norm


def _open_tar(path: Path) -> tarfile.TarFile:
    name = path.name.lower()
    try:
        if name.endswith((".zst", ".zstd")):
            try:
                import zstandard  # type: ignore[import-not-found]
            except ImportError as err:
                raise ImageError(str(path), None, "a .tar.zst archive needs the zstandard "
                                 "module (pip install zstandard); or decompress it with "
                                 "`zstd -d` first") from err
            with open(path, "rb") as fh:
                data = zstandard.ZstdDecompressor().stream_reader(fh).read()
            return tarfile.open(fileobj=io.BytesIO(data), mode="r:")
        return tarfile.open(path, mode="r:*")
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ImageError(str(path), None, f"not a readable tar archive: {err}") from err


def _reader(tar: tarfile.TarFile, member: tarfile.TarInfo, archive: str) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            handle: IO[bytes] | None = tar.extractfile(member)
            if handle is None:
                raise ImageError(archive, member.offset, f"member {member.name!r} has no data")
            with handle:
                return handle.read(member.size)
        except (tarfile.TarError, EOFError, OSError, ValueError) as err:
            raise ImageError(archive, member.offset, f"member {member.name!r}: {err}") from err
    return read


def _metadata(archive: str, member: tarfile.TarInfo, read: Callable[[], bytes]) -> Any:
    if member.size > MAX_METADATA:
        return None
    try:
        return json.loads(read())
    except (ValueError, UnicodeDecodeError):
        return None


def container_info(meta: dict[str, Any], rootfs_diff: int | None) -> dict[str, Any]:
    """What `checkpointctl show` shows, from config.dump (Podman and CRI-O names)."""
    config = meta.get("config.dump") or {}
    spec = meta.get("spec.dump") or {}
    if not isinstance(config, dict):
        config = {}
    info: dict[str, Any] = {}
    for key, names in (("id", ("id",)), ("name", ("name",)),
                       ("image", ("rootfsImageName", "rootfsImage", "image")),
                       ("image_ref", ("rootfsImageRef",)), ("runtime", ("ociRuntime",)),
                       ("created", ("createdTime",)), ("checkpointed", ("checkpointedTime",))):
        for n in names:
            if isinstance(config.get(n), str | int):
                info[key] = config[n]
                break
    if isinstance(spec, dict) and isinstance(spec.get("annotations"), dict):
        engine = spec["annotations"].get("io.container.manager")
        if isinstance(engine, str):
            info["engine"] = engine
    if rootfs_diff is not None:
        info["rootfs_diff_bytes"] = rootfs_diff
    return info


@contextmanager
def open_archive(path: str | os.PathLike[str]) -> Iterator[CriuDump]:
    """The CRIU images of a checkpoint archive, decoded; the archive stays open inside."""
    from criu_model.formats.criu import read_files

    p = Path(path)
    archive = str(p)
    with _open_tar(p) as tar:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, EOFError, OSError) as err:
            raise ImageError(archive, None, f"not a readable tar archive: {err}") from err
        names = {_safe_name(archive, m): m for m in members}
        prefix = IMAGES_DIR + "/" if any(n.startswith(IMAGES_DIR + "/") for n in names) else ""
        files: list[tuple[str, Callable[[], bytes], int]] = []
        links: list[tuple[str, str]] = []
        meta: dict[str, Any] = {}
        rootfs_diff = None
        for name, member in names.items():
            if name in METADATA and member.isfile():
                meta[name] = _metadata(archive, member, _reader(tar, member, archive))
            if name == "rootfs-diff.tar":
                rootfs_diff = member.size
            if not name.startswith(prefix) or "/" in name[len(prefix):]:
                continue
            base = name[len(prefix):]
            if member.issym() or member.islnk():
                links.append((base, "not read: a link inside the archive (links are never "
                              "followed)"))
            elif member.isfile():
                files.append((base, _reader(tar, member, archive), member.size))
        have = {n for n, _, _ in files}
        top = names.get("stats-dump")
        if prefix and "stats-dump" not in have and top is not None and top.isfile():
            files.append(("stats-dump", _reader(tar, top, archive), top.size))
        if not any(n.endswith(".img") for n, _, _ in files):
            raise ImageError(archive, None, "holds no CRIU images (no checkpoint/ directory "
                             "and no *.img at its top)")
        dump = read_files(f"{archive}:{prefix or '/'}", files)
        dump.not_read.extend(links)
        dump.container = container_info(meta, rootfs_diff)
        yield dump
