"""Tests for cellscale.measure against skimage.measure.regionprops and numpy."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from support import need_shared
from scipy import ndimage as ndi
from skimage.draw import ellipse
from skimage.measure import regionprops
from skimage.segmentation import watershed

from cellscale.measure import (
    EXTRA_STATS,
    SHAPE_COLUMNS,
    measure_cells,
    measure_compartments,
    write_table,
)

ATOL = 1e-7  # pixels / radians: absorbs eigvalsh round-off in degenerate cells


def _reference(labels, image=None):
    """The MCMICRO columns computed with regionprops, one dict per cell."""
    intensity = None if image is None else np.moveaxis(image, 0, -1)
    rows = []
    for p in regionprops(labels, intensity_image=intensity):
        row = {"CellID": p.label, "X_centroid": p.centroid[1],
               "Y_centroid": p.centroid[0], "Area": p.area,
               "MajorAxisLength": p.axis_major_length,
               "MinorAxisLength": p.axis_minor_length,
               "Eccentricity": p.eccentricity, "Solidity": p.solidity,
               "Extent": p.extent, "Orientation": p.orientation}
        if image is not None:
            for k, v in enumerate(np.atleast_1d(p.intensity_mean)):
                row[f"ch{k}"] = v
        rows.append(row)
    return pd.DataFrame(rows)


def _assert_matches_regionprops(labels, image=None):
    df = measure_cells(labels, image)
    ref = _reference(labels, image)
    n_ch = 0 if image is None else image.shape[0]
    assert list(df.columns) == (["CellID"] + [f"ch{k}" for k in range(n_ch)]
                                + SHAPE_COLUMNS)
    assert len(df) == len(ref)
    np.testing.assert_array_equal(df["CellID"], ref["CellID"])
    for col in ref.columns:
        got, want = df[col].to_numpy(float), ref[col].to_numpy(float)
        if col == "Orientation":  # an axis: compare modulo pi
            diff = np.abs(np.angle(np.exp(2j * (got - want)))) / 2
            assert diff.max() <= ATOL, (col, df["CellID"][np.argmax(diff)])
        else:
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=ATOL, err_msg=col)
    return df


def _blobs():
    """Ellipses incl. border-touching, 1- and 2-pixel cells, big label values."""
    lab = np.zeros((60, 80), dtype=np.uint32)
    rr, cc = ellipse(20, 25, 12, 6, rotation=0.6)
    lab[rr, cc] = 3
    rr, cc = ellipse(45, 60, 9, 14, rotation=-0.3)
    lab[rr, cc] = 7
    rr, cc = ellipse(2, 70, 8, 12, shape=lab.shape)  # cut by top and right border
    lab[rr, cc] = 70000
    rr, cc = ellipse(50, 5, 10, 7, shape=lab.shape)  # cut by left and bottom border
    lab[rr, cc] = 1000
    lab[30, 50] = 12          # one pixel
    lab[5, 40:42] = 13        # two-pixel horizontal line
    lab[10, 45] = lab[11, 46] = 14  # two-pixel diagonal
    lab[20:23, 55] = 15       # vertical line
    lab[25:27, 40:42] = 16    # 2x2 square: orientation tie branch
    lab[35, 30:33] = lab[38, 34] = 17  # one label in two pieces
    return lab


def _watershed_cells(seed=0, shape=(256, 256), n=200):
    rng = np.random.default_rng(seed)
    markers = np.zeros(shape, dtype=np.int32)
    pts = rng.integers(0, shape[0], size=(n, 2))
    markers[pts[:, 0], pts[:, 1]] = np.arange(1, n + 1)
    relief = ndi.gaussian_filter(rng.random(shape), 3)
    return watershed(relief, markers, mask=relief < np.quantile(relief, 0.95))


def test_blobs_match_regionprops():
    lab = _blobs()
    image = np.random.default_rng(1).random((3,) + lab.shape)
    df = _assert_matches_regionprops(lab, image)
    assert df["CellID"].tolist() == [3, 7, 12, 13, 14, 15, 16, 17, 1000, 70000]
    one = df.set_index("CellID")
    assert one.loc[12, "Area"] == 1 and one.loc[12, "Solidity"] == 1.0
    assert one.loc[13, "Area"] == 2 and one.loc[13, "MinorAxisLength"] == 0.0


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.int64, np.uint64])
def test_label_dtypes(dtype):
    lab = (_blobs() % 251).astype(dtype)
    _assert_matches_regionprops(lab)


def test_watershed_200_cells_match_regionprops():
    lab = _watershed_cells()
    ids = np.unique(lab)
    assert ids[0] == 0 and len(ids) > 170  # touching cells plus some background
    image = np.random.default_rng(2).random((3,) + lab.shape)
    df = _assert_matches_regionprops(lab, image)
    assert (df["Solidity"] < 1).any()  # irregular shapes, non-trivial hulls


@pytest.mark.parametrize("seed", range(12))
def test_random_scattered_labels_match_regionprops(seed):
    # fragmented, noisy objects: the hardest case for the convex hull
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 25, size=2)
    lab = (rng.random((h, w)) < 0.7) * rng.integers(1, 5, size=(h, w))
    lab[0, 0] = 9
    _assert_matches_regionprops(lab.astype(np.int32))


def test_real_dsb2018_masks_match_regionprops():
    import tifffile

    masks = sorted(need_shared("dsb2018/masks").glob("*.tif"))[::16]  # 34 of 532 images, all kinds
    assert len(masks) > 30
    for path in masks:
        _assert_matches_regionprops(tifffile.imread(path))


def test_real_codex_whole_cells_and_8_channels_match_regionprops():
    import tifffile

    folder = need_shared("codex/R001_X003_Y004")
    labels = tifffile.imread(folder / "mask_expert1_wholecell.tif")
    image = tifffile.imread(folder / "image.ome.tif")
    assert image.shape == (8,) + labels.shape
    df = _assert_matches_regionprops(labels, image)
    assert len(df) > 3000


def test_huge_label_values_and_means():
    lab = np.zeros((6, 7), dtype=np.uint32)
    lab[1:3, 1:4] = 4_000_000_000
    lab[4, 2:6] = 5
    image = np.arange(2 * 42, dtype=np.uint16).reshape(2, 6, 7)
    df = measure_cells(lab, image, channel_names=["dapi", "cd45"])
    assert df["CellID"].tolist() == [5, 4_000_000_000]
    assert df["dapi"].tolist() == [image[0][lab == 5].mean(), image[0][lab > 5].mean()]
    assert df["cd45"].tolist() == [image[1][lab == 5].mean(), image[1][lab > 5].mean()]


def test_extra_stats_match_numpy():
    lab = _watershed_cells(seed=3, shape=(64, 64), n=30)
    lab[lab == 7] = 0
    image = np.random.default_rng(4).normal(size=(2, 64, 64))
    df = measure_cells(lab, image, channel_names=["a", "b"], extra_stats=True)
    assert list(df.columns) == (["CellID", "a", "b"] + SHAPE_COLUMNS
                                + [f"{c}_{s}" for c in "ab" for s in EXTRA_STATS])
    for i, cell in enumerate(df["CellID"]):
        for k, name in enumerate("ab"):
            v = image[k][lab == cell]
            want = {"sum": v.sum(), "median": np.median(v), "std": v.std(),
                    "p25": np.percentile(v, 25), "p75": np.percentile(v, 75)}
            for stat, value in want.items():
                assert df[f"{name}_{stat}"][i] == pytest.approx(value, rel=1e-9, abs=1e-12)
            assert df[name][i] == pytest.approx(v.mean(), rel=1e-12)


def test_empty_labels_give_empty_table():
    df = measure_cells(np.zeros((5, 5), np.int32), np.ones((2, 5, 5)), extra_stats=True)
    assert df.empty
    assert list(df.columns) == (["CellID", "ch0", "ch1"] + SHAPE_COLUMNS
                                + [f"ch{c}_{s}" for c in "01" for s in EXTRA_STATS])
    assert df["CellID"].dtype == np.int64


def test_no_regionprops_inside(monkeypatch):
    import skimage.measure

    def boom(*args, **kwargs):
        raise AssertionError("regionprops must not be used")

    monkeypatch.setattr(skimage.measure, "regionprops", boom)
    monkeypatch.setattr(skimage.measure, "regionprops_table", boom)
    assert len(measure_cells(_blobs())) == 10


@pytest.mark.parametrize("kwargs, message", [
    (dict(labels=np.zeros((4, 4))), "integer labels"),
    (dict(labels=np.zeros((4, 4), bool)), "integer labels"),
    (dict(labels=-np.ones((4, 4), np.int32)), "negative"),
    (dict(labels=np.zeros((2, 4, 4), np.int32)), "2-D"),
    (dict(labels=np.zeros((4, 4), np.int32), image=np.zeros((2, 4, 5))), "spatial shape"),
    (dict(labels=np.zeros((4, 4), np.int32), image=np.zeros((2, 4, 4)),
          channel_names=["a"]), "1 channel_names for an image with 2 channels"),
    (dict(labels=np.zeros((4, 4), np.int32), image=np.zeros((2, 4, 4)),
          channel_names=["a", "a"]), "unique"),
    (dict(labels=np.zeros((4, 4), np.int32), image=np.zeros((1, 4, 4)),
          channel_names=["Area"]), "clash"),
    # the columns compartments, run-level tables and time-lapses add (were accepted: "sample" then made a run-level
    # table with two sample columns, "compartment" failed far from its cause)
    *[(dict(labels=np.zeros((4, 4), np.int32), image=np.zeros((1, 4, 4)), channel_names=[name]),
       rf"channel names \['{name}'\] clash with measurement columns")
      for name in ("sample", "compartment", "frame", "nucleus_id", "cell_id", "track_id", "parent_track_id",
                   "CellID")],
    (dict(labels=np.zeros((4, 4), np.int32), image=np.zeros((2, 4, 4)), channel_names=["DNA", "DNA_sum"]),
     r"\['DNA_sum'\] clash with another channel's statistics columns"),
])
def test_measure_cells_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        measure_cells(**kwargs)


def _compartment_example():
    wc = np.zeros((8, 10), np.int32)
    wc[1:5, 1:5] = 10
    wc[1:5, 6:10] = 20
    wc[6:8, 0:3] = 30            # a cell without nucleus
    nuc = np.zeros_like(wc)
    nuc[2:4, 2:4] = 1            # inside cell 10
    nuc[2:4, 7:9] = 2            # inside cell 20 ...
    nuc[3, 9] = 3                # ... a smaller second nucleus in cell 20
    nuc[6:8, 5:7] = 4            # outside every cell
    nuc[4, 4] = nuc[5, 4] = 5    # half in cell 10, half in background
    return nuc, wc


def test_compartments_correspondence_and_cytoplasm():
    nuc, wc = _compartment_example()
    image = np.arange(2 * 80, dtype=float).reshape(2, 8, 10)
    df = measure_compartments({"nuclear": nuc, "whole_cell": wc}, image, ["a", "b"])
    assert list(df.columns) == (["CellID", "a", "b"] + SHAPE_COLUMNS
                                + ["compartment", "nucleus_id", "cell_id"])
    assert df["nucleus_id"].dtype == "Int64" and df["cell_id"].dtype == "Int64"
    assert df["compartment"].tolist() == ["nuclear"] * 5 + ["whole_cell"] * 3 + ["cytoplasm"] * 3
    nuclear = df[df["compartment"] == "nuclear"].set_index("CellID")
    assert nuclear["cell_id"].to_dict() == {1: 10, 2: 20, 3: 20, 4: 0, 5: 10}
    assert nuclear["nucleus_id"].isna().all()
    for comp in ("whole_cell", "cytoplasm"):
        rows = df[df["compartment"] == comp].set_index("CellID")
        assert rows["nucleus_id"].to_dict() == {10: 1, 20: 2, 30: 0}
        assert rows["cell_id"].isna().all()
    cyto = df[df["compartment"] == "cytoplasm"].set_index("CellID")
    assert cyto["Area"].to_dict() == {10: 16 - 4 - 1, 20: 16 - 4 - 1, 30: 6}
    mask = (wc == 10) & (nuc == 0)
    assert cyto.loc[10, "a"] == pytest.approx(image[0][mask].mean())
    # the cytoplasm rows are exactly measure_cells on whole-cell minus nuclei
    direct = measure_cells(np.where(nuc > 0, 0, wc), image, ["a", "b"])
    pd.testing.assert_frame_equal(cyto.reset_index()[direct.columns], direct)


def test_compartment_links_ties_go_to_the_smaller_label():
    # nucleus 7 lies 3 pixels in cell 40, 3 in cell 30; cell 50 holds 2 pixels of nucleus 9 and 2 of nucleus 8.
    # The larger label comes first in raster order, so neither order of appearance nor the larger label passes.
    wc = np.zeros((4, 8), np.int32)
    wc[:, :3], wc[:, 3:5], wc[:, 5:] = 40, 30, 50
    nuc = np.zeros_like(wc)
    nuc[0, :3] = 7
    nuc[1, 3:5], nuc[2, 3] = 7, 7
    nuc[0, 5:7], nuc[3, 5:7] = 9, 8
    df = measure_compartments({"nuclear": nuc, "whole_cell": wc})
    counts = {(n, c): int(((nuc == n) & (wc == c)).sum()) for n in (7, 8, 9) for c in (30, 40, 50)}
    assert counts[7, 40] == counts[7, 30] == 3 and counts[9, 50] == counts[8, 50] == 2  # the ties are ties
    nuclear = df[df["compartment"] == "nuclear"].set_index("CellID")
    assert nuclear["cell_id"].to_dict() == {7: 30, 8: 50, 9: 50}
    whole = df[df["compartment"] == "whole_cell"].set_index("CellID")
    assert whole["nucleus_id"].to_dict() == {30: 7, 40: 7, 50: 8}


def test_single_compartment_has_na_links():
    nuc, _ = _compartment_example()
    df = measure_compartments({"nuclear": nuc})
    assert set(df["compartment"]) == {"nuclear"}
    assert df["nucleus_id"].isna().all() and df["cell_id"].isna().all()
    assert "frame" not in df.columns


def test_timelapse_frame_column():
    nuc, wc = _compartment_example()
    nucs, wcs = np.stack([nuc, np.zeros_like(nuc)]), np.stack([wc, wc[:, ::-1]])
    image = np.random.default_rng(5).random((2, 3, 8, 10))
    df = measure_compartments({"nuclear": nucs, "whole_cell": wcs}, image)
    assert list(df.columns[-4:]) == ["compartment", "frame", "nucleus_id", "cell_id"]
    assert df["frame"].dtype == np.int64
    assert df["frame"].tolist() == [0] * 11 + [1] * 6
    for t in range(2):
        one = measure_compartments({"nuclear": nucs[t], "whole_cell": wcs[t]}, image[t])
        got = df[df["frame"] == t].drop(columns="frame").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, one)
    later = df[(df["frame"] == 1) & (df["compartment"] == "whole_cell")]
    assert later["nucleus_id"].tolist() == [0, 0, 0]


@pytest.mark.parametrize("labels, image, message", [
    ({"nucleus": np.zeros((4, 4), int)}, None, "unknown compartment"),
    ({}, None, "empty"),
    ({"nuclear": np.zeros((4, 4), int), "whole_cell": np.zeros((4, 5), int)}, None,
     "differ in shape"),
    ({"nuclear": np.zeros((2, 4, 4), int)}, np.zeros((3, 1, 4, 4)), "3 frames"),
    ({"nuclear": np.zeros((2, 4, 4), int)}, np.zeros((1, 2, 2, 4, 4)), r"\(T, C, Y, X\)"),
    ({"nuclear": np.zeros((4, 4), float)}, None, "integer labels"),
])
def test_measure_compartments_errors(labels, image, message):
    with pytest.raises(ValueError, match=message):
        measure_compartments(labels, image)


def test_write_table_roundtrip_and_atomic(tmp_path, monkeypatch):
    nuc, wc = _compartment_example()
    df = measure_compartments({"nuclear": nuc, "whole_cell": wc})
    csv, parquet = tmp_path / "a" / "cells.csv", tmp_path / "b" / "c" / "cells.parquet"
    write_table(df, csv, parquet)
    pd.testing.assert_frame_equal(pd.read_parquet(parquet), df)
    back = pd.read_csv(csv)
    assert list(back.columns) == list(df.columns)
    np.testing.assert_allclose(back["Solidity"], df["Solidity"])
    assert sorted(os.listdir(csv.parent)) == ["cells.csv"]

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", fail)
    with pytest.raises(OSError, match="disk full"):
        write_table(df.iloc[:1], csv, parquet)
    assert len(pd.read_parquet(parquet)) == len(df)  # old file untouched
    assert sorted(os.listdir(parquet.parent)) == ["cells.parquet"]  # no temp left
