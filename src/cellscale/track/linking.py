"""Link per-frame detections into tracks with a lineage (LAP tracker).

The tracker follows Jaqaman et al. (Nat. Methods 2008) in three steps:

1. **Frame-to-frame linking.** For every pair of consecutive frames a linear
   assignment problem (``scipy.optimize.linear_sum_assignment``) is solved on
   the augmented cost matrix ``[[link, disappear], [appear, aux]]``: a
   detection either links to one detection of the next frame, or its track
   ends (cost ``birth_cost``); a detection of the next frame is either linked
   or starts a track (cost ``birth_cost``). The link cost is::

       (d / max_distance)**2 + iou_weight * (1 - IoU) + size_weight * |a1 - a2| / max(a1, a2)

   with ``d`` the centroid distance; the IoU term is used only when ``labels``
   are given. Candidate links are pairs closer than ``max_distance`` (or whose
   masks overlap, when ``labels`` are given). A link is therefore taken only
   when it is cheaper than ending one track and starting another
   (``2 * birth_cost``). The problem is split into connected components of
   the candidate graph, so each dense LAP stays small.

2. **Divisions** (``divisions=True``). A track *start* at ``t + 1`` becomes a
   daughter of a detection ``m`` at ``t`` (the mother) when it lies within
   ``division_distance`` of ``m`` (default ``max_distance + 2 * r_m``, where
   ``r_m = sqrt(area_m / pi)``) and its area is ``division_area_ratio``
   (default 0.2-0.9) times the mother's. The second daughter is either the
   detection that step 1 linked ``m`` to (when its area ratio is also in
   range) or a second track start near ``m``. Candidate divisions are ranked
   by ``|midpoint(daughters) - mother| / (max_distance + r_m)`` plus the
   deviation of both area ratios from 0.5, and accepted greedily, each
   detection used once. Following the CTC rule, the mother's track ends at
   ``t`` and both daughters start new tracks at ``t + 1`` whose parent is the
   mother's track (a mother that step 1 linked to one daughter is split).

3. **Gap closing** (``max_gap > 0``). Remaining track ends at ``t`` and track
   starts at ``t + dt`` (``2 <= dt <= max_gap + 1``, i.e. up to ``max_gap``
   missing frames) closer than ``max_distance * sqrt(dt)`` are joined by a
   second LAP (cost ``(d / (max_distance*sqrt(dt)))**2 + size term +
   0.1 * (dt - 1)``). As in CTC ground truth, a track cannot have holes: the
   part after the gap gets a new track id whose parent is the track before
   the gap (a parent with a single child means "same cell, after a gap";
   a parent with two children is a division).

``max_distance=None`` estimates it from the data: for every detection of
frame ``t + 1`` the distance to the nearest detection of frame ``t`` is taken
(it is at most the true displacement of that cell), and::

    max_distance = max(2 * quantile_0.9(nearest distances), median(sqrt(area / pi)), 1)

i.e. twice a robust high displacement, but never less than a typical cell
radius (a cell that still overlaps its previous position is always
reachable). All chosen parameters and counts are returned in
``tracks.attrs`` and logged at INFO level.
"""

from __future__ import annotations

import logging
import math
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from .detections import as_label_stack, detections_from_labels

__all__ = ["TRACK_COLUMNS", "link", "estimate_max_distance"]

logger = logging.getLogger(__name__)

TRACK_COLUMNS = ["frame", "label", "track_id", "parent_track_id", "y", "x", "area"]
_REQUIRED = ["frame", "label", "y", "x", "area"]
_BIG = 1e9


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def estimate_max_distance(detections: pd.DataFrame, quantile: float = 0.9,
                          factor: float = 2.0) -> float:
    """Data-driven search radius for frame-to-frame links (see module doc)."""
    frames = detections["frame"].to_numpy()
    pos = detections[["y", "x"]].to_numpy(dtype=float)
    area = detections["area"].to_numpy(dtype=float)
    nn: list[np.ndarray] = []
    uniq = np.unique(frames)
    by_frame = {int(f): pos[frames == f] for f in uniq}
    for f in uniq:
        f = int(f)
        if f + 1 in by_frame and len(by_frame[f]) and len(by_frame[f + 1]):
            d, _ = cKDTree(by_frame[f]).query(by_frame[f + 1], k=1)
            nn.append(np.asarray(d, dtype=float))
    radius = float(np.median(np.sqrt(area / np.pi))) if area.size else 1.0
    if nn:
        q = float(np.quantile(np.concatenate(nn), quantile))
    else:
        q = 0.0
    return max(factor * q, radius, 1.0)


