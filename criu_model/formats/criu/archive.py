"""Container checkpoint archives (Podman, CRI-O, Kubernetes) read in place.

    ARCHIVE  ::= tar[.gz|.zst] of: checkpoint/ (CRIU's image directory),
                 config.dump, spec.dump (JSON), stats-dump, rootfs-diff.tar, ...

Nothing is extracted: members are read into memory through tarfile, and a
member whose name is absolute or climbs out with "..", or a link that points
out of the archive, is refused as an ImageError before anything is read. Links
inside are never followed (their images are listed as not read).
"""

from __future__ import annotations

import json
import os
import posixpath
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from criu_model.errors import ImageError
from criu_model.formats.criu.mapping import CriuDump
from criu_model.formats.criu.pages import PagesFile
from criu_model.formats.criu.registry import PAGES_RE

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


GZIP_MAGIC, ZSTD_MAGIC = b"\x1f\x8b", b"\x28\xb5\x2f\xfd"
_COPY = 1 << 20


def _compression(path: Path) -> str:
    """"gz", "zst" or "" (plain tar), by the first bytes, the name only as a hint."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as err:
        raise ImageError(str(path), None, f"cannot open: {err.strerror}") from err
    if head.startswith(GZIP_MAGIC):
        return "gz"
    if head == ZSTD_MAGIC or path.name.lower().endswith((".zst", ".zstd")):
        return "zst"
    return ""


def _zstd_stream(path: Path, fh: IO[bytes]) -> IO[bytes]:
    try:
        import zstandard  # type: ignore[import-not-found]
    except ImportError as err:
        raise ImageError(str(path), None, "a .tar.zst archive needs the zstandard module "
                         "(pip install 'criu-model[zstd]', or pip install zstandard); or "
                         "decompress it with `zstd -d` first") from err
    return zstandard.ZstdDecompressor().stream_reader(fh)  # type: ignore[no-any-return]


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, archive: str) -> bytes:
    try:
        handle: IO[bytes] | None = tar.extractfile(member)
        if handle is None:
            raise ImageError(archive, member.offset, f"member {member.name!r} has no data")
        with handle:
            return handle.read(member.size)
    except (tarfile.TarError, EOFError, OSError, ValueError) as err:
        raise ImageError(archive, member.offset, f"member {member.name!r}: {err}") from err


def _reader(tar: tarfile.TarFile, member: tarfile.TarInfo, archive: str) -> Callable[[], bytes]:
    return lambda: _read_member(tar, member, archive)


def _spool(tar: tarfile.TarFile, member: tarfile.TarInfo, archive: str, spool: IO[bytes]
           ) -> int:
    """Copy a pages member of a compressed archive to the unnamed spool file; its offset."""
    base = spool.seek(0, os.SEEK_END)
    try:
        handle = tar.extractfile(member)
        if handle is None:
            raise ImageError(archive, member.offset, f"member {member.name!r} has no data")
        with handle:
            left = member.size
            while left:
                chunk = handle.read(min(_COPY, left))
                if not chunk:
                    raise ImageError(archive, member.offset, f"member {member.name!r} ends "
                                     "early (the archive is cut short)")
                spool.write(chunk)
                left -= len(chunk)
        spool.flush()
    except (tarfile.TarError, EOFError, OSError, ValueError, zlib_error()) as err:
        raise ImageError(archive, member.offset, f"member {member.name!r}: {err}") from err
    return base


def zlib_error() -> type[Exception]:
    import zlib

    return zlib.error


def _metadata(archive: str, member: tarfile.TarInfo, read: Callable[[], bytes]) -> Any:
    if member.size > MAX_METADATA:
        return None
    try:
        return json.loads(read())
    except (ValueError, UnicodeDecodeError):
        return None


ENGINES = {"libpod": "Podman", "cri-o": "CRI-O"}  # spec.dump io.container.manager
# config.dump keys (Podman's libpod ContainerConfig; CRI-O and containerd write the
# same reduced set): ours -> theirs, first present wins.
_CONFIG_KEYS = (("id", ("id",)), ("name", ("name",)),
                ("image", ("rootfsImageName", "rootfsImage", "image")),
                ("image_ref", ("rootfsImageRef",)), ("image_id", ("rootfsImageID",)),
                ("runtime", ("runtime", "ociRuntime")), ("created", ("createdTime",)),
                ("checkpointed", ("checkpointedTime",)), ("restored_at", ("restoredTime",)))
_ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time.Time: not a value


def container_info(meta: dict[str, Any], rootfs_diff: int | None,
                   sizes: dict[str, int] | None = None) -> dict[str, Any]:
    """The container facts `checkpointctl show` shows, from config.dump and spec.dump.

    The engine comes from spec.dump's io.container.manager annotation (libpod:
    Podman, cri-o: CRI-O, else containerd, as checkpointctl decides); CRI-O and
    containerd keep the container's name, pod and namespace in annotations.
    """
    config = meta.get("config.dump") or {}
    spec = meta.get("spec.dump") or {}
    config = config if isinstance(config, dict) else {}
    annotations = spec.get("annotations") if isinstance(spec, dict) else None
    notes: dict[str, Any] = annotations if isinstance(annotations, dict) else {}
    info: dict[str, Any] = {}
    for key, names in _CONFIG_KEYS:
        for n in names:
            value = config.get(n)
            if isinstance(value, str | int) and not isinstance(value, bool) and value != "" \
                    and value != _ZERO_TIME:
                info[key] = value
                break
    if config.get("restored") is True:
        info["restored"] = True
    manager = notes.get("io.container.manager")
    if isinstance(manager, str):
        info["engine"] = ENGINES.get(manager, manager)
    elif notes:
        info["engine"] = "containerd"
    if info.get("engine") == "CRI-O":
        try:
            crio = json.loads(notes.get("io.kubernetes.cri-o.Metadata", "{}"))
        except (TypeError, ValueError):
            crio = {}
        if isinstance(crio, dict) and isinstance(crio.get("name"), str):
            info["name"] = crio["name"]
        for key, note in (("created", "io.kubernetes.cri-o.Created"),
                          ("ip", "io.kubernetes.cri-o.IP.0"),
                          ("namespace", "io.kubernetes.pod.namespace"),
                          ("pod", "io.kubernetes.pod.name")):
            if isinstance(notes.get(note), str):
                info[key] = notes[note]
    elif info.get("engine") == "containerd":
        for key, note in (("name", "io.kubernetes.cri.container-name"),
                          ("namespace", "io.kubernetes.cri.sandbox-namespace"),
                          ("pod", "io.kubernetes.cri.sandbox-name")):
            if isinstance(notes.get(note), str):
                info[key] = notes[note]
    for key in ("config.dump", "spec.dump"):
        if key in meta and meta[key] is None:
            info.setdefault("unreadable", []).append(f"{key}: not JSON, or larger than "
                                                     f"{MAX_METADATA >> 20} MiB")
    if sizes:
        info.update(sizes)
    if rootfs_diff is not None:
        info["rootfs_diff_bytes"] = rootfs_diff
    return info


class _Collect:
    """What one pass over the members gathers: images, pages files, metadata, links."""

    def __init__(self, archive: str, images: bool = True) -> None:
        self.archive = archive
        self.images = images  # False: metadata and sizes only (container_metadata)
        self.files: dict[str, tuple[str, Callable[[], bytes], int]] = {}
        self.top_stats: tuple[str, Callable[[], bytes], int] | None = None
        self.pages: dict[int, PagesFile] = {}
        self.links: list[tuple[str, str]] = []
        self.meta: dict[str, Any] = {}
        self.rootfs_diff: int | None = None
        self.prefixed = False
        self.sizes = {"checkpoint_bytes": 0, "pages_bytes": 0}
        self.extra_files: list[str] = []
        self.decoded: CriuDump | None = None

    def add(self, name: str, member: tarfile.TarInfo, read: Callable[[], bytes],
            pages: Callable[[], PagesFile]) -> None:
        if name in METADATA and member.isfile():
            self.meta[name] = _metadata(self.archive, member, read)
        if name == "rootfs-diff.tar":
            self.rootfs_diff = member.size
        if name == "stats-dump" and member.isfile():
            self.top_stats = ("stats-dump", read, member.size)
        images_dir = name.startswith(IMAGES_DIR + "/")
        if images_dir and member.isfile():
            self.sizes["checkpoint_bytes"] += member.size
            if PAGES_RE.match(posixpath.basename(name)):
                self.sizes["pages_bytes"] += member.size
        elif "/" not in name and name and member.isfile():
            self.extra_files.append(name)
        self.prefixed |= images_dir
        base = name[len(IMAGES_DIR) + 1:] if images_dir else name
        if not base or "/" in base or not self.images:
            return
        key = f"{IMAGES_DIR}/{base}" if images_dir else base
        if member.issym() or member.islnk():
            self.links.append((base, "not read: a link inside the archive (links are never "
                               "followed)"))
        elif member.isfile():
            m = PAGES_RE.match(base)
            if m:
                self.pages[int(m.group(1)) if images_dir else -1 - int(m.group(1))] = pages()
            else:
                self.files[key] = (base, read, member.size)

    def decode(self) -> None:
        self.decoded = self.dump()

    def dump(self) -> CriuDump:
        from criu_model.formats.criu import read_files

        if self.prefixed:
            files = [f for k, f in self.files.items() if k.startswith(IMAGES_DIR + "/")]
            pages = {k: v for k, v in self.pages.items() if k >= 0}
            if not any(n == "stats-dump" for n, _, _ in files) and self.top_stats:
                files.append(self.top_stats)
        else:
            files = list(self.files.values())
            pages = {-1 - k: v for k, v in self.pages.items() if k < 0}
        if not any(n.endswith(".img") for n, _, _ in files):
            raise ImageError(self.archive, None, "holds no CRIU images (no checkpoint/ "
                             "directory and no *.img at its top)")
        prefix = IMAGES_DIR + "/" if self.prefixed else "/"
        dump = read_files(f"{self.archive}:{prefix}", files, pages)
        dump.not_read.extend(self.links)
        dump.container = self.container()
        return dump

    def container(self) -> dict[str, Any]:
        info = container_info(self.meta, self.rootfs_diff, self.sizes)
        info["files"] = sorted(self.extra_files)
        return info


def _open_plain(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, mode="r:")
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ImageError(str(path), None, f"not a readable tar archive: {err}") from err


def _plain_archive(p: Path, images: bool = True) -> _Collect:
    """A plain .tar: every member checked first, pages read in place at their offsets."""
    archive = str(p)

    def opener() -> int:
        try:
            return os.open(p, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as err:
            raise ImageError(archive, None, f"cannot open: {err.strerror}") from err

    with _open_plain(p) as tar:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, EOFError, OSError) as err:
            raise ImageError(archive, None, f"not a readable tar archive: {err}") from err
        names = [(_safe_name(archive, m), m) for m in members]
        got = _Collect(archive, images)
        for name, member in names:
            got.add(name, member, _reader(tar, member, archive),
                    lambda m=member, n=name: PagesFile(f"{archive}:{n}", m.size, opener,
                                                       m.offset_data))
        if images:
            got.decode()
        return got


def _compressed_archive(p: Path, kind: str, images: bool = True) -> _Collect:
    """.tar.gz / .tar.zst, read in one streamed pass (no seeking back in the stream).

    Each member is checked before its data is read; images are read into
    memory, pages-*.img are copied to one unnamed temporary file and read from
    there by offset; everything else (rootfs-diff.tar...) is skipped.
    """
    archive = str(p)
    # Unnamed; kept open by the PagesFile openers that refer to it, closed with them.
    spool = tempfile.TemporaryFile(prefix="criu-model-pages-")  # noqa: SIM115
    try:
        with open(p, "rb") as fh:
            stream: IO[bytes] = _zstd_stream(p, fh) if kind == "zst" else fh
            try:
                tar = tarfile.open(fileobj=stream,  # noqa: SIM115
                                   mode="r|gz" if kind == "gz" else "r|")
            except (tarfile.TarError, EOFError, OSError, zlib_error()) as err:
                raise ImageError(archive, None, f"not a readable tar archive: {err}") from err
            got = _Collect(archive, images)
            with tar:
                try:
                    for member in tar:
                        name = _safe_name(archive, member)
                        data = (_read_member(tar, member, archive)
                                if member.isfile() and _decoded(name, images) else b"")

                        def pages(m: tarfile.TarInfo = member, n: str = name) -> PagesFile:
                            base = _spool(tar, m, archive, spool)
                            return PagesFile(f"{archive}:{n}", m.size,
                                             lambda: os.dup(spool.fileno()), base)

                        got.add(name, member, (lambda d=data: d), pages)
                except (tarfile.TarError, EOFError, OSError, zlib_error()) as err:
                    raise ImageError(archive, None, f"not a readable tar archive: {err}"
                                     ) from err
            if images:
                got.decode()
            return got
    except BaseException:
        spool.close()
        raise


def _decoded(name: str, images: bool) -> bool:
    """Members read into memory in a streamed pass: images and metadata, not page data."""
    base = posixpath.basename(name)
    if name in METADATA:
        return True
    if not images:
        return False
    return base == "stats-dump" or (base.endswith(".img") and not PAGES_RE.match(base))


@contextmanager
def open_archive(path: str | os.PathLike[str]) -> Iterator[CriuDump]:
    """The CRIU images of a checkpoint archive, decoded (page data read later, by offset)."""
    p = Path(path)
    kind = _compression(p)
    got = _compressed_archive(p, kind) if kind else _plain_archive(p)
    assert got.decoded is not None
    yield got.decoded


def container_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What a checkpoint archive says of its container (`criu-model show ARCHIVE container`).

    Read without decoding any CRIU image: config.dump and spec.dump, the sizes
    of checkpoint/ (and of its pages) and rootfs-diff.tar, the other files at
    the top. Keys: engine, name, id, image, image_ref, image_id, runtime,
    created, checkpointed, restored_at, restored, pod, namespace, ip,
    checkpoint_bytes, pages_bytes, rootfs_diff_bytes, files (only those found),
    plus ``archive`` and ``compression``.
    """
    p = Path(path)
    if not p.is_file():
        raise ImageError(str(p), None, "not a checkpoint archive (container metadata is in "
                         "Podman/CRI-O/Kubernetes archives, not in a criu dump directory)")
    kind = _compression(p)
    got = _compressed_archive(p, kind, images=False) if kind else _plain_archive(p, False)
    if not got.meta and not got.sizes["checkpoint_bytes"]:
        raise ImageError(str(p), None, "holds neither config.dump/spec.dump nor a "
                         "checkpoint/ directory: not a container checkpoint archive")
    return {"archive": str(p), "compression": kind or "none", **got.container()}


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{n} B"
        value /= 1024
    return f"{n} B"


CONTAINER_ROWS = (("Container", "name"), ("Engine", "engine"), ("Image", "image"),
                  ("Image ref", "image_ref"), ("ID", "id"), ("Runtime", "runtime"),
                  ("Created", "created"), ("Checkpointed", "checkpointed"),
                  ("Restored", "restored_at"), ("Pod", "pod"), ("Namespace", "namespace"),
                  ("IP", "ip"), ("CHKPT size", "checkpoint_bytes"),
                  ("Pages size", "pages_bytes"), ("Root FS diff size", "rootfs_diff_bytes"),
                  ("Other files", "files"), ("Compression", "compression"))


def container_rows(info: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, text) of container_metadata() for a two-column table, as checkpointctl shows."""
    rows = []
    for label, key in CONTAINER_ROWS:
        value = info.get(key)
        if value is None or value == []:
            continue
        if key.endswith("_bytes"):
            text = f"{_size(int(value))} ({value} bytes)"
        elif isinstance(value, list):
            text = ", ".join(str(v) for v in value)
        else:
            text = str(value)
        rows.append((label, text))
    for why in info.get("unreadable", []):
        rows.append(("Unreadable", str(why)))
    return rows
