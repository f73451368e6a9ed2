"""Step of the rule ``cost``: price the run from its jobs' benchmark files (:mod:`cellscale.cost.runcost`) and
write ``results/cost.tsv``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from cellscale.cost.jobs import job_table, read_batch_plan
from cellscale.cost.prices import load_prices
from cellscale.cost.runcost import RunCost, placement_from_profile, price_run, run_files, wall_seconds
from cellscale.io import atomic_path
from cellscale.report import html_tables

log = logging.getLogger("cellscale")


def run_cost(benchmarks: Mapping[str, Path | str], plan_path, tile_plans: Mapping[str, dict], prices,
             placement_profile, out_tsv, threads: Mapping[str, int] | None = None, cpu_spot: bool = True,
             gpu_spot: bool = False, results_dir=None, other_dirs=(), out_html=None) -> RunCost:
    """``results/cost.tsv`` of a run.

    ``benchmarks``: each job's benchmark file relative to the benchmark folder (``tile/s1.tsv``) -> where this job
    reads it; ``plan_path``: results/batches/plan.tsv; ``tile_plans``: per sample with its own jobs, its tile plan
    (``shape``, ``tiles``, ``shards``: :func:`cellscale.cost.jobs.tile_plan_size`); ``prices``: a price table (name
    or path); ``placement_profile``: the profile that places each rule (:func:`placement_from_profile`);
    ``threads``: the workflow's threads per rule; ``results_dir``: the run's results on this disk (a shared
    filesystem), for storage and wall time (None: not priced); ``out_html``: the run, pool, rule and sample levels
    as one HTML page (the report shows it; the job level is in the TSV).
    """
    plan = read_batch_plan(plan_path)
    jobs = job_table(files=benchmarks, plan=plan, tile_plans=tile_plans, results_dir=None)
    table = load_prices(prices)
    placement = placement_from_profile(placement_profile, threads=threads, cpu_spot=cpu_spot, gpu_spot=gpu_spot)
    storage = run_files(results_dir, other_dirs) if results_dir is not None else None
    wall = wall_seconds(benchmarks, jobs) if results_dir is not None else None
    cost = price_run(jobs, table, placement, plan=plan, storage=storage, wall_s=wall)
    with atomic_path(out_tsv) as tmp:
        cost.table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    if out_html is not None:
        levels = [(level, cost.table[cost.table["level"] == level]) for level in ("run", "pool", "rule", "sample")]
        html_tables(out_html, levels, f"cellscale: what the run cost ({table.currency}; prices {table.name} of "
                                      f"{table.date})")
    run = cost.level("run")
    log.info("cost: %d jobs, %.4g Mpx, compute %.4g %s, total %.4g %s (%.4g per 1,000 Mpx); prices %s of %s; "
             "placement %s", len(jobs), run.loc["total", "mpx"], run.loc["compute", "usd"], table.currency,
             run.loc["total", "usd"], table.currency, run.loc["total", "usd_per_1000_mpx"], table.name, table.date,
             placement.source)
    return cost
