"""Rescore a shipped model's held-out figures with today's software stack, without training.

The same library code as ``cellscale train`` (cellscale.train.evaluate; the weights and the tuned post-processing of
the model's ``model.json`` as shipped), on the same held-out data as its card:

- nuclear models: the test split of the card's dataset version (float32 256-px windows; int8 and int8 + rot180 in
  the int8 copy's windows), as cellscale.train.finish.finish_model scores it;
- tissue models: the generated test tissue of the card's dataset version (float32), and, where the card has them,
  the CODEX tile's held-out columns against both experts (float32, int8, int8 + rot180), as finish_tissue_model.

One difference from the card, on purpose: every figure here uses the shipped post-processing. A model trained with
--codex ships the whole-cell settings tuned on the CODEX training columns, while its card's generated-tissue
whole-cell row was scored with settings tuned on generated validation tissue (not shipped); ``--retune-generated``
tunes those again on the generated validation split and scores with them as well (slow: the 80-setting grid).

    PYTHONPATH=src .venv/bin/python benchmarks/rescore.py tissue [--codex ../shared/data/codex/R001_X003_Y004]
        [--skip-int8] [--retune-generated] [--json OUT]

Prints card vs today per figure; nothing is written to the model's folder unless --record (metrics.json's
'rescored' list, which the card shows dated next to its own figures).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path


def stack() -> str:
    """The versions that decide the figures (TensorFlow under either wheel name)."""
    out = []
    for names in (("tensorflow", "tensorflow-cpu"), ("keras",), ("numpy",), ("ai-edge-litert",), ("scikit-image",)):
        for name in names:
            try:
                out.append(f"{name} {metadata.version(name)}")
                break
            except metadata.PackageNotFoundError:
                continue
    return ", ".join(out)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def examples_of(record: dict, split: str) -> list:
    """The examples of ``split`` of the card's dataset version; a generated version's images are made again by its
    generator (which warns if they no longer match the version's hashes), without writing its files."""
    from cellscale.datasets import load_version
    from cellscale.train.versions import TrainingSet

    manifest = load_version(record["dataset"])
    g = manifest.metadata.get("generator") or {}
    data = TrainingSet(record["dataset"], manifest, images=g.get("images", 24), seed=g.get("seed", 0),
                       style=g.get("style", "sparse"))
    return data._generated(split) if data.generator else data.examples(split)


def rescore_nuclear(folder: Path, record: dict, int8: bool) -> list[tuple[str, float, float]]:
    from cellscale.segment.model import ModelSpec
    from cellscale.segment.postprocess import PostprocessParams
    from cellscale.segment.predictor import Predictor
    from cellscale.train.evaluate import score_split

    spec = ModelSpec.read(folder)
    params = PostprocessParams.from_dict(spec.postprocess["nuclear"])
    test = examples_of(record, "test")
    rows = []
    names = {"model": "float32", "int8": "int8", "int8_rot180": "int8 + rot180"}
    runs = [("model", Predictor(folder, precision="float32", augment="none"), 256)]
    if int8 and spec.int8:
        runs += [("int8", Predictor(folder, precision="int8", augment="none"), spec.int8["window"]),
                 ("int8_rot180", Predictor(folder, precision="int8", augment="rot180"), spec.int8["window"])]
    for key, predictor, tile in runs:
        log(f"{key}: {len(test)} test images")
        today = score_split(predictor, test, params, tile=tile)
        for kind, res in today.items():
            card = record["test"][kind][key]
            for metric in ("f1", "ap"):
                rows.append((f"{kind}, {names[key]} {metric.upper()}", card[metric], res["model"][metric]))
            if key == "model" and kind == "all":
                for metric in ("f1", "ap"):
                    rows.append((f"{kind}, Otsu+watershed {metric.upper()}", record["test"][kind]["baseline"][metric],
                                 res["baseline"][metric]))
    return rows


def rescore_tissue(folder: Path, record: dict, codex: Path | None, int8: bool,
                   retune: bool) -> list[tuple[str, float, float]]:
    from cellscale.segment.metrics import summarize
    from cellscale.segment.model import ModelSpec
    from cellscale.segment.postprocess import PostprocessParams
    from cellscale.segment.predictor import Predictor
    from cellscale.train.data import load_codex
    from cellscale.train.evaluate import (
        codex_scores,
        compartment_labels,
        compartment_maps,
        predict_maps,
        tune,
    )

    spec = ModelSpec.read(folder)
    predictor = Predictor(folder, precision="float32", augment="none")
    rows = []
    test = examples_of(record, "test")
    log(f"generated test tissue: {len(test)} images")
    maps = [predict_maps(predictor, ex.image) for ex in test]
    for i, comp in enumerate(spec.compartments):
        params = PostprocessParams.from_dict(spec.postprocess[comp])
        res = summarize([(ex.labels[comp], compartment_labels(m, params, i)) for ex, m in zip(test, maps)])
        # a --codex model's whole-cell row was scored with settings tuned on generated tissue, not the shipped ones
        other = comp == "whole_cell" and "codex_held_out" in record["test"]
        for metric in ("f1", "ap"):
            card = None if other else record["test"][comp]["model"][metric]
            rows.append((f"generated {comp} {metric.upper()}" + (", shipped settings" if other else ""), card,
                         res[metric]))
        if retune and comp == "whole_cell":
            val = examples_of(record, "val")
            val_maps = [compartment_maps(predict_maps(predictor, ex.image), i) for ex in val]
            tuned, _ = tune(val_maps, [ex.labels[comp] for ex in val], log)
            res = summarize([(ex.labels[comp], compartment_labels(m, tuned, i)) for ex, m in zip(test, maps)])
            settings = ", ".join(f"{k} {v:g}" for k, v in tuned.to_dict().items())
            for metric in ("f1", "ap"):
                rows.append((f"generated {comp} {metric.upper()}, settings tuned again on generated validation tissue "
                             f"({settings})", record["test"][comp]["model"][metric], res[metric]))
    # a model without CODEX figures in its record (the generalist: its card's hand-written K = 0 line) is scored
    # float32 there too, the card column then empty
    card = record["test"].get("codex_held_out") or {}
    if codex is not None:
        region = load_codex(codex, "test")[0]
        wc = spec.compartments.index("whole_cell")
        params = PostprocessParams.from_dict(spec.postprocess["whole_cell"])
        runs = [("cellscale", predictor, 256)]  # the card's names of the float32, int8 and int8 + rot180 rows
        if int8 and spec.int8 and card:
            w = spec.int8["window"]
            runs += [("cellscale int8", Predictor(folder, precision="int8", augment="none"), w),
                     ("cellscale int8 + rot180 (workflow default)",
                      Predictor(folder, precision="int8", augment="rot180"), w)]
        for name, pred, tile in runs:
            log(f"CODEX held-out columns: {name}")
            labels = compartment_labels(predict_maps(pred, region.image, tile=tile), params, wc)
            today = codex_scores(codex, labels)["cellscale"]
            for k in range(2):
                rows.append((f"CODEX held-out columns, {name}, F1 vs expert {k + 1}", card[name][k] if card else None,
                             today[k]))
    return rows


def main(argv=None) -> int:
    from cellscale.segment.model import shipped_models_dir

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a shipped model's name or a model folder")
    p.add_argument("--codex", default=str(Path(__file__).resolve().parents[1] / "../shared/data/codex/R001_X003_Y004"))
    p.add_argument("--skip-int8", action="store_true")
    p.add_argument("--retune-generated", action="store_true")
    p.add_argument("--json", help="write the rows here as well")
    p.add_argument("--record", action="store_true",
                   help="add the rows, dated, to the model's metrics.json (its 'rescored' list, which the card "
                        "writer, cellscale.train.card, shows next to the card's figures; the card's own figures "
                        "are kept); write the card again with cellscale.train.card.write_card")
    p.add_argument("--note", help="with --record: a line under the rescored table")
    a = p.parse_args(argv)
    folder = Path(a.model) if Path(a.model).is_dir() else shipped_models_dir() / a.model
    record = json.loads((folder / "metrics.json").read_text())
    codex = Path(a.codex) if Path(a.codex).is_dir() else None
    started = time.time()
    if "whole_cell" in json.loads((folder / "model.json").read_text())["compartments"]:
        rows = rescore_tissue(folder, record, codex, not a.skip_int8, a.retune_generated)
    else:
        rows = rescore_nuclear(folder, record, not a.skip_int8)
    versions = stack()
    try:
        code = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        code = "-"
    print(f"{folder.name} (card of {record['trained']}) rescored on {time.strftime('%Y-%m-%d')} with {versions}")
    print("| figure | card | today | today - card |\n|---|---|---|---|")
    for what, card, today in rows:
        if card is None:
            print(f"| {what} | - | {today:.3f} | - |")
        else:
            print(f"| {what} | {card:.3f} | {today:.3f} | {today - card:+.3f} |")
    log(f"done in {time.time() - started:.0f} s")
    if a.record:
        given, kept = list(argv if argv is not None else sys.argv[1:]), []
        while given:  # the command without the options that only say where its output goes
            arg = given.pop(0)
            if arg in ("--note", "--json"):
                given = given[1:]
            elif arg != "--record" and not arg.startswith(("--note=", "--json=")):
                kept.append(arg)
        argv_text = " ".join(["benchmarks/rescore.py", *kept])
        record.setdefault("rescored", []).append(
            {"date": time.strftime("%Y-%m-%d"), "stack": versions, "code": code, "command": argv_text,
             "rows": [[w, c, t] for w, c, t in rows], **({"note": a.note} if a.note else {})})
        (folder / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
        log(f"added to {folder / 'metrics.json'}")
    if a.json:
        Path(a.json).write_text(json.dumps({"model": folder.name, "date": time.strftime("%Y-%m-%d"), "stack": versions,
                                            "rows": [{"figure": w, "card": c, "today": t} for w, c, t in rows]},
                                           indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
