"""The model card: ``MODEL_CARD.md`` and ``metrics.json`` of a trained model, one writer for both kinds.

A nuclear model (one ``nuclear`` compartment, trained on DSB2018) and a tissue model (``nuclear`` and
``whole_cell``, trained on generated tissue and perhaps the CODEX tile) share the card's frame: title,
summary, training data with the command, note and date, the tuned post-processing, the held-out
scores and the limits. What differs between them is a :class:`CardKind` (:data:`NUCLEAR`, :data:`TISSUE`).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cellscale.datasets import Manifest
from cellscale.segment.model import ModelSpec


def command_line() -> str:
    """The ``cellscale train`` command of this process, for the model card (``--note``'s text is the card's own
    line, so it is left out)."""
    args = sys.argv[1:]
    if "--note" in args:
        i = args.index("--note")
        del args[i:i + 2]
    args = [a for a in args if not a.startswith("--note=")]
    return " ".join(["cellscale", *args]) if args else "cellscale train"


def write_card(model_dir: str | os.PathLike, spec: ModelSpec, record: dict) -> None:
    """Write ``record`` as ``metrics.json`` and its card as ``MODEL_CARD.md`` into ``model_dir``."""
    model_dir = Path(model_dir)
    (model_dir / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
    (model_dir / "MODEL_CARD.md").write_text(model_card(spec, record))


def model_card(spec: ModelSpec, record: dict) -> str:
    """The markdown card of a model (``spec``, with its tuned post-processing) and its ``metrics.json`` record."""
    kind = TISSUE if "whole_cell" in spec.compartments else NUCLEAR
    lines = [
        f"# Model card: {spec.name}",
        "",
        *kind.summary(spec, record),
        "",
        "## Training data",
        *kind.data(record),
        *object_size_lines(spec),
        *lineage_lines(record),
        f"- command: `{record['command']}`",
        *([f"- note: {record['note']}"] if record.get("note") else []),
        f"- trained on {record['trained']}",
        "",
        f"## Post-processing ({kind.tuned_on(record)})",
        "```json",
        json.dumps(spec.postprocess, indent=2),
        "```",
        "",
        *kind.results(spec, record["test"]),
        "",
        *caveat_lines(record),
        *rescored_lines(record.get("rescored")),
        *comparison_lines(record.get("comparison")),
        "## Limits",
        kind.limits(record),
        "",
    ]
    return "\n".join(lines)


def object_size_lines(spec: ModelSpec) -> list[str]:
    """What the training images' objects measure (``object_sizes``: what ``scale: auto`` compares with)."""
    return [f"- {comp} object sizes (`scale: auto` compares an image's with them): median diameter per training "
            f"image, over the {v['images']} images {v['median_px']:g} px (25th-75th percentile {v['p25_px']:g}-"
            f"{v['p75_px']:g} px, 10th-90th {v['p10_px']:g}-{v['p90_px']:g} px); {v['source']}"
            for comp, v in (spec.object_sizes or {}).items()]


def lineage_lines(record: dict) -> list[str]:
    """The card's lines naming the dataset version(s) and the model it was fine-tuned from."""
    lines = []
    if record.get("dataset"):
        lines.append(f"- dataset version: `{record['dataset']}` (`cellscale data show {record['dataset']}`)")
    if record.get("codex_dataset"):
        lines.append(f"- CODEX tile version: `{record['codex_dataset']}`")
    parent = record.get("fine_tuned_from")
    if parent:
        card = f", its card's SHA-256 `{parent['card_sha256']}`" if parent.get("card_sha256") else ""
        lines.append(f"- fine-tuned from: `{parent['model']}` ({parent['path']}{card})")
    return lines


def caveat_lines(record: dict) -> list[str]:
    """What the held-out figures above are not (``caveats``: lines added to a record after an audit)."""
    lines = list(record.get("caveats") or [])
    return [*("- " + line for line in lines), ""] if lines else []


def rescored_lines(rescored: list[dict] | None) -> list[str]:
    """The card's figures scored again later with the shipped weights and post-processing (``benchmarks/rescore.py``),
    next to the card's own: each rescoring dated, with the software it ran on. The card's figures stay as they were
    measured."""
    lines = []
    for r in rescored or []:
        lines += [f"## Rescored on {r['date']} with {r['stack']}",
                  f"`{r['command']}` (code at {r['code']}); the same weights, post-processing and held-out data.",
                  "", "| figure | card | rescored |", "|---|---|---|"]
        lines += [f"| {what} | {'-' if card is None else f'{card:.3f}'} | {today:.3f} |"
                  for what, card, today in r["rows"]]
        lines += [*(["", r["note"]] if r.get("note") else []), ""]
    return lines


