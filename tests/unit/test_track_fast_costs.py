"""The movie-at-once candidate costs and the bitmask tree evaluation give exactly the numbers of the
frame-by-frame reference (:class:`cellscale.track.features.FrameFeatures`, the tree walk)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cellscale.synth.colony import PRESETS, make_colony
from cellscale.track import TrackConfig, detections_from_labels
from cellscale.track.costs import (_FrameLayers, _lowest_per_group, _pairs_within, build_candidates,
                                   estimate_max_distance)
from cellscale.track.features import FrameFeatures, division_features, link_features
from cellscale.track.scorer import _predict_walk, _RankGrid, load_scorer, predict_trees


def _movie(kind: str):
    if kind == "rods":  # packed rods, stride 1
        tl = make_colony(**{**PRESETS["hard"], "n_frames": 16, "shape": (160, 160), "seed": 11})
        return tl.labels, tl.image
    # large cells: the overlap grid has a stride > 1; an empty frame in the middle
    tl = make_colony(**{**PRESETS["hard"], "n_frames": 10, "shape": (160, 160), "seed": 12, "width": 20.0,
                        "length": 44.0, "n_founders": 4})
    labels = tl.labels.copy()
    labels[5] = 0
    return labels, tl.image


@pytest.mark.parametrize("kind", ["rods", "large"])
def test_movie_features_equal_the_frame_by_frame_reference(kind):
    labels, image = _movie(kind)
    det = detections_from_labels(labels, image)
    frame, label = det["frame"].to_numpy(), det["label"].to_numpy()
    pos, area = det[["y", "x"]].to_numpy(float), det["area"].to_numpy(float)
    inten = det["mean_intensity"].to_numpy(float)
    md = estimate_max_distance(frame, pos, area)
    rows: dict = {}
    build_candidates(frame, label, pos, area, inten, labels.shape[0], labels, labels.shape[1:], md,
                     TrackConfig(costs="rules"), features_out=rows)
    assert len(rows["link_x"]) > 40 and len(rows["division_x"]) > 40
    stride = max(1, int(math.sqrt(float(np.median(area)) / 100.0)))
    assert (stride == 1) == (kind == "rods")
    starts = np.searchsorted(frame, np.arange(labels.shape[0] + 1))
    n_link = n_div = 0
    for t in range(labels.shape[0] - 1):
        a, b = slice(starts[t], starts[t + 1]), slice(starts[t + 1], starts[t + 2])
        if starts[t] == starts[t + 1] or starts[t + 1] == starts[t + 2]:
            continue
        ff = FrameFeatures(labels[t], label[a], labels[t + 1], label[b], pos[a], pos[b], stride)
        sel = np.flatnonzero(frame[rows["link_src"]] == t)
        x = rows["link_x"][sel]
        ref = link_features(ff, rows["link_src"][sel] - starts[t], rows["link_dst"][sel] - starts[t + 1], pos[a],
                            pos[b], md, inten[a], inten[b], rule_cost=x[:, -1])
        np.testing.assert_array_equal(x, ref)
        n_link += len(sel)
        sel = np.flatnonzero(frame[rows["mother"]] == t)
        x = rows["division_x"][sel]
        ref = division_features(ff, rows["mother"][sel] - starts[t], rows["daughter_a"][sel] - starts[t + 1],
                                rows["daughter_b"][sel] - starts[t + 1], pos[a], pos[b], inten[b],
                                rule_cost=x[:, -1])
        np.testing.assert_array_equal(x, ref)
        n_div += len(sel)
    assert n_link == len(rows["link_x"]) and n_div == len(rows["division_x"])


def test_pairs_of_all_frames_at_once_equal_the_frame_by_frame_ones():
    rng = np.random.default_rng(3)
    frame = np.sort(rng.integers(0, 6, 400))
    pos = rng.uniform(0, 100, (400, 2))
    pos[5] = pos[4]  # a duplicate point
    layers = _FrameLayers(pos, frame, 40.0)
    starts = np.searchsorted(frame, np.arange(7))
    for dt, radius in ((1, 12.0), (2, 17.0), (1, rng.uniform(5, 30, 400))):
        got = layers.pairs(np.arange(400), np.arange(400), dt, radius)
        want_a, want_b = [], []
        for t in range(6 - dt):
            ia, ib = np.arange(starts[t], starts[t + 1]), np.arange(starts[t + dt], starts[t + dt + 1])
            r = radius if np.ndim(radius) == 0 else radius[ia]
            q, k = _pairs_within(pos[ib], pos[ia], r)
            want_a.append(ia[q])
            want_b.append(ib[k])
        np.testing.assert_array_equal(got[0], np.concatenate(want_a))
        np.testing.assert_array_equal(got[1], np.concatenate(want_b))


@pytest.mark.parametrize("values", ["ties", "many ties", "distinct", "small groups"])
def test_lowest_per_group_equals_a_full_sort(values):
    rng = np.random.default_rng(4)
    group = np.sort(rng.integers(0, {"small groups": 3000, "many ties": 100}.get(values, 300), 20000))
    value = {"ties": lambda: rng.integers(0, 12, group.size).astype(float),
             "many ties": lambda: rng.integers(0, 2, group.size).astype(float),  # (more than 4k tied: a full sort)
             "distinct": lambda: rng.normal(size=group.size),
             "small groups": lambda: np.r_[np.inf, rng.normal(size=group.size - 1)]}[values]()
    got = _lowest_per_group(group, value, 8)
    order = np.lexsort((value, group))
    g = group[order]
    first = np.r_[0, np.flatnonzero(np.diff(g)) + 1]
    rank = np.arange(g.size) - np.repeat(first, np.diff(np.r_[first, g.size]))
    np.testing.assert_array_equal(got, order[rank < 8])


def test_rank_grid_counts_the_thresholds_below_each_value_as_searchsorted_does():
    rng = np.random.default_rng(11)
    cases = [np.sort(rng.normal(size=300)),
             np.sort(np.r_[rng.normal(size=50), 1e9, -1e9]),  # a span set by two outliers
             np.sort(np.round(rng.uniform(0, 5, size=40))),  # repeated thresholds
             np.full(3, 2.5), np.array([0.0]), np.array([1.0, 1.0 + 1e-15])]  # (the last: a tiny span)
    for thr in cases:
        grid = _RankGrid(thr)
        x = np.r_[rng.normal(scale=2.0, size=5000), thr, np.nextafter(thr, np.inf), np.nextafter(thr, -np.inf),
                  np.inf, -np.inf, 1e300, -1e300]
        np.testing.assert_array_equal(grid.rank(x), np.searchsorted(thr, x, side="left"))


@pytest.mark.parametrize("leaves", [31, 50])  # 32-bit and 64-bit leaf masks
def test_bitmask_trees_equal_the_tree_walk(leaves):
    from sklearn.ensemble import HistGradientBoostingClassifier

    from cellscale.track.scorer import export_trees

    rng = np.random.default_rng(leaves)
    x = rng.normal(size=(3000, 6))
    x[:, 5] = np.round(x[:, 5])  # values on the thresholds
    y = (x[:, 0] * x[:, 1] + np.sin(3 * x[:, 2]) + 0.3 * rng.normal(size=3000) > 0.2).astype(int)
    model = HistGradientBoostingClassifier(max_iter=30, max_leaf_nodes=leaves, max_depth=None,
                                           early_stopping=False, random_state=0).fit(x, y)
    trees = export_trees(model)
    assert (leaves <= 32) == (max(np.diff(np.r_[trees["roots"], trees["leaf"].size])) <= 63)
    want = _predict_walk(trees, x)
    np.testing.assert_array_equal(predict_trees(trees, x), want)
    np.testing.assert_allclose(want, model.predict_proba(x)[:, 1], rtol=1e-12, atol=1e-12)
    # with a bound: the rows that may reach it keep their numbers, the others are those that cannot
    raw = np.log(want) - np.log1p(-want)
    bound = rng.uniform(-2, 2, len(x))
    got = predict_trees(trees, x, min_raw=bound)
    kept = ~np.isnan(got)
    np.testing.assert_array_equal(got[kept], want[kept])
    assert np.all(raw[~kept] < bound[~kept]) and kept.sum() < len(x)
    # NaN rows walk the trees
    xn = x[:50].copy()
    xn[::3, 2] = np.nan
    np.testing.assert_array_equal(predict_trees(trees, xn), _predict_walk(trees, xn))


def test_shipped_scorer_costs_with_a_bound_keep_every_cheap_candidate():
    rng = np.random.default_rng(5)
    scorer = load_scorer()
    labels, image = _movie("rods")
    det = detections_from_labels(labels, image)
    frame, pos, area = det["frame"].to_numpy(), det[["y", "x"]].to_numpy(float), det["area"].to_numpy(float)
    rows: dict = {}
    build_candidates(frame, det["label"].to_numpy(), pos, area, det["mean_intensity"].to_numpy(float),
                     labels.shape[0], labels, labels.shape[1:], estimate_max_distance(frame, pos, area),
                     TrackConfig(costs="rules"), features_out=rows)
    for cost, x in ((scorer.link_cost, rows["link_x"]), (scorer.division_cost, rows["division_x"])):
        full = cost(x)
        below = rng.uniform(0.3, 4.0, len(x))
        got = cost(x, keep_below=below)
        keep = full <= below
        assert keep.any() and (~keep).any()
        np.testing.assert_array_equal(got[keep], full[keep])
        assert np.all(got[~keep] > below[~keep])


def test_lazy_gap_links_are_the_gap_links_between_the_ends_and_starts_asked():
    """build_candidates(gaps="lazy") leaves out the gap links, and its gap_links(ends, starts) gives the gap links
    of gaps=True that join those rows; the LAP's tracks are the same either way."""
    from cellscale.track.lap import solve_lap

    rng = np.random.default_rng(6)
    labels, image = _movie("rods")
    det = detections_from_labels(labels, image)
    det = det[rng.random(len(det)) > 0.1].reset_index(drop=True)  # missing detections: gaps to close
    frame, pos, area = det["frame"].to_numpy(), det[["y", "x"]].to_numpy(float), det["area"].to_numpy(float)
    args = (frame, det["label"].to_numpy(), pos, area, det["mean_intensity"].to_numpy(float), labels.shape[0],
            labels, labels.shape[1:], estimate_max_distance(frame, pos, area))
    for costs in ("rules", "learned"):
        cfg = TrackConfig(costs=costs, max_gap=2)
        full = build_candidates(*args, cfg, gaps=True)
        lazy = build_candidates(*args, cfg, gaps="lazy")
        assert full.gap_links is None and lazy.gap_links is not None
        one = full.dt == 1
        for a, b in ((lazy.src, full.src[one]), (lazy.dst, full.dst[one]), (lazy.link_cost, full.link_cost[one]),
                     (lazy.mother, full.mother), (lazy.division_cost, full.division_cost)):
            np.testing.assert_array_equal(a, b)
        for share in (1.0, 0.3):
            ends = np.flatnonzero(rng.random(len(det)) < share)
            starts = np.flatnonzero(rng.random(len(det)) < share)
            g_src, g_dst, g_dt, g_cost = lazy.gap_links(ends, starts)
            sel = (full.dt > 1) & np.isin(full.src, ends) & np.isin(full.dst, starts)
            assert sel.sum() > 10
            want = np.lexsort((full.dst[sel], full.src[sel], full.dt[sel]))
            got = np.lexsort((g_dst, g_src, g_dt))
            for a, b in ((g_src, full.src[sel]), (g_dst, full.dst[sel]), (g_dt, full.dt[sel]),
                         (g_cost, full.link_cost[sel])):
                np.testing.assert_array_equal(a[got], b[want])
        pred_full, stats_full = solve_lap(len(det), frame, full)
        pred_lazy, stats_lazy = solve_lap(len(det), frame, lazy)
        np.testing.assert_array_equal(pred_lazy, pred_full)
        assert stats_lazy == stats_full and stats_full["n_gaps_closed"] > 0
    with pytest.raises(ValueError, match="gaps must be"):
        build_candidates(*args, TrackConfig(), gaps="later")


