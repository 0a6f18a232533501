"""/proc/PID/maps parsing on captured lines and edge cases."""

from __future__ import annotations

import pytest

from criu_model.collect.maps import (
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
    LineCache,
    parse_maps,
    parse_maps_fields,
    parse_maps_line,
    parse_vma_lines,
    vma_kind,
)
from criu_model.images.pb import mm_pb2

# Captured from /proc/PID/maps on 6.18 (x86_64), plus hand-made edge cases in
# the kernel's exact format (show_map_vma pads the name to column 74).
SAMPLE = b"".join(line + b"\n" for line in (
    b"55f0f6046000-55f0f6048000 r--p 00000000 fe:00 260131                     /usr/bin/cat",
    b"55f0f6048000-55f0f604d000 r-xp 00002000 fe:00 260131                     /usr/bin/cat",
    b"55f127f1c000-55f127f3d000 rw-p 00000000 00:00 0                          [heap]",
    b"7f97a15c5000-7f97a15e7000 rw-p 00000000 00:00 0 ",  # the kernel's trailing space
    b"7f97a182d000-7f97a1834000 r--s 00000000 fe:00 338846                     "
    b"/usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache",
    b"7f97a1837000-7f97a183b000 r--p 00000000 00:00 0                          [vvar]",
    b"7f97a183b000-7f97a183d000 r--p 00000000 00:00 0                          [vvar_vclock]",
    b"7f97a183d000-7f97a183f000 r-xp 00000000 00:00 0                          [vdso]",
    b"7ffceb779000-7ffceb79a000 rw-p 00000000 00:00 0                          [stack]",
    b"ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]",
))


def test_captured_sample() -> None:
    vmas = parse_maps(SAMPLE)
    assert len(vmas) == 10
    cat = vmas[0]
    assert (cat.start, cat.end) == (0x55F0F6046000, 0x55F0F6048000)
    assert cat.prot == PROT_READ and not cat.shared
    assert (cat.dev_major, cat.dev_minor, cat.inode) == (0xFE, 0, 260131)
    assert cat.path == b"/usr/bin/cat" and not cat.deleted
    assert cat.kind == mm_pb2.VMA_FILE
    assert vmas[1].prot == PROT_READ | PROT_EXEC and vmas[1].offset == 0x2000
    assert [v.kind for v in vmas[2:]] == [
        mm_pb2.VMA_HEAP, mm_pb2.VMA_ANON, mm_pb2.VMA_FILE, mm_pb2.VMA_VVAR, mm_pb2.VMA_VVAR,
        mm_pb2.VMA_VDSO, mm_pb2.VMA_STACK, mm_pb2.VMA_VSYSCALL,
    ]
    assert vmas[3].path == b"" and vmas[3].prot == PROT_READ | PROT_WRITE
    assert vmas[4].shared
    assert vmas[9].start == 0xFFFFFFFFFF600000 and vmas[9].prot == PROT_EXEC
    assert [v.start for v in vmas] == sorted(v.start for v in vmas)


def test_fields_and_messages_agree() -> None:
    assert [mm_pb2.Vma(**f) for f in parse_maps_fields(SAMPLE)] == parse_maps(SAMPLE)


def _one(line: bytes) -> mm_pb2.Vma:
    vma = parse_maps_line(line)
    assert parse_maps(line + b"\n") == [vma]
    return vma


@pytest.mark.parametrize(("name", "kind", "path", "deleted"), [
    (b"/tmp/a file with  spaces", mm_pb2.VMA_FILE, b"/tmp/a file with  spaces", False),
    (b"/tmp/gone (deleted)", mm_pb2.VMA_FILE, b"/tmp/gone", True),
    (b"/tmp/x (deleted) (deleted)", mm_pb2.VMA_FILE, b"/tmp/x (deleted)", True),
    (b"/tmp/trailing space ", mm_pb2.VMA_FILE, b"/tmp/trailing space ", False),
    (b"/tmp/new\\012line", mm_pb2.VMA_FILE, b"/tmp/new\nline", False),
    (b"/memfd:my buffer (deleted)", mm_pb2.VMA_MEMFD, b"/memfd:my buffer", True),
    (b"/memfd: (deleted) (deleted)", mm_pb2.VMA_MEMFD, b"/memfd: (deleted)", True),
    (b"/memfd:not-unlinked", mm_pb2.VMA_FILE, b"/memfd:not-unlinked", False),
    (b"/SYSV0000002a (deleted)", mm_pb2.VMA_SYSV_SHM, b"/SYSV0000002a", True),
    (b"[anon:my arena]", mm_pb2.VMA_ANON, b"[anon:my arena]", False),
    (b"[stack:1234]", mm_pb2.VMA_STACK, b"[stack:1234]", False),
    (b"[uprobes]", mm_pb2.VMA_OTHER, b"[uprobes]", False),
])
def test_private_names(name: bytes, kind: int, path: bytes, deleted: bool) -> None:
    vma = _one(b"7f0000000000-7f0000002000 rw-p 00001000 00:05 42" + b" " * 26 + name)
    assert (vma.kind, vma.path, vma.deleted) == (kind, path, deleted)
    assert vma.offset == 0x1000 and vma.dev_minor == 5 and vma.inode == 42


