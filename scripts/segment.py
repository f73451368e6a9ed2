"""Snakemake script of rule `segment`: run the model on one shard of windows."""

from cellscale.logs import step_log
from cellscale.segment.settings import SegmentSettings
from cellscale.steps import staged_model
from cellscale.steps.segment import segment_shard

with step_log(snakemake.log[0], f"segment {snakemake.input.tiles}"):  # noqa: F821
    segment_shard(
        snakemake.input.tiles,  # noqa: F821
        staged_model(snakemake.input, snakemake.params.model),  # noqa: F821
        snakemake.output.maps,  # noqa: F821
        SegmentSettings.from_dict(snakemake.params.segment),  # noqa: F821 (config["segment"])
        threads=snakemake.threads,  # noqa: F821
    )
