"""The SimPy simulation of a planned run: agreement with the planner's model, seeds, preemption and retries, the
autoscaler's bounds and the figure."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from support import ROOT

from cellscale.cost.model import Choice, Overheads, PoolChoice, Workload, predict
from cellscale.cost.plan import load_profiles
from cellscale.cost.prices import load_prices
from cellscale.cost.simulate import figure, simulate, simulate_mean

PRICES = load_prices(ROOT / "config/prices/gke-us-central1.yaml")
PROFILES = load_profiles(ROOT / "config/throughput")


def l4(gpus: int, shard: float = 16.0) -> Choice:
    return Choice(PoolChoice("gpu", "g2-standard-4", gpus, True), PoolChoice("spot-cpu", "e2-standard-4", 1, True),
                  shard)


@pytest.mark.parametrize("gpus", [1, 4])
@pytest.mark.parametrize("preemption", [0.0, 0.2])
def test_planner_agrees_with_the_simulation_within_10_percent(gpus, preemption):
    w = Workload(10**4, 1.0)
    p = predict(w, l4(gpus), PROFILES, PRICES, Overheads(), preemption)
    hours, cost, runs = simulate_mean(w, l4(gpus), PROFILES, PRICES, Overheads(), preemption, seeds=(0, 1, 2))
    assert p.hours == pytest.approx(hours, rel=0.10)
    assert p.cost_usd == pytest.approx(cost, rel=0.10)
    assert all(r.failed_jobs == 0 for r in runs)


def test_cpu_pool_runs_segment_and_tail_and_agrees():
    w = Workload(5000, 1.0)
    seg = PoolChoice("spot-cpu", "n2-standard-8", 6, True)
    choice = Choice(seg, seg, 32.0)
    p = predict(w, choice, PROFILES, PRICES, Overheads(), 0.05)
    hours, cost, runs = simulate_mean(w, choice, PROFILES, PRICES, Overheads(), 0.05, seeds=(0, 1, 2))
    assert p.hours == pytest.approx(hours, rel=0.10) and p.cost_usd == pytest.approx(cost, rel=0.10)
    assert set(runs[0].node_hours) == {"spot-cpu"}


def test_export_jobs_run_on_the_cpu_pool_as_batches_finish():
    """With the shipped output.formats the CPU pool runs each batch's exports while the GPUs segment; with OME-TIFF
    labels alone (and no run-level tables) it never starts a node."""
    w = Workload(4000, 1.0, run_tables=False)
    quick = Overheads(storage_call_s=0.0)   # no launcher phase before the first job: times from the start
    exports = simulate(w, l4(2), PROFILES, PRICES, o=quick)
    labels = simulate(dataclasses.replace(w, formats=("ome-tiff",)), l4(2), PROFILES, PRICES, o=quick)
    assert exports.node_hours["spot-cpu"] > 0 and labels.node_hours["spot-cpu"] == 0
    cpu = [t for t, pool, n, running in exports.timeline if pool == "spot-cpu" and running > 0]
    gpu_end = max(t for t, pool, n, running in exports.timeline if pool == "gpu" and running > 0)
    assert min(cpu) < gpu_end / 4          # exports start with the first batches, not after the last
    assert exports.hours > labels.hours and exports.cost_usd > labels.cost_usd
    same = Choice(PoolChoice("spot-cpu", "n1-standard-8", 4, True), PoolChoice("spot-cpu", "n1-standard-8", 4, True),
                  16.0)
    p = predict(w, same, PROFILES, PRICES)
    r = simulate(w, same, PROFILES, PRICES)
    assert p.hours == pytest.approx(r.hours, rel=0.10) and p.cost_usd == pytest.approx(r.cost_usd, rel=0.10)
    assert max(running for _, _, _, running in r.timeline) > 4 * 2   # 1-thread exports beside 4-thread segment jobs


def test_a_long_job_that_restarts_on_preemption_takes_its_expected_time():
    """The model's tail under spot preemption: work that starts again when its node goes, against a Monte Carlo of
    the same process (exponential preemptions, a replacement node's delay each time)."""
    from cellscale.cost.model import restarted_s

    rng = np.random.default_rng(0)
    d, rate, replacement = 3.2 * 3600, 0.2, 190.0
    totals = []
    for _ in range(20000):
        total = 0.0
        while (fail := rng.exponential(3600 / rate)) < d:
            total += fail + replacement
        totals.append(total + d)
    assert restarted_s(d, rate, replacement) == pytest.approx(np.mean(totals), rel=0.03)
    assert restarted_s(d, 0.0, replacement) == d and restarted_s(60.0, 0.05, 190.0) == pytest.approx(60.0, rel=0.01)


def test_seeded_and_preemption_retries_jobs():
    w = Workload(5000, 1.0)
    a = simulate(w, l4(2), PROFILES, PRICES, preemption=0.5, seed=3)
    b = simulate(w, l4(2), PROFILES, PRICES, preemption=0.5, seed=3)
    c = simulate(w, l4(2), PROFILES, PRICES, preemption=0.5, seed=4)
    assert (a.hours, a.cost_usd, a.preemptions) == (b.hours, b.cost_usd, b.preemptions)
    assert (a.hours, a.preemptions) != (c.hours, c.preemptions)
    assert a.preemptions > 0 and a.retried_jobs > 0
    calm = simulate(w, l4(2), PROFILES, PRICES, preemption=0.0)
    assert calm.preemptions == 0 and calm.hours < a.hours and calm.cost_usd < a.cost_usd


def test_jobs_that_run_out_of_retries_are_counted():
    w = Workload(400, 1.0)
    slow = Overheads(retries=0)
    r = simulate(w, l4(1, shard=64.0), PROFILES, PRICES, slow, preemption=40.0, seed=1)
    assert r.failed_jobs > 0


def test_autoscaler_stays_within_the_pool_maximum_and_scales_down():
    w = Workload(3000, 1.0)
    quick = Overheads(idle_s=30)      # removed after 30 s idle: before the tail (on its own CPU node) ends
    r = simulate(w, l4(3), PROFILES, PRICES, quick, preemption=0.0)
    gpu = [(t, n, running) for t, pool, n, running in r.timeline if pool == "gpu"]
    assert max(n for _, n, _ in gpu) == 3
    assert max(running for _, _, running in gpu) <= 3
    assert gpu[-1][1] == 0
    assert r.cost_usd < simulate(w, l4(3), PROFILES, PRICES, Overheads(idle_s=600), preemption=0.0).cost_usd
    assert r.node_hours["gpu"] > 0 and r.node_hours["spot-cpu"] > 0


def test_figure_writes_a_png(tmp_path):
    r = simulate(Workload(2000, 1.0), l4(2), PROFILES, PRICES, preemption=1.0, seed=0)
    # each preemption is recorded with its time and pool (the figure marks them): a node of that pool went down then
    assert len(r.preempted) == r.preemptions > 0
    for t, pool in r.preempted:
        assert 0 < t <= r.hours * 3600
        before = [n for s, p, n, _ in r.timeline if p == pool and s < t]
        at = [n for s, p, n, _ in r.timeline if p == pool and s == t]
        assert at and min(at) < before[-1]
    path = figure(r, tmp_path / "run.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
