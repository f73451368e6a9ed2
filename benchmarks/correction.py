"""Benchmark of the correction loop (issue 21): does correcting the K tiles a generalist is least sure of, and
fine-tuning on them, close its gap on a kind of image it never saw?

    python benchmarks/correction.py --train-generalist          # full: trains the generalist, then the sweep
    python benchmarks/correction.py --generalist models/generalist --figure docs/figures/correction.png
    python benchmarks/correction.py --quick                     # CI: tiny everything, ~1-2 min on 2 cores

The person is simulated with expert 1's masks of the shared CODEX tile (``../shared/data/codex/R001_X003_Y004``),
as Cellpose 2.0 measured its loop. Every step is the command a user runs (a subprocess each), in a store of its own
(``$CELLSCALE_VERSIONS`` = ``OUT/data/versions``, ``$CELLSCALE_REGISTRY`` = ``OUT/data/versions/models.json``), so
the checkout's committed versions and registry are not touched:

1. ``cellscale data generate synthetic-tissue --images N --seed 1 --tissue-style S``: the generated tissue, a
   dataset version (and a smaller one, ``--mix-images``, that the corrections are added to).
2. The generalist: the same network as ``models/tissue`` trained on generated tissue only, never on the CODEX tile
   (``--train-generalist``: ``cellscale train --data synthetic-tissue@ID --steps ...``; or ``--generalist PATH``).
3. ``cellscale segment`` the tile with it (the "current labels"), then per sweep point ``cellscale review
   project/results --sample codex --compartment whole_cell --region 0:H,0:960 -n K -o BUNDLE`` (least-sure) or
   the same with ``--random --seed S``: K tiles of 128 x 128 px from the tile's training columns (< 960).
4. The "correction": expert 1's labels of each exported tile saved as ``BUNDLE/corrected/tile_NNN.tif`` (what
   napari's File > Save Selected Layers writes, docs/correct.md), then ``cellscale review import BUNDLE --dataset
   codex-corrections-POINT --parent synthetic-tissue@MIX``: a new version, the generated set plus the tiles.
5. ``cellscale train --data codex-corrections-POINT@ID --init-from GENERALIST --tile 128 --steps 1200``: the
   fine-tune on 128-px crops, the review's tile size (a 256-px crop of a 128-px tile is three quarters padding),
   registered with ``cellscale models add``.
6. The held-out columns (>= 1008) scored against both experts, exactly as the model cards score them
   (:func:`cellscale.train.data.load_codex` + :func:`cellscale.train.evaluate.predict_maps`, float32, the model's
   own whole-cell post-processing; a model without tuned post-processing, e.g. ``--fit-only``, uses the
   generalist's).

Sweep: K = 0, 2, 4, 8, 16; least-sure next to random; 3 seeds at K = 4 and 16 (least-sure: the fine-tune's seed;
random: the choice's and the fine-tune's), one elsewhere. K = 0 is the generalist itself. Each finished point is
``OUT/points/<point>.json`` and is skipped on a rerun (resumable; a killed fine-tune resumes from its run folder).

Report: F1 on the held-out columns against K and against the corrected cells (cells of expert 1 in the chosen
tiles that the generalist's labels do not match at IoU 0.5, plus the generalist's cells there that match none:
every cell a person edits), the hours a person would spend at 30 s per corrected cell, ``models/tissue``'s figure
(its card, float32 row) and the peers as reference lines, and whether each goal of the issue is met.

Time, on this project's 2-core CPU machine (training runs at about 0.8 s a step of batch 8 on 256-px crops: models/
tissue's 1,500-step fine-tune took 20 min; a 128-px step costs about a quarter): the generalist's 3,000 steps
about 40 min; per sweep point a 1,200-step fine-tune on 128-px crops about 5 min, plus a few minutes for what
``cellscale train`` does after fitting (tune post-processing, score, int8 copy, card, comparison with the parent)
and under a minute each for the review (two network passes over the tile) and the held-out score. With
``--fit-only`` (which skips the after-fitting part) a point took 6.5 min, 16 points about 1.8 h. The end of a run
prints its own timings per point. Measured here with the full-size network while the test suite loaded the machine
(so slower than alone): 20 steps 60 s, the after-fitting part 1.5 min for an untrained model (longer for one that
finds cells), review 14 s, import 2 s; the quick mode (least-sure only since 2026-12-06) about 55 s alone.
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

ROOT = Path(__file__).resolve().parents[1]
SHARED_CODEX = ROOT.parent / "shared" / "data" / "codex"
TILE_NAME = "R001_X003_Y004"
TRAIN_X1, TEST_X0 = 960, 1008  # cellscale.train.data.CODEX_TRAIN_X1 / CODEX_TEST_X0
SECONDS_PER_CELL = 30.0
SAMPLE = "codex"
REFERENCE_ROW = "cellscale"  # models/tissue's float32 row, scored as this benchmark scores
PEERS = ("Cellpose-0.6.1", "DeepCell-0.9.0_cytoplasm")


def log(msg: str) -> None:
    print(f"[correction {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- running the user's commands ---------------------------------------------------------------------------------

def cellscale(args: list[str], env: dict, logfile: Path) -> str:
    """Run ``cellscale ARGS`` (this interpreter's package) and return its stdout; its output goes to ``logfile``."""
    script = Path(sys.executable).parent / "cellscale"  # the entry point a user runs (the card records it)
    cmd = [str(script) if script.is_file() else sys.executable, *([] if script.is_file() else ["-m", "cellscale.cli"]),
           *map(str, args)]
    start = time.time()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "a") as fh:
        fh.write(f"$ cellscale {' '.join(map(str, args))}\n{result.stdout}{result.stderr}\n"
                 f"# rc {result.returncode}, {time.time() - start:.1f} s\n")
    if result.returncode != 0:
        raise RuntimeError(f"cellscale {' '.join(map(str, args))} failed (rc {result.returncode}):\n"
                           f"{result.stdout[-2000:]}{result.stderr[-4000:]}")
    return result.stdout


