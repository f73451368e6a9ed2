"""The two solvers (lap, ilp), their configuration, the fast scorer and the CTC data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from support import need_shared

from cellscale.cli import main as cli_main
from cellscale.track import (
    TrackConfig,
    ctc_lineage,
    detections_from_labels,
    evaluate_ctc,
    link,
    read_label_dir,
    write_ctc,
)
from cellscale.track.evaluate import ReferenceMatching, evaluate_tracks

# fixtures tl and gt: tests/conftest.py


def drop_detections(tl, fraction, seed):
    """Labels with a random ``fraction`` of objects erased (not in the first or last frame)."""
    rng = np.random.default_rng(seed)
    labels = tl.labels.copy()
    det = detections_from_labels(labels)
    inner = det[(det["frame"] > 0) & (det["frame"] < labels.shape[0] - 1)]
    for r in inner.sample(frac=fraction, random_state=rng.integers(1 << 31)).itertuples():
        labels[r.frame][labels[r.frame] == r.label] = 0
    return labels


# ---------------------------------------------------------------------------
# drawing the small hand-built cases below (the answer is plain from the picture)
# ---------------------------------------------------------------------------
def disks(n_frames, *cells, shape=(80, 120)):
    """A (n_frames, *shape) label stack of discs, each cell ``(frames, y, x, radius, label)``."""
    lab = np.zeros((n_frames, *shape), np.uint16)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    for frames, y, x, r, v in cells:
        for t in frames:
            lab[t][(yy - y) ** 2 + (xx - x) ** 2 <= r * r] = v
    return lab


def cycle_lengths_of_born_mothers(tracks):
    """Frames lived by each track that is born by division and divides itself."""
    lin = ctc_lineage(tracks)
    mothers = lin[lin["L"].isin(lin["P"]) & (lin["P"] > 0)]
    return (mothers["E"] - mothers["B"] + 1).tolist()


# ---------------------------------------------------------------------------
# both solvers
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("use_labels", [True, False])
def test_ilp_reproduces_true_lineage(tl, gt, tmp_path, use_labels):
    det = detections_from_labels(tl.labels, tl.image)
    tracks = link(det, tl.labels if use_labels else None, solver="ilp")
    assert tracks.attrs["solver"] == "ilp" and tracks.attrs["ilp_status"] == ["optimal"]
    assert tracks.attrs["n_divisions"] == (tl.lineage["P"] > 0).sum() // 2
    res = write_ctc(tl.labels, tracks, tmp_path / "res")
    scores = evaluate_ctc(res, gt)
    assert scores["TRA"] == 1.0 and scores["division_f1"] == 1.0


def test_solvers_agree_on_clean_data(tl):
    det = detections_from_labels(tl.labels, tl.image)
    a = link(det, tl.labels, solver="lap")
    b = link(det, tl.labels, solver="ilp")
    pd.testing.assert_frame_equal(ctc_lineage(a), ctc_lineage(b))


@pytest.mark.parametrize("n_missing", [1, 2])
def test_ilp_closes_gaps(tl, n_missing):
    lin = tl.lineage
    cell = int(lin[(lin["E"] - lin["B"] >= 12) & (lin["P"] == 0) & ~lin["L"].isin(lin["P"])].iloc[0].L)
    t = int(lin.set_index("L").loc[cell, ["B", "E"]].mean())
    labels = tl.labels.copy()
    for k in range(n_missing):
        labels[t + k][labels[t + k] == cell] = 0
    tracks = link(detections_from_labels(labels), labels, solver="ilp", max_gap=2)
    assert tracks.attrs["n_gaps_closed"] == 1
    before = tracks.loc[(tracks["frame"] == t - 1) & (tracks["label"] == cell), "track_id"].item()
    after = tracks.loc[(tracks["frame"] == t + n_missing) & (tracks["label"] == cell)]
    assert after["parent_track_id"].item() == before
    assert link(detections_from_labels(labels), labels, solver="ilp",
                max_gap=n_missing - 1).attrs["n_gaps_closed"] == 0


def test_ilp_windows_and_cbc_give_the_same_tracks(tl):
    labels = drop_detections(tl, 0.05, seed=3)
    det = detections_from_labels(labels)
    whole = link(det, labels, solver="ilp")
    assert whole.attrs["ilp_windows"] == 1
    windowed = link(det, labels, solver="ilp", window=8)
    assert windowed.attrs["ilp_windows"] > 3
    pd.testing.assert_frame_equal(ctc_lineage(whole), ctc_lineage(windowed))
    cbc = link(det, labels, solver="ilp", ilp_backend="cbc")
    assert cbc.attrs["ilp_status"] == ["optimal"]
    pd.testing.assert_frame_equal(ctc_lineage(whole), ctc_lineage(cbc))


def test_ilp_not_worse_than_lap_on_degraded_labels(tl, gt):
    labels = drop_detections(tl, 0.1, seed=1)
    det = detections_from_labels(labels)
    match = ReferenceMatching(labels, gt)
    lap = evaluate_tracks(link(det, labels, solver="lap"), match)
    ilp = evaluate_tracks(link(det, labels, solver="ilp"), match)
    # 10% of the objects missing caps TRA near 0.89 (each is a false negative)
    assert ilp["TRA"] >= lap["TRA"] - 1e-3 and ilp["TRA"] > 0.88
    assert ilp["division_precision"] == 1.0


def test_division_at_the_image_border_and_appearances():
    # a cell entering at the border is a new track, not a daughter of its neighbour
    yy, xx = np.mgrid[0:80, 0:120]
    lab = np.zeros((4, 80, 120), np.uint16)
    for t in range(4):
        lab[t][(yy - 40) ** 2 + (xx - 60) ** 2 <= 100] = 1
    for t in (2, 3):
        lab[t][(yy - 40) ** 2 + (xx - 112 + 2 * t) ** 2 <= 64] = 2
    for solver in ("lap", "ilp"):
        tracks = link(lab, solver=solver)
        assert tracks.attrs["n_divisions"] == 0, solver
        assert ctc_lineage(tracks)["P"].tolist() == [0, 0]


# ---------------------------------------------------------------------------
# configuration and reporting
# ---------------------------------------------------------------------------
def test_config_object_dict_and_keywords(tl):
    det = detections_from_labels(tl.labels[:8])
    cfg = TrackConfig(solver="ilp", max_gap=1, birth_cost=2.0)
    tracks = link(det, config=cfg)
    assert tracks.attrs["solver"] == "ilp" and tracks.attrs["max_gap"] == 1
    assert tracks.attrs["birth_cost"] == 2.0
    tracks = link(det, config={"max_gap": 0}, birth_cost=1.5, max_distance=12.0)
    assert (tracks.attrs["max_gap"], tracks.attrs["birth_cost"], tracks.attrs["max_distance"]) == (0, 1.5, 12.0)
    assert tracks.attrs["max_distance_estimated"] is False
    with pytest.raises(ValueError, match="unknown tracking parameter.*nonsense"):
        link(det, nonsense=1)
    with pytest.raises(ValueError, match="solver"):
        link(det, solver="magic")
    with pytest.raises(ValueError, match="max_gap"):
        TrackConfig(max_gap=-1)
    with pytest.raises(ValueError, match="birth_cost"):
        TrackConfig.from_dict({"birth_cost": 0})


def test_empty_frames_are_reported(tl, caplog):
    labels = tl.labels[:8].copy()
    labels[3] = 0
    with caplog.at_level("WARNING"):
        tracks = link(detections_from_labels(labels), labels, solver="ilp", max_gap=1)
    assert tracks.attrs["empty_frames"] == [3]
    assert "no detections" in caplog.text
    assert tracks.attrs["n_gaps_closed"] == len(np.unique(labels[2])) - 1


def test_bad_detection_tables_raise():
    det = pd.DataFrame({"frame": [0, 1], "label": [1, 1], "y": [1.0, np.nan], "x": [1.0, 1.0], "area": [5, 5]})
    with pytest.raises(ValueError, match="NaN"):
        link(det)
    with pytest.raises(ValueError, match="lack column"):
        link(det.drop(columns="area"))
    det = pd.DataFrame({"frame": [1, 0, 1], "label": [2, 1, 2], "y": [1.0, 1.0, 2.0], "x": [1.0] * 3, "area": [5] * 3})
    with pytest.raises(ValueError, match="duplicate detection: frame 1 label 2"):
        link(det)


def test_a_duplicate_in_a_sorted_table_is_refused():
    det = pd.DataFrame({"frame": [0, 1, 1], "label": [1, 2, 2], "y": [1.0, 1.0, 2.0], "x": [1.0] * 3, "area": [5] * 3})
    with pytest.raises(ValueError, match="duplicate detection: frame 1 label 2"):
        link(det)


def test_detections_beyond_the_label_frames_are_refused():
    labels = np.zeros((2, 20, 20), np.uint16)
    labels[:, 5:9, 5:9] = 1
    det = pd.DataFrame({"frame": [0, 1, 2], "label": [1, 1, 1], "y": [6.5] * 3, "x": [6.5] * 3, "area": [16] * 3})
    with pytest.raises(ValueError, match="detections reach frame 2 but labels have 2 frames"):
        link(det, labels)


def test_empty_last_label_frames_count_as_frames():
    # a table without attrs (read back from a file) and labels whose last two frames are empty: 5 frames, and
    # the cell's end in frame 2 is not the end of the movie
    labels = np.zeros((5, 20, 20), np.uint16)
    labels[:3, 5:9, 5:9] = 1
    det = pd.DataFrame(detections_from_labels(labels).to_dict("list"))
    assert not det.attrs
    tracks = link(det, labels)
    assert tracks.attrs["n_frames"] == 5 and tracks.attrs["empty_frames"] == [3, 4]


def test_detections_in_any_order_give_the_same_tracks(tl):
    det = detections_from_labels(tl.labels)
    want = link(det, tl.labels)
    got = link(det.sample(frac=1.0, random_state=3), tl.labels)
    pd.testing.assert_frame_equal(got, want)
    assert want["parent_track_id"].gt(0).sum() > 4  # (divisions: tracks with parents)


def test_fast_scorer_matches_py_ctcmetrics(tl, gt, tmp_path):
    labels = drop_detections(tl, 0.05, seed=2)
    tracks = link(detections_from_labels(labels), labels, max_gap=0)
    tracks = tracks[tracks.index % 7 != 3]  # and forget some objects
    res = write_ctc(labels, tracks, tmp_path / "res")
    official = evaluate_ctc(res, gt)
    fast = evaluate_tracks(tracks, ReferenceMatching(labels, gt))
    for key in ("TRA", "DET", "LNK", "AOGM", "division_tp", "division_f1", "Valid"):
        assert fast[key] == pytest.approx(official[key]), key


def test_cli_track_with_ilp(tl, gt, tmp_path, capsys):
    tra = gt / "TRA"
    assert cli_main(["track", str(tra), "-o", str(tmp_path / "res"), "--solver", "ilp"]) == 0
    assert "(ilp, costs " in capsys.readouterr().out
    scores = evaluate_ctc(tmp_path / "res", gt)
    assert scores["TRA"] == 1.0 and scores["division_f1"] == 1.0


# ---------------------------------------------------------------------------
# Cell Tracking Challenge data (read from ../shared/data, never copied)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["lap", "ilp"])
def test_sim_plus_ground_truth_first_frames(solver):
    gt = need_shared("ctc/Fluo-N2DH-SIM+/01_GT")
    labels = read_label_dir(gt / "TRA")
    match = ReferenceMatching(labels, gt).first_frames(25)
    labels = labels[:25]
    tracks = link(detections_from_labels(labels), labels, solver=solver)
    scores = evaluate_tracks(tracks, match)
    assert scores["TRA"] >= 0.99
    assert scores["n_divisions_true"] >= 10 and scores["division_f1"] >= 0.95


@pytest.mark.parametrize("solver", ["lap", "ilp"])
def test_a_daughter_does_not_divide_in_the_frame_it_is_born(solver):
    lab = disks(4, ([0], 40, 60, 10, 1), ([1, 2, 3], 40, 50, 7, 2), ([1], 40, 70, 7, 3),
                ([2, 3], 33, 76, 5, 4), ([2, 3], 47, 76, 5, 5))
    strict = link(lab, solver=solver)
    assert strict.attrs["min_cycle_frames"] == 2 and strict.attrs["n_divisions"] == 1
    loose = link(lab, solver=solver, min_cycle_frames=1)
    assert loose.attrs["n_divisions"] == 2


@pytest.mark.parametrize("solver", ["lap", "ilp"])
def test_a_nucleus_cut_in_two_touching_halves_is_not_a_division(solver):
    yy, xx = np.mgrid[0:80, 0:80]
    lab = np.zeros((3, 80, 80), np.uint16)
    lab[0][(yy - 40) ** 2 + (xx - 40) ** 2 <= 144] = 1
    for t in (1, 2):
        disk = (yy - 40) ** 2 + (xx - 40) ** 2 <= 144
        lab[t][disk & (xx < 40)] = 2
        lab[t][disk & (xx >= 40)] = 3
    # the rule costs' touch term (the learned costs, which auto takes for cells this packed, learnt from colonies
    # whose daughters touch where their mother was, and call it a division)
    assert link(lab, solver=solver, costs="rules").attrs["n_divisions"] == 0
    assert link(lab, solver=solver, costs="rules", touch_cost=0.0).attrs["n_divisions"] == 1


@pytest.mark.parametrize("solver", ["lap", "ilp"])
def test_link_logs_a_short_summary(tl, caplog, solver):
    """One short line at INFO (a workflow's log and terminal): the counts, not the whole settings dict (DEBUG)."""
    labels = tl.labels[:8]
    with caplog.at_level("DEBUG", logger="cellscale"):
        tracks = link(detections_from_labels(labels), labels, solver=solver, max_gap=1)
    a = tracks.attrs
    info = [r.getMessage() for r in caplog.records if r.levelname == "INFO" and "costs auto" not in r.getMessage()]
    assert len(info) == 1 and len(info[0]) < 120, info
    assert info[0].startswith(f"link: {a['n_links']} links, {a['n_divisions']} divisions, {a['n_gaps_closed']} gaps "
                              f"closed, {a['n_tracks']} tracks ({solver}, costs {a['costs_used']}")
    assert "birth_cost" not in info[0]
    assert any(r.levelname == "DEBUG" and str(a) in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------
# small hand-built cases
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["lap", "ilp"])
def test_a_daughter_whose_own_division_is_the_better_one_still_waits(solver):
    # A (frame 0) -> B, C (frame 1); B -> D, E (frame 2): B's division, its daughters symmetric, is the cheaper of
    # the two (lap takes divisions by saving), so min_cycle_frames must refuse A's division with B as a daughter
    lab = disks(4, ([0], 40, 60, 10, 1), ([1], 40, 46, 9, 2), ([1, 2, 3], 40, 72, 5, 3),
                ([2, 3], 31, 46, 6, 4), ([2, 3], 49, 46, 6, 5))
    strict = link(lab, solver=solver, costs="rules")
    assert strict.attrs["n_divisions"] == 1 and cycle_lengths_of_born_mothers(strict) == []
    loose = link(lab, solver=solver, costs="rules", min_cycle_frames=1)
    assert loose.attrs["n_divisions"] == 2 and cycle_lengths_of_born_mothers(loose) == [1]


def test_ilp_min_cycle_frames_3_keeps_a_daughter_from_dividing_in_its_second_frame():
    # A (frame 0) -> B, C (frame 1); B lives frames 1 and 2, then -> D, E (frame 3)
    lab = disks(5, ([0], 40, 60, 10, 1), ([1, 2], 40, 50, 7, 2), ([1, 2, 3, 4], 40, 74, 6, 3),
                ([3, 4], 33, 48, 5, 4), ([3, 4], 47, 48, 5, 5))
    two = link(lab, solver="ilp", min_cycle_frames=2)
    assert two.attrs["n_divisions"] == 2 and cycle_lengths_of_born_mothers(two) == [2]
    three = link(lab, solver="ilp", min_cycle_frames=3)
    assert three.attrs["n_divisions"] == 1 and cycle_lengths_of_born_mothers(three) == []


def test_lap_division_with_a_daughter_at_the_border_agrees_with_ilp():
    # a mother divides into a daughter inside (label 2, linked by lap's first stage) and one in the border zone
    # (label 3, whose start is cheap there): the division is worth it while division_cost is below the cost of the
    # link plus that cheap start. The ilp solves the same costs exactly; lap must weigh the same start.
    lab = disks(4, ([0], 40, 20, 8, 1), ([1, 2, 3], 40, 30, 6, 2), ([1, 2, 3], 40, 12, 6, 3))
    seen = set()
    for division_cost in (0.3, 1.0, 1.3, 1.6, 2.0):
        got = {solver: ctc_lineage(link(lab, solver=solver, costs="rules", max_distance=20.0, border_factor=0.2,
                                        division_cost=division_cost)) for solver in ("lap", "ilp")}
        pd.testing.assert_frame_equal(got["lap"], got["ilp"], obj=f"division_cost {division_cost}")
        seen.add(bool((got["ilp"]["P"] > 0).any()))
    assert seen == {True, False}  # both sides of the break-even


def test_ilp_windows_close_a_gap_wherever_it_falls():
    # one cell moving right, missing for max_gap frames: one track with one gap closed, for every place of the
    # gap and every window (windows overlap by max_gap + 2 frames, so a gap across a window's kept part is seen)
    for gap in (1, 2):
        for first in range(1, 12 - gap):
            seen = sorted(set(range(12)) - set(range(first, first + gap)))
            lab = disks(12, *[([t], 30, 20 + 2 * t, 7, 1) for t in seen], shape=(60, 60))
            for window in range(2 * (gap + 2), 12):
                tracks = link(lab, solver="ilp", max_gap=gap, window=window)
                want = [[1, 0, first - 1, 0], [2, first + gap, 11, 1]]  # L B E P: the cell after the gap
                assert ctc_lineage(tracks).values.tolist() == want, (gap, first, window)
