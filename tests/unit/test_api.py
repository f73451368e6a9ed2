"""The Python path of segmentation: arrays with named axes, models by name, the command line's defaults."""

from __future__ import annotations

import numpy as np
import pytest

from support import MODELS


@pytest.fixture(scope="module")
def nuclei_2d():
    from cellscale.synth.tissue import make_tissue

    return make_tissue((160, 144), n_cells=20, seed=3).image[0]


def test_predictor_defaults_are_cellscale_segments(tmp_path, nuclei_2d):
    """A Predictor built with its defaults segments as `cellscale segment` does with its own (the schema's
    segment.precision and segment.augment): it ran float32 without augmentation, the command line int8 + rot180."""
    import tifffile

    from cellscale.cli import main
    from cellscale.io import read_labels
    from cellscale.segment.image import segment_image
    from cellscale.segment.predictor import Predictor
    from cellscale.settings import default

    tifffile.imwrite(tmp_path / "nuclei.tif", nuclei_2d)
    assert main(["segment", str(tmp_path / "nuclei.tif"), "-o", str(tmp_path / "labels.tif")]) == 0
    cli_labels = read_labels(tmp_path / "labels.tif")
    predictor = Predictor(MODELS / "nuclear")
    assert predictor.augment == default("segment", "augment")
    python_labels = segment_image(predictor, nuclei_2d[None, None])["nuclear"][0]
    assert cli_labels.max() > 5
    np.testing.assert_array_equal(python_labels, cli_labels)


def test_load_model_and_a_2d_array_give_cellscale_segments_labels(tmp_path, nuclei_2d):
    """The documented path (docs/api.md): load_model by name, a plain (Y, X) array in, (Y, X) labels out, equal to
    `cellscale segment --model NAME@latest` (a registry reference the command line refused as a missing folder)."""
    import tifffile

    from cellscale.api import load_model
    from cellscale.cli import main
    from cellscale.io import read_labels
    from cellscale.segment.image import segment_image

    tifffile.imwrite(tmp_path / "nuclei.tif", nuclei_2d)
    assert main(["segment", str(tmp_path / "nuclei.tif"), "-o", str(tmp_path / "labels.tif"),
                 "--model", "nuclear@latest"]) == 0
    labels = segment_image(load_model("nuclear"), nuclei_2d)["nuclear"]
    assert labels.shape == nuclei_2d.shape and labels.dtype == np.uint32
    np.testing.assert_array_equal(labels, read_labels(tmp_path / "labels.tif"))


def test_load_model_takes_a_folder_a_name_and_a_version():
    from cellscale.api import load_model
    from cellscale.registry import find_model

    version = find_model("nuclear").version
    by_folder = load_model(MODELS / "nuclear")
    for model in ("nuclear", f"nuclear@{version[:6]}"):
        loaded = load_model(model, precision="int8", augment="none")
        assert loaded.spec == by_folder.spec and (loaded.precision, loaded.augment) == ("int8", "none")
    with pytest.raises(FileNotFoundError, match=r"model 'nucleus': no model 'nucleus' in the registry \(models: "):
        load_model("nucleus")


def test_load_model_and_cellscale_segment_pass_as_many_windows_as_a_workflow_job(tmp_path, monkeypatch):
    """Windows per forward pass: load_model and `cellscale segment` take the schema's segment.batch_mpx as the
    workflow's jobs do (they took 8 and 2 windows a pass whatever their size); a fixed batch_size on request."""
    import tifffile

    import cellscale.api as api
    from cellscale.cli import main
    from cellscale.segment.settings import SegmentSettings
    from cellscale.steps.segment import job_predictor

    job = job_predictor(MODELS / "nuclear", SegmentSettings(precision="int8"))
    loaded = api.load_model("nuclear", precision="int8")
    for window in (64, 256, 512):
        assert loaded.windows_per_pass(window, window) == job.windows_per_pass(window, window)
    assert api.load_model("nuclear", precision="int8", batch_size=3).windows_per_pass(256, 256) == 3
    with pytest.raises(ValueError, match="batch_size 3 and batch_mpx 0.25: give one"):
        api.load_model("nuclear", batch_size=3, batch_mpx=0.25)

    passes, real = [], api.load_model

    def load_model(model, **kwargs):   # the command line's predictor: its windows a pass, then stop
        passes.append(real(model, **kwargs).windows_per_pass(256, 256))
        raise RuntimeError("loaded")

    monkeypatch.setattr(api, "load_model", load_model)
    tifffile.imwrite(tmp_path / "nuclei.tif", np.zeros((64, 64), np.uint16))
    for options in ([], ["--batch-size", "3"]):
        assert main(["segment", str(tmp_path / "nuclei.tif"), "-o", str(tmp_path / "labels.tif"), "--precision",
                     "int8", *options]) == 2
    assert passes == [job.windows_per_pass(256, 256), 3]