def ref_in(output: str, pattern: str) -> str:
    found = re.search(pattern, output)
    if not found:
        raise RuntimeError(f"no dataset version in the command's output: {output[-500:]}")
    return found.group(1)


# --- setup ------------------------------------------------------------------------------------------------------

def crop_tile(src: Path, dest: Path, rows: int) -> Path:
    """The tile's first ``rows`` rows (all columns: training and held-out ones), image and both experts' masks."""
    import tifffile

    from cellscale.io import write_image

    if (dest / "mask_expert2_wholecell.tif").is_file():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    image = tifffile.imread(src / "image.ome.tif")
    write_image(dest / "image.ome.tif", np.ascontiguousarray(image[:, :rows]), axes="CYX")
    for i in (1, 2):
        mask = tifffile.imread(src / f"mask_expert{i}_wholecell.tif")[:rows]
        tifffile.imwrite(dest / f"mask_expert{i}_wholecell.tif", mask, compression="zlib")
    return dest


def write_project(out: Path, tile: Path) -> Path:
    """A project folder whose sample sheet names the tile's channels (nuclear 0, membrane 2), as a workflow run's
    would: ``cellscale review`` reads the channels from it."""
    project = out / "project"
    (project / "config").mkdir(parents=True, exist_ok=True)
    (project / "results" / "segmentation" / SAMPLE).mkdir(parents=True, exist_ok=True)
    (project / "config" / "config.yaml").write_text("samples: config/samples.tsv\n")
    (project / "config" / "samples.tsv").write_text(
        "sample\timage\tnuclear_channel\tmembrane_channel\n"
        f"{SAMPLE}\t{(tile / 'image.ome.tif').resolve()}\t0\t2\n")
    return project


def generate(name_images: int, seed: int, style: str, env: dict, logs: Path) -> str:
    """``cellscale data generate``: the generated set's version (an existing identical one is reused)."""
    done = logs.parent / f"generated-{style}-{name_images}-s{seed}.txt"
    if done.is_file():
        return done.read_text().strip()
    out = cellscale(["data", "generate", "synthetic-tissue", "--images", name_images, "--seed", seed,
                     "--tissue-style", style], env, logs / "data.log")
    ref = ref_in(out, r"(synthetic-tissue@\w+)")
    done.write_text(ref + "\n")
    return ref


def network_args(a, crop: int) -> list[str]:
    return ["--batch", a.batch, "--tile", crop, "--base-filters", a.base_filters, "--depth", a.depth]


