"""Dense-data features, the learned scorer of links and divisions and ``link(costs="learned")``."""

from __future__ import annotations

import numpy as np
import pytest

from cellscale.cli import main
from cellscale.synth.colony import PRESETS, make_colony
from cellscale.synth.timelapse import write_ctc_ground_truth
from cellscale.track import TrackConfig, detections_from_labels, link
from cellscale.track.evaluate import ReferenceMatching, evaluate_tracks
from cellscale.track.features import (DIVISION_FEATURES, LINK_FEATURES, FrameFeatures, compensated_overlaps,
                                      division_features, link_features, local_motion, local_motions,
                                      shape_moments)
from cellscale.track.scorer import Scorer, load_scorer, predict_trees, shipped_scorer_dir
from cellscale.track.training import jitter_labels, training_rows, truth_of_candidates

SHIPPED = shipped_scorer_dir()


def _rod(shape, r0, r1, c0, c1, value, out=None):
    out = np.zeros(shape, np.int32) if out is None else out
    out[r0:r1, c0:c1] = value
    return out


# --- features on hand-made cases --------------------------------------------
def test_shape_moments_of_rods():
    f = _rod((40, 60), 10, 16, 5, 45, 1)  # horizontal rod: 6 x 40
    _rod((40, 60), 2, 38, 50, 54, 2, out=f)  # vertical rod: 36 x 4
    m = shape_moments(f, np.array([1, 2]))
    assert abs(abs(m[0, 0]) - np.pi / 2) < 1e-6  # long axis along x
    assert abs(m[1, 0]) < 1e-6  # long axis along y
    # 4 sqrt(variance) of a uniform bar is 4 * L / sqrt(12) = 1.155 L
    assert m[0, 1] == pytest.approx(40 * 4 / np.sqrt(12), rel=0.01)
    assert m[0, 2] == pytest.approx(6 * 4 / np.sqrt(12), rel=0.01)
    assert m[1, 1] / m[1, 2] > 8


def test_local_motion_recovers_a_collective_shift():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 200, size=(60, 2))
    shift = np.array([3.0, -2.0])
    v = local_motion(p, p + shift + rng.normal(0, 0.2, size=p.shape))
    np.testing.assert_allclose(np.median(v, 0), shift, atol=0.3)


def test_local_motions_of_a_movie_equal_those_of_each_frame_pair():
    """All frame pairs at once give each pair's own local_motion: frames of many and of few (< k) points, an
    empty frame, and a last frame (zero)."""
    rng = np.random.default_rng(3)
    counts = [40, 45, 5, 30, 0, 25, 50]
    pos = np.concatenate([rng.uniform(0, 300, size=(c, 2)) + 4.0 * t for t, c in enumerate(counts)])
    starts = np.r_[0, np.cumsum(counts)]
    got = local_motions(pos, starts)
    want = np.zeros_like(pos)
    for t in range(len(counts) - 1):
        a, b = slice(starts[t], starts[t + 1]), slice(starts[t + 1], starts[t + 2])
        want[a] = local_motion(pos[a], pos[b])
    np.testing.assert_array_equal(got, want)
    assert np.abs(got[:starts[3]]).min() > 0 and not got[starts[3]:starts[4]].any()  # frame 3: next one empty
    assert not got[starts[-2]:].any()


def test_compensated_overlap_of_a_moved_cell_is_one():
    a = _rod((50, 50), 10, 16, 5, 30, 7)
    b = _rod((50, 50), 14, 20, 9, 34, 3)  # moved by (4, 4)
    ia, ib, inter, aa, ab = compensated_overlaps(a, np.array([7]), b, np.array([3]), np.array([[4.0, 4.0]]))
    assert ia.tolist() == [0] and ib.tolist() == [0] and inter[0] == aa[0] == ab[0] == 6 * 25
    _, _, inter0, _, _ = compensated_overlaps(a, np.array([7]), b, np.array([3]), np.zeros((1, 2)))
    assert inter0[0] < inter[0]


