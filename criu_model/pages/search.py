"""Search the dumped memory of a snapshot (``criu-model grep``).

The page data is searched in large contiguous pieces (up to 8 MiB, each page
checked against its hash as it is read) with ``bytes.find`` or a compiled
regular expression, both in C: never page by page in Python. Consecutive
pieces overlap so a match across a piece boundary is found once; for a
regular expression a match may be at most ``REGEX_SPAN`` bytes long. A shared
memory object is searched once and each hit is reported in every process
that maps that offset.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from criu_model.errors import NotCaptured, UsageError
from criu_model.images.pb import mm_pb2
from criu_model.pages.layout import OwnerKey
from criu_model.pages.memory import captured_ranges
from criu_model.progress import Report
from criu_model.snapshot import Snapshot

REGEX_SPAN = 4096  # longest regex match found across two pieces


@dataclass(frozen=True)
class Hit:
    pid: int
    addr: int
    vma: mm_pb2.Vma
    match: bytes
    before: bytes
    after: bytes


def _owner_hits(snap: Snapshot, key: OwnerKey, start: int, end: int, finder: re.Pattern[bytes],
                overlap: int, context: int, literal: bool
                ) -> Iterator[tuple[int, bytes, bytes, bytes]]:
    """(owner address, match, before, after) of every match in [start, end) of one owner.

    Matches do not overlap (as ``grep -o``). A buffer holds the current
    contiguous stretch; all but its last ``overlap`` bytes are final.
    """
    store = snap.page_store
    assert store is not None
    buf = b""
    buf_addr = start
    done = 0  # offset in buf up to which matching is finished

    def scan(final: bool) -> Iterator[tuple[int, bytes, bytes, bytes]]:
        nonlocal done
        # A literal match is complete when found; a regex match ending near the
        # end of the buffer might still grow (or start earlier) with more data.
        guard = 0 if final or literal else overlap
        stopped = len(buf)
        for m in finder.finditer(buf, done):
            if m.end() > len(buf) - guard:
                stopped = m.start()
                break
            done = m.end() if m.end() > m.start() else m.start() + 1
            yield (buf_addr + m.start(), m.group(), buf[max(0, m.start() - context):m.start()],
                   buf[m.end():m.end() + context])
        if not final:  # what a match spanning into the next piece could start at
            done = max(done, min(stopped, len(buf) - overlap + (1 if literal else 0)))

    for addr, data in store.segments(key, start, end):
        if not data:
            continue
        if buf and addr != buf_addr + len(buf):  # a gap: nothing matches across it
            yield from scan(final=True)
            buf, done = b"", 0
        if not buf:
            buf_addr = addr
        buf = buf + data if buf else data
        yield from scan(final=False)
        cut = max(0, min(done, len(buf)) - context)  # keep context bytes for later matches
        buf, buf_addr, done = buf[cut:], buf_addr + cut, done - cut
    if buf:
        yield from scan(final=True)


def _literal_hits(snap: Snapshot, key: OwnerKey, start: int, end: int, pattern: bytes,
                  context: int) -> Iterator[tuple[int, bytes, bytes, bytes]]:
    """Matches of a literal pattern: ``bytes.find`` on each piece as read (no copies),
    plus the few bytes around each boundary between two contiguous pieces."""
    store = snap.page_store
    assert store is not None
    n = len(pattern)
    prev = b""
    prev_end = -1
    for addr, data in store.segments(key, start, end):
        if not data:
            continue
        contiguous = addr == prev_end
        if contiguous and n > 1:
            # a match that starts in prev's last n-1 bytes and ends in data
            left = prev[-(n - 1 + context):]
            joint = left + data[:n - 1 + context]
            base = addr - len(left)
            i = joint.find(pattern, max(0, len(left) - (n - 1)))
            while i != -1 and i < len(left):
                yield (base + i, pattern, joint[max(0, i - context):i],
                       joint[i + n:i + n + context])
                i = joint.find(pattern, i + 1)
        i = data.find(pattern)
        while i != -1:
            before = data[max(0, i - context):i]
            if i < context and contiguous:
                before = prev[-(context - i):] + before
            yield addr + i, pattern, before, data[i + n:i + n + context]
            i = data.find(pattern, i + n)
        prev, prev_end = data, addr + len(data)


def grep(snap: Snapshot, pattern: bytes, *, regex: bool = False, pid: int | None = None,
         context: int = 16, ignore_case: bool = False,
         progress: Report | None = None) -> Iterator[Hit]:
    """Every occurrence of ``pattern`` in the captured memory, by pid then address.

    ``progress(done, total, note)`` hears, in bytes of captured address ranges,
    how far the search is (after each range: a range is searched in C).
    """
    if snap.page_store is None:
        raise NotCaptured("the snapshot holds no page contents (dumped without --pages, or read "
                          "from CRIU images without their pages-*.img)")
    if not pattern:
        raise UsageError("the pattern is empty")
    flags = re.IGNORECASE if ignore_case else 0
    try:
        finder = re.compile(pattern if regex else re.escape(pattern), flags | re.DOTALL)
    except re.error as err:
        raise UsageError(f"bad regular expression {pattern!r}: {err}") from err
    overlap = REGEX_SPAN if regex else len(pattern)
    if pid is not None and pid not in snap.by_pid:
        raise UsageError(f"pid {pid} is not in the snapshot")
    pids = [pid] if pid is not None else [p.pid for p in snap.processes]
    object_hits: dict[OwnerKey, list[tuple[int, bytes, bytes, bytes]]] = {}
    ranges = [(p, r) for p in pids for r in captured_ranges(snap, p)]
    total = sum(r[3] - r[2] for _p, r in ranges)
    done = 0
    for p, (vma, key, base, end) in ranges:
        if progress is not None:
            progress(done, total, f"pid {p}")
        done += end - base
        if key[0]:
            hits = (_owner_hits(snap, key, base, end, finder, overlap, context, False)
                    if regex or ignore_case else
                    _literal_hits(snap, key, base, end, pattern, context))
        else:
            if key not in object_hits:  # the whole object, once
                index = snap.page_store.owner(key)
                top = max(index.ends) if index is not None and index.ends else 0
                object_hits[key] = list(_owner_hits(snap, key, 0, top, finder, overlap,
                                                    context, not regex))
            hits = iter([h for h in object_hits[key] if base <= h[0] < end])
        for at, match, before, after in hits:
            yield Hit(p, vma.start + (at - base), vma, match, before, after)
