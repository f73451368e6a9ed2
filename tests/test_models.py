"""The shipped models: loadable, described, and better than the classical baseline on unseen images."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cellscale.baseline import otsu_watershed
from cellscale.io import read_image
from cellscale.metrics import summarize
from cellscale.preprocess import normalize, percentile_range, select_channels
from cellscale.segmentation import segment_image
from conftest import DEMO, MODELS, need_shared


@pytest.mark.parametrize("name", ["nuclear", "tissue"])
def test_model_folder_is_complete(name):
    folder = MODELS / name
    spec = json.loads((folder / "model.json").read_text())
    assert spec["postprocess"], "post-processing thresholds are tuned and stored"
    card = (folder / "MODEL_CARD.md").read_text()
    assert "cellscale train" in card
    assert "SHA-256" in card or "seed" in card  # the training data is pinned
    assert (folder / "model.keras").stat().st_size < 20e6


def _pairs(predictor, paths, masks_dir):
    model, baseline = [], []
    for path in paths:
        raw = read_image(path)
        truth = read_image(masks_dir / f"{path.stem}.tif")[0, 0]
        labels = segment_image(predictor, raw)["nuclear"][0]
        chans = select_channels(raw, {}, ["nuclear"])[0]
        model.append((truth, labels))
        baseline.append((truth, otsu_watershed(normalize(chans, percentile_range(chans))[0])))
    return summarize(model), summarize(baseline)


def test_nuclear_model_beats_baseline_on_bundled_images(nuclear_predictor):
    root = DEMO / "dsb2018"
    ours, base = _pairs(nuclear_predictor, sorted((root / "images").glob("*.png")), root / "masks")
    assert ours["f1"] > base["f1"]
    assert ours["ap"] > base["ap"]


@pytest.mark.shared
def test_nuclear_model_beats_baseline_on_held_out_dsb(nuclear_predictor):
    import pandas as pd

    from cellscale.train import split_of

    root = need_shared("dsb2018")
    index = pd.read_csv(root / "index.csv")
    test_ids = [i for i, kind in zip(index.id, index.kind) if split_of(i) == "test" and kind == "fluorescence"]
    assert len(test_ids) > 30
    ours, base = _pairs(nuclear_predictor, [root / "images" / f"{i}.png" for i in test_ids], root / "masks")
    assert ours["f1"] > base["f1"] + 0.02
    assert ours["ap"] > base["ap"] + 0.02