def _solve_lap(n_rows: int, n_cols: int, ri: np.ndarray, ci: np.ndarray,
               cost: np.ndarray, row_cost: float, col_cost: float) -> list[tuple[int, int]]:
    """Minimum-cost partial assignment of rows to columns.

    Each row is either assigned to one candidate column (``cost``) or left
    alone (``row_cost``); each column likewise (``col_cost``). Solved per
    connected component of the candidate graph with the augmented matrix
    ``[[C, D], [B, 0]]`` (D, B diagonal with the no-link costs).
    Returns the chosen (row, col) pairs.
    """
    if n_rows == 0 or n_cols == 0 or ri.size == 0:
        return []
    graph = coo_matrix((np.ones(ri.size), (ri, n_rows + ci)),
                       shape=(n_rows + n_cols, n_rows + n_cols))
    _, comp = connected_components(graph, directed=False)
    comp_r, comp_c = comp[:n_rows], comp[n_rows:]
    pair_comp = comp_r[ri]
    order = np.argsort(pair_comp, kind="stable")
    ri, ci, cost, pair_comp = ri[order], ci[order], cost[order], pair_comp[order]
    bounds = np.flatnonzero(np.diff(pair_comp)) + 1
    # members of each component, rows and columns (sorted indices)
    r_order = np.argsort(comp_r, kind="stable")
    c_order = np.argsort(comp_c, kind="stable")
    r_sorted, c_sorted = comp_r[r_order], comp_c[c_order]
    chosen: list[tuple[int, int]] = []
    for sl in np.split(np.arange(ri.size), bounds):
        k = pair_comp[sl[0]]
        rows = r_order[np.searchsorted(r_sorted, k):np.searchsorted(r_sorted, k, side="right")]
        cols = c_order[np.searchsorted(c_sorted, k):np.searchsorted(c_sorted, k, side="right")]
        nr, nc = rows.size, cols.size
        rloc = np.searchsorted(rows, ri[sl])
        cloc = np.searchsorted(cols, ci[sl])
        m = np.full((nr + nc, nc + nr), _BIG)
        m[rloc, cloc] = cost[sl]
        m[np.arange(nr), nc + np.arange(nr)] = row_cost
        m[nr + np.arange(nc), np.arange(nc)] = col_cost
        m[nr:, nc:] = 0.0
        r_idx, c_idx = linear_sum_assignment(m)
        for r, c in zip(r_idx, c_idx):
            if r < nr and c < nc and m[r, c] < _BIG:
                chosen.append((int(rows[r]), int(cols[c])))
    return chosen


def _overlaps(lab_a: np.ndarray, lab_b: np.ndarray, labels_a: np.ndarray,
              labels_b: np.ndarray):
    """Pixel overlaps between the objects of two frames.

    ``labels_a``/``labels_b`` are the sorted label values of the detections
    of each frame. Returns (ia, ib, intersection, area_a, area_b) with ia/ib
    indices into labels_a/labels_b; pixels of labels without a detection are
    ignored.
    """
    def to_index(frame, keys):
        flat = frame.ravel()
        pos = np.searchsorted(keys, flat)
        pos = np.clip(pos, 0, max(keys.size - 1, 0))
        ok = (flat != 0) & (keys[pos] == flat) if keys.size else np.zeros(flat.shape, bool)
        return np.where(ok, pos, -1)

    ia_px = to_index(lab_a, labels_a)
    ib_px = to_index(lab_b, labels_b)
    area_a = np.bincount(ia_px[ia_px >= 0], minlength=labels_a.size)
    area_b = np.bincount(ib_px[ib_px >= 0], minlength=labels_b.size)
    both = (ia_px >= 0) & (ib_px >= 0)
    key = ia_px[both].astype(np.int64) * labels_b.size + ib_px[both]
    uk, cnt = np.unique(key, return_counts=True)
    return uk // labels_b.size, uk % labels_b.size, cnt, area_a, area_b


