"""The workflow on a real SLURM cluster (Debian's slurm-wlm, started on localhost) with profiles/slurm.

One module-scoped run does the work, in parallel to save wall time:
  * the small workflow of :mod:`support.cluster_demo` (a tissue sample with a membrane channel, a short time-lapse,
    two small fields of view in one batch) through `--profile profiles/slurm`, with one running `segment` job
    cancelled by `scancel` on the way;
  * a sample with a corrupt image through `--profile profiles/slurm` (fails for real).
Its reference is the same workflow's one local run, which the GKE test shares. The tests then read the outputs,
sacct and the Snakemake logs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from support import MODELS, ROOT, cluster_demo
from support.cluster_demo import local_run, reference  # noqa: F401 (fixtures: the local run, shared with GKE's)

from cellscale.deploy import sizing

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
HEADER = "sample\timage\tkind\tnuclear_channel\tmembrane_channel\tchannel_names\tpixel_size_um\n"
RUN_LIMIT_S = 480
# Snakemake polls SLURM 1 s after submitting (the profile's 20 s suits a shared cluster's sacct/squeue,
# a test wants results sooner); everything else comes from the profile unchanged.
FAST_POLL = ["--slurm-init-seconds-before-status-checks", "1"]


def _can_run_slurm() -> str | None:
    from support.slurm_cluster import missing_binaries

    if sys.platform != "linux":
        return "needs Linux"
    if os.geteuid() != 0:
        return "starting slurmctld/slurmd/munged needs root (CI runs as root)"
    if missing_binaries() and shutil.which("apt-get") is None:
        return "slurm-wlm/munge/mariadb are not installed and there is no apt-get to install them"
    return None


@pytest.fixture(scope="session")
def slurm_packages():
    """Debian's slurm-wlm, munge and MariaDB, apt-get installed when missing (CI: root, no stdin)."""
    from support.slurm_cluster import install_packages

    reason = _can_run_slurm()
    if reason:
        pytest.skip(reason)
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        pytest.fail("snakemake-executor-plugin-slurm is not installed: pip install -e '.[slurm]'")
    install_packages()


@pytest.fixture(scope="module")
def cluster(slurm_packages):
    from support.slurm_cluster import SlurmCluster

    with SlurmCluster(cpus=8, memory_mb=32000, gpus=2) as running:
        yield running


def write_workdir(work: Path, rows: list[str], **overrides) -> Path:
    (work / "config").mkdir(parents=True, exist_ok=True)
    (work / "config" / "samples.tsv").write_text(HEADER + "".join(r + "\n" for r in rows))
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["samples"] = str(work / "config" / "samples.tsv")
    config["models"] = {"nuclear": str(MODELS / "nuclear"), "tissue": str(MODELS / "tissue")}
    # tissue (0.066 Mpx) in a few shards, several GPU jobs; the two small fields of view share one batch job
    config["tiling"] = {"tile": 128, "overlap": 32, "shard_mpx": 0.05}
    config.update(overrides)
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return work


def start(workdir: Path, profile: str, env: dict, *extra: str) -> tuple[subprocess.Popen, Path]:
    log = workdir / f"snakemake-{profile}.log"
    cmd = ["timeout", "-s", "INT", "-k", "30", str(RUN_LIMIT_S),  # a hung run ignores SIGTERM
           SNAKEMAKE, "-s", str(ROOT / "workflow" / "Snakefile"), "--directory", str(workdir),
           "--profile", str(ROOT / "profiles" / profile), *extra]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=workdir, start_new_session=True)
    return proc, log


def cancel_one_running_segment(cluster, workdir: Path, stop: threading.Event, found: dict) -> None:
    """scancel the first `segment` job of `workdir` once it has run a few seconds (its script is at work)."""
    seen: dict[str, float] = {}
    while not stop.is_set():
        try:
            queue = cluster.queue()
        except Exception:  # noqa: BLE001 - the cluster is busy; ask again
            queue = []
        for job in queue:
            if (job["State"] == "RUNNING" and job["Comment"].startswith("rule_segment")
                    and Path(job["WorkDir"]).resolve() == workdir.resolve()):
                first = seen.setdefault(job["JobID"], time.monotonic())
                if time.monotonic() - first >= 3:
                    cluster.run(["scancel", job["JobID"]], timeout=15)
                    found.update(job)
                    return
        time.sleep(0.5)


