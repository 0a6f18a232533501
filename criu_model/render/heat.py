"""The heat report: text, JSON and an SVG strip per VMA."""

from __future__ import annotations

from html import escape as xml_escape
from typing import Any

from rich.console import Console
from rich.markup import escape

from criu_model.names import printable
from criu_model.pages.heat import Heat, PreCopy, VmaHeat
from criu_model.pages.layout import PAGE_SIZE


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def show_heat(h: Heat, pre: PreCopy, console: Console, *, top: int = 20) -> None:
    n = len(h.intervals)
    console.print(f"{len(h.snapshots)} snapshots, {n} intervals; dirty rate "
                  f"{_mib(h.dirty_rate)}/s (mean), writable working set "
                  f"{_mib(h.working_set_bytes)}, memory {_mib(h.memory_bytes)}", highlight=False)
    console.print("PID      START             END               PAGES  DIRTIED  HOTTEST  VMA",
                  highlight=False)
    for v in h.vmas[:top]:
        console.print(escape(f"{v.pid:<8} {v.start:<17x} {v.end:<17x} "
                             f"{(v.end - v.start) // PAGE_SIZE:>5}  {v.dirtied:>7}  "
                             f"{v.hottest:>4}/{n:<3} {printable(v.name)}"), highlight=False,
                      soft_wrap=True)
        for lo, hi, count in v.ranges()[:5]:
            console.print(f"    {lo:x}-{hi:x}  {(hi - lo) // PAGE_SIZE:>5} pages  changed in "
                          f"{count}/{n} intervals", highlight=False)
    if len(h.vmas) > top:
        console.print(f"... {len(h.vmas) - top} more VMAs changed (--top N, or --json)",
                      highlight=False)
    state = "converges" if pre.converged else "does not converge (the tree dirties memory " \
        "faster than the link drains it, or the rounds ran out)"
    console.print(f"pre-copy at {_mib(pre.bandwidth)}/s: {pre.rounds} rounds, "
                  f"{_mib(pre.bytes_sent)} sent, downtime {pre.downtime * 1000:.1f} ms; {state}",
                  highlight=False)


def vma_heat_json(v: VmaHeat) -> dict[str, Any]:
    return {"pid": v.pid, "pids": list(v.pids), "start": v.start, "end": v.end, "vma": v.name,
            "pages": (v.end - v.start) // PAGE_SIZE, "dirtied": v.dirtied, "writes": v.writes,
            "hottest": v.hottest,
            "ranges": [{"start": lo, "end": hi, "intervals": c} for lo, hi, c in v.ranges()]}


def heat_to_json(h: Heat, pre: PreCopy) -> dict[str, Any]:
    return {
        "snapshots": h.snapshots,
        "intervals": [{"seconds": i.seconds, "pages": i.pages, "bytes_per_second": i.rate}
                      for i in h.intervals],
        "dirty_rate": h.dirty_rate, "working_set_bytes": h.working_set_bytes,
        "memory_bytes": h.memory_bytes,
        "vmas": [vma_heat_json(v) for v in h.vmas],
        "precopy": {"bandwidth": pre.bandwidth, "rounds": pre.rounds,
                    "bytes_sent": pre.bytes_sent, "downtime_seconds": pre.downtime,
                    "converged": pre.converged, "round_bytes": list(pre.round_bytes)},
    }


def _color(count: int, most: int) -> str:
    """0: pale grey; 1..most: from yellow to dark red."""
    if count <= 0:
        return "#eeeeee"
    f = count / most if most else 1.0
    return f"hsl({int(55 - 55 * f)}, 95%, {int(65 - 35 * f)}%)"


def heat_svg(h: Heat, *, top: int = 20, width: int = 800) -> str:
    """One strip per VMA (hottest first): each cell a bucket of pages, coloured by heat."""
    n = max(1, len(h.intervals))
    rows = h.vmas[:top]
    row_h, label_h, left = 18, 14, 10
    height = 64 + len(rows) * (row_h + label_h + 8)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width + 2 * left}" '
           f'height="{height}" font-family="monospace" font-size="11">',
           f'<text x="{left}" y="16" font-size="13">criu-model heat: {len(h.snapshots)} '
           f'snapshots, {n} intervals (colour: intervals in which a page changed, of {n})'
           '</text>']
    # legend: one swatch per count, 0..n
    lx = left + width - 22 * (n + 1) - 60
    out.append(f'<text x="{lx}" y="{height - 6}">changed in</text>')
    for c in range(n + 1):
        out.append(f'<rect x="{lx + 70 + 22 * c}" y="{height - 18}" width="20" height="12" '
                   f'fill="{_color(c, n)}"/><text x="{lx + 74 + 22 * c}" y="{height - 20}" '
                   f'font-size="9">{c}</text>')
    y = 32
    for v in rows:
        pages = max(1, (v.end - v.start) // PAGE_SIZE)
        buckets = min(width, pages)
        per = -(-pages // buckets)
        cell = width / buckets
        heat = [0] * buckets
        for addr, count in v.counts.items():
            b = min(buckets - 1, (addr - v.start) // PAGE_SIZE // per)
            heat[b] = max(heat[b], count)
        label = xml_escape(printable(f"{v.pid} {v.start:x} {v.name}"))  # no control bytes in XML
        out.append(f'<text x="{left}" y="{y + 10}">{label}'
                   f' — {v.dirtied} of {pages} pages dirtied, hottest {v.hottest}/{n}</text>')
        y += label_h
        for b, count in enumerate(heat):
            out.append(f'<rect x="{left + b * cell:.2f}" y="{y}" width="{cell + 0.05:.2f}" '
                       f'height="{row_h}" fill="{_color(count, n)}"/>')
        y += row_h + 8
    out.append("</svg>")
    return "\n".join(out)
