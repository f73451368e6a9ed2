"""Per-rule resources from the workflow's ``benchmark:`` files, for the SLURM and the GKE profile alike.

Every rule writes ``results/benchmarks/<rule>/...tsv`` (Snakemake's benchmark table: wall seconds ``s``, peak
resident memory ``max_rss`` in MB, ...), so the first folder under the benchmark folder names the rule (a file
directly in it, ``<rule>.tsv``, names it by its stem). :func:`size_rules` turns them into sizes:

- ``mem_mb``: the largest ``max_rss`` seen x ``mem_headroom``, rounded up to ``step_mb``, at least ``mem_floor_mb``;
- ``runtime`` (minutes): the slowest job x ``time_headroom``, rounded up, at least ``time_floor_min``.

:data:`PROFILES` holds each profile's parameters and the resources it sets; ``cellscale size --profile slurm|gke
[FOLDER]`` prints the profile's ``set-resources:`` block with the measured sizes in place, to replace the
profile's after a pilot run on data like yours (:func:`set_resources_block`).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, replace
from pathlib import Path

from cellscale.cost.benchmarks import BENCHMARKS, benchmark_files, read_rows, rule_of
from cellscale.settings import number_arg


@dataclass(frozen=True)
class RuleSize:
    """What one rule's benchmark files say, and the resources to ask for."""

    rule: str
    files: int            # benchmark files (one per job)
    jobs: int             # benchmark rows (a rule with `repeat(...)` writes several per file)
    peak_rss_mb: float    # largest max_rss; 0 when never sampled ("NA": the process ended too soon)
    slowest_s: float      # largest s (wall clock)
    mem_mb: int
    runtime: int          # minutes


@dataclass(frozen=True)
class Sizing:
    """A profile's sizing parameters and which resources its ``set-resources`` takes."""

    mem_headroom: float
    time_headroom: float
    mem_floor_mb: int
    time_floor_min: int
    step_mb: int = 500
    resources: tuple[str, ...] = ("mem_mb", "runtime")

    def parameters(self) -> dict:
        """The keyword arguments of :func:`size_rules`."""
        return {"mem_headroom": self.mem_headroom, "time_headroom": self.time_headroom, "step_mb": self.step_mb,
                "mem_floor_mb": self.mem_floor_mb, "time_floor_min": self.time_floor_min}

    def describe(self) -> str:
        text = (f"{self.mem_headroom:g} x the largest max_rss measured, rounded up to {self.step_mb} MB "
                f"(at least {self.mem_floor_mb})")
        if "runtime" in self.resources:
            text += (f"; runtime: {self.time_headroom:g} x the slowest job, in minutes "
                     f"(at least {self.time_floor_min})")
        return text


# SLURM: memory and time are hard limits (sbatch --mem, --time), and the profile multiplies both by the attempt.
# GKE: the plugin reads no runtime; a memory request is what the scheduler packs nodes by.
PROFILES = {
    "slurm": Sizing(mem_headroom=2.0, time_headroom=3.0, mem_floor_mb=1000, time_floor_min=10),
    "gke": Sizing(mem_headroom=1.5, time_headroom=3.0, mem_floor_mb=500, time_floor_min=10,
                  resources=("mem_mb",)),
}


def size_rules(folder: Path | str = BENCHMARKS, mem_headroom: float = 2.0, time_headroom: float = 3.0,
               step_mb: int = 500, mem_floor_mb: int = 1000, time_floor_min: int = 10) -> dict[str, RuleSize]:
    """Sizes per rule (sorted by rule name) from every ``*.tsv`` under ``folder``; rule = first folder name.

    The defaults are the SLURM profile's; :func:`size_for` sizes with another profile's parameters.
    """
    seen: dict[str, dict] = {}
    for job, path in benchmark_files(folder).items():
        entry = seen.setdefault(rule_of(job), {"files": 0, "jobs": 0, "rss": [0.0], "s": [0.0]})
        entry["files"] += 1
        for row in read_rows(path):   # a value is None where the file says NA (the process ended too soon)
            entry["jobs"] += 1
            for key, column in (("rss", "max_rss"), ("s", "s")):
                if row[column] is not None:
                    entry[key].append(row[column])
    sizes = {}
    for rule in sorted(seen):
        entry = seen[rule]
        peak_mb, slowest_s = max(entry["rss"]), max(entry["s"])
        sizes[rule] = RuleSize(
            rule=rule, files=entry["files"], jobs=entry["jobs"], peak_rss_mb=peak_mb, slowest_s=slowest_s,
            mem_mb=max(mem_floor_mb, math.ceil(peak_mb * mem_headroom / step_mb) * step_mb),
            runtime=max(time_floor_min, math.ceil(slowest_s * time_headroom / 60.0)))
    return sizes


def size_for(profile: str, folder: Path | str = BENCHMARKS, **overrides) -> dict[str, RuleSize]:
    """:func:`size_rules` with ``profile``'s parameters (``overrides``: any of them, e.g. mem_headroom=3)."""
    return size_rules(folder, **replace(PROFILES[profile], **overrides).parameters())


def _yaml_scalar(value) -> str:
    import yaml

    return yaml.safe_dump(value).strip().removesuffix("...").strip()   # a scalar's document: "3000\n...\n"


