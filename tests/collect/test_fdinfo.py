"""Parser units for fdinfo texts, lock lines, and collect_fds on fake /proc trees.

Samples were captured on Linux 6.18 (x86_64) from real fds; edge cases
(hex values above 9, -1 printed as ffffffff, unknown keys, old kernels without
``ino:``) are variations of them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from criu_model.collect import fdinfo
from criu_model.collect.fds import GhostStore, collect_fds, share_key
from criu_model.collect.locks import parse_lock_line, parse_proc_locks, waiting_locks
from criu_model.errors import ProcessGone
from criu_model.images.pb import files_pb2

REGULAR = b"pos:\t10\nflags:\t02102002\nmnt_id:\t27\nino:\t2162858\n"
EVENTFD = (b"pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t18\neventfd-count:                5\n"
           b"eventfd-id: 1\neventfd-semaphore: 1\n")
EPOLL = (b"pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t18\n"
         b"tfd:        6 events:       19 data:                6  pos:0 ino:1be9 sdev:f\n"
         b"tfd:       12 events: 80000004 data: 1122334455667788  pos:7 ino:2a sdev:fe00000\n")
INOTIFY = (b"pos:\t0\nflags:\t00\nmnt_id:\t17\nino:\t18\n"
           b"inotify wd:1 ino:3f7e8 sdev:fe00000 mask:100 ignored_mask:0 fhandle-bytes:8 "
           b"fhandle-type:1 f_handle:e8f7030000000000\n"
           b"inotify wd:1a ino:10 sdev:fe00001 mask:202 ignored_mask:0 fhandle-bytes:8 "
           b"fhandle-type:ffffffff f_handle:0100000000000000\n")
FANOTIFY = (b"pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t18\n"
            b"fanotify flags:10 event-flags:8000\n"
            b"fanotify ino:3f7e8 sdev:fe00000 mflags:0 mask:20 ignored_mask:0 fhandle-bytes:8 "
            b"fhandle-type:1 f_handle:e8f7030000000000\n"
            b"fanotify mnt_id:1b mflags:0 mask:20 ignored_mask:0\n"
            b"fanotify sdev:800001 mflags:1 mask:8 ignored_mask:0\n"
            b"fanotify mnt_ns:4026531841 mflags:0 mask:1000000 ignored_mask:0\n")
SIGNALFD = b"pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t18\nsigmask:\t0000000000004200\n"
TIMERFD = (b"pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t18\nclockid: 1\nticks: 3\n"
           b"settime flags: 01\nit_value: (99, 997223906)\nit_interval: (2, 500)\n")
PIDFD = b"pos:\t0\nflags:\t02000002\nmnt_id:\t4\nino:\t5312\nPid:\t5311\nNSpid:\t5311\t1\n"
PTMX = b"pos:\t0\nflags:\t02100002\nmnt_id:\t24\nino:\t91\ntty-index:\t7\n"
LOCKED = (b"pos:\t0\nflags:\t02100002\nmnt_id:\t27\nino:\t2162860\n"
          b"lock:\t1: POSIX  ADVISORY  WRITE 5311 fe:00:2162860 5 14\n"
          b"lock:\t2: FLOCK  ADVISORY  WRITE 5311 fe:00:2162860 0 EOF\n")


def test_header_regular() -> None:
    info = fdinfo.split_fdinfo(REGULAR)
    assert (info.pos, info.flags, info.mnt_id, info.ino) == (10, 0o2102002, 27, 2162858)
    assert info.flags & os.O_APPEND and info.flags & os.O_CLOEXEC
    assert info.body == [] and info.locks == []


def test_header_without_ino_on_old_kernels() -> None:
    info = fdinfo.split_fdinfo(b"pos:\t0\nflags:\t0100000\nmnt_id:\t3\n")
    assert info.ino is None and info.flags == 0o100000  # O_LARGEFILE (0 in Python's os)


def test_header_malformed_raises_value_error() -> None:
    with pytest.raises(ValueError):
        fdinfo.split_fdinfo(b"pos:\tnot-a-number\n")


def test_eventfd_count_is_hex() -> None:
    extra: dict[str, str] = {}
    body = fdinfo.split_fdinfo(EVENTFD.replace(b"               5", b"              1f")).body
    msg = fdinfo.parse_eventfd(body, extra)
    assert (msg.count, msg.id, msg.semaphore) == (31, 1, True) and extra == {}


def test_eventfd_without_semaphore_key_leaves_it_absent() -> None:
    body = [b"eventfd-count:                0"]
    msg = fdinfo.parse_eventfd(body, {})
    assert not msg.HasField("semaphore") and not msg.HasField("id")


def test_epoll_targets_hex_fields_and_sdev_conversion() -> None:
    extra: dict[str, str] = {}
    msg = fdinfo.parse_epoll(fdinfo.split_fdinfo(EPOLL).body, extra)
    first, second = msg.targets
    assert (first.tfd, first.events, first.data, first.pos, first.ino) == (6, 0x19, 6, 0, 0x1BE9)
    assert first.sdev == os.makedev(0, 15)
    assert (second.tfd, second.events, second.data) == (12, 0x80000004, 0x1122334455667788)
    assert second.pos == 7 and second.sdev == os.makedev(0xFE, 0)


def test_epoll_unknown_token_kept_raw() -> None:
    extra: dict[str, str] = {}
    msg = fdinfo.parse_epoll([b"tfd: 3 events: 1 data: 0 pos:0 ino:1 sdev:2 busy:yes",
                              b"future-key: 42"], extra)
    assert dict(msg.targets[0].extra) == {"busy": "yes"}
    assert extra == {"future-key": "42"}


def test_inotify_watches_all_hex_and_signed_handle_type() -> None:
    msg = fdinfo.parse_inotify(fdinfo.split_fdinfo(INOTIFY).body, {})
    first, second = msg.watches
    assert (first.wd, first.ino, first.mask, first.sdev) == (1, 0x3F7E8, 0x100, os.makedev(0xFE, 0))
    assert first.f_handle == bytes.fromhex("e8f7030000000000") and first.fhandle_bytes == 8
    assert (second.wd, second.mask, second.fhandle_type) == (26, 0x202, -1)
    assert second.sdev == os.makedev(0xFE, 1)


def test_fanotify_header_and_every_mark_type() -> None:
    extra: dict[str, str] = {}
    msg = fdinfo.parse_fanotify(fdinfo.split_fdinfo(FANOTIFY).body, extra)
    assert (msg.flags, msg.event_flags) == (0x10, 0x8000)
    inode, mount, sb, other = msg.marks
    assert inode.type == files_pb2.FANOTIFY_MARK_INODE and inode.ino == 0x3F7E8
    assert inode.mask == 0x20 and inode.f_handle == bytes.fromhex("e8f7030000000000")
    assert mount.type == files_pb2.FANOTIFY_MARK_MOUNT and mount.mnt_id == 0x1B
    assert sb.type == files_pb2.FANOTIFY_MARK_FILESYSTEM and sb.sdev == os.makedev(8, 1)
    assert sb.mflags == 1 and sb.mask == 8
    assert other.type == files_pb2.FANOTIFY_MARK_OTHER
    assert dict(other.extra) == {"mnt_ns": "4026531841"} and other.mask == 0x1000000


def test_signalfd_mask() -> None:
    msg = fdinfo.parse_signalfd(fdinfo.split_fdinfo(SIGNALFD).body, {})
    assert msg.sigmask == (1 << 9) | (1 << 14)  # SIGUSR1 (10), SIGTERM (15)


def test_timerfd_pairs_and_octal_flags() -> None:
    msg = fdinfo.parse_timerfd(fdinfo.split_fdinfo(TIMERFD).body, {})
    assert (msg.clockid, msg.ticks, msg.settime_flags) == (1, 3, 1)
    assert msg.it_value_ns == 99_997_223_906 and msg.it_interval_ns == 2_000_000_500


def test_timerfd_malformed_pair_raises() -> None:
    with pytest.raises(ValueError):
        fdinfo.parse_timerfd([b"it_value: 99"], {})


def test_pidfd_and_exited_pidfd() -> None:
    msg = fdinfo.parse_pidfd(fdinfo.split_fdinfo(PIDFD).body, {})
    assert msg.pid == 5311 and list(msg.ns_pids) == [5311, 1]
    gone = fdinfo.parse_pidfd([b"Pid:\t-1"], {})
    assert gone.pid == -1 and not gone.ns_pids


def test_tty_index() -> None:
    assert fdinfo.parse_tty_index(fdinfo.split_fdinfo(PTMX).body, {}) == 7
    assert fdinfo.parse_tty_index([], {}) is None


def test_generic_body_kept_raw_with_repeated_keys_joined() -> None:
    extra: dict[str, str] = {}
    fdinfo.parse_generic([b"sk_foo:\t1", b"sk_foo:\t2", b"odd line without colon"], extra)
    assert extra == {"sk_foo": "1\n2", "odd line without colon": ""}


def test_fdinfo_lock_lines() -> None:
    info = fdinfo.split_fdinfo(LOCKED)
    posix, flock = info.locks
    assert posix.type == files_pb2.LOCK_POSIX and posix.mode == files_pb2.LOCK_WRITE
    assert (posix.start, posix.end, posix.to_eof, posix.pid) == (5, 14, False, 5311)
    assert (posix.dev, posix.ino) == (os.makedev(0xFE, 0), 2162860)
    assert flock.type == files_pb2.LOCK_FLOCK and flock.to_eof and flock.start == 0


@pytest.mark.parametrize(("line", "kind", "mode", "pid", "blocked", "mandatory"), [
    (b"3: OFDLCK ADVISORY  READ -1 fe:00:2162861 0 19", files_pb2.LOCK_OFD, files_pb2.LOCK_READ,
     -1, False, False),
    (b"3: -> POSIX  ADVISORY  WRITE 812 08:01:77 0 EOF", files_pb2.LOCK_POSIX,
     files_pb2.LOCK_WRITE, 812, True, False),
    (b"4: POSIX  MANDATORY WRITE 9 08:01:77 0 EOF", files_pb2.LOCK_POSIX, files_pb2.LOCK_WRITE,
     9, False, True),
    (b"5: LEASE  ACTIVE    READ 10 00:2a:5 0 EOF", files_pb2.LOCK_LEASE, files_pb2.LOCK_READ,
     10, False, False),
    (b"6: DELEG  BREAKING  UNLCK 11 00:2a:5 0 EOF", files_pb2.LOCK_DELEG, files_pb2.LOCK_UNLCK,
     11, False, False),
    (b"7: WEIRD  ADVISORY  WRITE 12 <none>:0 0 EOF", files_pb2.LOCK_OTHER, files_pb2.LOCK_WRITE,
     12, False, False),
])
def test_lock_line_variants(line: bytes, kind: int, mode: int, pid: int, blocked: bool,
                            mandatory: bool) -> None:
    lock = parse_lock_line(line)
    assert (lock.type, lock.mode, lock.pid, lock.blocked, lock.mandatory) == (
        kind, mode, pid, blocked, mandatory)
    assert lock.raw and not lock.raw[0].isdigit()


def test_lock_line_too_short() -> None:
    with pytest.raises(ValueError):
        parse_lock_line(b"1: POSIX ADVISORY")


def test_proc_locks_and_waiters() -> None:
    text = (b"1: POSIX  ADVISORY  WRITE 100 fe:00:42 0 EOF\n"
            b"1: -> POSIX  ADVISORY  WRITE 200 fe:00:42 0 EOF\n"
            b"2: FLOCK  ADVISORY  READ 300 fe:00:43 0 EOF\n")
    locks = parse_proc_locks(text)
    assert [lock.pid for lock in locks] == [100, 200, 300]
    waiting = waiting_locks(locks, 200)
    assert len(waiting) == 1 and waiting[0].blocked and waiting[0].ino == 42
    assert waiting_locks(locks, 100) == []


def test_kdev_to_dev() -> None:
    assert fdinfo.kdev_to_dev(0xFE00000) == os.makedev(254, 0)
    assert fdinfo.kdev_to_dev((259 << 20) | 70000) == os.makedev(259, 70000)


def test_share_key_masks_cloexec() -> None:
    a = files_pb2.Fd(dev=1, ino=2, pos=3, flags=0o2 | os.O_CLOEXEC)
    b = files_pb2.Fd(dev=1, ino=2, pos=3, flags=0o2)
    assert share_key(a) == share_key(b) == (1, 2, 3, 0o2)


# ---------------------------------------------------------------- fake /proc trees

def _fake_proc(tmp: Path, pid: int, state: str = "S") -> Path:
    proc = tmp / "proc"
    base = proc / str(pid)
    (base / "fd").mkdir(parents=True)
    (base / "fdinfo").mkdir()
    (base / "root").symlink_to("/")
    (base / "stat").write_text(f"{pid} (odd) name) {state} 1 1 1 0 -1\n")
    (base / "mountinfo").write_text("27 1 254:0 / / rw - ext4 /dev/vda rw\n")
    return proc


def _add_fd(proc: Path, pid: int, n: int, target: Path, info: bytes | None) -> None:
    (proc / str(pid) / "fd" / str(n)).symlink_to(target)
    if info is not None:
        (proc / str(pid) / "fdinfo" / str(n)).write_bytes(info)


def test_fake_tree_fd_vanished_between_listing_and_fdinfo(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_bytes(b"12345")
    proc = _fake_proc(tmp_path, 4242)
    _add_fd(proc, 4242, 3, data, b"pos:\t2\nflags:\t0100002\nmnt_id:\t27\nino:\t77\n")
    _add_fd(proc, 4242, 4, data, None)                       # fdinfo gone: closed meanwhile
    _add_fd(proc, 4242, 5, tmp_path / "nowhere", b"pos:\t0\nflags:\t0\nmnt_id:\t27\n")
    table = collect_fds(4242, str(proc), ghosts=GhostStore())
    assert [fd.fd for fd in table.fds] == [3]
    assert table.vanished == 2
    fd = table.fds[0]
    assert (fd.kind, fd.pos, fd.ino, fd.path) == (files_pb2.FD_REGULAR, 2, 77, str(data).encode())
    assert fd.file.size == 5 and fd.dev == data.stat().st_dev
    # no live probing on a fake tree, and that is said once per table
    assert [u.field for u in table.unreadable] == ["fds.owner"]


def test_fake_tree_process_gone_mid_read(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path, 4243, state="Z")
    _add_fd(proc, 4243, 3, tmp_path / "nowhere", None)
    with pytest.raises(ProcessGone):
        collect_fds(4243, str(proc), ghosts=GhostStore())


def test_fake_tree_unparsable_fdinfo_kept_raw(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_bytes(b"")
    proc = _fake_proc(tmp_path, 4244)
    garbage = b"pos:\tX\nflags:\t0\n"
    _add_fd(proc, 4244, 3, data, garbage)
    table = collect_fds(4244, str(proc), ghosts=GhostStore())
    (fd,) = table.fds
    assert fd.kind == files_pb2.FD_UNKNOWN and fd.unknown.raw == garbage
    assert "not understood" in fd.unknown.reason


def test_fake_tree_huge_fd_numbers_sorted_numerically(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_bytes(b"")
    proc = _fake_proc(tmp_path, 4245)
    for n in (1_000_000, 9, 10):
        _add_fd(proc, 4245, n, data, b"pos:\t0\nflags:\t0\nmnt_id:\t27\nino:\t1\n")
    table = collect_fds(4245, str(proc), ghosts=GhostStore())
    assert [fd.fd for fd in table.fds] == [9, 10, 1_000_000]


def test_fake_tree_file_named_deleted_is_not_deleted(tmp_path: Path) -> None:
    odd = tmp_path / "odd (deleted)"
    odd.write_bytes(b"still here")
    proc = _fake_proc(tmp_path, 4246)
    _add_fd(proc, 4246, 3, odd, b"pos:\t0\nflags:\t0\nmnt_id:\t27\nino:\t1\n")
    table = collect_fds(4246, str(proc), ghosts=GhostStore())
    (fd,) = table.fds
    assert fd.path == str(odd).encode() and not fd.deleted
    assert not fd.file.HasField("ghost")
