"""Read CRIU image directories (and checkpoint archives) into a criu-model Snapshot.

    snap = load_criu("dump-dir")      # or an archive: .tar, .tar.gz, .tar.zst
    dump = read_dir("dump-dir")       # the decoded CRIU images, before mapping

Layers, each usable alone: framing.py (bytes -> entries, ImageError with file
and offset), registry.py (CRIU magic -> message and reader), mapping.py
(CRIU messages -> criu_model.v1 messages), archive.py (tar members -> the
same reader, nothing extracted).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

from criu_model.errors import ImageError, InconsistentImage, TruncatedImage
from criu_model.formats.criu import magic
from criu_model.formats.criu.framing import CriuImage, read_magic
from criu_model.formats.criu.mapping import CriuDump, to_snapshot
from criu_model.formats.criu.pages import PagesFile, file_opener, import_pages
from criu_model.formats.criu.registry import HANDLERS, PAGES_RE, kind_of_name
from criu_model.images.files import read_file
from criu_model.snapshot import Snapshot

__all__ = ["CriuDump", "decode_image", "import_pages", "load_criu", "read_dir", "read_files"]

def decode_image(path: str, name: str, data: bytes) -> CriuImage | tuple[str, str]:
    """One file: its decoded image, or (name, why it was not read) for kinds we do not map.

    A file whose name promises a kind (core-1.img is CORE) must carry that
    kind's magic: anything else is BadMagic with the magic's name and number.
    """
    expected = kind_of_name(name)
    if expected is not None:
        return HANDLERS[expected].read(path, name, data)
    number, _ = read_magic(path, data)
    kind = magic.BY_NUMBER.get(number)
    if kind is None:
        return name, f"not read: magic {magic.describe(number)}"
    handler = HANDLERS.get(kind)
    if handler is None:
        return name, f"not read: CRIU {kind} image (0x{number:08x}), criu-model has no mapping"
    return handler.read(path, name, data)


def read_files(root: str, files: Iterable[tuple[str, Callable[[], bytes], int]],
               pages: dict[int, PagesFile] | None = None) -> CriuDump:
    """Decode CRIU image files given as (name, reader of the bytes, size).

    Page data (pages-N.img) is never read here: ``pages`` gives those files
    as PagesFile objects, read by offset when a page is asked for.
    """
    dump = CriuDump(root=root, images={}, pages_files=dict(pages or {}))
    for name, read, _size in files:
        if PAGES_RE.match(name):
            continue
        if not (name.endswith(".img") or name in ("stats-dump", "stats-restore")):
            continue
        decoded = decode_image(os.path.join(root, name), name, read())
        if isinstance(decoded, tuple):
            dump.not_read.append(decoded)
        else:
            dump.images[name] = decoded
    return dump


def read_dir(path: str | os.PathLike[str], *, only_pages: bool = False) -> CriuDump:
    """Decode every CRIU image of a directory (pages-*.img are opened only when read).

    ``only_pages``: just the pagemaps and pages files (a parent/ pre-dump).
    """
    root = Path(path)
    try:
        names = sorted(os.listdir(root))
    except OSError as err:
        raise ImageError(str(root), None, f"cannot list: {err.strerror}") from err
    entries = []
    pages: dict[int, PagesFile] = {}
    for name in names:
        full = root / name
        if only_pages and not name.startswith(("pagemap-", "pages-")):
            continue
        try:
            st = os.lstat(full)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        m = PAGES_RE.match(name)
        if m:
            pages[int(m.group(1))] = PagesFile(str(full), st.st_size, file_opener(str(full)))
        else:
            entries.append((name, (lambda f=full: read_file(f)), st.st_size))
    dump = read_files(str(root), entries, pages)
    dump.directory = str(root)
    return dump


def check_complete(dump: CriuDump) -> None:
    """A dump CRIU refused leaves partial images without inventory.img/pstree.img: one line."""
    missing = [n for n in ("inventory.img", "pstree.img") if n not in dump.images]
    if missing:
        raise TruncatedImage(dump.root, None, "is a CRIU image directory left by a refused "
                             f"dump: it has no {'/'.join(missing)} (CRIU writes them last, "
                             "only when the dump succeeds)")


def to_criu_model(dump: CriuDump) -> Snapshot:
    """Map a decoded, complete CRIU dump onto a Snapshot and check it like a loaded one."""
    from criu_model.images.validate import validate

    check_complete(dump)
    old = {name: (HANDLERS[img.kind].fd_type, HANDLERS[img.kind].file_field)
           for name, img in dump.images.items() if HANDLERS[img.kind].file_field}
    snap = to_snapshot(dump, old)
    try:
        validate(snap, Path(dump.root), {})
    except InconsistentImage as err:
        raise InconsistentImage(dump.root, None, "the CRIU images contradict themselves "
                                f"once mapped: {err}") from err
    return snap


def load_criu(path: str | os.PathLike[str]) -> Snapshot:
    """A CRIU image directory or checkpoint archive as a criu-model Snapshot."""
    p = Path(path)
    if p.is_file():
        from criu_model.formats.criu.archive import open_archive

        with open_archive(p) as dump:
            return to_criu_model(dump)
    if not p.is_dir():
        raise ImageError(str(p), None, "no such CRIU image directory or archive")
    return to_criu_model(read_dir(p))

