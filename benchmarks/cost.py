"""Cost benchmark: the DeepCell Kiosk's workload planned and simulated, the planner against the simulation, and the
planner's answer time.

Usage:
    python benchmarks/cost.py                          # everything (about 25 min on 2 cores, one of them used)
    python benchmarks/cost.py --quick                  # CI: the Kiosk's headline plans, small grids (about 20 s)
    python benchmarks/cost.py --figure docs/img/kiosk-timeline.png --json results/cost-benchmark.json   # 2 PNGs
    python benchmarks/cost.py --measure 200 --measure-only --augment none rot180   # segment.augment's speed ratio
    python benchmarks/cost.py --batch-memory 8 32 64 128 --measure-only   # segment_batch's memory against its batch
    python benchmarks/cost.py --batch-memory 8 32 64 --field-dtype uint16 --measure-only   # the same, 16-bit fields

Sections:
- kiosk: 10^6 one-Mpx images on GKE (gke-us-central1 prices, 5%/node-hour spot preemption, image sizes in the
  sheet), deadline 6 h: the whole workflow (the run-level tables included; they stream, so their memory stays
  bounded) with the shipped output.formats (the fields staged, then read by the jobs: batches.read_fields: direct)
  and with OME-TIFF labels alone, then segmentation (OME-TIFF labels)
  without the tables, as the Kiosk's figures count it: (a) the segment pool forced to spot L4
  (g2-standard-4), as the issue asks, and (b) the planner's own choice over every machine type with a profile,
  (c) the same with the labels written as one multi-series OME-TIFF per batch (batches.label_files: per_batch),
  (d) that with one network pass instead of rot180's two (segment.augment: none; F1 0.915 -> 0.911 and AP 0.656 ->
  0.644 on DSB2018's held-out fluorescence images, docs/benchmarks.md), (e) (c) and (d) with the fields read by
  the jobs, and (c) so on spot L4 (forced); --quick: those of (e) with two passes;
  each planned, then simulated (3 seeds; 10 for the whole workflow, whose rare tail restarts make 3 noise), next to
  the Kiosk paper's 5.5 h and $250
  (config/prices/kiosk-2021.yaml). Every throughput figure used is printed with its origin (measured / assumed).
- agreement: planner (cellscale.cost.model.predict) against the SimPy simulation on the grid 10^4, 10^5, 10^6
  one-Mpx images x 1, 4, 8 spot L4 GPUs (g2-standard-4, 16 Mpx shards; the shipped output.formats' export jobs on
  a spot e2-standard-4 pool of the nodes that keep up: model.export_nodes) and 8 or 64 spot n1-standard-8 nodes
  running everything (no GPU) x preemption 0, 5, 20 %/node-hour; the run-level tables left out, so that no constant
  tail flatters the errors; 5 seeds averaged where preemption makes runs random (one without: the simulation
  draws only preemptions). The launcher's requests take no time here (a constant in both would flatter the errors).
  Goal: within 10%.
- agreement with the launcher's scheduling rounds: the same grid with every Cloud Storage request taking its time
  (Overheads()), so the jobs beyond Snakemake's `jobs` wait through rounds, fields read by the jobs (10^4-10^6) and
  staged (10^4: every round asks about every waiting field); 3 seeds; the rounds' requests side by side.
- chosen: the plans `cellscale plan` itself chooses, against the simulation of each (3 seeds, 5%/node-hour, the
  launcher's requests taking their time), on two grids of requests (CHOSEN_GRIDS). The development grid: 500,
  5,000 and 50,000 one-Mpx fields, 2,000 of 4 Mpx, 300 of 16 Mpx and 100 of 64 Mpx; fields staged and read
  directly; OME-TIFF labels alone and the shipped formats; deadlines 0.5, 1 and 4 h, budgets $1, $5 and $50;
  every machine type, or the segment pool forced to L4 (g2-standard-8), T4 or A100. The held-out grid, which no
  change was developed on: 1,000, 20,000 and 200,000 one-Mpx fields, 800 of 8 Mpx, 150 of 32 Mpx; OME-TIFF alone
  or with OME-Zarr; deadlines 0.75, 2 and 8 h, budgets $2, $10 and $100; any machine, or L4 (g2-standard-4), T4
  or H100. Prints the errors' spread, the plans beyond 10%, how many prediction-only plans miss their limit when
  simulated, and how many of those the check by simulation (plan(simulate_seeds=3)) mends. --quick: 500 and 5,000
  fields, OME-TIFF labels alone, every machine type or L4.
- measure (only with --measure N): the workflow on N fields of 1024 x 1024 px on this machine, the benchmark
  files of its rules (the source of config/throughput's CPU figures: N = 200) and the files its batch outputs
  hold per field (cellscale.cost.model.EXPORTS).
- batch memory (only with --batch-memory N...): peak RSS of one segment_batch job of N fields of 1024 x 1024 px
  for each N, a process each (segment.precision float32 and augment rot180 by default: the GPU profiles'), and a
  line through them (the host memory of config/throughput's GPU segment_batch: 8 32 64 128). --field-dtype: the
  fields' pixel type (default the crops', 8-bit; uint16 scales them by 257): a job holds its batch's fields
  decoded, so the line's slope is their bytes per Mpx.
- speed: seconds `plan()` takes for 10^6 images (all machine types, deadline 6 h, without the run-level tables),
  and the whole `cellscale plan --json` command. Goal: < 10 s.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from cellscale.cost.model import (EXPORTS, TAIL_LAST, TAIL_PARALLEL, Choice, Overheads, PoolChoice,  # noqa: E402
                                  Workload, export_nodes, predict, segment_rate)
from cellscale.cost.plan import Infeasible, describe, load_profiles, plan  # noqa: E402
from cellscale.cost.prices import load_prices  # noqa: E402
from cellscale.cost.jobs import job_table  # noqa: E402
from cellscale.cost.runcost import export_files, run_files  # noqa: E402
from cellscale.cost.simulate import figure, simulate_mean  # noqa: E402

PREEMPTION = 0.05


# the launcher's Cloud Storage requests about every field (one after another, Overheads.storage_call_s) left out of
# the time (still priced): for the agreement grid (an additive constant in both would flatter the errors), the
# planner's speed, and the Kiosk rows beside the infeasible ones
NO_LAUNCHER = Overheads(storage_call_s=0.0)


def label_figures(choice: Choice, profiles, w: Workload) -> list[str]:
    """The figures the plan used: the segment pool's segment_batch (for the workload's segment.augment), the CPU
    pool's plan_batches, the exports of its formats and the tail."""
    lines = []
    unused = {x.rule for x in EXPORTS.values()} - {x.rule for x in w.exports}
    if not w.run_tables:
        unused |= {*TAIL_PARALLEL, TAIL_LAST}
    for pc in choice.pools:
        for rule, r in profiles[pc.machine].rules.items():
            if rule == "segment_batch" and pc != choice.segment:
                continue
            if rule != "segment_batch" and pc != choice.tail or rule in unused:
                continue
            if rule == "segment_batch":
                r = segment_rate(profiles[pc.machine], w, Overheads())
            lines.append(f"  [{r.origin}] {pc.machine} {rule}: fixed {r.fixed_s:g} s + {r.s_per_mpx:g} s/Mpx "
                         f"(per {r.per}); {r.how}")
    return lines


