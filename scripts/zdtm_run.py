#!/usr/bin/env python3
"""Acceptance run on CRIU's ZDTM static tests: dump each with criu-model, compare, plan.

Not part of CI and nothing of CRIU is vendored: point it to a CRIU source
checkout. It builds test/zdtm/lib and test/zdtm/static there (libaio-dev,
libcap-dev, libseccomp-dev... are needed for every test to build; a test that
does not build is listed as such), then, for every static test of the host
flavour (the "h" flavour of its .desc, no "noauto" flag), as zdtm.py would:

1. start it (``make NAME.pid``, as uid 18943 unless the test is "suid");
2. sample the live state: the tree (pid, ppid, pgid, sid of each process
   below the test's pid) and every fd with lsof (type, inode, protocol);
3. ``criu-model dump`` it (ptrace freeze) and compare the snapshot with the
   samples: the tree must equal ps, and an fd matches when its number, inode
   and kind agree with lsof and, for a socket, its family and protocol (TCP,
   UDP, PING, RAW, NETLINK, UNIX, PACKET) agree with lsof's (a test's
   --ghost-limit from its .desc is passed on, as zdtm.py passes it to CRIU);
4. ``criu-model plan --offline`` it (feasible, or the blockers' kinds; a
   "crfail" test is one whose CRIU dump is expected to fail); with
   --rehearse, also ``plan --rehearse`` the snapshot (the kernel as judge, in a
   sandbox: the test itself is not touched) and count matched, mismatched and
   not rehearsed objects, listing every mismatch;
5. stop it (SIGTERM) and read PASS/FAIL from NAME.out; a FAIL is run again
   without any dump, to tell a harm of ours from a test that fails here anyway.

Prints one row per test and the totals. Run as root (the tests and ptrace
need it). Usage:

    scripts/zdtm_run.py CRIU_SOURCE_DIR [--only REGEX] [--no-build] [--rehearse]
                        [--json OUT]
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

ZDTM_ENV = {"ZDTM_UID": "18943", "ZDTM_GID": "58467", "ZDTM_GROUPS": "27495 48244"}
START_TIMEOUT = 30.0
SOCK_CLASS = {6: "TCP", 17: "UDP", 136: "UDPLITE", 1: "PING", 58: "PING"}
LSOF_PROTOCOLS = {"TCP": "TCP", "UDP": "UDP", "UDPLITE": "UDPLITE", "PING": "PING",
                  "ICMP": "PING", "ICMPV6": "PING", "RAW": "RAW", "NETLINK": "NETLINK",
                  "UNIX": "UNIX", "UNIX-STREAM": "UNIX", "PACKET": "PACKET"}


@dataclass
class Row:
    test: str
    dump: str = ""            # "ok", or why not
    tree: str = ""            # "ok", or the first difference
    fds: int = 0
    fds_matched: int = 0
    mismatches: list[str] = field(default_factory=list)
    masks: str = ""           # "ok": every thread's SigBlk/SigPnd as sampled live
    plan: str = ""            # "feasible", or the blocker kinds
    rehearsal: dict[str, int] = field(default_factory=dict)   # summary of plan --rehearse
    rehearsal_mismatches: list[str] = field(default_factory=list)
    not_rehearsed: list[str] = field(default_factory=list)     # the reasons
    result: str = ""          # PASS, FAIL, or why it did not run
    baseline: str = ""        # the result of a run without a dump (FAILs only)
    seconds: float = 0.0


# ------------------------------------------------------------------ the tests


def build(src: Path) -> None:
    zdtm = src / "test" / "zdtm"
    for sub in ("lib", "static"):
        done = subprocess.run(["make", "-k", "-j", str(os.cpu_count() or 1), "-C",
                               str(zdtm / sub)], capture_output=True, text=True)
        if done.returncode:
            errors = [line for line in done.stdout.splitlines() + done.stderr.splitlines()
                      if "error" in line.lower()]
            print(f"make {sub}: {len(errors)} error lines (tests that did not build are "
                  "skipped)", file=sys.stderr)


def desc(test: Path) -> dict[str, str]:
    path = test.with_name(test.name + ".desc")
    if path.exists() and path.stat().st_size:
        text = path.read_text()
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            # A few are expressions (mnt_ext_dev.desc reads the environment):
            # zdtm.py evaluates them the same way, trusting the checkout.
            return eval(text, {"os": os, "__builtins__": {}})
    return {}


def host_tests(static: Path, only: str | None) -> tuple[list[Path], list[tuple[str, str]]]:
    """The static tests zdtm.py runs in the host flavour (run -a), and those it skips.

    As zdtm.py's all_tests(): every executable regular file of the directory
    but .checkskip and .hook scripts and route_rules.
    """
    tests, skipped = [], []
    for test in sorted(static.iterdir()):
        name = test.name
        if name.endswith((".checkskip", ".hook", ".sh", ".py", ".so")) or name == "route_rules" \
                or not test.is_file() or test.is_symlink() or not os.access(test, os.X_OK):
            continue
        if only and not re.search(only, name):
            continue
        d = desc(test)
        flags = d.get("flags", "").split()
        if "h" not in d.get("flavor", "h ns uns").split():
            skipped.append((name, "no host flavour"))
        elif "noauto" in flags:
            skipped.append((name, "noauto"))
        elif d.get("arch", os.uname().machine) != os.uname().machine:
            skipped.append((name, "another architecture"))
        else:
            tests.append(test)
    # cgroup tests leave cgroup v1 hierarchies behind (cgroup_ifpriomap: net_prio), after
    # which sockets are not probed: they run last, so they change only their own rows.
    tests.sort(key=lambda t: (t.name.startswith("cgroup"), t.name))
    return tests, skipped


def checkskip(test: Path) -> bool:
    chs = test.with_name(test.name + ".checkskip")
    return os.access(chs, os.X_OK) and subprocess.run([str(chs)]).returncode != 0


def hook(test: Path, stage: str) -> None:
    """NAME.hook --post-start / --pre-dump / --clean, as zdtm.py runs them."""
    script = test.with_name(test.name + ".hook")
    if os.access(script, os.X_OK):
        subprocess.run([str(script), stage], cwd=test.parent, capture_output=True, timeout=60)


def v1_net_controllers() -> str:
    """net_cls/net_prio attached to a cgroup v1 hierarchy (then sockets are not probed)."""
    with open("/proc/cgroups") as f:
        return ",".join(w[0] for line in f if (w := line.split())[:1] in (["net_cls"],
                                                                           ["net_prio"])
                        and w[1] != "0")


def release_v1_net_controllers() -> None:
    """Give net_cls/net_prio back to cgroup v2 after the run: cgroup_ifpriomap leaves
    net_prio on an unmounted v1 hierarchy, which the kernel drops once it is mounted and
    unmounted again with no child cgroup (until then sockets are not probed)."""
    for name in v1_net_controllers().split(","):
        if not name:
            continue
        with tempfile.TemporaryDirectory(prefix="zdtm-cg-") as where:
            if subprocess.run(["mount", "-t", "cgroup", "-o", name, "none", where],
                              capture_output=True).returncode:
                continue
            children = [d for d in os.scandir(where) if d.is_dir()]
            subprocess.run(["umount", where], capture_output=True)
        if children:
            print(f"warning: {name} stays on cgroup v1: {len(children)} child cgroups")


def make(test: Path, target: str, suid: bool, timeout: float) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TMPDIR=os.environ.get("TMPDIR", "/tmp"))
    if not suid:
        env.update(ZDTM_ENV)
    return subprocess.run(["make", "--no-print-directory", "-C", str(test.parent),
                           f"{test.name}.{target}"], env=env, capture_output=True, text=True,
                          timeout=timeout)


def start(test: Path, suid: bool) -> int:
    make(test, "cleanout", suid, 30)
    if not suid:
        test.parent.chmod(test.parent.stat().st_mode | 0o222)
    done = make(test, "pid", suid, START_TIMEOUT)
    if done.returncode:
        raise RuntimeError(f"start: {(done.stderr or done.stdout).strip()[-200:]}")
    hook(test, "--post-start")
    return int(test.with_name(test.name + ".pid").read_text().split()[0])


def stop(test: Path, pid: int, timeout: float) -> str:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.02)
    if os.path.exists(f"/proc/{pid}"):
        kill_tree(pid)
        return "TIMEOUT"
    out = test.with_name(test.name + ".out")
    text = out.read_text(errors="replace") if out.exists() else ""
    return "PASS" if "PASS" in text.split() else "FAIL"


def kill_tree(pid: int) -> None:
    for p in [pid, *descendants(pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


# ------------------------------------------------------------------ live samples


def ps_rows() -> dict[int, tuple[int, int, int]]:
    """pid -> (ppid, pgid, sid) of every process, from ps."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,pgid=,sid="], capture_output=True,
                         text=True).stdout
    rows = {}
    for line in out.splitlines():
        pid, ppid, pgid, sid = (int(x) for x in line.split())
        rows[pid] = (ppid, pgid, sid)
    return rows


