"""Finishing a fitted model: tune its post-processing on validation images, score it on held-out ones (float32,
int8, int8 + rot180), add the int8 copy and write ``model.json``, ``metrics.json`` and ``MODEL_CARD.md``."""

from __future__ import annotations

import time
from pathlib import Path

from cellscale.segment.baseline import otsu_watershed
from cellscale.segment.metrics import summarize
from cellscale.segment.model import ModelSpec
from cellscale.segment.postprocess import PostprocessParams
from cellscale.segment.predictor import Predictor
from cellscale.train.card import command_line, write_card
from cellscale.train.data import (
    CODEX_TRAIN_X1,
    codex_experts,
    codex_labels_text,
    dataset_hash,
    load_codex,
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
from cellscale.train.versions import TrainingSet, training_set


def lineage_fields(lineage: dict | None, data: TrainingSet) -> dict:
    """The card's ``dataset`` (``NAME@ID``, None for a legacy ``--data``), ``codex_dataset`` and
    ``fine_tuned_from`` fields."""
    lineage = lineage or {}
    out = {"dataset": data.dataset}
    if lineage.get("codex_dataset"):
        out["codex_dataset"] = lineage["codex_dataset"]
    if lineage.get("parent"):
        out["fine_tuned_from"] = lineage["parent"]
    return out


def _pair(new: dict, old: dict) -> dict:
    return {"parent": {k: old[k] for k in ("f1", "ap") if k in old},
            "new": {k: new[k] for k in ("f1", "ap") if k in new}}


def finish_model(options: TrainOptions, spec: ModelSpec, log=print, data: TrainingSet | None = None,
                 lineage: dict | None = None) -> dict:
    """A nuclear model trained on ``options.data`` (a DSB2018 folder or a dataset version): tune on its validation
    split, score its test split, write model.json, metrics.json and MODEL_CARD.md into ``options.out``; a model
    fine-tuned from another (``lineage``) is compared with it on the same test split."""
    data = data or training_set(options)
    out = Path(options.out)
    predictor = Predictor(out, precision="float32", augment="none")
    val = data.examples("val")
    maps = [predict_maps(predictor, ex.image) for ex in val]
    params, val_result = tune(maps, [ex.labels["nuclear"] for ex in val], log)
    spec.postprocess = {"nuclear": params.to_dict()}
    spec.write(out)
    test = data.examples("test")
    scores = score_split(Predictor(out, precision="float32", augment="none"), test, params)
    export_int8(out, [ex.image for ex in val], f"DSB2018 validation split ({data.describe()})"
                if data.manifest is None else f"validation split of {data.describe()}")
    spec.int8 = ModelSpec.read(out).int8  # what export_int8 recorded
    int8 = score_split(Predictor(out, precision="int8", augment="none"), test, params, tile=spec.int8["window"])
    # what the workflow runs on CPUs by default (segment.precision auto, segment.augment rot180)
    default = score_split(Predictor(out, precision="int8", augment="rot180"), test, params, tile=spec.int8["window"])
    for kind, res in int8.items():
        scores[kind]["int8"] = res["model"]
        scores[kind]["int8_rot180"] = default[kind]["model"]
    files = data.train_files()
    record = {
        "model": spec.name,
        "trained": time.strftime("%Y-%m-%d"),
        "command": command_line(),
        "training_data": data.describe(),
        "training_data_sha256": dataset_hash(files),
        "training_files": len(files),
        "parameters": int(predictor.model.count_params()),
        "validation": val_result,
        "note": options.note,
        "test": scores,
        **lineage_fields(lineage, data),
    }
    parent_dir = (lineage or {}).get("parent_dir")
    if parent_dir is not None and Path(parent_dir).is_dir():  # the parent, scored here on the same test images
        parent_spec = ModelSpec.read(parent_dir)
        theirs = score_split(Predictor(parent_dir, precision="float32", augment="none"), test,
                             PostprocessParams.from_dict(parent_spec.postprocess.get("nuclear")))
        record["comparison"] = {"parent": lineage["parent"]["model"], "held_out": f"test split of {data.describe()}",
                                "rows": {kind: _pair(scores[kind]["model"], theirs[kind]["model"])
                                         for kind in scores}}
    write_card(out, spec, record)
    log(f"test (all kinds): model F1 {scores['all']['model']['f1']:.3f} AP {scores['all']['model']['ap']:.3f}; "
        f"baseline F1 {scores['all']['baseline']['f1']:.3f} AP {scores['all']['baseline']['ap']:.3f}")
    return record


def finish_tissue_model(options: TrainOptions, spec: ModelSpec, log=print, data: TrainingSet | None = None,
                        lineage: dict | None = None) -> dict:
    """A nuclear + whole-cell model trained on generated tissue or a dataset version (and perhaps the CODEX tile):
    tune and score it on the validation and test images (and the tile's held-out columns); write its card; a model
    fine-tuned from another (``lineage``) is compared with it on the same held-out images."""
    data = data or training_set(options)
    out = Path(options.out)
    predictor = Predictor(out, precision="float32", augment="none")
    style = data.style
    val = data.examples("val")
    test = data.examples("test")
    val_maps = [predict_maps(predictor, ex.image) for ex in val]
    test_maps = [predict_maps(predictor, ex.image) for ex in test]
    tuned, scores = {}, {}
    for i, comp in enumerate(spec.compartments):
        # a version's files may label one compartment only (corrected whole cells): each is tuned and scored on
        # the images that have its labels
        params, _ = tune([compartment_maps(m, i) for ex, m in zip(val, val_maps) if comp in ex.labels],
                         [ex.labels[comp] for ex in val if comp in ex.labels], log)
        tuned[comp] = params.to_dict()
        pairs = [(ex.labels[comp], compartment_labels(m, params, i)) for ex, m in zip(test, test_maps)
                 if comp in ex.labels]
        scores[comp] = {"model": summarize(pairs)}
        if comp == "nuclear":
            scores[comp]["baseline"] = summarize((ex.labels[comp], otsu_watershed(ex.image[0])) for ex in test
                                                 if comp in ex.labels)
    described = (f"generated tissue (cellscale.synth.tissue, {style}), {data.images} images, seed {data.seed}"
                 if data.manifest is None or data.generator else "")
    if data.manifest is not None:
        described = f"{data.describe()}: {described}" if described else data.describe()
    labels_from = data.manifest.annotations() if data.manifest is not None else []
    if len(labels_from) > 1:  # e.g. corrected tiles on top of generated tissue: say whose labels are in it
        described += "; labels: " + ", ".join(map(data.manifest.annotation_text, labels_from))
    codex_folder = (lineage or {}).get("codex") or options.codex
    if codex_folder:
        codex = Path(codex_folder)
        held_out = load_codex(codex, "test")[0]
        maps = predict_maps(predictor, held_out.image)
        wc = spec.compartments.index("whole_cell")
        # tuned on the training columns against each expert's own cells (what the held-out score
        # measures), not against their union: the experts draw cells of different sizes
        train_maps = compartment_maps(predict_maps(predictor, load_codex(codex, "train")[0].image), wc)
        experts = codex_experts(codex, "train")
        params, _ = tune([train_maps] * len(experts), experts, log)
        tuned["whole_cell"] = params.to_dict()
        # the generated test tissue scored again with these, the shipped settings (its row above used the settings
        # tuned on generated validation tissue, which the model does not ship)
        shipped = [(ex.labels["whole_cell"], compartment_labels(m, params, wc)) for ex, m in zip(test, test_maps)
                   if "whole_cell" in ex.labels]
        if shipped:
            scores["whole_cell"]["shipped"] = summarize(shipped)
        ours = compartment_labels(maps, params, wc)
        scores["codex_held_out"] = codex_scores(codex, ours)
        described += (f"; CODEX {codex.name} columns < {CODEX_TRAIN_X1} ({codex_labels_text(options.labellings)}), "
                      f"SHA-256 `{dataset_hash([p for p in codex.iterdir() if p.is_file()])}`")
    spec.postprocess = tuned
    spec.write(out)
    export_int8(out, *calibration_images(SYNTHETIC, codex_folder, data.seed))
    spec.int8 = ModelSpec.read(out).int8  # what export_int8 recorded
    if "codex_held_out" in scores:
        int8 = {}
        for name, augment in (("cellscale int8 + rot180 (workflow default)", "rot180"), ("cellscale int8", "none")):
            maps = predict_maps(Predictor(out, precision="int8", augment=augment), held_out.image,
                                tile=spec.int8["window"])
            int8[name] = codex_scores(codex, compartment_labels(maps, params, wc))["cellscale"]
        scores["codex_held_out"] = {**int8, **scores["codex_held_out"]}
    record = {"model": spec.name, "trained": time.strftime("%Y-%m-%d"), "command": command_line(),
              "training_data": described, "parameters": int(predictor.model.count_params()),
              "note": options.note, "test": scores, **lineage_fields(lineage, data)}
    if labels_from:
        record["training_labels"] = labels_from
    parent_dir = (lineage or {}).get("parent_dir")
    if parent_dir is not None and Path(parent_dir).is_dir():
        record["comparison"] = _compare_tissue(parent_dir, lineage["parent"]["model"], spec, test, scores,
                                               codex if codex_folder else None, data)
    write_card(out, spec, record)
    log("test: " + ", ".join(f"{c} F1 {s['model']['f1']:.3f}" for c, s in scores.items() if "model" in s))
    return record


def _compare_tissue(parent_dir, parent_ref: str, spec: ModelSpec, test, scores: dict, codex: Path | None,
                    data: TrainingSet) -> dict:
    """The parent tissue model scored (float32, its own post-processing) on the same held-out images."""
    parent_spec = ModelSpec.read(parent_dir)
    predictor = Predictor(parent_dir, precision="float32", augment="none")
    maps = [predict_maps(predictor, ex.image) for ex in test]
    rows = {}
    for i, comp in enumerate(spec.compartments):
        params = PostprocessParams.from_dict(parent_spec.postprocess.get(comp))
        theirs = summarize([(ex.labels[comp], compartment_labels(m, params, i)) for ex, m in zip(test, maps)
                            if comp in ex.labels])
        rows[comp] = _pair(scores[comp]["model"], theirs)
    if codex is not None and "codex_held_out" in scores:
        held_out = load_codex(codex, "test")[0]
        wc = parent_spec.compartments.index("whole_cell")
        params = PostprocessParams.from_dict(parent_spec.postprocess.get("whole_cell"))
        theirs = codex_scores(codex, compartment_labels(predict_maps(predictor, held_out.image), params, wc))
        ours = scores["codex_held_out"]["cellscale"]
        for k, name in enumerate(("expert 1", "expert 2")):
            rows[f"CODEX held-out vs {name}"] = {"parent": {"f1": theirs["cellscale"][k]}, "new": {"f1": ours[k]}}
    return {"parent": parent_ref, "held_out": f"test split of {data.describe()}"
            + ("; CODEX columns >= 1008" if codex is not None else ""), "rows": rows}
