"""The line `dump` prints: plain text, so a dump never imports a table library."""

from __future__ import annotations

from criu_model.snapshot import Snapshot


def dump_summary(snap: Snapshot, path: str | None) -> str:
    """The one line `dump` prints."""
    inv = snap.inventory
    took = inv.dump_duration_ns / 1e6
    frozen = inv.frozen_for_ns / 1e6
    where = f" -> {path}" if path else ""
    skipped = f", {len(inv.skipped)} skipped" if inv.skipped else ""
    line = (f"dumped {len(snap.processes)} processes, {snap.thread_count} threads, "
            f"{snap.vma_count} VMAs{skipped} in {took:.1f} ms (frozen {frozen:.1f} ms)"
            f"{where}")
    if inv.pages_captured:
        st = inv.page_stats
        line += (f"\npages: {st.stored} stored ({st.bytes_written / 2**20:.1f} MiB written), "
                 f"{st.deduplicated} shared copy-on-write stored once, {st.zero} zero, "
                 f"{st.inherited} unchanged since the parent, {st.file_clean} clean file pages "
                 f"left in their files; {st.shared_objects} shared memory objects")
    return line