def descendants(pid: int, rows: dict[int, tuple[int, int, int]] | None = None) -> list[int]:
    rows = ps_rows() if rows is None else rows
    kids: dict[int, list[int]] = {}
    for p, (ppid, _, _) in rows.items():
        kids.setdefault(ppid, []).append(p)
    out, todo = [], list(kids.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def thread_masks(pids: list[int]) -> dict[int, tuple[int, int]]:
    """tid -> (SigBlk, SigPnd) of every thread, from /proc/PID/task/TID/status."""
    out = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError), \
                        open(f"/proc/{pid}/task/{tid}/status", "rb") as f:
                    fields = dict(line.split(b":", 1) for line in f if b":" in line)
                    out[int(tid)] = (int(fields[b"SigBlk"], 16), int(fields[b"SigPnd"], 16))
    return out


def lsof_fds(pids: list[int]) -> dict[tuple[int, int], dict[str, str]]:
    """(pid, fd) -> lsof's fields t (type), i (inode), P (protocol), n (name)."""
    if not pids:
        return {}
    out = subprocess.run(["lsof", "-n", "-P", "-w", "-b", "-p", ",".join(map(str, pids)),
                          "-F", "ftinP"], capture_output=True, text=True).stdout
    fds: dict[tuple[int, int], dict[str, str]] = {}
    pid, cur = 0, None
    for line in out.splitlines():
        tag, value = line[:1], line[1:]
        if tag == "p":
            pid, cur = int(value), None
        elif tag == "f":
            cur = {} if value.isdigit() else None
            if cur is not None:
                fds[(pid, int(value))] = cur
        elif cur is not None:
            cur[tag] = value
    return fds


