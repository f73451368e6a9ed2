"""Tile plans: where the model's windows fall, which shard (job) runs each, and the windows themselves.

A tile is one model input window; neighbouring tiles overlap by ``overlap``
pixels so their predictions can be blended without seams. A shard is a list of
consecutive tiles, sized in megapixels, that one ``segment`` job processes.
:func:`make_plan` and :func:`shard_tiles` cut normalised windows shard by shard,
reading only the image regions they need.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cellscale.io import ImageSource, atomic_path, image_files
from cellscale.logs import captured_warnings
from cellscale.segment.preprocess import (
    ChannelRecipe,
    channel_recipe,
    normalize,
    percentile_range,
)


@dataclass
class TilePlan:
    """Tiling of a (T, Y, X) image (T = 1 for still images).

    Attributes
    ----------
    shape : (T, Y, X) of the image.
    tile : (th, tw) window size, a multiple of the model's ``tile_multiple``.
    overlap : pixels shared by neighbouring windows.
    tiles : list of [t, y0, x0]; windows may stick out past the image edge
        (those pixels are zero-padded).
    shards : list of lists of tile indices.
    ranges : per-channel [low, high] normalisation, computed on the whole image.
    scale : model pixels per image pixel (image pixel size / model pixel size);
        ``shape`` and the windows are in model pixels, ``source_shape`` is the
        image's own (Y, X).
    pixel_size_um : the image's micrometres per pixel (its own grid), where known.
    frame_interval_s : a time-lapse's seconds between frames, where known.
    warnings : the warnings planning logged (a channel of one value, a nuclear channel guessed), for summary.tsv.
    """

    shape: list[int]
    tile: list[int]
    overlap: int
    tiles: list[list[int]]
    shards: list[list[int]]
    ranges: list[list[float]] = field(default_factory=list)
    scale: float = 1.0
    source_shape: list[int] | None = None
    pixel_size_um: float | None = None
    frame_interval_s: float | None = None
    warnings: list[str] = field(default_factory=list)

    def write(self, path: str | os.PathLike) -> None:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(asdict(self)) + "\n")

    @classmethod
    def read(cls, path: str | os.PathLike) -> "TilePlan":
        return cls(**json.loads(Path(path).read_text()))


def _starts(length: int, window: int, overlap: int) -> list[int]:
    if length <= window:
        return [0]
    stride = window - overlap
    n = math.ceil((length - window) / stride) + 1
    starts = [i * stride for i in range(n - 1)] + [length - window]
    return sorted(set(starts))


def window_size(length: int, tile: int, multiple: int, overlap: int = 0) -> int:
    """The window edge for one axis: the least multiple of ``multiple`` (at most ``tile``) that covers
    ``length`` with as few windows as ``tile``-px ones overlapping by ``overlap``.

    A small image gets one window just over its size; a longer axis gets windows no larger than it needs
    (520 px with tile 512: two windows of 288 px, not two of 512), so the network sees little more than
    the image whatever its size.
    """
    if length <= tile or 2 * overlap >= tile:  # one window, or an overlap plan_tiles refuses
        return min(tile, _round_up(length, multiple))
    n = math.ceil((length - tile) / (tile - overlap)) + 1  # the windows a tile-px edge needs
    edge = _round_up(math.ceil((length + (n - 1) * overlap) / n), multiple)
    return min(tile, max(edge, _round_up(2 * overlap + 1, multiple)))  # windows wider than two overlaps


def _round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def largest_window(tile: int, multiple: int) -> int:
    """The largest window edge ``tile`` (config ``tiling.tile``) allows: rounded down to the model's ``multiple``,
    at least one multiple."""
    return max(multiple, tile // multiple * multiple)


def least_tile(overlap: int, multiple: int) -> int:
    """The least ``tile`` whose windows are wider than two overlaps, as an image of several windows a side needs
    (:func:`plan_tiles`)."""
    return _round_up(2 * overlap + 1, multiple)


def tiling_problem(tile: int, overlap: int, multiple: int, tile_name: str = "tiling.tile",
                   overlap_name: str = "tiling.overlap") -> str | None:
    """What is wrong with ``tile`` and ``overlap`` for a model whose windows are multiples of ``multiple`` px (None:
    nothing): windows (``tile`` rounded down to ``multiple``) must be wider than twice the overlap, as an image of
    several windows a side needs (:func:`plan_tiles`). The message names the two settings (``tile_name``,
    ``overlap_name``: the config's keys, or the command line's options) and the least ``tile`` that works."""
    window = largest_window(tile, multiple)
    if 2 * overlap < window:
        return None
    return (f"{tile_name} {tile} gives windows of {window} px (the model's windows are multiples of {multiple} px), "
            f"and {overlap_name} {overlap} needs windows wider than twice the overlap: give {tile_name} "
            f"{least_tile(overlap, multiple)} or more, or a smaller {overlap_name}")


def plan_tiles(shape, tile: int, overlap: int, multiple: int, shard_mpx: float) -> TilePlan:
    """Plan windows and shards for an image of shape (T, Y, X).

    Parameters
    ----------
    shape : (T, Y, X).
    tile : largest window edge in pixels (rounded down to ``multiple``); config ``tiling.tile``. Windows are
        no larger than covering the image with the fewest windows needs (:func:`window_size`).
    overlap : overlap between neighbouring windows (< tile / 2); config ``tiling.overlap``.
    multiple : the model's required divisor of window sizes.
    shard_mpx : target megapixels of window area per shard; config ``tiling.shard_mpx``.
    """
    t, h, w = (int(s) for s in shape)
    tile = largest_window(tile, multiple)
    th, tw = window_size(h, tile, multiple, overlap), window_size(w, tile, multiple, overlap)
    if (h > th and overlap * 2 >= th) or (w > tw and overlap * 2 >= tw):  # only an axis of several windows
        raise ValueError(f"overlap {overlap} is too large for {th}x{tw} tiles")
    tiles = [[f, y, x] for f in range(t) for y in _starts(h, th, overlap) for x in _starts(w, tw, overlap)]
    per_shard = max(1, int(shard_mpx * 1e6 // (th * tw)))
    shards = [list(range(i, min(i + per_shard, len(tiles)))) for i in range(0, len(tiles), per_shard)]
    return TilePlan([t, h, w], [th, tw], overlap, tiles, shards)


def blend_weights(th: int, tw: int, overlap: int) -> np.ndarray:
    """A smooth (th, tw) window that fades to near zero over ``overlap`` at each edge."""

    def ramp(n):
        r = np.ones(n, np.float32)
        if overlap > 0:
            edge = 0.5 - 0.5 * np.cos(np.pi * (np.arange(overlap) + 0.5) / overlap)
            m = min(overlap, n // 2)
            r[:m] = edge[:m]
            r[n - m:] = edge[:m][::-1]
        return np.maximum(r, 1e-3)

    return np.outer(ramp(th), ramp(tw))


def resampling_scale(image_pixel_um: float | None, model_pixel_um: float | None,
                     scale: float | None = None) -> float:
    """Model pixels per image pixel; 1 when either size is unknown or they differ by under 5%.

    An explicit ``scale`` (a sample's ``scale`` column, ``cellscale segment --scale``) wins over the
    pixel sizes: 0.5 halves the image before segmenting, for nuclei twice the size the model was
    trained on.
    """
    if scale is not None:
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and 0.05 <= scale <= 20):
            raise ValueError(f"scale must be a number from 0.05 to 20 (model pixels per image pixel), got {scale}")
        return float(scale)
    if not image_pixel_um or not model_pixel_um:
        return 1.0
    scale = float(image_pixel_um) / float(model_pixel_um)
    return 1.0 if abs(scale - 1.0) < 0.05 else scale


def source_coordinates(start: int, stop: int, scale: float) -> np.ndarray:
    """Image coordinates (float) of model pixels start..stop-1 (pixel centres aligned)."""
    return (np.arange(start, stop) + 0.5) / scale - 0.5


def to_source_grid(labels: np.ndarray, source_shape, scale: float) -> np.ndarray:
    """Nearest-neighbour resampling of (..., Y', X') model-resolution labels back onto the image grid."""
    if scale == 1.0:
        return labels
    h, w = labels.shape[-2:]
    rows = np.clip(np.floor((np.arange(source_shape[0]) + 0.5) * scale).astype(int), 0, h - 1)
    cols = np.clip(np.floor((np.arange(source_shape[1]) + 0.5) * scale).astype(int), 0, w - 1)
    return labels[..., rows[:, None], cols[None, :]]


def make_plan(source: ImageSource, roles: dict, inputs: list[str], tile: int, overlap: int, multiple: int,
              shard_mpx: float, scale: float = 1.0, gamma: float = 1.0) -> tuple[TilePlan, ChannelRecipe]:
    """Tile plan (with image-wide normalisation ranges) and channel recipe for an image.

    ``scale`` (model pixels per image pixel) resamples the image to the model's
    resolution: the plan's windows are in model pixels. ``gamma`` < 1 lifts dim
    nuclei before normalisation (see :class:`ChannelRecipe`). NaN or infinite
    pixels are refused (:meth:`ImageSource.check_finite`, an ``ImageError``
    naming the file): here on the subsample (:func:`input_ranges`), in
    :func:`shard_tiles` on every region read.
    """
    with captured_warnings() as warnings:
        recipe, ranges = input_ranges(source, roles, inputs, gamma)
    t, _, h, w = source.shape
    shape = (t, max(1, round(h * scale)), max(1, round(w * scale)))
    plan = plan_tiles(shape, tile, overlap, multiple, shard_mpx)
    plan.ranges = ranges
    plan.scale, plan.source_shape, plan.warnings = float(scale), [h, w], warnings
    return plan, recipe


def input_ranges(source: ImageSource, roles: dict, inputs: list[str],
                 gamma: float = 1.0) -> tuple[ChannelRecipe, list[list[float]]]:
    """The channel recipe of an image and its image-wide normalisation: per model input, the [low, high]
    percentiles of the recipe's channels over a subsample of every frame (what :func:`make_plan` puts in the
    plan). Refuses NaN or infinite pixels in the subsample (an ``ImageError`` naming the file)."""
    sample = source.subsample()
    source.check_finite(sample)
    recipe = channel_recipe(sample, roles, inputs, gamma)
    _warn_constant_inputs(source, sample, recipe, inputs)
    return recipe, percentile_range(np.stack([recipe.apply(frame) for frame in sample])).tolist()


def _warn_constant_inputs(source: ImageSource, sample: np.ndarray, recipe: ChannelRecipe, inputs: list[str]) -> None:
    """Warn, naming the file and the channel, when a model input's channel holds one value in every pixel of the
    subsample (e.g. an all-zero membrane channel): the model then sees nothing there, and a membrane channel's
    whole-cell labels are only its guess from the nuclear channel. Of an image of one file per channel, the file is
    that channel's."""
    if recipe.indices is None:
        return
    files = image_files(source.path or "image")  # [the image], or its files, one per channel
    for role, index in zip(inputs, recipe.indices):
        channel = sample[:, index]
        if channel.size and channel.min() == channel.max():
            effect = ("whole-cell labels are then outlines guessed from the nuclear channel alone" if role == "membrane"
                      else "no objects can be found in it")
            where = files[index] if len(files) > 1 else files[0]
            logging.getLogger("cellscale").warning(
                "%s: the %s channel (channel %d) holds one value (%s) in every pixel read: %s; check the channel "
                "index (the sheet's %s_channel, cellscale segment's --%s-channel)", where, role,
                index, channel.flat[0], effect, role, role)


