"""Per-cell measurements compatible with MCMICRO / MCQuant feature tables.

:func:`measure_cells` gives the MCQuant columns with the values of
:func:`skimage.measure.regionprops`, without a Python loop over cells: the
label image is reduced to horizontal runs; area, centroid and exact integer
second moments come from closed forms over the runs; the convex hull of
``skimage.morphology.convex_hull_image`` (pixel diamonds, boundary points
inside) is built in doubled integer coordinates as the concave majorant of
the left- and right-most diamond corners of each row (all cells at once) and
its pixels are counted row by row with exact integer floors; channel sums use
``np.bincount`` in float64. :func:`measure_compartments` adds nuclear /
whole-cell / cytoplasm compartments, frames and nucleus <-> cell links;
:func:`write_table` writes CSV and Parquet atomically.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["SHAPE_COLUMNS", "EXTRA_STATS", "measure_cells", "measure_compartments",
           "write_table"]

SHAPE_COLUMNS = ["X_centroid", "Y_centroid", "Area", "MajorAxisLength", "MinorAxisLength",
                 "Eccentricity", "Solidity", "Extent", "Orientation"]
EXTRA_STATS = ["sum", "median", "std", "p25", "p75"]
COMPARTMENTS = ("nuclear", "whole_cell", "cytoplasm")


def _check_labels(labels, name: str = "labels") -> np.ndarray:
    lab = np.asarray(labels)
    if lab.dtype == bool or lab.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer labels, got dtype {lab.dtype}")
    if lab.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (Y, X) array, got shape {lab.shape}")
    if lab.dtype.kind == "i" and lab.size and lab.min() < 0:
        raise ValueError(f"{name} contains negative labels; labels must be >= 0")
    if lab.dtype == np.uint64 and lab.size and lab.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name} has labels above 2**63 - 1 (CellID is int64)")
    return lab


def _check_image(image, shape, channel_names):
    if image is None:
        img = np.zeros((0,) + tuple(shape))
    else:
        img = np.asarray(image)
        if img.ndim == 2:
            img = img[None]
        if img.ndim != 3:
            raise ValueError(f"image must be (C, Y, X), got shape {img.shape}")
        if img.shape[1:] != tuple(shape):
            raise ValueError(f"image spatial shape {img.shape[1:]} differs from "
                             f"labels shape {tuple(shape)}")
        if img.dtype == bool or img.dtype.kind not in "iuf":
            raise ValueError(f"image must be numeric, got dtype {img.dtype}")
    c = img.shape[0]
    names = [f"ch{i}" for i in range(c)] if channel_names is None else list(channel_names)
    if len(names) != c:
        raise ValueError(f"got {len(names)} channel_names for an image with {c} channels")
    names = [str(n) for n in names]
    if len(set(names)) != len(names):
        raise ValueError(f"channel_names must be unique, got {names}")
    clash = set(names) & set(["CellID"] + SHAPE_COLUMNS)
    if clash:
        raise ValueError(f"channel names {sorted(clash)} clash with measurement columns")
    return img, names


def _runs(lab):
    """Horizontal runs of equal non-zero label: row, first and last column, label."""
    nz = lab != 0
    diff = lab[:, 1:] != lab[:, :-1]
    start = nz.copy()
    start[:, 1:] &= diff
    end = nz.copy()
    end[:, :-1] &= diff
    r, c0 = np.nonzero(start)
    _, c1 = np.nonzero(end)  # same raster order, so runs pair up one to one
    return r.astype(np.int64), c0.astype(np.int64), c1.astype(np.int64), lab[r, c0]


def _upper_chain(grp, y, v):
    """Reduce sorted (grp, y) point sequences to their concave majorant in v.

    Points are removed in parallel passes: a point on or below the chord of
    its two neighbours is never a hull vertex, and removing all such points at
    once leaves the majorant unchanged. First and last point of a group stay.
    """
    while len(grp) > 2:
        gp, gi, gn = grp[:-2], grp[1:-1], grp[2:]
        yp, yi, yn = y[:-2], y[1:-1], y[2:]
        vp, vi, vn = v[:-2], v[1:-1], v[2:]
        drop = (gp == gi) & (gn == gi) & ((vi - vp) * (yn - yp) <= (vn - vp) * (yi - yp))
        if not drop.any():
            break
        keep = np.r_[True, ~drop, True]
        grp, y, v = grp[keep], y[keep], v[keep]
    return grp, y, v


def _floor_half_at(key, y, v, qkey, qy):
    """floor(f(qy) / 2), f the piecewise-linear chain through (y, v) of a group.

    Queries lie strictly inside their group's y range, so the segment
    [i0, i0 + 1] containing qy always belongs to the same group.
    """
    i0 = np.searchsorted(key, qkey, side="right") - 1
    y0, v0, dy = y[i0], v[i0], y[i0 + 1] - y[i0]
    return (v0 * dy + (qy - y0) * (v[i0 + 1] - v0)) // (2 * dy)


def _hull_areas(n, g, r, c0, c1, rmin, rmax, height):
    """Pixel count of skimage's ``convex_hull_image`` for each of ``n`` cells.

    Runs must be sorted by cell ``g`` and raster order. Coordinates are doubled
    so that pixel-diamond corners (r +- 1/2, c +- 1/2) are integers.
    """
    # one (cell, row) entry with the left-most start and right-most end
    first = np.flatnonzero(np.r_[True, (g[1:] != g[:-1]) | (r[1:] != r[:-1])])
    gg, rr = g[first], r[first]
    cl, cr = np.minimum.reduceat(c0, first), np.maximum.reduceat(c1, first)
    # right chain (v = X) and left chain (v = -X, so both are upper chains)
    ys = np.stack([2 * rr - 1, 2 * rr, 2 * rr + 1], axis=1).ravel()
    vr = np.stack([2 * cr, 2 * cr + 1, 2 * cr], axis=1).ravel()
    vl = np.stack([-2 * cl, 1 - 2 * cl, -2 * cl], axis=1).ravel()
    grp = np.concatenate([np.repeat(gg, 3), np.repeat(gg + n, 3)])
    y = np.concatenate([ys, ys])
    v = np.concatenate([vr, vl])
    # rows r and r + 1 both give a point at y = 2r + 1: keep the larger v
    dup = np.flatnonzero((grp[1:] == grp[:-1]) & (y[1:] == y[:-1]))
    v[dup] = np.maximum(v[dup], v[dup + 1])
    keep = np.delete(np.arange(len(y)), dup + 1)
    grp, y, v = _upper_chain(grp[keep], y[keep], v[keep])
    # query every row of every bounding box at y = 2r
    heights = rmax - rmin + 1
    qg = np.repeat(np.arange(n, dtype=np.int64), heights)
    qr = np.arange(heights.sum(), dtype=np.int64) - np.repeat(np.cumsum(heights) - heights,
                                                              heights) + rmin[qg]
    span = 2 * height + 4  # y + 1 lies in [0, 2 * height + 2]
    key = grp * span + y + 1
    qy = 2 * qr
    cmax = _floor_half_at(key, y, v, qg * span + qy + 1, qy)
    cmin = -_floor_half_at(key, y, v, (qg + n) * span + qy + 1, qy)
    return np.bincount(qg, weights=np.maximum(cmax - cmin + 1, 0), minlength=n)


def _pixel_index(lab, present):
    """Flat index of each pixel's cell in ``present``; background -> len(present)."""
    n = len(present)
    flat = lab.ravel()
    if int(present[-1]) <= 4 * flat.size + 65536:
        lut = np.full(int(present[-1]) + 1, n, dtype=np.intp)
        lut[present] = np.arange(n)
        return lut[flat]
    idx = np.searchsorted(present, flat)
    idx[flat == 0] = n
    return idx