def comparison_lines(comparison: dict | None) -> list[str]:
    """The section comparing a fine-tuned model with its parent on the same held-out data (none without one)."""
    if not comparison:
        return []
    lines = [f"## Compared with the parent model, {comparison['parent']}",
             f"Both scored here (float32, each with its own tuned post-processing) on the same held-out data: "
             f"{comparison['held_out']}.", "",
             "| held-out | parent F1 | new F1 | parent AP | new AP |", "|---|---|---|---|---|"]

    def cell(res, key):
        return f"{res[key]:.3f}" if key in res else "-"

    for what, pair in comparison["rows"].items():
        p, n = pair["parent"], pair["new"]
        lines.append(f"| {what} | {cell(p, 'f1')} | {cell(n, 'f1')} | {cell(p, 'ap')} | {cell(n, 'ap')} |")
    return [*lines, ""]


@dataclass(frozen=True)
class CardKind:
    """The parts of a card that depend on the kind of model.

    summary(spec, record): the lines before "## Training data"; data(record): the first lines of that
    section (what was trained on); tuned_on(record): what the post-processing was tuned on; results(spec, test):
    the held-out scores' sections; limits(record): the line under "## Limits".
    """

    summary: Callable[[ModelSpec, dict], list[str]]
    data: Callable[[dict], list[str]]
    tuned_on: Callable[[dict], str]
    results: Callable[[ModelSpec, dict], list[str]]
    limits: Callable[[dict], str]


def _nuclear_summary(spec: ModelSpec, record: dict) -> list[str]:
    return [
        ("Nuclear segmentation U-Net (separable convolutions, base "
         f"{spec.base_filters} filters, depth {spec.depth}, {record['parameters']:,} parameters) with two heads "
         "per compartment: inner distance (sigmoid) and background/boundary/interior (softmax), as in DeepCell's "
         "Mesmer. Post-processing: regions of the smoothed inner distance above a threshold as markers, "
         "watershed inside the foreground, block by block with overlap."),
        "",
        "## Inputs and outputs",
        (f"- inputs: {', '.join(spec.inputs)} channel(s), each scaled so its 1st-99.8th percentile maps to 0-1 "
         "over the whole image; colour images are turned into one inverted-luminance nuclear channel"),
        f"- outputs: {', '.join(spec.compartments)}; window edge a multiple of {spec.tile_multiple} px",
        "- resolution: as DSB2018 (mixed, about 0.2-0.6 um/px; trained with 0.6-1.7x scale augmentation)",
    ]


def _nuclear_data(record: dict) -> list[str]:
    if "@" in record["training_data"]:  # a dataset version: its manifest says each file's split
        return [f"- {record['training_data']}: the training split of that dataset version (each file's split is "
                f"in its manifest)",
                (f"- {record['training_files']} training files (images and their masks), SHA-256 of their names "
                 f"and bytes: `{record['training_data_sha256']}`")]
    return [
        (f"- {record['training_data']}: DSB2018 stage1_train with community mask fixes (CC0; Caicedo et al., "
         "Nature Methods 2019); the split is fixed by a hash of each image id (80% train, 10% val, 10% test)"),
        (f"- {record['training_files']} training files (images and their masks), SHA-256 of their names and bytes: "
         f"`{record['training_data_sha256']}`"),
    ]


def _nuclear_results(spec: ModelSpec, test: dict) -> list[str]:
    lines = [
        "## Held-out test split (images never used for training or tuning)",
        "Object F1 at IoU 0.5 (pooled over images) and DSB mean AP over IoU 0.5-0.95 (mean over images).",
        "",
        "| kind | images | model F1 | model AP | Otsu+watershed F1 | Otsu+watershed AP |",
        "|---|---|---|---|---|---|",
    ]
    for kind, res in test.items():
        m, b = res["model"], res["baseline"]
        lines.append(f"| {kind} | {m['images']} | {m['f1']:.3f} | {m['ap']:.3f} | {b['f1']:.3f} | {b['ap']:.3f} |")
    if spec.int8 and all("int8" in res for res in test.values()):
        lines += ["",
                  (f"The 8-bit copy (`{spec.int8['artifact']}`, {spec.int8['window']}-px windows, calibrated "
                   "on the validation split), same test images; \"+ rot180\" is the workflow's default on CPUs "
                   "(`segment.augment: rot180`: each window's maps averaged with those of its half turn):"),
                  "",
                  "| kind | int8 F1 | int8 AP | int8 + rot180 F1 | int8 + rot180 AP |", "|---|---|---|---|---|"]
        for kind, res in test.items():
            aug = res.get("int8_rot180")  # absent from cards written before augmentation existed
            lines.append(f"| {kind} | {res['int8']['f1']:.3f} | {res['int8']['ap']:.3f} | "
                         + (f"{aug['f1']:.3f} | {aug['ap']:.3f} |" if aug else "- | - |"))
    return lines


