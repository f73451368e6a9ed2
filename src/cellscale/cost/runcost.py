"""What a run cost: each job priced on the machine type a profile places its rule on (``results/cost.tsv``).

A job occupies a share of its node: the largest of its threads / the node's vCPUs, its memory request / the
node's memory and its GPUs / the node's GPUs (a pod's requests are what the scheduler packs nodes by), so it costs

    share x the node's hourly price (spot or on-demand) x wall seconds / 3600.

A local run is priced as if its jobs had run on those machine types for the seconds they took here (the seconds
of the machine the run was on, not of the cloud machine). Placement (:func:`placement_from_profile`): the
profile's ``machine_type`` per rule (``default-resources``, ``set-resources``), its ``mem_mb`` and ``gpu``, and the
rule's threads; rules with a GPU go to the GPU pool (on-demand unless ``gpu_spot``), the others to the CPU pool
(spot unless ``cpu_spot`` is false), as ``profiles/gke`` and ``cellscale gke up`` have them.

Storage: the run's result bytes kept a month in Cloud Storage (standard), one class A operation per file written
and 13 class B per file read (each file read once, assumed; a pod's read of a file through the GCS storage plugin
is 13 requests, with its checks, measured: :attr:`Overheads.class_b_per_download`), and the cluster management fee
for the run's wall
time. Idle nodes (start-up, autoscaler scale-down delay, bin-packing gaps) are not in it: this prices the work
done, which is what ``cellscale plan`` predicts before the overheads it adds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from cellscale.cost.benchmarks import RUN_LEVEL
from cellscale.cost.jobs import batch_members, read_batch_plan
from cellscale.cost.model import Overheads
from cellscale.cost.prices import Machine, PriceTable

LEVELS = ("run", "pool", "rule", "sample", "job")
COLUMNS = ["level", "key", "rule", "pool", "machine_type", "spot", "jobs", "seconds", "mpx", "node_share", "usd",
           "usd_per_1000_mpx", "note"]
MB_PER_GIB = 1024**3 / 1e6   # mem_mb (Kubernetes "M", 10^6 bytes) per GiB of machine memory
GPU_POOL, CPU_POOL, SPOT_CPU_POOL = "gpu", "cpu", "spot-cpu"   # the pool names of cellscale gke


@dataclass(frozen=True)
class Slot:
    """What one job of a rule asks its node for, and which node."""

    machine_type: str
    threads: int = 1
    mem_mb: float = 0.0
    gpus: int = 0
    spot: bool = True

    @property
    def pool(self) -> str:
        return GPU_POOL if self.gpus else SPOT_CPU_POOL if self.spot else CPU_POOL

    def share(self, machine: Machine) -> float:
        """The share of ``machine`` one job occupies (at most the whole machine)."""
        if self.gpus and not machine.gpus:
            raise ValueError(f"a rule with {self.gpus} GPU(s) is placed on {machine.name}, which has none")
        parts = [self.threads / machine.vcpus, self.mem_mb / (machine.memory_gib * MB_PER_GIB)]
        if self.gpus:
            parts.append(self.gpus / machine.gpus)
        return min(1.0, max(parts))


@dataclass(frozen=True)
class Placement:
    """Per rule, its :class:`Slot`; a rule the profile does not name gets ``default``."""

    default: Slot
    rules: Mapping[str, Slot] = field(default_factory=dict)
    source: str = ""

    def slot(self, rule: str) -> Slot:
        return self.rules.get(rule, self.default)


def _resources(value) -> dict:
    """A profile's resources as a dict: a mapping, or a list of ``key=value`` strings (profiles/local)."""
    if isinstance(value, Mapping):
        return dict(value)
    return dict(item.split("=", 1) for item in value or [])


def _number(value, fallback: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):   # an expression the profile evaluates per job (e.g. disk_mb)
        return fallback


