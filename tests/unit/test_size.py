"""scale: auto: object sizes of the training images, the estimate from a first pass, and the scale it chooses."""

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from skimage.draw import disk
from skimage.transform import rescale

from cellscale.io import ImageSource, read_image
from cellscale.segment.image import FieldOfView, estimate_scale, segment_image, segment_many
from cellscale.segment.metrics import f1_score
from cellscale.segment.model import ModelSpec
from cellscale.segment.size import (
    choose_scale,
    default_scale,
    keep_range,
    median_diameter,
    pick_diameter,
    search_scales,
    size_crop,
    training_sizes,
)
from cellscale.settings import AUTO, parse_scale, planning_scale

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "data" / "demo" / "dsb2018"
MODELS = ROOT / "models"


def discs(shape, radius, centres):
    labels = np.zeros(shape, np.int32)
    for k, (y, x) in enumerate(centres, 1):
        labels[disk((y, x), radius, shape=shape)] = k
    return labels


def test_median_diameter_is_the_equivalent_diameter_and_leaves_out_cut_objects():
    labels = discs((100, 100), 10, [(50, 50), (20, 80)])
    labels[labels == 0] = 0
    small = discs((100, 100), 4, [(2, 30)])  # cut by the top edge
    labels[small > 0] = 3
    d, n = median_diameter(labels)
    assert n == 3
    d, n = median_diameter(labels, (True, False, False, False))
    assert n == 2 and d == pytest.approx(20, rel=0.05)
    assert median_diameter(np.zeros((5, 5), int)) == (pytest.approx(math.nan, nan_ok=True), 0)
    assert median_diameter(np.full((5, 5), -1))[1] == 0  # negative values mark no object


def test_training_sizes_and_the_scale_they_choose():
    images = [discs((200, 200), r, [(50, 50), (150, 150)]) for r in (5, 8, 10, 12, 15, 20, 25, 30, 35, 40)]
    sizes = training_sizes(images, "test")
    assert sizes["images"] == 10
    assert sizes["p10_px"] < sizes["p25_px"] < sizes["median_px"] < sizes["p75_px"] < sizes["p90_px"]
    assert sizes["median_px"] == pytest.approx(2 * 17.5, rel=0.1)
    # inside the range seen in training: left as it is; outside: brought to the median
    assert choose_scale(sizes["median_px"], sizes) == 1.0
    assert choose_scale(sizes["p75_px"], sizes) == 1.0 and choose_scale(sizes["p25_px"], sizes) == 1.0
    assert choose_scale(sizes["p90_px"], sizes) == pytest.approx(sizes["median_px"] / sizes["p90_px"])
    assert choose_scale(sizes["p90_px"], sizes, "p10-p90") == 1.0
    assert choose_scale(4 * sizes["p90_px"], sizes) == pytest.approx(sizes["median_px"] / (4 * sizes["p90_px"]))
    assert choose_scale(sizes["p10_px"] / 2, sizes) == pytest.approx(2 * sizes["median_px"] / sizes["p10_px"])
    assert choose_scale(1e-4, sizes) == 20.0 and choose_scale(1e6, sizes) == 0.05  # within a scale's bounds
    assert choose_scale(math.nan, sizes) == 1.0  # nothing found: nothing to go by
    with pytest.raises(ValueError, match="no objects"):
        training_sizes([np.zeros((9, 9), int)], "empty")


def test_the_crop_is_central_and_knows_which_edges_cut_the_image():
    assert size_crop((5, 1, 500, 600)) == (2, 0, 500, 0, 600, (False, False, False, False))
    t, y0, y1, x0, x1, cut = size_crop((1, 2, 3000, 800))
    assert (t, y1 - y0, x0, x1, cut) == (0, 1024, 0, 800, (True, True, False, False)) and y0 == (3000 - 1024) // 2
    t, y0, y1, x0, x1, cut = size_crop((1, 2, 3000, 800), scale=4.0)  # at most 1024 model pixels a side
    assert (y1 - y0, x1 - x0, cut) == (256, 256, (True, True, True, True))


