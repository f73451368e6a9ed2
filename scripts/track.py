"""Snakemake script of rule `track`: link nuclei over time, write CTC folder + tracks table."""

from cellscale.logs import step_log
from cellscale.steps import job_image
from cellscale.steps.track import track_sample
from cellscale.track.config import TrackConfig

s = snakemake  # noqa: F821 (provided by Snakemake)
with step_log(s.log[0], f"track {s.wildcards.sample}"):
    track_sample(
        s.wildcards.sample,
        s.input.labels,
        job_image(s.input.image, s.params.image),
        s.output.ctc,
        s.output.table,
        nuclear_channel=s.params.nuclear_channel,
        config=TrackConfig.from_dict(s.params.track),  # config["track"]: every field reaches the tracker
    )
