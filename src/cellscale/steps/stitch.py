"""Step of the rule ``stitch``: blend a sample's predicted windows and post-process them block by block."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from cellscale.io import write_labels
from cellscale.segment.model import CHANNELS_PER_COMPARTMENT, ModelSpec
from cellscale.segment.postprocess import postprocess_params
from cellscale.segment.settings import PostprocessSettings
from cellscale.segment.stitch import frame_labels
from cellscale.segment.tiles import TilePlan

log = logging.getLogger("cellscale")


def stitch_sample(plan_path, shard_maps: list, model_dir, compartment: str, out_path,
                  postprocess: PostprocessSettings | None = None, pixel_size_um: float | None = None,
                  workers: int = 1) -> np.ndarray:
    """Blend predicted windows and post-process block by block into one 32-bit label image.

    ``postprocess`` (config ``postprocess``; None: the schema's defaults): block edge, margin and overrides
    of the model's tuned values. Shard predictions are memory-mapped: only the windows around the current
    block are read. ``workers`` threads post-process blocks at once (same result).
    """
    postprocess = postprocess or PostprocessSettings()
    plan = TilePlan.read(plan_path)
    spec = ModelSpec.read(model_dir)
    if compartment not in spec.compartments:
        raise ValueError(f"model {spec.name} has no {compartment!r} output (has {spec.compartments})")
    params = postprocess_params(spec, postprocess.overrides)[compartment]
    by_name = {Path(p).name: p for p in shard_maps}
    where = {}
    arrays = []
    for shard, indices in enumerate(plan.shards):
        path = by_name.get(f"shard_{shard:04d}.npy")
        if path is None:
            raise FileNotFoundError(f"{plan_path}: prediction for shard {shard} is missing")
        arrays.append(np.load(path, mmap_mode="r"))
        where.update((i, (shard, k)) for k, i in enumerate(indices))

    def read_tile(i):
        shard, k = where[i]
        return arrays[shard][k]

    channel = CHANNELS_PER_COMPARTMENT * spec.compartments.index(compartment)
    frames = []
    for frame in range(plan.shape[0]):
        frames.append(frame_labels(plan, read_tile, frame, channel, params, postprocess.block, postprocess.margin,
                                   workers))
        log.info("stitch %s: frame %d/%d, %d cells", compartment, frame + 1, plan.shape[0], frames[-1].max())
    from cellscale.segment.tiles import to_source_grid

    labels = to_source_grid(frames[0] if plan.shape[0] == 1 else np.stack(frames), plan.source_shape, plan.scale)
    write_labels(out_path, labels, pixel_size_um)
    return labels
