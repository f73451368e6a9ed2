"""Batches of small images: how samples are packed (cellscale.samples.pack_batches), which samples share jobs
(cellscale.steps.batch.plan_batches), and one batch job end to end (segment_batch)."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import tifffile
from support import DEMO, MODELS

from cellscale.samples import batch_name, pack_batches
from cellscale.steps import read_tsv
from cellscale.steps.batch import Field, plan_batches, read_plan, segment_batch


def test_pack_batches_keeps_models_apart_and_sheet_order_and_caps_each_batch():
    sizes = [0.3, 0.3, 0.3, 0.5, 0.2, 1.5, 0.1, 0.4]
    names = [f"f{i}" for i in range(8)]
    batches = pack_batches(sizes, ["n"] * 8, 1.0, names)
    for b in set(batches):
        held = [i for i, k in enumerate(batches) if k == b]
        assert held == list(range(held[0], held[-1] + 1))  # a run of the sheet
        assert sum(sizes[i] for i in held) <= 2.0 and batches[held[0]] == batch_name(names[held[0]])
    assert sum(sizes) > 2.0 and len(set(batches)) >= 2
    # a batch never mixes models; each model's images keep their order
    mixed = pack_batches([0.5] * 4, ["n", "t", "n", "t"], 1.0, ["a", "b", "c", "d"])
    assert mixed == [batch_name("a"), batch_name("b"), batch_name("a"), batch_name("b")]
    # unknown sizes (unreadable files) count as nothing: their batch job says why they failed
    assert len(set(pack_batches([None, None, 0.6, None], ["n"] * 4, 1.0, list("abcd")))) == 1
    with pytest.raises(ValueError):
        pack_batches([1.0], ["n", "n"], 1.0, ["a", "b"])


def test_a_run_of_exactly_twice_the_limit_is_one_batch_and_a_longer_one_is_cut_after_its_lowest_hash():
    import hashlib

    # 2 x 1.0 megapixels: at most BATCH_CAP (2) times limit_mpx 1.0, so one batch
    assert pack_batches([1.0, 1.0], ["n"] * 2, 1.0, ["p", "q"]) == [batch_name("p")] * 2
    # 3 x 0.75 (2.25 > 2.0): cut once, after the first or second member, whichever name's SHA-256 is lower
    for names in (["p", "q", "r"], ["q", "p", "r"]):
        low = min(range(2), key=lambda i: hashlib.sha256(names[i].encode()).digest()[:8])
        batches = pack_batches([0.75] * 3, ["n"] * 3, 1.0, names)
        assert batches == [batch_name(names[0])] * (low + 1) + [batch_name(names[low + 1])] * (2 - low)


@pytest.mark.parametrize("n", [1, 10, 1000])
def test_batches_grow_with_megapixels_not_with_images(n):
    rng = np.random.default_rng(n)
    sizes = rng.uniform(0.05, 1.0, n).tolist()
    limit = 4.0
    batches = pack_batches(sizes, ["n"] * n, limit, [f"s{i}" for i in range(n)])
    names = list(dict.fromkeys(batches))
    assert len(names) <= math.ceil(sum(sizes) / limit) * 1.35 + 1
    if n == 1000:  # about limit a batch on average
        assert 0.7 < sum(sizes) / limit / len(names) < 1.35
    for b in names:
        assert sum(s for s, k in zip(sizes, batches) if k == b) <= 2 * limit or batches.count(b) == 1
    assert batches == sorted(batches, key=names.index)  # batches follow the sheet


def test_an_inserted_and_a_removed_row_change_only_their_own_batches():
    """A plate's sheet edited in the middle (a row inserted, another taken out): every batch away from the two
    edits keeps its members and its name, so only two or three batches rerun; an unchanged sheet gives the same
    batches, whatever Python's hash seed."""
    plate = [f"{row}{col:02d}_s{site}" for row in "ABCDEFGH" for col in range(1, 13) for site in (1, 2)]  # 192
    sizes = [0.065536 if i % 5 else 0.26 for i in range(len(plate))]
    before = pack_batches(sizes, ["nuclear"] * len(plate), 1.0, plate)
    assert len(set(before)) >= 10 and pack_batches(sizes, ["nuclear"] * len(plate), 1.0, plate) == before
    edited, edited_sizes = plate.copy(), sizes.copy()
    edited.insert(100, "D06_s3")  # a field of view more in the middle of the plate
    edited_sizes.insert(100, 0.065536)
    del edited[40], edited_sizes[40]  # one taken out
    after = pack_batches(edited_sizes, ["nuclear"] * len(edited), 1.0, edited)

    def members(names, batches):
        return {b: [s for s, k in zip(names, batches) if k == b] for b in dict.fromkeys(batches)}

    old, new = members(plate, before), members(edited, after)
    kept = {b for b in new if old.get(b) == new[b]}
    assert len(new) - len(kept) <= 3 and len(old) - len(kept) <= 3, (old, new)
    assert len(kept) >= len(old) - 3 >= 7
    # what changed is the batches of the two edits, or a neighbour one of them split from or joined
    order = list(old)
    edits = {order.index(before[i]) for i in (40, 99, 100)}
    assert set(old) - kept <= {order[k] for e in edits for k in (e - 1, e, e + 1) if 0 <= k < len(order)}


