"""Training batches: randomly scaled, flipped, rotated and intensity-jittered crops, in one or several processes."""

from __future__ import annotations

import itertools
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from functools import partial

import numpy as np
from scipy import ndimage as ndi

from cellscale.parallel import ordered_map
from cellscale.train.data import Example
from cellscale.train.targets import KNOWN, NOTHING, OUTSIDE, PARTIAL_CELL, make_targets


def random_crop(example: Example, size: int, rng: np.random.Generator, scale_range=(0.6, 1.7)):
    """A randomly scaled, flipped and rotated crop: (C, S, S) image, {comp: (S, S)} labels and, for the
    compartments where something is not known, {comp: (S, S)} what (:data:`~cellscale.train.targets.KNOWN`,
    ``PARTIAL_CELL``: a cell an edge of ``example.cut`` cuts, ``OUTSIDE``: padding where the crop reaches past a
    small example); a whole image's crop that fits has none."""
    scale = float(np.exp(rng.uniform(np.log(scale_range[0]), np.log(scale_range[1]))))
    c, h, w = example.image.shape
    src = int(np.ceil(size / scale))
    y0 = rng.integers(0, max(1, h - src + 1))
    x0 = rng.integers(0, max(1, w - src + 1))
    img = example.image[:, y0:y0 + src, x0:x0 + src]
    labs = {k: v[y0:y0 + src, x0:x0 + src] for k, v in example.labels.items()}
    partial = ({k: np.isin(labs[k], edge_cells(v, example.cut)).astype(np.uint8) for k, v in example.labels.items()}
               if any(example.cut) else {})
    zoom = size / src
    img = np.stack([ndi.zoom(ch, zoom, order=1) for ch in img])
    labs = {k: ndi.zoom(v, zoom, order=0) for k, v in labs.items()}
    partial = {k: ndi.zoom(v, zoom, order=0) for k, v in partial.items()}
    high, wide = min(img.shape[1], size), min(img.shape[2], size)  # the image's part of the crop; padding beyond
    if high < size or wide < size:
        img = np.pad(img, ((0, 0), (0, size - high), (0, size - wide)))
        labs = {k: np.pad(v, ((0, size - high), (0, size - wide))) for k, v in labs.items()}
    img = img[:, :size, :size]
    labs = {k: v[:size, :size] for k, v in labs.items()}
    unknown = {}
    for comp in (labs if high < size or wide < size else partial):
        unknown[comp] = np.full((size, size), OUTSIDE, np.uint8)
        inside = partial[comp][:high, :wide] if comp in partial else 0
        unknown[comp][:high, :wide] = np.where(inside, PARTIAL_CELL, KNOWN)
    k = int(rng.integers(4))
    flip = bool(rng.integers(2))

    def geo(a):
        a = np.rot90(a, k, axes=(-2, -1))
        return np.ascontiguousarray(a[..., ::-1] if flip else a)

    img = geo(img)
    labs, unknown = ({kk: geo(v) for kk, v in d.items()} for d in (labs, unknown))
    gamma = float(np.exp(rng.normal(0, 0.25)))
    img = np.sign(img) * np.abs(img) ** gamma * float(rng.uniform(0.8, 1.25))
    img = img + rng.normal(0, rng.uniform(0, 0.03), img.shape)
    return np.ascontiguousarray(img, np.float32), labs, unknown


def edge_cells(labels: np.ndarray, cut: tuple[bool, bool, bool, bool]) -> np.ndarray:
    """The cells that touch an edge of ``cut`` (top, bottom, left, right): they go on beyond it."""
    edges = [e for e, on in zip((labels[0], labels[-1], labels[:, 0], labels[:, -1]), cut) if on]
    return np.setdiff1d(np.unique(np.concatenate(edges)), [0]) if edges else np.zeros(0, labels.dtype)


def one_batch(examples: list[Example], compartments: list[str], size: int, batch: int, rng: np.random.Generator):
    """One (x (B,S,S,C), y (B,S,S,2*n_comp)) training batch of random crops."""
    xs, ys = [], []
    for _ in range(batch):
        ex = examples[int(rng.integers(len(examples)))]
        img, labs, unknown = random_crop(ex, size, rng)
        xs.append(np.moveaxis(img, 0, -1))
        ys.append(np.concatenate([make_targets(labs[c], unknown.get(c)) if c in labs else missing_targets(size)
                                  for c in compartments], axis=-1))
    return np.stack(xs), np.stack(ys).astype(np.float32)


def batches(examples: list[Example], compartments: list[str], size: int, batch: int, seed: int, workers: int = 0):
    """Endless generator of training batches (see ``one_batch``).

    With ``workers`` > 0 the crops are made in that many processes (an accelerator
    trains faster than one core can crop); batch ``i`` then draws from its own
    generator seeded by ``(seed, i)``, so the stream does not depend on the number
    of workers (it differs from the one-process stream, which draws from one generator).
    """
    if workers > 0:
        yield from _parallel_batches(examples, compartments, size, batch, seed, workers)
        return
    rng = np.random.default_rng(seed)
    while True:
        yield one_batch(examples, compartments, size, batch, rng)


_WORKER_EXAMPLES: list[Example] = []


def _keep_examples(examples: list[Example]) -> None:
    _WORKER_EXAMPLES[:] = examples


def _seeded_batch(compartments: list[str], size: int, batch: int, seed: int, index: int):
    return one_batch(_WORKER_EXAMPLES, compartments, size, batch, np.random.default_rng([seed, index]))


def _parallel_batches(examples, compartments, size, batch, seed, workers):
    # spawn, not fork: the parent already runs the accelerator runtime's threads
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_keep_examples, initargs=(examples,)) as pool:
        yield from ordered_map(partial(_seeded_batch, compartments, size, batch, seed), itertools.count(), workers,
                               pool)


def missing_targets(size: int) -> np.ndarray:
    """Targets of a compartment an example has no labels for: -1 everywhere (masked out of the loss)."""
    return np.full((size, size, 2), NOTHING, np.float32)
