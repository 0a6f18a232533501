"""Parse /proc/PID/timers: the POSIX timers of a process (timer_create(2)).

Four lines per timer (fs/proc/base.c, show_timer)::

    ID: 0
    signal: 10/000000001234abcd      signo / sigev_value (pointer, hex)
    notify: signal/pid.6444           how / (pid|tid).target
    ClockID: 1

``how`` is "signal", "thread" or "none"; a target of ``tid.N`` means
SIGEV_THREAD_ID (glibc implements SIGEV_THREAD this way). Before Linux 4.15
hashed ``%p`` could print a non-hex sigval: we report it as unknown (None).
The kernel lists timers newest first; we sort them by id.
"""

from __future__ import annotations

from typing import NamedTuple


class TimerFields(NamedTuple):
    id: int
    signal: int
    sigval: int | None  # None when the kernel printed a hashed/unknown pointer
    notify: str
    target_is_tid: bool
    target: int
    clock_id: int


class TimersParseError(ValueError):
    """The text is not a /proc/PID/timers listing."""


def _timer(record: dict[bytes, bytes]) -> TimerFields:
    signo, _, sigval_text = record[b"signal"].partition(b"/")
    how, _, target = record[b"notify"].partition(b"/")
    target_kind, _, target_nr = target.partition(b".")
    try:
        sigval: int | None = int(sigval_text, 16)
    except ValueError:
        sigval = None
    return TimerFields(
        id=int(record[b"ID"]),
        signal=int(signo),
        sigval=sigval,
        notify=how.decode("ascii"),
        target_is_tid=target_kind == b"tid",
        target=int(target_nr),
        clock_id=int(record[b"ClockID"]),
    )


def parse_timers(data: bytes) -> list[TimerFields]:
    """Every timer in the listing, sorted by id."""
    records: list[dict[bytes, bytes]] = []
    for line in data.split(b"\n"):
        key, sep, value = line.partition(b":")
        if not sep:
            continue
        if key == b"ID":
            records.append({})
        elif not records:
            raise TimersParseError(f"timers text does not start with ID: {data[:40]!r}")
        records[-1][key] = value.strip()
    try:
        timers = [_timer(r) for r in records]
    except (KeyError, ValueError, UnicodeDecodeError) as err:
        raise TimersParseError(f"malformed timers text {data[:120]!r}") from err
    timers.sort(key=lambda t: t.id)
    return timers
