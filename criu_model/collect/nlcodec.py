"""Netlink messages declared like the C headers, compiled once into a fast codec.

A declaration follows pyroute2's convention (DESIGN.md): a class with
``fields`` (name, struct format) and an ``nla_map`` (attribute name, type),
nested classes for attribute payloads. The base classes are our own, so a dump
never imports pyroute2 (its package import costs 150-300 ms, which a dump of a
tree with sockets paid while the tree was frozen); pyroute2 stays the tests'
oracle (tests/collect/test_sockets.py). :class:`Layout` compiles one
declaration into ``struct.Struct`` + ``namedtuple`` and decodes a message with
one unpack plus one walk over its attributes (a few µs; pyroute2's generic
decoder takes ~30 µs). Offsets and sizes come from the declarations, never from
callers. Attributes we do not declare, or whose type we cannot compile, are
handed over as raw bytes so newer kernels do not break collection.
"""

from __future__ import annotations

import re
import struct
from collections import namedtuple
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class nla:  # named like the C structs (and pyroute2's classes)
    """A netlink attribute payload declared as its C struct: ``fields`` in order.

    The scalar types an ``nla_map`` names are nested here, as in pyroute2.
    """

    fields: tuple[tuple[str, str], ...] = ()
    nla_map: tuple[tuple[str, str], ...] = ()

    class uint8:
        fields = (("value", "B"),)

    class uint16:
        fields = (("value", "H"),)

    class uint32:
        fields = (("value", "I"),)

    class uint64:
        fields = (("value", "Q"),)

    class int32:
        fields = (("value", "i"),)

    class be16:
        fields = (("value", ">H"),)

    class be32:
        fields = (("value", ">I"),)


class nlmsg(nla):
    """A netlink message declared as its fixed C struct (``fields``) and its attributes."""

NLMSG_HDRLEN = 16  # struct nlmsghdr
NLA_HDRLEN = 4  # struct nlattr
NLA_TYPE_MASK = ~((1 << 15) | (1 << 14)) & 0xFFFF  # strip NLA_F_NESTED, NLA_F_NET_BYTEORDER
_NLA_HDR = struct.Struct("=HH")
_FMT_RE = re.compile(r"^([@=<>!]?)(\d*)([a-zA-Z?])$")
_RAW_KINDS = frozenset({"cdata", "binary", "hex", "asciiz", "string", "nul_string", "none"})


def align4(n: int) -> int:
    """NLMSG_ALIGN / NLA_ALIGN."""
    return (n + 3) & ~3


class StructCodec:
    """One pyroute2 ``fields`` declaration compiled to struct.Struct + namedtuple.

    pyroute2 unpacks each field on its own, so the layout is packed (no C
    alignment padding between fields) and each field keeps its own byte order;
    we group consecutive fields of one byte order into one Struct.
    """

    def __init__(self, name: str, fields: tuple[tuple[str, str], ...] | list[tuple[str, str]]):
        self.names = tuple(f[0] for f in fields)
        self.tuple_type: type[Any] = namedtuple(name, self.names, rename=True)
        segments: list[tuple[str, list[tuple[str, int]]]] = []  # (order, [(code, count)])
        for fname, fmt in fields:
            m = _FMT_RE.match(fmt)
            if m is None:
                raise ValueError(f"{name}.{fname}: unsupported struct format {fmt!r}")
            order, count_text, code = m.groups()
            order = "=" if order in ("", "@", "=") else order
            if order == "=" and struct.calcsize(code) != struct.calcsize("=" + code):
                raise ValueError(f"{name}.{fname}: native-size format {fmt!r} has no fixed size")
            count = int(count_text) if count_text else 1
            if not segments or segments[-1][0] != order:
                segments.append((order, []))
            segments[-1][1].append((code, count))
        self._parts: list[tuple[struct.Struct, int, list[int]]] = []
        # what encode() puts for an absent field: b"" for s, zeros for a count
        self._zero: list[Any] = [b"" if c == "s" else (0,) * n if n > 1 else 0
                                 for _order, items in segments for c, n in items]
        offset = 0
        for order, items in segments:
            st = struct.Struct(order + "".join(f"{n if n > 1 else ''}{c}" for c, n in items))
            # how many values each field takes from the flat unpack (s counts as one)
            widths = [1 if c == "s" else n for c, n in items]
            self._parts.append((st, offset, widths))
            offset += st.size
        self.size = offset
        simple = len(self._parts) == 1 and all(w == 1 for w in self._parts[0][2])
        self._flat = self._parts[0][0].unpack_from if simple else None
        self._make = self.tuple_type._make

    def encode(self, values: Mapping[str, Any]) -> bytes:
        """The declared struct with `values` by field name (absent ones zero)."""
        out = bytearray()
        fields = iter(zip(self.names, self._zero, strict=True))
        for st, _rel, widths in self._parts:
            flat: list[Any] = []
            for w in widths:
                name, zero = next(fields)
                value = values.get(name, zero)
                flat.extend(value if w > 1 else (value,))
            out += st.pack(*flat)
        return bytes(out)

    def decode(self, buf: bytes, offset: int = 0) -> Any:
        """The declared fields at `offset`, as a namedtuple; multi-count fields as tuples."""
        if self._flat is not None:
            return self._make(self._flat(buf, offset))
        values: list[Any] = []
        for st, rel, widths in self._parts:
            flat = st.unpack_from(buf, offset + rel)
            i = 0
            for w in widths:
                values.append(flat[i] if w == 1 else flat[i : i + w])
                i += w
        return self._make(values)


