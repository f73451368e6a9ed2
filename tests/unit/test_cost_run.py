"""What a run cost (cellscale.cost.jobs, .runcost, throughput.fit_profile): the job table from benchmark files and
plans, fitting a throughput profile, pricing jobs on a profile's machine types, results/cost.tsv."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cellscale.cost.jobs import job_table, read_batch_plan
from cellscale.cost.model import Overheads
from cellscale.cost.prices import load_prices
from cellscale.cost.runcost import Placement, Slot, placement_from_profile, price_run
from cellscale.cost.throughput import fit_profile, load_profile, write_profile

DEMO_BENCHMARKS = Path(__file__).parents[1] / "data" / "demo_benchmarks"
HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
PRICES = {
    "name": "test-table", "region": "test", "date": "2026-01-02", "source": "made up for the tests", "currency": "USD",
    "machines": {"gpu-4": {"vcpus": 4, "memory_gib": 16, "gpu": "L4", "gpus": 1, "on_demand": 0.72, "spot": 0.36},
                 "cpu-4": {"vcpus": 4, "memory_gib": 16, "on_demand": 0.2, "spot": 0.05}},
    "storage": {"gcs_standard_gb_month": 0.02, "gcs_class_a_per_10k": 0.05, "gcs_class_b_per_10k": 0.004},
    "cluster": {"management_fee_usd_h": 0.1},
}


def bench(folder: Path, rel: str, s: float, rss="100.0", cpu: float | None = None) -> None:
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{s}\t0:00:01\t{rss}\t1\t1\t1\t0\t0\t50\t{s if cpu is None else cpu}\n")


@pytest.fixture
def prices(tmp_path):
    path = tmp_path / "prices.yaml"
    path.write_text(yaml.safe_dump(PRICES))
    return load_prices(path)


@pytest.fixture
def run_dir(tmp_path):
    """A run's results: one batch of two images (0.3 and 0.1 Mpx), a sample with its own jobs (a 2-frame movie of
    200 x 500 px = 0.2 Mpx in two shards of 3 and 1 windows), an image whose size is unknown, run-level jobs."""
    results = tmp_path / "results"
    (results / "batches").mkdir(parents=True)
    (results / "batches" / "plan.tsv").write_text(
        "sample\tbatch\tmpx\nfovA\t0\t0.3\nfovB\t0\t0.1\nmovie\t\t\nbroken\t1\t\n")
    (results / "tiles" / "movie").mkdir(parents=True)
    (results / "tiles" / "movie" / "plan.json").write_text(json.dumps(
        {"shape": [2, 200, 500], "tiles": [[0, 0, 0], [0, 0, 1], [1, 0, 0], [1, 0, 1]], "shards": [[0, 1, 2], [3]]}))
    b = results / "benchmarks"
    bench(b, "plan_batches/run.tsv", 1.5)
    bench(b, "segment_batch/0000.tsv", 8.0, rss="900.5", cpu=12.0)
    bench(b, "segment_batch/0001.tsv", 2.0)
    bench(b, "tile/movie.tsv", 1.0, rss="NA")
    bench(b, "segment/movie/shard_0000.tsv", 6.0)
    bench(b, "segment/movie/shard_0001.tsv", 2.0)
    bench(b, "stitch/movie/nuclear.tsv", 3.0)
    bench(b, "track/movie.tsv", 2.5)
    bench(b, "summary/run.tsv", 0.5)
    bench(b, "aggregate_measurements/cells.tsv", 0.7)
    return results


def test_job_table_gives_each_job_its_sample_batch_and_megapixels(run_dir):
    jobs = job_table(run_dir / "benchmarks", run_dir).set_index("job")
    assert len(jobs) == 10 and list(jobs.columns) == ["rule", "sample", "batch", "mpx", "s", "max_rss_mb",
                                                      "cpu_time_s"]
    assert jobs.loc["segment_batch/0000.tsv", ["rule", "sample", "batch"]].tolist() == ["segment_batch", "", "0000"]
    assert jobs.loc["segment_batch/0000.tsv", "mpx"] == pytest.approx(0.4)       # fovA + fovB
    assert math.isnan(jobs.loc["segment_batch/0001.tsv", "mpx"])                 # its only image's size is unknown
    assert jobs.loc["tile/movie.tsv", "mpx"] == pytest.approx(0.2)               # every frame of the movie
    assert jobs.loc["stitch/movie/nuclear.tsv", ["sample", "mpx"]].tolist() == ["movie", pytest.approx(0.2)]
    assert jobs.loc["segment/movie/shard_0000.tsv", "mpx"] == pytest.approx(0.15)  # 3 of its 4 windows
    assert jobs.loc["segment/movie/shard_0001.tsv", "mpx"] == pytest.approx(0.05)
    for job in ("plan_batches/run.tsv", "summary/run.tsv", "aggregate_measurements/cells.tsv"):
        assert jobs.loc[job, "sample"] == "" and jobs.loc[job, "mpx"] == pytest.approx(0.6)  # the run's total
    assert math.isnan(jobs.loc["tile/movie.tsv", "max_rss_mb"])                  # "NA": never sampled
    assert jobs.loc["segment_batch/0000.tsv", ["s", "max_rss_mb", "cpu_time_s"]].tolist() == [8.0, 900.5, 12.0]


def test_job_table_without_plans_knows_no_sizes_and_reads_every_demo_file():
    jobs = job_table(DEMO_BENCHMARKS, results_dir=None)
    files = sorted(p.relative_to(DEMO_BENCHMARKS).as_posix() for p in DEMO_BENCHMARKS.rglob("*.tsv"))
    assert sorted(jobs["job"]) == files
    assert jobs["mpx"].isna().all() and (jobs["s"] > 0).all()
    segment = jobs[jobs["rule"] == "segment"]
    assert set(segment["sample"]) == {"dsb_fluo_small", "dsb_fluo_large", "synthetic_timelapse", "synthetic_tissue",
                                      "dsb_histology"}
    assert set(jobs.loc[jobs["rule"] == "summary", "sample"]) == {""}


def test_fit_recovers_known_coefficients():
    mpx = np.array([0.5, 1.0, 2.0, 4.0, 8.0])
    rows = pd.DataFrame({"rule": "segment_batch", "job": [f"segment_batch/{i:04d}.tsv" for i in range(5)],
                         "sample": "", "batch": "", "mpx": mpx, "s": 3.0 + 0.5 * mpx,
                         "max_rss_mb": 200.0 + 40.0 * mpx, "cpu_time_s": np.array([2, 2, 2, 2, 2.9]) * (3.0 + 0.5 * mpx)})
    profile = fit_profile(rows, "cpu-4", "test", "synthetic rows")
    rate = profile.rate("segment_batch")
    assert (rate.fixed_s, rate.s_per_mpx) == (pytest.approx(3.0), pytest.approx(0.5))
    assert (rate.mem_mb, rate.mem_mb_per_mpx) == (pytest.approx(200.0), pytest.approx(40.0))
    assert rate.origin == "measured" and rate.per == "mpx" and not rate.gpu
    assert rate.threads == 3  # the most cores a job of it kept busy (2.9), rounded up
    assert "synthetic rows" in rate.how and "least squares" in rate.how and profile.machine == "cpu-4"


def test_fit_keeps_coefficients_non_negative_and_says_how_with_one_size(tmp_path):
    rows = pd.DataFrame({
        "rule": ["measure"] * 3 + ["tile", "summary", "lineage"],
        "job": ["measure/a.tsv", "measure/b.tsv", "measure/c.tsv", "tile/a.tsv", "summary/run.tsv", "lineage/a.tsv"],
        "sample": ["a", "b", "c", "a", "", "a"], "batch": "",
        "mpx": [1.0, 2.0, 3.0, 2.0, 6.0, np.nan],
        "s": [5.0, 4.0, 3.0, 4.0, 3.0, 7.0],             # measure gets faster with size: slope clipped at 0
        "max_rss_mb": [100.0, 100.0, 100.0, np.nan, 50.0, 80.0], "cpu_time_s": 1.0})
    profile = fit_profile(rows, "local", "t", "synthetic")
    measure, tile, summary, lineage = (profile.rate(r) for r in ("measure", "tile", "summary", "lineage"))
    assert measure.s_per_mpx == 0 and measure.fixed_s == pytest.approx(4.0)
    assert (tile.fixed_s, tile.s_per_mpx) == (0.0, pytest.approx(2.0)) and "one size only" in tile.how
    assert tile.mem_mb == 0 and "never sampled" in tile.how
    assert summary.per == "run" and summary.s_per_mpx == pytest.approx(0.5) and summary.mem_mb == 50.0
    assert lineage.fixed_s == 7.0 and lineage.s_per_mpx == 0 and "no job's mpx known" in lineage.how
    back = load_profile(write_profile(profile, tmp_path / "t.yaml"))
    assert back.rules == profile.rules and back.assumptions() == []


def test_price_of_two_jobs_by_hand(prices):
    jobs = pd.DataFrame({"rule": ["segment_batch", "measure"], "job": ["segment_batch/0000.tsv", "measure/a.tsv"],
                         "sample": ["", "a"], "batch": ["0000", ""], "mpx": [0.4, 1.0], "s": [3600.0, 1800.0],
                         "max_rss_mb": [1.0, 1.0], "cpu_time_s": [1.0, 1.0]})
    placement = Placement(default=Slot("cpu-4", threads=1, mem_mb=1000.0, spot=True),
                          rules={"segment_batch": Slot("gpu-4", threads=2, mem_mb=8000.0, gpus=1, spot=False),
                                 "measure": Slot("cpu-4", threads=1, mem_mb=8 * 1024**3 / 1e6, spot=True)})
    plan = pd.DataFrame({"sample": ["x", "y"], "batch": ["0000", "0000"], "mpx": [0.3, 0.1]})
    cost = price_run(jobs, prices, placement, plan=plan)
    # segment_batch: the whole GPU (1 of 1) x 0.72 $/h on demand x 1 h; measure: 8 GiB of 16 = half the node x
    # 0.05 $/h spot x 0.5 h
    by_job = cost.jobs.set_index("job")
    assert by_job.loc["segment_batch/0000.tsv", "usd"] == pytest.approx(0.72)
    assert by_job.loc["measure/a.tsv", "node_share"] == pytest.approx(0.5)
    assert by_job.loc["measure/a.tsv", "usd"] == pytest.approx(0.0125)
    rule, pool, run = cost.level("rule"), cost.level("pool"), cost.level("run")
    assert rule.loc["segment_batch", "usd_per_1000_mpx"] == pytest.approx(0.72 / 0.4 * 1000)
    assert pool.loc["gpu", "usd"] == pytest.approx(0.72) and pool.loc["spot-cpu", "usd"] == pytest.approx(0.0125)
    assert pool.loc["gpu", "spot"] == "false" and pool.loc["spot-cpu", "spot"] == "true"
    assert run.loc["compute", "usd"] == pytest.approx(0.7325) == rule["usd"].sum()
    # no storage, no wall time given: not priced (NaN), and the total is compute only
    assert math.isnan(run.loc["storage", "usd"]) and math.isnan(run.loc["cluster_fee", "usd"])
    assert cost.total_usd == pytest.approx(0.7325)
    # spot=True prices the GPU job spot too
    assert price_run(jobs, prices, placement, spot=True).jobs["usd"].iloc[0] == pytest.approx(0.36)


def test_a_batch_is_split_over_its_images_by_megapixels(prices):
    jobs = pd.DataFrame({"rule": ["segment_batch", "segment_batch", "summary"],
                         "job": ["segment_batch/0000.tsv", "segment_batch/0001.tsv", "summary/run.tsv"],
                         "sample": ["", "", ""], "batch": ["0000", "0001", ""], "mpx": [0.4, np.nan, 0.4],
                         "s": [3600.0, 360.0, 3600.0], "max_rss_mb": np.nan, "cpu_time_s": np.nan})
    placement = Placement(default=Slot("cpu-4", threads=4, spot=False),
                          rules={"segment_batch": Slot("gpu-4", gpus=1, spot=False)})
    plan = pd.DataFrame({"sample": ["x", "y", "z", "w"], "batch": ["0000", "0000", "0001", "0001"],
                         "mpx": [0.3, 0.1, np.nan, np.nan]})
    samples = price_run(jobs, prices, placement, plan=plan).level("sample")
    # batch 0000 (0.72 $) 3:1 by megapixels; batch 0001 (0.072 $) evenly (sizes unknown); summary (0.2 $, the
    # whole CPU node on demand) over every image by megapixels (z and w: none)
    assert samples.loc["x", "usd"] == pytest.approx(0.75 * 0.72 + 0.75 * 0.2)
    assert samples.loc["y", "usd"] == pytest.approx(0.25 * 0.72 + 0.25 * 0.2)
    assert samples.loc["z", "usd"] == samples.loc["w", "usd"] == pytest.approx(0.036)
    assert samples["usd"].sum() == pytest.approx(0.72 + 0.072 + 0.2)
    assert samples.loc["x", "mpx"] == 0.3 and math.isnan(samples.loc["z", "mpx"])


def test_storage_and_cluster_fee(prices):
    jobs = pd.DataFrame({"rule": ["tile"], "job": ["tile/a.tsv"], "sample": ["a"], "batch": [""], "mpx": [2.0],
                         "s": [10.0], "max_rss_mb": [1.0], "cpu_time_s": [1.0]})
    placement = Placement(default=Slot("cpu-4", spot=True))
    run = price_run(jobs, prices, placement, storage={"bytes": 2 * 1024**3, "files_written": 20000,
                                                      "files_read": 10000}, wall_s=7200).level("run")
    assert run.loc["storage", "usd"] == pytest.approx(0.04)
    reads = Overheads().class_b_per_download   # a file read through the storage plugin: 13 class B (measured)
    assert run.loc["operations", "usd"] == pytest.approx(0.1 + reads * 0.004)
    assert run.loc["cluster_fee", "usd"] == pytest.approx(0.2)
    compute = 10 / 3600 * 0.05 * 0.25
    assert run.loc["total", "usd"] == pytest.approx(compute + 0.04 + 0.1 + reads * 0.004 + 0.2)
    assert run.loc["total", "usd_per_1000_mpx"] == pytest.approx(run.loc["total", "usd"] / 2.0 * 1000)


def test_placement_from_a_profile(tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({
        "default-resources": {"machine_type": "cpu-4", "mem_mb": 2000, "disk_mb": "max(3*input.size_mb, 2000)"},
        "set-resources": {"segment": {"machine_type": "gpu-4", "gpu": 1, "mem_mb": 8000}, "stitch": {"mem_mb": 4000}},
        "set-threads": {"measure": 3}}))
    placement = placement_from_profile(tmp_path, threads={"segment": 2, "stitch": 2})
    assert placement.slot("segment") == Slot("gpu-4", threads=2, mem_mb=8000, gpus=1, spot=False)
    assert placement.slot("segment").pool == "gpu"
    assert placement.slot("stitch") == Slot("cpu-4", threads=2, mem_mb=4000, spot=True)
    assert placement.slot("measure").threads == 3
    assert placement.slot("anything") == Slot("cpu-4", threads=1, mem_mb=2000, spot=True)
    assert placement_from_profile(tmp_path / "config.yaml", cpu_spot=False).slot("tile").pool == "cpu"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"default-resources": ["mem_mb=2000"]}))
    with pytest.raises(ValueError, match="machine_type"):
        placement_from_profile(tmp_path)


def test_the_shipped_gke_profile_places_the_gpu_rules_on_the_gpu_pool():
    placement = placement_from_profile(Path(__file__).parents[2] / "profiles" / "gke")
    for rule in ("segment", "segment_batch"):
        assert placement.slot(rule).gpus == 1 and not placement.slot(rule).spot
    assert placement.slot("tile").spot and placement.slot("tile").gpus == 0


def test_a_gpu_rule_on_a_machine_without_gpu_is_an_error(prices):
    jobs = pd.DataFrame({"rule": ["segment"], "job": ["segment/a/shard_0000.tsv"], "sample": ["a"], "batch": [""],
                         "mpx": [1.0], "s": [1.0], "max_rss_mb": [1.0], "cpu_time_s": [1.0]})
    with pytest.raises(ValueError, match="has none"):
        price_run(jobs, prices, Placement(default=Slot("cpu-4", gpus=1)))
    with pytest.raises(KeyError, match="no machine type"):
        price_run(jobs, prices, Placement(default=Slot("n9-huge")))


def test_step_writes_cost_tsv_whose_levels_add_up(run_dir, prices, tmp_path):
    from cellscale.cost.benchmarks import benchmark_files
    from cellscale.steps.cost import run_cost

    (tmp_path / "profile.yaml").write_text(yaml.safe_dump({
        "default-resources": {"machine_type": "cpu-4", "mem_mb": 2000},
        "set-resources": {"segment": {"machine_type": "gpu-4", "gpu": 1}, "segment_batch": {"machine_type": "gpu-4",
                                                                                            "gpu": 1}}}))
    plan = json.loads((run_dir / "tiles/movie/plan.json").read_text())
    out = tmp_path / "cost.tsv"
    run_cost(benchmark_files(run_dir / "benchmarks"), run_dir / "batches/plan.tsv", {"movie": plan}, prices.path,
             tmp_path / "profile.yaml", out, threads={"segment": 2}, results_dir=run_dir)
    table = pd.read_csv(out, sep="\t", keep_default_na=False, na_values=[""])
    assert set(table["level"]) == {"run", "pool", "rule", "sample", "job"}
    by = {level: g.set_index("key") for level, g in table.groupby("level")}
    compute = by["run"].loc["compute", "usd"]
    for level in ("job", "rule", "pool", "sample"):
        assert by[level]["usd"].sum() == pytest.approx(compute, rel=1e-5), level
    assert set(by["rule"].index) == {"plan_batches", "segment_batch", "tile", "segment", "stitch", "track", "summary",
                                     "aggregate_measurements"}
    assert by["run"].loc["storage", "usd"] > 0 and by["run"].loc["cluster_fee", "usd"] > 0
    assert by["run"].loc["total", "usd"] > compute
    assert set(by["sample"].index) == {"fovA", "fovB", "movie", "broken"}
    assert read_batch_plan(run_dir / "batches/plan.tsv")["batch"].tolist() == ["0000", "0000", "", "0001"]


def test_throughput_command_fits_prints_and_writes_a_profile(run_dir, tmp_path, capsys):
    from cellscale.cli import main

    out = tmp_path / "profile.yaml"
    assert main(["throughput", str(run_dir), "--machine", "cpu-4", "--name", "pilot", "--out", str(out),
                 "--where", "a test machine", "--gpu-rules", "segment_batch"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    profile = load_profile(out)
    assert printed["name"] == profile.name == "pilot" and profile.machine == "cpu-4"
    assert set(profile.rules) == {"plan_batches", "segment_batch", "tile", "segment", "stitch", "track", "summary",
                                  "aggregate_measurements"}
    assert profile.rate("segment_batch").gpu and not profile.rate("tile").gpu
    assert profile.rate("summary").per == "run" and profile.rate("segment").per == "mpx"
    # segment: shards of 0.15 and 0.05 Mpx took 6 and 2 s: 40 s/Mpx, nothing fixed
    assert profile.rate("segment").s_per_mpx == pytest.approx(40.0) and profile.rate("segment").fixed_s == 0
    assert all("a test machine" in r.how and r.origin == "measured" for r in profile.rules.values())
    # the segment rules record the runs' segment.augment (the schema's without a config beside them), no other rule
    assert profile.rate("segment_batch").augment == profile.rate("segment").augment == "rot180"
    assert profile.rate("tile").augment is None and "augment" not in printed["rules"]["tile"]
    assert main(["throughput", str(run_dir), "--machine", "cpu-4", "--name", "pilot", "--out", str(out),
                 "--augment", "none"]) == 0
    assert load_profile(out).rate("segment_batch").augment == "none"
    assert main(["throughput", str(tmp_path / "nothing"), "--machine", "m", "--name", "n"]) == 2



def test_one_profile_per_machine_type_in_a_folder(run_dir, tmp_path, capsys):
    """A second profile of a machine type beside the first was silently one or the other (the later file name);
    cellscale throughput refuses to write it, and the planner refuses a folder that has one, naming both files."""
    from cellscale.cli import main
    from cellscale.cost.plan import load_profiles

    folder = tmp_path / "throughput"
    assert main(["throughput", str(run_dir), "--machine", "cpu-4", "--name", "cpu-4", "--out",
                 str(folder / "cpu-4.yaml")]) == 0
    capsys.readouterr()
    assert main(["throughput", str(run_dir), "--machine", "cpu-4", "--name", "a-pilot", "--out",
                 str(folder / "a-pilot.yaml")]) == 2
    err = capsys.readouterr().err
    assert "not written:" in err and "cpu-4.yaml and" in err and "both throughput profiles of cpu-4" in err
    assert sorted(p.name for p in folder.iterdir()) == ["cpu-4.yaml"]
    assert main(["throughput", str(run_dir), "--machine", "cpu-4", "--name", "cpu-4", "--out",
                 str(folder / "cpu-4.yaml")]) == 0   # the same file: replaced
    (folder / "a-pilot.yaml").write_text((folder / "cpu-4.yaml").read_text())
    with pytest.raises(ValueError, match=r"a-pilot.yaml and .*cpu-4.yaml are both throughput profiles of cpu-4"):
        load_profiles(folder)


def test_throughput_names_the_profile_after_its_machine_type_by_default(run_dir, tmp_path, monkeypatch, capsys):
    """As README shows it, `cellscale throughput RESULTS --machine TYPE` where config/throughput has a profile of
    TYPE (the checkout's shipped ones): it replaces that profile; another --name is refused, saying what to do."""
    from cellscale.cli import main

    monkeypatch.chdir(tmp_path)
    shipped = tmp_path / "config" / "throughput" / "cpu-4.yaml"
    assert main(["throughput", str(run_dir), "--machine", "cpu-4", "--name", "cpu-4", "--where", "first"]) == 0
    assert main(["throughput", str(run_dir), "--machine", "cpu-4", "--where", "second"]) == 0
    profile = load_profile(shipped)
    assert profile.name == "cpu-4" and all("second" in r.how for r in profile.rules.values())
    capsys.readouterr()
    assert main(["throughput", str(run_dir), "--machine", "cpu-4", "--name", "pilot"]) == 2
    err = capsys.readouterr().err
    assert "both throughput profiles of cpu-4" in err and "--out FILE" in err and "--profiles" not in err
    assert sorted(p.name for p in shipped.parent.iterdir()) == ["cpu-4.yaml"]
