"""Segmentation as three steps the workflow runs as separate jobs.

1. :func:`make_plan` and :func:`shard_tiles` cut normalised windows, shard by
   shard, reading only the image regions they need;
2. :func:`predict_tiles` runs the model on one shard's windows (the GPU step);
3. :func:`labels_by_block` post-processes block by block: each block (with an
   overlap margin) blends just the windows that cover it (:func:`blend_region`),
   runs the watershed, and the blocks are reconciled into one 32-bit label image.

Nothing here holds more than one block's maps at a time, so memory does not
grow with the slide. :func:`segment_image` chains the steps in one process.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .postprocess import PostprocessParams, labels_from_maps
from .preprocess import ChannelRecipe, channel_recipe, normalize, percentile_range
from .source import ImageSource
from .tiling import TilePlan, blend_weights, plan_tiles

TileReader = Callable[[int], np.ndarray]  # tile index -> (n_maps, th, tw) maps


def make_plan(source: ImageSource, roles: dict, inputs: list[str], tile: int, overlap: int, multiple: int,
              shard_mpx: float, scale: float = 1.0, gamma: float = 1.0) -> tuple[TilePlan, ChannelRecipe]:
    """Tile plan (with image-wide normalisation ranges) and channel recipe for an image.

    ``scale`` (model pixels per image pixel) resamples the image to the model's
    resolution: the plan's windows are in model pixels. ``gamma`` < 1 lifts dim
    nuclei before normalisation (see :class:`ChannelRecipe`).
    """
    sample = source.subsample()
    recipe = channel_recipe(sample, roles, inputs, gamma)
    t, _, h, w = source.shape
    shape = (t, max(1, round(h * scale)), max(1, round(w * scale)))
    plan = plan_tiles(shape, tile, overlap, multiple, shard_mpx)
    plan.ranges = percentile_range(np.stack([recipe.apply(frame) for frame in sample])).tolist()
    plan.scale, plan.source_shape = float(scale), [h, w]
    return plan, recipe


def _read_model_region(source: ImageSource, recipe: ChannelRecipe, plan: TilePlan, t: int,
                       y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """Model-resolution pixels y0:y1, x0:x1 of frame t: (n_inputs, h, w) float32 (bilinear)."""
    if plan.scale == 1.0:
        return recipe.apply(source.region(t, y0, y1, x0, x1))
    from scipy import ndimage as ndi

    from .tiling import source_coordinates

    ys, xs = source_coordinates(y0, y1, plan.scale), source_coordinates(x0, x1, plan.scale)
    h, w = plan.source_shape
    sy0, sx0 = max(0, int(np.floor(ys[0]))), max(0, int(np.floor(xs[0])))
    sy1, sx1 = min(h, int(np.ceil(ys[-1])) + 2), min(w, int(np.ceil(xs[-1])) + 2)
    region = recipe.apply(source.region(t, sy0, sy1, sx0, sx1))
    grid = np.meshgrid(np.clip(ys - sy0, 0, sy1 - sy0 - 1), np.clip(xs - sx0, 0, sx1 - sx0 - 1), indexing="ij")
    return np.stack([ndi.map_coordinates(ch, grid, order=1, mode="nearest") for ch in region]).astype(np.float32)


def shard_tiles(source: ImageSource, recipe: ChannelRecipe, plan: TilePlan, shard: int) -> np.ndarray:
    """Normalised windows of one shard: (n, C, th, tw) float32, zero (background) past the image edge."""
    th, tw = plan.tile
    _, h, w = plan.shape
    ranges = np.asarray(plan.ranges)
    out = np.zeros((len(plan.shards[shard]), len(ranges), th, tw), np.float32)
    for k, i in enumerate(plan.shards[shard]):
        t, y, x = plan.tiles[i]
        y1, x1 = min(y + th, h), min(x + tw, w)
        out[k, :, : y1 - y, : x1 - x] = normalize(_read_model_region(source, recipe, plan, t, y, y1, x, x1), ranges)
    return out


def predict_tiles(predictor, tiles: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Model maps for windows: (n, 4 * compartments, th, tw) float16 (compact on disk).

    ``out``: an optional float16 array of that shape (e.g. a memory-mapped ``.npy``) to fill
    batch by batch, so a job's memory does not grow with its number of windows.
    """
    if out is None:
        n, _, th, tw = tiles.shape
        out = np.empty((n, predictor.n_outputs, th, tw), np.float16)
    return predictor.predict(tiles, out)


def blend_region(plan: TilePlan, read_tile: TileReader, frame: int, y0: int, y1: int, x0: int, x1: int,
                 n_maps: int) -> np.ndarray:
    """Blend the windows covering rows y0:y1, columns x0:x1 of one frame: (n_maps, h, w) float32."""
    th, tw = plan.tile
    tiles = np.asarray(plan.tiles).reshape(-1, 3)
    hit = np.flatnonzero((tiles[:, 0] == frame) & (tiles[:, 1] < y1) & (tiles[:, 1] + th > y0)
                         & (tiles[:, 2] < x1) & (tiles[:, 2] + tw > x0))
    weights = blend_weights(th, tw, plan.overlap)
    acc = np.zeros((n_maps, y1 - y0, x1 - x0), np.float32)
    norm = np.zeros((y1 - y0, x1 - x0), np.float32)
    for i in hit:
        _, ty, tx = tiles[i]
        sy0, sy1 = max(y0, ty), min(y1, ty + th)
        sx0, sx1 = max(x0, tx), min(x1, tx + tw)
        win = (slice(sy0 - ty, sy1 - ty), slice(sx0 - tx, sx1 - tx))
        dst = (slice(sy0 - y0, sy1 - y0), slice(sx0 - x0, sx1 - x0))
        maps = np.asarray(read_tile(int(i)), np.float32)
        acc[(slice(None), *dst)] += maps[(slice(None), *win)] * weights[win]
        norm[dst] += weights[win]
    return acc / np.maximum(norm, 1e-6)


