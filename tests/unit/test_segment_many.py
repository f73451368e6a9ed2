"""Many fields of view in one process: windows of several images share forward passes, the labels of each
image are those it gets alone, a bad image yields its error and the others come out; the int8 copy runs
windows at their own size, several per invoke, with maps that do not depend on the batch."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import tifffile
from support import DEMO, MODELS

import cellscale.segment.predictor as predictor_module
from cellscale.io import ImageError, ImageSource, read_image
from cellscale.segment.image import FieldOfView, segment_image, segment_many
from cellscale.segment.predictor import Predictor
from cellscale.segment.preprocess import normalize, percentile_range, select_channels

DSB = DEMO / "dsb2018" / "images"


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    """Demo DSB2018 images and crops of them: three share a 256 x 256 window (one batch across images),
    the others have windows of their own sizes (colour 256 x 320, four 288 x 368 windows of 520 x 696,
    one 208 x 240)."""
    small = read_image(DSB / "0bf4b144167694b6.png")
    wide = read_image(DSB / "150b0ffa318c87b3.png")
    colour = read_image(DSB / "9fb32aba1c2fd532.png")
    return [small, wide[..., :256, :256], colour, wide, wide[..., 300:500, 400:640], wide[..., 264:, 420:676]]


def _fields(images: list[np.ndarray]) -> list[FieldOfView]:
    return [FieldOfView(ImageSource.from_array(image), {}) for image in images]


def _labels_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("precision,augment,which", [("int8", "rot180", range(6)), ("float32", "none", (0, 1, 5))])
def test_labels_are_those_of_each_image_alone(images, precision, augment, which):
    """Each image's labels from segment_many, for groups of one image to all of them and batches of 1 and 3
    windows, are those segment_image gives it alone with the same predictor (int8: and with batches of 1)."""
    images = [images[k] for k in which]  # float32: the 256 x 256 windows (TensorFlow traces each batch shape)
    for batch in (1, 3):
        predictor = Predictor(MODELS / "nuclear", batch_size=batch, precision=precision, augment=augment)
        alone = [segment_image(predictor, image) for image in images]
        assert all(result["nuclear"].max() > 5 for result in alone)  # cells found in every image
        if batch == 1:
            first = alone
        elif precision == "int8":  # the same labels whatever the batch size
            assert all(_labels_equal(a, b) for a, b in zip(alone, first))
        passes = []
        call = predictor._call
        predictor._call = lambda x: passes.append(x.shape) or call(x)
        for group_mpx in (0.05, 0.5, 100.0):
            out = list(segment_many(predictor, _fields(images), group_mpx=group_mpx))
            assert [index for index, _ in out] == list(range(len(images)))
            for (_, result), expected in zip(out, alone):
                assert _labels_equal(result, expected), (batch, group_mpx)
        if batch == 3:  # the 256 x 256 windows of three images went through one forward pass
            assert (3, 256, 256, 1) in passes


def test_a_bad_image_yields_its_error_and_the_others_come_out(images, tmp_path):
    predictor = Predictor(MODELS / "nuclear", batch_size=2, precision="int8", augment="none")
    nan = np.random.default_rng(0).random((1, 1, 64, 64)).astype(np.float32)
    nan[0, 0, 5:7, 5:8] = np.nan
    truncated = tmp_path / "truncated.tif"  # a valid header, pixel data cut short: fails when read
    tifffile.imwrite(truncated, np.random.default_rng(1).integers(0, 255, (300, 300), dtype=np.uint8))
    truncated.write_bytes(truncated.read_bytes()[:2000])
    fields = _fields(images[:2])
    fields.insert(1, FieldOfView(ImageSource.from_array(nan, tmp_path / "nan.tif"), {}))
    fields.insert(3, FieldOfView(ImageSource.open(truncated), {}))
    fields.append(FieldOfView(ImageSource.from_array(images[0]), {"nuclear": 3}))  # no channel 3
    fields.append(FieldOfView(ImageSource.from_array(images[0]), {}, scale=0.0))  # not a scale
    out = list(segment_many(predictor, fields, group_mpx=0.1))
    assert [index for index, _ in out] == list(range(len(fields)))
    results = [result for _, result in out]
    assert isinstance(results[1], ImageError) and "nan.tif: 6 of 4096 pixel values are not finite" in str(results[1])
    assert isinstance(results[3], ImageError) and "truncated.tif" in str(results[3])
    assert isinstance(results[4], ValueError) and "out of range" in str(results[4])
    assert isinstance(results[5], ValueError) and "scale" in str(results[5])
    for k, image in ((0, images[0]), (2, images[1])):
        assert _labels_equal(results[k], segment_image(predictor, image))
    with pytest.raises(ImageError, match="not finite"):  # segment_image raises what segment_many yields
        segment_image(predictor, nan)


def _windows(shape: tuple[int, int], n: int) -> np.ndarray:
    """``n`` normalised windows of a demo image (different crops)."""
    raw = read_image(DSB / "150b0ffa318c87b3.png")
    channels = select_channels(raw, {}, ["nuclear"])[0]
    image = normalize(channels, percentile_range(channels))
    (h, w), (height, width) = shape, image.shape[1:]
    starts = [((height - h) * k // n, (width - w) * k // n) for k in range(n)]
    return np.stack([image[:, y:y + h, x:x + w] for y, x in starts])


@pytest.mark.parametrize("shape", [(256, 320), (512, 512), (128, 64)])
def test_int8_maps_of_a_window_do_not_depend_on_the_batch(shape):
    windows = _windows(shape, 5)  # batches of 4: one full, one of a single window
    one = Predictor(MODELS / "nuclear", batch_size=1, precision="int8", augment="none").predict(windows)
    four = Predictor(MODELS / "nuclear", batch_size=4, precision="int8", augment="none")
    passes = []
    call = four._call
    four._call = lambda x: passes.append(x.shape) or call(x)
    np.testing.assert_array_equal(four.predict(windows), one)
    assert passes == [(4, *shape, 1), (1, *shape, 1)]  # several windows per invoke, at their own size
    np.testing.assert_array_equal(four.predict(windows[::-1])[::-1], one)  # other neighbours in the batch


def test_int8_windows_run_at_their_own_size(monkeypatch):
    """A 448 x 448 window at its own size and zero-padded to the built 512 x 512 (the copy's old way and its
    fallback): the same maps bit for bit farther than 128 px from the bottom and right edges, where the
    padding is out of the network's reach, and not the same near them."""
    windows = _windows((448, 448), 1)
    own = Predictor(MODELS / "nuclear", precision="int8", augment="none").predict(windows)
    monkeypatch.setattr(predictor_module, "_int8_resized", lambda *args: None)
    padded = Predictor(MODELS / "nuclear", precision="int8", augment="none").predict(windows)
    assert padded.shape == own.shape == (1, 4, 448, 448)
    np.testing.assert_array_equal(own[..., :320, :320], padded[..., :320, :320])
    assert not np.array_equal(own, padded)


