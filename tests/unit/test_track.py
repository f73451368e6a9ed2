"""Tracking on a synthetic time-lapse with known lineage, CTC export and scoring."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import tifffile
from skimage.measure import regionprops

from cellscale.synth.timelapse import make_timelapse, write_ctc_ground_truth
from cellscale.track import (
    ctc_lineage,
    detections_from_labels,
    evaluate_ctc,
    link,
    read_label_dir,
    write_ctc,
    write_tracks_table,
)
from cellscale.io.ctc import read_lineage
from cellscale.track.lineage import TRACK_COLUMNS


# ---------------------------------------------------------------------------
# helpers (fixtures tl and gt: tests/conftest.py)
# ---------------------------------------------------------------------------
def overlap_map(pred: np.ndarray, true: np.ndarray) -> dict[int, int]:
    """pred track id -> true track id with which it shares the most pixels."""
    m = (pred > 0) & (true > 0)
    key = pred[m].astype(np.int64) * (int(true.max()) + 1) + true[m]
    uk, cnt = np.unique(key, return_counts=True)
    best: dict[int, tuple[int, int]] = {}
    for k, c in zip(uk, cnt):
        p, t = divmod(int(k), int(true.max()) + 1)
        if c > best.get(p, (0, 0))[0]:
            best[p] = (int(c), t)
    return {p: t for p, (_, t) in best.items()}


def assert_same_lineage(res_masks, res_lin, tl):
    """Predicted CTC lineage equals the truth once tracks are identified by overlap."""
    true = tl.lineage.set_index("L")
    mapping = overlap_map(res_masks, tl.labels)
    assert len(res_lin) == len(true), (len(res_lin), len(true))
    assert sorted(mapping) == sorted(res_lin["L"])
    assert len(set(mapping.values())) == len(mapping), "two tracks map to one true cell"
    for r in res_lin.itertuples(index=False):
        t = true.loc[mapping[r.L]]
        assert (r.B, r.E) == (t.B, t.E), f"track {r.L} spans {r.B}-{r.E}, truth {t.B}-{t.E}"
        expected_parent = int(t.P)
        got_parent = mapping[r.P] if r.P else 0
        assert got_parent == expected_parent, f"track {r.L}: parent {got_parent} != {expected_parent}"
    # the pixels of every predicted track are exactly those of its true cell
    for p, t in mapping.items():
        assert np.array_equal(res_masks == p, tl.labels == t)


def check_res_track_format(res_dir, n_frames):
    lin = read_lineage(res_dir / "res_track.txt")
    assert lin["L"].is_unique and (lin["L"] > 0).all()
    assert (lin["B"] <= lin["E"]).all()
    assert (lin["B"] >= 0).all() and (lin["E"] < n_frames).all()
    ends = dict(zip(lin["L"], lin["E"]))
    for r in lin.itertuples(index=False):
        if r.P:
            assert r.P in ends, f"parent {r.P} of {r.L} missing"
            assert r.B > ends[r.P], f"daughter {r.L} starts at {r.B}, parent ends {ends[r.P]}"
    masks = read_label_dir(res_dir)
    assert masks.shape[0] == n_frames
    # each track id is in the masks on exactly frames B..E
    present = {int(v): set() for v in lin["L"]}
    for t in range(n_frames):
        for v in np.unique(masks[t]):
            if v:
                assert int(v) in present, f"label {v} in frame {t} not in res_track"
                present[int(v)].add(t)
    for r in lin.itertuples(index=False):
        assert present[r.L] == set(range(r.B, r.E + 1)), f"track {r.L} frames"
    return lin, masks


# ---------------------------------------------------------------------------
# synthetic data
# ---------------------------------------------------------------------------
def test_synthetic_timelapse_ground_truth(tl):
    assert tl.image.shape == tl.labels.shape == (30, 256, 256)
    assert tl.image.dtype == np.float32 and tl.labels.dtype == np.uint32
    assert 0.0 <= tl.image.min() and tl.image.max() <= 1.0
    # cells are brighter than background
    assert tl.image[tl.labels > 0].mean() > tl.image[tl.labels == 0].mean() + 0.2
    lin = tl.lineage
    assert list(lin.columns) == ["L", "B", "E", "P"]
    # every label is present on exactly frames B..E of its track
    for r in lin.itertuples(index=False):
        on = [(tl.labels[t] == r.L).any() for t in range(30)]
        assert on == [r.B <= t <= r.E for t in range(30)], r
    # divisions: mother ends at t, two daughters start at t + 1 with half its area
    divs = lin[lin["P"] > 0].groupby("P")
    assert len(divs) >= 2
    for p, kids in divs:
        assert len(kids) == 2
        mother = lin[lin["L"] == p].iloc[0]
        assert (kids["B"] == mother.E + 1).all()
        a_m = (tl.labels[mother.E] == p).sum()
        for k in kids["L"]:
            ratio = (tl.labels[mother.E + 1] == k).sum() / a_m
            assert 0.3 < ratio < 0.75, ratio
    # deterministic for a seed, different for another
    again = make_timelapse(n_frames=30, shape=(256, 256), n_cells=12, seed=0)
    assert np.array_equal(again.labels, tl.labels) and np.array_equal(again.image, tl.image)
    other = make_timelapse(n_frames=30, shape=(256, 256), n_cells=12, seed=1)
    assert not np.array_equal(other.labels, tl.labels)
    # sizes at frame 0: semi-axes ~6-11 px
    one = tl.labels[0]
    obj_area = np.bincount(one.ravel())[1:]
    obj_area = obj_area[obj_area > 0]
    assert (obj_area > np.pi * 6**2).all() and (obj_area < np.pi * 11.5**2).all()


def test_write_ctc_ground_truth(tl, tmp_path):
    tra = write_ctc_ground_truth(tl, tmp_path / "01_GT")
    assert (tra / "man_track000.tif").is_file() and (tra / "man_track029.tif").is_file()
    back = read_label_dir(tra)
    assert back.dtype == np.uint16 and np.array_equal(back, tl.labels)
    lin = read_lineage(tra / "man_track.txt")
    pd.testing.assert_frame_equal(lin, tl.lineage.reset_index(drop=True))


# ---------------------------------------------------------------------------
# detections
# ---------------------------------------------------------------------------
def test_detections_match_regionprops(tl):
    labels = tl.labels[:3].copy()
    labels[1] = 0  # an empty frame
    det = detections_from_labels(labels, tl.image[:3])
    assert set(det["frame"]) == {0, 2}
    for t in (0, 2):
        props = {p.label: p for p in regionprops(labels[t].astype(np.int32), tl.image[t])}
        rows = det[det["frame"] == t].set_index("label")
        assert sorted(rows.index) == sorted(props)
        for lab, p in props.items():
            r = rows.loc[lab]
            assert r["area"] == p.area
            assert np.allclose([r["y"], r["x"]], p.centroid)
            assert tuple(r[["min_row", "min_col", "max_row", "max_col"]]) == p.bbox
            assert np.isclose(r["mean_intensity"], p.intensity_mean)


# ---------------------------------------------------------------------------
# linking: exact lineage and CTC metrics
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("use_labels", [True, False])
def test_link_reproduces_true_lineage(tl, tmp_path, use_labels):
    det = detections_from_labels(tl.labels)
    tracks = link(det, tl.labels if use_labels else None)
    assert list(tracks.columns) == TRACK_COLUMNS
    assert tracks.attrs["max_distance_estimated"] is True
    assert tracks.attrs["max_distance"] > 0
    assert tracks.attrs["n_divisions"] == (tl.lineage["P"] > 0).sum() // 2
    res = write_ctc(tl.labels, tracks, tmp_path / "01_RES")
    lin, masks = check_res_track_format(res, 30)
    assert masks.dtype == np.uint16
    assert_same_lineage(masks, lin, tl)


def test_ctc_metrics_on_synthetic(tl, gt, tmp_path):
    tracks = link(detections_from_labels(tl.labels), tl.labels)
    res = write_ctc(tl.labels, tracks, tmp_path / "01_RES")
    scores = evaluate_ctc(res, gt)
    assert scores["Valid"] == 1
    assert scores["TRA"] >= 0.99
    assert scores["DET"] >= 0.99
    assert scores["n_divisions_true"] == (tl.lineage["P"] > 0).sum() // 2
    assert scores["division_f1"] == 1.0
    assert scores["division_precision"] == 1.0 and scores["division_recall"] == 1.0

    # the scores can fail: a result that forgets its lineage loses every division
    broken = tmp_path / "broken"
    write_ctc(tl.labels, tracks.assign(parent_track_id=0), broken)
    bad = evaluate_ctc(broken, gt)
    assert bad["division_tp"] == 0 and bad["division_f1"] == 0.0
    assert bad["TRA"] < scores["TRA"]


def test_division_split_when_lap_links_mother_to_daughter():
    # frame 0: one round cell; frame 1: two half-size cells next to it
    yy, xx = np.mgrid[0:80, 0:80]
    lab = np.zeros((3, 80, 80), np.uint16)
    lab[0][(yy - 40) ** 2 + (xx - 40) ** 2 <= 100] = 5
    for t in (1, 2):
        lab[t][(yy - 40) ** 2 + (xx - 32 + t - 1) ** 2 <= 49] = 7
        lab[t][(yy - 40) ** 2 + (xx - 49 - t + 1) ** 2 <= 49] = 9
    tracks = link(lab)  # a label stack is accepted directly
    lin = ctc_lineage(tracks).set_index("L")
    assert len(lin) == 3
    mother = tracks.loc[tracks["frame"] == 0, "track_id"].item()
    assert lin.loc[mother, "E"] == 0
    kids = lin[lin["P"] == mother]
    assert len(kids) == 2 and (kids["B"] == 1).all()
    assert tracks.attrs["n_divisions_split_from_link"] == 1
    no_div = ctc_lineage(link(lab, divisions=False))
    assert (no_div["P"] == 0).all()


def test_division_with_daughters_out_of_link_reach():
    # daughters 16 px away, beyond max_distance: no frame link, both are track starts
    yy, xx = np.mgrid[0:80, 0:80]
    lab = np.zeros((3, 80, 80), np.uint16)
    lab[0][(yy - 40) ** 2 + (xx - 40) ** 2 <= 100] = 1
    for t in (1, 2):
        lab[t][(yy - 40) ** 2 + (xx - 24) ** 2 <= 49] = 2
        lab[t][(yy - 40) ** 2 + (xx - 56) ** 2 <= 49] = 3
    tracks = link(lab, max_distance=5)
    assert tracks.attrs["n_divisions"] == 1
    assert tracks.attrs["n_divisions_split_from_link"] == 0
    lin = ctc_lineage(tracks)
    assert sorted(lin["P"]) == [0, 1, 1] and len(lin) == 3
    # a daughter that is too large relative to the mother is not a division
    lab[1:][lab[1:] == 3] = 0
    lab[1:, 30:50, 56:76] = 3
    assert link(lab, max_distance=5).attrs["n_divisions"] == 0


# ---------------------------------------------------------------------------
# gaps and empty frames
# ---------------------------------------------------------------------------
def _mid_life_cell(tl, margin=4):
    lin = tl.lineage
    ok = lin[(lin["E"] - lin["B"] >= 2 * margin + 2) & (lin["P"] == 0)
             & ~lin["L"].isin(lin["P"])]
    r = ok.iloc[0]
    return int(r.L), int((r.B + r.E) // 2)


@pytest.mark.parametrize("n_missing", [1, 2])
def test_gap_is_closed(tl, tmp_path, n_missing):
    cell, t = _mid_life_cell(tl)
    labels = tl.labels.copy()
    for k in range(n_missing):
        labels[t + k][labels[t + k] == cell] = 0
    det = detections_from_labels(labels)

    def pieces(tracks):
        before = tracks.loc[(tracks["frame"] == t - 1) & (tracks["label"] == cell), "track_id"].item()
        after = tracks.loc[(tracks["frame"] == t + n_missing) & (tracks["label"] == cell)]
        return before, after["track_id"].item(), after["parent_track_id"].item()

    closed = link(det, labels, max_gap=2)
    before, after, parent = pieces(closed)
    assert after != before and parent == before  # CTC: continuation after a gap
    assert (closed["parent_track_id"] == before).sum() == len(closed[closed["track_id"] == after])
    assert closed.attrs["n_gaps_closed"] == 1
    # everything else is still the true lineage
    assert closed.attrs["n_divisions"] == (tl.lineage["P"] > 0).sum() // 2

    for too_small in (0, n_missing - 1):
        opened = link(det, labels, max_gap=too_small)
        assert pieces(opened)[2] == 0
        assert opened.attrs["n_gaps_closed"] == 0

    res = write_ctc(labels, closed, tmp_path / "res")
    check_res_track_format(res, 30)


def test_empty_frames(tl, tmp_path):
    labels = tl.labels[:8].copy()
    labels[0] = 0
    labels[4] = 0
    det = detections_from_labels(labels)
    assert set(det["frame"]) == {1, 2, 3, 5, 6, 7}
    tracks = link(det, labels, max_gap=1)
    # every cell alive on both sides of the empty frame is carried across it
    n_cells_3 = len(np.unique(labels[3])) - 1
    assert tracks.attrs["n_gaps_closed"] == n_cells_3
    res = write_ctc(labels, tracks, tmp_path / "res")
    lin, masks = check_res_track_format(res, 8)
    assert not masks[0].any() and not masks[4].any()

    # nothing at all
    empty = np.zeros((3, 20, 20), np.uint16)
    tr = link(detections_from_labels(empty), empty)
    assert len(tr) == 0 and list(tr.columns)[:4] == ["frame", "label", "track_id",
                                                     "parent_track_id"]
    out = write_ctc(empty, tr, tmp_path / "none")
    assert (out / "res_track.txt").read_text() == ""
    assert len(list(out.glob("mask*.tif"))) == 3


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------
def test_frames_of_different_shapes_raise():
    frames = [np.zeros((10, 10), np.uint16), np.zeros((10, 12), np.uint16)]
    with pytest.raises(ValueError, match="frame 1 has shape"):
        link(frames)
    with pytest.raises(ValueError, match="shape"):
        detections_from_labels(frames)
    det = detections_from_labels(np.ones((2, 10, 10), np.uint16))
    with pytest.raises(ValueError, match="shape"):
        link(det, frames)
    with pytest.raises(ValueError, match="integer"):
        link(det, np.ones((2, 10, 10), np.float32))
    with pytest.raises(ValueError, match="integer"):
        detections_from_labels(np.ones((2, 10, 10), bool))


def test_read_label_dir(tmp_path):
    frame = np.zeros((6, 5), np.uint16)
    for k in (0, 1, 2, 10):  # unpadded numbers sort numerically
        tifffile.imwrite(tmp_path / f"t{k}.tif", frame + k)
    (tmp_path / "t3.tif").write_bytes(b"not a tiff")
    for k in range(4, 10):
        tifffile.imwrite(tmp_path / f"t{k}.tif", frame + k)
    with pytest.raises(ValueError, match=r"t3\.tif"):
        read_label_dir(tmp_path)
    tifffile.imwrite(tmp_path / "t3.tif", frame + 3)
    stack = read_label_dir(tmp_path)
    assert stack.shape == (11, 6, 5)
    assert [int(f[0, 0]) for f in stack] == list(range(11))

    (tmp_path / "t7.tif").unlink()
    with pytest.raises(ValueError, match="frame number.*7.*missing"):
        read_label_dir(tmp_path)

    gt = tmp_path / "gt"
    gt.mkdir()
    for k in (0, 1, 3):
        tifffile.imwrite(gt / f"man_track{k:03d}.tif", frame)
    with pytest.raises(ValueError, match="002"):
        read_label_dir(gt)
    tifffile.imwrite(gt / "man_track002.tif", np.zeros((6, 6), np.uint16))
    with pytest.raises(ValueError, match=r"man_track002\.tif.*shape"):
        read_label_dir(gt)


def test_write_ctc_atomic_replace_and_holes(tmp_path):
    lab = np.zeros((4, 10, 10), np.uint16)
    lab[:, 2:5, 2:5] = 3
    lab[2] = 0  # object missing in frame 2
    tracks = pd.DataFrame({"frame": [0, 1, 3], "label": [3, 3, 3], "track_id": [1, 1, 1],
                           "parent_track_id": [0, 0, 0], "y": 3.0, "x": 3.0, "area": 9})
    out = tmp_path / "res"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    write_ctc(lab, tracks, out)
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]  # no temp folders left
    lin = read_lineage(out / "res_track.txt")
    # a track with a hole becomes two CTC tracks, the second the child of the first
    assert lin.values.tolist() == [[1, 0, 1, 0], [2, 3, 3, 1]]
    masks = read_label_dir(out)
    assert masks[3, 3, 3] == 2 and masks[0, 3, 3] == 1

    bad = tracks.assign(parent_track_id=[0, 0, 0], track_id=[1, 1, 2])
    bad.loc[2, "parent_track_id"] = 5  # parent does not exist
    with pytest.raises(ValueError, match="parent 5"):
        write_ctc(lab, bad, out)
    assert read_lineage(out / "res_track.txt").values.tolist() == lin.values.tolist()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]


def test_write_ctc_keeps_track_ids_past_16_bits(tmp_path):
    """Track ids 65535 and 65536: masks read back hold both ids as written (uint16 would wrap 65536 to 0)."""
    lab = np.zeros((2, 8, 8), np.uint16)
    lab[:, 1:3, 1:3], lab[:, 5:7, 5:7] = 1, 2
    tracks = pd.DataFrame({"frame": [0, 0, 1, 1], "label": [1, 2, 1, 2], "track_id": [65535, 65536] * 2,
                           "parent_track_id": 0, "y": 2.0, "x": 2.0, "area": 4})
    out = write_ctc(lab, tracks, tmp_path / "res")
    masks = np.stack([tifffile.imread(out / f"mask{t:03d}.tif") for t in range(2)])
    expected = np.select([lab == 1, lab == 2], [65535, 65536], 0)
    np.testing.assert_array_equal(masks, expected)
    assert sorted(read_lineage(out / "res_track.txt")["L"]) == [65535, 65536]


def test_a_child_beginning_in_its_parents_last_frame_is_refused(tmp_path):
    """CTC lineage: a parent ends before its children begin; a child in the parent's last frame is an error."""
    lab = np.zeros((3, 8, 8), np.uint16)
    lab[:, 1:3, 1:3], lab[1:, 5:7, 5:7] = 1, 2
    tracks = pd.DataFrame({"frame": [0, 1, 1, 2], "label": [1, 1, 2, 2], "track_id": [1, 1, 2, 2],
                           "parent_track_id": [0, 0, 1, 1], "y": 2.0, "x": 2.0, "area": 4})
    with pytest.raises(ValueError, match="track 2 begins at 1 but its parent 1 ends at 1"):
        write_ctc(lab, tracks, tmp_path / "res")
    assert not (tmp_path / "res").exists()


