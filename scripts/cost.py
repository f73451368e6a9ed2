"""Snakemake script of the rule cost (rules/cost.smk): what the run cost, from its jobs' benchmark files."""

from cellscale.logs import step_log
from cellscale.steps import cost as step

s = snakemake  # noqa: F821 (provided by Snakemake)
with step_log(s.log[0], s.rule):
    step.run_cost(dict(zip(s.params.jobs, s.input.benchmarks)), s.input.plan, s.params.tile_plans, s.input.prices,
                  s.input.placement, s.output.table, threads=s.params.threads, cpu_spot=s.params.cost["cpu_spot"],
                  gpu_spot=s.params.cost["gpu_spot"], results_dir=s.params.results_dir,
                  other_dirs=s.params.other_dirs, out_html=s.output.view)
