"""A sample as one OME-Zarr (NGFF) image: a pyramid of the image and, under ``labels/``, a pyramid of each
compartment's labels, with colours and properties (``label-value`` <-> the sample's table row) as the NGFF label
spec describes.

NGFF 0.5 on Zarr v3: the current spec, what ome-zarr-py >= 0.10 writes by default with zarr 3 and napari-ome-zarr
reads; the review bundles use it too (:mod:`cellscale.review.bundle`). 0.4 on Zarr v2 remains available
(``ngff="0.4"``) for viewers that do not read 0.5 yet.

The image is read chunk by chunk (:func:`cellscale.export.lazy_image`) and the pyramid is computed by dask
from chunks, so a slide of any size is written in bounded memory. Every resolution level is chunked
:data:`cellscale.export.lazy.CHUNK` pixels square.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger("cellscale")

NGFF_VERSION = "0.5"
NGFF_VERSIONS = ("0.5", "0.4")
MIN_LEVEL = 256  # the pyramid's smallest level is the last whose longer side is at least this
# an image whose longer side is at most this is one level: a viewer shows it whole, and each level costs files (an
# array's zarr.json and its chunks: a 1024^2 field with its labels was 15 files with three levels, 7 with one)
SINGLE_LEVEL_MAX = 1024
TRACKS = "tracks"  # a time-lapse's labels/ entry of track ids


def require(module: str, extra: str):
    """Import ``module``, or a RuntimeError naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise RuntimeError(f"writing this output needs the {module!r} library: pip install 'cellscale[{extra}]' "
                           f"(or remove the format from the config's output.formats)") from None


def scale_factors(height: int, width: int, min_level: int = MIN_LEVEL) -> list[int]:
    """Cumulative downsampling factors of the pyramid's lower levels: 2, 4, ... while the longer side stays at
    least ``min_level``; none for an image of at most :data:`SINGLE_LEVEL_MAX` px."""
    if max(height, width) <= SINGLE_LEVEL_MAX:
        return []
    factors, f = [], 2
    while max(height, width) // f >= min_level:
        factors.append(f)
        f *= 2
    return factors


def _color(value: int) -> list[int]:
    """A fixed, well-spread RGBA colour for a label value (golden-ratio hues)."""
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((value * 0.6180339887) % 1.0, 0.65, 1.0)
    return [int(255 * r), int(255 * g), int(255 * b), 255]


def label_metadata(table: pd.DataFrame | None, compartment: str, max_labels: int) -> dict:
    """The ``image-label`` metadata of one compartment: a colour and properties for each label of ``table`` (the
    sample's per-cell table: ``table-row`` is the row of the label's first cell in it, with its ``area``).

    Above ``max_labels`` labels only the source is recorded (JSON metadata of millions of labels slows every
    reader); the table links labels to cells there (``CellID``).
    """
    meta: dict = {"source": {"image": "../../"}}
    if table is None or not len(table):
        return meta
    rows = table.reset_index(drop=True)
    if "compartment" in rows.columns:
        rows = rows[rows["compartment"] == compartment]
    first = rows.drop_duplicates("CellID")
    if len(first) > max_labels:
        log.info(f"labels/{compartment}: {len(first)} labels, above output.label_metadata_max ({max_labels}); "
                 f"colours and properties not written")
        return meta
    ids = first["CellID"].to_numpy(dtype=np.int64)
    area = first["Area"].to_numpy() if "Area" in first.columns else None
    meta["colors"] = [{"label-value": int(v), "rgba": _color(int(v))} for v in ids]
    meta["properties"] = [{"label-value": int(v), "table-row": int(row),
                           **({"area": float(area[i])} if area is not None else {})}
                          for i, (v, row) in enumerate(zip(ids, first.index))]
    return meta