SIZES = {"median_px": 18.0, "p10_px": 10.5, "p25_px": 13.0, "p75_px": 28.0, "p90_px": 46.5}


def network(true_diameter, largest=40.0):
    """A stand-in for the model's passes: it finds objects of the true size when it sees them at most ``largest``
    model px and at least 4 (smaller: missed); larger ones it cuts into pieces of 18 model px."""
    def measure(scale):
        seen = true_diameter * scale
        if seen < 4:
            return math.nan, 0
        return (18.0 / scale if seen > largest else true_diameter), 50
    return measure


def test_the_search_sees_large_nuclei_whole_at_a_coarser_pass_and_small_ones_at_a_finer_one():
    passes = search_scales(network(150.0), SIZES, (1, 1, 2048, 2048))
    assert sorted(passes) == [0.0625, 0.125, 0.25, 0.5, 1.0]  # on until the objects look smaller than p10
    assert passes[1.0][0] == 18.0  # the first pass alone takes the pieces for nuclei
    assert pick_diameter(passes, SIZES)[0] == 150.0
    assert choose_scale(150.0, SIZES) == pytest.approx(18.0 / 150.0)
    passes = search_scales(network(6.0), SIZES, (1, 1, 512, 512))
    assert sorted(passes) == [1.0, 2.0] and pick_diameter(passes, SIZES)[0] == 6.0
    passes = search_scales(network(20.0), SIZES, (1, 1, 512, 512))  # familiar: one coarser pass, kept as it is
    assert sorted(passes) == [0.5, 1.0] and choose_scale(pick_diameter(passes, SIZES)[0], SIZES) == 1.0
    assert search_scales(lambda s: (math.nan, 0), SIZES, (1, 1, 512, 512)) == {1.0: (pytest.approx(math.nan,
                                                                                                  nan_ok=True), 0)}
    # a small image: no pass of fewer than 32 px a side
    assert min(search_scales(network(150.0), SIZES, (1, 1, 100, 100))) == 0.5


def test_how_a_diameter_is_picked_from_the_passes():
    # merged blobs at coarse passes (few, large) do not pull the estimate up; no two passes agree: the finest
    passes = {1.0: (15.2, 39), 0.5: (23.1, 14), 0.25: (81.2, 3), 0.125: (134.5, 1)}
    assert pick_diameter(passes, SIZES, "agree") == (15.2, 39)
    assert pick_diameter(passes, SIZES) == (23.1, 14)  # max (the shipped choice): passes that found < 5 do not count
    # whole nuclei keep their size from pass to pass, pieces do not
    passes = {1.0: (18.0, 300), 0.5: (36.0, 80), 0.25: (150.0, 20), 0.125: (148.0, 20), 0.0625: (172.0, 19)}
    assert pick_diameter(passes, SIZES, "agree") == (150.0, 20)
    assert pick_diameter(passes, SIZES) == (172.0, 19)
    assert pick_diameter({1.0: (math.nan, 0)}, SIZES)[1] == 0


def test_the_range_kept_as_it_is():
    assert keep_range(SIZES, "p10-p90") == (10.5, 46.5) and keep_range(SIZES, "p25-p75") == (13.0, 28.0)
    assert keep_range(SIZES, "none") is None and choose_scale(20.0, SIZES, "none") == pytest.approx(0.9)
    # brought to the nearer edge of the kept range instead of the median (the least change)
    assert choose_scale(56.0, SIZES, target="edge") == pytest.approx(0.5)
    assert choose_scale(6.5, SIZES, target="edge") == pytest.approx(2.0)
    assert choose_scale(56.0, SIZES, "none", "edge") == pytest.approx(18.0 / 56.0)  # no range: the median


