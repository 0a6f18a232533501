#!/usr/bin/env python3
"""Sweep random process trees through plan() and the simulator; print every failure.

The trees are built by random syscalls in the kernel-rules simulator (tests/plan/
simtrees.py), so a creation order always exists: an `unplannable` blocker is a
planner gap, `plan-verification-failed` a wrong plan. The CI property test runs
a fixed sample; this sweeps as many seeds as you like.

Usage: scripts/fuzz_plan.py [FIRST [LAST]] [--restricted] [--hide-outside]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from criu_model.planner import RESTORER, Severity, plan
from criu_model.planner.check import compare
from criu_model.planner.simulate import simulate
from tests.plan.simtrees import random_world, to_snapshot


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("first", type=int, nargs="?", default=0)
    ap.add_argument("last", type=int, nargs="?", default=1000, help="exclusive")
    ap.add_argument("--restricted", action="store_true",
                    help="namespace inits call setsid() at once (the old property test)")
    ap.add_argument("--hide-outside", action="store_true",
                    help="the restorer's session reads as 0, as dumped inside a pid namespace")
    args = ap.parse_args()
    kinds: Counter[str] = Counter()
    trees = 0
    started = time.perf_counter()
    for seed in range(args.first, args.last):
        rng = random.Random(seed)
        world = random_world(rng, rng.randint(5, 60),
                             init_setsid=True if args.restricted else None)
        snap = to_snapshot(world, hide_outside=args.hide_outside)
        if not snap.processes:
            continue
        trees += 1
        p = plan(snap, live=False)
        blockers = [x for x in p.problems if x.severity is Severity.BLOCKER]
        if not blockers and compare(snap, simulate(p.steps), RESTORER, 0):
            kinds["end state differs"] += 1
            print(f"seed {seed}: simulated end state differs from the snapshot")
            continue
        for problem in blockers[:1]:
            kinds[problem.kind] += 1
            print(f"seed {seed}: {problem.kind}: {problem.message[:160]}")
    took = time.perf_counter() - started
    failed = sum(kinds.values())
    print(f"{trees} trees, {failed} failed ({100 * failed / max(trees, 1):.3f}%) "
          f"in {took:.1f} s: {dict(kinds)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