def test_write_tracks_table(tl, tmp_path):
    tracks = link(detections_from_labels(tl.labels[:5]), tl.labels[:5])
    path = write_tracks_table(tracks, tmp_path / "sub" / "tracks.parquet")
    back = pd.read_parquet(path)
    assert list(back.columns) == TRACK_COLUMNS == ["frame", "label", "track_id", "parent_track_id",
                                                   "y", "x", "area"]
    assert len(back) == len(tracks)
    assert np.array_equal(back["track_id"].to_numpy(), tracks["track_id"].to_numpy())


def test_max_distance_given_is_used(tl):
    det = detections_from_labels(tl.labels[:6])
    tr = link(det, max_distance=0.5)  # almost nothing can link
    assert tr.attrs["max_distance"] == 0.5 and tr.attrs["max_distance_estimated"] is False
    default = link(det)
    assert default["track_id"].nunique() == 12 + 2 * default.attrs["n_divisions"]
    assert tr["track_id"].nunique() > 3 * default["track_id"].nunique()
    with pytest.raises(ValueError, match="max_distance"):
        link(det, max_distance=-1)


def test_a_gap_bridge_is_not_a_division(tmp_path):
    """A parent with one child is the same cell after missing frames: division_parents and the lineage plot count
    only parents of two or more tracks."""
    from cellscale.report import lineage_plot
    from cellscale.track.lineage import division_parents, tracks_table

    # cell a: frames 0-1, divides at 2 into two daughters; cell b: frames 0-1, missing at 2, back at 3
    frame = np.array([0, 0, 1, 1, 2, 2, 3])
    pred = np.array([-1, -1, 0, 1, 2, 2, 3])
    tracks = tracks_table(frame, np.arange(1, 8), np.zeros((7, 2)), np.full(7, 10), pred)
    starts = tracks.groupby("track_id")["parent_track_id"].first()
    a, b = tracks.loc[[0, 1], "track_id"]
    assert sorted(starts[starts > 0]) == sorted([a, a, b])  # two daughters of a, one bridge after b's gap
    assert division_parents(tracks) == {a}
    lineage_plot(tmp_path / "lineage.png", tracks)
    assert (tmp_path / "lineage.png").stat().st_size > 1000


