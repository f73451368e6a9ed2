"""Steps of the segmentation rules (``rules/segment.smk``): ``tile``, ``segment`` (the GPU step) and ``stitch``.

- :func:`tile_sample` cuts a sample into normalised windows, shard by shard, and writes the tile plan;
- :func:`segment_shard` runs the model on one shard of windows;
- :func:`stitch_sample` blends a sample's predicted windows and post-processes them block by block into one
  32-bit label image.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from cellscale.io import ImageError, atomic_dir, atomic_path, write_labels
from cellscale.segment.image import predict_tiles
from cellscale.segment.model import CHANNELS_PER_COMPARTMENT, ModelSpec
from cellscale.segment.postprocess import postprocess_params
from cellscale.segment.settings import PostprocessSettings, SegmentSettings, TilingSettings
from cellscale.segment.stitch import frame_labels
from cellscale.segment.tiles import TilePlan, make_plan, resampling_scale, shard_tiles, to_source_grid
from cellscale.steps import _fail, _image_failed, open_sample_image

log = logging.getLogger("cellscale")


def tile_sample(sample: str, image_path, out_dir, roles: dict, model_dir, *, tiling: TilingSettings | None = None,
                timelapse: bool = False, pixel_size_um: float | None = None, gamma: float = 1.0,
                scale: float | None = None) -> TilePlan:
    """Write ``plan.json`` and ``shard_NNNN.npy`` (normalised windows) into ``out_dir``.

    ``tiling``: window edge, overlap and megapixels per shard (config ``tiling``; None: the schema's defaults).
    The other arguments are the sample sheet's. The image is read region by region, one shard at a time, and
    resampled by ``scale`` (model pixels per image pixel) when given, else to the model's pixel size when both
    sizes are known.
    """
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
        except ImageError as err:  # an unreadable region, non-finite pixels: the message names the file
            _image_failed(sample, err)
        except ValueError as err:  # a channel index, the overlap
            _fail(sample, image_path, str(err))
        with atomic_dir(out_dir) as tmp_dir:
            for shard in range(len(plan.shards)):
                try:
                    tiles = shard_tiles(source, recipe, plan, shard)
                except ImageError as err:
                    _image_failed(sample, err)
                np.save(tmp_dir / f"shard_{shard:04d}.npy", tiles)
                log.info("tile %s: shard %d/%d written", sample, shard + 1, len(plan.shards))
            plan.write(tmp_dir / "plan.json")
    return plan


def segment_shard(shard_path, model_dir, out_path, settings: SegmentSettings | None = None,
                  threads: int | None = None) -> None:
    """Predict maps for one shard of windows; writes (n, K, th, tw) float16 ``.npy``.

    ``settings`` (config ``segment``; None: the schema's defaults): ``batch_mpx``, megapixels per forward
    pass (memory grows with it), so the batch holds fewer windows when windows are larger; ``precision``;
    ``augment``, test-time augmentation, "none", "rot180" or "flips"
    (:class:`cellscale.segment.predictor.Predictor`).
    """
    # imported here: the tile and stitch jobs run where no network library is installed (envs/cellscale.yaml)
    from cellscale.segment.predictor import Predictor

    settings = settings or SegmentSettings()
    tiles = np.load(shard_path, mmap_mode="r")
    batch_size = max(1, int(settings.batch_mpx * 1e6 // (tiles.shape[2] * tiles.shape[3])))
    predictor = Predictor(model_dir, batch_size=batch_size, precision=settings.precision, threads=threads,
                          augment=settings.augment)
    n, _, th, tw = tiles.shape
    with atomic_path(out_path) as tmp:
        maps = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(n, predictor.n_outputs, th, tw))
        predict_tiles(predictor, tiles, maps)
        maps.flush()
        del maps


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
    labels = to_source_grid(frames[0] if plan.shape[0] == 1 else np.stack(frames), plan.source_shape, plan.scale)
    write_labels(out_path, labels, pixel_size_um)
    return labels