def placement_from_profile(profile: Path | str, threads: Mapping[str, int] | None = None, cpu_spot: bool = True,
                           gpu_spot: bool = False) -> Placement:
    """Where ``profile`` (a folder with config.yaml, or the file) puts each rule's jobs: its ``machine_type``,
    ``mem_mb`` and ``gpu`` from ``default-resources`` and ``set-resources`` (and ``set-threads``); ``threads``:
    the workflow's threads per rule (1 where not given). A YTE profile's expressions (``?...``) are not
    evaluated: only plain values count."""
    path = Path(profile)
    path = path / "config.yaml" if path.is_dir() else path
    if not path.exists():
        raise FileNotFoundError(f"placement profile {path}: no such file")
    doc = yaml.safe_load(path.read_text()) or {}
    base = _resources(doc.get("default-resources"))
    if "machine_type" not in base:
        raise ValueError(f"placement profile {path}: default-resources has no machine_type (the node every rule "
                         f"without its own goes to)")
    threads = {**(threads or {}), **(doc.get("set-threads") or {})}
    rules = set(threads) | set(doc.get("set-resources") or {})

    def slot(rule: str | None) -> Slot:
        res = {**base, **_resources((doc.get("set-resources") or {}).get(rule))} if rule else base
        gpus = int(_number(res.get("gpu"), 0))
        return Slot(machine_type=str(res["machine_type"]), threads=int(threads.get(rule, 1)),
                    mem_mb=_number(res.get("mem_mb"), 0.0), gpus=gpus, spot=gpu_spot if gpus else cpu_spot)

    return Placement(default=slot(None), rules={r: slot(r) for r in sorted(rules)}, source=str(path))


@dataclass(frozen=True)
class RunCost:
    """The priced jobs (the job table plus ``machine_type``, ``spot``, ``pool``, ``node_share``, ``usd_h``,
    ``usd``) and the tidy table of every level (:data:`COLUMNS`)."""

    jobs: pd.DataFrame
    table: pd.DataFrame
    prices: PriceTable

    def level(self, level: str) -> pd.DataFrame:
        return self.table[self.table["level"] == level].set_index("key")

    @property
    def total_usd(self) -> float:
        return float(self.level("run").loc["total", "usd"])


def price_run(jobs: pd.DataFrame, prices: PriceTable, placement: Placement, spot: bool | None = None,
              plan: pd.DataFrame | None = None, storage: Mapping[str, float] | None = None,
              wall_s: float | None = None) -> RunCost:
    """Price a run's jobs (:func:`cellscale.cost.jobs.job_table`).

    ``spot``: None prices each pool as ``placement`` has it; True or False prices every job spot or on-demand.
    ``plan`` (``results/batches/plan.tsv``, :func:`~cellscale.cost.jobs.read_batch_plan`): splits a batch job's
    cost over its images by megapixels (an image of unknown size gets none; a batch of only such images is split
    evenly). Run-level jobs are split over every sample by megapixels the same way.
    ``storage``: ``bytes``, ``files_written``, ``files_read`` of the run's results (None: not priced, NaN).
    ``wall_s``: the run's wall time, for the cluster fee (None: NaN).
    """
    priced = jobs.copy()
    slots = [placement.slot(rule) for rule in priced["rule"]]
    machines = [prices.node(s.machine_type, s.gpus) for s in slots]
    priced["machine_type"] = [s.machine_type for s in slots]
    priced["spot"] = [s.spot if spot is None else bool(spot) for s in slots]
    priced["pool"] = [s.pool for s in slots]
    priced["node_share"] = [s.share(m) for s, m in zip(slots, machines)]
    priced["usd_h"] = [m.hourly(sp) for m, sp in zip(machines, priced["spot"])]
    priced["usd"] = priced["node_share"] * priced["usd_h"] * priced["s"] / 3600.0
    rows = [_job_row(r) for r in priced.itertuples()]
    for rule, g in priced.groupby("rule", sort=True):
        rows.append(_row("rule", rule, g, rule=rule, pool=_one(g["pool"]), machine_type=_one(g["machine_type"]),
                         spot=_one(g["spot"]), node_share=_one(g["node_share"]),
                         mpx=g["mpx"].sum(min_count=1) if rule not in RUN_LEVEL else _one(g["mpx"])))
    run_mpx = _run_mpx(priced)
    for pool, g in priced.groupby("pool", sort=True):
        rows.append(_row("pool", pool, g, pool=pool, machine_type=_one(g["machine_type"]), spot=_one(g["spot"]),
                         mpx=run_mpx))
    for sample, (usd, mpx, seconds) in _per_sample(priced, plan).items():
        rows.append({"level": "sample", "key": sample, "seconds": seconds, "mpx": mpx, "usd": usd,
                     "note": "its own jobs, its megapixels' share of its batch and of the run-level jobs"})
    compute = float(priced["usd"].sum())
    rows += _run_rows(priced, prices, compute, run_mpx, storage, wall_s)
    table = pd.DataFrame(rows)
    for column in COLUMNS:
        if column not in table:
            table[column] = np.nan
    table["usd_per_1000_mpx"] = 1000 * table["usd"] / table["mpx"].where(table["mpx"] > 0)
    table = table[COLUMNS]
    for column in ("key", "rule", "pool", "machine_type", "note"):
        table[column] = table[column].fillna("").astype(str)
    table["spot"] = table["spot"].map(lambda v: "" if not isinstance(v, (bool, np.bool_)) else str(bool(v)).lower())
    table["jobs"] = table["jobs"].astype("Int64")
    table["level"] = pd.Categorical(table["level"], LEVELS, ordered=True)
    table = table.sort_values(["level"], kind="stable").reset_index(drop=True)
    table["level"] = table["level"].astype(str)
    return RunCost(jobs=priced, table=table, prices=prices)


