"""Where the model is least sure: per-tile signals and the score that ranks the tiles of a sample.

The sample is cut into a grid of non-overlapping ``tile`` x ``tile`` squares (image pixels, from the top left
corner; a partial square at the right or bottom edge is left out, a whole image smaller than ``tile`` is one
tile). Each tile gets three signals, each in [0, 1]:

``disagreement``
    The model is run twice with no augmentation, on each window and on the window turned by 180 degrees (the
    second pass turned back): the two passes that ``augment: rot180`` averages. Per pixel, the mean of the
    total-variation distance between the two class distributions (background / boundary / interior,
    ``0.5 * sum |p - q|``) and the absolute difference of the two inner-distance maps; the signal is its mean
    over the tile. A network that is sure of a pixel gives the same answer both ways.
``boundary``
    Boundary-probability mass inside cells: the sum of p(boundary) (mean of the two passes) over the pixels of
    the current labels that are not on their own cell's outline, over the tile's area. Boundary probability
    inside a cell is a missed split (or a false one the watershed did not make).
``shape``
    Implausible shapes and sizes: every cell of the current labels (the whole frame) gets an oddness,
    ``max(clip(|ln(area / median area)| / ln 4, 0, 1), clip((0.9 - solidity) / 0.3, 0, 1))``: 0 for a convex
    cell of the sample's median size, 1 for one four times too large or small or with solidity <= 0.6. The
    signal is the mean oddness over the tile's pixels (background counts 0).

Score: each signal is divided by its largest value over the candidate tiles (so each spans [0, 1] on this
sample; a signal that is 0 everywhere stays 0), then ``score = 0.5 disagreement + 0.25 boundary + 0.25 shape``
(:data:`WEIGHTS`). The K tiles of highest score are chosen, ties broken by tile position (row-major), so the
choice is deterministic; :func:`random_tiles` draws K tiles instead (a seeded baseline).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.measure import regionprops_table

from cellscale.io import ImageSource
from cellscale.segment.model import CHANNELS_PER_COMPARTMENT
from cellscale.segment.stitch import blend_maps, blend_region
from cellscale.segment.tiles import make_plan, resampling_scale, shard_tiles, to_source_grid

#: weights of the normalised signals in the score (they sum to 1)
WEIGHTS = {"disagreement": 0.5, "boundary": 0.25, "shape": 0.25}
SIGNALS = tuple(WEIGHTS)


@dataclass
class Tile:
    """One square of the grid: ``box`` = (y0, y1, x0, x1) in image pixels, its signals and score."""

    index: int  # position in the row-major grid
    box: tuple[int, int, int, int]
    signals: dict[str, float]
    score: float = 0.0


def _review_plan(predictor, source: ImageSource, roles: dict, compartment: str, frame: int, tile: int,
                 overlap: int, pixel_size_um: float | None, gamma: float, scale: float | None):
    """The windows of one frame (plan, recipe), their indices, and the first map of ``compartment``."""
    spec = predictor.spec
    if getattr(predictor, "augment", "none") != "none":
        raise ValueError(f"review needs a predictor without augmentation (it runs the two rot180 passes itself), "
                         f"got augment={predictor.augment!r}")
    if compartment not in spec.compartments:
        raise ValueError(f"model {spec.name} has no {compartment} output (it has {', '.join(spec.compartments)})")
    k = spec.compartments.index(compartment) * CHANNELS_PER_COMPARTMENT
    factor = resampling_scale(pixel_size_um, spec.pixel_size_um, scale)
    plan, recipe = make_plan(source, roles, spec.inputs, tile, overlap, spec.tile_multiple, 1e9, factor, gamma)
    if not 0 <= frame < plan.shape[0]:
        raise ValueError(f"{source.path}: no frame {frame} (it has {plan.shape[0]})")
    mine = [i for i, (t, _, _) in enumerate(plan.tiles) if t == frame]
    return plan, recipe, mine, k


def _two_passes(predictor, source: ImageSource, recipe, plan, indices: list[int], k: int, batch: int,
                plain: dict, turned: dict) -> None:
    """Run both passes on the windows ``indices`` (``batch`` at a time) into ``plain`` / ``turned`` (float16)."""
    for start in range(0, len(indices), batch):
        plan.shards = [indices[start:start + batch]]
        windows = shard_tiles(source, recipe, plan, 0)
        maps = predictor.predict(windows)[:, k:k + CHANNELS_PER_COMPARTMENT]
        back = np.flip(predictor.predict(np.ascontiguousarray(np.flip(windows, (2, 3)))), (2, 3))
        for j, i in enumerate(plan.shards[0]):
            plain[i] = maps[j].astype(np.float16)
            turned[i] = back[j, k:k + CHANNELS_PER_COMPARTMENT].astype(np.float16)


def two_pass_maps(predictor, source: ImageSource, roles: dict, compartment: str, frame: int = 0, *,
                  tile: int = 512, overlap: int = 32, pixel_size_um: float | None = None, gamma: float = 1.0,
                  scale: float | None = None, batch: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """One compartment's maps of one whole frame, from a plain pass and from a half-turned pass turned back.

    ``predictor`` should run without augmentation (``augment="none"``), so that the two passes stay apart.
    Windows, normalisation and blending are those of :func:`cellscale.segment.image.segment_image`. This holds
    the whole frame's maps (about 50 bytes a pixel); :func:`band_signals` gives the tiles' signals band by band.

    Returns
    -------
    Two (4, Y, X) float32 arrays on the image's grid: [inner distance, p(background), p(boundary),
    p(interior)], the plain pass and the turned one.
    """
    plan, recipe, mine, k = _review_plan(predictor, source, roles, compartment, frame, tile, overlap,
                                         pixel_size_um, gamma, scale)
    plain: dict[int, np.ndarray] = {}
    turned: dict[int, np.ndarray] = {}
    _two_passes(predictor, source, recipe, plan, mine, k, batch, plain, turned)
    n = CHANNELS_PER_COMPARTMENT
    a = blend_maps(plan, plain.__getitem__, frame, n)
    b = blend_maps(plan, turned.__getitem__, frame, n)
    return to_source_grid(a, plan.source_shape, plan.scale), to_source_grid(b, plan.source_shape, plan.scale)


def band_signals(predictor, source: ImageSource, roles: dict, compartment: str, labels: np.ndarray,
                 boxes: list[tuple[int, int, int, int]], frame: int = 0, *, tile: int = 512, overlap: int = 32,
                 pixel_size_um: float | None = None, gamma: float = 1.0, scale: float | None = None,
                 batch: int = 16) -> list[Tile]:
    """:func:`tile_signals` of :func:`two_pass_maps`, computed one row of boxes at a time (same values).

    Each row of boxes blends only the windows that cover it (both passes, model grid), resampled back to the
    image grid row by row; a window's maps are kept while a later row still needs them. Memory: one row of
    windows and one row of boxes' maps, not the frame's (``labels``, the frame's current labels, are read whole).
    """
    h, w = labels.shape
    if (h, w) != tuple(source.shape[2:]):
        raise ValueError(f"labels of shape {labels.shape} do not match the image's {tuple(source.shape[2:])}")
    plan, recipe, mine, k = _review_plan(predictor, source, roles, compartment, frame, tile, overlap,
                                         pixel_size_um, gamma, scale)
    _, mh, mw = plan.shape
    th = plan.tile[0]
    odd_lut = cell_oddness(labels)
    n = CHANNELS_PER_COMPARTMENT
    cols = np.clip(np.floor((np.arange(w) + 0.5) * plan.scale).astype(int), 0, mw - 1)
    plain: dict[int, np.ndarray] = {}
    turned: dict[int, np.ndarray] = {}
    tiles: list[Tile | None] = [None] * len(boxes)
    rows_of_boxes: dict[tuple[int, int], list[int]] = {}
    for i, (y0, y1, _, _) in enumerate(boxes):
        rows_of_boxes.setdefault((y0, y1), []).append(i)
    for (y0, y1), members in sorted(rows_of_boxes.items()):
        rows = np.clip(np.floor((np.arange(y0, y1) + 0.5) * plan.scale).astype(int), 0, mh - 1) \
            if plan.scale != 1.0 else np.arange(y0, y1)
        my0, my1 = int(rows.min()), int(rows.max()) + 1
        need = [i for i in mine if plan.tiles[i][1] < my1 and plan.tiles[i][1] + th > my0]
        for cache in (plain, turned):  # windows no later row needs (rows come top to bottom)
            for i in [i for i in cache if plan.tiles[i][1] + th <= my0]:
                del cache[i]
        _two_passes(predictor, source, recipe, plan, [i for i in need if i not in plain], k, batch, plain, turned)
        a = blend_region(plan, plain.__getitem__, frame, my0, my1, 0, mw, n)
        b = blend_region(plan, turned.__getitem__, frame, my0, my1, 0, mw, n)
        if plan.scale != 1.0:
            a, b = (m[:, rows - my0][:, :, cols] for m in (a, b))
        lo = max(0, y0 - 1)  # one row of context above and below: the outline test of inner_pixels
        inner = inner_pixels(labels[lo:min(h, y1 + 1)])[y0 - lo:y0 - lo + y1 - y0]
        band = labels[y0:y1]
        for i, t in zip(members, tile_signals(a, b, band, [(0, y1 - y0, x0, x1) for _, _, x0, x1 in
                                                           (boxes[j] for j in members)],
                                              inner=inner, odd=odd_lut[band])):
            tiles[i] = Tile(i, boxes[i], t.signals)
    return tiles


def tile_grid(shape: tuple[int, int], tile: int,
              region: tuple[int, int, int, int] | None = None) -> list[tuple[int, int, int, int]]:
    """The (y0, y1, x0, x1) boxes of the non-overlapping ``tile``-px grid of a (Y, X) image, row-major.

    Only whole squares inside the image (and inside ``region`` = (y0, y1, x0, x1), when given) are
    candidates; an image smaller than ``tile`` on an axis is one tile along it.
    """
    h, w = shape
    ry0, ry1, rx0, rx1 = region or (0, h, 0, w)
    ry0, rx0, ry1, rx1 = max(0, ry0), max(0, rx0), min(h, ry1), min(w, rx1)
    if tile < 1:
        raise ValueError(f"tile size must be at least 1 px, got {tile}")

    def starts(length: int, lo: int, hi: int) -> list[tuple[int, int]]:
        if length <= tile:
            return [(0, length)] if (lo, hi) == (0, length) else []
        first = -(-lo // tile) * tile  # the grid stays anchored at 0 whatever the region
        return [(s, s + tile) for s in range(first, hi - tile + 1, tile)]

    return [(y0, y1, x0, x1) for y0, y1 in starts(h, ry0, ry1) for x0, x1 in starts(w, rx0, rx1)]


def cell_oddness(labels: np.ndarray) -> np.ndarray:
    """Per label value, how implausible its cell's size and shape are (0 = plausible, 1 = very odd).

    (Y, X) integer labels -> (labels.max() + 1,) float32, 0 for the background and absent labels; see the
    module's ``shape`` signal.
    """
    labels = np.asarray(labels)
    odd = np.zeros(int(labels.max(initial=0)) + 1, np.float32)
    if odd.size == 1:
        return odd
    props = regionprops_table(labels.astype(np.int64, copy=False), properties=("label", "area", "solidity"))
    area = props["area"].astype(np.float64)
    median = float(np.median(area))
    size = np.clip(np.abs(np.log(area / median)) / np.log(4.0), 0, 1)
    shape = np.clip((0.9 - props["solidity"]) / 0.3, 0, 1)
    odd[props["label"]] = np.maximum(size, shape)
    return odd


def inner_pixels(labels: np.ndarray) -> np.ndarray:
    """Pixels of a cell whose four neighbours belong to the same cell (its outline left out): (Y, X) bool."""
    padded = np.pad(labels, 1, mode="edge")
    inner = labels > 0
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        inner &= padded[1 + dy:1 + dy + labels.shape[0], 1 + dx:1 + dx + labels.shape[1]] == labels
    return inner


def tile_signals(plain: np.ndarray, turned: np.ndarray, labels: np.ndarray,
                 boxes: list[tuple[int, int, int, int]], *, inner: np.ndarray | None = None,
                 odd: np.ndarray | None = None) -> list[Tile]:
    """The signals of each box (see the module): ``plain``, ``turned`` from :func:`two_pass_maps`, ``labels``
    the frame's (Y, X) current labels. ``inner`` (:func:`inner_pixels`) and ``odd`` (each pixel's
    :func:`cell_oddness`) default to those of ``labels``; a band of a frame passes the frame's."""
    if plain.shape[1:] != labels.shape or turned.shape != plain.shape:
        raise ValueError(f"maps of shape {plain.shape[1:]} do not match labels of shape {labels.shape}")
    tv = 0.5 * np.abs(plain[1:] - turned[1:]).sum(axis=0)
    per_pixel = 0.5 * (tv + np.abs(plain[0] - turned[0]))
    boundary = 0.5 * (plain[2] + turned[2]) * (inner_pixels(labels) if inner is None else inner)
    odd = cell_oddness(labels)[labels] if odd is None else odd
    tiles = []
    for i, (y0, y1, x0, x1) in enumerate(boxes):
        box = np.s_[y0:y1, x0:x1]
        tiles.append(Tile(i, (y0, y1, x0, x1), {
            "disagreement": float(per_pixel[box].mean()),
            "boundary": float(boundary[box].mean()),
            "shape": float(odd[box].mean()),
        }))
    return tiles


def score_tiles(tiles: list[Tile], weights: dict[str, float] | None = None) -> list[Tile]:
    """Set each tile's score: the weighted sum of its signals, each divided by its maximum over ``tiles``."""
    weights = weights or WEIGHTS
    tops = {name: max((t.signals[name] for t in tiles), default=0.0) for name in weights}
    for t in tiles:
        t.score = float(sum(w * (t.signals[name] / tops[name] if tops[name] > 0 else 0.0)
                            for name, w in weights.items()))
    return tiles


def least_sure(tiles: list[Tile], k: int) -> list[Tile]:
    """The ``k`` tiles of highest score (ties: the earlier tile in the grid), highest first."""
    return sorted(tiles, key=lambda t: (-t.score, t.index))[:k]


def random_tiles(tiles: list[Tile], k: int, seed: int) -> list[Tile]:
    """``k`` tiles drawn without replacement by a generator seeded with ``seed`` (in the order drawn)."""
    order = np.random.default_rng(seed).permutation(len(tiles))[:k]
    return [tiles[int(i)] for i in order]