def train_generalist(a, gen_ref: str, env: dict, out: Path) -> Path:
    model = out / "generalist"
    if (model / "model.keras").is_file() and (a.fit_only or (model / "metrics.json").is_file()):
        return model
    log(f"training the generalist on {gen_ref} only ({a.generalist_steps} steps)")
    cellscale(["train", "--data", gen_ref, "--out", model, "--run-dir", out / "runs" / "generalist",
               "--steps", a.generalist_steps, "--lr", a.generalist_lr, "--seed", 0, *network_args(a, a.generalist_crop),
               "--note", "generalist of benchmarks/correction.py: generated tissue only, never the CODEX tile",
               *(["--fit-only"] if a.fit_only else [])], env, out / "logs" / "train-generalist.log")
    cellscale(["models", "add", model], env, out / "logs" / "models.log")
    return model


# --- scoring ----------------------------------------------------------------------------------------------------

class Scorer:
    """F1 at IoU 0.5 of a model's whole cells on the tile's held-out columns against each expert, as the model
    cards score them (float32, no augmentation)."""

    def __init__(self, tile: Path, fallback: dict | None):
        from cellscale.train.data import codex_experts, load_codex

        self.image = load_codex(tile, "test")[0].image
        self.experts = codex_experts(tile, "test")
        self.fallback = fallback

    def __call__(self, model: Path) -> list[float]:
        from cellscale.segment.metrics import summarize
        from cellscale.segment.model import ModelSpec
        from cellscale.segment.postprocess import PostprocessParams
        from cellscale.segment.predictor import Predictor
        from cellscale.train.evaluate import compartment_labels, predict_maps

        spec = ModelSpec.read(model)
        params = PostprocessParams.from_dict(spec.postprocess.get("whole_cell") or self.fallback)
        maps = predict_maps(Predictor(model, precision="float32", augment="none"), self.image)
        labels = compartment_labels(maps, params, spec.compartments.index("whole_cell"))
        return [float(summarize([(e, labels)])["f1"]) for e in self.experts]


def edited_cells(truth: np.ndarray, current: np.ndarray) -> int:
    """Cells a person edits to turn ``current`` into ``truth``: truth's cells no current cell matches at IoU 0.5
    (drawn or redrawn) plus current cells matching none (erased)."""
    from cellscale.segment.metrics import iou_matrix, matched

    iou = iou_matrix(truth, current)
    pairs = len(matched(iou, 0.5)[0])
    return (iou.shape[0] - pairs) + (iou.shape[1] - pairs)


# --- does the review's score find the errors? --------------------------------------------------------------------

def selection_diagnostic(ctx: dict, tile_size: int, ks: list[int]) -> dict:
    """Every candidate tile of the review (the training columns) with its signals and score, next to what a person
    would edit there (:func:`edited_cells` of expert 1 against the generalist's labels) and expert 1's cells: the
    Spearman correlation of each signal with the edits and with the edits per expert-1 cell, and the edits
    the top K tiles by score hold against a random K's expectation. Expert 1's labels of every candidate are read
    here only to judge the score, never to choose."""
    from scipy.stats import spearmanr

    from cellscale.review import ReviewOptions, locate, score_sample
    from cellscale.segment.predictor import Predictor

    inputs = locate(ctx["project"] / "results", SAMPLE, "whole_cell", image=ctx["tile"] / "image.ome.tif",
                    labels=ctx["labels"], model=ctx["generalist"])
    options = ReviewOptions(tile=tile_size, compartment="whole_cell", region=(0, ctx["height"], 0, TRAIN_X1))
    tiles, _ = score_sample(Predictor(ctx["generalist"], augment="none", precision="float32"), inputs, options)
    edits, cells = [], []
    for t in tiles:
        y0, y1, x0, x1 = t.box
        truth = ctx["expert1"][y0:y1, x0:x1]
        edits.append(edited_cells(truth, ctx["current"][y0:y1, x0:x1]))
        cells.append(int(np.count_nonzero(np.unique(truth))))
    edits, cells = np.array(edits, float), np.array(cells, float)
    share = edits / np.maximum(cells, 1)  # edits per cell of expert 1: how wrong the model is there

    def rho(a, b) -> float | None:
        return None if np.std(a) == 0 or np.std(b) == 0 else float(spearmanr(a, b)[0])

    values = {name: np.array([t.signals[name] for t in tiles]) for name in tiles[0].signals}
    values["score"] = np.array([t.score for t in tiles])
    values["expert 1 cells"] = cells
    correlations = {name: {"edits": rho(v, edits), "edits_per_cell": rho(v, share)} for name, v in values.items()}
    order = np.argsort(-values["score"], kind="stable")
    top = {k: {"edits": float(edits[order[:k]].sum()), "random_expected": float(edits.mean() * k)}
           for k in ks if 0 < k <= len(tiles)}
    print(f"\nthe review's score against what a person edits ({len(tiles)} candidate tiles, expert 1):")
    for name, c in correlations.items():
        fmt = [("n/a" if c[key] is None else f"{c[key]:+.2f}") for key in ("edits", "edits_per_cell")]
        print(f"  {name:<16} Spearman rho vs edits {fmt[0]:>6}, vs edits per cell {fmt[1]:>6}")
    print("  edits in the K highest-scoring tiles vs a random K's expectation: "
          + ", ".join(f"K={k}: {v['edits']:.0f} vs {v['random_expected']:.0f}" for k, v in top.items()))
    return {"candidates": len(tiles), "correlations": correlations, "top_k_edits": top,
            "edits_per_cell": float(edits.sum() / max(1.0, cells.sum()))}


