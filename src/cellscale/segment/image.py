"""Segmentation in one process (the command line, training and tests): tile, predict, stitch.

:func:`segment_many` runs many fields of view through one predictor: windows of the same size from different
images fill the same forward passes, each image keeps its own normalisation, and each image's labels are
those :func:`segment_image` gives it alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import repeat

import numpy as np

from cellscale.io import ImageError, ImageSource, too_small
from cellscale.parallel import available_cores, ordered_map
from cellscale.segment.model import CHANNELS_PER_COMPARTMENT
from cellscale.segment.postprocess import PostprocessParams, postprocess_params
from cellscale.segment.preprocess import ChannelRecipe
from cellscale.segment.settings import PostprocessSettings, TilingSettings
from cellscale.segment.size import (
    KEEP,
    PICK,
    SizeEstimate,
    choose_scale,
    median_diameter,
    model_sizes,
    pick_diameter,
    search_scales,
    size_crop,
)
from cellscale.segment.stitch import frame_labels
from cellscale.segment.tiles import TilePlan, make_plan, resampling_scale, shard_tiles, to_source_grid
from cellscale.settings import is_auto

log = logging.getLogger("cellscale")

_TILING, _POST = TilingSettings(), PostprocessSettings()  # the config schema's defaults (cellscale.settings)

# what one field of view may raise without stopping the others: unreadable or non-finite pixels (ImageError,
# a ValueError), a bad channel index or scale (ValueError), a file gone (OSError)
IMAGE_ERRORS = (ImageError, ValueError, OSError)

#: The channel roles a model input may have (``roles`` of :func:`segment_image` and :class:`FieldOfView`).
ROLES = ("nuclear", "membrane")


def predict_tiles(predictor, tiles: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Model maps for windows: (n, CHANNELS_PER_COMPARTMENT * compartments, th, tw) float16 (compact on disk).

    ``out``: an optional float16 array of that shape (e.g. a shard file's,
    :func:`cellscale.segment.shards.create_maps`) to fill batch by batch, so a job's memory does not grow with its
    number of windows.
    """
    if out is None:
        n, _, th, tw = tiles.shape
        out = np.empty((n, predictor.n_outputs, th, tw), np.float16)
    return predictor.predict(tiles, out)


@dataclass
class FieldOfView:
    """One image to segment with :func:`segment_many`, and how.

    Attributes
    ----------
    source : the image: :meth:`ImageSource.open` (a file read region by region) or
        :meth:`ImageSource.from_array`.
    roles : {"nuclear": index or None, "membrane": index or None}.
    pixel_size_um : micrometres per pixel; resampled to the model's pixel size when it declares one.
    gamma : intensity exponent before normalisation (< 1 lifts dim nuclei).
    scale : model pixels per image pixel (wins over ``pixel_size_um``); ``"auto"``: estimated from the sizes of
        the objects the model finds in a crop (:func:`estimate_scale`).
    """

    source: ImageSource
    roles: dict
    pixel_size_um: float | None = None
    gamma: float = 1.0
    scale: float | str | None = None
    estimate: SizeEstimate | None = None  # set by segment_many where ``scale`` is "auto": what it measured
    warnings: list[str] = field(default_factory=list)  # set by segment_many: the warnings its planning logged


@dataclass
class _Job:
    """A field of view in flight: its plan and recipe, its windows' maps, or the error that stopped it."""

    index: int
    fov: FieldOfView
    plan: TilePlan | None = None
    recipe: ChannelRecipe | None = None
    maps: dict[int, np.ndarray] = field(default_factory=dict)
    error: Exception | None = None

    @property
    def window_mpx(self) -> float:
        """Megapixels of its windows (0 once failed)."""
        if self.plan is None or self.error is not None:
            return 0.0
        return len(self.plan.tiles) * self.plan.tile[0] * self.plan.tile[1] / 1e6


