"""Snakemake script of rule `aggregate_measurements`: one table of every sample's cells."""

from cellscale.logs import step_log
from cellscale.steps.measure import aggregate_measurements

s = snakemake  # noqa: F821 (provided by Snakemake)
with step_log(s.log[0], "aggregate measurements"):
    aggregate_measurements(
        dict(zip(s.params.samples, s.input)),
        s.output.csv,
        s.output.parquet,
        s.output.h5ad,
    )