def lsof_class(entry: dict[str, str]) -> str:
    """The socket protocol class lsof names: TCP, UDP, PING, RAW, NETLINK, UNIX, PACKET."""
    kind = entry.get("t", "")
    if kind == "unix":
        return "UNIX"
    if kind in ("IPv4", "IPv6"):
        return LSOF_PROTOCOLS.get(entry.get("P", "").upper(), entry.get("P", "?"))
    if kind in ("raw", "raw6"):
        return "RAW"
    if kind == "netlink":
        return "NETLINK"
    if kind == "pack":
        return "PACKET"
    name = entry.get("n", "")
    if name.startswith("protocol: "):
        proto = name[len("protocol: "):].upper().removesuffix("V6")
        return LSOF_PROTOCOLS.get(proto, proto)
    return kind or "?"


# ------------------------------------------------------------------ comparison


def our_class(fd, snap) -> str:  # type: ignore[no-untyped-def]
    """Protocol class of a socket fd in the snapshot (sockets.img, else the probe)."""
    from criu_model.images.pb import sockets_pb2

    sock = snap.sockets_by_inode.get(fd.socket.inode)
    if sock is not None:
        kind = sock.WhichOneof("kind")
        if kind == "unix":
            return "UNIX"
        if kind == "netlink":
            return "NETLINK"
        if kind == "packet":
            return "PACKET"
        if kind == "inet":
            if sock.type == 3:
                return "RAW"
            return SOCK_CLASS.get(sock.inet.protocol, str(sock.inet.protocol))
        return sockets_pb2.SocketFamily.Name(sock.family)
    if fd.socket.HasField("probe"):
        p = fd.socket.probe
        if p.domain == 1:
            return "UNIX"
        if p.domain == 16:
            return "NETLINK"
        if p.domain == 17:
            return "PACKET"
        if p.type == 3:
            return "RAW"
        return SOCK_CLASS.get(p.protocol, str(p.protocol))
    return "unidentified"


def compare(row: Row, snap, root: int, tree: dict[int, tuple[int, int, int]],  # type: ignore[no-untyped-def]
            lsof: dict[tuple[int, int], dict[str, str]]) -> None:
    from criu_model.images.pb import files_pb2

    dumped = {p.pid: (p.ppid, p.pgid, p.sid) for p in snap.processes}
    if dumped != tree:
        diff = sorted(set(dumped.items()) ^ set(tree.items()))[:3]
        row.tree = f"differs: {diff}"
    else:
        row.tree = "ok"
    seen = set()
    for pid, table in snap.fds_by_pid.items():
        for fd in table.fds:
            seen.add((pid, fd.fd))
            row.fds += 1
            entry = lsof.get((pid, fd.fd))
            why = ""
            if entry is None:
                why = "not in lsof"
            elif fd.kind == files_pb2.FD_UNKNOWN:
                why = f"kind unknown ({entry.get('t')} {entry.get('n', '')[:40]})"
            elif "i" in entry and int(entry["i"]) != fd.ino:
                why = f"inode {fd.ino} != lsof {entry['i']}"
            elif fd.kind == files_pb2.FD_SOCKET and our_class(fd, snap) != lsof_class(entry):
                why = f"socket {our_class(fd, snap)} != lsof {lsof_class(entry)}"
            if why:
                row.mismatches.append(f"{pid}:{fd.fd} {why}")
            else:
                row.fds_matched += 1
    for key in sorted(set(lsof) - seen):
        if key[0] in dumped:
            row.fds += 1
            row.mismatches.append(f"{key[0]}:{key[1]} in lsof, not dumped")


