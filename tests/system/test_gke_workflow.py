"""`snakemake --profile profiles/gke` end to end on Kubernetes and Cloud Storage stand-ins, with no shared filesystem.

The real profile, the real snakemake-executor-plugin-kubernetes and the real Kubernetes client submit Jobs to
tests/support/kube_emulator.py on 127.0.0.1. Each pod runs as a local process in its own empty scratch folder
(its emptyDir); the only way files move between jobs is the real snakemake-storage-plugin-gcs and
google-cloud-storage client, talking to a Cloud Storage emulator (tests/support/gcs_emulator.py, gcp-storage-emulator)
that counts every request by pod and billing class. The data and models exist only in that bucket. A seeded fraction
of pods is SIGKILLed mid-run, as a reclaimed spot node kills them. Results must equal a plain local run's.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import kubernetes_validate
import numpy as np
import pandas as pd
import pytest
from support import cluster_demo, rule_directive
from support import gke_run as harness
from support.cluster_demo import local_run, reference  # noqa: F401 (fixtures: the local run, shared with SLURM's)
from support.gcs_emulator import GcsEmulator
from support.kube_emulator import Cluster, api_errors

from cellscale.deploy import gke, sizing

pytestmark = pytest.mark.workflow
BIN = harness.BIN
GKE_KUBERNETES = "1.36.0"
# a tenth of first attempts (seed 1: 3 or 4 of about 30 pods, early ones among them); every killed pod is one more
# pod, each a Snakemake start and a pip install, and 30% cost about 10 pods more for no more coverage
KILL_FRACTION, SEED = 0.1, 1
BUCKET, ENV = harness.BUCKET, harness.ENV
PROFILE = harness.PROFILE


def fs_command(bucket: Path, *extra: str) -> list[str]:
    """The profile's offline check (its header): the fs storage plugin on a local folder instead of the bucket."""
    return [str(BIN / "snakemake"), "--profile", str(PROFILE),
            "--default-storage-provider", "fs", "--default-storage-prefix", str(bucket), *extra]


def install_rsync() -> None:
    """snakemake-storage-plugin-fs copies with rsync, which a clean Debian machine lacks (CI): apt-get install it
    when root, as the SLURM test installs its packages."""
    if shutil.which("rsync") or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "--no-install-recommends", "rsync"]):
        subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=600)


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    """The bucket: a Cloud Storage emulator holding the inputs under the profile's prefix (cellscale/)."""
    base = tmp_path_factory.mktemp("gcs")
    with GcsEmulator(base / "emulator", bucket=BUCKET) as gcs:
        cluster_demo.write_inputs(base / "inputs")
        gcs.upload_tree(base / "inputs", "cellscale")  # data and models exist only in the bucket
        yield gcs


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, storage):
    if shutil.which("git") is None:
        pytest.skip("needs git (Snakemake deploys the workflow's tracked files to the pods)")
    base = tmp_path_factory.mktemp("gke")
    work = base / "work"
    cluster_demo.write_workdir(work)
    return base, work, storage.path("cellscale")


def test_dry_run_resolves_the_dag_offline(prepared, tmp_path):
    """The profile's documented offline check: the whole DAG from a local folder through the fs storage plugin."""
    install_rsync()
    if shutil.which("rsync") is None:
        pytest.skip("needs rsync (snakemake-storage-plugin-fs); apt-get could not install it (not root, or none)")
    base, work, _ = prepared
    bucket = tmp_path / "bucket" / "cellscale"
    cluster_demo.write_inputs(bucket)
    result = subprocess.run(fs_command(bucket, "--dry-run"), cwd=work, capture_output=True, text=True,
                            env={**os.environ, **ENV}, timeout=300)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    # which samples share jobs is known once the plan_batches checkpoint has read the images: the dry run shows it
    assert re.search(r"^plan_batches\s+1$", out, re.M) and "DAG of jobs will be updated" in out
    assert not (work / "results").exists()


