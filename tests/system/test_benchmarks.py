"""The benchmark scripts run in CI in their quick mode and print their figures (no speed asserts here)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from support import ROOT

pytestmark = pytest.mark.workflow


@pytest.mark.parametrize("script,expected", [
    ("measure.py", "regionprops"),
    ("tracking.py", "TRA"),
    ("segmentation.py", "Mpx/s"),
    ("gpu.py", "network Mpx/s"),
    ("scale.py", "workflow_vs_single"),
    ("cost.py", "max relative error"),
    ("storage_ops.py", "class B a pod; the launcher read"),
    ("tables.py", "identical files"),
    ("correction.py", "correction benchmark"),
    ("gigapixel.py", "intermediates (tiles + predictions)"),
])
def test_benchmark_quick_mode_prints_figures(script, expected):
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick"], cwd=ROOT,
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert expected in result.stdout
    if script == "correction.py" and "skipped" not in result.stdout:  # the shared CODEX tile is there
        assert "Spearman rho vs edits" in result.stdout  # the check of the review's score ran
    print(result.stdout)


def test_tracking_benchmark_varied_colonies_quick_mode():
    """``--varied SEED``: the colonies of another kind than the benchmark's, each tracked by ours (both costs)
    and laptrack, in one table."""
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "tracking.py"), "--quick", "--varied", "503"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "Varied colonies" in result.stdout and "| small rods (width 5, length 12), seed 503 |" in result.stdout
    assert "ours lap learned" in result.stdout
