"""Object-level segmentation scores: matching at IoU thresholds, F1 and DSB mean AP."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix

DSB_THRESHOLDS = np.arange(0.5, 1.0, 0.05)


def iou_matrix(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """IoU between every true (rows) and predicted (columns) object, background excluded.

    Labels are renumbered internally; rows/columns follow the sorted unique labels.
    """
    t_ids, t_inv = np.unique(truth, return_inverse=True)
    p_ids, p_inv = np.unique(pred, return_inverse=True)
    inter = coo_matrix((np.ones(t_inv.size, np.int64), (t_inv.ravel(), p_inv.ravel())),
                       shape=(len(t_ids), len(p_ids))).toarray()
    t_area = inter.sum(axis=1, keepdims=True)
    p_area = inter.sum(axis=0, keepdims=True)
    iou = inter / np.maximum(t_area + p_area - inter, 1)
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
    """(TP, FP, FN) per IoU threshold with optimal one-to-one matching."""
    iou = iou_matrix(truth, pred)
    n_true, n_pred = iou.shape
    out = []
    for thr in thresholds:
        tp = len(matched(iou, thr)[0])
        out.append((tp, n_pred - tp, n_true - tp))
    return out


def f1_score(truth: np.ndarray, pred: np.ndarray, threshold: float = 0.5) -> float:
    """Object F1 at one IoU threshold (1.0 when both are empty)."""
    tp, fp, fn = match_counts(truth, pred, (threshold,))[0]
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def dsb_average_precision(truth: np.ndarray, pred: np.ndarray) -> float:
    """Data Science Bowl 2018 score: mean over IoU 0.5..0.95 of TP / (TP + FP + FN)."""
    scores = [1.0 if tp + fp + fn == 0 else tp / (tp + fp + fn)
              for tp, fp, fn in match_counts(truth, pred, DSB_THRESHOLDS)]
    return float(np.mean(scores))


def summarize(pairs) -> dict:
    """Pooled F1 at IoU 0.5 and mean per-image AP over (truth, pred) pairs."""
    tp = fp = fn = 0
    aps = []
    for truth, pred in pairs:
        t, f, n = match_counts(truth, pred, (0.5,))[0]
        tp, fp, fn = tp + t, fp + f, fn + n
        aps.append(dsb_average_precision(truth, pred))
    f1 = 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)
    return {"f1": f1, "ap": float(np.mean(aps)) if aps else float("nan"), "tp": tp, "fp": fp, "fn": fn,
            "images": len(aps)}
