"""Enum values this version does not know: each object carrying one is not restorable.

A newer minor format may add fd kinds, VMA kinds, socket families, lock types...
This version can show them (``unknown(N)``) but not recreate them, so each
object holding one is a blocker naming the value, instead of a plan that
silently recreates something else. The walk is generic over the protobuf
descriptors, so an enum added to a .proto is covered without touching this file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from criu_model.names import SOCKET_STATES, SOCKET_TYPES
from criu_model.planner.model import Plan, Severity
from criu_model.snapshot import Snapshot

# How an enum type is called in a reason; others: CamelCase split into words.
_WORDS = {"FdKind": "fd kind", "VmaKind": "VMA kind", "SocketFamily": "socket family"}


def _words(enum_name: str) -> str:
    return _WORDS.get(enum_name) or " ".join(w.lower() for w in
                                              re.findall(r"[A-Z][a-z0-9]*", enum_name))


@cache
def _has_enum(desc: Descriptor) -> bool:
    """Whether a message type holds an enum field anywhere below it (others are skipped)."""
    return any(f.type == FieldDescriptor.TYPE_ENUM or
               (f.type == FieldDescriptor.TYPE_MESSAGE and f.message_type is not desc
                and _has_enum(f.message_type)) for f in desc.fields)


def unknown_values(msg: Message) -> Iterator[tuple[str, int]]:
    """(enum type name, value) of every enum value in `msg` this version has no name for."""
    desc = msg.DESCRIPTOR
    if not _has_enum(desc):
        return
    for field in desc.fields:
        if field.type == FieldDescriptor.TYPE_ENUM:
            values: Any = getattr(msg, field.name) if field.is_repeated else \
                [getattr(msg, field.name)]
            known = field.enum_type.values_by_number
            for value in values:
                if value not in known:
                    yield field.enum_type.name, value
        elif field.type == FieldDescriptor.TYPE_MESSAGE and not (
                field.message_type.GetOptions().map_entry):
            if field.is_repeated:
                for item in getattr(msg, field.name):
                    yield from unknown_values(item)
            elif msg.HasField(field.name):
                yield from unknown_values(getattr(msg, field.name))


def check_unknown_enums(snap: Snapshot, plan: Plan) -> None:
    """One `unknown-value` blocker per object that carries an enum value we do not know."""
    def block(what: str, found: Iterator[tuple[str, int]], **where: Any) -> None:
        for enum, value in dict.fromkeys(found):
            plan.problem(Severity.BLOCKER, "unknown-value",
                         f"{what}: unknown {_words(enum)} {value}: written by a newer "
                         "criu-model", fix="plan it with the criu-model version that dumped it",
                         **where)

    for proc in snap.processes:
        block(f"pid {proc.pid}", unknown_values(proc), pid=proc.pid)
    for table in snap.fds:
        for fd in table.fds:
            block(f"fd {fd.fd} of pid {table.pid}", unknown_values(fd), pid=table.pid, fd=fd.fd)
    for mm in snap.memory:
        for vma in mm.vmas:
            block(f"VMA {vma.start:#x}-{vma.end:#x} of pid {mm.pid}", unknown_values(vma),
                  pid=mm.pid)
    holders = snap.socket_holders
    for sock in snap.sockets:
        held = holders.get(sock.inode)
        where = {"pid": held[0][0], "fd": held[0][1]} if held else {}
        block(f"socket {sock.inode}", unknown_values(sock), **where)
        # Kernel numbers, not enums of ours: a newer kernel's type or state.
        for what, value, names in (("type", sock.type, SOCKET_TYPES),
                                   ("state", sock.state, SOCKET_STATES)):
            if value and value not in names:
                plan.problem(Severity.BLOCKER, "unknown-value",
                             f"socket {sock.inode}: unknown socket {what} {value}: this version "
                             "cannot recreate it", **where)
