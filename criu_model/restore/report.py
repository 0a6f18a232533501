"""The rehearsal report as text: one summary line, then every mismatch and every reason
something was not rehearsed (render/ is another room's; this moves there when it settles).

Text goes through names.printable, so data (paths, comm) never moves the terminal.
"""

from __future__ import annotations

from typing import TextIO

from criu_model.names import printable
from criu_model.restore.judge import MISMATCHED, NOT_REHEARSED, Entry, RehearsalReport

_SHOWN = 3   # ids listed for a group of objects skipped for one reason


def _value(value: object) -> str:
    return "-" if value is None else str(value)


def _line(entry: Entry) -> list[str]:
    out = []
    if entry.status == MISMATCHED:
        for m in entry.mismatches:
            out.append(f"  MISMATCH {entry.kind} {entry.id} {m['field']}: snapshot "
                       f"{_value(m['expected'])}, sandbox {_value(m['actual'])}")
        if entry.reason:
            out.append(f"    ({entry.reason})")
    return out


def summary_line(report: RehearsalReport) -> str:
    s = report.summary()
    return (f"rehearsed: {s['matched']} matched, {s['mismatched']} mismatched, "
            f"{s['not_rehearsed']} not rehearsed")


def write_report(report: RehearsalReport, out: TextIO) -> None:
    """Mismatches first (they are planner bugs or kernel refusals), then what was skipped."""
    lines: list[str] = []
    for entry in report.entries:
        if entry.status == MISMATCHED:
            lines.extend(_line(entry))
    # Skipped objects with one reason (49 map_vmas steps) are one line each reason.
    skipped: dict[tuple[str, str], list[str]] = {}
    for entry in report.entries:
        if entry.status == NOT_REHEARSED:
            skipped.setdefault((entry.kind, entry.reason), []).append(entry.id)
    for (kind, reason), ids in skipped.items():
        if len(ids) == 1:
            lines.append(f"  not rehearsed: {kind} {ids[0]}: {reason}")
        else:
            more = f", ... ({len(ids) - _SHOWN} more)" if len(ids) > _SHOWN else ""
            lines.append(f"  not rehearsed: {len(ids)} {kind}s ({'; '.join(ids[:_SHOWN])}"
                         f"{more}): {reason}")
    m = report.memory
    if m:
        filled = (f"{m['bytes_filled'] / 2**20:.1f} MiB filled ({m['fill_mb_per_s']:.0f} MB/s "
                  "per CPU second" if m["bytes_filled"] else
                  "no page contents filled (layout only")
        lines.append(f"memory: {m['mapped']} of {m['vmas']} VMAs mapped, {filled}; the memory "
                     f"steps took {m['wall_ms']:.0f} ms)")
    t = report.timings
    total = sum(t.values()) or 1.0
    phases = ", ".join(f"{k} {v * 1000:.0f} ms ({v / total:.0%})" for k, v in t.items())
    lines.append(f"time: {phases}")
    if report.kept:
        lines.append(f"sandbox kept: its init is pid {report.sandbox_pid}; end it (and every "
                     f"process in it) with: kill -9 {report.sandbox_pid}")
    lines.append(summary_line(report) + ("" if report.feasible else
                                         " (the plan itself is NOT feasible)"))
    out.write("\n".join(printable(line) for line in lines) + "\n")
