"""Stitching into an on-disk label store (issue 22, bounded memory): the same labels as the in-memory reference,
never an (h, w) array, and the OME-TIFF written tile by tile from the store."""

import tracemalloc

import numpy as np
import pytest

from cellscale.segment.postprocess import PostprocessParams, labels_from_maps
from cellscale.segment.stitch import LabelStore, SourceGrid, labels_by_block, stitch_blocks
from cellscale.segment.tiles import to_source_grid
from cellscale.train.targets import inner_distance, three_class


def reference_labels_by_block(read_maps, shape, params, block, margin):
    """The stitching of cellscale 0.x before the label store: one (h, w) array, filled block by block."""
    h, w = shape
    out = np.zeros((h, w), np.uint32)
    next_id = 1
    for by in range(0, h, block):
        for bx in range(0, w, block):
            y0, y1 = max(0, by - margin), min(h, by + block + margin)
            x0, x1 = max(0, bx - margin), min(w, bx + block + margin)
            maps = read_maps(y0, y1, x0, x1)
            local = labels_from_maps(maps[0], maps[1], params, maps[2] if len(maps) > 2 else None)
            n = int(local.max())
            if n == 0:
                continue
            rows, cols = np.indices(local.shape)
            area = np.bincount(local.ravel(), minlength=n + 1)
            cy = np.bincount(local.ravel(), rows.ravel(), n + 1) / np.maximum(area, 1) + y0
            cx = np.bincount(local.ravel(), cols.ravel(), n + 1) / np.maximum(area, 1) + x0
            own = (cy >= by) & (cy < by + block) & (cx >= bx) & (cx < bx + block)
            own[0] = False
            ids = np.zeros(n + 1, np.uint32)
            ids[own] = np.arange(next_id, next_id + own.sum(), dtype=np.uint32)
            next_id += int(own.sum())
            region = out[y0:y1, x0:x1]
            new = ids[local]
            take = (new > 0) & (region == 0)
            region[take] = new[take]
    return out


def _maps(labels, crop=None):
    labels = labels if crop is None else labels[crop]
    dist = inner_distance(labels)
    p_bg = (three_class(labels) == 0).astype(np.float32)
    p_boundary = (three_class(labels) == 1).astype(np.float32)
    return dist, p_bg, p_boundary


@pytest.mark.parametrize("block, margin", [(96, 48), (64, 0), (50, 120)])
def test_the_label_store_gives_the_reference_labels(tmp_path, small_tissue, block, margin):
    """Identical labels: the in-memory reference, the NumPy target and the on-disk store, 1 or 2 workers, two
    images (one not a multiple of the block), with and without the boundary map; margins below and above the block."""
    cases = [(_maps(small_tissue.whole_cell), PostprocessParams(sigma=1.0)),
             (_maps(small_tissue.nuclear, (slice(0, 301), slice(17, 384))),
              PostprocessParams(sigma=0.0, merge_boundary=0.2))]
    for k, (maps, params) in enumerate(cases):
        maps = maps if params.merge_boundary > 0 else maps[:2]
        shape = maps[0].shape

        def read(y0, y1, x0, x1):
            return tuple(m[y0:y1, x0:x1] for m in maps)

        want = reference_labels_by_block(read, shape, params, block, margin)
        assert want.max() > 20
        for workers in (1, 2):
            np.testing.assert_array_equal(labels_by_block(read, shape, params, block, margin, workers), want)
            store = LabelStore(tmp_path / f"{k}_{workers}.zarr", (2, *shape), block)
            n = stitch_blocks(read, shape, params, store.frame(1), block, margin, workers)
            assert n == want.max()
            np.testing.assert_array_equal(store[1], want)
            assert not store[0].any()  # the other frame untouched


class _Target:
    """A write-only (h, w) target that keeps nothing: what is left is the stitching's own memory."""

    def __init__(self, shape):
        self.shape, self.writes = shape, 0

    def __setitem__(self, key, value):
        self.writes += value.size