def test_arrays_with_named_axes(nuclei_2d):
    """(Y, X), channels last, a list and a movie's (T, Y, X) segment as the same pixels given as (T, C, Y, X)."""
    from cellscale.api import load_model
    from cellscale.segment.image import segment_image

    model = load_model("nuclear", precision="int8")
    reference = segment_image(model, nuclei_2d[None, None])["nuclear"][0]
    two = np.stack([nuclei_2d, np.zeros_like(nuclei_2d)], axis=-1)  # (Y, X, C): the stain in channel 0
    np.testing.assert_array_equal(segment_image(model, two, {"nuclear": 0}, axes="YXC")["nuclear"], reference)
    frames = np.stack([nuclei_2d, nuclei_2d[::-1]])
    movie = segment_image(model, frames, axes="TYX")["nuclear"]
    assert movie.shape == frames.shape
    np.testing.assert_array_equal(movie, segment_image(model, frames[:, None])["nuclear"])
    np.testing.assert_array_equal(segment_image(model, nuclei_2d.tolist())["nuclear"], reference)


@pytest.mark.parametrize("image, axes, message", [
    (np.zeros((3, 64, 64)), None, r"shape \(3, 64, 64\) needs its axes .*axes='CYX', 'YXC' or 'TYX'"),
    (np.zeros((64, 64)), "CYX", r"axes 'CYX' do not fit an array of shape \(64, 64\)"),
    (np.zeros((64, 64, 2)), "YXY", r"axes 'YXY' do not fit"),
    (np.zeros((64, 64), complex), None, r"pixels of type complex128 cannot be segmented"),
    (np.full((64, 64), "a"), None, r"pixels of type <U1 cannot be segmented"),
])
def test_unclear_arrays_are_refused_saying_why(image, axes, message):
    from cellscale.segment.image import segment_image

    with pytest.raises(ValueError, match=message):
        segment_image(None, image, axes=axes)   # refused before the model is used


@pytest.mark.parametrize("shape", [(5, 5), (3, 200), (200, 3), (2, 7, 40)])
def test_an_image_under_8_px_on_an_edge_is_refused_as_the_command_line_refuses_it(shape):
    """segment_image gave a 5 x 5 or 3 x 200 array labels where `cellscale segment` and the workflow refuse an
    image under 8 px on an edge; it is refused with their message."""
    from cellscale.api import load_model
    from cellscale.segment.image import segment_image

    image = np.random.default_rng(0).random(shape).astype(np.float32)
    with pytest.raises(ValueError, match=rf"image of shape \({shape[-2]}, {shape[-1]}\) is too small to segment "
                                         r"\(at least 8 x 8 px\)"):
        segment_image(load_model("nuclear"), image, axes="TYX" if len(shape) == 3 else None)


def test_an_unknown_channel_role_is_refused(nuclei_2d):
    """A misspelt role ({"nucleus": 0}) was ignored: channel 0 was taken as nuclear without a word."""
    from cellscale.segment.image import segment_image

    with pytest.raises(ValueError, match=r"unknown channel role\(s\) \['nucleus'\]: roles are nuclear, membrane"):
        segment_image(None, nuclei_2d[None, None], {"nucleus": 0})
