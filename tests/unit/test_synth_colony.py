"""The dense colony generator (``cellscale synth colony``): growth, division, packing, CTC ground truth."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi
from skimage.measure import regionprops

from cellscale.cli import main
from cellscale.io.ctc import read_label_dir, read_lineage
from cellscale.synth.colony import PRESETS, make_colony
from cellscale.synth.timelapse import write_ctc_ground_truth

FRAMES = 40


@pytest.fixture(scope="module")
def rods():
    return make_colony(n_frames=FRAMES, shape=(192, 192), n_founders=4, seed=3)


@pytest.fixture(scope="module")
def rounds():
    return make_colony(n_frames=30, shape=(160, 160), n_founders=3, seed=4, cell_shape="round")


@pytest.fixture(scope="module")
def rods_gt(rods, tmp_path_factory):
    path = tmp_path_factory.mktemp("colony") / "01_GT"
    write_ctc_ground_truth(rods, path)
    return path


def test_seeded_determinism():
    kw = dict(n_frames=10, shape=(96, 96), n_founders=3)
    a, b = make_colony(seed=1, **kw), make_colony(seed=1, **kw)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.lineage.equals(b.lineage)
    c = make_colony(seed=2, **kw)
    assert not np.array_equal(a.labels, c.labels)
    assert not np.array_equal(a.image, c.image)


def test_output_container(rods):
    assert rods.image.shape == rods.labels.shape == (FRAMES, 192, 192)
    assert rods.image.dtype == np.float32 and 0.0 <= rods.image.min() and rods.image.max() <= 1.0
    assert rods.labels.dtype == np.uint32
    assert list(rods.lineage.columns) == ["L", "B", "E", "P"]
    # cells are brighter than the background
    assert rods.image[-1][rods.labels[-1] > 0].mean() > rods.image[-1][rods.labels[-1] == 0].mean() + 0.2


def test_ctc_ground_truth_reads_back_consistent(rods, rods_gt):
    labels = read_label_dir(rods_gt / "TRA")
    lin = read_lineage(rods_gt / "TRA" / "man_track.txt")
    assert labels.dtype == np.uint16
    np.testing.assert_array_equal(labels, rods.labels)
    assert lin.equals(rods.lineage)
    spans = lin.set_index("L")
    # every label of a frame is a track alive in that frame, and every track is present in all its frames
    present = {t: set(np.unique(labels[t])) - {0} for t in range(FRAMES)}
    for t, ids in present.items():
        alive = set(lin.L[(lin.B <= t) & (lin.E >= t)])
        assert ids == alive, f"frame {t}: labels {sorted(ids ^ alive)} disagree with man_track.txt"
    for r in lin.itertuples(index=False):
        frames = [t for t in range(FRAMES) if r.L in present[t]]
        assert (frames[0], frames[-1]) == (r.B, r.E)
    # divisions: exactly two daughters, which begin the frame after the mother ends
    children = lin[lin.P > 0].groupby("P")["L"].apply(list)
    assert len(children) > 0
    for mother, kids in children.items():
        assert len(kids) == 2, f"mother {mother} has daughters {kids}"
        assert mother in spans.index
        for k in kids:
            assert spans.loc[k, "B"] == spans.loc[mother, "E"] + 1
    # founders have no parent and start at frame 0; every other track is a daughter
    assert set(lin.L[lin.P == 0]) == set(np.unique(labels[0])) - {0}
    # daughters appear where the mother was: their centroids lie near the mother's last centroid
    com = {}
    for mother, kids in list(children.items())[:20]:
        e = spans.loc[mother, "E"]
        m = np.array(ndi.center_of_mass(labels[e] == mother))
        d = np.array([ndi.center_of_mass(labels[e + 1] == k) for k in kids])
        com[mother] = np.linalg.norm(d.mean(0) - m)
    assert max(com.values()) < 6.0, com


def test_colony_grows_and_divides(rods):
    n_cells = [len(np.unique(f)) - 1 for f in rods.labels]
    assert n_cells[0] == 4
    assert n_cells[-1] >= 40, n_cells
    assert len(rods.divisions) >= 40
    assert len(rods.lineage) == 4 + 2 * len(rods.divisions)
    assert len(set(rods.divisions.E)) >= 10  # divisions are asynchronous, spread over the movie


def test_cells_are_dense_touching_and_whole(rods):
    lab = rods.labels[-1]
    ids = np.unique(lab)[1:]
    touching = 0
    for i in ids:
        ring = ndi.binary_dilation(lab == i, iterations=2) & (lab != i) & (lab > 0)
        touching += bool(ring.any())
    assert touching / len(ids) >= 0.8, touching / len(ids)
    # each label is one connected component (a few frames checked)
    split = total = 0
    for t in (10, 25, FRAMES - 1):
        for i in np.unique(rods.labels[t])[1:]:
            total += 1
            split += ndi.label(rods.labels[t] == i)[1] != 1
    assert split <= 0.02 * total, (split, total)
    # cells are not squeezed: every cell has a reasonable area
    areas = np.bincount(lab.ravel())[ids]
    assert np.median(areas) > 100 and np.quantile(areas, 0.02) > 20


def test_rods_are_elongated_round_cells_are_not(rods, rounds):
    def ratios(tl):
        props = regionprops(tl.labels[-1].astype(np.int32))
        return np.array([p.axis_major_length / max(p.axis_minor_length, 1e-6)
                         for p in props if p.area > 30])
    assert np.median(ratios(rods)) > 2.0
    assert np.median(ratios(rounds)) < 1.4
    assert len(rounds.divisions) >= 5


def test_small_displacement_between_frames(rods):
    """Per-frame steps are small compared with a cell's length, yet neighbours are closer than a length."""
    steps, lengths, nearest = [], [], []
    for t in range(FRAMES - 1):
        a = {p.label: p for p in regionprops(rods.labels[t].astype(np.int32))}
        b = {p.label: p for p in regionprops(rods.labels[t + 1].astype(np.int32))}
        for k in set(a) & set(b):
            steps.append(np.hypot(*np.subtract(a[k].centroid, b[k].centroid)))
            lengths.append(a[k].axis_major_length)
        if len(a) > 10:
            cen = np.array([p.centroid for p in a.values()])
            d = np.hypot(*(cen[:, None] - cen[None]).transpose(2, 0, 1))
            np.fill_diagonal(d, np.inf)
            nearest.extend(d.min(1))
    steps, lengths = np.array(steps), np.array(lengths)
    assert np.median(steps) < 0.2 * np.median(lengths), (np.median(steps), np.median(lengths))
    assert np.quantile(steps / lengths, 0.95) < 0.5
    assert np.median(nearest) < np.median(lengths)


