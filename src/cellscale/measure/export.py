"""Writing per-cell tables: CSV (MCMICRO), Parquet, AnnData .h5ad, run-level tables.

The .h5ad file is written with h5py in AnnData's on-disk format (encoding
0.1.0 / 0.2.0), so ``anndata.read_h5ad`` / ``scanpy.read_h5ad`` load it in one
line and cellscale does not depend on anndata: ``X`` holds the marker means,
``obs`` the morphology, centroids and identifiers, ``obsm["spatial"]`` the
(X, Y) centroids, and one layer per extra statistic.

A run-level table is either stacked in memory (:func:`concat_tables`) or
written part by part in bounded memory (:func:`run_template` fixes its columns
and dtypes from the parts' empty schemas, :class:`TableWriter` appends the
parts to CSV, Parquet and .h5ad); both give the same files.
"""

from __future__ import annotations

import warnings
from contextlib import ExitStack
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from cellscale.io import atomic_path
from cellscale.measure.stats import EXTRA_STATS
from cellscale.measure.table import SHAPE_COLUMNS

__all__ = ["write_table", "write_h5ad", "marker_columns", "concat_tables", "run_columns", "run_template", "run_parts",
           "string_columns", "categories_of", "TableWriter"]

KEY_COLUMNS = ("sample", "compartment", "frame", "CellID")
INT_COLUMNS = ("nucleus_id", "cell_id", "track_id", "frame")  # nullable Int64 in run-level tables


def marker_columns(df: pd.DataFrame) -> list[str]:
    """The marker (mean intensity) columns: those between CellID and X_centroid."""
    return _markers(list(df.columns))


def _markers(cols: list[str]) -> list[str]:
    return cols[cols.index("CellID") + 1:cols.index("X_centroid")]


def _attrs(node, kind: str, version: str = "0.2.0", **extra) -> None:
    node.attrs["encoding-type"] = kind
    node.attrs["encoding-version"] = version
    for key, value in extra.items():
        node.attrs[key] = value


def _strings(group, name, values) -> None:
    import h5py

    ds = group.create_dataset(name, data=np.asarray(values, dtype=object), dtype=h5py.string_dtype())
    _attrs(ds, "string-array")


def _array(group, name, shape, dtype):
    ds = group.create_dataset(name, shape=shape, dtype=dtype)
    _attrs(ds, "array")
    return ds


def _is_string(dtype) -> bool:
    """Written as an AnnData categorical: categoricals and every non-numeric, non-boolean column."""
    return isinstance(dtype, pd.CategoricalDtype) or not (
        pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype))


def string_columns(template: pd.DataFrame) -> list[str]:
    """The columns of ``template`` that .h5ad files hold as categoricals (their categories are needed first)."""
    return [c for c in template.columns if _is_string(template[c].dtype)]


def categories_of(values: Iterable) -> pd.Index:
    """The categories ``pd.Series(all values).astype("category")`` would have, from the values in pieces."""
    pieces = [pd.unique(np.asarray(v, dtype=object)) for v in values]
    seen = pd.unique(np.concatenate([np.array([], dtype=object), *pieces]))
    return pd.Series(seen, dtype=object).astype("category").cat.categories


def _obs_names(df: pd.DataFrame) -> list[str]:
    """sample:compartment:frame:CellID, leaving out columns absent or missing on a row."""
    names = pd.Series("", index=df.index, dtype=object)
    for key in (k for k in KEY_COLUMNS if k in df.columns):
        token = df[key].astype("string")
        names = names + (":" + token).fillna("").astype(object)
    return names.str[1:].tolist()


