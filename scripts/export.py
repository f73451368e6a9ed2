"""Snakemake script of the export rules (rules/export.smk): ngff, spatialdata (a sample), ngff_batch,
spatialdata_batch (a batch of small images)."""

import tempfile

from cellscale.logs import step_log
from cellscale.steps import export as step
from cellscale.steps.batch import fetch_fields


def export_batch(s, settings):
    """A batch's stores; with batches.read_fields: direct its images come from the bucket, not as inputs."""
    def export(image_paths):
        step.export_batch(s.input.batch, s.input.table, s.params.fields, image_paths,
                          {s.params.format: s.output.stores}, settings=settings)

    if not s.params.storage_prefix:
        return export(list(s.input.images))
    with tempfile.TemporaryDirectory(prefix="fields-", dir=".") as tmp:
        where = fetch_fields(s.params.image_paths, s.params.storage_prefix, tmp)
        export([where.get(p, p) for p in s.params.image_paths])


s = snakemake  # noqa: F821 (provided by Snakemake)
settings = step.OutputSettings.from_dict(s.params.output)  # config["output"]
with step_log(s.log[0], " ".join([s.rule, *map(str, s.wildcards)])):
    if s.rule.endswith("_batch"):
        export_batch(s, settings)
    else:
        step.export_one(
            s.wildcards.sample,
            s.input.image or s.params.image,
            {c: s.input[c] for c in s.params.compartments},
            s.input.table,
            {s.params.format: s.output.store},
            timelapse=s.params.timelapse,
            channel_names=s.params.channel_names,
            pixel_size_um=s.params.pixel_size,
            settings=settings,
        )
