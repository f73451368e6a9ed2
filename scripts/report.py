"""Snakemake script of the report rules (rules/report.smk): report_sample, lineage, summary."""

import os

import pandas as pd

from cellscale.logs import step_log
from cellscale.report import lineage_plot
from cellscale.steps import report as step


def report_sample(s):
    """QC overlay and summary of one sample."""
    step.report_sample(
        s.wildcards.sample,
        s.input.image or s.params.image,
        {c: s.input[c] for c in s.params.compartments},
        s.input.table,
        os.path.dirname(s.output.overlay),
        timelapse=s.params.timelapse,
        tracks_path=s.input.tracks or None,
    )


def lineage(s):
    """The lineage tree of a time-lapse sample."""
    lineage_plot(s.output.plot, pd.read_parquet(s.input.tracks), f"{s.wildcards.sample}: lineage")


def summary(s):
    """One row per sample."""
    step.run_summary(list(s.input), s.output[0])


s = snakemake  # noqa: F821 (provided by Snakemake)
with step_log(s.log[0], " ".join([s.rule, *map(str, s.wildcards)])):
    {"report_sample": report_sample, "lineage": lineage, "summary": summary}[s.rule](s)