def test_float32_maps_do_not_depend_on_the_batch_size_above_one():
    """Batches of 2 (the last of one window) and of 3 give the same float32 maps (oneDNN on a CPU): bit for bit with
    the earlier sessions' tensorflow-cpu, to a float32 rounding step with 2.21 (a relative 1.1e-7 at most, measured)."""
    windows = _windows((128, 96), 3)
    three = Predictor(MODELS / "nuclear", batch_size=3, precision="float32", augment="none").predict(windows)
    two = Predictor(MODELS / "nuclear", batch_size=2, precision="float32", augment="none")
    np.testing.assert_allclose(two.predict(windows), three, rtol=1e-6, atol=1e-9)


def test_segment_many_defaults_are_segment_image_defaults():
    def defaults(function):
        return {k: p.default for k, p in inspect.signature(function).parameters.items()
                if p.default is not inspect.Parameter.empty}

    many, single = defaults(segment_many), defaults(segment_image)
    assert {k: many[k] for k in ("tile", "overlap", "block", "margin", "params", "shard_mpx", "workers")} == \
        {k: single[k] for k in ("tile", "overlap", "block", "margin", "params", "shard_mpx", "workers")}


def test_segment_timelapse_of_one_frame_is_refused(tmp_path, capsys):
    """`segment --timelapse` of one frame (a still image, or a folder of one frame) is refused as the workflow refuses
    a time-lapse sample of one frame; it wrote a 2-D label image, which `track` then refused."""
    from cellscale.cli import main

    still = tmp_path / "still.tif"
    tifffile.imwrite(still, (np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8))
    assert main(["segment", str(still), "--timelapse", "-o", str(tmp_path / "labels.tif"),
                 "--model", str(MODELS / "nuclear")]) == 1
    assert "--timelapse needs frames to track, and this holds one (64 x 64 px)" in capsys.readouterr().err
    assert not (tmp_path / "labels.tif").exists()


def test_segment_timelapse_measures_the_nuclei_without_a_scale(tmp_path, caplog):
    """`segment --timelapse` without --scale takes the workflow's scale of a time-lapse without a sheet scale
    (segment.timelapse_scale, auto: the estimate is made and logged); --scale 1, or a still image, makes none."""
    from cellscale.cli import main
    from cellscale.synth.timelapse import make_timelapse

    movie = make_timelapse(n_frames=3, shape=(128, 128), n_cells=6, seed=1)
    tifffile.imwrite(tmp_path / "movie.tif", (movie.image * 60000).astype(np.uint16), metadata={"axes": "TYX"})
    tifffile.imwrite(tmp_path / "still.tif", (movie.image[0] * 60000).astype(np.uint16))
    runs = {"default": ["movie.tif", "--timelapse"], "one": ["movie.tif", "--timelapse", "--scale", "1"],
            "still": ["still.tif"]}
    said = {}
    for name, args in runs.items():
        caplog.clear()
        with caplog.at_level("INFO", logger="cellscale"):
            assert main(["segment", str(tmp_path / args[0]), *args[1:], "-o", str(tmp_path / f"{name}.tif"),
                         "--model", str(MODELS / "nuclear"), "--augment", "none"]) == 0
        said[name] = "scale auto (" in caplog.text
    assert said == {"default": True, "one": False, "still": False}


@pytest.mark.parametrize("precision", ["int8", "float32"])
def test_identical_frames_of_a_movie_get_identical_labels(images, precision):
    """A movie's frames are normalised together and their windows share forward passes (segment.batch_mpx): frames
    that are the same picture must come out the same, whichever pass each window ran in."""
    frame = images[1][0, 0]  # 256 x 256: several frames' windows in one pass
    movie = np.stack([frame] * 3)[:, None]  # (T, C, Y, X)
    labels = segment_image(Predictor(MODELS / "nuclear", precision=precision, augment="rot180", batch_mpx=0.5),
                           movie)["nuclear"]
    assert labels.shape == (3, *frame.shape) and labels[0].max() > 5
    for t in (1, 2):
        np.testing.assert_array_equal(labels[t], labels[0])
