"""The shipped models: loadable, described, and better than the classical baseline on unseen images."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support import DEMO, MODELS, need_shared

from cellscale.io import read_image
from cellscale.segment.baseline import otsu_watershed
from cellscale.segment.image import segment_image
from cellscale.segment.metrics import summarize
from cellscale.segment.preprocess import normalize, percentile_range, select_channels


@pytest.mark.parametrize("name", ["nuclear", "tissue", "tissue-tight"])
def test_model_folder_is_complete(name):
    folder = MODELS / name
    spec = json.loads((folder / "model.json").read_text())
    assert spec["postprocess"], "post-processing thresholds are tuned and stored"
    card = (folder / "MODEL_CARD.md").read_text()
    assert "cellscale train" in card
    assert "SHA-256" in card or "seed" in card  # the training data is pinned
    assert (folder / "model.keras").stat().st_size < 20e6
    if name.startswith("tissue"):  # real held-out tissue, scored as the workflow runs by default on CPUs
        default = json.loads((folder / "metrics.json").read_text())["test"]["codex_held_out"][
            "cellscale int8 + rot180 (workflow default)"]
        assert f"| cellscale int8 + rot180 (workflow default) | {default[0]:.3f} | {default[1]:.3f} |" in card


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

    from cellscale.train.data import split_of

    root = need_shared("dsb2018")
    index = pd.read_csv(root / "index.csv")
    test_ids = [i for i, kind in zip(index.id, index.kind) if split_of(i) == "test" and kind == "fluorescence"]
    assert len(test_ids) > 30
    ours, base = _pairs(nuclear_predictor, [root / "images" / f"{i}.png" for i in test_ids], root / "masks")
    assert ours["f1"] > base["f1"] + 0.02
    assert ours["ap"] > base["ap"] + 0.02


def test_fine_tuning_starts_from_the_given_weights(tmp_path):
    import keras

    from cellscale.segment.model import ModelSpec
    from cellscale.train.data import load_synthetic_tissue
    from cellscale.train.fit import export, fit

    spec = ModelSpec(name="t", inputs=["nuclear", "membrane"], compartments=["nuclear", "whole_cell"],
                     base_filters=4, depth=2, tile_multiple=4)
    data = load_synthetic_tissue(1, "train")
    first = fit(spec, data, tmp_path / "a", steps=1, tile=64, batch=2, lr=1e-2, seed=0, log=lambda m: None)
    export(first, spec, tmp_path / "model_a")
    # a near-zero learning rate: the fine-tuned weights stay where they started
    tuned = fit(spec, data, tmp_path / "b", steps=1, tile=64, batch=2, lr=1e-12, seed=3, log=lambda m: None,
                init_from=tmp_path / "model_a")
    fresh = fit(spec, data, tmp_path / "c", steps=1, tile=64, batch=2, lr=1e-12, seed=3, log=lambda m: None)

    def weights(path):  # trainable ones: batch-norm statistics move in training whatever the learning rate
        model = keras.models.load_model(path, compile=False)
        return np.concatenate([np.ravel(w.numpy()) for w in model.trainable_weights])

    start = weights(tmp_path / "model_a" / "model.keras")
    assert np.allclose(weights(tuned), start, atol=1e-6)
    assert not np.allclose(weights(fresh), start, atol=1e-3)


def test_crops_made_by_worker_processes_do_not_depend_on_their_number():
    from cellscale.train.augment import batches, one_batch
    from cellscale.train.data import load_synthetic_tissue

    data = load_synthetic_tissue(2, "train")
    comps = ["nuclear", "whole_cell"]

    def first(workers, n=3, seed=7):
        stream = batches(data, comps, 64, 2, seed, workers=workers)
        try:
            return [next(stream) for _ in range(n)]
        finally:
            stream.close()

    one, two = first(1), first(2)
    for (x1, y1), (x2, y2) in zip(one, two):
        assert x1.shape == (2, 64, 64, 2) and y1.shape == (2, 64, 64, 4)
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(one[0][0], one[1][0])  # each batch draws its own crops
    assert not np.array_equal(one[0][0], first(1, n=1, seed=8)[0][0])  # and the seed matters
    # batch i is what one process makes from a generator seeded (seed, i): a run is reproducible anywhere
    x, y = one_batch(data, comps, 64, 2, np.random.default_rng([7, 2]))
    np.testing.assert_array_equal(x, one[2][0])
    np.testing.assert_array_equal(y, one[2][1])


def test_padding_and_cells_cut_by_a_tiles_edge_are_left_out_of_the_loss():
    """A corrected tile smaller than the crop is padded: the padding teaches nothing (it is no background of the
    image). A cell its edge cuts goes on beyond it: its class counts, its inner distance (from an edge that is
    not the cell's) does not. Elsewhere the targets and the loss are what they were."""
    from keras import ops

    from cellscale.train.augment import random_crop
    from cellscale.train.data import Example
    from cellscale.train.fit import make_loss
    from cellscale.train.targets import NO_DISTANCE, NOTHING, make_targets

    labels = np.zeros((32, 32), np.int32)
    labels[0:6, 10:16] = 1      # touches the top edge
    labels[12:20, 12:20] = 2    # inside
    labels[26:32, 3:9] = 3      # touches the bottom edge
    image = np.stack([labels > 0, labels > 0]).astype(np.float32)
    tile = Example("t", "tissue", image, {"whole_cell": labels}, cut=(True, False, False, False))  # only the top
    for seed in range(6):
        img, labs, unknown = random_crop(tile, 48, np.random.default_rng(seed), scale_range=(0.6, 1.0))
        t = make_targets(labs["whole_cell"], unknown["whole_cell"])
        outside = np.all(t == NOTHING, axis=-1)
        assert outside.sum() >= 48 * 48 - 32 * 32  # the image is at most 32 px of the 48-px crop
        assert not np.any(labs["whole_cell"][outside])
        cut = labs["whole_cell"] == 1
        assert cut.any() and np.all(t[cut, 0] == NO_DISTANCE) and np.all(t[cut, 1] >= 1)  # its class is known
        for inner in (2, 3):  # the bottom edge is not cut: cell 3 is whole there
            assert np.all(t[labs["whole_cell"] == inner, 0] > 0)
    whole = Example("w", "tissue", image, {"whole_cell": labels})
    _, labs, unknown = random_crop(whole, 24, np.random.default_rng(0), scale_range=(1.0, 1.0))
    np.testing.assert_array_equal(make_targets(labs["whole_cell"], unknown.get("whole_cell")),
                                  make_targets(labs["whole_cell"]))  # nothing unknown in a whole image

    # the loss: it does not depend on what is predicted at a NOTHING pixel, nor on the distance predicted at a
    # NO_DISTANCE pixel (but on the class predicted there)
    rng = np.random.default_rng(1)
    pred = rng.uniform(0.05, 0.9, (1, 4, 4, 4)).astype(np.float32)
    true = np.zeros((1, 4, 4, 2), np.float32)
    true[0, :2, :, 0], true[0, :2, :, 1] = 0.5, 2
    loss = make_loss(1)

    def value(t, p):
        return float(ops.convert_to_numpy(loss(ops.convert_to_tensor(t), ops.convert_to_tensor(p))))

    def changed(channels, y=0, x=0):
        out = pred.copy()
        out[0, y, x, channels] = 0.5 * out[0, y, x, channels] + 0.3
        return out

    nothing = true.copy()
    nothing[0, 0, 0] = NOTHING
    assert value(nothing, changed([0, 1, 2, 3])) == value(nothing, pred)
    assert value(true, changed([0, 1, 2, 3])) != value(true, pred)
    no_distance = true.copy()
    no_distance[0, 0, 0, 0] = NO_DISTANCE
    assert value(no_distance, changed([0])) == value(no_distance, pred)
    assert value(true, changed([0])) != value(true, pred)
    assert value(no_distance, changed([1, 2, 3])) != value(no_distance, pred)


@pytest.mark.parametrize("precision,augment,axes", [("float32", "flips", (-2,)), ("int8", "flips", (-1,)),
                                                    ("int8", "rot180", (-2, -1))])
def test_test_time_augmentation_is_exactly_equivariant(tmp_path, precision, augment, axes):
    from cellscale.segment.predictor import Predictor
    from cellscale.segment.settings import SegmentSettings
    from cellscale.segment.shards import open_maps, save_windows
    from cellscale.steps.segment import segment_shard

    raw = read_image(sorted((DEMO / "dsb2018" / "images").glob("*.png"))[0])
    chans = select_channels(raw, {}, ["nuclear"])[0]
    image = normalize(chans, percentile_range(chans))[0][:256, :256]
    tile = np.ascontiguousarray(image[np.newaxis, np.newaxis], np.float32)
    flipped = np.ascontiguousarray(np.flip(tile, axes))  # a flip or a half turn of the (N, C, H, W) tile
    plain = Predictor(MODELS / "nuclear", precision=precision, augment="none")
    augmented = Predictor(MODELS / "nuclear", precision=precision, augment=augment)
    a, b = augmented.predict(tile), np.flip(augmented.predict(flipped), axes)
    np.testing.assert_allclose(a, b, atol=1e-5)  # the mean over the group does not care which member came in
    p, q = plain.predict(tile), np.flip(plain.predict(flipped), axes)
    assert np.abs(p - q).max() > 1e-3  # a single pass is not equivariant, so the test above can fail
    assert np.abs(a - p).max() > 1e-3
    # the workflow's segment step passes the setting through
    save_windows(tmp_path / "tiles.zarr.zip", tile)
    segment_shard(tmp_path / "tiles.zarr.zip", MODELS / "nuclear", tmp_path / "maps.zarr.zip",
                  SegmentSettings(precision=precision, augment=augment))
    maps = open_maps(tmp_path / "maps.zarr.zip")[:]
    np.testing.assert_allclose(maps[:, :3].astype(np.float32), a[:, :3], atol=2e-3)  # float16 on disk
    # p(interior) is not stored but recomputed, 1 - p(background) - p(boundary): the int8 softmax's sum is 1 +- 1e-2
    np.testing.assert_allclose(maps[:, 3].astype(np.float32), a[:, 3], atol=1e-2)
    with pytest.raises(ValueError, match="unknown augmentation 'mirror'"):
        Predictor(MODELS / "nuclear", precision=precision, augment="mirror")


def test_nuclear_model_card_reports_the_workflow_default():
    from cellscale.segment.model import ModelSpec
    from cellscale.train.card import model_card

    spec = ModelSpec.read(MODELS / "nuclear")
    score = {"f1": 0.5, "ap": 0.25, "images": 3}
    record = {"training_data": "dsb2018", "training_files": 3, "training_data_sha256": "0" * 64,
              "command": "cellscale train --data dsb2018", "trained": "2026-11-22", "parameters": 10,
              "test": {"all": {"model": score, "baseline": score, "int8": score,
                               "int8_rot180": {"f1": 0.625, "ap": 0.375, "images": 3}},
                       "old": {"model": score, "baseline": score, "int8": score}}}
    card = model_card(spec, record)
    assert "| all | 0.500 | 0.250 | 0.625 | 0.375 |" in card
    assert "| old | 0.500 | 0.250 | - | - |" in card  # a record from before augmentation existed


def test_shipped_models_run_on_the_jax_backend_with_the_same_maps(tmp_path):
    """A GPU node may have JAX (or PyTorch) and no TensorFlow: the shipped networks give the same maps there
    (float32; run in a child process, as the Keras backend is chosen once per process)."""
    import os
    import subprocess
    import sys

    from cellscale.segment.predictor import Predictor

    tiles = np.random.default_rng(0).random((3, 2, 128, 128), dtype=np.float32)
    np.save(tmp_path / "tiles.npy", tiles)
    # 3 tiles in batches of 2: the short last batch is padded, so JAX sees (and compiles) one batch shape;
    # both models in one child process (one JAX start)
    code = ("import sys, numpy as np, keras; from cellscale.segment.predictor import Predictor; "
            "assert keras.backend.backend() == 'jax', keras.backend.backend(); "
            "t = np.load(sys.argv[1])\n"
            "for model, out in zip(sys.argv[2::2], sys.argv[3::2]):\n"
            "    p = Predictor(model, precision='float32', batch_size=2, augment='none'); "
            "run = p.model.predict_on_batch; seen = set(); "
            "p.model.predict_on_batch = lambda x: seen.add(x.shape) or run(x); "
            "np.save(out, p.predict(t[:, :len(p.spec.inputs)])); "
            "assert seen == {(2, 128, 128, len(p.spec.inputs))}, seen")
    names = ("nuclear", "tissue")
    args = [a for name in names for a in (str(MODELS / name), str(tmp_path / f"{name}.npy"))]
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "tiles.npy"), *args],
                            env={**os.environ, "KERAS_BACKEND": "jax"}, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in names:
        predictor = Predictor(MODELS / name, precision="float32", batch_size=2, augment="none")
        expected = predictor.predict(tiles[:, :len(predictor.spec.inputs)])
        np.testing.assert_allclose(np.load(tmp_path / f"{name}.npy"), expected, atol=1e-4)