def plan_verdict(directory: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "criu_model", "plan", "--offline", "--json",
                           str(directory)], capture_output=True, text=True, timeout=120)
    if done.returncode not in (0, 3):
        return f"error: {done.stderr.strip()[:120]}"
    plan = json.loads(done.stdout)
    kinds = sorted({p["kind"] for p in plan.get("problems", []) if p.get("severity") == "blocker"})
    return "feasible" if done.returncode == 0 else "blocked: " + ",".join(kinds)


def rehearse(row: Row, directory: Path) -> None:
    """`plan --rehearse --json`: its summary, each mismatch (kind id: fields) and the
    reasons of what was not rehearsed."""
    done = subprocess.run([sys.executable, "-m", "criu_model", "plan", "--rehearse", "--json",
                           str(directory)], capture_output=True, text=True, timeout=300)
    if done.returncode not in (0, 3, 4):
        row.rehearsal = {"error": done.returncode}
        row.rehearsal_mismatches = [done.stderr.strip()[-200:]]
        return
    report = json.loads(done.stdout)
    row.rehearsal = report["summary"]
    for e in report["entries"]:
        if e["status"] == "mismatched":
            fields = ",".join(m["field"] for m in e.get("mismatches", []))
            row.rehearsal_mismatches.append(f"{e['kind']} {e['id']}: {fields or e.get('reason')}")
        elif e["status"] == "not_rehearsed":
            row.not_rehearsed.append(f"{e['kind']}: {e.get('reason', '')}"[:120])


def dump_options(d: dict[str, str]) -> list[str]:
    """The CRIU dump options of a .desc that criu-model shares: --ghost-limit."""
    words = (d.get("opts", "") + " " + d.get("dopts", "")).split()
    out = []
    for i, word in enumerate(words):
        if word == "--ghost-limit" and i + 1 < len(words):
            out += ["--ghost-limit", words[i + 1]]
        elif word.startswith("--ghost-limit="):
            out += ["--ghost-limit", word.split("=", 1)[1]]
    return out


def run_one(test: Path, work: Path, with_rehearsal: bool = False) -> Row:
    row = Row(test.name)
    began = time.monotonic()
    d = desc(test)
    suid = "suid" in d.get("flags", "").split()
    timeout = float(d.get("timeout") or 30)
    if checkskip(test):
        row.result = "skipped (checkskip)"
        return row
    try:
        pid = start(test, suid)
    except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as err:
        row.result = f"not started: {err}"[:200]
        return row
    try:
        rows = ps_rows()
        tree_pids = [pid, *descendants(pid, rows)]
        tree = {p: rows[p] for p in tree_pids if p in rows}
        lsof = lsof_fds(tree_pids)
        masks_before = thread_masks(tree_pids)
        hook(test, "--pre-dump")
        directory = work / test.name
        done = subprocess.run([sys.executable, "-m", "criu_model", "dump", "--freeze", "ptrace",
                               *dump_options(d), "-D", str(directory), str(pid)],
                              capture_output=True, text=True, timeout=120)
        if done.returncode:
            row.dump = f"failed: {done.stderr.strip().splitlines()[-1:]}"
        else:
            row.dump = "ok"
            import criu_model

            snap = criu_model.load(str(directory))
            compare(row, snap, pid, tree, lsof)
            after = thread_masks(tree_pids)
            bad = [f"{t.tid}: {t.sig_blocked:x}/{t.sig_pending:x}" for p in snap.processes
                   for t in p.threads
                   if (t.sig_blocked, t.sig_pending) not in
                   (masks_before.get(t.tid), after.get(t.tid))]
            row.masks = "ok" if not bad else "differs: " + ", ".join(bad[:3])
            row.plan = plan_verdict(directory)
            if row.plan.startswith("blocked") and "crfail" in d.get("flags", "").split():
                row.plan += " (crfail: CRIU's dump is expected to fail too)"
            if with_rehearsal:
                rehearse(row, directory)
    except subprocess.TimeoutExpired as err:
        row.dump = f"timeout: {err}"
    finally:
        row.result = stop(test, pid, timeout)
        hook(test, "--clean")
        shutil.rmtree(work / test.name, ignore_errors=True)
    if row.result != "PASS":
        try:
            row.baseline = stop(test, start(test, suid), timeout)
            hook(test, "--clean")
        except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as err:
            row.baseline = f"not started: {err}"[:80]
    make(test, "cleanout", suid, 30)
    row.seconds = round(time.monotonic() - began, 2)
    return row


