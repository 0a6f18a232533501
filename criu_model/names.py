"""The shared vocabulary: names of enum values, prot text, byte decoding and escaping.

Below differ/, planner/ and render/, imported by all of them, so that a
diff, a plan and a view call a thing by the same name, and so that two rules
live in one place each:

- an enum value this version does not know (a newer writer) is named
  ``unknown(N)``, never a crash (:func:`enum_name`);
- text output escapes every control character of data it prints
  (:func:`printable`); JSON escapes through its encoder and uses :func:`text`.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from criu_model.images.pb import files_pb2, mm_pb2, sockets_pb2

_PROT_BITS = ((1, "r"), (2, "w"), (4, "x"))

SOCKET_TYPES = {1: "stream", 2: "dgram", 3: "raw", 4: "rdm", 5: "seqpacket", 10: "packet"}
# include/net/tcp_states.h: sock_diag reports every family's state in these terms.
SOCKET_STATES = {1: "ESTABLISHED", 2: "SYN-SENT", 3: "SYN-RECV", 4: "FIN-WAIT-1",
                 5: "FIN-WAIT-2", 6: "TIME-WAIT", 7: "UNCONN", 8: "CLOSE-WAIT", 9: "LAST-ACK",
                 10: "LISTEN", 11: "CLOSING", 12: "NEW-SYN-RECV"}
# ss(8)'s Netid column: (family, type) -> short name.
SOCKET_NETIDS = {("unix", "stream"): "u_str", ("unix", "dgram"): "u_dgr",
                 ("unix", "seqpacket"): "u_seq", ("inet", "stream"): "tcp",
                 ("inet6", "stream"): "tcp", ("inet", "dgram"): "udp", ("inet6", "dgram"): "udp",
                 ("inet", "raw"): "raw", ("inet6", "raw"): "raw", ("netlink", "raw"): "nl",
                 ("netlink", "dgram"): "nl", ("packet", "raw"): "p_raw",
                 ("packet", "dgram"): "p_dgr"}
# The state letters of /proc/PID/stat (fs/proc/array.c, task_state_array).
PROCESS_STATES = {"R": "running", "S": "sleeping", "D": "disk sleep", "T": "stopped",
                  "t": "tracing stop", "X": "dead", "Z": "zombie", "P": "parked", "I": "idle"}


def unknown(value: int) -> str:
    """The one spelling of a value we have no name for."""
    return f"unknown({value})"


def text(data: bytes) -> str:
    """Bytes from the kernel as text that round-trips every odd byte visibly (JSON, diff)."""
    return data.decode("utf-8", "backslashreplace")


# C-style short forms where they are familiar; everything else is \xNN or \uNNNN.
_SHORT = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape_char(ch: str) -> str:
    short = _SHORT.get(ch)
    if short is not None:
        return short
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:   # a byte os.fsdecode kept as a lone surrogate
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: str | bytes) -> str:
    """`value` for a terminal: every control or invisible character escaped.

    C0 (ESC, BEL, newline...), DEL, C1 (U+0080-U+009F, e.g. CSI U+009B), and
    the format/separator characters (bidi overrides, U+2028) become ``\\x1b``,
    ``\\n``, ``\\u202e``; bytes that are not UTF-8 become ``\\xNN`` as in
    :func:`text`. Data never moves the cursor, sets a title or splits a row.
    Backslashes are kept as they are (as in the JSON), so this is idempotent.
    """
    s = text(value) if isinstance(value, bytes) else value
    if s.isprintable():
        return s
    return "".join(ch if ch.isprintable() else _escape_char(ch) for ch in s)


def enum_name(enum: EnumDescriptor, value: int, prefix: str = "") -> str:
    """The value's name without `prefix`, lower case; ``unknown(N)`` when we have none."""
    named = enum.values_by_number.get(value)
    if named is None:
        return unknown(value)
    return named.name.removeprefix(prefix).lower()


def is_known(enum: EnumDescriptor, value: int) -> bool:
    """Whether this version has a name for `value` (a newer writer may use others)."""
    return value in enum.values_by_number


def fd_kind_name(kind: int) -> str:
    """'regular', 'pipe', ... as in the JSON contract."""
    return enum_name(files_pb2.FdKind.DESCRIPTOR, kind, "FD_")


def vma_kind_name(kind: int) -> str:
    """'file', 'anon', 'heap', ... (the VmaKind name without its prefix)."""
    return enum_name(mm_pb2.VmaKind.DESCRIPTOR, kind, "VMA_")


