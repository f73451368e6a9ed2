"""Segmentation benchmark: accuracy next to the anchors, and speed/memory through the workflow.

Usage:
    python benchmarks/segmentation.py --precision int8 float32   # everything (about 11 min on 2 cores)
    python benchmarks/segmentation.py --quick    # CI: a 1 Mpx image (nuclear), a subset of DSB, models/tissue
                                                 # int8 + rot180 on CODEX; < 1 min

Prints, in one run:
- nuclear: object F1 at IoU 0.5 and DSB mean AP on the held-out DSB2018 split (per image kind), ours (float32
  and the int8 copy, each as one pass and with test-time augmentation: + rot180, + flips) vs Otsu +
  distance-transform watershed;
- whole-cell: F1 against each CODEX expert on the held-out columns of R001_X003_Y004, ours (models/tissue and
  models/tissue-tight, trained on expert 1's and expert 2's outlines) vs the peers' masks;
- speed: Mpx/s and peak memory of tile -> segment -> stitch jobs (Snakemake benchmark files) at several sizes;
- object size (``--only size``): the held-out DSB2018 split resampled to other magnifications (0.4x: nuclei of
  4-20 px; 2.5x and 4x: 25-200 px), segmented at the image's own resolution (``scale`` 1), with ``scale: auto``
  (:mod:`cellscale.segment.size`), and at the right scale (the inverse of the magnification: what a user who
  knows the size would give), int8 + rot180, the workflow's defaults; and CTC SIM+ 01's frames at scale 1, auto,
  0.5 and 0.3 (not in --quick).
Needs ../shared/data for the accuracy parts (skipped with a note when absent). ``--json PATH`` also writes
the figures there (benchmarks/ holds the code only: run outputs go elsewhere, e.g. results/).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cellscale.segment.predictor import AUGMENTATIONS
from cellscale.segment.predictor import PRECISIONS as ALL_PRECISIONS
from cellscale.segment.size import KEEP_RANGES, PICKS, TARGETS
from cellscale.train.data import (
    CODEX_TEST_X0,  # columns >= this are never trained on (docs/benchmarks.md)
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CODEX = SHARED / "codex" / "R001_X003_Y004"
PRECISIONS = ["float32", "int8"]  # the network's arithmetic: accuracy is reported for each
VARIANTS = [(p, a) for a in AUGMENTATIONS for p in PRECISIONS]  # accuracy for each config segment.augment
CPU_DEFAULT = ("int8", "rot180")  # the workflow's CPU default (segment.precision auto, segment.augment rot180)

WINDOW = 512  # model window, as in config/config.yaml (the shipped int8 copies are built for it)
PEERS = ["DeepCell-0.9.0_membrane", "DeepCell-0.9.0_cytoplasm", "Cellpose-0.6.1", "Cellpose-0.0.3.1", "CellProfiler",
         "Voronoi"]


def _variant_name(precision: str, augment: str, model: str = "") -> str:
    return " ".join(filter(None, ["cellscale", model, precision])) + ("" if augment == "none" else f" + {augment}")


def nuclear_accuracy(model_dir: Path, quick: bool, splits: tuple[str, ...] = ("test",),
                     variants: list[tuple[str, str]] | None = None) -> pd.DataFrame:
    """F1 and mean AP per image kind on DSB2018 ``splits`` (test: held out; val: the split the post-processing
    was tuned and the int8 copies calibrated on), for ``variants`` (precision, augment) and Otsu."""
    from cellscale.io import read_image
    from cellscale.segment.baseline import otsu_watershed
    from cellscale.segment.image import segment_image
    from cellscale.segment.metrics import summarize
    from cellscale.segment.predictor import Predictor
    from cellscale.segment.preprocess import (
        normalize,
        percentile_range,
        select_channels,
    )
    from cellscale.train.data import split_of

    root = SHARED / "dsb2018"
    index = pd.read_csv(root / "index.csv")
    index = index.assign(split=[split_of(i) for i in index.id])
    index = index[index.split.isin(splits)]
    variants = variants or (quick_variants() if quick else VARIANTS)
    if quick:  # CI: a few images, to show the figures come out
        index = index.groupby(["split", "kind"]).head(2)
    predictors = {_variant_name(p, a): Predictor(model_dir, precision=p, augment=a) for p, a in variants}
    rows, pairs = [], {}
    for r in index.itertuples():
        raw = read_image(root / "images" / f"{r.id}.png")
        truth = read_image(root / "masks" / f"{r.id}.tif")[0, 0]
        kind = "fluorescence" if r.kind == "fluorescence" else "colour/brightfield"
        for name, predictor in predictors.items():
            ours = segment_image(predictor, raw, tile=WINDOW)["nuclear"][0]
            pairs.setdefault((r.split, kind, name), []).append((truth, ours))
        chans = select_channels(raw, {}, ["nuclear"])[0]
        base = otsu_watershed(normalize(chans, percentile_range(chans))[0])
        pairs.setdefault((r.split, kind, "Otsu + watershed"), []).append((truth, base))
    for (split, kind, method), p in sorted(pairs.items(), key=lambda item: item[0][:2]):
        s = summarize(p)
        rows.append({"split": split, "kind": kind, "method": method, "images": s["images"], "F1@0.5": s["f1"],
                     "mean AP": s["ap"]})
    return pd.DataFrame(rows)


MAGNIFICATIONS = (0.4, 1.0, 2.5, 4.0)
QUICK_EDGE = 512  # --quick: the object-size part crops each image to this


def object_size_accuracy(model_dir: Path, quick: bool, splits: tuple[str, ...] = ("test",),
                         magnifications: tuple[float, ...] = MAGNIFICATIONS,
                         keeps: tuple[str, ...] | None = None, picks: tuple[str, ...] | None = None,
                         targets: tuple[str, ...] | None = None) -> pd.DataFrame:
    """F1 and mean AP on DSB2018 ``splits`` resampled by each magnification, at scale 1, auto (with each range of
    sizes kept as they are, ``keeps``: cellscale.segment.size.KEEP_RANGES, and each way of picking a diameter from
    the passes, ``picks``: cellscale.segment.size.PICKS, and each size an image outside the range is brought to,
    ``targets``: cellscale.segment.size.TARGETS) and the right scale; with the scales auto chose (median
    and range over the images)."""
    from skimage.transform import rescale

    from cellscale.io import ImageSource, read_image
    from cellscale.segment.image import estimate_scale, segment_image
    from cellscale.segment.metrics import summarize
    from cellscale.segment.predictor import Predictor
    from cellscale.segment.size import KEEP, PICK, TARGET, choose_scale, pick_diameter
    from cellscale.train.data import split_of

    keeps, picks, targets = keeps or (KEEP,), picks or (PICK,), targets or (TARGET,)
    root = SHARED / "dsb2018"
    index = pd.read_csv(root / "index.csv")
    index = index[[split_of(i) in splits for i in index.id]]
    if quick:   # CI: one image of each kind, at most 512 x 512 of it (the 1024-px one would be 6.5 Mpx at 2.5x),
        index = index.groupby("kind").head(1)   # one magnification each side
        magnifications = (0.4, 2.5)
    predictor = Predictor(model_dir, precision="auto", augment="rot180")
    rows = []
    for m in magnifications:
        pairs: dict[str, list] = {}
        chosen: dict[str, list] = {}
        for r in index.itertuples():
            raw = read_image(root / "images" / f"{r.id}.png")
            truth = read_image(root / "masks" / f"{r.id}.tif")[0, 0]
            if quick:
                raw, truth = raw[..., :QUICK_EDGE, :QUICK_EDGE], truth[:QUICK_EDGE, :QUICK_EDGE]
            if m != 1.0:  # the image resampled as a microscope at another magnification would see it
                raw = np.stack([[rescale(raw[0, c].astype(np.float32), m, order=1, preserve_range=True,
                                         anti_aliasing=m < 1) for c in range(raw.shape[1])]])
                truth = rescale(truth, m, order=0, preserve_range=True, anti_aliasing=False).astype(np.int32)
            estimate = estimate_scale(predictor, ImageSource.from_array(raw), {})
            autos = {f"scale auto ({p}, keep {k}, to {t})": choose_scale(
                pick_diameter(estimate.passes, estimate.sizes, p)[0], estimate.sizes, k, t)
                for p in picks for k in keeps for t in targets}
            scales = {"scale 1": 1.0, **autos, "right scale (1/magnification)": 1 / m}
            done: dict[float, np.ndarray] = {}
            for name, scale in scales.items():
                if scale not in done:
                    done[scale] = segment_image(predictor, raw, tile=WINDOW, scale=scale)["nuclear"][0]
                pairs.setdefault(name, []).append((truth, done[scale]))
                chosen.setdefault(name, []).append(scale)
        for name, p in pairs.items():
            s = summarize(p)
            c = chosen[name]
            rows.append({"magnification": m, "method": name, "images": s["images"], "F1@0.5": s["f1"],
                         "mean AP": s["ap"], "scale: median [min, max]": f"{np.median(c):.2f} [{min(c):.2f}, "
                                                                          f"{max(c):.2f}]"})
    return pd.DataFrame(rows)


def ctc_object_size(model_dir: Path, frames=range(0, 65, 6)) -> pd.DataFrame:
    """A check no choice looked at: CTC Fluo-N2DH-SIM+ 01 (simulated nuclei of about 44 px; full SEG truth),
    ``frames`` segmented as one movie at scale 1, auto and two fixed scales; F1 and mean AP against the truth."""
    import tifffile

    from cellscale.io import ImageSource
    from cellscale.segment.image import estimate_scale, segment_image
    from cellscale.segment.metrics import summarize
    from cellscale.segment.predictor import Predictor

    seq = SHARED / "ctc" / "Fluo-N2DH-SIM+"
    image = np.stack([tifffile.imread(seq / "01" / f"t{t:03d}.tif") for t in frames]).astype(np.float32)[:, None]
    truth = [tifffile.imread(seq / "01_GT" / "SEG" / f"man_seg{t:03d}.tif") for t in frames]
    predictor = Predictor(model_dir, precision="auto", augment="rot180")
    estimate = estimate_scale(predictor, ImageSource.from_array(image), {"nuclear": 0})
    rows = []
    for name, scale in (("scale 1", 1.0), ("scale auto", estimate.scale), ("scale 0.5", 0.5), ("scale 0.3", 0.3)):
        labels = segment_image(predictor, image, {"nuclear": 0}, tile=WINDOW, scale=scale)["nuclear"]
        s = summarize(list(zip(truth, labels)))
        rows.append({"sequence": f"SIM+ 01, frames {frames[0]}-{frames[-1]} every {frames.step}",
                     "method": name, "scale": round(scale, 3), "frames": s["images"], "F1@0.5": s["f1"],
                     "mean AP": s["ap"], "auto measured (px)": round(estimate.diameter_px, 1)})
    return pd.DataFrame(rows)


def quick_variants() -> list[tuple[str, str]]:
    """What --quick scores: the workflow's CPU default (int8 + rot180) and plain float32."""
    return [v for v in VARIANTS if v in (CPU_DEFAULT, ("float32", "none"))]


