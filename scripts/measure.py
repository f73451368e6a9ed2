"""Snakemake script of rule `measure`: per-cell table (CSV, Parquet, AnnData .h5ad) of one sample."""

from cellscale.logs import step_log
from cellscale.steps.measure import MeasureSettings, measure_sample

s = snakemake  # noqa: F821 (provided by Snakemake)
with step_log(s.log[0], f"measure {s.wildcards.sample}"):
    measure_sample(
        s.wildcards.sample,
        s.input.image or s.params.image,
        {c: s.input[c] for c in s.params.compartments},
        s.output.csv,
        s.output.parquet,
        timelapse=s.params.timelapse,
        channel_names=s.params.channel_names,
        tracks_path=s.input.tracks or None,
        settings=MeasureSettings.from_dict(s.params.measure),  # config["measure"]
        out_h5ad=s.output.h5ad,
    )
