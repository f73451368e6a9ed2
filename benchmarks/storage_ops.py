"""Cloud Storage operations of a GKE run, counted request by request: who makes them, of which billing class, and
how they grow with fields and batches.

The workflow runs as `snakemake --profile profiles/gke` does (batched fields only, their sizes in the sheet, OME-TIFF
labels, one label file per batch: the Kiosk row of benchmarks/cost.py), on the stand-ins of the GKE tests: the
real Kubernetes executor plugin against tests/support/kube_emulator.py (pods are local processes, 2 at a time) and
the real
snakemake-storage-plugin-gcs and google-cloud-storage client against gcp-storage-emulator
(tests/support/gcs_emulator.py). Every request is recorded with its client (the launcher or a pod) and its class (A:
inserts and listings; B: gets; deletes free), as Cloud Storage bills them. Cloud Storage itself is not reached: the
counts are the client's and the plugin's, the latencies are not Cloud Storage's.

    python benchmarks/storage_ops.py                      # 16, 32 and 64 fields, 4 a batch; 32 and 64, 8
    python benchmarks/storage_ops.py --quick              # 2 fields in one batch (CI)
    python benchmarks/storage_ops.py --runs 32:4 --snakemake-args="--scheduler-subsample 2"
    python benchmarks/storage_ops.py --read-fields direct  # batch jobs download their fields themselves
    python benchmarks/storage_ops.py --runs 4:2 8:4 --formats ome-tiff ome-zarr   # the export pods counted too

Prints, per run, each client's operations, and fits a segment_batch pod's class B operations as a per-job part and
a per-field part. Prints how often the launcher re-reads the inputs of jobs that wait for a slot (Snakemake's
scheduler asks every input's existence and size of every ready job at each scheduling round, once a second while
jobs wait).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support import MODELS  # noqa: E402
from support import gke_run as harness  # noqa: E402
from support.gcs_emulator import GcsEmulator  # noqa: E402
from support.kube_emulator import Cluster  # noqa: E402

from cellscale.deploy import gke  # noqa: E402
from cellscale.settings import choices  # noqa: E402
from cellscale.synth.tissue import make_tissue  # noqa: E402

SIDE = 96  # px: tiny fields, the counts do not depend on the pixels
WINDOW_S = 10.0  # s: the launcher's requests are counted in windows this long while the segment pods run


def run(fields: int, per_batch: int, base: Path, snakemake_args: list[str], read_fields: str = "staged",
        formats: tuple[str, ...] = ("ome-tiff",)) -> dict:
    """One workflow run of ``fields`` fields in batches of ``per_batch``; every request, by client and class."""
    work = base / "work"
    # with the fields' sizes in the sheet (cellscale samples --sizes), as the plan's Kiosk rows assume: plan_batches
    # then opens no image
    header = harness.HEADER.rstrip("\n") + "\theight\twidth\n"
    rows = "".join(f"fov{i}\tdata/fov{i}.tif\ttissue\t\t\t\t\t{SIDE}\t{SIDE}\n" for i in range(fields))
    harness.write_workdir(work, rows, header, tiling={"tile": 128, "overlap": 32,
                                              "shard_mpx": SIDE * SIDE / 1e6 * per_batch * 1.0001},
                          batches={"label_files": "per_batch", "read_fields": read_fields},
                          output={"formats": list(formats)})
    inputs = base / "inputs"
    (inputs / "data").mkdir(parents=True)
    for i in range(fields):
        tifffile.imwrite(inputs / f"data/fov{i}.tif", make_tissue((SIDE, SIDE), n_cells=8, seed=i + 1).image[0])
    for name in ("nuclear", "tissue"):
        shutil.copytree(MODELS / name, inputs / "models" / name)
    with GcsEmulator(base / "emulator", bucket=harness.BUCKET) as gcs:
        gcs.upload_tree(inputs, "cellscale")
        settings = gke.settings(harness.PROFILE, environ=harness.ENV)
        with Cluster(settings.pools(), base / "cluster", pod_env=harness.pod_env(base, gcs), max_running=2) as cl:
            kubeconfig = cl.start(namespace="cellscale")
            started = time.time()
            result = subprocess.run(
                [str(harness.BIN / "snakemake"), "--profile", str(harness.PROFILE), "--container-image", "x:y",
                 "--jobs", "2", "--seconds-between-status-checks", "1", *snakemake_args],
                cwd=work, capture_output=True, text=True,
                env={**os.environ, **harness.ENV, "KUBECONFIG": str(kubeconfig),
                     "STORAGE_EMULATOR_HOST": gcs.endpoint("launcher")})
            seconds = time.time() - started
            if result.returncode != 0:
                raise SystemExit((result.stdout + result.stderr)[-4000:])
            rule_of_job = {}
            for job in cl.recorded_jobs():
                args = shlex.split(job["spec"]["template"]["spec"]["containers"][0]["args"][1])
                rule_of_job[job["metadata"]["name"]] = args[args.index("--allowed-rules") + 1]
            events = cl.events()
        requests = list(gcs.requests)
    rule_of_pod = {e["pod"]: rule_of_job[e["job"]] for e in events if e["event"] == "started"}
    ops: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for q in requests:
        who = q.client if q.client in ("launcher", "setup") else rule_of_pod[q.client]
        ops[who][q.cls] += 1
    pods = collections.Counter(rule_of_pod.values())
    # the launcher's re-reads of waiting jobs' inputs: its gets of the fields' images once segment pods run
    segment = [e["time"] for e in events if e["event"] == "started" and rule_of_pod[e["pod"]] == "segment_batch"]
    finished = [e["time"] for e in events if e["event"] == "finished" and rule_of_pod[e["pod"]] == "segment_batch"]
    first, last = min(segment), max(finished)
    rereads = sum(1 for q in requests if q.client == "launcher" and q.object.startswith("cellscale/data/")
                  and first <= q.t <= last)
    # before the first pod: the launcher builds the DAG, runs plan_batches (the checkpoint) and rebuilds it
    launcher = [q for q in requests if q.client == "launcher"]
    first_pod = min(e["time"] for e in events if e["event"] == "created")
    before = [q for q in launcher if q.t < first_pod]
    # the launcher's requests in 10-s windows from the first segment pod's start, with the segment pods finished by
    # each window's end: Snakemake's scheduling rounds multiply as jobs finish while others wait (docs/cost.md)
    windows = []
    for i in range(int((last - first) // WINDOW_S) + 1):
        a, b = first + i * WINDOW_S, first + (i + 1) * WINDOW_S
        windows.append({"requests": sum(1 for q in launcher if a <= q.t < b),
                        "segment_pods_finished": sum(1 for f in finished if f < b)})
    # what the launcher asks about while the segment pods run (Snakemake's scheduling rounds), by billing class and
    # by object: a field, a model file, the batch plan, the bucket itself, a listing, or another object
    during = [q for q in launcher if first <= q.t <= last]
    return {"fields": fields, "per_batch": per_batch, "read_fields": read_fields, "formats": list(formats),
            "snakemake_args": snakemake_args,
            "seconds": round(seconds, 1),
            "pods": dict(pods), "ops": {k: dict(v) for k, v in sorted(ops.items())},
            "segment_phase_s": round(last - first, 1), "launcher_field_gets_in_segment_phase": rereads,
            "launcher_per_window": windows,
            "launcher_segment_phase": {"classes": dict(collections.Counter(q.cls for q in during)),
                                       "objects": dict(collections.Counter(_kind(q) for q in during)),
                                       "ops": dict(collections.Counter(q.op for q in during))},
            "launcher_before_first_pod": {"A": sum(q.cls == "A" for q in before),
                                          "B": sum(q.cls == "B" for q in before),
                                          "seconds": round(first_pod - launcher[0].t, 1)}}


def _kind(q) -> str:
    """What a request is about: a field, a model file, the batch plan, the bucket, a listing, or another object."""
    if q.op.startswith("buckets."):
        return "bucket"
    if q.op == "objects.list":
        return "listing"
    if q.object.startswith("cellscale/data/"):
        return "field"
    if q.object.startswith("cellscale/models/"):
        return "model"
    if q.object.endswith("plan.tsv"):
        return "plan"
    return "other"


def direct_read_requests(base: Path, n: int = 10) -> dict:
    """What a job spends to read its fields from the bucket itself (google-cloud-storage's ``download_to_filename``,
    as cellscale.io.bucket does) instead of having Snakemake stage them: requests for ``n`` fields of 100 kB."""
    with GcsEmulator(base / "emulator", bucket=harness.BUCKET) as gcs:
        (base / "fields").mkdir()
        for i in range(n):
            (base / "fields" / f"f{i}.tif").write_bytes(bytes(100_000))
        gcs.upload_tree(base / "fields", "data")
        bucket = gcs.client().bucket(gcs.bucket)
        before = len(gcs.requests)
        for i in range(n):
            bucket.blob(f"data/f{i}.tif").download_to_filename(str(base / f"read{i}"))
        counts = collections.Counter(q.cls for q in gcs.requests[before:])
    return {"fields": n, "A": counts.get("A", 0), "B": counts.get("B", 0)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", default=["16:4", "32:4", "64:4", "32:8", "64:8"],
                    help="FIELDS:PER_BATCH for each run")
    ap.add_argument("--quick", action="store_true", help="one run: 2 fields in one batch")
    ap.add_argument("--snakemake-args", default="", help="more options for the launcher's snakemake")
    ap.add_argument("--read-fields", default="staged", choices=choices("batches", "read_fields"),
                    help="batches.read_fields: direct, the batch jobs download their fields themselves")
    ap.add_argument("--formats", nargs="+", default=["ome-tiff"], choices=choices("output", "formats"),
                    help="output.formats of the runs (ome-zarr, spatialdata: their batch export pods are counted too)")
    ap.add_argument("--record", type=Path, help="write the runs as JSON here")
    args = ap.parse_args(argv)
    runs = ["2:2"] if args.quick else args.runs
    results = []
    for spec in runs:
        fields, per_batch = (int(v) for v in spec.split(":"))
        with tempfile.TemporaryDirectory(prefix="storage-ops-") as tmp:
            r = run(fields, per_batch, Path(tmp), shlex.split(args.snakemake_args), args.read_fields,
                    tuple(args.formats))
        results.append(r)
        jobs = r["pods"].get("segment_batch", 0)
        seg = r["ops"].get("segment_batch", {})
        print(f"{fields} fields, {per_batch} a batch ({jobs} segment_batch pods), batches.read_fields "
              f"{args.read_fields}, {r['seconds']} s:")
        for who, counts in r["ops"].items():
            n = r["pods"].get(who, 1)
            print(f"  {who:24s} class A {counts.get('A', 0):6d}  class B {counts.get('B', 0):6d}"
                  + (f"  ({counts.get('A', 0) / n:.1f} A, {counts.get('B', 0) / n:.1f} B a pod of {n})"
                     if who in r["pods"] else ""))
        pre = r["launcher_before_first_pod"]
        print(f"  launcher before the first pod (DAG, plan_batches, DAG again): {pre['A']} A, {pre['B']} B "
              f"({pre['B'] / fields:.1f} B a field), {pre['seconds']} s")
        waiting = r["launcher_field_gets_in_segment_phase"]
        print(f"  segment_batch: {seg.get('B', 0) / max(jobs, 1):.1f} class B a pod; the launcher read the fields'"
              f" images {waiting} times during the {r['segment_phase_s']} s the segment pods ran")
        seg_phase = r["launcher_segment_phase"]
        print(f"  the launcher's requests while the segment pods ran, by class: {seg_phase['classes']}; by object: "
              f"{seg_phase['objects']}; by method: {seg_phase['ops']}")
        print(f"  the launcher's requests per {WINDOW_S:g} s while the segment pods ran (segment pods finished): "
              + ", ".join(f"{w['requests']} ({w['segment_pods_finished']})" for w in r["launcher_per_window"]))
    for rule in ("segment_batch", "ngff_batch", "spatialdata_batch"):   # the batch pods: per job and per field
        by_k = {}
        for r in results:
            jobs = r["pods"].get(rule, 0)
            if jobs:
                by_k.setdefault(r["per_batch"], []).append(r["ops"][rule].get("B", 0) / jobs)
        if len(by_k) >= 2:
            ks = np.array(sorted(by_k))
            b = np.array([np.mean(by_k[k]) for k in ks])
            slope, intercept = np.polyfit(ks, b, 1)
            print(f"{rule} pod, class B: {intercept:.1f} a job + {slope:.1f} a field (fit over {len(ks)} batch "
                  f"sizes: {', '.join(f'{k}: {v:.1f}' for k, v in zip(ks, b))})")
    with tempfile.TemporaryDirectory(prefix="storage-ops-") as tmp:
        direct = direct_read_requests(Path(tmp))
    print(f"google-cloud-storage's download_to_filename, as batches.read_fields: direct reads fields: "
          f"{direct['B']} class B and {direct['A']} class A requests for {direct['fields']} fields")
    if args.record:
        args.record.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M"), "runs": results,
                                           "direct_read": direct}, indent=1))


if __name__ == "__main__":
    main()
