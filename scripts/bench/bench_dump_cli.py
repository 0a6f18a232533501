#!/usr/bin/env python3
"""A 200-process tree dumped by whole commands: `criu-model dump` against psutil and CRIU.

Issue 15's comparison, every side a whole process (start-up included),
alternating, median of --runs: `criu-model dump ROOT -D DIR` (state and page
counts, the default), the same collection done with psutil in a fresh
interpreter (`Process.as_dict()` + `memory_maps()` per process), and, where a
`criu` binary is found ($CRIU, --criu or PATH), `criu dump --leave-running` of
the same tree (which also writes every page: CRIU has no state-only dump).
Bytecode is compiled first, as a pip install has it. Prints figures; never
fails on timing.

Usage: scripts/bench/bench_dump_cli.py [--procs N] [--runs N] [--criu PATH]   (root)
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_dump import spawn_tree  # noqa: E402
from bench_startup import wall as _run  # noqa: E402

PSUTIL_SIDE = """
import sys, psutil
root = psutil.Process(int(sys.argv[1]))
for p in [root, *root.children(recursive=True)]:
    p.as_dict()
    p.memory_maps(grouped=False)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, default=200)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--criu", help="criu binary (default $CRIU, then PATH)")
    args = ap.parse_args()
    compileall.compile_dir(str(HERE.parents[1] / "criu_model"), quiet=1)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    criu = args.criu or os.environ.get("CRIU") or shutil.which("criu")
    work = Path(tempfile.mkdtemp(prefix="bench-dump-cli-", dir="/dev/shm"))
    root = spawn_tree(args.procs)
    times: dict[str, list[float]] = {"criu-model dump": [], "psutil (whole process)": []}
    if criu:
        times["criu dump --leave-running"] = []
    try:
        time.sleep(0.2)
        for i in range(args.runs):
            out = work / f"cm{i}"
            times["criu-model dump"].append(_run(
                [sys.executable, "-m", "criu_model", "dump", str(root), "-D", str(out)], env))
            shutil.rmtree(out)
            times["psutil (whole process)"].append(_run(
                [sys.executable, "-c", PSUTIL_SIDE, str(root)], env))
            if criu:
                out = work / f"criu{i}"
                out.mkdir()
                times["criu dump --leave-running"].append(_run(
                    [criu, "dump", "-t", str(root), "-D", str(out), "--leave-running",
                     "--shell-job", "-o", "/dev/null"], env))
                shutil.rmtree(out)
        med = {k: statistics.median(v) for k, v in times.items()}
        ours = med["criu-model dump"]
        print(f"{args.procs} processes, median of {args.runs} alternating runs, whole "
              f"processes; load average {os.getloadavg()[0]:.2f}")
        for name, m in med.items():
            print(f"  {name:28} {m * 1000:7.1f} ms   criu-model / this: {ours / m:.2f}x")
        print(f"  per process: {ours / args.procs * 1000:.2f} ms (start-up included)")
        print("targets (issue 15): at most 0.5x psutil's and 0.5x criu dump's time")
    finally:
        for p in [*psutil.Process(root).children(recursive=True), psutil.Process(root)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        os.waitpid(root, 0)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
