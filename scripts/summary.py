"""Snakemake script of rule `summary`: one row per sample."""

from cellscale.logs import step_log
from cellscale.steps.report import run_summary

s = snakemake  # noqa: F821 (provided by Snakemake)
with step_log(s.log[0], "summary"):
    run_summary(list(s.input), s.output[0])
