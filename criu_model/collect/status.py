"""Parse /proc/PID/status: ``Key:\\tvalue`` lines (fs/proc/array.c).

The Name: value is escaped by the kernel (a newline in comm is printed as
``\\n``), so every line really is one line; we still take comm from stat,
where it is raw. Lines appear and disappear with kernel versions and process
state (a zombie has no Umask:, CONFIG_SECCOMP adds Seccomp:), so the parser
returns a plain mapping and callers decide what a missing key means.
"""

from __future__ import annotations


def parse_status(data: bytes) -> dict[bytes, bytes]:
    """Map each key (without the colon) to its value, surrounding whitespace stripped."""
    fields: dict[bytes, bytes] = {}
    for line in data.split(b"\n"):
        key, sep, value = line.partition(b":")
        if sep:
            fields[key] = value.strip()
    return fields


def parse_ids(value: bytes) -> list[int]:
    """A whitespace-separated list of decimal ids (Uid:, Groups:, NSpid:...)."""
    return [int(v) for v in value.split()]


def parse_mask(value: bytes) -> int:
    """A hexadecimal mask (SigBlk:, CapEff:...) as an integer."""
    return int(value, 16)


def parse_octal(value: bytes) -> int:
    """An octal value (Umask:)."""
    return int(value, 8)
