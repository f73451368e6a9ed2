"""cellscale plan: shipped price tables and profiles, the planner against brute force, budgets, quotas, infeasible
requests, the command line's JSON and the workflow profile it writes (a real Snakemake dry run)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from support import ROOT

from cellscale.cli import main
from cellscale.cost.model import (EXPORTS, Choice, Overheads, PoolChoice, Workload, allocatable_mb, export_nodes, fits,
                                  held_fields, job_figures, predict, segment_job_s, segment_rate, slots_per_node)
from cellscale.cost.plan import Infeasible, describe, load_profiles, plan, profile_fragment, write_outputs
from cellscale.cost.prices import load_prices
from cellscale.cost.simulate import simulate, simulate_mean
from cellscale.settings import BATCH_CAP, default

PRICES = load_prices(ROOT / "config/prices/gke-us-central1.yaml")
PROFILES = load_profiles(ROOT / "config/throughput")
SMALL = ["e2-standard-4", "n2-standard-8", "g2-standard-4"]
# the launcher's Cloud Storage requests about every field left out (a shared filesystem's speed): for the tests of
# other mechanics on workloads whose launcher alone would take longer than their deadlines
NO_LAUNCHER = Overheads(storage_call_s=0.0)
NO_LAUNCHER_CLI = ["--storage-call-ms", "0"]
TWO_TYPES = ["g2-standard-4", "n2-standard-16"]


def plan_runs(capsys, args: list[str], cases: dict[str, list[str]]) -> dict[str, dict]:
    """`cellscale plan ARGS --json EXTRA` for each named case's EXTRA: its JSON answer (each must succeed)."""
    runs = {}
    for name, extra in cases.items():
        assert main(["plan", *args, "--json", *extra]) == 0, name
        runs[name] = json.loads(capsys.readouterr().out)
    return runs



def counted_ops(p) -> float:
    """A prediction's Cloud Storage operations less its scheduling rounds' requests (those depend on the run's
    time; the rounds' own tests are in test_cost_simulate.py)."""
    return p.breakdown["operations"] - p.round_requests / 1e4 * PRICES.storage["gcs_class_b_per_10k"]


def test_shipped_price_tables_are_complete():
    for name in ("e2-standard-4", "e2-standard-8", "n2-standard-4", "n2-standard-8", "n2-standard-16",
                 "n1-standard-4", "n1-standard-8", "g2-standard-4", "g2-standard-8", "n1-standard-4-t4",
                 "a2-highgpu-1g", "a3-highgpu-1g", "e2-medium"):
        m = PRICES.machine(name)
        assert 0 < m.spot < m.on_demand, name
    assert {m.gpu for m in PRICES.machines.values() if m.gpus} == {"L4", "T4", "A100-40GB", "H100-80GB"}
    assert "017e2502fb63c7a28757acd94002b2d6099d3e3d" in PRICES.source and PRICES.date == "2026-12-03"
    for key in ("pd_balanced_gb_month", "gcs_standard_gb_month", "gcs_class_a_per_10k", "gcs_class_b_per_10k"):
        assert PRICES.storage[key] > 0
    assert PRICES.network["egress_internet_gb"] > 0 and PRICES.cluster["management_fee_usd_h"] == 0.10
    kiosk = load_prices(ROOT / "config/prices/kiosk-2021.yaml")
    assert kiosk.extra["reference"] == {**kiosk.extra["reference"], "images": 1000000, "hours": 5.5, "cost_usd": 250}


SHIPPED = ("e2-standard-4", "e2-standard-8", "n1-standard-4", "n1-standard-8", "n2-standard-4", "n2-standard-8",
           "n2-standard-16", "g2-standard-4", "g2-standard-8", "n1-standard-4-t4", "a2-highgpu-1g", "a3-highgpu-1g")


def test_every_shipped_profile_is_priced_labelled_and_complete():
    for machine in SHIPPED:
        profile, m = PROFILES[machine], PRICES.machine(machine)
        assert profile.rate("plan_batches")
        assert all(r.origin in ("measured", "assumed") and len(r.how) > 40 for r in profile.rules.values())
        seg = profile.rate("segment_batch")
        assert seg.gpu == bool(m.gpus), machine
        if not m.gpus:   # CPU machines run the tail too
            assert {"plan_batches", "aggregate_measurements", "report_fields", "summary"} <= set(profile.rules)


def test_default_profiles_are_the_shipped_ones_with_the_current_folders_own_in_their_place(tmp_path, monkeypatch):
    """Outside a checkout: the shipped profiles and tables; a profile of your own in ./config/throughput replaces
    the shipped one of its machine type (the others stay), and a bare table name finds ./config/prices first."""
    monkeypatch.chdir(tmp_path)
    shipped = load_profiles()
    assert set(SHIPPED) <= set(shipped) and load_prices().path.endswith("tables/prices/gke-us-central1.yaml")
    own = tmp_path / "config" / "throughput"
    own.mkdir(parents=True)
    doc = yaml.safe_load((ROOT / "config/throughput/n2-standard-16.yaml").read_text())
    doc["name"], doc["rules"]["segment_batch"]["how"] = "my-pilot", "fitted from my pilot run " * 3
    (own / "my-pilot.yaml").write_text(yaml.safe_dump(doc))
    mine = load_profiles()
    assert set(mine) == set(shipped) and mine["n2-standard-16"].name == "my-pilot"
    assert all(mine[m] == shipped[m] for m in shipped if m != "n2-standard-16")
    assert set(load_profiles(own)) == {"n2-standard-16"}   # a folder named: that folder alone
    (tmp_path / "config" / "prices").mkdir()
    (tmp_path / "config" / "prices" / "gke-us-central1.yaml").write_bytes(
        (ROOT / "config/prices/gke-us-central1.yaml").read_bytes())
    assert load_prices().path == "config/prices/gke-us-central1.yaml"


def test_workload_jobs_follow_plan_batches_packing():
    assert Workload(1000, 1.0).jobs(16) == 63
    assert Workload(1000, 0.065536).jobs(16) == 5        # 244 fields of 256² per batch
    assert Workload(10, 3.0).jobs(4) == 10                # one 3-Mpx image per 4-Mpx shard


def _brute_force(w, deadline=None, budget=None, max_gpus=None, max_nodes=12, shards=(8.0, 16.0)):
    best = None
    for seg_m, spot, shard in itertools.product(SMALL, (True, False), shards):
        machine, rate = PRICES.machine(seg_m), PROFILES[seg_m].rate("segment_batch")
        if not fits(machine, rate, shard):
            continue
        tails = [seg_m] if not machine.gpus else [m for m in SMALL if not PRICES.machine(m).gpus]
        for n, t, n_t in itertools.product(range(1, max_nodes + 1), tails, range(1, max_nodes)):
            if n_t == 1 or t != seg_m:   # a separate CPU pool of n_t nodes for the exports and the tail
                seg = PoolChoice("gpu" if machine.gpus else "cpu", seg_m, n, spot)
                tail = seg if t == seg_m else PoolChoice("cpu", t, n_t, spot)
                c = Choice(seg, tail, shard)
                gpus = sum(PRICES.machine(pc.machine).gpus * pc.nodes for pc in c.pools)
                if sum(pc.nodes for pc in c.pools) > max_nodes or (max_gpus is not None and gpus > max_gpus):
                    continue
                p = predict(w, c, PROFILES, PRICES, Overheads(), 0.05)
                if deadline is not None and p.hours <= deadline:
                    key = p.cost_usd
                elif budget is not None and p.cost_usd <= budget:
                    key = p.hours
                else:
                    continue
                if best is None or key < best[0]:
                    best = (key, c, p)
    return best


def test_plan_meets_the_deadline_at_the_brute_force_minimum_cost():
    w = Workload(3000, 1.0)
    best = _brute_force(w, deadline=1.0)
    p = plan(w, PROFILES, PRICES, deadline_h=1.0, max_nodes=12, preemption=0.05, machines=SMALL,
             shards=(8.0, 16.0))
    assert p.prediction.hours <= 1.0
    assert p.prediction.cost_usd == pytest.approx(best[0], rel=1e-9)
    # and a looser deadline never costs more
    assert plan(w, PROFILES, PRICES, deadline_h=3.0, max_nodes=12, preemption=0.05, machines=SMALL,
                shards=(8.0, 16.0)).prediction.cost_usd <= p.prediction.cost_usd + 1e-12


def test_budget_mode_is_the_fastest_run_within_the_budget():
    w = Workload(3000, 1.0)
    cheapest = _brute_force(w, deadline=1e9)[0]
    budget = cheapest * 1.3
    best = _brute_force(w, budget=budget)
    p = plan(w, PROFILES, PRICES, budget_usd=budget, max_nodes=12, preemption=0.05, machines=SMALL,
             shards=(8.0, 16.0))
    assert p.prediction.cost_usd <= budget
    assert p.prediction.hours == pytest.approx(best[0], rel=1e-9)


def test_shards_above_64_mpx_only_for_workloads_of_small_images():
    from cellscale.cost.plan import BATCHED_FIELD_MPX, SHARDS

    assert max(SHARDS) > BATCHED_FIELD_MPX
    kiosk = Workload(10**5, 1.0, run_tables=False, formats=("ome-tiff",), label_files="per_batch")
    big = plan(kiosk, PROFILES, PRICES, deadline_h=6, max_nodes=100, preemption=0.05, o=NO_LAUNCHER)
    small = plan(kiosk, PROFILES, PRICES, deadline_h=6, max_nodes=100, preemption=0.05, o=NO_LAUNCHER,
                 shards=tuple(s for s in SHARDS if s <= BATCHED_FIELD_MPX))
    # larger batches spread each job's fixed seconds over more images: the planner takes one when it is cheaper
    assert big.choice.shard_mpx > BATCHED_FIELD_MPX and big.prediction.cost_usd < small.prediction.cost_usd
    # one 100-Mpx image in the sheet: a shard that large would batch it, so the plan keeps to 64 Mpx
    mixed = plan(dataclasses.replace(kiosk, largest_image_mpx=100.0), PROFILES, PRICES, deadline_h=6, max_nodes=100,
                 preemption=0.05, o=NO_LAUNCHER)
    assert mixed.choice.shard_mpx <= BATCHED_FIELD_MPX
    assert mixed.prediction.cost_usd == pytest.approx(small.prediction.cost_usd)
    with pytest.raises(Infeasible, match=r"larger than the largest shard \(64 Mpx\)"):   # and says so
        plan(Workload(100, 100.0), PROFILES, PRICES, deadline_h=6)


def test_max_gpus_is_respected():
    w = Workload(20000, 1.0)
    p = plan(w, PROFILES, PRICES, deadline_h=12, max_gpus=3, preemption=0.0, segment_machines=["g2-standard-4"])
    assert sum(PRICES.machine(pc.machine).gpus * pc.nodes for pc in p.choice.pools) <= 3
    assert p.choice.segment.machine == "g2-standard-4" and p.prediction.hours <= 12


def test_infeasible_requests_say_what_they_need():
    w = Workload(20000, 1.0)
    with pytest.raises(Infeasible, match=r"needs at least \d+ L4 GPUs \(g2-standard-4\).*quota: max_gpus 2"):
        plan(Workload(100000, 1.0), PROFILES, PRICES, deadline_h=1.0, max_gpus=2, segment_machines=["g2-standard-4"],
             o=NO_LAUNCHER)
    # (fields staged: what reading them directly would give, when even that is too slow)
    with pytest.raises(Infeasible, match=r"cannot be met with any number of nodes.*the fastest run would take \d"):
        plan(w, PROFILES, PRICES, deadline_h=0.01)
    # the launcher asks Cloud Storage about every field, one request after another: no node count shortens that,
    # and the message names it with its share (20,000 fields x 12.25 requests x 20 ms: 1.36 h, and the jobs')
    with pytest.raises(Infeasible, match=r"launcher's Cloud Storage requests about every field 1\.[34]\d h "
                                         r"\(20 ms each") as staged:
        plan(w, PROFILES, PRICES, deadline_h=1.2)
    # ... and says what reading the fields in the jobs would give, within the same quota: the plan of direct itself
    direct = plan(dataclasses.replace(w, read_fields="direct"), PROFILES, PRICES, deadline_h=1.2)
    assert (f"--read-fields direct) the jobs download their fields and the launcher asks about none: within the quota "
            f"the cheapest run that meets the deadline takes {direct.prediction.hours:.2f} h, "
            f"${direct.prediction.cost_usd:.2f}") in str(staged.value)
    with pytest.raises(Infeasible) as direct_too_slow:   # nothing to suggest when the fields are read directly
        plan(dataclasses.replace(w, read_fields="direct"), PROFILES, PRICES, deadline_h=0.01)
    assert "--read-fields" not in str(direct_too_slow.value)
    with pytest.raises(Infeasible) as no_requests:   # ... nor when the launcher's requests take no time
        plan(w, PROFILES, PRICES, deadline_h=0.01, o=NO_LAUNCHER)
    assert "cannot be met" in str(no_requests.value) and "--read-fields" not in str(no_requests.value)
    assert plan(w, PROFILES, PRICES, deadline_h=1.2, o=NO_LAUNCHER).prediction.hours <= 1.2
    with pytest.raises(Infeasible, match=r"budget \$0.01 is too small: the cheapest run costs"):
        plan(w, PROFILES, PRICES, budget_usd=0.01)