class _H5ad:
    """An AnnData .h5ad file of ``n_rows`` cells with the columns of ``template``, filled by :meth:`append`.

    ``X`` (cells x markers, float64) holds the marker means, ``var_names``
    the marker names, ``obs`` every other column (strings as categoricals with
    the given ``categories``, nullable integers kept), ``obsm["spatial"]`` the
    (X_centroid, Y_centroid) pairs and ``layers[stat]`` the extra statistics
    when present. ``obs_names`` join sample, compartment, frame and CellID
    with ``:``. Every dataset has its final size from the start.
    """

    def __init__(self, f, template: pd.DataFrame, n_rows: int, categories: Mapping[str, Sequence]):
        import h5py

        self.n_rows, self.row = n_rows, 0
        self.markers = marker_columns(template)
        layers = {s: [f"{m}_{s}" for m in self.markers] for s in EXTRA_STATS}
        self.layers = {s: cols for s, cols in layers.items()
                       if self.markers and all(c in template.columns for c in cols)}
        used = set(self.markers).union(*self.layers.values())
        self.obs = [c for c in template.columns if c not in used]
        _attrs(f, "anndata", "0.1.0")
        n, width = n_rows, len(self.markers)
        self.data = {"X": _array(f, "X", (n, width), np.float64)}
        for group in ("obsm", "varm", "obsp", "varp", "layers", "uns"):
            _attrs(f.create_group(group), "dict", "0.1.0")
        self.data["spatial"] = _array(f["obsm"], "spatial", (n, 2), np.float64)
        for stat in self.layers:
            self.data[stat] = _array(f["layers"], stat, (n, width), np.float64)
        var = f.create_group("var")
        _attrs(var, "dataframe", _index="_index", **{"column-order": np.array([], dtype=float)})
        _strings(var, "_index", self.markers)
        obs = f.create_group("obs")
        order = np.array(self.obs, dtype=object) if self.obs else np.array([], dtype=float)
        _attrs(obs, "dataframe", _index="_index", **{"column-order": order})
        self.names = obs.create_dataset("_index", shape=(n,), dtype=h5py.string_dtype())
        _attrs(self.names, "string-array")
        self.columns = {}  # column -> (kind, datasets, categories)
        for col in self.obs:
            dtype = template[col].dtype
            if _is_string(dtype):
                cats = pd.Index(dtype.categories if isinstance(dtype, pd.CategoricalDtype) else categories[col])
                sub = obs.create_group(col)
                _attrs(sub, "categorical", ordered=bool(getattr(dtype, "ordered", False)))
                _strings(sub, "categories", [str(c) for c in cats])
                codes = pd.Categorical([], categories=cats).codes.dtype
                self.columns[col] = ("categorical", [_array(sub, "codes", (n,), codes)], cats)
            elif isinstance(dtype, pd.api.extensions.ExtensionDtype) and dtype.kind in "iu":
                sub = obs.create_group(col)
                _attrs(sub, "nullable-integer", "0.1.0")
                sets = [_array(sub, "values", (n,), dtype.numpy_dtype), _array(sub, "mask", (n,), bool)]
                self.columns[col] = ("nullable", sets, None)
            else:
                self.columns[col] = ("array", [_array(obs, col, (n,), template[col].to_numpy().dtype)], None)

    def append(self, df: pd.DataFrame) -> None:
        rows = slice(self.row, self.row + len(df))
        if rows.stop > self.n_rows:
            raise ValueError(f"more than the {self.n_rows} rows announced for the .h5ad file")
        if not len(df):
            return
        if self.markers:
            self.data["X"][rows] = df[self.markers].to_numpy(dtype=np.float64)
            for stat, cols in self.layers.items():
                self.data[stat][rows] = df[cols].to_numpy(dtype=np.float64)
        self.data["spatial"][rows] = df[["X_centroid", "Y_centroid"]].to_numpy(dtype=np.float64)
        self.names[rows] = np.asarray(_obs_names(df), dtype=object)
        for col, (kind, sets, cats) in self.columns.items():
            series = df[col]
            if kind == "categorical":
                codes = pd.Categorical(series, categories=cats).codes
                if (codes[series.notna().to_numpy()] < 0).any():
                    raise ValueError(f"column {col!r} has values outside its announced categories")
                sets[0][rows] = codes
            elif kind == "nullable":
                sets[0][rows] = series.fillna(0).to_numpy(dtype=series.dtype.numpy_dtype)
                sets[1][rows] = series.isna().to_numpy()
            else:
                sets[0][rows] = series.to_numpy()
        self.row = rows.stop

    def close(self) -> None:
        if self.row != self.n_rows:
            raise ValueError(f"{self.row} rows written to the .h5ad file, {self.n_rows} announced")


class TableWriter:
    """Writes a table part by part to CSV (no index) and optionally Parquet and .h5ad, each atomically.

    ``template``: the table's columns and dtypes (no rows; every part is cast
    to them). ``n_rows`` and ``categories`` (the categories of every
    :func:`string_columns` column, see :func:`categories_of`) are needed for
    .h5ad only. Each part goes to the files as it comes (Parquet: one row group
    or more a part), so memory is bounded by the largest part. The files are
    temporary files in their destination folders until the ``with`` block
    ends without an error; then each is moved into place with
    :func:`os.replace`.
    """

    def __init__(self, template: pd.DataFrame, csv_path, parquet_path=None, h5ad_path=None, *,
                 n_rows: int | None = None, categories: Mapping[str, Sequence] | None = None):
        if h5ad_path is not None and n_rows is None:
            raise ValueError("an .h5ad file needs n_rows")
        self.template = template.iloc[:0]
        self.dtypes = self.template.dtypes.to_dict()
        self.paths = {"csv": csv_path, "parquet": parquet_path, "h5ad": h5ad_path}
        self.n_rows, self.categories = n_rows, dict(categories or {})
        self._stack = ExitStack()

    def __enter__(self) -> "TableWriter":
        import h5py
        import pyarrow as pa
        import pyarrow.parquet as pq

        stack = self._stack.__enter__()
        try:
            tmp = {k: stack.enter_context(atomic_path(p)) for k, p in self.paths.items() if p is not None}
            self.csv = stack.enter_context(open(tmp["csv"], "w", encoding="utf-8", newline=""))
            self.template.to_csv(self.csv, index=False)
            self.parquet = self.h5ad = None
            if "parquet" in tmp:
                self.schema = pa.Schema.from_pandas(_example(self.template), preserve_index=False)
                self.parquet = stack.enter_context(pq.ParquetWriter(tmp["parquet"], self.schema))
            if "h5ad" in tmp:
                f = stack.enter_context(h5py.File(tmp["h5ad"], "w"))
                self.h5ad = _H5ad(f, self.template, self.n_rows, self.categories)
        except BaseException:
            self._stack.close()
            raise
        return self

    def append(self, df: pd.DataFrame) -> None:
        """Append the rows of ``df`` (the template's columns, cast to its dtypes)."""
        df = df[list(self.template.columns)].astype(self.dtypes)
        df.to_csv(self.csv, index=False, header=False)
        if self.parquet is not None and len(df):
            import pyarrow as pa

            self.parquet.write_table(pa.Table.from_pandas(df, schema=self.schema, preserve_index=False))
        if self.h5ad is not None:
            self.h5ad.append(df)

    def __exit__(self, kind, err, tb) -> bool:
        if kind is None and self.h5ad is not None:
            try:
                self.h5ad.close()
            except Exception as failed:  # e.g. fewer rows than announced: no file then
                self._stack.__exit__(type(failed), failed, failed.__traceback__)
                raise
        return self._stack.__exit__(kind, err, tb)


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


