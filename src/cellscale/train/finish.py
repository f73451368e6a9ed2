"""Finishing a fitted model: tune its post-processing on validation images, score it on held-out ones (float32,
int8, int8 + rot180), add the int8 copy and write ``model.json``, ``metrics.json`` and ``MODEL_CARD.md``."""

from __future__ import annotations

import time
from pathlib import Path

from cellscale.segment.baseline import otsu_watershed
from cellscale.segment.metrics import summarize
from cellscale.segment.model import ModelSpec
from cellscale.segment.predictor import Predictor
from cellscale.train.card import command_line, write_card
from cellscale.train.data import (
    CODEX_TRAIN_X1,
    codex_experts,
    codex_labels_text,
    dataset_hash,
    load_codex,
    load_dsb,
    load_synthetic_tissue,
    split_of,
)
from cellscale.train.evaluate import (
    codex_scores,
    compartment_labels,
    compartment_maps,
    predict_maps,
    score_split,
    tune,
)
from cellscale.train.options import SYNTHETIC, TrainOptions
from cellscale.train.quantize import calibration_images, export_int8


def finish_model(options: TrainOptions, spec: ModelSpec, log=print) -> dict:
    """A nuclear model trained on the DSB2018 folder ``options.data``: tune on its validation split, score
    its test split, write model.json, metrics.json and MODEL_CARD.md into ``options.out``."""
    data, out = Path(options.data), Path(options.out)
    predictor = Predictor(out)
    val = load_dsb(data, "val")
    maps = [predict_maps(predictor, ex.image) for ex in val]
    params, val_result = tune(maps, [ex.labels["nuclear"] for ex in val], log)
    spec.postprocess = {"nuclear": params.to_dict()}
    spec.write(out)
    test = load_dsb(data, "test")
    scores = score_split(Predictor(out), test, params)
    export_int8(out, [ex.image for ex in val], f"DSB2018 validation split ({data.name})")
    spec.int8 = ModelSpec.read(out).int8  # what export_int8 recorded
    int8 = score_split(Predictor(out, precision="int8"), test, params, tile=spec.int8["window"])
    # what the workflow runs on CPUs by default (segment.precision auto, segment.augment rot180)
    default = score_split(Predictor(out, precision="int8", augment="rot180"), test, params, tile=spec.int8["window"])
    for kind, res in int8.items():
        scores[kind]["int8"] = res["model"]
        scores[kind]["int8_rot180"] = default[kind]["model"]
    files = [p for sub in ("images", "masks") for p in (data / sub).iterdir()
             if split_of(p.name.split(".")[0]) == "train"]
    record = {
        "model": spec.name,
        "trained": time.strftime("%Y-%m-%d"),
        "command": command_line(),
        "training_data": str(data.name),
        "training_data_sha256": dataset_hash(files),
        "training_files": len(files),
        "parameters": int(predictor.model.count_params()),
        "validation": val_result,
        "note": options.note,
        "test": scores,
    }
    write_card(out, spec, record)
    log(f"test (all kinds): model F1 {scores['all']['model']['f1']:.3f} AP {scores['all']['model']['ap']:.3f}; "
        f"baseline F1 {scores['all']['baseline']['f1']:.3f} AP {scores['all']['baseline']['ap']:.3f}")
    return record


def finish_tissue_model(options: TrainOptions, spec: ModelSpec, log=print) -> dict:
    """A nuclear + whole-cell model trained on generated tissue (and perhaps the CODEX tile): tune and score it
    on generated validation and test tissue (and the tile's held-out columns); write its card."""
    out = Path(options.out)
    predictor = Predictor(out)
    style = options.style
    val = load_synthetic_tissue(max(4, options.images // 4), "val", options.seed, style)
    test = load_synthetic_tissue(max(4, options.images // 4), "test", options.seed, style)
    val_maps = [predict_maps(predictor, ex.image) for ex in val]
    test_maps = [predict_maps(predictor, ex.image) for ex in test]
    tuned, scores = {}, {}
    for i, comp in enumerate(spec.compartments):
        params, _ = tune([compartment_maps(m, i) for m in val_maps], [ex.labels[comp] for ex in val], log)
        tuned[comp] = params.to_dict()
        pairs = [(ex.labels[comp], compartment_labels(m, params, i)) for ex, m in zip(test, test_maps)]
        scores[comp] = {"model": summarize(pairs)}
        if comp == "nuclear":
            scores[comp]["baseline"] = summarize((ex.labels[comp], otsu_watershed(ex.image[0])) for ex in test)
    data = f"generated tissue (cellscale.synth.tissue, {style}), {options.images} images, seed {options.seed}"
    if options.codex:
        codex = Path(options.codex)
        held_out = load_codex(codex, "test")[0]
        maps = predict_maps(predictor, held_out.image)
        wc = spec.compartments.index("whole_cell")
        # tuned on the training columns against each expert's own cells (what the held-out score
        # measures), not against their union: the experts draw cells of different sizes
        train_maps = compartment_maps(predict_maps(predictor, load_codex(codex, "train")[0].image), wc)
        experts = codex_experts(codex, "train")
        params, _ = tune([train_maps] * len(experts), experts, log)
        tuned["whole_cell"] = params.to_dict()
        ours = compartment_labels(maps, params, wc)
        scores["codex_held_out"] = codex_scores(codex, ours)
        data += (f"; CODEX {codex.name} columns < {CODEX_TRAIN_X1} ({codex_labels_text(options.labellings)}), "
                 f"SHA-256 `{dataset_hash([p for p in codex.iterdir() if p.is_file()])}`")
    spec.postprocess = tuned
    spec.write(out)
    export_int8(out, *calibration_images(SYNTHETIC, options.codex, options.seed))
    spec.int8 = ModelSpec.read(out).int8  # what export_int8 recorded
    if "codex_held_out" in scores:
        int8 = {}
        for name, augment in (("cellscale int8 + rot180 (workflow default)", "rot180"), ("cellscale int8", "none")):
            maps = predict_maps(Predictor(out, precision="int8", augment=augment), held_out.image,
                                tile=spec.int8["window"])
            int8[name] = codex_scores(codex, compartment_labels(maps, params, wc))["cellscale"]
        scores["codex_held_out"] = {**int8, **scores["codex_held_out"]}
    record = {"model": spec.name, "trained": time.strftime("%Y-%m-%d"), "command": command_line(),
              "training_data": data, "parameters": int(predictor.model.count_params()),
              "note": options.note, "test": scores}
    write_card(out, spec, record)
    log("test: " + ", ".join(f"{c} F1 {s['model']['f1']:.3f}" for c, s in scores.items() if "model" in s))
    return record
