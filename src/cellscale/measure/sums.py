"""Per-cell partial sums of one block of a label image, and how blocks combine.

A block is reduced to horizontal runs of equal label. Every per-cell quantity
the table needs is a sum, a minimum or a maximum over runs: pixel count,
coordinate sums and second moments (exact integers from closed forms over each
run), intensity sums, bounding box, and the left-most / right-most pixel of
each (cell, row) that fixes the convex hull. Partial sums of blocks that
split a cell therefore combine exactly into the sums of the whole image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CellSums", "block_sums", "merge_sums", "label_segments", "index_of"]

LUT_SIZE = 1 << 22  # label -> index tables up to this size (32 MB) beat sorting


@dataclass
class CellSums:
    """Sums over the pixels of each cell seen so far.

    Attributes
    ----------
    labels : (n,) int64, sorted, unique
    moments : (6, n) int64
        Pixel count and sums of r, c, r*r, c*c, r*c (image coordinates).
    bbox : (4, n) int64
        First row, first column, last row, last column.
    intensity : (C, n) float64
        Sum of every channel.
    rows : (4, m) int64
        One column per (cell, row): label, row, left-most and right-most
        column; sorted by label, then row.
    """

    labels: np.ndarray
    moments: np.ndarray
    bbox: np.ndarray
    intensity: np.ndarray
    rows: np.ndarray

    @classmethod
    def empty(cls, n_channels: int) -> "CellSums":
        z = np.zeros
        return cls(z(0, np.int64), z((6, 0), np.int64), z((4, 0), np.int64),
                   z((n_channels, 0)), z((4, 0), np.int64))

    def __len__(self) -> int:
        return len(self.labels)


def label_segments(*labels: np.ndarray) -> np.ndarray:
    """Maximal horizontal segments on which every given (h, w) label array is constant.

    Background segments are included and no segment crosses a row end.
    Returns the flat start index of every segment followed by ``h * w``, so
    segment ``i`` covers ``[out[i], out[i + 1])``.
    """
    h, w = labels[0].shape
    if h * w == 0:
        return np.zeros(1, np.intp)
    change = np.empty(h * w + 1, bool)
    for k, lab in enumerate(labels):
        flat = lab.ravel()
        if k == 0:
            np.not_equal(flat[1:], flat[:-1], out=change[1:-1])
        else:
            change[1:-1] |= flat[1:] != flat[:-1]
    change[:-1:w] = True
    change[-1] = True
    return np.flatnonzero(change)


def _run_sums(channel: np.ndarray, starts, ends, seg_starts, run_segment, buffer=None) -> np.ndarray:
    """Sum of one (h, w) channel over each run.

    Runs are given by flat ``starts`` and ``ends`` (exclusive) and by
    ``run_segment``, their index among all segments (``seg_starts``).
    8/16-bit unsigned channels use a wrapping 32-bit prefix sum (uint32
    result; ``buffer``, h * w + 1 uint32, is reused for it): differences are
    exact while a run's sum stays below 2**32, always true when the block is
    at most 65,537 pixels wide. Other integer types are reduced segment by
    segment in int64, floats in float64.
    """
    flat = channel.ravel()
    if flat.dtype in (np.uint8, np.uint16) and channel.shape[1] * np.iinfo(flat.dtype).max < 2 ** 32:
        prefix = np.empty(flat.size + 1, np.uint32) if buffer is None else buffer
        prefix[0] = 0
        prefix[1:] = flat
        np.cumsum(prefix, out=prefix)  # in place: faster than casting inside cumsum
        return prefix[ends] - prefix[starts]
    acc = np.int64 if flat.dtype.kind in "iu" and flat.dtype.itemsize <= 4 else np.float64
    return np.add.reduceat(flat, seg_starts, dtype=acc)[run_segment]


def _cell_index(run_labels):
    """Sorted distinct labels and each run's index into them."""
    top = int(run_labels.max())
    if top < max(8 * len(run_labels), LUT_SIZE):  # a look-up table is cheaper than sorting
        seen = np.zeros(top + 1, bool)
        seen[run_labels] = True
        present = np.flatnonzero(seen)
        lut = np.empty(top + 1, np.int64)
        lut[present] = np.arange(len(present))
        return present.astype(np.int64), lut[run_labels]
    present, inverse = np.unique(run_labels, return_inverse=True)
    return present.astype(np.int64), inverse.astype(np.int64)


