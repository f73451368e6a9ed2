# Batches: many small images in few jobs. The plan_batches checkpoint takes the images' sizes from the sheet or
# their headers and packs still images of at most tiling.shard_mpx into batches of about shard_mpx megapixels (one
# model per batch); one segment_batch job tiles, segments, stitches and measures a whole batch. Larger images and
# time-lapse movies keep their own jobs (rules/segment.smk). So a run has about total Mpx / shard_mpx jobs, however
# many images it has.

checkpoint plan_batches:
    input:
        sheet=local(config["samples"]),  # on this machine, also when the data are in remote storage
        # read for their headers (sizes) where the sheet gives none (cellscale samples --sizes writes them); on a
        # cluster without a shared disk this job downloads those once
        images=lambda w: batch_candidates_images(),
    output:
        plan="results/batches/plan.tsv",
    params:
        rows=lambda w: samples[["sample", "image", "kind", "scale", "height", "width"]].assign(
            model=[model_key(s) for s in samples.index]),
        shard_mpx=config["tiling"]["shard_mpx"],
        enabled=config["batches"]["enabled"],
        image_paths=lambda w: batch_candidates_images(),  # the sheet's paths of input.images, in their order
    threads: 2
    resources:
        mem_mb=2000,
    log:
        plan_batches="logs/plan_batches.log",
    benchmark:
        "results/benchmarks/plan_batches/run.tsv"
    conda:
        "../envs/cellscale.yaml"
    script:
        "../scripts/batch.py"


rule segment_batch:
    input:
        unpack(batch_model_files),
        # the checkpoint its params (the batch's members) are read from, which a job without a shared filesystem must
        # have as an input; ancient: a new plan (a row added to the sheet, a field fixed) does not rerun every batch by
        # its date, a batch reruns when its members (params) or their files change
        plan=ancient("results/batches/plan.tsv"),
        # none when the job downloads them itself (batches.read_fields: direct, with remote storage)
        images=lambda w: [] if fields_read_by_job() else existing_images(batch_members(w.batch)),
    output:
        batch=directory("results/batches/{batch}"),
        cells="results/cells/batch_{batch}.parquet",
    params:
        fields=batch_fields,
        image_paths=lambda w: existing_images(batch_members(w.batch)),  # the sheet's paths of input.images
        model=lambda w: config["models"][model_key(batch_members(w.batch)[0])],
        tiling=config["tiling"],
        segment=config["segment"],
        postprocess=config["postprocess"],
        measure=config["measure"],
        label_files=config["batches"]["label_files"],
        storage_prefix=lambda w: storage_prefix(),  # None unless the job reads its images itself
    threads: batch_threads  # 1 or 2: the batches side by side on this machine's cores (rules/common.smk)
    resources:
        # no gpu here: a profile that places the rule on a GPU asks for one (profiles/gke, profiles/slurm); a rule's
        # own gpu=1 would stay in a plan's CPU placement, and the Kubernetes plugin then refuses the job. A batch holds
        # up to 2 x tiling.shard_mpx (cut by content): 4000 MB holds the default's 32 Mpx (the GPU model's 1,500 MB +
        # 40 MB/Mpx: 2,780); the schema sets no largest shard, so a larger one needs a profile's or a plan's mem_mb
        mem_mb=4000,
    log:
        segment_batch="logs/segment_batch/{batch}.log",
    benchmark:
        "results/benchmarks/segment_batch/{batch}.tsv"
    conda:
        "../envs/segment.yaml"
    script:
        "../scripts/batch.py"


rule report_fields:
    input:
        fields=lambda w: [f"results/batches/{b}" for b in batches()],
        images=lambda w: existing_images(qc_candidates()),
    output:
        overlays=report(
            "results/report/fields/overlays.png",
            caption="../workflow/report/fields.rst",
            category="Segmentation QC",
            labels={"sample": "batched images", "figure": "outlines"},
        ),
        distributions=report(
            "results/report/fields/distributions.png",
            caption="../workflow/report/distributions.rst",
            category="Summary",
            labels={"figure": "distributions over all images"},
        ),
    params:
        candidates=lambda w: {s: sheet["image"][s] for s in qc_candidates()},
        image_paths=lambda w: existing_images(qc_candidates()),  # the sheet's paths of input.images
        qc_overlays=config["batches"]["qc_overlays"],
    log:
        report_fields="logs/report_fields.log",
    benchmark:
        "results/benchmarks/report_fields/run.tsv"
    conda:
        "../envs/cellscale.yaml"
    script:
        "../scripts/report.py"
