"""Post-processing, block/tile/shard invariance and the segmentation pipeline steps."""

import numpy as np
import pytest

from cellscale.segment.image import segment_image
from cellscale.segment.metrics import f1_score, match_counts
from cellscale.segment.postprocess import PostprocessParams, labels_from_maps
from cellscale.segment.stitch import labels_by_block, labels_from_arrays
from cellscale.train.targets import inner_distance, three_class


def ideal_maps(labels):
    """The maps a perfect model would predict for these labels."""
    classes = three_class(labels)
    return inner_distance(labels), (classes == 0).astype(np.float32)


def matched_fraction(a, b, iou=0.9):
    tp, fp, fn = match_counts(a, b, (iou,))[0]
    return tp / max(tp + fn, tp + fp, 1)


def test_targets_peak_inside_every_cell(small_tissue):
    dist = inner_distance(small_tissue.whole_cell)
    assert dist.max() == pytest.approx(1.0)
    peaks = np.zeros(int(small_tissue.whole_cell.max()) + 1)
    np.maximum.at(peaks, small_tissue.whole_cell.ravel(), dist.ravel())
    present = np.unique(small_tissue.whole_cell)[1:]
    assert np.allclose(peaks[present], 1.0)
    assert set(np.unique(three_class(small_tissue.whole_cell))) == {0, 1, 2}


@pytest.mark.parametrize("compartment", ["nuclear", "whole_cell"])
def test_postprocess_recovers_cells_from_ideal_maps(small_tissue, compartment):
    truth = getattr(small_tissue, compartment)
    dist, p_bg = ideal_maps(truth)
    labels = labels_from_maps(dist, p_bg, PostprocessParams(sigma=1.0, marker_threshold=0.4))
    assert f1_score(truth, labels) >= 0.95


def test_weak_borders_merge_and_true_borders_stay(small_tissue):
    """A nucleus cut in two by a dip of its distance map is merged back when the network sees no
    boundary between the halves; touching cells with a predicted boundary between them stay apart."""
    truth = small_tissue.whole_cell
    dist, p_bg = ideal_maps(truth)
    p_boundary = (three_class(truth) == 1).astype(np.float32)
    cell = int(np.bincount(truth.ravel())[1:].argmax()) + 1  # the largest cell
    ys, xs = np.nonzero(truth == cell)
    cut = (truth == cell) & (np.abs(np.arange(truth.shape[1])[None, :] - int(np.median(xs))) <= 1)
    dipped = np.where(cut, 0.0, dist).astype(np.float32)  # a valley across it: two markers
    plain = PostprocessParams(sigma=0.0, marker_threshold=0.4)
    merged = PostprocessParams(sigma=0.0, marker_threshold=0.4, merge_boundary=0.2)
    split = labels_from_maps(dipped, p_bg, plain)
    assert len(np.unique(split[truth == cell])) >= 2  # the dip did cut it
    fixed = labels_from_maps(dipped, p_bg, merged, p_boundary)
    assert f1_score(truth, fixed) > f1_score(truth, split)
    assert len(np.unique(fixed[ys, xs])) == 1
    # true borders: the ideal maps' boundary pixels keep every pair of touching cells apart
    tp, _, fn = match_counts(truth, labels_from_maps(dist, p_bg, merged, p_boundary))[0]
    assert fn == 0 and tp == len(np.unique(truth)) - 1
    with pytest.raises(ValueError, match="boundary"):
        labels_from_maps(dist, p_bg, merged)
    with pytest.raises(ValueError, match="merge_boundry"):  # a misspelt override is not silently ignored
        PostprocessParams.from_dict({"merge_boundry": 0.2})


def test_objects_smaller_than_min_area_are_dropped_and_the_rest_renumbered():
    """``min_area``: objects of fewer pixels are dropped, one of exactly ``min_area`` pixels is kept; the kept ones
    are numbered 1..N in their order."""
    from cellscale.segment.postprocess import finish_labels

    labels = np.zeros((6, 20), np.int32)
    for k, (label, area) in enumerate(((3, 7), (5, 8), (9, 9), (12, 1))):  # one object per 5-column band
        band = np.zeros(30, np.int32)
        band[:area] = label
        labels[:, 5 * k:5 * k + 5] = band.reshape(6, 5)
    areas = {label: int((labels == label).sum()) for label in (3, 5, 9, 12)}
    assert areas == {3: 7, 5: 8, 9: 9, 12: 1}
    out = finish_labels(labels, PostprocessParams(min_area=8))
    kept = [label for label in (3, 5, 9, 12) if areas[label] >= 8]
    np.testing.assert_array_equal(out, sum((labels == label) * (k + 1) for k, label in enumerate(kept)))


