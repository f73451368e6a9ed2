"""``cellscale plan``: the cheapest cluster for a deadline, or the fastest for a budget (PuLP, CBC).

The program. Every candidate configuration ``c`` is a binary ``x_c``: the segment pool's machine type (a GPU type,
or a CPU type running the int8 model: "no GPU pool"), spot or on demand, the shard size (4-64 Mpx, bounded by node
memory through ``mem_mb + mem_mb_per_mpx * shard``) and its node count, together with the tail's CPU pool (the
segment pool itself when that is a CPU pool, else a pool of the CPU type that runs the exports and the tail cheapest,
of 1-4 nodes, powers of two or the nodes that keep up with the segment pool's exports: :func:`.model.export_nodes`;
twice those where staged fields' rounds hold segment jobs back, since the larger maximum raises Snakemake's jobs).
Its predicted
wall time ``T_c`` and cost ``C_c`` come from :func:`.model.predict`, which is not linear in the node count (waves of
jobs, start-up, preemption), so they enter as coefficients: ``sum x_c = 1``, ``sum x_c T_c <= deadline``,
``sum x_c gpus_c <= max_gpus``, ``sum x_c nodes_c <= max_nodes``; minimise ``sum x_c C_c`` (or, with a budget,
``sum x_c C_c <= budget`` and minimise ``sum x_c T_c``). Node counts are enumerated only where the number of waves
changes (more nodes than ``ceil(jobs / (slots * waves))`` buy nothing; every count where the exports share a CPU
pool, whose time falls with each node, and with staged fields whose rounds take time, where each node adds to
Snakemake's jobs and shortens the rounds' waits), and each (machine, spot, shard) keeps only its time/cost Pareto
front, so 10^6 images is some 2 x 10^4 binaries. Snakemake's ``jobs`` is the pools' slots (nodes x jobs per node,
counted with the rule that fits the most).

:func:`write_outputs` writes ``DIR/plan.json``, ``DIR/config.yaml`` (a profile for ``snakemake --profile
profiles/gke --workflow-profile DIR``) and ``DIR/plan-config.yaml`` (the shard size). What Snakemake 9.27 does with
the two profiles, read in snakemake/cli.py and snakemake/profiles.py and checked by real dry runs (one in
tests/unit/test_cost_plan.py):

- both files become configargparse defaults, the workflow profile last, so for a key both set the workflow profile's
  value wins *as a whole*: its ``set-resources`` replaces the --profile's entirely (no merge per rule; a rule it does
  not name loses its GKE settings), and so do ``default-resources`` and ``config``. Keys it leaves out keep the
  --profile's values; the command line beats both. So the fragment repeats every rule of profiles/gke's
  ``set-resources`` with the plan's machine types, and leaves ``default-resources`` alone.
- ``config: {tiling: '{"shard_mpx": 64}'}`` does NOT work: ``--config`` parses a nested value with YAML's BaseLoader,
  so 64 arrives as the string '64' and the config schema rejects it (seen in a dry run). The fragment says
  ``configfile: plan-config.yaml`` instead (a profile value naming a file in the profile's folder becomes its path):
  files given by ``--configfile`` are merged after the workflow's ``configfile:``, recursively, so
  ``tiling.shard_mpx`` is the plan's and ``tiling.tile`` keeps config/config.yaml's (checked on a two-rule workflow:
  ``{'tiling': {'shard_mpx': 64, 'tile': 512}}``). A ``--configfile`` on the command line replaces this one.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import re
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import pulp
import yaml

from .model import (EXPORTS, LIST_PAGE, MCQUANT, SEGMENT_RULE, TAIL_LAST, TAIL_PARALLEL, Choice, Overheads,
                    PoolChoice, Prediction, Workload, allocatable_mb, batch_mpx, class_b_usd, export_nodes, fits,
                    held_fields, job_figures, predict, segment_rate, slots_per_node, snakemake_jobs,
                    tail_memory_mb, tail_rates)
from .prices import PriceTable
from .simulate import SimResult, figure, simulate_mean
from .throughput import PROFILE_DIR, SHIPPED_PROFILES, ThroughputProfile, load_profile

SHARDS = (4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0)
#: shards above this only for workloads whose images are all at most this large: the workflow batches every image
#: of at most tiling.shard_mpx, and a batch job holds a whole field in memory (the largest shard before 2026-12-05)
BATCHED_FIELD_MPX = 64.0
#: an infeasible request's explanation searches node counts beyond the quota on a ladder of this step (5%): every
#: count, up to 10,000 nodes, made an infeasible answer for 10^6 images take 60-70 s
LADDER_STEP = 1.05
CPU_RULES_OF_PROFILE = ("plan_batches", "report_fields", "tile", "stitch", "measure", "track", "ngff", "spatialdata",
                        "ngff_batch", "spatialdata_batch", "report_sample", "lineage", "summary",
                        "aggregate_measurements")
PLAN_CONFIG = "plan-config.yaml"
SIMULATED_FIGURE = "simulated.png"


#: how often :func:`plan` plans again when the simulation of its choice misses the deadline or the budget
REPLANS = 3


class Infeasible(ValueError):
    """No configuration meets the request; the message says what would be needed."""


@dataclass
class Simulated:
    """The chosen configuration run event by event (:func:`.simulate.simulate`): the mean of ``runs`` (seeds 0, 1,
    ...; one run when nothing is random), and the configurations chosen before it whose simulated runs missed the
    limit (``replans``)."""

    runs: list[SimResult]
    meets_limit: bool
    replans: list[dict]
    seconds: float = 0.0         # the check's time: its simulations and the programs solved again
    unmet: str = ""              # why a plan that misses was not planned again (empty when it meets the limit)

    def to_json(self, prediction: Prediction, total_mpx: float) -> dict:
        return {"hours": round(self.hours, 4), "cost_usd": round(self.cost_usd, 4),
                "cost_per_1000_mpx_usd": round(self.cost_usd / total_mpx * 1000, 6), "seeds": len(self.runs),
                "hours_range": [round(min(r.hours for r in self.runs), 4), round(max(r.hours for r in self.runs), 4)],
                "cost_range": [round(min(r.cost_usd for r in self.runs), 4),
                               round(max(r.cost_usd for r in self.runs), 4)],
                "preemptions": round(sum(r.preemptions for r in self.runs) / len(self.runs), 2),
                "failed_jobs": sum(r.failed_jobs for r in self.runs),
                "prediction_error_hours": round(prediction.hours / self.hours - 1, 4),
                "prediction_error_cost": round(prediction.cost_usd / self.cost_usd - 1, 4),
                "meets_limit": self.meets_limit, "unmet": self.unmet, "replans": self.replans,
                "seconds": round(self.seconds, 3)}

    @property
    def hours(self) -> float:
        return sum(r.hours for r in self.runs) / len(self.runs)

    @property
    def cost_usd(self) -> float:
        return sum(r.cost_usd for r in self.runs) / len(self.runs)


@dataclass
class Plan:
    choice: Choice
    prediction: Prediction
    objective: str
    limit: float
    candidates: int
    solve_s: float
    assumptions: list[str]
    prices: PriceTable
    workload: Workload           # what was planned: its JSON, description and files read it from here
    simulated: Simulated | None = None

    def pools(self) -> list[dict]:
        return [{"name": pc.name, "machine_type": pc.instance_type, "price_key": pc.machine, "count": pc.nodes,
                 "spot": pc.spot, "gpus_per_node": self.prices.machine(pc.machine).gpus,
                 "gpu": self.prices.machine(pc.machine).gpu}
                for pc in self.choice.pools]

    def to_json(self) -> dict:
        p, workload = self.prediction, self.workload
        return {
            "predicted_hours": round(p.hours, 4),
            "cost_usd": round(p.cost_usd, 4),
            "cost_per_1000_mpx_usd": round(p.cost_usd / workload.total_mpx * 1000, 6),
            "pools": self.pools(),
            "shard_mpx": _number(self.choice.shard_mpx),
            "jobs": p.jobs,
            "segment_jobs": p.segment_jobs,
            "cost_breakdown": {k: round(v, 4) for k, v in p.breakdown.items()},
            "phases_hours": {k: round(v, 4) for k, v in p.phases_h.items()},
            "launcher_round_requests": round(p.round_requests),
            "workload": {"images": workload.images, "mpx_per_image": workload.mpx_per_image,
                         "total_mpx": workload.total_mpx, "run_tables": workload.run_tables,
                         "formats": list(workload.formats), "label_files": workload.label_files,
                         "read_fields": workload.read_fields,
                         "augment": workload.augment, "images_per_folder": workload.images_per_folder,
                         "largest_image_mpx": workload.largest_mpx, "compartments": workload.compartments,
                         "decoded_mb_per_mpx": workload.fields_mb_per_mpx,
                         "exports": {x.rule: {"files_per_image": x.objects_per_image, "mb_per_mpx": x.mb_per_mpx}
                                     for x in workload.exports}},
            "objective": self.objective, "limit": self.limit,
            "prices": {"table": self.prices.name, "region": self.prices.region, "date": self.prices.date,
                       "source": self.prices.source, "path": self.prices.path},
            "candidates": self.candidates, "solve_s": round(self.solve_s, 3),
            "notes": p.notes,
            "assumptions": self.assumptions,
            **({"simulated": self.simulated.to_json(p, workload.total_mpx)} if self.simulated else {}),
        }


def _number(x: float) -> int | float:
    return int(x) if float(x).is_integer() else x


def load_profiles(folder: Path | str | None = None) -> dict[str, ThroughputProfile]:
    """Every profile in ``folder``, keyed by its machine type. None: the shipped profiles, each replaced by the one
    for the same machine type in the current folder's ``config/throughput`` when there is one (your own, e.g. fitted
    by ``cellscale throughput`` from a pilot run), which may also add machine types."""
    folders = [Path(folder)] if folder is not None else [SHIPPED_PROFILES]
    if folder is None and PROFILE_DIR.is_dir() and PROFILE_DIR.resolve() != SHIPPED_PROFILES.resolve():
        folders.append(PROFILE_DIR)
    out = {}
    for f in folders:   # a later folder's profile replaces an earlier one's of the same machine type
        out.update((machine, p) for machine, (_, p) in folder_profiles(f).items())
    if not out:
        raise FileNotFoundError(f"no throughput profiles in {' or '.join(map(str, folders))}")
    return out


def folder_profiles(folder: Path | str) -> dict[str, tuple[Path, ThroughputProfile]]:
    """The profiles of one folder by machine type, with their files; two of one machine type are an error naming
    both files (the planner uses one per machine type)."""
    out: dict[str, tuple[Path, ThroughputProfile]] = {}
    for path in sorted(Path(folder).glob("*.yaml")):
        p = load_profile(path)
        if p.machine in out:
            raise ValueError(duplicate_profile(p.machine, out[p.machine][0], path))
        out[p.machine] = path, p
    return out


def duplicate_profile(machine: str, first: Path, second: Path,
                      elsewhere: str = "give the other folder with --profiles DIR") -> str:
    return (f"{first} and {second} are both throughput profiles of {machine}, and cellscale plan uses one per machine "
            f"type: keep one (a profile named after its machine type replaces it, e.g. "
            f"`cellscale throughput --machine {machine}`, whose --name is the machine type), or {elsewhere}")


def _node_counts(jobs: int, slots: int, cap: int) -> list[int]:
    """Node counts worth trying: the fewest nodes for each number of waves, up to ``cap``."""
    counts, waves = set(), 1
    need = math.ceil(jobs / slots)
    if need < 1:   # no job (a workload has at least one image): no node count, rather than a loop without end
        return []
    while True:
        n = math.ceil(need / waves)
        if n <= cap:
            counts.add(n)
        if n == 1:
            break
        waves = max(waves + 1, math.ceil(need / (n - 1)))
    return sorted(counts)


def _thinned(counts, dense: int | None, step: float = LADDER_STEP):
    """``counts`` (sorted) up to ``dense``, and above it only those at least ``step`` times the last kept (and the
    largest): a ladder whose counts are within ``step`` of each other, what it would take beyond a quota."""
    if dense is None:
        return counts
    kept = []
    for n in counts:
        if n <= dense or not kept or n >= kept[-1] * step or n == counts[-1]:
            kept.append(n)
    return kept


def _export_counts(keep: int, cap: int, flow: bool = False) -> list[int]:
    """Node counts of a separate exports' pool worth trying: every count up to 4, then powers of two, up to the
    ``keep`` nodes that keep up with the segment pool (fewer cost less when the exports may trail). ``flow``: also
    twice that (within ``cap``), where staged fields' rounds hold segment jobs back: the pool starts only the nodes
    its exports fill, and a larger maximum raises Snakemake's jobs, so that the segment jobs may flow between
    waves."""
    return sorted({c for c in range(1, min(keep, 4) + 1)} | {2 ** i for i in range(3, 30) if 2 ** i < keep} | {keep}
                  | ({2 * keep} if flow and 2 * keep <= cap else set()))


def _pareto(items: list[tuple]) -> list[tuple]:
    """The items (time, cost, ...) that no other beats on both time and cost, fastest first."""
    front, best = [], math.inf
    for item in sorted(items, key=lambda t: (t[0], t[1])):
        if item[1] < best - 1e-12:
            front.append(item)
            best = item[1]
    return front


def usable_shards(w: Workload, shards=SHARDS) -> list[float]:
    """The shard sizes the workload's images allow: above :data:`BATCHED_FIELD_MPX` only when no image is larger
    (a larger shard would batch images a batch job was never planned for)."""
    return [s for s in shards if s <= BATCHED_FIELD_MPX or w.largest_mpx <= BATCHED_FIELD_MPX]


def _nodes(c: Choice) -> int:
    return sum(pc.nodes for pc in c.pools)


def _gpus(c: Choice, prices: PriceTable) -> int:
    return sum(prices.machines[pc.machine].gpus * pc.nodes for pc in c.pools)


def _within_quota(c: Choice, prices: PriceTable, max_nodes: int, max_gpus: int | None) -> bool:
    return _nodes(c) <= max_nodes and (max_gpus is None or _gpus(c, prices) <= max_gpus)


def candidates(w: Workload, profiles, prices: PriceTable, o: Overheads, preemption: float, max_gpus: int | None,
               max_nodes: int, spot_options=(True, False), machines: list[str] | None = None,
               shards=SHARDS, segment_machines: list[str] | None = None, dense_nodes: int | None = None,
               past_h: float | None = None):
    """(time h, cost USD, Choice, Prediction) for every configuration worth considering; ``machines`` limits
    every pool's machine types, ``segment_machines`` only the segment pool's. ``dense_nodes``: the segment pool's
    node counts are all tried up to it, and above it on a ladder (:func:`_thinned`). ``past_h`` (a deadline): a
    configuration whose phases before the first job (the launcher's requests, plan_batches) alone take longer is
    tried at its largest node count only, the fastest (no count of it meets the deadline)."""
    usable = [m for m in profiles if m in prices.machines and (machines is None or m in machines)]
    needed = [TAIL_LAST] + [x.rule for x in w.exports]
    cpu = [m for m in usable if not prices.machines[m].gpus and all(r in profiles[m].rules for r in needed)]
    if not cpu and (w.run_tables or w.exports):
        raise Infeasible(f"no CPU machine type has both a price and a throughput profile with {', '.join(needed)}: "
                         f"fit one from a pilot run (cellscale throughput), or plan other --formats")
    fit = [m for m in cpu if tail_memory_mb(w, profiles[m])[1] <= allocatable_mb(prices.machines[m])]
    if w.run_tables and not fit:
        big = max(cpu, key=lambda m: allocatable_mb(prices.machines[m]))
        rule, need = tail_memory_mb(w, profiles[big])
        raise Infeasible(f"{rule} needs about {need / 1000:.0f} GB for the run's {w.total_mpx:g} Mpx (its profile: "
                         f"{tail_rates(w, profiles[big])[rule].mem_mb_per_mpx:g} MB per Mpx of the run), more than any "
                         f"CPU node offers ({big}: {allocatable_mb(prices.machines[big]) / 1000:.0f} GB): plan "
                         f"segmentation alone (--no-run-tables) or split the run")
    cpu = fit
    out, figures = [], {}   # job_figures by (segment machine, tail machine, shard): the same for every node count
    timed_rounds = w.fields_staged and o.storage_call_s > 0   # each round reads every waiting field, and takes time
    for m in usable:
        machine = prices.machines[m]
        rate = segment_rate(profiles[m], w, o) if SEGMENT_RULE in profiles[m].rules else None
        if rate is None or (rate.gpu and not machine.gpus) or (segment_machines and m not in segment_machines):
            continue
        for shard in usable_shards(w, shards):
            if shard < w.mpx_per_image or not fits(machine, rate, shard):
                continue
            k = slots_per_node(machine, rate, batch_mpx(shard))
            cap = max_nodes if not machine.gpus else min(max_nodes - 1, (max_gpus if max_gpus is not None
                                                                          else 10 ** 6) // machine.gpus)
            if not machine.gpus and (w.run_tables or w.exports) and m not in cpu:
                continue                     # a CPU pool runs the exports and the tail too: it must hold them
            for spot in spot_options:
                # a GPU pool holds only GPU pods (GKE taints its nodes): every other rule needs a CPU pool, the
                # workflow's run-level rules too when --no-run-tables leaves their cost out
                tails = [m] if not machine.gpus else cpu
                group = []
                counts = _thinned(_node_counts(w.jobs(shard), k, cap), dense_nodes)
                if (w.exports and not machine.gpus) or timed_rounds:
                    # exports beside segment jobs: time falls with every node; staged fields: each node adds to
                    # Snakemake's jobs, which shortens the rounds' waits, so more nodes for as many waves may be
                    # faster and cheaper
                    counts = _thinned(range(1, min(cap, math.ceil(w.jobs(shard) / k)) + 1), dense_nodes)
                counts, hopeless = list(counts), False
                for n in counts:
                    if hopeless and n != counts[-1]:
                        continue
                    seg = PoolChoice("gpu" if machine.gpus else ("spot-cpu" if spot else "cpu"), m, n, spot)
                    best, options = None, []
                    for t in tails:   # the tail's pool: chosen at the first node count, kept for the others
                        tail = seg if t == m else PoolChoice("spot-cpu" if spot else "cpu", t, 1, spot)
                        if tail is not seg and tail.instance_type == seg.instance_type:
                            continue   # pods reach a pool by its machine type only: two pools need two types
                        choices, key = [Choice(seg, tail, shard)], (m, t, shard)
                        if key not in figures:
                            try:
                                figures[key] = job_figures(w, choices[0], profiles, prices, o)
                            except ValueError:   # an export job does not fit on a node of this type
                                if tail is seg:
                                    raise
                                figures[key] = None
                        if figures[key] is None:
                            continue
                        if tail is not seg and w.exports:   # the exports' pool: up to the nodes that keep up
                            g = figures[key]
                            keep = export_nodes(w, choices[0], profiles, prices, o, cap=max_nodes - n, figures=g)
                            kept = Choice(seg, PoolChoice(tail.name, t, keep, spot), shard)
                            held = timed_rounds and g.jobs > snakemake_jobs(w, kept, n, k, g.export_slots)
                            choices = [replace(kept, tail=replace(kept.tail, nodes=c))
                                       for c in _export_counts(keep, max_nodes - n, flow=held)]
                        for choice in choices:
                            p = predict(w, choice, profiles, prices, o, preemption, figures[key])
                            options.append((p.hours, p.cost_usd, choice, p))
                            if best is None or p.cost_usd < best[1].cost_usd:
                                best = (choice, p)
                    if best is not None:
                        group += [opt for opt in options if opt[2].tail.machine == best[0].tail.machine]
                        tails = [best[0].tail.machine]
                        hopeless = past_h is not None and figures[(m, tails[0], shard)].t_plan / 3600 > past_h
                out += _pareto(group)
    return out


def plan(w: Workload, profiles: dict[str, ThroughputProfile], prices: PriceTable, deadline_h: float | None = None,
         budget_usd: float | None = None, max_gpus: int | None = None, max_nodes: int = 100,
         preemption: float = 0.0, o: Overheads = Overheads(), spot_options=(True, False),
         machines: list[str] | None = None, shards=SHARDS, segment_machines: list[str] | None = None,
         simulate_seeds: int = 0) -> Plan:
    """The least cost within ``deadline_h``, or the least time within ``budget_usd`` (one of them).

    ``simulate_seeds`` > 0: the choice is then run through the event simulation (:func:`.simulate.simulate_mean`,
    that many seeds of preemption, one when nothing is random). Where the simulated run misses the limit, the
    program is solved again with the limit scaled by the prediction's error (prediction / simulation), up to
    :data:`REPLANS` times: the closed form is what makes 10^4 configurations cheap to compare, and the simulation the
    check of the one chosen. The plan records the simulation and the choices it turned down."""
    if (deadline_h is None) == (budget_usd is None):
        raise ValueError("give a deadline or a budget (one of them)")
    t0 = time.perf_counter()
    cands = candidates(w, profiles, prices, o, preemption, max_gpus, max_nodes, spot_options, machines, shards,
                       segment_machines, past_h=deadline_h)
    if not cands:
        raise Infeasible(_no_candidate(w, profiles, prices, o, max_gpus, max_nodes, machines, shards,
                                       segment_machines))
    considered = len(cands)

    def infeasible() -> Infeasible:
        return Infeasible(_why(w, profiles, prices, o, preemption, deadline_h, budget_usd, max_gpus, max_nodes,
                               spot_options, machines, shards, segment_machines))

    # one configuration is chosen, so the quotas are each configuration's own: those within them, less those that
    # another beats on both time and cost (the answer to neither objective), go to the integer program
    cands = _pareto([r for r in cands if _within_quota(r[2], prices, max_nodes, max_gpus)])
    if not cands:
        raise infeasible()
    by_time = deadline_h is not None
    limit = deadline_h if by_time else budget_usd
    objective = "least cost within deadline" if by_time else "least time within budget"
    i = _solve(cands, prices, max_gpus, max_nodes, by_time, limit)
    if i is None:
        raise infeasible()
    _, _, choice, prediction = cands[i]
    solve_s, simulated = time.perf_counter() - t0, None
    if simulate_seeds > 0:
        seeds, within, replans = tuple(range(simulate_seeds)), limit, []
        while True:
            hours, cost, runs = simulate_mean(w, choice, profiles, prices, o, preemption, seeds)
            value, predicted = (hours, prediction.hours) if by_time else (cost, prediction.cost_usd)
            meets, unmet = value <= limit * (1 + 1e-9), ""
            if not meets and len(replans) == REPLANS:
                unmet = f"it was planned again {REPLANS} times, and each simulated run missed"
            if meets or unmet:
                break
            # the same error on the next choice: its prediction within limit x prediction / simulation
            bound = predicted * limit / value
            j = _solve(cands, prices, max_gpus, max_nodes, by_time, bound)
            if j is None:
                unmet = (f"no configuration within the quotas is predicted within {bound:.2f} "
                         f"{'h' if by_time else 'USD'} (the limit less the prediction's error)")
                break
            replans.append({"configuration": _describe(choice), "planned_within": round(within, 4),
                            "predicted_hours": round(prediction.hours, 4),
                            "predicted_cost_usd": round(prediction.cost_usd, 4),
                            "simulated_hours": round(hours, 4), "simulated_cost_usd": round(cost, 4)})
            _, _, choice, prediction = cands[j]
            within = bound
        simulated = Simulated(runs, meets, replans, time.perf_counter() - t0 - solve_s, unmet)
    return Plan(choice, prediction, objective, limit, considered, solve_s,
                assumptions(choice, profiles, prices, o, preemption, w.exports, w), prices, w, simulated)


def _solve(cands: list[tuple], prices: PriceTable, max_gpus: int | None, max_nodes: int, by_time: bool,
           bound: float) -> int | None:
    """The integer program (see the module docstring) over ``cands`` (hours, cost, choice, prediction): the index of
    the least cost within ``bound`` hours (``by_time``), else the least time within ``bound`` dollars; None when no
    configuration is within it."""
    prob = pulp.LpProblem("cellscale_plan", pulp.LpMinimize)
    x = [prob.add_variable(f"x{i}", 0, 1, cat="Binary") for i in range(len(cands))]

    def total(coefs):
        return pulp.LpAffineExpression(zip(x, coefs))

    hours, costs = [r[0] for r in cands], [r[1] for r in cands]
    prob += total([1.0] * len(x)) == 1, "one_configuration"
    if max_gpus is not None:
        prob += total([_gpus(c, prices) for _, _, c, _ in cands]) <= max_gpus, "gpu_quota"
    prob += total([_nodes(c) for _, _, c, _ in cands]) <= max_nodes, "node_quota"
    if by_time:
        prob += total(hours) <= bound, "deadline"
        prob += total(costs)
    else:
        prob += total(costs) <= bound, "budget"
        prob += total(hours)
    with warnings.catch_warnings():   # PuLP 3.3 deprecates the CBC it bundles (the only solver it finds here)
        warnings.simplefilter("ignore", DeprecationWarning)
        prob.solve(pulp.PULP_CBC_CMD(msg=False))
    if pulp.LpStatus[prob.status] != "Optimal":
        return None
    return max(range(len(x)), key=lambda j: x[j].value() or 0)


def _why(w, profiles, prices, o, preemption, deadline_h, budget_usd, max_gpus, max_nodes, spot_options, machines,
         shards, segment_machines) -> str:
    """What it would take: the same search without the quotas (up to 10,000 nodes; the segment pool's counts
    beyond ``max_nodes`` on a ladder, so a count named there is within :data:`LADDER_STEP` of the fewest)."""
    free = candidates(w, profiles, prices, o, preemption, None, 10000, spot_options, machines, shards,
                      segment_machines, dense_nodes=max_nodes, past_h=deadline_h)
    quota = f"quota: max_gpus {max_gpus}, max_nodes {max_nodes}"
    if not free:
        return _no_candidate(w, profiles, prices, o, None, 10000, machines, shards, segment_machines)
    if budget_usd is not None:
        t, c, choice, _ = min(free, key=lambda r: r[1])
        return (f"budget ${budget_usd:g} is too small: the cheapest run costs ${c:.2f} ({_describe(choice)}, "
                f"{t:.2f} h)")
    ok = [r for r in free if r[0] <= deadline_h]
    if not ok:
        t, c, choice, p = min(free, key=lambda r: r[0])
        return (f"deadline {deadline_h:g} h cannot be met with any number of nodes: the fastest run takes {t:.2f} h "
                f"({_describe(choice)}), of which the launcher's Cloud Storage requests about every field "
                f"{p.phases_h['launcher']:.2f} h ({o.storage_call_s * 1000:g} ms each, one after another), "
                f"plan_batches {p.phases_h['plan_batches']:.2f} h and the tail {p.phases_h['tail']:.2f} h do not "
                f"shrink with more nodes" + (_direct_hint(w, profiles, prices, o, preemption, deadline_h, max_gpus,
                                                          max_nodes, spot_options, machines, shards, segment_machines)
                                             if p.phases_h["launcher"] >= 0.1 * t else ""))
    lines = []
    for gpu in (True, False):
        sub = [r for r in ok if bool(prices.machines[r[2].segment.machine].gpus) == gpu]
        if sub:
            t, c, choice, _ = min(sub, key=lambda r: (r[2].segment.nodes, r[1]))
            m = prices.machines[choice.segment.machine]
            what = (f"{choice.segment.nodes * m.gpus} {m.gpu} GPUs ({choice.segment.machine})" if gpu
                    else f"{choice.segment.nodes} {choice.segment.machine} nodes (no GPU)")
            lead = "about" if choice.segment.nodes > max_nodes else "at least"   # beyond the quota: on the ladder
            lines.append(f"{lead} {what}: {t:.2f} h, ${c:.2f}")
    return f"deadline {deadline_h:g} h needs " + "; or ".join(lines) + f" ({quota})"


def plannable_segment_machines(profiles, prices: PriceTable) -> list[str]:
    """The machine types that can run segment_batch in a plan: in the price table, with a throughput profile that
    has the rule."""
    return sorted(m for m in prices.machines if m in profiles and SEGMENT_RULE in profiles[m].rules)


def segment_machine_problem(name: str, profiles, prices: PriceTable) -> str:
    """Why machine type ``name`` cannot run segment_batch in a plan, naming it and the types that can ('' when it
    can): the price table has no such type (a GPU's name gets the types that carry it), or no throughput profile of
    segment_batch is given for it."""
    usable = plannable_segment_machines(profiles, prices)
    if name in usable:
        return ""
    if name in prices.machines:
        why = "no throughput profile of segment_batch for it (cellscale throughput fits one from a pilot run)"
    else:
        why = f"no such machine type in price table {prices.name}"
        key = name.lower().removeprefix("nvidia-").removeprefix("tesla-")
        carry = [m for m in usable if prices.machines[m].gpu
                 and key in (prices.machines[m].gpu.lower(), prices.machines[m].gpu.lower().split("-")[0])]
        if carry:
            why += f" (the machine types with {prices.machines[carry[0]].gpu} GPUs: {', '.join(carry)})"
    return f"{name}: {why}; machine types to plan with: {', '.join(usable)}"


def _no_candidate(w, profiles, prices, o, max_gpus, max_nodes, machines, shards, segment_machines) -> str:
    """Why :func:`candidates` found no configuration at all: the first of its causes that applies."""
    seg = [m for m in plannable_segment_machines(profiles, prices) if (machines is None or m in machines)
           and (not segment_machines or m in segment_machines)
           and (prices.machines[m].gpus or not segment_rate(profiles[m], w, o).gpu)]
    if not seg:
        return ("no machine type has a price and a throughput profile of segment_batch"
                + (f" among --segment-machines {', '.join(segment_machines)}" if segment_machines else ""))
    largest = max(usable_shards(w, shards), default=0)
    if w.mpx_per_image > largest:
        return (f"the images ({w.mpx_per_image:g} Mpx{' on average' if w.largest_image_mpx > w.mpx_per_image else ''}"
                f") are larger than the largest shard ({largest:g} Mpx): the workflow tiles, segments and stitches "
                f"such images in jobs of their own, which the planner does not model")
    tried, seg = seg, [m for m in seg if any(s >= w.mpx_per_image and fits(prices.machines[m],
                                                                            segment_rate(profiles[m], w, o), s)
                                             for s in usable_shards(w, shards))]
    if not seg:
        return (f"no node of {', '.join(tried)} has the memory for a segment_batch job of {w.mpx_per_image:g}-Mpx "
                f"images (a batch holds up to {batch_mpx(1):g} x its shard)")
    gpu = {m: prices.machines[m].gpus for m in seg if prices.machines[m].gpus}
    if len(gpu) == len(seg):   # a CPU pool may always have a node (max_nodes >= 1)
        why = []
        if max_nodes < 2:
            why.append(f"max_nodes {max_nodes} leaves no node for a GPU pool beside the CPU pool")
        if max_gpus is not None and all(n > max_gpus for n in gpu.values()):
            why.append(f"max_gpus {max_gpus} is fewer than a node's GPUs "
                       f"({', '.join(f'{m}: {n}' for m, n in gpu.items())})")
        if why:
            return "the quota allows no segment node: " + "; ".join(why)
    if w.run_tables or w.exports:
        needed = [TAIL_LAST] + [x.rule for x in w.exports]
        lacking = [m for m in seg if not gpu.get(m) and not all(r in profiles[m].rules for r in needed)]
        if lacking and len(lacking) == len(seg):
            rules = [r for r in needed if any(r not in profiles[m].rules for m in lacking)]
            return (f"a CPU segment pool runs the exports and the run-level tail too, and the throughput profiles "
                    f"of {', '.join(lacking)} lack {', '.join(rules)}")
    return ("no configuration fits: no node of " + ", ".join(seg) + " holds a segment_batch job and the rules "
            "beside it within the quota")


def oversized(w: Workload, shard_mpx: float) -> str:
    """What the plan leaves out of images larger than its shard ('' when there are none): the workflow does not
    batch them, and the model prices their megapixels as batched (see :attr:`.model.Workload.above_shard`)."""
    n = w.images_above(shard_mpx)
    if not n:
        return ""
    return (f"{n:,} image{'s' if n > 1 else ''} above the {shard_mpx:g}-Mpx shard (largest {w.largest_mpx:g} Mpx) "
            f"not modelled: the workflow tiles, segments and stitches each in jobs of its own; the plan prices "
            f"{'their' if n > 1 else 'its'} megapixels as batched, in the mean image ({w.mpx_per_image:g} Mpx)")


def left_out(w: Workload) -> str:
    n = w.timelapses_left_out
    return (f"{n} time-lapse sample{'s' if n > 1 else ''} of the sheet not planned: each runs in jobs of its own "
            f"(tile, segment, stitch, track), which the model does not price")


def _direct_hint(w, profiles, prices, o, preemption, deadline_h, max_gpus, max_nodes, spot_options, machines, shards,
                 segment_machines) -> str:
    """With the fields staged, what reading them in the jobs (``batches.read_fields: direct``) would give within the
    same quotas: the launcher then asks about no field, which is most of its time (asked when the launcher's
    requests are at least a tenth of the fastest run)."""
    if not w.fields_staged:
        return ""
    direct = [r for r in candidates(replace(w, read_fields="direct"), profiles, prices, o, preemption, max_gpus,
                                    max_nodes, spot_options, machines, shards, segment_machines)
              if _within_quota(r[2], prices, max_nodes, max_gpus)]
    if not direct:
        return ""
    ok = [r for r in direct if r[0] <= deadline_h]
    t, c, choice, _ = min(ok, key=lambda r: r[1]) if ok else min(direct, key=lambda r: r[0])
    return (f"; with batches.read_fields: direct (--read-fields direct) the jobs download their fields and the "
            f"launcher asks about none: within the quota "
            f"{'the cheapest run that meets the deadline takes' if ok else 'the fastest run would take'} "
            f"{t:.2f} h, ${c:.2f} ({_describe(choice)})")


def _describe(choice: Choice) -> str:
    return ", ".join(f"{pc.nodes} x {pc.machine}{' spot' if pc.spot else ''}" for pc in choice.pools) + \
        f", {choice.shard_mpx:g} Mpx shards"


def assumptions(choice: Choice, profiles, prices: PriceTable, o: Overheads, preemption: float,
                exports=tuple(EXPORTS.values()), w: Workload | None = None) -> list[str]:
    """One line for every figure of the plan that was not measured (``exports``: the workload's; ``w``: the
    workload, whose segment.augment may scale the segment figures)."""
    out = []
    for pc in choice.pools:
        prof = profiles[pc.machine]
        for rule in (SEGMENT_RULE, "plan_batches", *(x.rule for x in exports), *TAIL_PARALLEL, TAIL_LAST):
            r = prof.rules.get(rule)
            if rule == SEGMENT_RULE and r is not None and w is not None:
                r = segment_rate(prof, w, o)
                if r.gpu and r.augment not in (None, w.augment):
                    out.append(f"{pc.machine}: {rule}: figures for segment.augment {r.augment} used for "
                               f"{w.augment} (the profile does not say its network's share: network_s_per_mpx)")
            if r is not None and r.origin != "measured" and (rule == SEGMENT_RULE or pc == choice.tail):
                line = f"{pc.machine}: {rule}: {r.how}"
                if line not in out:
                    out.append(line)
    out += o.assumptions()
    out.append(f"batches: cut by content, about the shard ({choice.shard_mpx:g} Mpx) on average and up to "
               f"{batch_mpx(choice.shard_mpx):g} Mpx (BATCH_CAP x the shard): every batch job's memory (and jobs per "
               f"node) is the largest batch's, its time the mean batch's, in the simulation too (a last wave of "
               f"larger batches ends later than either says)")
    out.append(f"preemption {preemption:g} per spot node-hour (given)")
    if w is not None and (above := oversized(w, choice.shard_mpx)):
        out.append(above)
    if w is not None and w.timelapses_left_out:
        out.append(left_out(w))
    out.append(f"workload: stored {Workload.mb_per_mpx} MB and written {Workload.out_mb_per_mpx} MB per Mpx unless "
               f"given")
    seg_rate = profiles[choice.segment.machine].rules.get(SEGMENT_RULE)
    if w is not None and seg_rate is not None and seg_rate.holds_fields and not w.decoded_mb_per_mpx:
        out.append(f"{choice.segment.machine}: {SEGMENT_RULE} holds its batch's fields decoded, taken as the stored "
                   f"{w.fields_mb_per_mpx:g} MB per Mpx (one uint16 channel; --sheet reads them from the images' "
                   f"headers, or give --decoded-mb-per-mpx)")
    if w is not None and not w.images_per_folder:
        out.append(f"input folders taken as at most {LIST_PAGE:,} images (one list call a segment or export job: "
                   f"the GCS storage plugin lists the folder of a job's inputs); plan with --sheet to count them")
    out += [f"{fmt}: {x.objects_per_image:g} Cloud Storage objects and {x.mb_per_mpx:g} MB per Mpx an image "
            f"({x.rule}; measured on 1024^2 one-channel fields, assumed for other images: plan with --pilot)"
            for fmt, x in EXPORTS.items() if x in exports]
    if w is not None and w.mcquant:
        out.append(f"mcquant: {MCQUANT.fixed_s:g} s + {MCQUANT.s_per_mpx:g} s/Mpx of the run and one Cloud Storage "
                   f"object per image and compartment; {MCQUANT.how}")
    out.append(f"prices: {prices.name} ({prices.date}); {prices.notes}")
    return out


def describe(plan_: Plan, profiles=None) -> str:
    """The plan as a person reads it (``profiles``: the throughput profiles it was planned with, to say where the
    segment figures come from)."""
    w = plan_.workload
    j, p = plan_.to_json(), plan_.prediction
    limit = f"{plan_.limit:g} h" if plan_.objective.endswith("deadline") else f"${plan_.limit:g}"
    lines = [f"{w.images} image{'s' if w.images != 1 else ''} x {w.mpx_per_image:g} Mpx = {w.total_mpx:g} Mpx, "
             f"output.formats "
             f"{', '.join(w.formats) or 'none'}, labels {w.label_files.replace('_', ' ')}, fields "
             f"{w.read_fields}, segment.augment "
             f"{w.augment}; {plan_.objective} ({limit}); {plan_.candidates} configurations considered in "
             f"{plan_.solve_s:.2f} s",
             f"predicted: {p.hours:.2f} h, ${p.cost_usd:.2f} (${j['cost_per_1000_mpx_usd']:.4f} per 1,000 Mpx)"]
    for pool in j["pools"]:
        lines.append(f"  pool {pool['name']}: {pool['count']} x {pool['machine_type']}"
                     f"{' (' + str(pool['gpus_per_node']) + ' GPU)' if pool['gpus_per_node'] else ''}"
                     f"{', spot' if pool['spot'] else ', on demand'}")
    lines.append(f"  shard {plan_.choice.shard_mpx:g} Mpx: {p.segment_jobs} segment_batch jobs (batches of about "
                 f"{plan_.choice.shard_mpx:g} Mpx, memory for up to {batch_mpx(plan_.choice.shard_mpx):g}); "
                 f"Snakemake jobs {p.jobs}")
    same = plan_.choice.segment == plan_.choice.tail and w.exports   # the exports then run within the segment phase
    lines.append("  phases: " + ", ".join(f"{k}{' (with the exports)' if k == 'segment' and same else ''} {v:.2f} h"
                                          for k, v in p.phases_h.items() if v > 0 or k == "segment"))
    lines.append("  cost: " + ", ".join(f"{k} ${v:.2f}" for k, v in p.breakdown.items()))
    if p.round_requests:
        lines.append(f"  Snakemake's scheduling rounds while jobs wait: {p.round_requests:,.0f} class B requests "
                     f"(${class_b_usd(plan_.prices, p.round_requests):,.2f}, in operations)")
    lines += [f"  note: {n}" for n in p.notes]
    if above := oversized(w, plan_.choice.shard_mpx):
        lines.append(f"  warning: {above}")
    if w.timelapses_left_out:
        lines.append(f"  warning: {left_out(w)}")
    if plan_.simulated:
        lines += _describe_simulated(plan_)
    seg = plan_.choice.segment.machine
    lines.append(f"  figures: prices {plan_.prices.name} ({plan_.prices.date}; storage, network and the cluster fee "
                 f"are list prices); segment_batch on {seg}: {_origin(profiles, seg)}; "
                 f"{len(plan_.assumptions)} assumptions (figures not measured): see --json")
    return "\n".join(lines)


def _origin(profiles, machine: str) -> str:
    """Whether a machine type's segment_batch figures were measured (and where) or assumed."""
    rate = profiles[machine].rate(SEGMENT_RULE) if profiles and machine in profiles else None
    if rate is None:
        return "figures not known here"
    where = re.search(r"measured (\d{4}-\d\d-\d\d) on ([^:;,]+)", rate.how or "")
    return rate.origin + (f" {where.group(1)} on {where.group(2)}" if rate.origin == "measured" and where else "")


def _describe_simulated(plan_: Plan) -> list[str]:
    j, s = plan_.simulated.to_json(plan_.prediction, plan_.workload.total_mpx), plan_.simulated
    what, unit = ("deadline", "h") if plan_.objective.endswith("deadline") else ("budget", "$")

    def limit(x: float) -> str:
        return f"{x:.2f} h" if unit == "h" else f"${x:.2f}"

    spread = (f" ({j['seeds']} seeds: {j['hours_range'][0]:.2f}-{j['hours_range'][1]:.2f} h, "
              f"${j['cost_range'][0]:.2f}-${j['cost_range'][1]:.2f}; {j['preemptions']:.1f} preemptions)"
              if j["seeds"] > 1 else " (one run: nothing is random)")
    lines = [f"simulated (SimPy, {s.seconds:.1f} s): {s.hours:.2f} h, ${s.cost_usd:.2f}{spread}; the prediction is "
             f"{j['prediction_error_hours']:+.1%} in time, {j['prediction_error_cost']:+.1%} in cost"]
    for r in s.replans:
        lines.append(f"  planned again: {r['configuration']} was predicted {r['predicted_hours']:.2f} h, "
                     f"${r['predicted_cost_usd']:.2f} (within {limit(r['planned_within'])}) and simulated "
                     f"{r['simulated_hours']:.2f} h, ${r['simulated_cost_usd']:.2f}, past the {what}")
    if not s.meets_limit:
        lines.append(f"  warning: the simulated run misses the {what} ({limit(plan_.limit)}): {s.unmet}. Ask for "
                     f"a {'later deadline' if what == 'deadline' else 'larger budget'}, or allow more nodes or GPUs")
    if j["failed_jobs"]:
        lines.append(f"  warning: {j['failed_jobs']} jobs ran out of retries in the simulated runs (preemption)")
    return lines


def segment_memory_mb(machine, rate, mpx: float) -> int:
    """A segment rule's memory request for jobs of at most ``mpx`` (segment: a shard, ``tiling.shard_mpx``;
    segment_batch: the largest batch, :func:`.model.batch_mpx`): 1.5 x the model's figure, in 500 MB steps, but
    never more than the node's share of each of the plan's jobs on it (a pod that asks for more than a node has is
    never scheduled, and the plan packed its jobs by the model's figure for the largest batch), nor less than the
    figure."""
    need = rate.memory_mb(mpx)
    share = allocatable_mb(machine) / max(1, slots_per_node(machine, rate, mpx))
    return int(max(math.ceil(need), min(math.ceil(1.5 * need / 500) * 500, share // 100 * 100)))


def profile_fragment(plan_: Plan, gke_profile: Path | str = "profiles/gke", profiles=None) -> dict:
    """The workflow profile for the plan: ``jobs``, every rule of the GKE profile's ``set-resources`` with the plan's
    machine types (and the segment rules' memory from its profile: 1.5 x the model for a shard, and for
    segment_batch the largest batch, in 500 MB steps), its
    ``set-threads`` with the segment rule's threads from its profile (what its jobs per node assume: each pod requests
    ``threads x`` the plugin's cpu-scalar), and the shard size through ``configfile`` (see the module docstring for
    why)."""
    base = yaml.safe_load(Path(gke_profile, "config.yaml").read_text()) or {}
    resources = {rule: dict(v) for rule, v in (base.get("set-resources") or {}).items()}
    seg, tail = plan_.choice.segment, plan_.choice.tail
    seg_m = plan_.prices.machine(seg.machine)
    for rule in list(resources) + [r for r in CPU_RULES_OF_PROFILE if r not in resources]:
        res = resources.setdefault(rule, {})
        if rule in ("segment", SEGMENT_RULE) and seg_m.gpus:
            res.update(machine_type=seg.instance_type, gpu=seg_m.gpus, gpu_manufacturer="nvidia", scale=0)
        else:
            for key in ("gpu", "gpu_manufacturer", "scale"):
                res.pop(key, None)
            res["machine_type"] = tail.instance_type
    threads = dict(base.get("set-threads") or {})
    if profiles is not None:
        # memory (with the workload's fields where the job holds them) and threads: the same for every augment
        rate = held_fields(profiles[seg.machine].rate(SEGMENT_RULE), plan_.workload)
        shard = plan_.choice.shard_mpx
        # a large image's shards hold tiling.shard_mpx; a batch up to BATCH_CAP times that (the plan packed its jobs so)
        for rule, mpx in (("segment", shard), (SEGMENT_RULE, batch_mpx(shard))):
            resources.setdefault(rule, {})["mem_mb"] = segment_memory_mb(seg_m, rate, mpx)
        threads[SEGMENT_RULE] = rate.threads   # the vCPUs its figures and the plan's jobs per node assume
    # a rule no set-resources names goes to the CPU pool too (profiles/gke's default type may be no pool of the plan);
    # the key replaces the --profile's as a whole, so the rest of its default-resources is repeated
    defaults = {**(base.get("default-resources") or {}), "machine_type": tail.instance_type}
    frag = {"jobs": plan_.prediction.jobs, "default-resources": defaults, "set-resources": resources}
    if threads:
        frag["set-threads"] = threads
    return {**frag, "configfile": PLAN_CONFIG}


def write_outputs(plan_: Plan, out_dir: Path | str, profiles=None,
                  gke_profile: Path | str = "profiles/gke") -> tuple[Path, ...]:
    """``DIR/plan.json``, ``DIR/config.yaml`` (the workflow profile) and ``DIR/plan-config.yaml`` (the settings the
    plan priced: shard size, segment.augment, batches.label_files and read_fields, output.formats; and the cost
    report's placement: this profile, its pools' spot or on-demand);
    with a simulated plan also ``DIR/simulated.png``, nodes and running jobs over time (:func:`.simulate.figure`)."""
    frag = profile_fragment(plan_, gke_profile, profiles)   # first: a missing profile leaves no file behind
    w = plan_.workload
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / PLAN_CONFIG).write_text(yaml.safe_dump({"tiling": {"shard_mpx": _number(plan_.choice.shard_mpx)},
                                                   "segment": {"augment": w.augment},
                                                   "batches": {"label_files": w.label_files,
                                                               "read_fields": w.read_fields},
                                                   "output": {"formats": list(w.formats)},
                                                   # results/cost.tsv prices the run on the plan's pools
                                                   "cost": {"placement_profile": str(out),
                                                            "cpu_spot": plan_.choice.tail.spot,
                                                            "gpu_spot": plan_.choice.segment.spot}}))
    header = ("# Written by `cellscale plan` (plan.json beside it). Use with the GKE profile:\n"
              "#   snakemake --profile profiles/gke --workflow-profile THIS_FOLDER\n"
              "# Snakemake takes each key here as a whole over the --profile's (no merge of set-resources per rule),\n"
              "# so every rule of profiles/gke's set-resources is repeated with the plan's machine types. The shard\n"
              "# size, segment.augment, batches.label_files and read_fields and output.formats the plan priced are\n"
              f"# in {PLAN_CONFIG}, with cost.placement_profile: this folder (results/cost.tsv prices these pools)\n"
              "# (merged over config/config.yaml; --config would pass them as strings).\n")
    (out / "config.yaml").write_text(header + yaml.safe_dump(frag, sort_keys=False, width=120))
    (out / "plan.json").write_text(json.dumps(plan_.to_json(), indent=2) + "\n")
    written = [out / "plan.json", out / "config.yaml", out / PLAN_CONFIG]
    (out / SIMULATED_FIGURE).unlink(missing_ok=True)   # an earlier plan's, in the same folder
    if plan_.simulated:
        run, p = plan_.simulated.runs[0], plan_.prediction   # a dollar sign is escaped: matplotlib's mathtext
        written.append(figure(run, out / SIMULATED_FIGURE, f"{w.images} images x {w.mpx_per_image:g} Mpx: "
                              f"{_describe(plan_.choice)}\nsimulated (seed 0): {run.hours:.2f} h, "
                              f"\\${run.cost_usd:.2f}; predicted {p.hours:.2f} h, \\${p.cost_usd:.2f}"))
    return tuple(written)


def workload_from_sheet(sheet: Path | str, workers: int = 8) -> Workload:
    """The workload of a sample sheet's still images: their count and mean megapixels (``Y * X * scale²``), from
    the sheet's ``height`` and ``width`` where it has them, else from each file's header
    (:func:`cellscale.io.image_header`; then the workflow's plan downloads the images too: ``sizes_in_sheet``).
    Time-lapse rows are left out (the planner models batched still images). Image paths relative to the current
    folder, as the workflow reads them. ``compartments``: 2 where most rows name a membrane channel (the whole-cell
    model), else 1; ``images_per_folder``: the most image files in one folder; ``largest_image_mpx``: the largest
    image; ``decoded_mb_per_mpx``: the most bytes a pixel of the model's takes decoded (bytes per pixel x channels /
    scale², as a batch job holds a field) among the headers read, the first image's alone where the sheet gives
    every size (0, the workload's default, where it cannot be read)."""
    from concurrent.futures import ThreadPoolExecutor

    import pandas as pd

    from cellscale.io import image_files, image_header
    from cellscale.settings import planning_scale

    rows = pd.read_csv(sheet, sep="\t", dtype=str, keep_default_na=False, comment="#")
    n_rows = len(rows)
    if "kind" in rows:
        rows = rows[rows["kind"] != "timelapse"]
    if rows.empty:
        raise ValueError(f"{sheet}: no still images")
    samples = list(rows["sample"] if "sample" in rows else range(1, len(rows) + 1))

    def cell(column: str, i: int, parse):   # a bad cell: an error naming the sheet, the sample and the column
        text = rows[column].iloc[i] if column in rows else ""
        try:
            return parse(text)
        except ValueError as err:
            raise ValueError(f"{sheet}: sample {samples[i]!r}: {err}") from None

    def pixels(column: str):
        def parse(text: str) -> int | None:
            if not text.strip():
                return None
            try:
                value = int(text)
            except ValueError:
                value = 0
            if value < 1:
                raise ValueError(f"{column} must be a whole number of pixels, at least 1, got {text!r}")
            return value
        return parse

    scales = [cell("scale", i, planning_scale) for i in range(len(rows))]
    given = [(h, w) if h and w else None for h, w in
             ((cell("height", i, pixels("height")), cell("width", i, pixels("width"))) for i in range(len(rows)))]
    todo = [i for i, size in enumerate(given) if size is None]
    decoded = []   # MB per Mpx of the model's pixels, of each header read
    with ThreadPoolExecutor(workers) as pool:
        for i, header in zip(todo, pool.map(image_header, [rows["image"].iloc[i] for i in todo])):
            if header is None:
                raise ValueError(f"{sheet}: sample {rows['sample'].iloc[i]!r}: {rows['image'].iloc[i]}: cannot "
                                 "read its size (no such file, or not an image)")
            given[i] = header.height, header.width
            decoded.append(header.bytes_per_pixel / scales[i] ** 2)
    if not todo and (header := image_header(rows["image"].iloc[0])) is not None:   # a screen's fields share a format
        decoded.append(header.bytes_per_pixel / scales[0] ** 2)
    sizes = [h * w * scale ** 2 / 1e6 for (h, w), scale in zip(given, scales)]
    # a row with a membrane channel gets the whole-cell model: nuclear and whole-cell labels (two label images)
    membrane = (rows["membrane_channel"].str.strip() != "").mean() if "membrane_channel" in rows else 0.0
    ordered = sorted(sizes)
    files = rows["image"].map(image_files).explode()  # every file of an image of one file per channel
    folders = files.map(lambda p: os.path.dirname(os.path.normpath(p))).value_counts()
    return Workload(len(sizes), sum(sizes) / len(sizes), sizes_in_sheet=not todo, compartments=round(1 + membrane),
                    images_per_folder=int(folders.max()), largest_image_mpx=max(sizes),
                    decoded_mb_per_mpx=max(decoded, default=0.0),
                    above_shard=tuple((s, len(ordered) - bisect.bisect_right(ordered, s)) for s in SHARDS),
                    timelapses_left_out=n_rows - len(rows))