def _prepare(detections, labels):
    if not isinstance(detections, pd.DataFrame):
        if labels is None:
            labels = detections
        detections = detections_from_labels(detections)
    missing = [c for c in _REQUIRED if c not in detections.columns]
    if missing:
        raise ValueError(f"detections lack column(s) {missing}; need {_REQUIRED}")
    det = detections.copy()
    for c in ("frame", "label"):
        vals = det[c].to_numpy()
        if vals.size and not np.issubdtype(vals.dtype, np.integer):
            if not np.all(np.isfinite(vals.astype(float))) or \
                    not np.all(np.mod(vals.astype(float), 1) == 0):
                raise ValueError(f"detections column {c!r} must hold integers")
        det[c] = vals.astype(np.int64)
    if len(det) and det["frame"].min() < 0:
        raise ValueError("detections have negative frame numbers")
    if len(det) and (det["label"] <= 0).any():
        raise ValueError("detections have label <= 0 (0 is background)")
    if det.duplicated(["frame", "label"]).any():
        dup = det[det.duplicated(["frame", "label"], keep=False)].iloc[0]
        raise ValueError(f"duplicate detection: frame {dup['frame']} label {dup['label']}")
    det = det.sort_values(["frame", "label"], kind="stable").reset_index(drop=True)

    lab = None
    n_frames = int(det["frame"].max()) + 1 if len(det) else 0
    n_frames = max(n_frames, int(detections.attrs.get("n_frames", 0) or 0))
    if labels is not None:
        lab = as_label_stack(labels)
        if len(det) and det["frame"].max() >= lab.shape[0]:
            raise ValueError(
                f"detections reach frame {int(det['frame'].max())} but labels have "
                f"{lab.shape[0]} frames")
        n_frames = max(n_frames, lab.shape[0])
    return det, lab, n_frames


