"""Scale benchmark: do many small images segment as fast, per megapixel, as one large image?

Usage:
    python benchmarks/scale.py                      # every section (single: about 2 x 1-2 min on 2 cores)
    python benchmarks/scale.py --quick              # CI: a small subset, < 1 min
    python benchmarks/scale.py --sections single --json results/scale.json
    git worktree add /tmp/before HEAD~1 && python benchmarks/scale.py --src /tmp/before/src src --repeat 2

Sections:
- single: ``cellscale segment`` in one process with its defaults (int8 + rot180 on a CPU), timed on a folder of
  DSB2018 images of every kind (fluorescence, brightfield, H&E colour) from 256 x 256 to 1024 x 1024 px, about
  21 Mpx in all (a seeded draw), and on one square mosaic of DSB2018 fluorescence images of the same megapixels
  (an OME-TIFF); prints Mpx/s of each and their ratio (goal: the folder at >= 90% of the mosaic's Mpx/s).

- scheduler: Snakemake's own scheduling of many ready jobs (the default ILP scheduler and the greedy one), timed call
  by call on N trivial jobs (1,000 and 3,000; ``--quick``: 100): what a cluster run's launcher spends choosing jobs.

- workflow: the whole Snakemake workflow (shipped config, ``--cores 2``) on 10^2 and 10^3 DSB2018-sized fields of view
  (256 x 256 crops of fluorescence images), 10^4 small ones (64 x 64) and, as a dry run only, 10^5 (64 x 64): the
  sheet from ``cellscale samples``; DAG time before the plan (``dag_s``), the plan_batches job (``plan_s``, it reads
  every header), the DAG after it (``dag_after_plan_s``) and its job count; wall time and Mpx/s of the real run, and
  of ``cellscale segment FOLDER`` in one process on the same files (``workflow_vs_single``: goal >= 1 / 1.3).
  ``formats``: the run's ``output.formats``. The goal compares like with like, so those rows write what the one
  process writes, the labels (``ome-tiff``; the workflow adds the per-cell tables and the report); 10^3 fields run a
  second time with the shipped formats, whose OME-Zarr and SpatialData stores the one process does not write.
  ``--formats`` sets every row's. ``--quick``: 10 fields run, 300 dry.

Needs ../shared/data/dsb2018 (skipped with a note when absent). ``--src OTHER/src src`` times another checkout
too, in the same run (the command line runs as ``python -m cellscale.cli`` with that PYTHONPATH); both use this
checkout's models/nuclear. Run outputs go to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DSB = ROOT.parent / "shared" / "data" / "dsb2018"
MODEL = ROOT / "models" / "nuclear"
MIX_MPX, QUICK_MPX = 21.0, 2.0  # megapixels of the folder (and of the mosaic)
MOSAIC_CELL = 256  # the mosaic is a grid of 256 x 256 crops of fluorescence images


def dsb_mix(mpx: float, seed: int = 0) -> pd.DataFrame:
    """DSB2018 images of every kind, 256 to 1024 px a side, drawn in a seeded order until about ``mpx``."""
    index = pd.read_csv(DSB / "index.csv")
    index = index[index.height.between(256, 1024) & index.width.between(256, 1024)]
    index = index.sample(frac=1.0, random_state=seed).assign(mpx=lambda d: d.height * d.width / 1e6)
    return index[index.mpx.cumsum() <= mpx]


def write_mix(images: pd.DataFrame, folder: Path) -> float:
    """Copy the images into ``folder``; returns their megapixels."""
    folder.mkdir(parents=True, exist_ok=True)
    for image_id in images.id:
        shutil.copy(DSB / "images" / f"{image_id}.png", folder)
    return float(images.mpx.sum())


def write_mosaic(path: Path, mpx: float, seed: int = 0) -> float:
    """A square single-channel OME-TIFF of about ``mpx``: 256 x 256 crops of DSB2018 fluorescence images
    (seeded order, repeated as needed) side by side. Returns its megapixels."""
    import tifffile

    from cellscale.io import read_image

    index = pd.read_csv(DSB / "index.csv")
    fluo = index[(index.kind == "fluorescence") & (index.height >= MOSAIC_CELL) & (index.width >= MOSAIC_CELL)]
    ids = fluo.sample(frac=1.0, random_state=seed).id.tolist()
    cells = max(1, int(round(np.sqrt(mpx * 1e6) / MOSAIC_CELL)))
    edge = cells * MOSAIC_CELL
    mosaic = np.zeros((edge, edge), np.uint8)
    for k in range(cells * cells):
        crop = read_image(DSB / "images" / f"{ids[k % len(ids)]}.png")[0, 0, :MOSAIC_CELL, :MOSAIC_CELL]
        y, x = divmod(k, cells)
        mosaic[y * MOSAIC_CELL:(y + 1) * MOSAIC_CELL, x * MOSAIC_CELL:(x + 1) * MOSAIC_CELL] = crop
    tifffile.imwrite(path, mosaic, ome=True, tile=(512, 512), photometric="minisblack", metadata={"axes": "YX"})
    return edge * edge / 1e6


def time_segment(source: Path, out: str, src: Path = ROOT / "src", extra: list[str] | None = None) -> dict:
    """Run ``cellscale segment SOURCE -o OUT`` (its defaults) of the checkout whose package folder is ``src``, in
    one process; wall and in-process seconds."""
    cmd = [sys.executable, "-m", "cellscale.cli", "segment", str(source), "-o", out, "--model", str(MODEL),
           *(extra or [])]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(src)}
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
    found = re.search(r"segment finished in ([0-9.]+) s", result.stderr)
    return {"wall s": wall, "segment s": float(found.group(1)) if found else float("nan")}


def section_single(args: argparse.Namespace, workdir: Path) -> pd.DataFrame:
    """Mpx/s of ``cellscale segment`` on the DSB2018 folder and on the mosaic of the same megapixels, for each
    checkout of ``args.src``, run alternately ``args.repeat`` times each (the fastest run of each counts: a
    shared machine's speed drifts)."""
    images = dsb_mix(QUICK_MPX if args.quick else MIX_MPX)
    mix_mpx = write_mix(images, workdir / "mix")
    large_mpx = write_mosaic(workdir / "large.ome.tif", mix_mpx)
    inputs = (("DSB2018 folder", workdir / "mix", str(workdir / "mix-out") + "/", mix_mpx, len(images)),
              ("one mosaic", workdir / "large.ome.tif", str(workdir / "large-labels.tif"), large_mpx, 1))
    runs: dict[tuple[Path, str], list[dict]] = {}
    for _ in range(args.repeat):
        for src in args.src:
            for name, source, out, _, _ in inputs:
                runs.setdefault((src, name), []).append(time_segment(source, out, src))
    rows = []
    for src in args.src:
        for name, _, _, mpx, n in inputs:
            best = min(runs[(src, name)], key=lambda r: r["wall s"])
            rows.append({"checkout": str(src), "input": name, "images": n, "Mpx": round(mpx, 2), **best,
                         "Mpx/s (wall)": mpx / best["wall s"], "Mpx/s (segment)": mpx / best["segment s"]})
    table = pd.DataFrame(rows)
    kinds = images.groupby("kind").size().to_dict()
    print(f"folder: {len(images)} images, {mix_mpx:.1f} Mpx ({kinds}); mosaic: {large_mpx:.1f} Mpx")
    for src, runs_of in table.groupby("checkout", sort=False):
        ratios = [f"{c}: {runs_of[c].iloc[0] / runs_of[c].iloc[1]:.2f}" for c in ("Mpx/s (wall)", "Mpx/s (segment)")]
        print(f"{src}: folder / mosaic, {'; '.join(ratios)}")
    return table


# ---------------------------------------------------------------------------------------------------------------
# workflow: the whole Snakemake workflow on N fields of view, against one process on the same files
# ---------------------------------------------------------------------------------------------------------------

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def write_fields(folder: Path, n: int, edge: int, seed: int = 0) -> float:
    """``n`` single-channel TIFF fields of view of ``edge`` x ``edge`` px: crops of DSB2018 fluorescence images
    (seeded order, repeated as needed), or generated nuclei when ../shared is absent. Returns their megapixels."""
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    crops = _crops(edge, seed)
    for i in range(n):
        tifffile.imwrite(folder / f"fov{i:06d}.tif", crops[i % len(crops)])
    return n * edge * edge / 1e6


def _crops(edge: int, seed: int) -> list[np.ndarray]:
    if not DSB.exists():
        from cellscale.synth.tissue import make_tissue

        return [make_tissue((edge, edge), n_cells=max(4, edge * edge // 2000), seed=seed + k).image[0]
                for k in range(8)]
    from cellscale.io import read_image

    index = pd.read_csv(DSB / "index.csv")
    fluo = index[(index.kind == "fluorescence") & (index.height >= edge) & (index.width >= edge)]
    ids = fluo.sample(frac=1.0, random_state=seed).id.tolist()[:64]
    return [read_image(DSB / "images" / f"{i}.png")[0, 0, :edge, :edge] for i in ids]


def _snakemake(work: Path, *args: str) -> tuple[float, str]:
    cmd = [SNAKEMAKE, "-s", str(ROOT / "workflow" / "Snakefile"), "--directory", str(work), "--cores", "2", *args]
    began = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
    return seconds, result.stdout + result.stderr


def _job_count(out: str) -> int:
    table = re.search(r"^total\s+(\d+)$", out, re.M)
    return int(table.group(1)) if table else 0


def prepare_workflow(work: Path, folder: Path, shard_mpx: float, formats: list[str] | None = None) -> None:
    """A work folder whose sheet lists every image of ``folder`` (``cellscale samples``) and whose config is the
    shipped one (shard_mpx aside, and ``output.formats`` where ``formats`` is given)."""
    import yaml

    (work / "config").mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "cellscale.cli", "samples", str(folder / "*.tif"), "--kind", "tissue",
                    "-o", str(work / "config" / "samples.tsv")], check=True, capture_output=True)
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config.update(samples=str(work / "config" / "samples.tsv"),
                  models={"nuclear": str(MODEL), "tissue": str(ROOT / "models" / "tissue")})
    config["tiling"]["shard_mpx"] = shard_mpx
    if formats:
        config["output"]["formats"] = formats
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(config))