def test_stitching_to_a_store_never_allocates_the_whole_image(monkeypatch):
    """Images 2048 wide and 2048 or 16384 high (16 or 128 MB of uint32 labels) stitched in 512-px blocks into a
    target that keeps nothing: the traced peak does not grow with the height (about two rows of blocks are held)
    and stays well under the image's size."""
    import cellscale.segment.stitch as stitch

    tile = np.zeros((640, 640), np.uint32)
    tile[8:-8, 8:-8] = np.repeat(np.repeat(np.arange(1, 26, dtype=np.uint32).reshape(5, 5), 125, 0), 125, 1)[:624,
                                                                                                          :624]
    monkeypatch.setattr(stitch, "labels_from_maps", lambda d, b, p, x=None: tile[:d.shape[0], :d.shape[1]].copy())

    def read(y0, y1, x0, x1):
        z = np.zeros((y1 - y0, x1 - x0), np.float32)
        return z, z

    peaks = {}
    for h, w in ((2048, 2048), (16384, 2048)):
        target = _Target((h, w))
        tracemalloc.start()
        try:
            n = stitch_blocks(read, (h, w), PostprocessParams(), target, block=512, margin=64)
            _, peaks[h] = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert n > (h // 512) * (w // 512) * 20 and target.writes == h * w
    assert peaks[16384] < 1.2 * peaks[2048], peaks
    assert peaks[16384] < 16384 * 2048 * 4 / 4, peaks


@pytest.mark.parametrize("scale", [0.5, 1.7])
def test_the_source_grid_resamples_region_by_region(tmp_path, scale):
    rng = np.random.default_rng(3)
    small = np.repeat(np.repeat(rng.integers(0, 50, (2, 20, 30)).astype(np.uint32), 7, 1), 7, 2)
    source_shape = (int(round(small.shape[1] / scale)), int(round(small.shape[2] / scale)))
    want = to_source_grid(small, source_shape, scale)
    grid = SourceGrid(small, source_shape, scale)
    assert grid.shape == want.shape
    for t in range(2):
        for ys, xs in ((slice(None), slice(None)), (slice(5, 77), slice(30, 31)), (slice(3, 3), slice(0, 9))):
            np.testing.assert_array_equal(grid[t, ys, xs], want[t][ys, xs])


@pytest.mark.parametrize("shape", [(700, 1000), (3, 300, 517)])
def test_labels_from_a_store_are_written_tile_by_tile(tmp_path, shape):
    """Written from a Zarr array: tiled, and the same pixels and OME metadata (UUID too) as from NumPy."""
    import tifffile
    import zarr

    from cellscale.io import read_labels, write_labels

    labels = np.random.default_rng(0).integers(0, 5000, shape).astype(np.uint32)
    store = zarr.open_array(store=str(tmp_path / "l.zarr"), mode="w", shape=shape, dtype=np.uint32,
                            chunks=(1,) * (len(shape) - 2) + (128, 128))
    store[...] = labels
    write_labels(tmp_path / "a.ome.tif", labels, 0.5)
    write_labels(tmp_path / "b.ome.tif", store, 0.5)
    np.testing.assert_array_equal(read_labels(tmp_path / "b.ome.tif"), labels)
    with tifffile.TiffFile(tmp_path / "a.ome.tif") as a, tifffile.TiffFile(tmp_path / "b.ome.tif") as b:
        assert b.pages[0].is_tiled and b.series[0].axes == a.series[0].axes
        assert a.ome_metadata == b.ome_metadata


def test_outlines_band_by_band_are_spatialdatas(tmp_path, monkeypatch):
    """The outlines written band by band (256-row bands here: several per image) read back with spatialdata as
    exactly ``spatialdata.to_polygons`` of the whole labels in one chunk, every cell once."""
    import dask.array as da
    import spatialdata
    from spatialdata import to_polygons
    from spatialdata.models import Labels2DModel

    import cellscale.export.spatial as spatial
    from cellscale.synth.tissue import make_tissue

    monkeypatch.setattr(spatial, "BAND_PIXELS", 1)  # bands of 256 rows
    tissue = make_tissue((700, 500), n_cells=200, seed=4)
    labels = {"nuclear": tissue.nuclear.astype(np.uint32), "whole_cell": tissue.whole_cell.astype(np.uint32)}
    image = da.from_array((tissue.image[:2] * 1000).astype(np.uint16), chunks=(2, 256, 256))
    spatial.write_spatialdata(tmp_path / "s.zarr", image, {c: da.from_array(v, chunks=256) for c, v in labels.items()},
                              None, pixel_size_um=0.5)
    sdata = spatialdata.read_zarr(tmp_path / "s.zarr")
    for comp, lab in labels.items():
        want = to_polygons(Labels2DModel.parse(lab, dims=("y", "x"))).set_index("label").sort_index()
        got = sdata.shapes[f"{comp}_boundaries"].sort_index()
        assert got.index.is_unique and len(got) == len(np.unique(lab)) - 1 > 50
        np.testing.assert_array_equal(got.index.to_numpy(), want.index.to_numpy(np.int64))
        assert got.geometry.geom_equals_exact(want.geometry, 0).all()
        scale = spatialdata.transformations.get_transformation(sdata.shapes[f"{comp}_boundaries"])
        np.testing.assert_allclose(scale.to_affine_matrix(("x", "y"), ("x", "y"))[:2, :2], np.diag([0.5, 0.5]))


def test_the_report_reads_labels_strided_not_whole(tmp_path, monkeypatch, small_tissue):
    """report_sample draws its overlay from every step-th label pixel, read lazily (the whole labels are never
    read): the same picture and summary as from the labels in memory."""
    import pandas as pd
    import zarr

    import cellscale.steps.report as step
    from cellscale.io import write_image, write_labels
    from cellscale.report import overlay, summarize_sample

    image = np.tile(small_tissue.image[:2], (1, 6, 3))  # (2, 2304, 1152): the overlay reads every 3rd pixel
    labels = {"nuclear": np.tile(small_tissue.nuclear, (6, 3)).astype(np.uint32),
              "whole_cell": np.tile(small_tissue.whole_cell, (6, 3)).astype(np.uint32)}
    write_image(tmp_path / "image.ome.tif", image, ["DNA", "membrane"])
    paths = {}
    for comp, lab in labels.items():
        store = zarr.open_array(store=str(tmp_path / f"{comp}.zarr"), mode="w", shape=lab.shape, dtype=np.uint32,
                                chunks=(512, 512))
        store[...] = lab
        write_labels(tmp_path / f"{comp}.ome.tif", store)  # tiled, as the stitch step writes them
        paths[comp] = tmp_path / f"{comp}.ome.tif"
    table = pd.DataFrame({"compartment": ["nuclear", "whole_cell"], "CellID": [1, 1], "Area": [10.0, 20.0]})
    table.to_parquet(tmp_path / "cells.parquet")

    def whole(*args):
        raise AssertionError("the report read whole labels")

    monkeypatch.setattr(step, "read_sample_labels", whole)
    summary = step.report_sample("s", tmp_path / "image.ome.tif", paths, tmp_path / "cells.parquet", tmp_path / "qc")
    import imageio.v3 as iio

    want = overlay(image[:, ::3, ::3], {c: lab[::3, ::3] for c, lab in labels.items()}, max_px=step.OVERLAY_PX)
    np.testing.assert_array_equal(iio.imread(tmp_path / "qc" / "overlay.png"), want)
    assert summary == {**summarize_sample("s", labels, table), "pixel_size_um": None}  # none stated


def test_measure_holds_row_entries_of_open_cells_only(monkeypatch):
    """Cells are closed block row by block row: the same table as one block of the whole image (exactly, extra
    statistics too), also for labels in pieces far apart (measured again whole), while the convex hull's row
    entries held at once stay a small share of the image's."""
    import pandas as pd

    import cellscale.measure.compartments as compartments
    from cellscale.measure import measure_compartments

    rng = np.random.default_rng(5)
    wc = np.tile(np.kron(rng.integers(1, 40, (12, 10)), np.ones((6, 6), np.int64)), (8, 1)).astype(np.uint32)
    wc[wc % 7 == 0] = 0
    wc += np.where(wc > 0, np.repeat(np.arange(wc.shape[0] // 72), 72)[:, None] * 100, 0).astype(np.uint32)
    wc[2:5, 2:5] = wc[-4:-1, -5:-2] = 9_999  # one cell in two pieces, top and bottom
    wc[40:43, 20:23], wc[300:302, 0:2] = 8_888, 8_888
    nuc = np.where(wc % 3 == 0, wc, 0).astype(np.uint32)
    image = rng.integers(0, 60000, (2, *wc.shape)).astype(np.uint16)
    labels = {"nuclear": nuc, "whole_cell": wc}
    whole = measure_compartments(labels, image, extra_stats=True, block_shape=wc.shape)
    held, total = [], []
    close = compartments._Cells.close

    def recording(self, last_row):
        held.append(self.open.rows.shape[1])
        close(self, last_row)

    monkeypatch.setattr(compartments._Cells, "close", recording)
    for block_shape in ((16, wc.shape[1]), (24, 25)):
        held.clear()
        blocked = measure_compartments(labels, image, extra_stats=True, block_shape=block_shape)
        pd.testing.assert_frame_equal(blocked, whole, check_exact=True)
        total.append(max(held))
    rows_of_all_cells = sum(len(np.unique(np.c_[np.nonzero(lab)][:, 0] * 2**32 + lab[lab > 0])) for lab in
                            (nuc, wc))
    assert max(total) < rows_of_all_cells / 4, (total, rows_of_all_cells)


def test_spatialdata_label_pyramid_stays_lazy_and_equals_spatialdatas():
    """Every level of the labels element is a lazy dask array holding what spatialdata's own (eager)
    nearest-neighbour pyramid holds, with the same coordinates and transformations."""
    import dask.array as da
    from spatialdata.models import Labels2DModel
    from spatialdata.transformations import Scale, get_transformation

    from cellscale.export.spatial import _labels_element

    labels = da.from_array(np.random.default_rng(0).integers(0, 100, (1100, 700)).astype(np.uint32), chunks=256)
    to_um = {"global": Scale([0.5, 0.5], axes=("y", "x"))}
    want = Labels2DModel.parse(labels, dims=("y", "x"), scale_factors=[2, 2, 2], transformations=to_um,
                               chunks=(256, 256))
    got = _labels_element(labels, [2, 2, 2], to_um)
    assert list(got.children) == list(want.children) == ["scale0", "scale1", "scale2", "scale3"]
    for name in want.children:
        a, b = (next(iter(tree[name].ds.data_vars.values())) for tree in (want, got))
        assert isinstance(b.data, da.Array) and b.dtype == np.uint32
        np.testing.assert_array_equal(b.values, a.values)
        for axis in ("y", "x"):
            np.testing.assert_array_equal(b.coords[axis].values, a.coords[axis].values)
    assert get_transformation(got, get_all=True) == get_transformation(want, get_all=True)


def _disc_maps(shape, centre, radius):
    """Ideal maps of one disc: inner distance 1 at the centre falling to 0 at the edge, p(background) 0 inside."""
    rows, cols = np.indices(shape)
    d = np.hypot(rows - centre[0], cols - centre[1])
    inside = d <= radius
    return np.where(inside, 1 - d / radius, 0).astype(np.float32), (~inside).astype(np.float32)


def test_a_cell_centred_on_a_block_edge_is_one_cell_of_one_block():
    """A disc whose centroid is exactly row 16, the first row of the second 16-px block, seen whole by both blocks
    (margin 16): only the block holding its centroid numbers it, so the image has one cell, numbered 1, and the count
    returned is the count of labels written."""
    dist, p_bg = _disc_maps((40, 24), (16, 11), 6)
    out = np.zeros(dist.shape, np.uint32)
    n = stitch_blocks(lambda y0, y1, x0, x1: (dist[y0:y1, x0:x1], p_bg[y0:y1, x0:x1]), dist.shape,
                      PostprocessParams(), out, block=16, margin=16)
    assert np.argwhere(out > 0).mean(axis=0)[0] == 16
    assert set(np.unique(out)) == {0, 1} and n == 1
    np.testing.assert_array_equal(out > 0, p_bg == 0)


def test_pixels_claimed_by_an_earlier_block_stay_its_cells():
    """Two blocks whose watersheds disagree where their cells touch (a ``post`` that returns, for each window, that
    window's own labels): the overlap stays with the cell of the first block, the later cell gets the rest."""
    first, second = np.zeros((32, 8), np.int32), np.zeros((32, 8), np.int32)
    first[4:14, 2:6] = 1   # the first block's cell, centroid row 8.5 (block 0), reaching row 13
    second[11:24, 2:6] = 1  # the second block's, centroid row 17 (block 1), reaching up to row 11

    def post(maps, params, window):
        y0, y1, x0, x1 = window
        return (first if y0 == 0 and y1 < 32 else second)[y0:y1, x0:x1]

    out = np.zeros((32, 8), np.uint32)
    z = np.zeros((32, 8), np.float32)
    n = stitch_blocks(lambda y0, y1, x0, x1: (z[y0:y1, x0:x1], z[y0:y1, x0:x1]), (32, 8), PostprocessParams(), out,
                      block=16, margin=8, post=post)
    assert n == 2
    np.testing.assert_array_equal(out == 1, first == 1)
    np.testing.assert_array_equal(out == 2, (second == 1) & (first == 0))