@pytest.mark.parametrize("value, expected", [(None, None), ("", None), (float("nan"), None), (pd.NA, None),
                                             ("auto", AUTO), (" Auto ", AUTO), ("0.5", 0.5), (2, 2.0)])
def test_scale_values_a_sheet_or_the_command_line_may_give(value, expected):
    assert parse_scale(value) == expected
    assert planning_scale(value) == (1.0 if expected in (None, AUTO) else expected)


@pytest.mark.parametrize("value", ["big", "0", "25", float("inf")])
def test_bad_scales_are_refused_saying_what_is_allowed(value):
    with pytest.raises(ValueError, match="auto"):
        parse_scale(value)


def test_the_shipped_nuclear_model_records_the_sizes_it_was_trained_on():
    sizes = ModelSpec.read(MODELS / "nuclear").object_sizes["nuclear"]
    assert sizes["p10_px"] < sizes["median_px"] < sizes["p90_px"] and sizes["images"] > 100
    assert "training split" in sizes["source"]


@pytest.fixture(scope="module")
def predictor():
    from cellscale.segment.predictor import Predictor

    return Predictor(MODELS / "nuclear", precision="auto", augment="none")


def demo_image(name="0bf4b144167694b6"):
    return read_image(DEMO / "images" / f"{name}.png"), read_image(DEMO / "masks" / f"{name}.tif")[0, 0]


def magnified(image, truth, m):
    big = np.stack([[rescale(image[0, c].astype(np.float32), m, order=1, preserve_range=True, anti_aliasing=m < 1)
                     for c in range(image.shape[1])]])
    return big, rescale(truth, m, order=0, preserve_range=True, anti_aliasing=False).astype(np.int32)


def test_auto_leaves_an_image_of_familiar_sizes_as_it_is(predictor):
    image, _ = demo_image()
    estimate = estimate_scale(predictor, ImageSource.from_array(image), {})
    assert estimate.scale == 1.0 and estimate.objects > 20
    sizes = estimate.sizes
    assert sizes["p25_px"] <= estimate.diameter_px <= sizes["p75_px"] and "within" in estimate.describe()
    np.testing.assert_array_equal(segment_image(predictor, image, scale="auto")["nuclear"],
                                  segment_image(predictor, image)["nuclear"])


def test_auto_brings_large_nuclei_to_the_training_size_and_segments_them_better(predictor):
    image, truth = demo_image()
    big, big_truth = magnified(image, truth, 4.0)  # nuclei of about 80 px: beyond what the model was trained on
    estimate = estimate_scale(predictor, ImageSource.from_array(big), {})
    assert 0.15 < estimate.scale < 0.4 and "outside" in estimate.describe()
    assert json.loads(json.dumps(estimate.as_dict()))["scale"] == estimate.scale
    auto = segment_image(predictor, big, scale="auto")["nuclear"][0]
    assert auto.shape == big.shape[-2:]
    np.testing.assert_array_equal(auto, segment_image(predictor, big, scale=estimate.scale)["nuclear"][0])
    assert f1_score(big_truth, auto) > f1_score(big_truth, segment_image(predictor, big)["nuclear"][0]) + 0.1


def test_auto_in_a_batch_records_each_image_s_choice_and_a_model_without_sizes_fails_that_image(predictor):
    image, truth = demo_image()
    small, _ = magnified(image, truth, 0.35)  # nuclei of about 7 px: below the training sizes
    fovs = [FieldOfView(ImageSource.from_array(im), {}, scale="auto") for im in (image, small)]
    results = dict(segment_many(predictor, fovs))
    assert fovs[0].estimate.scale == 1.0 and fovs[1].estimate.scale > 1.5
    assert results[1]["nuclear"].shape[-2:] == small.shape[-2:]
    from cellscale.segment.predictor import Predictor

    tissue = Predictor(MODELS / "tissue", precision="auto", augment="none")  # records no training sizes
    [(_, err)] = segment_many(tissue, [FieldOfView(ImageSource.from_array(np.stack([image[0, :1]] * 2, 1)),
                                                   {"nuclear": 0, "membrane": 1}, scale="auto")])
    assert isinstance(err, ValueError) and "records no training object sizes" in str(err)


