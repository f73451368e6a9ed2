"""Snakemake script of rule `track`: link nuclei over time, write CTC folder + tracks table."""

from cellscale.logs import step_log
from cellscale.steps.track import track_sample

s = snakemake  # noqa: F821 (provided by Snakemake)
cfg = s.params.track
with step_log(s.log[0], f"track {s.wildcards.sample}"):
    track_sample(
        s.wildcards.sample,
        s.input.labels,
        s.input.image or s.params.image,
        s.output.ctc,
        s.output.table,
        nuclear_channel=s.params.nuclear_channel,
        max_distance=cfg.get("max_distance"),
        max_gap=cfg.get("max_gap", 2),
        divisions=cfg.get("divisions", True),
        solver=cfg.get("solver", "lap"),
    )