def _read_model_region(source: ImageSource, recipe: ChannelRecipe, plan: TilePlan, t: int,
                       y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """Model-resolution pixels y0:y1, x0:x1 of frame t: (n_inputs, h, w) float32 (bilinear)."""
    if plan.scale == 1.0:
        region = source.region(t, y0, y1, x0, x1)
        source.check_finite(region)
        return recipe.apply(region)
    from scipy import ndimage as ndi

    ys, xs = source_coordinates(y0, y1, plan.scale), source_coordinates(x0, x1, plan.scale)
    h, w = plan.source_shape
    sy0, sx0 = max(0, int(np.floor(ys[0]))), max(0, int(np.floor(xs[0])))
    sy1, sx1 = min(h, int(np.ceil(ys[-1])) + 2), min(w, int(np.ceil(xs[-1])) + 2)
    region = source.region(t, sy0, sy1, sx0, sx1)
    source.check_finite(region)
    region = recipe.apply(region)
    grid = np.meshgrid(np.clip(ys - sy0, 0, sy1 - sy0 - 1), np.clip(xs - sx0, 0, sx1 - sx0 - 1), indexing="ij")
    return np.stack([ndi.map_coordinates(ch, grid, order=1, mode="nearest") for ch in region]).astype(np.float32)


def read_window(source: ImageSource, recipe: ChannelRecipe, plan: TilePlan, i: int) -> np.ndarray:
    """Normalised window ``i`` of the plan: (C, th, tw) float32, zero (background) past the image edge."""
    th, tw = plan.tile
    _, h, w = plan.shape
    ranges = np.asarray(plan.ranges)
    t, y, x = plan.tiles[i]
    y1, x1 = min(y + th, h), min(x + tw, w)
    out = np.zeros((len(ranges), th, tw), np.float32)
    out[:, : y1 - y, : x1 - x] = normalize(_read_model_region(source, recipe, plan, t, y, y1, x, x1), ranges)
    return out


def shard_tiles(source: ImageSource, recipe: ChannelRecipe, plan: TilePlan, shard: int) -> np.ndarray:
    """Normalised windows of one shard: (n, C, th, tw) float32, zero (background) past the image edge."""
    out = np.empty((len(plan.shards[shard]), len(plan.ranges), *plan.tile), np.float32)
    for k, i in enumerate(plan.shards[shard]):
        out[k] = read_window(source, recipe, plan, i)
    return out