@pytest.fixture(scope="module")
def runs(cluster, reference, tmp_path_factory):
    data = tmp_path_factory.mktemp("slurm_data")
    corrupt = data / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00" + b"\x00garbage" * 50)
    on_slurm = tmp_path_factory.mktemp("on_slurm")
    cluster_demo.write_workdir(on_slurm)
    cluster_demo.write_inputs(on_slurm)
    # a job that fails for real (a bad image in a batch fails no job: see test_workflow): own jobs for the sample
    failing = write_workdir(tmp_path_factory.mktemp("failing"), [f"broken\t{corrupt}\ttissue\t\t\t\t"],
                            batches={"enabled": False})

    env = dict(cluster.env, CELLSCALE_SLURM_ACCOUNT="cellscale",
               PATH=f"{Path(sys.executable).parent}:{cluster.env['PATH']}")
    for name in ("CELLSCALE_SLURM_CPU_PARTITION", "CELLSCALE_SLURM_GPU_PARTITION"):
        env.pop(name, None)  # the profile's defaults, cpu and gpu, are this cluster's partitions

    stop, cancelled = threading.Event(), {}
    began = time.monotonic()
    slurm_proc, slurm_log = start(on_slurm, "slurm", env, *FAST_POLL)
    watcher = threading.Thread(target=cancel_one_running_segment, args=(cluster, on_slurm, stop, cancelled))
    watcher.start()
    fail_proc, fail_log = start(failing, "slurm", env, *FAST_POLL)
    try:
        slurm_rc = slurm_proc.wait(timeout=RUN_LIMIT_S + 60)
        slurm_wall = time.monotonic() - began
        fail_rc = fail_proc.wait(timeout=RUN_LIMIT_S + 60)
    finally:
        stop.set()
        watcher.join(timeout=30)
        for proc in (slurm_proc, fail_proc):
            if proc.poll() is None:  # only on an error above: SIGINT lets Snakemake cancel its SLURM jobs
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
    return {
        "cluster": cluster, "on_slurm": on_slurm, "failing": failing,
        "slurm_rc": slurm_rc, "fail_rc": fail_rc, "slurm_wall": slurm_wall,
        "slurm_out": slurm_log.read_text(errors="replace"), "fail_out": fail_log.read_text(errors="replace"),
        "cancelled": cancelled,
    }


def test_workflow_completes_on_slurm(runs):
    assert runs["slurm_rc"] == 0, runs["slurm_out"][-6000:] + "\n" + runs["cluster"].log_tails()
    assert (runs["on_slurm"] / "results" / "summary.tsv").exists()


def test_a_second_run_has_nothing_to_do(runs):
    """What the jobs recorded (their params too: summary's tile warnings, the .h5ad provenance) is what a new run
    evaluates, so it reruns nothing (a dry run: a few seconds)."""
    if runs["slurm_rc"]:
        pytest.fail("the SLURM run failed (see test_workflow_completes_on_slurm)")
    again = subprocess.run([SNAKEMAKE, "-s", str(ROOT / "workflow" / "Snakefile"), "--directory", str(runs["on_slurm"]),
                            "--profile", str(ROOT / "profiles" / "slurm"), "-n"],
                           env=runs["cluster"].env, capture_output=True, text=True, timeout=300)
    out = again.stdout + again.stderr
    assert again.returncode == 0 and "Nothing to be done" in out, out[-3000:]


def _same(path_a: Path, path_b: Path) -> bool:
    suffixes = "".join(path_a.suffixes)
    if suffixes.endswith(".tif"):
        import tifffile

        return np.array_equal(tifffile.imread(path_a), tifffile.imread(path_b))  # OME-XML holds a fresh UUID
    if suffixes.endswith(".zarr.zip"):  # shard files: the same array and attributes (zip entries carry a time)
        a, b = _shard(path_a), _shard(path_b)
        return a.attrs.asdict() == b.attrs.asdict() and np.array_equal(a[:], b[:])
    if suffixes.endswith(".parquet"):
        return pd.read_parquet(path_a).equals(pd.read_parquet(path_b))
    if suffixes.endswith((".h5ad", ".h5")):
        return _hdf5_data(path_a) == _hdf5_data(path_b)  # values, not the file's bytes
    if suffixes.endswith(".json"):
        return json.loads(path_a.read_text()) == json.loads(path_b.read_text())
    return path_a.read_bytes() == path_b.read_bytes()


def _shard(path: Path):
    """A shard file's array (cellscale.segment.shards: Zarr in a zip)."""
    import zarr
    from zarr.storage import ZipStore

    return zarr.open_array(ZipStore(path, mode="r"), mode="r")


def _hdf5_data(path: Path) -> dict[str, bytes | str]:
    import h5py  # whatever writes .h5ad brings it

    def value(item):
        v = item[()]
        if isinstance(v, np.ndarray) and v.dtype != object:
            return v.tobytes()
        return repr(v.tolist() if isinstance(v, np.ndarray) else v)  # strings

    data = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, item: data.__setitem__(name, value(item))
                          if isinstance(item, h5py.Dataset) else None)
    return data