def test_cli_json(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert main(["plan", "--images", "5000", "--mpx", "1", "--deadline", "2", "--max-gpus", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("predicted_hours", "cost_usd", "cost_per_1000_mpx_usd", "pools", "shard_mpx", "jobs",
                "cost_breakdown", "assumptions"):
        assert key in out, key
    assert out["predicted_hours"] <= 2
    assert out["cost_usd"] == pytest.approx(sum(out["cost_breakdown"].values()), rel=1e-3)
    assert out["cost_per_1000_mpx_usd"] == pytest.approx(out["cost_usd"] / 5000 * 1000, rel=1e-3)
    for pool in out["pools"]:
        assert pool["name"] in ("gpu", "spot-cpu", "cpu") and pool["count"] >= 1
        assert {"machine_type", "spot", "gpus_per_node"} <= set(pool)
    assert all(isinstance(a, str) for a in out["assumptions"]) and len(out["assumptions"]) > 10
    assert out["prices"]["region"] == PRICES.region   # what cellscale gke up --plan compares with the cluster's
    assert any("launcher_mb_s" in a for a in out["assumptions"])
    # the Cloud Storage request counts are measured; their latency is not
    assert any("storage_call_s" in a for a in out["assumptions"])
    assert not any("class_b_per_download" in a or "launcher_b_per_image" in a for a in out["assumptions"])
    assert not any("round_b" in a for a in out["assumptions"]) and out["launcher_round_requests"] >= 0
    # readable output and an infeasible request's exit status
    assert main(["plan", "--images", "5000", "--budget", "100"]) == 0
    out = capsys.readouterr().out
    assert "predicted:" in out and "least time within budget ($100);" in out   # the limit with its unit
    # where the figures come from, in the readable output too: the price table's date, the segment figures' origin
    assert f"figures: prices {PRICES.name} ({PRICES.date};" in out and "segment_batch on " in out
    assert re.search(r"segment_batch on [\w-]+: (measured|assumed)", out)
    assert main(["plan", "--images", "100000", "--deadline", "1", "--max-gpus", "1", "--segment-machines",
                 "g2-standard-4"]) == 2
    assert "infeasible" in capsys.readouterr().err


def test_an_export_pool_larger_than_keeps_up_raises_snakemakes_jobs_and_lets_staged_segment_jobs_flow():
    """10^4 staged fields of 16 16-bit channels (32 MB/Mpx decoded, which a GPU segment_batch job holds for its
    batch), the shipped formats, within 1.45 h on L4s (g2-standard-8, whose memory holds the largest batch of 256-Mpx
    shards, 512 Mpx, not that of 512-Mpx shards; a g2-standard-4's holds that of 128-Mpx shards only, since batches
    are cut by content). One n2-standard-16 keeps up with 2 L4's exports, but with it Snakemake's jobs are 18 and
    the waves wait for whole rounds (7-14 min while thousands of fields wait): simulated 1.56 h, past the deadline. A
    maximum of 2 export nodes gives 34 jobs: the segment jobs flow between waves. The planner once tried export pools
    only up to the nodes that keep up; this is 10% cheaper than that, within the deadline, and the prediction agrees
    with the simulation."""
    w = Workload(10**4, 1.0, read_fields="staged", decoded_mb_per_mpx=32.0)
    p = plan(w, PROFILES, PRICES, deadline_h=1.45, segment_machines=["g2-standard-8"])
    c = p.choice
    assert (c.segment.nodes, c.tail.nodes) == (2, 2) and export_nodes(w, c, PROFILES, PRICES) == 1
    assert p.prediction.jobs == 2 + 2 * 16
    r = simulate(w, c, PROFILES, PRICES)
    kept = simulate(w, dataclasses.replace(c, tail=dataclasses.replace(c.tail, nodes=1)), PROFILES, PRICES)
    assert r.hours <= 1.45 < kept.hours and r.cost_usd < 0.92 * kept.cost_usd
    assert p.prediction.hours == pytest.approx(r.hours, rel=0.02)
    assert p.prediction.cost_usd == pytest.approx(r.cost_usd, rel=0.02)
    # read directly, no round holds a segment job back: the export pools stay within what keeps up
    w = Workload(100, 64.0, read_fields="direct")
    p = plan(w, PROFILES, PRICES, budget_usd=1.0, preemption=0.05, segment_machines=["n1-standard-4-t4"])
    assert p.choice.tail.nodes <= export_nodes(w, p.choice, PROFILES, PRICES)


def test_with_staged_fields_the_planner_tries_every_node_count_since_each_raises_snakemakes_jobs():
    """10^4 staged fields of 16 16-bit channels (32 MB/Mpx decoded), OME-TIFF labels alone, within 1 h on L4s: 40
    jobs of 256 Mpx (on g2-standard-8, whose memory holds their largest batches, 512 Mpx, not those of 512-Mpx shards;
    g2-standard-4 was the example before batches were cut by content).
    The planner tried, for each number of waves, only the fewest nodes that give it (14 for three, 20 for two),
    since more nodes for as many waves only cost more. With staged fields each node also adds to Snakemake's jobs,
    and so shortens the rounds the waves wait for. It chose 20 L4, whose waves each end just after a round ends
    (on g2-standard-4: simulated 1.13 h and $2.76, past the deadline). 18 nodes are predicted faster and cheaper
    than 20, and the simulation agrees."""
    w = Workload(10**4, 1.0, read_fields="staged", formats=("ome-tiff",), decoded_mb_per_mpx=32.0)
    p = plan(w, PROFILES, PRICES, deadline_h=1.0, segment_machines=["g2-standard-8"])
    assert p.choice.segment.nodes not in (14, 20, 40) and p.prediction.segment_jobs == 40
    r = simulate(w, p.choice, PROFILES, PRICES)
    twenty = simulate(w, dataclasses.replace(p.choice, segment=dataclasses.replace(p.choice.segment, nodes=20)),
                      PROFILES, PRICES)
    assert r.hours <= 1.0 and r.cost_usd < twenty.cost_usd
    assert p.prediction.hours == pytest.approx(r.hours, rel=0.02)
    assert p.prediction.cost_usd == pytest.approx(r.cost_usd, rel=0.02)


def test_a_plan_whose_simulated_run_misses_the_deadline_is_planned_again(tmp_path):
    """5,000 staged fields of 16 16-bit channels (32 MB/Mpx decoded) on L4s (g2-standard-8, whose memory holds the
    largest batches of 256-Mpx shards of such fields, 512 Mpx; with one channel every shard fits, and the prediction
    alone meets the deadline), OME-TIFF labels alone, the deadline just above what 4 L4 are predicted to take:
    the simulated run is 2% longer (the scheduling rounds between waves; docs/cost.md) and misses it. The checked
    plan solves again within the limit scaled by that error and keeps the first configuration whose simulated run
    meets it, naming the one it turned down."""
    w = Workload(5000, 1.0, read_fields="staged", formats=("ome-tiff",), decoded_mb_per_mpx=32.0)
    machines = ["g2-standard-8"]
    unchecked = plan(w, PROFILES, PRICES, deadline_h=0.75, segment_machines=machines)
    first = simulate(w, unchecked.choice, PROFILES, PRICES)
    assert unchecked.prediction.hours <= 0.75 < first.hours     # the premise: the prediction alone misses
    checked = plan(w, PROFILES, PRICES, deadline_h=0.75, segment_machines=machines, simulate_seeds=2)
    s = checked.simulated
    assert s.meets_limit and s.hours <= 0.75 and len(s.runs) == 1      # no preemption: one run, nothing is random
    assert s.hours == pytest.approx(simulate(w, checked.choice, PROFILES, PRICES).hours)
    assert checked.choice != unchecked.choice and checked.prediction.hours < unchecked.prediction.hours
    assert [r["simulated_hours"] for r in s.replans][0] == pytest.approx(first.hours, abs=1e-4)
    assert s.replans[0]["planned_within"] == 0.75 and checked.limit == 0.75
    j = checked.to_json()["simulated"]
    assert j["prediction_error_hours"] == pytest.approx(checked.prediction.hours / s.hours - 1, abs=1e-4)
    paths = write_outputs(checked, tmp_path / "plan", PROFILES, ROOT / "profiles/gke")
    assert (tmp_path / "plan" / "simulated.png") in paths
    assert (tmp_path / "plan" / "simulated.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "plan" / "plan.json").read_text())["simulated"]["meets_limit"] is True
    write_outputs(unchecked, tmp_path / "plan", PROFILES, ROOT / "profiles/gke")   # no check: no figure left over
    assert not (tmp_path / "plan" / "simulated.png").exists()
    assert "simulated" not in json.loads((tmp_path / "plan" / "plan.json").read_text())
    # with 4 GPUs at most, no configuration is predicted within the deadline less that error: the plan says so
    quota = plan(w, PROFILES, PRICES, deadline_h=0.75, segment_machines=machines, max_gpus=4, simulate_seeds=1)
    assert quota.choice == unchecked.choice and not quota.simulated.meets_limit and not quota.simulated.replans
    within = 0.75 * unchecked.prediction.hours / first.hours   # the deadline less the prediction's error
    assert (f"misses the deadline (0.75 h): no configuration within the quotas is predicted within {within:.2f} h"
            in describe(quota))


def test_a_plan_whose_simulated_run_costs_more_than_the_budget_is_planned_again():
    """Budget mode: 10^5 fields of 16 16-bit channels (32 MB/Mpx decoded: a g2-standard-4 holds the largest batch of
    128-Mpx shards) on as many L4s as the budget buys; the prediction is 1% below the simulated cost, so the fastest
    plan within $20 costs $20.19 when simulated. The checked plan buys fewer nodes and stays within it;
    with 5% preemption the check runs three seeds."""
    w, machines = Workload(10**5, 1.0, read_fields="direct", decoded_mb_per_mpx=32.0), ["g2-standard-4"]
    unchecked = plan(w, PROFILES, PRICES, budget_usd=20, segment_machines=machines, preemption=0.05)
    assert simulate_mean(w, unchecked.choice, PROFILES, PRICES, Overheads(), 0.05, (0, 1, 2))[1] > 20
    checked = plan(w, PROFILES, PRICES, budget_usd=20, segment_machines=machines, preemption=0.05,
                   simulate_seeds=3)
    assert checked.simulated.meets_limit and checked.simulated.cost_usd <= 20 and len(checked.simulated.runs) == 3
    assert checked.choice.segment.nodes < unchecked.choice.segment.nodes and checked.simulated.replans


def test_a_plan_whose_simulated_run_meets_the_limit_keeps_its_choice(monkeypatch, capsys):
    """Where prediction and simulation agree (5,000 fields on CPU nodes) the check changes nothing; the command line
    checks by default and prints both, and --simulate 0 leaves the check out."""
    w = Workload(5000, 1.0)
    unchecked = plan(w, PROFILES, PRICES, deadline_h=2, preemption=0.05)
    checked = plan(w, PROFILES, PRICES, deadline_h=2, preemption=0.05, simulate_seeds=3)
    assert checked.choice == unchecked.choice and not checked.simulated.replans and checked.simulated.meets_limit
    assert checked.simulated.hours == pytest.approx(checked.prediction.hours, rel=0.10)
    monkeypatch.chdir(ROOT)
    runs = plan_runs(capsys, ["--images", "5000", "--deadline", "2"], {"default": [], "off": ["--simulate", "0"]})
    assert runs["default"]["simulated"]["seeds"] == 3 and "simulated" not in runs["off"]
    assert runs["default"]["simulated"]["hours"] == pytest.approx(checked.simulated.hours, rel=1e-3)
    assert main(["plan", "--images", "5000", "--deadline", "2"]) == 0
    assert "simulated (SimPy, " in capsys.readouterr().out


def test_export_formats_cost_their_jobs_and_their_objects():
    """The shipped output.formats add an ngff_batch and a spatialdata_batch job per batch and their files (one Cloud
    Storage object each); OME-TIFF labels alone cost what segment_batch writes."""
    full = Workload(10**5, 1.0, run_tables=False, read_fields="direct")   # staged, the rounds would pace them
    assert full.formats == tuple(default("output", "formats"))
    assert [x.rule for x in full.exports] == ["ngff_batch", "spatialdata_batch"]
    labels = dataclasses.replace(full, formats=("ome-tiff",))
    assert labels.exports == ()
    for seg in (PoolChoice("spot-cpu", "n1-standard-8", 20, True), PoolChoice("gpu", "g2-standard-4", 4, True)):
        tail = seg if not seg.machine.startswith("g2") else PoolChoice("spot-cpu", "n1-standard-8", 1, True)
        choice = Choice(seg, tail, 16.0)
        if tail is not seg:
            choice = Choice(seg, dataclasses.replace(tail, nodes=export_nodes(full, choice, PROFILES, PRICES)), 16.0)
        a, b = predict(full, choice, PROFILES, PRICES), predict(labels, choice, PROFILES, PRICES)
        objects = full.images * sum(x.objects_per_image for x in EXPORTS.values())
        extra_ops = counted_ops(a) - counted_ops(b)
        # + the exports' reads and each export pod's own checks (class B, 13 a file read, 85 a pod)
        assert extra_ops >= objects / 1e4 * PRICES.storage["gcs_class_a_per_10k"]
        assert extra_ops < 1.3 * objects / 1e4 * PRICES.storage["gcs_class_a_per_10k"]
        assert sum(v for k, v in a.breakdown.items() if k.startswith("compute")) > \
            sum(v for k, v in b.breakdown.items() if k.startswith("compute"))
        if tail is seg:
            assert a.hours > b.hours
        else:   # the export pool's slots also raise Snakemake's jobs (18 against 4 here), so each scheduling round
            # sends more segment jobs: that can save about what the exports' last job adds (seconds in 12 h)
            assert a.phases_h["exports"] > 0 == b.phases_h["exports"] and a.hours > b.hours - 60 / 3600
        assert any("Cloud Storage objects" in note for note in a.notes)
        assert not any("Cloud Storage objects" in note for note in b.notes)
    # a separate CPU pool: sized to keep up with the GPUs; with one node the exports trail far behind
    gpus = [Choice(PoolChoice("gpu", "g2-standard-4", g, True), PoolChoice("spot-cpu", "e2-standard-4", 1, True),
                   16.0) for g in (1, 8, 32)]
    nodes = [export_nodes(full, c, PROFILES, PRICES) for c in gpus]
    assert nodes == sorted(nodes) and nodes[-1] > nodes[0]
    big = gpus[-1]
    kept = Choice(big.segment, dataclasses.replace(big.tail, nodes=nodes[-1]), 16.0)
    slow, fast = predict(full, big, PROFILES, PRICES), predict(full, kept, PROFILES, PRICES)
    assert fast.phases_h["exports"] < 0.05 < slow.phases_h["exports"] and fast.hours < slow.hours
    # a planner that finds no CPU profile with an export rule says so
    stripped = {m: dataclasses.replace(p, rules={r: v for r, v in p.rules.items() if r != "spatialdata_batch"})
                for m, p in PROFILES.items()}
    with pytest.raises(Infeasible, match="spatialdata_batch.*cellscale throughput.*--formats"):
        plan(full, stripped, PRICES, deadline_h=24)
    assert plan(dataclasses.replace(full, formats=("ome-tiff", "ome-zarr")), stripped, PRICES, deadline_h=24)


def test_cli_prices_the_configs_output_formats(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(ROOT)
    config = tmp_path / "config.yaml"
    config.write_text("output:\n  formats: [ome-tiff]\n")
    runs = plan_runs(capsys, ["--images", "20000", "--deadline", "4", *NO_LAUNCHER_CLI],
                     {"default": [], "config": ["--config", str(config)], "flag": ["--formats", "ome-tiff"],
                      "zarr": ["--config", str(config), "--formats", "ome-zarr"]})
    assert runs["default"]["workload"]["formats"] == default("output", "formats")
    assert runs["config"]["workload"]["formats"] == runs["flag"]["workload"]["formats"] == ["ome-tiff"]
    assert runs["zarr"]["workload"]["formats"] == ["ome-zarr"]   # the flag beats the config
    assert runs["config"]["cost_usd"] < runs["zarr"]["cost_usd"] < runs["default"]["cost_usd"]
    assert any("spatialdata" in a for a in runs["default"]["assumptions"])
    assert not any("spatialdata" in a for a in runs["config"]["assumptions"])


def test_label_files_per_batch_write_a_file_per_batch_not_per_image(monkeypatch, capsys, tmp_path):
    """batches.label_files per_batch: the segment jobs write one label file per batch and compartment instead of one
    per image (each a Cloud Storage object), for a little more time per job (the files packed); the per-image plan
    says what it would save. The CLI takes it from --label-files, else the config, else the schema."""
    own = Workload(10**5, 1.0, run_tables=False, formats=("ome-tiff",))
    assert own.label_files == default("batches", "label_files") == "per_image"
    one = dataclasses.replace(own, label_files="per_batch")
    pool = PoolChoice("spot-cpu", "n2-standard-16", 4, True)
    choice = Choice(pool, pool, 64.0)
    jobs = own.jobs(64.0)
    assert (own.label_objects(jobs), one.label_objects(jobs)) == (10**5, jobs)
    assert dataclasses.replace(one, compartments=2).label_objects(jobs) == 2 * jobs
    with pytest.raises(ValueError, match="label_files must be per_image or per_batch, not 'per_field'"):
        dataclasses.replace(own, label_files="per_field")
    with pytest.raises(ValueError, match="segment.augment must be one of none, rot180, flips"):
        dataclasses.replace(own, augment="rot90")
    a, b = predict(own, choice, PROFILES, PRICES), predict(one, choice, PROFILES, PRICES)
    saved = (10**5 - jobs) / 1e4 * PRICES.storage["gcs_class_a_per_10k"]
    assert counted_ops(a) - counted_ops(b) == pytest.approx(saved)
    assert b.hours > a.hours and b.hours < 1.05 * a.hours   # the packing's read and write again
    assert any(f"{10**5 - jobs:,} fewer label files" in n for n in a.notes)
    assert not any("fewer label files" in n for n in b.notes)
    monkeypatch.chdir(ROOT)
    config = tmp_path / "config.yaml"
    config.write_text("batches:\n  label_files: per_batch\n")
    runs = plan_runs(capsys, ["--images", "100000", "--deadline", "4", *NO_LAUNCHER_CLI, "--formats", "ome-tiff"],
                     {"default": [], "config": ["--config", str(config)],
                      "flag": ["--config", str(config), "--label-files", "per_image"]})
    assert [r["workload"]["label_files"] for r in runs.values()] == ["per_image", "per_batch", "per_image"]
    assert runs["config"]["cost_breakdown"]["operations"] < runs["default"]["cost_breakdown"]["operations"]


def test_segment_augment_scales_the_cpu_figures_and_the_plan_says_so(monkeypatch, capsys, tmp_path):
    """segment.augment none (one network pass) or flips (four) scales a CPU profile measured with rot180 by the
    measured share of one pass (Overheads.pass_share), as an assumption; a GPU profile scales the network part it
    states (network_s_per_mpx), and one that states none keeps its figures and the plan says so. The written plan
    carries the augment and label files it priced."""
    import yaml

    o = Overheads()
    assert 0 < o.pass_share < 0.5
    w = Workload(10**5, 1.0, run_tables=False, formats=("ome-tiff",))
    assert w.augment == default("segment", "augment") == "rot180"
    cpu, gpu = PROFILES["n2-standard-16"], PROFILES["g2-standard-4"]
    assert cpu.rate("segment_batch").augment == gpu.rate("segment_batch").augment == "rot180"
    assert segment_rate(cpu, w, o) is cpu.rate("segment_batch")
    one, four = dataclasses.replace(w, augment="none"), dataclasses.replace(w, augment="flips")
    base, q = cpu.rate("segment_batch").s_per_mpx, o.pass_share
    assert segment_rate(cpu, one, o).s_per_mpx == pytest.approx(base * (1 - q))
    assert segment_rate(cpu, four, o).s_per_mpx == pytest.approx(base * (1 + 2 * q))
    scaled = segment_rate(cpu, one, o)
    assert scaled.origin == "assumed" and "segment.augment none" in scaled.how and scaled.augment == "none"
    g = gpu.rate("segment_batch")
    assert 0 < g.network_s_per_mpx < g.s_per_mpx
    for run, passes in ((one, 1), (four, 4)):
        r = segment_rate(gpu, run, o)
        assert r.s_per_mpx == pytest.approx(g.s_per_mpx - g.network_s_per_mpx + g.network_s_per_mpx * passes / 2)
        assert r.network_s_per_mpx == pytest.approx(g.network_s_per_mpx * passes / 2)
        assert r.origin == "assumed" and f"segment.augment {run.augment}" in r.how and r.augment == run.augment
    unsaid = dataclasses.replace(gpu, rules={**gpu.rules,
                                             "segment_batch": dataclasses.replace(g, network_s_per_mpx=None)})
    assert segment_rate(unsaid, one, o) is held_fields(unsaid.rate("segment_batch"), one)   # its memory: the fields
    # a network part larger than the whole job is refused, naming the file
    from cellscale.cost.throughput import load_profile

    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "config/throughput/g2-standard-4.yaml").read_text()
                   .replace("network_s_per_mpx: 0.0758", "network_s_per_mpx: 5.0"))
    with pytest.raises(ValueError, match=r"bad.yaml: rule 'segment_batch': network_s_per_mpx 5.0 must lie between"):
        load_profile(bad)
    pool = PoolChoice("spot-cpu", "n2-standard-16", 4, True)
    a, b = predict(w, Choice(pool, pool, 64.0), PROFILES, PRICES), predict(one, Choice(pool, pool, 64.0), PROFILES,
                                                                          PRICES)
    assert b.hours < a.hours and b.cost_usd < a.cost_usd
    on_gpu = plan(one, PROFILES, PRICES, deadline_h=24, segment_machines=["g2-standard-4"])
    assert any("g2-standard-4: segment_batch:" in line and "x 1/2 for segment.augment none" in line
               for line in on_gpu.assumptions)
    rot180 = plan(w, PROFILES, PRICES, deadline_h=24, segment_machines=["g2-standard-4"])
    assert on_gpu.prediction.cost_usd < rot180.prediction.cost_usd
    on_unsaid = plan(one, {**PROFILES, "g2-standard-4": unsaid}, PRICES, deadline_h=24,
                     segment_machines=["g2-standard-4"])
    assert any("g2-standard-4: segment_batch: figures for segment.augment rot180 used for none" in line
               for line in on_unsaid.assumptions)
    cheap = plan(one, PROFILES, PRICES, deadline_h=24)
    assert any("segment.augment none" in line for line in cheap.assumptions)
    write_outputs(cheap, tmp_path / "plan", PROFILES, ROOT / "profiles/gke")
    written = yaml.safe_load((tmp_path / "plan" / "plan-config.yaml").read_text())
    assert written["segment"]["augment"] == "none" and written["batches"]["label_files"] == one.label_files
    assert written["output"]["formats"] == list(one.formats)  # what it priced writing, the run writes
    monkeypatch.chdir(ROOT)
    config = tmp_path / "config.yaml"
    config.write_text("segment:\n  augment: none\n")
    runs = plan_runs(capsys, ["--images", "100000", "--deadline", "8", *NO_LAUNCHER_CLI, "--formats", "ome-tiff"],
                     {"default": [], "config": ["--config", str(config)], "flag": ["--augment", "flips"]})
    assert [r["workload"]["augment"] for r in runs.values()] == ["rot180", "none", "flips"]
    assert runs["config"]["cost_usd"] < runs["default"]["cost_usd"] < runs["flag"]["cost_usd"]


def test_a_pilot_runs_export_files_replace_the_shipped_figures(monkeypatch, capsys, tmp_path):
    """cellscale plan --pilot RESULTS: the files (Cloud Storage objects) and bytes a pilot's batch exports wrote per
    image, from its export folders and batch plan, price the run instead of the figures measured on 1-Mpx fields."""
    from cellscale.cost.runcost import export_files

    results = tmp_path / "results"
    (results / "batches").mkdir(parents=True)
    (results / "batches" / "plan.tsv").write_text("sample\tbatch\tmpx\na\t0\t4.0\nb\t0\t4.0\nc\t1\t4.0\n"
                                                  "big\t\t100.0\n")
    for batch, samples in (("0000", "ab"), ("0001", "c")):
        for sample in samples:   # a 4-Mpx field's OME-Zarr store: 30 files of 0.1 MB
            store = results / "ngff" / f"batch_{batch}" / f"{sample}.ome.zarr" / "s0" / "c"
            store.mkdir(parents=True)
            for i in range(30):
                (store / str(i)).write_bytes(b"x" * 100_000)
    assert export_files(results) == {"ome-zarr": pytest.approx((30.0, 0.75))}   # no SpatialData folder: left out
    monkeypatch.chdir(ROOT)
    runs = plan_runs(capsys, ["--images", "20000", "--mpx", "4", "--deadline", "8", "--formats", "ome-tiff",
                              "ome-zarr"], {"shipped": [], "pilot": ["--pilot", str(results)]})
    assert runs["pilot"]["workload"]["exports"]["ngff_batch"] == {"files_per_image": 30.0, "mb_per_mpx": 0.75}
    shipped = runs["shipped"]["workload"]["exports"]["ngff_batch"]
    assert shipped["files_per_image"] == EXPORTS["ome-zarr"].objects_per_image
    # 30 objects an image instead of the shipped 7, one class A operation each
    more = 20000 * (30 - shipped["files_per_image"]) / 1e4 * PRICES.storage["gcs_class_a_per_10k"]
    assert runs["pilot"]["cost_breakdown"]["operations"] - runs["shipped"]["cost_breakdown"]["operations"] == \
        pytest.approx(more, rel=0.1)
    assert not any("ome-zarr:" in a for a in runs["pilot"]["assumptions"])   # measured, not assumed
    assert any("ome-zarr:" in a for a in runs["shipped"]["assumptions"])
    with pytest.raises(FileNotFoundError, match="no batches/plan.tsv"):
        export_files(tmp_path / "nothing")


def test_fragment_repeats_every_rule_of_the_gke_profile(tmp_path):
    import yaml
    p = plan(Workload(10000, 1.0), PROFILES, PRICES, deadline_h=3, segment_machines=["g2-standard-4"])
    frag = profile_fragment(p, ROOT / "profiles/gke", PROFILES)
    base = yaml.safe_load((ROOT / "profiles/gke/config.yaml").read_text())["set-resources"]
    assert set(base) <= set(frag["set-resources"])
    seg = frag["set-resources"]["segment_batch"]
    assert seg["machine_type"] == "g2-standard-4" and seg["gpu"] == 1 and seg["scale"] == 0
    cpu = [r for r, v in frag["set-resources"].items() if "gpu" not in v]
    assert cpu and all(frag["set-resources"][r]["machine_type"] == p.choice.tail.instance_type for r in cpu)
    assert frag["jobs"] == p.prediction.jobs and frag["configfile"] == "plan-config.yaml"
    assert frag["set-threads"]["segment_batch"] == PROFILES["g2-standard-4"].rate("segment_batch").threads == 3


def test_jobs_per_node_are_what_kubernetes_places():
    """A pod requests threads x the plugin's cpu-scalar (profiles/gke's) of the node's allocatable CPUs: a 2-thread
    job (1.9 CPUs) fits 3 times on 8 vCPUs (7.51 allocatable), not 4; a 4-thread one once; every shipped profile's
    segment job fits its machine, GPU types with the threads their figures assume."""
    import yaml

    from cellscale.cost.model import CPU_SCALAR, allocatable_cpu
    from cellscale.cost.throughput import RuleRate
    from cellscale.deploy.gke import allocatable

    gke = yaml.safe_load((ROOT / "profiles/gke/config.yaml").read_text())
    assert gke["kubernetes-cpu-scalar"] == CPU_SCALAR
    assert allocatable("n1-standard-8")[0] == round(allocatable_cpu(8), 2) == 7.51
    n1 = PRICES.machine("n1-standard-8")
    rule = RuleRate("r", 1.0, 0.1, 100.0, 0.0, "assumed", "x", threads=2)
    assert slots_per_node(n1, rule, 16) == 3
    assert slots_per_node(n1, dataclasses.replace(rule, threads=4), 16) == 1
    assert slots_per_node(n1, dataclasses.replace(rule, threads=1), 16) == 7
    assert slots_per_node(PRICES.machine("n2-standard-16"), rule, 16) == 8
    assert slots_per_node(PRICES.machine("g2-standard-4"), dataclasses.replace(rule, threads=4, gpu=True), 16) == 0
    for machine in SHIPPED:
        rate = PROFILES[machine].rate("segment_batch")
        assert slots_per_node(PRICES.machine(machine), rate, 16) >= 1, machine
        if rate.gpu:   # the GPU job takes all the CPUs a pod may request there
            assert (rate.threads + 1) * CPU_SCALAR > allocatable_cpu(PRICES.machine(machine).vcpus), machine


@pytest.mark.workflow
def test_workflow_profile_is_accepted_by_a_real_dry_run(tmp_path):
    from snakemake.cli import get_argument_parser  # with the gke extra (make venv installs it), as test_gke_plugin

    w = Workload(10000, 1.0)
    p = plan(w, PROFILES, PRICES, deadline_h=3, segment_machines=["g2-standard-4"])
    write_outputs(p, tmp_path / "plan", PROFILES, ROOT / "profiles/gke")
    # how Snakemake combines the two profiles: the workflow profile's keys win as a whole
    args = get_argument_parser(profiles=[str(ROOT / "profiles/gke"), str(tmp_path / "plan")]).parse_args([])
    assert args.jobs == p.prediction.jobs
    assert [str(f) for f in args.configfile] == [str(tmp_path / "plan" / "plan-config.yaml")]
    assert args.set_resources["segment_batch"]["mem_mb"].value >= 1500
    assert args.set_resources["measure"]["mem_mb"].value == 3000     # repeated from profiles/gke
    assert args.default_resources["mem_mb"].value == 2000            # repeated from profiles/gke
    written = yaml.safe_load((tmp_path / "plan" / "config.yaml").read_text())["default-resources"]
    assert written["machine_type"] == p.choice.tail.instance_type   # the plan's CPU pool (the dry run takes it)
    assert args.set_threads["segment_batch"] == 3                     # the L4 profile's threads, not profiles/gke's 2

    # the "bucket": the checkout's inputs without any results or logs a run here left (a dry run would meet them)
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in ("results", "logs", ".snakemake", ".git", ".venv"):
            (bucket / entry.name).symlink_to(entry)

    def dry(*extra):
        return subprocess.run([sys.executable, "-m", "snakemake", "--profile", "profiles/gke", *extra, "--dry-run",
                               "--default-storage-provider", "fs", "--default-storage-prefix", str(bucket)],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
    base = dry()
    assert base.returncode == 0, (f"the GKE profile's own dry run, without the plan: {base.stderr[-2000:]}\n"
                                  f"{base.stdout[-2000:]}")
    run = dry("--workflow-profile", str(tmp_path / "plan"))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "plan-config.yaml" in run.stderr + run.stdout
    assert "Error validating config" not in run.stderr


def _workflow_rules_resources() -> dict[str, set]:
    """Each workflow rule's own resource names, as Snakemake loads the Snakefile."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import OutputSettings, ResourceSettings

    with SnakemakeApi(OutputSettings(quiet=True)) as api:
        wf = api.workflow(resource_settings=ResourceSettings(), snakefile=ROOT / "workflow/Snakefile", workdir=ROOT)
        return {r.name: set(r.resources) for r in wf._workflow.rules}


def test_batch_jobs_are_sized_for_the_largest_batch_and_timed_for_the_mean():
    """plan_batches cuts batches by content: about tiling.shard_mpx on average, up to BATCH_CAP times it. A node
    counts its jobs, and a pod asks for its memory, at the largest batch, or a large batch outgrows its request. The
    planner wrote segment_batch 3,000 MB for the Kiosk's 512-Mpx shards (the model: 1,871 MB at 512 Mpx, 3,407 MB at
    1,024), and put 256-Mpx shards on L4s (g2-standard-4: 13.5 GB) whose 512-Mpx batches needed 22 GB (at the 40
    MB/Mpx then assumed; with fields of 8 16-bit channels, 16 MB/Mpx decoded, a 512-Mpx shard's 1,024-Mpx batch needs
    17.9 GB)."""
    from cellscale.settings import BATCH_CAP

    w = Workload(10**6, 1.0, run_tables=False, formats=("ome-tiff",), read_fields="direct", label_files="per_batch")
    for machines in (["n2-standard-16"], ["g2-standard-4"]):
        p = plan(w, PROFILES, PRICES, deadline_h=6, preemption=0.05, segment_machines=machines)
        shard, machine = p.choice.shard_mpx, PRICES.machine(machines[0])
        rate = segment_rate(PROFILES[machines[0]], w, Overheads())   # the GPU's: with the workload's fields
        largest = rate.memory_mb(BATCH_CAP * shard)
        assert p.prediction.slots_per_node * largest <= allocatable_mb(machine), machines
        resources = profile_fragment(p, ROOT / "profiles/gke", PROFILES)["set-resources"]
        assert resources["segment_batch"]["mem_mb"] >= largest, machines
        assert resources["segment"]["mem_mb"] >= rate.memory_mb(shard)   # a large image's shards: shard_mpx each
    codex = segment_rate(PROFILES["g2-standard-4"], dataclasses.replace(w, decoded_mb_per_mpx=16.0), Overheads())
    assert fits(PRICES.machine("g2-standard-4"), codex, 256.0) and codex.memory_mb(512.0) <= allocatable_mb(
        PRICES.machine("g2-standard-4")) and not fits(PRICES.machine("g2-standard-4"), codex, 512.0)
    # jobs per node by memory at the largest batch, for segment_batch and the batch exports alike; time at the mean
    n1 = PRICES.machine("n1-standard-8")
    heavy = {rule: dataclasses.replace(PROFILES["n1-standard-8"].rate(rule), mem_mb_per_mpx=400.0)
             for rule in ("segment_batch", "ngff_batch")}
    profiles = {**PROFILES, "n1-standard-8": dataclasses.replace(PROFILES["n1-standard-8"],
                                                                 rules={**PROFILES["n1-standard-8"].rules, **heavy})}
    w = Workload(10**4, 1.0, formats=("ome-tiff", "ome-zarr"), read_fields="direct")
    pool = PoolChoice("cpu", "n1-standard-8", 4, True)
    g = job_figures(w, Choice(pool, pool, 16.0), profiles, PRICES)
    for rule, k in (("segment_batch", g.k), ("ngff_batch", g.exports[0][1])):
        by_memory = int(allocatable_mb(n1) // heavy[rule].memory_mb(BATCH_CAP * 16.0))
        assert k == min(by_memory, slots_per_node(n1, dataclasses.replace(heavy[rule], mem_mb_per_mpx=0.0), 16.0))
        assert by_memory < int(allocatable_mb(n1) // heavy[rule].memory_mb(16.0))   # the cap binds here
    assert g.d == pytest.approx(segment_job_s(w, heavy["segment_batch"], 16.0, Overheads()))   # the mean batch


@pytest.mark.parametrize("machines, images, deadline", [
    (["n2-standard-16"], 10000, 3),   # a CPU plan: no rule may ask for a GPU (the plugin refuses the job)
    (["g2-standard-4"], 100000, 4),   # large shards on an L4 node: 1.5 x the model's memory is more than it has
    (["n1-standard-4-t4"], 100000, 6),
])
def test_every_planned_pod_fits_its_node_and_asks_for_a_gpu_only_on_one(machines, images, deadline):
    """What Kubernetes would be asked: each rule's resources, the rule's own and the plan's set-resources over
    them; every request within its node type's allocatable memory, a GPU only on the GPU pool's machine type."""
    w = Workload(images, 1.0, read_fields="direct", formats=("ome-tiff",))
    p = plan(w, PROFILES, PRICES, deadline_h=deadline, segment_machines=machines)
    frag = profile_fragment(p, ROOT / "profiles/gke", PROFILES)
    by_type = {pc.instance_type: PRICES.machine(pc.machine) for pc in (p.choice.segment, p.choice.tail)}
    own = _workflow_rules_resources()
    assert not any("gpu" in names for names in own.values())   # only a profile puts a rule on a GPU
    for rule, res in frag["set-resources"].items():
        node = by_type[res["machine_type"]]
        assert res.get("mem_mb", 0) <= allocatable_mb(node), (rule, res, node)
        assert ("gpu" in res) == (node.gpus > 0 and rule in ("segment", "segment_batch")), (rule, res)
        if "gpu" in res:
            assert res["gpu_manufacturer"] == "nvidia" and res["scale"] == 0
    seg = frag["set-resources"]["segment_batch"]
    rate = segment_rate(PROFILES[p.choice.segment.machine], w, Overheads())   # a GPU's with the workload's fields
    # a large image's shards hold tiling.shard_mpx; a batch up to BATCH_CAP times that (cut by content)
    assert frag["set-resources"]["segment"]["mem_mb"] >= rate.memory_mb(p.choice.shard_mpx)
    assert seg["mem_mb"] >= rate.memory_mb(BATCH_CAP * p.choice.shard_mpx)


def test_a_planned_run_is_priced_on_the_plans_pools(tmp_path):
    """After a run with a plan's profile, results/cost.tsv prices each job on the node the plan put it on: the plan's
    plan-config.yaml names its folder as cost.placement_profile with its pools' spot settings, and its config.yaml
    gives every rule a machine type (the default too). A T4 pool is n1-standard-4 to Kubernetes and
    n1-standard-4-t4 in the price table."""
    from cellscale.cost.runcost import placement_from_profile, price_run

    w = Workload(100000, 1.0, read_fields="direct", formats=("ome-tiff",))
    p = plan(w, PROFILES, PRICES, deadline_h=6, segment_machines=["n1-standard-4-t4"])
    write_outputs(p, tmp_path / "plan", PROFILES, ROOT / "profiles/gke")
    cost = yaml.safe_load((tmp_path / "plan" / "plan-config.yaml").read_text())["cost"]
    assert cost == {"placement_profile": str(tmp_path / "plan"), "cpu_spot": p.choice.tail.spot,
                    "gpu_spot": p.choice.segment.spot}
    placement = placement_from_profile(cost["placement_profile"], cpu_spot=cost["cpu_spot"],
                                       gpu_spot=cost["gpu_spot"])
    assert placement.default.machine_type == p.choice.tail.instance_type
    jobs = pd.DataFrame({"rule": ["segment_batch", "tile", "summary"], "sample": ["", "a", ""],
                         "job": ["segment_batch/0000.tsv", "tile/a.tsv", "summary/run.tsv"], "batch": ["0000", "", ""],
                         "mpx": [1.0, 1.0, None], "s": [3600.0, 60.0, 1.0], "max_rss_mb": [1.0] * 3,
                         "cpu_time_s": [1.0] * 3})
    priced = price_run(jobs, PRICES, placement).jobs.set_index("rule")
    t4, tail = PRICES.machine("n1-standard-4-t4"), PRICES.machine(p.choice.tail.machine)
    assert priced.loc["segment_batch", "pool"] == "gpu" and priced.loc["segment_batch", "node_share"] == 1.0
    assert priced.loc["segment_batch", "usd_h"] == t4.hourly(p.choice.segment.spot)
    assert priced.loc["tile", "usd_h"] == priced.loc["summary", "usd_h"] == tail.hourly(p.choice.tail.spot)
    assert PRICES.node("n1-standard-4").name == "n1-standard-4"   # without a GPU: the plain type


def test_a_gpu_plan_always_has_a_cpu_pool():
    """GKE taints GPU nodes, so the workflow's other rules (the run-level ones too, which --no-run-tables leaves
    out of the price, not out of the run) need a CPU pool even when nothing but segmentation is priced."""
    w = Workload(10**6, 1.0, run_tables=False, formats=("ome-tiff",), read_fields="direct")
    p = plan(w, PROFILES, PRICES, deadline_h=6, segment_machines=["g2-standard-4"])
    pools = {pool["name"]: pool for pool in p.pools()}
    assert pools["gpu"]["machine_type"] == "g2-standard-4" and pools["gpu"]["gpus_per_node"] == 1
    cpu = [pool for name, pool in pools.items() if name != "gpu"]
    assert len(cpu) == 1 and cpu[0]["gpus_per_node"] == 0 and cpu[0]["count"] >= 1


def test_run_tables_too_large_for_any_node_are_infeasible():
    from dataclasses import replace

    # the streamed run-level tables fit any CPU node, even for 10^6 images
    assert plan(Workload(10**6, 1.0), PROFILES, PRICES, deadline_h=100, max_nodes=300,
                o=NO_LAUNCHER).prediction.hours <= 100
    # a table held whole (0.4 MB per Mpx of the run, as before it streamed) would not
    held = {m: replace(p, rules={**p.rules, "aggregate_measurements": replace(
        p.rules["aggregate_measurements"], mem_mb_per_mpx=0.4)}) if "aggregate_measurements" in p.rules else p
        for m, p in PROFILES.items()}
    with pytest.raises(Infeasible, match=r"aggregate_measurements needs about \d+ GB .*--no-run-tables"):
        plan(Workload(10**6, 1.0), held, PRICES, deadline_h=100, max_nodes=300, o=NO_LAUNCHER)


def test_plan_answers_for_a_million_images():
    """The planner's speed on 10^6 images (goal: under 10 s) is a figure of benchmarks/cost.py, not a timed test:
    this one checks the answer."""
    p = plan(Workload(10**6, 1.0, run_tables=False), PROFILES, PRICES, deadline_h=6, max_nodes=300,
             preemption=0.05, o=NO_LAUNCHER)
    assert p.candidates > 10_000
    assert p.prediction.hours <= 6 and math.isfinite(p.prediction.cost_usd)
    assert slots_per_node(PRICES.machine(p.choice.segment.machine),
                          PROFILES[p.choice.segment.machine].rate("segment_batch"), p.choice.shard_mpx) >= 1


def test_a_sheet_with_sizes_spares_the_plan_its_downloads(tmp_path):
    import tifffile
    from dataclasses import replace

    from cellscale.cost.model import Overheads, plan_batches_s, segment_job_s, segment_rate
    from cellscale.cost.plan import workload_from_sheet

    tifffile.imwrite(tmp_path / "a.tif", np.zeros((500, 400), np.uint8))
    sheet = tmp_path / "s.tsv"
    sheet.write_text(f"sample\timage\tkind\theight\twidth\na\t{tmp_path / 'a.tif'}\ttissue\t\t\n"
                     f"b\t{tmp_path / 'remote.tif'}\ttissue\t1000\t1000\n")
    read = workload_from_sheet(sheet)
    assert read.images == 2 and read.mpx_per_image == pytest.approx((0.2 + 1.0) / 2) and not read.sizes_in_sheet
    assert read.largest_mpx == pytest.approx(1.0)   # what decides whether shards above 64 Mpx are tried
    sheet.write_text(f"sample\timage\tkind\theight\twidth\nb\t{tmp_path / 'remote.tif'}\ttissue\t1000\t1000\n")
    assert workload_from_sheet(sheet).sizes_in_sheet and workload_from_sheet(sheet).compartments == 1
    assert read.timelapses_left_out == 0
    # a time-lapse row is left out, and the plan says so (it counted "4 images" of a 5-row sheet without a word)
    with_movie = tmp_path / "m.tsv"
    with_movie.write_text(sheet.read_text() + f"m\t{tmp_path / 'movie.tif'}\ttimelapse\t\t\n")
    movie_left = workload_from_sheet(with_movie)
    assert movie_left.images == 1 and movie_left.timelapses_left_out == 1
    said = describe(plan(movie_left, PROFILES, PRICES, deadline_h=6))
    assert "warning: 1 time-lapse sample of the sheet not planned" in said
    # rows with a membrane channel get the whole-cell model: two label images each
    sheet.write_text("sample\timage\tkind\theight\twidth\tnuclear_channel\tmembrane_channel\n"
                     f"b\t{tmp_path / 'remote.tif'}\ttissue\t1000\t1000\t0\t1\n")
    assert workload_from_sheet(sheet).compartments == 2
    # every segment job's pod lists its inputs' folder: a sheet's largest folder prices those listings
    assert workload_from_sheet(sheet).images_per_folder == 1
    flat = Workload(10**5, 1.0, run_tables=False, formats=("ome-tiff",), images_per_folder=10**5)
    small = replace(flat, images_per_folder=500)
    jobs = flat.jobs(16.0)
    assert (flat.list_calls(jobs), small.list_calls(jobs), replace(flat, images_per_folder=0).list_calls(jobs)) == (
        100 * jobs, jobs, jobs)
    pool = PoolChoice("spot-cpu", "n2-standard-16", 4, True)
    a, b = (predict(x, Choice(pool, pool, 16.0), PROFILES, PRICES) for x in (flat, small))
    assert counted_ops(a) - counted_ops(b) == pytest.approx(
        99 * jobs / 1e4 * PRICES.storage["gcs_class_a_per_10k"])
    assert any(f"{100 * jobs:,} list calls" in n for n in a.notes) and not any("list calls" in n for n in b.notes)
    # ... and their time, in each job's; an export job takes the batch's images too, so its pod lists them as well
    rate = segment_rate(PROFILES["n2-standard-16"], flat, Overheads())
    assert segment_job_s(flat, rate, 16.0, Overheads()) - segment_job_s(small, rate, 16.0, Overheads()) == (
        pytest.approx(99 * Overheads().list_call_s))
    assert replace(flat, formats=("ome-tiff", "ome-zarr")).list_calls(jobs) == 2 * 100 * jobs
    assert any("input folders taken as at most 1,000 images" in line
               for line in plan(Workload(10**4, 1.0), PROFILES, PRICES, deadline_h=24).assumptions)
    sheet.write_text(f"sample\timage\tkind\nc\t{tmp_path / 'nothere.tif'}\ttissue\n")
    with pytest.raises(ValueError, match="sample 'c'.*nothere.tif"):
        workload_from_sheet(sheet)
    w = Workload(10**5, 1.0)
    profile = PROFILES["e2-standard-4"]
    assert plan_batches_s(replace(w, sizes_in_sheet=False), profile, Overheads(), 10) > plan_batches_s(
        w, profile, Overheads(), 10) + 100
    # ... and its reads: with sizes in the sheet only segment_batch downloads an image (13 class B operations each)
    pool = PoolChoice("spot-cpu", "n2-standard-16", 4, True)
    with_sizes, without = (predict(x, Choice(pool, pool, 16.0), PROFILES, PRICES)
                           for x in (w, replace(w, sizes_in_sheet=False)))
    assert counted_ops(without) - counted_ops(with_sizes) == pytest.approx(
        w.images * Overheads().class_b_per_download / 1e4 * PRICES.storage["gcs_class_b_per_10k"])


def test_a_gpu_segment_job_holds_its_batchs_fields_decoded_so_their_bytes_size_its_memory_and_shards(tmp_path):
    """A segment_batch job holds every field of its batch decoded (steps.batch reads each whole, every channel of the
    file, in its pixel type): measured on CPU, 1,114 MB + 1.00 MB/Mpx for 8-bit one-channel fields, 1,113 MB + 1.98
    for 16-bit ones. The GPU profiles said 40 MB/Mpx for any fields; they now add the workload's decoded bytes per Mpx
    to the rest (0). A CPU profile measured its jobs with their fields, so it keeps its figure: no double count."""
    u8 = Workload(10**5, 1.0, read_fields="direct", formats=("ome-tiff",), run_tables=False, decoded_mb_per_mpx=1.0)
    u16x3 = dataclasses.replace(u8, decoded_mb_per_mpx=6.0)   # three 16-bit channels
    o = Overheads()
    for machine in ("g2-standard-4", "g2-standard-8", "n1-standard-4-t4", "a2-highgpu-1g", "a3-highgpu-1g"):
        own = PROFILES[machine].rate("segment_batch")
        assert own.holds_fields and own.gpu, machine
        for w, decoded in ((u8, 1.0), (u16x3, 6.0)):
            rate = segment_rate(PROFILES[machine], w, o)
            assert rate.memory_mb(512.0) == pytest.approx(own.mem_mb + (own.mem_mb_per_mpx + decoded) * 512.0)
        assert (segment_rate(PROFILES[machine], u16x3, o).memory_mb(512.0)
                - segment_rate(PROFILES[machine], u8, o).memory_mb(512.0)) == pytest.approx(5 * 512.0)
    cpu = PROFILES["n2-standard-16"].rate("segment_batch")
    assert not cpu.holds_fields and segment_rate(PROFILES["n2-standard-16"], u16x3, o) is cpu
    # the profile's key: written back as read, and anything but true or false refused, naming the file
    from cellscale.cost.throughput import load_profile, write_profile

    again = load_profile(write_profile(PROFILES["g2-standard-4"], tmp_path / "again.yaml"))
    assert again.rate("segment_batch") == PROFILES["g2-standard-4"].rate("segment_batch")
    assert "holds_fields" not in (write_profile(PROFILES["n2-standard-16"], tmp_path / "cpu.yaml")).read_text()
    (tmp_path / "bad.yaml").write_text((tmp_path / "again.yaml").read_text().replace("holds_fields: true",
                                                                                   "holds_fields: 'yes'"))
    with pytest.raises(ValueError, match=r"bad.yaml: rule 'segment_batch': holds_fields must be true or false"):
        load_profile(tmp_path / "bad.yaml")
    assert Workload(10).fields_mb_per_mpx == Workload.mb_per_mpx == 2.0   # not known: the stored size, one uint16
    # larger decoded fields: smaller shards on the same node (16 MB/Mpx, a CODEX panel of 8 16-bit channels: a
    # g2-standard-4's 13.5 GB hold a 256-Mpx shard's largest batch, 9.7 GB, not a 512-Mpx shard's, 17.9 GB)
    codex = dataclasses.replace(u8, decoded_mb_per_mpx=16.0)
    small, large = (plan(w, PROFILES, PRICES, deadline_h=6, segment_machines=["g2-standard-4"]) for w in (u8, codex))
    assert (small.choice.shard_mpx, large.choice.shard_mpx) == (512.0, 256.0)
    # ... and the memory the written profile asks for follows the fields
    asks = [profile_fragment(x, ROOT / "profiles/gke", PROFILES)["set-resources"]["segment_batch"]["mem_mb"]
            for x in (small, large)]
    assert asks[0] >= segment_rate(PROFILES["g2-standard-4"], u8, o).memory_mb(1024.0)
    assert asks[1] >= segment_rate(PROFILES["g2-standard-4"], codex, o).memory_mb(512.0) > asks[0]
    assert small.to_json()["workload"]["decoded_mb_per_mpx"] == 1.0
    # where the node is free, a workload too large for the L4's host takes a larger machine
    heavy = dataclasses.replace(u8, decoded_mb_per_mpx=24.0)   # 12 16-bit channels: 26 GB at 1,024 Mpx
    on_l4 = plan(heavy, PROFILES, PRICES, deadline_h=6, segment_machines=["g2-standard-4", "g2-standard-8"],
                 shards=(512.0,))
    assert on_l4.choice.segment.machine == "g2-standard-8"
    assert not fits(PRICES.machine("g2-standard-4"), segment_rate(PROFILES["g2-standard-4"], heavy, o), 512.0)


def test_a_sheets_image_headers_give_the_fields_decoded_size(tmp_path, monkeypatch, capsys):
    """The decoded size of a sheet's fields, from their headers: bytes per pixel x channels (every channel of the
    file, or of every file of an image of one file per channel), per Mpx of the model's pixels (/ scale²); the most
    of the headers read. With every size in the sheet, the first image's header alone (a screen's fields share a
    format); unreadable (not here), the workload's default. --decoded-mb-per-mpx gives it."""
    import tifffile

    from cellscale.cost.plan import workload_from_sheet

    tifffile.imwrite(tmp_path / "rgb16.tif", np.zeros((3, 64, 80), np.uint16))   # 3 channels of 16 bits
    tifffile.imwrite(tmp_path / "one8.tif", np.zeros((64, 80), np.uint8))
    tifffile.imwrite(tmp_path / "w1.tif", np.zeros((64, 80), np.uint16))
    tifffile.imwrite(tmp_path / "w2.tif", np.zeros((64, 80), np.uint16))
    sheet = tmp_path / "s.tsv"

    def decoded(rows: str) -> float:
        sheet.write_text("sample\timage\tkind\theight\twidth\tscale\n" + rows)
        return workload_from_sheet(sheet).decoded_mb_per_mpx

    assert decoded(f"a\t{tmp_path / 'one8.tif'}\ttissue\t\t\t\n") == 1.0
    assert decoded(f"a\t{tmp_path / 'one8.tif'}\ttissue\t\t\t\nb\t{tmp_path / 'rgb16.tif'}\ttissue\t\t\t\n") == 6.0
    assert decoded(f"a\t{tmp_path / 'w1.tif'}|{tmp_path / 'w2.tif'}\ttissue\t\t\t\n") == 4.0
    assert decoded(f"a\t{tmp_path / 'one8.tif'}\ttissue\t\t\t0.5\n") == 4.0   # 4 file pixels a model pixel
    assert decoded(f"b\t{tmp_path / 'rgb16.tif'}\ttissue\t64\t80\t\n"   # every size given: the first's header
                   f"a\t{tmp_path / 'one8.tif'}\ttissue\t64\t80\t\n") == 6.0
    read = workload_from_sheet(sheet)
    assert read.sizes_in_sheet and read.fields_mb_per_mpx == 6.0
    assert decoded(f"r\t{tmp_path / 'remote.tif'}\ttissue\t1000\t1000\t\n") == 0.0   # sizes given, file elsewhere
    assert workload_from_sheet(sheet).fields_mb_per_mpx == Workload.mb_per_mpx
    # the command line: from the sheet, or given
    monkeypatch.chdir(ROOT)
    sheet.write_text(f"sample\timage\tkind\na\t{tmp_path / 'rgb16.tif'}\ttissue\n")
    for extra, want in (([], 6.0), (["--decoded-mb-per-mpx", "12"], 12.0)):
        assert main(["plan", "--sheet", str(sheet), "--deadline", "6", "--simulate", "0", "--json", *extra]) == 0
        assert json.loads(capsys.readouterr().out)["workload"]["decoded_mb_per_mpx"] == want
    assert "argument --decoded-mb-per-mpx: expected MB per Mpx above 0, not '0'" in usage_error(
        capsys, ["--images", "10", "--decoded-mb-per-mpx", "0", "--deadline", "6"])


