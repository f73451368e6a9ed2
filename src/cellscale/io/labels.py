"""Label images (32-bit) and intensity images written as OME-TIFF, label images read back, and the one
check that label values are integers (:func:`check_labels`).

Many small label images can share one multi-series OME-TIFF (:func:`write_label_series`): one OME ``Image`` per
field of view, named after it, in the file's order; :class:`LabelSeries` names one of them, and
:func:`read_labels` and :meth:`cellscale.io.ImageSource.open` read it like a file of its own.
"""

from __future__ import annotations

import functools
import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from .atomic import atomic_path
from .formats import ImageError


def content_uuid(data: np.ndarray, metadata: dict, parts=None) -> str:
    """The OME ``UUID`` of an image written here: derived from its pixels and metadata, not drawn at random,
    so that writing the same result twice (a rerun, another machine) gives the same bytes.

    ``parts``: the pixels as consecutive pieces in C order (e.g. bands of rows, frame by frame), for an image not
    held whole; ``data`` then only gives the shape and dtype. Same UUID as for the whole array.
    """
    digest = hashlib.sha256(repr((tuple(data.shape), np.dtype(data.dtype).str,
                                  sorted(metadata.items()))).encode())
    for part in ([data] if parts is None else parts):
        part = np.ascontiguousarray(part)
        digest.update(memoryview(part.reshape(-1)).cast("B"))
    return f"urn:uuid:{uuid.UUID(bytes=digest.digest()[:16], version=5)}"


def check_labels(labels, name: str = "labels", error: type[ValueError] = ValueError):
    """``labels`` after checking that it holds integer labels (any signed or unsigned integer dtype; not bool,
    not float); raises ``error`` naming ``name`` (an array's name or a file's path) and the dtype otherwise.

    A lazily read array (anything with ``dtype`` and ``shape``: NumPy, Zarr, Dask) is returned as it is, unread;
    anything else goes through :func:`numpy.asarray`.
    """
    arr = labels if hasattr(labels, "dtype") and hasattr(labels, "shape") else np.asarray(labels)
    dtype = np.dtype(arr.dtype)
    if dtype == bool or dtype.kind not in "iu":
        raise error(f"{name} must hold integer labels, got dtype {dtype}; "
                    f"convert a binary mask with skimage.measure.label first")
    return arr


LABEL_TILE = 256  # TIFF tile edge of label images written from an array-like (a multiple of 16)
BAND_PIXELS = 1 << 24  # pixels read at once when writing labels from an array-like: 64 MB of uint32


def write_labels(path: str | os.PathLike, labels, pixel_size_um: float | None = None, name: str | None = None,
                 frame_interval_s: float | None = None) -> None:
    """Write a 32-bit label image as OME-TIFF ((Y, X) or (T, Y, X)), atomically; ``name``: the OME image's name
    (a sample's, as :func:`write_label_series` names each series; tifffile's default ``Image0`` without);
    ``frame_interval_s``: a movie's seconds between frames (OME ``TimeIncrement``, unit s; not written for (Y, X)).

    ``labels``: a NumPy array, written whole (strips); or any other array-like with ``shape``, ``dtype`` and NumPy
    slicing (a Zarr array, :class:`cellscale.segment.stitch.LabelStore`), never held whole: read twice in bands of
    full rows (the check and the content UUID, then the pixels) and written as :data:`LABEL_TILE`-square tiles.
    Both give the same pixels and the same UUID.
    """
    if not isinstance(labels, np.ndarray) and hasattr(labels, "shape") and hasattr(labels, "dtype"):
        return _write_labels_tiled(path, labels, pixel_size_um, name=name, frame_interval_s=frame_interval_s)
    labels = np.asarray(labels)
    if labels.max(initial=0) > np.iinfo(np.uint32).max:
        raise ValueError(f"{path}: more labels than a 32-bit image holds")
    labels = labels.astype(np.uint32, copy=False)
    with atomic_path(path) as tmp:
        metadata = _label_metadata(labels, pixel_size_um, name=name, frame_interval_s=frame_interval_s)
        tifffile.imwrite(tmp, labels, ome=True, metadata=metadata, compression="zlib", photometric="minisblack")