def section_kiosk(args, prices, profiles, kiosk) -> dict:
    ref = kiosk.extra["reference"]
    out = {}
    whole = Workload(int(ref["images"]), float(ref["mpx_per_image"]))   # the shipped output.formats
    labels = replace(whole, formats=("ome-tiff",))
    segmentation = replace(labels, run_tables=False)   # what the Kiosk's figures cover: segmentation (and our
    cases = (                                          # per-image measurement), without the run-level tables
        (f"whole workflow, shipped output.formats ({', '.join(whole.formats)}), planner's choice", whole, None),
        ("whole workflow, shipped output.formats, fields read by the jobs (batches.read_fields: direct), "
         "planner's choice", replace(whole, read_fields="direct"), None),
        ("whole workflow, output.formats [ome-tiff], planner's choice", labels, None),
        ("segmentation alone (OME-TIFF labels), spot L4 (forced)", segmentation, ["g2-standard-4"]),
        ("segmentation alone (OME-TIFF labels), planner's choice", segmentation, None),
        ("segmentation alone, labels per batch (batches.label_files: per_batch), planner's choice",
         replace(segmentation, label_files="per_batch"), None),
        ("segmentation alone, labels per batch, one network pass (segment.augment: none), planner's choice",
         replace(segmentation, label_files="per_batch", augment="none"), None),
        ("segmentation alone, labels per batch, fields read by the jobs (batches.read_fields: direct), planner's "
         "choice", replace(segmentation, label_files="per_batch", read_fields="direct"), None),
        ("the same with one network pass (segment.augment: none), planner's choice",
         replace(segmentation, label_files="per_batch", read_fields="direct", augment="none"), None),
        ("the same on spot L4 (forced), two passes",
         replace(segmentation, label_files="per_batch", read_fields="direct"), ["g2-standard-4"]),
    )
    # --figure draws the headline run (the planner's choice) and the same on spot L4, one PNG each
    drawn = {cases[-3][0]: "planned", cases[-1][0]: "spot-l4"}
    if args.quick:   # CI: the headline rows (each plan of 10^6 images takes seconds, an infeasible one twice that)
        cases = [c for c in cases if c[1].read_fields == "direct" and not c[1].run_tables and c[1].augment != "none"]
    for label, w, seg in cases:
        try:
            p = plan(w, profiles, prices, deadline_h=args.deadline, max_nodes=args.max_nodes,
                     preemption=PREEMPTION, spot_options=(True,), segment_machines=seg)
        except Infeasible as err:
            print(f"\n## Kiosk workload, {label}: infeasible: {err}")
            out[label] = {"infeasible": str(err)}
            # what the pools would do if the launcher did not ask Cloud Storage about every field one request after
            # another (its requests still priced): the run's own figures, with that bound named above
            label += " -- WITHOUT the launcher's sequential requests"
            try:
                p = plan(w, profiles, prices, deadline_h=args.deadline, max_nodes=args.max_nodes,
                         preemption=PREEMPTION, spot_options=(True,), segment_machines=seg, o=NO_LAUNCHER)
            except Infeasible as err2:
                print(f"\n## Kiosk workload, {label}: infeasible: {err2}")
                continue
        # a run with the run-level tables: a preempted tail restarts (rare, +1 h), so 3 seeds are noise: 10
        n_seeds = args.seeds if args.quick or not w.run_tables else max(args.seeds, 10)
        o = NO_LAUNCHER if "WITHOUT" in label else Overheads()
        h, cost, runs = simulate_mean(w, p.choice, profiles, prices, o=o, preemption=PREEMPTION,
                                      seeds=tuple(range(n_seeds)))
        per_k = cost / w.total_mpx * 1000
        print(f"\n## Kiosk workload, {label}: 10^6 x 1 Mpx, deadline {args.deadline:g} h, "
              f"{PREEMPTION:.0%}/node-hour preemption, image sizes in the sample sheet")
        print(describe(p))
        print(f"simulated ({len(runs)} seeds): {h:.2f} h, ${cost:.2f} all-in, ${per_k:.4f} per 1,000 Mpx; "
              f"preemptions {sum(r.preemptions for r in runs) / len(runs):.1f}, failed jobs "
              f"{sum(r.failed_jobs for r in runs)}")
        print(f"Kiosk (Bannon et al. 2021): {ref['hours']} h, ${ref['cost_usd']}, ${ref['per_1000_mpx_usd']} per 1,000 "
              f"Mpx -> this plan is {ref['cost_usd'] / cost:.1f}x cheaper (aim >= 25x, <= $0.01 per 1,000 Mpx: "
              f"{'met' if per_k <= 0.01 and ref['cost_usd'] / cost >= 25 else 'not met'}), "
              f"{ref['hours'] / h:.2f}x the speed")
        print("throughput figures used:")
        print("\n".join(label_figures(p.choice, profiles, w)))
        out[label] = {"plan": p.to_json(), "sim_hours": h, "sim_cost_usd": cost, "sim_per_1000_mpx_usd": per_k,
                      "kiosk_ratio": ref["cost_usd"] / cost}
        if args.figure and label in drawn:
            mean_preemptions = sum(r.preemptions for r in runs) / len(runs)   # draw the seed nearest the mean
            res = min(runs, key=lambda r: (abs(r.preemptions - mean_preemptions), abs(r.hours - h)))
            path = args.figure.with_name(f"{args.figure.stem}-{drawn[label]}{args.figure.suffix}")
            pools = ", ".join(f"{pc.nodes} {'spot ' if pc.spot else ''}{pc.machine}" for pc in p.choice.pools)
            figure(res, path, f"10^6 x 1 Mpx, segmentation, labels per batch, fields read by the jobs\n{pools}: "
                              f"{res.hours:.2f} h, ${res.cost_usd:.2f}, {res.preemptions} preemptions (simulated, "
                              f"{PREEMPTION:.0%}/node-hour)")
            print(f"figure: {path}")
    return out