@pytest.mark.parametrize(("name", "kind"), [
    (b"/dev/zero (deleted)", mm_pb2.VMA_SHARED_ANON),
    (b"[anon_shmem:ring]", mm_pb2.VMA_SHARED_ANON),
    (b"", mm_pb2.VMA_SHARED_ANON),
    (b"/SYSV00000000 (deleted)", mm_pb2.VMA_SYSV_SHM),
    (b"/memfd:shared (deleted)", mm_pb2.VMA_MEMFD),
    (b"/dev/zero", mm_pb2.VMA_FILE),  # the device itself, still linked
])
def test_shared_names(name: bytes, kind: int) -> None:
    vma = _one(b"7f0000000000-7f0000002000 rw-s 00000000 00:01 1030" + b" " * 24 + name)
    assert vma.shared and vma.kind == kind


def test_private_dev_zero_deleted_is_a_file() -> None:
    assert vma_kind(b"/dev/zero", True, False) == mm_pb2.VMA_FILE


def test_permissions() -> None:
    base = b"1000-2000 %s 00000000 00:00 0 "
    assert _one(base % b"---p").prot == 0
    assert _one(base % b"rwxs").prot == PROT_READ | PROT_WRITE | PROT_EXEC
    assert _one(base % b"-w-p").prot == PROT_WRITE
    assert not _one(base % b"rwxp").shared


def test_big_numbers() -> None:
    vma = _one(b"7ffffffde000-7ffffffff000 rw-p ffffffffff000000 103:0f 18446744073709551615 /x")
    assert vma.end == 0x7FFFFFFFF000
    assert vma.offset == 0xFFFFFFFFFF000000
    assert (vma.dev_major, vma.dev_minor) == (0x103, 0xF)
    assert vma.inode == 2**64 - 1


def test_empty_maps_of_kernel_thread_or_zombie() -> None:
    assert parse_maps(b"") == []


def test_last_line_without_newline() -> None:
    assert len(parse_maps(SAMPLE.rstrip(b"\n"))) == 10


@pytest.mark.parametrize("bad", [
    b"garbage",
    b"1000-2000 rw-p 00000000 00:00",  # no inode
    b"1000-2000 rw 00000000 00:00 0",  # short permissions
    b"1000:2000 rw-p 00000000 00:00 0",
    b"xyz-2000 rw-p 00000000 00:00 0",
])
def test_malformed_lines_raise(bad: bytes) -> None:
    with pytest.raises(ValueError, match="malformed"):
        parse_maps_line(bad)
    with pytest.raises(ValueError, match="malformed"):
        parse_maps(SAMPLE + bad + b"\n")


def test_own_maps_parse() -> None:
    with open("/proc/self/maps", "rb") as f:
        data = f.read()
    vmas = parse_maps(data)
    assert len(vmas) == data.count(b"\n")
    kinds = {v.kind for v in vmas}
    assert {mm_pb2.VMA_HEAP, mm_pb2.VMA_STACK, mm_pb2.VMA_VDSO, mm_pb2.VMA_FILE} <= kinds


def test_vma_lines_encode_the_same_vmas() -> None:
    cache = LineCache()
    lines = parse_vma_lines(SAMPLE, cache)
    assert [mm_pb2.Vma.FromString(line.encoded) for line in lines] == parse_maps(SAMPLE)
    assert [(line.start, line.end) for line in lines] == [
        (v.start, v.end) for v in parse_maps(SAMPLE)]
    assert [line.counted for line in lines] == [True] * 9 + [False]  # not [vsyscall]
    assert lines[0].file_key == (0xFE, 0, 260131, b"/usr/bin/cat")
    assert lines[2].file_key is None  # [heap]: no inode
    again = parse_vma_lines(SAMPLE.rstrip(b"\n"), cache)  # no final newline: same lines
    assert all(a is b for a, b in zip(lines, again, strict=True))  # decoded once, shared


def test_vma_lines_strip_deleted_and_reject_bad_lines() -> None:
    line = b"7f0000000000-7f0000001000 rw-s 00000000 00:01 42    /memfd:x (deleted)"
    (entry,) = parse_vma_lines(line + b"\n", {})
    vma = mm_pb2.Vma.FromString(entry.encoded)
    assert entry.deleted and vma.deleted and vma.path == b"/memfd:x"
    assert vma.kind == mm_pb2.VMA_MEMFD
    with pytest.raises(ValueError, match="malformed"):
        parse_vma_lines(SAMPLE + b"not a maps line\n", {})
