"""AnnData .h5ad export, run-level tables, and the workflow's measure step on files."""

from __future__ import annotations

import anndata
import numpy as np
import pandas as pd
import pytest

from cellscale.measure import (
    EXTRA_STATS,
    TableWriter,
    categories_of,
    concat_tables,
    marker_columns,
    mcquant_tables,
    measure_cells,
    measure_compartments,
    write_h5ad,
    write_table,
)


def _example():
    wc = np.zeros((12, 14), np.int32)
    wc[1:6, 1:7], wc[1:6, 8:13], wc[8:11, 2:12] = 10, 20, 30
    nuc = np.zeros_like(wc)
    nuc[2:4, 2:4], nuc[2:5, 9:11] = 1, 2
    image = np.arange(2 * wc.size, dtype=np.uint16).reshape((2,) + wc.shape)
    return nuc, wc, image


def test_h5ad_contents(tmp_path):
    nuc, wc, image = _example()
    df = measure_compartments({"nuclear": nuc, "whole_cell": wc}, image, ["DNA", "CD3"], extra_stats=True)
    write_h5ad(df, tmp_path / "cells.h5ad")
    adata = anndata.read_h5ad(tmp_path / "cells.h5ad")
    assert adata.shape == (len(df), 2) and list(adata.var_names) == ["DNA", "CD3"]
    assert adata.X.dtype == np.float64
    np.testing.assert_array_equal(adata.X, df[["DNA", "CD3"]].to_numpy())
    np.testing.assert_array_equal(adata.obsm["spatial"], df[["X_centroid", "Y_centroid"]].to_numpy())
    assert sorted(adata.layers) == sorted(EXTRA_STATS)
    np.testing.assert_array_equal(adata.layers["median"], df[["DNA_median", "CD3_median"]].to_numpy())
    assert list(adata.obs.columns) == ["CellID", "X_centroid", "Y_centroid", "Area", "MajorAxisLength",
                                       "MinorAxisLength", "Eccentricity", "Solidity", "Extent", "Orientation",
                                       "compartment", "nucleus_id", "cell_id"]
    names = list(adata.obs_names)
    assert names[:2] == ["nuclear:1", "nuclear:2"] and len(set(names)) == len(df)
    assert adata.obs["compartment"].dtype == "category"
    assert adata.obs["compartment"].astype(str).tolist() == df["compartment"].tolist()
    assert adata.obs["cell_id"].dtype == "Int64" and df["cell_id"].isna().any()
    np.testing.assert_array_equal(adata.obs["cell_id"].isna(), df["cell_id"].isna())


def test_h5ad_reads_in_scanpy_as_the_table(tmp_path):
    import scanpy

    nuc, wc, image = _example()
    tissue = measure_compartments({"nuclear": nuc, "whole_cell": wc}, image, ["DNA", "CD3"], extra_stats=True)
    movie = measure_compartments({"nuclear": np.stack([nuc, nuc[::-1]])}, np.stack([image, image + 7]),
                                 ["DNA", "CD3"], extra_stats=True)
    df = concat_tables({"tissue": tissue, "movie": movie})
    write_h5ad(df, tmp_path / "run.h5ad")
    adata = scanpy.read_h5ad(tmp_path / "run.h5ad")
    markers = ["DNA", "CD3"]
    assert list(adata.var_names) == markers
    np.testing.assert_array_equal(adata.X, df[markers].to_numpy(np.float64))
    np.testing.assert_array_equal(adata.obsm["spatial"], df[["X_centroid", "Y_centroid"]].to_numpy())
    assert sorted(adata.layers) == sorted(EXTRA_STATS)
    for stat in EXTRA_STATS:
        np.testing.assert_array_equal(adata.layers[stat], df[[f"{m}_{stat}" for m in markers]].to_numpy())
    stats = [f"{m}_{s}" for s in EXTRA_STATS for m in markers]
    want = df.drop(columns=[*markers, *stats]).astype({"sample": "category", "compartment": "category"})
    frame = (":" + df["frame"].astype("string")).fillna("")
    want.index = pd.Index((df["sample"] + ":" + df["compartment"] + frame + ":" + df["CellID"].astype(str)).to_numpy())
    pd.testing.assert_frame_equal(adata.obs, want)
    assert adata.obs_names[0] == "tissue:nuclear:1" and adata.obs_names[-1] == "movie:nuclear:1:2"