def test_batch_names_do_not_depend_on_pythons_hash_seed():
    code = ("from cellscale.samples import pack_batches; "
            "print(pack_batches([0.3] * 50, ['n'] * 50, 1.0, [f'w{i}' for i in range(50)]))")
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert len(runs) == 1 and len(set(eval(runs.pop()))) > 5


def test_plan_sends_small_stills_to_batches_and_large_images_and_movies_to_their_own_jobs(tmp_path):
    for name, shape in {"a": (256, 256), "b": (512, 512), "big": (2048, 2048), "movie": (3, 64, 64)}.items():
        tifffile.imwrite(tmp_path / f"{name}.tif", np.zeros(shape, np.uint8))
    rows = pd.DataFrame({
        "sample": ["a", "b", "big", "movie", "absent", "half"],
        "image": [str(tmp_path / f) for f in ("a.tif", "b.tif", "big.tif", "movie.tif", "nothere.tif", "big.tif")],
        "kind": ["tissue", "tissue", "tissue", "timelapse", "tissue", "tissue"],
        "scale": [pd.NA, pd.NA, pd.NA, pd.NA, pd.NA, 0.25],  # 2048 px at scale 0.25: the model sees 512 px
        "model": ["nuclear"] * 6,
    })
    plan = plan_batches(rows, tmp_path / "plan.tsv", shard_mpx=1.0)
    back = read_plan(tmp_path / "plan.tsv").set_index("sample")
    pd.testing.assert_frame_equal(back.reset_index(), plan)
    assert back.loc["a", "mpx"] == pytest.approx(0.065536) and back.loc["half", "mpx"] == pytest.approx(0.262144)
    assert pd.isna(back.loc["big", "batch"]) and pd.isna(back.loc["movie", "batch"])
    assert back.loc["a", "batch"] == back.loc["b", "batch"] == back.loc["absent", "batch"] == back.loc["half", "batch"]
    off = plan_batches(rows, tmp_path / "off.tsv", shard_mpx=1.0, enabled=False)
    assert off["batch"].isna().all()


