"""parse_limits on a captured /proc/PID/limits table."""

from __future__ import annotations

import os
import resource

import pytest

from criu_model.collect.limits import RLIM_INFINITY, LimitsParseError, parse_limits

LIMITS = b"""Limit                     Soft Limit           Hard Limit           Units     
Max cpu time              unlimited            unlimited            seconds   
Max file size             unlimited            unlimited            bytes     
Max data size             unlimited            unlimited            bytes     
Max stack size            8388608              unlimited            bytes     
Max core file size        0                    unlimited            bytes     
Max resident set          unlimited            unlimited            bytes     
Max processes             96365                96365                processes 
Max open files            123                  456                  files     
Max locked memory         8388608              8388608              bytes     
Max address space         unlimited            unlimited            bytes     
Max file locks            unlimited            unlimited            locks     
Max pending signals       96365                96365                signals   
Max msgqueue size         819200               819200               bytes     
Max nice priority         0                    0                    
Max realtime priority     0                    0                    
Max realtime timeout      unlimited            unlimited            us        
"""  # noqa: W291 - the kernel pads with trailing spaces


def test_every_resource() -> None:
    limits = {lim.resource: (lim.soft, lim.hard) for lim in parse_limits(LIMITS)}
    assert len(limits) == 16
    assert limits["RLIMIT_CPU"] == (RLIM_INFINITY, RLIM_INFINITY)
    assert limits["RLIMIT_STACK"] == (8388608, RLIM_INFINITY)
    assert limits["RLIMIT_CORE"] == (0, RLIM_INFINITY)
    assert limits["RLIMIT_NOFILE"] == (123, 456)
    assert limits["RLIMIT_NICE"] == (0, 0)  # no unit column
    assert limits["RLIMIT_RTTIME"] == (RLIM_INFINITY, RLIM_INFINITY)


def test_unknown_resource_named_by_index() -> None:
    text = LIMITS + (b"Max future thing          5                    6"
                     b"                    things    \n")
    assert parse_limits(text)[-1] == ("RLIMIT_16", 5, 6)


@pytest.mark.parametrize("bad", [b"", b"Max cpu time  1 2\n",
                                 b"Limit x\nMax cpu time              lots                 1\n"])
def test_malformed(bad: bytes) -> None:
    with pytest.raises(LimitsParseError):
        parse_limits(bad)


def test_own_limits_match_getrlimit() -> None:
    with open(f"/proc/{os.getpid()}/limits", "rb") as f:
        limits = {lim.resource: (lim.soft, lim.hard) for lim in parse_limits(f.read())}
    for name in ("RLIMIT_NOFILE", "RLIMIT_STACK", "RLIMIT_CORE", "RLIMIT_AS"):
        soft, hard = resource.getrlimit(getattr(resource, name))
        as_kernel = tuple(RLIM_INFINITY if v == resource.RLIM_INFINITY else v
                          for v in (soft, hard))
        assert limits[name] == as_kernel