def _division_scene():
    """Frame 0: mother (1) with a neighbour (2) below it; frame 1: the mother's two halves (3, 4) side by side
    where she was, the neighbour (2) still there."""
    shape = (60, 80)
    f0 = _rod(shape, 20, 27, 10, 50, 1)
    _rod(shape, 27, 34, 10, 50, 2, out=f0)
    f1 = _rod(shape, 20, 27, 10, 29, 3)
    _rod(shape, 20, 27, 31, 50, 4, out=f1)
    _rod(shape, 27, 34, 10, 50, 2, out=f1)
    return f0, f1


def test_division_features_prefer_the_true_split():
    f0, f1 = _division_scene()
    keys0, keys1 = np.array([1, 2]), np.array([2, 3, 4])
    det = detections_from_labels(np.stack([f0, f1]))
    pos = det[["y", "x"]].to_numpy(float)
    ff = FrameFeatures(f0, keys0, f1, keys1, pos[:2], pos[2:])
    # candidates: mother 0 -> (3, 4) [true], mother 0 -> (3, neighbour 2) [wrong]
    x = division_features(ff, np.array([0, 0]), np.array([1, 1]), np.array([2, 0]), pos[:2], pos[2:])
    col = {name: x[:, k] for k, name in enumerate(DIVISION_FEATURES)}
    assert col["mother_covered"][0] > 0.9 > col["mother_covered"][1]
    assert col["daughters_inside"][0] > 0.9 > col["daughters_inside"][1]
    assert col["split_along_axis"][0] > 0.99 > col["split_along_axis"][1]
    assert abs(col["log_area_sum_ratio"][0]) < 0.1 < abs(col["log_area_sum_ratio"][1])
    assert col["touch"][0] == 0 and col["touch"][1] == 1
    # links: the neighbour continues (IoU 1), the mother overlaps each half by about half
    lx = link_features(ff, np.array([1, 0]), np.array([0, 1]), pos[:2], pos[2:], md=10.0)
    assert lx[0, LINK_FEATURES.index("iou_compensated")] == pytest.approx(1.0)
    assert lx[1, LINK_FEATURES.index("iou_compensated")] < 0.6


def test_shipped_scorer_scores_the_true_split_better():
    f0, f1 = _division_scene()
    det = detections_from_labels(np.stack([f0, f1]))
    pos = det[["y", "x"]].to_numpy(float)
    ff = FrameFeatures(f0, np.array([1, 2]), f1, np.array([2, 3, 4]), pos[:2], pos[2:])
    x = division_features(ff, np.array([0, 0]), np.array([1, 1]), np.array([2, 0]), pos[:2], pos[2:])
    cost = load_scorer().division_cost(x)
    assert cost[0] < cost[1]


def test_truth_of_candidates():
    import pandas as pd

    lineage = pd.DataFrame({"L": [1, 2, 3, 4], "B": [0, 0, 1, 1], "E": [0, 1, 1, 1], "P": [0, 0, 1, 1]})
    label = np.array([1, 2, 2, 3, 4])  # rows: frame 0 (1, 2), frame 1 (2, 3, 4)
    lt, dt = truth_of_candidates(label, np.array([1, 0]), np.array([2, 2]), np.array([0, 0]), np.array([3, 2]),
                                 np.array([4, 3]), lineage)
    assert lt.tolist() == [True, False] and dt.tolist() == [True, False]


# --- the scorer's format ------------------------------------------------------
def test_tree_arrays_predict_as_scikit_learn(tmp_path):
    import sklearn.ensemble as sklearn_ensemble
    from cellscale.track.scorer import export_trees

    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 4))
    y = (x[:, 0] + 0.5 * x[:, 1] ** 2 + 0.3 * rng.normal(size=400) > 0.4).astype(int)
    model = sklearn_ensemble.HistGradientBoostingClassifier(max_iter=20, early_stopping=False).fit(x, y)
    trees = export_trees(model)
    np.testing.assert_allclose(predict_trees(trees, x), model.predict_proba(x)[:, 1], rtol=1e-12, atol=1e-12)
    # round trip through the folder format (no pickle)
    Scorer(trees, trees, {"note": "test"}).save(tmp_path / "s")
    with pytest.raises(ValueError, match="other features"):  # 4 features are not LINK_FEATURES
        import json

        meta = json.loads((tmp_path / "s" / "scorer.json").read_text())
        meta["link_features"] = ["a", "b", "c", "d"]
        (tmp_path / "s" / "scorer.json").write_text(json.dumps(meta))
        Scorer.load(tmp_path / "s")


