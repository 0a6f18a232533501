"""One registry from CRIU image kind (its magic) to the message and reader.

Kinds listed here are decoded; every other kind in CRIU's magic table is
named in the import's report ("read, not mapped") and never fails the load.
The file-name patterns say which kind a file must be: a core-1.img that
carries another magic is a BadMagic, not a silently skipped image.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import Message

from criu_model.formats.criu import framing
from criu_model.formats.criu.framing import CriuImage
from criu_model.formats.criu.pb import core_pb2, files_pb2, sockets_pb2

Reader = Callable[[str, str, bytes], CriuImage]


@dataclass(frozen=True)
class Handler:
    kind: str                      # CRIU magic name
    read: Reader
    # CRIU before files.img (3.x before 3.5 or so) kept one image per file kind;
    # their entries become FileEntry(type=fd_type, <field>=entry).
    fd_type: int = 0
    file_field: str = ""


def _plain(kind: str, cls: type[Message],
           extra: framing.ExtraLen | None = None) -> Reader:
    def read(path: str, name: str, data: bytes) -> CriuImage:
        return framing.read_entries(path, name, kind, data, cls, extra)
    return read


def _pagemap(path: str, name: str, data: bytes) -> CriuImage:
    return framing.read_pagemap(path, name, data, core_pb2.PagemapHead, core_pb2.PagemapEntry)


def _ghost(path: str, name: str, data: bytes) -> CriuImage:
    return framing.read_ghost(path, name, data, files_pb2.GhostFile, files_pb2.GhostChunk)


def _pipe_data(msg: Message) -> int:
    assert isinstance(msg, files_pb2.PipeData)
    return msg.bytes


def _sk_queue(msg: Message) -> int:
    assert isinstance(msg, sockets_pb2.SkPacket)
    return msg.length


def _tcp_queues(msg: Message) -> int:
    assert isinstance(msg, sockets_pb2.TcpStream)
    return msg.inq_len + msg.outq_len


T = files_pb2  # FdType values
HANDLERS: dict[str, Handler] = {h.kind: h for h in (
    Handler("INVENTORY", _plain("INVENTORY", core_pb2.Inventory)),
    Handler("PSTREE", _plain("PSTREE", core_pb2.PstreeEntry)),
    Handler("CORE", _plain("CORE", core_pb2.CoreEntry)),
    Handler("IDS", _plain("IDS", core_pb2.TaskKobjIds)),
    Handler("CREDS", _plain("CREDS", core_pb2.Creds)),
    Handler("FS", _plain("FS", core_pb2.FsEntry)),
    Handler("MM", _plain("MM", core_pb2.MmEntry)),
    Handler("PAGEMAP", _pagemap),
    Handler("STATS", _plain("STATS", core_pb2.StatsEntry)),
    Handler("SECCOMP", _plain("SECCOMP", core_pb2.SeccompEntry)),
    Handler("TIMENS", _plain("TIMENS", core_pb2.TimensEntry)),
    Handler("FILES", _plain("FILES", files_pb2.FileEntry)),
    Handler("FDINFO", _plain("FDINFO", files_pb2.FdinfoEntry)),
    Handler("REMAP_FPATH", _plain("REMAP_FPATH", files_pb2.RemapFilePath)),
    Handler("GHOST_FILE", _ghost),
    Handler("PIPES_DATA", _plain("PIPES_DATA", files_pb2.PipeData, _pipe_data)),
    Handler("FIFO_DATA", _plain("FIFO_DATA", files_pb2.PipeData, _pipe_data)),
    Handler("SK_QUEUES", _plain("SK_QUEUES", sockets_pb2.SkPacket, _sk_queue)),
    Handler("TCP_STREAM", _plain("TCP_STREAM", sockets_pb2.TcpStream, _tcp_queues)),
    Handler("MEMFD_INODE", _plain("MEMFD_INODE", files_pb2.MemfdInode)),
    Handler("TTY_INFO", _plain("TTY_INFO", files_pb2.TtyInfo)),
    Handler("TTY_DATA", _plain("TTY_DATA", files_pb2.TtyData)),
    Handler("FILE_LOCKS", _plain("FILE_LOCKS", files_pb2.FileLockEntry)),
    Handler("MNTS", _plain("MNTS", core_pb2.MntEntry)),
    Handler("CGROUP", _plain("CGROUP", core_pb2.CgroupEntry)),
    # Per-kind file images of CRIU before files.img.
    Handler("REG_FILES", _plain("REG_FILES", files_pb2.RegFile), T.REG, "reg"),
    Handler("PIPES", _plain("PIPES", files_pb2.Pipe), T.PIPE, "pipe"),
    Handler("FIFO", _plain("FIFO", files_pb2.Fifo), T.FIFO, "fifo"),
    Handler("UNIXSK", _plain("UNIXSK", sockets_pb2.UnixSk), T.UNIXSK, "usk"),
    Handler("INETSK", _plain("INETSK", sockets_pb2.InetSk), T.INETSK, "isk"),
    Handler("NETLINK_SK", _plain("NETLINK_SK", sockets_pb2.NetlinkSk), T.NETLINKSK, "nlsk"),
    Handler("PACKETSK", _plain("PACKETSK", sockets_pb2.PacketSk), T.PACKETSK, "psk"),
    Handler("EVENTFD_FILE", _plain("EVENTFD_FILE", files_pb2.Eventfd), T.EVENTFD, "efd"),
    Handler("SIGNALFD", _plain("SIGNALFD", files_pb2.Signalfd), T.SIGNALFD, "sgfd"),
    Handler("TIMERFD", _plain("TIMERFD", files_pb2.Timerfd), T.TIMERFD, "tfd"),
    Handler("TTY_FILES", _plain("TTY_FILES", files_pb2.TtyFile), T.TTY, "tty"),
)}

# File name -> the kind it must hold. `N` is a decimal id (pid, files_id...),
# `X` a hex one (CRIU names ghost files and TCP streams in hex).
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p.replace("N", r"(\d+)").replace("X", r"([0-9a-f]+)") + "$"), kind)
    for p, kind in (
        (r"inventory\.img", "INVENTORY"), (r"pstree\.img", "PSTREE"),
        (r"core-N\.img", "CORE"), (r"ids-N\.img", "IDS"), (r"creds-N\.img", "CREDS"),
        (r"fs-N\.img", "FS"), (r"mm-N\.img", "MM"), (r"pagemap-N\.img", "PAGEMAP"),
        (r"pagemap-shmem-N\.img", "PAGEMAP"), (r"stats-dump", "STATS"),
        (r"seccomp\.img", "SECCOMP"), (r"timens-N\.img", "TIMENS"),
        (r"files\.img", "FILES"), (r"fdinfo-N\.img", "FDINFO"),
        (r"remap-fpath\.img", "REMAP_FPATH"), (r"ghost-file-X\.img", "GHOST_FILE"),
        (r"pipes-data\.img", "PIPES_DATA"), (r"fifo-data\.img", "FIFO_DATA"),
        (r"sk-queues\.img", "SK_QUEUES"), (r"tcp-stream-X\.img", "TCP_STREAM"),
        (r"memfd\.img", "MEMFD_INODE"), (r"tty-info\.img", "TTY_INFO"),
        (r"tty-data\.img", "TTY_DATA"), (r"filelocks\.img", "FILE_LOCKS"),
        (r"mountpoints-N\.img", "MNTS"), (r"cgroup\.img", "CGROUP"),
        (r"reg-files\.img", "REG_FILES"), (r"pipes\.img", "PIPES"), (r"fifo\.img", "FIFO"),
        (r"unixsk\.img", "UNIXSK"), (r"inetsk\.img", "INETSK"),
        (r"netlinksk\.img", "NETLINK_SK"), (r"packetsk\.img", "PACKETSK"),
        (r"eventfd\.img", "EVENTFD_FILE"), (r"signalfd\.img", "SIGNALFD"),
        (r"timerfd\.img", "TIMERFD"), (r"tty\.img", "TTY_FILES"),
    )
]
PAGES_RE = re.compile(r"pages-(\d+)\.img$")  # raw page data: no magic, never decoded here


def kind_of_name(name: str) -> str | None:
    """The kind a CRIU file name promises, or None for a name we do not know."""
    for pattern, kind in _PATTERNS:
        if pattern.match(name):
            return kind
    return None
