"""parse_timers on a captured /proc/PID/timers listing."""

from __future__ import annotations

import pytest

from criu_model.collect.timers import TimerFields, TimersParseError, parse_timers

# Captured on Linux 6.18: the kernel lists the newest timer first.
TIMERS = b"""ID: 3
signal: 0/0000000000000000
notify: none/pid.6444
ClockID: 7
ID: 2
signal: 14/0000000000000000
notify: signal/pid.6444
ClockID: 0
ID: 1
signal: 12/0000000000000055
notify: signal/tid.6450
ClockID: 0
ID: 0
signal: 10/000000001234abcd
notify: signal/pid.6444
ClockID: 1
"""


def test_sorted_by_id_with_every_field() -> None:
    assert parse_timers(TIMERS) == [
        TimerFields(0, 10, 0x1234ABCD, "signal", False, 6444, 1),
        TimerFields(1, 12, 0x55, "signal", True, 6450, 0),
        TimerFields(2, 14, 0, "signal", False, 6444, 0),
        TimerFields(3, 0, 0, "none", False, 6444, 7),
    ]


def test_empty() -> None:
    assert parse_timers(b"") == []


def test_hashed_pointer_is_unknown() -> None:
    text = b"ID: 0\nsignal: 10/(____ptrval____)\nnotify: signal/pid.1\nClockID: 1\n"
    assert parse_timers(text)[0].sigval is None


@pytest.mark.parametrize("bad", [
    b"signal: 10/0\nID: 0\n",
    b"ID: 0\nsignal: 10/0\n",
    b"ID: x\nsignal: 10/0\nnotify: signal/pid.1\nClockID: 1\n",
])
def test_malformed(bad: bytes) -> None:
    with pytest.raises(TimersParseError):
        parse_timers(bad)
