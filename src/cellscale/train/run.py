"""``cellscale train`` from start to end: load the data, fit (resumably), export, then tune, score and write the
model card (:mod:`.finish`)."""

from __future__ import annotations

from pathlib import Path

from cellscale.segment.model import ModelSpec
from cellscale.train.data import (
    codex_training_examples,
    load_dsb,
    load_synthetic_tissue,
)
from cellscale.train.finish import finish_model, finish_tissue_model
from cellscale.train.fit import export, fit
from cellscale.train.options import SYNTHETIC, TrainOptions, log


def run_training(options: TrainOptions) -> int:
    """Train the model ``options`` describe into ``options.out`` (checkpoints in ``options.run_dir``)."""
    if options.synthetic:
        spec = ModelSpec(name=Path(options.out).name, inputs=["nuclear", "membrane"],
                         compartments=["nuclear", "whole_cell"], base_filters=options.base_filters,
                         depth=options.depth, tile_multiple=2**options.depth)
        train = load_synthetic_tissue(options.images, "train", options.seed, options.style)
        if options.codex:
            train += codex_training_examples(options.codex, options.labellings, len(train), options.codex_share)
    else:
        data = Path(options.data)
        if not (data / "index.csv").exists():
            raise FileNotFoundError(f"{data}: not a DSB2018 folder (no index.csv) and not {SYNTHETIC!r}")
        spec = ModelSpec(name=Path(options.out).name, inputs=["nuclear"], compartments=["nuclear"],
                         base_filters=options.base_filters, depth=options.depth, tile_multiple=2**options.depth)
        train = load_dsb(data, "train")
    log(f"{len(train)} training images from {options.data}")
    ckpt = fit(spec, train, options.run_dir, steps=options.steps, batch=options.batch, tile=options.tile,
               lr=options.lr, seed=options.seed, log=log, init_from=options.init_from, workers=options.workers)
    export(ckpt, spec, options.out)
    log(f"exported to {options.out}")
    if options.fit_only:
        log("--fit-only: rerun without it (same --run-dir) to tune, score and write the model card")
        return 0
    if options.synthetic:
        finish_tissue_model(options, spec, log=log)
    else:
        finish_model(options, spec, log=log)
    return 0