def segment_image(predictor, image, roles: dict | None = None, tile: int = _TILING.tile,
                  overlap: int = _TILING.overlap, block: int = _POST.block, margin: int = _POST.margin,
                  params: dict | None = None, shard_mpx: float = _TILING.shard_mpx, pixel_size_um: float | None = None,
                  gamma: float = 1.0, scale: float | None = None,
                  workers: int | None = None, axes: str | None = None) -> dict[str, np.ndarray]:
    """Segment an in-memory image (or an :class:`ImageSource`) in one process.

    ``predictor``: a loaded model (:class:`cellscale.segment.predictor.Predictor`; by name, path or
    ``NAME@VERSION``: :func:`cellscale.api.load_model`). ``image``: an array whose ``axes`` are letters from
    "TCYX" (:meth:`ImageSource.from_array`): "YX" for a 2-D array and "TCYX" for a 4-D one unless given; a 3-D
    array needs them ("CYX", "YXC", "TYX"). ``roles``: the channel of each model input, ``{"nuclear": index,
    "membrane": index}`` (``None`` or a missing nuclear role: channel 0, or the luminance of a 3-channel colour
    image; the tissue model needs a membrane channel). With ``pixel_size_um`` and a model that declares its own,
    or with an explicit ``scale`` (model pixels per image pixel, or ``"auto"``), the image is resampled to the
    model's resolution and the labels back to the image's. ``workers`` threads post-process blocks at once
    (default: the cores this process may use; the labels do not depend on it).
    ``tile``, ``overlap``, ``shard_mpx``, ``block``, ``margin`` and ``params`` (overrides of the model's
    post-processing) are the workflow's settings of the same names, with its defaults (the config schema's).

    Returns {compartment: uint32 labels} ("nuclear", and "whole_cell" for the tissue model): (T, Y, X) for an
    image with a T axis (a 4-D array, an :class:`ImageSource`), else (Y, X). Raises what :func:`segment_many`
    would yield (a ValueError or :class:`~cellscale.io.ImageError` saying what is wrong; an image under
    :data:`~cellscale.io.MIN_EDGE` px on an edge is refused, as the command line and the workflow refuse it).
    """
    unknown = sorted(set(roles or {}) - set(ROLES))
    if unknown:
        raise ValueError(f"unknown channel role(s) {unknown}: roles are {', '.join(ROLES)} "
                         f"(e.g. {{'nuclear': 0, 'membrane': 1}})")
    source = image if isinstance(image, ImageSource) else ImageSource.from_array(image, axes=axes)
    fov = FieldOfView(source, roles or {}, pixel_size_um, gamma, scale)
    [(_, result)] = segment_many(predictor, [fov], tile=tile, overlap=overlap, block=block, margin=margin,
                                 params=params, shard_mpx=shard_mpx, workers=workers)
    if isinstance(result, Exception):
        raise result
    if not isinstance(image, ImageSource) and "T" not in source.axes:  # labels with the input's axes, less C
        result = {comp: labels[0] for comp, labels in result.items()}
    return result


def estimate_scale(predictor, source, roles: dict, gamma: float = 1.0, keep: str = KEEP, pick: str = PICK,
                   **segment_kwargs) -> SizeEstimate:
    """``scale: auto``: segment central crops of the middle frame of ``source`` (an :class:`ImageSource`) at a few
    scales (:func:`cellscale.segment.size.search_scales`), take the objects' median diameter
    (:func:`~cellscale.segment.size.pick_diameter`; objects cut by a crop's edge left out) and choose the scale
    (:func:`~cellscale.segment.size.choose_scale`).

    ``segment_kwargs``: :func:`segment_image`'s tiling and post-processing settings. A model that records no
    training sizes is a ValueError naming it.
    """
    comp, sizes = model_sizes(predictor.spec)
    t, by0, by1, bx0, bx1, _ = size_crop(source.shape)
    base = source.region(t, by0, by1, bx0, bx1)  # read once: every pass's crop lies inside it

    def measure(scale: float) -> tuple[float, int]:
        _, y0, y1, x0, x1, cut = size_crop(source.shape, scale)
        crop = base[None, :, y0 - by0:y1 - by0, x0 - bx0:x1 - bx0]
        labels = segment_image(predictor, crop, roles, gamma=gamma, scale=scale, **segment_kwargs)[comp][0]
        return median_diameter(labels, cut)  # labels come back on the image's grid: image pixels

    passes = search_scales(measure, sizes, source.shape)
    diameter, objects = pick_diameter(passes, sizes, pick)
    estimate = SizeEstimate(choose_scale(diameter, sizes, keep), diameter, objects, comp, sizes, keep, passes, pick)
    log.info("scale auto (%s): %s", getattr(source, "path", None) or "image", estimate.describe())
    return estimate


