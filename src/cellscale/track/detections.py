"""Per-frame object measurements from a (T, Y, X) label stack.

:func:`detections_from_labels` is the input of :func:`cellscale.track.link`:
one row per (frame, label) with the centroid, area, bounding box and,
optionally, the mean intensity. It is vectorised per frame (``np.unique`` +
``np.bincount`` + ``ufunc.reduceat``); no per-object Python loop.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from cellscale.io import check_labels

__all__ = ["DETECTION_COLUMNS", "as_label_stack", "detections_from_labels"]

DETECTION_COLUMNS = ["frame", "label", "y", "x", "area",
                     "min_row", "min_col", "max_row", "max_col"]


def as_label_stack(labels, name: str = "labels") -> np.ndarray:
    """Validate a label time-lapse and return it as one (T, Y, X) integer array.

    ``labels`` is a (T, Y, X) array or a sequence of 2-D frames. Raises
    ValueError when frames have different shapes (naming the first frame that
    differs), when a frame is not 2-D, when the values are not integers
    (float or bool dtype) or when labels are negative.
    """
    if isinstance(labels, np.ndarray):
        arr = labels
        if arr.ndim != 3:
            raise ValueError(f"{name} must be a (T, Y, X) array, got shape {arr.shape}")
    else:
        frames = [np.asarray(f) for f in labels]
        if not frames:
            raise ValueError(f"{name} is empty (no frames)")
        for t, f in enumerate(frames):
            if f.ndim != 2:
                raise ValueError(f"{name}: frame {t} is not 2-D (shape {f.shape})")
            if f.shape != frames[0].shape:
                raise ValueError(
                    f"{name}: frame {t} has shape {f.shape}, but frame 0 has "
                    f"{frames[0].shape}; all frames must have the same shape")
        for t, f in enumerate(frames):
            check_labels(f, f"{name} frame {t}")
        arr = np.stack(frames)
    check_labels(arr, name)
    if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
        t = int(np.nonzero((arr < 0).reshape(arr.shape[0], -1).any(axis=1))[0][0])
        raise ValueError(f"{name}: negative label in frame {t}; labels must be >= 0")
    return arr


def intensity_like(frame: np.ndarray) -> str | None:
    """Why a frame looks like an intensity image rather than labels (None when it looks like labels).

    In a label image each value is one object, one connected piece (a few where an object is cut). In a microscope
    frame each grey value is scattered in many pieces. So: the frame's connected pieces of equal value against its
    values, above 5 a value (and above 1,000 pieces); or more than 1,000 values of under 10 pixels each (noise)."""
    from skimage.measure import label

    frame = np.asarray(frame)
    values = len(np.unique(frame)) - int((frame == 0).any())
    if values > 1000 and frame.size / values < 10:   # thousands of values of a few pixels each: noise
        return f"frame 0 holds {values} values, {frame.size / values:.1f} pixels each"
    pieces = int(label(frame, background=0, connectivity=1).max()) if values else 0
    if pieces <= 1000 or pieces <= 5 * values:
        return None
    return f"frame 0: {values} values in {pieces} separate pieces, where a label image has one piece a value"


def _frame_table(frame: np.ndarray, t: int, image: np.ndarray | None) -> dict:
    flat = frame.ravel()
    idx = np.flatnonzero(flat)
    if idx.size == 0:
        return {}
    ncol = frame.shape[1]
    lab = flat[idx]
    uniq, inv = np.unique(lab, return_inverse=True)
    rows = idx // ncol
    cols = idx - rows * ncol
    n = uniq.size
    area = np.bincount(inv, minlength=n)
    out = {
        "frame": np.full(n, t, dtype=np.int64),
        "label": uniq.astype(np.int64),
        "y": np.bincount(inv, weights=rows, minlength=n) / area,
        "x": np.bincount(inv, weights=cols, minlength=n) / area,
        "area": area.astype(np.int64),
    }
    # bounding box: group pixels by label (stable, so rows stay ascending)
    order = np.argsort(inv, kind="stable")
    starts = np.concatenate(([0], np.cumsum(area)[:-1]))
    rows_s, cols_s = rows[order], cols[order]
    out["min_row"] = rows_s[starts].astype(np.int64)
    out["max_row"] = rows_s[starts + area - 1].astype(np.int64) + 1
    out["min_col"] = np.minimum.reduceat(cols_s, starts).astype(np.int64)
    out["max_col"] = np.maximum.reduceat(cols_s, starts).astype(np.int64) + 1
    if image is not None:
        vals = image.ravel()[idx].astype(np.float64)
        out["mean_intensity"] = np.bincount(inv, weights=vals, minlength=n) / area
    return out


def detections_from_labels(labels: np.ndarray | Sequence[np.ndarray],
                           image: np.ndarray | None = None) -> pd.DataFrame:
    """Measure every labelled object of every frame.

    Parameters
    ----------
    labels:
        (T, Y, X) integer label stack (or a sequence of 2-D frames of one
        shape); 0 is background. Empty frames are allowed (no rows).
    image:
        Optional (T, Y, X) intensity stack of the same shape; adds
        ``mean_intensity``.

    Returns
    -------
    DataFrame with columns frame, label, y, x (centroid, px), area (px),
    min_row, min_col, max_row, max_col (bounding box; max exclusive, as in
    scikit-image) and mean_intensity when ``image`` is given; sorted by
    frame then label. ``attrs`` holds ``n_frames`` and ``frame_shape``.
    """
    lab = as_label_stack(labels)
    img = None
    if image is not None:
        img = np.asarray(image)
        if img.shape != lab.shape:
            raise ValueError(f"image shape {img.shape} differs from labels shape {lab.shape}")
    cols = DETECTION_COLUMNS + (["mean_intensity"] if img is not None else [])
    parts = [_frame_table(lab[t], t, None if img is None else img[t])
             for t in range(lab.shape[0])]
    parts = [p for p in parts if p]
    if parts:
        data = {c: np.concatenate([p[c] for p in parts]) for c in cols}
    else:
        data = {c: np.zeros(0, dtype=np.float64 if c in ("y", "x", "mean_intensity")
                            else np.int64) for c in cols}
    df = pd.DataFrame(data, columns=cols)
    df.attrs["n_frames"] = int(lab.shape[0])
    df.attrs["frame_shape"] = tuple(int(s) for s in lab.shape[1:])
    return df