def section_agreement(args, prices, profiles) -> dict:
    sizes = (10**4,) if args.quick else (10**4, 10**5, 10**6)
    seeds = tuple(range(3 if args.quick else 5))
    print(f"\n## Agreement: planner vs simulation (spot L4 g2-standard-4 with the exports of the shipped "
          f"output.formats on a spot e2-standard-4 pool of the nodes that keep up, and a spot n1-standard-8 pool "
          f"running both; 16 Mpx shards; {len(seeds)} seeds where preemption > 0; the launcher's requests take no "
          f"time)")
    return _grid(args, prices, profiles, sizes, seeds, NO_LAUNCHER, "staged")


def section_rounds(args, prices, profiles) -> dict:
    """The same grid with the launcher's requests taking their time (``Overheads()``): Snakemake's scheduling
    rounds pace the jobs that wait for a slot. Fields read by the jobs at every size; staged (each round asks about
    every waiting field) at 10^4 fields only: staged, 10^5 fields on one L4 take about 5,500 h."""
    seeds = tuple(range(3))
    out = {}
    for read_fields, sizes in (("direct", (10**4,) if args.quick else (10**4, 10**5, 10**6)), ("staged", (10**4,))):
        print(f"\n## Agreement with the launcher's scheduling rounds (batches.read_fields: {read_fields}; the grid "
              f"above, {len(seeds)} seeds where preemption > 0; requests: planner / simulation)")
        out[read_fields] = _grid(args, prices, profiles, sizes, seeds, Overheads(), read_fields)
    return out