def test_a_batch_job_finishes_every_good_image_and_records_each_bad_one(tmp_path):
    from cellscale.io import read_labels
    from cellscale.segment.image import segment_image
    from cellscale.segment.predictor import Predictor

    images = sorted((DEMO / "dsb2018" / "images").glob("*.png"))[:2]
    tifffile.imwrite(tmp_path / "nan.tif", np.full((64, 64), np.nan, np.float32))
    fields = [Field(p.stem, str(p), {"nuclear": None, "membrane": None}) for p in images]
    fields.insert(1, Field("nan", str(tmp_path / "nan.tif"), {"nuclear": None, "membrane": None}))
    fields.append(Field("absent", str(tmp_path / "nothere.png"), {"nuclear": None, "membrane": None}))
    out = tmp_path / "batch"
    summary = segment_batch(fields, MODELS / "nuclear", out, "0007", threads=1)
    assert list(summary["sample"]) == [f.sample for f in fields]  # sheet order
    assert list(summary["status"]) == ["ok", "failed", "ok", "failed"]
    errors = read_tsv(out / "errors.tsv")
    assert list(errors["sample"]) == ["nan", "absent"] and (errors["batch"] == "0007").all()
    assert "not finite" in errors["error"][0] and "nothere.png" in errors["error"][1]
    cells = pd.read_parquet(out / "cells.parquet")
    assert list(cells.columns[:2]) == ["sample", "CellID"]
    assert set(cells["sample"]) == {images[0].stem, images[1].stem}
    # each image's labels are those it gets alone (the predictor's defaults are the workflow's)
    predictor = Predictor(MODELS / "nuclear", precision="int8", augment="rot180", threads=1)
    for path in images:
        from cellscale.io import read_image

        alone = segment_image(predictor, read_image(path), workers=1)["nuclear"][0]
        batched = read_labels(out / "labels" / path.stem / "nuclear.ome.tif")
        np.testing.assert_array_equal(batched, alone)
        assert (cells["sample"] == path.stem).sum() == alone.max()
    assert not (out / "labels" / "nan").exists() and not (out / "labels" / "absent").exists()


def test_sizes_from_the_sheet_open_no_image_and_a_wrong_size_is_refused(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((256, 256), np.uint8))
    rows = pd.DataFrame({"sample": ["a", "remote", "unsized"],
                         "image": [str(tmp_path / "a.tif"), str(tmp_path / "not-here-yet.tif"), str(tmp_path / "a.tif")],
                         "kind": ["tissue"] * 3, "scale": [pd.NA, 0.5, pd.NA], "model": ["nuclear"] * 3,
                         "height": pd.array([256, 1000, pd.NA], dtype="Int64"),
                         "width": pd.array([256, 2000, pd.NA], dtype="Int64")})
    plan = plan_batches(rows, tmp_path / "plan.tsv", shard_mpx=1.0).set_index("sample")
    # the absent file's size is the sheet's (at its scale); a row without sizes is read from its header
    assert plan.loc["remote", "mpx"] == pytest.approx(0.5) and plan.loc["unsized", "mpx"] == pytest.approx(0.065536)
    # the batch job checks the sheet's size against the file before it segments
    fields = [Field("wrong", str(tmp_path / "a.tif"), {"nuclear": None, "membrane": None}, height=128, width=256)]
    summary = segment_batch(fields, MODELS / "nuclear", tmp_path / "batch", "0001", threads=1)
    error = read_tsv(tmp_path / "batch" / "errors.tsv")["error"][0]
    assert list(summary["status"]) == ["failed"]
    assert error.startswith("sample 'wrong': ") and "a.tif" in error and "256 x 256" in error and "128 x 256" in error


