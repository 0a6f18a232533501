"""Real CRIU 4.2 dumps, loaded and held against the truth the program wrote from /proc."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import criu_model
from criu_model.errors import TruncatedImage
from criu_model.formats import detect
from criu_model.formats.criu import import_pages, load_criu, read_dir
from criu_model.formats.criu.mapping import NOT_IN_CRIU
from criu_model.formats.criu.pages import page_runs, page_size
from criu_model.images.pb import files_pb2 as cf
from criu_model.images.pb import mm_pb2
from criu_model.images.pb import sockets_pb2 as cs
from tests.formats.conftest import FIXTURES, TREES, truth

O_CLOEXEC = 0o2000000
DELETED = " (deleted)"


@pytest.fixture(scope="module")
def snaps() -> dict[str, criu_model.Snapshot]:
    return {name: load_criu(FIXTURES / name) for name in TREES}


def _why(msg, name: str) -> str | None:
    return next((u.reason for u in msg.unreadable if u.field == name), None)


@pytest.mark.parametrize("name", TREES)
def test_processes_match_truth(snaps, name: str) -> None:
    snap, want = snaps[name], truth(name)
    assert sorted(p.pid for p in snap.processes) == sorted(p["pid"] for p in want["processes"])
    assert list(snap.inventory.root_pids) == [want["root_pid"]]
    for t in want["processes"]:
        proc = snap.by_pid[t["pid"]]
        if t["pid"] == want["root_pid"]:
            # CRIU writes 0 as the root's parent: marked, not passed off as a value.
            assert proc.ppid == 0 and NOT_IN_CRIU in _why(proc, "ppid")
        else:
            assert proc.ppid == t["ppid"]
        assert (proc.pgid, proc.sid, proc.comm.decode()) == (t["pgid"], t["sid"], t["comm"])
        assert list(proc.ns_pids) == [t["pid"]]
        assert NOT_IN_CRIU in _why(proc, "start_time")
        if t["state"] == "Z":
            assert proc.state == "Z"
        else:
            # CRIU records alive/dead/stopped only: no letter invented for "alive".
            assert proc.state == "" and NOT_IN_CRIU in _why(proc, "state")
        assert [th.tid for th in proc.threads] == t["tids"]
        assert [th.comm.decode() for th in proc.threads] == t["thread_comms"]


def test_zombie_exit_code_and_garbage_thread(snaps) -> None:
    for name in ("tree-full", "tree-before", "tree-after"):
        zombie = snaps[name].by_pid[6392]
        assert zombie.state == "Z" and zombie.exit_code == 7 << 8
        # pstree.img's threads[0] of a dead task is garbage: the leader stands in.
        assert [th.tid for th in zombie.threads] == [6392]
        assert 6392 not in snaps[name].fds_by_pid
        assert 6392 not in snaps[name].memory_by_pid


ANON = {cf.FD_EVENTFD: "anon_inode:[eventfd]", cf.FD_EPOLL: "anon_inode:[eventpoll]",
        cf.FD_INOTIFY: "anon_inode:inotify", cf.FD_SIGNALFD: "anon_inode:[signalfd]",
        cf.FD_TIMERFD: "anon_inode:[timerfd]"}


def _target(fd: cf.Fd) -> str:
    """The /proc/PID/fd link text: criu-model keeps a path only for named files."""
    if fd.kind == cf.FD_PIPE:
        return f"pipe:[{fd.pipe.pipe_ino}]"
    if fd.kind == cf.FD_SOCKET:
        return f"socket:[{fd.socket.inode}]"
    if fd.kind in ANON:
        assert not fd.path
        return ANON[fd.kind]
    return fd.path.decode() + (DELETED if fd.deleted else "")


@pytest.mark.parametrize("name", TREES)
def test_every_fd_matches_truth(snaps, name: str) -> None:
    snap = snaps[name]
    for t in truth(name)["processes"]:
        if t["state"] == "Z":
            continue
        table = snap.fds_by_pid[t["pid"]]
        assert [fd.fd for fd in table.fds] == [f["fd"] for f in t["fds"]]
        for fd, f in zip(table.fds, t["fds"], strict=True):
            assert fd.flags == int(f["flags_octal"], 8), (t["pid"], fd.fd)
            assert fd.pos == f["pos"], (t["pid"], fd.fd)
            assert _target(fd) == f["target"], (t["pid"], fd.fd)


KINDS = {"eventfd": "eventfd", "epoll": "epoll", "memfd": "memfd", "deleted_file": "file",
         "deleted_file_dup": "file", "timerfd": "timerfd", "signalfd": "signalfd",
         "inotify": "inotify", "directory": "file", "unix_socketpair_a": "socket",
         "unix_socketpair_b": "socket", "unix_listen_path": "socket",
         "unix_pending_client": "socket", "unix_abstract_dgram": "socket",
         "tcp_listen": "socket", "tcp_client": "socket", "tcp_server_accepted": "socket",
         "udp6": "socket", "netlink_route": "socket"}


def test_every_kind_of_f(snaps) -> None:
    snap = snaps["tree-full"]
    f = truth("tree-full")["F"]
    fds = {fd.fd: fd for fd in snap.fds_by_pid[f["pid"]].fds}
    for role, state in KINDS.items():
        assert fds[f["fd_kinds"][role]].WhichOneof("state") == state, role
    k, d = f["fd_kinds"], f["details"]
    assert fds[k["directory"]].kind == cf.FD_DIRECTORY
    assert fds[k["eventfd"]].eventfd.count == d["eventfd_count"]
    (target,) = fds[k["epoll"]].epoll.targets
    assert target.tfd == d["epoll_watches"][0]["fd"] and target.events & 1  # EPOLLIN
    assert target.file_id == fds[k["eventfd"]].file_id
    memfd = fds[k["memfd"]]
    assert memfd.memfd.name.decode() == d["memfd"]["name"]
    assert memfd.memfd.size == d["memfd"]["size"]
    ghost = snap.ghosts_by_id[memfd.memfd.ghost.ghost_id]
    assert ghost.captured and len(ghost.data) == d["memfd"]["size"]
    assert ghost.data.startswith(b"abcdefghijklmnopqrstuvwxyz")
    # CRIU names a memfd by its own id: neither inode nor device is a fact to compare
    assert {u.field for u in ghost.unreadable} >= {"ino", "dev"}
    deleted = fds[k["deleted_file"]]
    assert deleted.deleted and deleted.file_id == fds[k["deleted_file_dup"]].file_id
    content = snap.ghosts_by_id[deleted.file.ghost.ghost_id]
    assert content.data == b"contents of the deleted file\n"
    assert len(content.data) == d["deleted_file"]["size"]
    assert content.dev == os.makedev(254, 0)
    tfd = fds[k["timerfd"]].timerfd
    assert tfd.clockid == 1 and tfd.it_interval_ns == d["timerfd"]["interval_ns"]
    assert fds[k["signalfd"]].signalfd.sigmask == 1 << (12 - 1)  # SIGUSR2
    (watch,) = fds[k["inotify"]].inotify.watches
    assert watch.wd == d["inotify"]["wd"] and watch.mask == 0x100 | 0x200  # CREATE|DELETE
    assert watch.fhandle_bytes == 8 and len(watch.f_handle) == 8

    socks = snap.sockets_by_inode

    def sock(role: str) -> cs.Socket:
        return socks[fds[k[role]].socket.inode]
    a, b = sock("unix_socketpair_a"), sock("unix_socketpair_b")
    assert a.unix.peer_inode == b.inode and b.unix.peer_inode == a.inode
    assert b.rqueue == len(d["socketpair"]["data"])
    listener = sock("unix_listen_path")
    assert listener.state == 10 and listener.unix.name.decode() == d["unix_listen"]["path"]
    assert listener.unix.backlog == d["unix_listen"]["backlog"]
    assert listener.unix.pending == [sock("unix_pending_client").inode]
    abstract = sock("unix_abstract_dgram")
    assert abstract.unix.abstract and abstract.unix.name == b"\0scn-abstract-dgram"
    tcp = d["tcp"]
    lis, cli, srv = sock("tcp_listen"), sock("tcp_client"), sock("tcp_server_accepted")
    assert (lis.state, lis.inet.src, lis.inet.sport) == (10, tcp["addr"], tcp["listen_port"])
    assert (cli.inet.sport, cli.inet.dport) == (tcp["client_port"], tcp["server_port"])
    assert cli.rqueue == len("srv2cli") and srv.rqueue == len("tcp-client-to-server")
    udp = sock("udp6")
    assert udp.family == cs.FAMILY_INET6 and udp.inet.src == d["udp6"]["addr"]
    assert udp.inet.sport == d["udp6"]["port"] and udp.inet.v6only
    nl = sock("netlink_route")
    assert nl.family == cs.FAMILY_NETLINK and nl.netlink.portid == d["netlink"]["portid"]


def test_pipe_and_shares(snaps) -> None:
    snap = snaps["tree-full"]
    pipe = truth("tree-full")["notes"]["pipe"]
    read_end = {fd.fd: fd for fd in snap.fds_by_pid[6394].fds}[pipe["read_fd_in_B"]]
    write_end = {fd.fd: fd for fd in snap.fds_by_pid[6393].fds}[pipe["write_fd_in_A"]]
    assert read_end.pipe.pipe_ino == write_end.pipe.pipe_ino
    assert read_end.pipe.read_end and not read_end.pipe.write_end
    assert read_end.pipe.queued_bytes == pipe["queued_bytes"]
    # fd 50 is one open file description inherited by every child; fd 51 is another.
    holders = {fd.file_id for t in snap.fds for fd in t.fds if fd.fd == 50}
    assert len(holders) == 1
    threads = snap.by_pid[6398]
    assert threads.shares.vm and threads.shares.files
    assert len({p.shares.vm for p in snap.processes if p.state != "Z"}) == 10


def test_memory_maps(snaps) -> None:
    snap = snaps["tree-full"]
    mm = snap.memory_by_pid[6391]
    kinds = [v.kind for v in mm.vmas]
    assert kinds.count(mm_pb2.VMA_HEAP) == 1 and kinds.count(mm_pb2.VMA_STACK) == 1
    assert mm_pb2.VMA_VDSO in kinds and mm_pb2.VMA_VSYSCALL in kinds
    exe = [v for v in mm.vmas if v.path == b"/tmp/criu-fixtures/scn"]
    assert exe and exe[0].offset == 0 and exe[0].prot == 1
    assert NOT_IN_CRIU in _why(mm, "vmas.pages")
    assert snap.by_pid[6391].exe.path == b"/tmp/criu-fixtures/scn"
    assert snap.by_pid[6391].cwd.path == b"/tmp/criu-fixtures/work"


def test_creds_rlimits_signals(snaps) -> None:
    root = snaps["tree-full"].by_pid[6391]
    assert list(root.creds.uids) == [0, 0, 0, 0]
    assert root.creds.cap_eff == 0x1FF_FEFFFFFF  # CRIU's two words of the capability set
    nofile = {r.resource: r for r in root.rlimits}["RLIMIT_NOFILE"]
    assert nofile.soft == 20000
    assert root.sig_caught & 1 << (10 - 1)  # the SIGUSR1 handler that makes the mutation


def test_inventory_says_criu(snaps) -> None:
    inv = snaps["tree-full"].inventory
    assert inv.tool_version.startswith("criu ")
    runs = {c.name: c for c in inv.collectors}
    assert "network_lock=nftables" in runs["criu.options"].reason
    assert "tcp_established" in runs["criu.options"].reason
    assert not runs["inventory.time_ns"].ran and runs["inventory.time_ns"].reason == NOT_IN_CRIU
    assert runs["criu.CORE"].ran
    assert inv.frozen_for_ns > 0
    sleep = {c.name: c for c in snaps["sleep"].inventory.collectors}
    assert "network_lock=iptables" in sleep["criu.options"].reason


def test_page_runs() -> None:
    dump = read_dir(FIXTURES / "tree-full")
    pages_id, runs = page_runs(dump, "pagemap-shmem-478.img")
    assert pages_id == 10 and [(r.vaddr, r.nr_pages, r.offset) for r in runs] == [(0, 2, 0)]
    assert page_size(dump, "pagemap-shmem-478.img") == 4096


def test_diff_before_after_is_exactly_the_mutation(snaps) -> None:
    # Memory contents are compared too (tests/formats/test_criu_pages.py): here the rest.
    result = criu_model.diff(snaps["tree-before"], snaps["tree-after"])
    got = sorted((c.op, c.what, c.pid, c.fd) for c in result.changes if c.area != "memory")
    assert got == [("added", "fd", 6391, 200), ("added", "process", 6722, None)]
    g = snaps["tree-after"].by_pid[6722]
    assert g.ppid == 6391
    fd200 = {fd.fd: fd for fd in snaps["tree-after"].fds_by_pid[6722].fds}[200]
    root200 = {fd.fd: fd for fd in snaps["tree-after"].fds_by_pid[6391].fds}[200]
    assert fd200.file_id == root200.file_id  # inherited: one open file description


def test_diff_full_vs_before_is_empty(snaps) -> None:
    """26 s apart: nothing but memory contents changed (the pages test checks those)."""
    result = criu_model.diff(snaps["tree-full"], snaps["tree-before"])
    assert not [c for c in result.changes if c.area != "memory"] and not result.missing


@pytest.mark.parametrize("name", TREES)
def test_plan_offline(snaps, name: str) -> None:
    result = criu_model.plan(snaps[name], live=False)
    assert result.processes or result.steps


def test_refused_dump_is_one_clear_line() -> None:
    path = FIXTURES / "tree-refused-partial"
    assert detect(path) == "criu-dir"
    with pytest.raises(TruncatedImage) as err:
        load_criu(path)
    msg = str(err.value)
    assert "\n" not in msg
    assert "CRIU image directory left by a refused dump" in msg
    assert "inventory.img/pstree.img" in msg


def test_detect_tells_criu_from_criu_model(tmp_path: Path, snaps) -> None:
    assert detect(FIXTURES / "sleep") == "criu-dir"
    snap = load_criu(FIXTURES / "sleep")
    import_pages(snap, tmp_path)
    ours = criu_model.write(snap, tmp_path / "snap")
    assert detect(ours) is None
    assert detect(tmp_path / "nothing") is None
    (tmp_path / "empty").mkdir()
    assert detect(tmp_path / "empty") is None
    assert detect(tmp_path / "x.tar.gz") is None  # does not exist


def test_imported_snapshot_loads_and_equals(tmp_path: Path) -> None:
    snap = load_criu(FIXTURES / "tree-full")
    import_pages(snap, tmp_path)
    path = criu_model.write(snap, tmp_path / "imported")
    again = criu_model.load(path)
    assert criu_model.diff(load_criu(FIXTURES / "tree-full"), again).identical
    assert again.inventory.tool_version.startswith("criu ")
    assert again.ghosts_by_id[1].data == b"contents of the deleted file\n"


SHARED = Path("/work/shared/fixtures/criu-4.2/tree-full")


@pytest.mark.skipif(not (SHARED / "pages-1.img").exists(),
                    reason="the full CRIU dump with its pages-*.img is not on this machine")
def test_cmdline_and_environ_from_the_dumped_pages() -> None:
    snap = load_criu(SHARED)
    for proc in snap.processes:
        if proc.state == "Z":
            assert not proc.cmdline and NOT_IN_CRIU in _why(proc, "cmdline")
            continue
        assert list(proc.cmdline) == [b"./scn", b"tree"]
        assert proc.environ and all(b"=" in e for e in proc.environ)
        assert _why(proc, "cmdline") is None and _why(proc, "environ") is None


def test_cmdline_unreadable_without_the_pages(criu_copy) -> None:
    d = criu_copy("tree-full")
    for f in d.glob("pages-*.img"):
        f.unlink()
    snap = load_criu(d)
    root = snap.by_pid[6391]
    assert not root.cmdline and "pages" in _why(root, "cmdline")
    assert snap.page_store is None
    assert "pages-1.img is missing" in _why(snap.memory_by_pid[6391], "pages_data")
    runs = {c.name: c for c in snap.inventory.collectors}
    assert "missing" in runs["criu-pages:pages-1.img"].reason


def test_cmdline_read_at_its_address(criu_copy) -> None:
    """The pages file is addressed run by run: a page written at mm_arg_start is found."""
    from criu_model.formats.criu.mapping import ProcessMemory

    d = criu_copy("sleep")
    dump = read_dir(d)
    mm = dump.entries("mm-6819.img")[0]
    pages_id, runs = page_runs(dump, "pagemap-6819.img")
    total = sum(r.nr_pages for r in runs if r.offset is not None)
    run = next(r for r in runs if r.vaddr <= mm.mm_arg_start < r.vaddr + r.nr_pages * 4096)
    pages = bytearray(total * 4096)
    at = run.offset * 4096 + mm.mm_arg_start - run.vaddr
    length = mm.mm_arg_end - mm.mm_arg_start
    args = b"A" * (length - 7) + b"\0sleep\0"
    pages[at:at + len(args)] = args
    (d / f"pages-{pages_id}.img").write_bytes(bytes(pages))
    snap = load_criu(d)
    assert list(snap.by_pid[6819].cmdline) == [b"A" * (length - 7), b"sleep"]
    memory = ProcessMemory(read_dir(d), 6819)
    assert memory.read(mm.mm_arg_start, len(args)) == args
    assert memory.read(0x1000, 16) is None  # not a dumped page: None, never zeros


def test_registers_as_ptrace_returns_them(snaps) -> None:
    """x86_64 gpregs in user_regs_struct order, fxsave area: values from crit decode."""
    import struct

    regs = snaps["tree-full"].registers_by_pid[6398]
    assert [t.tid for t in regs.threads] == [6398, 6402, 6404, 6405]
    t = next(t for t in regs.threads if t.tid == 6402)
    assert t.arch == "x86_64" and len(t.prstatus) == 27 * 8 and len(t.fpregs) == 512
    r = struct.unpack("<27Q", t.prstatus)
    assert (r[10], r[15], r[16], r[19], r[21]) == (0x22, 0x22, 0x7F70EDAAEDF0, 0x7F70ED9D6EA0,
                                                   0x7F70ED9D76C0)  # ax orig_ax ip sp fs_base
    cwd, mxcsr = struct.unpack_from("<H", t.fpregs, 0)[0], struct.unpack_from("<I", t.fpregs, 24)[0]
    assert (cwd, mxcsr) == (895, 8064)
    assert t.rseq.signature == 0x53053053
    assert NOT_IN_CRIU in _why(t, "xstate")
    assert 6392 not in snaps["tree-full"].registers_by_pid  # the zombie has none


def test_what_a_criu_model_dump_of_the_same_tree_showed(snaps) -> None:
    """Found by dumping one live tree with both CRIU and criu-model (README's table)."""
    snap = snaps["tree-full"]
    for sock in snap.sockets:
        if sock.family != cs.FAMILY_NETLINK:
            assert sock.HasField("shutdown") and sock.shutdown == 0  # CRIU omits NONE
    zombie = snap.by_pid[6392]
    assert not zombie.rlimits and NOT_IN_CRIU in _why(zombie, "rlimits")
    assert NOT_IN_CRIU in _why(zombie, "flags")
    fds = {fd.fd: fd for fd in snap.fds_by_pid[6403].fds}
    assert fds[60].HasField("owner_pid") and fds[60].owner_pid == 0  # from CRIU's fown
    assert not fds[69].path and not fds[60].path  # no invented link text
    runs = {c.name: c for c in snap.inventory.collectors}
    assert not runs["mounts"].ran and NOT_IN_CRIU in runs["mounts"].reason
