"""``cellscale train``: fit, tune, evaluate and write the model card."""

from __future__ import annotations

import time
from pathlib import Path

from . import train as T
from .model import ModelSpec

SYNTHETIC = "synthetic-tissue"


def _log(msg: str) -> None:
    print(f"[train {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_training(args) -> int:
    synthetic = args.data == SYNTHETIC
    if synthetic:
        spec = ModelSpec(name=Path(args.out).name, inputs=["nuclear", "membrane"],
                         compartments=["nuclear", "whole_cell"], base_filters=args.base_filters,
                         depth=args.depth, tile_multiple=2**args.depth)
        train = T.load_synthetic_tissue(args.images, "train", args.seed)
        if getattr(args, "codex", None):
            # one real tile: repeat it so real and generated crops are drawn about equally often
            train += T.load_codex(args.codex, "train") * len(train)
    else:
        data = Path(args.data)
        if not (data / "index.csv").exists():
            raise FileNotFoundError(f"{data}: not a DSB2018 folder (no index.csv) and not {SYNTHETIC!r}")
        spec = ModelSpec(name=Path(args.out).name, inputs=["nuclear"], compartments=["nuclear"],
                         base_filters=args.base_filters, depth=args.depth, tile_multiple=2**args.depth)
        train = T.load_dsb(data, "train")
    _log(f"{len(train)} training images from {args.data}")
    ckpt = T.fit(spec, train, args.run_dir, steps=args.steps, batch=args.batch, tile=args.tile,
                 lr=args.lr, seed=args.seed, log=_log)
    T.export(ckpt, spec, args.out)
    _log(f"exported to {args.out}")
    from . import evaluation

    if synthetic:
        evaluation.finish_tissue_model(args, spec, log=_log)
    else:
        evaluation.finish_model(args, spec, Path(args.data), log=_log)
    return 0
