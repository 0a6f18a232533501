"""The restore plan as an indented text tree, or as the JSON object of the README."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from rich.console import Console

from criu_model.kernel.flags import open_flags_text
from criu_model.names import printable
from criu_model.planner.model import RESTORER, Action, CloneFlag, Plan, Severity, Step, flag_names

_HIDDEN_ARGS = {"flags_value", "child"}


def _who(key: int) -> str:
    if key == RESTORER:
        return "restorer"
    return f"helper {key}" if key < 0 else str(key)


def _args(step: Step) -> str:
    parts = []
    for name, value in step.args.items():
        if name in _HIDDEN_ARGS or value in ([], None, ""):
            continue
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        elif name == "flags" and isinstance(value, int):
            value = open_flags_text(value)  # f_flags of an open step: rw,cloexec, not 558081
        parts.append(f"{name}={value}")
    return " ".join(parts)


def show_plan(plan: Plan, console: Console) -> None:
    """Steps grouped per process, nested like the creation tree; then problems, verdict."""
    own: dict[int, list[Step]] = defaultdict(list)
    for step in plan.steps:
        own[step.actor].append(step)
    lines: list[str] = []

    def walk(key: int, depth: int) -> None:
        pad = "  " * depth
        planned = plan.processes.get(key)
        head = _who(key)
        if planned is not None:
            head += f"  set_tid={list(planned.set_tid)}"
            if planned.new_pid_ns:
                head += "  new pid namespace"
            shown = planned.flags & ~CloneFlag.NEWPID
            if shown:
                head += "  " + ",".join(flag_names(shown))
            if planned.helper:
                head += f"  [helper: {planned.reason}]"
        lines.append(pad + head)
        for step in own.get(key, []):
            if step.action in (Action.CLONE, Action.LAST_PID_CLONE):
                child = step.args["child"]
                if child in plan.processes and plan.processes[child].parent == key:
                    walk(child, depth + 1)
                    continue
            text = f"{pad}  - {step.action} {_args(step)}".rstrip()
            if step.reason:
                text += f"  ({step.reason})"
            lines.append(text)

    walk(RESTORER, 0)
    # Steps carry paths, socket and memfd names: each line is escaped as a whole.
    console.file.write("\n".join(printable(text) for text in lines) + "\n")
    if plan.problems:
        console.file.write("\nproblems:\n")
        for p in plan.problems:
            where = " ".join(f"{k}={v}" for k, v in p.to_json().items()
                             if k in ("pid", "path", "port", "fd"))
            fix = f" -- fix: {p.fix}" if p.fix else ""
            console.file.write(printable(f"  {p.severity.upper()} {p.kind}: {p.message}"
                                         f"{' [' + where + ']' if where else ''}{fix}") + "\n")
    console.file.write("\n" + coverage(plan) + "\n")
    console.file.write(verdict(plan) + "\n")


def verdict(plan: Plan) -> str:
    blockers = sum(p.severity is Severity.BLOCKER for p in plan.problems)
    warnings = len(plan.problems) - blockers
    real = sum(not p.helper for p in plan.processes.values())
    helpers = len(plan.processes) - real
    head = "feasible" if plan.feasible else f"NOT feasible: {blockers} blocker(s)"
    return (f"{head}, {warnings} warning(s); {real} processes, {helpers} helpers, "
            f"{len(plan.steps)} steps, {plan.transfers} SCM_RIGHTS transfers"
            + (", racy pid choice (ns_last_pid)" if plan.racy else ""))


def coverage(plan: Plan) -> str:
    """What a feasible verdict means: the skeleton only, or memory too, and what is lacking."""
    what = ("the skeleton (processes, sessions, files, address-space layout)"
            if plan.covers == "skeleton" else
            "the skeleton and the memory (pages, registers)")
    lacks = ("; lacks: " + "; ".join(plan.lacks)) if plan.lacks else ""
    return f"covers {what}{lacks}"


def plan_to_json(plan: Plan) -> dict[str, Any]:
    steps = []
    for step in plan.steps:
        item = step.to_json()
        item.pop("flags_value", None)
        steps.append(item)
    return {
        "feasible": plan.feasible,
        "pid_ns": plan.pid_ns,
        "racy": plan.racy,
        "transfers": plan.transfers,
        "covers": plan.covers,
        "lacks": list(plan.lacks),
        "problems": [p.to_json() for p in plan.problems],
        "processes": [{"pid": p.pid, "key": p.key, "set_tid": list(p.set_tid),
                       "parent": p.parent, "helper": p.helper, "new_pid_ns": p.new_pid_ns,
                       "zombie": p.zombie, "reason": p.reason}
                      for p in plan.processes.values()],
        "steps": steps,
    }