@contextlib.contextmanager
def _restored(path: Path, text: str | None):  # type: ignore[no-untyped-def]
    """Write `text` back to `path` at the end (a sysctl a test changes)."""
    try:
        yield
    finally:
        if text is not None and path.read_text() != text:
            path.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("criu_source", type=Path)
    parser.add_argument("--only", help="run only tests whose name matches this regex")
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--json", type=Path, help="write every row as JSON here")
    parser.add_argument("--rehearse", action="store_true",
                        help="also rehearse each snapshot's plan (plan --rehearse)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("run as root: the tests and the ptrace freeze need it")
    static = args.criu_source / "test" / "zdtm" / "static"
    if not static.is_dir():
        parser.error(f"{static} is not a directory: not a CRIU source tree")
    if not args.no_build:
        build(args.criu_source)
    tests, skipped = host_tests(static, args.only)
    rows: list[Row] = []
    # socket_icmp and socket6_icmp widen the host's ping_group_range and leave it so
    ping_range = Path("/proc/sys/net/ipv4/ping_group_range")
    saved_range = ping_range.read_text() if ping_range.exists() else None
    with tempfile.TemporaryDirectory(prefix="zdtm-run-") as tmp, \
            _restored(ping_range, saved_range):
        env = v1_net_controllers()
        for test in tests:
            row = run_one(test, Path(tmp), args.rehearse)
            rows.append(row)
            if v1_net_controllers() != env:
                env = v1_net_controllers()
                print(f"warning: after {test.name}, net_cls/net_prio on cgroup v1: "
                      f"{env or 'none'}; sockets are probed only when none", flush=True)
            note = "; ".join(row.mismatches[:2])
            base = f" (without dump: {row.baseline})" if row.baseline else ""
            print(f"{row.test:28} dump={row.dump or '-':4} tree={row.tree or '-':3} "
                  f"masks={row.masks or '-':3} "
                  f"fds={row.fds_matched}/{row.fds} plan={row.plan or '-'} "
                  f"{row.result}{base} {note}", flush=True)
            if row.rehearsal:
                print(f"{'':28} rehearsal {row.rehearsal} "
                      f"{'; '.join(row.rehearsal_mismatches[:3])}", flush=True)
    release_v1_net_controllers()
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    ran = [r for r in rows if r.dump]
    fails = [r for r in rows if r.result not in ("PASS",) and r.dump]
    blocked = Counter(k for r in rows if r.plan.startswith("blocked")
                      for k in r.plan.split(": ", 1)[1].split(" (")[0].split(","))
    print()
    print(f"tests: {len(tests)} run, {len(skipped)} skipped "
          f"({Counter(why for _, why in skipped).most_common()})")
    print(f"dumps: {sum(r.dump == 'ok' for r in ran)}/{len(ran)} ok; "
          f"trees equal to ps: {sum(r.tree == 'ok' for r in ran)}; thread masks equal to "
          f"live samples: {sum(r.masks == 'ok' for r in ran)}")
    print(f"fds matched lsof: {sum(r.fds_matched for r in ran)}/{sum(r.fds for r in ran)}")
    print(f"plans feasible: {sum(r.plan == 'feasible' for r in ran)}/{len(ran)}; "
          f"blocked by {dict(blocked)}")
    rehearsed = [r for r in ran if "matched" in r.rehearsal]
    if rehearsed:
        total = Counter()
        for r in rehearsed:
            total.update({k: v for k, v in r.rehearsal.items() if isinstance(v, int)})
        clean = sum(not r.rehearsal.get("mismatched") for r in rehearsed)
        reasons = Counter(x for r in rehearsed for x in r.not_rehearsed)
        print(f"rehearsals: {len(rehearsed)} run, {clean} with no mismatch; objects "
              f"{dict(total)}; not rehearsed, most often: {reasons.most_common(6)}")
        for r in rehearsed:
            if r.rehearsal.get("mismatched"):
                print(f"  {r.test}: {'; '.join(r.rehearsal_mismatches[:4])}")
    print(f"results: {sum(r.result == 'PASS' for r in ran)} PASS, {len(fails)} not PASS "
          f"({sum(r.baseline == r.result for r in fails)} of them the same without a dump: "
          f"{', '.join(r.test for r in fails)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
