"""Step of the rule ``tile``: cut a sample into normalised windows, shard by shard."""

from __future__ import annotations

import logging

import numpy as np

from cellscale.io import ImageError, atomic_dir
from cellscale.segment.model import ModelSpec
from cellscale.segment.settings import TilingSettings
from cellscale.segment.tiles import TilePlan, make_plan, shard_tiles
from cellscale.steps import StepError, _fail

log = logging.getLogger("cellscale")
from cellscale.steps import open_sample_image


def tile_sample(sample: str, image_path, out_dir, roles: dict, model_dir, *, tiling: TilingSettings | None = None,
                timelapse: bool = False, pixel_size_um: float | None = None, gamma: float = 1.0,
                scale: float | None = None) -> TilePlan:
    """Write ``plan.json`` and ``shard_NNNN.npy`` (normalised windows) into ``out_dir``.

    ``tiling``: window edge, overlap and megapixels per shard (config ``tiling``; None: the schema's defaults).
    The other arguments are the sample sheet's. The image is read region by region, one shard at a time, and
    resampled by ``scale`` (model pixels per image pixel) when given, else to the model's pixel size when both
    sizes are known.
    """
    from cellscale.segment.tiles import resampling_scale

    tiling = tiling or TilingSettings()
    spec = ModelSpec.read(model_dir)
    try:
        scale = resampling_scale(pixel_size_um, spec.pixel_size_um, scale)
    except ValueError as err:
        _fail(sample, image_path, str(err))
    with open_sample_image(sample, image_path, timelapse) as source:
        try:
            plan, recipe = make_plan(source, roles, spec.inputs, tiling.tile, tiling.overlap, spec.tile_multiple,
                                     tiling.shard_mpx, scale, gamma)
        except ValueError as err:
            _fail(sample, image_path, str(err))
        with atomic_dir(out_dir) as tmp_dir:
            for shard in range(len(plan.shards)):
                try:
                    tiles = shard_tiles(source, recipe, plan, shard)
                except ImageError as err:
                    raise StepError(f"sample {sample!r}: {err}") from None
                np.save(tmp_dir / f"shard_{shard:04d}.npy", tiles)
                log.info("tile %s: shard %d/%d written", sample, shard + 1, len(plan.shards))
            plan.write(tmp_dir / "plan.json")
    return plan