def write_h5ad(df: pd.DataFrame, path) -> None:
    """Write a measurement table as an AnnData .h5ad file, atomically (layout: :class:`_H5ad`)."""
    import h5py

    categories = {c: categories_of([df[c]]) for c in string_columns(df)}
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        h5ad = _H5ad(f, df, len(df), categories)
        h5ad.append(df)
        h5ad.close()


def run_columns(tables_columns: Iterable[Sequence[str]]) -> list[str]:
    """The run-level table's columns, from the columns of the samples' tables (see :func:`concat_tables`)."""
    tables_columns = [list(cols) for cols in tables_columns]
    markers, tail = [], []
    for cols in tables_columns:
        markers += [m for m in _markers(cols) if m not in markers]
    for cols in tables_columns:
        rest = [c for c in cols if c not in markers and c not in ("CellID", *SHAPE_COLUMNS)]
        tail += [c for c in rest if c not in tail]
    extra = [c for c in tail if any(c == f"{m}_{s}" for m in markers for s in EXTRA_STATS)]
    others = [c for c in tail if c not in extra]
    return ["sample", "CellID", *markers, *SHAPE_COLUMNS, *extra, *others]


def _run_part(name, df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    return df.assign(sample=name).reindex(columns=cols)


def _int_columns(df: pd.DataFrame) -> pd.DataFrame:
    for col in INT_COLUMNS:
        if col in df.columns:
            df[col] = df[col].astype("Int64")
    return df


def concat_tables(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One run-level table: the samples' tables stacked, ``sample`` first.

    Marker columns are the union over samples in order of first appearance
    (missing markers are NaN); the other columns keep the per-sample order.
    """
    if not tables:
        raise ValueError("no tables to concatenate")
    cols = run_columns(df.columns for df in tables.values())
    return _int_columns(pd.concat([_run_part(name, df, cols) for name, df in tables.items()], ignore_index=True))


def _example(schema: pd.DataFrame) -> pd.DataFrame:
    """One row of non-missing values with the columns and dtypes of ``schema``."""
    row = {}
    for col, dtype in schema.dtypes.items():
        if isinstance(dtype, pd.CategoricalDtype):
            row[col] = pd.Categorical(dtype.categories[:1], dtype=dtype)
        elif pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
            row[col] = pd.Series([0]).astype(dtype)
        else:
            row[col] = pd.Series(["x"]).astype(dtype)
    return pd.DataFrame({c: pd.Series(v).reset_index(drop=True) for c, v in row.items()}, columns=schema.columns)


def run_template(schemas: Mapping[str, pd.DataFrame], empty: Iterable[str] = ()) -> pd.DataFrame:
    """The run-level table :func:`concat_tables` would give, without rows: its columns and dtypes.

    ``schemas``: sample -> a table with that sample's columns and dtypes (rows are not read: e.g.
    ``pyarrow.parquet.read_schema(path).empty_table().to_pandas()``); ``empty``: the samples without rows.
    Stacks one example row a sample (none for empty ones) the way :func:`concat_tables` stacks the tables.
    """
    if not schemas:
        raise ValueError("no tables to concatenate")
    empty, rows, keys = set(empty), {}, {}
    for name, df in schemas.items():  # samples of the same schema add nothing: one stands for all (10^6 samples)
        key = keys.get(id(df)) or keys.setdefault(id(df), (tuple(df.columns), tuple(map(str, df.dtypes))))
        rows.setdefault((*key, name in empty), (name, df))
    rows = {name: df.iloc[:0] if key[-1] else _example(df) for key, (name, df) in rows.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # concatenating empty tables: as concat_tables does
        return concat_tables(rows).iloc[:0]


def run_parts(parts: Iterable[tuple[str | None, pd.DataFrame]], template: pd.DataFrame) -> Iterable[pd.DataFrame]:
    """The parts of a run-level table with its columns: ``(sample, table)``, or ``(None, table)`` for a table that
    has its ``sample`` column already."""
    cols = list(template.columns)
    for name, df in parts:
        yield df.reindex(columns=cols) if name is None else _run_part(name, df, cols)
