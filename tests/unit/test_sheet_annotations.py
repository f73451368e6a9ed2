"""The sample sheet's own columns (a plate's well and site, a user's annotations) reach the run's tables: cells.csv,
cells.parquet, cells.h5ad's obs, summary.tsv, index.tsv and errors.tsv, after ``sample``, so a screen aggregates per
well without joining the sheet back."""

from __future__ import annotations

import anndata
import numpy as np
import pandas as pd

from cellscale.measure import concat_tables, measure_compartments
from cellscale.samples import annotation_columns


def _tables(tmp_path):
    wc = np.zeros((12, 14), np.int32)
    wc[1:6, 1:7], wc[8:11, 2:12] = 10, 30
    image = np.arange(2 * wc.size, dtype=np.uint16).reshape((2,) + wc.shape)
    one = measure_compartments({"nuclear": wc}, image, ["DNA", "CD3"])
    own = tmp_path / "own.parquet"
    one.to_parquet(own, index=False)
    batch = tmp_path / "batch_0000.parquet"
    concat_tables({"A01_s1": one, "B02_s2": one.iloc[:1]}).to_parquet(batch, index=False)
    return one, {"A02_s1": own}, [batch]


def test_the_sheet_columns_the_workflow_carries_along():
    sheet = ["sample", "image", "kind", "nuclear_channel", "channel_names", "pixel_size_um", "height", "width",
             "well", "site", "compound", "dose_um"]
    assert annotation_columns(sheet) == ["well", "site", "compound", "dose_um"]
    assert annotation_columns(["sample", "image", "kind"]) == []


def test_the_run_cell_table_has_each_rows_well_and_site(tmp_path):
    from cellscale.steps.measure import aggregate_measurements

    one, own, batches = _tables(tmp_path)
    sheet = {"A01_s1": {"well": "A01", "site": 1, "Area": 5}, "A02_s1": {"well": "A02", "site": 1, "Area": 5},
             "B02_s2": {"well": "B02", "site": None, "Area": 5}}  # Area: a table column, left out
    out = tmp_path / "out"
    rows = aggregate_measurements(own, out / "cells.csv", out / "cells.parquet", out / "cells.h5ad",
                                  batch_tables=batches, order=["A01_s1", "A02_s1", "B02_s2"], annotations=sheet)
    assert rows == {"A01_s1": len(one), "A02_s1": len(one), "B02_s2": 1}
    cells = pd.read_parquet(out / "cells.parquet")
    assert list(cells.columns[:4]) == ["sample", "well", "site", "CellID"]
    assert cells["well"].tolist() == ["A01"] * len(one) + ["A02"] * len(one) + ["B02"]
    assert cells["site"].tolist()[:-1] == [1] * (2 * len(one)) and pd.isna(cells["site"].iloc[-1])
    pd.testing.assert_series_equal(cells["Area"], pd.concat([one["Area"], one["Area"], one["Area"][:1]],
                                                            ignore_index=True))
    csv = pd.read_csv(out / "cells.csv")
    assert list(csv.columns) == list(cells.columns) and csv["well"].tolist() == cells["well"].tolist()
    obs = anndata.read_h5ad(out / "cells.h5ad").obs
    assert obs["well"].astype(str).tolist() == cells["well"].tolist()
    assert obs.groupby("well", observed=True).size().to_dict() == {"A01": len(one), "A02": len(one), "B02": 1}


def test_summary_index_and_errors_have_each_samples_well_and_site(tmp_path):
    from cellscale.steps.report import run_summary

    batch = tmp_path / "0000"
    batch.mkdir()
    pd.DataFrame({"sample": ["A01_s1", "A01_s2"], "batch": ["0000"] * 2, "status": ["ok", "failed"],
                  "nuclear_cells": [5, None]}).to_csv(batch / "fields.tsv", sep="\t", index=False)
    pd.DataFrame({"sample": ["A01_s2"], "image": ["A01_s2.tif"], "batch": ["0000"], "error": ["unreadable"]}).to_csv(
        batch / "errors.tsv", sep="\t", index=False)
    sheet = {"A01_s1": {"well": "A01", "site": 1, "status": "x"}, "A01_s2": {"well": "A01", "site": 2, "status": "x"}}
    table = run_summary([], tmp_path / "summary.tsv", batch_dirs=[batch], out_index=tmp_path / "index.tsv",
                        out_errors=tmp_path / "errors.tsv", compartments={"A01_s1": ["nuclear"]},
                        annotations=sheet)
    summary = pd.read_csv(tmp_path / "summary.tsv", sep="\t")
    assert list(summary.columns[:4]) == ["sample", "well", "site", "status"]  # the sheet's status: left out
    assert summary["status"].tolist() == ["ok", "failed"] and summary["site"].tolist() == [1, 2]
    assert list(table.columns) == list(summary.columns)
    index = pd.read_csv(tmp_path / "index.tsv", sep="\t")
    assert list(index.columns[:3]) == ["sample", "well", "site"] and index["well"].tolist() == ["A01", "A01"]
    errors = pd.read_csv(tmp_path / "errors.tsv", sep="\t")
    assert errors[["sample", "well", "site", "error"]].values.tolist() == [["A01_s2", "A01", 2, "unreadable"]]
    # no annotations: the tables as before
    run_summary([], tmp_path / "plain.tsv", batch_dirs=[batch])
    assert list(pd.read_csv(tmp_path / "plain.tsv", sep="\t").columns[:2]) == ["sample", "status"]
