"""Nuclear, whole-cell and cytoplasm tables of a sample, block by block.

Every block of every frame is reduced to per-cell partial sums (exact, so
blocks combine into the values of the whole image) and to the pixel counts of
overlapping (nucleus, cell) pairs, which give the nucleus <-> cell links.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from cellscale.io import check_labels
from cellscale.measure.blocks import block_grid, default_block_shape
from cellscale.measure.stats import EXTRA_STATS, extra_stats_table
from cellscale.measure.sums import block_sums, label_segments, merge_sums
from cellscale.measure.table import (
    check_channel_names,
    check_image_dtype,
    check_label_values,
    sums_table,
)

__all__ = ["COMPARTMENTS", "measure_compartments"]

COMPARTMENTS = ("nuclear", "whole_cell", "cytoplasm")


def _pair_counts(a: np.ndarray, b: np.ndarray):
    """(a label, b label, pixels) of every pair of non-zero labels overlapping in a block."""
    bounds = label_segments(a, b)
    starts = bounds[:-1]
    pa, pb = a.ravel()[starts], b.ravel()[starts]
    both = (pa != 0) & (pb != 0)
    return _sum_pairs(pa[both].astype(np.int64), pb[both].astype(np.int64), np.diff(bounds)[both])


def _sum_pairs(a, b, count):
    if len(a) == 0:
        return a, b, count
    order = np.lexsort((b, a))
    a, b, count = a[order], b[order], count[order]
    first = np.flatnonzero(np.r_[True, (a[1:] != a[:-1]) | (b[1:] != b[:-1])])
    return a[first], b[first], np.add.reduceat(count, first)


def _best_partner(a, b, count):
    """For each label of ``a``, the ``b`` label sharing most pixels (ties: the smaller)."""
    best = np.lexsort((b, -count, a))
    a, b = a[best], b[best]
    top = np.r_[True, a[1:] != a[:-1]] if len(a) else np.zeros(0, bool)
    return a[top], b[top]


def _lookup(cell_ids, keys, values):
    out = pd.Series(values, index=keys, dtype="Int64").reindex(cell_ids).fillna(0)
    return pd.array(out.to_numpy(dtype=np.int64), dtype="Int64")


class _Frames:
    """Block reads of the compartments' labels and the image, one frame at a time."""

    def __init__(self, labels: Mapping, image):
        unknown = set(labels) - {"nuclear", "whole_cell"}
        if unknown:
            raise ValueError(f"unknown compartment(s) {sorted(unknown)}; use 'nuclear' and/or 'whole_cell'")
        if not labels:
            raise ValueError("labels_by_compartment is empty")
        labs = {k: v if hasattr(v, "__getitem__") and hasattr(v, "shape") else np.asarray(v)
                for k, v in labels.items()}
        shapes = {k: tuple(v.shape) for k, v in labs.items()}
        if len(set(shapes.values())) != 1:
            raise ValueError(f"compartment label arrays differ in shape: {shapes}")
        shape = next(iter(shapes.values()))
        if len(shape) not in (2, 3):
            raise ValueError(f"labels must be (Y, X) or (T, Y, X), got shape {shape}")
        for k, v in labs.items():
            check_labels(v, f"{k} labels")
        self.timelapse = len(shape) == 3
        self.n_frames = shape[0] if self.timelapse else 1
        if self.n_frames == 0:
            raise ValueError("labels have no frames")
        self.height, self.width = shape[-2:]
        self.labels = labs
        self.n_channels = 0
        self.image = None
        self._image_has_c = False
        if image is not None:
            img = image if hasattr(image, "__getitem__") and hasattr(image, "shape") else np.asarray(image)
            want = 4 if self.timelapse else 3
            if len(img.shape) not in (want - 1, want):
                raise ValueError(f"image must be {'(T, C, Y, X)' if self.timelapse else '(C, Y, X)'} "
                                 f"for labels of shape {shape}, got {tuple(img.shape)}")
            self._image_has_c = len(img.shape) == want
            if self.timelapse and img.shape[0] != self.n_frames:
                raise ValueError(f"image has {img.shape[0]} frames, labels have {self.n_frames}")
            if tuple(img.shape[-2:]) != (self.height, self.width):
                raise ValueError(f"image spatial shape {tuple(img.shape[-2:])} differs from labels shape "
                                 f"{(self.height, self.width)}")
            check_image_dtype(img.dtype)
            self.image = img
            self.n_channels = img.shape[-3] if self._image_has_c else 1

    def read_labels(self, name, t, y0, y1, x0, x1) -> np.ndarray:
        if name == "cytoplasm":
            nuc = self.read_labels("nuclear", t, y0, y1, x0, x1)
            return np.where(nuc > 0, 0, self.read_labels("whole_cell", t, y0, y1, x0, x1))
        arr = self.labels[name]
        lab = np.asarray(arr[t, y0:y1, x0:x1] if self.timelapse else arr[y0:y1, x0:x1])
        check_label_values(lab, f"{name} labels")
        return lab

    def read_image(self, t, y0, y1, x0, x1) -> np.ndarray | None:
        if self.image is None:
            return None
        index = ((t,) if self.timelapse else ()) + ((slice(None),) if self._image_has_c else ())
        data = np.asarray(self.image[index + (slice(y0, y1), slice(x0, x1))])
        return data if self._image_has_c else data[None]


