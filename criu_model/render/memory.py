"""Text views of dumped memory: a hexdump like ``xxd`` and grep hits."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.markup import escape

from criu_model.names import printable, text, vma_kind_name
from criu_model.pages.search import Hit

_PRINTABLE = bytes(b if 0x20 <= b < 0x7f else ord(".") for b in range(256))


def hexdump_lines(data: bytes, addr: int, width: int = 16) -> Iterable[str]:
    """``xxd``-style lines: address, hex in pairs of bytes, printable text."""
    digits = max(12, len(f"{addr + len(data):x}"))
    for off in range(0, len(data), width):
        chunk = data[off:off + width]
        pairs = " ".join(chunk[i:i + 2].hex() for i in range(0, len(chunk), 2))
        pad = (width * 5 // 2) - 1
        yield f"{addr + off:0{digits}x}: {pairs:<{pad}}  {chunk.translate(_PRINTABLE).decode()}"


def show_hexdump(data: bytes, addr: int, console: Console) -> None:
    for line in hexdump_lines(data, addr):
        console.print(escape(line), highlight=False, soft_wrap=True, emoji=False)


def _shown(data: bytes) -> str:
    return data.translate(_PRINTABLE).decode()


def vma_label(hit: Hit) -> str:
    vma = hit.vma
    return text(vma.path) + (" (deleted)" if vma.deleted else "") if vma.path else \
        f"[{vma_kind_name(vma.kind)}]"


def show_hits(hits: Iterable[Hit], console: Console) -> int:
    """One line per hit: pid, address, VMA, context around the match; returns the count."""
    count = 0
    for hit in hits:
        count += 1
        console.print(escape(f"{hit.pid} {hit.addr:#x} {printable(vma_label(hit))}: "
                             f"{_shown(hit.before)}[{_shown(hit.match)}]{_shown(hit.after)}"),
                      highlight=False, soft_wrap=True, emoji=False)
    return count


def hit_to_json(hit: Hit) -> dict[str, object]:
    return {"pid": hit.pid, "addr": hit.addr, "vma_start": hit.vma.start,
            "vma": vma_label(hit), "match": text(hit.match), "before": text(hit.before),
            "after": text(hit.after)}
