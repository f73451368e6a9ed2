"""Dask arrays over :class:`cellscale.io.ImageSource`: an image or a label image read chunk by chunk."""

from __future__ import annotations

import numpy as np

from cellscale.io import ImageSource

CHUNK = 1024  # rows and columns per chunk (the NGFF stores' chunks too): 4 MB of uint32 labels


class _Frames:
    """A (T, C, Y, X) array-like over an ImageSource for :func:`dask.array.from_array`: each read is one region of
    a few frames."""

    def __init__(self, source: ImageSource):
        self.source = source
        self.shape = source.shape
        self.dtype = source.dtype
        self.ndim = 4

    def __getitem__(self, key) -> np.ndarray:
        t, c, y, x = tuple(key) + (slice(None),) * (4 - len(key))
        (y0, y1, _), (x0, x1, _) = y.indices(self.shape[2]), x.indices(self.shape[3])
        frames = range(*t.indices(self.shape[0])) if isinstance(t, slice) else [int(t)]
        parts = [self.source.region(f, y0, y1, x0, x1)[c] for f in frames]
        out = np.stack(parts) if parts else np.zeros((0, *self.shape[1:]), self.dtype)[:, c, y0:y1, x0:x1]
        return out if isinstance(t, slice) else out[0]


def _dask(source: ImageSource, chunk: int):
    import dask.array as da

    t, c, _, _ = source.shape
    return da.from_array(_Frames(source), chunks=(1, c, chunk, chunk), asarray=False, lock=True, fancy=False,
                         name=f"cellscale-{id(source):x}")


def lazy_image(source: ImageSource, timelapse: bool, chunk: int = CHUNK):
    """The image as a dask array: (T, C, Y, X) for a time-lapse, (C, Y, X) otherwise (frame 0)."""
    arr = _dask(source, chunk)
    return arr if timelapse else arr[0]


def lazy_labels(source: ImageSource, timelapse: bool, chunk: int = CHUNK):
    """A label image (one channel) as a uint32 dask array: (T, Y, X) for a time-lapse, (Y, X) otherwise."""
    arr = _dask(source, chunk)[:, 0].astype(np.uint32)
    return arr if timelapse else arr[0]