def test_the_launchers_storage_requests_come_before_the_first_job_in_plan_and_simulation():
    """Before the first segment job the launcher asks Cloud Storage about every field and every batch, one request
    after another (measured counts, Overheads): predict and the simulation both wait for it, and it is priced."""
    from cellscale.cost.model import launcher_storage_s
    from cellscale.cost.simulate import simulate

    w = Workload(20000, 1.0, run_tables=False, formats=("ome-tiff",))
    choice = Choice(PoolChoice("spot-cpu", "n2-standard-16", 4, True), PoolChoice("spot-cpu", "n2-standard-16", 4,
                                                                                  True), 16.0)
    jobs = w.jobs(16.0)
    o = Overheads()
    assert launcher_storage_s(w, o, jobs) == pytest.approx(
        (20000 * (o.launcher_b_per_image + o.launcher_scan_b_per_image)
         + jobs * (o.launcher_b_per_job + o.launcher_a_per_job)) * o.storage_call_s)
    slow, fast = predict(w, choice, PROFILES, PRICES, o), predict(w, choice, PROFILES, PRICES, NO_LAUNCHER)
    assert slow.phases_h["launcher"] * 3600 == pytest.approx(launcher_storage_s(w, o, jobs))
    assert fast.phases_h["launcher"] == 0
    # besides the launcher's phase, its scheduling rounds re-read the waiting jobs' staged fields: they pace the
    # segment jobs (test_cost_simulate.py has the rounds' own tests)
    paced = slow.phases_h["segment"] - fast.phases_h["segment"]
    assert paced > 0 and slow.hours - fast.hours == pytest.approx(slow.phases_h["launcher"] + paced, rel=0.05)
    # the staged run's notes say what reading the fields in the jobs would leave of that time; when the requests
    # take no time, or the fields are read directly, there is nothing to say
    direct = predict(dataclasses.replace(w, read_fields="direct"), choice, PROFILES, PRICES, o)
    assert any(f"--read-fields direct) would cut the launcher's Cloud Storage requests (one after another) from "
               f"{slow.phases_h['launcher']:.2f} h to {direct.phases_h['launcher']:.2f} h of this run's "
               f"{slow.hours:.2f} h" in n for n in slow.notes)
    assert not any("read_fields" in n for n in fast.notes + direct.notes)
    sim = simulate(w, choice, PROFILES, PRICES, o)
    assert sim.hours == pytest.approx(slow.hours, rel=0.1)
    # the requests are priced whether or not their time is counted
    assert counted_ops(slow) == pytest.approx(counted_ops(fast))
    assert counted_ops(fast) > 20000 * (o.class_b_per_download + o.launcher_b_per_image) / 1e4 * \
        PRICES.storage["gcs_class_b_per_10k"]


