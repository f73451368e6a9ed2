"""Candidate events and their costs, shared by both solvers.

A tracking solution is a choice, for every detection, of how it begins (it
*appears*, is *linked* from a detection up to ``max_gap + 1`` frames earlier,
or is a *daughter* of a division) and how it ends (it *disappears*, links
forward, or is a *mother*). :func:`build_candidates` lists the plausible
events with a cost each; the LAP solver picks them greedily stage by stage,
the ILP solver picks the cheapest consistent set.

Costs (dimensionless; ``md`` = max_distance, ``r`` = sqrt(area / pi))::

    link i -> j over dt frames:
        (d / (md sqrt(dt)))**2 + iou_weight (1 - IoU) + size_weight |a_i - a_j| / max(a)
        + intensity_weight |I_i - I_j| / max(I) + gap_cost (dt - 1)
    appear j / disappear i:
        birth_cost, times border_factor near the image border, 0 in the
        first (appear) / last (disappear) frame
    division m -> (a, b), each at least min_division_area x the typical
    (area-weighted median) object area:
        division_cost + (|midpoint(a, b) - m| / (r_m + md / 2))**2
        + 0.5 (1 + cos angle(a - m, b - m)) / 2            (daughters on opposite sides)
        + size_weight (|log(2 a_a / a_m)| + |log(2 a_b / a_m)|) / 2   (each about half)
        + intensity_weight |I_a - I_b| / max(I)            (daughters alike)
        + touch_cost if the daughters touch (needs labels; one cell cut in two)

IoU is measured on a regular sub-grid of the pixels (stride chosen so that a
median object keeps at least ~100 samples), which is exact enough for a cost
and keeps the overlap pass cheap. For ``dt > 1`` no overlap is measured and
the ``1 - IoU`` term is 1.

Learned costs (``cfg.costs == "learned"``, for dense data where centroid
distance fails): every consecutive-frame link candidate and, per mother, the
``DIVISIONS_PER_MOTHER`` daughter pairs of lowest rule cost (touch ignored)
are described by :mod:`cellscale.track.features` (motion-compensated
overlap, shape, orientation, division cues; the local motion is estimated
per frame from the data) and cost ``scale * -log p`` of the trained scorer
(:mod:`cellscale.track.scorer`). Gap links, starts and ends keep the costs
above, and the same pruning applies (an event dearer than its alternative
of starts and ends is dropped), so both solvers take either kind of costs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from cellscale.track.config import TrackConfig
from cellscale.track.features import (DIVISION_FEATURES, LINK_FEATURES, FrameFeatures, division_features,
                                      frame_features, link_features)

__all__ = ["Candidates", "FrameIndex", "build_candidates", "crowding", "estimate_max_distance",
           "frame_overlaps", "DIVISIONS_PER_MOTHER"]

#: learned costs: daughter pairs (lowest rule cost first) scored per mother
DIVISIONS_PER_MOTHER = 8


def estimate_max_distance(frames: np.ndarray, pos: np.ndarray, area: np.ndarray,
                          quantile: float = 0.9, factor: float = 2.0) -> float:
    """Data-driven search radius of frame-to-frame links.

    For every detection of frame ``t + 1`` the distance to the nearest
    detection of frame ``t`` is taken (at most the true displacement of
    that cell); the radius is ``max(factor * quantile(distances),
    median radius, 1)``: twice a robust high displacement, never less than a
    typical cell radius.
    """
    uniq = np.unique(frames)
    by_frame = {int(f): pos[frames == f] for f in uniq}
    nn = []
    for f in uniq:
        f = int(f)
        if f + 1 in by_frame and len(by_frame[f]) and len(by_frame[f + 1]):
            d, _ = cKDTree(by_frame[f]).query(by_frame[f + 1], k=1)
            nn.append(np.asarray(d, dtype=float))
    radius = float(np.median(np.sqrt(area / np.pi))) if area.size else 1.0
    q = float(np.quantile(np.concatenate(nn), quantile)) if nn else 0.0
    return max(factor * q, radius, 1.0)


def crowding(frames: np.ndarray, pos: np.ndarray, area: np.ndarray) -> float:
    """How packed the objects are: the median, over the detections of the busier frames (those with at least
    the median number of detections a frame, and at least two), of the distance to the nearest neighbour in
    the same frame divided by the detection's equivalent diameter ``2 sqrt(area / pi)``. About 0.5-1 for cells
    that touch (rods side by side, packed round cells), above 1.2 for separated nuclei; ``inf`` when no frame
    has two detections. The busier frames decide, so a colony that grows from a few founders counts as packed.
    """
    uniq, counts = np.unique(frames, return_counts=True)
    busy = uniq[(counts >= max(2.0, float(np.median(counts))))]
    ratios = []
    for f in busy:
        rows = np.flatnonzero(frames == f)
        d, _ = cKDTree(pos[rows]).query(pos[rows], k=2)
        ratios.append(d[:, 1] / (2.0 * np.sqrt(np.maximum(area[rows], 1.0) / np.pi)))
    return float(np.median(np.concatenate(ratios))) if ratios else math.inf


class FrameIndex:
    """The labelled pixels of one frame on a ``stride`` sub-grid: their flat
    positions (``nz``), the index of their label among the sorted ``keys``
    (``idx``, -1 for a label without a detection), the area of each key and
    a lookup from label value to key index."""

    def __init__(self, frame: np.ndarray, keys: np.ndarray, stride: int = 1):
        flat = np.ascontiguousarray(frame[::stride, ::stride]).ravel()
        self.flat = flat
        self.nz = np.flatnonzero(flat != 0)  # (much faster than on the integers)
        self.n = keys.size
        self.top = int(keys[-1]) if keys.size else 0
        if self.top < (1 << 24):
            self.lut = np.full(self.top + 2, -1, dtype=np.int64)
            self.lut[keys] = np.arange(keys.size)
            self.keys = None
        else:
            self.lut, self.keys = None, keys
        self.idx = self.index_of(flat[self.nz])
        self.area = np.bincount(self.idx[self.idx >= 0], minlength=self.n)
        self.shape = frame[::stride, ::stride].shape

    def touching(self) -> set[tuple[int, int]]:
        """Pairs (i, j), i < j, of key indices of objects that touch (are
        neighbours on the sub-grid)."""
        img = self.flat.reshape(self.shape)
        pairs = []
        for a, b in ((img[:, :-1], img[:, 1:]), (img[:-1], img[1:])):
            m = (a != b) & (a != 0) & (b != 0)
            if m.any():
                pairs.append(np.stack([self.index_of(a[m]), self.index_of(b[m])], axis=1))
        if not pairs:
            return set()
        p = np.concatenate(pairs)
        p = p[(p >= 0).all(1)]
        p = np.unique(np.sort(p, axis=1), axis=0)
        return set(map(tuple, p.tolist()))

    def index_of(self, values: np.ndarray) -> np.ndarray:
        if self.n == 0:
            return np.full(values.shape, -1, dtype=np.int64)
        if self.lut is not None:
            return self.lut.take(np.minimum(values, self.top + 1))
        pos = np.clip(np.searchsorted(self.keys, values), 0, self.n - 1)
        return np.where((values != 0) & (self.keys[pos] == values), pos, -1)


def frame_overlaps(a: FrameIndex, b: FrameIndex):
    """IoU of the overlapping objects of two frames (same shape and stride).

    Returns (ia, ib, iou): key indices into each frame and their IoU.
    """
    ib_at_a = b.index_of(b.flat.take(a.nz))
    both = (a.idx >= 0) & (ib_at_a >= 0)
    na, nb = a.n, b.n
    key = a.idx[both] * nb + ib_at_a[both]
    if na * nb <= 4 * key.size + 1024:
        cnt = np.bincount(key, minlength=na * nb)
        uk = np.flatnonzero(cnt)
        cnt = cnt[uk]
    else:
        uk, cnt = np.unique(key, return_counts=True)
    ia, ib = uk // nb, uk % nb
    iou = cnt / np.maximum(a.area[ia] + b.area[ib] - cnt, 1)
    return ia, ib, iou


@dataclass
class Candidates:
    """Candidate events (indices are detection rows, sorted by frame)."""

    src: np.ndarray        # links: source detection
    dst: np.ndarray        # links: target detection
    dt: np.ndarray         # links: frame difference (1 = consecutive)
    link_cost: np.ndarray
    mother: np.ndarray     # divisions
    daughter_a: np.ndarray
    daughter_b: np.ndarray
    division_cost: np.ndarray
    appear: np.ndarray     # per detection
    disappear: np.ndarray  # per detection


def _rel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-12)


def _pairs_within(tree_pts: np.ndarray, query_pts: np.ndarray, radius) -> tuple[np.ndarray, np.ndarray]:
    """(query index, tree index) of all pairs closer than ``radius`` (a number
    or one per query point), sorted by query then tree index."""
    if tree_pts.shape[0] == 0 or query_pts.shape[0] == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    radius = np.asarray(radius, dtype=float)
    pairs = cKDTree(query_pts).sparse_distance_matrix(cKDTree(tree_pts), float(radius.max()),
                                                      output_type="ndarray")
    q, t, d = pairs["i"].astype(np.int64), pairs["j"].astype(np.int64), pairs["v"]
    if radius.ndim:
        keep = d <= radius[q]
        q, t = q[keep], t[keep]
    order = np.lexsort((t, q))
    return q[order], t[order]


def build_candidates(frame: np.ndarray, label: np.ndarray, pos: np.ndarray, area: np.ndarray,
                     intensity: np.ndarray | None, n_frames: int, labels: np.ndarray | None,
                     frame_shape: tuple[int, int] | None, md: float,
                     cfg: TrackConfig, gaps: bool = True, scorer=None,
                     features_out: dict | None = None) -> Candidates:
    """All plausible links, gap links and divisions with their costs.

    Detections must be sorted by frame. ``labels`` (T, Y, X) adds the IoU
    term and makes overlapping objects link candidates whatever their
    distance. ``frame_shape`` enables the cheaper starts/ends at the border.

    With ``cfg.costs == "learned"`` the consecutive-frame links and the
    divisions are scored by ``scorer`` (a :class:`cellscale.track.scorer.Scorer`;
    ``None``: the one ``cfg.scorer`` names) from the features of
    :mod:`cellscale.track.features`: every link candidate (within the search
    radius, or overlapping) is scored, and for every mother the
    ``DIVISIONS_PER_MOTHER`` daughter pairs with the lowest rule cost (touch
    ignored). ``features_out`` (a dict) receives the feature rows and the
    candidates they describe, before pruning (for training).
    """
    n = frame.size
    starts_at = np.searchsorted(frame, np.arange(n_frames + 1))
    radius = np.sqrt(area / np.pi)
    learned = cfg.costs == "learned" or features_out is not None
    if learned and labels is None:
        raise ValueError("costs='learned' needs the label images (labels=...)")
    if cfg.costs == "learned" and scorer is None:
        from cellscale.track.scorer import load_scorer

        scorer = load_scorer(cfg.scorer)
    use_iou = labels is not None and (cfg.iou_weight > 0 or learned)
    stride = 1
    if use_iou and n:
        stride = max(1, int(math.sqrt(float(np.median(area)) / 100.0)))
    feats: dict[int, FrameFeatures] = {}
    collect: dict[str, list] = {k: [] for k in ("link_x", "link_src", "link_dst", "division_x", "mother",
                                                  "daughter_a", "daughter_b")}

    def features_of(t: int) -> FrameFeatures:
        if t not in feats:
            feats.clear()
            feats[t] = frame_features(labels, label, pos, starts_at, t, stride)
        return feats[t]

    def local(t: int, rows: np.ndarray) -> np.ndarray:
        return rows - starts_at[t]

    def frame_slice(t: int) -> slice:
        return slice(starts_at[t], starts_at[t + 1])
    index: dict[int, FrameIndex] = {}

    def index_of(t: int) -> FrameIndex:
        if t not in index:
            index.pop(t - 2, None)
            index[t] = FrameIndex(labels[t], label[starts_at[t]:starts_at[t + 1]], stride)
        return index[t]

    inten = None
    if intensity is not None and cfg.intensity_weight > 0 and np.all(np.isfinite(intensity)):
        inten = intensity.astype(float)

    # a link dearer than ending one track and starting the other is never
    # chosen (that alternative is always feasible): prune it, and likewise divisions
    appear = np.full(n, float(cfg.birth_cost))
    disappear = np.full(n, float(cfg.birth_cost))
    if frame_shape is not None and n:
        h, w = frame_shape
        edge = np.minimum.reduce([pos[:, 0], pos[:, 1], h - 1 - pos[:, 0], w - 1 - pos[:, 1]])
        near = edge < radius + 0.5 * md
        appear[near] *= cfg.border_factor
        disappear[near] *= cfg.border_factor
    if n:
        appear[frame == frame.min()] = 0.0
        disappear[frame == n_frames - 1] = 0.0
    # fragments (much smaller than a typical cell) neither divide nor are daughters;
    # "typical" is the area-weighted median, which many tiny fragments do not drag down
    big = np.ones(n, bool)
    if n and cfg.min_division_area > 0:
        order = np.argsort(area)
        cum = np.cumsum(area[order])
        typical = float(area[order][np.searchsorted(cum, 0.5 * cum[-1])])
        big = area >= cfg.min_division_area * typical
    src, dst, dts, costs = [], [], [], []
    div_m, div_a, div_b, div_c = [], [], [], []
    max_dt = cfg.max_gap + 1 if gaps else 1
    for t in range(n_frames - 1):
        ia = np.arange(starts_at[t], starts_at[t + 1])
        if ia.size == 0:
            continue
        for dt in range(1, max_dt + 1):
            if t + dt >= n_frames:
                break
            ib = np.arange(starts_at[t + dt], starts_at[t + dt + 1])
            if ib.size == 0:
                continue
            lim = md * math.sqrt(dt)
            qa, tb = _pairs_within(pos[ib], pos[ia], lim)
            iou = None
            if use_iou and dt == 1:
                oa, ob, ov = frame_overlaps(index_of(t), index_of(t + 1))
                key = np.unique(np.concatenate([qa * ib.size + tb, oa * ib.size + ob]))
                qa, tb = key // ib.size, key % ib.size
                iou = np.zeros(key.size)
                iou[np.searchsorted(key, oa * ib.size + ob)] = ov
            if qa.size == 0:
                continue
            ga, gb = ia[qa], ib[tb]
            d = np.hypot(*(pos[ga] - pos[gb]).T)
            c = (d / lim) ** 2 + cfg.size_weight * _rel(area[ga], area[gb]) + cfg.gap_cost * (dt - 1)
            if use_iou:
                c = c + cfg.iou_weight * (1.0 - (iou if iou is not None else 0.0))
            if inten is not None:
                c = c + cfg.intensity_weight * _rel(inten[ga], inten[gb])
            if learned and dt == 1:
                ff = features_of(t)
                sa, sb = frame_slice(t), frame_slice(t + 1)
                x = link_features(ff, local(t, ga), local(t + 1, gb), pos[sa], pos[sb], md,
                                  None if inten is None else inten[sa], None if inten is None else inten[sb],
                                  rule_cost=c)
                if features_out is not None:
                    collect["link_x"].append(x)
                    collect["link_src"].append(ga)
                    collect["link_dst"].append(gb)
                if scorer is not None:
                    c = scorer.link_cost(x)
            keep = c <= disappear[ga] + appear[gb]
            ga, gb, c = ga[keep], gb[keep], c[keep]
            src.append(ga)
            dst.append(gb)
            dts.append(np.full(ga.size, dt, np.int64))
            costs.append(c)
        if cfg.divisions:
            ib = np.arange(starts_at[t + 1], starts_at[t + 2])
            if ib.size >= 2:
                m_, a_, b_, c_ = _division_candidates(ia[big[ia]], ib[big[ib]], pos, area, radius,
                                                      inten, md, cfg)
                if learned and m_.size:
                    # the daughter pairs of lowest rule cost per mother, scored by the features
                    order = np.lexsort((c_, m_))
                    m_, a_, b_, c_ = m_[order], a_[order], b_[order], c_[order]
                    first = np.r_[0, np.flatnonzero(np.diff(m_)) + 1]
                    rank = np.arange(m_.size) - np.repeat(first, np.diff(np.r_[first, m_.size]))
                    sel = rank < DIVISIONS_PER_MOTHER
                    m_, a_, b_, c_ = m_[sel], a_[sel], b_[sel], c_[sel]
                    ff = features_of(t)
                    sa, sb = frame_slice(t), frame_slice(t + 1)
                    x = division_features(ff, local(t, m_), local(t + 1, a_), local(t + 1, b_), pos[sa], pos[sb],
                                          None if inten is None else inten[sb], rule_cost=c_)
                    if features_out is not None:
                        collect["division_x"].append(x)
                        collect["mother"].append(m_)
                        collect["daughter_a"].append(a_)
                        collect["daughter_b"].append(b_)
                    if scorer is not None:
                        c_ = scorer.division_cost(x)
                elif labels is not None and cfg.touch_cost > 0 and m_.size:
                    # daughters that touch are more likely one cell cut in two
                    touch = index_of(t + 1).touching()
                    if touch:
                        k0 = starts_at[t + 1]
                        pa, pb = np.minimum(a_, b_) - k0, np.maximum(a_, b_) - k0
                        hit = np.fromiter(((int(x), int(y)) in touch for x, y in zip(pa, pb)),
                                          dtype=bool, count=pa.size)
                        c_ = c_ + cfg.touch_cost * hit
                keep = c_ <= disappear[m_] + appear[a_] + appear[b_]
                m_, a_, b_, c_ = m_[keep], a_[keep], b_[keep], c_[keep]
                div_m.append(m_)
                div_a.append(a_)
                div_b.append(b_)
                div_c.append(c_)

    def cat(parts, dtype):
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    if features_out is not None:
        for key, parts in collect.items():
            if key.endswith("_x"):
                width = len(LINK_FEATURES if key == "link_x" else DIVISION_FEATURES)
                features_out[key] = np.concatenate(parts) if parts else np.zeros((0, width))
            else:
                features_out[key] = cat(parts, np.int64)

    return Candidates(cat(src, np.int64), cat(dst, np.int64), cat(dts, np.int64), cat(costs, float),
                      cat(div_m, np.int64), cat(div_a, np.int64), cat(div_b, np.int64),
                      cat(div_c, float), appear, disappear)


def _division_candidates(ia, ib, pos, area, radius, inten, md, cfg):
    """Mothers of frame t (``ia``) x unordered daughter pairs of frame t + 1 (``ib``)."""
    reach = (np.full(ia.size, float(cfg.division_distance)) if cfg.division_distance
             else md + 2.0 * radius[ia])
    qm, qd = _pairs_within(pos[ib], pos[ia], reach)  # sorted by mother, then daughter
    # all unordered daughter pairs per mother: element r of a group of c pairs
    # with the c - 1 - r elements after it
    if qm.size < 2:
        z = np.zeros(0, np.int64)
        return z, z, z, np.zeros(0)
    group_start = np.r_[0, np.flatnonzero(np.diff(qm)) + 1]
    sizes = np.diff(np.r_[group_start, qm.size])
    rank = np.arange(qm.size) - np.repeat(group_start, sizes)
    after = np.repeat(sizes, sizes) - 1 - rank
    first = np.repeat(np.arange(qm.size), after)
    offset = np.arange(first.size) - np.repeat(np.cumsum(after) - after, after) + 1
    second = first + offset
    m, a, b = ia[qm[first]], ib[qd[first]], ib[qd[second]]
    if m.size == 0:
        z = np.zeros(0, np.int64)
        return z, z, z, np.zeros(0)
    pm, pa, pb = pos[m], pos[a], pos[b]
    mid = 0.5 * (pa + pb)
    c = cfg.division_cost + (np.hypot(*(mid - pm).T) / (radius[m] + 0.5 * md)) ** 2
    va, vb = pa - pm, pb - pm
    na, nb = np.hypot(*va.T), np.hypot(*vb.T)
    cos = np.where((na > 0) & (nb > 0), (va * vb).sum(1) / np.maximum(na * nb, 1e-12), 0.0)
    c = c + 0.5 * (1.0 + cos) / 2.0
    half = 0.5 * area[m]
    c = c + cfg.size_weight * 0.5 * (np.abs(np.log(area[a] / half)) + np.abs(np.log(area[b] / half)))
    if inten is not None:
        c = c + cfg.intensity_weight * _rel(inten[a], inten[b])
    return m, a, b, c
