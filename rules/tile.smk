checkpoint tile:
    input:
        unpack(model_files),
        image=image_input,
    output:
        tiles=directory("results/tiles/{sample}"),
    params:
        sample=lambda w: w.sample,
        image=lambda w: samples.loc[w.sample, "image"],
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
        "../scripts/tile.py"