def _one(values: pd.Series):
    """The one value a group shares, else empty (e.g. a rule whose jobs ran on several machine types)."""
    unique = pd.unique(values)
    return unique[0] if len(unique) == 1 else ""


def _job_row(r) -> dict:
    return {"level": "job", "key": r.job, "rule": r.rule, "pool": r.pool, "machine_type": r.machine_type,
            "spot": r.spot, "jobs": 1, "seconds": r.s, "mpx": r.mpx, "node_share": r.node_share, "usd": r.usd,
            "note": f"sample {r.sample}" if r.sample else f"batch {r.batch}" if r.batch else ""}


def _row(level: str, key: str, g: pd.DataFrame, **values) -> dict:
    return {"level": level, "key": key, "jobs": len(g), "seconds": float(g["s"].sum()),
            "usd": float(g["usd"].sum()), **values}


def _run_mpx(priced: pd.DataFrame) -> float:
    """The run's megapixels: what its run-level jobs processed, else the sum over the per-sample and batch jobs
    of one kind that cover every image (tile + segment_batch)."""
    run_level = priced.loc[priced["rule"].isin(RUN_LEVEL), "mpx"].dropna()
    if len(run_level):
        return float(run_level.max())
    per_image = priced[priced["rule"].isin(("tile", "segment_batch"))]["mpx"]
    return float(per_image.sum()) if per_image.notna().any() else math.nan


def _split(usd: float, seconds: float, members: pd.DataFrame, out: dict) -> None:
    """Add ``usd`` and ``seconds`` to ``members`` (sample, mpx) in proportion to their megapixels."""
    mpx = members["mpx"].fillna(0.0).to_numpy(float)
    weights = mpx / mpx.sum() if mpx.sum() > 0 else np.full(len(mpx), 1.0 / max(len(mpx), 1))
    for sample, w in zip(members["sample"], weights):
        entry = out.setdefault(sample, [0.0, 0.0])
        entry[0] += usd * w
        entry[1] += seconds * w


def _per_sample(priced: pd.DataFrame, plan: pd.DataFrame | None) -> dict[str, tuple[float, float, float]]:
    """sample -> (usd, mpx, seconds): its own jobs, its Mpx share of its batch and of the run-level jobs."""
    out: dict[str, list[float]] = {}
    mpx: dict[str, float] = {}
    for r in priced[priced["sample"] != ""].itertuples():
        entry = out.setdefault(r.sample, [0.0, 0.0])
        entry[0] += r.usd
        entry[1] += r.s
        mpx.setdefault(r.sample, r.mpx)
    members = batch_members(plan) if plan is not None else {}
    for r in priced[priced["batch"] != ""].itertuples():
        if r.batch in members:
            _split(r.usd, r.s, members[r.batch], out)
            for s, m in zip(members[r.batch]["sample"], members[r.batch]["mpx"]):
                mpx.setdefault(s, m)
    everyone = pd.DataFrame({"sample": list(out), "mpx": [mpx.get(s, math.nan) for s in out]})
    for r in priced[priced["rule"].isin(RUN_LEVEL)].itertuples():
        if len(everyone):
            _split(r.usd, r.s, everyone, out)
    return {s: (usd, float(mpx.get(s, math.nan)), seconds) for s, (usd, seconds) in out.items()}


