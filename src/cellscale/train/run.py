"""``cellscale train``: fit, tune, evaluate and write the model card."""

from __future__ import annotations

import time
from pathlib import Path

from cellscale import train as T
from cellscale.segment.model import ModelSpec

SYNTHETIC = "synthetic-tissue"


def _log(msg: str) -> None:
    print(f"[train {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def codex_labellings(args) -> list[str]:
    """The CODEX labellings a training run asked for (``--codex-labels``, or ``--codex-first N``)."""
    if getattr(args, "codex_labels", None):
        return list(args.codex_labels)
    return [f"expert{n}" for n in (getattr(args, "codex_first", None) or [1])]


def tissue_style(args) -> str:
    """The generated tissue a run trains and is scored on (``--tissue-style``; sparse before it existed)."""
    return getattr(args, "tissue_style", None) or "sparse"


def run_training(args) -> int:
    synthetic = args.data == SYNTHETIC
    codex = getattr(args, "codex", None)
    if codex and not synthetic:
        raise ValueError(f"--codex adds whole-cell labels, for a nuclear + membrane model: use it with --data "
                         f"{SYNTHETIC}, not {args.data}")
    if getattr(args, "tissue_style", None) and not synthetic:
        raise ValueError(f"--tissue-style chooses the generated tissue: use it with --data {SYNTHETIC}, "
                         f"not {args.data}")
    share = getattr(args, "codex_share", None)
    if not codex and (getattr(args, "codex_labels", None) or getattr(args, "codex_first", None)
                      or share is not None):
        raise ValueError("--codex-labels / --codex-first / --codex-share choose how the CODEX tile is used: "
                         "they need --codex")
    if synthetic:
        spec = ModelSpec(name=Path(args.out).name, inputs=["nuclear", "membrane"],
                         compartments=["nuclear", "whole_cell"], base_filters=args.base_filters,
                         depth=args.depth, tile_multiple=2**args.depth)
        train = T.load_synthetic_tissue(args.images, "train", args.seed, tissue_style(args))
        if codex:
            train += T.codex_training_examples(codex, codex_labellings(args), len(train), share)
    else:
        data = Path(args.data)
        if not (data / "index.csv").exists():
            raise FileNotFoundError(f"{data}: not a DSB2018 folder (no index.csv) and not {SYNTHETIC!r}")
        spec = ModelSpec(name=Path(args.out).name, inputs=["nuclear"], compartments=["nuclear"],
                         base_filters=args.base_filters, depth=args.depth, tile_multiple=2**args.depth)
        train = T.load_dsb(data, "train")
    _log(f"{len(train)} training images from {args.data}")
    ckpt = T.fit(spec, train, args.run_dir, steps=args.steps, batch=args.batch, tile=args.tile,
                 lr=args.lr, seed=args.seed, log=_log, init_from=args.init_from, workers=args.workers)
    T.export(ckpt, spec, args.out)
    _log(f"exported to {args.out}")
    if args.fit_only:
        _log("--fit-only: rerun without it (same --run-dir) to tune, score and write the model card")
        return 0
    from cellscale import evaluation

    if synthetic:
        evaluation.finish_tissue_model(args, spec, log=_log)
    else:
        evaluation.finish_model(args, spec, Path(args.data), log=_log)
    return 0


