rule aggregate_measurements:
    input:
        expand("results/measurements/{sample}.parquet", sample=samples.index),
    output:
        csv="results/cells.csv",
        parquet="results/cells.parquet",
        h5ad="results/cells.h5ad",
    params:
        samples=list(samples.index),
    resources:
        mem_mb=4000,
    log:
        "logs/aggregate/cells.log",
    benchmark:
        "results/benchmarks/aggregate_measurements/cells.tsv"
    conda:
        "../envs/cellscale.yaml"
    script:
        "../scripts/aggregate.py"
