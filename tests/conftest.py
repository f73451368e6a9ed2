"""Shared fixtures: repository paths, shipped models, generated samples."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
# CELLSCALE_MODELS points the tests at other model folders (e.g. while the shipped ones retrain)
MODELS = Path(os.environ.get("CELLSCALE_MODELS", ROOT / "models"))
DEMO = ROOT / "data" / "demo"


def need_shared(sub: str) -> Path:
    """Path of a folder of ../shared/data, or skip (a user's fresh clone has none)."""
    path = SHARED / sub
    if not path.exists():
        pytest.skip(f"{path} is absent (only developers and CI have ../shared)")
    return path


@pytest.fixture(scope="session")
def nuclear_predictor():
    from cellscale.model import Predictor

    return Predictor(MODELS / "nuclear")


@pytest.fixture(scope="session")
def tissue_predictor():
    from cellscale.model import Predictor

    return Predictor(MODELS / "tissue")


@pytest.fixture(scope="session")
def small_tissue():
    from cellscale.synth.tissue import make_tissue

    return make_tissue((384, 384), n_cells=80, seed=11)
