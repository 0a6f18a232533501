"""Snapshot directories: framing, writing atomically, reading with validation.

``load`` and ``write`` are imported on first use: every module that needs a
message class imports ``criu_model.images.pb`` (this package first), and a
command that only reads should not pay for the writer's imports, nor the
reverse.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from criu_model.images.reader import load
    from criu_model.images.writer import write

__all__ = ["load", "write"]


def __getattr__(name: str) -> Any:
    if name == "load":
        from criu_model.images.reader import load

        return load
    if name == "write":
        from criu_model.images.writer import write

        return write
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
