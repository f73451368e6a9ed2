"""Gigapixel benchmark: one generated 2-channel slide through the whole workflow (tile -> segment -> stitch ->
measure -> NGFF + SpatialData) on this machine, at several sizes.

Usage:
    python benchmarks/gigapixel.py                          # 26, 105 and 1,000 Mpx (hours on 2 cores)
    python benchmarks/gigapixel.py --mpx 26 105 --json out.json
    python benchmarks/gigapixel.py --compare-tile 384       # also rerun the smallest size with 384-px windows
    python benchmarks/gigapixel.py --mpx 1000 --compare-tile 384 --compare-size 1000 --keep DIR   # at 1 Gpx
    python benchmarks/gigapixel.py --quick                  # CI: a 1 Mpx slide, about 20 s

The slide: generated tissue (nuclear + membrane channels, uint16, 0.5 um/px) assembled from 1024 x 1024 blocks
(a pool of seeded :func:`cellscale.synth.tissue.make_tissue` blocks, each placed flipped or turned by its grid
position), written as a tiled zlib OME-TIFF block by block, so the slide is never in memory here either.
Workflow: the shipped config (shard_mpx and the tiling aside when given), ``--cores 2``, in a temporary folder.

Printed per size and per rule: jobs, wall seconds (sum over jobs), seconds per Mpx, the largest peak memory (max
RSS of any job, from the ``benchmark:`` files), and bytes written per Mpx (the rule's outputs on disk); then the
intermediates (tiles + predictions) against the raw slide, and the time per Mpx across sizes (linear in pixels
means a flat s/Mpx). ``--compare-tile T``: the smallest size (or ``--compare-size``) again with ``tiling.tile: T``; cell counts (each
run's summary.tsv), and the share of cells in 2048 x 2048 regions (the centre; on a large slide also the quadrants'
centres; read lazily) matched at IoU >= 0.9 between the two runs (goal >= 99%).
Then one memory check line per rule: its peak at every size against 4 GB, and its growth (the peak at the largest
size over the peak at the smallest; a rule that holds the slide grows with the pixels, a bounded one stays flat).
Goals (issue): no job above 4 GB, time linear in pixels, intermediates at most 2x the raw image.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
BLOCK = 1024
POOL = 8  # distinct generated blocks
OUTPUTS = {  # rule -> its outputs under results/, per sample {s}
    "tile": ["tiles/{s}"], "segment": ["predictions/{s}"], "stitch": ["segmentation/{s}"],
    "measure": ["measurements/{s}.csv", "measurements/{s}.parquet", "measurements/{s}.h5ad"],
    "ngff": ["ngff/{s}.ome.zarr"], "spatialdata": ["spatialdata/{s}.zarr"],
}
INTERMEDIATE = ("tile", "segment")


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


class BlockPool:
    """POOL (2, BLOCK, BLOCK) uint16 blocks of generated tissue (nuclear, membrane), block ``k`` from seed
    ``seed + k``, each made when a slide first uses it (a 1-Mpx slide uses one: a block takes about a second)."""

    def __init__(self, seed: int = 0):
        self.seed, self.blocks = seed, {}

    def __len__(self) -> int:
        return POOL

    def __getitem__(self, k: int) -> np.ndarray:
        if k not in self.blocks:
            from cellscale.synth.tissue import make_tissue

            tissue = make_tissue((BLOCK, BLOCK), n_cells=BLOCK * BLOCK // 1400, seed=self.seed + k)
            img = np.asarray(tissue.image, np.float64)
            self.blocks[k] = np.clip(img / max(img.max(), 1e-9) * 50000, 0, 65535).astype(np.uint16)
        return self.blocks[k]


def write_slide(path: Path, mpx: float, pool: BlockPool) -> tuple[int, int]:
    """A square slide of about ``mpx`` megapixels, written tile by tile; returns (height, width)."""
    import tifffile

    side = int(round(np.sqrt(mpx * 1e6) / BLOCK)) * BLOCK or BLOCK
    n = side // BLOCK
    tile = 512

    def block(by: int, bx: int) -> np.ndarray:
        b = pool[(by * 7 + bx * 3) % len(pool)]
        b = np.rot90(b, k=(by + bx) % 4, axes=(1, 2))
        return b[:, ::-1] if (by * n + bx) % 3 == 0 else b

    def tiles():
        for c in range(2):
            for y in range(0, side, tile):
                for x in range(0, side, tile):
                    b = block(y // BLOCK, x // BLOCK)
                    yield np.ascontiguousarray(b[c, y % BLOCK:y % BLOCK + tile, x % BLOCK:x % BLOCK + tile])

    tifffile.imwrite(path, tiles(), shape=(2, side, side), dtype=np.uint16, tile=(tile, tile), compression="zlib",
                     ome=True, photometric="minisblack", bigtiff=True,
                     metadata={"axes": "CYX", "Channel": {"Name": ["DNA", "membrane"]},
                               "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5})
    return side, side


def prepare(work: Path, slide: Path, shard_mpx: float | None, tile: int | None, formats: list | None = None) -> None:
    import yaml

    (work / "config").mkdir(parents=True, exist_ok=True)
    (work / "config" / "samples.tsv").write_text(
        "sample\timage\tkind\tnuclear_channel\tmembrane_channel\tpixel_size_um\n"
        f"slide\t{slide}\ttissue\t0\t1\t0.5\n")
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config.update(samples=str(work / "config" / "samples.tsv"),
                  models={"nuclear": str(ROOT / "models" / "nuclear"), "tissue": str(ROOT / "models" / "tissue")})
    config["batches"]["enabled"] = False
    if shard_mpx:
        config["tiling"]["shard_mpx"] = shard_mpx
    if tile:
        config["tiling"]["tile"] = tile
    if formats:
        config["output"]["formats"] = formats
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(config))


def run_workflow(work: Path) -> float:
    cmd = [SNAKEMAKE, "-s", str(ROOT / "workflow" / "Snakefile"), "--directory", str(work), "--cores", "2",
           "--rerun-incomplete"]
    began = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr[-4000:]}")
    return time.perf_counter() - began


def rule_table(work: Path, mpx: float) -> pd.DataFrame:
    rows = []
    bench = work / "results" / "benchmarks"
    for rule_dir in sorted(p for p in bench.iterdir() if p.is_dir()):
        files = list(rule_dir.rglob("*.tsv"))
        frames = [pd.read_csv(f, sep="\t") for f in files]
        table = pd.concat(frames, ignore_index=True)
        rule = rule_dir.name
        written = sum(size_of(work / "results" / o.format(s="slide")) for o in OUTPUTS.get(rule, []))
        rows.append({"rule": rule, "jobs": len(files), "s": float(table["s"].sum()),
                     "s_per_mpx": float(table["s"].sum()) / mpx, "max_rss_mb": float(table["max_rss"].max()),
                     "bytes_per_mpx": written / mpx if rule in OUTPUTS else np.nan})
    return pd.DataFrame(rows)


LIMIT_MB = 4096  # the goal: no job above 4 GB peak
GROWTH_OK = 1.25  # peak at the largest size / peak at the smallest: at most this counts as not growing


def memory_checks(sizes: dict) -> list[dict]:
    """One check per rule: its peak (max RSS of any job) at each size against :data:`LIMIT_MB`, and its growth,
    the peak at the largest size over the peak at the smallest (against the growth in pixels)."""
    peaks: dict[str, dict[float, float]] = {}
    for f in sizes.values():
        for r in f["rules"]:
            peaks.setdefault(r["rule"], {})[f["mpx"]] = r["max_rss_mb"]
    checks = []
    for rule, by_size in peaks.items():
        small, large = min(by_size), max(by_size)
        growth = by_size[large] / max(by_size[small], 1e-9)
        under = max(by_size.values()) <= LIMIT_MB
        text = (f"{rule:24s} peak " + ", ".join(f"{by_size[m]:.0f} MB at {m:.1f} Mpx" for m in sorted(by_size))
                + f": <= {LIMIT_MB} MB {'ok' if under else 'FAIL'}")
        if large > small:
            bounded = growth <= GROWTH_OK
            text += (f"; growth {growth:.2f}x for {large / small:.1f}x the pixels "
                     f"{'ok' if bounded else 'GROWS'} (<= {GROWTH_OK})")
        else:
            bounded = None
        checks.append({"rule": rule, "peaks_mb": by_size, "under_limit": under, "growth": growth,
                       "bounded": bounded, "line": text})
    return checks


def matched_share(a: np.ndarray, b: np.ndarray, iou: float = 0.9) -> tuple[int, int, float]:
    """(cells in a, cells in b, share of a's cells with a partner in b at IoU >= iou), cells touching the region's
    edge left out."""
    from scipy.optimize import linear_sum_assignment
    from skimage.segmentation import clear_border

    from cellscale.segment.metrics import iou_matrix

    a, b = clear_border(a), clear_border(b)
    m = iou_matrix(a, b)
    rows, cols = linear_sum_assignment(-m)
    n_a, n_b = m.shape
    return n_a, n_b, float((m[rows, cols] >= iou).sum() / max(n_a, 1))


def label_region(path: Path, cy: int, cx: int, half: int) -> np.ndarray:
    """A (2 half)^2 window of a label OME-TIFF, read lazily (tifffile's zarr view): the labels of a 1 Gpx slide
    are 4 GB."""
    import tifffile
    import zarr

    z = zarr.open(tifffile.imread(path, aszarr=True), mode="r")
    z = z["0"] if hasattr(z, "keys") else z
    return np.squeeze(np.asarray(z[..., cy - half:cy + half, cx - half:cx + half]))


def region_centres(shape, half: int) -> list[tuple[int, int]]:
    """The centre, and the centres of the four quadrants when the image has room for them."""
    h, w = shape[-2:]
    centres = [(h // 2, w // 2)]
    if min(h, w) >= 8 * half:
        centres += [(h // 4, w // 4), (h // 4, 3 * w // 4), (3 * h // 4, w // 4), (3 * h // 4, 3 * w // 4)]
    return centres


def compare(work_a: Path, work_b: Path, region: int = 2048) -> dict:
    """Cell counts of two runs (their summary.tsv) and the share of the cells of ``region``-px windows (the centre,
    and the quadrants' centres on a large slide) matched at IoU >= 0.9."""
    import tifffile

    counts = [pd.read_csv(w / "results" / "summary.tsv", sep="\t").iloc[0] for w in (work_a, work_b)]
    out = {}
    for comp in ("nuclear", "whole_cell"):
        paths = [w / "results" / "segmentation" / "slide" / f"{comp}.ome.tif" for w in (work_a, work_b)]
        with tifffile.TiffFile(paths[0]) as tif:
            shape = tif.series[0].shape
        half = min(region, *shape[-2:]) // 2
        n_cells = matched = 0
        windows = region_centres(shape, half)
        for cy, cx in windows:
            n_a, _, share = matched_share(*(label_region(p, cy, cx, half) for p in paths))
            n_cells += n_a
            matched += share * n_a
        out[comp] = {"cells_a": int(counts[0][f"{comp}_cells"]), "cells_b": int(counts[1][f"{comp}_cells"]),
                     "regions": len(windows), "region_cells": n_cells, "matched_iou_0.9": matched / max(n_cells, 1)}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mpx", type=float, nargs="+", default=[26, 105, 1000])
    p.add_argument("--shard-mpx", type=float, default=None, help="tiling.shard_mpx (default: the config's)")
    p.add_argument("--compare-tile", type=int, default=None, help="rerun one size with this tiling.tile")
    p.add_argument("--compare-size", type=float, default=None,
                   help="the size (one of --mpx) rerun with --compare-tile (default: the smallest)")
    p.add_argument("--quick", action="store_true",
                   help="CI: one 1 Mpx slide, 0.5 Mpx shards (with --compare-tile, also the tile comparison)")
    p.add_argument("--keep", type=Path, default=None, help="keep the runs in this folder")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    if a.quick:
        a.mpx, a.shard_mpx = [1.0], 0.5
    tmp = a.keep or Path(tempfile.mkdtemp(prefix="cellscale-gigapixel-"))
    tmp.mkdir(parents=True, exist_ok=True)
    figures = {"sizes": {}}
    try:
        pool = BlockPool()
        for mpx in sorted(a.mpx):
            slide = tmp / f"slide_{mpx:g}.ome.tif"
            if not slide.exists():
                shape = write_slide(slide, mpx, pool)
            else:
                import tifffile
                shape = tifffile.TiffFile(slide).series[0].shape[1:]
            real_mpx = shape[0] * shape[1] / 1e6
            work = tmp / f"work_{mpx:g}"
            prepare(work, slide, a.shard_mpx, None)
            wall = run_workflow(work)
            table = rule_table(work, real_mpx)
            raw = size_of(slide)
            inter = table.loc[table["rule"].isin(INTERMEDIATE), "bytes_per_mpx"].sum() * real_mpx
            print(f"\nslide {shape[0]} x {shape[1]} ({real_mpx:.1f} Mpx, 2 channels uint16; "
                  f"{raw / 1e6:.0f} MB zlib OME-TIFF): workflow {wall:.0f} s, {real_mpx / wall:.3f} Mpx/s")
            print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
            print(f"intermediates (tiles + predictions): {inter / 1e6:.0f} MB = {inter / raw:.1f} x the raw slide "
                  f"file (goal <= 2); largest job peak {table['max_rss_mb'].max():.0f} MB (goal <= 4096)")
            figures["sizes"][f"{mpx:g}"] = {"mpx": real_mpx, "wall_s": wall, "raw_bytes": raw,
                                            "intermediate_bytes": inter, "rules": table.to_dict("records")}
        sizes = figures["sizes"]
        if len(sizes) > 1:
            print("\ntime per Mpx across sizes (linear in pixels: flat):")
            for key, f in sizes.items():
                print(f"  {f['mpx']:8.1f} Mpx: {f['wall_s'] / f['mpx']:.2f} s/Mpx")
        figures["memory"] = memory_checks(sizes)
        print("\npeak memory per rule (goal: every job <= 4096 MB; bounded: the peak does not grow with the pixels):")
        for line in figures["memory"]:
            print("  " + line["line"])
        if a.compare_tile:
            size = f"{a.compare_size if a.compare_size is not None else min(a.mpx):g}"
            other = tmp / f"work_{size}_tile{a.compare_tile}"
            # labels compared from the OME-TIFFs: the second run needs no other output
            prepare(other, tmp / f"slide_{size}.ome.tif", a.shard_mpx, a.compare_tile, ["ome-tiff"])
            run_workflow(other)
            result = compare(tmp / f"work_{size}", other)
            figures["tile_comparison"] = {"tile": a.compare_tile, "size": size, **result}
            print(f"\ntile {a.compare_tile} vs the config's, {size} Mpx slide:")
            for comp, r in result.items():
                print(f"  {comp}: cells {r['cells_a']} vs {r['cells_b']}; {r['regions']} region(s) of 2048 x 2048, "
                      f"{r['region_cells']} cells, {100 * r['matched_iou_0.9']:.2f}% matched at IoU >= 0.9 "
                      f"(goal >= 99%)")
        if a.json:
            a.json.write_text(json.dumps(figures, indent=2, default=float))
    finally:
        if a.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
