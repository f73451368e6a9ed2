# Segmentation: tile a sample into shards of windows (a checkpoint: its shards decide the segment jobs), run the
# model on each shard (the GPU rule), stitch the maps into 32-bit labels. Each shard is one compressed file,
# shard_NNNN.zarr.zip (a Zarr array in a zip: one object in a bucket, unlike a Zarr folder; cellscale.segment.shards).

rule object_size:
    # scale: auto (a sample sheet's column): the model segments central crops of the image at a few scales and the
    # objects' median diameter sets the scale the tile job resamples by (cellscale.segment.size). It runs the
    # network (the segment environment) on about 1-2 Mpx: seconds with the 8-bit copy on CPU cores, so it needs no
    # GPU node.
    input:
        unpack(model_files),
        image=image_input,
    output:
        estimate="results/size/{sample}.json",
    params:
        sample=lambda w: w.sample,
        image=lambda w: sheet["image"][w.sample],
        roles=lambda w: roles(w.sample),
        model=lambda w: model_dir(w.sample),
        timelapse=lambda w: is_timelapse(w.sample),
        gamma=lambda w: gamma(w.sample),
        tiling=config["tiling"],
        segment=config["segment"],
        postprocess=config["postprocess"],
    threads: 2
    resources:
        mem_mb=3000,
    log:
        object_size="logs/object_size/{sample}.log",
    benchmark:
        "results/benchmarks/object_size/{sample}.tsv"
    conda:
        "../envs/segment.yaml"
    script:
        "../scripts/segment.py"


checkpoint tile:
    input:
        unpack(model_files),
        image=image_input,
        estimate=lambda w: f"results/size/{w.sample}.json" if scale(w.sample) == AUTO else [],
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
        frame_interval=lambda w: frame_interval(w.sample),
        gamma=lambda w: gamma(w.sample),
        scale=lambda w: scale(w.sample),
    log:
        tile="logs/tile/{sample}.log",
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
        # the sample's tile job (its benchmark file, written when it ended; a shard inside its folder names no job):
        # a job that reruns for its own reasons (its model, config segment) waits for a tile job that reruns too, not
        # predicting the old shard before the tile job rewrites it (the next run then redid both)
        tile_job="results/benchmarks/tile/{sample}.tsv",
    output:
        maps="results/predictions/{sample}/shard_{shard}.zarr.zip",
    params:
        model=lambda w: model_dir(w.sample),
        segment=config["segment"],
    threads: 2
    resources:
        # no gpu here: a profile that places the rule on a GPU asks for one (profiles/gke, profiles/slurm); a rule's
        # own gpu=1 would stay in a plan's CPU placement, and the Kubernetes plugin then refuses the job
        mem_mb=4000,
    log:
        segment="logs/segment/{sample}/shard_{shard}.log",
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
        frame_interval=lambda w: frame_interval(w.sample),
    threads: 2
    resources:
        mem_mb=4000,
    log:
        stitch="logs/stitch/{sample}/{compartment}.log",
    benchmark:
        "results/benchmarks/stitch/{sample}/{compartment}.tsv"
    conda:
        "../envs/cellscale.yaml"
    script:
        "../scripts/segment.py"
