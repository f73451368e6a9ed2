# Measurement: one per-cell table a sample, then one for the run.

rule measure:
    input:
        unpack(lambda w: {"image": image_input(w), **segmentation_files(w.sample)}),
        tracks=lambda w: f"results/tracks/{w.sample}.parquet" if is_timelapse(w.sample) else [],
        provenance=lambda w: model_provenance_file(model_key(w.sample)),  # its model's NAME@VERSION, dataset
    output:
        csv="results/measurements/{sample}.csv",
        parquet="results/measurements/{sample}.parquet",
        h5ad="results/measurements/{sample}.h5ad",
    params:
        image=lambda w: sheet["image"][w.sample],
        compartments=lambda w: compartments(w.sample),
        timelapse=lambda w: is_timelapse(w.sample),
        channel_names=lambda w: channel_names(w.sample),
        measure=config["measure"],
        provenance=lambda w: segment_provenance(w.sample),  # model key, scale...: the .h5ad file's uns['cellscale']
    resources:
        mem_mb=4000,
    log:
        measure="logs/measure/{sample}.log",
    benchmark:
        "results/benchmarks/measure/{sample}.tsv"
    conda:
        "../envs/cellscale.yaml"
    script:
        "../scripts/measure.py"


rule aggregate_measurements:
    input:
        samples=lambda w: [f"results/measurements/{s}.parquet" for s in own_samples()],
        batches=lambda w: [f"results/cells/batch_{b}.parquet" for b in batches()],
        models=lambda w: model_provenance_files(samples.index),  # per model key the sheet uses: NAME@VERSION...
    output:
        csv="results/cells.csv",
        parquet="results/cells.parquet",
        h5ad="results/cells.h5ad",
    params:
        samples=lambda w: own_samples(),
        order=list(samples.index),
        annotations=lambda w: sheet_annotations(),  # well, site, ...: columns after sample
        provenance=lambda w: run_provenance(),  # per sample: cells.h5ad's uns['cellscale']['samples']
    resources:
        mem_mb=4000,
    log:
        aggregate_measurements="logs/aggregate_measurements/cells.log",
    benchmark:
        "results/benchmarks/aggregate_measurements/cells.tsv"
    conda:
        "../envs/cellscale.yaml"
    script:
        "../scripts/measure.py"


rule mcquant:
    # output.formats mcquant: every still image's cells as MCMICRO's CSVs, results/mcquant/SAMPLE_COMPARTMENT.csv
    # (SCIMAP, cylinter). One folder, as every folder output here: its files are known only once the run's images
    # are measured (a failed image has none); with remote storage it is uploaded file by file (an object each)
    input:
        cells="results/cells.parquet",
    output:
        tables=directory("results/mcquant"),
    resources:
        mem_mb=2000,
    log:
        mcquant="logs/mcquant/run.log",
    benchmark:
        "results/benchmarks/mcquant/run.tsv"
    conda:
        "../envs/cellscale.yaml"
    script:
        "../scripts/measure.py"
