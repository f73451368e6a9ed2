# Cost: what the run cost. Every job's benchmark file (declared: where there is no shared filesystem they are
# fetched from storage) is priced on the machine type the placement profile gives its rule (config cost:), per job,
# rule, pool, sample and 1,000 Mpx. Runs last, on the machine that runs Snakemake: the price table and the profile
# are files there (local()), so no pod is started for it. (localrule, not a localrules: statement, which a
# module's `use rule * from cellscale as cellscale_*` does not rename.)


rule cost:
    localrule: True
    input:
        benchmarks=lambda w: [f"results/benchmarks/{j}" for j in run_jobs()],
        plan="results/batches/plan.tsv",
        prices=lambda w: local(price_table()),
        placement=lambda w: local(placement_profile()),
    output:
        table=report("results/cost.tsv", caption="../workflow/report/cost.rst", category="Cost"),
        view=report("results/report/cost.html", caption="../workflow/report/cost_view.rst", category="Cost"),
    params:
        jobs=lambda w: run_jobs(),  # the benchmark files of input.benchmarks, relative to results/benchmarks/
        tile_plans=lambda w: tile_plans(),
        threads=lambda w: rule_threads(),
        cost=config["cost"],
        prices=lambda w: price_label(price_table()),  # for the report's caption
        # on a shared filesystem the results are here: their bytes and the run's wall time are priced too
        results_dir=lambda w: "results" if LOCAL_FILES else None,
        other_dirs=["logs"],
    log:
        cost="logs/cost.log",
    benchmark:
        "results/benchmarks/cost/run.tsv"
    conda:
        "../envs/cellscale.yaml"
    script:
        "../scripts/cost.py"
