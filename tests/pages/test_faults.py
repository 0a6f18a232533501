"""Page images under attack: corrupt, truncated, broken chains, full disks, dying targets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import criu_model
from criu_model.errors import CriuModelError, ImageError, InconsistentImage, UsageError
from criu_model.pages.capture import PageCapture
from criu_model.pages.layout import PAGE_SIZE
from tests.memchild import MemTree, spawn_mem_tree

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: ptrace, map_files, PFNs")


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[MemTree]:
    with spawn_mem_tree(tmp_path) as tree:
        yield tree


@pytest.fixture
def snapdir(tree: MemTree, tmp_path: Path) -> Path:
    snap = criu_model.dump([tree.root.pid], pages=True, pages_dir=str(tmp_path))
    return criu_model.write(snap, tmp_path / "snap")


def test_flipped_byte_in_page_data_names_file_and_offset(tree: MemTree, snapdir: Path) -> None:
    snap = criu_model.load(snapdir)
    addr, length, _ = tree.root.regions["anon"]
    index = snap.page_store.owner((tree.root.pid, 0, 0))  # type: ignore[union-attr]
    slot = next(s for _lo, _n, state, s, _h in index.pages(addr, addr + length) if state == 1)
    offset = (slot + 1) * PAGE_SIZE + 100
    with open(snapdir / "pages.img", "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x40]))
    snap = criu_model.load(snapdir)  # loads: page data is checked when read
    with pytest.raises(ImageError, match=rf"pages\.img at byte {offset - 100}.*checksum"):
        snap.read_memory(tree.root.pid, addr, length)


def test_truncated_page_file(snapdir: Path) -> None:
    size = (snapdir / "pages.img").stat().st_size
    os.truncate(snapdir / "pages.img", size - 1000)
    with pytest.raises(ImageError, match=r"pages\.img.*records"):
        criu_model.load(snapdir)


def test_page_file_replaced_by_symlink_or_fifo(snapdir: Path) -> None:
    (snapdir / "pages.img").unlink()
    (snapdir / "pages.img").symlink_to("/dev/urandom")
    with pytest.raises(ImageError, match="symbolic link"):
        criu_model.load(snapdir)
    (snapdir / "pages.img").unlink()
    os.mkfifo(snapdir / "pages.img")
    with pytest.raises(ImageError, match="not a regular file"):
        criu_model.load(snapdir)


def test_broken_parent_chain(tree: MemTree, tmp_path: Path, snapdir: Path) -> None:
    tree.command("write 3")
    inc = criu_model.write(criu_model.dump([tree.root.pid], pages=True,
                                           pages_dir=str(tmp_path), parent=snapdir),
                           tmp_path / "inc")
    assert criu_model.load(inc).inventory.page_stats.inherited > 0
    snapdir.rename(tmp_path / "moved")
    with pytest.raises(InconsistentImage, match=r"snap \(parent of .*inc\).*missing"):
        criu_model.load(inc)
    # another snapshot in the parent's place is not the parent
    criu_model.write(criu_model.dump([tree.root.pid], pages=True, pages_dir=str(tmp_path)),
                     snapdir)
    with pytest.raises(InconsistentImage, match="not the snapshot this one was dumped against"):
        criu_model.load(inc)


def test_parent_of_another_tree_or_without_pages(tree: MemTree, tmp_path: Path,
                                                 snapdir: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(UsageError, match="another tree"):
            criu_model.dump([other.pid], pages=True, parent=snapdir)
    finally:
        other.kill()
        other.wait()
    plain = criu_model.write(criu_model.dump([tree.root.pid]), tmp_path / "plain")
    with pytest.raises(UsageError, match="without --pages"):
        criu_model.dump([tree.root.pid], pages=True, parent=plain)
    with pytest.raises(UsageError, match="needs --pages"):
        criu_model.dump([tree.root.pid], parent=snapdir)


def test_full_disk_fails_clearly_and_leaves_nothing(tree: MemTree, tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)], check=True)
    try:
        res = subprocess.run([sys.executable, "-m", "criu_model", "dump", str(tree.root.pid),
                              "-D", str(small / "snap"), "--pages"],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 1, res.stderr
        assert "No space left on device" in res.stderr and "Traceback" not in res.stderr
        assert res.stderr.count("\n") == 1
        assert os.listdir(small) == []  # no snapshot, no temporary leftovers
    finally:
        subprocess.run(["umount", str(small)], check=True)
    for proc in (tree.root, tree.kid):  # the targets run on, unharmed
        os.kill(proc.pid, 0)
        assert _state(proc.pid) == "S"


def test_target_dying_while_its_memory_is_read(tree: MemTree, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    real = PageCapture.capture_process

    def kill_kid_first(self: PageCapture, pid: int, *args: object, **kwargs: object) -> object:
        if pid == tree.kid.pid:
            os.kill(pid, signal.SIGKILL)
            while _state(pid) not in "ZX":
                pass
        return real(self, pid, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(PageCapture, "capture_process", kill_kid_first)
    snap = criu_model.dump([tree.root.pid], pages=True, pages_dir=str(tmp_path))
    assert tree.kid.pid not in snap.by_pid
    assert any(s.pid == tree.kid.pid for s in snap.inventory.skipped)
    assert all(r.pid != tree.kid.pid for r in snap.pagemap)
    loaded = criu_model.load(criu_model.write(snap, tmp_path / "snap"))
    addr, length, digest = tree.root.regions["anon"]
    import hashlib

    assert hashlib.sha256(loaded.read_memory(tree.root.pid, addr, length)).hexdigest() == digest


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(which=st.sampled_from(["pagemap.img", "pages.img"]), data=st.data())
def test_corrupt_page_images_give_image_errors(snapdir: Path, tmp_path: Path, which: str,
                                               data: st.DataObject) -> None:
    original = (snapdir / which).read_bytes()
    try:
        pos = data.draw(st.integers(0, len(original) - 1))
        cut = data.draw(st.booleans())
        broken = original[:pos] if cut else \
            original[:pos] + bytes([original[pos] ^ data.draw(st.integers(1, 255))]) + \
            original[pos + 1:]
        (snapdir / which).write_bytes(broken)
        try:
            snap = criu_model.load(snapdir)
            for runs in snap.pagemap:
                if runs.pid:
                    snap.read_memory(runs.pid, runs.addr[0], min(runs.npages[0], 8) * PAGE_SIZE)
        except CriuModelError:
            pass
    finally:
        (snapdir / which).write_bytes(original)


def test_unreadable_memory_of_a_live_process_is_marked_not_captured(
        tree: MemTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A range that cannot be read while the process lives (memory changing under
    --freeze none): the process stays, its pages are marked not captured, with why."""
    from criu_model.errors import NotCaptured
    from criu_model.kernel.vmread import RemoteReader

    for name in ("read", "read_mem"):
        real = getattr(RemoteReader, name)

        def short(self: RemoteReader, ranges: list[tuple[int, int]], offset: int = 0,
                  real=real) -> int:  # type: ignore[no-untyped-def]
            if self.pid == tree.kid.pid:
                return 0  # as if the range had been unmapped
            return real(self, ranges, offset)

        monkeypatch.setattr(RemoteReader, name, short)
    snap = criu_model.dump([tree.root.pid], pages=True, pages_dir=str(tmp_path))
    assert tree.kid.pid in snap.by_pid
    kid = snap.memory_by_pid[tree.kid.pid]
    assert any(u.field == "pages_data" and "could not be read" in u.reason
               for u in kid.unreadable)
    addr, _length, _ = tree.kid.regions["anon"]
    with pytest.raises(NotCaptured, match="could not be read"):
        snap.read_memory(tree.kid.pid, addr, 16)
    root_addr, _, _ = tree.root.regions["anon"]
    assert snap.read_memory(tree.root.pid, root_addr, 8)  # the others are whole