def _label_metadata(labels, pixel_size_um, parts=None, name: str | None = None,
                    frame_interval_s: float | None = None) -> dict:
    metadata = {"axes": "YX" if len(labels.shape) == 2 else "TYX"}
    if name:
        metadata["Name"] = name
    if pixel_size_um:
        metadata.update(PhysicalSizeX=pixel_size_um, PhysicalSizeY=pixel_size_um)
    if frame_interval_s and len(labels.shape) == 3:
        metadata.update(TimeIncrement=frame_interval_s, TimeIncrementUnit="s")
    metadata["UUID"] = content_uuid(labels, metadata, parts)
    return metadata


def _bands(labels, rows: int):
    """(Y, X) or (T, Y, X) ``labels`` as uint32 bands of ``rows`` full rows, frame by frame (C order)."""
    frames = [()] if len(labels.shape) == 2 else [(t,) for t in range(labels.shape[0])]
    height = labels.shape[-2]
    for t in frames:
        for y in range(0, height, rows):
            band = np.asarray(labels[(*t, slice(y, min(y + rows, height)), slice(None))])
            if band.max(initial=0) > np.iinfo(np.uint32).max:
                raise ValueError("more labels than a 32-bit image holds")
            yield band.astype(np.uint32, copy=False)


def _write_labels_tiled(path, labels, pixel_size_um, tile: int = LABEL_TILE, name: str | None = None,
                        frame_interval_s: float | None = None) -> None:
    check_labels(labels, str(path))
    shape = tuple(int(n) for n in labels.shape)
    if len(shape) not in (2, 3):
        raise ValueError(f"{path}: labels must be (Y, X) or (T, Y, X), got shape {shape}")
    rows = tile * max(1, BAND_PIXELS // (tile * max(shape[-1], 1)))

    class _Header:  # the shape and dtype the UUID is derived from (the pixels come from the bands)
        dtype = np.uint32

    _Header.shape = shape
    try:
        metadata = _label_metadata(_Header, pixel_size_um, _bands(labels, rows), name=name,
                                   frame_interval_s=frame_interval_s)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None

    def tiles():
        for band in _bands(labels, rows):
            for y in range(0, band.shape[0], tile):
                for x in range(0, band.shape[1], tile):
                    piece = band[y:y + tile, x:x + tile]
                    if piece.shape != (tile, tile):
                        piece = np.pad(piece, ((0, tile - piece.shape[0]), (0, tile - piece.shape[1])))
                    yield piece

    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, tiles(), shape=shape, dtype=np.uint32, tile=(tile, tile), ome=True,
                         metadata=metadata, compression="zlib", photometric="minisblack")


@dataclass(frozen=True)
class LabelSeries:
    """One named image (series) of a multi-series OME-TIFF written by :func:`write_label_series`.

    ``path``: the file; ``name``: the OME ``Image`` name (a sample). :attr:`index` is its place in the file, as
    ``tifffile.TiffFile(path).series[index]`` and Bio-Formats' series number count; ``str()`` names both.
    """

    path: Path
    name: str

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    def exists(self) -> bool:
        """The file exists and holds an image of this name."""
        return self.name in _series_positions(self.path)

    @property
    def index(self) -> int:
        positions = _series_positions(self.path)
        if self.name not in positions:
            raise ImageError(f"{self.path}: no image named {self.name!r} among its {len(positions)} series")
        return positions[self.name]

    def __str__(self) -> str:
        return f"{self.path} (series {self.name!r})"


def series_names(path: str | os.PathLike) -> list[str]:
    """The OME ``Image`` names of a multi-series OME-TIFF, in the file's order ([] when unreadable)."""
    return list(_series_positions(path))