def _grid(args, prices, profiles, sizes, seeds, o: Overheads, read_fields: str) -> dict:
    gpus = (1, 4) if args.quick else (1, 4, 8)
    cpus = (8,) if args.quick else (8, 64)
    rates = (0.0, 0.2) if args.quick else (0.0, 0.05, 0.2)
    rounds = o.storage_call_s > 0
    print("| images | pools | preemption/h | planner h | sim h | planner $ | sim $ | err time | err cost |"
          + (" rounds' requests |" if rounds else ""))
    print("|---|---|---|---|---|---|---|---|---|" + ("---|" if rounds else ""))
    rows, worst = [], [0.0, 0.0]
    for n in sizes:
        w = Workload(n, 1.0, run_tables=False, read_fields=read_fields)   # no constant tail to flatter the errors
        for g in (*gpus, *(-c for c in cpus)):   # a negative count: that many CPU nodes, no GPU
            if g > 0:
                choice = Choice(PoolChoice("gpu", "g2-standard-4", g, True),
                                PoolChoice("spot-cpu", "e2-standard-4", 1, True), 16.0)
                choice = replace(choice, tail=replace(choice.tail, nodes=export_nodes(w, choice, profiles, prices)))
                pools = f"{g} GPU + {choice.tail.nodes} CPU"
            else:
                cpu = PoolChoice("spot-cpu", "n1-standard-8", -g, True)
                choice, pools = Choice(cpu, cpu, 16.0), f"{-g} CPU"
            for rate in rates:
                p = predict(w, choice, profiles, prices, o, rate)
                h, cost, runs = simulate_mean(w, choice, profiles, prices, o, rate, seeds if rate else seeds[:1])
                et, ec = abs(p.hours - h) / h, abs(p.cost_usd - cost) / cost
                worst = [max(worst[0], et), max(worst[1], ec)]
                sim_requests = sum(r.round_requests for r in runs) / len(runs)
                requests = f" {p.round_requests:,.0f} / {sim_requests:,.0f} |" if rounds else ""
                print(f"| {n} | {pools} | {rate:.0%} | {p.hours:.3f} | {h:.3f} | {p.cost_usd:.2f} | {cost:.2f} | "
                      f"{et:.1%} | {ec:.1%} |{requests}")
                rows.append(dict(images=n, pools=pools, preemption=rate, plan_h=p.hours, sim_h=h,
                                 plan_usd=p.cost_usd, sim_usd=cost, plan_round_requests=p.round_requests,
                                 sim_round_requests=sim_requests))
    print(f"max relative error: time {worst[0]:.2%}, cost {worst[1]:.2%} (goal <= 10%: "
          f"{'met' if max(worst) <= 0.10 else 'NOT met'})")
    return {"rows": rows, "max_err_time": worst[0], "max_err_cost": worst[1]}


