# Segmentation: tile a sample into shards of windows (a checkpoint: its shards decide the segment jobs), run the
# model on each shard (the GPU rule), stitch the maps into 32-bit labels. Each shard is one compressed file,
# shard_NNNN.zarr.zip (a Zarr array in a zip: one object in a bucket, unlike a Zarr folder; cellscale.segment.shards).

checkpoint tile:
    input:
        unpack(model_files),
        image=image_input,
    output:
        tiles=directory("results/tiles/{sample}"),
    params:
        sample=lambda w: w.sample,
        image=lambda w: sheet["image"][w.sample],
        roles=lambda w: roles(w.sample),
        model=lambda w: model_dir(w.sample),
        timelapse=lambda w: is_timelapse(w.sample),
        tiling=config["tiling"],
        pixel_size=lambda w: pixel_size(w.sample),
        gamma=lambda w: gamma(w.sample),
        scale=lambda w: scale(w.sample),
    log:
        "logs/tile/{sample}.log",
    benchmark:
        "results/benchmarks/tile/{sample}.tsv"
    conda:
        "../envs/cellscale.yaml"
    script:
        "../scripts/segment.py"


rule segment:
    input:
        unpack(model_files),
        tiles="results/tiles/{sample}/shard_{shard}.zarr.zip",
    output:
        maps="results/predictions/{sample}/shard_{shard}.zarr.zip",
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


rule stitch:
    input:
        unpack(model_files),
        tiles="results/tiles/{sample}",
        maps=shard_predictions,
    output:
        # removed once measured (and exported) when output.formats has no ome-tiff
        labels=labels_output("results/segmentation/{sample}/{compartment}.ome.tif"),
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
        "../scripts/segment.py"
