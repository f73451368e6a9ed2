"""Fast solver: linear assignment frame to frame, then divisions, then gaps.

Following Jaqaman et al. (Nat. Methods 2008), in three stages over the
candidates of :mod:`cellscale.track.costs`:

1. **Frame-to-frame linking.** For each pair of consecutive frames, the
   minimum-cost partial assignment (``scipy.optimize.linear_sum_assignment``
   on the augmented matrix ``[[link, disappear], [appear, 0]]``, split into
   connected components so each dense problem stays small): a detection
   links to one detection of the next frame, or its track ends; a detection
   of the next frame is linked or starts a track.
2. **Divisions.** A division ``m -> (a, b)`` replaces what stage 1 chose
   for those detections (``m`` linked to ``a`` and ``b`` a track start, or
   ``m`` ending and both starting) when it is cheaper; divisions are taken
   greedily by decreasing saving, each detection used once (and, with
   ``min_cycle_frames >= 2``, no cell divides in the frame it was born in).
3. **Gap closing.** Track ends and track starts up to ``max_gap`` missing
   frames apart are joined by a second assignment (same augmented form).
   The gap links are enumerated here, between those ends and starts only,
   when the candidates leave them to :attr:`Candidates.gap_links`.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from cellscale.track.costs import Candidates

__all__ = ["solve_lap", "solve_assignment"]

_BIG = 1e9


def solve_assignment(src: np.ndarray, dst: np.ndarray, cost: np.ndarray,
                     row_cost: np.ndarray, col_cost: np.ndarray) -> np.ndarray:
    """Minimum-cost partial assignment over candidate pairs.

    ``src``/``dst`` are detection ids of the candidate pairs; each source is
    either assigned to one destination or left alone (``row_cost[src]``), each
    destination likewise (``col_cost[dst]``). Returns the indices of the chosen
    candidate pairs.
    """
    if src.size == 0:
        return np.zeros(0, np.int64)
    rows, ri = np.unique(src, return_inverse=True)
    cols, ci = np.unique(dst, return_inverse=True)
    nr, nc = rows.size, cols.size
    graph = coo_matrix((np.ones(ri.size), (ri, nr + ci)), shape=(nr + nc, nr + nc))
    _, comp = connected_components(graph, directed=False)
    comp_r, comp_c = comp[:nr], comp[nr:]
    pair_comp = comp_r[ri]
    # a component of one candidate (one row, one column): linked if cheaper (all such at once)
    alone = np.bincount(pair_comp)[pair_comp] == 1
    chosen = [np.flatnonzero(alone & (cost < row_cost[src] + col_cost[dst]))]
    order = np.flatnonzero(~alone)
    order = order[np.argsort(pair_comp[order], kind="stable")]
    bounds = np.flatnonzero(np.diff(pair_comp[order])) + 1
    r_order = np.argsort(comp_r, kind="stable")
    c_order = np.argsort(comp_c, kind="stable")
    r_sorted, c_sorted = comp_r[r_order], comp_c[c_order]
    for sl in np.split(order, bounds) if order.size else ():
        k = pair_comp[sl[0]]
        rr = r_order[np.searchsorted(r_sorted, k):np.searchsorted(r_sorted, k, side="right")]
        cc = c_order[np.searchsorted(c_sorted, k):np.searchsorted(c_sorted, k, side="right")]
        m_r, m_c = rr.size, cc.size
        rloc = np.searchsorted(rr, ri[sl])
        cloc = np.searchsorted(cc, ci[sl])
        m = np.full((m_r + m_c, m_c + m_r), _BIG)
        m[rloc, cloc] = cost[sl]
        m[np.arange(m_r), m_c + np.arange(m_r)] = row_cost[rows[rr]]
        m[m_r + np.arange(m_c), np.arange(m_c)] = col_cost[cols[cc]]
        m[m_r:, m_c:] = 0.0
        r_idx, c_idx = linear_sum_assignment(m)
        sel = (r_idx < m_r) & (c_idx < m_c)
        r_idx, c_idx = r_idx[sel], c_idx[sel]
        hit = np.full((m_r, m_c), -1, dtype=np.int64)
        hit[rloc, cloc] = sl
        picked = hit[r_idx, c_idx]
        chosen.append(picked[picked >= 0])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def solve_lap(n: int, frame: np.ndarray, cand: Candidates, min_cycle_frames: int = 1) -> tuple[np.ndarray, dict]:
    """Predecessor of every detection (-1: none) and counts of the stages."""
    pred = np.full(n, -1, dtype=np.int64)
    out_cost = np.full(n, np.nan)  # cost of the chosen forward link
    succ_of = np.full(n, -1, dtype=np.int64)  # the one successor chosen by stage 1

    # 1. frame to frame (all frame pairs at once: the candidate graph only
    # joins consecutive frames, so its components are per frame pair)
    one = np.flatnonzero(cand.dt == 1)
    pick = one[solve_assignment(cand.src[one], cand.dst[one], cand.link_cost[one],
                                cand.disappear, cand.appear)]
    pred[cand.dst[pick]] = cand.src[pick]
    succ_of[cand.src[pick]] = cand.dst[pick]
    out_cost[cand.src[pick]] = cand.link_cost[pick]
    n_links = int(pick.size)

    # 2. divisions, by decreasing saving
    n_div = n_split = 0
    if cand.mother.size:
        m, a, b = cand.mother, cand.daughter_a, cand.daughter_b
        cont = succ_of[m]
        start_a, start_b = pred[a] < 0, pred[b] < 0
        ends = cont < 0
        via_a = (cont == a) & start_b  # stage 1 linked m to a
        via_b = (cont == b) & start_a
        now = np.where(ends & start_a & start_b,
                       cand.disappear[m] + cand.appear[a] + cand.appear[b], np.inf)
        now = np.where(via_a, out_cost[m] + cand.appear[b], now)
        now = np.where(via_b, out_cost[m] + cand.appear[a], now)
        saving = now - cand.division_cost
        ok = np.flatnonzero(np.isfinite(saving) & (saving > 0))
        ok = ok[np.argsort(-saving[ok], kind="stable")]
        used_m: set[int] = set()
        used_d: set[int] = set()
        first = int(frame.min()) if n else 0
        for k in ok:
            mk, ak, bk = int(m[k]), int(a[k]), int(b[k])
            if mk in used_m or ak in used_d or bk in used_d:
                continue
            # a cell born in this frame (daughter, or new track) does not divide at once
            if min_cycle_frames >= 2 and (mk in used_d or (pred[mk] < 0 and frame[mk] > first)):
                continue
            if min_cycle_frames >= 2 and (ak in used_m or bk in used_m):
                continue
            used_m.add(mk)
            used_d.update((ak, bk))
            if succ_of[mk] >= 0:
                n_split += 1
            succ_of[mk] = -2  # divided
            pred[ak] = pred[bk] = mk
            n_div += 1

    # 3. gap closing between remaining ends and starts
    n_gaps = n_gap_candidates = 0
    if cand.gap_links is not None:  # (enumerated now, between the ends and starts only)
        g_src, g_dst, _, g_cost = cand.gap_links(np.flatnonzero(succ_of == -1), np.flatnonzero(pred < 0))
    else:
        gap = np.flatnonzero(cand.dt > 1)
        gap = gap[(succ_of[cand.src[gap]] == -1) & (pred[cand.dst[gap]] < 0)]
        g_src, g_dst, g_cost = cand.src[gap], cand.dst[gap], cand.link_cost[gap]
    if g_src.size:
        n_gap_candidates = int(g_src.size)
        pick = solve_assignment(g_src, g_dst, g_cost, cand.disappear, cand.appear)
        pred[g_dst[pick]] = g_src[pick]
        n_gaps = int(pick.size)
    return pred, {"n_links": n_links, "n_divisions": n_div, "n_divisions_split_from_link": n_split,
                  "n_gap_candidates": n_gap_candidates, "n_gaps_closed": n_gaps}