#: the requests of the "chosen" section: (workloads, format sets, limits, forced segment machines). "development":
#: the grid session 35 found the held-nodes error on and checked the fix with; "held out": other workloads, limits
#: and machines, run only to report
SHIPPED_FORMATS = ("ome-tiff", "ome-zarr", "spatialdata")
DEVELOPMENT_LOADS = ((500, 1.0), (5000, 1.0), (50000, 1.0), (2000, 4.0), (300, 16.0), (100, 64.0))
DEVELOPMENT_LIMITS = (("deadline", 0.5), ("deadline", 1.0), ("deadline", 4.0), ("budget", 1.0), ("budget", 5.0),
                      ("budget", 50.0))
CHOSEN_GRIDS = {
    "development": (DEVELOPMENT_LOADS, (("ome-tiff",), SHIPPED_FORMATS), DEVELOPMENT_LIMITS,
                    (None, "g2-standard-8", "n1-standard-4-t4", "a2-highgpu-1g")),
    "held out": (((1000, 1.0), (20000, 1.0), (200000, 1.0), (800, 8.0), (150, 32.0)),
                 (("ome-tiff",), ("ome-tiff", "ome-zarr")),
                 (("deadline", 0.75), ("deadline", 2.0), ("deadline", 8.0), ("budget", 2.0), ("budget", 10.0),
                  ("budget", 100.0)),
                 (None, "g2-standard-4", "n1-standard-4-t4", "a3-highgpu-1g")),
    "quick": (DEVELOPMENT_LOADS[:2], (("ome-tiff",),), DEVELOPMENT_LIMITS, (None, "g2-standard-8")),
}


def section_chosen(args, prices, profiles) -> dict:
    """The planner's own choices simulated: where the model is off, it is off on the plans users get."""
    names = ("quick",) if args.quick else ("development", "held out")
    return {name: _chosen(name, prices, profiles) for name in names}


def _chosen(name: str, prices, profiles) -> dict:
    seeds = (0, 1, 2)
    loads, formats, limits, forced = CHOSEN_GRIDS[name]
    print(f"\n## Agreement on the plans the planner chooses, {name} grid ({len(loads)} workloads x fields staged "
          f"and direct x {len(formats)} format sets x deadlines "
          f"{', '.join(f'{x:g}' for k, x in limits if k == 'deadline')} h and budgets "
          f"{', '.join(f'${x:g}' for k, x in limits if k == 'budget')} x "
          f"{' / '.join(f or 'any machine' for f in forced)}; {PREEMPTION:.0%}/node-hour, {len(seeds)} seeds; the "
          f"launcher's requests take their time)")
    rows = []
    for (n, mpx), read_fields, fmt, (kind, limit), machine in itertools.product(
            loads, ("staged", "direct"), formats, limits, forced):
        w = Workload(n, mpx, read_fields=read_fields, formats=fmt)
        ask = dict(deadline_h=limit) if kind == "deadline" else dict(budget_usd=limit)
        machines = [machine] if machine else None
        try:
            p = plan(w, profiles, prices, preemption=PREEMPTION, segment_machines=machines, **ask)
        except Infeasible:
            continue
        h, cost, _ = simulate_mean(w, p.choice, profiles, prices, Overheads(), PREEMPTION, seeds)
        misses = (h if kind == "deadline" else cost) > limit
        row = dict(images=n, mpx=mpx, read_fields=read_fields, formats=len(fmt), limit=f"{kind} {limit:g}",
                   machine=machine or "any", choice=str(p.choice), plan_h=p.prediction.hours, sim_h=h,
                   plan_usd=p.prediction.cost_usd, sim_usd=cost, misses=misses)
        if misses:   # what the check by simulation makes of it
            checked = plan(w, profiles, prices, preemption=PREEMPTION, segment_machines=machines,
                           simulate_seeds=len(seeds), **ask)
            row.update(checked_meets=checked.simulated.meets_limit, checked_choice=str(checked.choice),
                       checked_sim_h=checked.simulated.hours, checked_sim_usd=checked.simulated.cost_usd,
                       checked_unmet=checked.simulated.unmet)
        rows.append(row)
    errs = [(abs(r["plan_h"] / r["sim_h"] - 1), abs(r["plan_usd"] / r["sim_usd"] - 1)) for r in rows]
    beyond = [(r, e) for r, e in zip(rows, errs) if max(e) > 0.10]
    times, costs = [e[0] for e in errs], [e[1] for e in errs]
    stats = {"mean_err_time": sum(times) / len(errs), "max_err_time": max(times),
             "mean_err_cost": sum(costs) / len(errs), "max_err_cost": max(costs)}
    print(f"{len(rows)} feasible plans: time error mean {stats['mean_err_time']:.1%}, worst "
          f"{stats['max_err_time']:.1%}; cost error mean {stats['mean_err_cost']:.1%}, worst "
          f"{stats['max_err_cost']:.1%}; beyond 5%: {sum(max(e) > 0.05 for e in errs)}, beyond 10%: {len(beyond)}")
    for r, (et, ec) in beyond:
        print(f"  beyond 10%: {r['images']} x {r['mpx']:g} Mpx, {r['read_fields']}, {r['formats']} format(s), "
              f"{r['limit']}, {r['machine']}: planned {r['plan_h']:.3f} h ${r['plan_usd']:.2f}, simulated "
              f"{r['sim_h']:.3f} h ${r['sim_usd']:.2f} ({et:.1%}, {ec:.1%})")
    missed = [r for r in rows if r["misses"]]
    mended = sum(r["checked_meets"] for r in missed)
    print(f"prediction-only plans whose simulated run misses the deadline or budget: {len(missed)} of {len(rows)}; "
          f"checked by simulation, {mended} of them meet it")
    for r in missed:
        verdict = "meets" if r["checked_meets"] else f"STILL MISSES: {r['checked_unmet']}"
        print(f"  {r['images']} x {r['mpx']:g} Mpx, {r['read_fields']}, {r['limit']}, {r['machine']}: simulated "
              f"{r['sim_h']:.3f} h ${r['sim_usd']:.2f} -> checked {r['checked_sim_h']:.3f} h "
              f"${r['checked_sim_usd']:.2f} ({verdict})")
    return {"rows": rows, **stats, "beyond_10": len(beyond), "missed": len(missed), "mended": mended}


