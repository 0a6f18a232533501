"""Namespace ownership (ioctl_ns): the collector's edge cases, on our own namespaces."""

from __future__ import annotations

import os

from criu_model.collect.nsowner import fill_ownership, query
from criu_model.images.pb import process_pb2
from tests.conftest import unused_pid


def _ino(path: str) -> int:
    return os.stat(path).st_ino


def test_query_checks_the_namespace_is_the_dumped_one() -> None:
    net, user = _ino("/proc/self/ns/net"), _ino("/proc/self/ns/user")
    assert query("/proc/self/ns/net", "net", net) == (user, 0)   # net has no parent
    assert query("/proc/self/ns/net", "net", net + 1) is None   # a reused pid's namespace
    assert query(f"/proc/{unused_pid()}/ns/net", "net", net) is None  # gone


def test_fill_asks_the_next_holder_when_the_first_is_gone() -> None:
    net, user = _ino("/proc/self/ns/net"), _ino("/proc/self/ns/user")
    dev = os.stat("/proc/self/ns/net").st_dev
    gone = process_pb2.Process(pid=unused_pid())
    me = process_pb2.Process(pid=os.getpid())
    for proc in (gone, me):
        proc.namespaces.add(type="net", inode=net, dev=dev)
    fill_ownership([gone, me], "/proc")
    assert [ns.owner_user for p in (gone, me) for ns in p.namespaces] == [user, user]
