"""Reading labels and images block by block, from NumPy, zarr or region sources.

Large slides are measured without holding them in memory: any array-like
with ``shape``, ``dtype`` and NumPy slicing (a zarr array, e.g. from
``tifffile.imread(path, aszarr=True)``) is read one block at a time, and
:class:`RegionArray` gives that interface to a (T, C, Y, X) source with a
``region(t, y0, y1, x0, x1)`` method (:class:`cellscale.io.ImageSource`).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["RegionArray", "block_grid", "default_block_shape"]

BAND_PIXELS = 1 << 22  # about 4 Mpx per block: fastest (cache) and ~100 MB with 8 channels


class RegionArray:
    """Array-like view of a (T, C, Y, X) region source with some axes dropped.

    Parameters
    ----------
    source : object
        ``shape`` (T, C, Y, X), ``dtype`` and ``region(t, y0, y1, x0, x1)``
        returning a (C, h, w) array.
    axes : str
        The axes of the view, e.g. ``"YX"`` or ``"TYX"`` for labels,
        ``"CYX"`` or ``"TCYX"`` for an image; dropped axes must have size 1.
        Indexing takes an integer for T and slices with step 1 for Y and X
        (C: an integer or a full slice). A source with ``check_finite`` (an
        :class:`~cellscale.io.ImageSource`) checks every block read: NaN or
        infinite pixels are an error naming the file, as segmentation's.
    """

    def __init__(self, source, axes: str):
        if any(a not in "TCYX" for a in axes) or not axes.endswith("YX"):
            raise ValueError(f"axes must be a sub-sequence of 'TCYX' ending in 'YX', got {axes!r}")
        sizes = dict(zip("TCYX", source.shape))
        for a in "TC":
            if a not in axes and sizes[a] != 1:
                raise ValueError(f"axis {a} of size {sizes[a]} cannot be dropped")
        self.source, self.axes = source, axes
        self.shape = tuple(int(sizes[a]) for a in axes)
        self.ndim = len(axes)
        self.dtype = np.dtype(source.dtype)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        index = dict(zip(self.axes, key))
        t = int(index.get("T", 0))
        (y0, y1, _), (x0, x1, _) = (index[a].indices(self.shape[self.axes.index(a)]) for a in "YX")
        data = np.asarray(self.source.region(t, y0, y1, x0, x1))
        if hasattr(self.source, "check_finite"):   # an ImageSource: NaN or infinite pixels refused as they are read
            self.source.check_finite(data)
        return data[index.get("C", 0)]  # no C axis: the source's only channel


def default_block_shape(height: int, width: int) -> tuple[int, int]:
    """Full-width bands of about 4 Mpx, a multiple of 256 rows (tile-aligned)."""
    rows = max(1, math.ceil(BAND_PIXELS / max(width, 1)))
    rows = min(height, 256 * math.ceil(rows / 256))
    return max(rows, 1), width


def block_grid(height: int, width: int, block_shape) -> list[tuple[int, int, int, int]]:
    """(y0, y1, x0, x1) of every block, in raster order."""
    bh, bw = (int(b) for b in block_shape)
    if bh < 1 or bw < 1:
        raise ValueError(f"block_shape must be positive, got {block_shape}")
    return [(y, min(y + bh, height), x, min(x + bw, width))
            for y in range(0, height, bh) for x in range(0, width, bw)]