def test_the_tracking_qc_picture_shows_a_track_in_one_colour_over_the_movie(tmp_path, monkeypatch):
    """The report's tracking picture: a few frames spread over the movie (the first and the last among them), only
    those read; a cell has its track's colour (its hue, over the grey image) at its centroid in every one of them,
    another track another colour."""
    import imageio.v3 as iio
    from skimage.color import rgb2hsv

    from cellscale.io import ImageSource
    from cellscale.report import track_colours
    from cellscale.steps.report import TRACKING_PANELS, tracking_qc

    _tracked_movie(tmp_path, "tracks.parquet", n_frames=8, shape=(96, 96), seed=0, n_divisions=1)
    tracks = pd.read_parquet(tmp_path / "tracks.parquet")
    read, strided = [], ImageSource.strided
    monkeypatch.setattr(ImageSource, "strided", lambda self, t, step: read.append(t) or strided(self, t, step))
    panels = tracking_qc("m", tmp_path / "movie.ome.tif", tmp_path / "labels.ome.tif", tracks, tmp_path / "qc.png")
    frames = sorted(panels)
    assert frames[0] == 0 and frames[-1] == 7 and 2 < len(frames) <= TRACKING_PANELS and set(read) == set(frames)
    hue = rgb2hsv(iio.imread(tmp_path / "qc.png")[..., :3])[..., 0]

    def hue_at(track_id: int, t: int) -> float:
        row = tracks[(tracks.track_id == track_id) & (tracks.frame == t)].iloc[0]
        top, left, step = panels[t]
        return float(hue[top + round(row.y / step), left + round(row.x / step)])

    def apart(a: float, b: float) -> float:  # hues on a circle
        return min(abs(a - b), 1 - abs(a - b))

    through = [t for t, g in tracks.groupby("track_id") if {frames[0], frames[-1]} <= set(g.frame)]
    assert len(through) >= 2
    for track_id in through:
        want = rgb2hsv(track_colours([track_id]).reshape(1, 1, 3))[0, 0, 0]
        for t in (frames[0], frames[-1]):
            assert apart(hue_at(track_id, t), want) < 0.02, (track_id, t)
    assert apart(hue_at(through[0], frames[-1]), hue_at(through[1], frames[-1])) > 0.1