def test_per_batch_label_files_hold_every_good_field_as_a_named_series(tmp_path):
    """batches.label_files per_batch: one multi-series OME-TIFF per compartment, one OME Image per good field, in
    the batch's order and named after it; the same pixels as per-image files; rewriting gives the same bytes."""
    import hashlib

    from cellscale.io import ImageSource, LabelSeries, read_labels, series_names
    from cellscale.steps import label_paths

    images = sorted((DEMO / "dsb2018" / "images").glob("*.png"))[:3]
    tifffile.imwrite(tmp_path / "nan.tif", np.full((64, 64), np.nan, np.float32))
    fields = [Field(p.stem, str(p), {"nuclear": None, "membrane": None}) for p in images]
    fields.insert(1, Field("nan", str(tmp_path / "nan.tif"), {"nuclear": None, "membrane": None}))
    segment_batch(fields, MODELS / "nuclear", tmp_path / "own", "0001", threads=1)
    summary = segment_batch(fields, MODELS / "nuclear", tmp_path / "one", "0001", threads=1, label_files="per_batch")
    assert list(summary["status"]) == ["ok", "failed", "ok", "ok"]
    packed = tmp_path / "one" / "nuclear.ome.tif"
    assert not (tmp_path / "one" / "labels").exists() and sorted(p.name for p in (tmp_path / "one").iterdir()) == [
        "cells.parquet", "errors.tsv", "fields.tsv", "nuclear.ome.tif"]
    assert series_names(packed) == [p.stem for p in images]  # the failed field has none
    cells = pd.read_parquet(tmp_path / "one" / "cells.parquet")
    for k, path in enumerate(images):
        ref = label_paths(tmp_path / "one", path.stem, ["nuclear"])["nuclear"]
        assert ref == LabelSeries(packed, path.stem) and ref.index == k and ref.exists()
        own = read_labels(tmp_path / "own" / "labels" / path.stem / "nuclear.ome.tif")
        np.testing.assert_array_equal(read_labels(ref), own)
        with tifffile.TiffFile(packed) as tif:  # what a user opens: tifffile's series k
            np.testing.assert_array_equal(tif.series[k].asarray(), own)
        with ImageSource.open(ref) as source:
            assert source.shape == (1, 1, *own.shape)
        assert (cells["sample"] == path.stem).sum() == own.max()
    assert not label_paths(tmp_path / "one", "nan", ["nuclear"])["nuclear"].exists()
    # the batch's exports read either layout alike
    from cellscale.steps.export import export_batch

    rows = [{"sample": f.sample, "image": f.image} for f in fields]
    for layout in ("own", "one"):
        export_batch(tmp_path / layout, tmp_path / layout / "cells.parquet", rows, {f.image: f.image for f in fields},
                     {"ome-zarr": tmp_path / f"ngff_{layout}"})
    for path in images:
        stores = [tmp_path / f"ngff_{layout}" / f"{path.stem}.ome.zarr" / "labels" / "nuclear"
                  for layout in ("own", "one")]
        with ImageSource.open(stores[0]) as own, ImageSource.open(stores[1]) as one:
            expected = own.region(0, 0, own.shape[2], 0, own.shape[3])
            assert expected.max() > 0 and one.shape == own.shape
            np.testing.assert_array_equal(one.region(0, 0, one.shape[2], 0, one.shape[3]), expected)
    first = hashlib.sha256(packed.read_bytes()).hexdigest()
    segment_batch(fields, MODELS / "nuclear", tmp_path / "one", "0001", threads=1, label_files="per_batch")
    assert hashlib.sha256(packed.read_bytes()).hexdigest() == first
    from cellscale.io import write_label_series

    with pytest.raises(ValueError, match="no images to write"):
        write_label_series(tmp_path / "empty.ome.tif", [])
    with pytest.raises(ValueError, match="image names repeat"):
        write_label_series(tmp_path / "twice.ome.tif", [("a", np.ones((4, 4), np.uint32), None)] * 2)
    assert not (tmp_path / "empty.ome.tif").exists() and not (tmp_path / "twice.ome.tif").exists()
    with pytest.raises(ValueError, match="label_files"):
        segment_batch(fields, MODELS / "nuclear", tmp_path / "bad", "0001", threads=1, label_files="per_field")


