"""The 8-bit copy of a model (``model.int8.tflite``) for fast CPU inference, calibrated on validation images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cellscale.io import atomic_path
from cellscale.segment.model import ModelSpec, artifact_path
from cellscale.train.data import load_codex, load_dsb, load_synthetic_tissue
from cellscale.train.options import SYNTHETIC, QuantizeOptions, log


def export_int8(model_dir: str | os.PathLike, calibration: list[np.ndarray], source: str, window: int = 512,
                crops_per_image: int = 2, seed: int = 0) -> Path:
    """Write ``model.int8.tflite`` (8-bit weights and activations) next to ``model.keras``.

    calibration : normalised (C, Y, X) images like those the model will see; the ranges of
        the activations are measured on up to ``crops_per_image`` random ``window`` crops of each.
    source : what the calibration images are (recorded in ``model.json``).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    model_dir = Path(model_dir)
    spec = ModelSpec.read(model_dir)
    if window % spec.tile_multiple:
        raise ValueError(f"window {window} is not a multiple of {spec.tile_multiple}")
    net = keras.models.load_model(artifact_path(model_dir, spec.artifact), compile=False)
    inp = keras.Input((window, window, len(spec.inputs)))
    fixed = keras.Model(inp, net(inp))
    rng = np.random.default_rng(seed)

    def crops():
        for image in calibration:
            for _ in range(crops_per_image):
                y0 = int(rng.integers(0, max(1, image.shape[1] - window + 1)))
                x0 = int(rng.integers(0, max(1, image.shape[2] - window + 1)))
                crop = np.zeros((1, window, window, image.shape[0]), np.float32)
                part = np.moveaxis(image[:, y0:y0 + window, x0:x0 + window], 0, -1)
                crop[0, :part.shape[0], :part.shape[1]] = part
                yield [crop]

    converter = tf.lite.TFLiteConverter.from_keras_model(fixed)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = crops
    data = converter.convert()
    target = model_dir / "model.int8.tflite"
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    spec.int8 = {"artifact": target.name, "window": window,
                 "calibration": f"{len(calibration)} images x {crops_per_image} crops: {source}"}
    spec.write(model_dir)
    return target


def calibration_images(data: str, codex: str | None = None, seed: int = 0) -> tuple[list[np.ndarray], str]:
    """Normalised images to calibrate an int8 copy on: the validation split, never the test split."""
    if data == SYNTHETIC:
        examples = load_synthetic_tissue(8, "val", seed)
        source = "generated tissue (validation seeds)"
        if codex:
            examples += load_codex(codex, "train") * 4
            source += " + CODEX tile columns < 960"
        return [ex.image for ex in examples], source
    examples = load_dsb(Path(data), "val")
    return [ex.image for ex in examples], f"DSB2018 validation split ({Path(data).name})"


def run_quantize(options: QuantizeOptions) -> int:
    """``cellscale quantize``: calibrate on ``options.data``'s validation images and write the int8 copy. The model
    folder, ``--window`` and ``--data`` are checked before any image is read or generated."""
    multiple = ModelSpec.read(options.model).tile_multiple
    if options.window % multiple:
        raise ValueError(f"--window {options.window}: not a multiple of {multiple} px, the window multiple of the "
                         f"model {options.model}")
    if options.data != SYNTHETIC and not (Path(options.data) / "index.csv").is_file():
        raise FileNotFoundError(f"--data {options.data}: not a DSB2018 folder (no index.csv) and not {SYNTHETIC!r}")
    images, source = calibration_images(options.data, options.codex, options.seed)
    log(f"calibrating on {len(images)} images: {source}")
    path = export_int8(options.model, images, source, window=options.window)
    log(f"wrote {path}")
    return 0
