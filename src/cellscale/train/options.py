"""What a training or quantisation run was asked to do: typed, frozen and checked once.

:class:`TrainOptions` holds every ``cellscale train`` option and :class:`QuantizeOptions` every
``cellscale quantize`` one; the library takes these, never argparse's namespace. Only the command
line (:mod:`cellscale.cli`) builds them from its namespace (``from_args``). The standard library
(and :mod:`cellscale.datasets`, which needs no more) only: the command line imports this module before numpy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from cellscale.datasets import is_dataset, is_ref, load_version

SYNTHETIC = "synthetic-tissue"  # --data for generated tissue (a nuclear + whole-cell model)


def log(msg: str) -> None:
    """The training log line: ``[train HH:MM:SS] msg``."""
    print(f"[train {time.strftime('%H:%M:%S')}] {msg}", flush=True)


@dataclass(frozen=True)
class TrainOptions:
    """A ``cellscale train`` run (see ``cellscale train --help`` for each option).

    ``codex_labels`` is ``--codex-labels``, or ``--codex-first N`` spelt as ``expertN``;
    ``None`` (and ``tissue_style`` ``None``) mean the option was not given. Options that
    would be ignored are errors (:class:`ValueError`).
    """

    data: str
    out: str
    run_dir: str
    steps: int = 3000
    batch: int = 8
    tile: int = 256
    base_filters: int = 16
    depth: int = 4
    lr: float = 2e-3
    init_from: str | None = None
    seed: int = 0
    images: int = 24
    tissue_style: str | None = None
    codex: str | None = None
    codex_labels: tuple[str, ...] | None = None
    codex_share: float | None = None
    note: str | None = None
    workers: int = 0
    fit_only: bool = False

    def __post_init__(self) -> None:
        if self.tile % 2 ** self.depth:   # the U-Net halves the crop --depth times
            raise ValueError(f"--tile {self.tile}: not a multiple of {2 ** self.depth} px (2 ** --depth "
                             f"{self.depth}: the network halves the crop --depth times)")
        if self.version:  # a dataset version: it must exist (checked before the network libraries load)
            manifest = load_version(self.data)
            object.__setattr__(self, "_tissue_version", "whole_cell" in manifest.compartments)
            if self.tissue_style and manifest.metadata.get("generator"):
                raise ValueError(f"--tissue-style: {self.data} is generated tissue whose generator fixes the style "
                                 f"({manifest.metadata['generator'].get('style')})")
        if self.codex_version:
            load_version(self.codex)
        if self.codex and not self.synthetic:
            raise ValueError(f"--codex adds whole-cell labels, for a nuclear + membrane model: use it with --data "
                             f"{SYNTHETIC}, not {self.data}")
        if self.tissue_style and not self.synthetic:
            raise ValueError(f"--tissue-style chooses the generated tissue: use it with --data {SYNTHETIC}, "
                             f"not {self.data}")
        if not self.codex and (self.codex_labels or self.codex_share is not None):
            raise ValueError("--codex-labels / --codex-first / --codex-share choose how the CODEX tile is used: "
                             "they need --codex")

    @property
    def synthetic(self) -> bool:
        """A nuclear + whole-cell model's data (generated tissue, or a version with whole-cell labels), not a
        DSB2018 folder or version (a nuclear one)."""
        return self.data == SYNTHETIC or bool(getattr(self, "_tissue_version", False))

    @property
    def version(self) -> bool:
        """``--data`` names a dataset version (``NAME@ID``, ``NAME@latest``, or a bare ``NAME`` of the store that
        is no DSB2018 folder here: its latest version), not a folder or a keyword."""
        return is_ref(self.data) or (self.data != SYNTHETIC and not (Path(self.data) / "index.csv").exists()
                                     and is_dataset(self.data))

    @property
    def codex_version(self) -> bool:
        """``--codex`` names a dataset version of the CODEX tile, not its folder."""
        return bool(self.codex) and is_ref(self.codex)

    @property
    def style(self) -> str:
        """The generated tissue the run trains and is scored on (sparse when not chosen)."""
        return self.tissue_style or "sparse"

    @property
    def labellings(self) -> list[str]:
        """The CODEX whole-cell labellings the run trains on (expert 1's when not chosen)."""
        return list(self.codex_labels) if self.codex_labels else ["expert1"]

    @classmethod
    def from_args(cls, args) -> TrainOptions:
        """The options of ``cellscale train``'s parsed namespace (for :mod:`cellscale.cli` only)."""
        if args.codex_labels:
            labels = tuple(args.codex_labels)
        elif args.codex_first:
            labels = tuple(f"expert{n}" for n in args.codex_first)
        else:
            labels = None
        return cls(data=args.data, out=args.out, run_dir=args.run_dir, steps=args.steps, batch=args.batch,
                   tile=args.tile, base_filters=args.base_filters, depth=args.depth, lr=args.lr,
                   init_from=args.init_from, seed=args.seed, images=args.images, tissue_style=args.tissue_style,
                   codex=args.codex, codex_labels=labels, codex_share=args.codex_share, note=args.note,
                   workers=args.workers, fit_only=args.fit_only)


@dataclass(frozen=True)
class QuantizeOptions:
    """A ``cellscale quantize`` run: the int8 copy of the model in ``model``, calibrated on ``data``'s
    validation images (and, for generated tissue, the CODEX tile in ``codex``)."""

    model: str
    data: str
    codex: str | None = None
    window: int = 512
    seed: int = 0

    @classmethod
    def from_args(cls, args) -> QuantizeOptions:
        """The options of ``cellscale quantize``'s parsed namespace (for :mod:`cellscale.cli` only)."""
        return cls(model=args.model, data=args.data, codex=args.codex, window=args.window, seed=args.seed)