def _series_positions(path: str | os.PathLike) -> dict[str, int]:
    """Each OME ``Image`` name of the file and its place (the first, for a name given twice); {} when there is no
    such file or it is unreadable. Shared while the file is unchanged: do not modify it."""
    try:
        stat = os.stat(path)
    except OSError:
        return {}
    return _read_positions(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _read_positions(path: str, mtime_ns: int, size: int) -> dict[str, int]:  # cached while the file is unchanged
    try:
        with tifffile.TiffFile(path) as tif:
            names = [s.name for s in tif.series]
    except Exception:
        return {}
    positions: dict[str, int] = {}
    for k, name in enumerate(names):
        positions.setdefault(name, k)
    return positions


def write_label_series(path: str | os.PathLike, images: list[tuple[str, object, float | None]]) -> None:
    """Write many 32-bit label images ((Y, X) each) as one multi-series OME-TIFF, atomically: one OME ``Image``
    per ``(name, labels, pixel_size_um)``, in this order, named ``name``. ``labels``: an array, or a function
    returning one (each is then read twice, for the content UUID and to write it; one at a time in memory).

    The file's UUID derives from every image's name, pixels and metadata: writing the same images again gives the
    same bytes. Read an image back with :func:`read_labels` (``LabelSeries(path, name)``).
    """
    path = Path(path)
    if not images:
        raise ValueError(f"{path}: no images to write")
    names = [name for name, _, _ in images]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: image names repeat: {sorted({n for n in names if names.count(n) > 1})}")

    def load(item):
        name, labels, _ = item
        labels = np.asarray(labels() if callable(labels) else labels)
        check_labels(labels, f"{path} (series {name!r})")
        if labels.ndim != 2:
            raise ValueError(f"{path} (series {name!r}): labels must be (Y, X), got shape {labels.shape}")
        if labels.max(initial=0) > np.iinfo(np.uint32).max:
            raise ValueError(f"{path} (series {name!r}): more labels than a 32-bit image holds")
        return labels.astype(np.uint32, copy=False)

    digest = hashlib.sha256()
    for item in images:
        digest.update(repr((item[0], item[2])).encode() + content_uuid(load(item), {"axes": "YX"}).encode())
    file_uuid = f"urn:uuid:{uuid.UUID(bytes=digest.digest()[:16], version=5)}"
    with atomic_path(path) as tmp, tifffile.TiffWriter(tmp, ome=True) as tif:
        for k, item in enumerate(images):
            metadata = {"axes": "YX", "Name": item[0]}
            if item[2]:
                metadata.update(PhysicalSizeX=item[2], PhysicalSizeY=item[2])
            if k == 0:
                metadata["UUID"] = file_uuid
            tif.write(load(item), metadata=metadata, compression="zlib", photometric="minisblack")


def read_labels(path: "str | os.PathLike | LabelSeries") -> np.ndarray:
    """Read a label image as written by :func:`write_labels` ((Y, X) or (T, Y, X)), or one image of a file
    written by :func:`write_label_series` (a :class:`LabelSeries`)."""
    series = path if isinstance(path, LabelSeries) else None
    path = series.path if series else Path(path)
    name = str(series) if series else str(path)
    try:
        with tifffile.TiffFile(path) as tif:
            data = tif.series[series.index if series else 0].asarray()
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except ImageError:
        raise
    except Exception as err:
        raise ImageError(f"{name}: cannot read labels ({type(err).__name__}: {err})") from err
    return check_labels(data, name, error=ImageError)


def write_image(path: str | os.PathLike, image: np.ndarray, channel_names: list[str] | None = None,
                axes: str = "CYX", pixel_size_um: float | None = None) -> None:
    """Write an intensity image as OME-TIFF with channel names, atomically."""
    metadata: dict = {"axes": axes}
    if channel_names:
        metadata["Channel"] = {"Name": list(channel_names)}
    if pixel_size_um:
        metadata.update(PhysicalSizeX=pixel_size_um, PhysicalSizeY=pixel_size_um)
    image = np.asarray(image)
    metadata["UUID"] = content_uuid(image, {k: repr(v) for k, v in metadata.items()})
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, image, ome=True, metadata=metadata, compression="zlib", photometric="minisblack")
