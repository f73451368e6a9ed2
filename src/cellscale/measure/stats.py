"""Optional per-cell intensity statistics: sum, median, std, 25th and 75th percentiles.

Order statistics need every pixel value of a cell at once, so these are
computed on a band of rows that holds whole cells (the whole image in memory,
or bands read in turn for large images).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["EXTRA_STATS", "extra_stats_table"]

EXTRA_STATS = ["sum", "median", "std", "p25", "p75"]


def _pixel_index(lab: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Index of each pixel's label in sorted ``cells``; other pixels -> len(cells)."""
    n = len(cells)
    flat = lab.ravel()
    top = int(flat.max(initial=0))
    if top <= 4 * flat.size + 65536:
        lut = np.full(top + 1, n, dtype=np.intp)
        inside = cells[cells <= top]
        lut[inside] = np.searchsorted(cells, inside)
        return lut[flat]
    idx = np.searchsorted(cells, flat)
    hit = idx < n
    hit[hit] = cells[idx[hit]] == flat[hit]
    idx[~hit] = n
    return idx


def _channel_stats(values, idx, counts):
    """sum, median, std, p25, p75 of one channel per cell, like numpy."""
    n = len(counts)
    fg = idx < n
    vals, ids = values[fg].astype(np.float64, copy=False), idx[fg]
    s = np.bincount(ids, weights=vals, minlength=n)
    mean = s / counts
    std = np.sqrt(np.bincount(ids, weights=(vals - mean[ids]) ** 2, minlength=n) / counts)
    v = vals[np.lexsort((vals, ids))]
    starts = np.r_[0, np.cumsum(counts)[:-1]]

    def quantile(q):  # numpy's default "linear" method incl. its _lerp
        vi = counts * q - q
        lo = np.floor(vi)
        t = vi - lo
        a = v[starts + lo.astype(np.int64)]
        b = v[starts + np.minimum(lo.astype(np.int64) + 1, counts - 1)]
        d = b - a
        return np.where(t >= 0.5, b - d * (1 - t), a + d * t)

    med = (v[starts + (counts - 1) // 2] + v[starts + counts // 2]) / 2
    return [s, med, std, quantile(0.25), quantile(0.75)]


def extra_stats_table(lab: np.ndarray, image: np.ndarray | None, cells: np.ndarray, counts: np.ndarray,
                      names: Sequence[str]) -> pd.DataFrame:
    """Extra statistics of the ``cells`` (sorted labels) whose pixels all lie in ``lab``.

    ``counts`` is each cell's pixel count; pixels of other labels are ignored.
    Returns one row per cell, columns ``<name>_<stat>``.
    """
    cols = [f"{c}_{s}" for c in names for s in EXTRA_STATS]
    if image is None or len(cells) == 0 or not len(names):
        return pd.DataFrame({c: np.zeros(len(cells)) for c in cols}, columns=cols)
    idx = _pixel_index(lab, cells)
    data = {}
    for k, name in enumerate(names):
        stats = _channel_stats(image[k].ravel(), idx, counts)
        data.update({f"{name}_{s}": v for s, v in zip(EXTRA_STATS, stats)})
    return pd.DataFrame(data, columns=cols)