def test_h5ad_without_channels_and_empty(tmp_path):
    df = measure_cells(np.zeros((4, 4), np.int32))
    write_h5ad(df, tmp_path / "empty.h5ad")
    adata = anndata.read_h5ad(tmp_path / "empty.h5ad")
    assert adata.shape == (0, 0) and adata.obsm["spatial"].shape == (0, 2)
    assert list(adata.obs.columns) == list(df.columns)


def test_write_table_writes_all_three_formats(tmp_path):
    nuc, wc, image = _example()
    df = measure_compartments({"nuclear": nuc, "whole_cell": wc}, image)
    write_table(df, tmp_path / "t.csv", tmp_path / "t.parquet", tmp_path / "t.h5ad")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.h5ad", "t.parquet"]
    assert marker_columns(pd.read_csv(tmp_path / "t.csv")) == ["ch0", "ch1"]


def test_run_level_table_stacks_samples(tmp_path):
    nuc, wc, image = _example()
    a = measure_compartments({"nuclear": nuc, "whole_cell": wc}, image, ["DNA", "CD3"])
    b = measure_compartments({"nuclear": nuc[None]}, image[None, :1], ["DNA"])
    run = concat_tables({"tissue": a, "movie": b})
    assert list(run.columns[:4]) == ["sample", "CellID", "DNA", "CD3"]
    assert len(run) == len(a) + len(b)
    assert run["sample"].tolist() == ["tissue"] * len(a) + ["movie"] * len(b)
    assert run.loc[run["sample"] == "movie", "CD3"].isna().all()
    assert run["frame"].dtype == "Int64" and run["nucleus_id"].dtype == "Int64"
    pd.testing.assert_frame_equal(run[run["sample"] == "tissue"].drop(columns=["sample", "frame"]), a)
    write_h5ad(run, tmp_path / "run.h5ad")
    names = list(anndata.read_h5ad(tmp_path / "run.h5ad").obs_names)
    assert names[0] == "tissue:nuclear:1" and names[-1] == "movie:nuclear:0:2"
    with pytest.raises(ValueError, match="no tables"):
        concat_tables({})


def test_mcquant_tables_one_per_image_and_mask_as_scimap_reads_them():
    """MCMICRO's readers (SCIMAP's mcmicro_to_scimap) take a file for one image's cells of one mask and the columns
    before X_centroid for its markers: the run's table split so, each the single-mask table of that labels."""
    nuc, wc, image = _example()
    tissue = measure_compartments({"nuclear": nuc, "whole_cell": wc}, image, ["DNA", "CD3"], extra_stats=True)
    other = measure_compartments({"nuclear": nuc}, image[1:], ["GFP"], extra_stats=True)
    movie = measure_compartments({"nuclear": nuc[None]}, image[None, :1], ["DNA"], extra_stats=True)
    run = concat_tables({"tissue": tissue, "plate_A01": other, "movie": movie})
    tables = mcquant_tables(run)
    assert list(tables) == ["tissue_nuclear", "tissue_whole_cell", "tissue_cytoplasm", "plate_A01_nuclear"]
    stats = [f"{m}_{s}" for m in ("DNA", "CD3") for s in EXTRA_STATS]
    for name, labels, names, pixels in [("tissue_nuclear", nuc, ["DNA", "CD3"], image),
                                        ("tissue_whole_cell", wc, ["DNA", "CD3"], image),
                                        ("plate_A01_nuclear", nuc, ["GFP"], image[1:])]:
        table = tables[name]
        markers = list(table.columns[:table.columns.get_loc("X_centroid")])
        assert markers[0] == "CellID" and markers[1:len(names) + 1] == names  # CellID, then the image's markers
        assert table["CellID"].is_unique and table.notna().all().all()
        alone = measure_cells(labels, pixels, names, extra_stats=True)  # that mask measured on its own
        pd.testing.assert_frame_equal(table, alone[table.columns], check_dtype=False)
    assert list(tables["tissue_nuclear"].columns[3:13]) == stats
    assert len(tables["tissue_cytoplasm"]) == (run.compartment[run["sample"] == "tissue"] == "cytoplasm").sum()
    # a sample's own table has no sample column: its name is given
    own = mcquant_tables(tissue, "tissue")
    assert list(own) == ["tissue_nuclear", "tissue_whole_cell", "tissue_cytoplasm"]
    pd.testing.assert_frame_equal(own["tissue_whole_cell"], tables["tissue_whole_cell"])
    with pytest.raises(ValueError, match="needs the sample's name"):
        mcquant_tables(tissue)
    with pytest.raises(ValueError, match="not a cellscale cell table: no column compartment"):
        mcquant_tables(measure_cells(nuc, image, ["DNA", "CD3"]), "x")