@pytest.mark.parametrize("first", [1, 2])
def test_union_of_experts_keeps_the_first_experts_outline_and_adds_the_others_new_cells(first):
    from cellscale.train.data import union_of_experts

    big = np.zeros((20, 40), np.int32)
    big[2:12, 2:12] = 1  # drawn by both: large here ...
    big[2:12, 28:38] = 2  # drawn by this expert only
    small = np.zeros_like(big)
    small[4:10, 4:10] = 7  # ... small here
    small[14:18, 14:20] = 9  # drawn by this expert only
    experts = (big, small) if first == 1 else (small, big)
    out = union_of_experts(*experts)
    assert len(np.unique(out)) - 1 == 3  # the shared cell once, plus each expert's own
    shared = out[6, 6]
    assert (out == shared).sum() == (100 if first == 1 else 36)
    assert out[15, 15] > 0 and out[5, 30] > 0 and out[15, 15] != out[5, 30]


def test_codex_training_examples_draw_each_experts_outlines_as_often(tmp_path):
    import tifffile

    from cellscale.train.data import codex_training_examples

    rng = np.random.default_rng(0)
    tifffile.imwrite(tmp_path / "image.ome.tif", rng.integers(0, 1000, (8, 32, 1100), dtype=np.uint16))
    big = np.zeros((32, 1100), np.int32)
    big[4:20, 4:20] = 1
    small = np.zeros_like(big)
    small[8:14, 8:14] = 1
    tifffile.imwrite(tmp_path / "mask_expert1_wholecell.tif", big)
    tifffile.imwrite(tmp_path / "mask_expert2_wholecell.tif", small)
    one = codex_training_examples(tmp_path, ["expert1"], 24)
    both = codex_training_examples(tmp_path, ["expert1", "expert2"], 24)
    assert len(one) == len(both) == 24
    assert all(ex.image.shape == (2, 32, 960) for ex in both)  # nuclear + membrane, training columns only
    assert all(ex.cut == (False, False, False, True) for ex in both)  # the tile goes on right of the columns
    areas = sorted(int((ex.labels["whole_cell"] > 0).sum()) for ex in both)
    assert areas.count(256) == areas.count(36) == 12
    assert {int((ex.labels["whole_cell"] > 0).sum()) for ex in one} == {256}
    middle = codex_training_examples(tmp_path, ["consensus"], 24)
    assert {int((ex.labels["whole_cell"] > 0).sum()) for ex in middle} == {96}  # sqrt(256 * 36)
    with pytest.raises(ValueError, match="consensus"):
        codex_training_examples(tmp_path, ["expert3"], 24)
    assert len(codex_training_examples(tmp_path, ["expert1", "expert2"], 24, share=0.75)) == 72  # 3 : 1
    with pytest.raises(ValueError, match="share"):
        codex_training_examples(tmp_path, ["expert1"], 24, share=1.0)


