#!/usr/bin/env python3
"""Unix socket collection speed: ours vs pyroute2's stock DiagSocket vs psutil.

Creates N unix sockets (N/2 socketpairs) in this process, then times, in the
same run and as the median of ROUNDS rounds:

* ours: ``collect_sockets(inodes, families=["unix"])`` (one sock_diag dump,
  every attribute a restore needs, converted to protobuf ``Socket`` messages),
  and the same without the inode filter;
* pyroute2: ``DiagSocket.get_sock_stats(family=AF_UNIX, show=NAME|VFS|PEER|ICONS|RQLEN)``
  on an already bound socket (dicts, no conversion);
* psutil: ``Process().net_connections(kind="unix")`` (parses /proc/net/unix
  and maps every fd).

Prints figures; never fails on timing. Target: ours under 30 ms for 2,000.

Usage: scripts/bench/bench_sockets.py [N_SOCKETS] [ROUNDS]
"""

from __future__ import annotations

import os
import resource
import socket
import statistics
import sys
import time
from collections.abc import Callable

import psutil
from pyroute2.netlink.diag import DiagSocket

from criu_model.collect import netlink_diag as nd
from criu_model.collect.sockets import collect_sockets

TARGET_MS = 30.0


def median_ms(fn: Callable[[], object], rounds: int) -> tuple[float, object]:
    """Median wall time of `rounds` calls (after one warm-up), and the last result."""
    result = fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 9
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 256), hard))
    socks: list[socket.socket] = []
    diag = DiagSocket()
    try:
        for _ in range(n // 2):
            socks.extend(socket.socketpair())
        inodes = {os.fstat(s.fileno()).st_ino for s in socks}
        diag.bind()
        show = (nd.UDIAG_SHOW_NAME | nd.UDIAG_SHOW_VFS | nd.UDIAG_SHOW_PEER
                | nd.UDIAG_SHOW_ICONS | nd.UDIAG_SHOW_RQLEN)
        me = psutil.Process()

        ours_ms, ours = median_ms(lambda: collect_sockets(inodes, families=["unix"]), rounds)
        all_ms, everything = median_ms(lambda: collect_sockets(families=["unix"]), rounds)
        pr2_ms, pr2 = median_ms(
            lambda: diag.get_sock_stats(family=socket.AF_UNIX, show=show), rounds
        )
        ps_ms, ps = median_ms(lambda: me.net_connections(kind="unix"), rounds)
    finally:
        diag.close()
        for s in socks:
            s.close()

    found = len(ours.sockets)  # type: ignore[attr-defined]
    print(f"{n} unix sockets in this process, median of {rounds} rounds")
    print(f"  ours (inode filter)     {ours_ms:8.1f} ms  {found} sockets"
          f"  {'OK' if ours_ms < TARGET_MS else 'OVER'} (target < {TARGET_MS:.0f} ms)")
    print(f"  ours (every socket)     {all_ms:8.1f} ms  "
          f"{len(everything.sockets)} sockets")  # type: ignore[attr-defined]
    print(f"  pyroute2 DiagSocket     {pr2_ms:8.1f} ms  {len(pr2)} messages"  # type: ignore[arg-type]
          f"  x{pr2_ms / ours_ms:.1f} ours")
    print(f"  psutil net_connections  {ps_ms:8.1f} ms  {len(ps)} connections"  # type: ignore[arg-type]
          f"  x{ps_ms / ours_ms:.1f} ours")


if __name__ == "__main__":
    main()