def section_speed(args, prices, profiles) -> dict:
    w = Workload(10**6, 1.0, run_tables=False)
    t0 = time.perf_counter()
    p = plan(w, profiles, prices, deadline_h=args.deadline, max_nodes=args.max_nodes, preemption=PREEMPTION,
             o=NO_LAUNCHER)
    t_plan = time.perf_counter() - t0
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "cellscale.cli", "plan", "--images", "1000000", "--deadline", str(args.deadline),
           "--max-nodes", str(args.max_nodes), "--no-run-tables", "--json", "--storage-call-ms", "0"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={"PYTHONPATH": str(ROOT / "src"),
                                                                              "PATH": "/usr/bin:/bin"})
    t_cli = time.perf_counter() - t0
    ok = res.returncode == 0 and "predicted_hours" in res.stdout
    print(f"\n## Speed: plan() for 10^6 images: {t_plan:.2f} s ({p.candidates} configurations); `cellscale plan "
          f"--json`: {t_cli:.2f} s{'' if ok else ' (FAILED: ' + res.stderr[-300:] + ')'} (goal < 10 s)")
    return {"plan_s": t_plan, "cli_s": t_cli, "candidates": p.candidates}


def section_measure(args) -> dict:
    """The workflow (shipped config, --cores 2) on N 1024 x 1024 fields, each a 4 x 4 grid of 256 x 256 DSB2018
    fluorescence crops (generated nuclei without ../shared): the benchmark files of the rules a run of many
    fields has, the source of the CPU figures in config/throughput."""
    import shutil
    import tempfile

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import scale

    tmp = Path(tempfile.mkdtemp(prefix="cost-measure-"))
    folder = tmp / "fields"
    mpx = _write_fields(folder, args.measure)
    runs = {}
    for augment in args.augment or [None]:   # None: the shipped config's segment.augment
        work = tmp / f"work_{augment or 'shipped'}"
        scale.prepare_workflow(work, folder, args.shard, ["ome-tiff"] if args.augment else None)
        if augment:
            import yaml

            config = yaml.safe_load((work / "config/config.yaml").read_text())
            config["segment"]["augment"] = augment
            (work / "config/config.yaml").write_text(yaml.safe_dump(config))
        wall, _ = scale._snakemake(work)
        print(f"\n## Measured: the workflow on {args.measure} fields of 1024^2 ({mpx:.1f} Mpx), --cores 2, "
              f"shard {args.shard:g} Mpx"
              f"{', segment.augment ' + augment if augment else ''}: {wall:.1f} s")
        jobs = job_table(work / "results/benchmarks", work / "results")   # every benchmark file, with its Mpx
        rows = {}
        for job in jobs.sort_values(["rule", "job"]).itertuples():
            rows.setdefault(job.rule, []).append((job.s, job.max_rss_mb))
            print(f"{job.rule} {Path(job.job).stem}: {job.s:g} s, max RSS {job.max_rss_mb:g} MB")
        fit = _segment_fit(jobs)
        print(f"segment_batch: {fit[0]:.3g} s + {fit[1]:.4g} s/Mpx a job (least squares over its jobs)")
        runs[augment or "shipped"] = {"wall_s": wall, "jobs": rows, "segment_batch_fit": fit}
    if args.augment:
        shutil.rmtree(tmp, ignore_errors=True)
        return {"fields": args.measure, "mpx": mpx, "shard_mpx": args.shard, "augment": runs}
    # files each batch output holds (one Cloud Storage object each on GKE), per field of view: what
    # `cellscale plan --pilot` reads from a run (cellscale.cost.runcost.export_files), and segment_batch's own
    objects = {fmt: {"per_field": n, "mb_per_mpx": mb} for fmt, (n, mb) in export_files(work / "results").items()}
    labels = sum(run_files(d)["files_written"] for d in work.glob("results/batches/[0-9]*"))
    objects["segment_batch"] = {"per_field": labels / args.measure}
    for name, row in objects.items():
        print(f"{name}: " + ", ".join(f"{k} {v:.3g}" for k, v in row.items()))
    shutil.rmtree(tmp, ignore_errors=True)
    return {"fields": args.measure, "mpx": mpx, "wall_s": wall, "jobs": rows, "objects": objects}


