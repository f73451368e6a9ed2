"""Object-level segmentation scores: matching at IoU thresholds, F1 and DSB mean AP."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

DSB_THRESHOLDS = np.arange(0.5, 1.0, 0.05)


def _dense_ids(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique labels, each pixel's index among them): ``np.unique(..., return_inverse=True)``, by a
    look-up table when the labels are non-negative integers not much larger than the pixel count (a sort
    otherwise)."""
    flat = labels.ravel()
    if flat.size and np.issubdtype(flat.dtype, np.integer) and flat.min() >= 0 \
            and flat.max() < max(1 << 20, 4 * flat.size):  # a table no larger than a few times the image
        present = np.bincount(flat) > 0
        ids = np.flatnonzero(present)
        lut = np.cumsum(present) - 1
        return ids.astype(labels.dtype), lut[flat]
    ids, inverse = np.unique(flat, return_inverse=True)
    return ids, inverse.ravel()


def _overlaps(truth: np.ndarray, pred: np.ndarray):
    """The overlapping (true, predicted) pairs: (true ids, predicted ids, rows, columns, intersections, true
    areas, predicted areas), rows and columns indexing the sorted unique labels (background included)."""
    t_ids, t_inv = _dense_ids(truth)
    p_ids, p_inv = _dense_ids(pred)
    nt, npr = len(t_ids), len(p_ids)
    key = t_inv.astype(np.int64) * npr + p_inv
    if nt * npr <= max(4 * key.size, 1 << 20):
        counts = np.bincount(key, minlength=nt * npr)
        key = np.flatnonzero(counts)
        inter = counts[key]
    else:
        key, inter = np.unique(key, return_counts=True)
    rows, cols = key // npr, key % npr
    t_area = np.bincount(rows, inter, nt)
    p_area = np.bincount(cols, inter, npr)
    return t_ids, p_ids, rows, cols, inter, t_area, p_area


def iou_matrix(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """IoU between every true (rows) and predicted (columns) object, background excluded.

    Labels are renumbered internally; rows/columns follow the sorted unique labels.
    """
    t_ids, p_ids, rows, cols, inter, t_area, p_area = _overlaps(truth, pred)
    iou = np.zeros((len(t_ids), len(p_ids)))
    iou[rows, cols] = inter / np.maximum(t_area[rows] + p_area[cols] - inter, 1)
    keep_t = t_ids != 0
    keep_p = p_ids != 0
    return iou[np.ix_(keep_t, keep_p)]


def object_ids(labels: np.ndarray) -> np.ndarray:
    """The object labels, sorted, background excluded: the order of :func:`iou_matrix`'s rows (truth) or
    columns (pred), even for a mask with no background."""
    return np.setdiff1d(np.unique(labels), [0])


def matched(iou: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of an :func:`iou_matrix` paired one to one, the most pairs at IoU >= ``threshold``
    with the largest total IoU among them (optimal assignment)."""
    if not iou.size:
        return np.zeros(0, int), np.zeros(0, int)
    score = np.where(iou >= threshold, iou, 0.0)
    rows, cols = linear_sum_assignment(-score)
    keep = score[rows, cols] >= threshold if threshold > 0 else np.ones(len(rows), bool)
    return rows[keep], cols[keep]


def match_counts(truth: np.ndarray, pred: np.ndarray, thresholds=(0.5,)) -> list[tuple[int, int, int]]:
    """(TP, FP, FN) per IoU threshold with optimal one-to-one matching (the counts of :func:`matched`).

    Works on the overlapping pairs only: at IoU >= 0.5 an object has at most one partner, but where halves tie
    at exactly 0.5 (or below 0.5) the optimal assignment runs on the objects that have a candidate."""
    t_ids, p_ids, rows, cols, inter, t_area, p_area = _overlaps(truth, pred)
    fg = (t_ids[rows] != 0) & (p_ids[cols] != 0)
    rows, cols, inter = rows[fg], cols[fg], inter[fg]
    iou = inter / np.maximum(t_area[rows] + p_area[cols] - inter, 1)
    n_true, n_pred = int(np.count_nonzero(t_ids)), int(np.count_nonzero(p_ids))
    out = []
    for thr in thresholds:
        tp = min(n_true, n_pred) if thr <= 0 else _matched_pairs(rows, cols, iou, thr)  # <= 0: every pair qualifies
        out.append((tp, n_pred - tp, n_true - tp))
    return out


def _matched_pairs(rows: np.ndarray, cols: np.ndarray, iou: np.ndarray, thr: float) -> int:
    """How many pairs :func:`matched` keeps at ``thr`` > 0, from the overlapping pairs' rows, columns and IoU."""
    sel = iou >= thr
    r, c = rows[sel], cols[sel]
    if np.unique(r).size == r.size and np.unique(c).size == c.size:
        return int(r.size)  # one partner each: the matching is these pairs
    ur, ri = np.unique(r, return_inverse=True)
    uc, ci = np.unique(c, return_inverse=True)
    sub = np.zeros((ur.size, uc.size))
    sub[ri, ci] = iou[sel]
    return len(matched(sub, thr)[0])


def f1_score(truth: np.ndarray, pred: np.ndarray, threshold: float = 0.5) -> float:
    """Object F1 at one IoU threshold (1.0 when both are empty)."""
    tp, fp, fn = match_counts(truth, pred, (threshold,))[0]
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def dsb_average_precision(truth: np.ndarray, pred: np.ndarray) -> float:
    """Data Science Bowl 2018 score: mean over IoU 0.5..0.95 of TP / (TP + FP + FN)."""
    return _mean_precision(match_counts(truth, pred, DSB_THRESHOLDS))


def _mean_precision(counts: list[tuple[int, int, int]]) -> float:
    """The mean of TP / (TP + FP + FN) over (TP, FP, FN) per threshold (1 where all three are 0)."""
    return float(np.mean([1.0 if tp + fp + fn == 0 else tp / (tp + fp + fn) for tp, fp, fn in counts]))


def summarize(pairs) -> dict:
    """Pooled F1 at IoU 0.5 and mean per-image AP over (truth, pred) pairs."""
    tp = fp = fn = 0
    aps = []
    for truth, pred in pairs:
        counts = match_counts(truth, pred, DSB_THRESHOLDS)  # the first threshold is 0.5
        t, f, n = counts[0]
        tp, fp, fn = tp + t, fp + f, fn + n
        aps.append(_mean_precision(counts))
    f1 = 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)
    return {"f1": f1, "ap": float(np.mean(aps)) if aps else float("nan"), "tp": tp, "fp": fp, "fn": fn,
            "images": len(aps)}
