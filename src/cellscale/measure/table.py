"""The MCMICRO / MCQuant per-cell table of one label image.

:func:`measure_cells` gives the MCQuant columns with the values of
:func:`skimage.measure.regionprops`, without a Python loop over cells: the
label image is reduced to per-cell sums (:mod:`.sums`), the ellipse columns
come from exact integer second moments, Solidity from the exact pixel count of
skimage's convex hull (:mod:`.hull`) and the intensity means from run sums.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from cellscale.io import check_labels
from cellscale.measure.blocks import block_grid, default_block_shape
from cellscale.measure.hull import hull_pixel_counts
from cellscale.measure.stats import EXTRA_STATS, extra_stats_table
from cellscale.measure.sums import CellSums, block_sums, index_of, merge_sums

__all__ = ["SHAPE_COLUMNS", "EXTRA_STATS", "measure_cells", "sums_table", "table_columns"]

SHAPE_COLUMNS = ["X_centroid", "Y_centroid", "Area", "MajorAxisLength", "MinorAxisLength",
                 "Eccentricity", "Solidity", "Extent", "Orientation"]
KEY_COLUMNS = ("sample", "compartment", "frame", "CellID")
INT_COLUMNS = ("nucleus_id", "cell_id", "track_id", "parent_track_id", "frame")  # nullable Int64 in run-level tables


def check_label_values(lab: np.ndarray, name: str = "labels") -> None:
    if lab.dtype.kind == "i" and lab.size and lab.min() < 0:
        raise ValueError(f"{name} contains negative labels; labels must be >= 0")
    if lab.dtype == np.uint64 and lab.size and lab.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name} has labels above 2**63 - 1 (CellID is int64)")


def check_label_image(labels, name: str = "labels") -> np.ndarray:
    """A 2-D (Y, X) array of integer labels >= 0 (:func:`cellscale.io.check_labels`, :func:`check_label_values`)."""
    lab = check_labels(np.asarray(labels), name)
    if lab.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (Y, X) array, got shape {lab.shape}")
    check_label_values(lab, name)
    return lab


def check_channel_names(channel_names, n_channels: int) -> list[str]:
    names = [f"ch{i}" for i in range(n_channels)] if channel_names is None else list(channel_names)
    if len(names) != n_channels:
        raise ValueError(f"got {len(names)} channel_names for an image with {n_channels} channels")
    names = [str(n) for n in names]
    if len(set(names)) != len(names):
        raise ValueError(f"channel_names must be unique, got {names}")
    clash = set(names) & {*SHAPE_COLUMNS, *KEY_COLUMNS, *INT_COLUMNS}
    if clash:
        raise ValueError(f"channel names {sorted(clash)} clash with measurement columns")
    stats = sorted(f"{a}_{s}" for a in names for s in EXTRA_STATS if f"{a}_{s}" in names)
    if stats:  # with measure.extra_stats, channel A's sum is the column A_sum
        raise ValueError(f"channel names {stats} clash with another channel's statistics columns")
    return names


def check_image_dtype(dtype, name: str = "image") -> None:
    """Refuse an image that is not numbers (bool, complex, text): ``name`` (the image's file) is in the message."""
    dtype = np.dtype(dtype)
    if dtype == bool or dtype.kind not in "iuf":
        raise ValueError(f"{name} must be numeric (intensities), got dtype {dtype}")


def _check_image(image, shape):
    if image is None:
        return None
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[None]
    if img.ndim != 3:
        raise ValueError(f"image must be (C, Y, X), got shape {img.shape}")
    if img.shape[1:] != tuple(shape):
        raise ValueError(f"image spatial shape {img.shape[1:]} differs from labels shape {tuple(shape)}")
    check_image_dtype(img.dtype)
    return img


def table_columns(names: Sequence[str], extra_stats: bool) -> list[str]:
    cols = ["CellID", *names, *SHAPE_COLUMNS]
    return cols + ([f"{c}_{s}" for c in names for s in EXTRA_STATS] if extra_stats else [])


def _ellipse(moments):
    """Axis lengths, eccentricity and orientation as skimage computes them.

    Central moments are formed as exact integers (area**2 times their value),
    so thin and isotropic cells have no cancellation error.
    """
    area, s_r, s_c, s_rr, s_cc, s_rc = (x.astype(object) for x in moments)
    drr = area * s_rr - s_r * s_r
    dcc = area * s_cc - s_c * s_c
    drc = area * s_rc - s_r * s_c
    m2 = area * area
    # skimage's inertia tensor is [[a, b], [b, c]]
    a, c, b = ((x / m2).astype(np.float64) for x in (dcc, drr, -drc))
    amc = ((dcc - drr) / m2).astype(np.float64)  # a - c without cancellation
    det = ((dcc * drr - drc * drc) / (m2 * m2)).astype(np.float64)
    gap = np.hypot(amc, 2 * b)  # l1 - l2, exactly 0 for isotropic cells
    l1 = np.maximum((a + c + gap) / 2, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        l2 = np.where(l1 > 0, np.maximum(det / l1, 0.0), 0.0)  # no cancellation
        ecc = np.where(l1 > 0, np.sqrt(np.minimum(gap / l1, 1.0)), 0.0)
    orient = np.where((dcc == drr).astype(bool), np.where(b < 0, np.pi / 4, -np.pi / 4),
                      0.5 * np.arctan2(-2 * b, -amc))
    return 4 * np.sqrt(l1), 4 * np.sqrt(l2), ecc, orient


def sums_table(sums: CellSums, names: Sequence[str], hull: np.ndarray | None = None) -> pd.DataFrame:
    """Finish per-cell sums into the MCMICRO columns (no extra statistics); ``hull``: the cells' convex hull
    pixel counts when already known (then ``sums`` needs no row entries)."""
    cols = table_columns(names, False)
    if len(sums) == 0:
        out = pd.DataFrame({c: pd.Series(dtype="float64") for c in cols})
        return out.astype({"CellID": "int64", "Area": "int64"})
    area, s_r, s_c = sums.moments[:3]
    rmin, cmin, rmax, cmax = sums.bbox
    major, minor, ecc, orient = _ellipse(sums.moments)
    if hull is None:
        cell = index_of(sums.labels, sums.rows[0])
        hull = hull_pixel_counts(cell, sums.rows[1], sums.rows[2], sums.rows[3], sums.bbox)
    data = {"CellID": sums.labels}
    data.update({name: sums.intensity[k] / area for k, name in enumerate(names)})
    data.update({
        "X_centroid": s_c / area, "Y_centroid": s_r / area, "Area": area,
        "MajorAxisLength": major, "MinorAxisLength": minor, "Eccentricity": ecc,
        "Solidity": area / hull, "Extent": area / ((rmax - rmin + 1) * (cmax - cmin + 1)),
        "Orientation": orient})
    return pd.DataFrame(data, columns=cols)


def measure_cells(labels, image=None, channel_names: Sequence[str] | None = None,
                  extra_stats: bool = False) -> pd.DataFrame:
    """Measure every labelled cell like MCQuant / ``skimage.measure.regionprops``.

    Parameters
    ----------
    labels : (Y, X) ndarray of int
        Any integer dtype; 0 is background, labels need not be consecutive.
        A label may be split into several pieces (measured as one object).
    image : (C, Y, X) ndarray of numbers, optional
        Intensity channels (a (Y, X) array counts as one channel). Means are
        computed in float64 (skimage keeps float32 for float32 images, so
        those differ from it by float32 round-off only).
    channel_names : sequence of str, optional
        C unique names used as column names; default ``ch0``, ``ch1``, ...
    extra_stats : bool
        Also add ``<name>_sum``, ``_median``, ``_std`` (ddof=0), ``_p25`` and
        ``_p75`` for every channel (numpy's default definitions).

    Returns
    -------
    pandas.DataFrame
        One row per label, sorted by label. Columns: ``CellID`` (int64, the
        label), one float64 mean column per channel, ``X_centroid``,
        ``Y_centroid`` (column / row centroid in pixels), ``Area`` (int64
        pixel count), ``MajorAxisLength``, ``MinorAxisLength``,
        ``Eccentricity``, ``Solidity`` (Area / skimage ``area_convex``),
        ``Extent`` (Area / bounding-box area), ``Orientation`` (radians,
        skimage convention, in [-pi/2, pi/2]); then the extra columns. An
        image with no labels gives an empty table with these columns.

    Raises
    ------
    ValueError
        Non-integer or negative labels, labels not 2-D, image shape not
        matching, or ``channel_names`` not matching the channel count.
    """
    lab = check_label_image(labels)
    img = _check_image(image, lab.shape)
    names = check_channel_names(channel_names, 0 if img is None else img.shape[0])
    # bands of a few Mpx: faster than one block (arrays stay in cache), same sums
    bands = block_grid(*lab.shape, default_block_shape(*lab.shape))
    sums = merge_sums([block_sums(lab[y0:y1], None if img is None else img[:, y0:y1], y0)
                       for y0, y1, _, _ in bands], len(names))
    table = sums_table(sums, names)
    if extra_stats:
        stats = extra_stats_table(lab, img, sums.labels, sums.moments[0], names)
        table = pd.concat([table, stats], axis=1)
    return table
