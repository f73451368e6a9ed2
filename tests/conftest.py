"""Shared fixtures: shipped models, generated samples, the synthetic time-lapse and its CTC ground truth
(paths and helpers: :mod:`support`)."""

from __future__ import annotations

import os

import pytest

from support import MODELS

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

@pytest.fixture(scope="session")
def nuclear_predictor():
    from cellscale.segment.predictor import Predictor

    return Predictor(MODELS / "nuclear", precision="float32", augment="none")


@pytest.fixture(scope="session")
def tissue_predictor():
    from cellscale.segment.predictor import Predictor

    return Predictor(MODELS / "tissue", precision="float32", augment="none")


@pytest.fixture(scope="session")
def small_tissue():
    from cellscale.synth.tissue import make_tissue

    return make_tissue((384, 384), n_cells=80, seed=11)


@pytest.fixture(scope="session")
def tl():
    """The tracking tests' synthetic time-lapse: 30 frames of 256 x 256, 12 cells, divisions. Read-only."""
    from cellscale.synth.timelapse import make_timelapse

    return make_timelapse(n_frames=30, shape=(256, 256), n_cells=12, seed=0)


@pytest.fixture(scope="session")
def gt(tl, tmp_path_factory):
    """The CTC ground-truth folder of :func:`tl` (``01_GT/TRA/man_trackNNN.tif`` + ``man_track.txt``)."""
    from cellscale.synth.timelapse import write_ctc_ground_truth

    path = tmp_path_factory.mktemp("gt") / "01_GT"
    write_ctc_ground_truth(tl, path)
    return path