def socket_family_name(family: int) -> str:
    """'unix', 'inet', 'inet6', 'netlink', 'packet'."""
    return enum_name(sockets_pb2.SocketFamily.DESCRIPTOR, family, "FAMILY_")


def socket_type_name(sock_type: int) -> str:
    """'stream', 'dgram', ... (SOCK_* numbers of the kernel)."""
    return SOCKET_TYPES.get(sock_type) or unknown(sock_type)


def socket_netid(sock: sockets_pb2.Socket) -> str:
    """ss's Netid: 'tcp', 'udp', 'u_str'...; the family name when ss has no short one."""
    family = socket_family_name(sock.family)
    return SOCKET_NETIDS.get((family, socket_type_name(sock.type)), family)


def socket_state_name(state: int) -> str | None:
    """'LISTEN', 'ESTABLISHED', ...; None when the socket has no state (0)."""
    if not state:
        return None
    return SOCKET_STATES.get(state) or unknown(state)


def prot_text(vma: mm_pb2.Vma) -> str:
    """'rwxp'-style protection, as in /proc/PID/maps."""
    flags = "".join(ch if vma.prot & bit else "-" for bit, ch in _PROT_BITS)
    return flags + ("s" if vma.shared else "p")


def unix_name(sock: sockets_pb2.Socket) -> str | None:
    """A bound path, '@name' for an abstract name (as ss prints it), None if unbound."""
    name = sock.unix.name
    if not name:
        return None
    return "@" + text(name[1:]) if sock.unix.abstract else text(name)


def pty_index_text(fd: files_pb2.Fd) -> str | None:
    """'pts/3' for a pty master whose index the dump read (fdinfo tty-index), else None.

    The master's path is always /dev/ptmx (or /dev/pts/ptmx): the index is what says
    which pty it drives, in `show fds` and in `diff` alike."""
    if fd.WhichOneof("state") != "tty" or not fd.tty.is_master or not fd.tty.HasField("index"):
        return None
    return f"pts/{fd.tty.index}" if fd.tty.driver == "ptmx" else f"legacy pty {fd.tty.index}"


def enum_value(field: FieldDescriptor, value: int) -> str:
    """An enum field's value by its full proto name, ``unknown(N)`` if we have none."""
    named = field.enum_type.values_by_number.get(value)
    return named.name if named is not None else unknown(value)


def _value(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return message_to_json(value)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return text(value)
    if field.type == FieldDescriptor.TYPE_ENUM:
        return enum_value(field, value)
    return value


# How each field of a message type is converted, decided once per type: looking the
# descriptors up again for every message was most of `show --json`'s time.
_SCALAR, _PRESENCE, _REPEATED, _MAP = 0, 1, 2, 3
_PLANS: dict[str, tuple[tuple[str, int, FieldDescriptor, bool], ...]] = {}


def _plan(descriptor: Any) -> tuple[tuple[str, int, FieldDescriptor, bool], ...]:
    plan = _PLANS.get(descriptor.full_name)
    if plan is None:
        rows = []
        for field in descriptor.fields:
            entry = field.message_type
            if entry is not None and entry.GetOptions().map_entry:
                rows.append((field.name, _MAP, entry.fields_by_name["value"], False))
                continue
            plain = field.type not in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_BYTES,
                                       FieldDescriptor.TYPE_ENUM)
            kind = _REPEATED if field.is_repeated else \
                _PRESENCE if field.has_presence else _SCALAR
            rows.append((field.name, kind, field, plain))
        plan = _PLANS[descriptor.full_name] = tuple(rows)
    return plan


def message_to_json(msg: Message, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Every field of a message, by its proto name, defaults included (but ``skip``).

    Fields with explicit presence (`optional`, sub-messages) that are unset
    become null, so "unknown" is never confused with zero.
    """
    out: dict[str, Any] = {}
    for name, kind, field, plain in _plan(msg.DESCRIPTOR):
        if name in skip:
            continue
        value = getattr(msg, name)
        if kind == _REPEATED:
            out[name] = list(value) if plain else [_value(field, v) for v in value]
        elif kind == _SCALAR:
            out[name] = value if plain else _value(field, value)
        elif kind == _PRESENCE:
            out[name] = (value if plain else _value(field, value)) \
                if msg.HasField(name) else None
        else:
            out[name] = {str(k): _value(field, v) for k, v in value.items()}
    return out
