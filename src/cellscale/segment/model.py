"""What a segmentation model is: its description (``model.json``) and its network.

A model directory holds ``model.keras`` (Keras 3 weights and graph) and
``model.json`` (what the network expects and what it returns). Per compartment
the network returns :data:`CHANNELS_PER_COMPARTMENT` channels: ``[inner distance, p(background),
p(boundary), p(interior)]``; the channels of all compartments are concatenated
in the order listed in ``model.json``. Running it is :mod:`cellscale.segment.predictor`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

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
    # An 8-bit quantised copy for fast CPU inference (written by :func:`export_int8`):
    # {"artifact": "model.int8.tflite", "window": 512, "calibration": "..."}; windows up to
    # ``window`` px are padded to it.
    int8: dict | None = None

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


def _artifact_path(model, name: str) -> Path:
    path = Path(name)
    if not path.is_absolute() and not isinstance(model, dict):
        path = Path(model) / path
    if not path.exists():
        raise FileNotFoundError(f"model artifact {path} is missing")
    return path


