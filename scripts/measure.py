"""Snakemake script of the measurement rules (rules/measure.smk): measure, aggregate_measurements, mcquant."""

from cellscale.logs import run_job
from cellscale.steps import job_image, read_models, with_model, with_models
from cellscale.steps import measure as step


def measure(s):
    """Per-cell table (CSV, Parquet, AnnData .h5ad) of one sample."""
    step.measure_sample(
        s.wildcards.sample,
        job_image(s.input.image, s.params.image),
        {c: s.input[c] for c in s.params.compartments},
        s.output.csv,
        s.output.parquet,
        timelapse=s.params.timelapse,
        channel_names=s.params.channel_names,
        tracks_path=s.input.tracks or None,
        settings=step.MeasureSettings.from_dict(s.params.measure),  # config["measure"]
        out_h5ad=s.output.h5ad,
        # the .h5ad file's uns['cellscale'] (model, scale...): the model's NAME@VERSION from its provenance file
        provenance=with_model(s.params.provenance, read_models([s.input.provenance])),
        image_name=s.params.image,
    )


def aggregate_measurements(s):
    """One table of every sample's cells."""
    step.aggregate_measurements(dict(zip(s.params.samples, s.input.samples)), s.output.csv, s.output.parquet,
                                s.output.h5ad, batch_tables=list(s.input.batches), order=s.params.order,
                                annotations=s.params.annotations,
                                provenance=with_models(s.params.provenance, read_models(s.input.models)))


def mcquant(s):
    """The run's cells as MCMICRO's CSVs (output.formats mcquant)."""
    step.run_mcquant(s.input.cells, s.output.tables)


s = snakemake  # noqa: F821 (provided by Snakemake)
# by its rule as rules/*.smk names it (a module may rename it)
run_job(s, {"measure": measure, "aggregate_measurements": aggregate_measurements, "mcquant": mcquant})
