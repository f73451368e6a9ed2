"""Shared fixtures: shipped models, generated samples, the synthetic time-lapse and its CTC ground truth
(paths and helpers: :mod:`support`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support import MODELS

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# `make test` runs two pytest-xdist workers, whole files each, in collection order (--no-loadscope-reorder): a worker
# takes the next file when it has two tests left. These files take most of the suite's time (minutes each on two
# cores, their durations in docs/benchmarks.md), so they start first, longest first, and the many short files fill in
# around them: none of them is left to run alone at the end (xdist's own order, by number of tests, started them late)
LONG_FILES_FIRST = ("system/test_workflow.py", "system/test_benchmarks.py", "system/test_gke_workflow.py",
                    "system/test_slurm.py", "system/test_cli.py")


def pytest_collection_modifyitems(items):
    """The long files first (:data:`LONG_FILES_FIRST`); the others keep their order."""
    tests = Path(__file__).parent
    rank = {name: k for k, name in enumerate(LONG_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.relative_to(tests).as_posix(), len(rank))
               if item.path.is_relative_to(tests) else len(rank))


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