# --- one point of the sweep -------------------------------------------------------------------------------------

def point_key(k: int, method: str, seed: int) -> str:
    return "k0" if k == 0 else f"k{k}-{method}-s{seed}"


def run_point(a, k: int, method: str, seed: int, ctx: dict) -> dict:
    """Review, correct, import, fine-tune and score one point; its record (also written as JSON)."""
    import tifffile

    out, env = ctx["out"], ctx["env"]
    key = point_key(k, method, seed)
    folder = out / "points" / key
    logs = out / "logs" / f"{key}.log"
    timings = {}
    bundle, version_file = folder / "bundle", folder / "dataset.txt"
    if not version_file.is_file():
        t = time.time()
        # a point cut off after writing its corrections: review refuses to replace them, so start afresh
        shutil.rmtree(bundle, ignore_errors=True)
        review = ["review", ctx["project"] / "results", "--sample", SAMPLE, "--compartment", "whole_cell",
                  "-n", k, "-o", bundle, "--tile-size", a.tile_size, "--region", f"0:{ctx['height']},0:{TRAIN_X1}",
                  "--image", ctx["tile"] / "image.ome.tif", "--labels", ctx["labels"], "--model", ctx["generalist"],
                  "--precision", "float32"]
        if method == "random":
            review += ["--random", "--seed", seed]
        cellscale(review, env, logs)
        timings["review_s"] = time.time() - t
        # the simulated person: expert 1's labels of each tile, saved where napari's "Save Selected Layers" puts them
        manifest = json.loads((bundle / "bundle.json").read_text())
        cells = edited = 0
        for tile in manifest["tiles"]:
            y0, y1, x0, x1 = tile["box"]
            truth = ctx["expert1"][y0:y1, x0:x1]
            tifffile.imwrite(bundle / "corrected" / f"{tile['name']}.tif", truth.astype(np.int32))
            cells += int(np.count_nonzero(np.unique(truth)))
            edited += edited_cells(truth, ctx["current"][y0:y1, x0:x1])
        t = time.time()
        output = cellscale(["review", "import", bundle, "--dataset", f"codex-corrections-{key}",
                            "--annotator", "expert 1 (simulated by benchmarks/correction.py)",
                            "--parent", ctx["mix_ref"]], env, logs)
        timings["import_s"] = time.time() - t
        dataset = ref_in(output, r"dataset version (\S+)")
        (folder / "selection.json").write_text(json.dumps(
            {"dataset": dataset, "cells": cells, "corrected_cells": edited,
             "tiles": [t["box"] for t in manifest["tiles"]], "timings": timings}, indent=1))
        version_file.write_text(dataset + "\n")
    selection = json.loads((folder / "selection.json").read_text())
    timings = dict(selection["timings"])
    model = folder / f"generalist-{key}"  # the registry names a model by its folder
    t = time.time()
    log(f"{key}: fine-tuning {ctx['generalist'].name} on {selection['dataset']} ({a.finetune_steps} steps)")
    cellscale(["train", "--data", selection["dataset"], "--init-from", ctx["generalist"], "--out", model,
               "--run-dir", folder / "run", "--steps", a.finetune_steps, "--lr", a.finetune_lr, "--seed", seed,
               *network_args(a, a.crop), "--note", f"benchmarks/correction.py point {key}",
               *(["--fit-only"] if a.fit_only else [])], env, logs)
    timings["train_s"] = time.time() - t
    cellscale(["models", "add", model], env, logs)
    t = time.time()
    f1 = ctx["score"](model)
    timings["score_s"] = time.time() - t
    return {"key": key, "k": k, "method": method, "seed": seed, "f1": f1, "dataset": selection["dataset"],
            "cells": selection["cells"], "corrected_cells": selection["corrected_cells"],
            "tiles": selection["tiles"], "timings": timings}