def test_assignment_by_components_equals_one_whole_assignment():
    """solve_assignment (components of one candidate decided at once, the others solved apart) chooses what one
    assignment over the whole augmented matrix chooses."""
    from scipy.optimize import linear_sum_assignment

    from cellscale.track.lap import _BIG, solve_assignment

    rng = np.random.default_rng(7)
    n = 300
    src = rng.integers(0, 150, 260)
    dst = 150 + np.where(rng.random(260) < 0.5, src, rng.integers(0, 150, 260))  # many one-candidate components
    key = np.unique(src * n + dst)
    src, dst = key // n, key % n
    cost = rng.uniform(0.0, 3.0, src.size)
    row_cost, col_cost = rng.uniform(0.5, 1.5, n), rng.uniform(0.5, 1.5, n)
    got = solve_assignment(src, dst, cost, row_cost, col_cost)
    m = np.full((2 * n, 2 * n), _BIG)
    m[src, dst] = cost
    m[np.arange(n), n + np.arange(n)] = row_cost
    m[n + np.arange(n), np.arange(n)] = col_cost
    m[n:, n:] = 0.0
    r, c = linear_sum_assignment(m)
    linked = {(int(a), int(b)) for a, b in zip(r, c) if a < n and b < n and m[a, b] < _BIG}
    assert {(int(a), int(b)) for a, b in zip(src[got], dst[got])} == linked
    assert np.all(np.diff(got) > 0) and len(linked) > 50


@pytest.mark.parametrize("costs", ["rules", "learned"])
def test_uint8_labels_up_to_255_track(costs):
    """8-bit label frames (a 0/255 mask, or labels up to 255) track like the same labels in a wider type (the label
    lookup's `top + 1` overflowed uint8)."""
    from cellscale.track.linking import link

    lab = np.zeros((4, 64, 64), np.uint8)
    for t in range(4):
        lab[t, 10 + t:20 + t, 10:20] = 255
        lab[t, 40:50, 40 + t:50 + t] = 7
    got = link(detections_from_labels(lab), labels=lab, costs=costs)
    wide = link(detections_from_labels(lab.astype(np.uint16)), labels=lab.astype(np.uint16), costs=costs)
    assert got[["frame", "label", "track_id"]].values.tolist() == wide[["frame", "label", "track_id"]].values.tolist()
    assert got.groupby("label")["track_id"].nunique().tolist() == [1, 1]
