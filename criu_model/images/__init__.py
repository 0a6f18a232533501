"""Snapshot directories: framing, writing atomically, reading with validation."""

from criu_model.images.reader import load
from criu_model.images.writer import write

__all__ = ["load", "write"]
