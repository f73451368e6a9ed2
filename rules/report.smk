# Report: QC overlay and summary a sample, lineage trees and tracks over time, one summary row a sample; what
# produced the results, per config model.


rule model_provenance:
    # NAME@VERSION (a hash of the weights) and the dataset version of a config model, once a run: the jobs that record
    # them (measure, report_sample, summary, aggregate_measurements, spatialdata_batch) take this small file as an
    # input instead of each hashing the weights (without a shared filesystem, fetching them first). A new model (its
    # spec, weights or metrics) reruns it and them. Runs on the machine that runs Snakemake (no pod is started for a
    # small JSON file; it downloads the model's files there once a run). Its benchmark file is not priced: the cost
    # table prices the cluster's jobs
    localrule: True
    input:
        unpack(provenance_model_files),
    output:
        provenance="results/models/{key}.json",
    log:
        model_provenance="logs/model_provenance/{key}.log",
    benchmark:
        "results/benchmarks/model_provenance/{key}.tsv"
    conda:
        "../envs/cellscale.yaml"
    script:
        "../scripts/report.py"


rule report_sample:
    input:
        unpack(lambda w: {"image": image_input(w), **segmentation_files(w.sample)}),
        table="results/measurements/{sample}.parquet",
        tracks=lambda w: f"results/tracks/{w.sample}.parquet" if is_timelapse(w.sample) else [],
        scale_chosen=lambda w: f"results/size/{w.sample}.json" if scale(w.sample) == AUTO else [],  # by scale auto
        provenance=lambda w: model_provenance_file(model_key(w.sample)),  # model and dataset version: summary.json
    output:
        overlay=report(
            "results/report/{sample}/overlay.png",
            caption="../workflow/report/overlay.rst",
            category="Segmentation QC",
            labels={"sample": "{sample}", "figure": "outlines"},
        ),
        summary="results/report/{sample}/summary.json",
    params:
        image=lambda w: sheet["image"][w.sample],
        compartments=lambda w: compartments(w.sample),
        timelapse=lambda w: is_timelapse(w.sample),
    log:
        report_sample="logs/report_sample/{sample}.log",
    benchmark:
        "results/benchmarks/report_sample/{sample}.tsv"
    conda:
        "../envs/cellscale.yaml"
    script:
        "../scripts/report.py"


rule lineage:
    input:
        tracks="results/tracks/{sample}.parquet",
        image=image_input,  # read: the tracking QC picture's frames (a few, strided); staged whole, as a file is
        labels="results/segmentation/{sample}/nuclear.ome.tif",  # the tracks table's labels
    output:
        plot=report(
            "results/report/{sample}/lineage.png",
            caption="../workflow/report/lineage.rst",
            category="Lineages",
            labels={"sample": "{sample}", "figure": "lineage"},
        ),
        tracking=report(
            "results/report/{sample}/tracking.png",
            caption="../workflow/report/tracking.rst",
            category="Lineages",
            labels={"sample": "{sample}", "figure": "tracks over time"},
        ),
    params:
        image=lambda w: sheet["image"][w.sample],
    log:
        lineage="logs/lineage/{sample}.log",
    benchmark:
        "results/benchmarks/lineage/{sample}.tsv"
    conda:
        "../envs/cellscale.yaml"
    script:
        "../scripts/report.py"


rule summary:
    input:
        samples=tiled_summaries,  # once the samples are tiled: params.warnings reads their plans
        batches=lambda w: [f"results/batches/{b}" for b in batches()],
        plan="results/batches/plan.tsv",
        models=lambda w: model_provenance_files(samples.index),  # per model key the sheet uses (summary.tsv)
    output:
        summary=report("results/summary.tsv", caption="../workflow/report/summary.rst", category="Summary"),
        index="results/index.tsv",
        errors=report("results/errors.tsv", caption="../workflow/report/errors.rst", category="Summary"),
        view=report("results/report/summary.html", caption="../workflow/report/summary_view.rst", category="Summary"),
    params:
        order=list(samples.index),
        images=lambda w: dict(zip(samples.index, samples["image"])),
        compartments=lambda w: {s: compartments(s) for s in samples.index},
        formats=config["output"]["formats"],  # index.tsv: where each sample's OME-Zarr and SpatialData stores are
        annotations=lambda w: sheet_annotations(),  # well, site, ...: columns after sample
        warnings=lambda w: tile_warnings(),  # what tiling warned per own-jobs sample (summary.tsv)
    log:
        summary="logs/summary.log",
    benchmark:
        "results/benchmarks/summary/run.tsv"
    conda:
        "../envs/cellscale.yaml"
    script:
        "../scripts/report.py"