def track_metadata(tracks: pd.DataFrame, max_labels: int) -> dict:
    """The ``image-label`` metadata of a time-lapse's ``tracks`` labels: for each track id a colour and its
    ``first-frame``, ``last-frame`` and ``parent-track`` (0: none), from the tracks table (``frame``,
    ``track_id``, ``parent_track_id``); above ``max_labels`` tracks only the source (as :func:`label_metadata`)."""
    meta: dict = {"source": {"image": "../../"}}
    spans = tracks.groupby("track_id").agg(first=("frame", "min"), last=("frame", "max"),
                                           parent=("parent_track_id", "first"))
    if not len(spans) or len(spans) > max_labels:
        return meta
    meta["colors"] = [{"label-value": int(v), "rgba": _color(int(v))} for v in spans.index]
    meta["properties"] = [{"label-value": int(v), "first-frame": int(r.first), "last-frame": int(r.last),
                           "parent-track": int(r.parent)} for v, r in zip(spans.index, spans.itertuples())]
    return meta


def ngff_format(ngff: str):
    """The ome-zarr writer's format of an NGFF version (``0.5``: Zarr v3, ``0.4``: Zarr v2)."""
    from ome_zarr.format import FormatV04, FormatV05

    if ngff not in NGFF_VERSIONS:
        raise ValueError(f"NGFF version must be one of {', '.join(NGFF_VERSIONS)}, got {ngff!r}")
    return FormatV05() if ngff == "0.5" else FormatV04()


def _omero(channel_names: list[str], windows: list[tuple[float, float]], dtype) -> dict:
    """``omero`` channel metadata: ``start``/``end`` the display window, ``min``/``max`` the range a viewer's slider
    spans (an integer type's whole range; for floats the windows' own)."""
    dtype = np.dtype(dtype)
    low, high = (np.iinfo(dtype).min, np.iinfo(dtype).max) if dtype.kind in "iu" else \
        (min(lo for lo, _ in windows), max(hi for _, hi in windows))
    return {"channels": [{"label": name, "active": True, "color": "FFFFFF",
                          "window": {"start": lo, "end": hi, "min": float(low), "max": float(high)}}
                         for name, (lo, hi) in zip(channel_names, windows)]}


def write_ngff(path: str | os.PathLike, image, labels: dict, *, timelapse: bool = False,
               pixel_size_um: float | None = None, channel_names: list[str] | None = None,
               frame_interval_s: float | None = None, windows: list[tuple[float, float]] | None = None,
               table: pd.DataFrame | None = None,
               tracks: pd.DataFrame | None = None, ngff: str = NGFF_VERSION, max_label_metadata: int = 100_000,
               ) -> None:
    """Write an OME-Zarr image with its labels, as a new folder ``path`` (replaced whole: written beside it first).

    Parameters
    ----------
    image : (C, Y, X), or (T, C, Y, X) when ``timelapse``: a dask or NumPy array.
    labels : compartment -> (Y, X) or (T, Y, X) uint32 labels (dask or NumPy); a time-lapse's ``tracks`` entry
        holds track ids (the same cell has the same value in every frame).
    windows : per channel (low, high) display range (the ``omero`` metadata); default: the dtype's range.
    frame_interval_s : a time-lapse's seconds between frames: the ``t`` axis's scale, in unit ``second`` (unknown:
        a scale of 1 without a unit, as for the pixel size).
    table : the sample's per-cell table (``CellID``, ``compartment``, ``Area``), for the labels' properties. A
        time-lapse's per-frame labels get none: a value is a different cell in each frame (the table links them by
        ``frame`` and ``CellID``).
    tracks : a time-lapse's tracks table (``frame``, ``track_id``, ``parent_track_id``), for the properties of
        ``labels["tracks"]`` (:func:`track_metadata`).
    """
    require("ome_zarr", "review")
    import dask.array as da
    import zarr
    from ome_zarr.writer import write_image

    from cellscale.io import atomic_dir

    fmt = ngff_format(ngff)
    image = da.asarray(image)
    axes = "tcyx" if timelapse else "cyx"
    if image.ndim != len(axes):
        raise ValueError(f"{path}: expected a {axes.upper()} image, got shape {image.shape}")
    height, width = image.shape[-2:]
    for name, lab in labels.items():
        if tuple(lab.shape) != tuple(image.shape[:-3]) + (height, width):
            raise ValueError(f"{path}: labels {name!r} of shape {lab.shape} do not match the image {image.shape}")
    factors = scale_factors(height, width)
    size = pixel_size_um or 1.0
    scale = {"t": frame_interval_s or 1.0, "c": 1.0, "y": size, "x": size} if timelapse else \
        {"c": 1.0, "y": size, "x": size}
    units = {"y": "micrometer", "x": "micrometer"} if pixel_size_um else {}
    if timelapse and frame_interval_s:
        units["t"] = "second"
    units = units or None
    n_channels = image.shape[-3]
    names = channel_names if channel_names and len(channel_names) == n_channels else \
        [f"ch{i}" for i in range(n_channels)]
    if windows is None:
        info = np.iinfo(image.dtype) if image.dtype.kind in "iu" else None
        windows = [(float(info.min), float(info.max)) if info else (0.0, 1.0)] * n_channels
    chunks = (1, 1, *image.chunksize[-2:]) if timelapse else (1, *image.chunksize[-2:])
    with atomic_dir(path) as tmp:
        root = zarr.open_group(str(tmp), mode="w", zarr_format=fmt.zarr_format)
        write_image(image, root, scale_factors=factors, axes=axes, fmt=fmt, scale=scale, axes_units=units,
                    storage_options={"chunks": chunks}, name=_image_name(path),
                    omero=_omero(names, windows, image.dtype))
        label_scale = {k: v for k, v in scale.items() if k != "c"}
        for name, lab in labels.items():
            _write_labels(da.asarray(lab).astype(np.uint32), root, name, factors=factors,
                          axes=axes.replace("c", ""), fmt=fmt, scale=label_scale, axes_units=units,
                          chunks=tuple(c for i, c in enumerate(chunks) if axes[i] != "c"),
                          metadata=_metadata(name, timelapse, table, tracks, max_label_metadata))