def test_the_launchers_model_provenance_job_is_priced_once_a_run():
    """Rule model_provenance runs on the launcher once a run per model (a screen's fields use one): its requests
    (Overheads.launcher_b_per_model and launcher_a_per_model, counted in the GKE workflow test) are priced once,
    whatever the fields and jobs, and take no time of the launcher's phase (no segment job waits for it)."""
    o = Overheads()
    without = dataclasses.replace(o, launcher_b_per_model=0.0, launcher_a_per_model=0.0)
    pool = PoolChoice("spot-cpu", "n2-standard-16", 4, True)
    once = (o.launcher_b_per_model * PRICES.storage["gcs_class_b_per_10k"]
            + o.launcher_a_per_model * o.class_a_per_object * PRICES.storage["gcs_class_a_per_10k"]) / 1e4
    assert once > 0
    for images in (2000, 20000):
        w = Workload(images, 1.0, run_tables=False, formats=("ome-tiff",))
        a, b = (predict(w, Choice(pool, pool, 16.0), PROFILES, PRICES, x) for x in (o, without))
        assert counted_ops(a) - counted_ops(b) == pytest.approx(once)
        assert a.phases_h == b.phases_h
    assert not any("per_model" in line or "timelapse_scale" in line for line in o.assumptions())   # measured


