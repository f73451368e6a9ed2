"""Throughput profiles: how long and how much memory each rule's job takes on one machine type.

A rule's job on a machine takes ``fixed_s + s_per_mpx * mpx`` seconds of wall time and peaks at
``mem_mb + mem_mb_per_mpx * mpx`` MB, where ``mpx`` is the megapixels the job processes (a shard, a batch, a
sample; 0 for run-level rules, whose size grows with the run instead: see ``per``). Every figure says where it
comes from: ``measured`` (where, when, which command) or ``assumed`` (and how it was derived). The planner never
uses a profile of one machine type for another without saying so.

Format (``config/throughput/<name>.yaml``)::

    name: g2-standard-4-l4
    machine: g2-standard-4          # the machine type (price table key) these figures hold for
    description: "..."
    rules:
      segment_batch:
        fixed_s: 2.0                # per job
        s_per_mpx: 0.08
        mem_mb: 900
        mem_mb_per_mpx: 40
        threads: 3                  # Snakemake threads: each job requests 0.95 x threads vCPUs (model.slots_per_node)
        gpu: true                   # needs the machine's GPU
        augment: rot180             # segment rules: the segment.augment (network passes) the figures hold for
        network_s_per_mpx: 0.0758   # GPU segment rules (optional): the network's share of s_per_mpx, all passes
        holds_fields: true          # segment rules (optional): the job holds its batch's fields decoded, so
                                    # mem_mb_per_mpx is the rest and the planner adds the workload's decoded MB per Mpx
        per: mpx                    # what mpx counts: "mpx" (the job's own pixels) or "run" (the whole run's)
        origin: assumed             # measured | assumed
        how: "network from the H100 table in docs/benchmarks.md scaled by ...; CPU part measured on ..."
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import yaml

from cellscale.cost.benchmarks import RUN_LEVEL
from cellscale.cost.prices import read_named_yaml

PROFILE_DIR = Path("config/throughput")
SHIPPED_PROFILES = Path(__file__).parent / "tables" / "throughput"   # the checkout's config/throughput links here
ORIGINS = ("measured", "assumed")


@dataclass(frozen=True)
class RuleRate:
    """One rule's job time and memory on one machine type, and where the figures come from."""

    rule: str
    fixed_s: float
    s_per_mpx: float
    mem_mb: float
    mem_mb_per_mpx: float
    origin: str                 # "measured" or "assumed"
    how: str                    # measured: where, when, command; assumed: from what, and how
    threads: int = 1
    gpu: bool = False
    per: str = "mpx"            # "mpx": the job's own megapixels; "run": the whole run's
    augment: str | None = None  # segment rules: the segment.augment the figures hold for (None: not said)
    network_s_per_mpx: float | None = None  # GPU segment rules: the network's part of s_per_mpx, all its passes
    # segment rules: the job holds every field of its batch decoded (steps.batch reads each whole), which its figures
    # leave out: mem_mb_per_mpx is the rest, and the planner adds the workload's decoded MB per Mpx
    # (cost.model.Workload.fields_mb_per_mpx). A profile measured on real fields (cellscale throughput) counts them.
    holds_fields: bool = False

    def seconds(self, mpx: float) -> float:
        return self.fixed_s + self.s_per_mpx * mpx

    def memory_mb(self, mpx: float) -> float:
        return self.mem_mb + self.mem_mb_per_mpx * mpx


@dataclass(frozen=True)
class ThroughputProfile:
    name: str
    machine: str
    rules: dict[str, RuleRate]
    description: str = ""
    path: str = ""

    def rate(self, rule: str) -> RuleRate:
        try:
            return self.rules[rule]
        except KeyError:
            raise KeyError(f"throughput profile {self.name!r} ({self.path or 'in memory'}) has no figures for "
                           f"rule {rule!r}; it has {', '.join(sorted(self.rules))}") from None

    def assumptions(self) -> list[str]:
        """One line per figure that was not measured."""
        return [f"{self.machine}: {r.rule}: {r.how}" for r in self.rules.values() if r.origin != "measured"]


def load_profile(name_or_path: str | Path, folder: Path | str = PROFILE_DIR) -> ThroughputProfile:
    path, doc = read_named_yaml(name_or_path, folder, "throughput profile", SHIPPED_PROFILES)
    for key in ("name", "machine", "rules"):
        if key not in doc:
            raise ValueError(f"throughput profile {path}: missing {key}")
    rules = {}
    for rule, r in doc["rules"].items():
        try:
            rate = RuleRate(rule=rule, **r)
        except TypeError as e:
            raise ValueError(f"throughput profile {path}: rule {rule!r}: {e}") from None
        if rate.origin not in ORIGINS:
            raise ValueError(f"throughput profile {path}: rule {rule!r}: origin must be one of {ORIGINS}, "
                             f"not {rate.origin!r}")
        if not rate.how:
            raise ValueError(f"throughput profile {path}: rule {rule!r}: say how the figures were had (how:)")
        if not isinstance(rate.holds_fields, bool):
            raise ValueError(f"throughput profile {path}: rule {rule!r}: holds_fields must be true or false, not "
                             f"{rate.holds_fields!r}")
        if rate.network_s_per_mpx is not None and not 0 <= rate.network_s_per_mpx <= rate.s_per_mpx:
            raise ValueError(f"throughput profile {path}: rule {rule!r}: network_s_per_mpx "
                             f"{rate.network_s_per_mpx} must lie between 0 and s_per_mpx ({rate.s_per_mpx})")
        rules[rule] = rate
    return ThroughputProfile(name=str(doc["name"]), machine=str(doc["machine"]), rules=rules,
                             description=str(doc.get("description", "")), path=str(path))


