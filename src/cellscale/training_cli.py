"""``cellscale train``: fit, tune, evaluate and write the model card."""

from __future__ import annotations

import json
import time
from pathlib import Path

from . import train as T
from .model import ModelSpec


def _log(msg: str) -> None:
    print(f"[train {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_training(args) -> int:
    data = Path(args.data)
    spec = ModelSpec(name=Path(args.out).name, inputs=["nuclear"], compartments=["nuclear"],
                     base_filters=args.base_filters, depth=args.depth, tile_multiple=2**args.depth)
    train = T.load_dsb(data, "train")
    _log(f"{len(train)} training images from {data}")
    ckpt = T.fit(spec, train, args.run_dir, steps=args.steps, batch=args.batch, tile=args.tile,
                 lr=args.lr, seed=args.seed, log=_log)
    T.export(ckpt, spec, args.out)
    _log(f"exported to {args.out}")
    from .evaluation import finish_model

    finish_model(args, spec, data, log=_log)
    return 0
