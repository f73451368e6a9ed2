"""Benchmark of cellscale.measure: speed against regionprops_table, exactness, scaling, memory.

    python benchmarks/measure.py            # full: 4096^2 ratio, 4 / 26 / 105 Mpx, ~10 min
    python benchmarks/measure.py --quick    # CI: smaller sizes, one blocked run each, < 1 min

One run prints, side by side:

1. ratio: ``skimage.measure.regionprops_table`` against ``measure_cells`` for
   the full MCMICRO column set (centroid, area, axes, eccentricity, solidity,
   extent, orientation, mean of every channel) on generated labels
   (4096 x 4096, about 20,000 cells, 3 uint16 channels), with the largest
   difference of every column from regionprops (relative, angles modulo pi);
2. exactness on real labels (DSB2018 masks, the CODEX tile with its 8
   channels) when ../shared/data is present;
3. scaling at 4, 26 and 105 Mpx (about 4,800 cells/Mpx, 8 channels): the
   in-memory time, and the time and peak memory (max RSS of a child process)
   of the blocked measurement read from tiled OME-TIFFs (the fastest of 3
   child processes; ``--quick``: one), whose table is checked identical to
   the in-memory one.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
PROPS = ("label", "centroid", "area", "axis_major_length", "axis_minor_length", "eccentricity",
         "solidity", "extent", "orientation", "intensity_mean")
RP_COLUMNS = {"X_centroid": "centroid-1", "Y_centroid": "centroid-0", "Area": "area",
              "MajorAxisLength": "axis_major_length", "MinorAxisLength": "axis_minor_length",
              "Eccentricity": "eccentricity", "Solidity": "solidity", "Extent": "extent",
              "Orientation": "orientation"}
CELLS_PER_MPX = 500_000 / (10240 * 10240 / 1e6)
TOLERANCE = 1e-6


# ---------------------------------------------------------------- generated data
def synth_labels(height: int, width: int, n_cells: int, seed: int = 0, band: int = 1024) -> np.ndarray:
    """Irregular, touching and separate cells: Voronoi regions of random seeds cut by a noisy radius.

    Built band by band (with a margin larger than a cell), so 100 Mpx need
    about 1 GB. Labels are uint32, not consecutive, in random order.
    """
    rng = np.random.default_rng(seed)
    radius = np.sqrt(height * width / n_cells / np.pi)
    seeds = np.c_[rng.integers(0, height, n_cells), rng.integers(0, width, n_cells)]
    ids = (rng.permutation(n_cells) * 3 + 1).astype(np.uint32)
    coarse = ndi.gaussian_filter(rng.random((height // 8 + 2, width // 8 + 2)), 1.5)
    coarse = (coarse - coarse.mean()) / coarse.std()
    labels = np.zeros((height, width), np.uint32)
    margin = int(2 * radius) + 2
    for y0 in range(0, height, band):
        y1 = min(height, y0 + band)
        w0, w1 = max(0, y0 - margin), min(height, y1 + margin)
        inside = (seeds[:, 0] >= w0) & (seeds[:, 0] < w1)
        marks = np.zeros((w1 - w0, width), np.int64)
        marks[seeds[inside, 0] - w0, seeds[inside, 1]] = np.flatnonzero(inside) + 1
        dist, (iy, ix) = ndi.distance_transform_edt(marks == 0, return_indices=True)
        lab = marks[iy, ix]
        rows = slice(y0 - w0, y1 - w0)
        noise = np.repeat(np.repeat(coarse[y0 // 8:(y1 + 7) // 8 + 1], 8, 0), 8, 1)
        noise = noise[y0 % 8:y0 % 8 + (y1 - y0), :width]
        keep = dist[rows] < radius * (0.85 + 0.25 * noise)
        labels[y0:y1] = np.where(keep & (lab[rows] > 0), ids[np.maximum(lab[rows] - 1, 0)], 0)
    return labels


def synth_image(labels: np.ndarray, n_channels: int, seed: int = 1) -> np.ndarray:
    """uint16 channels: a per-cell level per marker plus pixel noise."""
    rng = np.random.default_rng(seed)
    image = np.empty((n_channels,) + labels.shape, np.uint16)
    levels = rng.integers(100, 20000, (n_channels, int(labels.max()) + 1)).astype(np.uint16)
    levels[:, 0] = 50
    for k in range(n_channels):
        image[k] = levels[k][labels]
        image[k] += rng.integers(0, 2000, labels.shape, dtype=np.uint16)
    return image


# ---------------------------------------------------------------- comparisons
def compare_to_regionprops(table, ref: dict, channel_names) -> dict:
    """Largest difference of every column: relative (|ref| >= 1) or absolute; angles modulo pi."""
    errors = {}
    if not np.array_equal(table["CellID"].to_numpy(), np.asarray(ref["label"])):
        return {"CellID": float("inf")}
    pairs = dict(RP_COLUMNS)
    many = len(channel_names) > 1
    pairs.update({n: f"intensity_mean-{k}" if many else "intensity_mean" for k, n in enumerate(channel_names)})
    for col, key in pairs.items():
        got, want = table[col].to_numpy(float), np.asarray(ref[key], float)
        if col == "Orientation":
            diff = np.abs(np.angle(np.exp(2j * (got - want)))) / 2
        else:
            diff = np.abs(got - want) / np.maximum(np.abs(want), 1.0)
        errors[col] = float(diff.max(initial=0.0))
    return errors


def regionprops_reference(labels, image=None):
    from skimage.measure import regionprops_table

    intensity = None if image is None else np.moveaxis(image, 0, -1)
    props = PROPS if image is not None else PROPS[:-1]
    return regionprops_table(labels, intensity, properties=props)


def best_time(fn, repeat: int):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


# ---------------------------------------------------------------- sections
def ratio_section(size: int, n_cells: int, repeat: int, repeat_rp: int) -> dict:
    from cellscale.measure import measure_cells

    labels = synth_labels(size, size, n_cells, seed=0)
    image = synth_image(labels, 3)
    n = len(np.unique(labels)) - 1
    warm = (labels[:64, :64], image[:, :64, :64])  # first calls import and set up; time them apart
    regionprops_reference(*warm)
    measure_cells(*warm)
    t_rp, ref = best_time(lambda: regionprops_reference(labels, image), repeat_rp)
    t_cs, table = best_time(lambda: measure_cells(labels, image), repeat)
    errors = compare_to_regionprops(table, ref, ["ch0", "ch1", "ch2"])
    return {"size": size, "cells": n, "regionprops_table_s": t_rp, "cellscale_s": t_cs,
            "ratio": t_rp / t_cs, "max_error": max(errors.values()), "errors": errors}


def real_labels_section(max_dsb: int | None) -> dict:
    import tifffile

    from cellscale.measure import measure_cells

    out = {}
    masks = sorted(glob.glob(str(SHARED / "dsb2018" / "masks" / "*.tif")))[:max_dsb]
    if masks:
        worst, cells = 0.0, 0
        for path in masks:
            lab = tifffile.imread(path)
            errors = compare_to_regionprops(measure_cells(lab), regionprops_reference(lab), [])
            worst, cells = max(worst, max(errors.values())), cells + len(np.unique(lab)) - 1
        out["dsb2018"] = {"images": len(masks), "cells": cells, "max_error": worst}
    codex = SHARED / "codex" / "R001_X003_Y004"
    if codex.exists():
        lab = tifffile.imread(codex / "mask_expert1_wholecell.tif")
        image = tifffile.imread(codex / "image.ome.tif")
        names = [f"ch{k}" for k in range(image.shape[0])]
        errors = compare_to_regionprops(measure_cells(lab, image), regionprops_reference(lab, image), names)
        out["codex"] = {"cells": len(np.unique(lab)) - 1, "channels": image.shape[0],
                        "max_error": max(errors.values())}
    return out


def write_tiled(path, data, axes: str) -> None:
    import tifffile

    tifffile.imwrite(path, data, ome=True, tile=(512, 512), metadata={"axes": axes}, photometric="minisblack")


def child_measure(labels_path: str, image_path: str, out_parquet: str) -> None:
    """Blocked measurement straight from the tiled files (run as a child process)."""
    import zarr  # noqa: F401 (imported before the clock starts, like any long-running process)

    from cellscale.io import ImageSource
    from cellscale.measure import RegionArray, measure_compartments

    t = time.perf_counter()
    with ImageSource.open(labels_path) as lab, ImageSource.open(image_path) as img:
        table = measure_compartments({"whole_cell": RegionArray(lab, "YX")}, RegionArray(img, "CYX"))
    seconds = time.perf_counter() - t
    table.to_parquet(out_parquet)
    print(json.dumps({"seconds": seconds, "rows": len(table), "peak_rss_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's max RSS (VmHWM), MB.

    Read from /proc rather than the parent's ``wait4`` rusage: on Linux a
    child's ``ru_maxrss`` keeps the high-water mark of the address space it
    was forked from, i.e. the (large) benchmark parent's.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(*args) -> tuple[float, float]:
    """Run the child in a fresh interpreter; return its time (s) and peak RSS (MB)."""
    cmd = [sys.executable, __file__, "--child", *map(str, args)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if proc.returncode:
        raise RuntimeError(f"child failed ({proc.returncode}): {' '.join(cmd)}")
    result = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    return result["seconds"], result["peak_rss_mb"]


def scaling_section(sides, n_channels: int, work: Path, child_runs: int = 3) -> list[dict]:
    """In-memory and blocked measurement per side; the blocked one in ``child_runs`` fresh processes, the fastest
    counting (the machine is shared) and the largest peak."""
    import pandas as pd

    from cellscale.measure import measure_compartments

    rows = []
    for side in sides:
        n_cells = int(round(CELLS_PER_MPX * side * side / 1e6))
        labels = synth_labels(side, side, n_cells, seed=side)
        image = synth_image(labels, n_channels, seed=side + 1)
        lab_path, img_path, out = work / f"labels_{side}.ome.tif", work / f"image_{side}.ome.tif", work / "t.parquet"
        write_tiled(lab_path, labels, "YX")
        write_tiled(img_path, image, "CYX")
        t_mem, table = best_time(lambda: measure_compartments({"whole_cell": labels}, image), 2)
        del image
        runs = [run_child(lab_path, img_path, out) for _ in range(child_runs)]
        child, rss = min(r[0] for r in runs), max(r[1] for r in runs)
        blocked = pd.read_parquet(out)
        identical = blocked.equals(table)
        rows.append({"mpx": side * side / 1e6, "side": side, "cells": len(table), "channels": n_channels,
                     "in_memory_s": t_mem, "blocked_s": child, "blocked_peak_rss_mb": rss,
                     "blocked_identical": bool(identical)})
        for p in (lab_path, img_path, out):
            p.unlink()
        del labels, table, blocked
    return rows


# ---------------------------------------------------------------- report
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, one blocked run each, for CI (< 1 min)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_measure(*args.child)
        return 0
    if args.quick:
        size, cells, repeat, repeat_rp, sides, max_dsb, child_runs = 1024, 1250, 5, 2, (1024, 1448, 2048), 40, 1
    else:
        size, cells, repeat, repeat_rp, sides, max_dsb, child_runs = 4096, 20000, 5, 2, (2048, 5120, 10240), None, 3
    results = {"mode": "quick" if args.quick else "full"}
    t0 = time.time()
    r = results["ratio"] = ratio_section(size, cells, repeat, repeat_rp)
    print(f"== speed: {r['size']}x{r['size']}, {r['cells']} cells, 3 channels, full MCMICRO column set")
    print(f"   regionprops_table {r['regionprops_table_s']:8.3f} s | cellscale measure_cells "
          f"{r['cellscale_s']:7.3f} s | {r['ratio']:5.1f}x faster (goal >= 20x)")
    ok = r["max_error"] <= TOLERANCE
    print(f"   exactness vs regionprops: max difference {r['max_error']:.1e} "
          f"({'PASS' if ok else 'FAIL'}, tolerance {TOLERANCE:g})")
    print("   per column: " + ", ".join(f"{k} {v:.0e}" for k, v in r["errors"].items()))
    real = results["real_labels"] = real_labels_section(max_dsb)
    for name, v in real.items():
        ok = ok and v["max_error"] <= TOLERANCE
        print(f"== real labels {name}: {v['cells']} cells" + (f" in {v['images']} images" if "images" in v else "")
              + f", max difference from regionprops {v['max_error']:.1e}")
    if not real:
        print(f"== real labels: {SHARED} absent, skipped")
    work = Path(tempfile.mkdtemp(prefix="cellscale-bench-"))
    try:
        scale = results["scaling"] = scaling_section(sides, 8, work, child_runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("== scaling (8 uint16 channels, whole-cell labels, tiled OME-TIFF 512x512 for the blocked run)")
    print(f"   {'Mpx':>6} {'cells':>8} {'in-memory s':>12} {'blocked s':>10} {'Mpx/s':>7} "
          f"{'peak RSS MB':>12} {'identical':>9}")
    for s in scale:
        print(f"   {s['mpx']:6.1f} {s['cells']:8d} {s['in_memory_s']:12.2f} {s['blocked_s']:10.2f} "
              f"{s['mpx'] / s['blocked_s']:7.1f} {s['blocked_peak_rss_mb']:12.0f} {str(s['blocked_identical']):>9}")
        ok = ok and s["blocked_identical"]
    base = scale[0]
    print("   time per Mpx relative to the smallest: "
          + ", ".join(f"{s['mpx']:.0f} Mpx {s['blocked_s'] / s['mpx'] / (base['blocked_s'] / base['mpx']):.2f}"
                      for s in scale))
    print(f"== total benchmark time {time.time() - t0:.0f} s; all checks {'PASS' if ok else 'FAIL'}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