def _write_fields(folder: Path, n: int, dtype: str | None = None) -> float:
    """``n`` fields of 1024 x 1024 px in ``folder``, each a 4 x 4 grid of 256 x 256 DSB2018 fluorescence crops
    (generated nuclei without ../shared): their megapixels. ``dtype``: the fields' pixel type (None: the crops'; a
    wider integer type scales the crops to its range, 257 x for 8-bit crops in uint16)."""
    import numpy as np
    import tifffile

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import scale

    folder.mkdir(parents=True)
    crops = scale._crops(256, 0)
    if dtype is not None and np.dtype(dtype) != crops[0].dtype:
        gain = np.iinfo(dtype).max // np.iinfo(crops[0].dtype).max
        crops = [c.astype(dtype) * gain for c in crops]
    for i in range(n):
        field = np.zeros((1024, 1024), crops[0].dtype)
        for k in range(16):
            y, x = divmod(k, 4)
            field[y * 256:(y + 1) * 256, x * 256:(x + 1) * 256] = crops[(16 * i + k) % len(crops)]
        tifffile.imwrite(folder / f"fov{i:06d}.tif", field)
    return n * 1024 * 1024 / 1e6


# one segment_batch job in a process of its own: the step rules/batch.smk's script calls, on every field of a folder
BATCH_JOB = """
import sys
from pathlib import Path
from cellscale.segment.settings import SegmentSettings
from cellscale.steps import batch as step
folder, precision, augment = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
fields = [step.Field(sample=p.stem, image=str(p), roles={"nuclear": None, "membrane": None})
          for p in sorted(folder.glob("*.tif"))]
step.segment_batch(fields, sys.argv[4], folder / "batch", "b", threads=1,
                   segment=SegmentSettings.from_dict({"precision": precision, "augment": augment}))
"""