def test_weak_borders_of_min_border_pixel_pairs_merge_and_shorter_ones_do_not():
    """``merge_across_weak_borders``: a weak border of exactly ``min_border`` pixel pairs joins two objects (the
    smaller label stays), one pair fewer does not."""
    from cellscale.segment.postprocess import merge_across_weak_borders

    labels = np.zeros((8, 8), np.int32)
    labels[0:3, 0:4], labels[0:3, 4:8] = 1, 2   # a vertical border 3 rows long: 3 pixel pairs
    labels[5:7, 0:4], labels[5:7, 4:8] = 3, 4   # 2 rows: 2 pairs
    p_boundary = np.zeros(labels.shape, np.float32)
    pairs = {(a, b): int(((labels[:, :-1] == a) & (labels[:, 1:] == b)).sum()) for a, b in ((1, 2), (3, 4))}
    assert pairs == {(1, 2): 3, (3, 4): 2}
    out = merge_across_weak_borders(labels, p_boundary, threshold=0.5, min_border=3)
    np.testing.assert_array_equal(out, np.where(labels == 2, 1, labels))


def test_blocks_do_not_change_cells(small_tissue):
    dist, p_bg = ideal_maps(small_tissue.whole_cell)
    params = PostprocessParams()
    one_block = labels_from_arrays(dist, p_bg, params, block=1024, margin=64)
    many_blocks = labels_from_arrays(dist, p_bg, params, block=96, margin=48)
    assert one_block.dtype == np.uint32
    assert matched_fraction(one_block, many_blocks) >= 0.99
    # with the boundary merge on, too
    p_boundary = (three_class(small_tissue.whole_cell) == 1).astype(np.float32)
    merged = PostprocessParams(merge_boundary=0.2)
    one_block = labels_from_arrays(dist, p_bg, merged, block=1024, margin=64, p_boundary=p_boundary)
    many_blocks = labels_from_arrays(dist, p_bg, merged, block=96, margin=48, p_boundary=p_boundary)
    assert one_block.max() > 50 and matched_fraction(one_block, many_blocks) >= 0.99
    # blocks post-processed by several threads (segment_image's default: one per core) give the same labels
    for workers in (2, 5):
        threaded = labels_by_block(lambda y0, y1, x0, x1: (dist[y0:y1, x0:x1], p_bg[y0:y1, x0:x1]), dist.shape,
                                   params, block=96, margin=48, workers=workers)
        np.testing.assert_array_equal(threaded, labels_from_arrays(dist, p_bg, params, block=96, margin=48))


@pytest.mark.parametrize("augment", ["none", "rot180"])  # rot180: the workflow's default
def test_tiled_result_matches_a_single_pass(tissue_predictor, augment):
    """Windows of 192 and 256 px (blended over their 32-px overlaps) against one window over the whole
    768 x 768 image: at least 99% of the cells identical at IoU 0.9. (Windows of 128 px are below the
    network's context and match only 97.7-98.8% of the whole cells with the shipped tissue model.)"""
    from support import MODELS

    from cellscale.segment.predictor import Predictor
    from cellscale.synth.tissue import make_tissue

    if augment != "none":
        tissue_predictor = Predictor(MODELS / "tissue", augment=augment, precision="float32")

    image = make_tissue((768, 768), n_cells=320, seed=11).image[np.newaxis]
    roles = {"nuclear": 0, "membrane": 1}
    single = segment_image(tissue_predictor, image, roles, tile=768, overlap=32)
    for tile in (192, 256):
        tiled = segment_image(tissue_predictor, image, roles, tile=tile, overlap=32)
        for comp in ("nuclear", "whole_cell"):
            assert single[comp].max() > 250
            assert matched_fraction(single[comp][0], tiled[comp][0]) >= 0.99, (tile, comp)