def test_batch_jobs_that_read_their_fields_spare_the_launcher_and_the_requests(monkeypatch, capsys, tmp_path):
    """batches.read_fields: direct: each segment job downloads its fields itself (one request a field) and the
    launcher asks about none of them; so do the batch exports (ome-zarr, spatialdata)."""
    from cellscale.cost.model import launcher_b_per_field, launcher_storage_s

    o = Overheads()
    staged = Workload(10**5, 1.0, run_tables=False, formats=("ome-tiff",), label_files="per_batch")
    direct = dataclasses.replace(staged, read_fields="direct")
    assert staged.fields_staged and not direct.fields_staged
    assert not dataclasses.replace(direct, formats=("ome-tiff", "ome-zarr")).fields_staged   # the export reads too
    assert launcher_b_per_field(direct, o) == o.launcher_b_per_image_direct < launcher_b_per_field(staged, o)
    with pytest.raises(ValueError, match="batches.read_fields must be staged or direct"):
        dataclasses.replace(staged, read_fields="lazy")
    choice = Choice(PoolChoice("spot-cpu", "n2-standard-16", 8, True), PoolChoice("spot-cpu", "n2-standard-16", 8,
                                                                                   True), 64.0)
    a, b = predict(staged, choice, PROFILES, PRICES, o), predict(direct, choice, PROFILES, PRICES, o)
    jobs = staged.jobs(64.0)
    assert a.phases_h["launcher"] - b.phases_h["launcher"] == pytest.approx(
        launcher_storage_s(staged, o, jobs) / 3600 - launcher_storage_s(direct, o, jobs) / 3600)
    # per field: the staged read (13) and the launcher's requests (12.25) against one download
    saved = 10**5 * (o.class_b_per_download + launcher_b_per_field(staged, o) - o.class_b_per_direct_read
                     - o.launcher_b_per_image_direct) - jobs * o.class_b_per_direct_job
    assert counted_ops(a) - counted_ops(b) == pytest.approx(
        saved / 1e4 * PRICES.storage["gcs_class_b_per_10k"], rel=1e-6)
    # each batch export reads the fields again: 13 requests a field staged, one direct
    exports = [dataclasses.replace(w, formats=("ome-tiff", "ome-zarr", "spatialdata")) for w in (staged, direct)]
    a2, b2 = (predict(w, choice, PROFILES, PRICES, o) for w in exports)
    saved2 = 2 * (10**5 * (o.class_b_per_download - o.class_b_per_direct_read) - jobs * o.class_b_per_direct_job)
    assert (counted_ops(a2) - counted_ops(b2)) - (counted_ops(a) - counted_ops(b)) == \
        pytest.approx(saved2 / 1e4 * PRICES.storage["gcs_class_b_per_10k"], rel=1e-6)
    assert a2.phases_h["launcher"] - b2.phases_h["launcher"] == pytest.approx(
        a.phases_h["launcher"] - b.phases_h["launcher"])
    # the command line takes it from --config or the flag, and writes it into the plan's config
    monkeypatch.chdir(ROOT)
    config = tmp_path / "config.yaml"
    config.write_text("batches:\n  read_fields: direct\n")
    cases = {"default": [], "config": ["--config", str(config)],
             "flag": ["--config", str(config), "--read-fields", "staged"]}
    runs = plan_runs(capsys, ["--images", "20000", "--deadline", "24", "--formats", "ome-tiff"],
                     {name: ["--out", str(tmp_path / name), *extra] for name, extra in cases.items()})
    assert [r["workload"]["read_fields"] for r in runs.values()] == ["staged", "direct", "staged"]
    assert runs["config"]["phases_hours"]["launcher"] < runs["default"]["phases_hours"]["launcher"]
    assert runs["config"]["cost_breakdown"]["operations"] < runs["default"]["cost_breakdown"]["operations"]
    import yaml
    assert yaml.safe_load((tmp_path / "config" / "plan-config.yaml").read_text())["batches"]["read_fields"] == "direct"



