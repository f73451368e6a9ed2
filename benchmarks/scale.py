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


SECTIONS = {"single": section_single}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small subset (CI)")
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    parser.add_argument("--repeat", type=int, default=1, help="runs of each timing (the fastest counts)")
    parser.add_argument("--src", nargs="+", type=lambda p: Path(p).resolve(), default=[ROOT / "src"],
                        help="the package folders of the checkouts to time, in turn (default: this one's src/), "
                             "e.g. a worktree of the previous commit and src")
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
