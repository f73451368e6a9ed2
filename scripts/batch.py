"""Snakemake script of the batch rules (rules/batch.smk): plan_batches, segment_batch.

Each rule hands its files and its config sections (as typed settings) to one step of cellscale.steps.batch.
"""

from cellscale.logs import run_job
from cellscale.segment.settings import PostprocessSettings, SegmentSettings, TilingSettings
from cellscale.steps import staged_image, staged_model, staged_paths
from cellscale.steps import batch as step
from cellscale.steps.measure import MeasureSettings


def plan_batches(s):
    """Which samples share jobs."""
    where = staged_paths(s.params.image_paths, s.input.images)
    rows = s.params.rows.assign(image=lambda d: d["image"].map(lambda p: staged_image(p, where)))
    step.plan_batches(rows, s.output.plan, s.params.shard_mpx, s.params.enabled, workers=4 * s.threads)


def segment_batch(s):
    """Tile, segment, stitch and measure every image of one batch (its images staged as inputs, or downloaded by
    the job: batches.read_fields: direct)."""
    with step.job_images(s.params.image_paths, s.input.images, s.params.storage_prefix, beside=s.output.batch) as where:
        _segment_batch(s, where)


def _segment_batch(s, where):
    step.segment_batch(
        [step.Field(**{**f, "image": staged_image(f["image"], where)}) for f in s.params.fields],
        staged_model(s.input, s.params.model),
        s.output.batch,
        s.wildcards.batch,
        cells_path=s.output.cells,
        tiling=TilingSettings.from_dict(s.params.tiling),  # config["tiling"]
        segment=SegmentSettings.from_dict(s.params.segment),  # config["segment"]
        postprocess=PostprocessSettings.from_dict(s.params.postprocess),  # config["postprocess"]
        measure=MeasureSettings.from_dict(s.params.measure),  # config["measure"]
        threads=s.threads,
        label_files=s.params.label_files,  # config["batches"]["label_files"]
    )


s = snakemake  # noqa: F821 (provided by Snakemake)
# by its rule as rules/*.smk names it (a module may rename it)
run_job(s, {"plan_batches": plan_batches, "segment_batch": segment_batch})
