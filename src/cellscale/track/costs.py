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
less the fraction of the mother, moved by her local motion, that they cover,
are described by :mod:`cellscale.track.features` (motion-compensated
overlap, shape, orientation, division cues; the local motion is estimated
per frame from the data) and cost ``scale * -log p`` of the trained scorer
(:mod:`cellscale.track.scorer`). Gap links, starts and ends keep the costs
above, and the same pruning applies (an event dearer than its alternative
of starts and ends is dropped), so both solvers take either kind of costs.

The candidates of all frames are built at once: one pass over the frames
indexes each frame's pixels once (:class:`~cellscale.track.features.FrameIndex`:
overlaps, shape moments, touching pairs, local motion;
:class:`~cellscale.track.features.MovieFeatures`), the radius searches of
every frame pair share one k-d tree (:class:`_FrameLayers`), and the
features of the whole movie are scored in one call per kind of event; the
numbers, and the order of the candidates, are those of the frame-by-frame
enumeration.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from cellscale.track.config import TrackConfig
from cellscale.track.features import (DIVISION_FEATURES, LINK_FEATURES, FrameIndex, MovieFeatures, count_pairs,
                                      division_features, link_features, local_motions, nearest_in_frame)

__all__ = ["Candidates", "FrameIndex", "build_candidates", "crowding", "estimate_max_distance",
           "frame_overlaps", "DIVISIONS_PER_MOTHER"]

#: learned costs: daughter pairs scored per mother (lowest rule cost less the mother's covered fraction first)
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
    frames = np.asarray(frames)
    # every detection of a frame t + 1 whose frame t has detections, to its nearest one there
    query = np.flatnonzero(np.isin(frames - 1, np.unique(frames)))
    nn = nearest_in_frame(pos, frames, pos[query], frames[query] - 1)[:, 0] if query.size else np.zeros(0)
    radius = float(np.median(np.sqrt(area / np.pi))) if area.size else 1.0
    q = float(np.quantile(nn, quantile)) if nn.size else 0.0
    return max(factor * q, radius, 1.0)


def crowding(frames: np.ndarray, pos: np.ndarray, area: np.ndarray) -> float:
    """How packed the objects are: the median, over the detections of the busier frames (those with at least
    the median number of detections a frame, and at least two), of the distance to the nearest neighbour in
    the same frame divided by the detection's equivalent diameter ``2 sqrt(area / pi)``. About 0.5-1 for cells
    that touch (rods side by side, packed round cells), above 1.2 for separated nuclei; ``inf`` when no frame
    has two detections. The busier frames decide, so a colony that grows from a few founders counts as packed.
    """
    uniq, counts = np.unique(frames, return_counts=True)
    if not counts.size:   # no detection at all (numpy's median of nothing warns)
        return math.inf
    busy = uniq[(counts >= max(2.0, float(np.median(counts))))]
    if busy.size == 0:
        return math.inf
    rows = np.flatnonzero(np.isin(frames, busy))
    d = nearest_in_frame(pos[rows], frames[rows], pos[rows], frames[rows], k=2)[:, 1]
    return float(np.median(d / (2.0 * np.sqrt(np.maximum(area[rows], 1.0) / np.pi))))


