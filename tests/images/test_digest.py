"""images.digest.sha256: the same digest as hashlib's, whichever module computes it."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

from criu_model.images import digest


def test_same_digest_on_both_sides_of_the_threshold() -> None:
    for size in (0, 1, 4095, digest.LARGE - 1, digest.LARGE, digest.LARGE + 1):
        data = os.urandom(size)
        assert digest.sha256(data) == hashlib.sha256(data).digest(), size


def test_small_data_needs_no_openssl() -> None:
    script = ("import sys\nfrom criu_model.images import digest\n"
              "d = digest.sha256(b'x' * 1000)\n"
              "print(d.hex(), '_hashlib' in sys.modules, digest._builtin() is not None)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    assert out[0] == hashlib.sha256(b"x" * 1000).hexdigest()
    if out[2] == "True":  # a CPython built with its own SHA-256 (they all are, by default)
        assert out[1] == "False"
