"""Writing per-cell tables: CSV (MCMICRO), Parquet, AnnData .h5ad, run-level tables.

The .h5ad file is written with h5py in AnnData's on-disk format (encoding
0.1.0 / 0.2.0), so ``anndata.read_h5ad`` / ``scanpy.read_h5ad`` load it in one
line and cellscale does not depend on anndata: ``X`` holds the marker means,
``obs`` the morphology, centroids and identifiers, ``obsm["spatial"]`` the
(X, Y) centroids, and one layer per extra statistic.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from cellscale.io import atomic_path
from cellscale.measure.stats import EXTRA_STATS
from cellscale.measure.table import SHAPE_COLUMNS

__all__ = ["write_table", "write_h5ad", "marker_columns", "concat_tables"]

KEY_COLUMNS = ("sample", "compartment", "frame", "CellID")


def marker_columns(df: pd.DataFrame) -> list[str]:
    """The marker (mean intensity) columns: those between CellID and X_centroid."""
    cols = list(df.columns)
    return cols[cols.index("CellID") + 1:cols.index("X_centroid")]


def write_table(df: pd.DataFrame, csv_path, parquet_path=None, h5ad_path=None) -> None:
    """Write ``df`` to CSV (no index) and optionally Parquet and .h5ad, each atomically.

    Each file is first written to a temporary file in its destination folder
    and then moved into place with :func:`os.replace`, so readers never see a
    partial table. Parent folders are created.
    """
    with atomic_path(csv_path) as tmp:
        df.to_csv(tmp, index=False)
    if parquet_path is not None:
        with atomic_path(parquet_path) as tmp:
            df.to_parquet(tmp, index=False)
    if h5ad_path is not None:
        write_h5ad(df, h5ad_path)


def _attrs(node, kind: str, version: str = "0.2.0", **extra) -> None:
    node.attrs["encoding-type"] = kind
    node.attrs["encoding-version"] = version
    for key, value in extra.items():
        node.attrs[key] = value


def _strings(group, name, values) -> None:
    import h5py

    ds = group.create_dataset(name, data=np.asarray(values, dtype=object), dtype=h5py.string_dtype())
    _attrs(ds, "string-array")


def _array(group, name, values) -> None:
    _attrs(group.create_dataset(name, data=values), "array")


def _column(group, name, series: pd.Series) -> None:
    if isinstance(series.dtype, pd.CategoricalDtype) or not (
            pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype)):
        cat = series.astype("category")
        sub = group.create_group(name)
        _attrs(sub, "categorical", ordered=bool(cat.cat.ordered))
        _strings(sub, "categories", [str(c) for c in cat.cat.categories])
        _array(sub, "codes", cat.cat.codes.to_numpy())
    elif isinstance(series.dtype, pd.api.extensions.ExtensionDtype) and series.dtype.kind in "iu":
        sub = group.create_group(name)
        _attrs(sub, "nullable-integer", "0.1.0")
        mask = series.isna().to_numpy()
        _array(sub, "values", series.fillna(0).to_numpy(dtype=series.dtype.numpy_dtype))
        _array(sub, "mask", mask)
    else:
        _array(group, name, series.to_numpy())


def _dataframe(parent, name, df: pd.DataFrame, index) -> None:
    group = parent.create_group(name)
    order = np.array(list(df.columns), dtype=object) if len(df.columns) else np.array([], dtype=float)
    _attrs(group, "dataframe", _index="_index", **{"column-order": order})
    _strings(group, "_index", index)
    for col in df.columns:
        _column(group, col, df[col])


def _obs_names(df: pd.DataFrame) -> list[str]:
    """sample:compartment:frame:CellID, leaving out columns absent or missing on a row."""
    names = pd.Series("", index=df.index, dtype=object)
    for key in (k for k in KEY_COLUMNS if k in df.columns):
        token = df[key].astype("string")
        names = names + (":" + token).fillna("").astype(object)
    return names.str[1:].tolist()


def write_h5ad(df: pd.DataFrame, path) -> None:
    """Write a measurement table as an AnnData .h5ad file, atomically.

    ``X`` (cells x markers, float64) holds the marker means, ``var_names``
    the marker names, ``obs`` every other column (strings as categoricals,
    nullable integers kept), ``obsm["spatial"]`` the (X_centroid,
    Y_centroid) pairs and ``layers[stat]`` the extra statistics when present.
    ``obs_names`` join sample, compartment, frame and CellID with ``:``.
    """
    import h5py

    markers = marker_columns(df)
    layers = {s: [f"{m}_{s}" for m in markers] for s in EXTRA_STATS}
    layers = {s: cols for s, cols in layers.items() if markers and all(c in df.columns for c in cols)}
    used = set(markers).union(*layers.values()) if layers else set(markers)
    obs = df[[c for c in df.columns if c not in used]].reset_index(drop=True)

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        _attrs(f, "anndata", "0.1.0")
        _array(f, "X", df[markers].to_numpy(dtype=np.float64).reshape(len(df), len(markers)))
        _dataframe(f, "obs", obs, _obs_names(df))
        _dataframe(f, "var", pd.DataFrame(index=markers), markers)
        for group in ("obsm", "varm", "obsp", "varp", "layers", "uns"):
            _attrs(f.create_group(group), "dict", "0.1.0")
        _array(f["obsm"], "spatial", df[["X_centroid", "Y_centroid"]].to_numpy(dtype=np.float64))
        for stat, cols in layers.items():
            _array(f["layers"], stat, df[cols].to_numpy(dtype=np.float64))


def concat_tables(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One run-level table: the samples' tables stacked, ``sample`` first.

    Marker columns are the union over samples in order of first appearance
    (missing markers are NaN); the other columns keep the per-sample order.
    """
    if not tables:
        raise ValueError("no tables to concatenate")
    markers, tail = [], []
    for df in tables.values():
        markers += [m for m in marker_columns(df) if m not in markers]
    for df in tables.values():
        rest = [c for c in df.columns if c not in markers and c not in ("CellID", *SHAPE_COLUMNS)]
        tail += [c for c in rest if c not in tail]
    extra = [c for c in tail if any(c == f"{m}_{s}" for m in markers for s in EXTRA_STATS)]
    others = [c for c in tail if c not in extra]
    cols = ["sample", "CellID", *markers, *SHAPE_COLUMNS, *extra, *others]
    parts = [df.assign(sample=name).reindex(columns=cols) for name, df in tables.items()]
    out = pd.concat(parts, ignore_index=True)
    for col in ("nucleus_id", "cell_id", "track_id", "frame"):
        if col in out.columns:
            out[col] = out[col].astype("Int64")
    return out
