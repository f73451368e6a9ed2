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
    # The typical object sizes of the training images, per compartment (:func:`cellscale.segment.size.training_sizes`:
    # {"median_px", "p10_px", "p90_px", "images", "source"}), which ``scale: auto`` compares an image's with.
    object_sizes: dict | None = None

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
                what = " has no model.json" if Path(model).is_dir() else \
                    ": not a folder" if Path(model).exists() else ": no such folder"
                raise FileNotFoundError(f"model folder {model}{what}")
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


def artifact_path(model, name: str) -> Path:
    """The path of a model file (``name``) relative to its model folder, or absolute; an error when it is missing."""
    path = Path(name)
    if not path.is_absolute() and not isinstance(model, dict):
        path = Path(model) / path
    if not path.exists():
        raise FileNotFoundError(f"model artifact {path} is missing")
    return path




#: Environment setting: a folder of model folders (``nuclear/``, ``tissue/``, ...) to use instead of the
#: shipped ones, e.g. while they retrain (the command line's default models and the tests read it).
MODELS_ENV = "CELLSCALE_MODELS"


def shipped_models_dir() -> Path:
    """The folder of the shipped model folders: ``$CELLSCALE_MODELS`` when set, else the copies installed with
    the package (``cellscale/models/``; in a checkout the top-level ``models`` links there)."""
    override = os.environ.get(MODELS_ENV)
    if override:
        return Path(override)
    from importlib.resources import files

    folder = files("cellscale").joinpath("models")
    if not isinstance(folder, Path):  # an import from a zip archive: the model files are not on disk
        raise FileNotFoundError(f"the shipped models ({folder}) are not on the file system; set {MODELS_ENV}")
    return folder


def shipped_model(name: str) -> Path:
    """The folder of a shipped model by name (``nuclear``, ``tissue``, ``tissue-tight``); see
    :func:`shipped_models_dir`."""
    root = shipped_models_dir()
    folder = root / name
    if not (folder / "model.json").is_file():
        found = sorted(p.parent.name for p in root.glob("*/model.json"))
        raise FileNotFoundError(f"no model {name!r} in {root} (it has: {', '.join(found) or 'none'}; "
                                f"${MODELS_ENV} sets this folder)")
    return folder
