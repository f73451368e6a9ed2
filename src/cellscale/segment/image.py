"""Segmentation of an image in one process (the command line, training and tests): tile, predict, stitch."""

from __future__ import annotations

import numpy as np

from cellscale.io import ImageSource
from cellscale.segment.model import CHANNELS_PER_COMPARTMENT
from cellscale.segment.postprocess import postprocess_params
from cellscale.segment.settings import PostprocessSettings, TilingSettings
from cellscale.segment.stitch import frame_labels
from cellscale.segment.tiles import make_plan, shard_tiles
from cellscale.parallel import available_cores
from cellscale.segment.tiles import resampling_scale, to_source_grid

_TILING, _POST = TilingSettings(), PostprocessSettings()  # the config schema's defaults (cellscale.settings)


def predict_tiles(predictor, tiles: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Model maps for windows: (n, CHANNELS_PER_COMPARTMENT * compartments, th, tw) float16 (compact on disk).

    ``out``: an optional float16 array of that shape (e.g. a memory-mapped ``.npy``) to fill
    batch by batch, so a job's memory does not grow with its number of windows.
    """
    if out is None:
        n, _, th, tw = tiles.shape
        out = np.empty((n, predictor.n_outputs, th, tw), np.float16)
    return predictor.predict(tiles, out)


def segment_image(predictor, image: np.ndarray, roles: dict | None = None, tile: int = _TILING.tile,
                  overlap: int = _TILING.overlap, block: int = _POST.block, margin: int = _POST.margin,
                  params: dict | None = None, shard_mpx: float = _TILING.shard_mpx, pixel_size_um: float | None = None,
                  gamma: float = 1.0, scale: float | None = None,
                  workers: int | None = None) -> dict[str, np.ndarray]:
    """Segment an in-memory (T, C, Y, X) image (or an :class:`ImageSource`) in one process.

    With ``pixel_size_um`` and a model that declares its own, or with an
    explicit ``scale`` (model pixels per image pixel), the image is resampled
    to the model's resolution and the labels back to the image's. ``workers``
    threads post-process blocks at once (default: the cores this process may
    use; the labels do not depend on it).
    ``tile``, ``overlap``, ``shard_mpx``, ``block``, ``margin`` and ``params`` (overrides of the model's
    post-processing) are the workflow's settings of the same names, with its defaults (the config schema's).
    Returns {compartment: (T, Y, X) uint32 labels}.
    """
    spec = predictor.spec
    source = image if isinstance(image, ImageSource) else ImageSource.from_array(image)
    scale = resampling_scale(pixel_size_um, spec.pixel_size_um, scale)
    plan, recipe = make_plan(source, roles or {}, spec.inputs, tile, overlap, spec.tile_multiple, shard_mpx, scale,
                             gamma)
    maps: dict[int, np.ndarray] = {}
    for shard, indices in enumerate(plan.shards):
        for i, m in zip(indices, predict_tiles(predictor, shard_tiles(source, recipe, plan, shard))):
            maps[i] = m
    post = postprocess_params(spec, params)
    workers = workers or available_cores()
    return {comp: to_source_grid(np.stack([frame_labels(plan, maps.__getitem__, f, CHANNELS_PER_COMPARTMENT * k,
                                                        post[comp], block, margin, workers)
                                           for f in range(plan.shape[0])]),
                                 plan.source_shape, plan.scale)
            for k, comp in enumerate(spec.compartments)}