def test_ground_truth_scores_itself_perfectly(rods_gt, tmp_path):
    from cellscale.track.evaluate import evaluate_ctc

    res = tmp_path / "01_RES"
    res.mkdir()
    for p in sorted((rods_gt / "TRA").glob("man_track*.tif")):
        shutil.copy(p, res / p.name.replace("man_track", "mask"))
    shutil.copy(rods_gt / "TRA" / "man_track.txt", res / "res_track.txt")
    scores = evaluate_ctc(res, rods_gt)
    assert scores["Valid"] == 1
    assert scores["TRA"] == pytest.approx(1.0) and scores["DET"] == pytest.approx(1.0)
    assert scores["division_f1"] == 1.0
    assert scores["n_divisions_true"] >= 40


def test_invalid_arguments():
    with pytest.raises(ValueError, match="cell_shape"):
        make_colony(n_frames=2, shape=(64, 64), cell_shape="square")
    with pytest.raises(ValueError, match="length > width"):
        make_colony(n_frames=2, shape=(64, 64), width=10, length=8)
    with pytest.raises(ValueError, match="doubling"):
        make_colony(n_frames=2, shape=(64, 64), doubling=0)
    with pytest.raises(ValueError, match="turn"):
        make_colony(n_frames=2, shape=(64, 64), turn=-1)


def test_hard_preset_packs_touching_rods_that_move_more():
    """PRESETS["hard"] (issue 23's case): rods packed with no background between them, faster growth and
    larger per-frame steps than the default colony, more noise; same seed, same movie."""
    kw = {"n_frames": 22, "shape": (192, 192), "seed": 3}
    hard = make_colony(**{**PRESETS["hard"], **kw})
    easy = make_colony(**{**kw, "n_founders": 3})
    assert hard.params["gap"] == 0 and hard.params["turn"] == PRESETS["hard"]["turn"]
    np.testing.assert_array_equal(hard.labels, make_colony(**{**PRESETS["hard"], **kw}).labels)

    def contact_fraction(tl):  # labelled pixels whose 4-neighbour is another cell
        lab = tl.labels[-1]
        a, b = lab[:, :-1], lab[:, 1:]
        return ((a != b) & (a > 0) & (b > 0)).sum() / max((lab > 0).sum(), 1)

    def median_step(tl):
        steps = []
        for t in range(tl.labels.shape[0] - 1):
            a = {p.label: p.centroid for p in regionprops(tl.labels[t].astype(np.int32))}
            b = {p.label: p.centroid for p in regionprops(tl.labels[t + 1].astype(np.int32))}
            steps += [np.hypot(*np.subtract(a[k], b[k])) for k in set(a) & set(b)]
        return float(np.median(steps))

    assert contact_fraction(hard) > 2 * contact_fraction(easy)
    assert median_step(hard) > 1.5 * median_step(easy)
    assert len(hard.divisions) > len(easy.divisions)


def test_cli_synth_colony(tmp_path, capsys):
    out = tmp_path / "colony.ome.tif"
    assert main(["synth", "colony", "-o", str(out), "--size", "96", "--frames", "12", "--cells", "3",
                 "--seed", "5", "--shape", "round", "--doubling", "5"]) == 0
    assert "round colony (12, 96, 96)" in capsys.readouterr().out
    image = tifffile.imread(out)
    assert image.shape == (12, 96, 96) and image.dtype == np.uint16
    tra = tmp_path / "colony_truth" / "TRA"
    assert sorted(p.name for p in tra.glob("*.tif")) == [f"man_track{t:03d}.tif" for t in range(12)]
    labels = read_label_dir(tra)
    lin = read_lineage(tra / "man_track.txt")
    assert len(np.unique(labels[0])) - 1 == 3
    assert (lin.P > 0).sum() >= 2
    expected = make_colony(n_frames=12, shape=(96, 96), n_founders=3, seed=5, cell_shape="round", doubling=5)
    np.testing.assert_array_equal(labels, expected.labels)


def test_cli_synth_again_leaves_no_stale_truth_and_a_failure_no_folder(tmp_path, capsys):
    """A shorter movie written over a longer one's truth leaves no frame of the old (evaluate-tracks then counted
    12 masks against 6); a movie that cannot be generated leaves no empty truth folder."""
    out = tmp_path / "tl.ome.tif"
    for frames in (12, 6):
        assert main(["synth", "timelapse", "-o", str(out), "--size", "96", "--frames", str(frames),
                     "--cells", "3"]) == 0
    assert len(list((tmp_path / "tl_truth" / "TRA").glob("man_track*.tif"))) == 6
    assert main(["synth", "timelapse", "-o", str(tmp_path / "new" / "tl.ome.tif"), "--size", "64"]) == 2
    assert "do not fit" in capsys.readouterr().err and not (tmp_path / "new" / "tl_truth").exists()