def index_of(labels: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Position of each of ``values`` in sorted ``labels`` (every value is present)."""
    if len(labels) and int(labels[-1]) < max(8 * len(values), LUT_SIZE):
        lut = np.zeros(int(labels[-1]) + 1, np.int64)
        lut[labels] = np.arange(len(labels))
        return lut[values]
    return np.searchsorted(labels, values)


def block_sums(lab: np.ndarray, image: np.ndarray | None = None, y0: int = 0, x0: int = 0) -> CellSums:
    """Partial sums of every cell in one block.

    Parameters
    ----------
    lab : (h, w) ndarray of int
        Labels of the block (0 = background, no negative values).
    image : (C, h, w) ndarray, optional
        Channels of the same block.
    y0, x0 : int
        Position of the block in the image, so coordinates are global.
    """
    lab = np.ascontiguousarray(lab)
    n_channels = 0 if image is None else image.shape[0]
    h, w = lab.shape
    bounds = label_segments(lab)
    seg_starts = bounds[:-1]
    values = lab.ravel()[seg_starts]
    fg = np.flatnonzero(values)
    if len(fg) == 0:
        return CellSums.empty(n_channels)
    starts, ends = seg_starts[fg], bounds[fg + 1]
    present, g = _cell_index(values[fg])
    r = starts // w
    c0 = starts - r * w
    c1 = ends - 1 - r * w
    # group runs by (cell, row); runs of one (cell, row) need no order
    order = np.argsort(g * h + r)
    g, r, c0, c1 = g[order], r[order] + y0, c0[order] + x0, c1[order] + x0
    new_row = np.empty(len(g), bool)
    new_row[0] = True
    new_row[1:] = (g[1:] != g[:-1]) | (r[1:] != r[:-1])
    row_at = np.flatnonzero(new_row)
    length = c1 - c0 + 1
    sc = (c0 + c1) * length // 2

    def tri(m):  # sum of k*k for k = 0..m
        return m * (m + 1) * (2 * m + 1) // 6

    # per (cell, row) first, then per cell (fewer, larger reductions)
    cnt, s_c, s_cc = (np.add.reduceat(x, row_at) for x in (length, sc, tri(c1) - tri(c0 - 1)))
    left = np.minimum.reduceat(c0, row_at)
    right = np.maximum.reduceat(c1, row_at)
    rg, rr = g[row_at], r[row_at]
    cell_at = np.flatnonzero(np.r_[True, rg[1:] != rg[:-1]])
    moments = np.stack([np.add.reduceat(x, cell_at) for x in (cnt, rr * cnt, s_c, rr * rr * cnt, s_cc, rr * s_c)])
    last = np.r_[cell_at[1:], len(rg)] - 1
    bbox = np.stack([rr[cell_at], np.minimum.reduceat(left, cell_at), rr[last],
                     np.maximum.reduceat(right, cell_at)])
    intensity = np.zeros((n_channels, len(present)))
    if n_channels:
        cell_of_run = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
        starts, ends, run_segment = starts[order], ends[order], fg[order]
        # one prefix-sum buffer for all channels: fresh pages cost more than the sums
        buffer = np.empty(lab.size + 1, np.uint32) if image.dtype in (np.uint8, np.uint16) else None
        for k in range(n_channels):
            sums = _run_sums(image[k], starts, ends, seg_starts, run_segment, buffer)
            intensity[k] = np.add.reduceat(sums, cell_of_run, dtype=np.float64 if sums.dtype.kind == "f" else np.int64)
    rows = np.stack([present[rg], rr, left, right])
    return CellSums(present, moments, bbox, intensity, rows)


def merge_sums(parts: list[CellSums], n_channels: int) -> CellSums:
    """Combine the partial sums of several blocks (any cells, any overlap of labels)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return CellSums.empty(n_channels)
    if len(parts) == 1:
        return parts[0]
    labels = np.concatenate([p.labels for p in parts])
    order = np.argsort(labels, kind="stable")
    labels = labels[order]
    at = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
    moments = np.add.reduceat(np.concatenate([p.moments for p in parts], axis=1)[:, order], at, axis=1)
    bbox = np.concatenate([p.bbox for p in parts], axis=1)[:, order]
    bbox = np.concatenate([np.minimum.reduceat(bbox[:2], at, axis=1), np.maximum.reduceat(bbox[2:], at, axis=1)])
    intensity = np.add.reduceat(np.concatenate([p.intensity for p in parts], axis=1)[:, order], at, axis=1)
    labels = labels[at]
    rows = np.concatenate([p.rows for p in parts], axis=1)
    key = index_of(labels, rows[0]) * (int(rows[1].max()) + 1) + rows[1]
    order = np.argsort(key)
    key, rows = key[order], rows[:, order]
    at = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    if len(at) < len(key):  # blocks side by side split rows: join their pieces
        rows = np.stack([rows[0, at], rows[1, at], np.minimum.reduceat(rows[2], at),
                         np.maximum.reduceat(rows[3], at)])
    return CellSums(labels, moments, bbox, intensity, rows)