def launcher_command(*extra: str) -> list[str]:
    """The launcher's snakemake as a user types it: the profile names the gcs storage provider and the bucket (from
    ENV)."""
    return [str(BIN / "snakemake"), "--profile", str(PROFILE), "--container-image", "cellscale:emulated",
            "--jobs", "2", *extra]


@pytest.fixture(scope="module")
def gke_run(prepared, reference, storage):
    base, work, bucket = prepared
    pod_env = harness.pod_env(base, storage)
    settings = gke.settings(PROFILE, environ=ENV)
    with Cluster(settings.pools(), base / "cluster", pod_env=pod_env, max_running=2,
                 kill_fraction=KILL_FRACTION, seed=SEED) as cluster:
        kubeconfig = cluster.start(namespace="cellscale")
        started = time.time()
        runs = []
        for _ in range(2):
            result = subprocess.run(
                launcher_command("--seconds-between-status-checks", "1"), cwd=work, capture_output=True, text=True,
                timeout=1500, env={**os.environ, **ENV, "KUBECONFIG": str(kubeconfig),
                                   "STORAGE_EMULATOR_HOST": storage.endpoint("launcher")})
            runs.append(result.stdout + result.stderr)
            # Snakemake 9.27 may drop the retry of a killed job that follows a checkpoint and end with exit 0 and
            # outputs missing; the workflow's end check turns that into an error asking for a rerun, which a user
            # would do: one rerun must finish the run (nothing else may fail)
            if result.returncode == 0 or "Run the same command again to finish it" not in runs[-1]:
                break
        seconds = time.time() - started
    out = "\n".join(runs)
    assert result.returncode == 0, out[-6000:]
    return {"work": work, "bucket": bucket, "cluster": cluster, "out": out, "seconds": seconds, "runs": len(runs),
            "settings": settings, "profile": gke.load_profile(PROFILE, environ=ENV)}


def option_values(job: dict, option: str) -> list[str]:
    """The values of one option of a pod's snakemake command (those up to the next option)."""
    args = shlex.split(job["spec"]["template"]["spec"]["containers"][0]["args"][1])
    values = args[args.index(option) + 1:]
    return values[:next((i for i, v in enumerate(values) if v.startswith("--")), len(values))]


def rules_of(job: dict) -> list[str]:
    return option_values(job, "--allowed-rules")


