"""Label images (32-bit) and intensity images written as OME-TIFF, label images read back, and the one
check that label values are integers (:func:`check_labels`)."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import numpy as np
import tifffile

from .atomic import atomic_path
from .formats import ImageError


def content_uuid(data: np.ndarray, metadata: dict) -> str:
    """The OME ``UUID`` of an image written here: derived from its pixels and metadata, not drawn at random,
    so that writing the same result twice (a rerun, another machine) gives the same bytes."""
    digest = hashlib.sha256(repr((data.shape, data.dtype.str, sorted(metadata.items()))).encode())
    data = np.ascontiguousarray(data)
    digest.update(memoryview(data.reshape(-1)).cast("B"))
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


def write_labels(path: str | os.PathLike, labels: np.ndarray, pixel_size_um: float | None = None) -> None:
    """Write a 32-bit label image as OME-TIFF ((Y, X) or (T, Y, X)), atomically."""
    labels = np.asarray(labels)
    if labels.max(initial=0) > np.iinfo(np.uint32).max:
        raise ValueError(f"{path}: more labels than a 32-bit image holds")
    labels = labels.astype(np.uint32, copy=False)
    axes = "YX" if labels.ndim == 2 else "TYX"
    metadata = {"axes": axes}
    if pixel_size_um:
        metadata.update(PhysicalSizeX=pixel_size_um, PhysicalSizeY=pixel_size_um)
    metadata["UUID"] = content_uuid(labels, metadata)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, labels, ome=True, metadata=metadata, compression="zlib", photometric="minisblack")


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """Read a label image as written by :func:`write_labels` ((Y, X) or (T, Y, X))."""
    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            data = tif.series[0].asarray()
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except Exception as err:
        raise ImageError(f"{path}: cannot read labels ({type(err).__name__}: {err})") from err
    return check_labels(data, str(path), error=ImageError)


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
