"""Writing per-cell tables: CSV (MCMICRO), Parquet, AnnData .h5ad, run-level tables.

The .h5ad file is written with the ``anndata`` library, so
``anndata.read_h5ad`` / ``scanpy.read_h5ad`` load it in one line: ``X`` holds
the marker means, ``obs`` the morphology, centroids and identifiers,
``obsm["spatial"]`` the (X, Y) centroids, and one layer per extra statistic.

A run-level table is either stacked in memory (:func:`concat_tables`) or
written part by part in bounded memory (:func:`run_template` fixes its columns
and dtypes from the parts' empty schemas, :class:`TableWriter` appends the
parts to CSV, Parquet and .h5ad); both give the same files.
"""

from __future__ import annotations

import io
import warnings
from contextlib import ExitStack
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from cellscale.io import atomic_path
from cellscale.measure.stats import EXTRA_STATS
from cellscale.measure.table import INT_COLUMNS, KEY_COLUMNS, SHAPE_COLUMNS

__all__ = ["write_table", "write_h5ad", "table_anndata", "marker_columns", "concat_tables", "run_columns", "run_template", "run_parts",
           "string_columns", "categories_of", "TableWriter", "mcquant_tables"]



def marker_columns(df: pd.DataFrame) -> list[str]:
    """The marker (mean intensity) columns: those between CellID and X_centroid."""
    return _markers(list(df.columns))


def _markers(cols: list[str]) -> list[str]:
    return cols[cols.index("CellID") + 1:cols.index("X_centroid")]


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


def _categorical(series: pd.Series, categories: Sequence) -> pd.Categorical:
    dtype = series.dtype
    cats = dtype.categories if isinstance(dtype, pd.CategoricalDtype) else categories
    values = pd.Categorical(series, categories=cats, ordered=bool(getattr(dtype, "ordered", False)))
    if (values.codes[series.notna().to_numpy()] < 0).any():
        raise ValueError(f"column {series.name!r} has values outside its announced categories")
    return values


def _anndata(df: pd.DataFrame, categories: Mapping[str, Sequence]):
    """``df`` as :class:`anndata.AnnData`; string columns as categoricals with ``categories`` (a categorical column
    keeps its own).

    ``X`` (cells x markers, float64) holds the marker means, ``var_names``
    the marker names, ``obs`` every other column (nullable integers kept),
    ``obsm["spatial"]`` the (X_centroid, Y_centroid) pairs and
    ``layers[stat]`` the extra statistics when present. ``obs_names`` join
    sample, compartment, frame and CellID with ``:``.
    """
    import anndata

    markers = marker_columns(df)
    layers = {s: [f"{m}_{s}" for m in markers] for s in EXTRA_STATS}
    layers = {s: cols for s, cols in layers.items() if markers and all(c in df.columns for c in cols)}
    used = set(markers).union(*layers.values())
    obs = df[[c for c in df.columns if c not in used]].copy()
    for col in string_columns(obs):
        obs[col] = _categorical(obs[col], categories.get(col, ()))
    obs.index = pd.Index(_obs_names(df), dtype=object)
    return anndata.AnnData(X=df[markers].to_numpy(np.float64), obs=obs,
                           var=pd.DataFrame(index=pd.Index(markers, dtype=object)),
                           obsm={"spatial": df[["X_centroid", "Y_centroid"]].to_numpy(np.float64)},
                           layers={s: df[cols].to_numpy(np.float64) for s, cols in layers.items()})


