"""Snakemake script of rule `stitch`: blend, post-process per block, write 32-bit labels."""

import os

from cellscale.logs import step_log
from cellscale.segment.settings import PostprocessSettings
from cellscale.steps import staged_model
from cellscale.steps.stitch import stitch_sample

s = snakemake  # noqa: F821 (provided by Snakemake)
with step_log(s.log[0], f"stitch {s.wildcards.sample} {s.wildcards.compartment}"):
    stitch_sample(
        os.path.join(s.input.tiles, "plan.json"),
        list(s.input.maps),
        staged_model(s.input, s.params.model),
        s.wildcards.compartment,
        s.output.labels,
        postprocess=PostprocessSettings.from_dict(s.params.postprocess),  # config["postprocess"]
        pixel_size_um=s.params.pixel_size,
        workers=s.threads,
    )
