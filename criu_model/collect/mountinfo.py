"""Parse /proc/PID/mountinfo into a MountNamespace message.

One line per mount (fs/proc_namespace.c, show_mountinfo)::

    36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue
    (1)(2) (3)   (4)   (5)     (6)      (7...)          (8) (9)   (10)       (11)

Fields are separated by single spaces: the kernel escapes space, tab, newline
and backslash inside root, mount point, source and fstype as octal ``\\ooo``
(mangle()/seq_escape), so ``split(b" ")`` is exact and an empty source shows as
an empty field. Root, mount point and source are decoded to raw bytes; the
option strings keep their escapes, because an escaped ``,`` (``\\054``) must
not become a separator.
"""

from __future__ import annotations

from criu_model.collect.procfs import ProcDir
from criu_model.errors import CriuModelError
from criu_model.images.pb import mount_pb2

_SEPARATOR = b"-"
_BACKSLASH = 0x5C
_FIRST_OPTIONAL = 6  # index of the first optional field (field 7)


class MountinfoParseError(ValueError):
    """The text is not a /proc/PID/mountinfo listing."""


def unescape(text: bytes) -> bytes:
    """Decode the kernel's ``\\ooo`` octal escapes; other bytes are kept as they are."""
    if b"\\" not in text:
        return text
    out = bytearray()
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        digits = text[i + 1 : i + 4]
        if c == _BACKSLASH and len(digits) == 3 and all(0x30 <= d <= 0x37 for d in digits):
            out.append(int(digits, 8) & 0xFF)
            i += 4
        else:
            out.append(c)
            i += 1
    return bytes(out)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


def parse_mount_line(line: bytes) -> mount_pb2.Mount:
    """One mountinfo line; raises MountinfoParseError on a malformed line."""
    parts = line.split(b" ")
    try:
        sep = parts.index(_SEPARATOR, _FIRST_OPTIONAL)
        major, _, minor = parts[2].partition(b":")
        return mount_pb2.Mount(
            mount_id=int(parts[0]),
            parent_id=int(parts[1]),
            dev_major=int(major),
            dev_minor=int(minor),
            root=unescape(parts[3]),
            mount_point=unescape(parts[4]),
            options=_text(parts[5]),
            optional_fields=[_text(f) for f in parts[_FIRST_OPTIONAL:sep]],
            fstype=_text(unescape(parts[sep + 1])),
            source=unescape(parts[sep + 2]),
            super_options=_text(parts[sep + 3]),
        )
    except (IndexError, ValueError) as err:
        raise MountinfoParseError(f"malformed mountinfo line {line!r}") from err


def parse_mountinfo(data: bytes) -> list[mount_pb2.Mount]:
    """Every mount, in the kernel's order (parents before children)."""
    return [parse_mount_line(line) for line in data.split(b"\n") if line]


def collect_mountinfo(pid: int, proc_root: str = "/proc") -> mount_pb2.MountNamespace:
    """The mount table of the mount namespace `pid` lives in, as `pid` sees it.

    The namespace inode is read before the table: the caller can compare it
    with the process's recorded mnt namespace to detect a setns() in between.
    """
    pdir = ProcDir(pid, proc_root)
    ns_inode = pdir.stat("ns/mnt").st_ino
    data = pdir.read("mountinfo")
    try:
        mounts = parse_mountinfo(data)
    except MountinfoParseError as err:
        raise CriuModelError(f"process {pid}: unexpected mountinfo format: {err}") from err
    return mount_pb2.MountNamespace(ns_inode=ns_inode, read_from_pid=pid, mounts=mounts)
