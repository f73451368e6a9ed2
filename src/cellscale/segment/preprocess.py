"""Turning raw pixels into the normalised channels a model expects.

Normalisation statistics are computed once per image (on a deterministic
subsample for large images) so every tile of an image is scaled the same way:
the result must not depend on how the image is tiled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

LOW_PERCENTILE, HIGH_PERCENTILE = 1.0, 99.8


def percentile_range(channels: np.ndarray, low: float = LOW_PERCENTILE, high: float = HIGH_PERCENTILE,
                     max_samples: int = 4_000_000) -> np.ndarray:
    """Per-channel (low, high) intensity percentiles.

    Parameters
    ----------
    channels : (..., C, Y, X) array; all leading axes are pooled.

    Returns
    -------
    (C, 2) float64 array of [low, high] per channel.
    """
    c = channels.shape[-3]
    flat = np.moveaxis(channels, -3, 0).reshape(c, -1)
    step = max(1, flat.shape[1] // max_samples)
    sample = flat[:, ::step].astype(np.float64)
    lo = np.percentile(sample, low, axis=1)
    hi = np.percentile(sample, high, axis=1)
    hi = np.where(hi > lo, hi, lo + 1.0)
    return np.stack([lo, hi], axis=1)


def normalize(channels: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """Scale (..., C, Y, X) channels so each channel's [low, high] maps to [0, 1] (float32)."""
    ranges = np.asarray(ranges, np.float32)
    lo = ranges[:, 0].reshape(-1, 1, 1)
    hi = ranges[:, 1].reshape(-1, 1, 1)
    return ((channels.astype(np.float32) - lo) / (hi - lo)).astype(np.float32)


@dataclass
class ChannelRecipe:
    """How to turn an image's channels into a model's input channels.

    Either pick channels by index (``indices``), or, for a colour picture,
    take the luminance (``colour``) and negate it when ``invert`` (nuclei
    darker than the background, as in H&E or brightfield). The decision to
    invert is made once per image, on a sample of the whole image.
    """

    indices: list[int] | None = None
    colour: bool = False
    invert: bool = False
    gamma: float = 1.0  # < 1 lifts dim objects: raw intensities (clipped at 0) are raised to this power

    def apply(self, channels: np.ndarray) -> np.ndarray:
        """(C, h, w) raw channels -> (n_inputs, h, w) float32."""
        if self.colour:
            c = channels.astype(np.float32)
            gray = 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
            out = (255.0 - gray if self.invert else gray)[np.newaxis]
        else:
            out = channels[self.indices].astype(np.float32)
        if self.gamma != 1.0:
            out = np.power(np.maximum(out, 0.0), np.float32(self.gamma))
        return out


def channel_recipe(sample: np.ndarray, roles: dict, wanted: list[str], gamma: float = 1.0) -> ChannelRecipe:
    """Choose input channels for a model from roles, checking indices.

    Parameters
    ----------
    sample : (T, C, Y, X) array of the image or a strided sample of it.
    roles : {"nuclear": index or None, "membrane": index or None}.
    wanted : the model's input roles, e.g. ["nuclear"] or ["nuclear", "membrane"].
    gamma : intensity exponent applied before normalisation (see :class:`ChannelRecipe`).
    """
    if not gamma > 0:
        raise ValueError(f"gamma must be positive, got {gamma}")
    n_channels = sample.shape[1]
    if roles.get("nuclear") is None and n_channels == 3 and wanted == ["nuclear"]:
        lum = ChannelRecipe(colour=True).apply(np.moveaxis(sample, 1, 0).reshape(3, -1, sample.shape[-1]))[0]
        lo, hi = np.percentile(lum, [1, 99])
        return ChannelRecipe(colour=True, invert=bool(np.median(lum) > (lo + hi) / 2), gamma=gamma)
    indices = []
    for role in wanted:
        index = roles.get(role)
        if index is None and role == "nuclear":
            index = 0
            if n_channels > 1:  # a plate's stain order, or a plain TIFF z-stack read as channels: say which is used
                logging.getLogger("cellscale").warning(
                    f"the image has {n_channels} channels and no nuclear channel is given: channel 0 is taken as "
                    f"the nuclear one (set the sheet's nuclear_channel, or cellscale segment's --nuclear-channel; "
                    f"a movie's frames read as channels: --timelapse)")
        if index is None:
            raise ValueError(f"the model reads a {role} channel and none is given (the image has {n_channels} "
                             f"channel(s)): set the sheet's {role}_channel, or cellscale segment's --{role}-channel")
        if not 0 <= index < n_channels:
            raise ValueError(f"{role} channel index {index} is out of range: the image has {n_channels} channel(s)")
        indices.append(int(index))
    return ChannelRecipe(indices=indices, gamma=gamma)


def select_channels(image: np.ndarray, roles: dict[str, int | None], wanted: list[str]) -> np.ndarray:
    """The model's input channels (T, len(wanted), Y, X) float32 from a whole (T, C, Y, X) image.

    A 3-channel image without a nuclear role is treated as colour: see
    :class:`ChannelRecipe`.
    """
    recipe = channel_recipe(image, roles, wanted)
    return np.stack([recipe.apply(frame) for frame in image])