def test_a_batch_exports_each_field_with_its_own_image_and_an_all_failed_batch_exports_empty(tmp_path):
    """A missing image (its batch records it) leaves the other fields' images where they are: each field's
    OME-Zarr store holds its own pixels. The SpatialData store's table says what made each exported field's cells
    (uns['cellscale']['samples'], as cells.h5ad). A batch whose every image failed writes an empty SpatialData store
    (no table), not an error."""
    import spatialdata

    from cellscale import __version__
    from cellscale.io import ImageSource
    from cellscale.steps.export import export_batch

    images = sorted((DEMO / "dsb2018" / "images").glob("*.png"))[:2]
    fields = [Field(images[0].stem, str(images[0]), {"nuclear": None, "membrane": None}),
              Field("absent", str(tmp_path / "nothere.png"), {"nuclear": None, "membrane": None}),
              Field(images[1].stem, str(images[1]), {"nuclear": None, "membrane": None})]
    summary = segment_batch(fields, MODELS / "nuclear", tmp_path / "b", "0000", threads=1)
    assert list(summary["status"]) == ["ok", "failed", "ok"]
    rows = [{"sample": f.sample, "image": f.image} for f in fields]
    where = {f.image: f.image for f in fields if f.sample != "absent"}   # what the job has: the images that exist
    made = {f.sample: {"image": f.image, "pixel_size_um": 0.5 + k, "model": {"nuclear": f"nuclear@{k}"},
                       "model_dataset": "dsb@1", "scale": 1.0, "augment": "rot180", "precision": "auto"}
            for k, f in enumerate(fields)}
    export_batch(tmp_path / "b", tmp_path / "b" / "cells.parquet", rows, where,
                 {"ome-zarr": tmp_path / "ngff", "spatialdata": tmp_path / "sd.zarr"}, provenance=made)
    uns = spatialdata.read_zarr(tmp_path / "sd.zarr").tables["table"].uns["cellscale"]
    samples = uns["samples"]
    assert uns["cellscale_version"] == __version__ and list(samples.index) == [p.stem for p in images]  # no "absent"
    for sample in samples.index:
        assert samples.loc[sample, "model_nuclear"] == made[sample]["model"]["nuclear"], sample
        assert samples.loc[sample, "pixel_size_um"] == made[sample]["pixel_size_um"], sample
        assert samples.loc[sample, "image"] == made[sample]["image"] and samples.loc[sample, "scale"] == "1.0"
    for path in images:
        with ImageSource.open(tmp_path / "ngff" / f"{path.stem}.ome.zarr") as store:
            got = store.region(0, 0, store.shape[2], 0, store.shape[3])
        with ImageSource.open(path) as own:
            np.testing.assert_array_equal(got, own.region(0, 0, own.shape[2], 0, own.shape[3]))
    assert not (tmp_path / "ngff" / "absent.ome.zarr").exists()
    # every image failed
    bad = [Field("gone", str(tmp_path / "gone.png"), {"nuclear": None, "membrane": None})]
    segment_batch(bad, MODELS / "nuclear", tmp_path / "c", "0001", threads=1)
    export_batch(tmp_path / "c", tmp_path / "c" / "cells.parquet", [{"sample": "gone", "image": bad[0].image}], {},
                 {"ome-zarr": tmp_path / "ngff_c", "spatialdata": tmp_path / "sd_c.zarr"})
    empty = spatialdata.read_zarr(tmp_path / "sd_c.zarr")
    assert not list(empty.labels) and not list(empty.tables) and not list((tmp_path / "ngff_c").iterdir())


