rule segment:
    input:
        unpack(model_files),
        tiles="results/tiles/{sample}/shard_{shard}.npy",
    output:
        maps="results/predictions/{sample}/shard_{shard}.npy",
    params:
        model=lambda w: model_dir(w.sample),
        segment=config["segment"],
    threads: 2
    resources:
        gpu=1,
        mem_mb=4000,
    log:
        "logs/segment/{sample}/shard_{shard}.log",
    benchmark:
        "results/benchmarks/segment/{sample}/shard_{shard}.tsv"
    conda:
        "../envs/segment.yaml"
    script:
        "../scripts/segment.py"