def test_a_time_lapse_without_a_sheet_scale_takes_the_configs_timelapse_scale():
    """segment.timelapse_scale (auto by default) is the scale of a time-lapse whose sheet leaves it empty; a still
    image's stays empty (pixel sizes, else 1), as does any given scale; auto only with a model that records training
    sizes (the tissue models do not: scale 1 there), and nothing where the model declares a pixel size."""
    nuclear, tissue = ModelSpec.read(MODELS / "nuclear"), ModelSpec.read(MODELS / "tissue")
    assert nuclear.object_sizes and not tissue.object_sizes and not nuclear.pixel_size_um
    assert default_scale(None, True, nuclear, "auto") == AUTO
    assert default_scale(None, True, nuclear, 0.5) == 0.5 and default_scale(None, True, tissue, 0.5) == 0.5
    assert default_scale(None, True, tissue, "auto") is None
    assert default_scale(None, False, nuclear, "auto") is None
    assert default_scale(1.0, True, nuclear, "auto") == 1.0 and default_scale(AUTO, True, tissue, 0.5) == AUTO
    sized = ModelSpec(**{**nuclear.__dict__, "pixel_size_um": 0.65})
    assert default_scale(None, True, sized, "auto") is None
    with pytest.raises(ValueError, match="scale must be a number from 0.05 to 20"):
        default_scale(None, True, nuclear, 50)


def _dry_run(tmp_path, sheet: str, **segment) -> str:
    """The jobs of a dry run of the workflow on ``sheet`` (batches off: every sample has its own jobs)."""
    (tmp_path / "samples.tsv").write_text(sheet)
    config = {"samples": str(tmp_path / "samples.tsv"), "batches": {"enabled": False}, "segment": segment,
              "models": {"nuclear": str(MODELS / "nuclear"), "tissue": str(MODELS / "tissue")}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake = [str(Path(sys.executable).parent / "snakemake"), "-s", str(ROOT / "workflow" / "Snakefile"),
                 "--directory", str(tmp_path), "--configfile", str(tmp_path / "config.yaml"), "--cores", "1"]
    for run in (["--until", "plan_batches"], ["--dry-run"]):  # the batch plan (a checkpoint: none here), then dry
        result = subprocess.run([*snakemake, *run], capture_output=True, text=True, timeout=300, check=False)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result.stdout


def test_the_workflow_measures_a_time_lapse_without_a_sheet_scale(tmp_path):
    """A time-lapse without a sheet scale has an object_size job (segment.timelapse_scale: auto); a still image, a
    movie with a sheet scale and one of the tissue model (no training sizes) have none; with timelapse_scale a
    number, no sample has one."""
    movie, still = ROOT / "data" / "demo" / "synthetic" / "timelapse.ome.tif", DEMO / "images" / "0bf4b144167694b6.png"
    sheet = ("sample\timage\tkind\tnuclear_channel\tmembrane_channel\tscale\n"
             f"movie\t{movie}\ttimelapse\t\t\t\n"
             f"movie_one\t{movie}\ttimelapse\t\t\t1\n"
             f"movie_cells\t{movie}\ttimelapse\t0\t1\t\n"
             f"still\t{still}\ttissue\t\t\t\n")
    jobs = _dry_run(tmp_path, sheet)
    assert set(re.findall(r"results/size/(\S+)\.json", jobs)) == {"movie"}, jobs[-3000:]
    assert re.search(r"^object_size\s+1$", jobs, re.M) and re.search(r"^tile\s+4$", jobs, re.M), jobs[-3000:]
    jobs = _dry_run(tmp_path, sheet, timelapse_scale=0.5)
    assert "object_size" not in jobs and re.search(r"^tile\s+4$", jobs, re.M), jobs[-3000:]