NUCLEAR = CardKind(
    summary=_nuclear_summary,
    data=_nuclear_data,
    tuned_on=lambda record: "tuned on the validation split",
    results=_nuclear_results,
    limits=lambda record: ("- a small network (kept fast enough for 2 Mpx/s on 2 CPU cores), trained for a limited "
                         "number of steps (the note says where); tissue whole-cell segmentation needs a nuclear + "
                         "membrane model"),
)


def _tissue_summary(spec: ModelSpec, record: dict) -> list[str]:
    return [(f"Nuclear + whole-cell U-Net (base {spec.base_filters}, depth {spec.depth}, "
             f"{record['parameters']:,} parameters); inputs: nuclear and membrane channels, each scaled so its "
             "1st-99.8th percentile maps to 0-1; outputs per compartment: inner distance and "
             "background/boundary/interior.")]


def _tissue_results(spec: ModelSpec, test: dict) -> list[str]:
    lines = ["## Held-out generated tissue", "",
             "| compartment | images | model F1 | model AP | Otsu+watershed F1 |", "|---|---|---|---|---|"]
    for comp, res in test.items():
        if comp == "codex_held_out":
            continue
        m, b = res["model"], res.get("baseline")
        lines.append(f"| {comp} | {m['images']} | {m['f1']:.3f} | {m['ap']:.3f} | "
                     + (f"{b['f1']:.3f} |" if b else "- |"))
    shipped = test.get("whole_cell", {}).get("shipped")
    if shipped:
        lines.append(f"| whole_cell, shipped settings | {shipped['images']} | {shipped['f1']:.3f} | "
                     f"{shipped['ap']:.3f} | - |")
    if "codex_held_out" in test:
        lines += ["", ("The whole_cell row: settings tuned on generated validation tissue; "
                       + ("\"shipped settings\": the whole-cell settings above, tuned on the CODEX training columns."
                          if shipped else "not the shipped whole-cell settings above (tuned on the CODEX training "
                          "columns), which this card did not score on generated tissue."))]
    if spec.int8:
        lines += ["", f"The 8-bit copy (`{spec.int8['artifact']}`, {spec.int8['window']}-px windows) was calibrated "
                      f"on {spec.int8['calibration']}."]
    if "codex_held_out" in test:
        lines += ["", "## Real tissue: CODEX R001_X003_Y004, held-out columns >= 1008",
                  "Whole-cell F1 at IoU 0.5 against each expert, next to the other tools' masks on the same columns.",
                  "", "| method | F1 vs expert 1 | F1 vs expert 2 |", "|---|---|---|"]
        lines += [f"| {name} | {v[0]:.3f} | {v[1]:.3f} |" for name, v in test["codex_held_out"].items()]
    return lines


TISSUE = CardKind(
    summary=_tissue_summary,
    data=lambda record: [f"- {record['training_data']}; validation and test images use disjoint seed ranges"],
    tuned_on=lambda record: _tissue_tuned_on(record),
    results=_tissue_results,
    limits=lambda record: _tissue_limits(record),
)


def _tissue_tuned_on(record: dict) -> str:
    """A model trained with --codex ships whole-cell settings tuned on the tile's training columns (see
    cellscale.train.finish.finish_tissue_model); the others tune both compartments on the validation images."""
    if "codex_held_out" in record["test"]:
        return ("nuclear: tuned on generated validation tissue; whole cell: on the CODEX tile's training columns "
                "(< 960) against each expert's cells")
    return "nuclear and whole cell: tuned on the validation images: generated validation seeds, files of split val"


def _tissue_limits(record: dict) -> str:
    if "codex_held_out" in record["test"]:
        return "- real tissue seen in training: one CODEX tile (lymphoid); other tissues and stains are untested"
    real = [g for g in record.get("training_labels") or [] if not g["generated"]]
    if real:  # e.g. a dataset version with corrected tiles on top of generated tissue
        return ("- real tissue seen in training: " + "; ".join(map(Manifest.annotation_text, real))
                + "; other tissues and stains are untested")
    return "- trained only on generated tissue: a starting point for the demo and tests, not for real tissue"