def test_plan_out_outside_a_checkout_names_the_missing_profile_and_writes_nothing(tmp_path, monkeypatch, capsys):
    """`cellscale plan --out DIR` repeats the GKE profile's set-resources: from a folder without profiles/gke it
    stops before the solve, names the file and the flag, and leaves no DIR; --gke-profile points it at one."""
    monkeypatch.chdir(tmp_path)
    assert main(["plan", "--images", "1000", "--deadline", "2", "--simulate", "0", "--out", "p"]) == 2
    err = capsys.readouterr().err
    assert "profiles/gke/config.yaml does not exist" in err and "--gke-profile" in err
    assert not (tmp_path / "p").exists()
    assert main(["plan", "--images", "1000", "--deadline", "2", "--simulate", "0", "--out", "p",
                 "--gke-profile", str(ROOT / "profiles" / "gke")]) == 0
    assert sorted(f.name for f in (tmp_path / "p").iterdir()) == ["config.yaml", "plan-config.yaml", "plan.json"]


def test_what_an_infeasible_request_needs_is_searched_on_a_ladder_within_its_step():
    """Beyond the quota, the explanation tries node counts on a ladder (LADDER_STEP apart), not every count: the
    fewest nodes it names lie within that step of the fewest an exhaustive search finds, and are called 'about'."""
    from cellscale.cost import plan as planning

    step = planning.LADDER_STEP
    ladder = planning._thinned(range(1, 5001), 100)
    assert ladder[:100] == list(range(1, 101)) and ladder[-1] == 5000
    assert len(ladder) <= 100 + math.ceil(math.log(5000 / 100) / math.log(step)) + 1   # 181, not 5,000
    assert all(b <= max(math.ceil(a * step), a + 1) for a, b in zip(ladder, ladder[1:]))
    waves = planning._node_counts(200000, 4, 10000)
    thin = planning._thinned(waves, 100)
    assert [n for n in waves if n <= 100] == [n for n in thin if n <= 100] and thin[-1] == waves[-1]
    assert set(thin) <= set(waves) and len(thin) < len(waves) / 2
    assert all(b >= a * step or b == thin[-1] for a, b in zip(thin, thin[1:]) if a > 100)
    # the fewest nodes that meet a deadline, exhaustive and on the ladder above 4 nodes (two machine types: an
    # exhaustive search of them all takes about 7 s)
    w, deadline = Workload(20000, 1.0), 0.3
    fewest = {}
    for dense in (None, 4):
        found = planning.candidates(w, PROFILES, PRICES, NO_LAUNCHER, 0.0, None, 10000, machines=TWO_TYPES,
                                    dense_nodes=dense)
        ok = [r for r in found if r[0] <= deadline]
        fewest[dense] = {gpu: min(r[2].segment.nodes for r in ok if bool(PRICES.machines[r[2].segment.machine].gpus)
                                  == gpu) for gpu in (True, False)}
    for gpu in (True, False):
        assert 4 < fewest[None][gpu] <= fewest[4][gpu] <= math.ceil(fewest[None][gpu] * step) + 1
    with pytest.raises(Infeasible, match=rf"needs about \d+ .*; or about {fewest[4][False]} \S+ nodes \(no GPU\)"):
        plan(w, PROFILES, PRICES, deadline_h=deadline, max_nodes=4, o=NO_LAUNCHER, machines=TWO_TYPES)