def test_a_batch_takes_each_images_pixel_size_from_its_metadata_unless_the_sheet_gives_one(tmp_path):
    """Labels, the OME-Zarr scale and the SpatialData micrometre system state the image's own pixel size where
    the sheet gives none, and the sheet's where it does."""
    import spatialdata
    import zarr
    from spatialdata.transformations import get_transformation

    from cellscale.io import pixel_size_from_metadata, read_image, write_image
    from cellscale.steps.export import export_batch

    png = sorted((DEMO / "dsb2018" / "images").glob("*.png"))[0]
    write_image(tmp_path / "a.ome.tif", read_image(png)[0, :1], pixel_size_um=0.4)
    fields = [Field("meta", str(tmp_path / "a.ome.tif"), {"nuclear": None, "membrane": None}),
              Field("sheet", str(tmp_path / "a.ome.tif"), {"nuclear": None, "membrane": None}, pixel_size_um=0.3)]
    summary = segment_batch(fields, MODELS / "nuclear", tmp_path / "b", "0000", threads=1)
    assert list(summary["status"]) == ["ok", "ok"] and list(summary["pixel_size_um"]) == [0.4, 0.3]  # summary.tsv's
    assert pixel_size_from_metadata(tmp_path / "b" / "labels" / "meta" / "nuclear.ome.tif") == 0.4
    assert pixel_size_from_metadata(tmp_path / "b" / "labels" / "sheet" / "nuclear.ome.tif") == 0.3
    rows = [{"sample": f.sample, "image": f.image, "pixel_size_um": f.pixel_size_um} for f in fields]
    export_batch(tmp_path / "b", tmp_path / "b" / "cells.parquet", rows, {f.image: f.image for f in fields},
                 {"ome-zarr": tmp_path / "ngff", "spatialdata": tmp_path / "sd.zarr"})
    sdata = spatialdata.read_zarr(tmp_path / "sd.zarr")
    for sample, size in (("meta", 0.4), ("sheet", 0.3)):
        assert pixel_size_from_metadata(tmp_path / "ngff" / f"{sample}.ome.zarr") == pytest.approx(size)
        element = next(e for name, e in sdata.labels.items() if name.startswith(sample))
        scale = [t for t in get_transformation(element, get_all=True).values() if hasattr(t, "scale")]
        assert scale and np.allclose(scale[0].scale, [size, size]), (sample, scale)
    assert zarr.open_group(str(tmp_path / "ngff" / "meta.ome.zarr"), mode="r")  # opens


def test_distributions_draw_every_compartment_on_the_same_bins(tmp_path):
    """One image's whole-cell value among many nuclear ones gets a bar as wide as theirs (its own histogram range
    was one unit wide: a bar about a pixel wide)."""
    from cellscale.report import distributions_plot, shared_bins

    nuclear, whole = np.arange(100.0, 300.0, 10.0), np.array([983.5])
    edges = shared_bins([nuclear, whole])
    widths = np.diff(edges)
    assert np.allclose(widths, widths[0]) and edges[0] == 100.0 and edges[-1] == 983.5 and len(edges) == 6
    assert np.histogram(whole, edges)[0].sum() == 1 and np.histogram(nuclear, edges)[0].sum() == len(nuclear)
    assert np.allclose(shared_bins([np.array([5.0])])[[0, -1]], [4.5, 5.5])  # one value alone: a bin around it
    fields = pd.DataFrame({"sample": [f"s{i}" for i in range(20)], "status": ["ok"] * 19 + ["failed"],
                           "nuclear_cells": nuclear, "nuclear_median_area": nuclear * 2,
                           "whole_cell_cells": [None] * 19 + [None], "whole_cell_median_area": [None] * 20})
    fields.loc[0, ["whole_cell_cells", "whole_cell_median_area"]] = [154, 983.5]
    distributions_plot(tmp_path / "d.png", fields)
    assert (tmp_path / "d.png").stat().st_size > 1000


