"""Scoring a nuclear model on DSB2018 splits and writing its model card."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import numpy as np

from cellscale.io import ImageSource
from cellscale.segment.baseline import otsu_watershed
from cellscale.segment.image import predict_tiles
from cellscale.segment.metrics import summarize
from cellscale.segment.model import ModelSpec
from cellscale.segment.postprocess import PostprocessParams
from cellscale.segment.stitch import blend_maps, labels_from_arrays
from cellscale.segment.tiles import make_plan, shard_tiles

TUNING_GRID = {
    "sigma": (1.0, 2.0),
    "foreground": (0.4, 0.5, 0.6, 0.7, 0.8),
    "marker_threshold": (0.3, 0.4, 0.5, 0.6),
    "merge_boundary": (0.0, 0.2),
}


def predict_maps(predictor, channels: np.ndarray, tile: int = 256, overlap: int = 32) -> np.ndarray:
    """Blended maps (4 * n_comp, Y, X) for one (C, Y, X) image."""
    source = ImageSource.from_array(channels[np.newaxis])
    roles = dict(zip(predictor.spec.inputs, range(len(predictor.spec.inputs))))
    plan, recipe = make_plan(source, roles, predictor.spec.inputs, tile, overlap, predictor.spec.tile_multiple,
                             shard_mpx=1e9)
    maps = predict_tiles(predictor, shard_tiles(source, recipe, plan, 0))
    return blend_maps(plan, maps.__getitem__, 0, predictor.n_outputs)


def compartment_labels(maps: np.ndarray, params: PostprocessParams, k: int = 0) -> np.ndarray:
    """Labels of compartment ``k`` from blended (4 * n_comp, Y, X) maps."""
    return labels_from_arrays(maps[4 * k], maps[4 * k + 1], params, p_boundary=maps[4 * k + 2])


def tune(maps: list[np.ndarray], truths: list[np.ndarray], log=print) -> tuple[PostprocessParams, dict]:
    """Grid search of post-processing for the best F1 + mean AP; ``maps`` are one compartment's
    (4, Y, X) maps per image."""
    best, best_result, best_score = None, None, -1.0
    keys = list(TUNING_GRID)
    for values in itertools.product(*TUNING_GRID.values()):
        params = PostprocessParams(**dict(zip(keys, values)))
        result = summarize((t, compartment_labels(m, params)) for t, m in zip(truths, maps))
        if result["f1"] + result["ap"] > best_score:
            best, best_result, best_score = params, result, result["f1"] + result["ap"]
    log(f"tuned post-processing on validation: {best.to_dict()} -> F1 {best_result['f1']:.3f} "
        f"AP {best_result['ap']:.3f}")
    return best, best_result


def score_split(predictor, examples, params: PostprocessParams, tile: int = 256) -> dict:
    """Model and Otsu-baseline scores per image kind (and 'all')."""
    rows = []
    for ex in examples:
        maps = predict_maps(predictor, ex.image, tile=tile)
        rows.append((ex.kind, ex.labels["nuclear"], compartment_labels(maps, params), otsu_watershed(ex.image[0])))
    out = {}
    kinds = sorted({r[0] for r in rows})
    for kind in ["all", *kinds]:
        sel = [r for r in rows if kind == "all" or r[0] == kind]
        out[kind] = {"model": summarize((r[1], r[2]) for r in sel),
                     "baseline": summarize((r[1], r[3]) for r in sel)}
    return out


def finish_model(args, spec, data: Path, log=print) -> dict:
    """Tune on val, score test, write model.json, metrics.json and MODEL_CARD.md into ``args.out``."""
    from cellscale import train as T
    from cellscale.segment.predictor import Predictor

    out = Path(args.out)
    predictor = Predictor(out)
    val = T.load_dsb(data, "val")
    maps = [predict_maps(predictor, ex.image) for ex in val]
    params, val_result = tune(maps, [ex.labels["nuclear"] for ex in val], log)
    spec.postprocess = {"nuclear": params.to_dict()}
    spec.write(out)
    test = T.load_dsb(data, "test")
    scores = score_split(Predictor(out), test, params)
    from cellscale.train.quantize import export_int8

    export_int8(out, [ex.image for ex in val], f"DSB2018 validation split ({data.name})")
    spec.int8 = ModelSpec.read(out).int8  # what export_int8 recorded
    int8 = score_split(Predictor(out, precision="int8"), test, params, tile=spec.int8["window"])
    # what the workflow runs on CPUs by default (segment.precision auto, segment.augment rot180)
    default = score_split(Predictor(out, precision="int8", augment="rot180"), test, params, tile=spec.int8["window"])
    for kind, res in int8.items():
        scores[kind]["int8"] = res["model"]
        scores[kind]["int8_rot180"] = default[kind]["model"]
    files = [p for sub in ("images", "masks") for p in (data / sub).iterdir()
             if T.split_of(p.name.split(".")[0]) == "train"]
    record = {
        "model": spec.name,
        "trained": time.strftime("%Y-%m-%d"),
        "command": T.command_line(),
        "training_data": str(data.name),
        "training_data_sha256": T.dataset_hash(files),
        "training_files": len(files),
        "parameters": int(predictor.model.count_params()),
        "validation": val_result,
        "note": getattr(args, "note", None),
        "test": scores,
    }
    (out / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "MODEL_CARD.md").write_text(model_card(spec, record))
    log(f"test (all kinds): model F1 {scores['all']['model']['f1']:.3f} AP {scores['all']['model']['ap']:.3f}; "
        f"baseline F1 {scores['all']['baseline']['f1']:.3f} AP {scores['all']['baseline']['ap']:.3f}")
    return record


def model_card(spec, record: dict) -> str:
    lines = [
        f"# Model card: {spec.name}",
        "",
        "Nuclear segmentation U-Net (separable convolutions, base "
        f"{spec.base_filters} filters, depth {spec.depth}, {record['parameters']:,} parameters) with two heads "
        "per compartment: inner distance (sigmoid) and background/boundary/interior (softmax), as in DeepCell's "
        "Mesmer. Post-processing: regions of the smoothed inner distance above a threshold as markers, "
        "watershed inside the foreground, block by block with overlap.",
        "",
        "## Inputs and outputs",
        f"- inputs: {', '.join(spec.inputs)} channel(s), each scaled so its 1st-99.8th percentile maps to 0-1 "
        "over the whole image; colour images are turned into one inverted-luminance nuclear channel",
        f"- outputs: {', '.join(spec.compartments)}; window edge a multiple of {spec.tile_multiple} px",
        "- resolution: as DSB2018 (mixed, about 0.2-0.6 um/px; trained with 0.6-1.7x scale augmentation)",
        "",
        "## Training data",
        f"- {record['training_data']}: DSB2018 stage1_train with community mask fixes (CC0; Caicedo et al., "
        "Nature Methods 2019); the split is fixed by a hash of each image id (80% train, 10% val, 10% test)",
        f"- {record['training_files']} training files, SHA-256 of their names and bytes: "
        f"`{record['training_data_sha256']}`",
        f"- command: `{record['command']}`",
        *([f"- note: {record['note']}"] if record.get("note") else []),
        f"- trained on {record['trained']}",
        "",
        "## Post-processing (tuned on the validation split)",
        "```json",
        json.dumps(spec.postprocess, indent=2),
        "```",
        "",
        "## Held-out test split (images never used for training or tuning)",
        "Object F1 at IoU 0.5 (pooled over images) and DSB mean AP over IoU 0.5-0.95 (mean over images).",
        "",
        "| kind | images | model F1 | model AP | Otsu+watershed F1 | Otsu+watershed AP |",
        "|---|---|---|---|---|---|",
    ]
    for kind, res in record["test"].items():
        m, b = res["model"], res["baseline"]
        lines.append(f"| {kind} | {m['images']} | {m['f1']:.3f} | {m['ap']:.3f} | {b['f1']:.3f} | {b['ap']:.3f} |")
    if spec.int8 and all("int8" in res for res in record["test"].values()):
        lines += ["", f"The 8-bit copy (`{spec.int8['artifact']}`, {spec.int8['window']}-px windows, calibrated "
                  "on the validation split), same test images; \"+ rot180\" is the workflow's default on CPUs "
                  "(`segment.augment: rot180`: each window's maps averaged with those of its half turn):", "",
                  "| kind | int8 F1 | int8 AP | int8 + rot180 F1 | int8 + rot180 AP |", "|---|---|---|---|---|"]
        for kind, res in record["test"].items():
            aug = res.get("int8_rot180")  # absent from cards written before augmentation existed
            lines.append(f"| {kind} | {res['int8']['f1']:.3f} | {res['int8']['ap']:.3f} | "
                         + (f"{aug['f1']:.3f} | {aug['ap']:.3f} |" if aug else "- | - |"))
    lines += ["", "## Limits",
              "- a small network (kept fast enough for 2 Mpx/s on 2 CPU cores), trained for a limited number of "
              "steps (the note says where); tissue whole-cell segmentation needs a nuclear + membrane model",
              ""]
    return "\n".join(lines)


def finish_tissue_model(args, spec, log=print) -> dict:
    """Tune and score a nuclear + whole-cell model on generated tissue; write its card."""
    from cellscale import train as T
    from cellscale.segment.predictor import Predictor

    out = Path(args.out)
    predictor = Predictor(out)
    from cellscale.train.run import tissue_style

    style = tissue_style(args)
    val = T.load_synthetic_tissue(max(4, args.images // 4), "val", args.seed, style)
    test = T.load_synthetic_tissue(max(4, args.images // 4), "test", args.seed, style)
    val_maps = [predict_maps(predictor, ex.image) for ex in val]
    test_maps = [predict_maps(predictor, ex.image) for ex in test]
    tuned, scores = {}, {}
    for i, comp in enumerate(spec.compartments):
        params, _ = tune([m[4 * i: 4 * i + 4] for m in val_maps], [ex.labels[comp] for ex in val], log)
        tuned[comp] = params.to_dict()
        pairs = [(ex.labels[comp], compartment_labels(m, params, i)) for ex, m in zip(test, test_maps)]
        scores[comp] = {"model": summarize(pairs)}
        if comp == "nuclear":
            scores[comp]["baseline"] = summarize((ex.labels[comp], otsu_watershed(ex.image[0])) for ex in test)
    data = f"generated tissue (cellscale.synth.tissue, {style}), {args.images} images, seed {args.seed}"
    if getattr(args, "codex", None):
        codex = Path(args.codex)
        held_out = T.load_codex(codex, "test")[0]
        maps = predict_maps(predictor, held_out.image)
        wc = spec.compartments.index("whole_cell")
        # tuned on the training columns against each expert's own cells (what the held-out score
        # measures), not against their union: the experts draw cells of different sizes
        train_maps = predict_maps(predictor, T.load_codex(codex, "train")[0].image)[4 * wc: 4 * wc + 4]
        experts = T.codex_experts(codex, "train")
        params, _ = tune([train_maps] * len(experts), experts, log)
        tuned["whole_cell"] = params.to_dict()
        ours = compartment_labels(maps, params, wc)
        scores["codex_held_out"] = codex_scores(codex, ours)
        from cellscale.train.run import codex_labellings

        data += (f"; CODEX {codex.name} columns < {T.CODEX_TRAIN_X1} ({T.codex_labels_text(codex_labellings(args))}), "
                 f"SHA-256 `{T.dataset_hash([p for p in codex.iterdir() if p.is_file()])}`")
    spec.postprocess = tuned
    spec.write(out)
    from cellscale.train.quantize import calibration_images, export_int8

    export_int8(out, *calibration_images("synthetic-tissue", getattr(args, "codex", None), args.seed))
    spec.int8 = ModelSpec.read(out).int8  # what export_int8 recorded
    if "codex_held_out" in scores:
        int8 = {}
        for name, augment in (("cellscale int8 + rot180 (workflow default)", "rot180"), ("cellscale int8", "none")):
            maps = predict_maps(Predictor(out, precision="int8", augment=augment), held_out.image,
                                tile=spec.int8["window"])
            int8[name] = codex_scores(codex, compartment_labels(maps, params, wc))["cellscale"]
        scores["codex_held_out"] = {**int8, **scores["codex_held_out"]}
    record = {"model": spec.name, "trained": time.strftime("%Y-%m-%d"), "command": T.command_line(),
              "training_data": data, "parameters": int(predictor.model.count_params()),
              "note": getattr(args, "note", None), "test": scores}
    (out / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [f"# Model card: {spec.name}", "",
             f"Nuclear + whole-cell U-Net (base {spec.base_filters}, depth {spec.depth}, "
             f"{record['parameters']:,} parameters); inputs: nuclear and membrane channels, each scaled so its "
             "1st-99.8th percentile maps to 0-1; outputs per compartment: inner distance and "
             "background/boundary/interior.", "",
             "## Training data",
             f"- {record['training_data']}; validation and test images use disjoint seed ranges",
             f"- command: `{record['command']}`",
             *([f"- note: {record['note']}"] if record["note"] else []),
             f"- trained on {record['trained']}", "",
             "## Post-processing (nuclear: tuned on generated validation tissue; whole cell: on generated "
             "validation tissue, or with --codex on the CODEX training columns against each expert's cells)",
             "```json",
             json.dumps(tuned, indent=2), "```", "",
             "## Held-out generated tissue", "",
             "| compartment | images | model F1 | model AP | Otsu+watershed F1 |", "|---|---|---|---|---|"]
    for comp, res in scores.items():
        if comp == "codex_held_out":
            continue
        m, b = res["model"], res.get("baseline")
        lines.append(f"| {comp} | {m['images']} | {m['f1']:.3f} | {m['ap']:.3f} | "
                     f"{b['f1']:.3f} |" if b else f"| {comp} | {m['images']} | {m['f1']:.3f} | {m['ap']:.3f} | - |")
    if "codex_held_out" in scores:
        lines += ["", "## Real tissue: CODEX R001_X003_Y004, held-out columns >= 1008",
                  "Whole-cell F1 at IoU 0.5 against each expert, next to the other tools' masks on the same columns.",
                  "", "| method | F1 vs expert 1 | F1 vs expert 2 |", "|---|---|---|"]
        lines += [f"| {name} | {v[0]:.3f} | {v[1]:.3f} |" for name, v in scores["codex_held_out"].items()]
    limits = ("- real tissue seen in training: one CODEX tile (lymphoid); other tissues and stains are untested"
              if "codex_held_out" in scores else
              "- trained only on generated tissue: a starting point for the demo and tests, not for real tissue")
    lines += ["", "## Limits", limits, ""]
    (out / "MODEL_CARD.md").write_text("\n".join(lines))
    log("test: " + ", ".join(f"{c} F1 {s['model']['f1']:.3f}" for c, s in scores.items() if "model" in s))
    return record


def codex_scores(tile_dir: Path, ours: np.ndarray) -> dict:
    """F1 against both experts on the held-out columns, for us and the peers' masks in ``peers/``."""
    import tifffile

    from cellscale.train.data import codex_columns, codex_experts

    experts = codex_experts(tile_dir, "test")
    methods = {"cellscale": ours}
    for path in sorted((tile_dir / "peers").glob("*.tif")):
        methods[path.stem] = tifffile.imread(path)[codex_columns("test")]
    return {name: [summarize([(e, labels)])["f1"] for e in experts] for name, labels in methods.items()}