def _extra_stats(values, idx, starts, counts, n):
    """sum, median, std, p25, p75 of one channel per cell, like numpy."""
    fg = idx < n
    vals, ids = values[fg], idx[fg]
    s = np.bincount(ids, weights=vals, minlength=n)
    mean = s / counts
    std = np.sqrt(np.bincount(ids, weights=(vals - mean[ids]) ** 2, minlength=n) / counts)
    v = vals[np.lexsort((vals, ids))]

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
    lab = _check_labels(labels)
    img, names = _check_image(image, lab.shape, channel_names)
    cols = ["CellID"] + names + SHAPE_COLUMNS
    cols += [f"{c}_{s}" for c in names for s in EXTRA_STATS] if extra_stats else []
    r, c0, c1, run_lab = _runs(lab)
    if len(r) == 0:
        out = pd.DataFrame({c: pd.Series(dtype="float64") for c in cols})
        return out.astype({"CellID": "int64", "Area": "int64"})
    present, g = np.unique(run_lab, return_inverse=True)
    order = np.argsort(g, kind="stable")
    g, r, c0, c1 = g[order].astype(np.int64), r[order], c0[order], c1[order]
    n = len(present)
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])

    # exact integer moments from closed forms over each run
    ln = c1 - c0 + 1
    sc = (c0 + c1) * ln // 2
    def tri(m):  # sum_{k=0..m} k^2
        return m * (m + 1) * (2 * m + 1) // 6
    scc = tri(c1) - tri(c0 - 1)
    sums = [np.add.reduceat(x, starts) for x in (ln, r * ln, sc, r * r * ln, scc, r * sc)]
    area, s_r, s_c, s_rr, s_cc, s_rc = sums
    rmin, rmax = r[starts], r[np.r_[starts[1:] - 1, len(r) - 1]]
    cmin, cmax = np.minimum.reduceat(c0, starts), np.maximum.reduceat(c1, starts)

    # central moments times area^2, as exact Python ints (object arrays)
    m = area.astype(object)
    drr = m * s_rr.astype(object) - s_r.astype(object) ** 2
    dcc = m * s_cc.astype(object) - s_c.astype(object) ** 2
    drc = m * s_rc.astype(object) - s_r.astype(object) * s_c.astype(object)
    m2 = m * m
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

    hull = _hull_areas(n, g, r, c0, c1, rmin, rmax, lab.shape[0])
    data = {"CellID": present.astype(np.int64)}
    idx = _pixel_index(lab, present) if img.shape[0] else None
    for k, name in enumerate(names):
        ch = img[k].ravel().astype(np.float64, copy=False)
        data[name] = np.bincount(idx, weights=ch, minlength=n + 1)[:n] / area
    data.update({
        "X_centroid": s_c / area, "Y_centroid": s_r / area, "Area": area,
        "MajorAxisLength": 4 * np.sqrt(l1), "MinorAxisLength": 4 * np.sqrt(l2),
        "Eccentricity": ecc, "Solidity": area / hull,
        "Extent": area / ((rmax - rmin + 1) * (cmax - cmin + 1)),
        "Orientation": orient})
    if extra_stats and names:
        vstart = np.r_[0, np.cumsum(area)[:-1]]
        for k, name in enumerate(names):
            ch = img[k].ravel().astype(np.float64, copy=False)
            stats = _extra_stats(ch, idx, vstart, area, n)
            data.update({f"{name}_{s}": v for s, v in zip(EXTRA_STATS, stats)})
    return pd.DataFrame(data, columns=cols)