def test_a_configurations_job_figures_serve_every_node_count_and_spot_choice():
    """The planner computes :func:`job_figures` once per segment machine, tail machine and shard and passes them to
    every node count's (and spot choice's) prediction: each prediction must equal one that computes its own."""
    w = Workload(images=20000, formats=("ome-tiff", "ome-zarr"))
    for seg, tail, shard in (("g2-standard-4", "n2-standard-16", 16.0), ("n2-standard-16", "n2-standard-16", 64.0)):
        first = Choice(PoolChoice("pool", seg, 1, True), PoolChoice("cpu", tail, 1, True), shard)
        if seg == tail:
            first = Choice(first.segment, first.segment, shard)
        shared = job_figures(w, first, PROFILES, PRICES)
        for nodes, export_nodes_, spot in itertools.product((1, 7, 300), (1, 5), (True, False)):
            segment = PoolChoice("pool", seg, nodes, spot)
            choice = Choice(segment, segment if seg == tail else PoolChoice("cpu", tail, export_nodes_, spot), shard)
            for preemption in (0.0, 0.2):
                given = predict(w, choice, PROFILES, PRICES, preemption=preemption, figures=shared)
                own = predict(w, choice, PROFILES, PRICES, preemption=preemption)
                assert (given.hours, given.cost_usd, given.breakdown) == (own.hours, own.cost_usd, own.breakdown)


def test_the_plan_prints_its_scheduling_rounds(monkeypatch, capsys):
    """Fields read by the jobs, thousands of jobs on a few nodes: they wait, and the plan says how many requests the
    launcher's rounds make meanwhile and what they cost; --json has the same count."""
    monkeypatch.chdir(ROOT)
    args = ["plan", "--images", "100000", "--deadline", "6", "--read-fields", "direct", "--max-nodes", "4",
            "--no-run-tables"]
    assert main([*args, "--json"]) == 0
    requests = json.loads(capsys.readouterr().out)["launcher_round_requests"]
    assert requests > 1000
    assert main(args) == 0
    usd = requests / 1e4 * PRICES.storage["gcs_class_b_per_10k"]
    assert f"Snakemake's scheduling rounds while jobs wait: {requests:,} class B requests (${usd:,.2f}" in \
        capsys.readouterr().out


@pytest.mark.parametrize("deadline_h", [10.0, 24.0])
def test_configurations_whose_launcher_misses_the_deadline_are_tried_at_their_fastest_only(deadline_h):
    """With a deadline, a configuration whose launcher phase alone takes longer is predicted at its largest node
    count only: the same runs meet the deadline and the same fastest run is named, from fewer predictions."""
    from cellscale.cost import plan as planning

    w = Workload(3 * 10**5, 1.0, run_tables=False)   # staged: the launcher's requests take 20.6 h
    args = (w, PROFILES, PRICES, Overheads(), 0.05, 4, 60)
    every, pruned = planning.candidates(*args), planning.candidates(*args, past_h=deadline_h)
    assert len(pruned) < len(every)
    assert min(r[0] for r in pruned) == pytest.approx(min(r[0] for r in every))
    meet = sorted((r[0], r[1]) for r in every if r[0] <= deadline_h)
    assert sorted((r[0], r[1]) for r in pruned if r[0] <= deadline_h) == meet
    assert bool(meet) == (deadline_h > 21)


def test_usage_errors_exit_2_with_the_commands_usage_line(tmp_path, capsys):
    """Command lines argparse accepts but that cannot run print as argparse's own usage errors (status 2); a
    missing input is an error naming it (status 2 too), before any model loads."""
    for argv, said in ((["plan", "--deadline", "2"], "cellscale plan: error: give --sheet FILE or --images N"),
                       (["segment", str(tmp_path), "--compartment", "whole-cell", "-o", str(tmp_path / "o/")],
                        "cellscale segment: error: --compartment whole-cell needs --membrane-channel")):
        (tmp_path / "a.tif").touch()
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.startswith(f"usage: cellscale {argv[0]}") and said in err, err
    assert main(["segment", str(tmp_path / "none.tif"), "-o", str(tmp_path / "o.tif")]) == 2
    assert f"cellscale segment: error: {tmp_path / 'none.tif'}: no such file or folder" in capsys.readouterr().err


def usage_error(capsys, argv: list[str]) -> str:
    """`cellscale plan ARGV`'s usage error: argparse's own (the usage line, then the message; status 2)."""
    with pytest.raises(SystemExit) as exit_:
        main(["plan", *argv])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("usage: cellscale plan"), err
    return err


@pytest.mark.parametrize("argv, said", [
    (["--images", "-5", "--deadline", "6"],
     "argument --images: expected a whole number of images, at least 1, not '-5'"),
    (["--images", "-5", "--deadline", "6", "--simulate", "0"], "argument --images: expected a whole number"),
    (["--images", "0", "--deadline", "6"], "argument --images: expected a whole number of images, at least 1, not '0'"),
    (["--images", "1", "--mpx", "0", "--deadline", "6"], "argument --mpx: expected megapixels per image, above 0"),
    (["--images", "1", "--mpx", "-1", "--deadline", "6"], "argument --mpx: expected megapixels per image, above 0"),
    (["--images", "10", "--deadline", "6", "--storage-call-ms", "-20"],
     "argument --storage-call-ms: expected milliseconds, at least 0, not '-20'"),
    (["--images", "10", "--deadline", "6", "--preemption", "-1"],
     "argument --preemption: expected spot preemptions per node-hour from 0 to 1 (0.05 = 5%), not '-1'"),
    (["--images", "10", "--deadline", "6", "--preemption", "5"], "not '5' (for 5% give 0.05)"),
    (["--images", "10", "--deadline", "0"], "argument --deadline: expected hours above 0, not '0'"),
    (["--images", "10", "--deadline", "-3"], "argument --deadline: expected hours above 0, not '-3'"),
    (["--images", "10", "--deadline", "nan"], "argument --deadline: expected hours above 0, not 'nan'"),
    (["--images", "10", "--budget", "-1"], "argument --budget: expected US dollars above 0, not '-1'"),
    (["--images", "10", "--deadline", "6", "--simulate", "-2"],
     "argument --simulate: expected a whole number of seeds, at least 0, not '-2'"),
    (["--images", "10", "--deadline", "6", "--max-nodes", "0"],
     "argument --max-nodes: expected a whole number of nodes, at least 1, not '0'"),
    (["--images", "10", "--deadline", "6", "--max-gpus", "-1", "--segment-machines", "g2-standard-4"],
     "argument --max-gpus: expected a whole number of GPUs, at least 0, not '-1'"),
])
def test_plan_options_out_of_range_are_usage_errors(capsys, argv, said):
    """Numbers the planner cannot take are argparse's usage errors naming the option and what it takes (a negative
    image count looped forever, 0 Mpx divided by zero, a negative delay was SimPy's message, a negative deadline or
    budget was 'infeasible', 0 images was 'give --images N', --simulate -2 meant 0; a preemption rate above 1 is
    most likely a percentage)."""
    assert said in usage_error(capsys, argv)


