"""What one sock_diag collection found: light types the dumper needs without the codec.

``collect.sockets`` (the netlink declarations and their compiled layouts) is
only imported when the tree holds sockets; a dump without any builds an empty
SocketDump.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from criu_model.images.pb import sockets_pb2

Socket = sockets_pb2.Socket


class FamilyResult(NamedTuple):
    """Outcome of one family's dump."""

    name: str
    collected: bool
    reason: str


@dataclass
class SocketDump:
    """Every socket seen, by inode, and what each family's dump gave."""

    sockets: dict[int, Socket] = field(default_factory=dict)
    families: list[FamilyResult] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # sockets kept per family
    duplicates: int = 0  # messages for an inode already seen (dropped)
    missing: set[int] = field(default_factory=set)  # asked-for inodes no dump reported

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