def test_config_validates_costs():
    assert TrackConfig().costs == "auto"  # the schema's default
    with pytest.raises(ValueError, match="costs"):
        TrackConfig(costs="magic")


def test_learned_costs_need_labels():
    tl = make_colony(n_frames=4, shape=(64, 64), n_founders=2, seed=5)
    det = detections_from_labels(tl.labels)
    with pytest.raises(ValueError, match="label images"):
        link(det, costs="learned")


# --- the shipped scorer on a generated colony it never saw ---------------------
@pytest.fixture(scope="module")
def hard_colony(tmp_path_factory):
    tl = make_colony(**{**PRESETS["hard"], "n_frames": 24, "shape": (224, 224), "seed": 301})
    gt = tmp_path_factory.mktemp("hard") / "01_GT"
    write_ctc_ground_truth(tl, gt)
    return tl, ReferenceMatching(tl.labels, gt)


def test_learned_costs_beat_rules_on_a_hard_colony(hard_colony):
    tl, match = hard_colony
    det = detections_from_labels(tl.labels, tl.image)
    rules = evaluate_tracks(link(det, tl.labels), match)
    learned_tracks = link(det, tl.labels, costs="learned")
    learned = evaluate_tracks(learned_tracks, match)
    assert learned["n_divisions_true"] >= 10
    assert learned["division_f1"] >= rules["division_f1"]
    assert learned["division_f1"] >= 0.9 and learned["TRA"] >= 0.99
    # deterministic: the same input gives the same tracks
    again = link(det, tl.labels, costs="learned")
    assert again[["frame", "label", "track_id", "parent_track_id"]].equals(
        learned_tracks[["frame", "label", "track_id", "parent_track_id"]])
    # and the integer program with the same costs agrees on the divisions' quality
    ilp = evaluate_tracks(link(det, tl.labels, costs="learned", solver="ilp"), match)
    assert ilp["division_f1"] >= 0.9


def test_shipped_scorer_loads_without_pickle():
    s = Scorer.load(SHIPPED)
    assert s.meta["link_features"] == list(LINK_FEATURES)
    assert s.meta["division_features"] == list(DIVISION_FEATURES)
    assert "trained_on" in s.meta and "sklearn_version" in s.meta
    assert sum(p.stat().st_size for p in SHIPPED.iterdir()) < 2_000_000


# --- training -------------------------------------------------------------------
def test_jitter_labels_keeps_every_object():
    tl = make_colony(n_frames=3, shape=(96, 96), n_founders=3, seed=2)
    j = jitter_labels(tl.labels, seed=1, p=1.0)
    for t in range(3):
        assert set(np.unique(j[t])) == set(np.unique(tl.labels[t]))
    assert not np.array_equal(j, tl.labels)