def test_the_track_job_asks_for_memory_by_the_movies_size(tmp_path):
    """The step holds the whole movie (measured about 6 bytes a pixel + 160 MB): the job asks 8 bytes a pixel and
    400 MB from the labels' header, at least 1 GB, more on each attempt; 3 GB a try where it cannot read them."""
    import tifffile

    from cellscale.deploy.sizing import track_memory_mb

    tifffile.imwrite(tmp_path / "small.tif", np.zeros((4, 64, 64), np.uint32))
    tifffile.imwrite(tmp_path / "large.tif", shape=(276, 1024, 1024), dtype=np.uint32)  # header, no pixels
    assert track_memory_mb(tmp_path / "small.tif") == 1000 and track_memory_mb(tmp_path / "small.tif", 2) == 2000
    assert track_memory_mb(tmp_path / "large.tif") == 400 + 8 * 276 > 1.3 * 1870  # GOWT1 x3: 1.87 GB measured
    assert track_memory_mb(tmp_path / "missing.tif", 2) == 6000


def test_track_and_evaluate_refuse_what_is_not_a_tracking_input(tmp_path, capsys):
    """Each refused before any work, in one line naming what is wrong (a helper's audit of the command line)."""
    from cellscale.cli import main

    def refused(*argv) -> str:
        assert main([str(a) for a in argv]) == 2
        return capsys.readouterr().err

    movie = make_timelapse(n_frames=4, shape=(96, 96), n_cells=4, seed=0)
    write_ctc_ground_truth(movie, tmp_path / "gt")
    # raw frames of a few hundred grey values (the old test wanted more than 1,000): not labels
    rng = np.random.default_rng(0)
    raw = (np.linspace(0, 100, 128)[None, None, :] + rng.normal(0, 3, (3, 128, 128))).clip(0, 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "raw.tif", raw)
    err = refused("track", tmp_path / "raw.tif", "-o", tmp_path / "r1")
    assert "separate pieces" in err and "look like intensity images" in err and not (tmp_path / "r1").exists()
    tifffile.imwrite(tmp_path / "none.tif", np.zeros((0, 32, 32), np.uint16))
    assert "tracking needs at least 2" in refused("track", tmp_path / "none.tif", "-o", tmp_path / "r2")
    tifffile.imwrite(tmp_path / "zero.tif", np.zeros((5, 32, 32), np.uint16))
    assert "no object in any of its 5 frames" in refused("track", tmp_path / "zero.tif", "-o", tmp_path / "r2")
    for table in (tmp_path, tmp_path / "tracks.csv"):   # a folder; Parquet bytes under another name
        err = refused("track", tmp_path / "gt" / "TRA", "-o", tmp_path / "r3", "--table", table)
        assert "give a file name ending in .parquet" in err and not (tmp_path / "r3").exists()
    # evaluate-tracks: a result without tracks, and another sequence's ground truth, in a sentence each
    empty = tmp_path / "empty_res"
    assert main(["track", str(tmp_path / "gt" / "TRA"), "-o", str(tmp_path / "res")]) == 0
    said = capsys.readouterr().out   # the summary line says which costs auto chose, and why
    assert re.search(r"\(\w+, costs auto -> (rules|learned), crowding \d+\.\d\d\)", said), said
    empty.mkdir()
    for i in range(4):
        tifffile.imwrite(empty / f"mask{i:03d}.tif", np.zeros((96, 96), np.uint16))
    (empty / "res_track.txt").write_text("")
    assert "holds no tracks" in refused("evaluate-tracks", empty, tmp_path / "gt")
    other = make_timelapse(n_frames=4, shape=(80, 80), n_cells=4, seed=1)
    write_ctc_ground_truth(other, tmp_path / "other_gt")
    err = refused("evaluate-tracks", tmp_path / "res", tmp_path / "other_gt")
    assert "differ in size" in err and "96 x 96 px" in err and "80 x 80 px" in err
    # measure: 4 label planes that tifffile marks as colour samples, saved with plain imwrite as the movie beside
    # them, are the movie's 4 frames (they read as one frame of 4 channels, which measure refused)
    tifffile.imwrite(tmp_path / "stack.tif", movie.labels.astype(np.uint16))
    tifffile.imwrite(tmp_path / "movie.tif", (movie.image * 1000).astype(np.uint16))
    assert main(["measure", str(tmp_path / "stack.tif"), str(tmp_path / "movie.tif"), "-o",
                 str(tmp_path / "cells.csv")]) == 0
    cells = pd.read_csv(tmp_path / "cells.csv").groupby("frame")["CellID"].apply(sorted)
    assert cells.to_dict() == {t: sorted(np.unique(movie.labels[t])[1:].tolist()) for t in range(4)}
    # planes an OME-TIFF names channels are one frame: an error like the others (status 2, the command's prefix)
    # saying how to write a movie's labels
    tifffile.imwrite(tmp_path / "planes.ome.tif", movie.labels.astype(np.uint16), ome=True, metadata={"axes": "CYX"})
    err = refused("measure", tmp_path / "planes.ome.tif", tmp_path / "movie.tif", "-o", tmp_path / "planes.csv")
    assert err.startswith("cellscale measure: error:") and "expected a 2-D label image or a movie's labels" in err
    assert "OME-TIFF with axes TYX" in err and not (tmp_path / "planes.csv").exists()


