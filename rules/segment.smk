rule segment:
    input:
        unpack(model_files),
        tiles="results/tiles/{sample}/shard_{shard}.npy",
    output:
        maps="results/predictions/{sample}/shard_{shard}.npy",
    params:
        model=lambda w: model_dir(w.sample),
        batch_mpx=config.get("segment", {}).get("batch_mpx", 0.5),
        precision=config.get("segment", {}).get("precision", "auto"),
        augment=config.get("segment", {}).get("augment", "rot180"),
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