@pytest.mark.parametrize("argv, said", [
    (["--config", "/nonexistent.yaml"], "--config /nonexistent.yaml: no such file"),
    (["--formats", "none", "ome-zarr"], "--formats none must be alone"),
    (["--formats", "ome-zarr", "ome-zarr"], "--formats names ome-zarr more than once"),
    (["--segment-machines", "g2-standard-99"], "--segment-machines g2-standard-99: no such machine type in price "
                                               "table gke-us-central1; machine types to plan with: a2-highgpu-1g, "),
    (["--segment-machines", "nvidia-l4"], "--segment-machines nvidia-l4: no such machine type in price table "
                                          "gke-us-central1 (the machine types with L4 GPUs: g2-standard-4, "
                                          "g2-standard-8)"),
    (["--segment-machines", "L4"], "--segment-machines L4: no such machine type"),
    (["--segment-machines", "e2-medium"], "--segment-machines e2-medium: no throughput profile of segment_batch"),
    (["--max-gpus", "0", "--segment-machines", "g2-standard-4"],
     "--max-gpus 0 allows no node of --segment-machines (g2-standard-4: 1 GPU)"),
])
def test_plan_options_that_cannot_be_planned_are_usage_errors(monkeypatch, capsys, argv, said):
    """A --config that does not exist was ignored (the defaults planned), --formats none beside a format was taken,
    and an unknown machine type or a GPU quota below one node's GPUs gave the catch-all 'no machine type fits a
    batch'. The machine types to plan with are listed where one is unknown."""
    monkeypatch.chdir(ROOT)
    err = usage_error(capsys, ["--images", "10", "--deadline", "6", "--simulate", "0", *argv])
    assert f"cellscale plan: error: {said}" in err, err
    if said.startswith("--segment-machines"):   # those it can plan with: priced, and profiled for segment_batch
        usable = err.split("machine types to plan with: ")[1].split()
        assert "g2-standard-4," in usable and "n2-standard-16," in usable and "e2-medium," not in usable


def test_sheet_plan_options_for_images_alone_are_usage_errors(tmp_path, capsys):
    """--mpx and --no-sheet-sizes describe an --images workload: with --sheet they were ignored."""
    sheet = tmp_path / "s.tsv"
    sheet.write_text("sample\timage\tkind\theight\twidth\na\ta.tif\ttissue\t1000\t1000\n")
    assert "--mpx is for --images" in usage_error(capsys, ["--sheet", str(sheet), "--mpx", "2", "--deadline", "6"])
    assert "--no-sheet-sizes is for --images" in usage_error(capsys, ["--sheet", str(sheet), "--no-sheet-sizes",
                                                                     "--deadline", "6"])


@pytest.mark.parametrize("column, value", [("height", "0"), ("height", "-5"), ("height", "abc"), ("width", "1.5")])
def test_a_sheets_bad_image_size_is_an_error_naming_the_sheet_sample_and_column(tmp_path, capsys, column, value):
    """A height of 0 divided by zero, a negative one planned negative megapixels and dollars, and 'abc' was int()'s
    message without the sheet, the sample or the column."""
    sheet = tmp_path / "s.tsv"
    size = {"height": "1000", "width": "1000", column: value}
    sheet.write_text(f"sample\timage\tkind\theight\twidth\na\ta.tif\ttissue\t1000\t1000\n"
                     f"b\tb.tif\ttissue\t{size['height']}\t{size['width']}\n")
    assert main(["plan", "--sheet", str(sheet), "--deadline", "6", "--simulate", "0"]) == 2
    assert (f"cellscale plan: error: {sheet}: sample 'b': {column} must be a whole number of pixels, at least 1, "
            f"got {value!r}") in capsys.readouterr().err


def test_a_request_no_configuration_fits_says_which_cause_applies(monkeypatch, capsys):
    """No configuration at all was one catch-all message naming three causes; each now says its own."""
    monkeypatch.chdir(ROOT)
    # images larger than the largest shard: the workflow tiles them in jobs of their own, which are not modelled
    assert main(["plan", "--images", "1", "--mpx", "1000", "--deadline", "6", "--simulate", "0"]) == 2
    assert ("infeasible: the images (1000 Mpx) are larger than the largest shard (64 Mpx): the workflow tiles, "
            "segments and stitches such images in jobs of their own, which the planner does not model") in \
        capsys.readouterr().err
    # a GPU pool needs a node of the CPU pool beside it
    assert main(["plan", "--images", "10", "--deadline", "6", "--simulate", "0", "--max-nodes", "1",
                 "--segment-machines", "g2-standard-4"]) == 2
    assert ("infeasible: the quota allows no segment node: max_nodes 1 leaves no node for a GPU pool beside the CPU "
            "pool") in capsys.readouterr().err
    w = Workload(100, 1.0, run_tables=False, formats=("ome-tiff",))
    with pytest.raises(Infeasible, match=r"^the quota allows no segment node: max_gpus 0 is fewer than a node's GPUs "
                                         r"\(g2-standard-4: 1\)$"):
        plan(w, PROFILES, PRICES, deadline_h=6, max_gpus=0, segment_machines=["g2-standard-4"])
    tiny = dataclasses.replace(PRICES, machines={**PRICES.machines, "n2-standard-4": dataclasses.replace(
        PRICES.machines["n2-standard-4"], memory_gib=1.0)})
    with pytest.raises(Infeasible, match=r"^no node of n2-standard-4 has the memory for a segment_batch job of "
                                         r"1-Mpx images \(a batch holds up to 2 x its shard\)$"):
        plan(w, PROFILES, tiny, deadline_h=6, segment_machines=["n2-standard-4"])
    # --max-gpus 0 without --segment-machines is a plan without GPUs
    assert main(["plan", "--images", "1000", "--deadline", "6", "--simulate", "0", "--max-gpus", "0",
                 "--json"]) == 0
    assert all(pool["gpus_per_node"] == 0 for pool in json.loads(capsys.readouterr().out)["pools"])


def test_a_workload_of_no_image_is_an_error_not_a_loop():
    for images, mpx in ((-5, 1.0), (0, 1.0), (1, 0.0), (1, -10.0), (1, math.nan)):
        with pytest.raises(ValueError, match="at least 1 image|above 0"):
            Workload(images, mpx)
    from cellscale.cost.plan import _node_counts

    assert _node_counts(0, 4, 10) == [] and _node_counts(-5, 4, 10) == []


def test_images_above_the_shard_are_said_to_be_left_out_of_the_model(monkeypatch, capsys, tmp_path):
    """A sheet of small images and one of 400 Mpx plans batches of 64 Mpx at most; the large image, which the
    workflow tiles, segments and stitches in jobs of its own, was averaged into the batches without a word. The
    plan says so, readable and in --json's assumptions; without such an image it says nothing of the kind."""
    monkeypatch.chdir(ROOT)
    rows = "".join(f"s{i}\timg/s{i}.tif\ttissue\t1000\t1000\n" for i in range(200))
    sheet = tmp_path / "s.tsv"
    sheet.write_text("sample\timage\tkind\theight\twidth\n" + rows + "big\timg/big.tif\ttissue\t20000\t20000\n")
    args = ["plan", "--sheet", str(sheet), "--deadline", "6", "--simulate", "0"]
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    said = (f"1 image above the {out['shard_mpx']:g}-Mpx shard (largest 400 Mpx) not modelled: the workflow tiles, "
            f"segments and stitches each in jobs of its own; the plan prices its megapixels as batched")
    assert out["shard_mpx"] < 400 and any(a.startswith(said) for a in out["assumptions"]), out["assumptions"]
    assert main(args) == 0
    assert f"  warning: {said}" in capsys.readouterr().out
    sheet.write_text("sample\timage\tkind\theight\twidth\n" + rows)
    assert main([*args, "--json"]) == 0
    assert not any("not modelled" in a for a in json.loads(capsys.readouterr().out)["assumptions"])


def test_the_mcquant_format_is_priced_as_a_run_level_job_after_aggregate_measurements():
    """output.formats mcquant is one job a run after aggregate_measurements (it reads the run's cells table) that
    writes a CSV per image and compartment: the plan adds its measured time to the tail's branch through
    aggregate_measurements, a Cloud Storage object per CSV (and its folder's marker, log and benchmark) to the
    writes, and says what it priced; the simulation runs it in the same place. Without the run-level tables
    (--no-run-tables) it is left out with them."""
    from cellscale.cost.model import MCQUANT, class_a_usd, class_b_usd, tail_job_s

    without = Workload(10**4, 1.0, read_fields="direct", formats=("ome-tiff",))
    with_csvs = dataclasses.replace(without, formats=("ome-tiff", "mcquant"))
    pool = PoolChoice("spot-cpu", "n1-standard-8", 20, True)
    choice = Choice(pool, pool, 16.0)
    p0, p1 = predict(without, choice, PROFILES, PRICES), predict(with_csvs, choice, PROFILES, PRICES)
    seconds = Overheads().job_overhead_s + MCQUANT.seconds(with_csvs.total_mpx)
    tails = tail_job_s(with_csvs, PROFILES["n1-standard-8"], Overheads())
    assert tails["mcquant"] == pytest.approx(seconds) and seconds > 0
    assert tails["aggregate_measurements"] + seconds > tails["report_fields"]   # the longer branch: all of it counts
    assert (p1.hours - p0.hours) * 3600 == pytest.approx(seconds)
    machine = PRICES.machine("n1-standard-8")
    assert p1.breakdown["compute:spot-cpu"] - p0.breakdown["compute:spot-cpu"] == pytest.approx(
        seconds / 3600 * machine.hourly(True))
    csvs = with_csvs.images * with_csvs.compartments
    assert p1.breakdown["operations"] - p0.breakdown["operations"] == pytest.approx(
        class_a_usd(PRICES, csvs + 3) + class_b_usd(PRICES, 3))
    assert p1.cost_usd > p0.cost_usd + class_a_usd(PRICES, csvs)
    r0, r1 = simulate(without, choice, PROFILES, PRICES), simulate(with_csvs, choice, PROFILES, PRICES)
    assert (r1.hours - r0.hours) * 3600 == pytest.approx(seconds, rel=0.02)
    planned = plan(with_csvs, PROFILES, PRICES, deadline_h=24)
    priced = planned.to_json()["assumptions"]
    assert any(a.startswith("mcquant: ") for a in priced) and not any("not priced" in a for a in priced)
    unpriced = plan(without, PROFILES, PRICES, deadline_h=24).to_json()["assumptions"]
    assert not any("mcquant" in a for a in unpriced)
    # it reads the run's table a batch's rows at a time: its memory stays flat, so 10^6 fields stay feasible
    kiosk = dataclasses.replace(with_csvs, images=10**6)
    assert MCQUANT.memory_mb(kiosk.total_mpx) < 2000   # the rule's own request (rules/measure.smk)
    assert plan(kiosk, PROFILES, PRICES, deadline_h=100, max_nodes=300).prediction.cost_usd > 0
    tables_off = [dataclasses.replace(w, run_tables=False) for w in (without, with_csvs)]
    assert predict(tables_off[1], choice, PROFILES, PRICES).cost_usd == predict(tables_off[0], choice, PROFILES,
                                                                                 PRICES).cost_usd


def test_plan_help_names_every_file_that_out_writes_and_says_mcquant_is_priced(tmp_path, capsys, monkeypatch):
    """`cellscale plan --help` says what --out writes (it named plan.json and config.yaml only, not plan-config.yaml,
    which the run reads, nor simulated.png) and that mcquant is priced (it said 'not priced')."""
    w = Workload(200, 1.0, formats=("ome-tiff",))
    checked = plan(w, PROFILES, PRICES, deadline_h=1, simulate_seeds=1)
    written = write_outputs(checked, tmp_path / "plan", PROFILES, ROOT / "profiles/gke")
    assert {p.name for p in written} == {"plan.json", "config.yaml", "plan-config.yaml", "simulated.png"}
    monkeypatch.setenv("COLUMNS", "1000")   # no line breaks inside a file name
    with pytest.raises(SystemExit):
        main(["plan", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert [p.name for p in written if f"DIR/{p.name}" not in text] == []
    assert "not priced" not in text
