# Measurement: one per-cell table a sample, then one for the run.

rule measure:
    input:
        unpack(lambda w: {"image": image_input(w), **segmentation_files(w.sample)}),
        tracks=lambda w: f"results/tracks/{w.sample}.parquet" if is_timelapse(w.sample) else [],
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
    resources:
        mem_mb=4000,
    log:
        "logs/measure/{sample}.log",
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
    output:
        csv="results/cells.csv",
        parquet="results/cells.parquet",
        h5ad="results/cells.h5ad",
    params:
        samples=lambda w: own_samples(),
        order=list(samples.index),
        annotations=lambda w: sheet_annotations(),  # well, site, ...: columns after sample
    resources:
        mem_mb=4000,
    log:
        "logs/aggregate_measurements/cells.log",
    benchmark:
        "results/benchmarks/aggregate_measurements/cells.tsv"
    conda:
        "../envs/cellscale.yaml"
    script:
        "../scripts/measure.py"
