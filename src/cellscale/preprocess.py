"""Turning raw pixels into the normalised channels a model expects.

Normalisation statistics are computed once per image (on a deterministic
subsample for large images) so every tile of an image is scaled the same way:
the result must not depend on how the image is tiled.
"""

from __future__ import annotations

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


def nuclear_from_rgb(rgb: np.ndarray) -> np.ndarray:
    """One nuclear channel from a colour image (C=3, Y, X).

    Colour images in our data are stained tissue or brightfield, where nuclei
    are darker than the background; fluorescence saved as RGB has a dark
    background. We take the luminance and invert it when the background (the
    median) is brighter than the middle of the intensity range, so nuclei are
    bright as in fluorescence. Returns (1, Y, X) float32.
    """
    rgb = rgb.astype(np.float32)
    gray = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    lo, hi = np.percentile(gray, [1, 99])
    if np.median(gray) > (lo + hi) / 2:
        gray = gray.max() - gray
    return gray[np.newaxis]


def select_channels(image: np.ndarray, roles: dict[str, int | None], wanted: list[str]) -> np.ndarray:
    """Pick the model's input channels from a (T, C, Y, X) image.

    ``roles`` maps a role ("nuclear", "membrane") to a channel index. A 3-channel
    image without declared roles is treated as colour (see :func:`nuclear_from_rgb`).
    Returns (T, len(wanted), Y, X).
    """
    n_channels = image.shape[1]
    if roles.get("nuclear") is None and n_channels == 3 and wanted == ["nuclear"]:
        return np.stack([nuclear_from_rgb(frame)[0] for frame in image])[:, np.newaxis]
    picked = []
    for role in wanted:
        index = roles.get(role)
        if index is None:
            index = 0 if role == "nuclear" else None
        if index is None:
            raise ValueError(f"no channel given for role {role!r}")
        if not 0 <= index < n_channels:
            raise ValueError(f"{role} channel index {index} is out of range: the image has {n_channels} channel(s)")
        picked.append(image[:, index])
    return np.stack(picked, axis=1)
