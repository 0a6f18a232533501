"""heat over a real series: a hot region written every interval, a warm one every third."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import criu_model
from criu_model.errors import UsageError
from criu_model.pages.heat import heat, precopy
from criu_model.pages.layout import PAGE_SIZE
from tests.memchild import MemTree, spawn_mem_tree

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: ptrace, map_files, PFNs")

HOT, WARM, COLD = (300, 6), (320, 10), (340, 4)  # (first page, pages) of "anon"
INTERVALS = 6


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MemTree, list[Path]]]:
    tmp = tmp_path_factory.mktemp("heat")
    with spawn_mem_tree(tmp) as tree:
        dirs: list[Path] = []
        for i in range(INTERVALS + 1):
            if i:
                tree.command(f"touch {HOT[0]} {HOT[1]}")
                if i % 3 == 0:
                    tree.command(f"touch {WARM[0]} {WARM[1]}")
            snap = criu_model.dump([tree.root.pid], pages=True, pages_dir=str(tmp),
                                   parent=dirs[-1] if dirs else None)
            dirs.append(criu_model.write(snap, tmp / f"s{i}"))
        yield tree, dirs


def _anon_heat(tree: MemTree, dirs: list[Path]):  # type: ignore[no-untyped-def]
    snaps = [criu_model.load(d) for d in dirs]
    h = heat(snaps, [str(d) for d in dirs])
    start = tree.root.regions["anon"][0]
    vma = next(v for v in h.vmas if v.pid == tree.root.pid and v.start <= start < v.end)
    return h, vma, start


def test_heat_ranks_hot_warm_cold(series: tuple[MemTree, list[Path]]) -> None:
    tree, dirs = series
    h, vma, start = _anon_heat(tree, dirs)
    page = lambda i: start + i * PAGE_SIZE  # noqa: E731
    for i in range(HOT[1]):
        assert vma.counts[page(HOT[0] + i)] == INTERVALS
    for i in range(WARM[1]):
        assert vma.counts[page(WARM[0] + i)] == INTERVALS // 3
    for i in range(COLD[1]):
        assert page(COLD[0] + i) not in vma.counts
    ranges = vma.ranges()
    assert ranges[0] == (page(HOT[0]), page(HOT[0] + HOT[1]), INTERVALS)
    assert (page(WARM[0]), page(WARM[0] + WARM[1]), INTERVALS // 3) in ranges
    assert ranges.index((page(WARM[0]), page(WARM[0] + WARM[1]), INTERVALS // 3)) > 0
    assert len(h.intervals) == INTERVALS


def test_precopy_estimate_matches_a_hand_computation(series: tuple[MemTree, list[Path]]
                                                     ) -> None:
    tree, dirs = series
    h, _vma, _ = _anon_heat(tree, dirs)
    # the measured rate: the pages each interval changed over its duration
    rates = [i.pages * PAGE_SIZE / i.seconds for i in h.intervals]
    assert h.dirty_rate == pytest.approx(sum(rates) / len(rates))
    assert all(i.pages >= HOT[1] for i in h.intervals)  # at least the hot region each time
    m, r, w = h.memory_bytes, h.dirty_rate, h.working_set_bytes
    bw = 10e6  # a slow link, so that several rounds happen
    # by hand: round 0 sends m; each next round what was dirtied meanwhile, capped by w
    sent, t = [m], m / bw
    while True:
        v = min(r * t, w)
        if v / bw <= 0.3 or len(sent) >= 30:
            break
        sent.append(round(v))
        t = v / bw
    est = precopy(m, r, w, bw, max_downtime=0.3)
    assert est.rounds == len(sent) and est.round_bytes == tuple(sent)
    assert est.downtime == pytest.approx(round(v) / bw)
    assert est.bytes_sent == sum(sent) + round(v) and est.converged
    # dirtying faster than a link that needs 1 s for the working set: no convergence
    slow = w / 1.0
    stalled = precopy(m, 10 * slow, w, slow)
    assert not stalled.converged and stalled.rounds == 2 and stalled.downtime == \
        pytest.approx(1.0, rel=1e-3)


def test_heat_cli_json_svg_and_bad_series(series: tuple[MemTree, list[Path]],
                                          tmp_path: Path) -> None:
    tree, dirs = series
    svg = tmp_path / "heat.svg"
    res = subprocess.run([sys.executable, "-m", "criu_model", "heat", *map(str, dirs), "--json",
                          "--svg", str(svg), "--bandwidth", "1Gbit"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["precopy"]["bandwidth"] == 125e6 and len(doc["intervals"]) == INTERVALS
    assert svg.read_text().startswith("<svg") and "<rect" in svg.read_text()
    text = subprocess.run([sys.executable, "-m", "criu_model", "heat", *map(str, dirs)],
                          capture_output=True, text=True, timeout=60)
    assert "pre-copy at" in text.stdout and f"changed in {INTERVALS}/{INTERVALS}" in text.stdout
    # out of order, with a gap, another tree, without pages
    snaps = [criu_model.load(d) for d in dirs]
    names = [str(d) for d in dirs]
    with pytest.raises(UsageError, match=f"{dirs[1].name}: taken before"):
        heat([snaps[2], snaps[1]], [names[2], names[1]])
    with pytest.raises(UsageError, match="gap"):
        heat([snaps[0], snaps[2]], [names[0], names[2]])
    assert heat([snaps[0], snaps[2]], [names[0], names[2]], allow_gaps=True).intervals
    plain = criu_model.write(criu_model.dump([tree.root.pid]), tmp_path / "plain")
    with pytest.raises(UsageError, match="without --pages"):
        heat([snaps[-1], criu_model.load(plain)], [names[-1], str(plain)])
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        alien = criu_model.write(criu_model.dump([other.pid], pages=True,
                                                 pages_dir=str(tmp_path)), tmp_path / "alien")
    finally:
        other.kill()
        other.wait()
    with pytest.raises(UsageError, match="another tree"):
        heat([snaps[-1], criu_model.load(alien)], [names[-1], str(alien)])
