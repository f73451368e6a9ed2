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
    artifact: str = "model.keras"  # file/folder of the network, relative to the model folder or absolute
    # For models not trained here: what the output channels are, in order (outputs of a
    # multi-output model are concatenated, a dict's in sorted key order). Items:
    # "COMP:distance" (1 channel), "COMP:classes" (3: background, boundary, interior),
    # "COMP:foreground" (1: probability of a cell pixel), "ignore:N" (N channels skipped).
    # None means the native layout: 4 channels per compartment.
    outputs: list[str] | None = None

    @classmethod
    def read(cls, model: "str | os.PathLike | dict") -> "ModelSpec":
        """A model folder's ``model.json``, or a mapping declared in the config.

        A mapping names the network with ``path`` (a ``.keras`` file or a
        SavedModel folder) and declares the other fields (``inputs``,
        ``compartments``, ``outputs``, ``format``, ``pixel_size_um``...).
        """
        if isinstance(model, dict):
            data = dict(model)
            path = data.pop("path", None)
            if not path:
                raise ValueError(f"model declared in config needs a 'path': {model}")
            data.setdefault("name", Path(path).stem)
            data["artifact"] = str(Path(path).resolve())
            data.setdefault("format", "savedmodel" if Path(path).is_dir() else "keras")
        else:
            path = Path(model) / "model.json"
            if not path.exists():
                raise FileNotFoundError(f"model folder {model} has no model.json")
            data = json.loads(path.read_text())
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"model {model}: unknown fields {sorted(unknown)}")
        return cls(**data)

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

    def __init__(self, model: "str | os.PathLike | dict", batch_size: int = 8, precision: str = "float32"):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras

        self.spec = ModelSpec.read(model)
        artifact = Path(self.spec.artifact)
        if not artifact.is_absolute():
            artifact = Path(model) / artifact
        if not artifact.exists():
            raise FileNotFoundError(f"model artifact {artifact} is missing")
        if self.spec.format == "keras":
            self.model = keras.models.load_model(artifact, compile=False)
            if precision == "bfloat16" and self.spec.outputs is None:
                self.model = _as_bfloat16(self.model, self.spec)
            self._call = lambda x: _concat_outputs(self.model(x, training=False))
        elif self.spec.format == "savedmodel":
            layer = keras.layers.TFSMLayer(str(artifact), call_endpoint="serving_default")
            self.model = layer
            self._call = lambda x: _concat_outputs(layer(x))
        else:
            raise ValueError(f"model {model}: unknown format {self.spec.format!r}")
        self._layout = _output_layout(self.spec)
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
            raw = np.asarray(self._call(x[i : i + self.batch_size]), np.float32)
            out[i : i + self.batch_size] = self._layout(raw) if self._layout else raw
        return np.moveaxis(out, -1, 1)


def _concat_outputs(result):
    """One (B, H, W, C) array from a model's output(s); a dict's outputs in sorted key order."""
    import keras

    if isinstance(result, dict):
        result = [result[k] for k in sorted(result)]
    if isinstance(result, (list, tuple)):
        return keras.ops.concatenate([keras.ops.cast(r, "float32") for r in result], axis=-1)
    return keras.ops.cast(result, "float32")


def _output_layout(spec: ModelSpec):
    """A function mapping a declared output layout onto the native one, or None."""
    if spec.outputs is None:
        return None
    sources: dict[str, dict[str, int]] = {c: {} for c in spec.compartments}
    position = 0
    for item in spec.outputs:
        comp, _, kind = item.partition(":")
        if comp == "ignore":
            position += int(kind)
            continue
        if comp not in sources or kind not in ("distance", "classes", "foreground"):
            raise ValueError(f"model {spec.name}: cannot read output {item!r} (compartments {spec.compartments})")
        sources[comp][kind] = position
        position += 3 if kind == "classes" else 1
    for comp, got in sources.items():
        if "distance" not in got or not ({"classes", "foreground"} & set(got)):
            raise ValueError(f"model {spec.name}: {comp} needs a distance and a classes or foreground output")

    def convert(raw: np.ndarray) -> np.ndarray:
        if raw.shape[-1] < position:
            raise ValueError(f"model {spec.name} returned {raw.shape[-1]} channels, its layout declares {position}")
        parts = []
        for comp in spec.compartments:
            got = sources[comp]
            dist = raw[..., got["distance"]]
            if "classes" in got:
                probs = raw[..., got["classes"]: got["classes"] + 3]
            else:
                fg = raw[..., got["foreground"]]
                probs = np.stack([1 - fg, np.zeros_like(fg), fg], axis=-1)
            parts += [dist[..., None], probs]
        return np.concatenate(parts, axis=-1)

    return convert


def _as_bfloat16(model, spec: ModelSpec):
    """The same network computing in bfloat16 (weights copied), for faster CPU inference."""
    import keras

    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        fast = build_unet(spec)
    finally:
        keras.mixed_precision.set_global_policy(policy)
    fast.set_weights(model.get_weights())
    return fast