class _H5adParts:
    """An .h5ad file written part by part with anndata's writers, in the memory of a part (or of a block).

    The file of the table without rows (``template``) is written first, every
    array along the cells resizable (those of X, obs, obsm and layers, except
    a categorical's categories). Parts are gathered into blocks of
    ``block_rows`` rows or more (a write costs milliseconds whatever its
    size); each block's AnnData is then written through
    :func:`anndata.experimental.write_dispatched`, its groups to a scratch file
    in memory and its arrays along the cells appended to the file's.
    """

    block_rows = 1 << 15

    def __init__(self, f, scratch, template: pd.DataFrame, n_rows: int, categories: Mapping[str, Sequence],
                 uns: Mapping | None = None):
        from anndata.experimental import write_dispatched

        self.f, self.scratch, self.n_rows, self.categories = f, scratch, n_rows, categories
        self.row, self.written, self.pending, self.by_row, self._categoricals = 0, 0, [], [], set()
        adata = _anndata(template, categories)
        adata.uns.update(uns or {})  # written once, with the file of the table without rows
        write_dispatched(f, "/", adata, self._create)

    def _along_cells(self, key: str, elem) -> bool:
        parent, _, name = key.rpartition("/")
        return (isinstance(elem, np.ndarray) and key.split("/")[1] in ("X", "obs", "obsm", "layers")
                and not (name == "categories" and parent in self._categoricals))

    def _create(self, write, store, key, elem, *, iospec, dataset_kwargs):
        if elem is None:  # raw: none, as AnnData.write_h5ad leaves it
            return
        if iospec.encoding_type == "categorical":
            self._categoricals.add(key)
        if self._along_cells(key, elem):
            self.by_row.append(key)
            rest = tuple(max(d, 1) for d in elem.shape[1:])
            rows = min(max(self.n_rows, 1), max(1, (1 << 20) // (elem.dtype.itemsize * int(np.prod(rest)))))
            dataset_kwargs = {**dataset_kwargs, "maxshape": (None,) * elem.ndim, "chunks": (rows, *rest)}
        write(store, key, elem, dataset_kwargs=dataset_kwargs)

    def _append(self, write, store, key, elem, *, iospec, dataset_kwargs):
        if key in self.by_row:
            dataset = self.f[key]
            dataset.resize(self.written + len(elem), axis=0)
            dataset[self.written:] = elem
        elif elem is not None and not isinstance(elem, np.ndarray):
            write(store, key, elem, dataset_kwargs=dataset_kwargs)

    def _flush(self) -> None:
        from anndata.experimental import write_dispatched

        if self.pending:
            block = self.pending[0] if len(self.pending) == 1 else pd.concat(self.pending, ignore_index=True)
            write_dispatched(self.scratch, "/", _anndata(block, self.categories), self._append)
            self.written, self.pending = self.written + len(block), []

    def append(self, df: pd.DataFrame) -> None:
        if self.row + len(df) > self.n_rows:
            raise ValueError(f"more than the {self.n_rows} rows announced for the .h5ad file")
        if len(df):
            self.pending.append(df)
            self.row += len(df)
        if self.row - self.written >= self.block_rows:
            self._flush()

    def close(self) -> None:
        self._flush()
        if self.row != self.n_rows:
            raise ValueError(f"{self.row} rows written to the .h5ad file, {self.n_rows} announced")


# the CSV's text of a float outside these magnitudes is Python's repr (as pandas writes it) rather than Arrow's, which
# writes some of them otherwise (2.5e-7 for 2.5e-07, 1.5e+12 for 1500000000000.0): the same values
_ARROW_REPR_MIN, _ARROW_REPR_MAX = 1e-4, 1e10
_QUOTED = '[",\n]'  # a text value with one of these is quoted, its quotes doubled (pandas' QUOTE_MINIMAL, "\n" lines)


def csv_rows(df: pd.DataFrame) -> str:
    """The rows of ``df`` as CSV text, no header: the text ``df.to_csv(index=False, header=False)`` writes, about 4x
    faster (each column formatted by Arrow's compute kernels and joined there; a float is its shortest round-trip
    text, as Python's repr; missing values empty; text quoted only where it must be). A column of another kind
    (float32, dates, categories, objects) or a table of one column sends the whole part to pandas."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not len(df) or len(df.columns) < 2:   # pandas writes an empty one-column row as ""
        return df.to_csv(index=False, header=False)
    try:
        table = pa.Table.from_pandas(df, preserve_index=False)
    except (pa.ArrowException, TypeError, ValueError):
        return df.to_csv(index=False, header=False)
    columns = []
    for arr in table.columns:
        kind = arr.type
        if pa.types.is_float64(kind):
            text = pc.cast(arr, pa.string())
            text = pc.if_else(pc.match_substring_regex(text, r"^-?[0-9]+$"),
                              pc.binary_join_element_wise(text, ".0", ""), text)   # 3.0, not 3
            values = arr.to_numpy(zero_copy_only=False)
            with np.errstate(invalid="ignore"):
                odd = np.isfinite(values) & (values != 0) & ((np.abs(values) < _ARROW_REPR_MIN)
                                                             | (np.abs(values) >= _ARROW_REPR_MAX))
            if odd.any():
                texts = np.array(text.to_pylist(), dtype=object)
                texts[odd] = [str(v) for v in values[odd]]
                text = pa.array(texts, type=pa.string())
        elif pa.types.is_boolean(kind):
            text = pc.if_else(arr, "True", "False")
        elif pa.types.is_integer(kind) or pa.types.is_null(kind):
            text = pc.cast(arr, pa.string())
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            text = arr
            quote = pc.match_substring_regex(text, _QUOTED)
            if pc.any(quote).as_py():
                text = pc.if_else(quote, pc.binary_join_element_wise('"', pc.replace_substring(text, '"', '""'),
                                                                     '"', ""), text)
        else:
            return df.to_csv(index=False, header=False)
        columns.append(pc.fill_null(text, ""))
    rows = pc.binary_join_element_wise(*columns, ",")
    return "\n".join(rows.to_pylist()) + "\n"


class TableWriter:
    """Writes a table part by part to CSV (no index) and optionally Parquet and .h5ad, each atomically.

    ``template``: the table's columns and dtypes (no rows; every part is cast
    to them). ``n_rows`` and ``categories`` (the categories of every
    :func:`string_columns` column, see :func:`categories_of`) are needed for
    .h5ad only; ``uns``: the .h5ad file's ``uns`` (what produced the cells).
    Each part goes to the files as it comes (Parquet: one row group or more a
    part; .h5ad: in blocks of 2^15 rows or more, written with
    anndata), so memory is bounded by the largest part. The files are
    temporary files in their destination folders until the ``with`` block
    ends without an error; then each is moved into place with
    :func:`os.replace`.
    """

    def __init__(self, template: pd.DataFrame, csv_path, parquet_path=None, h5ad_path=None, *,
                 n_rows: int | None = None, categories: Mapping[str, Sequence] | None = None,
                 uns: Mapping | None = None):
        if h5ad_path is not None and n_rows is None:
            raise ValueError("an .h5ad file needs n_rows")
        self.template = template.iloc[:0]
        self.dtypes = self.template.dtypes.to_dict()
        self.paths = {"csv": csv_path, "parquet": parquet_path, "h5ad": h5ad_path}
        self.n_rows, self.categories, self.uns = n_rows, dict(categories or {}), uns
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
                scratch = stack.enter_context(h5py.File(io.BytesIO(), "w"))
                self.h5ad = _H5adParts(f, scratch, self.template, self.n_rows, self.categories, self.uns)
        except BaseException:
            self._stack.close()
            raise
        return self

    def append(self, df: pd.DataFrame) -> None:
        """Append the rows of ``df`` (the template's columns, cast to its dtypes)."""
        df = df[list(self.template.columns)].astype(self.dtypes)
        self.csv.write(csv_rows(df))
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


def write_table(df: pd.DataFrame, csv_path, parquet_path=None, h5ad_path=None, uns: Mapping | None = None) -> None:
    """Write ``df`` to CSV (no index) and optionally Parquet and .h5ad (``uns``: its ``uns``), each atomically.

    Each file is first written to a temporary file in its destination folder
    and then moved into place with :func:`os.replace`, so readers never see a
    partial table. Parent folders are created.
    """
    with atomic_path(csv_path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        df.iloc[:0].to_csv(fh, index=False)   # the header
        fh.write(csv_rows(df))
    if parquet_path is not None:
        with atomic_path(parquet_path) as tmp:
            df.to_parquet(tmp, index=False)
    if h5ad_path is not None:
        write_h5ad(df, h5ad_path, uns)


def table_anndata(df: pd.DataFrame, uns: Mapping | None = None):
    """A measurement table as the :class:`anndata.AnnData` its .h5ad file holds (contents: :func:`_anndata`;
    ``uns``: its ``uns``)."""
    adata = _anndata(df, {c: categories_of([df[c]]) for c in string_columns(df)})
    adata.uns.update(uns or {})
    return adata


def write_h5ad(df: pd.DataFrame, path, uns: Mapping | None = None) -> None:
    """Write a measurement table as an AnnData .h5ad file with anndata, atomically (contents: :func:`_anndata`;
    ``uns``: its ``uns``, e.g. ``{"cellscale": {...}}``, what produced the cells)."""
    adata = table_anndata(df, uns)
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)


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


def mcquant_tables(table: pd.DataFrame, name: str | None = None) -> dict[str, pd.DataFrame]:
    """``table`` (a sample's, a batch's or the run's) as MCMICRO's MCQuant writes its feature tables: one table per
    image and mask, named ``{sample}_{compartment}`` (MCQuant's ``{image}_{mask}``).

    MCMICRO's readers (SCIMAP's ``mcmicro_to_scimap``, cylinter) take a file's rows for one image's cells, its columns
    before ``X_centroid`` for markers and the file's name for the image; cellscale's tables hold every compartment
    as rows of one table and, run-level, a ``sample`` column first. Each table here has ``CellID``, the sample's
    marker means (a run-level table's channels of other samples, NaN on its rows, left out), its extra statistics
    when measured, then the MCMICRO columns from ``X_centroid`` to ``Orientation``. ``name``: the sample of a table
    without a ``sample`` column. A time-lapse's rows (a ``frame``) are left out: MCQuant measures still images.
    """
    missing = [c for c in ("CellID", "compartment", *SHAPE_COLUMNS) if c not in table.columns]
    if missing:
        raise ValueError(f"not a cellscale cell table: no column {', '.join(missing)}")
    if "sample" not in table.columns:
        if name is None:
            raise ValueError("a table without a sample column needs the sample's name")
        table = table.assign(sample=name)
    if "frame" in table.columns:
        table = table[table["frame"].isna()]
    markers = _markers([c for c in table.columns if c != "sample"])  # by name: no copy of the table's cells
    out = {}
    for sample, rows in table.groupby("sample", sort=False, observed=True):
        kept = [m for m in markers if rows[m].notna().any()]
        extra = [f"{m}_{s}" for m in kept for s in EXTRA_STATS if f"{m}_{s}" in rows.columns]
        for comp, cells in rows.groupby("compartment", sort=False, observed=True):
            out[f"{sample}_{comp}"] = cells[["CellID", *kept, *extra, *SHAPE_COLUMNS]].reset_index(drop=True)
    return out
