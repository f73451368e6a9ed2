"""Exact pixel counts of ``skimage.morphology.convex_hull_image``, all cells at once.

skimage builds the hull of the pixel diamonds (corners at r +- 1/2, c +- 1/2)
and keeps the pixels whose centres lie inside it or on its boundary. A cell's
hull is therefore fixed by the left-most and right-most pixel of each of its
rows. Coordinates are doubled so that diamond corners are integers; the right
side of the hull is the concave majorant of the right-most corners and the
left side the concave majorant of the negated left-most corners, so one
vectorised routine serves both. Pixels are counted row by row with exact
integer floors.
"""

from __future__ import annotations

import numpy as np

__all__ = ["hull_pixel_counts"]


def _upper_chain(y, v, kind):
    """Reduce point sequences, sorted by group and y, to their concave majorants in v.

    ``kind`` marks each group's first (1) and last (2) point; those stay.
    Points are removed in parallel passes: a point on or below the chord of
    its two neighbours is never a vertex, and removing all such points at
    once leaves the majorant unchanged. Neighbours of an inner point always
    belong to its group, since group ends are never removed.
    """
    while len(y) > 2:
        yp, yi, yn = y[:-2], y[1:-1], y[2:]
        vp, vi, vn = v[:-2], v[1:-1], v[2:]
        drop = (vi - vp) * (yn - yp) <= (vn - vp) * (yi - yp)
        drop &= kind[1:-1] == 0
        if not drop.any():
            break
        keep = np.ones(len(y), bool)
        keep[1:-1] = ~drop
        y, v, kind = y[keep], v[keep], kind[keep]
    return y, v, kind


def _side_points(g, r, c):
    """Diamond corners that can be vertices of one side's upper chain.

    Each row contributes its middle corner (2r, 2c + 1), unless it lies on or
    below the chord of the middle corners of the rows above and below. The
    corner shared by adjacent rows r and r + 1, (2r + 1, 2 max(c_r, c_r+1)),
    lies on or below the chord of their middle corners unless the rows differ
    by 2 or more, so it is only added then; rows next to a gap or a cell's end
    add their outer corners. Returns y, v (sorted by group, then y) and kind
    (1: first point of a group, 2: last, 0: other).
    """
    m = len(g)
    adjacent = (g[1:] == g[:-1]) & (r[1:] == r[:-1] + 1)
    top = np.ones(m, bool)
    top[1:] = ~adjacent
    bottom = np.ones(m, bool)
    bottom[:-1] = ~adjacent | (np.abs(c[1:] - c[:-1]) >= 2)
    mid = np.ones(m, bool)
    mid[1:-1] = ~(adjacent[:-1] & adjacent[1:] & (2 * c[1:-1] <= c[:-2] + c[2:]))
    count = top.astype(g.dtype) + mid + bottom
    first = np.cumsum(count, dtype=g.dtype) - count  # position of each entry's first point
    size = int(first[-1] + count[-1])
    y = np.empty(size, g.dtype)
    v = np.empty(size, g.dtype)
    kind = np.zeros(size, np.int8)
    t, e, b = np.flatnonzero(top), np.flatnonzero(mid), np.flatnonzero(bottom)
    at = first[t]
    y[at], v[at] = 2 * r[t] - 1, 2 * c[t]
    at = first[e] + top[e]
    y[at], v[at] = 2 * r[e], 2 * c[e] + 1
    at = first[b] + (count[b] - 1)
    y[at] = 2 * r[b] + 1
    shared = np.zeros(m, bool)  # a corner shared with the next row takes the larger v
    shared[:-1] = adjacent
    v[at] = 2 * np.where(shared[b], np.maximum(c[b], c[np.minimum(b + 1, m - 1)]), c[b])
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    kind[first[starts]] = 1
    last = np.r_[starts[1:], m] - 1
    kind[first[last] + count[last] - 1] = 2
    return y, v, kind


