"""Typed settings of the segmentation stages: the config sections ``tiling``, ``segment`` and ``postprocess``.

Defaults come from the packaged config schema (:mod:`cellscale.settings`), the one place they are written;
``from_dict`` builds them from a config section and names any key the schema does not declare.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from cellscale.settings import Settings, default

__all__ = ["PostprocessSettings", "SegmentSettings", "TilingSettings"]


@dataclass(frozen=True)
class TilingSettings(Settings):
    """``tiling``: how a sample is cut into model windows, and the windows into shards (one segment job each)."""

    SECTION: ClassVar[str] = "tiling"
    tile: int = default("tiling", "tile")
    overlap: int = default("tiling", "overlap")
    shard_mpx: float = default("tiling", "shard_mpx")


@dataclass(frozen=True)
class SegmentSettings(Settings):
    """``segment``: how the network runs (memory per forward pass, arithmetic, test-time augmentation) and the scale
    of a time-lapse whose sheet gives none (:func:`cellscale.segment.size.default_scale`)."""

    SECTION: ClassVar[str] = "segment"
    batch_mpx: float = default("segment", "batch_mpx")
    precision: str = default("segment", "precision")
    augment: str = default("segment", "augment")
    timelapse_scale: float | str = default("segment", "timelapse_scale")


@dataclass(frozen=True)
class PostprocessSettings(Settings):
    """``postprocess``: the block-wise watershed (block edge, context margin, overrides of the model's values)."""

    SECTION: ClassVar[str] = "postprocess"
    block: int = default("postprocess", "block")
    margin: int = default("postprocess", "margin")
    overrides: dict = field(default_factory=lambda: default("postprocess", "overrides"))