def segment_many(predictor, fovs: Iterable[FieldOfView], *, tile: int = _TILING.tile, overlap: int = _TILING.overlap,
                 block: int = _POST.block, margin: int = _POST.margin, params: dict | None = None,
                 shard_mpx: float = _TILING.shard_mpx, workers: int | None = None,
                 group_mpx: float = 4.0) -> Iterator[tuple[int, dict[str, np.ndarray] | Exception]]:
    """Segment many fields of view in one process, filling the network's batches across images.

    ``fovs`` is read lazily, in groups of about ``group_mpx`` megapixels of model windows (an image with
    more is a group alone): a group's windows are predicted, windows of one size from different images
    sharing forward passes (``predictor.windows_per_pass`` of them a pass), then each image is post-processed
    (``workers`` threads: over the group's images, or over an image's blocks) and yielded. Memory holds
    one group's windows and maps. Each image has its own tile plan and normalisation, as
    :func:`segment_image` makes them, and the labels :func:`segment_image` gives it with the same predictor,
    whatever the grouping (with the int8 copy, whatever the batch size too). Settings as
    :func:`segment_image`'s.

    Yields
    ------
    (index in ``fovs``, {compartment: (T, Y, X) uint32 labels}) in input order, or (index, exception)
    where planning, reading or post-processing that image raised one of :data:`IMAGE_ERRORS`
    (e.g. an :class:`ImageError` naming the file); the other images go on.
    """
    spec = predictor.spec
    post = postprocess_params(spec, params)  # a misspelt override fails every image: raised here
    workers = workers or available_cores()
    sizing = partial(estimate_scale, predictor, tile=tile, overlap=overlap, block=block, margin=margin,
                     params=params, shard_mpx=shard_mpx, workers=workers)  # for a scale of "auto"
    jobs = (_planned(spec, index, fov, tile, overlap, shard_mpx, sizing) for index, fov in enumerate(fovs))
    for group in _groups(jobs, group_mpx):
        _predict_group(predictor, group)
        ok = sum(job.error is None for job in group)
        outer = max(1, min(workers, ok))  # threads over the group's images, the rest over an image's blocks
        labels = partial(_labels, compartments=spec.compartments, post=post, block=block, margin=margin,
                         workers=max(1, workers // outer))
        for job, result in zip(group, ordered_map(labels, group, outer)):
            yield job.index, result


def _planned(spec, index: int, fov: FieldOfView, tile: int, overlap: int, shard_mpx: float, sizing=None) -> _Job:
    """A job with the tile plan and channel recipe of one field of view (or the error that prevents them);
    ``sizing(source, roles, gamma)`` estimates a scale of "auto" (:func:`estimate_scale`)."""
    job = _Job(index, fov)
    try:
        problem = too_small(*fov.source.shape[2:])  # as the command line and the workflow refuse it
        if problem:
            raise ImageError(f"{fov.source.path or 'image'}: {problem}")
        scale = fov.scale
        if is_auto(scale):
            if sizing is None:
                raise ValueError("scale auto needs the model to estimate the objects' size")
            fov.estimate = sizing(fov.source, fov.roles or {}, fov.gamma)
            scale = fov.estimate.scale
        scale = resampling_scale(fov.pixel_size_um, spec.pixel_size_um, scale)
        job.plan, job.recipe = make_plan(fov.source, fov.roles or {}, spec.inputs, tile, overlap,
                                         spec.tile_multiple, shard_mpx, scale, fov.gamma)
        fov.warnings = job.plan.warnings
    except IMAGE_ERRORS as err:
        job.error = err
    return job


def _groups(jobs: Iterable[_Job], group_mpx: float) -> Iterator[list[_Job]]:
    """Consecutive jobs in groups of at most ``group_mpx`` megapixels of windows (a larger job alone)."""
    group: list[_Job] = []
    mpx = 0.0
    for job in jobs:
        if group and mpx + job.window_mpx > group_mpx:
            yield group
            group, mpx = [], 0.0
        group.append(job)
        mpx += job.window_mpx
    if group:
        yield group


def _predict_group(predictor, jobs: list[_Job]) -> None:
    """Fill the jobs' maps, one window size at a time, windows of several images in one batch."""
    by_size: dict[tuple[int, ...], list[_Job]] = {}
    for job in jobs:
        if job.error is None:
            by_size.setdefault(tuple(job.plan.tile), []).append(job)
    for size, same in by_size.items():
        step = predictor.windows_per_pass(*size)
        pending: list[tuple[_Job, int, np.ndarray]] = []
        for job in same:
            try:
                for shard, indices in enumerate(job.plan.shards):
                    windows = shard_tiles(job.fov.source, job.recipe, job.plan, shard)
                    pending += zip(repeat(job), indices, windows)
                    full = len(pending) - len(pending) % step
                    _predict_windows(predictor, pending[:full])
                    del pending[:full]
            except IMAGE_ERRORS as err:  # e.g. non-finite pixels outside the sample make_plan checked
                job.error = err
        _predict_windows(predictor, pending)


def _predict_windows(predictor, windows: list[tuple[_Job, int, np.ndarray]]) -> None:
    """Predict (job, tile index, window) triples of one size; a window the predictor refuses (e.g. larger
    than the int8 copy's) fails the images it belongs to."""
    if not windows:
        return
    try:
        maps = predict_tiles(predictor, np.stack([w for _, _, w in windows]))
    except ValueError as err:
        for job, _, _ in windows:
            job.error = job.error or err
        return
    for (job, i, _), m in zip(windows, maps):
        job.maps[i] = m


def _labels(job: _Job, compartments: list[str], post: dict[str, PostprocessParams], block: int, margin: int,
            workers: int) -> dict[str, np.ndarray] | Exception:
    """{compartment: (T, Y, X) uint32 labels} of a predicted job (on its image's grid), or its error."""
    try:
        if job.error is not None:
            return job.error
        plan = job.plan
        return {comp: to_source_grid(np.stack([frame_labels(plan, job.maps.__getitem__, f,
                                                            CHANNELS_PER_COMPARTMENT * k, post[comp], block,
                                                            margin, workers)
                                               for f in range(plan.shape[0])]),
                                     plan.source_shape, plan.scale)
                for k, comp in enumerate(compartments)}
    except IMAGE_ERRORS as err:
        return err
    finally:
        job.maps.clear()