def _best_partner(a, b):
    """For each label of ``a``: the label of ``b`` sharing most pixels with it.

    ``a`` and ``b`` are flat label arrays restricted to pixels where both are
    non-zero. Ties go to the smaller ``b`` label. Returns (a_ids, b_ids).
    """
    if a.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.lexsort((b, a))
    a, b = a[order], b[order]
    first = np.flatnonzero(np.r_[True, (a[1:] != a[:-1]) | (b[1:] != b[:-1])])
    pa, pb = a[first], b[first]
    count = np.diff(np.r_[first, len(a)])
    best = np.lexsort((pb, -count, pa))  # by a, then most overlap, then smaller b
    pa, pb = pa[best], pb[best]
    top = np.r_[True, pa[1:] != pa[:-1]]
    return pa[top].astype(np.int64), pb[top].astype(np.int64)


def _lookup(cell_ids, keys, values):
    out = pd.Series(values, index=keys, dtype="Int64").reindex(cell_ids).fillna(0)
    return out.to_numpy(dtype=np.int64)


def measure_compartments(labels_by_compartment: Mapping[str, np.ndarray], image=None,
                         channel_names: Sequence[str] | None = None,
                         extra_stats: bool = False) -> pd.DataFrame:
    """Measure nuclear, whole-cell and cytoplasm compartments in one long table.

    Parameters
    ----------
    labels_by_compartment : dict
        ``"nuclear"`` and/or ``"whole_cell"`` -> integer label array, all of
        the same shape: (Y, X) for one image or (T, Y, X) for a time-lapse.
        With both, a ``"cytoplasm"`` compartment is added: the whole-cell
        labels with every nuclear pixel removed (label = whole-cell id; a cell
        entirely covered by nuclei has no cytoplasm row).
    image : ndarray, optional
        (C, Y, X) for (Y, X) labels, (T, C, Y, X) for (T, Y, X) labels.
    channel_names, extra_stats
        As in :func:`measure_cells`.

    Returns
    -------
    pandas.DataFrame
        The :func:`measure_cells` columns, then ``compartment`` (str),
        ``frame`` (int64, time-lapse input only), ``nucleus_id`` and
        ``cell_id`` (pandas nullable ``Int64``). Rows are ordered by frame,
        compartment (nuclear, whole_cell, cytoplasm), then CellID.
        ``nucleus_id`` is set on whole_cell and cytoplasm rows: the nuclear
        label overlapping most pixels of the cell (0 if none). ``cell_id`` is
        set on nuclear rows: the whole-cell label holding most of the nucleus
        (0 if none). Ties go to the smaller label. The column that does not
        apply to a row, and both columns when only one compartment is given,
        are ``<NA>``.
    """
    unknown = set(labels_by_compartment) - {"nuclear", "whole_cell"}
    if unknown:
        raise ValueError(f"unknown compartment(s) {sorted(unknown)}; "
                         f"use 'nuclear' and/or 'whole_cell'")
    labs = {k: np.asarray(v) for k, v in labels_by_compartment.items()}
    if not labs:
        raise ValueError("labels_by_compartment is empty")
    shapes = {k: v.shape for k, v in labs.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"compartment label arrays differ in shape: {shapes}")
    shape = next(iter(shapes.values()))
    if len(shape) not in (2, 3):
        raise ValueError(f"labels must be (Y, X) or (T, Y, X), got shape {shape}")
    timelapse = len(shape) == 3
    if not timelapse:
        labs = {k: v[None] for k, v in labs.items()}
    n_frames = next(iter(labs.values())).shape[0]
    if image is not None:
        image = np.asarray(image)
        want = 4 if timelapse else 3
        if image.ndim == want - 1:
            image = np.expand_dims(image, 1 if timelapse else 0)  # single channel
        if image.ndim != want:
            raise ValueError(f"image must be {'(T, C, Y, X)' if timelapse else '(C, Y, X)'} "
                             f"for labels of shape {shape}, got {image.shape}")
        if not timelapse:
            image = image[None]
        if image.shape[0] != n_frames:
            raise ValueError(f"image has {image.shape[0]} frames, labels have {n_frames}")
    if n_frames == 0:
        raise ValueError("labels have no frames")
    na = pd.array([pd.NA], dtype="Int64")
    tables = []
    for t in range(n_frames):
        img = None if image is None else image[t]
        frame = {k: _check_labels(v[t], f"{k} labels") for k, v in labs.items()}
        if len(frame) == 2:
            frame["cytoplasm"] = np.where(frame["nuclear"] > 0, 0, frame["whole_cell"])
        parts = {k: measure_cells(frame[k], img, channel_names, extra_stats)
                 for k in COMPARTMENTS if k in frame}
        for k, df in parts.items():
            df["compartment"] = k
            if timelapse:
                df["frame"] = np.full(len(df), t, dtype=np.int64)
            df["nucleus_id"] = na.repeat(len(df))
            df["cell_id"] = na.repeat(len(df))
        if len(parts) == 3:
            nuc, wc = frame["nuclear"], frame["whole_cell"]
            both = (nuc > 0) & (wc > 0)
            w_ids, w_nuc = _best_partner(wc[both], nuc[both])
            n_ids, n_cell = _best_partner(nuc[both], wc[both])
            for k in ("whole_cell", "cytoplasm"):
                ids = parts[k]["CellID"].to_numpy()
                parts[k]["nucleus_id"] = pd.array(_lookup(ids, w_ids, w_nuc), dtype="Int64")
            ids = parts["nuclear"]["CellID"].to_numpy()
            parts["nuclear"]["cell_id"] = pd.array(_lookup(ids, n_ids, n_cell), dtype="Int64")
        tables.extend(parts.values())
    out = pd.concat(tables, ignore_index=True)
    out["compartment"] = out["compartment"].astype(str)
    return out.astype({"nucleus_id": "Int64", "cell_id": "Int64"})


def write_table(df: pd.DataFrame, csv_path, parquet_path=None) -> None:
    """Write ``df`` to CSV (no index) and optionally Parquet, each atomically.

    Each file is first written to a temporary file in its destination folder
    and then moved into place with :func:`os.replace`, so readers never see a
    partial table. Parent folders are created.
    """
    jobs = [(csv_path, lambda p: df.to_csv(p, index=False))]
    if parquet_path is not None:
        jobs.append((parquet_path, lambda p: df.to_parquet(p, index=False)))
    for path, write in jobs:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
        try:
            write(tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