def _attr_decoder(owner: type[nla], kind: str) -> Callable[[bytes], Any]:
    """A payload -> value function for one nla_map entry, from its declared class."""
    if kind in _RAW_KINDS:
        return bytes
    array_of = None
    m = re.fullmatch(r"array\((\w+)\)", kind)
    if m:
        array_of = m.group(1)
        kind = array_of
    cls = getattr(owner, kind, None)
    fields = getattr(cls, "fields", None)
    if not fields:
        return bytes  # flag / none / exotic: keep the payload
    codec = StructCodec(kind, tuple(fields))
    scalar = codec.names == ("value",)
    size = codec.size
    if array_of is not None:
        if scalar:
            elem = codec._parts[0][0].format[-1:]
            order = codec._parts[0][0].format[:1]

            def decode_array(p: bytes) -> tuple[Any, ...]:
                return struct.unpack(f"{order}{len(p) // size}{elem}", p[: len(p) - len(p) % size])

            return decode_array

        def decode_struct_array(p: bytes) -> tuple[Any, ...]:
            return tuple(codec.decode(p, off) for off in range(0, len(p) - size + 1, size))

        return decode_struct_array
    if scalar:
        unpack = codec._parts[0][0].unpack_from

        def decode_scalar(p: bytes) -> Any:
            if len(p) < size:
                raise ShortAttribute(kind, len(p), size)
            return unpack(p)[0]

        return decode_scalar

    def decode_struct(p: bytes) -> Any:
        if len(p) < size:
            raise ShortAttribute(kind, len(p), size)
        return codec.decode(p)

    return decode_struct


class ShortAttribute(ValueError):
    """An attribute payload is shorter than its declaration: recorded as unreadable."""

    def __init__(self, kind: str, got: int, need: int) -> None:
        self.kind = kind
        super().__init__(f"{kind}: {got} bytes, declaration needs {need}")


class Layout:
    """A compiled pyroute2 message class: the fixed header and its attribute map.

    ``header(buf, off)`` decodes the fixed part of the message whose nlmsghdr
    starts at `off`; ``attrs(buf, off, end)`` returns ``{type: payload bytes}``
    for every attribute; ``decode_attr(type, payload)`` applies the declared
    type (raising :class:`ShortAttribute` on a truncated payload).
    """

    def __init__(self, msg_class: type[nlmsg]) -> None:
        self.msg_class = msg_class
        self.codec = StructCodec(msg_class.__name__, tuple(msg_class.fields))
        self.attrs_offset = NLMSG_HDRLEN + align4(self.codec.size)
        self.attr_names: dict[int, str] = {}
        self.attr_decoders: dict[int, Callable[[bytes], Any]] = {}
        for number, entry in enumerate(msg_class.nla_map):
            name, kind = entry[0], entry[1]
            self.attr_names[number] = name
            self.attr_decoders[number] = _attr_decoder(msg_class, kind)
        self.known = frozenset(self.attr_decoders)

    def header(self, buf: bytes, off: int) -> Any:
        """The message's fixed fields (after the nlmsghdr) as a namedtuple."""
        return self.codec.decode(buf, off + NLMSG_HDRLEN)

    def attrs(self, buf: bytes, off: int, end: int) -> dict[int, bytes]:
        """Every attribute of the message at [off, end), by type; truncated tails are dropped."""
        out: dict[int, bytes] = {}
        pos = off + self.attrs_offset
        unpack = _NLA_HDR.unpack_from
        while pos + NLA_HDRLEN <= end:
            length, kind = unpack(buf, pos)
            if length < NLA_HDRLEN or pos + length > end:
                break
            out[kind & NLA_TYPE_MASK] = buf[pos + NLA_HDRLEN : pos + length]
            pos += (length + 3) & ~3
        return out

    def decode_attr(self, kind: int, payload: bytes) -> Any:
        """The declared value of one attribute."""
        return self.attr_decoders[kind](payload)

    def dispatch(
        self,
        buf: bytes,
        off: int,
        end: int,
        target: T,
        handlers: Mapping[int, Callable[[T, Any], None]],
        unknown: Callable[[T, int, bytes], None],
        short: Callable[[T, int, bytes, str, str], None],
    ) -> None:
        """Walk the attributes of the message at [off, end) once, decoding as declared.

        ``handlers[type](target, value)`` receives each handled attribute;
        ``unknown(target, type, payload)`` every other one (to keep it raw);
        ``short(target, type, payload, attr name, reason)`` a payload shorter
        than its declaration. One pass with no
        intermediate dict: this is the per-socket hot path.
        """
        pos = off + self.attrs_offset
        unpack = _NLA_HDR.unpack_from
        decoders = self.attr_decoders
        while pos + NLA_HDRLEN <= end:
            length, kind = unpack(buf, pos)
            if length < NLA_HDRLEN or pos + length > end:
                break
            kind &= NLA_TYPE_MASK
            payload = buf[pos + NLA_HDRLEN : pos + length]
            handler = handlers.get(kind)
            if handler is None:
                unknown(target, kind, payload)
            else:
                try:
                    value = decoders[kind](payload)
                except ShortAttribute as err:
                    short(target, kind, payload, self.attr_names[kind], str(err))
                else:
                    handler(target, value)
            pos += (length + 3) & ~3



NLMSG_HEADER = struct.Struct("=IHHII")  # struct nlmsghdr: len, type, flags, seq, pid
