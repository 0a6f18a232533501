#!/usr/bin/env python3
"""Start-up of the CLI: `--help`, `show` of a small snapshot, a one-process `dump`.

Each command runs as a whole process, alternating with the baselines measured in
the same run: the bare interpreter (`python -c pass`) and, where a `criu`
binary is found ($CRIU, --criu or PATH), `criu dump --leave-running` of the
same one-process target. Median of --runs runs each. Bytecode is compiled first
(`compileall`), as a pip install does: with PYTHONDONTWRITEBYTECODE set (as on
some CI machines) every run would otherwise recompile the sources, which is not
what a user's start-up costs. Prints figures; never fails on timing.

Usage: scripts/bench/bench_startup.py [--runs N] [--criu PATH]   (dump needs root)
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def wall(argv: list[str], env: dict[str, str]) -> float:
    """Seconds from fork to exit of one run; a failed run is an error, not a figure."""
    t = time.perf_counter()
    res = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    took = time.perf_counter() - t
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {res.returncode}: "
                         f"{res.stderr.decode(errors='replace').strip()[-300:]}")
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--criu", help="criu binary for the `criu dump` baseline")
    args = ap.parse_args()
    compileall.compile_dir(str(ROOT / "criu_model"), quiet=1)
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    py = sys.executable
    work = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    target = subprocess.Popen(["sleep", "1000"], stdin=subprocess.DEVNULL)
    try:
        small = work / "small"
        subprocess.run([py, "-m", "criu_model", "dump", str(target.pid), "-D", str(small)],
                       check=True, env=env, stdout=subprocess.DEVNULL)
        counter = iter(range(1 << 30))

        def dump_argv() -> list[str]:
            return [py, "-m", "criu_model", "dump", str(target.pid), "-D",
                    str(work / f"d{next(counter)}")]

        criu = args.criu or os.environ.get("CRIU") or shutil.which("criu")

        def criu_argv() -> list[str]:
            out = work / f"c{next(counter)}"
            out.mkdir()
            return [str(criu), "dump", "-t", str(target.pid), "-D", str(out),
                    "--leave-running", "--shell-job", "-o", "/dev/null"]

        cases: dict[str, Callable[[], list[str]]] = {
            "python -c pass": lambda: [py, "-c", "pass"],
            "import criu_model.cli": lambda: [py, "-c", "import criu_model.cli"],
            "criu-model --help": lambda: [py, "-m", "criu_model", "--help"],
            "criu-model show SMALL": lambda: [py, "-m", "criu_model", "show", str(small)],
            "criu-model dump PID": dump_argv,
        }
        if criu and os.geteuid() == 0:
            cases["criu dump PID (--leave-running)"] = criu_argv
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, argv in cases.items():
                times[name].append(wall(argv(), env))
        med = {name: statistics.median(ts) for name, ts in times.items()}
        floor = med["python -c pass"]
        print(f"median of {args.runs} runs each, alternating; bytecode compiled; "
              f"{os.cpu_count()} cpus; criu: {criu or 'not found'}")
        print(f"{'command':34} {'wall ms':>8} {'over bare ms':>13}")
        for name, m in med.items():
            print(f"{name:34} {m * 1000:8.1f} {(m - floor) * 1000:13.1f}")
        if "criu dump PID (--leave-running)" in med:
            ratio = med["criu-model dump PID"] / med["criu dump PID (--leave-running)"]
            print(f"criu-model dump / criu dump: {ratio:.2f}x")
        print("targets (issue 15): --help and show under 60 ms over bare; dump under 80 ms wall")
    finally:
        target.kill()
        target.wait()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
