"""One row per job of a run: its rule, sample or batch, the megapixels it processed and what its benchmark measured.

:func:`job_table` reads the rules' ``benchmark:`` files (:mod:`.benchmarks`) and the run's two plans:

- ``results/batches/plan.tsv`` (the ``plan_batches`` checkpoint): every sample's batch (empty: its own jobs) and
  its megapixels at the model's scale (empty where the header was not read: time-lapse movies, unreadable files);
- ``results/tiles/<sample>/plan.json`` (the ``tile`` checkpoint of a sample with its own jobs): the image's
  ``shape`` at the model's scale (``[T, Y, X]``), its windows (``tiles``) and which windows each shard holds
  (``shards``).

A job's megapixels (``mpx``):

- ``segment_batch``: the sum over the batch's images (plan.tsv);
- ``object_size`` (scale auto), ``tile``, ``stitch``, ``measure``, ``track``, ``ngff``, ``spatialdata``,
  ``report_sample``, ``lineage``: the sample's image (every frame of a movie), from its tile plan, else plan.tsv;
- ``segment``: the shard's share of the sample's windows x the sample's megapixels;
- run-level rules (``plan_batches``, ``report_fields``, ``summary``, ``aggregate_measurements``, ``mcquant``): the
  run's total;
- NaN where the plans do not say (never a guess).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from cellscale.cost.benchmarks import BENCHMARKS, RUN_LEVEL, benchmark_files, read_rows, rule_of

COLUMNS = ["rule", "job", "sample", "batch", "mpx", "s", "max_rss_mb", "cpu_time_s"]
BATCH_RULES = ("segment_batch", "ngff_batch", "spatialdata_batch")                          # <batch>.tsv
SHARD_RULES = ("segment",)                                                                  # <sample>/shard_N.tsv


def read_batch_plan(path: Path | str) -> pd.DataFrame:
    """``results/batches/plan.tsv``: sample (text), batch (its name, or empty), mpx (float, NaN if unknown)."""
    plan = pd.read_csv(path, sep="\t", dtype={"sample": str, "batch": str, "mpx": float},
                       keep_default_na=False, na_values=[""])
    # a plan of an earlier version numbered its batches (3: the folder 0003)
    plan["batch"] = plan["batch"].fillna("").map(lambda b: f"{int(b):04d}" if b.isdigit() else b)
    return plan


def tile_plan_size(plan: Mapping) -> dict:
    """A tile plan (plan.json: ``shape``, ``tiles``, ``shards``; the two lists may be given as their lengths) as
    ``{"mpx": image megapixels, "shards": [share of the windows per shard]}``."""
    if "mpx" in plan:   # already sized
        return dict(plan)
    mpx = math.prod(int(n) for n in plan["shape"]) / 1e6
    n_tiles = _count(plan["tiles"])
    return {"mpx": mpx, "shards": [_count(shard) / n_tiles for shard in plan["shards"]] if n_tiles else []}


def _count(items) -> int:
    return items if isinstance(items, int) else len(items)


def read_tile_plans(results_dir: Path | str) -> dict[str, dict]:
    """Every ``results/tiles/<sample>/plan.json`` under ``results_dir`` as :func:`tile_plan_size` gives it."""
    return {p.parent.name: tile_plan_size(json.loads(p.read_text()))
            for p in sorted(Path(results_dir, "tiles").glob("*/plan.json"))}


def job_table(benchmarks_dir: Path | str = BENCHMARKS, results_dir: Path | str | None = "results", *,
              files: Mapping[str, Path | str] | None = None, plan: pd.DataFrame | None = None,
              tile_plans: Mapping[str, dict] | None = None) -> pd.DataFrame:
    """One row per benchmark row: ``rule``, ``job`` (the file relative to the benchmark folder), ``sample`` ("" for
    run-level and batch jobs), ``batch`` ("" unless ``segment_batch``), ``mpx``, ``s``, ``max_rss_mb`` and
    ``cpu_time_s`` (NaN where the file says NA).

    ``files``: the jobs to read (benchmark path relative to the folder -> where to read it, e.g. a staged copy);
    default: every ``*.tsv`` under ``benchmarks_dir``. ``plan`` (:func:`read_batch_plan`) and ``tile_plans``
    (sample -> :func:`tile_plan_size`) default to the files under ``results_dir`` (none: every mpx unknown except
    what the other gives).
    """
    files = benchmark_files(benchmarks_dir) if files is None else dict(files)
    if plan is None:
        path = Path(results_dir, "batches", "plan.tsv") if results_dir is not None else None
        plan = read_batch_plan(path) if path is not None and path.exists() else _empty_plan()
    if tile_plans is None:
        tile_plans = read_tile_plans(results_dir) if results_dir is not None else {}
    tile_plans = {s: tile_plan_size(p) for s, p in tile_plans.items()}
    sample_mpx = _sample_mpx(plan, tile_plans)
    batch_mpx = plan[plan["batch"] != ""].groupby("batch")["mpx"].sum(min_count=1).to_dict()
    in_run = list(plan["sample"]) if len(plan) else list(tile_plans)   # not a stale tile plan of another run
    known = [sample_mpx[s] for s in in_run if not math.isnan(sample_mpx[s])]
    run_mpx = float(sum(known)) if known else math.nan
    rows = []
    for job, path in sorted(files.items()):
        rule, parts = rule_of(job), Path(job).parts
        stem = Path(job).stem
        sample, batch, mpx = "", "", math.nan
        if rule in RUN_LEVEL:
            mpx = run_mpx
        elif rule in BATCH_RULES:
            batch = stem
            mpx = batch_mpx.get(batch, math.nan)
        elif rule in SHARD_RULES and len(parts) == 3:
            sample = parts[1]
            shares = tile_plans.get(sample, {}).get("shards", [])
            index = int(stem.rsplit("_", 1)[-1]) if stem.rsplit("_", 1)[-1].isdigit() else -1
            if 0 <= index < len(shares):
                mpx = shares[index] * tile_plans[sample]["mpx"]
        else:  # per-sample rules: <rule>/<sample>.tsv or <rule>/<sample>/<part>.tsv (stitch: the compartment)
            sample = parts[1] if len(parts) == 3 else stem
            mpx = sample_mpx.get(sample, math.nan)
        for row in read_rows(path):
            rows.append({"rule": rule, "job": job, "sample": sample, "batch": batch, "mpx": mpx,
                         "s": _nan(row["s"]), "max_rss_mb": _nan(row["max_rss"]),
                         "cpu_time_s": _nan(row["cpu_time"])})
    return pd.DataFrame(rows, columns=COLUMNS).astype({"mpx": float, "s": float, "max_rss_mb": float,
                                                      "cpu_time_s": float})


def _empty_plan() -> pd.DataFrame:
    return pd.DataFrame({"sample": pd.Series(dtype=str), "batch": pd.Series(dtype=str),
                         "mpx": pd.Series(dtype=float)})


def batch_members(plan: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per batch, its samples and their megapixels (plan.tsv's rows)."""
    return {b: rows[["sample", "mpx"]].reset_index(drop=True)
            for b, rows in plan[plan["batch"] != ""].groupby("batch", sort=True)}


def _sample_mpx(plan: pd.DataFrame, tile_plans: Mapping[str, dict]) -> dict[str, float]:
    """Every sample's megapixels: its tile plan's (every frame), else plan.tsv's, else NaN."""
    out = {s: (float(m) if pd.notna(m) else math.nan) for s, m in zip(plan["sample"], plan["mpx"])}
    out.update({s: float(p["mpx"]) for s, p in tile_plans.items()})
    return out


def _nan(value: float | None) -> float:
    return np.nan if value is None else float(value)
