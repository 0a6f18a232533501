"""Memory in the restore plan: map every VMA, fill the captured pages, and say what a
restore of this snapshot could and could not bring back.

Steps come after the skeleton (processes, files) and are not run through the
simulator, which models the kernel's process and file rules, not memory.
Per process one ``map_vmas`` step (how many VMAs of which kinds, and the
shared objects it maps), then one ``fill_pages`` step per VMA whose pages are
in the snapshot, with its page and byte counts (stored pages are read from
pages.img, inherited ones from the parent chain, zero pages are mapped
zero-filled).
"""

from __future__ import annotations

from collections import Counter

from criu_model.images.pb import mm_pb2
from criu_model.pages.layout import PAGE_SIZE, PARENT, STORED, ZERO
from criu_model.pages.memory import vma_owner, vma_page_counts
from criu_model.planner.model import Action, Plan, Severity
from criu_model.snapshot import Snapshot

# What a checkpoint of criu-model still lacks to resume programs, even with pages
# and registers (each is in the README's "Not yet").
STILL_MISSING = ("signal handlers (sigactions) and alternate signal stacks",
                 "TCP sequence numbers and socket buffer contents",
                 "the contents of MAP_SHARED mappings of files that may change before the "
                 "restore", "io_uring and other kernel state not captured")


def _kind_name(kind: int) -> str:
    if kind in mm_pb2.VmaKind.values():
        return mm_pb2.VmaKind.Name(kind).removeprefix("VMA_").lower()
    return f"unknown({kind})"


def plan_memory(snap: Snapshot, plan: Plan) -> int:
    """Add the memory steps and what the verdict covers; returns the bytes the pages need."""
    store = snap.page_store
    needed = 0
    for proc in snap.processes:
        mm = snap.memory_by_pid.get(proc.pid)
        if mm is None or not mm.vmas or proc.state in ("Z", "X"):
            continue
        kinds = Counter(_kind_name(v.kind) for v in mm.vmas)
        plan.add(proc.pid, Action.MAP_VMAS, "recreate the address space (mmap at the dumped "
                 "addresses, files by identity)", count=len(mm.vmas),
                 kinds=dict(sorted(kinds.items())))
        if store is None:
            continue
        for vma in mm.vmas:
            key, _base, _why = vma_owner(proc.pid, vma)
            counts = vma_page_counts(snap, proc.pid, vma) if key is not None else None
            if not counts:
                continue
            stored, inherited, zero = counts.get(STORED, 0), counts.get(PARENT, 0), \
                counts.get(ZERO, 0)
            shared = key is not None and not key[0]
            nbytes = (stored + inherited) * PAGE_SIZE
            if not shared or vma is _first_mapping(snap, key):
                needed += nbytes
            plan.add(proc.pid, Action.FILL_PAGES, "shared object: filled once, mapped by "
                     "every holder" if shared else "", start=vma.start, end=vma.end,
                     stored=stored, inherited=inherited, zero=zero, bytes=nbytes)
    if store is None:
        plan.covers = "skeleton"
        plan.lacks = ["memory pages (these CRIU images hold no pages-*.img): the programs "
                      "could not resume"
                      if snap.inventory.tool_version.startswith("criu ") else
                      "memory pages and registers (dumped without --pages): the programs "
                      "could not resume"]
    else:
        plan.covers = "skeleton+memory"
        if not any(t.prstatus for r in snap.registers for t in r.threads):
            plan.lacks.append("registers (dumped without the ptrace freeze)")
        plan.lacks.extend(STILL_MISSING)
    return needed


def _first_mapping(snap: Snapshot, key: tuple[int, int, int]) -> mm_pb2.Vma | None:
    """The first VMA (in dump order) mapping a shared object: its bytes are counted once."""
    for proc in snap.processes:
        mm = snap.memory_by_pid.get(proc.pid)
        for vma in mm.vmas if mm else ():
            if vma_owner(proc.pid, vma)[0] == key:
                return vma
    return None


def check_memory_available(plan: Plan, needed: int, meminfo: str = "/proc/meminfo") -> None:
    """Dry run: the machine must have the memory the pages need (MemAvailable)."""
    try:
        with open(meminfo, "rb") as f:
            lines = f.read().splitlines()
    except OSError as err:
        plan.problem(Severity.WARNING, "memory-unknown",
                     f"cannot read {meminfo} ({err.strerror}): the memory needed "
                     f"({needed / 2**20:.1f} MiB) was not checked")
        return
    for line in lines:
        if line.startswith(b"MemAvailable:"):
            available = int(line.split()[1]) * 1024
            if needed > available:
                plan.problem(Severity.BLOCKER, "memory",
                             f"the snapshot's pages need {needed / 2**20:.1f} MiB; this "
                             f"machine has {available / 2**20:.1f} MiB available",
                             fix="free memory, or restore on a larger machine")
            return