def frame_overlaps(a: FrameIndex, b: FrameIndex):
    """IoU of the overlapping objects of two frames (same shape and stride).

    Returns (ia, ib, iou): key indices into each frame and their IoU.
    """
    ib_at_a = b.index_of(b.flat.take(a.nz))
    both = (a.idx >= 0) & (ib_at_a >= 0)
    ia, ib, cnt = count_pairs(a.idx[both], ib_at_a[both], a.n, b.n)
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
    #: gap links on demand (``build_candidates(gaps="lazy")``): ``gap_links(ends, starts)`` gives ``(src, dst,
    #: dt, cost)`` of the gap links from the rows ``ends`` to the rows ``starts``, the same as those of
    #: ``gaps=True`` between them; ``None``: they are among the links above (or there are none)
    gap_links: Callable[[np.ndarray, np.ndarray], tuple] | None = None


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
                     cfg: TrackConfig, gaps: bool | str = True, scorer=None,
                     features_out: dict | None = None) -> Candidates:
    """All plausible links, gap links and divisions with their costs.

    Detections must be sorted by frame. ``labels`` (T, Y, X) adds the IoU
    term and makes overlapping objects link candidates whatever their
    distance. ``frame_shape`` enables the cheaper starts/ends at the border.
    ``gaps``: ``True``, the gap links (up to ``cfg.max_gap`` missing frames) are among the links; ``False``, there
    are none; ``"lazy"``, they are left to :attr:`Candidates.gap_links`, for a solver that closes gaps only
    between the ends and starts of the tracks it has (:func:`cellscale.track.lap.solve_lap`).

    With ``cfg.costs == "learned"`` the consecutive-frame links and the
    divisions are scored by ``scorer`` (a :class:`cellscale.track.scorer.Scorer`;
    ``None``: the one ``cfg.scorer`` names) from the features of
    :mod:`cellscale.track.features`: every link candidate (within the search
    radius, or overlapping) is scored, and for every mother the
    ``DIVISIONS_PER_MOTHER`` daughter pairs with the lowest rule cost (touch
    ignored) less the fraction of the mother, moved by her local motion, that
    the two cover. ``features_out`` (a dict) receives the feature rows and the
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
    if gaps not in (True, False, "lazy"):
        raise ValueError(f"gaps must be True, False or 'lazy', got {gaps!r}")
    max_dt = cfg.max_gap + 1 if gaps else 1
    counts = np.diff(starts_at)
    touch_rules = (not learned and cfg.divisions and labels is not None and cfg.touch_cost > 0)

    # --- one pass over the frames: overlaps, and the features' per-frame numbers -------------
    # (each frame's pixels are indexed once, and kept while the next frame needs them)
    movie = MovieFeatures(n) if learned else None
    motion = local_motions(pos, starts_at) if learned else None  # every frame's, at once
    ov_keys, ov_iou, touch_keys = [], [], []
    if use_iou or touch_rules or learned:
        indexed: dict[tuple[int, int], FrameIndex] = {}  # (frame, stride): kept while the next frame needs it

        def index_of(t: int, step: int) -> FrameIndex:
            if (t, step) not in indexed:
                indexed.pop((t - 2, step), None)
                indexed[t, step] = FrameIndex(labels[t], label[starts_at[t]:starts_at[t + 1]], step)
            return indexed[t, step]

        def grid_of(t: int) -> FrameIndex:
            return index_of(t, stride)

        def full_of(t: int) -> FrameIndex:
            return index_of(t, 1)

        added: set[int] = set()

        def add_frame(t: int) -> None:
            if t not in added:
                added.add(t)
                movie.add_frame(starts_at[t], full_of(t), grid_of(t))

        for t in range(n_frames):
            if counts[t] == 0:
                continue
            s0 = starts_at[t]
            if learned:
                add_frame(t)
            if touch_rules and t > 0 and counts[t - 1] > 0 and counts[t] >= 2:
                tk = grid_of(t).touch_keys()
                k = int(counts[t])
                touch_keys.append((tk // k + s0) * n + (tk % k + s0))
            if t + 1 >= n_frames or counts[t + 1] == 0 or not (use_iou or learned):
                continue
            s1 = starts_at[t + 1]
            oa, ob, ov = frame_overlaps(grid_of(t), grid_of(t + 1))
            ov_keys.append((oa + s0) * n + (ob + s1))
            ov_iou.append(ov)
            if learned:
                add_frame(t + 1)
                movie.add_pair(s0, s1, grid_of(t), grid_of(t + 1), pos[s0:s1], pos[s1:starts_at[t + 2]],
                               (oa, ob, ov), stride, motion[s0:s1])
    if learned:
        movie.finish(pos, frame)
    ov_keys = np.concatenate(ov_keys) if ov_keys else np.zeros(0, np.int64)
    ov_iou = np.concatenate(ov_iou) if ov_iou else np.zeros(0)
    touch_keys = np.concatenate(touch_keys) if touch_keys else np.zeros(0, np.int64)

    # --- links: all frame pairs at once, per frame difference ---------------------------------
    collect: dict[str, np.ndarray] = {}
    src, dst, dts, costs = [], [], [], []
    div_reach = np.full(n, float(cfg.division_distance)) if cfg.division_distance else md + 2.0 * radius
    reach = md * math.sqrt(max_dt)
    if cfg.divisions:
        reach = max(reach, float(div_reach.max(initial=0.0)))
    layers = _FrameLayers(pos, frame, reach)
    every = np.arange(n)
    # consecutive frames: one query within the links' and the divisions' radii, shared by both
    near_a, near_b, near_d = layers.pairs(every, every, 1, max(md, float(div_reach[big].max(initial=0.0)))
                                          if cfg.divisions else md, distances=True)
    close = near_d <= md
    ga, gb = near_a[close], near_b[close]
    iou = None
    if use_iou:
        key = np.unique(np.concatenate([ga * n + gb, ov_keys]))
        ga, gb = key // max(n, 1), key % max(n, 1)
        iou = np.zeros(key.size)
        iou[np.searchsorted(key, ov_keys)] = ov_iou
    if ga.size:
        c = _link_rule_cost(ga, gb, 1, pos, area, inten, md, cfg, use_iou, iou)
        if learned:
            x = link_features(movie, ga, gb, pos, pos, md, inten, inten, rule_cost=c)
            if features_out is not None:
                collect.update(link_x=x, link_src=ga, link_dst=gb)
            if scorer is not None:
                c = scorer.link_cost(x, keep_below=disappear[ga] + appear[gb])
        keep = c <= disappear[ga] + appear[gb]
        src.append(ga[keep])
        dst.append(gb[keep])
        dts.append(np.full(int(keep.sum()), 1, np.int64))
        costs.append(c[keep])

    def gap_links(ends: np.ndarray, starts: np.ndarray) -> tuple:
        """(source, target, frame difference, cost) of the gap links from the rows ``ends`` to the rows
        ``starts`` that are cheaper than ending the one track and starting the other."""
        ends, starts = np.asarray(ends, np.int64), np.asarray(starts, np.int64)
        g_src, g_dst, g_dt, g_cost = [], [], [], []
        for dt in range(2, cfg.max_gap + 2):
            ga, gb = layers.pairs(ends, starts, dt, md * math.sqrt(dt))
            if ga.size == 0:
                continue
            c = _link_rule_cost(ga, gb, dt, pos, area, inten, md, cfg, use_iou, None)
            keep = c <= disappear[ga] + appear[gb]
            g_src.append(ga[keep])
            g_dst.append(gb[keep])
            g_dt.append(np.full(int(keep.sum()), dt, np.int64))
            g_cost.append(c[keep])

        def joined(parts: list, dtype) -> np.ndarray:
            return np.concatenate(parts) if parts else np.zeros(0, dtype)

        return joined(g_src, np.int64), joined(g_dst, np.int64), joined(g_dt, np.int64), joined(g_cost, float)

    if gaps is True and cfg.max_gap > 0:  # (all of them now; "lazy": the solver asks for those it needs)
        g_src, g_dst, g_dt, g_cost = gap_links(every, every)
        src.append(g_src)
        dst.append(g_dst)
        dts.append(g_dt)
        costs.append(g_cost)

    # --- divisions -----------------------------------------------------------------------------
    div_m = div_a = div_b = np.zeros(0, np.int64)
    div_c = np.zeros(0)
    if cfg.divisions and n:
        # learned: per mother, the daughter pairs most like a division are scored: lowest rule cost less
        # the fraction of the mother (moved by her local motion) that the two cover (the rule cost alone
        # would drop the true pair of a drifting field, or of fast-moving, packed cells)
        covered = ((lambda qm, qd: movie.lookup(qm * n + qd, movie.key_c, movie.inter_c) / movie.area_a[qm])
                   if learned else None)
        mothers = big[near_a] & big[near_b] & (near_d <= div_reach[near_a])
        m_, a_, b_, c_, cov_ = _division_candidates(near_a[mothers], near_b[mothers], pos, area, radius, inten, md,
                                                    cfg, covered)
        if learned and m_.size:
            sel = _lowest_per_group(m_, c_ - cov_, DIVISIONS_PER_MOTHER)
            m_, a_, b_, c_ = m_[sel], a_[sel], b_[sel], c_[sel]
            x = division_features(movie, m_, a_, b_, pos, pos, inten, rule_cost=c_)
            if features_out is not None:
                collect.update(division_x=x, mother=m_, daughter_a=a_, daughter_b=b_)
            if scorer is not None:
                c_ = scorer.division_cost(x, keep_below=disappear[m_] + appear[a_] + appear[b_])
        elif touch_rules and m_.size and touch_keys.size:
            # daughters that touch are more likely one cell cut in two
            tk = np.minimum(a_, b_) * n + np.maximum(a_, b_)
            pos_ = np.clip(np.searchsorted(touch_keys, tk), 0, touch_keys.size - 1)
            c_ = c_ + cfg.touch_cost * (touch_keys[pos_] == tk)
        keep = c_ <= disappear[m_] + appear[a_] + appear[b_]
        div_m, div_a, div_b, div_c = m_[keep], a_[keep], b_[keep], c_[keep]

    if features_out is not None:
        features_out["link_x"] = collect.get("link_x", np.zeros((0, len(LINK_FEATURES))))
        features_out["division_x"] = collect.get("division_x", np.zeros((0, len(DIVISION_FEATURES))))
        for key in ("link_src", "link_dst", "mother", "daughter_a", "daughter_b"):
            features_out[key] = collect.get(key, np.zeros(0, np.int64)).astype(np.int64)

    def cat(parts, dtype):
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    src, dst, dts, costs = cat(src, np.int64), cat(dst, np.int64), cat(dts, np.int64), cat(costs, float)
    # the order of the frame-by-frame enumeration: frame, frame difference, source, target (each
    # frame difference's links are sorted by source and target already: a stable sort merges them)
    order = np.argsort(frame[src] * (max_dt + 1) + dts, kind="stable")
    return Candidates(src[order], dst[order], dts[order], costs[order], div_m.astype(np.int64),
                      div_a.astype(np.int64), div_b.astype(np.int64), div_c.astype(float), appear, disappear,
                      gap_links if gaps == "lazy" and cfg.max_gap > 0 else None)


def _link_rule_cost(ga, gb, dt: int, pos, area, inten, md: float, cfg: TrackConfig, use_iou: bool, iou):
    """The rule-based cost of the links ``ga`` -> ``gb`` (rows), ``dt`` frames apart; ``iou``: their IoU (``None``:
    none, as for gap links)."""
    lim = md * math.sqrt(dt)
    d = np.hypot(*(np.take(pos, ga, axis=0) - np.take(pos, gb, axis=0)).T)  # (np.take: 3x faster than pos[ga])
    c = (d / lim) ** 2 + cfg.size_weight * _rel(area[ga], area[gb]) + cfg.gap_cost * (dt - 1)
    if use_iou:
        c = c + cfg.iou_weight * (1.0 - (iou if iou is not None else 0.0))
    if inten is not None:
        c = c + cfg.intensity_weight * _rel(inten[ga], inten[gb])
    return c


class _FrameLayers:
    """Pairs of detections ``dt`` frames apart within a radius, for all frames
    at once: one k-d tree of (y, x, frame * spacing), the spacing larger than
    any radius asked for, so that a query shifted by ``dt`` frames finds only
    the detections of that frame, at their planar distance (the third
    coordinates are equal, their difference adds exactly 0)."""

    def __init__(self, pos: np.ndarray, frame: np.ndarray, reach: float):
        self.spacing = float(2.0 ** math.ceil(math.log2(max(reach, 1.0) + 1.0)) * 2.0)
        self.pos, self.frame = pos, frame
        self._tree: tuple[np.ndarray, cKDTree] | None = None  # the last targets' tree

    def _points(self, rows: np.ndarray, shift: int) -> np.ndarray:
        return np.column_stack([np.take(self.pos, rows, axis=0), (self.frame[rows] + shift) * self.spacing])

    def _targets(self, rows: np.ndarray) -> cKDTree:
        if self._tree is None or not np.array_equal(self._tree[0], rows):
            self._tree = (rows, cKDTree(self._points(rows, 0)))
        return self._tree[1]

    def pairs(self, src: np.ndarray, dst: np.ndarray, dt: int, radius, distances: bool = False) -> tuple:
        """(source row, target row), ``frame[target] == frame[source] + dt``, closer than ``radius``
        (a number or one per source), sorted by source then target; with ``distances``, their distances
        third."""
        if src.size == 0 or dst.size == 0:
            z = np.zeros(0, np.int64)
            return (z, z, np.zeros(0)) if distances else (z, z)
        radius = np.asarray(radius, dtype=float)
        tree = self._targets(dst)
        pairs = cKDTree(self._points(src, dt)).sparse_distance_matrix(tree, float(radius.max()),
                                                                      output_type="ndarray")
        q, t, d = pairs["i"].astype(np.int64), pairs["j"].astype(np.int64), pairs["v"]
        if radius.ndim:
            keep = d <= radius[q]
            q, t, d = q[keep], t[keep], d[keep]
        key = q * dst.size + t
        order = np.argsort(key) if distances else None
        key = key[order] if distances else np.sort(key)  # (pairs are unique)
        q, t = np.divmod(key, dst.size)
        return (src[q], dst[t], d[order]) if distances else (src[q], dst[t])


def _division_candidates(qm, qd, pos, area, radius, inten, md, cfg, covered=None):
    """Mothers x unordered pairs of their daughters, for all frames at once: ``qm``, ``qd`` are the (mother,
    daughter) rows within the division radius, sorted by mother, then daughter (:meth:`_FrameLayers.pairs`).
    The triples are sorted by mother, then as the pairs of daughters are enumerated (first daughter, second).

    Returns ``(mother, daughter_a, daughter_b, rule cost, cover)``; ``covered(mother, daughter)`` gives the
    fraction of each mother one daughter covers, and ``cover`` is the sum over both daughters (``None``
    without ``covered``)."""
    none = None if covered is None else np.zeros(0)
    # all unordered daughter pairs per mother: element r of a group of c pairs
    # with the c - 1 - r elements after it
    if qm.size < 2:
        z = np.zeros(0, np.int64)
        return z, z, z, np.zeros(0), none
    group_start = np.r_[0, np.flatnonzero(np.diff(qm)) + 1]
    sizes = np.diff(np.r_[group_start, qm.size])
    rank = np.arange(qm.size) - np.repeat(group_start, sizes)
    after = np.repeat(sizes, sizes) - 1 - rank
    total = int(after.sum())
    if total == 0:
        z = np.zeros(0, np.int64)
        return z, z, z, np.zeros(0), none
    # the first daughter of each triple: pair k repeated after[k] times; the second: the pairs after it
    second = np.arange(total) - np.repeat(np.cumsum(after) - after, after) + np.repeat(np.arange(qm.size) + 1, after)

    def first(v):
        return np.repeat(v, after)

    def other(v):  # (np.take: faster than v[second])
        return np.take(v, second)

    m, a, b = first(qm), first(qd), other(qd)
    # what depends on (mother, one daughter) is computed once per such pair and gathered
    # (the same operations on the same numbers as per triple)
    my, mx = np.take(pos[:, 0], qm), np.take(pos[:, 1], qm)
    dy, dx = np.take(pos[:, 0], qd), np.take(pos[:, 1], qd)
    vy, vx = dy - my, dx - mx  # daughter - mother
    nv = np.hypot(vy, vx)
    scale = radius[qm] + 0.5 * md
    half = 0.5 * area[qm]
    size = np.abs(np.log(area[qd] / half))
    # |midpoint(a, b) - m|
    mid_y = 0.5 * (first(dy) + other(dy)) - first(my)
    mid_x = 0.5 * (first(dx) + other(dx)) - first(mx)
    c = cfg.division_cost + (mid_y * mid_y + mid_x * mid_x) / first(scale * scale)  # (|mid - m| / scale)^2
    na, nb = first(nv), other(nv)
    dot = first(vy) * other(vy) + first(vx) * other(vx)
    cos = np.where((na > 0) & (nb > 0), dot / np.maximum(na * nb, 1e-12), 0.0)
    c = c + 0.5 * (1.0 + cos) / 2.0
    c = c + cfg.size_weight * 0.5 * (first(size) + other(size))
    if inten is not None:
        i_d = np.take(inten, qd)
        c = c + cfg.intensity_weight * _rel(first(i_d), other(i_d))
    cover = None
    if covered is not None:
        one = covered(qm, qd)
        cover = first(one) + other(one)
    return m, a, b, c, cover


def _lowest_per_group(group: np.ndarray, value: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` lowest ``value`` of each group (``group`` sorted,
    ties in order), ordered by group, then value, then index: the first ``k``
    of each group of ``np.lexsort((value, group))``, without sorting all of them."""
    if group.size == 0:
        return np.zeros(0, np.int64)
    start = np.r_[0, np.flatnonzero(np.diff(group)) + 1]
    size = np.diff(np.r_[start, group.size])
    keep = np.ones(group.size, bool)
    large = np.flatnonzero(size > k)
    if large.size:
        # the k-th lowest value of each large group bounds what it keeps
        # (padded blocks of groups of similar size, partitioned)
        bound = np.full(start.size, np.inf)
        by_size = large[np.argsort(size[large], kind="stable")]
        sizes = size[by_size]  # ascending
        lo = 0
        while lo < by_size.size:
            width = int(sizes[lo])
            # a block: the next groups at most twice as large, at most 2^22 padded values
            hi = min(int(np.searchsorted(sizes, 2 * width, side="right")), lo + (1 << 22) // (2 * width))
            hi = max(hi, lo + 1)
            block = by_size[lo:hi]
            w = int(size[block].max())
            pad = np.full((block.size, w), np.inf)
            col = np.arange(w)
            inside = col[None, :] < size[block][:, None]
            pad[inside] = value[(start[block][:, None] + col[None, :])[inside]]
            bound[block] = np.partition(pad, k - 1, axis=1)[:, k - 1]
            lo = hi
        keep = value <= np.repeat(bound, size)
    idx = np.flatnonzero(keep)  # (about k per group: sorted in one padded array, NaN after every number)
    g = group[idx]
    first = np.r_[0, np.flatnonzero(np.diff(g)) + 1]
    count = np.diff(np.r_[first, g.size])
    rank = np.arange(g.size) - np.repeat(first, count)  # (within the group)
    if count.max() > 4 * k:  # (many ties)
        return idx[np.lexsort((value[idx], g))][rank < k]
    pad = np.full((first.size, int(count.max())), np.nan)
    pad[np.repeat(np.arange(first.size), count), rank] = value[idx]
    col = np.argsort(pad, axis=1, kind="stable")[:, :k]
    return idx[(first[:, None] + col)[col < count[:, None]]]
