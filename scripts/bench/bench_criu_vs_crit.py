#!/usr/bin/env python3
"""A real `criu dump` of an N-process tree, read by criu-model and by crit, in one run.

Spawns a sleeping tree of N processes (a /bin/sh root, 10 /bin/sh children,
the rest /bin/sleep grandchildren; its own session, stdio on /dev/null, the
environment PATH only), dumps it with `criu dump --leave-running` into a
temporary directory, kills the tree, then times, round after round (the
median is printed):

- ``load_criu``: criu_model.formats.criu.load_criu(DIR) in this process;
- ``criu-model show DIR``: the CLI in a new process (wall time);
- ``crit decode`` of every image: one `crit decode -i IMG -o /dev/null` per
  image file (crit decodes one image per run), pages-*.img excluded as crit
  has no decoder for raw pages -- total wall time of the loop;
- ``crit x DIR ps``: one crit run over the tree;
- with ``--pycriu DIR`` (a directory holding the pycriu package with its
  generated *_pb2 modules): pycriu.images.load of every image in one new
  process (crit's decoder without a process per image).

Needs root, a working CRIU binary and crit:

    scripts/bench/bench_criu_vs_crit.py --criu /path/to/criu --crit /path/to/crit \
        [--pycriu DIR] [-n 200] [--rounds 3] [--keep DIR] [--no-per-image]

Without --criu or --crit (or when they do not run) it says so and exits 0.
The dump is deleted afterwards unless --keep is given.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

SLEEP = "/bin/sleep"
SH = "/bin/sh"


def skip(why: str) -> None:
    print(f"bench_criu_vs_crit: skipped: {why}")
    raise SystemExit(0)


def _runs(cmd: list[str]) -> str | None:
    """None when `cmd` runs and exits 0, else a short reason."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except OSError as err:
        return f"{cmd[0]}: {err.strerror}"
    except subprocess.TimeoutExpired:
        return f"{' '.join(cmd)}: timed out"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return f"{' '.join(cmd)}: {last}"
    return None


def spawn_tree(n: int) -> subprocess.Popen[bytes]:
    """A /bin/sh root with 10 /bin/sh children sharing the n-11 sleeps; waits until all are up."""
    if n < 11:
        raise SystemExit("-n must be at least 11")
    extra = n - 11
    sizes = [extra // 10 + (1 if i < extra % 10 else 0) for i in range(10)]
    kids = " ".join(
        f"{SH} -c 'for i in $(seq {k}); do {SLEEP} 100000 & done; wait' &" for k in sizes)
    root = subprocess.Popen([SH, "-c", f"{kids} wait"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={"PATH": "/usr/bin:/bin"}, start_new_session=True,
                            close_fds=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if _count(root.pid) == n and all(_comm(p) == "sleep" for p in _leaves(root.pid)):
            return root
        time.sleep(0.05)
    kill_tree(root)
    raise SystemExit(f"the tree did not reach {n} processes in 30 s")


def _children(pid: int) -> list[int]:
    out: list[int] = []
    task = Path(f"/proc/{pid}/task")
    try:
        for tid in task.iterdir():
            out += [int(c) for c in (tid / "children").read_text().split()]
    except OSError:
        return []
    return out


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += _children(p)
    return out


def _count(pid: int) -> int:
    return len(_tree(pid))


def _leaves(pid: int) -> list[int]:
    return [p for p in _tree(pid) if not _children(p)]


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def kill_tree(root: subprocess.Popen[bytes]) -> None:
    """SIGKILL the tree's process group (its own session: only its processes)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(root.pid, signal.SIGKILL)
    root.wait()


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_quiet(cmd: list[str], env: dict[str, str] | None = None) -> None:
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True, env=env)


_PYCRIU_LOOP = """
import sys, pycriu
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        pycriu.images.load(f, pretty=False)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--criu", help="a CRIU binary that dumps on this kernel")
    ap.add_argument("--crit", help="crit (an executable)")
    ap.add_argument("--pycriu", help="directory holding the pycriu package (generated *_pb2)")
    ap.add_argument("-n", type=int, default=200, help="processes in the tree (default 200)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds, median printed (default 3)")
    ap.add_argument("--keep", help="keep the CRIU dump in this directory (must not exist)")
    ap.add_argument("--no-per-image", action="store_true",
                    help="skip the crit decode loop (one crit run per image: minutes)")
    args = ap.parse_args()
    if not args.criu or not args.crit:
        skip("give --criu PATH and --crit PATH (a CRIU binary and crit)")
    if os.geteuid() != 0:
        skip("criu dump needs root")
    for cmd in ([args.criu, "--version"], [args.crit, "--help"]):
        why = _runs(cmd)
        if why is not None:
            skip(why)

    from criu_model.formats.criu import load_criu

    work = Path(tempfile.mkdtemp(prefix="bench-criu-vs-crit-"))
    dump = Path(args.keep) if args.keep else work / "dump"
    dump.mkdir(parents=True)
    try:
        root = spawn_tree(args.n)
        try:
            t0 = time.perf_counter()
            done = subprocess.run([args.criu, "dump", "-t", str(root.pid), "-D", str(dump),
                                   "--leave-running", "-o", "dump.log", "-v4"],
                                  capture_output=True, text=True, check=False)
            dump_s = time.perf_counter() - t0
        finally:
            kill_tree(root)
        if done.returncode != 0:
            log = (dump / "dump.log").read_text(errors="replace").splitlines()
            errors = [line for line in log if "Error" in line][-3:]
            raise SystemExit(f"criu dump failed ({done.returncode}): {' | '.join(errors)}")
        images = sorted(p for p in dump.iterdir()
                        if p.name.endswith(".img") and not p.name.startswith("pages-"))
        files = [p for p in dump.iterdir() if p.is_file()]
        size = sum(p.stat().st_size for p in files)
        print(f"criu dump of {args.n} processes: {dump_s:.2f} s; {len(files)} files, "
              f"{size / 2**20:.1f} MiB; {len(images)} images crit decodes "
              f"(pages-*.img left out)")

        snap = load_criu(dump)
        assert len(snap.processes) == args.n, len(snap.processes)
        cli = [sys.executable, "-m", "criu_model", "show", str(dump)]
        crit_x = [args.crit, "x", str(dump), "ps"]
        env = None
        if args.pycriu:
            env = {**os.environ, "PYTHONPATH": args.pycriu}
        measures: dict[str, Callable[[], object]] = {
            "load_criu (in process)": lambda: load_criu(dump),
            "criu-model show DIR": lambda: run_quiet(cli),
            "crit x DIR ps": lambda: run_quiet(crit_x),
        }
        if not args.no_per_image:
            measures[f"crit decode x {len(images)} images"] = lambda: [
                run_quiet([args.crit, "decode", "-i", str(p), "-o", os.devnull])
                for p in images]
        if args.pycriu:
            loop = [sys.executable, "-c", _PYCRIU_LOOP, *map(str, images)]
            measures["pycriu load, every image, one process"] = lambda: run_quiet(loop, env)
        times: dict[str, list[float]] = {name: [] for name in measures}
        for _ in range(args.rounds):
            for name, fn in measures.items():
                times[name].append(timed(fn))
        width = max(map(len, times))
        print(f"{'':{width}}  median of {args.rounds} (all rounds)")
        for name, ts in times.items():
            print(f"{name:{width}}  {statistics.median(ts) * 1000:8.1f} ms  "
                  f"({', '.join(f'{t * 1000:.0f}' for t in ts)})")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if args.keep:
            print(f"kept the dump in {dump}")


if __name__ == "__main__":
    main()
