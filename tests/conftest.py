"""Shared fixtures: shipped models, generated samples (paths and helpers: :mod:`support`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support import MODELS

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

@pytest.fixture(scope="session")
def nuclear_predictor():
    from cellscale.segment.predictor import Predictor

    return Predictor(MODELS / "nuclear")


@pytest.fixture(scope="session")
def tissue_predictor():
    from cellscale.segment.predictor import Predictor

    return Predictor(MODELS / "tissue")


@pytest.fixture(scope="session")
def small_tissue():
    from cellscale.synth.tissue import make_tissue

    return make_tissue((384, 384), n_cells=80, seed=11)
