"""The ``cellscale`` command line: single steps for users, the same code the workflow runs."""

from __future__ import annotations

import argparse
import sys


def _train(args) -> int:
    from .training_cli import run_training

    return run_training(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cellscale", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a segmentation model and write it with its model card",
                       description="Train the U-Net (inner distance + 3-class heads) on DSB2018 nuclei or on "
                                   "generated tissue, resumable from --run-dir, then tune post-processing on the "
                                   "validation split, score the test split against the Otsu baseline and write "
                                   "model.keras, model.json and MODEL_CARD.md into --out.")
    p.add_argument("--data", required=True, help="DSB2018 folder (images/, masks/, index.csv) or 'synthetic-tissue'")
    p.add_argument("--out", required=True, help="model folder to write")
    p.add_argument("--run-dir", required=True, help="folder for checkpoints (rerun to resume)")
    p.add_argument("--steps", type=int, default=3000, help="training steps (batches)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--tile", type=int, default=256, help="training crop size")
    p.add_argument("--base-filters", type=int, default=16)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
