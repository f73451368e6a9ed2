"""Snakemake script of the segmentation rules (rules/segment.smk): object_size, tile, segment, stitch.

Each rule hands its files and its config section (as typed settings) to one step of cellscale.steps.segment.
"""

import os

from cellscale.logs import run_job
from cellscale.segment.settings import PostprocessSettings, SegmentSettings, TilingSettings
from cellscale.steps import job_image, staged_model
from cellscale.steps.segment import estimate_sample_scale, measured_scale, segment_shard, stitch_sample, tile_sample


def object_size(s):
    """scale: auto: measure the objects of a crop of the image and choose the scale."""
    p = s.params
    estimate_sample_scale(
        p.sample,
        job_image(s.input.image, p.image),
        s.output.estimate,
        roles=p.roles,
        model_dir=staged_model(s.input, p.model),
        settings=SegmentSettings.from_dict(p.segment),  # config["segment"]: precision and augmentation
        tiling=TilingSettings.from_dict(p.tiling),
        postprocess=PostprocessSettings.from_dict(p.postprocess),
        timelapse=p.timelapse,
        gamma=p.gamma,
        threads=s.threads,
    )


def tile(s):
    """Cut a sample into shards of windows (raw pixels, or normalised when resampled)."""
    p = s.params
    estimate = getattr(s.input, "estimate", None)  # rule object_size's file where the scale is auto
    estimate = [estimate] if isinstance(estimate, str) else list(estimate or [])
    tile_sample(
        p.sample,
        job_image(s.input.image, p.image),  # the sheet's path names a missing image: the step says so
        s.output.tiles,
        roles=p.roles,
        model_dir=staged_model(s.input, p.model),
        tiling=TilingSettings.from_dict(p.tiling),  # config["tiling"], its defaults filled in by the schema
        timelapse=p.timelapse,
        pixel_size_um=p.pixel_size,
        frame_interval_s=p.frame_interval,
        gamma=p.gamma,
        scale=measured_scale(estimate[0]) if estimate else p.scale,  # auto: what object_size chose
    )


def segment(s):
    """Run the model on one shard of windows."""
    segment_shard(
        s.input.tiles,
        staged_model(s.input, s.params.model),
        s.output.maps,
        SegmentSettings.from_dict(s.params.segment),  # config["segment"]
        threads=s.threads,
    )


def stitch(s):
    """Blend, post-process per block, write 32-bit labels."""
    stitch_sample(
        os.path.join(s.input.tiles, "plan.json"),
        list(s.input.maps),
        staged_model(s.input, s.params.model),
        s.wildcards.compartment,
        s.output.labels,
        postprocess=PostprocessSettings.from_dict(s.params.postprocess),  # config["postprocess"]
        pixel_size_um=s.params.pixel_size,
        frame_interval_s=s.params.frame_interval,
        workers=s.threads,
        name=s.wildcards.sample,  # the OME image's name
    )


s = snakemake  # noqa: F821 (provided by Snakemake)
# by its rule as rules/*.smk names it (a module may rename it)
run_job(s, {"object_size": object_size, "tile": tile, "segment": segment, "stitch": stitch})
