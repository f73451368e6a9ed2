"""Stitching: blend predicted windows and post-process block by block into one 32-bit label image.

:func:`stitch_blocks` post-processes block by block: each block (with an overlap margin) blends just the
windows that cover it (:func:`blend_region`), runs the watershed, and the blocks are reconciled into one label
image, written chunk by chunk into any array-like target: a :class:`LabelStore` on disk for a slide, a NumPy
array for an image that fits in memory (:func:`labels_by_block`). Nothing here holds more than one block's maps,
and about one row of blocks' labels, at a time, so memory does not grow with the slide's area.
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


class _Chunks:
    """The labels being stitched, held as ``block``-square chunks only while a block's window may still touch them.

    Windows are visited in raster order, so a chunk is final once the last block whose window reaches it is done:
    it is then written to ``out`` (one aligned write: into a Zarr array chunked at ``block`` that is one chunk,
    never read back) and dropped. At most about one row of blocks is held (``block`` x width x 4 bytes: 64 MB for
    512-px blocks of a 32,000-px-wide slide), whatever the slide's height.
    """

    def __init__(self, out, shape, block: int, margin: int):
        self.out, self.block = out, block
        self.h, self.w = shape
        self.rows, self.cols = -(-self.h // block), -(-self.w // block)
        self.reach = -(-margin // block)  # chunks a window reaches beyond its block's
        self.held: dict[tuple[int, int], np.ndarray] = {}

    def _extent(self, cy: int, cx: int) -> tuple[int, int, int, int]:
        b = self.block
        return cy * b, min(self.h, (cy + 1) * b), cx * b, min(self.w, (cx + 1) * b)

    def _chunk(self, cy: int, cx: int) -> np.ndarray:
        if (cy, cx) not in self.held:
            y0, y1, x0, x1 = self._extent(cy, cx)
            self.held[cy, cx] = np.zeros((y1 - y0, x1 - x0), np.uint32)
        return self.held[cy, cx]

    def _covering(self, y0, y1, x0, x1):
        b = self.block
        for cy in range(y0 // b, (y1 - 1) // b + 1):
            for cx in range(x0 // b, (x1 - 1) // b + 1):
                cy0, cy1, cx0, cx1 = self._extent(cy, cx)
                sy0, sy1, sx0, sx1 = max(y0, cy0), min(y1, cy1), max(x0, cx0), min(x1, cx1)
                yield (cy, cx), (slice(sy0 - cy0, sy1 - cy0), slice(sx0 - cx0, sx1 - cx0)), \
                    (slice(sy0 - y0, sy1 - y0), slice(sx0 - x0, sx1 - x0))

    def read(self, y0, y1, x0, x1) -> np.ndarray:
        region = np.empty((y1 - y0, x1 - x0), np.uint32)
        for key, inside, there in self._covering(y0, y1, x0, x1):
            region[there] = self._chunk(*key)[inside]
        return region

    def write(self, region: np.ndarray, y0, y1, x0, x1) -> None:
        for key, inside, there in self._covering(y0, y1, x0, x1):
            self._chunk(*key)[inside] = region[there]

    def done(self, by: int, bx: int) -> None:
        """Block (``by``, ``bx``) (block indices) is stitched: write and drop the chunks no later window touches."""
        last = self.rows * self.cols - 1
        now = by * self.cols + bx
        for cy, cx in sorted(self.held):
            ly, lx = min(cy + self.reach, self.rows - 1), min(cx + self.reach, self.cols - 1)
            if now >= last or ly * self.cols + lx <= now:
                y0, y1, x0, x1 = self._extent(cy, cx)
                self.out[y0:y1, x0:x1] = self.held.pop((cy, cx))


def stitch_blocks(read_maps: Callable[[int, int, int, int], tuple[np.ndarray, ...]], shape, params: PostprocessParams,
                  out, block: int = _POST.block, margin: int = _POST.margin, workers: int = 1,
                  post: Callable | None = None) -> int:
    """Marker-controlled watershed block by block, reconciled into ``out``; returns the number of cells.

    Parameters
    ----------
    read_maps : (y0, y1, x0, x1) -> (inner distance, p(background)[, p(boundary)]) of that
        region (the boundary map only when ``params.merge_boundary`` is set).
    shape : (Y, X) of the image.
    out : where the labels go, all zeros: a (Y, X) NumPy array, or any array-like that takes NumPy slice
        assignment (a Zarr array, best chunked ``block`` x ``block``), written chunk by chunk and never read:
        the label image is never held whole (:class:`_Chunks`).
    workers : threads post-processing blocks at once (the merge stays in block order, so
        the result does not depend on it).
    post : ``(maps, params, window) -> labels`` of one block's maps and its (y0, y1, x0, x1) window; default
        :func:`labels_from_maps` (a caller may reuse work across calls, as post-processing's tuning does).

    Each block is post-processed with a ``margin`` of context; a cell belongs
    to the block that holds its centroid, and a pixel already claimed by a cell
    of an earlier block is not taken again. IDs are 1..N in block order.
    """
    h, w = shape
    chunks = _Chunks(out, (h, w), block, margin)
    next_id = 1
    blocks = [(by, bx) for by in range(0, h, block) for bx in range(0, w, block)]

    def window(b):
        by, bx = b
        return max(0, by - margin), min(h, by + block + margin), max(0, bx - margin), min(w, bx + block + margin)

    def process(b):
        y0, y1, x0, x1 = window(b)
        return (post or _labels_of_block)(read_maps(y0, y1, x0, x1), params, (y0, y1, x0, x1))

    for (by, bx), local in zip(blocks, ordered_map(process, blocks, workers)):
        y0, y1, x0, x1 = window((by, bx))
        n = int(local.max())
        if n > 0:
            rows, cols = np.indices(local.shape)
            area = np.bincount(local.ravel(), minlength=n + 1)
            cy = np.bincount(local.ravel(), rows.ravel(), n + 1) / np.maximum(area, 1) + y0
            cx = np.bincount(local.ravel(), cols.ravel(), n + 1) / np.maximum(area, 1) + x0
            own = (cy >= by) & (cy < by + block) & (cx >= bx) & (cx < bx + block)
            own[0] = False
            ids = np.zeros(n + 1, np.uint32)
            ids[own] = np.arange(next_id, next_id + own.sum(), dtype=np.uint32)
            next_id += int(own.sum())
            region = chunks.read(y0, y1, x0, x1)
            new = ids[local]
            take = (new > 0) & (region == 0)
            region[take] = new[take]
            chunks.write(region, y0, y1, x0, x1)
        chunks.done(by // block, bx // block)
    return next_id - 1


def _labels_of_block(maps: tuple[np.ndarray, ...], params: PostprocessParams, window) -> np.ndarray:
    """:func:`stitch_blocks`' default ``post``: :func:`labels_from_maps` of the block's maps."""
    return labels_from_maps(maps[0], maps[1], params, maps[2] if len(maps) > 2 else None)


def labels_by_block(read_maps: Callable[[int, int, int, int], tuple[np.ndarray, np.ndarray]], shape,
                    params: PostprocessParams, block: int = _POST.block, margin: int = _POST.margin,
                    workers: int = 1, post: Callable | None = None) -> np.ndarray:
    """:func:`stitch_blocks` into a new in-memory (Y, X) uint32 label image, returned."""
    out = np.zeros(tuple(shape), np.uint32)
    stitch_blocks(read_maps, shape, params, out, block, margin, workers, post)
    return out


class LabelStore:
    """A (T, Y, X) uint32 Zarr array on disk, chunked one ``block`` square per frame, that :func:`stitch_blocks`
    writes a frame at a time (:meth:`frame`) and :func:`cellscale.io.write_labels` reads back tile by tile.

    Zarr 2 and 3 alike; the folder ``path`` is the caller's to remove.
    """

    def __init__(self, path, shape, block: int):
        import zarr

        self.array = zarr.open_array(store=str(path), mode="w", shape=tuple(shape), chunks=(1, block, block),
                                     dtype=np.uint32, fill_value=0)
        self.shape, self.dtype, self.ndim = tuple(shape), np.dtype(np.uint32), len(shape)

    def frame(self, t: int) -> "_Plane":
        return _Plane(self.array, t)

    def __getitem__(self, key):
        return self.array[key]


class _Plane:
    """Frame ``t`` of a (T, Y, X) array as a (Y, X) array-like that takes slice assignment."""

    def __init__(self, array, t: int):
        self.array, self.t = array, t
        self.shape, self.dtype = tuple(array.shape[1:]), array.dtype

    def __getitem__(self, key):
        return self.array[(self.t, *key)]

    def __setitem__(self, key, value):
        self.array[(self.t, *key)] = value


class SourceGrid:
    """(T, Y, X) labels at the model's resolution seen on the image grid (nearest neighbour, as
    :func:`cellscale.segment.tiles.to_source_grid`): each read takes just the region of ``labels`` it maps to."""

    def __init__(self, labels, source_shape, scale: float):
        self.labels, self.scale = labels, float(scale)
        t, h, w = labels.shape
        self.rows = np.clip(np.floor((np.arange(source_shape[0]) + 0.5) * scale).astype(int), 0, h - 1)
        self.cols = np.clip(np.floor((np.arange(source_shape[1]) + 0.5) * scale).astype(int), 0, w - 1)
        self.shape, self.dtype, self.ndim = (t, len(self.rows), len(self.cols)), np.dtype(labels.dtype), 3

    def __getitem__(self, key):
        t, ys, xs = key
        rows, cols = self.rows[ys], self.cols[xs]
        if not len(rows) or not len(cols):
            return np.zeros((len(rows), len(cols)), self.dtype)
        r0, c0 = int(rows.min()), int(cols.min())
        part = np.asarray(self.labels[t, r0:int(rows.max()) + 1, c0:int(cols.max()) + 1])
        return part[(rows - r0)[:, None], (cols - c0)[None, :]]


def labels_from_arrays(distance: np.ndarray, p_background: np.ndarray, params: PostprocessParams,
                       block: int = _POST.block, margin: int = _POST.margin,
                       p_boundary: np.ndarray | None = None, post: Callable | None = None) -> np.ndarray:
    """:func:`labels_by_block` on in-memory maps."""
    maps = (distance, p_background) if p_boundary is None else (distance, p_background, p_boundary)
    return labels_by_block(lambda y0, y1, x0, x1: tuple(m[y0:y1, x0:x1] for m in maps),
                           distance.shape, params, block, margin, post=post)


def frame_maps_reader(plan: TilePlan, read_tile: TileReader, frame: int, channel: int, params: PostprocessParams):
    """``read_maps`` of :func:`stitch_blocks` for one compartment in one frame: the blended maps of a region;
    ``channel`` is the first of its :data:`~cellscale.segment.model.CHANNELS_PER_COMPARTMENT` maps in a window."""
    n = 3 if params.merge_boundary > 0 else 2  # distance, p(background)[, p(boundary)]

    def read_maps(y0, y1, x0, x1):
        return tuple(blend_region(plan, lambda i: read_tile(i)[channel:channel + n], frame, y0, y1, x0, x1, n))

    return read_maps


def frame_labels(plan: TilePlan, read_tile: TileReader, frame: int, channel: int, params: PostprocessParams,
                 block: int, margin: int, workers: int = 1) -> np.ndarray:
    """Labels of one compartment in one frame, in memory (:func:`frame_maps_reader`, :func:`labels_by_block`)."""
    return labels_by_block(frame_maps_reader(plan, read_tile, frame, channel, params), plan.shape[1:], params,
                           block, margin, workers)