def blend_maps(plan: TilePlan, read_tile: TileReader, frame: int, n_maps: int) -> np.ndarray:
    """Blend a whole frame (for images that fit in memory): (n_maps, Y, X) float32."""
    _, h, w = plan.shape
    return blend_region(plan, read_tile, frame, 0, h, 0, w, n_maps)


def labels_by_block(read_maps: Callable[[int, int, int, int], tuple[np.ndarray, np.ndarray]], shape,
                    params: PostprocessParams, block: int = 512, margin: int = 64, workers: int = 1) -> np.ndarray:
    """Marker-controlled watershed block by block, reconciled into one label image.

    Parameters
    ----------
    read_maps : (y0, y1, x0, x1) -> (inner distance, p(background)[, p(boundary)]) of that
        region (the boundary map only when ``params.merge_boundary`` is set).
    shape : (Y, X) of the image.
    workers : threads post-processing blocks at once (the merge stays in block order, so
        the result does not depend on it).

    Each block is post-processed with a ``margin`` of context; a cell belongs
    to the block that holds its centroid, and a pixel already claimed by a cell
    of an earlier block is not taken again. IDs are 1..N in block order.
    Returns (Y, X) uint32.
    """
    h, w = shape
    out = np.zeros((h, w), np.uint32)
    next_id = 1
    blocks = [(by, bx) for by in range(0, h, block) for bx in range(0, w, block)]

    def window(b):
        by, bx = b
        return max(0, by - margin), min(h, by + block + margin), max(0, bx - margin), min(w, bx + block + margin)

    def process(b):
        y0, y1, x0, x1 = window(b)
        maps = read_maps(y0, y1, x0, x1)
        return labels_from_maps(maps[0], maps[1], params, maps[2] if len(maps) > 2 else None)

    for (by, bx), local in zip(blocks, ordered_map(process, blocks, workers)):
        y0, y1, x0, x1 = window((by, bx))
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


def ordered_map(fn, items, workers: int, pool=None):
    """``map(fn, items)`` on ``workers`` threads, or on ``pool`` (an executor of ``workers`` workers, e.g.
    processes), results in order, at most 2 x workers pending; with a pool, ``items`` may be endless."""
    from collections import deque

    if pool is None:
        if workers <= 1 or len(items) < 2:
            yield from map(fn, items)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as threads:
            yield from ordered_map(fn, items, workers, threads)
        return
    pending = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= 2 * workers:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def labels_from_arrays(distance: np.ndarray, p_background: np.ndarray, params: PostprocessParams,
                       block: int = 512, margin: int = 64, p_boundary: np.ndarray | None = None) -> np.ndarray:
    """:func:`labels_by_block` on in-memory maps."""
    maps = (distance, p_background) if p_boundary is None else (distance, p_background, p_boundary)
    return labels_by_block(lambda y0, y1, x0, x1: tuple(m[y0:y1, x0:x1] for m in maps),
                           distance.shape, params, block, margin)


def frame_labels(plan: TilePlan, read_tile: TileReader, frame: int, channel: int, params: PostprocessParams,
                 block: int = 512, margin: int = 64, workers: int = 1) -> np.ndarray:
    """Labels of one compartment in one frame; ``channel`` is the first of its 4 maps in a window."""
    n = 3 if params.merge_boundary > 0 else 2  # distance, p(background)[, p(boundary)]

    def read_maps(y0, y1, x0, x1):
        return tuple(blend_region(plan, lambda i: read_tile(i)[channel:channel + n], frame, y0, y1, x0, x1, n))

    return labels_by_block(read_maps, plan.shape[1:], params, block, margin, workers)


def segment_image(predictor, image: np.ndarray, roles: dict | None = None, tile: int = 256, overlap: int = 32,
                  block: int = 512, margin: int = 64, params: dict | None = None,
                  shard_mpx: float = 16.0, pixel_size_um: float | None = None,
                  gamma: float = 1.0, scale: float | None = None,
                  workers: int | None = None) -> dict[str, np.ndarray]:
    """Segment an in-memory (T, C, Y, X) image (or an :class:`ImageSource`) in one process.

    With ``pixel_size_um`` and a model that declares its own, or with an
    explicit ``scale`` (model pixels per image pixel), the image is resampled
    to the model's resolution and the labels back to the image's. ``workers``
    threads post-process blocks at once (default: the cores this process may
    use; the labels do not depend on it).
    Returns {compartment: (T, Y, X) uint32 labels}.
    """
    from .model import available_cores
    from .tiling import resampling_scale, to_source_grid

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
    return {comp: to_source_grid(np.stack([frame_labels(plan, maps.__getitem__, f, 4 * k, post[comp], block, margin,
                                                        workers) for f in range(plan.shape[0])]),
                                 plan.source_shape, plan.scale)
            for k, comp in enumerate(spec.compartments)}


def postprocess_params(spec, overrides: dict | None = None) -> dict[str, PostprocessParams]:
    """Per-compartment post-processing: the model's tuned values, then config overrides."""
    out = {}
    for comp in spec.compartments:
        values = dict(spec.postprocess.get(comp, {}))
        values.update((overrides or {}).get(comp, {}))
        out[comp] = PostprocessParams.from_dict(values)
    return out