def sweep_points(ks: list[int], seeds3: set[int], n_seeds: int,
                 methods: tuple[str, ...] = ("least-sure", "random")) -> list[tuple[int, str, int]]:
    points = []
    for k in ks:
        if k == 0:
            points.append((0, "none", 0))
            continue
        for method in methods:
            for seed in range(n_seeds if k in seeds3 else 1):
                points.append((k, method, seed))
    return points


# --- report -----------------------------------------------------------------------------------------------------

def summarise(records: list[dict]) -> list[dict]:
    """Per (K, method): mean F1 against each expert, the seeds' spread, cells and hours."""
    rows = []
    for k, method in sorted({(r["k"], r["method"]) for r in records}, key=lambda x: (x[0], x[1] != "least-sure")):
        sel = [r for r in records if r["k"] == k and r["method"] == method]
        f1 = np.array([r["f1"] for r in sel])
        corrected = float(np.mean([r["corrected_cells"] for r in sel]))
        rows.append({"k": k, "method": method, "seeds": len(sel), "f1": f1.mean(axis=0).tolist(),
                     "spread": (f1.max(axis=0) - f1.min(axis=0)).tolist(),
                     "cells": float(np.mean([r["cells"] for r in sel])), "corrected_cells": corrected,
                     "hours": corrected * SECONDS_PER_CELL / 3600})
    return rows


def goals(rows: list[dict], reference: list[float] | None) -> list[tuple[str, bool | None, str]]:
    base = next((r for r in rows if r["k"] == 0), None)
    sure = {r["k"]: r for r in rows if r["method"] == "least-sure"}
    rand = {r["k"]: r for r in rows if r["method"] == "random"}
    out = []
    ks = sorted(set(sure) & set(rand))
    beats = [sure[k]["f1"][0] > rand[k]["f1"][0] for k in ks]
    out.append(("least-sure beats random at every K > 0 (mean over seeds, vs expert 1)",
                all(beats) if ks else None,
                ", ".join(f"K={k}: {sure[k]['f1'][0]:.3f} vs {rand[k]['f1'][0]:.3f}" for k in ks)
                or "no K with both choices (--methods)"))
    if base is None or not sure:
        return out + [("gain >= 0.10 vs expert 1 and models/tissue's figure at K <= 16", None, "no K = 0 point"),
                      ("no loss vs expert 2 beyond 0.01", None, "no K = 0 point")]
    small = [k for k in sorted(sure) if k <= 16]
    best = max(small, key=lambda k: sure[k]["f1"][0]) if small else None
    if best is None:
        out.append(("gain >= 0.10 vs expert 1 and models/tissue's figure at K <= 16", None, "no K <= 16"))
    else:
        gain = sure[best]["f1"][0] - base["f1"][0]
        ref = reference[0] if reference else None
        met = [k for k in small if sure[k]["f1"][0] - base["f1"][0] >= 0.10
               and (ref is None or sure[k]["f1"][0] >= ref)]
        out.append(("gain >= 0.10 vs expert 1 over K = 0 and reaches models/tissue's figure, at some K <= 16",
                    bool(met), f"best K={best}: {sure[best]['f1'][0]:.3f} (gain {gain:+.3f}; K = 0 "
                               f"{base['f1'][0]:.3f}; models/tissue {ref if ref is None else f'{ref:.3f}'})"
                    + (f"; met at K = {', '.join(map(str, met))}" if met else "")))
    losses = {k: sure[k]["f1"][1] - base["f1"][1] for k in sure}
    worst = min(losses, key=losses.get)
    out.append(("no loss vs expert 2 beyond 0.01 relative to K = 0 (least-sure, every K)",
                all(v >= -0.01 for v in losses.values()),
                f"worst K={worst}: {sure[worst]['f1'][1]:.3f} vs {base['f1'][1]:.3f} ({losses[worst]:+.3f})"))
    return out


