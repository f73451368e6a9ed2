"""The model card: one writer for nuclear and tissue models, writing the shipped models' cards from their records."""

from __future__ import annotations

import copy
import json

import pytest
from support import MODELS

from cellscale.segment.model import ModelSpec
from cellscale.train.card import model_card, write_card

# The shipped nuclear card was written before the writer's Limits line took its present wording (it came back
# with the CPU-trained model, ab96e02); everything else in it is what the writer writes today.
NUCLEAR_LIMITS_THEN = ("- trained on CPU for a limited number of steps; tissue whole-cell segmentation needs a "
                       "nuclear + membrane model")
NUCLEAR_LIMITS_NOW = ("- a small network (kept fast enough for 2 Mpx/s on 2 CPU cores), trained for a limited "
                      "number of steps (the note says where); tissue whole-cell segmentation needs a nuclear + "
                      "membrane model")


def _shipped(name):
    folder = MODELS / name
    return ModelSpec.read(folder), json.loads((folder / "metrics.json").read_text()), folder


@pytest.mark.parametrize("name", ["nuclear", "tissue", "tissue-tight", "generalist"])
def test_the_writer_writes_each_shipped_card_from_its_record(tmp_path, name):
    spec, record, folder = _shipped(name)
    shipped = (folder / "MODEL_CARD.md").read_text()
    if name == "nuclear":
        assert shipped.count(NUCLEAR_LIMITS_THEN) == 1
        shipped = shipped.replace(NUCLEAR_LIMITS_THEN, NUCLEAR_LIMITS_NOW)
    if name == "generalist":  # its last section, on the correction loop, was written by hand
        shipped = shipped[:shipped.index("\n## Role: the generalist")]
    assert model_card(spec, record) == shipped
    write_card(tmp_path, spec, record)
    assert (tmp_path / "MODEL_CARD.md").read_text() == shipped
    assert (tmp_path / "metrics.json").read_bytes() == (folder / "metrics.json").read_bytes()


def test_optional_parts_of_the_cards():
    spec, record, _ = _shipped("nuclear")
    bare = copy.deepcopy(record)
    bare["note"] = None
    card = model_card(spec, bare)
    assert "- note:" not in card and "| all | 56 | 0.896 | 0.621 | 0.770 | 0.464 |" in card
    spec.int8 = None
    assert "8-bit copy" not in model_card(spec, record)

    spec, record, _ = _shipped("tissue")
    generated = copy.deepcopy(record)
    del generated["test"]["codex_held_out"]
    card = model_card(spec, generated)
    assert "CODEX R001_X003_Y004, held-out" not in card
    assert "- trained only on generated tissue: a starting point" in card
    assert "| whole_cell | 6 | 0.996 | 0.992 | - |" in card  # no baseline for whole cells


def test_a_tissue_card_says_which_real_labels_it_trained_on():
    """Corrected tiles on top of generated tissue (a `cellscale review import` version): the card's limits name
    them instead of saying "trained only on generated tissue"."""
    from cellscale.train.card import TISSUE

    generated = {"annotator": "generator (exact ground truth)", "source": "cellscale.synth.tissue", "files": 36,
                 "generated": True}
    corrected = {"annotator": "A. Person", "source": "cellscale review of sample S (s.ome.tif, SHA-256 ab)",
                 "files": 4, "generated": False}
    assert "trained only on generated tissue" in TISSUE.limits({"test": {}, "training_labels": [generated]})
    limits = TISSUE.limits({"test": {}, "training_labels": [generated, corrected]})
    assert "trained only on generated tissue" not in limits
    assert "4 label file(s) by A. Person (cellscale review of sample S" in limits
    assert "one CODEX tile" in TISSUE.limits({"test": {"codex_held_out": {}}, "training_labels": [generated]})


def test_a_card_says_what_each_compartment_was_tuned_on():
    """A model trained with --codex ships whole-cell settings tuned on the tile's training columns: its card says
    so (it said "on generated validation tissue, or with --codex on the CODEX training columns"), and that its
    generated-tissue whole_cell row was scored with other settings; a model without the tile tuned both
    compartments on its validation images; the int8 copy's calibration images are named."""
    spec, record, _ = _shipped("tissue")
    card = model_card(spec, record)
    assert ("## Post-processing (nuclear: tuned on generated validation tissue; whole cell: on the CODEX tile's "
            "training columns (< 960) against each expert's cells)") in card
    assert "or with --codex" not in card
    assert "The whole_cell row: settings tuned on generated validation tissue; not the shipped" in card
    assert "was calibrated on 12 images x 2 crops: generated tissue (validation seeds) + CODEX tile columns" in card
    # a record that scored the shipped whole-cell settings on generated tissue too (cellscale train now does)
    scored = copy.deepcopy(record)
    scored["test"]["whole_cell"]["shipped"] = {"f1": 0.5, "ap": 0.25, "tp": 1, "fp": 1, "fn": 1, "images": 6}
    card = model_card(spec, scored)
    assert "| whole_cell, shipped settings | 6 | 0.500 | 0.250 | - |" in card
    assert "\"shipped settings\": the whole-cell settings above, tuned on the CODEX training columns" in card

    spec, record, _ = _shipped("generalist")
    card = model_card(spec, record)
    assert "## Post-processing (nuclear and whole cell: tuned on the validation images" in card
    assert "or with --codex" not in card and "The whole_cell row" not in card