def test_a_batch_job_fills_forward_passes_across_images(tmp_path, monkeypatch):
    """segment.batch_mpx is megapixels per pass whatever the window size: a batch job's 256 x 256 windows of three
    images share passes (7 such windows fit in 0.5 Mpx), as in an image's own segment job. The batch job sized its
    passes for tiling.tile (one 512 x 512 window in 0.5 Mpx), so each small image's window ran alone."""
    from cellscale.io import read_image, read_labels
    from cellscale.segment.image import segment_image
    from cellscale.segment.predictor import Predictor
    from cellscale.segment.settings import SegmentSettings
    from cellscale.steps.segment import job_predictor

    small, wide = read_image(DEMO / "dsb2018" / "images" / "0bf4b144167694b6.png"), \
        read_image(DEMO / "dsb2018" / "images" / "150b0ffa318c87b3.png")
    images = {"a": small, "b": wide[..., :256, :256], "c": wide[..., 264:, 420:676]}
    fields = []
    for name, image in images.items():
        tifffile.imwrite(tmp_path / f"{name}.tif", image[0, 0])
        fields.append(Field(name, str(tmp_path / f"{name}.tif"), {"nuclear": None, "membrane": None}))
    passes = []
    maps = Predictor._maps
    monkeypatch.setattr(Predictor, "_maps", lambda self, x: passes.append(x.shape) or maps(self, x))
    summary = segment_batch(fields, MODELS / "nuclear", tmp_path / "batch", "0000", threads=1)
    assert list(summary["status"]) == ["ok"] * 3
    assert passes == [(3, 256, 256, 1)] * 2  # one pass and its rot180 turn: the three images together
    own = job_predictor(MODELS / "nuclear", SegmentSettings(), threads=1)
    assert own.windows_per_pass(256, 256) == 7 and own.windows_per_pass(512, 512) == 1
    for name, image in images.items():  # the labels of each image alone
        alone = segment_image(own, image, workers=1)["nuclear"][0]
        np.testing.assert_array_equal(read_labels(tmp_path / "batch" / "labels" / name / "nuclear.ome.tif"), alone)


def test_a_blank_image_s_warning_reaches_summary_tsv(tmp_path):
    """An all-zero image ended `ok` with 0 cells and only its log said why: the warning its planning logs goes into
    its tile plan (a sample with its own jobs) or its batch's fields.tsv, and summary.tsv's `warnings` column (in
    every run, blank where there was none) carries it."""
    import json

    from cellscale.segment.tiles import TilePlan
    from cellscale.steps.report import run_summary
    from cellscale.steps.segment import tile_sample

    tifffile.imwrite(tmp_path / "blank.tif", np.zeros((64, 64), np.uint16))
    good = sorted((DEMO / "dsb2018" / "images").glob("*.png"))[0]
    roles = {"nuclear": None, "membrane": None}
    fields = [Field("blank", str(tmp_path / "blank.tif"), roles), Field("good", str(good), roles)]
    fields_tsv = segment_batch(fields, MODELS / "nuclear", tmp_path / "0000", "0000", threads=1)
    blank = (f"{tmp_path / 'blank.tif'}: the nuclear channel (channel 0) holds one value (0) in every pixel read: "
             "no objects can be found in it")
    assert fields_tsv["nuclear_cells"][0] == 0 and fields_tsv["nuclear_cells"][1] > 0
    assert fields_tsv["warnings"][0].startswith(blank) and fields_tsv["warnings"][1] == ""
    plan = tile_sample("own", tmp_path / "blank.tif", tmp_path / "tiles", roles, MODELS / "nuclear")
    assert plan.warnings == TilePlan.read(tmp_path / "tiles" / "plan.json").warnings and plan.warnings[0].startswith(
        blank)
    (tmp_path / "own.json").write_text(json.dumps({"sample": "own", "nuclear_cells": 0}))
    run_summary([tmp_path / "own.json"], tmp_path / "summary.tsv", batch_dirs=[tmp_path / "0000"],
                order=["blank", "good", "own"], warnings={"own": plan.warnings})
    written = pd.read_csv(tmp_path / "summary.tsv", sep="\t", keep_default_na=False)
    assert list(written["status"]) == ["ok"] * 3 and list(written["nuclear_cells"] == 0) == [True, False, True]
    assert written["warnings"][0].startswith(blank) and written["warnings"][1] == ""
    assert written["warnings"][2].startswith(blank)
    plain = run_summary([tmp_path / "own.json"], tmp_path / "plain.tsv")  # no warnings known: the column is there
    assert list(plain["warnings"]) == [""]