def reference_lines() -> dict[str, list[float]]:
    """models/tissue's held-out figures (its card's metrics.json) and the peers' on the same columns."""
    path = ROOT / "models" / "tissue" / "metrics.json"
    if not path.is_file():
        return {}
    held = json.loads(path.read_text()).get("test", {}).get("codex_held_out", {})
    lines = {"models/tissue": held[REFERENCE_ROW]} if REFERENCE_ROW in held else {}
    lines.update({name: held[name] for name in PEERS if name in held})
    return lines


def plot(rows: list[dict], refs: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    base = next((r for r in rows if r["k"] == 0), None)
    colours = {"least-sure": "tab:red", "random": "tab:blue"}
    for method in ("least-sure", "random"):
        sel = sorted([r for r in rows if r["method"] == method], key=lambda r: r["k"])
        if base is not None:
            sel = [{**base, "method": method}] + sel
        if not sel:
            continue
        for e, style in ((0, "-"), (1, "--")):
            ks = [r["k"] for r in sel]
            f1 = [r["f1"][e] for r in sel]
            err = [r["spread"][e] / 2 for r in sel]
            axes[0].errorbar(ks, f1, yerr=err, fmt=style + "o", color=colours[method], capsize=3, ms=4,
                             label=f"{method}, vs expert {e + 1}")
            axes[1].plot([r["corrected_cells"] for r in sel], f1, style + "o", color=colours[method], ms=4,
                         label=f"{method}, vs expert {e + 1}")
    for ax in axes:
        for (name, vals), colour in zip(refs.items(), ("black", "grey", "tab:green")):
            ax.axhline(vals[0], color=colour, lw=1, ls="-", alpha=0.7, label=f"{name} vs expert 1")
            ax.axhline(vals[1], color=colour, lw=1, ls=":", alpha=0.7, label=f"{name} vs expert 2")
        ax.set_ylabel("F1 at IoU 0.5, held-out columns >= 1008")
        ax.grid(alpha=0.3)
    axes[0].set_xlabel("K corrected tiles (128 x 128 px)")
    axes[1].set_xlabel(f"corrected cells (x {SECONDS_PER_CELL:.0f} s = person-time)")
    top = axes[1].secondary_xaxis("top", functions=(lambda c: c * SECONDS_PER_CELL / 3600,
                                                    lambda h: h * 3600 / SECONDS_PER_CELL))
    top.set_xlabel("hours of a person")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle("Correcting a generalist on the CODEX tile: least-sure vs random tiles")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(records: list[dict], refs: dict[str, list[float]], quick: bool = False) -> list[dict]:
    rows = summarise(records)
    print()
    print(f"{'K':>3} {'choice':<10} {'seeds':>5} {'cells':>6} {'corrected':>9} {'hours':>6} "
          f"{'F1 vs expert 1':>15} {'F1 vs expert 2':>15}")
    for r in rows:
        spread = [f" +-{s / 2:.3f}" if r["seeds"] > 1 else "" for s in r["spread"]]
        print(f"{r['k']:>3} {r['method']:<10} {r['seeds']:>5} {r['cells']:>6.0f} {r['corrected_cells']:>9.0f} "
              f"{r['hours']:>6.2f} {r['f1'][0]:>8.3f}{spread[0]:<7} {r['f1'][1]:>8.3f}{spread[1]:<7}")
    for name, vals in refs.items():
        print(f"{'ref':>3} {name:<40} {vals[0]:>8.3f}{'':<7} {vals[1]:>8.3f}")
    print()
    if quick:
        print("quick mode: the loop's plumbing only; a network trained a few steps finds no cells, so the F1 "
              "figures and the goals below mean nothing")
    for text, met, detail in goals(rows, refs.get("models/tissue")):
        verdict = "n/a" if met is None else "MET" if met else "NOT MET"
        print(f"goal: {text}: {verdict} ({detail})")
    return rows


def timing_note(records: list[dict], out: Path) -> None:
    done = [r for r in records if r["k"] > 0]
    if not done:
        return
    mean = {key: float(np.mean([r["timings"].get(key, 0.0) for r in done]))
            for key in ("review_s", "import_s", "train_s", "score_s")}
    total = sum(mean.values())
    print(f"\ntimings per point (mean of {len(done)}): " + ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in mean.items())
          + f"; a sweep of 16 such points: {16 * total / 3600:.1f} h")
    gen = out / "logs" / "train-generalist.log"
    if gen.is_file():
        found = re.findall(r"# rc 0, ([\d.]+) s", gen.read_text())
        if found:
            print(f"generalist training took {float(found[-1]) / 60:.1f} min")