def test_measure_sample_from_files_and_aggregate(tmp_path):
    from cellscale.io import write_image, write_labels
    from cellscale.steps.measure import aggregate_measurements, measure_sample

    nuc, wc, image = _example()
    write_labels(tmp_path / "nuclear.ome.tif", nuc)
    write_labels(tmp_path / "whole_cell.ome.tif", wc)
    write_image(tmp_path / "image.ome.tif", image, ["DNA", "CD3"])
    out = {k: tmp_path / "out" / f"s1.{k}" for k in ("csv", "parquet", "h5ad")}
    table = measure_sample("s1", tmp_path / "image.ome.tif",
                           {"nuclear": tmp_path / "nuclear.ome.tif", "whole_cell": tmp_path / "whole_cell.ome.tif"},
                           out["csv"], out["parquet"], out_h5ad=out["h5ad"])
    want = measure_compartments({"nuclear": nuc, "whole_cell": wc}, image, ["DNA", "CD3"])
    pd.testing.assert_frame_equal(table, want)
    pd.testing.assert_frame_equal(pd.read_parquet(out["parquet"]), want)
    assert out["h5ad"].exists()
    run = aggregate_measurements({"s1": out["parquet"], "s2": out["parquet"]}, tmp_path / "cells.csv",
                                 tmp_path / "cells.parquet", tmp_path / "cells.h5ad")
    assert run == {"s1": len(want), "s2": len(want)}
    assert set(pd.read_parquet(tmp_path / "cells.parquet")["sample"]) == {"s1", "s2"}
    assert anndata.read_h5ad(tmp_path / "cells.h5ad").shape == (2 * len(want), 2)


