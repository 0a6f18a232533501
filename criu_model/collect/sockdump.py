"""What one sock_diag collection found: light types the dumper needs without the codec.

``collect.sockets`` (the netlink declarations and their compiled layouts) is
only imported when the tree holds sockets; a dump without any builds an empty
SocketDump.
"""

from __future__ import annotations

from typing import NamedTuple

from criu_model.images.pb import sockets_pb2

Socket = sockets_pb2.Socket


class FamilyResult(NamedTuple):
    """Outcome of one family's dump."""

    name: str
    collected: bool
    reason: str


class SocketDump:
    """Every socket seen, by inode, and what each family's dump gave."""

    __slots__ = ("counts", "duplicates", "families", "missing", "sockets")

    def __init__(self) -> None:
        self.sockets: dict[int, Socket] = {}
        self.families: list[FamilyResult] = []
        self.counts: dict[str, int] = {}  # sockets kept per family
        self.duplicates = 0  # messages for an inode already seen (dropped)
        self.missing: set[int] = set()  # asked-for inodes no dump reported

    def runs(self) -> list[sockets_pb2.SocketFamilyRun]:
        """The family outcomes as protobuf records (for the inventory or sockets.img)."""
        return [
            sockets_pb2.SocketFamilyRun(
                name=r.name,
                collected=r.collected,
                reason=r.reason,
                count=self.counts.get(r.name, 0),
            )
            for r in self.families
        ]
