"""Stitching: blend predicted windows and post-process block by block into one 32-bit label image.

:func:`labels_by_block` post-processes block by block: each block (with an overlap margin) blends just the
windows that cover it (:func:`blend_region`), runs the watershed, and the blocks are reconciled into one label
image. Nothing here holds more than one block's maps at a time, so memory does not grow with the slide.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from cellscale.parallel import ordered_map
from cellscale.segment.postprocess import PostprocessParams, labels_from_maps
from cellscale.segment.settings import PostprocessSettings
from cellscale.segment.tiles import TilePlan, blend_weights

_POST = PostprocessSettings()  # the config schema's defaults (cellscale.settings)

TileReader = Callable[[int], np.ndarray]  # tile index -> (n_maps, th, tw) maps


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
                    params: PostprocessParams, block: int = _POST.block, margin: int = _POST.margin,
                    workers: int = 1) -> np.ndarray:
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


def labels_from_arrays(distance: np.ndarray, p_background: np.ndarray, params: PostprocessParams,
                       block: int = _POST.block, margin: int = _POST.margin,
                       p_boundary: np.ndarray | None = None) -> np.ndarray:
    """:func:`labels_by_block` on in-memory maps."""
    maps = (distance, p_background) if p_boundary is None else (distance, p_background, p_boundary)
    return labels_by_block(lambda y0, y1, x0, x1: tuple(m[y0:y1, x0:x1] for m in maps),
                           distance.shape, params, block, margin)


def frame_labels(plan: TilePlan, read_tile: TileReader, frame: int, channel: int, params: PostprocessParams,
                 block: int, margin: int, workers: int = 1) -> np.ndarray:
    """Labels of one compartment in one frame; ``channel`` is the first of its
    :data:`~cellscale.segment.model.CHANNELS_PER_COMPARTMENT` maps in a window."""
    n = 3 if params.merge_boundary > 0 else 2  # distance, p(background)[, p(boundary)]

    def read_maps(y0, y1, x0, x1):
        return tuple(blend_region(plan, lambda i: read_tile(i)[channel:channel + n], frame, y0, y1, x0, x1, n))

    return labels_by_block(read_maps, plan.shape[1:], params, block, margin, workers)


