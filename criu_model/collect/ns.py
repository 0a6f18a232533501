"""Namespace identities from /proc/PID/ns/*.

Each entry is a magic link to an nsfs inode; ``stat()`` through it gives the
(dev, inode) pair that identifies the namespace system-wide. The link text
(``pid:[4026531836]``) gives the inode, four times cheaper: the device, the
same for all, comes from one stat per run (see :func:`_link_inode`). The set of entries
depends on the kernel (time_for_children is Linux 5.6), so we list the
directory instead of hard-coding it: once per run, for the real /proc (the
kernel lists the same ns_entries for every task, fs/proc/namespaces.c; the
listing alone is 8 syscalls). A zombie keeps only ``pid`` and ``user``
(its nsproxy is gone), and ptrace rules can deny every link: the caller
decides what a failure means, so failures are returned, not raised.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from criu_model.collect.procfs import PROC_ROOT, ProcDir
from criu_model.errors import AccessDenied, ProcessGone, from_oserror

NS_DIR = "ns"


class NsId(NamedTuple):
    type: str  # entry name: "pid", "pid_for_children", "mnt", ...
    inode: int
    dev: int


class _Learnt:
    """The real /proc's ns entry names and the nsfs device, from the first process read."""

    names: tuple[str, ...] | None = None
    dev: int | None = None


def read_namespaces(pdir: ProcDir) -> tuple[list[NsId], dict[str, ProcessGone | AccessDenied]]:
    """Identities of every namespace entry, plus the entries that could not be read.

    Raises ProcessGone/AccessDenied only when the ns directory itself cannot be listed.
    The entries are read relative to one fd of the directory (no path per entry).
    """
    found: list[NsId] = []
    failed: dict[str, ProcessGone | AccessDenied] = {}
    real = pdir.proc_root == PROC_ROOT  # a fake tree (tests) may list anything
    try:
        dir_fd = os.open(f"{pdir.path}/{NS_DIR}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            names = _Learnt.names if real and _Learnt.names else tuple(os.listdir(dir_fd))
        except OSError:
            os.close(dir_fd)
            raise
    except OSError as err:
        raise from_oserror(err, pdir.pid, NS_DIR) from err
    try:
        dev = _Learnt.dev if real else None
        for name in names:
            try:
                inode = None if dev is None else _link_inode(os.readlink(name, dir_fd=dir_fd))
                if inode is None:
                    st = os.stat(name, dir_fd=dir_fd)
                    inode, dev = st.st_ino, st.st_dev
            except OSError as err:
                why = from_oserror(err, pdir.pid, f"{NS_DIR}/{name}")
                if not isinstance(why, ProcessGone | AccessDenied):
                    raise why from err
                why.__cause__ = err
                failed[name] = why
                continue
            found.append(NsId(name, inode, dev))
    finally:
        os.close(dir_fd)
    if real:
        _Learnt.names = names
        if dev is not None:
            _Learnt.dev = dev
    return found, failed


def _link_inode(link: str) -> int | None:
    """The inode in a link text like ``net:[4026531840]``; None if it is not one.

    Reading the link costs a quarter of stat() through it (which makes an nsfs
    dentry): so only the first entry is stat'ed, for the device, which is the
    one nsfs superblock's for every namespace (Linux 3.19, commit e149ed2b805f;
    before, /proc's own, as well the same for all). The access checks are the
    same (ptrace read access, fs/proc/namespaces.c), so are the failures.
    """
    start = link.find(":[")
    if start < 0 or not link.endswith("]"):
        return None
    digits = link[start + 2:-1]
    return int(digits) if digits.isdigit() else None
