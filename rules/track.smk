# Tracking (time-lapse samples): link nuclei over time into tracks and lineages.

rule track:
    input:
        labels="results/segmentation/{sample}/nuclear.ome.tif",
        image=image_input,
    output:
        ctc=directory("results/tracks/{sample}"),
        table="results/tracks/{sample}.parquet",
    params:
        image=lambda w: sheet["image"][w.sample],
        nuclear_channel=lambda w: roles(w.sample)["nuclear"],
        track=config["track"],
    resources:
        # the whole movie is held: sized from its labels' header when the job is ready (cellscale.steps.track)
        mem_mb=lambda w, input, attempt: track_memory_mb(input.labels, attempt),
    log:
        track="logs/track/{sample}.log",
    benchmark:
        "results/benchmarks/track/{sample}.tsv"
    conda:
        "../envs/cellscale.yaml"
    script:
        "../scripts/track.py"
