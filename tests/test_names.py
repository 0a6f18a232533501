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


def test_json_bytes_rule_is_the_same_in_the_snapshot_and_every_view() -> None:
    r"""Bytes in JSON: UTF-8 text as itself; a control character as the encoder's \u00NN
    (it decodes back to the character); a byte that is not UTF-8 as the four characters
    \xNN. The whole snapshot and a view's JSON say the same bytes the same way."""
    import json

    from criu_model.images.framing import FORMAT_MAJOR, FORMAT_MINOR
    from criu_model.images.pb import files_pb2, inventory_pb2, process_pb2
    from criu_model.render.json import snapshot_to_json, view_to_json
    from criu_model.render.views import Selection
    from criu_model.snapshot import Snapshot

    name = b"caf\xc3\xa9\x1b[2J\xff\x00"
    proc = process_pb2.Process(pid=7, ppid=1, pgid=7, sid=7, comm=name, state="S")
    proc.cmdline.append(name)
    table = files_pb2.FdTable(pid=7, fds=[files_pb2.Fd(fd=3, kind=files_pb2.FD_REGULAR,
                                                       path=b"/tmp/" + name, file_id=1)])
    snap = Snapshot(inventory=inventory_pb2.Inventory(format_major=FORMAT_MAJOR,
                                                      format_minor=FORMAT_MINOR,
                                                      root_pids=[7]),
                    processes=[proc], fds=[table])
    spelled = json.dumps("café\x1b[2J\\xff\x00")   # "caf\u00e9\u001b[2J\\xff\u0000"
    assert spelled == '"caf\\u00e9\\u001b[2J\\\\xff\\u0000"'
    whole = json.dumps(snapshot_to_json(snap))
    procs = json.dumps(view_to_json(snap, Selection("procs")))
    fds = json.dumps(view_to_json(snap, Selection("fds")))
    for out in (whole, procs):
        assert f'"comm": {spelled}' in out and f'"cmdline": [{spelled}]' in out
    for out in (whole, fds):
        assert f'"path": "/tmp/{spelled[1:]}' in out
    assert json.loads(fds)["fds"][0]["path"] == "/tmp/café\x1b[2J\\xff\x00"
