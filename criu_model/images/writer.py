"""Write a Snapshot to a directory atomically.

Everything goes to a hidden temporary sibling (mode 0700, files 0600: images
may hold memory contents) which is renamed into place only once every image
and finally the inventory are written and fsynced. A crash or Ctrl-C leaves
at most a ``.NAME.tmp-*`` directory, which ``load`` refuses because it is not
the requested path, never a directory that loads as complete.

Every file is created relative to directory file descriptors with
``O_CREAT | O_EXCL | O_NOFOLLOW`` and the directory is renamed with
``renameat``: a path is never followed twice, so whoever else can write to
the parent directory cannot swap our temporary directory for a symlink and
make us write somewhere else.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from google.protobuf.message import Message

from criu_model.errors import CriuModelError, UsageError
from criu_model.images import framing
from criu_model.images.digest import sha256
from criu_model.images.files import copy_into, exists
from criu_model.images.pb import inventory_pb2
from criu_model.images.registry import IMAGES, INVENTORY
from criu_model.snapshot import Snapshot

PAGES_IMG = "pages.img"  # raw page data (criu_model.pages.layout), not framed entries
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

def serialize(kind: int, entries: list[Message]) -> bytes:
    """One image file's bytes; deterministic so a re-write is byte-identical."""
    return framing.encode(kind, (e.SerializeToString(deterministic=True) for e in entries))

def _write_file(dir_fd: int, name: str, data: bytes) -> int:
    """Create and fill one image; returns its fd, still open, for :func:`_sync_all`."""
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                 0o600, dir_fd=dir_fd)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        raise
    return fd


def _sync_all(fds: list[int]) -> None:
    """fsync every image, after starting the writeback of all of them at once.

    POSIX_FADV_DONTNEED starts writing a file's dirty pages without waiting;
    started for every file first, the fsyncs then mostly find their data
    written and one journal commit covering them all, where fsync after each
    write waits for one commit per file (9 files: ~1.5 ms instead of ~3.7 on ext4).
    """
    for fd in fds:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    for fd in fds:
        os.fsync(fd)

def _page_data_fd(snap: Snapshot) -> int | None:
    """The open page data file of the snapshot: a fresh dump's sink, or a loaded store."""
    if snap.page_sink is not None:
        return snap.page_sink.fd
    if snap.page_store is not None:
        return snap.page_store.fd
    return None