def whole_cell_accuracy(model_dirs: list[Path], quick: bool = False,
                        variants: list[tuple[str, str]] | None = None) -> pd.DataFrame:
    import tifffile

    from cellscale.segment.image import segment_image
    from cellscale.segment.metrics import summarize
    from cellscale.segment.predictor import Predictor

    image = tifffile.imread(CODEX / "image.ome.tif")
    experts = [tifffile.imread(CODEX / f"mask_expert{i}_wholecell.tif") for i in (1, 2)]
    methods = {}
    for model_dir in model_dirs:
        # --quick: the workflow's CPU default only (both precisions are scored on DSB)
        for precision, augment in variants or ([CPU_DEFAULT] if quick else VARIANTS):
            predictor = Predictor(model_dir, precision=precision, augment=augment)
            labels = segment_image(predictor, image[np.newaxis], {"nuclear": 0, "membrane": 2}, tile=WINDOW)
            methods[_variant_name(precision, augment, model_dir.name)] = labels["whole_cell"][0]
    methods.update({p: tifffile.imread(CODEX / "peers" / f"{p}.tif") for p in PEERS})
    methods["expert 2 (vs expert 1)"] = experts[1]
    crop = np.s_[:, CODEX_TEST_X0:]
    rows = []
    for name, labels in methods.items():
        row = {"method": name}
        for i, expert in enumerate(experts, 1):
            same = labels is expert  # an expert against themself says nothing
            row[f"F1 vs expert {i}"] = float("nan") if same else summarize([(expert[crop], labels[crop])])["f1"]
        rows.append(row)
    return pd.DataFrame(rows)


