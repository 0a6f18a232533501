"""The shared vocabulary: the one escaper of text output and unknown(N) enum names."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from criu_model.images.pb import files_pb2
from criu_model.names import (
    enum_name,
    fd_kind_name,
    printable,
    socket_family_name,
    socket_state_name,
    socket_type_name,
    vma_kind_name,
)


def test_printable_escapes_c0_del_c1_and_invalid_utf8() -> None:
    assert printable(b"\x1b]0;title\x07") == "\\x1b]0;title\\x07"
    assert printable(b"a\nb\tc\rd") == "a\\nb\\tc\\rd"
    assert printable(b"\x7f") == "\\x7f"
    assert printable("\x9b2J") == "\\x9b2J"            # C1 CSI as a character
    assert printable(b"\xc2\x9b") == "\\x9b"           # ... and as its UTF-8 bytes
    assert printable(b"\xff\xfe") == "\\xff\\xfe"      # not UTF-8
    assert printable("\u202eevil") == "\\u202eevil"   # a bidi override
    assert printable("caf\u00e9 \u4e2d") == "caf\u00e9 \u4e2d"   # printable text stays


@given(st.binary() | st.text())
def test_printable_output_has_no_control_and_is_idempotent(value: bytes | str) -> None:
    out = printable(value)
    assert out.isprintable()
    assert printable(out) == out


def test_unknown_enum_values_are_named_not_raised() -> None:
    assert fd_kind_name(files_pb2.FD_PIPE) == "pipe"
    assert fd_kind_name(99) == "unknown(99)"
    assert vma_kind_name(99) == "unknown(99)"
    assert socket_family_name(99) == "unknown(99)"
    assert socket_type_name(99) == "unknown(99)"
    assert socket_state_name(99) == "unknown(99)"
    assert socket_state_name(0) is None
    assert enum_name(files_pb2.LockType.DESCRIPTOR, 42, "LOCK_") == "unknown(42)"
