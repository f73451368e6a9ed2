"""Snakemake script of the export rules (rules/export.smk): ngff, spatialdata (a sample), ngff_batch,
spatialdata_batch (a batch of small images)."""

from cellscale.logs import run_job
from cellscale.steps import export as step
from cellscale.steps import job_image, read_models, with_models
from cellscale.steps.batch import job_images


def export_batch(s):
    """A batch's stores (its images staged as inputs, or downloaded by the job: batches.read_fields: direct); the
    SpatialData store's table says what made each sample's cells (spatialdata_batch's provenance)."""
    made = None
    if "provenance" in s.input.keys():
        made = with_models(s.params.provenance, read_models([s.input.provenance]))
    with job_images(s.params.image_paths, s.input.images, s.params.storage_prefix, beside=s.output.stores) as where:
        step.export_batch(s.input.batch, s.input.table, s.params.fields, where, {s.params.format: s.output.stores},
                          settings=step.OutputSettings.from_dict(s.params.output), provenance=made)


def export_one(s):
    """A sample's store (rules ngff, spatialdata)."""
    step.export_one(
        s.wildcards.sample,
        job_image(s.input.image, s.params.image),
        {c: s.input[c] for c in s.params.compartments},
        s.input.table,
        {s.params.format: s.output.store},
        timelapse=s.params.timelapse,
        channel_names=s.params.channel_names,
        pixel_size_um=s.params.pixel_size,
        frame_interval_s=s.params.frame_interval,
        settings=step.OutputSettings.from_dict(s.params.output),  # config["output"]
        tracks=s.input.get("tracks"),  # a time-lapse's: its labels/tracks
    )


s = snakemake  # noqa: F821 (provided by Snakemake)
# by its rule as rules/*.smk names it (a module may rename it)
run_job(s, {"ngff": export_one, "spatialdata": export_one,
            "ngff_batch": export_batch, "spatialdata_batch": export_batch})