def test_outputs_identical_to_local_run(runs, local_run):
    if runs["slurm_rc"]:
        pytest.fail("the SLURM run failed (see test_workflow_completes_on_slurm)")
    slurm_results, local_results = runs["on_slurm"] / "results", local_run / "results"
    files = sorted(p.relative_to(local_results) for p in local_results.rglob("*")
                   if p.is_file() and p.name != ".snakemake_timestamp")
    assert files, "the local run wrote nothing"
    on_slurm = sorted(p.relative_to(slurm_results) for p in slurm_results.rglob("*")
                      if p.is_file() and p.name != ".snakemake_timestamp")
    assert on_slurm == files
    # benchmarks/<rule>/...tsv hold each job's time and memory, and cost.tsv (and its page) prices them: the same
    # files, not the same numbers
    different = [_how_different(local_results / f, slurm_results / f) for f in files
                 if f.parts[0] != "benchmarks" and f not in (Path("cost.tsv"), Path("report/cost.html"))
                 and not _same(local_results / f, slurm_results / f)]
    assert not different, different


def _how_different(path_a: Path, path_b: Path) -> str:
    """The file's name and, for arrays, how many values differ and by how much (for a failure message)."""
    suffixes = "".join(path_a.suffixes)
    if suffixes.endswith((".tif", ".zarr.zip")):
        import tifffile

        read = tifffile.imread if suffixes.endswith(".tif") else lambda p: _shard(p)[:]
        a, b = read(path_a), read(path_b)
        if a.shape != b.shape:
            return f"{path_a.name}: shape {a.shape} locally, {b.shape} on SLURM"
        diff = a.astype(np.float64) != b.astype(np.float64)
        return (f"{path_a.parent.name}/{path_a.name}: {int(diff.sum())} of {diff.size} values differ, largest by "
                f"{float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()):.3g}")
    return f"{path_a.parent.name}/{path_a.name}"


def _rule(comment: str) -> str:
    """Rule (or group) of a job from the plugin's sbatch --comment: rule_<name>[_wildcards_<values>]."""
    return re.sub(r"^rule_", "", comment).split("_wildcards_")[0]


def test_segment_ran_in_gpu_partition_and_the_rest_in_cpu(runs):
    jobs = runs["cluster"].jobs(runs["on_slurm"])
    assert jobs, "sacct shows no job of the run"
    gpu_rules = ("segment", "segment_batch")
    segment = [j for j in jobs if _rule(j["Comment"]) in gpu_rules]
    others = [j for j in jobs if _rule(j["Comment"]) not in gpu_rules]
    assert len({j["Comment"] for j in segment if _rule(j["Comment"]) == "segment"}) >= 3, "several shards, one GPU job each"
    assert len({j["Comment"] for j in segment if _rule(j["Comment"]) == "segment_batch"}) == 1, "fov1, fov2: one batch"
    for job in segment:
        assert job["Partition"] == "gpu", job
        assert "gres/gpu=1" in job["AllocTRES"], job
    assert {"plan_batches", "tile", "stitch", "summary", "report_fields"} <= {_rule(j["Comment"]) for j in others}
    for job in others:
        assert job["Partition"] == "cpu", job
        assert "gres/gpu" not in job["AllocTRES"], job
    # every job ran under the account given through the environment (CELLSCALE_SLURM_ACCOUNT)
    account = runs["cluster"].run(["sacct", "-X", "-n", "-P", "-o", "Account", "--starttime", "now-1day",
                                   "-j", ",".join(j["JobIDRaw"] for j in jobs)]).stdout.split()
    assert set(account) == {"cellscale"}


def test_small_per_sample_rules_are_grouped(runs):
    jobs = runs["cluster"].jobs(runs["on_slurm"])
    grouped = [j for j in jobs if "per_sample" in j["Comment"]]
    # track, measure x2, report_sample x2 and lineage of both samples: one SLURM job
    assert len(grouped) == 1, [j["Comment"] for j in jobs]
    for rule in ("track", "measure", "report_sample", "lineage"):
        assert not [j for j in jobs if _rule(j["Comment"]) == rule], rule


def test_cancelled_job_is_retried_and_the_run_completes(runs):
    cancelled = runs["cancelled"]
    assert cancelled, "no running segment job was seen to cancel"
    jobs = runs["cluster"].jobs(runs["on_slurm"])
    same = [j for j in jobs if j["Comment"] == cancelled["Comment"]]
    states = {j["JobIDRaw"]: j["State"] for j in same}
    assert states[cancelled["JobID"]].startswith("CANCELLED"), states
    assert "COMPLETED" in [s for i, s in states.items() if int(i) > int(cancelled["JobID"])], states
    assert runs["slurm_rc"] == 0


