"""``cellscale review RESULTS --sample S -n K -o BUNDLE``: the K tiles where the model is least sure, as a
correction bundle (:mod:`.bundle`), chosen by the score of :mod:`.uncertainty`."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from cellscale.io import ImageSource, LabelSeries, atomic_dir, image_files, join_image_files, read_labels
from cellscale.review.bundle import (
    CORRECTED,
    KIND,
    README,
    array_sha256,
    labels_sha256,
    require_ome_zarr,
    sha256_path,
    write_manifest,
    write_tile,
)
from cellscale.review.locate import SampleInputs
from cellscale.review.uncertainty import (
    WEIGHTS,
    Tile,
    band_signals,
    least_sure,
    random_tiles,
    score_tiles,
    tile_grid,
)
from cellscale.segment.image import estimate_scale
from cellscale.segment.model import ModelSpec, artifact_path
from cellscale.segment.tiles import input_ranges
from cellscale.settings import is_auto


@dataclass
class ReviewOptions:
    """How to choose the tiles (the command line's options)."""

    n_tiles: int = 8
    tile: int = 128
    compartment: str = "nuclear"
    frame: int = 0
    random: bool = False
    seed: int = 0
    region: tuple[int, int, int, int] | None = None  # (y0, y1, x0, x1): candidates only inside it
    ngff: str = "0.5"
    window: int = 512  # model window edge (tiling.tile)
    overlap: int = 32


def model_record(model: "Path | dict") -> dict:
    """The model's name, folder and its weights' SHA-256 (for the manifest)."""
    spec = ModelSpec.read(model)
    weights = artifact_path(model, spec.artifact)
    return {"name": spec.name, "path": str(model.get("path") if isinstance(model, dict) else Path(model).resolve()),
            "weights": weights.name, "weights_sha256": sha256_path(weights)}


def _labels_record(labels) -> dict:
    """The bundle's record of the labels it started from: the file and its SHA-256 (a batch's multi-series file:
    the whole file, and the series' name)."""
    if isinstance(labels, LabelSeries):
        return {"path": str(labels.path.resolve()), "series": labels.name, "sha256": sha256_path(labels.path)}
    return {"path": str(Path(labels).resolve()), "sha256": sha256_path(labels)}


def score_sample(predictor, inputs: SampleInputs, options: ReviewOptions) -> tuple[list[Tile], np.ndarray]:
    """Every candidate tile of the sample with its signals and score, and the frame's labels."""
    labels = read_labels(inputs.labels)
    with ImageSource.open(inputs.image, inputs.timelapse) as source:
        t, _, h, w = source.shape
        if not 0 <= options.frame < t:
            raise ValueError(f"sample {inputs.sample!r}: frame {options.frame}: {inputs.image} has "
                             f"{t} frame{'s' if t > 1 else ''} (0 to {t - 1})")
        if labels.ndim == 3:
            labels = labels[options.frame]
        if labels.shape != (h, w):
            raise ValueError(f"labels {inputs.labels} of shape {labels.shape} do not match image {inputs.image} "
                             f"of {h} x {w} px")
        boxes = tile_grid((h, w), options.tile, options.region)
        if not boxes:
            raise ValueError(f"no {options.tile}-px tile fits in {inputs.image} ({h} x {w} px"
                             f"{', region ' + str(options.region) if options.region else ''})")
        scale = inputs.scale
        if is_auto(scale):  # the workflow's choice was not recorded: measured again (with the review's predictor)
            scale = estimate_scale(predictor, source, inputs.roles, inputs.gamma, tile=options.window,
                                   overlap=options.overlap).scale
        tiles = band_signals(predictor, source, inputs.roles, options.compartment, labels, boxes, options.frame,
                             tile=options.window, overlap=options.overlap, pixel_size_um=inputs.pixel_size_um,
                             gamma=inputs.gamma, scale=scale)
    return score_tiles(tiles), labels


def choose(tiles: list[Tile], options: ReviewOptions) -> list[Tile]:
    k = min(options.n_tiles, len(tiles))
    return random_tiles(tiles, k, options.seed) if options.random else least_sure(tiles, k)


def export_review(predictor, inputs: SampleInputs, bundle: str | os.PathLike, options: ReviewOptions) -> dict:
    """Score the sample's tiles, choose K, and write the bundle (replacing ``bundle`` whole). Returns the
    manifest written to ``bundle/bundle.json``."""
    if options.n_tiles < 1:
        raise ValueError(f"-n must be at least 1, got {options.n_tiles}")
    require_ome_zarr()  # before the network runs
    image_sha = sha256_path(inputs.image)
    tiles, labels = score_sample(predictor, inputs, options)
    chosen = choose(tiles, options)
    records = []
    bundle = Path(bundle)
    with atomic_dir(bundle) as tmp, ImageSource.open(inputs.image, inputs.timelapse) as source:
        # the model's view of the tiles: its input channels scaled by the whole image's percentiles, not the tile's
        recipe, ranges = input_ranges(source, inputs.roles or {}, predictor.spec.inputs, inputs.gamma)
        for rank, tile in enumerate(chosen):
            y0, y1, x0, x1 = tile.box
            name = f"tile_{rank:03d}"
            image = source.region(options.frame, y0, y1, x0, x1)
            crop = labels[y0:y1, x0:x1]
            write_tile(tmp / f"{name}.zarr", image, crop, options.compartment, ngff=options.ngff,
                       pixel_size_um=inputs.pixel_size_um, channel_names=inputs.channel_names)
            records.append({"name": name, "path": f"{name}.zarr", "box": list(tile.box), "grid_index": tile.index,
                            "rank": rank, "score": tile.score, "signals": tile.signals,
                            "image_sha256": array_sha256(image), "labels_sha256": labels_sha256(crop),
                            "n_labels": int(np.count_nonzero(np.unique(crop)))})
        (tmp / CORRECTED).mkdir()
        manifest = {
            "kind": KIND, "version": 1, "sample": inputs.sample, "compartment": options.compartment,
            "frame": options.frame,
            "image": {"path": join_image_files([Path(f).resolve() for f in image_files(inputs.image)]),
                      "sha256": image_sha,
                      "shape": list(source.shape), "dtype": str(source.dtype),
                      "pixel_size_um": inputs.pixel_size_um, "channel_names": inputs.channel_names,
                      "roles": inputs.roles,
                      "normalisation": {"inputs": list(predictor.spec.inputs), "recipe": asdict(recipe),
                                        "ranges": ranges}},
            "labels": _labels_record(inputs.labels),
            "model": {**model_record(inputs.model), "precision": predictor.precision},
            "selection": {"method": "random" if options.random else "least-sure",
                          "seed": options.seed if options.random else None, "k": len(chosen),
                          "tile": options.tile, "region": list(options.region) if options.region else None,
                          "candidates": len(tiles), "weights": WEIGHTS,
                          "score": "sum of weight x signal / its maximum over the candidates "
                                   "(cellscale.review.uncertainty)"},
            "ngff": {"version": options.ngff, "zarr_format": 3 if options.ngff == "0.5" else 2,
                     "writer": f"ome-zarr {require_ome_zarr()}"},
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "tiles": records,
        }
        write_manifest(tmp, manifest)
        (tmp / "README.txt").write_text(README.format(sample=inputs.sample, compartment=options.compartment,
                                                      n=len(chosen), first=bundle / "tile_000.zarr",
                                                      stem="tile_000", bundle=bundle))
    return manifest
