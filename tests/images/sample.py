"""A small, hand-built Snapshot for image-tier tests (no live processes needed)."""

from __future__ import annotations

from criu_model.images.pb import inventory_pb2, mm_pb2, mount_pb2, process_pb2
from criu_model.snapshot import Snapshot


def sample_snapshot(n_children: int = 2) -> Snapshot:
    inv = inventory_pb2.Inventory(format_major=1, tool_version="test", kernel_release="6.0",
                                  hostname="h", time_ns=1, root_pids=[100],
                                  freeze_method=inventory_pb2.FREEZE_NONE)
    procs = []
    mms = []
    for i in range(n_children + 1):
        pid = 100 + i
        proc = process_pb2.Process(pid=pid, ppid=1 if i == 0 else 100, pgid=100, sid=100,
                                   ns_pids=[pid], comm=b"a (b)\n" if i else b"root",
                                   state="S", cmdline=[b"sleep", b"10"])
        proc.threads.add(tid=pid, comm=b"t", state="S")
        proc.namespaces.add(type="mnt", inode=4026531841)
        procs.append(proc)
        mm = mm_pb2.MemoryMap(pid=pid, page_counts_method="pagemap")
        mm.vmas.add(start=0x1000, end=0x3000, prot=5, path=b"/bin/x", kind=mm_pb2.VMA_FILE)
        mm.vmas.add(start=0x3000, end=0x4000, prot=3, kind=mm_pb2.VMA_ANON)
        mms.append(mm)
    mnt = mount_pb2.MountNamespace(ns_inode=4026531841, read_from_pid=100)
    mnt.mounts.add(mount_id=1, parent_id=0, mount_point=b"/", fstype="ext4")
    return Snapshot(inventory=inv, processes=procs, memory=mms, mounts=[mnt])