# --- main -------------------------------------------------------------------------------------------------------

def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI: tiny network, data and steps; K in {0, 2}")
    p.add_argument("--out", help="output folder (default train_runs/correction; --quick: a temporary one)")
    p.add_argument("--codex", default=str(SHARED_CODEX / TILE_NAME), help="the CODEX tile folder")
    p.add_argument("--generalist", help="a generalist model folder (generated tissue only; default "
                                        "models/generalist when it exists)")
    p.add_argument("--train-generalist", action="store_true",
                   help="train the generalist into OUT/generalist with cellscale train --data synthetic-tissue@ID")
    p.add_argument("--generalist-steps", type=int, default=3000)
    p.add_argument("--generalist-lr", type=float, default=2e-3)
    p.add_argument("--generalist-crop", type=int, default=256, help="the generalist's training crop size")
    p.add_argument("--images", type=int, default=24, help="generated training images of the generalist")
    p.add_argument("--mix-images", type=int, default=8,
                   help="generated training images the corrections are added to for the fine-tune")
    p.add_argument("--tissue-style", default="mixed", choices=("sparse", "dense", "mixed"))
    p.add_argument("--finetune-steps", type=int, default=1200,
                   help="fine-tune steps (1,200 of 128-px crops: the compute of 300 of 256 px)")
    p.add_argument("--finetune-lr", type=float, default=5e-4)
    p.add_argument("--ks", default="0,2,4,8,16", help="K values (comma-separated)")
    p.add_argument("--seeded-ks", default="4,16", help="K values run with --seeds seeds")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--tile-size", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=None,
                   help="training crop size (cellscale train --tile; default --tile-size: a larger crop of a "
                        "corrected tile is mostly padding)")
    p.add_argument("--base-filters", type=int, default=16)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--rows", type=int, default=None, help="use only the tile's first ROWS rows")
    p.add_argument("--fit-only", action="store_true",
                   help="cellscale train --fit-only (no tuning, int8 copy or card; the generalist's post-processing "
                        "scores the fine-tunes)")
    p.add_argument("--figure", help="write the F1-vs-K figure (PNG) here")
    p.add_argument("--methods", default="least-sure,random",
                   help="the tile choices to sweep (--quick: least-sure only; `cellscale review --random` is the "
                        "same loop with another choice, tested on its own)")
    a = p.parse_args(argv)
    if a.quick:
        a.generalist_steps, a.images, a.mix_images = 6, 2, 2
        a.finetune_steps, a.ks, a.seeded_ks, a.seeds = 3, "0,2", "", 1
        a.methods = "least-sure"
        a.batch, a.crop, a.generalist_crop, a.base_filters, a.depth = 2, 64, 64, 4, 2
        a.rows = a.rows or 256
        a.fit_only = True
        a.train_generalist = a.generalist is None
    a.crop = a.crop or a.tile_size
    unknown = {m.strip() for m in a.methods.split(",")} - {"least-sure", "random", ""}
    if unknown:
        p.error(f"--methods: unknown {', '.join(sorted(unknown))} (least-sure, random)")
    return a


def main(argv=None) -> int:
    a = parse(argv)
    tile = Path(a.codex)
    if not (tile / "image.ome.tif").is_file():
        print(f"correction benchmark skipped: ../shared/data/codex absent ({tile} has no image.ome.tif)")
        return 0
    temp = tempfile.mkdtemp(prefix="cellscale-correction-") if a.quick and not a.out else None
    out = Path(temp or a.out or ROOT / "train_runs" / "correction").resolve()
    try:
        return run(a, tile, out)
    finally:
        if temp:
            shutil.rmtree(temp, ignore_errors=True)


