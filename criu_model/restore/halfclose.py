"""Half-closed TCP connections on the sandbox's loopback, without the original sequence
numbers: what each end's worker does once both ends exist.

Every TCP_REPAIR end is made in repair mode with sequence numbers derived from its
4-tuple (worker.py ``isn``), so the two ends of a connection agree with each other
without talking. From there the kernel itself takes the connection to the dumped
states, one close sequence per pair of states (verified on Linux 6.18):

* FIN-WAIT-2 / CLOSE-WAIT: repair off on both, shutdown(SHUT_WR) on the FIN-WAIT-2 end;
  its FIN and the ACK cross the loopback for real.
* FIN-WAIT-1 / ESTABLISHED: shutdown(SHUT_WR) in repair mode with the send queue
  selected: the FIN is queued as sent and never transmitted, its ACK never comes.
* LAST-ACK / FIN-WAIT-2: the first sequence, then shutdown in repair mode on the
  CLOSE-WAIT end: its FIN stays unsent, so the other end stays in FIN-WAIT-2.
* CLOSING / FIN-WAIT-2: a silent FIN first (FIN-WAIT-1), then the other end, out of
  repair, shuts down: its FIN arrives before any ACK of the first: CLOSING.

An end whose peer is outside the snapshot (on a loopback address) gets a helper in
its own worker with the mirrored 4-tuple, which plays the peer's part and is then
closed in repair mode (tcp_disconnect sends nothing for a socket in repair).
"""

from __future__ import annotations

from typing import Any

from criu_model.names import SOCKET_STATES

ESTABLISHED, FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK, CLOSING = 1, 4, 5, 8, 9, 11
HALF_CLOSED = frozenset({FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK, CLOSING})
# States no FIN came in to: an RCV_SHUTDOWN bit there is the program's SHUT_RD, replayed
NO_FIN_IN = frozenset({ESTABLISHED, FIN_WAIT1, FIN_WAIT2})

# Worker actions (worker.py Worker.tcp): each is [action, socket inode], the conductor
# turns the inode into its holder's fd; "helper" names the end whose helper it is.
OFF, SILENT, SHUTDOWN, HELPER, DROP = "off", "silent_shutdown", "shutdown_wait", "helper", \
    "drop_helper"
Recipe = list[tuple[str, int, bool]]   # (action, inode of the end, on its helper)


def _name(state: int) -> str:
    return SOCKET_STATES.get(state, f"unknown({state})")


def pair_recipe(a: tuple[int, int], b: tuple[int, int]) -> tuple[Recipe, str]:
    """The actions for a connection whose two ends (inode, state) are both rehearsed,
    or why its states cannot be reached."""
    states = {a[1]: a[0], b[1]: b[0]}
    if set(states) == {FIN_WAIT2, CLOSE_WAIT}:
        return [(OFF, a[0], False), (OFF, b[0], False),
                (SHUTDOWN, states[FIN_WAIT2], False)], ""
    if set(states) == {FIN_WAIT1, ESTABLISHED}:
        return [(SILENT, states[FIN_WAIT1], False)], ""
    if set(states) == {LAST_ACK, FIN_WAIT2}:
        return [(OFF, a[0], False), (OFF, b[0], False), (SHUTDOWN, states[FIN_WAIT2], False),
                (SILENT, states[LAST_ACK], False)], ""
    if set(states) == {CLOSING, FIN_WAIT2}:
        return [(SILENT, states[CLOSING], False), (OFF, states[FIN_WAIT2], False),
                (SHUTDOWN, states[FIN_WAIT2], False)], ""
    if a[1] == b[1] == CLOSING:
        return [], "a simultaneous close (both ends CLOSING): each FIN must arrive before " \
                   "the other end's ACK, which one loopback cannot order"
    return [], (f"its ends are {_name(a[1])} and {_name(b[1])}: no close sequence leaves a "
                "connection so (a dump that was not atomic?)")


def alone_recipe(inode: int, state: int) -> tuple[Recipe, str]:
    """The actions for an end whose peer is outside the snapshot: a helper plays the peer."""
    me = inode
    if state == FIN_WAIT1:
        return [(SILENT, me, False)], ""
    if state == FIN_WAIT2:
        return [(HELPER, me, True), (OFF, me, False), (OFF, me, True), (SHUTDOWN, me, False),
                (DROP, me, True)], ""
    if state == CLOSE_WAIT:
        return [(HELPER, me, True), (OFF, me, False), (OFF, me, True), (SHUTDOWN, me, True),
                (DROP, me, True)], ""
    if state == LAST_ACK:
        return [(HELPER, me, True), (OFF, me, False), (OFF, me, True), (SHUTDOWN, me, True),
                (SILENT, me, False), (DROP, me, True)], ""
    if state == CLOSING:
        return [(HELPER, me, True), (SILENT, me, False), (OFF, me, True), (SHUTDOWN, me, True),
                (DROP, me, True)], ""
    return [], f"a TCP end in state {_name(state)} is not rehearsed"


def connections(ends: list[tuple[int, Any]]) -> dict[tuple[Any, ...], list[tuple[int, Any]]]:
    """TCP_REPAIR ends (step index, snapshot socket) grouped by connection (4-tuple)."""
    out: dict[tuple[Any, ...], list[tuple[int, Any]]] = {}
    for index, sock in ends:
        i = sock.inet
        key = tuple(sorted([(i.src, i.sport), (i.dst, i.dport)]))
        out.setdefault(key, []).append((index, sock))
    return out