def profile_dict(profile: ThroughputProfile) -> dict:
    """The YAML document of a profile (what :func:`load_profile` reads back)."""
    rules = {}
    for rule, r in profile.rules.items():
        d = asdict(r)
        d.pop("rule")
        for key in ("augment", "network_s_per_mpx"):   # said of segment rules only
            if d[key] is None:
                d.pop(key)
        if not d["holds_fields"]:
            d.pop("holds_fields")
        rules[rule] = d
    return {"name": profile.name, "machine": profile.machine, "description": profile.description, "rules": rules}


def write_profile(profile: ThroughputProfile, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(profile_dict(profile), sort_keys=False, width=120))
    return path


SEGMENT_RULES = ("segment_batch", "segment")  # the rules whose time follows segment.augment's network passes


def fit_profile(jobs, machine: str, name: str, how: str, *, threads: dict[str, int] | None = None,
                gpu_rules=(), description: str = "", augment: str | None = None) -> ThroughputProfile:
    """A measured profile from a run's job table (:func:`cellscale.cost.jobs.job_table`), one rule at a time.

    Per rule, non-negative least squares of wall seconds = ``fixed_s + s_per_mpx * mpx`` and of peak memory
    ``max_rss_mb = mem_mb + mem_mb_per_mpx * mpx`` over its jobs. Run-level rules (one job a run) are fitted
    against the run's megapixels (``per: run``). With one size only (one job, or every job the same size) time is
    all per megapixel (``fixed_s = 0``) and memory all fixed (``mem_mb_per_mpx = 0``: a job's peak is mostly the
    interpreter and its libraries); where no job's size is known, time and memory are all fixed. Each rule's
    ``how`` says which, after ``how``. ``threads``: cores a job of each rule occupies (default: the largest
    measured ``cpu_time / s`` of its jobs, rounded up); ``gpu_rules``: rules that need the machine's GPU;
    ``augment``: the run's ``segment.augment``, recorded with the segment rules.
    """
    rules = {}
    for rule, rows in jobs.groupby("rule", sort=True):
        timed = rows[np.isfinite(rows["s"])]
        if timed.empty:
            continue
        fixed_s, s_per_mpx, time_note = _fit_line(timed["mpx"].to_numpy(float), timed["s"].to_numpy(float),
                                                  split="per_mpx")
        sampled = rows[np.isfinite(rows["max_rss_mb"])]
        if sampled.empty:
            mem_mb, mem_per_mpx, mem_note = 0.0, 0.0, "memory never sampled (NA: jobs too short)"
        else:
            mem_mb, mem_per_mpx, mem_note = _fit_line(sampled["mpx"].to_numpy(float),
                                                      sampled["max_rss_mb"].to_numpy(float), split="fixed")
        if threads and rule in threads:
            cores, cores_note = int(threads[rule]), "threads: the rule's"
        else:
            used = timed["cpu_time_s"].to_numpy(float) / np.maximum(timed["s"].to_numpy(float), 1e-9)
            used = used[np.isfinite(used)]
            cores = max(1, int(np.ceil(used.max() - 0.05))) if used.size else 1
            cores_note = "threads: the largest cpu_time/s of its jobs, rounded up"
        per = "run" if rule in RUN_LEVEL else "mpx"
        n = len(timed)
        rules[rule] = RuleRate(
            rule=rule, fixed_s=round(fixed_s, 4), s_per_mpx=round(s_per_mpx, 4), mem_mb=round(mem_mb, 1),
            mem_mb_per_mpx=round(mem_per_mpx, 2), origin="measured", threads=cores, gpu=rule in set(gpu_rules),
            per=per, augment=augment if rule in SEGMENT_RULES else None,
            how=(f"{how}; {n} job{'s' if n != 1 else ''}, mpx {_span(timed['mpx'])}"
                 f"{' (the run' + chr(39) + 's)' if per == 'run' else ''}; time: {time_note}; memory: {mem_note}; "
                 f"{cores_note}"))
    return ThroughputProfile(name=name, machine=machine, rules=rules, description=description or how)


def _fit_line(x: np.ndarray, y: np.ndarray, split: str) -> tuple[float, float, str]:
    """``(intercept, slope, note)`` of y = a + b x with a, b >= 0. One size only: all ``split`` ("per_mpx": the
    slope, "fixed": the intercept); no size known: the mean as intercept."""
    known = np.isfinite(x)
    if not known.any():
        return float(y.mean()), 0.0, "no job's mpx known: mean as fixed"
    x, y = x[known], y[known]
    if np.unique(x).size < 2:
        if split == "per_mpx" and x[0] > 0:
            return 0.0, float(y.mean() / x[0]), "one size only: all per mpx (fixed_s 0)"
        return float(y.mean()), 0.0, "one size only: all fixed"
    from scipy.optimize import nnls   # here: the command line imports this module for the planner's defaults

    (a, b), _ = nnls(np.column_stack([np.ones_like(x), x]), y)
    return float(a), float(b), f"least squares (non-negative) over {np.unique(x).size} sizes"


def _span(mpx) -> str:
    values = mpx[np.isfinite(mpx)]
    if values.empty:
        return "unknown"
    lo, hi = float(values.min()), float(values.max())
    return f"{lo:.3g}" if lo == hi else f"{lo:.3g}-{hi:.3g}"
