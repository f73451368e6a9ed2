"""Segmentation as three steps the workflow runs as separate jobs.

1. :func:`shard_tiles` cuts normalised windows for one shard of a tile plan;
2. :func:`predict_tiles` runs the model on them (the GPU step);
3. :func:`blend_maps` puts the windows' maps back together with a smooth
   window, and :func:`labels_by_block` post-processes block by block with an
   overlap margin and reconciles the blocks into one 32-bit label image.

:func:`segment_image` chains them in one process, for the command line.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from .postprocess import PostprocessParams, labels_from_maps
from .preprocess import normalize, percentile_range, select_channels
from .tiling import TilePlan, blend_weights, plan_tiles, read_window


def model_channels(image: np.ndarray, roles: dict, inputs: list[str]) -> np.ndarray:
    """The model's input channels (T, len(inputs), Y, X) from a (T, C, Y, X) image."""
    return select_channels(image, roles, inputs)


def make_plan(channels: np.ndarray, tile: int, overlap: int, multiple: int, shard_mpx: float) -> TilePlan:
    """Tile plan for (T, C, Y, X) model channels, with whole-image normalisation ranges."""
    plan = plan_tiles((channels.shape[0], channels.shape[2], channels.shape[3]), tile, overlap, multiple, shard_mpx)
    plan.ranges = percentile_range(channels).tolist()
    return plan


def shard_tiles(channels: np.ndarray, plan: TilePlan, shard: int) -> np.ndarray:
    """Normalised windows of one shard: (n, C, th, tw) float32."""
    th, tw = plan.tile
    ranges = np.asarray(plan.ranges)
    out = [normalize(read_window(channels, t, y, x, th, tw), ranges)
           for t, y, x in (plan.tiles[i] for i in plan.shards[shard])]
    # padding outside the image must look like background after normalisation
    for window, i in zip(out, plan.shards[shard]):
        t, y, x = plan.tiles[i]
        h, w = plan.shape[1] - y, plan.shape[2] - x
        window[:, h:, :] = np.minimum(window[:, h:, :], 0)
        window[:, :, w:] = np.minimum(window[:, :, w:], 0)
    return np.stack(out).astype(np.float32)


def predict_tiles(predictor, tiles: np.ndarray) -> np.ndarray:
    """Model maps for windows: (n, 4 * compartments, th, tw) float16 (compact on disk)."""
    return predictor.predict(tiles).astype(np.float16)


def blend_maps(plan: TilePlan, shards: Iterable[tuple[list[int], np.ndarray]], frame: int,
               n_maps: int) -> np.ndarray:
    """Blend window maps of one frame into (n_maps, Y, X) float32.

    ``shards`` yields (tile indices, (n, n_maps, th, tw) maps) pairs.
    """
    _, h, w = plan.shape
    th, tw = plan.tile
    weights = blend_weights(th, tw, plan.overlap)
    acc = np.zeros((n_maps, h + th, w + tw), np.float32)
    norm = np.zeros((h + th, w + tw), np.float32)
    for indices, maps in shards:
        for i, m in zip(indices, maps):
            t, y, x = plan.tiles[i]
            if t != frame:
                continue
            acc[:, y:y + th, x:x + tw] += m.astype(np.float32) * weights
            norm[y:y + th, x:x + tw] += weights
    return acc[:, :h, :w] / np.maximum(norm[:h, :w], 1e-6)


def labels_by_block(distance: np.ndarray, p_background: np.ndarray, params: PostprocessParams,
                    block: int = 512, margin: int = 64) -> np.ndarray:
    """Marker-controlled watershed block by block, reconciled into one label image.

    Each block is post-processed together with a ``margin`` of context; a cell
    belongs to the block that holds its centroid, and a pixel already claimed
    by a cell of an earlier block is not taken again. IDs are 1..N in block
    order. Returns (Y, X) uint32.
    """
    h, w = distance.shape
    out = np.zeros((h, w), np.uint32)
    next_id = 1
    for by in range(0, h, block):
        for bx in range(0, w, block):
            y0, x0 = max(0, by - margin), max(0, bx - margin)
            y1, x1 = min(h, by + block + margin), min(w, bx + block + margin)
            local = labels_from_maps(distance[y0:y1, x0:x1], p_background[y0:y1, x0:x1], params)
            n = int(local.max())
            if n == 0:
                continue
            rows, cols = np.indices(local.shape)
            area = np.bincount(local.ravel(), minlength=n + 1)
            cy = np.bincount(local.ravel(), rows.ravel(), n + 1) / np.maximum(area, 1) + y0
            cx = np.bincount(local.ravel(), cols.ravel(), n + 1) / np.maximum(area, 1) + x0
            own = (cy >= by) & (cy < by + block) & (cx >= bx) & (cx < bx + block)
            own[0] = False
            ids = np.zeros(n + 1, np.uint32)
            ids[own] = np.arange(next_id, next_id + own.sum(), dtype=np.uint32)
            next_id += int(own.sum())
            region = out[y0:y1, x0:x1]
            new = ids[local]
            take = (new > 0) & (region == 0)
            region[take] = new[take]
    return out


def labels_from_blended(maps: np.ndarray, compartments: list[str], params: dict[str, PostprocessParams],
                        block: int = 512, margin: int = 64) -> dict[str, np.ndarray]:
    """Labels per compartment from blended (4 * n, Y, X) maps."""
    return {comp: labels_by_block(maps[4 * i], maps[4 * i + 1], params[comp], block, margin)
            for i, comp in enumerate(compartments)}


def segment_image(predictor, image: np.ndarray, roles: dict | None = None, tile: int = 256, overlap: int = 32,
                  block: int = 512, margin: int = 64, params: dict | None = None) -> dict[str, np.ndarray]:
    """Segment a (T, C, Y, X) image in one process.

    Returns {compartment: (T, Y, X) uint32 labels}.
    """
    spec = predictor.spec
    channels = model_channels(image, roles or {}, spec.inputs)
    plan = make_plan(channels, tile, overlap, spec.tile_multiple, shard_mpx=1e9)
    maps = [(plan.shards[0], predict_tiles(predictor, shard_tiles(channels, plan, 0)))]
    post = postprocess_params(spec, params)
    n_maps = 4 * len(spec.compartments)
    frames = [labels_from_blended(blend_maps(plan, maps, f, n_maps), spec.compartments, post, block, margin)
              for f in range(plan.shape[0])]
    return {comp: np.stack([fr[comp] for fr in frames]) for comp in spec.compartments}


def postprocess_params(spec, overrides: dict | None = None) -> dict[str, PostprocessParams]:
    """Per-compartment post-processing: the model's tuned values, then config overrides."""
    out = {}
    for comp in spec.compartments:
        values = dict(spec.postprocess.get(comp, {}))
        values.update((overrides or {}).get(comp, {}))
        out[comp] = PostprocessParams.from_dict(values)
    return out