def test_no_shared_filesystem_results_equal_local_run(gke_run, local_run):
    from cellscale.io import read_labels

    bucket, work = gke_run["bucket"], gke_run["work"]
    assert not (work / "results").exists(), "outputs must go to storage only"
    for rel in ("results/segmentation/tissue/nuclear.ome.tif", "results/segmentation/tissue/whole_cell.ome.tif",
                "results/segmentation/movie/nuclear.ome.tif"):
        np.testing.assert_array_equal(read_labels(bucket / rel), read_labels(local_run / rel))
    for rel in ("results/measurements/tissue.parquet", "results/measurements/movie.parquet",
                "results/tracks/movie.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(bucket / rel), pd.read_parquet(local_run / rel))
    for rel in ("results/tracks/movie/res_track.txt", "results/summary.tsv", "results/index.tsv",
                "results/errors.tsv", "results/batches/plan.tsv"):
        assert (bucket / rel).read_text() == (local_run / rel).read_text(), rel
    for sample in ("fov1", "fov2"):
        rel = f"results/batches/{cluster_demo.BATCH}/labels/{sample}/nuclear.ome.tif"
        np.testing.assert_array_equal(read_labels(bucket / rel), read_labels(local_run / rel))
    pd.testing.assert_frame_equal(pd.read_parquet(bucket / f"results/cells/batch_{cluster_demo.BATCH}.parquet"),
                                  pd.read_parquet(local_run / f"results/cells/batch_{cluster_demo.BATCH}.parquet"))
    shards = sorted(p.name for p in (local_run / "results/predictions/tissue").glob("shard_*.zarr.zip"))
    assert shards and sorted(p.name for p in (bucket / "results/predictions/tissue").glob("*.zarr.zip")) == shards
    # the batch's OME-Zarr exports, whose jobs downloaded the fields themselves: image and labels as the local run's
    for sample in ("fov1", "fov2"):
        rel = f"results/ngff/batch_{cluster_demo.BATCH}/{sample}.ome.zarr"
        theirs, ours = ngff_arrays(bucket / rel), ngff_arrays(local_run / rel)
        assert theirs.keys() == ours.keys() and {"image", "nuclear"} <= theirs.keys(), sample
        for name, array in theirs.items():
            np.testing.assert_array_equal(array, ours[name], err_msg=f"{sample} {name}")
    assert (bucket / f"results/spatialdata/batches/{cluster_demo.BATCH}.zarr/zarr.json").exists()
    # tissue is an image of one file per channel: every file staged into its jobs' pods, its channels named by the sheet
    assert set(cluster_demo.TISSUE_CHANNELS) <= set(pd.read_parquet(bucket / "results/measurements/tissue.parquet"))
    assert_same_provenance(bucket, local_run)


def assert_same_provenance(bucket: Path, local_run: Path) -> None:
    """What made the cells, as the local run says: each config model's NAME@VERSION and dataset version (rule
    model_provenance, once a run, on the launching machine), each own-jobs sample's and the run's .h5ad file, and the
    batch's SpatialData store's table (a row per sample of the batch; read with spatialdata), the model summary.tsv
    names."""
    import anndata
    import spatialdata

    for key in ("nuclear", "tissue"):
        rel = f"results/models/{key}.json"
        assert json.loads((bucket / rel).read_text()) == json.loads((local_run / rel).read_text()), rel
    summary = pd.read_csv(bucket / "results/summary.tsv", sep="\t").set_index("sample")
    for sample in ("tissue", "movie"):
        theirs, ours = (anndata.read_h5ad(where / f"results/measurements/{sample}.h5ad").uns["cellscale"]
                        for where in (bucket, local_run))
        # (repr: a movie's frame interval is NaN, which equals nothing)
        assert repr(sorted(theirs.items())) == repr(sorted(ours.items())), sample
        assert theirs["model"]["nuclear"] == summary.loc[sample, "model"], sample
    assert anndata.read_h5ad(bucket / "results/measurements/tissue.h5ad").uns["cellscale"]["image"] == \
        "|".join(cluster_demo.TISSUE_FILES)
    pd.testing.assert_frame_equal(*(anndata.read_h5ad(where / "results/cells.h5ad").uns["cellscale"]["samples"]
                                    for where in (bucket, local_run)))
    rel = f"results/spatialdata/batches/{cluster_demo.BATCH}.zarr"
    theirs, ours = (spatialdata.read_zarr(where / rel).tables["table"].uns["cellscale"]["samples"]
                    for where in (bucket, local_run))
    pd.testing.assert_frame_equal(theirs, ours)
    assert list(theirs.index) == ["fov1", "fov2"]
    assert list(theirs["model_nuclear"]) == [summary.loc[s, "model"] for s in ("fov1", "fov2")]


def ngff_arrays(path: Path) -> dict[str, np.ndarray]:
    """An OME-Zarr store's full-resolution image and labels, as the ome-zarr library reads them."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader

    nodes = [n for n in Reader(parse_url(str(path)))() if n.data]
    return {(n.metadata["name"] if any(isinstance(s, Label) for s in n.specs) else "image"): np.asarray(n.data[0])
            for n in nodes}


def test_the_run_is_priced_from_its_benchmark_files_in_storage(gke_run):
    """The rule cost runs on the launching machine (its price table and profile are files there), reads every
    job's benchmark file from storage and writes results/cost.tsv there; no pod runs it."""
    bucket = gke_run["bucket"]
    table = pd.read_csv(bucket / "results/cost.tsv", sep="\t", keep_default_na=False, na_values=[""])
    by = {level: rows.set_index("key") for level, rows in table.groupby("level")}
    written = {p.relative_to(bucket / "results/benchmarks").as_posix()
               for p in (bucket / "results/benchmarks").rglob("*.tsv")
               if p.parent.name != "model_provenance"} - {"cost/run.tsv"}  # the launcher's own jobs: not priced
    assert set(by["job"].index) == written
    assert by["job"]["mpx"].notna().all()  # the tile plans were read from storage
    assert by["rule"]["usd"].sum() == pytest.approx(by["run"].loc["compute", "usd"], rel=1e-4)
    assert set(by["sample"].index) == {"tissue", "movie", "fov1", "fov2"}
    assert np.isnan(by["run"].loc["storage", "usd"])  # the results are in the bucket, not on this disk
    assert "cost" not in {r for j in gke_run["cluster"].recorded_jobs() for r in rules_of(j)}


def test_each_job_ran_in_its_own_scratch_folder(gke_run):
    cluster = gke_run["cluster"]
    started = [e for e in cluster.events() if e["event"] == "started"]
    assert len({e["pod"] for e in started}) == len(started) > 5
    assert not any((cluster.record_dir / "pods").iterdir()), "each pod's emptyDir goes with it"
    logs = "".join(p.read_text() for p in (cluster.record_dir / "logs").glob("*.log"))
    assert "Retrieving from storage" in logs and "Storing in storage" in logs


def test_preempted_jobs_are_retried(gke_run):
    cluster = gke_run["cluster"]
    events = cluster.events()
    killed = [e for e in events if e["event"] == "killed"]
    assert killed, f"seed {SEED} killed no pod; pick another"
    assert all(e["after"] >= 1.0 for e in killed)  # mid-run, not before it started
    finished = {e["job"]: e for e in events if e["event"] == "finished"}
    target = {j["metadata"]["name"]: option_values(j, "--target-jobs") for j in cluster.recorded_jobs()}
    dropped = []
    for k, kill in enumerate(events):
        if kill["event"] != "killed":
            continue
        assert finished[kill["job"]]["exit_code"] == 137
        again = [e for e in events[k + 1:] if e["event"] == "created" and target[e["job"]] == target[kill["job"]]]
        assert again, target[kill["job"]]  # the job ran again
        assert finished[again[0]["job"]]["exit_code"] == 0 or len(again) > 1, target[kill["job"]]
        if again[0]["attempt"] == 1:  # not a retry but the rerun: Snakemake dropped the retry
            dropped.append(target[kill["job"]])
    assert "Trying to restart job" in gke_run["out"]
    # a dropped retry (Snakemake 9.27, a job after a checkpoint) made the run end asking for the rerun, and only then
    assert (gke_run["runs"] == 2) == bool(dropped), (gke_run["runs"], dropped)


def test_every_rule_becomes_a_valid_pod_on_its_pool(gke_run):
    cluster, profile, s = gke_run["cluster"], gke_run["profile"], gke_run["settings"]
    jobs = cluster.recorded_jobs()
    created = {e["job"]: e for e in cluster.events() if e["event"] == "created"}
    covered = {r for j in jobs for r in rules_of(j)}
    assert {"tile", "segment", "stitch", "segment_batch", "measure", "track", "report_sample", "lineage",
            "report_fields", "summary"} <= covered
    # plan_batches reads the sample sheet, which is on the launching machine: Snakemake runs it there
    assert "plan_batches" not in covered and (gke_run["bucket"] / "results/batches/plan.tsv").exists()
    scalar = profile["kubernetes-cpu-scalar"]
    for job in jobs:
        name, rules = job["metadata"]["name"], rules_of(job)
        spec = job["spec"]["template"]["spec"]
        c = spec["containers"][0]
        req, lim = c["resources"].get("requests", {}), c["resources"].get("limits", {})
        assert created[name]["namespace"] == profile["kubernetes-namespace"]
        assert spec["serviceAccountName"] == profile["kubernetes-service-account-name"]
        assert not (c.get("securityContext") or {}).get("privileged"), rules
        assert all("emptyDir" in v for v in spec["volumes"])  # no hostPath, no shared volume
        assert c["image"] == "cellscale:emulated" and api_errors(job) == []
        if {"segment", "segment_batch"} & set(rules):  # the GPU rules, one job a pod
            assert rules in (["segment"], ["segment_batch"])
            res = {**profile["default-resources"], **profile["set-resources"][rules[0]]}
            assert spec["nodeSelector"] == {"node.kubernetes.io/instance-type": s.gpu_machine_type}
            assert req["nvidia.com/gpu"] == lim["nvidia.com/gpu"] == "1"
            assert req["memory"] == lim["memory"] == f"{res['mem_mb']}M"
            assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
            assert created[name]["pool"] == "gpu"
        else:
            assert spec["nodeSelector"] == {"node.kubernetes.io/instance-type": s.spot_machine_type}
            assert "nvidia.com/gpu" not in req and not lim and not spec.get("tolerations")
            assert created[name]["pool"] == "spot-cpu"
            assert len(rules) == 1, rules  # one job a pod (no groups: see profiles/gke/config.yaml)
            res = {**profile["default-resources"], **profile["set-resources"].get(rules[0], {})}
            assert req["memory"] == f"{res['mem_mb']}M", rules
            assert req["cpu"] == f"{int(rule_threads(rules[0]) * scalar * 1000)}m", rules


def rule_threads(rule: str) -> int:
    """The ``threads:`` a rule declares in rules/*.smk as a number (1 when it declares none, or a function's)."""
    threads = rule_directive(rule, "threads")
    return int(threads) if threads and threads.isdigit() else 1


def test_pod_specs_validate_against_the_gke_api(gke_run):
    policy = next(d for d in gke.manifests(PROFILE) if d["kind"] == "MutatingAdmissionPolicy")
    expression = policy["spec"]["mutations"][0]["applyConfiguration"]["expression"]
    deadline = int(re.search(r"activeDeadlineSeconds:\s*(\d+)", expression).group(1))
    ttl = int(re.search(r"ttlSecondsAfterFinished:\s*(\d+)", expression).group(1))
    assert '"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"' in expression
    for job in gke_run["cluster"].recorded_jobs():
        job = {"apiVersion": "batch/v1", "kind": "Job", **job}
        kubernetes_validate.validate(job, GKE_KUBERNETES, strict=True)
        # and as the admission policy leaves it
        job["spec"] = {**job["spec"], "activeDeadlineSeconds": deadline, "ttlSecondsAfterFinished": ttl}
        template = job["spec"]["template"]
        template["metadata"] = {**(template.get("metadata") or {}),
                                "annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}}
        kubernetes_validate.validate(job, GKE_KUBERNETES, strict=True)


def test_requests_cover_measured_memory(gke_run):
    """The profile's sizes against the benchmark files the pods wrote (tiny inputs here: a floor check)."""
    profile = gke_run["profile"]
    sizes = sizing.size_for("gke", gke_run["bucket"] / sizing.BENCHMARKS)
    assert {"tile", "segment", "stitch", "measure", "report_sample", "summary"} <= set(sizes)
    for rule, size in sizes.items():
        asked = profile["set-resources"].get(rule, {}).get("mem_mb", profile["default-resources"]["mem_mb"])
        assert size.peak_rss_mb <= asked, rule


# google-cloud-storage 3.17's bucket-metadata cache reads the bucket (buckets.get) from background threads: at a
# client's first request and after some 404s, so a pod's count of them varies by one or two with timing (34 and 35 in
# two pods of one rule with equal inputs, one run). A pod's class B total is held to the model's within these two; its
# field downloads and its listings are counted exactly.
BACKGROUND_LOOKS = 2


def test_a_batch_pods_cloud_storage_requests_are_the_cost_models(gke_run, storage):
    """The planner prices a segment_batch pod's Cloud Storage requests with figures measured on the storage plugin
    (cellscale.cost.model.Overheads): per job and per field it reads. Here the pod of the fov1 + fov2 batch, which
    ran to the end and read its fields itself (batches.read_fields: direct), is counted request by request; a
    plugin, client or Snakemake that asks more (or less) fails this. The staged reads' 13 a field are counted by
    benchmarks/storage_ops.py."""
    from cellscale.cost.model import EXPORTS, Overheads

    cluster, o = gke_run["cluster"], Overheads()
    rules = {j["metadata"]["name"]: rules_of(j) for j in cluster.recorded_jobs()}
    done = [e["pod"] for e in cluster.events()
            if e["event"] == "finished" and e["exit_code"] == 0 and rules[e["job"]] == ["segment_batch"]]
    assert len(done) == 1
    mine = [q for q in storage.requests if q.client == done[0]]
    fields = {q.object for q in mine if q.object.startswith("cellscale/data/fov")}
    assert fields == {"cellscale/data/fov1.tif", "cellscale/data/fov2.tif"}
    assert sum(q.op == "objects.get" and q.object in fields for q in mine) == len(fields)   # one download each
    assert abs(sum(q.cls == "B" for q in mine) - (o.class_b_per_job + o.class_b_per_direct_job
                                                  + o.class_b_per_direct_read * len(fields))) <= BACKGROUND_LOOKS
    # its listings: one of an input's folder (the model's list call) and each missing output's "folder"
    assert sum(q.op == "objects.list" for q in mine) == 1 + o.class_a_checks_per_job
    # the batch's exports (ngff_batch, spatialdata_batch) read the fields the same way: one download each, none of
    # the staged reads' existence, size and checksum requests (the model prices 1, not 13, a field per export); and
    # each export pod's requests are the model's: per job, per field, per label file (read with the batch's folder)
    exported = {e["pod"]: rules[e["job"]][0] for e in cluster.events() if e["event"] == "finished"
                and e["exit_code"] == 0 and rules[e["job"]] in (["ngff_batch"], ["spatialdata_batch"])}
    assert len(exported) == 2
    labels = gke_run["bucket"] / "results/batches" / cluster_demo.BATCH / "labels"
    label_files = sum(p.is_file() for p in labels.rglob("*"))
    assert label_files >= len(fields)
    for pod, rule in exported.items():
        theirs = [q for q in storage.requests if q.client == pod]
        # spatialdata_batch stages its model's provenance file too (results/models/KEY.json: its table's uns)
        staged = int(any(x.rule == rule and x.provenance for x in EXPORTS.values()))
        assert sorted(q.op for q in theirs if q.object in fields) == ["objects.get"] * len(fields), pod
        assert any(q.op == "objects.get" and q.object.startswith("cellscale/results/models/") for q in theirs) == \
            bool(staged), rule
        assert abs(sum(q.cls == "B" for q in theirs) - (o.class_b_per_export_job + o.class_b_per_direct_job
                                                        + o.class_b_per_direct_read * len(fields)
                                                        + o.class_b_per_label_read * label_files
                                                        + o.class_b_per_provenance_read * staged)) \
            <= BACKGROUND_LOOKS, (rule, sum(q.cls == "B" for q in theirs))
        assert sum(q.op == "objects.list" for q in theirs) == 1 + o.class_a_checks_per_export_job, rule


def launcher_run(gke_run, storage, client: str, *args: str, kubeconfig: Path | None = None) -> list:
    """The launcher's snakemake once more on the finished run's bucket, as a user types it with ``args``: its
    requests (counted as ``client``)."""
    env = {**os.environ, **ENV, "STORAGE_EMULATOR_HOST": storage.endpoint(client)}
    result = subprocess.run(launcher_command(*args), cwd=gke_run["work"], capture_output=True, text=True, timeout=600,
        env={**env, "KUBECONFIG": str(kubeconfig)} if kubeconfig else env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return [q for q in storage.requests if q.client == client]


def test_a_movie_without_a_sheet_scale_costs_the_launcher_a_read_of_its_model_json(gke_run, storage):
    """segment.timelapse_scale: where the sheet gives a movie no scale, the launcher reads its model's model.json
    from the bucket (once a run): Overheads.launcher_b_timelapse_scale requests more on that object than with the
    sheet's scale, counted in two dry runs of the finished run (the sheet's date kept, so nothing reruns by it).
    Before the next test makes the models' provenance files again: their jobs' followers would then be in the dry
    runs and read model.json too (9 reads against 3, 2026-12-07)."""
    from cellscale.cost.model import Overheads

    sheet = gke_run["work"] / "config/samples.tsv"
    kept, stat = sheet.read_text(), sheet.stat()
    row = "movie\tdata/movie.ome.tif\ttimelapse\t\t\t\t\t1\n"
    assert row in kept
    spec = "cellscale/models/nuclear/model.json"
    reads = {}
    try:
        for scale in ("1", ""):
            sheet.write_text(kept.replace(row, row.replace("\t1\n", f"\t{scale}\n")))
            os.utime(sheet, ns=(stat.st_atime_ns, stat.st_mtime_ns))
            requests = launcher_run(gke_run, storage, f"dry-scale-{scale or 'auto'}", "--dry-run",
                                    "--rerun-triggers", "mtime")
            reads[scale] = [q for q in requests if q.object == spec]
    finally:
        sheet.write_text(kept)
        os.utime(sheet, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert all(q.cls == "B" for q in reads[""])
    assert len(reads[""]) - len(reads["1"]) == Overheads().launcher_b_timelapse_scale
    assert sum(q.path.startswith("/download/") for q in reads[""]) == 1
    assert not any(q.path.startswith("/download/") for q in reads["1"])


def test_the_launchers_model_provenance_requests_are_the_cost_models(gke_run, storage, prepared):
    """Rule model_provenance runs on the launcher, once a run per config model: it downloads the model's spec,
    weights and metrics.json once each (no other launcher request downloads a model file), and makes the requests
    Overheads.launcher_b_per_model and launcher_a_per_model price. Counted as the launcher's run of both models'
    jobs less its run of one model's, the second model's outputs missing as in a first run; the run's own requests
    (the DAG, the workflow sources) are in both."""
    from cellscale.cost.model import Overheads

    o = Overheads()
    inputs = {f"cellscale/models/{key}/{name}" for key in ("nuclear", "tissue")
              for name in ("model.json", "model.keras", "metrics.json")}
    downloads = [q.object for q in storage.requests if q.client == "launcher" and q.path.startswith("/download/")]
    assert sorted(q for q in downloads if q.startswith("cellscale/models/")) == sorted(inputs)
    base, _, _ = prepared
    outputs = ("results/models/tissue.json", "results/benchmarks/model_provenance/tissue.tsv",
               "logs/model_provenance/tissue.log")
    targets = ["results/models/nuclear.json", "results/models/tissue.json"]
    with Cluster(gke_run["settings"].pools(), base / "cluster-provenance") as cluster:
        kubeconfig = cluster.start(namespace="cellscale")
        # the launcher's local copies of storage files (Snakemake's .snakemake/storage) that an earlier test's dry run
        # left would spare downloads: each run starts without them, as a first run does (Snakemake removes the copies
        # its jobs used when it ends)
        shutil.rmtree(gke_run["work"] / ".snakemake/storage", ignore_errors=True)
        one = launcher_run(gke_run, storage, "provenance-one", targets[0], "--forcerun", "model_provenance",
                           kubeconfig=kubeconfig)
        bucket = storage.client().bucket(BUCKET)
        for rel in outputs:
            bucket.blob(f"cellscale/{rel}").delete()
        shutil.rmtree(gke_run["work"] / ".snakemake/storage", ignore_errors=True)
        two = launcher_run(gke_run, storage, "provenance-two", *targets, "--forcerun", "model_provenance",
                           kubeconfig=kubeconfig)
    assert all((gke_run["bucket"] / rel).exists() for rel in outputs)   # made again
    assert not cluster.recorded_jobs()   # a local rule: no pod

    def count(requests, cls):
        return sum(q.cls == cls for q in requests)

    def downloads_of(requests):
        return sorted(q.object for q in requests if q.path.startswith("/download/"))

    assert len(downloads_of(two)) - len(downloads_of(one)) == 3, (downloads_of(one), downloads_of(two))
    assert abs(count(two, "B") - count(one, "B") - o.launcher_b_per_model) <= BACKGROUND_LOOKS, (
        count(two, "B"), count(one, "B"))
    assert count(two, "A") - count(one, "A") == o.launcher_a_per_model, (count(two, "A"), count(one, "A"))
