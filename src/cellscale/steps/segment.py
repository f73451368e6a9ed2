"""Steps of the segmentation rules (``rules/segment.smk``): ``object_size``, ``tile``, ``segment`` (the GPU step) and
``stitch``.

- :func:`estimate_sample_scale` measures the objects of a sample whose ``scale`` is ``auto`` (the network runs);
- :func:`tile_sample` cuts a sample into windows, shard by shard, and writes the tile plan;
- :func:`segment_shard` runs the model on one shard of windows;
- :func:`stitch_sample` blends a sample's predicted windows and post-processes them block by block into one
  32-bit label image.

Shards of windows and of maps are single files, compressed and chunked per window (:mod:`cellscale.segment.shards`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from cellscale.io import (
    ImageError,
    atomic_dir,
    atomic_path,
    sample_frame_interval,
    sample_pixel_size,
    scratch_dir,
    write_labels,
)
from cellscale.logs import Progress
from cellscale.segment.image import estimate_scale, predict_tiles
from cellscale.segment.model import CHANNELS_PER_COMPARTMENT, ModelSpec
from cellscale.segment.postprocess import postprocess_params
from cellscale.segment.settings import PostprocessSettings, SegmentSettings, TilingSettings
from cellscale.segment.shards import create_maps, open_maps, open_windows, shard_name, write_windows
from cellscale.segment.stitch import LabelStore, SourceGrid, frame_maps_reader, stitch_blocks
from cellscale.segment.tiles import TilePlan, make_plan, resampling_scale
from cellscale.steps import _fail, _image_failed, open_sample_image

log = logging.getLogger("cellscale")


def job_predictor(model_dir, settings: SegmentSettings, threads: int | None = None):
    """The predictor a job runs (config ``segment``): forward passes of about ``settings.batch_mpx`` megapixels of
    windows of whatever size they have (a batch job's passes of small windows hold as many as an image's own segment
    job's), the configured arithmetic and augmentation."""
    # imported here: the tile and stitch jobs run where no network library is installed (envs/cellscale.yaml)
    from cellscale.segment.predictor import Predictor

    return Predictor(model_dir, batch_mpx=settings.batch_mpx, precision=settings.precision, threads=threads,
                     augment=settings.augment)


def estimate_sample_scale(sample: str, image_path, out_json, roles: dict, model_dir, *,
                          settings: SegmentSettings | None = None, tiling: TilingSettings | None = None,
                          postprocess: PostprocessSettings | None = None, timelapse: bool = False,
                          gamma: float = 1.0, threads: int | None = None) -> float:
    """``scale: auto``: segment a crop of the sample's image at its own resolution, choose the scale from its
    objects' median diameter (:func:`cellscale.segment.image.estimate_scale`) and write it, with what was
    measured, to ``out_json`` (read by :func:`measured_scale`). Returns the scale.

    ``settings`` (config ``segment``): the network's arithmetic and augmentation, as the segment jobs run it;
    ``tiling`` and ``postprocess``: the workflow's windows and post-processing.
    """
    settings, tiling = settings or SegmentSettings(), tiling or TilingSettings()
    postprocess = postprocess or PostprocessSettings()
    predictor = job_predictor(model_dir, settings, threads)
    with open_sample_image(sample, image_path, timelapse) as source:
        try:
            estimate = estimate_scale(predictor, source, roles, gamma, tile=tiling.tile, overlap=tiling.overlap,
                                      block=postprocess.block, margin=postprocess.margin,
                                      params=postprocess.overrides, workers=threads)
        except ImageError as err:
            _image_failed(sample, err)
        except ValueError as err:  # a channel index; a model that records no training sizes
            _fail(sample, image_path, str(err))
    log.info("size %s: %s", sample, estimate.describe())
    with atomic_path(out_json) as tmp:
        Path(tmp).write_text(json.dumps({"sample": sample, **estimate.as_dict()}, indent=2) + "\n")
    return estimate.scale


def measured_scale(size_json) -> float:
    """The scale :func:`estimate_sample_scale` chose (``size_json``: its file)."""
    return float(json.loads(Path(size_json).read_text())["scale"])


def tile_sample(sample: str, image_path, out_dir, roles: dict, model_dir, *, tiling: TilingSettings | None = None,
                timelapse: bool = False, pixel_size_um: float | None = None, gamma: float = 1.0,
                scale: float | None = None, frame_interval_s: float | None = None) -> TilePlan:
    """Write ``plan.json`` and the windows, ``shard_NNNN.zarr.zip``, into ``out_dir``.

    ``tiling``: window edge, overlap and megapixels per shard (config ``tiling``; None: the schema's defaults).
    The other arguments are the sample sheet's. The image is read region by region, one shard at a time, and
    resampled by ``scale`` (model pixels per image pixel) when given, else to the model's pixel size when both
    sizes are known (the image's size: ``pixel_size_um``, else its metadata's, recorded in the plan). A shard holds
    the raw pixels of its windows, normalised by the segment job, or the normalised windows when the image is
    resampled (:func:`cellscale.segment.shards.write_windows`). A time-lapse's frame interval, ``frame_interval_s``
    else its metadata's, is recorded in the plan too.
    """
    tiling = tiling or TilingSettings()
    spec = ModelSpec.read(model_dir)
    pixel_size_um = sample_pixel_size(pixel_size_um, image_path, sample)
    frame_interval_s = sample_frame_interval(frame_interval_s, image_path, sample) if timelapse else None
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
            progress = Progress(len(plan.shards))
            for shard in range(len(plan.shards)):
                try:
                    kind = write_windows(tmp_dir / shard_name(shard), source, recipe, plan, shard)
                except ImageError as err:
                    _image_failed(sample, err)
                if progress.due(shard + 1):
                    log.info("tile %s: shard %d/%d written (%s windows)", sample, shard + 1, len(plan.shards), kind)
            plan.pixel_size_um, plan.frame_interval_s = pixel_size_um, frame_interval_s
            plan.write(tmp_dir / "plan.json")
    return plan


def segment_shard(shard_path, model_dir, out_path, settings: SegmentSettings | None = None,
                  threads: int | None = None) -> None:
    """Predict maps for one shard file of windows; writes (n, K, th, tw) float16 maps to ``out_path`` (a shard
    file, :func:`cellscale.segment.shards.create_maps`), the windows read and the maps written one batch at a time.

    ``settings`` (config ``segment``; None: the schema's defaults): ``batch_mpx``, megapixels per forward
    pass (memory grows with it), so the batch holds fewer windows when windows are larger; ``precision``;
    ``augment``, test-time augmentation, "none", "rot180" or "flips"
    (:class:`cellscale.segment.predictor.Predictor`).
    """
    settings = settings or SegmentSettings()
    tiles = open_windows(shard_path)
    predictor = job_predictor(model_dir, settings, threads)
    n, _, th, tw = tiles.shape
    with create_maps(out_path, (n, predictor.n_outputs, th, tw)) as maps:
        predict_tiles(predictor, tiles, maps)


def stitch_sample(plan_path, shard_maps: list, model_dir, compartment: str, out_path,
                  postprocess: PostprocessSettings | None = None, pixel_size_um: float | None = None,
                  workers: int = 1, name: str | None = None, frame_interval_s: float | None = None) -> list[int]:
    """Blend predicted windows and post-process block by block into one 32-bit label image; returns the number
    of cells of each frame.

    ``postprocess`` (config ``postprocess``; None: the schema's defaults): block edge, margin and overrides
    of the model's tuned values. Shard predictions are read lazily: only the windows around the current
    block are decoded. ``workers`` threads post-process blocks at once (same result). The labels are stitched
    into a Zarr store beside ``out_path`` (:class:`cellscale.segment.stitch.LabelStore`, removed after), resampled
    back to the image's grid region by region when the plan is resampled
    (:class:`cellscale.segment.stitch.SourceGrid`), and written to the OME-TIFF tile by tile, so no step holds a
    whole frame. The OME-TIFF states ``pixel_size_um``, else the plan's (the image's metadata), a movie's
    ``frame_interval_s`` the same way, and names its image ``name`` (the sample's).
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
        path = by_name.get(shard_name(shard))
        if path is None:
            raise FileNotFoundError(f"{plan_path}: prediction for shard {shard} is missing")
        arrays.append(open_maps(path))
        where.update((i, (shard, k)) for k, i in enumerate(indices))

    def read_tile(i):
        shard, k = where[i]
        return arrays[shard].window(k)  # (K, th, tw), read by channel: only the stored maps stitching uses

    channel = CHANNELS_PER_COMPARTMENT * spec.compartments.index(compartment)
    cells = []
    out_path = Path(out_path)
    with scratch_dir(out_path) as scratch:  # removes what a killed earlier attempt left there
        # the labels go to disk chunk by chunk, then to the OME-TIFF tile by tile: never a whole frame in memory
        store = LabelStore(Path(scratch) / "labels.zarr", plan.shape, postprocess.block)
        progress = Progress(plan.shape[0])
        for frame in range(plan.shape[0]):
            cells.append(stitch_blocks(frame_maps_reader(plan, read_tile, frame, channel, params), plan.shape[1:],
                                       params, store.frame(frame), postprocess.block, postprocess.margin, workers))
            if progress.due(frame + 1):
                log.info("stitch %s: frame %d/%d, %d cells", compartment, frame + 1, plan.shape[0], cells[-1])
        labels = store if plan.scale == 1.0 else SourceGrid(store, plan.source_shape, plan.scale)
        write_labels(out_path, labels if plan.shape[0] > 1 else _FirstFrame(labels),
                     pixel_size_um or plan.pixel_size_um, name=name,
                     frame_interval_s=frame_interval_s or plan.frame_interval_s)
    return cells


class _FirstFrame:
    """Frame 0 of a (T, Y, X) array-like, as (Y, X)."""

    def __init__(self, labels):
        self.labels, self.shape, self.dtype = labels, tuple(labels.shape[1:]), labels.dtype

    def __getitem__(self, key):
        return self.labels[(0, *key)]