@pytest.mark.parametrize("damage", ["empty", "float", "smaller", "tracks"])
def test_evaluate_tracks_names_a_damaged_result_file(damage, tmp_path, capsys):
    """A result mask that is empty, not integer or of another size, or a res_track.txt line that is not four
    integers: the file named (py-ctcmetrics' messages name none, and a float mask was its traceback)."""
    from cellscale.cli import main

    movie = make_timelapse(n_frames=4, shape=(64, 64), n_cells=3, seed=0)
    write_ctc_ground_truth(movie, tmp_path / "gt")
    assert main(["track", str(tmp_path / "gt" / "TRA"), "-o", str(tmp_path / "res")]) == 0
    mask, tracks = tmp_path / "res" / "mask002.tif", tmp_path / "res" / "res_track.txt"
    if damage == "empty":
        mask.write_bytes(b"")
    elif damage in ("float", "smaller"):
        frame = tifffile.imread(mask)
        tifffile.imwrite(mask, frame.astype(np.float32) if damage == "float" else frame[:32])
    else:
        tracks.write_text(tracks.read_text() + "7 1 x 0\n")
    capsys.readouterr()
    assert main(["evaluate-tracks", str(tmp_path / "res"), str(tmp_path / "gt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cellscale evaluate-tracks: error: {tracks if damage == 'tracks' else mask}")
    assert {"empty": "cannot read", "float": "must hold integer labels", "smaller": "differs from (64, 64)",
            "tracks": "expected 'L B E P' (four integers)"}[damage] in err


def test_evaluate_tracks_on_a_movies_first_frames(tmp_path, capsys):
    """A result of a movie's first N frames is scored with --frames N against the ground truth cut there, as the
    library's fast path cuts it (ReferenceMatching.first_frames); without it the mismatch says what to give."""
    import shutil
    import tempfile
    from pathlib import Path

    from cellscale.cli import main
    from cellscale.track.evaluate import ReferenceMatching, evaluate_tracks

    movie = make_timelapse(n_frames=8, shape=(96, 96), n_cells=5, seed=3, n_divisions=2)
    write_ctc_ground_truth(movie, tmp_path / "gt")
    first = tmp_path / "first"
    first.mkdir()
    for mask in sorted((tmp_path / "gt" / "TRA").glob("man_track*.tif"))[:5]:
        shutil.copy(mask, first / mask.name)
    assert main(["track", str(first), "-o", str(tmp_path / "res"), "--costs", "rules"]) == 0
    capsys.readouterr()
    assert main(["evaluate-tracks", str(tmp_path / "res"), str(tmp_path / "gt")]) == 2
    assert "a result of the movie's first 5 frames: --frames 5" in capsys.readouterr().err
    assert main(["evaluate-tracks", str(tmp_path / "res"), str(tmp_path / "gt"), "--frames", "5"]) == 0
    scores = dict(line.split("\t") for line in capsys.readouterr().out.splitlines())
    labels = np.stack([tifffile.imread(p) for p in sorted(first.glob("*.tif"))])
    fast = evaluate_tracks(link(detections_from_labels(labels), labels=labels, costs="rules"),
                           ReferenceMatching(movie.labels, tmp_path / "gt").first_frames(5))
    assert float(scores["TRA"]) == pytest.approx(fast["TRA"], abs=1e-4) and float(scores["TRA"]) > 0.99
    assert not list(Path(tempfile.gettempdir()).glob("cellscale-gt-*"))   # the cut ground truth is removed


def truth_of_frames(tl, start: int, stop: int) -> list[list[int]]:
    """The CTC tracks (``L B E P``) that frames ``start:stop`` of ``tl``'s labels show, numbered from 0 there: each
    label from the first to the last of those frames it is in, its parent where the parent is in them too."""
    frames: dict[int, list[int]] = {}
    for t, plane in enumerate(tl.labels[start:stop]):
        for label in np.unique(plane)[1:]:
            frames.setdefault(int(label), []).append(t)
    parent = dict(zip(tl.lineage["L"].astype(int), tl.lineage["P"].astype(int)))
    return sorted([label, ts[0], ts[-1], parent[label] if parent[label] in frames else 0]
                  for label, ts in frames.items())


def test_the_ground_truths_lineage_is_cut_to_a_frame_range(tl):
    """man_track.txt of frames START:STOP (lineage_frames) is the lineage the cut masks show, renumbered from 0: a
    track crossing START begins at 0 with parent 0 (as the CTC cuts a sequence), one past STOP ends at its last
    frame, one that ends before START or begins at STOP is left out, and a division inside is kept."""
    from cellscale.track.evaluate import lineage_frames

    tracks = tl.lineage[["L", "B", "E", "P"]].to_numpy()
    for start, stop in ((10, 27), (10, 24), (6, 7), (0, 30), (0, 12)):
        cut = lineage_frames(tracks, start, stop)
        assert sorted(cut.tolist()) == truth_of_frames(tl, start, stop), (start, stop)
    cut = lineage_frames(tracks, 10, 27)   # the range has what the test is about
    kids = pd.Series(cut[:, 3][cut[:, 3] > 0]).value_counts()
    assert (kids == 2).sum() >= 2 and set(kids.index) <= set(cut[:, 0])   # divisions inside, parents kept
    by_label = {int(row[0]): row[1:].tolist() for row in cut}
    crossing = tracks[(tracks[:, 1] < 10) & (tracks[:, 2] >= 10) & (tracks[:, 3] > 0)]   # daughters born before
    assert len(crossing) and all(by_label[label] == [0, min(end, 26) - 10, 0] for label, _, end, _ in crossing)
    assert not set(tracks[tracks[:, 2] < 10, 0]) & set(cut[:, 0])   # ended before the range: left out
    # by hand: a mother ending in the range's first frame is in it, one frame long, her daughters keep her as
    # parent, and a track beginning at stop is left out
    hand = np.array([[1, 0, 5, 0], [2, 6, 9, 1], [3, 6, 12, 1], [4, 10, 12, 3]])
    assert lineage_frames(hand, 5, 10).tolist() == [[1, 0, 0, 0], [2, 1, 4, 1], [3, 1, 4, 1]]


def test_evaluate_tracks_on_a_middle_range_of_a_movie(tl, gt, tmp_path, capsys):
    """A result of frames 10 to 26 of a movie, numbered from 0 (as the workflow numbers a frame folder of t010 ...),
    is scored with --frames 10:27 (half-open): the truth of those frames scores TRA = DET = 1 and finds every
    division; the same result scored as another range does not. Ranges the ground truth does not have, or of
    another length than the result, are clear errors."""
    import tempfile
    from pathlib import Path

    from cellscale.cli import main
    from cellscale.io.ctc import LINEAGE_COLUMNS, write_lineage

    res = tmp_path / "res"
    res.mkdir()
    for t, plane in enumerate(tl.labels[10:27]):
        tifffile.imwrite(res / f"mask{t:03d}.tif", plane.astype(np.uint16))
    write_lineage(res / "res_track.txt", pd.DataFrame(truth_of_frames(tl, 10, 27), columns=LINEAGE_COLUMNS))

    def scores(frames: str) -> dict:
        assert main(["evaluate-tracks", str(res), str(gt), "--frames", frames]) == 0
        return {k: float(v) for k, v in (line.split("\t") for line in capsys.readouterr().out.splitlines())}

    right = scores("10:27")
    assert right["TRA"] == right["DET"] == right["LNK"] == right["division_f1"] == 1.0
    assert right["n_divisions_true"] >= 2
    for wrong in ("11:28", "9:26", "17"):
        assert scores(wrong)["TRA"] < 1.0, wrong
    assert main(["evaluate-tracks", str(res), str(gt), "--frames", "20:"]) == 2
    assert f"{res} has 17 masks but --frames 20:30 of {gt} is 10 frames" in capsys.readouterr().err
    assert main(["evaluate-tracks", str(res), str(gt), "--frames", "20:37"]) == 2
    assert f"--frames 20:37 is not in {gt / 'TRA'}: it has 30 masks, frames 0:30" in capsys.readouterr().err
    for bad in ("27:10", "-1:5", "0", "1:2:3"):
        with pytest.raises(SystemExit) as stop:
            main(["evaluate-tracks", str(res), str(gt), f"--frames={bad}"])
        assert stop.value.code == 2 and "expected N (the first N frames) or START:STOP" in capsys.readouterr().err
    for one in ("1", "12:13"):   # one frame: py-ctcmetrics' numpy error before
        with pytest.raises(SystemExit) as stop:
            main(["evaluate-tracks", str(res), str(gt), f"--frames={one}"])
        assert stop.value.code == 2 and f"--frames {one} is one frame: tracks link frames" in capsys.readouterr().err
    assert main(["evaluate-tracks", str(res), str(gt), "--frames", "29:"]) == 2   # START: at the last frame
    assert f"--frames 29: of {gt / 'TRA'} is one frame (29)" in capsys.readouterr().err
    assert not list(Path(tempfile.gettempdir()).glob("cellscale-gt-*"))   # the cut ground truth is removed


def test_evaluate_tracks_errors_name_the_range_as_given_and_a_result_that_is_a_file(tl, gt, tmp_path, capsys):
    """--frames START: past the ground truth's end is refused as the user wrote it (not with STOP filled in), and a
    result path that is a file, not a folder, is called so (not 'no such folder')."""
    from cellscale.cli import main

    res = tmp_path / "res"
    res.mkdir()
    assert main(["evaluate-tracks", str(res), str(gt), "--frames", "40:"]) == 2
    err = capsys.readouterr().err
    assert f"--frames 40: is not in {gt / 'TRA'}: it has 30 masks, frames 0:30" in err and "40:30" not in err
    a_file = tmp_path / "res.tif"
    a_file.write_bytes(b"")
    for frames in ([], ["--frames", "10:27"]):
        assert main(["evaluate-tracks", str(a_file), str(gt), *frames]) == 2
        err = capsys.readouterr().err
        assert f"{a_file}: not a folder" in err and "no such folder" not in err, frames
    assert main(["evaluate-tracks", str(tmp_path / "absent"), str(gt)]) == 2
    assert f"{tmp_path / 'absent'}: no such folder" in capsys.readouterr().err


def test_a_movie_without_cells_is_tracked_with_a_warning(tmp_path, caplog):
    """The workflow's track step on a movie whose labels are empty in every frame: empty CTC result and table, and a
    warning naming the sample and the file (cellscale track refuses it; the run said nothing)."""
    import logging

    from cellscale.io import write_image, write_labels
    from cellscale.steps.track import track_sample

    write_labels(tmp_path / "labels.ome.tif", np.zeros((3, 32, 40), np.uint32))
    write_image(tmp_path / "movie.ome.tif", np.zeros((3, 32, 40), np.uint16), ["nuclei"], axes="TYX")
    with caplog.at_level(logging.WARNING, logger="cellscale"):
        tracks = track_sample("empty", tmp_path / "labels.ome.tif", tmp_path / "movie.ome.tif", tmp_path / "ctc",
                              tmp_path / "tracks.parquet")
    assert len(tracks) == 0 and (tmp_path / "ctc" / "res_track.txt").read_text() == ""
    assert any(f"sample 'empty': {tmp_path / 'labels.ome.tif'}: no object in any of its 3 frames: nothing to track"
               in r.getMessage() for r in caplog.records)


def test_a_movies_tracks_and_summary_state_its_frame_interval(tmp_path):
    """The workflow's tracks table has ``time`` (frame x the interval the labels state, seconds) and summary.tsv the
    movie's ``frame_interval_s``."""
    from cellscale.io import write_image, write_labels
    from cellscale.steps.measure import measure_sample
    from cellscale.steps.report import report_sample, run_summary
    from cellscale.steps.track import track_sample

    movie = np.zeros((3, 32, 40), np.uint32)
    for t in range(3):
        movie[t, 4 + 2 * t:12 + 2 * t, 6:14] = 1
    write_image(tmp_path / "movie.ome.tif", (movie * 100).astype(np.uint16), ["nuclei"], axes="TYX")
    write_labels(tmp_path / "labels.ome.tif", movie, frame_interval_s=300.0)
    tracks = track_sample("m", tmp_path / "labels.ome.tif", tmp_path / "movie.ome.tif", tmp_path / "ctc",
                          tmp_path / "tracks.parquet")
    table = pd.read_parquet(tmp_path / "tracks.parquet")
    assert list(table.columns[:2]) == ["frame", "time"] and len(tracks) == 3
    np.testing.assert_array_equal(table["time"].to_numpy(), table["frame"].to_numpy() * 300.0)
    paths = {"nuclear": tmp_path / "labels.ome.tif"}
    measure_sample("m", tmp_path / "movie.ome.tif", paths, tmp_path / "m.csv", tmp_path / "m.parquet", timelapse=True)
    report_sample("m", tmp_path / "movie.ome.tif", paths, tmp_path / "m.parquet", tmp_path / "m", timelapse=True)
    run_summary([tmp_path / "m" / "summary.json"], tmp_path / "summary.tsv")
    summary = pd.read_csv(tmp_path / "summary.tsv", sep="\t").set_index("sample")
    assert summary.loc["m", "frame_interval_s"] == 300.0 and summary.loc["m", "nuclear_median_area"] == 64.0


def test_a_movie_without_cells_has_an_empty_median_area_in_the_summary(tmp_path):
    """summary.tsv's median area of a movie (or image) without a cell is empty (NaN), as other missing values are,
    not 0.0."""
    from cellscale.io import write_image, write_labels
    from cellscale.steps.measure import measure_sample
    from cellscale.steps.report import report_sample, run_summary

    write_image(tmp_path / "movie.ome.tif", np.zeros((3, 32, 40), np.uint16), ["nuclei"], axes="TYX")
    paths = {"nuclear": tmp_path / "empty.ome.tif"}
    write_labels(paths["nuclear"], np.zeros((3, 32, 40), np.uint32))
    measure_sample("e", tmp_path / "movie.ome.tif", paths, tmp_path / "e.csv", tmp_path / "e.parquet", timelapse=True)
    report_sample("e", tmp_path / "movie.ome.tif", paths, tmp_path / "e.parquet", tmp_path / "e", timelapse=True)
    run_summary([tmp_path / "e" / "summary.json"], tmp_path / "summary.tsv")
    summary = pd.read_csv(tmp_path / "summary.tsv", sep="\t").set_index("sample")
    assert summary.loc["e", "nuclear_cells"] == 0 and summary.loc["e", "frames"] == 3
    assert np.isnan(summary.loc["e", "nuclear_median_area"])


def _tracked_movie(tmp_path, tracks: str, **movie):
    """A 4-frame generated movie (``movie.ome.tif``; ``movie``: other options of make_timelapse), its labels stating
    a 300 s interval (``labels.ome.tif``) and the workflow's track step on them (CTC result ``ctc/``, tracks table
    ``tracks``); returns the movie and labels."""
    from cellscale.io import write_image, write_labels
    from cellscale.steps.track import track_sample

    movie = make_timelapse(**{"n_frames": 4, "shape": (64, 64), "n_cells": 3, "seed": 1, **movie})
    labels = movie.labels.astype(np.uint32)
    write_image(tmp_path / "movie.ome.tif", (movie.image * 60000).astype(np.uint16), ["nuclei"], axes="TYX")
    write_labels(tmp_path / "labels.ome.tif", labels, frame_interval_s=300.0)
    track_sample("m", tmp_path / "labels.ome.tif", tmp_path / "movie.ome.tif", tmp_path / "ctc", tmp_path / tracks)
    return movie, labels


def test_cellscale_tracks_table_is_the_workflows_with_its_time_column(tmp_path, caplog):
    """`cellscale track --table` writes the workflow's tracks table for the same movie and interval: ``time`` after
    ``frame``, from the interval the labels state (as `cellscale segment --timelapse` writes it), else --image's
    metadata's, else --frame-interval's, which wins over both with the workflow's warning."""
    from cellscale.cli import main
    from cellscale.io import write_labels

    movie, labels = _tracked_movie(tmp_path, "workflow.parquet")
    workflow = pd.read_parquet(tmp_path / "workflow.parquet")
    assert workflow["time"].notna().all()

    def track(labels_path, *options) -> pd.DataFrame:
        assert main(["track", str(labels_path), "-o", str(tmp_path / "res"), "--image", str(tmp_path / "movie.ome.tif"),
                     "--table", str(tmp_path / "cli.parquet"), *map(str, options)]) == 0
        return pd.read_parquet(tmp_path / "cli.parquet")

    pd.testing.assert_frame_equal(track(tmp_path / "labels.ome.tif"), workflow)   # the labels' 300 s
    # labels stating none: the movie's metadata's (10 min); none anywhere: NaN, the column there all the same
    write_labels(tmp_path / "bare.ome.tif", labels)
    tifffile.imwrite(tmp_path / "movie.ome.tif", (movie.image * 60000).astype(np.uint16), ome=True,
                     metadata={"axes": "TYX", "TimeIncrement": 10, "TimeIncrementUnit": "min"})
    table = track(tmp_path / "bare.ome.tif")
    pd.testing.assert_frame_equal(table.drop(columns="time"), workflow.drop(columns="time"))
    np.testing.assert_array_equal(table["time"], table["frame"] * 600.0)
    with caplog.at_level("WARNING"):
        table = track(tmp_path / "labels.ome.tif", "--frame-interval", 60)
    np.testing.assert_array_equal(table["time"], table["frame"] * 60.0)
    assert "the frame interval given, 60 s, is used; the image's metadata says 300 s" in caplog.text
    tifffile.imwrite(tmp_path / "movie.ome.tif", (movie.image * 60000).astype(np.uint16), ome=True,
                     metadata={"axes": "TYX"})
    table = track(tmp_path / "bare.ome.tif")
    assert list(table.columns[:2]) == ["frame", "time"] and table["time"].isna().all()
    with pytest.raises(SystemExit) as stop:   # the interval is the table's: a usage error without one
        main(["track", str(tmp_path / "bare.ome.tif"), "-o", str(tmp_path / "res"), "--frame-interval", "60"])
    assert stop.value.code == 2


def test_cellscale_measure_a_movie_is_the_workflows_table(tmp_path, capsys):
    """`cellscale measure` on a movie's labels (the (T, Y, X) stack of `cellscale segment --timelapse`, or a folder
    of per-frame labels) and the movie measures it frame by frame into the workflow's table: with --tracks (the
    tracks table of `cellscale track --table`) its track_id, its time from the labels' interval or
    --frame-interval. A movie of another frame count is an error naming the files."""
    from cellscale.cli import main
    from cellscale.io import write_image
    from cellscale.steps.measure import measure_sample

    movie, _ = _tracked_movie(tmp_path, "tracks.parquet")
    workflow = measure_sample("m", tmp_path / "movie.ome.tif", {"nuclear": tmp_path / "labels.ome.tif"},
                              tmp_path / "m.csv", tmp_path / "m.parquet", timelapse=True,
                              tracks_path=tmp_path / "tracks.parquet")
    assert workflow["track_id"].notna().all() and workflow["time"].max() == 900.0

    def measure(labels_path, *options) -> pd.DataFrame:
        assert main(["measure", str(labels_path), str(tmp_path / "movie.ome.tif"), "-o", str(tmp_path / "cli.csv"),
                     "--parquet", *map(str, options)]) == 0
        return pd.read_parquet(tmp_path / "cli.parquet")

    pd.testing.assert_frame_equal(measure(tmp_path / "labels.ome.tif", "--tracks", tmp_path / "tracks.parquet"),
                                  workflow)
    # the CTC result's masks (labelled by track, numbered from 0 like the frames): every frame's cells, the
    # given interval
    table = measure(tmp_path / "ctc", "--frame-interval", 60)
    assert len(table) == len(workflow) and sorted(table["frame"].unique()) == [0, 1, 2, 3]
    np.testing.assert_array_equal(table["time"], table["frame"] * 60.0)
    np.testing.assert_allclose(table.sort_values(["frame", "Y_centroid"])["Area"],
                               workflow.sort_values(["frame", "Y_centroid"])["Area"])
    write_image(tmp_path / "short.ome.tif", (movie.image[:3] * 60000).astype(np.uint16), ["nuclei"], axes="TYX")
    assert main(["measure", str(tmp_path / "labels.ome.tif"), str(tmp_path / "short.ome.tif"), "-o",
                 str(tmp_path / "bad.csv")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'labels.ome.tif'}: labels (T, C, Y, X) (4, 1, 64, 64) do not match the image (3, 1, 64, 64)" \
        in err and not (tmp_path / "bad.csv").exists()


def test_a_movies_spatialdata_table_has_its_lineage(tmp_path):
    """A time-lapse's per-cell tables (measurements, .h5ad, and so the SpatialData store's table) have each nucleus's
    parent_track_id beside its track_id, the tracks table's (0: a track without a parent), so the store has the
    lineage."""
    import spatialdata

    from cellscale.steps.export import export_one
    from cellscale.steps.measure import measure_sample

    _tracked_movie(tmp_path, "tracks.parquet", n_frames=8, shape=(96, 96), seed=0, n_divisions=1)
    tracks = pd.read_parquet(tmp_path / "tracks.parquet")
    assert (tracks["parent_track_id"] > 0).sum() >= 2  # the daughters of a division
    table = measure_sample("m", tmp_path / "movie.ome.tif", {"nuclear": tmp_path / "labels.ome.tif"},
                           tmp_path / "m.csv", tmp_path / "m.parquet", timelapse=True,
                           tracks_path=tmp_path / "tracks.parquet", out_h5ad=tmp_path / "m.h5ad")
    assert table["parent_track_id"].dtype == "Int64"
    export_one("m", tmp_path / "movie.ome.tif", {"nuclear": tmp_path / "labels.ome.tif"}, tmp_path / "m.h5ad",
               {"spatialdata": tmp_path / "m.zarr"}, timelapse=True)
    obs = spatialdata.read_zarr(tmp_path / "m.zarr").tables["table"].obs
    got = obs.assign(label=obs["instance_id"])[["frame", "label", "track_id", "parent_track_id"]]
    got = got.astype("int64").sort_values(["frame", "label"]).reset_index(drop=True)
    want = tracks[["frame", "label", "track_id", "parent_track_id"]].sort_values(["frame", "label"])
    pd.testing.assert_frame_equal(got, want.reset_index(drop=True))


# ---------------------------------------------------------------------------
# SEG (and OP_CSB, OP_CTB) where the ground truth has SEG/ masks
# ---------------------------------------------------------------------------
SEG_FRAMES = (1, 3, 4)


@pytest.fixture(scope="module")
def seg_movie(tmp_path_factory):
    """A movie, its CTC ground truth with SEG/man_segNNN.tif of frames 1, 3 and 4 (its label images, labels
    renumbered as the SEG masks' need not be the TRA markers'), and (labels, result folder) of the truth itself and
    of the truth with its largest object of frame 3 eroded by a pixel and one object of frame 4 removed."""
    from scipy import ndimage
    from skimage.segmentation import relabel_sequential

    movie = make_timelapse(n_frames=7, shape=(96, 96), n_cells=5, seed=3)
    root = tmp_path_factory.mktemp("seg")
    write_ctc_ground_truth(movie, root / "gt")
    (root / "gt" / "SEG").mkdir()
    for t in SEG_FRAMES:
        tifffile.imwrite(root / "gt" / "SEG" / f"man_seg{t:03d}.tif",
                         relabel_sequential(movie.labels[t].astype(np.uint16), offset=7)[0])
    edited = movie.labels.copy()
    ids, areas = np.unique(edited[3], return_counts=True)
    big = ids[1:][np.argmax(areas[1:])]
    edited[3][(edited[3] == big) & ~ndimage.binary_erosion(edited[3] == big)] = 0
    edited[4][edited[4] == np.unique(edited[4])[1]] = 0
    results = {}
    for name, labels in (("truth", movie.labels), ("edited", edited)):
        results[name] = labels, write_ctc(labels, link(detections_from_labels(labels), labels), root / name)
    return movie, root / "gt", results


def seg_by_definition(ref_frames, res_frames) -> float:
    """The CTC's SEG: the mean over the reference objects of the Jaccard index |R & S| / |R | S| with the result
    object S that covers more than half of R, 0 where none does."""
    scores = []
    for ref, res in zip(ref_frames, res_frames):
        for r in np.unique(ref)[1:]:
            obj = ref == r
            over, counts = np.unique(res[obj], return_counts=True)
            best = [n / np.logical_or(obj, res == c).sum() for c, n in zip(over, counts) if c and n > obj.sum() / 2]
            scores.append(best[0] if best else 0.0)
    return float(np.mean(scores))


def test_evaluate_ctc_scores_seg_where_the_ground_truth_has_it(seg_movie, gt, tl):
    """With SEG/ masks evaluate_ctc scores SEG as the CTC defines it, and OP_CSB = (SEG + DET) / 2, OP_CTB = (SEG
    + TRA) / 2: the truth scores 1; with one object eroded by a pixel (Jaccard = its area left) and one removed (0),
    SEG falls by exactly what those two objects lose, over the SEG masks' objects."""
    movie, seg_gt, results = seg_movie
    truth = evaluate_ctc(results["truth"][1], seg_gt)
    assert truth["SEG"] == 1.0 and truth["SEG_frames"] == len(SEG_FRAMES)
    assert truth["OP_CSB"] == pytest.approx((1.0 + truth["DET"]) / 2) and truth["DET"] > 0.99
    assert truth["OP_CTB"] == pytest.approx((1.0 + truth["TRA"]) / 2)

    labels, res = results["edited"]
    scores = evaluate_ctc(res, seg_gt)
    refs = [movie.labels[t] for t in SEG_FRAMES]
    n_objects = sum(len(np.unique(r)) - 1 for r in refs)
    ids, areas = np.unique(movie.labels[3], return_counts=True)
    big = ids[1:][np.argmax(areas[1:])]
    jaccard_eroded = (labels[3] == big).sum() / areas[1:].max()
    assert 0.5 < jaccard_eroded < 1
    assert scores["SEG"] == pytest.approx(1 - (1 + (1 - jaccard_eroded)) / n_objects, abs=1e-12)
    assert scores["SEG"] == pytest.approx(seg_by_definition(refs, [labels[t] for t in SEG_FRAMES]), abs=1e-12)
    assert scores["OP_CSB"] == pytest.approx((scores["SEG"] + scores["DET"]) / 2)
    assert scores["OP_CTB"] == pytest.approx((scores["SEG"] + scores["TRA"]) / 2)
    # no SEG/: none of those keys, and no error
    plain = evaluate_ctc(write_ctc(tl.labels, link(detections_from_labels(tl.labels), tl.labels),
                                   seg_gt.parent / "plain"), gt)
    assert not {"SEG", "OP_CSB", "OP_CTB", "SEG_frames"} & set(plain) and plain["TRA"] > 0.99


def test_evaluate_tracks_cuts_the_seg_masks_to_a_frame_range(seg_movie, tmp_path, capsys):
    """--frames START:STOP links the SEG masks of frames in the range, renumbered as the result's frames, and SEG is
    scored on those alone; a range without a SEG frame scores none and says so once, on stderr."""
    from cellscale.cli import main
    from cellscale.track.evaluate import ground_truth_frames

    movie, seg_gt, results = seg_movie
    cut = ground_truth_frames(seg_gt, 2, 5, tmp_path / "cut")
    assert sorted(p.name for p in (cut / "SEG").iterdir()) == ["man_seg001.tif", "man_seg002.tif"]
    for new, old in ((1, 3), (2, 4)):
        assert (cut / "SEG" / f"man_seg{new:03d}.tif").resolve() == (seg_gt / "SEG" / f"man_seg{old:03d}.tif").resolve()
    assert not (ground_truth_frames(seg_gt, 5, 7, tmp_path / "none") / "SEG").exists()

    labels = results["edited"][0]
    for frames, part in (("2:5", labels[2:5]), ("5:7", labels[5:7])):
        write_ctc(part, link(detections_from_labels(part), part), tmp_path / frames.replace(":", "-"))
    capsys.readouterr()
    assert main(["evaluate-tracks", str(tmp_path / "2-5"), str(seg_gt), "--frames", "2:5"]) == 0
    out, err = capsys.readouterr()
    scores = {k: float(v) for k, v in (line.split("\t") for line in out.splitlines())}
    expected = seg_by_definition([movie.labels[3], movie.labels[4]], [labels[3], labels[4]])
    assert scores["SEG"] == pytest.approx(expected, abs=1e-4) and expected < 1 and scores["SEG_frames"] == 2
    assert scores["OP_CTB"] == pytest.approx((scores["SEG"] + scores["TRA"]) / 2, abs=1e-4) and "SEG" not in err
    assert main(["evaluate-tracks", str(tmp_path / "5-7"), str(seg_gt), "--frames", "5:7"]) == 0
    out, err = capsys.readouterr()
    assert "SEG" not in out and "TRA\t" in out
    assert err.count("not scored") == 1
    assert f"SEG, OP_CSB and OP_CTB not scored: {seg_gt / 'SEG'} has no mask of --frames 5:7 (its frames: 1, 3, 4)" \
        in err


@pytest.mark.parametrize("damage", ["name", "twice", "frame", "size", "float"])
def test_evaluate_tracks_names_a_bad_seg_mask(damage, seg_movie, tmp_path, capsys):
    """A SEG/ file that is not man_segNNN.tif, two masks of one frame, a SEG mask of a frame the ground truth does
    not have, one of another size or not of integer labels: one line naming it (py-ctcmetrics' messages name no
    file, or it reads past the result's masks)."""
    import shutil

    from cellscale.cli import main

    _, seg_gt, results = seg_movie
    gt = shutil.copytree(seg_gt, tmp_path / "gt")
    frame = tifffile.imread(gt / "SEG" / "man_seg001.tif")
    names = {"name": "seg_001.tif", "twice": "man_seg1.tif", "frame": "man_seg009.tif"}
    bad = gt / "SEG" / names.get(damage, "man_seg001.tif")
    tifffile.imwrite(bad, frame[:40] if damage == "size" else frame.astype(np.float32) if damage == "float" else frame)
    capsys.readouterr()
    assert main(["evaluate-tracks", str(results["truth"][1]), str(gt)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cellscale evaluate-tracks: error:") and str(bad) in err and len(err.splitlines()) == 1
    assert {"name": "not a CTC SEG mask name (man_segNNN.tif", "twice": "a second SEG mask of frame 1 (with man_seg001",
            "frame": "a SEG mask of frame 9, but",
            "size": "differ in size", "float": "must hold integer labels"}[damage] in err


def test_the_fast_path_scores_seg_as_evaluate_ctc_does(seg_movie):
    """ReferenceMatching reads the SEG masks once (SEG depends on the labels, not on the tracking): evaluate_tracks
    gives the SEG, OP_CSB and OP_CTB of evaluate_ctc on the written folder, and first_frames keeps the SEG frames
    before its end only."""
    from cellscale.track.evaluate import ReferenceMatching, evaluate_tracks

    movie, seg_gt, results = seg_movie
    labels, res = results["edited"]
    tracks = link(detections_from_labels(labels), labels)
    official = evaluate_ctc(write_ctc(labels, tracks, res.parent / "fast"), seg_gt)
    fast = evaluate_tracks(tracks, ReferenceMatching(labels, seg_gt))
    for key in ("SEG", "OP_CSB", "OP_CTB", "SEG_frames", "TRA"):
        assert fast[key] == pytest.approx(official[key], abs=1e-12), key
    assert fast["SEG"] < 1
    first = evaluate_tracks(link(detections_from_labels(labels[:4]), labels[:4]),
                            ReferenceMatching(labels, seg_gt).first_frames(4))
    assert first["SEG_frames"] == 2
    assert first["SEG"] == pytest.approx(seg_by_definition([movie.labels[1], movie.labels[3]],
                                                           [labels[1], labels[3]]), abs=1e-12)