def test_consensus_of_experts_keeps_the_shared_cells_outlined_between_the_experts():
    from cellscale.segment.metrics import iou_matrix
    from cellscale.train.data import consensus_of_experts

    first = np.zeros((30, 60), np.int32)
    first[2:12, 2:12] = 5  # drawn by both: 100 px here ...
    first[2:12, 12:22] = 6  # ... its neighbour, which the second expert did not draw
    first[20:28, 40:48] = 8  # drawn by the first expert only
    second = np.zeros_like(first)
    second[4:10, 4:10] = 3  # ... 36 px here
    second[20:24, 2:6] = 4  # drawn by the second expert only
    out = consensus_of_experts(first, second)
    assert set(np.unique(out)) == {0, 5}  # one-expert cells are left out
    cell = out == 5
    assert cell.sum() == 60  # the geometric mean of 100 and 36 px
    assert (cell >= (second == 3)).all() and (cell <= (first == 5)).all()
    iou = iou_matrix(out, first)[0, 0], iou_matrix(out, second)[0, 0]
    assert iou == pytest.approx((0.6, 0.6))  # as close to one expert as to the other

    second[4:10, 8:16] = 3  # now reaching into the neighbour the first expert drew as another cell
    out = consensus_of_experts(first, second)
    assert not (out[:, 12:22] > 0).any()
    assert set(np.unique(out)) == {0, 5}


