"""How a memory-contents change (differ.memory) reads, in text and JSON."""

from __future__ import annotations

from typing import Any

from criu_model.differ.result import Change


def page_change_text(ch: Change) -> str:
    """'memory 7f12a000-7f12e000: 5 pages changed, 1 added, 0 removed (shared: 3 processes)'."""
    d = ch.after
    where = f"{ch.start:x}-{d.get('end', 0):x}" if ch.start is not None else "?"
    obj = f" {ch.key}" if ch.key else ""
    held = f" (mapped by {len(ch.pids)} processes: {' '.join(map(str, ch.pids))})" \
        if len(ch.pids) > 1 else ""
    line = (f"memory {where}{obj}: {d.get('changed', 0)} pages changed, "
            f"{d.get('added', 0)} added, {d.get('removed', 0)} removed{held}")
    pages = d.get("pages")
    if pages:
        for name in ("changed", "added", "removed"):
            if pages.get(name):
                line += f"\n        {name}: " + " ".join(f"{a:x}" for a in pages[name])
    return line


def page_change_json(ch: Change) -> dict[str, Any]:
    """The JSON entry: what/pid/start and the counts at the top (addresses under --all)."""
    out: dict[str, Any] = {"op": ch.op, "what": ch.what, "area": ch.area, "pid": ch.pid,
                           "start": ch.start, "end": ch.after.get("end")}
    if ch.key:
        out["key"] = ch.key
    if ch.pids:
        out["pids"] = list(ch.pids)
    for name in ("changed", "added", "removed"):
        out[name] = ch.after.get(name, 0)
    if "pages" in ch.after:
        out["pages"] = ch.after["pages"]
    return out