def _extra_stats_bands(frames: _Frames, name, t, sums, names, band_rows):
    """Extra statistics read band by band; each band holds whole cells.

    Cells are taken in order of their first row; a band starts at the first
    row of the next cell and ends at the last row of the cells starting in its
    first ``band_rows`` rows, so every cell is complete in exactly one band.
    """
    rmin, rmax = sums.bbox[0], sums.bbox[2]
    order = np.argsort(rmin, kind="stable")
    parts, i = [], 0
    while i < len(order):
        y0 = int(rmin[order[i]])
        j = int(np.searchsorted(rmin[order], y0 + band_rows, side="left"))
        j = max(j, i + 1)
        y1 = int(rmax[order[i:j]].max()) + 1
        cells = np.sort(order[i:j])
        lab = frames.read_labels(name, t, y0, y1, 0, frames.width)
        img = frames.read_image(t, y0, y1, 0, frames.width)
        stats = extra_stats_table(lab, img, sums.labels[cells], sums.moments[0][cells], names)
        parts.append(stats.set_index(cells))
        i = j
    if not parts:
        return pd.DataFrame(columns=[f"{c}_{s}" for c in names for s in EXTRA_STATS], dtype=float)
    return pd.concat(parts).sort_index().reset_index(drop=True)


def measure_compartments(labels_by_compartment: Mapping[str, np.ndarray], image=None,
                         channel_names: Sequence[str] | None = None, extra_stats: bool = False,
                         block_shape: tuple[int, int] | None = None) -> pd.DataFrame:
    """Measure nuclear, whole-cell and cytoplasm compartments in one long table.

    Parameters
    ----------
    labels_by_compartment : dict
        ``"nuclear"`` and/or ``"whole_cell"`` -> integer labels, all of the
        same shape: (Y, X) for one image or (T, Y, X) for a time-lapse. NumPy
        arrays, or array-likes read block by block (zarr arrays,
        :class:`~cellscale.measure.RegionArray`). With both, a
        ``"cytoplasm"`` compartment is added: the whole-cell labels with every
        nuclear pixel removed (label = whole-cell id; a cell entirely covered
        by nuclei has no cytoplasm row).
    image : array-like, optional
        (C, Y, X) for (Y, X) labels, (T, C, Y, X) for (T, Y, X) labels; a
        missing C axis means one channel.
    channel_names, extra_stats
        As in :func:`measure_cells`.
    block_shape : (int, int), optional
        Rows and columns read at a time. Default: full-width bands of about
        4 Mpx. Results do not depend on it (integer columns exactly,
        intensities to float64 round-off; exactly for integer images).

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
    frames = _Frames(labels_by_compartment, image)
    names = check_channel_names(channel_names, frames.n_channels)
    if block_shape is None:
        block_shape = default_block_shape(frames.height, frames.width)
    grid = block_grid(frames.height, frames.width, block_shape)
    comps = [k for k in COMPARTMENTS if k in frames.labels]
    both = len(comps) == 2
    if both:
        comps.append("cytoplasm")
    na = pd.array([pd.NA], dtype="Int64")
    tables = []
    for t in range(frames.n_frames):
        parts = {k: [] for k in comps}
        pairs = []
        for y0, y1, x0, x1 in grid:
            labs = {k: frames.read_labels(k, t, y0, y1, x0, x1) for k in frames.labels}
            img = frames.read_image(t, y0, y1, x0, x1)
            if both:
                labs["cytoplasm"] = np.where(labs["nuclear"] > 0, 0, labs["whole_cell"])
                pairs.append(_pair_counts(labs["nuclear"], labs["whole_cell"]))
            for k in comps:
                parts[k].append(block_sums(labs[k], img, y0, x0))
            del labs, img
        out = {}
        for k in comps:
            sums = merge_sums(parts.pop(k), frames.n_channels)
            df = sums_table(sums, names)
            if extra_stats:
                stats = _extra_stats_bands(frames, k, t, sums, names, block_shape[0])
                df = pd.concat([df, stats], axis=1)
            df["compartment"] = k
            if frames.timelapse:
                df["frame"] = np.full(len(df), t, dtype=np.int64)
            df["nucleus_id"] = na.repeat(len(df))
            df["cell_id"] = na.repeat(len(df))
            out[k] = df
        if both:
            nuc, wc, count = _sum_pairs(*(np.concatenate(x) for x in zip(*pairs)))
            w_ids, w_nuc = _best_partner(wc, nuc, count)
            n_ids, n_cell = _best_partner(nuc, wc, count)
            for k in ("whole_cell", "cytoplasm"):
                out[k]["nucleus_id"] = _lookup(out[k]["CellID"].to_numpy(), w_ids, w_nuc)
            out["nuclear"]["cell_id"] = _lookup(out["nuclear"]["CellID"].to_numpy(), n_ids, n_cell)
        tables.extend(out.values())
    table = pd.concat(tables, ignore_index=True)
    table["compartment"] = table["compartment"].astype(str)
    for column in ("nucleus_id", "cell_id"):  # column by column: astype on the table copies every column
        table[column] = table[column].astype("Int64")
    return table