def make_large_image(path: Path, megapixels: float, seed: int = 0) -> tuple[int, int]:
    """A 2-channel (DNA, membrane) OME-TIFF of about ``megapixels``, tiled from generated tissue."""
    import tifffile

    from cellscale.synth.tissue import make_tissue

    tissue = make_tissue((1024, 1024), n_cells=600, seed=seed, cell_radius=16)
    edge = int(round(np.sqrt(megapixels * 1e6) / 256) * 256)
    reps = int(np.ceil(edge / 1024))
    block = tissue.image[:2]
    rows = [np.concatenate([np.flip(block, axis=2) if (i + j) % 2 else block for j in range(reps)], axis=2)
            for i in range(reps)]
    image = np.concatenate(rows, axis=1)[:, :edge, :edge]
    tifffile.imwrite(path, image, ome=True, tile=(512, 512), compression="zlib", photometric="minisblack",
                     metadata={"axes": "CYX", "Channel": {"Name": ["DNA", "Membrane"]}})
    return edge, edge


def speed(sizes: list[float], model: str, tile: int, workdir: Path, precision: str = "auto",
          augment: str = "none") -> pd.DataFrame:
    """Run tile -> segment -> stitch through Snakemake per size; read its benchmark files."""
    import yaml

    rows = []
    for mpx in sizes:
        work = workdir / f"{model}_{precision}_{augment}_{mpx:g}"
        (work / "config").mkdir(parents=True, exist_ok=True)
        h, w = make_large_image(work / "image.ome.tif", mpx)
        membrane = 1 if model == "tissue" else ""
        (work / "config" / "samples.tsv").write_text(
            "sample\timage\tkind\tnuclear_channel\tmembrane_channel\n"
            f"big\t{work / 'image.ome.tif'}\ttissue\t0\t{membrane}\n")
        config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
        config.update(samples=str(work / "config" / "samples.tsv"),
                      models={"nuclear": str(ROOT / "models" / "nuclear"), "tissue": str(ROOT / "models" / "tissue")})
        config["tiling"].update(tile=tile, overlap=32, shard_mpx=16)
        config["segment"].update(precision=precision, augment=augment)
        (work / "config" / "config.yaml").write_text(yaml.safe_dump(config))
        targets = ["results/segmentation/big/nuclear.ome.tif"]
        if model == "tissue":
            targets.append("results/segmentation/big/whole_cell.ome.tif")
        start = time.time()
        subprocess.run([str(Path(sys.executable).parent / "snakemake"), "-s", str(ROOT / "workflow" / "Snakefile"),
                        *targets, "--directory", str(work), "--cores", "2", "--quiet", "rules"], check=True)
        wall = time.time() - start
        bench = pd.concat([pd.read_csv(p, sep="\t").assign(rule=p.relative_to(work / "results/benchmarks").parts[0])
                           for p in (work / "results/benchmarks").rglob("*.tsv")])
        per_rule = bench.groupby("rule").agg(seconds=("s", "sum"), jobs=("s", "size"), peak_mb=("max_rss", "max"))
        jobs_s = float(per_rule.seconds.sum())
        rows.append({"model": model, "precision": precision, "augment": augment, "Mpx": round(h * w / 1e6, 1),
                     "jobs": int(per_rule.jobs.sum()),
                     "tile s": per_rule.seconds.get("tile", 0.0), "segment s": per_rule.seconds.get("segment", 0.0),
                     "stitch s": per_rule.seconds.get("stitch", 0.0), "Mpx/s (jobs)": h * w / 1e6 / jobs_s,
                     "Mpx/s (wall)": h * w / 1e6 / wall,
                     **{f"{r} peak MB": float(per_rule.peak_mb.get(r, 0.0)) for r in ("tile", "segment", "stitch")}})
    return pd.DataFrame(rows)


