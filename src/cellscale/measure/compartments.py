"""Nuclear, whole-cell and cytoplasm tables of a sample, block by block.

Every block of every frame is reduced to per-cell partial sums (exact, so
blocks combine into the values of the whole image) and to the pixel counts of
overlapping (nucleus, cell) pairs, which give the nucleus <-> cell links.
The convex hull's entries per (cell, row), the one part of the sums that grows
with the cells' size, are held only for the cells still open at the current
block row (:class:`_Cells`), so memory stays bounded at a fixed table size.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from cellscale.io import check_labels
from cellscale.measure.blocks import block_grid, default_block_shape
from cellscale.measure.stats import EXTRA_STATS, extra_stats_table
from cellscale.measure.hull import hull_pixel_counts
from cellscale.measure.sums import CellSums, block_sums, index_of, label_segments, merge_sums
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


class _Cells:
    """The per-cell sums of one compartment in one frame, gathered block row by block row in bounded memory.

    The sums are small per cell but the convex hull needs an entry per (cell, row): a cell no longer in the
    last row read is closed (:meth:`close`): its hull pixel count is computed and its row entries dropped, so
    those are held only for the cells open at the current row. A label seen again after it was closed (a cell
    in pieces more than a block row apart) is measured again at the end from the labels (:meth:`finish`), so
    the result is exact whatever the labels.
    """

    def __init__(self, n_channels: int):
        self.n_channels = n_channels
        self.open = CellSums.empty(n_channels)
        self.closed: list[tuple[CellSums, np.ndarray]] = []  # (sums without rows, hull pixel counts)
        self.closed_ids = np.zeros(0, np.int64)  # sorted
        self.reopened: list[np.ndarray] = []

    def add(self, part: CellSums) -> None:
        if not len(part):
            return
        if len(self.closed_ids):
            again = part.labels[np.isin(part.labels, self.closed_ids)]
            if len(again):
                self.reopened.append(again)
        self.open = merge_sums([self.open, part], self.n_channels)

    def close(self, last_row: int) -> None:
        """Close the open cells with no pixel in rows ``last_row`` and below."""
        done = self.open.bbox[2] < last_row
        if done.any():
            self.closed.append(_split(self.open, done))
            self.open = _split(self.open, ~done, with_rows=True)
            self.closed_ids = np.union1d(self.closed_ids, self.closed[-1][0].labels)

    def finish(self, measure_again) -> tuple[CellSums, np.ndarray]:
        """All cells' sums (no row entries) and hull pixel counts, sorted by label; ``measure_again(labels)``: the
        full sums of these labels, read again (for the labels seen after they were closed)."""
        if len(self.open):
            self.closed.append(_split(self.open, np.ones(len(self.open), bool)))
        self.open = CellSums.empty(self.n_channels)
        parts, hulls = [p for p, _ in self.closed], [h for _, h in self.closed]
        if self.reopened:  # measured in pieces: drop them and measure them whole
            again = np.unique(np.concatenate(self.reopened))
            keep = [~np.isin(p.labels, again) for p in parts]
            parts = [_take(p, k) for p, k in zip(parts, keep)]
            hulls = [h[k] for h, k in zip(hulls, keep)]
            whole, hull = _split(measure_again(again), None)
            parts.append(whole)
            hulls.append(hull)
        if not parts:
            return CellSums.empty(self.n_channels), np.zeros(0, np.int64)
        labels = np.concatenate([p.labels for p in parts])
        order = np.argsort(labels, kind="stable")
        sums = CellSums(labels[order], *(np.concatenate([getattr(p, f) for p in parts], axis=1)[:, order]
                                         for f in ("moments", "bbox", "intensity")),
                        np.zeros((4, 0), np.int64))
        return sums, np.concatenate(hulls)[order]


def _take(sums: CellSums, keep: np.ndarray) -> CellSums:
    """The cells ``keep`` (a mask) of sums that hold no row entries."""
    return CellSums(sums.labels[keep], sums.moments[:, keep], sums.bbox[:, keep], sums.intensity[:, keep],
                    sums.rows)


def _split(sums: CellSums, keep, with_rows: bool = False):
    """The cells ``keep`` (a mask; None: all) of ``sums``: with their row entries, or (without them, hull pixel
    counts)."""
    keep = np.ones(len(sums), bool) if keep is None else keep
    entry = keep[index_of(sums.labels, sums.rows[0])] if sums.rows.shape[1] else np.zeros(0, bool)
    rows = sums.rows[:, entry]
    part = CellSums(sums.labels[keep], sums.moments[:, keep], sums.bbox[:, keep], sums.intensity[:, keep], rows)
    if with_rows:
        return part
    hull = hull_pixel_counts(index_of(part.labels, rows[0]), rows[1], rows[2], rows[3], part.bbox)
    return CellSums(part.labels, part.moments, part.bbox, part.intensity, np.zeros((4, 0), np.int64)), hull


def _sums_of(frames: _Frames, name: str, t: int, grid, labels: np.ndarray) -> CellSums:
    """The full sums of the cells ``labels`` of one compartment in frame ``t``, read block by block again."""
    parts = []
    for y0, y1, x0, x1 in grid:
        lab = frames.read_labels(name, t, y0, y1, x0, x1)
        lab = np.where(np.isin(lab, labels), lab, 0)
        if lab.any():
            parts.append(block_sums(lab, frames.read_image(t, y0, y1, x0, x1), y0, x0))
    return merge_sums(parts, frames.n_channels)


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
        cells = {k: _Cells(frames.n_channels) for k in comps}
        pairs = []
        for i, (y0, y1, x0, x1) in enumerate(grid):
            labs = {k: frames.read_labels(k, t, y0, y1, x0, x1) for k in frames.labels}
            img = frames.read_image(t, y0, y1, x0, x1)
            if both:
                labs["cytoplasm"] = np.where(labs["nuclear"] > 0, 0, labs["whole_cell"])
                pairs.append(_pair_counts(labs["nuclear"], labs["whole_cell"]))
            for k in comps:
                cells[k].add(block_sums(labs[k], img, y0, x0))
            del labs, img
            if i + 1 == len(grid) or grid[i + 1][0] != y0:  # a row of blocks done: close the cells above its end
                for k in comps:
                    cells[k].close(y1 - 1)
        out = {}
        for k in comps:
            sums, hull = cells.pop(k).finish(lambda labels: _sums_of(frames, k, t, grid, labels))
            df = sums_table(sums, names, hull)
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
