"""Block-by-block measurement gives the in-memory tables; the hull in all its code paths."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy import ndimage as ndi
from skimage.morphology import convex_hull_image
from skimage.segmentation import watershed

from cellscale.measure import RegionArray, measure_cells, measure_compartments
from cellscale.measure.hull import _chunk_counts, hull_pixel_counts
from cellscale.measure.sums import block_sums, merge_sums


def _tissue(seed=0, shape=(150, 131), n=60):
    """Touching whole cells (non-consecutive labels) and nuclei in half of them."""
    rng = np.random.default_rng(seed)
    markers = np.zeros(shape, np.int32)
    pts = np.c_[rng.integers(0, shape[0], n), rng.integers(0, shape[1], n)]
    markers[pts[:, 0], pts[:, 1]] = rng.permutation(n) * 7 + 3
    relief = ndi.gaussian_filter(rng.random(shape), 3)
    wc = watershed(relief, markers, mask=relief < np.quantile(relief, 0.9)).astype(np.uint32)
    nuc = np.where(ndi.binary_erosion(wc > 0, iterations=3), wc, 0).astype(np.uint32)
    nuc[nuc % 2 == 0] = 0
    nuc[0, :5] = 99_999  # a nucleus on the border, outside every cell
    image = rng.integers(0, 60000, (3,) + shape).astype(np.uint16)
    return nuc, wc, image


@pytest.mark.parametrize("block_shape", [(32, 32), (37, 1000), (1, 40), (1000, 1), (7, 13)])
def test_blocks_give_identical_tables(block_shape):
    nuc, wc, image = _tissue()
    labels = {"nuclear": nuc, "whole_cell": wc}
    whole = measure_compartments(labels, image, extra_stats=True)
    assert (whole["compartment"] == "cytoplasm").any()
    blocked = measure_compartments(labels, image, extra_stats=True, block_shape=block_shape)
    pd.testing.assert_frame_equal(blocked, whole, check_exact=True)


def test_blocks_of_float_image_agree_to_round_off():
    nuc, wc, _ = _tissue(seed=1)
    image = np.random.default_rng(2).normal(size=(2,) + wc.shape).astype(np.float32)
    whole = measure_compartments({"nuclear": nuc, "whole_cell": wc}, image)
    blocked = measure_compartments({"nuclear": nuc, "whole_cell": wc}, image, block_shape=(20, 50))
    pd.testing.assert_frame_equal(blocked, whole, check_exact=False, rtol=1e-12, atol=1e-12)


def test_partial_sums_of_blocks_merge_to_the_whole():
    _, wc, image = _tissue(seed=3)
    whole = block_sums(wc, image)
    parts = [block_sums(wc[y:y + 40, x:x + 50], image[:, y:y + 40, x:x + 50], y, x)
             for y in range(0, wc.shape[0], 40) for x in range(0, wc.shape[1], 50)]
    merged = merge_sums(parts, image.shape[0])
    for field in ("labels", "moments", "bbox", "intensity", "rows"):
        np.testing.assert_array_equal(getattr(merged, field), getattr(whole, field), err_msg=field)


def test_timelapse_read_from_a_tiled_tiff_through_zarr(tmp_path):
    import zarr

    nuc, wc, image = _tissue(seed=4, shape=(96, 80))
    stack = np.stack([wc, wc[::-1], np.zeros_like(wc)])
    images = np.stack([image, image[:, ::-1], image])
    tifffile.imwrite(tmp_path / "lab.tif", stack, tile=(32, 32), photometric="minisblack")
    tifffile.imwrite(tmp_path / "img.tif", images, tile=(32, 32), photometric="minisblack")
    lazy_lab = zarr.open(tifffile.imread(tmp_path / "lab.tif", aszarr=True), mode="r")
    lazy_img = zarr.open(tifffile.imread(tmp_path / "img.tif", aszarr=True), mode="r")
    assert not isinstance(lazy_lab, np.ndarray)
    whole = measure_compartments({"whole_cell": stack}, images, ["a", "b", "c"])
    lazy = measure_compartments({"whole_cell": lazy_lab}, lazy_img, ["a", "b", "c"], block_shape=(32, 48))
    pd.testing.assert_frame_equal(lazy, whole, check_exact=True)
    assert sorted(set(lazy["frame"])) == [0, 1]


def test_region_array_from_an_image_source(tmp_path):
    from cellscale.io import ImageSource, write_image, write_labels

    nuc, wc, image = _tissue(seed=5)
    write_labels(tmp_path / "wc.ome.tif", wc)
    write_labels(tmp_path / "nuc.ome.tif", nuc)
    write_image(tmp_path / "img.ome.tif", image, ["DNA", "CD3", "CD20"])
    with ImageSource.open(tmp_path / "wc.ome.tif") as w, ImageSource.open(tmp_path / "nuc.ome.tif") as n, \
            ImageSource.open(tmp_path / "img.ome.tif") as i:
        view = RegionArray(i, "CYX")
        assert view.shape == image.shape and view.dtype == image.dtype
        np.testing.assert_array_equal(view[1, 5:9, 3:7], image[1, 5:9, 3:7])
        np.testing.assert_array_equal(view[:, 5:9, 3:7], image[:, 5:9, 3:7])
        lazy = measure_compartments({"nuclear": RegionArray(n, "YX"), "whole_cell": RegionArray(w, "YX")},
                                    view, block_shape=(64, 64))
    whole = measure_compartments({"nuclear": nuc, "whole_cell": wc}, image)
    pd.testing.assert_frame_equal(lazy, whole, check_exact=True)
    with pytest.raises(ValueError, match="cannot be dropped"):
        RegionArray(i, "YX")
    with pytest.raises(ValueError, match="sub-sequence"):
        RegionArray(i, "XY")


def test_blocked_negative_labels_are_refused():
    lab = np.zeros((10, 10), np.int32)
    lab[8, 8] = -1
    with pytest.raises(ValueError, match="negative"):
        measure_compartments({"nuclear": lab}, block_shape=(4, 4))


@pytest.mark.parametrize("seed", range(6))
def test_hull_counts_match_skimage_in_small_chunks(seed):
    rng = np.random.default_rng(seed)
    lab = ndi.label(ndi.gaussian_filter(rng.random((90, 70)), 2) > 0.5)[0]
    lab[lab % 3 == 0] = 0  # gaps between pieces of no label; some cells in pieces below
    lab[lab == 4] = 5
    sums = block_sums(lab)
    cell = np.searchsorted(sums.labels, sums.rows[0])
    want = [convex_hull_image(lab == k).sum() for k in sums.labels]
    for chunk in (1, 7, 1 << 20):
        got = hull_pixel_counts(cell, *sums.rows[1:], sums.bbox, chunk=chunk)
        np.testing.assert_array_equal(got, want)


def test_hull_int32_and_int64_paths_agree():
    rng = np.random.default_rng(7)
    lab = (rng.random((40, 40)) < 0.6) * rng.integers(1, 6, (40, 40))
    sums = block_sums(lab)
    cell = np.searchsorted(sums.labels, sums.rows[0])
    rmin, cmin = sums.bbox[0], sums.bbox[1]
    args = (cell, sums.rows[1] - rmin[cell], sums.rows[2] - cmin[cell], sums.rows[3] - cmin[cell],
            sums.bbox[2] - rmin + 1)
    small = _chunk_counts(*(a.astype(np.int32) for a in args))
    large = _chunk_counts(*(a.astype(np.int64) for a in args))
    np.testing.assert_array_equal(small, large)
    np.testing.assert_array_equal(small, [convex_hull_image(lab == k).sum() for k in sums.labels])


def test_one_pixel_and_border_cells_in_blocks():
    lab = np.zeros((9, 9), np.uint32)
    lab[0, 0] = 4_000_000_000      # corner, one pixel
    lab[8, 3:9] = 12               # bottom border, crosses block edges
    lab[2:7, 4] = 5                # vertical line across blocks
    lab[4, 0] = lab[6, 2] = 30     # one label, two pieces
    whole = measure_cells(lab)
    blocked = measure_compartments({"nuclear": lab}, block_shape=(2, 3)).drop(
        columns=["compartment", "nucleus_id", "cell_id"])
    pd.testing.assert_frame_equal(blocked, whole, check_exact=True)
    assert whole["CellID"].tolist() == [5, 12, 30, 4_000_000_000]
