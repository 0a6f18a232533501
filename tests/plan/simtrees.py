"""Random process trees reachable by real syscalls: run random syscalls in the simulator,
then describe the result as a Snapshot (what a dump of it would hold)."""

from __future__ import annotations

import random

from criu_model.images.pb import inventory_pb2, process_pb2
from criu_model.planner.model import RESTORER, CloneFlag
from criu_model.planner.simulate import WORLD_INIT, KernelError, Pid, PidNs, Simulator, Task
from criu_model.snapshot import Snapshot


def random_world(rng: random.Random, steps: int, *, change_after_fork: bool = True,
                 init_setsid: bool | None = None) -> Simulator:
    """`steps` random syscalls from random processes (failures, as the kernel's, ignored).

    change_after_fork=False: a process changes session or group only before it
    forks. init_setsid (default: not change_after_fork): a namespace init starts
    its own session at once, as container inits do. Both off is every shape.
    """
    if init_setsid is None:
        init_setsid = not change_after_fork
    sim = Simulator(first_free=1000)
    keys = iter(range(1, 10**6))
    alive: list[int] = [RESTORER]
    for _ in range(steps):
        actor = rng.choice(alive)
        task = sim.tasks.get(actor)
        if task is None or task.zombie:
            continue
        op = rng.choices(["fork", "newpid", "thread", "setsid", "pgrp", "join", "exit", "wait",
                          "subreaper"], weights=[8, 1, 1, 2, 2, 3, 3, 1, 1])[0]
        try:
            if op in ("fork", "newpid"):
                key = next(keys)
                flags = CloneFlag.NEWPID if op == "newpid" else 0
                sim.clone(actor, key, [], int(flags))
                alive.append(key)
                if flags and init_setsid:
                    sim.setsid(key)  # as container inits do
            elif actor == RESTORER or (op in ("setsid", "pgrp", "join")
                                       and not change_after_fork and task.children):
                continue
            elif op == "thread":
                sim.clone(actor, next(keys), [], int(CloneFlag.THREAD | CloneFlag.SIGHAND
                                                     | CloneFlag.VM))
            elif op == "setsid":
                sim.setsid(actor)
            elif op == "pgrp":
                sim.setpgid(actor, actor, 0)
            elif op == "join":
                other = sim.tasks.get(rng.choice(alive))
                if other is not None and other.leader is None:
                    nr = other.pgrp.nr_in(task.ns)
                    if nr:
                        sim.setpgid(actor, actor, nr)
            elif op == "exit":
                sim.exit(actor, rng.choice([0, 3, 9]) << 8 if rng.random() < 0.7 else 9)
            elif op == "wait":
                zombies = [c.key for c in task.children if c.zombie]
                if zombies:
                    sim.wait(actor, rng.choice(zombies))
            elif op == "subreaper":
                sim.subreaper(actor)
        except KernelError:
            continue
    return sim


def to_snapshot(sim: Simulator, *, hide_outside: bool = False) -> Snapshot:
    """hide_outside: the restorer's session and group read as 0 (NSsid/NSpgid), as a
    dump taken inside a pid namespace sees its launcher's session."""
    restorer = sim.tasks[RESTORER]

    def nr(pid: Pid, ns: PidNs) -> int:
        return 0 if hide_outside and pid is restorer.pid else pid.nr_in(ns)
    procs: list[process_pb2.Process] = []
    roots: list[int] = []

    def describe(task: Task) -> process_pb2.Process:
        chain = task.ns.chain()
        proc = process_pb2.Process(
            pid=task.pid.numbers[0],
            ppid=task.parent.pid.numbers[0] if task.parent is not None else 0,
            pgid=nr(task.pgrp, chain[0]), sid=nr(task.session, chain[0]),
            ns_pids=task.pid.numbers,
            ns_pgids=[nr(task.pgrp, ns) for ns in chain],
            ns_sids=[nr(task.session, ns) for ns in chain],
            state="Z" if task.zombie else "S", exit_code=task.exit_code if task.zombie else 0)
        proc.namespaces.add(type="pid", inode=task.ns.id)
        proc.threads.add(tid=proc.pid, ns_tids=task.pid.numbers)
        for thread in task.threads:
            proc.threads.add(tid=thread.pid.numbers[0], ns_tids=thread.pid.numbers)
        return proc

    def walk(task: Task) -> None:
        for child in task.children:
            if child.leader is None:
                procs.append(describe(child))
                walk(child)

    for child in restorer.children:
        roots.append(child.pid.numbers[0])
    walk(restorer)
    init = sim.tasks[WORLD_INIT]
    for child in init.children:
        if child.key != RESTORER:
            procs.append(describe(child))
            walk(child)
    inv = inventory_pb2.Inventory(format_major=1, root_pids=roots)
    return Snapshot(inventory=inv, processes=procs)
