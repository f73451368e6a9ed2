rule stitch:
    input:
        unpack(model_files),
        tiles="results/tiles/{sample}",
        maps=shard_predictions,
    output:
        labels="results/segmentation/{sample}/{compartment}.ome.tif",
    params:
        model=lambda w: model_dir(w.sample),
        postprocess=config["postprocess"],
        pixel_size=lambda w: pixel_size(w.sample),
    threads: 2
    resources:
        mem_mb=4000,
    log:
        "logs/stitch/{sample}/{compartment}.log",
    benchmark:
        "results/benchmarks/stitch/{sample}/{compartment}.tsv"
    conda:
        "../envs/cellscale.yaml"
    script:
        "../scripts/stitch.py"