def set_resources_block(sizes: dict[str, RuleSize], profile: str, sizing: Sizing | None = None,
                        current: dict | None = None, defaults: dict | None = None) -> str:
    """The ``set-resources:`` YAML block for ``profile`` (valid YAML: the notes are comments). ``current``: the
    profile's own ``set-resources``; then the block is the whole of it, each measured rule's sized resources
    replaced and its other keys kept (machine type, GPU, partition...), so it can replace the profile's block as it
    is. A resource the profile leaves out of a rule's entry stays out (the SLURM profile's ``track``: the rule sizes
    its memory from the movie, job by job). A value that scales with Snakemake's ``attempt`` keeps doing so; a rule
    new to the block scales as the profile's ``default-resources`` (``defaults``) do."""
    sizing = sizing or PROFILES[profile]
    lines = [f"set-resources:   # {profile}: {sizing.describe()}"]
    current, defaults = current or {}, defaults or {}
    for rule in [*current, *(r for r in sizes if r not in current)]:
        size, res = sizes.get(rule), dict(current.get(rule) or {})
        if size is None:
            lines.append(f"  {rule}:   # not measured: as the profile has it")
        else:
            jobs = f"{size.jobs} job" + ("" if size.jobs == 1 else "s")
            note = f"{jobs}, peak RSS {size.peak_rss_mb:.0f} MB, slowest {size.slowest_s:.1f} s"
            left = [r for r in sizing.resources if rule in current and r not in res]
            if left:
                note += f"; {', '.join(left)} not set here, as the profile has it (the rule's own)"
            lines.append(f"  {rule}:   # {note}")
            for resource in sizing.resources:
                if resource in left:
                    continue
                value = getattr(size, resource)
                scales = "attempt" in str(res.get(resource, defaults.get(resource, "")))
                res[resource] = f"{value} * attempt" if scales else value
        lines += [f"    {key}: {_yaml_scalar(value)}" for key, value in res.items()]
    return "\n".join(lines) + "\n"


def build_parser(parser: argparse.ArgumentParser | None = None, profile: str | None = None) -> argparse.ArgumentParser:
    """Arguments of ``cellscale size``; with ``profile`` (``cellscale gke size``) there is no --profile option."""
    parser = parser or argparse.ArgumentParser(prog="cellscale size", description=__doc__.split("\n\n")[0])
    parser.add_argument("benchmarks", type=Path, nargs="?", default=BENCHMARKS, metavar="FOLDER",
                        help=f"the workflow's benchmark folder, one folder per rule (default: {BENCHMARKS})")
    if profile is None:
        parser.add_argument("--profile", required=True, choices=sorted(PROFILES),
                            help="which profile's set-resources to print (its headroom, floors and resources)")
    else:
        parser.set_defaults(profile=profile)
    shown = sorted(PROFILES) if profile is None else [profile]
    timed = [name for name in shown if "runtime" in PROFILES[name].resources]

    def default(field, names=shown):
        return ", ".join(f"{name} {getattr(PROFILES[name], field):g}" for name in names)

    headroom = number_arg(float, 0, "a factor above 0", above=True)
    parser.add_argument("--mem-headroom", type=headroom, help=f"x peak RSS (default: {default('mem_headroom')})")
    parser.add_argument("--mem-floor", type=number_arg(int, 0, "a whole number of MB, at least 0"),
                        help=f"MB (default: {default('mem_floor_mb')})")
    if timed:
        parser.add_argument("--time-headroom", type=headroom,
                            help=f"x slowest job (default: {default('time_headroom', timed)})")
        parser.add_argument("--time-floor", type=number_arg(int, 0, "a whole number of minutes, at least 0"),
                            help=f"minutes (default: {default('time_floor_min', timed)})")
    return parser


def run(args: argparse.Namespace) -> int:
    """Print the ``set-resources:`` block for parsed ``cellscale size`` arguments; a FOLDER that is not there or
    holds no benchmark files is a ValueError naming it (the command line prints it as ``cellscale size: error:``)."""
    import yaml

    overrides = {"mem_headroom": args.mem_headroom, "mem_floor_mb": args.mem_floor,
                 "time_headroom": getattr(args, "time_headroom", None),
                 "time_floor_min": getattr(args, "time_floor", None)}
    sizing = replace(PROFILES[args.profile], **{k: v for k, v in overrides.items() if v is not None})
    if not Path(args.benchmarks).is_dir():
        raise ValueError(f"{args.benchmarks}: no such folder (run the workflow once first; its rules write "
                         f"{BENCHMARKS}/<rule>/...tsv)")
    sizes = size_rules(args.benchmarks, **sizing.parameters())
    if not sizes:
        raise ValueError(f"{args.benchmarks}: no benchmark files (run the workflow once first)")
    own = Path("profiles") / args.profile / "config.yaml"   # in the checkout: the block replaces the profile's whole
    loaded = (yaml.safe_load(own.read_text()) or {}) if own.is_file() else {}
    current = loaded.get("set-resources")
    if current is None:
        print(f"# {own} not found here: merge these into your profile's set-resources (its other keys stay)")
    print(set_resources_block(sizes, args.profile, sizing, current, loaded.get("default-resources")), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        return run(parser.parse_args(argv))
    except ValueError as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")


def track_memory_mb(labels_path, attempt: int = 1) -> int:
    """The memory (MB) a track job asks for: the step holds the movie's labels (32-bit) and nuclear channel whole,
    and the tracker's tables, about 6 bytes a pixel and 160 MB (measured on GOWT1 01 repeated in time: 730 MB at
    96 Mpx, 1.87 GB at 289 Mpx). Asked: 8 bytes a pixel and 400 MB, at least 1,000 MB, times ``attempt``; 3,000 MB a
    try where the labels cannot be read here (in remote storage). A profile's ``mem_mb`` for the rule replaces it
    (the GKE profile's 3,000 MB)."""
    import tifffile

    try:
        with tifffile.TiffFile(labels_path) as tif:
            pixels = math.prod(tif.series[0].shape)
    except Exception:  # not on this machine: the job itself reads them
        return 3000 * attempt
    return int(attempt * max(1000.0, 400 + 8 * pixels / 2**20))


if __name__ == "__main__":
    raise SystemExit(main())

