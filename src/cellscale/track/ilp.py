"""Accurate solver: one integer program over a window of frames.

Every candidate event of :mod:`cellscale.track.costs` is a binary variable:
links (consecutive frames and across gaps), divisions ``m -> (a, b)``, and a
start and an end for every detection. The program picks the cheapest set in
which every detection has exactly one beginning and exactly one ending::

    minimise   sum(cost * x)
    subject to appear_j + sum(links into j) + sum(divisions with daughter j) = 1   for every j
               disappear_i + sum(links out of i) + sum(divisions with mother i) = 1 for every i

so divisions, gaps, appearances and disappearances are resolved jointly,
as ultrack and the CTC-winning trackers do. Solved with HiGHS (through
``scipy.optimize.milp``) or CBC (through PuLP).

Long movies are solved in windows of ``window`` frames that overlap by
``max_gap + 2`` frames: the decisions of the first part of a window are
kept, and the next window starts where the undecided part begins (its
detections whose beginning is already decided get no beginning variables).
The last frame of a window is treated like the last frame of the movie
(ending there is free) but its decisions are never kept.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from scipy.optimize import LinearConstraint, milp
from scipy.sparse import coo_matrix

from cellscale.track.config import TrackConfig
from cellscale.track.costs import Candidates

__all__ = ["solve_ilp"]

logger = logging.getLogger(__name__)

_AUTO_WINDOW_DETECTIONS = 20000


def _window_frames(frame: np.ndarray, n_frames: int, cfg: TrackConfig) -> int:
    if cfg.window is not None:
        return int(cfg.window)
    per_frame = max(frame.size / max(n_frames, 1), 1.0)
    if frame.size <= _AUTO_WINDOW_DETECTIONS:
        return max(n_frames, 2)
    return max(int(_AUTO_WINDOW_DETECTIONS / per_frame), 2 * (cfg.max_gap + 2), 4)


def solve_ilp(n: int, frame: np.ndarray, n_frames: int, cand: Candidates,
              cfg: TrackConfig) -> tuple[np.ndarray, dict]:
    """Predecessor of every detection (-1: none) and solver statistics."""
    pred = np.full(n, -1, dtype=np.int64)
    begun = np.zeros(n, dtype=bool)  # beginning already decided by a kept window
    stats = {"n_links": 0, "n_divisions": 0, "n_gaps_closed": 0, "ilp_windows": 0,
             "ilp_variables": 0, "ilp_status": [], "ilp_seconds": 0.0}
    if n == 0:
        return pred, stats
    width = _window_frames(frame, n_frames, cfg)
    overlap = cfg.max_gap + 2
    lo = int(frame.min())
    last = int(frame.max())
    while True:
        hi = min(lo + width - 1, last)  # window frames lo..hi
        keep_below = hi + 1 if hi == last else max(hi - overlap + 1, lo + 1)
        _solve_window(lo, hi, keep_below, hi == last, frame, cand, cfg, pred, begun, stats)
        if hi == last:
            break
        lo = keep_below
    stats["ilp_status"] = sorted(set(stats["ilp_status"]))
    return pred, stats


def _solve_window(lo, hi, keep_below, is_last, frame, cand, cfg, pred, begun, stats):
    in_win = (frame >= lo) & (frame <= hi)
    det = np.flatnonzero(in_win)
    if det.size == 0:
        return
    # links and divisions whose every end is in the window and whose target
    # has no decided beginning
    open_target = in_win & ~begun
    lk = np.flatnonzero(in_win[cand.src] & open_target[cand.dst])
    dv = np.flatnonzero(in_win[cand.mother] & open_target[cand.daughter_a]
                        & open_target[cand.daughter_b])
    app = det[~begun[det]]
    dis = det
    dis_cost = cand.disappear[dis].copy()
    if not is_last:
        dis_cost[frame[dis] == hi] = 0.0
    n_l, n_d, n_a = lk.size, dv.size, app.size
    n_var = n_l + n_d + n_a + dis.size
    c = np.concatenate([cand.link_cost[lk], cand.division_cost[dv], cand.appear[app], dis_cost])

    # constraint rows: beginning of each open detection, ending of each detection
    row_in = np.full(frame.size, -1, dtype=np.int64)
    row_in[app] = np.arange(n_a)
    row_out = np.full(frame.size, -1, dtype=np.int64)
    row_out[dis] = n_a + np.arange(dis.size)
    var_l = np.arange(n_l)
    var_d = n_l + np.arange(n_d)
    var_a = n_l + n_d + np.arange(n_a)
    var_e = n_l + n_d + n_a + np.arange(dis.size)
    rows = np.concatenate([row_in[cand.dst[lk]], row_out[cand.src[lk]],
                           row_in[cand.daughter_a[dv]], row_in[cand.daughter_b[dv]],
                           row_out[cand.mother[dv]], row_in[app], row_out[dis]])
    cols = np.concatenate([var_l, var_l, var_d, var_d, var_d, var_a, var_e])
    n_rows = n_a + dis.size
    a_mat = coo_matrix((np.ones(rows.size), (rows, cols)), shape=(n_rows, n_var)).tocsr()
    late = frame[app] > frame.min()  # appearing after the first frame: a new cell
    b_mat, b_ub = _cycle_constraints(cand, lk, dv, app[late], var_l, var_d, var_a[late], n_var,
                                     cfg.min_cycle_frames)

    t0 = time.perf_counter()
    x, status = _solve(c, a_mat, b_mat, b_ub, cfg)
    stats["ilp_seconds"] += time.perf_counter() - t0
    stats["ilp_windows"] += 1
    stats["ilp_variables"] += n_var
    stats["ilp_status"].append(status)

    chosen_l = lk[x[:n_l] > 0.5]
    chosen_d = dv[x[n_l:n_l + n_d] > 0.5]
    # keep the decisions about endings of frames < keep_below (targets may lie beyond)
    chosen_l = chosen_l[frame[cand.src[chosen_l]] < keep_below]
    chosen_d = chosen_d[frame[cand.mother[chosen_d]] < keep_below]
    pred[cand.dst[chosen_l]] = cand.src[chosen_l]
    begun[cand.dst[chosen_l]] = True
    for arr in (cand.daughter_a[chosen_d], cand.daughter_b[chosen_d]):
        pred[arr] = cand.mother[chosen_d]
        begun[arr] = True
    # every detection of a kept frame has its beginning decided now
    begun[det[frame[det] < keep_below]] = True
    stats["n_links"] += int((cand.dt[chosen_l] == 1).sum())
    stats["n_gaps_closed"] += int((cand.dt[chosen_l] > 1).sum())
    stats["n_divisions"] += int(chosen_d.size)


def _cycle_constraints(cand, lk, dv, app, var_l, var_d, var_a, n_var, min_cycle):
    """Rows ``B x <= ub`` forbidding a cell born by division (or appearing
    after the first frame, ``app``) to divide before it has lived
    ``min_cycle`` frames (2: not in its first frame; 3: not in its first two)."""
    if min_cycle < 2 or dv.size == 0:
        return None, None
    n = cand.appear.size
    # "birth" variables (daughter of a division, late appearance) and division variables by mother
    d_of = [np.concatenate([cand.daughter_a[dv], cand.daughter_b[dv], app]),
            np.concatenate([var_d, var_d, var_a])]
    m_of = [cand.mother[dv], var_d]
    born = np.zeros(n, bool)
    born[d_of[0]] = True
    divides = np.zeros(n, bool)
    divides[m_of[0]] = True
    rows, cols, ub = [], [], []
    r = 0
    # (a) div_in(j) + div_out(j) <= 1 for every j that can be both
    both = np.flatnonzero(born & divides)
    row_of = np.full(n, -1, np.int64)
    row_of[both] = np.arange(both.size)
    for det, var in (d_of, m_of):
        keep = row_of[det] >= 0
        rows.append(row_of[det[keep]])
        cols.append(var[keep])
    ub.append(np.ones(both.size))
    r = both.size
    if min_cycle >= 3:
        # (b) div_in(j) + link(j -> k) + div_out(k) <= 2 for consecutive links
        one = np.flatnonzero(cand.dt[lk] == 1)
        sel = one[born[cand.src[lk[one]]] & divides[cand.dst[lk[one]]]]
        link_row = r + np.arange(sel.size)
        row_by_src: dict[int, list[int]] = {}
        row_by_dst: dict[int, list[int]] = {}
        for k, i in zip(link_row, sel):
            row_by_src.setdefault(int(cand.src[lk[i]]), []).append(int(k))
            row_by_dst.setdefault(int(cand.dst[lk[i]]), []).append(int(k))
        rows.append(link_row)
        cols.append(var_l[sel])
        for det, var, table in ((d_of[0], d_of[1], row_by_src), (m_of[0], m_of[1], row_by_dst)):
            pr, pc = [], []
            for j, v in zip(det.tolist(), var.tolist()):
                for k in table.get(j, ()):
                    pr.append(k)
                    pc.append(v)
            rows.append(np.asarray(pr, np.int64))
            cols.append(np.asarray(pc, np.int64))
        ub.append(np.full(sel.size, 2.0))
        r += sel.size
    if r == 0:
        return None, None
    rows_a, cols_a = np.concatenate(rows), np.concatenate(cols)
    b = coo_matrix((np.ones(rows_a.size), (rows_a, cols_a)), shape=(r, n_var)).tocsr()
    return b, np.concatenate(ub)


def _solve(c: np.ndarray, a_mat, b_mat, b_ub, cfg: TrackConfig) -> tuple[np.ndarray, str]:
    if cfg.ilp_backend == "highs":
        cons = [LinearConstraint(a_mat, 1.0, 1.0)]
        if b_mat is not None:
            cons.append(LinearConstraint(b_mat, -np.inf, b_ub))
        res = milp(c, constraints=cons,
                   integrality=np.ones(c.size), bounds=(0, 1),
                   options={"time_limit": float(cfg.time_limit), "disp": False})
        if res.x is None:
            raise RuntimeError(f"integer program found no solution: {res.message}")
        status = "optimal" if res.status == 0 else f"stopped ({res.message})"
        if res.status != 0:
            logger.warning("integer program: %s; using the best solution found", res.message)
        return np.round(res.x), status
    return _solve_cbc(c, a_mat, b_mat, b_ub, cfg)


def _solve_cbc(c: np.ndarray, a_mat, b_mat, b_ub, cfg: TrackConfig) -> tuple[np.ndarray, str]:
    import warnings

    import pulp

    prob = pulp.LpProblem("tracking", pulp.LpMinimize)
    if hasattr(prob, "add_variable"):  # PuLP >= 3.3
        xs = [prob.add_variable(f"x{i}", 0, 1, cat="Binary") for i in range(c.size)]
    else:  # pragma: no cover - older PuLP
        xs = [pulp.LpVariable(f"x{i}", 0, 1, cat="Binary") for i in range(c.size)]
    prob += pulp.LpAffineExpression(zip(xs, c.tolist()))
    a_mat = a_mat.tocsr()
    for r in range(a_mat.shape[0]):
        idx = a_mat.indices[a_mat.indptr[r]:a_mat.indptr[r + 1]]
        prob += pulp.LpAffineExpression([(xs[i], 1.0) for i in idx]) == 1, f"c{r}"
    if b_mat is not None:
        for r in range(b_mat.shape[0]):
            idx = b_mat.indices[b_mat.indptr[r]:b_mat.indptr[r + 1]]
            prob += pulp.LpAffineExpression([(xs[i], 1.0) for i in idx]) <= float(b_ub[r]), f"b{r}"
    with warnings.catch_warnings():  # PULP_CBC_CMD (the bundled CBC) is deprecated for PuLP 4
        warnings.simplefilter("ignore", DeprecationWarning)
        solver = pulp.PULP_CBC_CMD(msg=False, timeLimit=float(cfg.time_limit))
        prob.solve(solver)
    status = pulp.LpStatus[prob.status]
    if prob.status != pulp.LpStatusOptimal:
        logger.warning("integer program (CBC): status %s", status)
    x = np.array([v.value() or 0.0 for v in xs])
    return np.round(x), status.lower()
