"""Views of a Diff: the human one (grouped per process, colored by rich) and JSON.

JSON contract (`criu-model diff --json`), one object::

    {
      "identical": bool,                 # no changes after filters
      "versions": {"a": "1.0", "b": "1.0"},   # format versions of the two sides
      "include_volatile": bool,          # --all was given
      "summary": {
        "processes": {"added", "removed", "changed"},
        "threads":   {"added", "removed", "changed"},
        "fds":       {"opened", "closed", "replaced", "changed"},
        "vmas":      {"added", "removed", "changed"},
        "sockets":   {"added", "removed", "changed"},
        "mounts":    {"added", "removed", "changed"},
        "sharing":   {"added", "removed", "changed"},
        "changes":   int,                # len(changes)
        "not_comparable": int            # fields not compared: the sum of missing[].count
      },
      "changes": [ {
        "op":    "added" | "removed" | "changed" | "replaced",
        "what":  "process" | "thread" | "namespace" | "fd" | "fd_table" | "ghost" |
                 "socket" | "vma" | "memory" | "mount" | "sharing",
        "area":  the --only category (tree, proc, threads, creds, limits, signals,
                 timers, sched, ns, cgroups, fds, sockets, vmas, mounts, sharing),
        "pid":   int or null             # owning process; lowest involved pid otherwise
        # where relevant:
        "fd": int, "tid": int, "start": int (VMA start address),
        "key": str (socket "INODE LABEL", mount "mnt:NS ID POINT", sharing object;
               the file's target for an fd change with "holders"),
        "pids": [int] (all processes involved: socket holders, sharers, ns members),
        "holders": [{"pid", "fd"}] (an fd change that is the same change of one open
                   file in several processes, given once: every holder; "pid"/"fd"
                   are the first one's),
        "field": "dotted.path[key]" or null for the whole object,
        "before": value in A (absent for "added"), "after": value in B (absent for
        "removed"); for whole objects a small summary object,
        "volatile": true (only with --all, on volatile fields)
      } ],
      "missing": [ {"what", "field", "side": "a" | "b", "reason", "count"} ]
    }

`missing` lists what was not compared because one side does not know it (an
unreadable field, a field or image older formats lack): never a change. Beside a
CRIU dump these are the facts CRIU does not record (reason "not in CRIU images
..."); objects are then matched without the identities that side lacks (VMAs
by kind and path, fds without dev/ino, mount namespaces by their members).
The text view ends with one line counting them ("N fields not comparable: N
unknown in A (not in CRIU images)"), then one dim line per entry.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rich.console import Console
from rich.text import Text

from criu_model.differ import Change, Diff
from criu_model.differ.result import is_page_change
from criu_model.images.pb import process_pb2
from criu_model.names import printable
from criu_model.render.memdiff import page_change_json, page_change_text
from criu_model.snapshot import Snapshot

_MARK = {"added": ("+", "green"), "removed": ("-", "red"), "changed": ("~", "yellow"),
         "replaced": ("~", "yellow")}
# Field names shown in hex: masks, capability sets, addresses.
_HEX_NAMES = frozenset({"flags", "personality", "sigmask", "mask", "ignored_mask", "mflags",
                        "events", "end", "start", "offset", "securebits", "seals", "data"})
_HEX_PREFIXES = ("cap_", "sig_")


def diff_to_json(result: Diff) -> dict[str, Any]:
    """The documented JSON object for a Diff (see the module docstring)."""
    return {
        "identical": result.identical,
        "versions": {"a": result.versions[0], "b": result.versions[1]},
        "include_volatile": result.include_volatile,
        "summary": result.summary,
        "changes": [change_to_json(ch) for ch in result.changes],
        "missing": [{"what": m.what, "field": m.field, "side": m.side, "reason": m.reason,
                     "count": m.count} for m in result.missing],
    }


def change_to_json(ch: Change) -> dict[str, Any]:
    if is_page_change(ch):
        return page_change_json(ch)
    out: dict[str, Any] = {"op": ch.op, "what": ch.what, "area": ch.area, "pid": ch.pid}
    for name in ("fd", "tid", "start", "key"):
        value = getattr(ch, name)
        if value is not None:
            out[name] = value
    if ch.pids:
        out["pids"] = list(ch.pids)
    if ch.holders:
        out["holders"] = [{"pid": pid, "fd": fd} for pid, fd in ch.holders]
    if ch.field is not None or ch.op in ("changed", "replaced"):
        out["field"] = ch.field
    if ch.op != "added":
        out["before"] = ch.before
    if ch.op != "removed":
        out["after"] = ch.after
    if ch.volatile:
        out["volatile"] = True
    return out


def _is_hex(field: str | None) -> bool:
    if not field:
        return False
    last = field.rsplit(".", 1)[-1].split("[", 1)[0]
    return last in _HEX_NAMES or last.startswith(_HEX_PREFIXES)


def _value(value: Any, hexa: bool = False) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:#x}" if hexa else str(value)
    if isinstance(value, str):
        return value if value and value.strip() == value else repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v, hexa) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_value(v, hexa)}" for k, v in value.items()) + "}"
    return str(value)


def _before_after(ch: Change) -> str:
    hexa = _is_hex(ch.field)
    b, a = ch.before, ch.after
    if isinstance(b, list) and isinstance(a, list) and all(
            not isinstance(x, dict | list) for x in (*b, *a)) and len(b) + len(a) > 8:
        # Long lists (environ, groups): only what went away and what came.
        gone = [x for x in b if x not in a]
        new = [x for x in a if x not in b]
        parts = [f"-{_value(x, hexa)}" for x in gone] + [f"+{_value(x, hexa)}" for x in new]
        return " ".join(parts) if parts else "reordered"
    return f"{_value(b, hexa)} → {_value(a, hexa)}"


def _subject(ch: Change) -> str:
    """What the change is about, inside its process group."""
    if ch.what == "fd" and ch.holders:
        what = f"open file {ch.key}" if ch.key else "open file"
        return f"{what} held by " + " ".join(f"{pid}:{fd}" for pid, fd in ch.holders)
    if ch.what == "fd":
        return f"fd {ch.fd}"
    if ch.what == "vma":
        return f"vma {ch.start:x}" if ch.start is not None else "vma"
    if ch.what == "thread":
        return f"thread {ch.tid}"
    if ch.what == "namespace":
        return f"{ch.field} namespace" if ch.field else f"namespace {ch.key}"
    if ch.what in ("socket", "mount", "ghost"):
        return f"{ch.what} {ch.key}"
    if ch.what == "sharing":
        return f"shared {ch.key}" if ch.key and ch.key.startswith("file") else \
            f"shared {ch.field} (task)"
    if ch.what == "fd_table":
        return "fd table"
    if ch.what == "memory":
        return "memory"
    return ""


def _summary_text(obj: Any) -> str:
    """One line for a whole added/removed/replaced object."""
    if not isinstance(obj, dict):
        return _value(obj)
    if "target" in obj:  # fd
        return f"{obj['kind']} {obj['target']}"
    if "prot" in obj:  # vma
        what = obj["path"] or obj["kind"]
        return f"-{obj['end']:x} {obj['prot']} {what}"
    if "label" in obj:  # socket
        return obj["label"] + (f" {obj['state']}" if obj.get("state") else "")
    if "mount_point" in obj:
        return f"{obj['fstype']} {obj['source']} on {obj['mount_point']} ({obj['options']})"
    if "comm" in obj and "ppid" in obj:  # process
        return (f"{obj['comm']} (ppid {obj['ppid']}, pgid {obj['pgid']}, sid {obj['sid']}, "
                f"{obj['threads']} threads, {obj['fds']} fds, {obj['vmas']} VMAs)")
    return _value(obj)


def change_line(ch: Change) -> Text:
    """'~ fd 3 pos: 0 → 100', '+ fd 7: regular /tmp/x', ... as a styled line."""
    mark, style = _MARK[ch.op]
    line = Text(mark + " ", style=style)
    if is_page_change(ch):
        # Its key may be a memfd or shm name: escaped first, so only its own line breaks stay.
        shown = replace(ch, key=printable(ch.key)) if ch.key else ch
        line.append("\n".join(printable(part) for part in page_change_text(shown).split("\n")))
        return line
    subject = _subject(ch)
    if ch.field is not None and ch.what not in ("namespace", "sharing"):
        subject = f"{subject} {ch.field}" if subject else ch.field
    # Subjects, values and summaries carry names and paths: escaped (names.printable).
    line.append(printable(subject))
    if ch.op == "replaced":
        line.append(printable(f" replaced: {_summary_text(ch.before)} → "
                              f"{_summary_text(ch.after)}"))
    elif ch.op == "changed" or (ch.field is not None and ch.what in ("namespace", "sharing")):
        line.append(printable(": " + _before_after(ch)))
    else:
        line.append(printable(": " + _summary_text(ch.after if ch.op == "added" else ch.before)))
    if ch.volatile:
        line.append(" (volatile)", style="dim")
    return line


def _comm(pid: int, a: Snapshot | None, b: Snapshot | None) -> str:
    for snap in (b, a):
        if snap is not None:
            proc: process_pb2.Process | None = snap.by_pid.get(pid)
            if proc is not None:
                return printable(proc.comm)
    return ""


def summary_line(result: Diff) -> str:
    s = result.summary
    p, f, v = s["processes"], s["fds"], s["vmas"]
    parts = [f"processes: {p['added']} added, {p['removed']} removed, {p['changed']} changed",
             f"fds: {f['opened']} opened, {f['closed']} closed, {f['replaced']} replaced, "
             f"{f['changed']} changed",
             f"VMAs: {v['added']} added, {v['removed']} removed, {v['changed']} changed"]
    m = s["memory"]
    if m["vmas"]:
        parts.append(f"memory: {m['changed']} pages changed, {m['added']} added, "
                     f"{m['removed']} removed in {m['vmas']} VMAs")
    for name in ("threads", "sockets", "mounts", "sharing"):
        counts = s[name]
        if any(counts.values()):
            parts.append(f"{name}: " + ", ".join(f"{n} {op}" for op, n in counts.items() if n))
    return "; ".join(parts)


# The head of every reason a CRIU import gives (criu_model.formats.criu.mapping.NOT_IN_CRIU).
_NOT_IN_CRIU = "not in CRIU images"


def _reason_kind(reason: str) -> str:
    """'not in CRIU images for a zombie (...)' -> 'not in CRIU images': the reason's head
    (up to its first ':' or '('), every reason of a CRIU import as one."""
    if reason.startswith(_NOT_IN_CRIU):
        return _NOT_IN_CRIU
    for sep in (":", " ("):
        reason = reason.split(sep, 1)[0]
    return reason.strip()


def not_comparable_line(result: Diff) -> str:
    """'2099 fields not comparable: 2099 unknown in A (not in CRIU images)'.

    The per-entry lines say which fields; this one gives the total, by side and
    kind of reason, so a CRIU dump beside a criu-model one reads at a glance."""
    groups: dict[tuple[str, str], int] = {}
    for m in result.missing:
        key = (m.side, _reason_kind(m.reason))
        groups[key] = groups.get(key, 0) + m.count
    total = sum(groups.values())
    parts = [f"{n} unknown in {side.upper()} ({why})"
             for (side, why), n in sorted(groups.items(), key=lambda kv: (-kv[1], kv[0]))]
    return printable(f"{total} fields not comparable: " + ", ".join(parts))


def _group(ch: Change) -> int | None:
    """The process a change is shown under; None for objects shared across processes."""
    shared = ch.what in ("sharing", "mount") or (ch.what == "namespace" and ch.key is not None) \
        or (len(ch.pids) > 1 and bool(ch.holders))
    return None if shared else ch.pid


def show_diff(result: Diff, console: Console, a: Snapshot | None = None,
              b: Snapshot | None = None) -> None:
    """Changes grouped per process (by pid), then objects of no single process."""
    current: int | str | None = "start"
    for ch in sorted(result.changes, key=lambda c: _group(c) is None):  # stable: keeps pid order
        pid_group = _group(ch)
        if ch.what == "process" and ch.field is None and ch.op in ("added", "removed"):
            mark, style = _MARK[ch.op]
            line = Text(f"{mark} pid {ch.pid} ", style=f"bold {style}")
            line.append(printable(_summary_text(ch.after if ch.op == "added" else ch.before)))
            console.print(line, soft_wrap=True)
            current = ch.pid
            continue
        if pid_group != current:
            current = pid_group
            if pid_group is None:
                title = "shared objects and mounts"
            else:
                title = f"~ pid {pid_group} {_comm(pid_group, a, b)}".rstrip()
            console.print(Text(title, style="bold yellow" if pid_group else "bold"),
                          soft_wrap=True)
        console.print(Text("    ") + change_line(ch), soft_wrap=True)
    if result.identical:
        console.print("no differences", highlight=False)
    else:
        console.print(summary_line(result), highlight=False, soft_wrap=True)
    if result.missing:
        console.print(Text(not_comparable_line(result)), soft_wrap=True)
    for m in result.missing:
        where = f"{m.what} {m.field}" if m.field else m.what
        count = f" ({m.count}x)" if m.count > 1 else ""
        console.print(Text(printable(f"not compared: {where}: unknown in {m.side.upper()}: "
                                     f"{m.reason}{count}"), style="dim"), soft_wrap=True)