def test_training_rows_hold_every_true_division():
    tl = make_colony(**{**PRESETS["hard"], "n_frames": 16, "shape": (160, 160), "seed": 7})
    xl, yl, xd, yd = training_rows(tl.labels, tl.lineage)
    assert xl.shape[1] == len(LINK_FEATURES) and xd.shape[1] == len(DIVISION_FEATURES)
    n_div = int((tl.lineage["P"] > 0).sum() // 2)
    assert n_div > 0 and int(yd.sum()) == n_div  # the enumeration keeps every true division
    assert yl.sum() > 0 and (~yl).sum() > 0


def test_training_rows_of_a_drifting_dense_colony_hold_every_true_division():
    """Per mother only a few daughter pairs are scored; ranked by the rule cost alone (the mother where she
    was) the true pair of a drifting, packed colony fell out of them (99 of 101 kept here), ranked by the
    rule cost less the fraction of the moved mother the pair covers it stays."""
    tl = make_colony(**{**PRESETS["hard"], "drift": (3.0, -2.0), "n_frames": 40, "seed": 7})
    _, _, _, yd = training_rows(tl.labels, tl.lineage)
    n_div = int((tl.lineage["P"] > 0).sum() // 2)
    assert n_div > 80 and int(yd.sum()) == n_div


def test_random_colony_params_are_seeded_varied_and_valid():
    from cellscale.synth.colony import random_colony_params

    a, b = random_colony_params(21), random_colony_params(21)
    assert a == b and a["seed"] == 21
    draws = [random_colony_params(s) for s in range(21, 37)]
    assert {d["cell_shape"] for d in draws} == {"rod", "round"}
    assert any(d["drift"] != (0.0, 0.0) for d in draws) and any(d["drift"] == (0.0, 0.0) for d in draws)
    for d in draws:
        assert 5.0 <= d["width"] <= 20.0 and d["length"] >= d["width"] and 20 <= d["n_frames"] <= 50
        assert 5.0 <= d["doubling"] <= 14.0 and 0.2 <= d["motion"] <= 3.0 and np.hypot(*d["drift"]) <= 4.0
    small = make_colony(**{**random_colony_params(22), "n_frames": 4, "shape": (128, 128)})
    assert small.labels.shape == (4, 128, 128) and small.labels[0].max() > 0


def test_train_tracker_command_writes_a_working_scorer(tmp_path, capsys, monkeypatch):
    out = tmp_path / "scorer"
    argv = ["train-tracker", "-o", str(out), "--trees", "3", "--movies", "1", "--frames", "10"]
    monkeypatch.setattr("sys.argv", ["cellscale", *argv])  # as the command line runs it (its record's command)
    assert main(argv) == 0
    assert "3 trees each" in capsys.readouterr().out
    s = Scorer.load(out)
    assert s.meta["max_iter"] == 3 and s.meta["trained_on"][0]["seed"] == 1 and s.meta["weighting"] == "movie-divisions"
    # the registry's facts of a scorer: its date and command (models list|show)
    assert s.meta["command"] == "cellscale " + " ".join(argv) and len(s.meta["trained"]) == 10
    tl = make_colony(n_frames=6, shape=(96, 96), n_founders=3, seed=9)
    tracks = link(tl.labels, costs="learned", scorer=str(out))
    assert len(tracks) == len(detections_from_labels(tl.labels))
    assert tracks.attrs["costs"] == "learned"


def test_auto_costs_choose_learned_for_packed_cells_and_rules_for_separated_ones(hard_colony):
    """auto: the crowding (nearest neighbour / equivalent diameter) of a packed colony is low, of sparse nuclei
    high; the choice is recorded, and without label images auto falls back to the rules."""
    from cellscale.synth.timelapse import make_timelapse
    from cellscale.track.costs import crowding

    tl, _ = hard_colony
    packed = detections_from_labels(tl.labels)
    sparse_tl = make_timelapse(n_frames=6, seed=2)
    sparse = detections_from_labels(sparse_tl.labels)
    c_packed = crowding(packed["frame"].to_numpy(), packed[["y", "x"]].to_numpy(float), packed["area"].to_numpy(float))
    c_sparse = crowding(sparse["frame"].to_numpy(), sparse[["y", "x"]].to_numpy(float), sparse["area"].to_numpy(float))
    assert c_packed < TrackConfig().auto_crowding < c_sparse
    auto = link(packed, tl.labels)
    assert auto.attrs["costs_used"] == "learned" and auto.attrs["crowding"] == pytest.approx(c_packed)
    learned = link(packed, tl.labels, costs="learned")
    assert auto[["track_id", "parent_track_id"]].equals(learned[["track_id", "parent_track_id"]])
    assert link(sparse, sparse_tl.labels).attrs["costs_used"] == "rules"
    assert link(packed).attrs["costs_used"] == "rules"  # no label images: the rules
    assert link(packed, tl.labels, costs="rules").attrs["costs_used"] == "rules"