def _variant(text: str) -> tuple[str, str]:
    """'int8+rot180' -> ('int8', 'rot180'); 'float32' -> ('float32', 'none')."""
    precision, _, augment = text.partition("+")
    if precision not in ALL_PRECISIONS or (augment or "none") not in AUGMENTATIONS:
        raise argparse.ArgumentTypeError(f"{text!r}: PRECISION[+AUGMENT], precision one of "
                                         f"{', '.join(ALL_PRECISIONS)}, augment one of {', '.join(AUGMENTATIONS)}")
    return precision, augment or "none"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes and a DSB subset (CI)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["nuclear", "whole-cell", "speed", "size"])
    parser.add_argument("--only", choices=["nuclear", "whole-cell", "speed", "size"], default=None,
                        help="run this part alone")
    parser.add_argument("--tile", type=int, default=512, help="model window for the speed runs")
    parser.add_argument("--precision", nargs="+", default=["int8"], choices=ALL_PRECISIONS,
                        help="network arithmetic for the speed runs (config segment.precision)")
    parser.add_argument("--augment", nargs="+", default=["none"], choices=list(AUGMENTATIONS),
                        help="test-time augmentation for the speed runs (config segment.augment)")
    parser.add_argument("--splits", nargs="+", default=["test"], choices=["test", "val"],
                        help="DSB2018 splits the nuclear accuracy scores (default: test, the held-out split)")
    parser.add_argument("--variants", nargs="+", type=_variant, default=None, metavar="PRECISION[+AUGMENT]",
                        help="what the accuracy parts score, e.g. int8+rot180 (default: every precision and "
                             "augmentation; --quick: int8+rot180 and float32)")
    parser.add_argument("--keep", nargs="+", default=None, choices=list(KEEP_RANGES),
                        help="object size: the ranges of sizes scale auto leaves as they are, each scored (default: "
                             "the shipped choice, cellscale.segment.size.KEEP)")
    parser.add_argument("--pick", nargs="+", default=None, choices=list(PICKS),
                        help="object size: the ways of picking a diameter from scale auto's passes, each scored "
                             "(default: the shipped choice, cellscale.segment.size.PICK)")
    parser.add_argument("--target", nargs="+", default=None, choices=list(TARGETS),
                        help="object size: the sizes scale auto brings an image to, each scored (default: the "
                             "shipped choice, cellscale.segment.size.TARGET)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args()
    pd.set_option("display.width", 160, "display.float_format", "{:.3f}".format)
    results = {}
    if args.only:
        args.skip = [p for p in ("nuclear", "whole-cell", "speed", "size") if p != args.only]
    if "nuclear" not in args.skip:
        if (SHARED / "dsb2018").exists():
            table = nuclear_accuracy(ROOT / "models" / "nuclear", args.quick, tuple(args.splits), args.variants)
            print(f"\n## Nuclear segmentation, DSB2018 split(s) {', '.join(args.splits)} (test: held out)\n"
                  + table.to_string(index=False))
            results["nuclear"] = table.to_dict("records")
        else:
            print("(no ../shared/data/dsb2018: nuclear accuracy skipped)")
    if "whole-cell" not in args.skip:
        if CODEX.exists():
            models = ("tissue",) if args.quick else ("tissue", "tissue-tight")   # --quick: one model
            table = whole_cell_accuracy([ROOT / "models" / m for m in models], args.quick, args.variants)
            print(f"\n## Whole-cell segmentation, CODEX R001_X003_Y004 columns >= {CODEX_TEST_X0} (held out)\n"
                  + table.to_string(index=False))
            results["whole_cell"] = table.to_dict("records")
        else:
            print("(no ../shared/data/codex: whole-cell accuracy skipped)")
    if "size" not in args.skip:
        if (SHARED / "dsb2018").exists():
            table = object_size_accuracy(ROOT / "models" / "nuclear", args.quick, tuple(args.splits),
                                         keeps=tuple(args.keep) if args.keep else None,
                                         picks=tuple(args.pick) if args.pick else None,
                                         targets=tuple(args.target) if args.target else None)
            print(f"\n## Object size: DSB2018 split(s) {', '.join(args.splits)} at other magnifications, "
                  "int8 + rot180\n" + table.to_string(index=False))
            results["object_size"] = table.to_dict("records")
        else:
            print("(no ../shared/data/dsb2018: object size skipped)")
        if (SHARED / "ctc" / "Fluo-N2DH-SIM+").exists() and not args.quick:
            table = ctc_object_size(ROOT / "models" / "nuclear")
            print("\n## Object size: CTC SIM+ 01 (no choice looked at it), int8 + rot180\n"
                  + table.to_string(index=False))
            results["object_size_ctc"] = table.to_dict("records")
    if "speed" not in args.skip:
        sizes = [1.0] if args.quick else [4.2, 26.2, 104.9]
        with tempfile.TemporaryDirectory(prefix="cellscale-bench-") as tmp:
            runs = [(p, a) for a in args.augment for p in args.precision]
            models = ("nuclear",) if args.quick else ("nuclear", "tissue")   # --quick: one Snakemake run
            table = pd.concat([speed(sizes, m, args.tile, Path(tmp), p, a) for m in models for p, a in runs])
        print("\n## Speed and memory, tile -> segment -> stitch on 2 CPU cores\n" + table.to_string(index=False))
        results["speed"] = table.to_dict("records")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
