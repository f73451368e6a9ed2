#!/usr/bin/env python3
"""Per-rule SLURM sizes (mem_mb, runtime) from the workflow's `benchmark:` files.

Every rule writes `benchmarks/out/<rule>/...tsv` (Snakemake's benchmark: wall seconds `s`, peak
resident memory `max_rss` in MB, ...). This prints a `set-resources:` block for
profiles/slurm/config.yaml: memory = peak RSS x headroom, rounded up to 500 MB; runtime = slowest
job x headroom, in minutes, never under the floor. Run it after a run on data like yours:

    python profiles/slurm/resources_from_benchmarks.py benchmarks/out [--mem-headroom 2] [--time-headroom 3]
"""

from __future__ import annotations

import argparse
import csv
import math
import re
from collections import defaultdict
from pathlib import Path

RULES = Path(__file__).resolve().parents[2] / "rules"


def benchmark_folders(rules_dir: Path = RULES) -> dict[str, str]:
    """Benchmark folder -> rule name, read from the rules' `benchmark:` paths (report/ is report_sample)."""
    folders = {}
    for smk in sorted(rules_dir.glob("*.smk")):
        rule = None
        for line in smk.read_text().splitlines():
            head = re.match(r"(?:rule|checkpoint)\s+(\w+)\s*:", line)
            if head:
                rule = head.group(1)
            path = re.search(r"[\"']benchmarks/out/([^/\"'{]+)", line)
            if rule and path:
                folders[path.group(1).removesuffix(".tsv")] = rule
    return folders


def read_benchmarks(root: Path) -> dict[str, list[dict[str, float]]]:
    """Rows of every benchmark TSV under `root`, keyed by rule (the first folder under root)."""
    rows: dict[str, list[dict[str, float]]] = defaultdict(list)
    folders = benchmark_folders()
    for path in sorted(root.rglob("*.tsv")):
        rel = path.relative_to(root)
        folder = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        rule = folders.get(folder, folder)
        with path.open() as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                try:
                    rows[rule].append({"s": float(row["s"]), "max_rss": float(row["max_rss"])})
                except (KeyError, ValueError):  # "NA" when the process was too short to sample
                    continue
    return dict(rows)


def sizes(rows: list[dict[str, float]], mem_headroom: float, time_headroom: float,
          mem_floor: int, time_floor: int) -> dict[str, int]:
    peak_mb = max(r["max_rss"] for r in rows)
    slowest_s = max(r["s"] for r in rows)
    mem_mb = max(mem_floor, int(math.ceil(peak_mb * mem_headroom / 500.0)) * 500)
    runtime = max(time_floor, int(math.ceil(slowest_s * time_headroom / 60.0)))
    return {"mem_mb": mem_mb, "runtime": runtime, "jobs": len(rows),
            "peak_rss_mb": round(peak_mb), "slowest_s": round(slowest_s, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", nargs="?", default="benchmarks/out", type=Path)
    parser.add_argument("--mem-headroom", type=float, default=2.0)
    parser.add_argument("--time-headroom", type=float, default=3.0)
    parser.add_argument("--mem-floor", type=int, default=1000, help="MB")
    parser.add_argument("--time-floor", type=int, default=10, help="minutes")
    args = parser.parse_args(argv)
    table = read_benchmarks(args.root)
    if not table:
        raise SystemExit(f"no benchmark files under {args.root}; run the workflow first")
    print("set-resources:")
    for rule, rows in sorted(table.items()):
        s = sizes(rows, args.mem_headroom, args.time_headroom, args.mem_floor, args.time_floor)
        print(f"  {rule}:  # {s['jobs']} jobs, peak RSS {s['peak_rss_mb']} MB, slowest {s['slowest_s']} s")
        print(f"    mem_mb: {s['mem_mb']}")
        print(f"    runtime: {s['runtime']}")


if __name__ == "__main__":
    main()