def _run_rows(priced: pd.DataFrame, prices: PriceTable, compute: float, run_mpx: float,
              storage: Mapping[str, float] | None, wall_s: float | None) -> list[dict]:
    rows = [{"level": "run", "key": "compute", "jobs": len(priced), "seconds": float(priced["s"].sum()),
             "mpx": run_mpx, "usd": compute, "note": "every job: node share x hourly price x seconds"}]
    st, fee = prices.storage, prices.cluster.get("management_fee_usd_h", math.nan)
    if storage is not None:
        gib = storage["bytes"] / 1024**3
        reads = Overheads().class_b_per_download
        rows.append({"level": "run", "key": "storage", "mpx": run_mpx,
                     "usd": gib * st.get("gcs_standard_gb_month", math.nan),
                     "note": f"{gib:.3g} GiB of results for a month in Cloud Storage (standard)"})
        rows.append({"level": "run", "key": "operations", "mpx": run_mpx,
                     "usd": storage["files_written"] / 1e4 * st.get("gcs_class_a_per_10k", math.nan)
                     + storage["files_read"] * reads / 1e4 * st.get("gcs_class_b_per_10k", math.nan),
                     "note": f"{storage['files_written']:.0f} files written (class A), {storage['files_read']:.0f} "
                             f"read (class B, {reads:g} a download; assumed: each file read once)"})
    else:
        rows.append({"level": "run", "key": "storage", "mpx": run_mpx, "usd": math.nan,
                     "note": "not priced: the results are not on this machine's disk (remote storage)"})
    if wall_s is not None and math.isfinite(wall_s):
        rows.append({"level": "run", "key": "cluster_fee", "seconds": wall_s, "mpx": run_mpx,
                     "usd": wall_s / 3600 * fee, "note": "GKE cluster management fee for the run's wall time"})
    else:
        rows.append({"level": "run", "key": "cluster_fee", "mpx": run_mpx, "usd": math.nan,
                     "note": "not priced: the run's wall time is unknown here"})
    others = [r["usd"] for r in rows[1:] if math.isfinite(r["usd"])]
    rows.append({"level": "run", "key": "total", "jobs": len(priced), "seconds": wall_s, "mpx": run_mpx,
                 "usd": compute + sum(others),
                 "note": f"prices {prices.name} of {prices.date} ({prices.currency}); compute + what is priced"})
    return rows


def run_files(results_dir: Path | str, other_dirs=()) -> dict[str, float]:
    """``bytes`` and ``files_written`` under ``results_dir`` (and ``other_dirs``, e.g. logs), ``files_read`` the
    same number (assumed: each file read once)."""
    sizes = [p.stat().st_size for d in (results_dir, *other_dirs) if Path(d).is_dir()
             for p in Path(d).rglob("*") if p.is_file()]
    return {"bytes": float(sum(sizes)), "files_written": float(len(sizes)), "files_read": float(len(sizes))}


#: where a batch's exports go under results/ (rules/export.smk): one folder of files per batch and format
EXPORT_FOLDERS = {"ome-zarr": "ngff/batch_{batch}", "spatialdata": "spatialdata/batches/{batch}.zarr"}


def export_files(results_dir: Path | str) -> dict[str, tuple[float, float]]:
    """What a run's batch exports wrote per image: ``{format: (files per image, MB per Mpx)}``, from the files
    of every batch's export folder (:data:`EXPORT_FOLDERS`, counted as :func:`run_files` counts a run's; on GKE each
    file is one Cloud Storage object) and the batch plan's images and megapixels; formats the run did not write
    are left out."""
    results = Path(results_dir)
    if not (results / "batches" / "plan.tsv").is_file():
        raise FileNotFoundError(f"{results}: not the results folder of a run of batched images (no "
                                f"batches/plan.tsv)")
    members = batch_members(read_batch_plan(results / "batches" / "plan.tsv"))
    out = {}
    for fmt, pattern in EXPORT_FOLDERS.items():
        written = {b: run_files(results / pattern.format(batch=b)) for b in members
                   if (results / pattern.format(batch=b)).is_dir()}
        images = sum(len(members[b]) for b in written)
        if images:
            mpx = sum(float(members[b]["mpx"].sum()) for b in written)
            nbytes = sum(f["bytes"] for f in written.values())
            out[fmt] = (sum(f["files_written"] for f in written.values()) / images,
                        nbytes / 1e6 / mpx if mpx > 0 else math.nan)
    return out


def wall_seconds(paths: Mapping[str, Path | str], jobs: pd.DataFrame) -> float:
    """The run's wall time from its benchmark files: each written when its job ended (mtime), the job started
    ``s`` earlier; from the first start to the last end, kept between the longest job and the sum of all."""
    seconds = jobs.groupby("job")["s"].sum()
    ends = {job: Path(path).stat().st_mtime for job, path in paths.items() if job in seconds}
    if not ends:
        return math.nan
    span = max(ends.values()) - min(end - seconds[job] for job, end in ends.items())
    return float(np.clip(span, seconds.max(), seconds.sum()))