def test_shard_count_does_not_change_labels(tmp_path, small_tissue):
    """The workflow's tile -> segment -> stitch steps give the same labels for 1 or many shards."""
    from support import MODELS

    from cellscale.io import read_labels, write_image
    from cellscale.segment.settings import SegmentSettings, TilingSettings
    from cellscale.segment.shards import shard_name
    from cellscale.steps.segment import segment_shard
    from cellscale.steps.segment import stitch_sample, tile_sample

    image_path = tmp_path / "tissue.ome.tif"
    write_image(image_path, small_tissue.image, ["DNA", "Membrane", "CD3", "CD20"])
    results = {}
    for name, shard_mpx in (("one", 100.0), ("many", 0.07)):
        tiles = tmp_path / name / "tiles"
        plan = tile_sample("s", image_path, tiles, {"nuclear": 0, "membrane": 1}, MODELS / "tissue",
                           tiling=TilingSettings(tile=128, overlap=32, shard_mpx=shard_mpx))
        maps = []
        for shard in range(len(plan.shards)):
            out = tmp_path / name / "maps" / shard_name(shard)
            segment_shard(tiles / shard_name(shard), MODELS / "tissue", out, SegmentSettings(augment="none"))
            maps.append(out)
        stitch_sample(tiles / "plan.json", maps, MODELS / "tissue", "whole_cell", tmp_path / name / "wc.ome.tif")
        results[name] = (len(plan.shards), read_labels(tmp_path / name / "wc.ome.tif"))
    assert results["one"][0] == 1 and results["many"][0] > 3
    assert results["one"][1].dtype == np.uint32
    np.testing.assert_array_equal(results["one"][1], results["many"][1])


def test_the_workflow_steps_take_the_pixel_size_from_the_image_metadata(tmp_path, small_tissue):
    """With no pixel_size_um in the sheet, tile -> segment -> stitch take the OME-TIFF's: a model that declares
    twice that size gets the image halved, the labels come back on the image's grid and state its size."""
    import json
    import shutil

    from support import MODELS

    from cellscale.io import pixel_size_from_metadata, read_labels, write_image
    from cellscale.segment.settings import SegmentSettings, TilingSettings
    from cellscale.segment.shards import shard_name
    from cellscale.steps.segment import segment_shard, stitch_sample, tile_sample

    model = tmp_path / "model"
    shutil.copytree(MODELS / "tissue", model)
    spec = json.loads((model / "model.json").read_text())
    (model / "model.json").write_text(json.dumps({**spec, "pixel_size_um": 0.5}))
    image_path = tmp_path / "fine.ome.tif"
    write_image(image_path, small_tissue.image[:, :160, :192], ["DNA", "Membrane", "CD3", "CD20"], pixel_size_um=0.25)
    tiles = tmp_path / "tiles"
    plan = tile_sample("s", image_path, tiles, {"nuclear": 0, "membrane": 1}, model,
                       tiling=TilingSettings(tile=128, overlap=32, shard_mpx=100.0))
    assert plan.scale == 0.5 and plan.pixel_size_um == 0.25 and plan.shape == [1, 80, 96]
    segment_shard(tiles / shard_name(0), model, tmp_path / "maps" / shard_name(0), SegmentSettings(augment="none"))
    stitch_sample(tiles / "plan.json", [tmp_path / "maps" / shard_name(0)], model, "whole_cell", tmp_path / "wc.tif")
    assert read_labels(tmp_path / "wc.tif").shape == (160, 192)
    assert pixel_size_from_metadata(tmp_path / "wc.tif") == 0.25
    # the sheet's value wins over the metadata's
    plan = tile_sample("s", image_path, tmp_path / "tiles2", {"nuclear": 0, "membrane": 1}, model,
                       tiling=TilingSettings(tile=128, overlap=32, shard_mpx=100.0), pixel_size_um=0.5)
    assert plan.scale == 1.0 and plan.pixel_size_um == 0.5


def test_images_are_resampled_to_the_model_resolution(tissue_predictor, small_tissue):
    """The same tissue imaged at twice the resolution gives the same cells on its own grid."""
    from scipy import ndimage as ndi

    from cellscale.segment.tiles import resampling_scale, to_source_grid

    assert resampling_scale(0.25, 0.5) == 0.5 and resampling_scale(0.5, 0.51) == 1.0
    assert resampling_scale(None, 0.5) == 1.0
    tissue_predictor.spec.pixel_size_um = 0.5
    try:
        roles = {"nuclear": 0, "membrane": 1}
        native = segment_image(tissue_predictor, small_tissue.image[np.newaxis], roles, pixel_size_um=0.5)
        fine_image = ndi.zoom(small_tissue.image.astype(np.float32), (1, 2, 2), order=1)
        fine = segment_image(tissue_predictor, fine_image[np.newaxis], roles, pixel_size_um=0.25)
        # an explicit scale (a sample's scale column) wins over the pixel sizes
        explicit = segment_image(tissue_predictor, fine_image[np.newaxis], roles, pixel_size_um=0.5, scale=0.5)
    finally:
        tissue_predictor.spec.pixel_size_um = None
    for comp in ("nuclear", "whole_cell"):
        np.testing.assert_array_equal(explicit[comp], fine[comp])
    with pytest.raises(ValueError, match="scale must be"):
        resampling_scale(None, None, 0.0)
    for comp in ("nuclear", "whole_cell"):
        assert fine[comp].shape[1:] == fine_image.shape[1:]
        back = to_source_grid(fine[comp][0], small_tissue.image.shape[1:], 2.0)
        assert f1_score(native[comp][0], back) >= 0.9, comp