def run(a, tile: Path, out: Path) -> int:
    import tifffile

    started = time.time()
    out.mkdir(parents=True, exist_ok=True)
    store = out / "data" / "versions"
    store.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CELLSCALE_VERSIONS": str(store), "CELLSCALE_REGISTRY": str(store / "models.json"),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    os.environ.update({k: env[k] for k in ("CELLSCALE_VERSIONS", "CELLSCALE_REGISTRY", "TF_CPP_MIN_LOG_LEVEL")})
    print(f"correction benchmark{' (quick)' if a.quick else ''}: output in {out}")
    if a.rows:
        tile = crop_tile(tile, out / "tile", a.rows)
    logs = out / "logs"
    gen_ref = generate(a.images, 1, a.tissue_style, env, logs)
    mix_ref = gen_ref if a.mix_images == a.images else generate(a.mix_images, 1, a.tissue_style, env, logs)
    log(f"generated tissue {gen_ref}; fine-tunes add the corrections to {mix_ref}")
    if a.generalist:
        generalist = Path(a.generalist).resolve()
    elif a.train_generalist:
        generalist = train_generalist(a, gen_ref, env, out)
    elif (ROOT / "models" / "generalist" / "model.json").is_file():
        generalist = ROOT / "models" / "generalist"
    else:
        print("give --generalist MODEL or --train-generalist (no models/generalist)", file=sys.stderr)
        return 2
    from cellscale.segment.model import ModelSpec

    spec = ModelSpec.read(generalist)
    a.base_filters, a.depth = spec.base_filters, spec.depth  # fine-tunes keep the generalist's network
    fallback = spec.postprocess.get("whole_cell")
    project = write_project(out, tile)
    labels = project / "results" / "segmentation" / SAMPLE / "whole_cell.tif"
    if not labels.is_file():
        log(f"segmenting the tile with the generalist ({generalist})")
        cellscale(["segment", tile / "image.ome.tif", "-o", labels, "--compartment", "whole-cell",
                   "--nuclear-channel", 0, "--membrane-channel", 2, "--model", generalist, "--precision", "float32"],
                  env, logs / "segment.log")
    expert1 = tifffile.imread(tile / "mask_expert1_wholecell.tif")
    current = np.squeeze(tifffile.imread(labels))
    ctx = {"out": out, "env": env, "project": project, "tile": tile, "labels": labels, "generalist": generalist,
           "mix_ref": mix_ref, "height": expert1.shape[0], "expert1": expert1, "current": current,
           "score": Scorer(tile, fallback)}
    ks = [int(k) for k in a.ks.split(",") if k.strip()]
    seeded = {int(k) for k in a.seeded_ks.split(",") if k.strip()}
    records = []
    methods = tuple(m.strip() for m in a.methods.split(",") if m.strip())
    for k, method, seed in sweep_points(ks, seeded, a.seeds, methods):
        path = out / "points" / f"{point_key(k, method, seed)}.json"
        if path.is_file():
            records.append(json.loads(path.read_text()))
            continue
        if k == 0:
            t = time.time()
            record = {"key": "k0", "k": 0, "method": "none", "seed": 0, "f1": ctx["score"](generalist),
                      "dataset": None, "cells": 0, "corrected_cells": 0, "tiles": [],
                      "timings": {"score_s": time.time() - t}}
        else:
            record = run_point(a, k, method, seed, ctx)
        record["generalist"] = str(generalist)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=1))
        log(f"{record['key']}: F1 {record['f1'][0]:.3f} / {record['f1'][1]:.3f} (expert 1 / 2)")
        records.append(record)
    refs = reference_lines()
    rows = report(records, refs, a.quick)
    diagnostic = selection_diagnostic(ctx, a.tile_size, [k for k in ks if k > 0])
    (out / "summary.json").write_text(json.dumps({"rows": rows, "references": refs, "generalist": str(generalist),
                                                  "generated": gen_ref, "mix": mix_ref,
                                                  "selection": diagnostic}, indent=1))
    if a.figure:
        plot(rows, refs, Path(a.figure))
        print(f"figure: {a.figure}")
    timing_note(records, out)
    print(f"total {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