def test_real_failure_reports_its_log_path(runs):
    out = runs["fail_out"]
    assert runs["fail_rc"] not in (0, 124), out[-3000:]  # failed, and did not hang
    logs = re.findall(r"(/\S*\.snakemake/slurm_logs/rule_tile/broken/\d+\.log)", out)
    assert logs, out[-3000:]
    for log in set(logs):
        assert Path(log).exists(), log
    assert any("sample 'broken'" in Path(log).read_text(errors="replace") for log in set(logs))
    assert "logs/tile/broken.log" in out  # the rule's own log too
    jobs = runs["cluster"].jobs(runs["failing"])
    assert [j["State"] for j in jobs].count("FAILED") == 3, jobs  # retried twice (profile: retries 2)


def test_partitions_and_account_come_from_the_environment(runs):
    env = dict(runs["cluster"].env, CELLSCALE_SLURM_ACCOUNT="lab42", CELLSCALE_SLURM_CPU_PARTITION="short",
               CELLSCALE_SLURM_GPU_PARTITION="gpu-a100")
    result = subprocess.run(
        [SNAKEMAKE, "-s", str(ROOT / "workflow" / "Snakefile"), "--directory", str(runs["on_slurm"]),
         "--profile", str(ROOT / "profiles" / "slurm"), "-n", "--forcerun", "segment", "segment_batch",
         # named targets: forcerun reaches no job behind two checkpoints (plan_batches, then tile) in Snakemake 9.27
         "results/segmentation/tissue/nuclear.ome.tif", f"results/batches/{cluster_demo.BATCH}"],
        env=env, capture_output=True, text=True, timeout=300)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    blocks = out.split("\nrule ")
    segment = [b for b in blocks if b.startswith(("segment:", "segment_batch:"))]
    stitch = [b for b in blocks if b.startswith("stitch:")]
    assert segment and stitch and any(b.startswith("segment_batch:") for b in segment)
    assert all("slurm_partition=gpu-a100" in b and "gpu=1" in b and "slurm_account=lab42" in b for b in segment)
    assert all("slurm_partition=short" in b and "slurm_account=lab42" in b for b in stitch)


# ---- timings, for the record (printed with `pytest -s`)
STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]")


def _snakemake_view(out: str) -> tuple[dict[str, datetime], dict[str, datetime]]:
    """SLURM job id -> when Snakemake submitted it, and -> when it saw it finish (non-group jobs)."""
    now, submitted, finished, slurm_of = None, {}, {}, {}
    for line in out.splitlines():
        stamp = STAMP.match(line.strip())
        if stamp:
            now = datetime.strptime(stamp.group(1), "%a %b %d %H:%M:%S %Y")
            continue
        sub = re.search(r"Job (\d+) has been submitted with SLURM jobid (\d+)", line)
        if sub and now:
            slurm_of[sub.group(1)] = sub.group(2)
            submitted[sub.group(2)] = now
        fin = re.search(r"Finished jobid: (\d+)", line)
        if fin and now and fin.group(1) in slurm_of:
            finished[slurm_of[fin.group(1)]] = now
    return submitted, finished


def test_timings(runs):
    jobs = {j["JobIDRaw"]: j for j in runs["cluster"].jobs(runs["on_slurm"])}
    submitted, finished = _snakemake_view(runs["slurm_out"])
    seen = [i for i in finished if i in jobs and jobs[i]["State"] == "COMPLETED"]
    assert seen

    def secs(a, b):
        return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()

    def elapsed(text):
        h, m, s = (int(x) for x in text.split("-")[-1].split(":"))
        return 3600 * h + 60 * m + s

    bench = [float(pd.read_csv(p, sep="\t")["s"].iloc[0])
             for p in (runs["on_slurm"] / sizing.BENCHMARKS).rglob("*.tsv")]
    rows = {
        "seen_by_snakemake_s": [(finished[i] - submitted[i]).total_seconds() for i in seen],
        "queue_wait_s": [secs(jobs[i]["Submit"], jobs[i]["Start"]) for i in seen],
        "slurm_elapsed_s": [elapsed(jobs[i]["Elapsed"]) for i in seen],
        "poll_delay_s": [(finished[i] - datetime.fromisoformat(jobs[i]["End"])).total_seconds() for i in seen],
    }
    report = {k: round(float(np.mean(v)), 1) for k, v in rows.items()}
    report.update(slurm_run_wall_s=round(runs["slurm_wall"], 1), slurm_jobs=len(jobs),
                  rule_benchmark_mean_s=round(float(np.mean(bench)), 1) if bench else None)
    print("\nSLURM timings (means over single jobs):", json.dumps(report))
    sized = sizing.size_for("slurm", runs["on_slurm"] / sizing.BENCHMARKS)   # what `cellscale size` prints
    assert {"tile", "segment", "stitch", "measure", "report_sample", "summary"} <= set(sized)
    assert report["seen_by_snakemake_s"] < 180  # a trivial job must not wait minutes
