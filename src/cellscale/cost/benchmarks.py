"""The workflow's ``benchmark:`` files: where they are, which rule wrote each, and their rows.

Every rule writes ``results/benchmarks/<rule>/...tsv`` (Snakemake's benchmark table: wall seconds ``s``, peak
resident memory ``max_rss`` in MB, ``cpu_time`` in seconds, ...; one row per repeat), so the first folder under the
benchmark folder names the rule (a file directly in it, ``<rule>.tsv``, names it by its stem).

Standard library only: ``cellscale size`` (:mod:`cellscale.deploy.sizing`) reads them at command-line speed, and
:func:`cellscale.cost.jobs.job_table` turns them into a table with each job's megapixels.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from pathlib import Path

BENCHMARKS = Path("results/benchmarks")   # where the rules write them, relative to the workflow's folder
RUN_LEVEL = ("plan_batches", "report_fields", "summary", "aggregate_measurements", "mcquant", "cost")  # one a run


def number(text: str | None) -> float | None:
    """A benchmark cell as a number; None for "NA" (the process ended before it was sampled) or a missing column."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def rule_of(job: str | Path) -> str:
    """The rule of a benchmark file given relative to the benchmark folder: its first folder, else its stem."""
    parts = Path(job).parts
    return parts[0] if len(parts) > 1 else Path(job).stem


def benchmark_files(folder: Path | str = BENCHMARKS) -> dict[str, Path]:
    """Every ``*.tsv`` under ``folder``: its path relative to the folder (POSIX) -> its path, sorted."""
    folder = Path(folder)
    return {path.relative_to(folder).as_posix(): path for path in sorted(folder.rglob("*.tsv"))}


def read_rows(path: Path | str) -> Iterator[dict[str, float | None]]:
    """The rows of one benchmark file: ``s``, ``max_rss`` (MB), ``cpu_time`` (s), ``io_in``, ``io_out`` (MB),
    each a float or None where the file says NA or lacks the column."""
    with Path(path).open(newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            yield {key: number(row.get(key)) for key in ("s", "max_rss", "cpu_time", "io_in", "io_out")}
