"""Snakemake script of the report rules (rules/report.smk): report_sample, lineage, summary."""

import os

import pandas as pd

from cellscale.logs import run_job
from cellscale.report import lineage_plot
from cellscale.steps import report as step
from cellscale.steps import job_image, read_model, read_models, staged_image, staged_paths


def report_sample(s):
    """QC overlay and summary of one sample."""
    step.report_sample(
        s.wildcards.sample,
        job_image(s.input.image, s.params.image),
        {c: s.input[c] for c in s.params.compartments},
        s.input.table,
        os.path.dirname(s.output.overlay),
        timelapse=s.params.timelapse,
        tracks_path=s.input.tracks or None,
        provenance=read_model(s.input.provenance),  # its model's NAME@VERSION and dataset version
        size_path=s.input.scale_chosen or None,
    )


def lineage(s):
    """The lineage tree of a time-lapse sample, and its tracks in a few frames."""
    tracks = pd.read_parquet(s.input.tracks)
    lineage_plot(s.output.plot, tracks, f"{s.wildcards.sample}: lineage")
    step.tracking_qc(s.wildcards.sample, job_image(s.input.image, s.params.image), s.input.labels, tracks,
                     s.output.tracking)


def summary(s):
    """One row per sample, where its results are, which images failed."""
    step.run_summary(list(s.input.samples), s.output.summary, batch_dirs=list(s.input.batches), order=s.params.order,
                     out_index=s.output.index, out_errors=s.output.errors, images=s.params.images,
                     compartments=s.params.compartments, provenance=read_models(s.input.models),
                     formats=tuple(s.params.formats), out_html=s.output.view,
                     annotations=s.params.annotations, warnings=s.params.warnings)


def model_provenance(s):
    """What produced the results of one config model (NAME@VERSION, dataset version), for the jobs that record it."""
    step.write_model_provenance(s.input.get("spec"), s.output.provenance)


def report_fields(s):
    """Outlines on some batched images, distributions over all of them."""
    where = staged_paths(s.params.image_paths, s.input.images)
    step.report_fields(list(s.input.fields), {k: staged_image(p, where) for k, p in s.params.candidates.items()},
                       s.output.overlays, s.output.distributions, s.params.qc_overlays)


s = snakemake  # noqa: F821 (provided by Snakemake)
# by its rule as rules/*.smk names it (a module may rename it)
run_job(s, {"report_sample": report_sample, "lineage": lineage, "summary": summary, "report_fields": report_fields,
           "model_provenance": model_provenance})
