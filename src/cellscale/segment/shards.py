"""Shard files: the windows a ``segment`` job reads and the maps it writes, compressed and chunked per window.

A shard is one file, ``shard_NNNN.zarr.zip``: a Zarr v3 array in a zip archive (:class:`zarr.storage.ZipStore`;
zip entries stored as they are, each chunk compressed with blosc zstd and byte shuffle), one chunk per window, so
a reader decodes only the windows it asks for. One file rather than a Zarr folder: a shard is an input or output
of a single job, and on a cluster without a shared filesystem (GKE) every file of a job passes through the bucket
by itself, which a single file keeps to one object. The same arrays give the same file, byte for byte (every zip
entry dated 1980-01-01, entries in window order), so a killed run's rerun rewrites a shard unchanged.

- Windows (the ``tile`` rule, :func:`write_windows`; the ``segment`` rule, :func:`open_windows`). When the model
  sees the image at its own resolution (``plan.scale`` 1), the shard holds the raw pixel values of the channels
  the recipe reads, in the image's own dtype (zero past the image edge), with the image-wide normalisation ranges
  and the channel recipe in its attributes: :class:`Windows` applies them batch by batch and gives exactly the
  float32 windows :func:`cellscale.segment.tiles.shard_tiles` gives (the same operations on the same values).
  Otherwise (resampled, or an image type larger than float32) it holds the normalised float32 windows, lossless.
- Maps (the ``segment`` rule, :func:`create_maps`; the ``stitch`` rule, :func:`open_maps`): (n, K, th, tw)
  float16, lossless, less what the next step can recompute: of each compartment's ``[inner distance,
  p(background), p(boundary), p(interior)]`` (:mod:`cellscale.segment.model`) the file keeps the first three,
  which are all stitching reads; p(interior) is given back as 1 - p(background) - p(boundary) (the classes are a
  softmax), so a reader still sees K maps.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np

from cellscale.io import ImageSource, atomic_path
from cellscale.segment.model import CHANNELS_PER_COMPARTMENT
from cellscale.segment.preprocess import ChannelRecipe, normalize
from cellscale.segment.tiles import TilePlan, read_window

SUFFIX = ".zarr.zip"
_NAME = re.compile(r"shard_(\d{4})" + re.escape(SUFFIX) + "$")
# blosc, measured on a 25-window shard of a generated slide: float16 maps 4.6x (bit shuffle: 3.2x; zstd level 9: 7%
# smaller at 20x the time), its uint16 windows 1.14x (the slide's zlib OME-TIFF 1.08x: the pixels are noisy)
_CODEC = {"cname": "zstd", "clevel": 5, "shuffle": "shuffle"}
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the date of every zip entry (see _new_store)


def shard_name(shard: int) -> str:
    """File name of shard ``shard``: ``shard_0003.zarr.zip``."""
    return f"shard_{shard:04d}{SUFFIX}"


def shard_number(name: str) -> int | None:
    """The shard number in a shard file name (:func:`shard_name`), None for any other name."""
    match = _NAME.match(os.path.basename(str(name)))
    return None if match is None else int(match.group(1))


def _create(store, shape, dtype, attributes: dict):
    import zarr
    from zarr.codecs import BloscCodec

    return zarr.create_array(store, shape=tuple(shape), chunks=(1, *shape[1:]), dtype=dtype, fill_value=0,
                             compressors=BloscCodec(**_CODEC), attributes=attributes, zarr_format=3)


@contextmanager
def _new_store(path):
    """A :class:`zarr.storage.ZipStore` writing a new shard file at ``path``, which appears only when the block ends
    without error. Every zip entry carries one fixed date, 1980-01-01 00:00 (the earliest a zip holds), rather than
    its write time (ZipStore's), as reproducible-build tools do: the same arrays give the same bytes, so a shard a
    rerun writes again is the file it replaces."""
    import zipfile

    from zarr.storage import ZipStore

    class FixedDateZipStore(ZipStore):
        def _set(self, key, value) -> None:  # ZipStore._set less the write time (zarr keys are files, not folders)
            if not self._is_open:
                self._sync_open()
            info = zipfile.ZipInfo(filename=key, date_time=_ZIP_DATE)
            info.compress_type = self.compression
            info.external_attr = 0o644 << 16  # -rw-r--r--
            self._zf.writestr(info, value.to_bytes())

    with atomic_path(path) as tmp:
        store = FixedDateZipStore(tmp, mode="w")
        try:
            yield store
        finally:
            store.close()


def _open(path):
    import zarr
    from zarr.storage import ZipStore

    return zarr.open_array(ZipStore(path, mode="r"), mode="r")


def write_windows(path, source: ImageSource, recipe: ChannelRecipe, plan: TilePlan, shard: int) -> str:
    """Write the windows of shard ``shard`` (one read of the image per window); returns ``"raw"`` or
    ``"normalised"``, what the file holds (see the module)."""
    th, tw = plan.tile
    _, h, w = plan.shape
    used = [0, 1, 2] if recipe.colour else sorted(set(recipe.indices))
    stored = recipe if recipe.colour else ChannelRecipe(indices=[used.index(i) for i in recipe.indices],
                                                        gamma=recipe.gamma)
    indices = plan.shards[shard]
    raw = plan.scale == 1.0 and (source.dtype.kind in "biu" or source.dtype.kind == "f" and source.dtype.itemsize <= 4)
    extents = []
    for i in indices:
        t, y, x = plan.tiles[i]
        extents.append([min(y + th, h) - y, min(x + tw, w) - x])
    meta = {"windows": "raw" if raw else "normalised", "ranges": np.asarray(plan.ranges).tolist(),
            "recipe": asdict(stored), "extents": extents}

    def raw_window(k):
        t, y, x = plan.tiles[indices[k]]
        eh, ew = extents[k]
        region = source.region(t, y, y + eh, x, x + ew)
        source.check_finite(region)
        window = np.zeros((len(used), th, tw), source.dtype)
        window[:, :eh, :ew] = region[used]
        return window

    if raw:
        _write(path, (len(indices), len(used), th, tw), source.dtype, meta, map(raw_window, range(len(indices))))
    else:
        _write(path, (len(indices), len(plan.ranges), th, tw), np.float32, meta,
               (read_window(source, recipe, plan, i) for i in indices))
    return meta["windows"]


def save_windows(path, windows: np.ndarray) -> None:
    """Write (n, C, th, tw) windows that are normalised already as a shard file (tests, hand-made shards)."""
    n, c, th, tw = windows.shape
    meta = {"windows": "normalised", "ranges": [[0.0, 1.0]] * c, "recipe": asdict(ChannelRecipe(list(range(c)))),
            "extents": [[th, tw]] * n}
    _write(path, windows.shape, np.float32, meta, iter(windows))


def _write(path, shape, dtype, meta: dict, windows) -> None:
    """A shard file of ``shape`` from an iterable of its windows, written one window (one chunk) at a time."""
    with _new_store(path) as store:
        array = _create(store, shape, dtype, {"cellscale": meta})
        for k, window in enumerate(windows):
            array[k] = window


class Windows:
    """The normalised float32 windows (n, C, th, tw) of a shard file, read lazily: indexing with a slice (as
    :meth:`cellscale.segment.predictor.Predictor.predict` does, one batch at a time) decodes only those windows."""

    def __init__(self, path):
        self.path = Path(path)
        self._array = _open(self.path)
        meta = self._array.attrs["cellscale"]
        self.kind = meta["windows"]
        self.ranges = np.asarray(meta["ranges"])
        self.recipe = ChannelRecipe(**meta["recipe"])
        self.extents = meta["extents"]
        n, _, th, tw = self._array.shape
        self.shape = (n, len(self.ranges), th, tw)
        self.ndim = 4
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self[int(key):int(key) + 1 or None][0]
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError(f"shard windows are indexed by an integer or a contiguous slice, not {key!r}")
        start, stop, _ = key.indices(self.shape[0])
        stored = np.asarray(self._array[start:stop])
        if self.kind == "normalised":
            return stored.astype(np.float32, copy=False)
        out = np.zeros((len(stored), *self.shape[1:]), np.float32)
        for k, raw in enumerate(stored):
            h, w = self.extents[start + k]
            out[k, :, :h, :w] = normalize(self.recipe.apply(np.ascontiguousarray(raw[:, :h, :w])), self.ranges)
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)


def open_windows(path) -> Windows:
    """The windows of a shard file written by :func:`write_windows` (lazy, see :class:`Windows`)."""
    return Windows(path)


def _kept(k: int) -> list[int]:
    """The stored maps of K: all but each compartment's p(interior)."""
    if k % CHANNELS_PER_COMPARTMENT:
        return list(range(k))
    return [c for c in range(k) if c % CHANNELS_PER_COMPARTMENT != CHANNELS_PER_COMPARTMENT - 1]


class _MapsWriter:
    """(n, K, th, tw) float16 target of :meth:`cellscale.segment.predictor.Predictor.predict`: a window's maps go
    to the file less p(interior), compressed and written in a thread while the network runs the next batch (one
    batch in flight), window by window in order."""

    def __init__(self, array, shape):
        from concurrent.futures import ThreadPoolExecutor

        self._array, self.shape, self.ndim, self.dtype = array, tuple(shape), 4, np.dtype(np.float16)
        self._kept = _kept(shape[1])
        self._thread, self._pending = ThreadPoolExecutor(1), None

    def __setitem__(self, key: slice, maps) -> None:
        stored = np.asarray(maps)[:, self._kept].astype(np.float16)  # a copy: the caller may reuse its array
        self.wait()
        self._pending = self._thread.submit(self._write, range(*key.indices(self.shape[0])), stored)

    def _write(self, indices: range, stored: np.ndarray) -> None:
        # one window (chunk) at a time: zarr writes the chunks of one assignment concurrently, in an order that
        # varies from run to run, and the order of the zip entries is part of the file's bytes
        for k, window in zip(indices, stored):
            self._array[k] = window

    def wait(self) -> None:
        """Until the last write is done (raises its error)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        self._thread.shutdown(wait=True)


@contextmanager
def create_maps(path, shape):
    """Yield a writable (n, K, th, tw) float16 array of a new maps file at ``path``, one chunk per window (assign
    slices of whole windows, each window once, e.g. batch by batch); the file appears at ``path`` only when the
    block ends without error."""
    n, k, th, tw = shape
    with _new_store(path) as store:
        writer = _MapsWriter(_create(store, (n, len(_kept(k)), th, tw), np.float16, {"cellscale": {"maps": k}}), shape)
        try:
            yield writer
            writer.wait()
        finally:
            writer.close()


class Maps:
    """The (n, K, th, tw) float16 maps of a shard file, read lazily: ``maps[k]`` (or a slice) decodes only those
    windows; p(interior) is recomputed (see the module)."""

    def __init__(self, path):
        self._array = _open(path)
        n, _, th, tw = self._array.shape
        k = self._array.attrs["cellscale"]["maps"]
        self.shape, self.ndim, self.dtype = (n, k, th, tw), 4, np.dtype(np.float16)
        self._kept = _kept(k)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return np.asarray(self.window(key))
        return np.stack([np.asarray(self.window(k)) for k in range(*key.indices(self.shape[0]))])

    def window(self, k: int) -> "MapsWindow":
        """Window ``k`` (one chunk decoded) as a (K, th, tw) array-like: a slice of maps that are stored (all that
        stitching reads) is a view, without recomputing p(interior)."""
        return MapsWindow(np.asarray(self._array[int(k)]), self._kept, self.shape[1])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)


class MapsWindow:
    """One window's (K, th, tw) float16 maps from the stored ones (see :meth:`Maps.window`)."""

    def __init__(self, stored: np.ndarray, kept: list[int], k: int):
        self._stored, self._kept = stored, kept
        self.shape, self.ndim, self.dtype = (k, *stored.shape[1:]), 3, np.dtype(np.float16)

    def __getitem__(self, key) -> np.ndarray:
        channels = range(self.shape[0])[key[0] if isinstance(key, tuple) else key]
        rest = key[1:] if isinstance(key, tuple) else ()
        if isinstance(channels, range) and channels.step == 1 and all(c in self._kept for c in channels):
            first = self._kept.index(channels[0]) if len(channels) else 0
            if self._kept[first:first + len(channels)] == list(channels):  # stored side by side: a view
                return self._stored[(slice(first, first + len(channels)), *rest)]
        return np.asarray(self)[key]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        stored, k = self._stored, self.shape[0]
        if len(self._kept) == k:
            out = stored
        else:
            out = np.empty(self.shape, np.float16)
            out[self._kept] = stored
            for c in range(CHANNELS_PER_COMPARTMENT - 1, k, CHANNELS_PER_COMPARTMENT):
                p_bg, p_bd = (stored[self._kept.index(c - j)].astype(np.float32) for j in (2, 1))
                out[c] = np.clip(1.0 - p_bg - p_bd, 0.0, 1.0)
        return out if dtype is None else out.astype(dtype, copy=False)


def open_maps(path) -> Maps:
    """The maps of a shard file written by :func:`create_maps` (lazy, see :class:`Maps`)."""
    return Maps(path)