def test_expert_masks_that_label_every_pixel_lose_no_cell():
    from cellscale.train.data import consensus_of_experts, union_of_experts

    tiled = np.ones((4, 4), np.int32)  # edge to edge: no background label at all
    tiled[:, 2:] = 2
    tight = np.zeros_like(tiled)
    tight[1:3, 2:4] = 5
    assert sorted(np.unique(union_of_experts(tight, tiled))) == [0, 5, 6]  # cell 1 added, cell 2 is cell 5
    assert sorted(np.unique(consensus_of_experts(tiled, tight))) == [0, 2]


def test_codex_labellings_come_from_either_spelling_of_the_option():
    from cellscale.cli import build_parser
    from cellscale.train.data import CODEX_LABELS
    from cellscale.train.options import TrainOptions

    base = ["train", "--data", "synthetic-tissue", "--out", "m", "--run-dir", "r", "--codex", "tile"]
    parse = build_parser().parse_args

    def codex_labellings(args):
        return TrainOptions.from_args(args).labellings

    assert codex_labellings(parse(base)) == ["expert1"]
    assert codex_labellings(parse(base + ["--codex-first", "2"])) == ["expert2"]
    assert codex_labellings(parse(base + ["--codex-first", "1", "2"])) == ["expert1", "expert2"]
    assert codex_labellings(parse(base + ["--codex-labels", "consensus", "expert1"])) == ["consensus", "expert1"]
    for name in CODEX_LABELS:  # the command line offers every labelling the library knows
        assert codex_labellings(parse(base + ["--codex-labels", name])) == [name]
    with pytest.raises(SystemExit):
        parse(base + ["--codex-labels", "consensus", "--codex-first", "1"])