def test_tuning_shares_the_watershed_and_gets_the_block_labels():
    """Grid search runs each block's watershed once per marker setting and finishes it per merge setting: that
    gives exactly the labels of the plain block-wise path, for every setting, so the same choice, also on an
    image of several post-processing blocks."""
    import itertools

    from scipy import ndimage as ndi

    from cellscale.segment.metrics import summarize
    from cellscale.segment.postprocess import finish_labels, watershed_labels
    from cellscale.synth.tissue import make_tissue
    from cellscale.train.evaluate import TUNING_GRID, compartment_labels, tune

    rng = np.random.default_rng(0)
    t = make_tissue((160, 160), n_cells=40, seed=1)
    dist = ndi.distance_transform_edt(t.nuclear > 0)
    dist /= max(dist.max(), 1)
    maps = np.stack([np.clip(dist + rng.normal(0, 0.1, dist.shape), 0, 1),
                     np.clip((t.nuclear == 0) + rng.normal(0, 0.2, dist.shape), 0, 1),
                     rng.random(dist.shape)]).astype(np.float32)
    wide = (np.tile(t.nuclear, (1, 4)), np.tile(maps, (1, 1, 4)))  # 160 x 640: two blocks of 512
    images = [(t.nuclear, maps), (t.nuclear[:96, :128], maps[:, :96, :128]), wide]
    best_plain, best_score = None, -1.0
    for values in itertools.product(*TUNING_GRID.values()):
        params = PostprocessParams(**dict(zip(TUNING_GRID, values)))
        plain = [compartment_labels(m, params) for _, m in images]
        np.testing.assert_array_equal(finish_labels(watershed_labels(maps[0], maps[1], params), params, maps[2]),
                                      plain[0])
        result = summarize((truth, labels) for (truth, _), labels in zip(images, plain))
        if result["f1"] + result["ap"] > best_score:
            best_plain, best_score = params, result["f1"] + result["ap"]
    best, result = tune([m for _, m in images], [truth for truth, _ in images], log=lambda *_: None)
    assert best == best_plain and result["f1"] + result["ap"] == best_score > 0


def test_tuning_against_two_experts_runs_each_watershed_once(monkeypatch):
    """The CODEX tuning scores the same maps against both experts (train.finish: the maps once per expert): each
    watershed setting runs once for both, not once per expert, and the choice is the one of two separate copies."""
    import itertools

    from scipy import ndimage as ndi

    import cellscale.train.evaluate as evaluate
    from cellscale.synth.tissue import make_tissue

    t = make_tissue((128, 128), n_cells=24, seed=4)
    dist = ndi.distance_transform_edt(t.nuclear > 0)
    maps = np.stack([dist / max(dist.max(), 1), (t.nuclear == 0).astype(float), np.zeros(dist.shape)])
    maps = maps.astype(np.float32)
    other = np.where(t.nuclear % 3 == 0, 0, t.nuclear)   # a second expert who drew fewer cells
    separate = evaluate.tune([maps, maps.copy()], [t.nuclear, other], log=lambda *_: None)
    calls = []
    original = evaluate.watershed_labels
    monkeypatch.setattr(evaluate, "watershed_labels", lambda *a, **k: calls.append(1) or original(*a, **k))
    shared = evaluate.tune([maps] * 2, [t.nuclear, other], log=lambda *_: None)
    settings = {tuple(v[:3]) for v in itertools.product(*evaluate.TUNING_GRID.values())}   # sigma, foreground, marker
    assert list(evaluate.TUNING_GRID)[:3] == ["sigma", "foreground", "marker_threshold"]
    assert len(calls) == len(settings)   # one post-processing block of one image
    assert shared == separate