def _chunk_counts(g, r, left, right, heights):
    """Hull pixel counts of cells 0..n-1 from one entry per (cell, row).

    ``g`` is non-decreasing; rows ``r`` and columns ``left``, ``right`` are
    relative to each cell's bounding box; rows increase within a cell. The
    right side is the upper chain of v = 2X, the left side that of v = -2X,
    so one routine serves both (groups 0..n-1 right, n..2n-1 left).
    """
    n = len(heights)
    sides = [_side_points(g, r, right), _side_points(g, r, -left)]
    y, v, kind = (np.concatenate(x) for x in zip(*sides))
    y, v, kind = _upper_chain(y, v, kind)
    grp = np.cumsum(kind == 1, dtype=g.dtype) - 1  # every group keeps its first point
    # chain segment of each query: mark the vertices on a dense (group, y)
    # grid; y + 1 lies in [0, 2 * height] for y in [-1, 2 * height - 1]
    width = np.tile(2 * heights + 1, 2)
    offset = np.cumsum(width) - width
    marks = np.zeros(int(width.sum()), np.int32)
    marks[offset[grp] + (y + 1)] = 1
    segment = np.cumsum(marks, dtype=np.int32) - 1
    # query the middle of every row of every bounding box: the entries' rows
    # and, for cells in pieces, the empty rows between them
    gap = np.flatnonzero((g[1:] == g[:-1]) & (r[1:] > r[:-1] + 1))
    qg, qr = g, r
    if len(gap):
        fill = r[gap + 1] - r[gap] - 1
        qg = np.concatenate([g, np.repeat(g[gap], fill)])
        first = np.repeat(r[gap] + 1 - (np.cumsum(fill) - fill), fill)
        qr = np.concatenate([r, first + np.arange(int(fill.sum()), dtype=r.dtype)])
    qg = np.concatenate([qg, qg + n])
    qy = np.tile(2 * qr, 2)
    i0 = segment[offset[qg] + (qy + 1)]
    y0, v0, dy = y[i0], v[i0], y[i0 + 1] - y[i0]
    # floor(f(qy) / 2) with f linear between vertices i0 and i0 + 1
    edge = (v0 * dy + (qy - y0) * (v[i0 + 1] - v0)) // (2 * dy)
    half = len(qg) // 2
    width_px = np.maximum(edge[:half] + edge[half:] + 1, 0)  # right - left + 1
    return np.bincount(qg[:half], weights=width_px, minlength=n).astype(np.int64)


def hull_pixel_counts(cell, row, left, right, bbox, chunk: int = 1 << 20) -> np.ndarray:
    """Pixels of each cell's ``skimage.morphology.convex_hull_image``.

    Parameters
    ----------
    cell, row, left, right : (m,) int
        One entry per (cell, row) holding pixels: cell index in ``0..n-1``
        (non-decreasing), row, and left-most / right-most column of the
        cell's pixels in that row; rows increase within a cell.
    bbox : (4, n) int
        First row, first column, last row, last column of each cell.
    chunk : int
        Cells are processed in groups of about this many rows, which bounds
        the working memory.

    Returns
    -------
    (n,) int64
    """
    rmin, cmin, rmax, cmax = (np.asarray(b, np.int64) for b in bbox)
    n = len(rmin)
    out = np.zeros(n, np.int64)
    heights = rmax - rmin + 1
    widths = cmax - cmin + 1
    cost = np.cumsum(heights)
    a = 0
    while a < n:
        b = max(a + 1, int(np.searchsorted(cost, cost[a] - heights[a] + chunk, side="right")))
        e0, e1 = np.searchsorted(cell, [a, b])
        c = cell[e0:e1]
        # local coordinates keep every product small: int32 when twice
        # (2 * width + 2) * (2 * height + 2) and the query grid fit
        small = (8 * (int(widths[a:b].max()) + 1) * (int(heights[a:b].max()) + 1) < 2 ** 31
                 and 4 * int(cost[b - 1] - cost[a] + heights[a]) + 4 * (b - a) < 2 ** 31)
        dt = np.int32 if small else np.int64
        g = (c - a).astype(dt)
        r = (row[e0:e1] - rmin[c]).astype(dt)
        lo = (left[e0:e1] - cmin[c]).astype(dt)
        hi = (right[e0:e1] - cmin[c]).astype(dt)
        out[a:b] = _chunk_counts(g, r, lo, hi, heights[a:b].astype(dt))
        a = b
    return out