def workflow_row(n: int, edge: int, tmp: Path, shard_mpx: float, run: bool = True,
                 formats: list[str] | None = None) -> dict:
    """DAG figures of the workflow on ``n`` fields of view and, when ``run``, its wall time and Mpx/s against
    ``cellscale segment FOLDER`` on the same files."""
    folder = tmp / f"fields_{n}"
    mpx = write_fields(folder, n, edge)
    work = tmp / f"work_{n}"
    prepare_workflow(work, folder, shard_mpx, formats)
    row = {"section": "workflow", "fields": n, "edge_px": edge, "mpx": round(mpx, 2), "shard_mpx": shard_mpx,
           "formats": "+".join(formats) if formats else "shipped"}
    row["dag_s"], out = _snakemake(work, "-n", "-q")  # the DAG before the plan: plan_batches and the run's tables
    row["plan_s"], _ = _snakemake(work, "--until", "plan_batches", "-q")  # reads every image's header
    row["dag_after_plan_s"], out = _snakemake(work, "-n")  # the full DAG: every batch job
    row["jobs"] = _job_count(out) + 1  # + plan_batches, done already
    if run:
        shutil.rmtree(work / "results")
        row["workflow_s"], _ = _snakemake(work)
        row["workflow_mpx_s"] = round(mpx / row["workflow_s"], 4)
        single = time_segment(folder, str(tmp / f"labels_{n}") + "/")
        row["single_s"] = round(single["wall s"], 1)
        row["single_mpx_s"] = round(mpx / single["wall s"], 4)
        row["workflow_vs_single"] = round(row["workflow_mpx_s"] / row["single_mpx_s"], 3)
    row = {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}
    print(json.dumps(row), flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    return row


# (fields of view, edge px, real run?): DSB2018-sized 256 x 256 fields at 10^2 and 10^3; at 10^4 64 x 64 ones (a
# real run of 10^4 DSB-sized fields takes about an hour on 2 cores); 10^5 as a dry run only
LABELS = ["ome-tiff"]  # what ``cellscale segment FOLDER`` writes
WORKFLOW_SIZES = [(100, 256, True, LABELS), (1000, 256, True, LABELS), (1000, 256, True, None),
                  (10000, 64, True, LABELS), (100000, 64, False, LABELS)]  # None: the shipped output.formats
QUICK_SIZES = [(10, 256, True, LABELS), (300, 64, False, LABELS)]


def section_workflow(args: argparse.Namespace, workdir: Path) -> pd.DataFrame:
    """The whole workflow (its default profile settings, 2 cores) on many fields of view: jobs, DAG time, wall
    time and Mpx/s against ``cellscale segment FOLDER`` in one process on the same files. ``tiling.shard_mpx``
    is the shipped 16 Mpx."""
    rows = [workflow_row(n, edge, workdir, 16.0, run, args.formats or formats)
            for n, edge, run, formats in (QUICK_SIZES if args.quick else WORKFLOW_SIZES) if n <= args.max_fields]
    return pd.DataFrame(rows)


SCHEDULER_SIZES, QUICK_SCHEDULER_SIZES = (1000, 3000), (100,)
# N jobs that each touch a file, and a wrapper that times every call of the scheduler's select_jobs
TOUCH_SNAKEFILE = """rule all:
    input: expand("out/{i}.txt", i=range(int(config["count"])))
rule touch:
    output: "out/{i}.txt"
    shell: "touch {output}"
"""
TIMED_SNAKEMAKE = """import atexit, json, sys, time
from snakemake.scheduling import greedy, milp
calls = []
for module in (greedy, milp):
    def timed(self, selectable, *rest, _orig=module.Scheduler.select_jobs):
        t = time.perf_counter()
        out = _orig(self, selectable, *rest)
        calls.append((len(selectable), time.perf_counter() - t))
        return out
    module.Scheduler.select_jobs = timed
atexit.register(lambda: open("calls.json", "w").write(json.dumps(calls)))
from snakemake.cli import main
sys.argv = ["snakemake", *sys.argv[1:]]
main()
"""


def section_scheduler(args: argparse.Namespace, workdir: Path) -> pd.DataFrame:
    """Snakemake's scheduling round on many ready jobs: N jobs that each touch a file, 4 at a time, with the default
    ILP scheduler and with the greedy one; every call of its ``select_jobs`` timed. ``ms per ready job``: the slope
    of a call's seconds against its number of ready jobs. A cluster run makes about one call per finished job, so
    its scheduling takes about slope x N^2 / 2 in all (``s for N jobs``)."""
    (workdir / "Snakefile").write_text(TOUCH_SNAKEFILE)
    (workdir / "timed.py").write_text(TIMED_SNAKEMAKE)
    rows = []
    for n in (QUICK_SCHEDULER_SIZES if args.quick else SCHEDULER_SIZES):
        for scheduler in ("ilp", "greedy"):
            shutil.rmtree(workdir / "out", ignore_errors=True)
            shutil.rmtree(workdir / ".snakemake", ignore_errors=True)
            start = time.perf_counter()
            subprocess.run([sys.executable, "timed.py", "-q", "--cores", "4", "--scheduler", scheduler, "--config",
                            f"count={n}"], cwd=workdir, check=True, capture_output=True)
            wall = time.perf_counter() - start
            calls = np.array(json.loads((workdir / "calls.json").read_text()), float)
            slope = np.polyfit(calls[:, 0], calls[:, 1], 1)[0]
            rows.append({"jobs": n, "scheduler": scheduler, "wall s": wall, "calls": len(calls),
                         "select s": calls[:, 1].sum(), "first call s": calls[0, 1], "ms per ready job": slope * 1e3,
                         "s for 1954 jobs": slope * 1954 ** 2 / 2, "s for 62500 jobs": slope * 62500 ** 2 / 2})
    return pd.DataFrame(rows)


SECTIONS = {"single": section_single, "workflow": section_workflow, "scheduler": section_scheduler}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small subset (CI)")
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    parser.add_argument("--repeat", type=int, default=1, help="runs of each timing (the fastest counts)")
    parser.add_argument("--src", nargs="+", type=lambda p: Path(p).resolve(), default=[ROOT / "src"],
                        help="the package folders of the checkouts to time, in turn (default: this one's src/), "
                             "e.g. a worktree of the previous commit and src")
    parser.add_argument("--max-fields", type=int, default=10**6,
                        help="workflow: leave out the sizes with more fields of view than this")
    parser.add_argument("--formats", nargs="+", default=None, choices=["ome-tiff", "ome-zarr", "spatialdata"],
                        help="workflow: every row's output.formats (default: ome-tiff, what the one process "
                             "writes, and the shipped formats once at 10^3 fields)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args()
    pd.set_option("display.width", 160, "display.float_format", "{:.3f}".format)
    if not DSB.exists():
        print(f"(no {DSB}: scale benchmark skipped)")
        return 0
    results = {}
    for name in args.sections:
        with tempfile.TemporaryDirectory(prefix=f"cellscale-scale-{name}-") as tmp:
            table = SECTIONS[name](args, Path(tmp))
        print(f"\n## {name}\n" + table.to_string(index=False))
        results[name] = table.to_dict("records")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
