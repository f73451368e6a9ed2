# Outputs the ecosystem opens directly (config output.formats): an OME-Zarr image with its labels (NGFF) and a
# SpatialData store, per sample with its own jobs (results/ngff/<sample>.ome.zarr, results/spatialdata/<sample>.zarr)
# and per batch of small images, one OME-Zarr store per field of view (results/ngff/batch_BATCH/<sample>.ome.zarr)
# and one SpatialData store a batch (results/spatialdata/batches/BATCH.zarr, a coordinate system per sample);
# results/index.tsv says where each sample's are. Images and labels are read chunk by chunk.

EXPORT_PARAMS = dict(
    image=lambda w: sheet["image"][w.sample],
    compartments=lambda w: compartments(w.sample),
    timelapse=lambda w: is_timelapse(w.sample),
    channel_names=lambda w: channel_names(w.sample),
    pixel_size=lambda w: pixel_size(w.sample),
    frame_interval=lambda w: frame_interval(w.sample),
    output=config["output"],
)

BATCH_EXPORT_INPUT = dict(
    batch="results/batches/{batch}",
    table="results/cells/batch_{batch}.parquet",
    # the checkpoint its params (the batch's fields) are read from; ancient: a new plan does not rerun every batch's
    # export by its date (the batch folder changes when its fields do)
    plan=ancient("results/batches/plan.tsv"),
    # none when the job downloads them itself (batches.read_fields: direct, with remote storage)
    images=lambda w: [] if fields_read_by_job() else existing_images(batch_members(w.batch)),
)


rule ngff:
    input:
        unpack(lambda w: {"image": image_input(w), **segmentation_files(w.sample)}),
        table="results/measurements/{sample}.parquet",
        tracks=lambda w: f"results/tracks/{w.sample}.parquet" if is_timelapse(w.sample) else [],  # labels/tracks
    output:
        store=directory("results/ngff/{sample}.ome.zarr"),
    params:
        **EXPORT_PARAMS,
        format="ome-zarr",
    resources:
        mem_mb=4000,
    log:
        ngff="logs/ngff/{sample}.log",
    benchmark:
        "results/benchmarks/ngff/{sample}.tsv"
    conda:
        "../envs/cellscale.yaml"
    script:
        "../scripts/export.py"


use rule ngff as spatialdata with:
    input:
        unpack(lambda w: {"image": image_input(w), **segmentation_files(w.sample)}),
        table="results/measurements/{sample}.h5ad",
    output:
        store=directory("results/spatialdata/{sample}.zarr"),
    params:
        **EXPORT_PARAMS,
        format="spatialdata",
    log:
        spatialdata="logs/spatialdata/{sample}.log",
    benchmark:
        "results/benchmarks/spatialdata/{sample}.tsv"


rule ngff_batch:
    input:
        **BATCH_EXPORT_INPUT,
    output:
        stores=directory("results/ngff/batch_{batch}"),
    params:
        fields=batch_fields,
        image_paths=lambda w: existing_images(batch_members(w.batch)),  # the sheet's paths of input.images
        output=config["output"],
        format="ome-zarr",
        storage_prefix=lambda w: storage_prefix(),  # None unless the job reads its images itself
    # a finished batch's exports go before the batches that wait: they do not pile up in Snakemake's jobs, and the
    # plan's export pool keeps up with the segment pool (docs/cost.md, "Rounds multiply while jobs wait")
    priority: 1
    resources:
        mem_mb=4000,
    log:
        ngff_batch="logs/ngff_batch/{batch}.log",
    benchmark:
        "results/benchmarks/ngff_batch/{batch}.tsv"
    conda:
        "../envs/cellscale.yaml"
    script:
        "../scripts/export.py"


use rule ngff_batch as spatialdata_batch with:
    input:
        **BATCH_EXPORT_INPUT,
        # what made the batch's cells (its model's NAME@VERSION and dataset version): the table's uns['cellscale']
        provenance=lambda w: model_provenance_file(model_key(batch_members(w.batch)[0])),  # one model a batch
    output:
        # one store for the batch, each field in a coordinate system named after its sample (per-field stores
        # cost about 0.5 s a field of view, mostly the table's zarr arrays; docs/benchmarks.md)
        stores=directory("results/spatialdata/batches/{batch}.zarr"),
    params:
        fields=batch_fields,
        image_paths=lambda w: existing_images(batch_members(w.batch)),
        output=config["output"],
        format="spatialdata",
        storage_prefix=lambda w: storage_prefix(),
        # per sample of the batch (its own only: another batch's change reruns none here), what made its cells: the
        # store's table's uns['cellscale']['samples'], as cells.h5ad's
        provenance=lambda w: run_provenance(batch_members(w.batch)),
    log:
        spatialdata_batch="logs/spatialdata_batch/{batch}.log",
    benchmark:
        "results/benchmarks/spatialdata_batch/{batch}.tsv"
