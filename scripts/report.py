"""Snakemake script of rule `report_sample`: QC overlay and summary of one sample."""

import os

from cellscale.logs import step_log
from cellscale.steps.report import report_sample

s = snakemake  # noqa: F821 (provided by Snakemake)
with step_log(s.log[0], f"report {s.wildcards.sample}"):
    report_sample(
        s.wildcards.sample,
        s.input.image or s.params.image,
        {c: s.input[c] for c in s.params.compartments},
        s.input.table,
        os.path.dirname(s.output.overlay),
        timelapse=s.params.timelapse,
        tracks_path=s.input.tracks or None,
    )
