"""File-in, file-out steps: what each workflow rule (and the command line) runs.

Each function reads its inputs, calls the array functions of the library and
writes its outputs atomically. Errors are :class:`StepError` naming the sample
and the file, so a user sees at once which input to fix.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from .io import ImageError, atomic_dir, atomic_path, read_labels, write_labels
from .model import ModelSpec
from .segmentation import frame_labels, make_plan, postprocess_params, predict_tiles, shard_tiles
from .source import ImageSource
from .tiling import TilePlan

log = logging.getLogger("cellscale")


class StepError(RuntimeError):
    """A step failed because of its input; the message names sample and file."""


def _fail(sample: str, path, message: str):
    raise StepError(f"sample {sample!r}: {path}: {message}")


def open_sample_image(sample: str, path, timelapse: bool) -> ImageSource:
    """Lazy (T, C, Y, X) image of a sample, with errors that name the sample."""
    try:
        source = ImageSource.open(path, timelapse=timelapse)
    except ImageError as err:
        raise StepError(f"sample {sample!r}: {err}") from None
    if source.shape[2] < 8 or source.shape[3] < 8:
        _fail(sample, path, f"image of shape {source.shape[2:]} is too small to segment")
    return source


def tile_sample(sample: str, image_path, out_dir, roles: dict, model_dir, timelapse: bool = False,
                tile: int = 512, overlap: int = 32, shard_mpx: float = 16.0,
                pixel_size_um: float | None = None, gamma: float = 1.0, scale: float | None = None) -> TilePlan:
    """Write ``plan.json`` and ``shard_NNNN.npy`` (normalised windows) into ``out_dir``.

    The image is read region by region, one shard at a time, and resampled by
    ``scale`` (model pixels per image pixel) when given, else to the model's
    pixel size when both sizes are known.
    """
    from .tiling import resampling_scale

    spec = ModelSpec.read(model_dir)
    try:
        scale = resampling_scale(pixel_size_um, spec.pixel_size_um, scale)
    except ValueError as err:
        _fail(sample, image_path, str(err))
    with open_sample_image(sample, image_path, timelapse) as source:
        try:
            plan, recipe = make_plan(source, roles, spec.inputs, tile, overlap, spec.tile_multiple, shard_mpx,
                                     scale, gamma)
        except ValueError as err:
            _fail(sample, image_path, str(err))
        with atomic_dir(out_dir) as tmp_dir:
            for shard in range(len(plan.shards)):
                try:
                    tiles = shard_tiles(source, recipe, plan, shard)
                except ImageError as err:
                    raise StepError(f"sample {sample!r}: {err}") from None
                np.save(tmp_dir / f"shard_{shard:04d}.npy", tiles)
                log.info("tile %s: shard %d/%d written", sample, shard + 1, len(plan.shards))
            plan.write(tmp_dir / "plan.json")
    return plan


def staged_model(inputs, declared):
    """The model a Snakemake job loads: the folder its declared model inputs are in on this machine.

    With a storage provider (no shared filesystem) the inputs are staged copies and the configured path
    names nothing on the job's machine. ``declared`` is the config's value (a folder, or a mapping that
    declares a user's own network, whose ``path`` is the ``weights`` input).
    """
    if isinstance(declared, dict):
        return {**declared, "path": inputs.weights}
    return os.path.dirname(inputs.spec)


def segment_shard(shard_path, model_dir, out_path, batch_mpx: float = 0.5, precision: str = "auto",
                  threads: int | None = None, augment: str = "none") -> None:
    """Predict maps for one shard of windows; writes (n, K, th, tw) float16 ``.npy``.

    ``batch_mpx``: megapixels per forward pass (memory grows with it: about 2 GB at 0.5 Mpx for the
    shipped U-Net), so the batch holds fewer windows when windows are larger. ``augment``:
    test-time augmentation, "none", "rot180" or "flips" (:class:`cellscale.model.Predictor`).
    """
    from .model import Predictor

    tiles = np.load(shard_path, mmap_mode="r")
    batch_size = max(1, int(batch_mpx * 1e6 // (tiles.shape[2] * tiles.shape[3])))
    predictor = Predictor(model_dir, batch_size=batch_size, precision=precision, threads=threads, augment=augment)
    n, _, th, tw = tiles.shape
    with atomic_path(out_path) as tmp:
        maps = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(n, predictor.n_outputs, th, tw))
        predict_tiles(predictor, tiles, maps)
        maps.flush()
        del maps


def stitch_sample(plan_path, shard_maps: list, model_dir, compartment: str, out_path,
                  block: int = 512, margin: int = 64, overrides: dict | None = None,
                  pixel_size_um: float | None = None, workers: int = 1) -> np.ndarray:
    """Blend predicted windows and post-process block by block into one 32-bit label image.

    Shard predictions are memory-mapped: only the windows around the current
    block are read. ``workers`` threads post-process blocks at once (same result).
    """
    plan = TilePlan.read(plan_path)
    spec = ModelSpec.read(model_dir)
    if compartment not in spec.compartments:
        raise ValueError(f"model {spec.name} has no {compartment!r} output (has {spec.compartments})")
    params = postprocess_params(spec, overrides)[compartment]
    by_name = {Path(p).name: p for p in shard_maps}
    where = {}
    arrays = []
    for shard, indices in enumerate(plan.shards):
        path = by_name.get(f"shard_{shard:04d}.npy")
        if path is None:
            raise FileNotFoundError(f"{plan_path}: prediction for shard {shard} is missing")
        arrays.append(np.load(path, mmap_mode="r"))
        where.update((i, (shard, k)) for k, i in enumerate(indices))

    def read_tile(i):
        shard, k = where[i]
        return arrays[shard][k]

    channel = 4 * spec.compartments.index(compartment)
    frames = []
    for frame in range(plan.shape[0]):
        frames.append(frame_labels(plan, read_tile, frame, channel, params, block, margin, workers))
        log.info("stitch %s: frame %d/%d, %d cells", compartment, frame + 1, plan.shape[0], frames[-1].max())
    from .tiling import to_source_grid

    labels = to_source_grid(frames[0] if plan.shape[0] == 1 else np.stack(frames), plan.source_shape, plan.scale)
    write_labels(out_path, labels, pixel_size_um)
    return labels


def read_sample_labels(sample: str, path) -> np.ndarray:
    try:
        return read_labels(path)
    except ImageError as err:
        raise StepError(f"sample {sample!r}: {err}") from None