def _image_name(path) -> str:
    """The multiscale's name: the store's, without ``.ome.zarr`` or ``.zarr`` (the sample's name)."""
    name = Path(path).name
    for suffix in (".ome.zarr", ".zarr"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _metadata(name: str, timelapse: bool, table, tracks, max_labels: int) -> dict:
    if name == TRACKS and tracks is not None:
        return track_metadata(tracks, max_labels)
    return {"source": {"image": "../../"}} if timelapse else label_metadata(table, name, max_labels)


def _write_labels(lab, root, name: str, *, factors: list[int], axes: str, fmt, scale: dict, axes_units, chunks,
                  metadata: dict) -> None:
    """``labels/<name>``: what ``ome_zarr.writer.write_labels`` writes (the same pyramid, ``multiscales`` and
    ``image-label`` metadata), without its label scan: ome-zarr 0.18's ``OMEZarrLabels`` reads every pixel of the
    labels for their values (``da.unique``) and builds a random colour and a property for each as pydantic objects,
    which ``write_labels`` then discards for the ``image-label`` metadata given (a 1 Gpx slide's 1.45 million
    labels: the step peaked at 1.8 GB with the scan, without reading a table; 0.65 GB without it, with the table)."""
    from ome_zarr import OMEZarrImage, OMEZarrLabels
    from ome_zarr.scale import Methods
    from ome_zarr.writer import write_label_metadata

    group = root.require_group(f"labels/{name}")
    image = OMEZarrImage(data=lab, axes=tuple(axes), name=name, scale=scale, axes_units=axes_units)
    pyramid = OMEZarrLabels(image=image, scale_factors=factors, method=Methods.NEAREST, auto_parse_labels=False)
    pyramid.image_label = None  # the metadata is written below, as write_labels does
    pyramid.to_ome_zarr(group=group, storage_options={"chunks": chunks}, version=fmt.version, compute=True,
                        overwrite=True)
    write_label_metadata(root["labels"], name, fmt=fmt, **metadata)
