"""Finding a sample's image, current labels and model from a results folder.

The workflow runs in the project folder (``RESULTS/..``): the paths in ``results/index.tsv``, the sample sheet and
``config/config.yaml`` are relative to it. Labels: the sample's row of ``RESULTS/index.tsv`` (batched samples,
``results/batches/BATCH/labels/<sample>/...``, or its series of the batch's ``<compartment>.ome.tif``), else
``RESULTS/segmentation/<sample>/<compartment>.ome.tif``. Image,
channels, pixel size: the index's ``image`` column and the sample sheet named by the config (default
``config/samples.tsv``). Model: the config's ``models.tissue`` for a sample with a membrane channel, else
``models.nuclear``; the shipped model of that name when there is no config.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cellscale.io import LabelSeries, image_files, join_image_files, sample_pixel_size
from cellscale.registry import is_model_ref, model_path, resolve_model
from cellscale.segment.model import ModelSpec, shipped_model
from cellscale.segment.settings import SegmentSettings
from cellscale.segment.size import default_scale
from cellscale.settings import is_auto, parse_scale


@dataclass
class SampleInputs:
    """What review needs of one sample."""

    sample: str
    image: Path
    labels: "Path | LabelSeries"  # a file, or one image of a batch's multi-series label file
    model: "Path | dict"
    roles: dict = field(default_factory=dict)
    pixel_size_um: float | None = None
    gamma: float = 1.0
    scale: float | str | None = None  # "auto" where the workflow's choice was not found: measured again
    channel_names: list[str] | None = None
    timelapse: bool = False  # the sheet's kind: a stack without axis metadata is frames, not channels


def _table(path: Path) -> dict[str, dict[str, str]]:
    """A TSV with a ``sample`` column as {sample: row} (comment lines skipped)."""
    with open(path, newline="") as fh:
        rows = csv.DictReader((line for line in fh if not line.startswith("#")), delimiter="\t")
        return {row["sample"]: row for row in rows if row.get("sample")}


def _resolve(path: str, base: Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() or not (base / p).exists() and p.exists() else base / p


def _registered(value, base: Path) -> bool:
    """A registry name (``NAME@VERSION``, as the config may give), not a folder that exists."""
    return is_model_ref(str(value)) and not Path(value).exists() and not (base / str(value)).exists()


def _model(value, project: Path):
    """A config ``models`` value as the workflow reads it: a declared model (its path relative to the project), a
    registry name ``NAME@VERSION`` (its folder), or a folder relative to the project."""
    if isinstance(value, dict):
        return {**value, "path": str(_resolve(value["path"], project))}
    if _registered(value, project):
        return Path(resolve_model(value))
    return _resolve(value, project)


def _number(value: str | None, kind=float):
    return kind(value) if value not in (None, "", "NA") else None


def _scale(results: Path, sample: str, value, batch: str | None = None):
    """The sheet's scale (or a time-lapse's default); for auto, what the workflow chose where it recorded it
    (``results/size/SAMPLE.json`` for a sample with its own jobs, its batch's ``fields.tsv`` for a batched one), else
    auto (the review measures it again)."""
    scale = parse_scale(value)
    if not is_auto(scale):
        return scale
    measured = results / "size" / f"{sample}.json"
    if measured.is_file():
        return float(json.loads(measured.read_text())["scale"])
    fields = results / "batches" / (batch or "-") / "fields.tsv"
    chosen = _table(fields).get(sample, {}).get("auto_scale") if batch and fields.is_file() else None
    return float(chosen) if chosen else scale


def locate(results: str | os.PathLike, sample: str, compartment: str = "nuclear", *,
           config: str | os.PathLike | None = None, image: str | os.PathLike | None = None,
           labels: str | os.PathLike | None = None, model: str | os.PathLike | None = None,
           channels: dict[str, int | None] | None = None) -> SampleInputs:
    """A sample's inputs for review; ``image``, ``labels``, ``model`` and ``channels`` (``{"nuclear": N,
    "membrane": M}``, None for the sheet's) override what the results folder says.

    Raises FileNotFoundError (naming what was looked for) when the labels or the image cannot be found.
    """
    results = Path(results)
    project = results.resolve().parent
    config_path = Path(config) if config else project / "config" / "config.yaml"
    cfg = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
    if config and not config_path.is_file():
        raise FileNotFoundError(f"config {config_path} not found")
    sheet_path = _resolve(str(cfg.get("samples", "config/samples.tsv")), project)
    row = _table(sheet_path).get(sample, {}) if sheet_path.is_file() else {}
    index = results / "index.tsv"
    indexed = _table(index).get(sample, {}) if index.is_file() else {}
    if image is None:
        named = indexed.get("image") or row.get("image")
        if not named:
            raise FileNotFoundError(f"sample {sample!r}: not in {index} nor in the sample sheet {sheet_path}; "
                                    f"give --image")
        image = join_image_files([_resolve(f, project) for f in image_files(named)])  # each channel's file
    if labels is None:
        named = indexed.get(f"{compartment}_labels")
        labels = _resolve(named, project) if named else results / "segmentation" / sample / f"{compartment}.ome.tif"
        if named and indexed.get("labels_series", "") != "":  # its image in the batch's multi-series file
            labels = LabelSeries(labels, sample)
        if not labels.exists():
            raise FileNotFoundError(f"sample {sample!r}: no {compartment} labels ({labels} is missing; "
                                    f"{index} names none); give --labels")
    roles = {"nuclear": _number(row.get("nuclear_channel"), int), "membrane": _number(row.get("membrane_channel"), int)}
    roles.update({role: c for role, c in (channels or {}).items() if c is not None})
    if model is None:
        key = "tissue" if roles["membrane"] is not None else "nuclear"
        named = (cfg.get("models") or {}).get(key)
        model = _model(named, project) if named else shipped_model(key)
    elif not isinstance(model, dict):
        model = model_path(model, f"--model {model}")  # a folder, else a registry name (NAME or NAME@VERSION)
    spec = ModelSpec.read(model)
    if "membrane" in spec.inputs and roles["membrane"] is None:
        raise ValueError(f"sample {sample!r}: the model {model} reads a membrane channel, and the sample sheet "
                         f"{sheet_path} names none for it: give --membrane-channel M (and --nuclear-channel N)")
    names = row.get("channel_names")
    timelapse = row.get("kind") == "timelapse"
    # an empty sheet scale: a time-lapse's is the config's segment.timelapse_scale, as the workflow reads it
    given = default_scale(parse_scale(row.get("scale")), timelapse, spec,
                          SegmentSettings.from_dict(cfg.get("segment")).timelapse_scale)
    scale = _scale(results, sample, given, indexed.get("batch"))
    labels = labels if isinstance(labels, LabelSeries) else Path(labels)
    return SampleInputs(sample, Path(image), labels, model if isinstance(model, dict) else Path(model), roles,
                        sample_pixel_size(_number(row.get("pixel_size_um")), image, sample),
                        _number(row.get("gamma")) or 1.0, scale,
                        [n.strip() for n in names.split(",")] if names else None, timelapse)