def render_images(snap: Snapshot, target: Path | None = None) -> dict[str, bytes]:
    """File name -> bytes for every image, the inventory (with its image records) last.

    ``target`` (the final directory) makes the parent path relative to it.
    """
    files: dict[str, bytes] = {}
    inv = inventory_pb2.Inventory()
    inv.CopyFrom(snap.inventory)
    inv.format_major = framing.FORMAT_MAJOR
    inv.format_minor = framing.FORMAT_MINOR
    del inv.images[:]
    for image in IMAGES:
        entries = getattr(snap, image.attr)
        data = serialize(image.kind, entries)
        files[image.name] = data
        inv.images.add(name=image.name, entries=len(entries),
                       sha256=sha256(data), size=len(data))
    data_fd = _page_data_fd(snap)
    if data_fd is not None:
        size = os.fstat(data_fd).st_size
        page = os.sysconf("SC_PAGE_SIZE")
        inv.images.add(name=PAGES_IMG, entries=max(0, size // page - 1), size=size)
        inv.page_stats.bytes_written = size
    if snap.parent_dir is not None and target is not None:
        inv.parent_snapshot = os.path.relpath(snap.parent_dir, target)
    files[INVENTORY.name] = serialize(INVENTORY.kind, [inv])
    return files

def _rmtree(name: str, *, dir_fd: int, ignore_errors: bool) -> None:
    """shutil.rmtree, imported only when something is removed (it costs 1.5 ms of start-up)."""
    import shutil

    shutil.rmtree(name, dir_fd=dir_fd, ignore_errors=ignore_errors)


def _fsync(fd: int) -> None:
    os.fsync(fd)

def _is_snapshot(parent_fd: int, name: str) -> bool:
    """Whether ``name`` is a real directory holding a snapshot inventory (not a link)."""
    try:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(st.st_mode):
        return False
    try:
        os.stat(f"{name}/{INVENTORY.name}", dir_fd=parent_fd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True

def write(snap: Snapshot, directory: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Write the snapshot to `directory`, atomically.

    An existing path is refused unless ``force``, and even then only a
    directory that is a criu-model snapshot is replaced (never any file or
    directory that happens to be there).
    """
    target = Path(directory).absolute()
    parent = target.parent
    name = target.name
    try:
        # The parent is the user's choice: a symlink there is followed (once); only
        # what we create below it is opened with O_NOFOLLOW.
        parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError) as err:
        raise UsageError(f"{parent} is not a directory") from err
    except OSError as err:
        raise CriuModelError(f"cannot open {parent}: {err.strerror}") from err
    try:
        _check_parent(parent_fd, parent)
        if exists(target):
            if not force:
                raise UsageError(f"{target} already exists (use --force to replace it)")
            if not _is_snapshot(parent_fd, name):
                raise UsageError(f"{target} exists and is not a criu-model snapshot directory: "
                                 "--force replaces only a snapshot")
        files = render_images(snap, target)
        tmp_name = f".{name}.tmp-{os.getpid()}-{os.urandom(4).hex()}"
        try:
            os.mkdir(tmp_name, 0o700, dir_fd=parent_fd)
        except OSError as err:   # EACCES, EROFS, ENOSPC, EDQUOT: one line, not a traceback
            raise CriuModelError(f"cannot create a directory in {parent}: "
                                 f"{err.strerror}") from err
        try:
            _write_all(snap, files, parent_fd, tmp_name)
            if force and exists(target):  # move the old snapshot aside, then swap
                old_name = f".{name}.old-{os.getpid()}-{os.urandom(4).hex()}"
                os.rename(name, old_name, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
                os.rename(tmp_name, name, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
                _rmtree(old_name, dir_fd=parent_fd, ignore_errors=True)
            else:
                os.rename(tmp_name, name, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
            _fsync(parent_fd)
        except OSError as err:
            _rmtree(tmp_name, dir_fd=parent_fd, ignore_errors=True)
            raise CriuModelError(f"writing snapshot {target}: {err.strerror or err}") from err
        except BaseException:  # Ctrl-C, SIGTERM: never leave the temporary directory
            _rmtree(tmp_name, dir_fd=parent_fd, ignore_errors=True)
            raise
    finally:
        os.close(parent_fd)
    return target

def check_parent(parent: Path) -> None:
    """The same refusal as write() gives, for callers that check before dumping."""
    try:
        fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return  # a missing parent is write()'s message
    try:
        _check_parent(fd, parent)
    finally:
        os.close(fd)

def _check_parent(parent_fd: int, parent: Path) -> None:
    """Refuse a parent directory where another user could rename our entries.

    Writing through directory fds keeps every image inside our own temporary
    directory, but the final rename is by name: in a directory another user may
    write to (without the sticky bit), or owns, they could put a symlink of their
    own in its place first and have the snapshot name point into their directory.
    """
    st = os.fstat(parent_fd)
    me = os.geteuid()
    others_write = st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX
    if others_write or st.st_uid not in (me, 0):
        raise CriuModelError(
            f"{parent} can be changed by another user (owner uid {st.st_uid}, mode "
            f"{stat.S_IMODE(st.st_mode):o}): they could swap the snapshot for a link of "
            "theirs; write it in a directory only you (or root) can change, or one with "
            "the sticky bit like /tmp")

def _same_inode(parent_fd: int, name: str, dir_fd: int) -> bool:
    try:
        here = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except OSError:
        return False
    mine = os.fstat(dir_fd)
    return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)

def _write_all(snap: Snapshot, files: dict[str, bytes], parent_fd: int, tmp_name: str) -> None:
    """Every image into the temporary directory, page data first, the inventory last."""
    dir_fd = os.open(tmp_name, _DIR_FLAGS, dir_fd=parent_fd)
    try:
        st = os.fstat(dir_fd)
        if st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & 0o077:
            raise CriuModelError(f"temporary directory {tmp_name} was tampered with")
        if snap.page_sink is not None:
            snap.page_sink.finish()
            snap.page_sink.link(dir_fd, PAGES_IMG)
        elif snap.page_store is not None:
            copy_into(snap.page_store.fd, dir_fd, PAGES_IMG)
        written: list[int] = []
        try:
            for name, data in files.items():
                written.append(_write_file(dir_fd, name, data))
            _sync_all(written)
        finally:
            for fd in written:
                os.close(fd)
        _fsync(dir_fd)
        if not _same_inode(parent_fd, tmp_name, dir_fd):
            raise CriuModelError(f"temporary directory {tmp_name} was swapped while it was "
                                 "written: not renamed into place")
    finally:
        with contextlib.suppress(OSError):
            os.close(dir_fd)
