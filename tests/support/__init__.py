"""Test support: repository paths, ../shared data, a real single-node SLURM (:mod:`.slurm_cluster`), and where a GKE
cluster cannot run a Kubernetes API stand-in (:mod:`.kube_emulator`), a Cloud Storage one (:mod:`.gcs_emulator`)
and the pieces of a GKE run on them (:mod:`.gke_run`).

Tests import it as ``support`` (``pythonpath = ["tests"]`` in pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cellscale.segment.model import shipped_models_dir

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
# the shipped models, or the folder of model folders CELLSCALE_MODELS names (e.g. while the shipped ones retrain):
# the command line's default models come from the same place
MODELS = shipped_models_dir()
DEMO = ROOT / "data" / "demo"


def need_shared(sub: str) -> Path:
    """Path of a folder of ../shared/data, or skip (a user's fresh clone has none)."""
    path = SHARED / sub
    if not path.exists():
        pytest.skip(f"{path} is absent (only developers and CI have ../shared)")
    return path
