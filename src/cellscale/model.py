"""The segmentation network: build, save, load and run it on tiles.

A model directory holds ``model.keras`` (Keras 3 weights and graph) and
``model.json`` (what the network expects and what it returns). Per compartment
the network returns four channels: ``[inner distance, p(background),
p(boundary), p(interior)]``; the channels of all compartments are concatenated
in the order listed in ``model.json``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

CHANNELS_PER_COMPARTMENT = 4


@dataclass
class ModelSpec:
    """What a model expects and returns; stored as ``model.json``."""

    name: str
    inputs: list[str]  # channel roles, e.g. ["nuclear"] or ["nuclear", "membrane"]
    compartments: list[str]  # e.g. ["nuclear"] or ["nuclear", "whole_cell"]
    base_filters: int = 16
    depth: int = 4
    tile_multiple: int = 16  # input height/width must be a multiple of this
    pixel_size_um: float | None = None
    postprocess: dict = field(default_factory=dict)
    format: str = "keras"  # "keras" (.keras file) or "savedmodel" (TF SavedModel dir)
    artifact: str = "model.keras"

    @classmethod
    def read(cls, model_dir: str | os.PathLike) -> "ModelSpec":
        path = Path(model_dir) / "model.json"
        if not path.exists():
            raise FileNotFoundError(f"model folder {model_dir} has no model.json")
        data = json.loads(path.read_text())
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def write(self, model_dir: str | os.PathLike) -> None:
        Path(model_dir).mkdir(parents=True, exist_ok=True)
        tmp = Path(model_dir) / "model.json.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(tmp, Path(model_dir) / "model.json")


def build_unet(spec: ModelSpec):
    """A compact U-Net with one 4-channel head group per compartment.

    Returns an uncompiled ``keras.Model`` mapping (B, H, W, len(inputs)) float32
    to (B, H, W, 4 * len(compartments)).
    """
    import keras
    from keras import layers

    def block(x, filters):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        return layers.Activation("relu")(x)

    inp = keras.Input((None, None, len(spec.inputs)), name="image")
    skips, x = [], inp
    for level in range(spec.depth):
        x = block(x, spec.base_filters * 2**level)
        skips.append(x)
        x = layers.MaxPooling2D(2)(x)
    x = block(x, spec.base_filters * 2**spec.depth)
    for level in reversed(range(spec.depth)):
        x = layers.UpSampling2D(2, interpolation="bilinear")(x)
        x = layers.Concatenate()([x, skips[level]])
        x = block(x, spec.base_filters * 2**level)
    heads = []
    for comp in spec.compartments:
        h = layers.Conv2D(spec.base_filters, 3, padding="same", activation="relu", name=f"{comp}_neck")(x)
        dist = layers.Conv2D(1, 1, activation="sigmoid", name=f"{comp}_distance")(h)
        cls = layers.Conv2D(3, 1, activation="softmax", name=f"{comp}_classes")(h)
        heads += [dist, cls]
    out = layers.Concatenate(name="maps", dtype="float32")(heads)
    return keras.Model(inp, out, name=spec.name)


class Predictor:
    """A loaded model that turns batches of normalised tiles into maps.

    Parameters
    ----------
    model_dir : folder with ``model.json`` and the model artifact.
    batch_size : tiles per forward pass.
    """

    def __init__(self, model_dir: str | os.PathLike, batch_size: int = 8):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras

        self.model_dir = Path(model_dir)
        self.spec = ModelSpec.read(model_dir)
        artifact = self.model_dir / self.spec.artifact
        if not artifact.exists():
            raise FileNotFoundError(f"model artifact {artifact} is missing")
        if self.spec.format == "keras":
            self.model = keras.models.load_model(artifact, compile=False)
            self._call = lambda x: self.model(x, training=False)
        elif self.spec.format == "savedmodel":
            layer = keras.layers.TFSMLayer(str(artifact), call_endpoint="serving_default")
            self._call = lambda x: _first_output(layer(x))
        else:
            raise ValueError(f"model {model_dir}: unknown format {self.spec.format!r}")
        self.batch_size = batch_size

    @property
    def n_outputs(self) -> int:
        return CHANNELS_PER_COMPARTMENT * len(self.spec.compartments)

    def predict(self, tiles: np.ndarray) -> np.ndarray:
        """Run the network on tiles.

        Parameters
        ----------
        tiles : (N, C, H, W) float32, normalised, H and W multiples of
            ``spec.tile_multiple``.

        Returns
        -------
        (N, 4 * n_compartments, H, W) float32 maps.
        """
        if tiles.ndim != 4 or tiles.shape[1] != len(self.spec.inputs):
            raise ValueError(
                f"model {self.spec.name} expects (N, {len(self.spec.inputs)}, H, W) tiles, got {tiles.shape}"
            )
        m = self.spec.tile_multiple
        if tiles.shape[2] % m or tiles.shape[3] % m:
            raise ValueError(f"tile size {tiles.shape[2:]} is not a multiple of {m}")
        x = np.ascontiguousarray(np.moveaxis(tiles, 1, -1), dtype=np.float32)
        out = np.empty((len(x), x.shape[1], x.shape[2], self.n_outputs), np.float32)
        for i in range(0, len(x), self.batch_size):
            out[i : i + self.batch_size] = np.asarray(self._call(x[i : i + self.batch_size]))
        return np.moveaxis(out, -1, 1)


def _first_output(result):
    if isinstance(result, dict):
        return next(iter(result.values()))
    return result