def test_codex_options_that_would_be_ignored_are_errors(tmp_path, capsys):
    from cellscale.cli import main

    base = ["train", "--out", str(tmp_path / "m"), "--run-dir", str(tmp_path / "r")]
    (tmp_path / "index.csv").write_text("id,kind\n")  # a nuclear-only (DSB2018-like) dataset
    assert main(base + ["--data", str(tmp_path), "--codex", str(tmp_path)]) == 2
    assert "--codex adds whole-cell labels" in capsys.readouterr().err
    assert main(base + ["--data", "synthetic-tissue", "--codex-labels", "consensus"]) == 2
    assert "need --codex" in capsys.readouterr().err
    assert main(base + ["--data", "synthetic-tissue", "--codex-share", "0.8"]) == 2
    assert "need --codex" in capsys.readouterr().err
    assert not (tmp_path / "m").exists() and not (tmp_path / "r").exists()


def test_each_tissue_model_beats_every_peer_against_the_expert_whose_outlines_it_learnt():
    """On the CODEX tile's held-out columns (never trained or tuned on), with the workflow's CPU default:
    models/tissue (expert 1's outlines where both experts drew a cell) against expert 1, and
    models/tissue-tight (expert 2's) against expert 2, each above every other tool's masks there."""
    import tifffile

    from cellscale.segment.predictor import Predictor
    from cellscale.train.data import codex_columns
    from cellscale.train.evaluate import codex_scores

    folder = need_shared("codex/R001_X003_Y004")
    image = tifffile.imread(folder / "image.ome.tif")[np.newaxis]
    ours, peers = {}, {}
    for name in ("tissue", "tissue-tight"):
        labels = segment_image(Predictor(MODELS / name, precision="int8", augment="rot180"), image,
                               {"nuclear": 0, "membrane": 2}, tile=512)["whole_cell"][0][codex_columns("test")]
        peers = codex_scores(folder, labels)  # F1 against both experts: ours ("cellscale") and every peer's
        ours[name] = peers.pop("cellscale")
    assert len(peers) >= 5
    best_peer = [max(f1[i] for f1 in peers.values()) for i in (0, 1)]
    assert ours["tissue"][0] > best_peer[0], (ours, best_peer)
    assert ours["tissue-tight"][1] > best_peer[1], (ours, best_peer)
    # the two models trace the experts' trade-off: each is the better one against its own expert
    assert ours["tissue"][0] > ours["tissue-tight"][0] and ours["tissue-tight"][1] > ours["tissue"][1]


