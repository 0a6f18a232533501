"""A probed option whose value is the socket's history, not a setting (ZDTM socket-tcp-close2).

A TCP socket that was connected reads the path's MSS through TCP_MAXSEG; 32768 (from
loopback) is more than setsockopt takes, and replaying it failed the whole socket
with EINVAL. Such a value is neither replayed nor compared.
"""

from __future__ import annotations

import socket

from criu_model.images.pb import files_pb2
from criu_model.planner.files import option_from_history, probe_option_numbers, probe_recipe


def test_a_history_mss_is_not_replayed() -> None:
    probe = files_pb2.SocketProbe(domain=socket.AF_INET, type=socket.SOCK_STREAM,
                                  protocol=socket.IPPROTO_TCP,
                                  options={"TCP_MAXSEG": 32768, "IP_TTL": 7})
    args: dict[str, object] = {}
    probe_recipe(probe, args)
    numbers = probe_option_numbers()
    replayed = {tuple(o[:2]) for o in args["setsockopt"]}   # type: ignore[union-attr]
    assert numbers["IP_TTL"] in replayed and numbers["TCP_MAXSEG"] not in replayed
    assert option_from_history("TCP_MAXSEG", 32768)
    assert not option_from_history("TCP_MAXSEG", 1400)      # a user's MSS: replayed
    with socket.socket() as s:                              # and the kernel agrees
        level, number = numbers["TCP_MAXSEG"]
        s.setsockopt(level, number, 1400)
        try:
            s.setsockopt(level, number, 32768)
        except OSError as err:
            assert err.errno == 22
        else:
            raise AssertionError("the kernel took an MSS above 32767")