# ---------------------------------------------------------------------------
# main entry point
# ---------------------------------------------------------------------------
def link(
    detections: pd.DataFrame | np.ndarray | Sequence[np.ndarray],
    labels: np.ndarray | Sequence[np.ndarray] | None = None,
    max_distance: float | None = None,
    max_gap: int = 2,
    divisions: bool = True,
    *,
    birth_cost: float = 1.0,
    iou_weight: float = 0.5,
    size_weight: float = 0.5,
    division_distance: float | None = None,
    division_area_ratio: tuple[float, float] = (0.2, 0.9),
) -> pd.DataFrame:
    """Track detections over time; see the module docstring for the method.

    Parameters
    ----------
    detections:
        DataFrame with columns frame, label, y, x, area (e.g. from
        :func:`detections_from_labels`). A (T, Y, X) label stack is accepted
        too; it is then measured and also used as ``labels``.
    labels:
        Optional (T, Y, X) integer label stack the detections come from; adds
        mask overlap (1 - IoU) to the link cost and lets overlapping objects
        link even beyond ``max_distance``.
    max_distance:
        Largest centroid displacement (px) of a frame-to-frame link. ``None``:
        estimated from the data (see :func:`estimate_max_distance`).
    max_gap:
        Largest number of consecutive missing frames bridged by gap closing
        (0 disables gap closing).
    divisions:
        Detect divisions (mother ends at t, two daughters start at t+1).
    birth_cost:
        Cost of starting or of ending a track.
    iou_weight, size_weight:
        Weights of the overlap and relative-size terms of the link cost.
    division_distance:
        Largest mother-to-daughter centroid distance (px); ``None`` means
        ``max_distance + 2 * sqrt(mother_area / pi)``.
    division_area_ratio:
        Allowed daughter/mother area ratio (low, high).

    Returns
    -------
    DataFrame with columns frame, label, track_id, parent_track_id, y, x,
    area (one row per detection, sorted by frame then track_id; track ids
    start at 1, parent 0 means none). Tracks have no holes and obey the CTC
    lineage rules, so the table can be written with :func:`write_ctc`.
    ``attrs`` holds the parameters used and counts (links, divisions, gaps
    closed, tracks).

    Raises
    ------
    ValueError
        Frames of different shapes, non-integer labels, missing columns,
        duplicate (frame, label) detections, negative parameters.
    """
    if max_gap is None:
        max_gap = 0
    max_gap = int(max_gap)
    if max_gap < 0:
        raise ValueError(f"max_gap must be >= 0, got {max_gap}")
    if max_distance is not None and not (max_distance > 0 and math.isfinite(max_distance)):
        raise ValueError(f"max_distance must be a positive number, got {max_distance}")
    lo_r, hi_r = division_area_ratio
    if not (0 <= lo_r < hi_r):
        raise ValueError(f"division_area_ratio must be (low, high) with 0 <= low < high, "
                         f"got {division_area_ratio}")
    if birth_cost <= 0:
        raise ValueError(f"birth_cost must be > 0, got {birth_cost}")

    det, lab, n_frames = _prepare(detections, labels)
    n = len(det)
    frame = det["frame"].to_numpy()
    label = det["label"].to_numpy()
    pos = det[["y", "x"]].to_numpy(dtype=float)
    area = det["area"].to_numpy(dtype=float)

    estimated = max_distance is None
    md = float(estimate_max_distance(det)) if estimated else float(max_distance)

    # detection index ranges per frame (det is sorted by frame)
    starts_at = np.searchsorted(frame, np.arange(n_frames + 1))
    def idx_of(t: int) -> np.ndarray:
        return np.arange(starts_at[t], starts_at[t + 1])

    pred = np.full(n, -1, dtype=np.int64)
    succ: list[list[int]] = [[] for _ in range(n)]

    def relsize(a1, a2):
        return np.abs(a1 - a2) / np.maximum(np.maximum(a1, a2), 1e-12)

    # ---- 1. frame-to-frame LAP --------------------------------------------
    n_links = 0
    for t in range(n_frames - 1):
        ia_all, ib_all = idx_of(t), idx_of(t + 1)
        if ia_all.size == 0 or ib_all.size == 0:
            continue
        tree = cKDTree(pos[ib_all])
        pairs = tree.query_ball_point(pos[ia_all], r=md)
        ra = np.repeat(np.arange(ia_all.size), [len(p) for p in pairs])
        rb = np.fromiter((j for p in pairs for j in p), dtype=np.int64, count=ra.size)
        iou = None
        if lab is not None:
            oa, ob, inter, ar_a, ar_b = _overlaps(lab[t], lab[t + 1], label[ia_all], label[ib_all])
            ra = np.concatenate([ra, oa])
            rb = np.concatenate([rb, ob])
            key = np.unique(ra * ib_all.size + rb)
            ra, rb = key // ib_all.size, key % ib_all.size
            iou_map = np.zeros(key.size)
            okey = oa * ib_all.size + ob
            loc = np.searchsorted(key, okey)
            union = ar_a[oa] + ar_b[ob] - inter
            iou_map[loc] = inter / np.maximum(union, 1)
            iou = iou_map
        if ra.size == 0:
            continue
        ga, gb = ia_all[ra], ib_all[rb]
        d = np.hypot(*(pos[ga] - pos[gb]).T)
        cost = (d / md) ** 2 + size_weight * relsize(area[ga], area[gb])
        if iou is not None:
            cost = cost + iou_weight * (1.0 - iou)
        for r, c in _solve_lap(ia_all.size, ib_all.size, ra, rb, cost, birth_cost, birth_cost):
            a, b = int(ia_all[r]), int(ib_all[c])
            succ[a].append(b)
            pred[b] = a
            n_links += 1

    # ---- 2. divisions -------------------------------------------------------
    n_div = n_split = 0
    if divisions:
        eq_r = np.sqrt(area / np.pi)
        for t in range(n_frames - 1):
            ib_all = idx_of(t + 1)
            new = ib_all[pred[ib_all] < 0]
            ia_all = idx_of(t)
            if new.size == 0 or ia_all.size == 0:
                continue
            reach = (division_distance if division_distance is not None
                     else md + 2 * eq_r[ia_all])
            reach = np.broadcast_to(np.asarray(reach, dtype=float), ia_all.shape)
            tree = cKDTree(pos[new])
            near = tree.query_ball_point(pos[ia_all], r=reach)
            cands = []  # (cost, mother, d1, d2)
            for k, m in enumerate(ia_all):
                m = int(m)
                if not near[k] or len(succ[m]) > 1:
                    continue
                cont = succ[m][0] if succ[m] else None
                am = area[m]
                ok = [int(new[j]) for j in near[k]
                      if lo_r <= area[new[j]] / am <= hi_r]
                if cont is not None:
                    if not (lo_r <= area[cont] / am <= hi_r):
                        continue
                    pairs = [(cont, s) for s in ok]
                else:
                    pairs = [(ok[i], ok[j]) for i in range(len(ok)) for j in range(i + 1, len(ok))]
                norm = md + eq_r[m]
                for d1, d2 in pairs:
                    mid = 0.5 * (pos[d1] + pos[d2])
                    c = (np.hypot(*(mid - pos[m])) / norm
                         + abs(area[d1] / am - 0.5) + abs(area[d2] / am - 0.5))
                    cands.append((float(c), m, d1, d2))
            cands.sort()
            used: set[int] = set()
            for c, m, d1, d2 in cands:
                if m in used or d1 in used or d2 in used:
                    continue
                # the continuation may be claimed as a plain start by another mother
                if pred[d1] not in (-1, m) or pred[d2] not in (-1, m):
                    continue
                used.update((m, d1, d2))
                if succ[m]:
                    n_split += 1  # step 1 had linked the mother to a daughter
                succ[m] = [d1, d2]
                pred[d1] = m
                pred[d2] = m
                n_div += 1

    # ---- 3. gap closing -----------------------------------------------------
    n_gaps = 0
    if max_gap > 0 and n:
        ends = np.array([i for i in range(n) if not succ[i] and frame[i] < n_frames - 2],
                        dtype=np.int64)
        begins = np.array([i for i in range(n) if pred[i] < 0 and frame[i] > 1],
                          dtype=np.int64)
        if ends.size and begins.size:
            tree = cKDTree(pos[begins])
            radius = md * math.sqrt(max_gap + 1)
            near = tree.query_ball_point(pos[ends], r=radius)
            re_, rs_, cs_ = [], [], []
            for k, e in enumerate(ends):
                for j in near[k]:
                    s = begins[j]
                    dt = int(frame[s] - frame[e])
                    if not (2 <= dt <= max_gap + 1):
                        continue
                    lim = md * math.sqrt(dt)
                    d = float(np.hypot(*(pos[s] - pos[e])))
                    if d > lim:
                        continue
                    re_.append(k)
                    rs_.append(j)
                    cs_.append((d / lim) ** 2 + size_weight * relsize(area[e], area[s])
                               + 0.1 * (dt - 1))
            for r, c in _solve_lap(ends.size, begins.size, np.asarray(re_, dtype=np.int64),
                                   np.asarray(rs_, dtype=np.int64), np.asarray(cs_, dtype=float),
                                   birth_cost, birth_cost):
                e, s = int(ends[r]), int(begins[c])
                succ[e].append(s)
                pred[s] = e
                n_gaps += 1

    # ---- build CTC-consistent tracks ----------------------------------------
    track = np.zeros(n, dtype=np.int64)
    parent_of_track: dict[int, int] = {}
    next_id = 1
    for j in range(n):  # detections are in frame order
        p = int(pred[j])
        if p >= 0 and len(succ[p]) == 1 and frame[j] == frame[p] + 1:
            track[j] = track[p]
        else:
            track[j] = next_id
            parent_of_track[next_id] = int(track[p]) if p >= 0 else 0
            next_id += 1
    out = pd.DataFrame({
        "frame": frame.astype(np.int64),
        "label": label.astype(np.int64),
        "track_id": track,
        "parent_track_id": np.array([parent_of_track[int(k)] for k in track], dtype=np.int64),
        "y": pos[:, 0],
        "x": pos[:, 1],
        "area": det["area"].to_numpy(),
    }, columns=TRACK_COLUMNS)
    out = out.sort_values(["frame", "track_id"], kind="stable").reset_index(drop=True)
    out.attrs.update({
        "max_distance": md,
        "max_distance_estimated": bool(estimated),
        "max_gap": max_gap,
        "divisions": bool(divisions),
        "birth_cost": float(birth_cost),
        "iou_weight": float(iou_weight) if lab is not None else 0.0,
        "size_weight": float(size_weight),
        "division_distance": (float(division_distance) if division_distance is not None
                              else "max_distance + 2*sqrt(mother_area/pi)"),
        "division_area_ratio": [float(lo_r), float(hi_r)],
        "used_labels": lab is not None,
        "n_frames": int(n_frames),
        "n_detections": int(n),
        "n_links": int(n_links),
        "n_divisions": int(n_div),
        "n_divisions_split_from_link": int(n_split),
        "n_gaps_closed": int(n_gaps),
        "n_tracks": int(next_id - 1),
    })
    logger.info("link: %s", out.attrs)
    return out