def test_dense_generated_tissue_packs_cells_around_large_nuclei():
    """The CODEX-like generator: packed cells, each nucleus inside its own cell and filling much of
    it, the truth table listing exactly the cells drawn, and the same image for the same seed."""
    from cellscale.synth.tissue import make_dense_tissue, make_tissue

    t = make_dense_tissue((256, 256), seed=3, cell_radius=10)
    again = make_dense_tissue((256, 256), seed=3, cell_radius=10)
    assert np.array_equal(t.image, again.image) and np.array_equal(t.whole_cell, again.whole_cell)
    cells = np.setdiff1d(np.unique(t.whole_cell), [0])
    assert len(cells) > 80 and sorted(t.truth.CellID) == list(cells)
    nucleated = t.nuclear > 0
    assert np.array_equal(t.nuclear[nucleated], t.whole_cell[nucleated])  # nucleus k lies in cell k
    assert len(np.setdiff1d(np.unique(t.nuclear), [0])) > 0.9 * len(cells)
    dense_fill = nucleated.sum() / (t.whole_cell > 0).sum()
    sparse = make_tissue((256, 256), n_cells=40, seed=3)
    assert dense_fill > 0.4 > (sparse.nuclear > 0).sum() / (sparse.whole_cell > 0).sum()
    # the membrane stain is faint next to the DNA, unlike the sparse generator's crisp outlines
    def contrast(img):
        return float(np.percentile(img[1], 99) - np.median(img[1])) / float(np.percentile(img[0], 99) - np.median(img[0]))
    assert contrast(t.image) < contrast(sparse.image)


def test_generated_tissue_styles(tmp_path, capsys):
    from cellscale.cli import build_parser, main
    from cellscale.train.data import TISSUE_STYLES, load_synthetic_tissue

    base = ["train", "--data", "synthetic-tissue", "--out", "m", "--run-dir", "r"]
    for style in TISSUE_STYLES:  # the command line offers every style the library knows
        assert build_parser().parse_args(base + ["--tissue-style", style]).tissue_style == style
    mixed = load_synthetic_tissue(2, "val", 0, "mixed")
    sparse = load_synthetic_tissue(2, "val", 0)
    dense = load_synthetic_tissue(2, "val", 0, "dense")
    assert np.array_equal(mixed[0].image, sparse[0].image)  # the first image is sparse, the second dense
    assert mixed[1].image.shape == (2, *mixed[1].labels["whole_cell"].shape)
    fill = [(ex.labels["nuclear"] > 0).sum() / (ex.labels["whole_cell"] > 0).sum() for ex in (*sparse, *mixed, *dense)]
    assert max(fill[:3]) < 0.4 < min(fill[3:])  # sparse images' nuclei are small; dense images' fill their cells
    with pytest.raises(ValueError, match="unknown generated tissue style"):
        load_synthetic_tissue(1, "val", 0, "packed")
    (tmp_path / "index.csv").write_text("id,kind\n")
    assert main(["train", "--out", str(tmp_path / "m"), "--run-dir", str(tmp_path / "r"), "--data", str(tmp_path),
                 "--tissue-style", "dense"]) == 2
    assert "--tissue-style" in capsys.readouterr().err
    assert not (tmp_path / "m").exists() and not (tmp_path / "r").exists()