def test_h5ad_files_say_what_produced_their_cells(tmp_path):
    """A sample's .h5ad file's uns['cellscale'] (and the run's, a row per sample) says the cellscale version, the
    sample, its image, the pixel size its labels state, its model per compartment and the segment settings, as
    plain values anndata reads back; nothing where a value is not known."""
    import cellscale
    from cellscale.io import write_image, write_labels
    from cellscale.steps.measure import aggregate_measurements, measure_sample

    nuc, wc, image = _example()
    write_labels(tmp_path / "nuclear.ome.tif", nuc, pixel_size_um=0.65)
    write_labels(tmp_path / "whole_cell.ome.tif", wc, pixel_size_um=0.65)
    write_labels(tmp_path / "unsized.ome.tif", nuc)
    write_image(tmp_path / "image.ome.tif", image, ["DNA", "CD3"])
    made = {"model": {"nuclear": "tissue@0123456789ab", "whole_cell": "tissue@0123456789ab"},
            "model_dataset": "tissuenet@abc", "scale": 1.5, "augment": "rot180", "precision": "auto"}
    measure_sample("s1", tmp_path / "image.ome.tif",
                   {"nuclear": tmp_path / "nuclear.ome.tif", "whole_cell": tmp_path / "whole_cell.ome.tif"},
                   tmp_path / "s1.csv", tmp_path / "s1.parquet", out_h5ad=tmp_path / "s1.h5ad", provenance=made,
                   image_name="data/image.ome.tif")
    unknown = {"model": {"nuclear": None}, "model_dataset": None, "scale": None, "augment": "none",
               "precision": "int8"}  # a declared model: no NAME@VERSION
    measure_sample("s2", tmp_path / "image.ome.tif", {"nuclear": tmp_path / "unsized.ome.tif"}, tmp_path / "s2.csv",
                   tmp_path / "s2.parquet", out_h5ad=tmp_path / "s2.h5ad", provenance=unknown)
    uns = anndata.read_h5ad(tmp_path / "s1.h5ad").uns["cellscale"]
    assert uns == {"cellscale_version": cellscale.__version__, "sample": "s1", "image": "data/image.ome.tif",
                   "pixel_size_um": 0.65, **made}
    uns = anndata.read_h5ad(tmp_path / "s2.h5ad").uns["cellscale"]
    assert np.isnan(uns.pop("pixel_size_um"))
    assert uns == {"cellscale_version": cellscale.__version__, "sample": "s2", "image": str(tmp_path / "image.ome.tif"),
                   "model": {}, "augment": "none", "precision": "int8"}
    sheet = {"s1": {"image": "data/image.ome.tif", "pixel_size_um": 0.65, "frame_interval_s": None, **made},
             "s2": {"image": "b.tif", "pixel_size_um": None, "frame_interval_s": None, **unknown, "scale": "auto"}}
    aggregate_measurements({"s1": tmp_path / "s1.parquet", "s2": tmp_path / "s2.parquet"}, tmp_path / "cells.csv",
                           tmp_path / "cells.parquet", tmp_path / "cells.h5ad", provenance=sheet)
    run = anndata.read_h5ad(tmp_path / "cells.h5ad").uns["cellscale"]
    assert run["cellscale_version"] == cellscale.__version__
    table = run["samples"]
    assert list(table.index) == ["s1", "s2"]
    assert table.loc["s1", "model_whole_cell"] == "tissue@0123456789ab" and table.loc["s2", "model_nuclear"] == ""
    assert table.loc["s1", "model_dataset"] == "tissuenet@abc" and table.loc["s2", "model_whole_cell"] == ""
    assert list(table["scale"]) == ["1.5", "auto"] and list(table["precision"]) == ["auto", "int8"]
    assert table.loc["s1", "pixel_size_um"] == 0.65 and np.isnan(table.loc["s2", "pixel_size_um"])


