"""Benchmark of the run-level tables (rules aggregate_measurements, mcquant): peak memory in memory against streamed.

    python benchmarks/tables.py            # full: 200 batch tables of 50,000 rows (10^7 cells), ~13 min, ~17 GB disk
    python benchmarks/tables.py --quick    # CI: 20 batch tables of 5,000 rows, < 1 min
    python benchmarks/tables.py --batches 50 --rows 20000

Generates batch tables like ``segment_batch`` writes them (results/cells/batch_NNNN.parquet: ``sample``, CellID,
8 markers, the shape columns, compartment, nucleus_id, cell_id; 10 samples a batch) in a temporary folder, then
builds results/cells.{csv,parquet,h5ad} twice, each in a fresh interpreter under ``/usr/bin/time -v`` (max RSS):

- in memory: what aggregate_measurements did before streaming: every table read, ``concat_tables``,
  ``write_table``;
- streamed: ``cellscale.steps.measure.aggregate_measurements``, one input table at a time;

and checks that the two give the same files (CSV byte for byte, Parquet and .h5ad by content). The streamed peak
should stay flat as the run grows: bounded by the largest input table, not the run. Then the rule ``mcquant``
(``output.formats`` mcquant: ``cellscale.steps.measure.run_mcquant``) on the streamed ``cells.parquet``, its time and
peak alike: it reads that table row group by row group, so its peak too should stay flat.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MARKERS = [f"ch{i}" for i in range(8)]
SAMPLES_PER_BATCH = 10


def write_batches(folder: Path, n_batches: int, rows: int, seed: int = 0) -> list[Path]:
    """``n_batches`` batch tables of ``rows`` cells each, columns as ``segment_batch`` writes them."""
    import pandas as pd

    from cellscale.measure import SHAPE_COLUMNS

    rng = np.random.default_rng(seed)
    paths = []
    for b in range(n_batches):
        per = rows // SAMPLES_PER_BATCH
        sample = np.repeat([f"s{b * SAMPLES_PER_BATCH + k:06d}" for k in range(SAMPLES_PER_BATCH)], per)
        sample = np.concatenate([sample, np.full(rows - len(sample), sample[-1] if len(sample) else "s")])
        df = pd.DataFrame({"sample": sample, "CellID": np.arange(rows, dtype=np.int64) % per + 1})
        for col in [*MARKERS, *SHAPE_COLUMNS]:
            df[col] = rng.random(rows) * 1000
        df["compartment"] = np.where(np.arange(rows) % 2, "whole_cell", "nuclear")
        df["nucleus_id"] = pd.array(np.where(np.arange(rows) % 2, df["CellID"], pd.NA), dtype="Int64")
        df["cell_id"] = pd.array(np.where(np.arange(rows) % 2, pd.NA, df["CellID"]), dtype="Int64")
        paths.append(folder / f"batch_{b:04d}.parquet")
        df.to_parquet(paths[-1], index=False)
    return paths


def child(mode: str, folder: str) -> None:
    """Build the run-level tables of ``folder``/batch_*.parquet in ``folder``/``mode``/ (run as a child process)."""
    import pandas as pd

    from cellscale.measure import concat_tables, write_table
    from cellscale.steps.measure import aggregate_measurements, run_mcquant

    batches, out = sorted(Path(folder).glob("batch_*.parquet")), Path(folder) / mode
    t = time.perf_counter()
    if mode == "mcquant":
        run_mcquant(Path(folder) / "stream" / "cells.parquet", out)
    elif mode == "memory":
        tables = {}
        for path in batches:
            batch = pd.read_parquet(path)
            tables.update((s, g.drop(columns="sample")) for s, g in batch.groupby("sample", sort=False))
        write_table(concat_tables(tables), out / "cells.csv", out / "cells.parquet", out / "cells.h5ad")
    else:
        aggregate_measurements({}, out / "cells.csv", out / "cells.parquet", out / "cells.h5ad", batch_tables=batches)
    print(json.dumps({"seconds": time.perf_counter() - t}))


def run_child(mode: str, folder: Path) -> tuple[float, float]:
    """Time (s) and peak RSS (MB, ``/usr/bin/time -v``) of one child."""
    cmd = ["/usr/bin/time", "-v", sys.executable, __file__, "--child", mode, str(folder)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if proc.returncode:
        raise RuntimeError(f"child failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    kb = next(int(line.split(":")[1]) for line in proc.stderr.splitlines() if "Maximum resident set size" in line)
    return json.loads(proc.stdout.strip().splitlines()[-1])["seconds"], kb / 1024


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def same_files(a: Path, b: Path) -> dict:
    """CSV byte for byte; Parquet as Arrow tables; .h5ad as anndata reads it back."""
    import pyarrow.parquet as pq

    same = {"csv": _sha256(a / "cells.csv") == _sha256(b / "cells.csv")}
    same["parquet"] = pq.read_table(a / "cells.parquet").equals(pq.read_table(b / "cells.parquet"),
                                                                check_metadata=True)
    same["h5ad"] = _same_anndata(a / "cells.h5ad", b / "cells.h5ad")
    return same


def _same_anndata(a: Path, b: Path) -> bool:
    """obs, var, obsm and layers of the two files read with anndata equal (dtypes too), and X, read backed by
    blocks of rows."""
    import anndata
    import pandas as pd

    fa, fb = anndata.read_h5ad(a, backed="r"), anndata.read_h5ad(b, backed="r")
    try:
        try:
            pd.testing.assert_frame_equal(fa.obs, fb.obs)
            pd.testing.assert_frame_equal(fa.var, fb.var)
        except AssertionError:
            return False
        arrays = [{**{f"obsm/{k}": v for k, v in x.obsm.items()}, **{f"layers/{k}": v for k, v in x.layers.items()}}
                  for x in (fa, fb)]
        if arrays[0].keys() != arrays[1].keys() or (fa.X.shape, fa.X.dtype) != (fb.X.shape, fb.X.dtype):
            return False
        if not all(v.dtype == arrays[1][k].dtype and np.array_equal(v, arrays[1][k], equal_nan=True)
                   for k, v in arrays[0].items()):
            return False
        step = 1 << 20
        return all(np.array_equal(fa.X[i:i + step], fb.X[i:i + step], equal_nan=True) for i in range(0, fa.n_obs, step))
    finally:
        fa.file.close()
        fb.file.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 batch tables of 5,000 rows (CI, < 1 min)")
    parser.add_argument("--batches", type=int, help="batch tables (default 200; --quick 20)")
    parser.add_argument("--rows", type=int, help="rows a batch table (default 50,000; --quick 5,000)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    n_batches = args.batches or (20 if args.quick else 200)
    rows = args.rows or (5_000 if args.quick else 50_000)
    work = Path(tempfile.mkdtemp(prefix="cellscale-tables-"))
    try:
        t0 = time.time()
        paths = write_batches(work, n_batches, rows)
        input_mb = sum(p.stat().st_size for p in paths) / 1e6
        print(f"== run-level tables: {n_batches} batch tables x {rows} rows = {n_batches * rows} cells, "
              f"{len(MARKERS)} markers, {input_mb:.0f} MB of Parquet (generated in {time.time() - t0:.0f} s)")
        figures = {"batches": n_batches, "rows_per_batch": rows, "cells": n_batches * rows}
        for mode in ("memory", "stream"):
            seconds, peak = run_child(mode, work)
            figures[mode] = {"seconds": seconds, "peak_rss_mb": peak}
        same = figures["identical"] = same_files(work / "memory", work / "stream")
        out_mb = sum(p.stat().st_size for p in (work / "stream").iterdir()) / 1e6
        seconds, peak = run_child("mcquant", work)
        csvs = list((work / "mcquant").glob("*.csv"))
        figures["mcquant"] = {"seconds": seconds, "peak_rss_mb": peak, "csvs": len(csvs),
                              "mb": sum(p.stat().st_size for p in csvs) / 1e6}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for mode, label in (("memory", "in memory (before)"), ("stream", "streamed (after) ")):
        print(f"   {label}: peak RSS {figures[mode]['peak_rss_mb']:8.0f} MB, {figures[mode]['seconds']:6.1f} s")
    ok = all(same.values())
    print(f"   outputs {out_mb:.0f} MB; identical files: "
          + ", ".join(f"{k} {v}" for k, v in same.items()) + f"; {'PASS' if ok else 'FAIL'}")
    mcq = figures["mcquant"]
    print(f"   mcquant (from the streamed cells.parquet): peak RSS {mcq['peak_rss_mb']:8.0f} MB, "
          f"{mcq['seconds']:6.1f} s, {mcq['csvs']} CSVs, {mcq['mb']:.0f} MB")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
