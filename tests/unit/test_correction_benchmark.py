"""benchmarks/correction.py's bookkeeping: the sweep, the cells a person edits, the summary and the goals (no
network; the loop itself runs in tests/system/test_benchmarks.py's quick mode)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
from support import ROOT

SCRIPT = ROOT / "benchmarks" / "correction.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("correction_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sweep_has_three_seeds_at_4_and_16_and_one_elsewhere(bench):
    points = bench.sweep_points([0, 2, 4, 8, 16], {4, 16}, 3)
    assert points[0] == (0, "none", 0)
    for k, n in ((2, 1), (4, 3), (8, 1), (16, 3)):
        for method in ("least-sure", "random"):
            assert sorted(s for kk, m, s in points if kk == k and m == method) == list(range(n))
    assert len(points) == 1 + 2 * (1 + 3 + 1 + 3)
    assert len({bench.point_key(*p) for p in points}) == len(points)  # one JSON file each
    # the quick mode sweeps the least-sure choice only (the random one is `cellscale review --random`, tested apart)
    assert bench.sweep_points([0, 2], set(), 1, ("least-sure",)) == [(0, "none", 0), (2, "least-sure", 0)]
    assert bench.parse(["--quick"]).methods == "least-sure"
    assert bench.parse([]).methods == "least-sure,random"
    with pytest.raises(SystemExit):
        bench.parse(["--methods", "least-sure,worst"])


def test_edited_cells_counts_redrawn_missed_and_false_cells(bench):
    truth = np.zeros((20, 20), int)
    truth[1:6, 1:6], truth[10:15, 10:15], truth[1:6, 12:18] = 1, 2, 3
    current = np.zeros_like(truth)
    current[1:6, 1:6] = 7  # matches cell 1
    current[10:12, 10:12] = 8  # too small for cell 2: redrawn (and this one erased)
    current[16:19, 1:4] = 9  # a false cell
    # cell 2 and 3 drawn, cells 8 and 9 erased
    assert bench.edited_cells(truth, current) == 4
    assert bench.edited_cells(truth, truth) == 0


def _record(k, method, seed, f1, corrected=10):
    return {"k": k, "method": method, "seed": seed, "f1": f1, "cells": 2 * corrected, "corrected_cells": corrected}


def test_goals_met_and_not_met(bench):
    records = [_record(0, "none", 0, [0.40, 0.60], 0),
               _record(2, "least-sure", 0, [0.52, 0.60]), _record(2, "random", 0, [0.45, 0.60]),
               _record(4, "least-sure", 0, [0.58, 0.61]), _record(4, "least-sure", 1, [0.62, 0.60]),
               _record(4, "random", 0, [0.50, 0.60]), _record(4, "random", 1, [0.52, 0.60])]
    rows = bench.summarise(records)
    four = next(r for r in rows if r["k"] == 4 and r["method"] == "least-sure")
    assert four["f1"] == pytest.approx([0.60, 0.605]) and four["spread"] == pytest.approx([0.04, 0.01])
    assert four["hours"] == pytest.approx(10 * 30 / 3600)
    verdicts = [met for _, met, _ in bench.goals(rows, [0.59, 0.59])]
    assert verdicts == [True, True, True]
    verdicts = [met for _, met, _ in bench.goals(rows, [0.65, 0.59])]  # never reaches the reference
    assert verdicts == [True, False, True]
    records[1]["f1"] = [0.44, 0.55]  # least-sure loses to random at K = 2 and loses 0.05 against expert 2
    verdicts = [met for _, met, _ in bench.goals(bench.summarise(records), [0.59, 0.59])]
    assert verdicts == [False, True, False]


def test_quick_mode_skips_cleanly_without_the_tile(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--codex", str(tmp_path / "absent")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "skipped: ../shared/data/codex absent" in result.stdout