def section_batch_memory(args) -> dict:
    """Peak RSS of one segment_batch job (1 thread, the shipped config but for segment.precision and augment)
    against its batch's Mpx of 1024 x 1024 fields, each job a process of its own (its rusage, os.wait4), and a
    line through the points: the host memory of config/throughput's segment_batch (mem_mb, mem_mb_per_mpx)."""
    import os
    import shutil
    import tempfile

    import numpy as np
    import tifffile

    tmp = Path(tempfile.mkdtemp(prefix="cost-batch-memory-"))
    print(f"\n## Peak RSS of a segment_batch job against its batch (segment.precision {args.precision}, augment "
          f"{args.batch_augment}, 1 thread, fields of 1024^2, {args.field_dtype or 'the crops' + chr(39)} pixels)")
    points = []
    for n in args.batch_memory:
        folder = tmp / f"fields_{n}"
        mpx = _write_fields(folder, n, args.field_dtype)
        dtype = str(tifffile.TiffFile(folder / "fov000000.tif").series[0].dtype)   # as written
        log = tmp / f"job_{n}.log"
        began = time.perf_counter()
        with open(log, "wb") as err:
            child = subprocess.Popen([sys.executable, "-c", BATCH_JOB, str(folder), args.precision,
                                      args.batch_augment, str(ROOT / "models" / "nuclear")], stdout=subprocess.DEVNULL,
                                     stderr=err, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
            _, status, usage = os.wait4(child.pid, 0)   # this child's own rusage (ru_maxrss: KiB on Linux)
        child.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - began
        if child.returncode != 0:
            raise RuntimeError(f"the segment_batch job of {n} fields failed:\n{log.read_text()[-3000:]}")
        rss_mb = usage.ru_maxrss / 1024
        points.append((mpx, rss_mb, seconds))
        print(f"{n} fields ({mpx:.2f} Mpx): peak RSS {rss_mb:.0f} MB, {seconds:.1f} s")
        shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)
    slope, intercept = np.polyfit([p[0] for p in points], [p[1] for p in points], 1)
    print(f"segment_batch: {intercept:.0f} MB + {slope:.3g} MB/Mpx a job (least squares over {len(points)} jobs)")
    return {"points": points, "mem_mb": float(intercept), "mem_mb_per_mpx": float(slope), "field_dtype": dtype}


def _segment_fit(jobs) -> tuple[float, float]:
    """segment_batch's seconds a job against its batch's Mpx (a :func:`job_table`): (fixed s, s per Mpx)."""
    import numpy as np

    seg = jobs[jobs["rule"] == "segment_batch"]
    slope, intercept = np.polyfit(seg["mpx"].to_numpy(float), seg["s"].to_numpy(float), 1)
    return float(intercept), float(slope)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CI: Kiosk plan + a small agreement grid")
    parser.add_argument("--deadline", type=float, default=6.0)
    parser.add_argument("--max-nodes", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=3, help="simulation seeds of the Kiosk runs")
    parser.add_argument("--figure", type=Path, default=None,
                        help="kiosk.png: the simulated headline run in kiosk-planned.png, spot L4 in kiosk-spot-l4.png")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    parser.add_argument("--measure", type=int, default=0, metavar="N",
                        help="also run the workflow on N 1024^2 fields and print its benchmark files (200: 4 min)")
    parser.add_argument("--augment", nargs="+", default=None, choices=["none", "rot180", "flips"],
                        help="with --measure: one run per segment.augment, OME-TIFF labels only (its speed ratio)")
    parser.add_argument("--measure-only", action="store_true",
                        help="with --measure or --batch-memory: those sections alone")
    parser.add_argument("--shard", type=float, default=16.0,
                        help="with --measure: tiling.shard_mpx of the run (Mpx a batch; the CPU figures: 16)")
    parser.add_argument("--batch-memory", type=int, nargs="+", default=None, metavar="N",
                        help="peak RSS of one segment_batch job of N 1024^2 fields for each N, and a line through "
                             "them (8 32 64 128: about 15 min)")
    parser.add_argument("--precision", default="float32", choices=["float32", "bfloat16", "int8"],
                        help="with --batch-memory: segment.precision (the GPU profiles': float32)")
    parser.add_argument("--batch-augment", default="rot180", choices=["none", "rot180", "flips"],
                        help="with --batch-memory: segment.augment (the GPU profiles': rot180)")
    parser.add_argument("--field-dtype", default=None, choices=["uint8", "uint16"],
                        help="with --batch-memory: the fields' pixel type (default: the crops', 8-bit)")
    args = parser.parse_args()
    prices, kiosk = load_prices(ROOT / "config/prices/gke-us-central1.yaml"), load_prices(
        ROOT / "config/prices/kiosk-2021.yaml")
    profiles = load_profiles(ROOT / "config/throughput")
    print(f"prices: {prices.name}, {prices.date}; profiles: {', '.join(sorted(profiles))}")
    out = {} if args.measure_only else {"kiosk": section_kiosk(args, prices, profiles, kiosk),
                                        "agreement": section_agreement(args, prices, profiles),
                                        "agreement_rounds": section_rounds(args, prices, profiles),
                                        "chosen": section_chosen(args, prices, profiles),
                                        "speed": section_speed(args, prices, profiles)}
    if args.measure:
        out["measure"] = section_measure(args)
    if args.batch_memory:
        out["batch_memory"] = section_batch_memory(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
