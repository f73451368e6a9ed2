"""Users' own networks (Keras or SavedModel), declared in the config instead of trained here."""

from __future__ import annotations

import numpy as np
import pytest
from support import MODELS

from cellscale.segment.model import ModelSpec
from cellscale.segment.predictor import Predictor


@pytest.fixture(scope="module")
def foreign_models(tmp_path_factory):
    """The shipped nuclear network re-wrapped with another output layout: {'a': classes, 'b': distance}."""
    import keras

    native = keras.models.load_model(MODELS / "nuclear" / "model.keras", compile=False)
    inp = keras.Input((None, None, 1))
    maps = native(inp)
    outputs = {"a_classes": keras.layers.Identity(name="a_classes")(maps[..., 1:4]),
               "b_distance": keras.layers.Identity(name="b_distance")(maps[..., 0:1])}
    foreign = keras.Model(inp, outputs)
    folder = tmp_path_factory.mktemp("foreign")
    foreign.save(folder / "foreign.keras")
    import tensorflow as tf

    # Keras' bilinear UpSampling2D cannot be traced with unknown spatial sizes, so the
    # SavedModel gets a fixed 256 x 256 window, as exported models often do.
    foreign.export(str(folder / "saved"), format="tf_saved_model", verbose=False,
                   input_signature=[tf.TensorSpec((None, 256, 256, 1), tf.float32)])
    return folder


def declared(path, fmt):
    spec = ModelSpec.read(MODELS / "nuclear")
    return {"path": str(path), "format": fmt, "inputs": ["nuclear"], "compartments": ["nuclear"],
            "outputs": ["nuclear:classes", "nuclear:distance"], "tile_multiple": spec.tile_multiple,
            "postprocess": spec.postprocess}


@pytest.mark.parametrize("fmt,name", [("keras", "foreign.keras"), ("savedmodel", "saved")])
def test_declared_model_gives_the_native_maps(foreign_models, fmt, name):
    tiles = np.random.default_rng(0).random((2, 1, 256, 256)).astype(np.float32)
    native = Predictor(MODELS / "nuclear", precision="float32", augment="none").predict(tiles)
    mine = Predictor(declared(foreign_models / name, fmt), precision="float32", augment="none").predict(tiles)
    np.testing.assert_allclose(mine, native, atol=1e-5)


def test_foreground_only_layout_and_bad_declarations(foreign_models):
    spec = declared(foreign_models / "foreign.keras", "keras")
    spec["outputs"] = ["ignore:1", "nuclear:foreground", "ignore:1", "nuclear:distance"]
    tiles = np.random.default_rng(1).random((1, 1, 32, 32)).astype(np.float32)
    native = Predictor(MODELS / "nuclear", precision="float32", augment="none").predict(tiles)
    mine = Predictor(spec, precision="float32", augment="none").predict(tiles)
    np.testing.assert_allclose(mine[:, 0], native[:, 0], atol=1e-5)  # distance
    np.testing.assert_allclose(mine[:, 3], native[:, 2], atol=1e-5)  # "foreground" = the channel we pointed at
    spec["outputs"] = ["nuclear:classes"]
    with pytest.raises(ValueError, match="needs a distance"):
        Predictor(spec, precision="float32", augment="none")
    with pytest.raises(ValueError, match="needs a 'path'"):
        ModelSpec.read({"inputs": ["nuclear"], "compartments": ["nuclear"]})


def test_workflow_accepts_a_declared_model(foreign_models, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    import yaml
    from support import DEMO, ROOT

    (tmp_path / "config").mkdir()
    image = DEMO / "dsb2018" / "images" / "0bf4b144167694b6.png"
    (tmp_path / "config" / "samples.tsv").write_text(f"sample\timage\tkind\ns\t{image}\ttissue\n")
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["samples"] = str(tmp_path / "config" / "samples.tsv")
    config["models"] = {"nuclear": declared(foreign_models / "saved", "savedmodel"), "tissue": str(MODELS / "tissue")}
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake = str(Path(sys.executable).parent / "snakemake")
    result = subprocess.run([snakemake, "-s", str(ROOT / "workflow/Snakefile"), "--directory", str(tmp_path),
                             "--cores", "2", "results/segmentation/s/nuclear.ome.tif"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    from cellscale.io import read_image, read_labels
    from cellscale.segment.image import segment_image

    augment = config["segment"]["augment"]  # the workflow's test-time augmentation, same for a declared model
    expected = segment_image(Predictor(MODELS / "nuclear", augment=augment, precision="float32"),
                             read_image(image))["nuclear"][0]
    np.testing.assert_array_equal(read_labels(tmp_path / "results/segmentation/s/nuclear.ome.tif"), expected)