def test_a_rescoring_is_dated_next_to_the_cards_own_figures():
    """benchmarks/rescore.py's figures (metrics.json's ``rescored``) come after the card's, which stay as measured;
    an audit's caveats (``caveats``) are listed under the held-out figures."""
    spec, record, _ = _shipped("tissue")
    rescored = record["rescored"][0]
    card = model_card(spec, record)
    assert f"## Rescored on {rescored['date']} with {rescored['stack']}" in card
    assert f"`{rescored['command']}` (code at {rescored['code']})" in card
    assert "| CODEX held-out columns, cellscale, F1 vs expert 1 | 0.591 | 0.593 |" in card
    assert "| generated whole_cell F1, shipped settings | - | 0.991 |" in card
    assert "| cellscale | 0.591 | 0.586 |" in card  # the card's figure as measured
    assert "- The CODEX figures are not fully held out" in card
    assert card.index("not fully held out") < card.index("## Rescored") < card.index("## Limits")
    bare = copy.deepcopy(record)
    del bare["rescored"], bare["caveats"]
    assert "## Rescored" not in model_card(spec, bare) and "not fully held out" not in model_card(spec, bare)


def test_a_codex_model_is_scored_on_generated_tissue_with_the_whole_cell_settings_it_ships(tmp_path, monkeypatch):
    """finish_tissue_model with --codex replaces the whole-cell settings tuned on generated validation tissue by
    those tuned on the tile's training columns; the generated test tissue is scored with both (the first as before,
    the shipped ones as ``shipped``), and the card shows both rows. The network, the tuning and the tile are fakes
    here (no training): settings with foreground 0.4 (the tile's) find no cell, the others every cell."""
    import numpy as np

    from cellscale.train import finish
    from cellscale.train.data import Example
    from cellscale.train.options import TrainOptions

    truth = np.zeros((4, 4), np.int32)
    truth[:2, :2] = 1
    generated = Example("g", "generated", np.zeros((2, 4, 4), np.float32), {"nuclear": truth, "whole_cell": truth})

    class Data:
        style, images, seed, manifest, generator, dataset = "sparse", 24, 1, None, None, None

        def examples(self, split):
            return [generated]

        def describe(self):
            return "fake"

    class Net:
        def __init__(self, *args, **kwargs):
            self.model = type("M", (), {"count_params": lambda self: 1})()

    calls = []

    def tune(maps, truths, log=print):
        calls.append(len(truths))
        return finish.PostprocessParams(foreground=0.4 if len(calls) == 3 else 0.8), {}

    def export_int8(out, *args, **kwargs):
        spec = ModelSpec.read(out)
        spec.int8 = {"artifact": "model.int8.tflite", "window": 512, "calibration": "fake images"}
        spec.write(out)

    codex = tmp_path / "codex"
    codex.mkdir()
    (codex / "image.ome.tif").write_bytes(b"x")
    monkeypatch.setattr(finish, "Predictor", Net)
    monkeypatch.setattr(finish, "predict_maps", lambda *a, **k: np.zeros((8, 4, 4), np.float32))
    monkeypatch.setattr(finish, "compartment_maps", lambda m, i: m)
    monkeypatch.setattr(finish, "compartment_labels",
                        lambda maps, params, k=0: np.zeros_like(truth) if params.foreground == 0.4 else truth)
    monkeypatch.setattr(finish, "otsu_watershed", lambda image: truth)
    monkeypatch.setattr(finish, "tune", tune)
    monkeypatch.setattr(finish, "load_codex", lambda tile, region: [generated])
    monkeypatch.setattr(finish, "codex_experts", lambda tile, region: [truth, truth])
    monkeypatch.setattr(finish, "codex_scores", lambda tile, ours: {"cellscale": [0.5, 0.5]})
    monkeypatch.setattr(finish, "export_int8", export_int8)
    monkeypatch.setattr(finish, "calibration_images", lambda *a: ([], "fake images"))
    out = tmp_path / "model"
    spec = ModelSpec(name="t", inputs=["nuclear", "membrane"], compartments=["nuclear", "whole_cell"],
                     base_filters=4, depth=2, tile_multiple=4)
    options = TrainOptions(data="synthetic-tissue", out=str(out), run_dir=str(tmp_path / "run"), codex=str(codex))
    record = finish.finish_tissue_model(options, spec, log=lambda m: None, data=Data())
    assert calls == [1, 1, 2]  # nuclear and whole cell on generated validation tissue, then whole cell on the tile
    assert ModelSpec.read(out).postprocess["whole_cell"]["foreground"] == 0.4  # the tile's settings are shipped
    whole_cell = record["test"]["whole_cell"]
    assert whole_cell["model"]["f1"] == 1.0 and whole_cell["shipped"]["f1"] == 0.0
    card = (out / "MODEL_CARD.md").read_text()
    assert "| whole_cell | 1 | 1.000 |" in card and "| whole_cell, shipped settings | 1 | 0.000 | 0.000 | - |" in card
    assert "whole cell: on the CODEX tile's training columns (< 960)" in card
