"""Snakemake script of rule `lineage`: the lineage tree of a time-lapse sample."""

import pandas as pd

from cellscale.logs import step_log
from cellscale.report import lineage_plot

s = snakemake  # noqa: F821 (provided by Snakemake)
with step_log(s.log[0], f"lineage {s.wildcards.sample}"):
    lineage_plot(s.output.plot, pd.read_parquet(s.input.tracks), f"{s.wildcards.sample}: lineage")
