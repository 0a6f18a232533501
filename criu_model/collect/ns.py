"""Namespace identities from /proc/PID/ns/*.

Each entry is a magic link to an nsfs inode; ``stat()`` through it gives the
(dev, inode) pair that identifies the namespace system-wide. Reading the link
text (``pid:[4026531836]``) would give the inode only. The set of entries
depends on the kernel (time_for_children is Linux 5.6), so we list the
directory instead of hard-coding it. A zombie keeps only ``pid`` and ``user``
(its nsproxy is gone), and ptrace rules can deny every link: the caller
decides what a failure means, so failures are returned, not raised.
"""

from __future__ import annotations

from typing import NamedTuple

from criu_model.collect.procfs import ProcDir
from criu_model.errors import AccessDenied, ProcessGone

NS_DIR = "ns"


class NsId(NamedTuple):
    type: str  # entry name: "pid", "pid_for_children", "mnt", ...
    inode: int
    dev: int


def read_namespaces(pdir: ProcDir) -> tuple[list[NsId], dict[str, ProcessGone | AccessDenied]]:
    """Identities of every namespace entry, plus the entries that could not be read.

    Raises ProcessGone/AccessDenied only when the ns directory itself cannot be listed.
    """
    found: list[NsId] = []
    failed: dict[str, ProcessGone | AccessDenied] = {}
    for name in pdir.listdir(NS_DIR):
        try:
            st = pdir.stat(f"{NS_DIR}/{name}")
        except (ProcessGone, AccessDenied) as err:
            failed[name] = err
            continue
        found.append(NsId(name, st.st_ino, st.st_dev))
    return found, failed
