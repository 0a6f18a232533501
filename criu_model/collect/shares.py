"""The sharing pass of a dump: kcmp identities written into the messages.

Runs while the tree is still frozen (fd numbers must not move between the
fd listing and the kcmp calls). Fills ``Fd.file_id``, each epoll target's
``file_id`` and ``Process.shares``; the kcmp logic itself is in
:mod:`criu_model.sharing`.
"""

from __future__ import annotations

from collections.abc import Sequence

from criu_model.collect.sharing import (
    EpollTarget,
    FdKey,
    FileIdIndex,
    NullSentinel,
    SharingStats,
    match_epoll_targets,
    task_shares,
)
from criu_model.errors import AccessDenied, KernelUnsupported
from criu_model.images.pb import files_pb2, process_pb2


def _readable(table: files_pb2.FdTable) -> bool:
    return not any(u.field == "fds" for u in table.unreadable)


def fill_sharing(processes: Sequence[process_pb2.Process],
                 tables: Sequence[files_pb2.FdTable],
                 sentinel: NullSentinel | None = None) -> SharingStats:
    """Assign file ids and task share ids in place; returns what the pass did.

    Processes found gone are in ``stats.gone_pids``: the caller drops them.
    A kernel without kcmp, or a process kcmp may not inspect, leaves the ids
    at 0 and records why in the messages' ``unreadable`` lists.
    """
    stats = SharingStats()
    readable = [t for t in tables if _readable(t)]
    keys = [FdKey(t.pid, fd.fd, fd.dev, fd.ino, fd.pos, fd.flags, fd.mnt_id)
            for t in readable for fd in t.fds]
    try:
        index = FileIdIndex.build(keys)
        stats = index.stats
        for table in readable:
            for fd in table.fds:
                fd.file_id = index.ids.get((table.pid, fd.fd), 0)
                if fd.HasField("epoll"):
                    targets = [EpollTarget(t.tfd, t.sdev, t.ino, t.pos)
                               for t in fd.epoll.targets]
                    found = match_epoll_targets(table.pid, fd.fd, targets, index)
                    for target, file_id in zip(fd.epoll.targets, found, strict=True):
                        target.file_id = file_id or 0
    except (AccessDenied, KernelUnsupported) as err:
        for table in readable:
            table.unreadable.add(field="file_id", reason=str(err))
    try:
        shares = task_shares([p.pid for p in processes], stats=stats, sentinel=sentinel)
    except (AccessDenied, KernelUnsupported) as err:
        for proc in processes:
            proc.unreadable.add(field="shares", reason=str(err))
        return stats
    for proc in processes:
        ids = shares.get(proc.pid)
        if ids is not None:
            proc.shares.CopyFrom(process_pb2.TaskShares(**ids))
    return stats