def test_run_mcquant_writes_the_run_tables_csvs_row_group_by_row_group(tmp_path):
    """The rule mcquant's step: the run's cells.parquet as the CSVs `cellscale mcquant` writes (write_mcquant on the
    whole table), also when a sample's rows go on in the next row group; an earlier folder is replaced whole."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cellscale.steps.measure import run_mcquant, write_mcquant

    nuc, wc, image = _example()
    tissue = measure_compartments({"nuclear": nuc, "whole_cell": wc}, image, ["DNA", "CD3"])
    other = measure_compartments({"nuclear": nuc}, image[1:], ["GFP"])
    movie = measure_compartments({"nuclear": nuc[None]}, image[None, :1], ["DNA"])
    run = concat_tables({"tissue": tissue, "movie": movie, "plate_A01": other})
    whole = tmp_path / "whole"
    assert write_mcquant(run, whole) == ["tissue_nuclear", "tissue_whole_cell", "tissue_cytoplasm",
                                         "plate_A01_nuclear"]
    pq.write_table(pa.Table.from_pandas(run, preserve_index=False), tmp_path / "cells.parquet", row_group_size=2)
    assert pq.ParquetFile(tmp_path / "cells.parquet").num_row_groups > 3
    out = tmp_path / "results" / "mcquant"
    out.mkdir(parents=True)
    (out / "gone_nuclear.csv").write_text("a stale table\n")
    names = run_mcquant(tmp_path / "cells.parquet", out)
    assert sorted(names) == sorted(p.stem for p in whole.iterdir())
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in whole.iterdir())
    for path in whole.iterdir():
        assert (out / path.name).read_text() == path.read_text(), path.name
    # a run of time-lapse movies only: an empty folder, no error
    pq.write_table(pa.Table.from_pandas(concat_tables({"movie": movie}), preserve_index=False),
                   tmp_path / "movies.parquet")
    assert run_mcquant(tmp_path / "movies.parquet", tmp_path / "none") == [] and not any((tmp_path / "none").iterdir())


def _aggregate_in_memory(table_paths, batch_tables, order, out):
    """The run-level tables as aggregate_measurements wrote them before streaming: every table in memory."""
    tables = {s: pd.read_parquet(p) for s, p in table_paths.items()}
    for path in batch_tables:
        batch = pd.read_parquet(path)
        if len(batch):
            tables.update((s, t.drop(columns="sample")) for s, t in batch.groupby("sample", sort=False))
    tables = {s: tables[s] for s in order if s in tables}
    table = concat_tables(tables)
    write_table(table, out / "cells.csv", out / "cells.parquet", out / "cells.h5ad")
    return table


def _assert_same_h5ad(path, ref):
    """The two files read back with anndata hold the same AnnData (dtypes included); returns both."""
    got, want = anndata.read_h5ad(path), anndata.read_h5ad(ref)
    pd.testing.assert_frame_equal(got.obs, want.obs)
    pd.testing.assert_frame_equal(got.var, want.var)
    arrays = [{"X": a.X, **{f"obsm/{k}": v for k, v in a.obsm.items()},
               **{f"layers/{k}": v for k, v in a.layers.items()}} for a in (got, want)]
    assert arrays[0].keys() == arrays[1].keys()
    for key, value in arrays[0].items():
        assert value.dtype == arrays[1][key].dtype, key
        np.testing.assert_array_equal(value, arrays[1][key], err_msg=key)
    return got, want


@pytest.mark.filterwarnings("ignore:The behavior of DataFrame concatenation:FutureWarning")  # the reference
@pytest.mark.parametrize("in_sheet_order", [True, False])
@pytest.mark.parametrize("block_rows", [3, 1 << 15])  # the .h5ad in blocks of a few rows, or in one
def test_aggregate_streams_the_in_memory_tables(tmp_path, monkeypatch, in_sheet_order, block_rows):
    from cellscale.measure import export
    from cellscale.steps.measure import aggregate_measurements

    monkeypatch.setattr(export._H5adParts, "block_rows", block_rows)
    nuc, wc, image = _example()
    tissue = measure_compartments({"nuclear": nuc, "whole_cell": wc}, image, ["DNA", "CD3"], extra_stats=True)
    movie = measure_compartments({"nuclear": np.stack([nuc, nuc[::-1]])}, np.stack([image, image + 7])[:, :1],
                                 ["DNA"])
    movie["track_id"] = pd.array(np.where(movie["CellID"] == 1, 5, pd.NA), dtype="Int64")
    blank = measure_compartments({"nuclear": np.zeros_like(nuc)}, image, ["DNA", "CD8"], extra_stats=True)
    assert len(blank) == 0 and "frame" in movie and "frame" not in tissue
    own = {"tissue": tissue, "movie": movie, "blank": blank}
    paths = {}
    for name, df in own.items():
        paths[name] = tmp_path / f"{name}.parquet"
        df.to_parquet(paths[name], index=False)
    b1 = measure_compartments({"whole_cell": wc}, image[::-1], ["CD8", "DNA"])
    b2 = measure_compartments({"nuclear": nuc, "whole_cell": wc}, image, ["DNA", "CD3"], extra_stats=True)
    b3 = measure_compartments({"nuclear": wc}, image, ["DNA", "CD3"])
    batches = [concat_tables({"b1": b1, "b2": b2}), pd.DataFrame({"sample": pd.Series(dtype=str)}),
               concat_tables({"b3": b3, "b1": b1.iloc[:2]})]  # b1 again: the later batch's rows count
    batch_paths = [tmp_path / f"batch_{k:04d}.parquet" for k in range(len(batches))]
    for df, path in zip(batches, batch_paths):
        df.to_parquet(path, index=False)
    order = ["b2", "tissue", "b1", "movie", "gone", "blank", "b3"] if in_sheet_order else \
        ["movie", "b2", "tissue", "b3"]
    mem, stream = tmp_path / "memory", tmp_path / "stream"
    want = _aggregate_in_memory(paths, batch_paths, order, mem)
    rows = aggregate_measurements(paths, stream / "cells.csv", stream / "cells.parquet", stream / "cells.h5ad",
                                  batch_tables=batch_paths, order=order)
    assert rows == {s: int((want["sample"] == s).sum()) for s in order if s != "gone"}
    assert rows.get("blank", 0) == 0 and rows.get("b1", 2) == 2

    pd.testing.assert_frame_equal(pd.read_parquet(stream / "cells.parquet"), want)
    pd.testing.assert_frame_equal(pd.read_parquet(stream / "cells.parquet"), pd.read_parquet(mem / "cells.parquet"))
    assert (stream / "cells.csv").read_bytes() == (mem / "cells.csv").read_bytes()
    got, ref = _assert_same_h5ad(stream / "cells.h5ad", mem / "cells.h5ad")
    markers = marker_columns(want)
    assert list(got.var_names) == markers and sorted(markers) == ["CD3", "CD8", "DNA"]
    # layers when every marker has its extra statistics columns (CD8's come from the empty table)
    assert sorted(got.layers) == (sorted(EXTRA_STATS) if in_sheet_order else [])
    np.testing.assert_array_equal(got.X, want[markers].to_numpy())
    for stat in got.layers:
        np.testing.assert_array_equal(got.layers[stat], ref.layers[stat])
    np.testing.assert_array_equal(got.obsm["spatial"], ref.obsm["spatial"])
    pd.testing.assert_frame_equal(got.obs, ref.obs)
    assert got.obs["sample"].astype(str).tolist() == want["sample"].tolist()
    assert got.obs["frame"].dtype == "Int64" and got.obs["track_id"].notna().sum() == 2
    assert list(got.obs_names) == list(ref.obs_names)


def test_table_writer_is_atomic(tmp_path):
    nuc, wc, image = _example()
    df = measure_compartments({"nuclear": nuc, "whole_cell": wc}, image, ["DNA", "CD3"])
    out = {k: tmp_path / "out" / f"t.{k}" for k in ("csv", "parquet", "h5ad")}
    cats = {"compartment": categories_of([df["compartment"]])}
    write_h5ad(df, tmp_path / "one.h5ad")
    with TableWriter(df.iloc[:0], out["csv"], out["parquet"], out["h5ad"], n_rows=len(df), categories=cats) as w:
        w.append(df.iloc[:3])
        w.append(df.iloc[3:])
    pd.testing.assert_frame_equal(pd.read_parquet(out["parquet"]), df)
    with pytest.raises(KeyError):  # a part without the table's columns: nothing is replaced, no temporary left
        with TableWriter(df.iloc[:0], out["csv"], out["parquet"], out["h5ad"], n_rows=len(df), categories=cats) as w:
            w.append(df.drop(columns="DNA"))
    with pytest.raises(ValueError, match="2 rows written"):  # fewer rows than announced
        with TableWriter(df.iloc[:0], out["csv"], out["parquet"], out["h5ad"], n_rows=len(df), categories=cats) as w:
            w.append(df.iloc[:2])
    with pytest.raises(ValueError, match="more than the"):
        with TableWriter(df.iloc[:0], out["csv"], out["parquet"], out["h5ad"], n_rows=2, categories=cats) as w:
            w.append(df)
    with pytest.raises(ValueError, match="outside its announced categories"):
        with TableWriter(df.iloc[:0], out["csv"], out["parquet"], out["h5ad"], n_rows=len(df),
                         categories={"compartment": ["nuclear"]}) as w:
            w.append(df)
    assert sorted(p.name for p in out["csv"].parent.iterdir()) == ["t.csv", "t.h5ad", "t.parquet"]
    pd.testing.assert_frame_equal(pd.read_parquet(out["parquet"]), df)
    _assert_same_h5ad(out["h5ad"], tmp_path / "one.h5ad")


def test_csv_rows_are_the_text_pandas_writes(tmp_path):
    """The run's CSV rows come from Arrow's kernels (measure.export.csv_rows), byte for byte what
    ``DataFrame.to_csv`` writes: floats of every magnitude (Python's repr: 3.0, 1e-05, 1500000000000.0), missing
    values, booleans, nullable integers, text that needs quotes; other kinds go to pandas as they are."""
    from cellscale.measure.export import csv_rows

    rng = np.random.default_rng(0)
    values = np.concatenate([rng.uniform(1, 10, 3000) * 10.0 ** rng.integers(-12, 22, 3000),
                             [0.0, -0.0, np.nan, np.inf, -np.inf, 3.0, -2.0, 1e16, 1e15, 123456.0, 1e-4, 1e10]])
    n = len(values)
    df = pd.DataFrame({"x": values, "f32": values.astype(np.float32),
                       "s": rng.choice(["a", "b,c", 'd"e', "f\ng", None, "h\ri", "\u00e9"], n),
                       "i": pd.array(rng.integers(0, 5, n), dtype="Int64"), "b": rng.random(n) > 0.5,
                       "j": np.arange(n), "cat": pd.Categorical(rng.choice(["p", "q"], n))})
    df.loc[::7, "i"] = pd.NA
    for cols in (["x", "j"], ["s", "j", "b"], ["i", "x", "s"], ["x", "f32"], ["x"], ["cat", "x"], list(df.columns)):
        assert csv_rows(df[cols]) == df[cols].to_csv(index=False, header=False), cols
    assert csv_rows(df.iloc[:0]) == ""
    # what the writers put in the file: header and rows as pandas, streamed in parts or whole
    from cellscale.measure.export import TableWriter, write_table

    table = df[["s", "x", "i", "b", "j"]]
    write_table(table, tmp_path / "whole.csv")
    with TableWriter(table.iloc[:0], tmp_path / "parts.csv") as w:
        for rows in np.array_split(np.arange(n), 5):
            w.append(table.iloc[rows])
    expected = table.to_csv(index=False).encode()
    assert (tmp_path / "whole.csv").read_bytes() == (tmp_path / "parts.csv").read_bytes() == expected


def test_a_time_lapse_table_has_a_time_column_from_its_labels_frame_interval(tmp_path):
    """A movie's per-cell table has ``time`` after ``frame``: frame x the interval its labels state (seconds), NaN
    where they state none; the column is there either way, so the run's table has one schema (a still image's rows:
    NaN) and its .h5ad carries it in obs."""
    from cellscale.io import write_image, write_labels
    from cellscale.steps.measure import aggregate_measurements, measure_sample

    movie = np.zeros((3, 24, 32), np.uint32)
    for t in range(3):
        movie[t, 2 + 3 * t:8 + 3 * t, 4:10] = 1
        movie[t, 14:20, 20:26] = 2
    write_image(tmp_path / "movie.ome.tif", (movie * 50).astype(np.uint16), ["DNA"], axes="TYX")
    write_labels(tmp_path / "timed.ome.tif", movie, frame_interval_s=90.0)
    write_labels(tmp_path / "untimed.ome.tif", movie)
    nuc, _, image = _example()
    write_labels(tmp_path / "still.ome.tif", nuc)
    write_image(tmp_path / "still_image.ome.tif", image[:1], ["DNA"])
    tables = {}
    for name in ("timed", "untimed"):
        tables[name] = measure_sample(name, tmp_path / "movie.ome.tif", {"nuclear": tmp_path / f"{name}.ome.tif"},
                                      tmp_path / f"{name}.csv", tmp_path / f"{name}.parquet", timelapse=True)
    measure_sample("still", tmp_path / "still_image.ome.tif", {"nuclear": tmp_path / "still.ome.tif"},
                   tmp_path / "still.csv", tmp_path / "still.parquet")
    timed = pd.read_parquet(tmp_path / "timed.parquet")
    columns = list(timed.columns)
    assert columns.index("time") == columns.index("frame") + 1
    np.testing.assert_array_equal(timed["time"].to_numpy(), timed["frame"].to_numpy() * 90.0)
    assert sorted(set(timed["time"])) == [0.0, 90.0, 180.0]
    untimed = pd.read_parquet(tmp_path / "untimed.parquet")
    assert list(untimed.columns) == columns and untimed["time"].isna().all()
    assert "time" not in pd.read_parquet(tmp_path / "still.parquet")
    aggregate_measurements({s: tmp_path / f"{s}.parquet" for s in ("timed", "still", "untimed")},
                           tmp_path / "cells.csv", tmp_path / "cells.parquet", tmp_path / "cells.h5ad")
    run = pd.read_parquet(tmp_path / "cells.parquet")
    assert run.loc[run["sample"] == "timed", "time"].max() == 180.0
    assert run.loc[run["sample"] != "timed", "time"].isna().all()
    obs = anndata.read_h5ad(tmp_path / "cells.h5ad").obs
    np.testing.assert_array_equal(obs["time"].to_numpy(), run["time"].to_numpy())
