"""Training rows of the learned scorer from ground-truth movies.

:func:`training_rows` lists the candidates :func:`cellscale.track.link` would
score with ``costs="learned"`` on a ground-truth label stack (label values are
track ids, as in a CTC ``TRA`` folder or a generated movie), their features
and whether each is true (:func:`truth_of_candidates`, from the CTC lineage).
:func:`cellscale.track.scorer.fit_scorer` fits the scorer on them; the
command ``cellscale train-tracker`` generates the movies and writes the
scorer folder.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cellscale.track.config import TrackConfig
from cellscale.track.costs import build_candidates, estimate_max_distance
from cellscale.track.detections import detections_from_labels

__all__ = ["jitter_labels", "training_rows", "truth_of_candidates"]


def truth_of_candidates(label: np.ndarray, src: np.ndarray, dst: np.ndarray, mother: np.ndarray,
                        da: np.ndarray, db: np.ndarray, lineage: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Whether each candidate link / division is true, when the detections'
    ``label`` values are ground-truth track ids and ``lineage`` is the CTC
    table (columns L, B, E, P). A link is true when both ends carry the same
    track id; a division when both daughters' parent is the mother's track."""
    parent = dict(zip(lineage["L"].astype(int), lineage["P"].astype(int)))
    link_true = label[src] == label[dst]
    pa = np.array([parent.get(int(v), 0) for v in label[da]], dtype=np.int64)
    pb = np.array([parent.get(int(v), 0) for v in label[db]], dtype=np.int64)
    div_true = (pa == label[mother]) & (pb == label[mother]) & (label[da] != label[db])
    return link_true, div_true


def training_rows(labels: np.ndarray, lineage: pd.DataFrame, config=None, image: np.ndarray | None = None):
    """Labelled feature rows of one ground-truth movie.

    ``labels``: (T, Y, X) stack whose label values are track ids (a CTC
    ``TRA`` folder, or a generated movie); ``lineage``: its ``L B E P``
    table. The candidates are the ones :func:`cellscale.track.link` scores
    with ``costs="learned"`` (same search radius, same enumeration).

    Returns ``(x_link, y_link, x_division, y_division)``.
    """
    cfg = TrackConfig.from_dict({**(config or {}), "costs": "rules"})  # features_out: the learned enumeration
    det = detections_from_labels(labels, image)
    frame = det["frame"].to_numpy()
    label = det["label"].to_numpy()
    pos = det[["y", "x"]].to_numpy(dtype=float)
    area = det["area"].to_numpy(dtype=float)
    inten = det["mean_intensity"].to_numpy(dtype=float) if "mean_intensity" in det else None
    md = float(cfg.max_distance) if cfg.max_distance else estimate_max_distance(frame, pos, area)
    rows: dict = {}
    cand = build_candidates(frame, label, pos, area, inten, labels.shape[0], labels, labels.shape[1:], md, cfg,
                            gaps=False, features_out=rows)
    del cand
    yl, yd = truth_of_candidates(label, rows["link_src"], rows["link_dst"], rows["mother"], rows["daughter_a"],
                                 rows["daughter_b"], lineage)
    return rows["link_x"], yl, rows["division_x"], yd


def jitter_labels(labels: np.ndarray, seed: int = 0, p: float = 0.5) -> np.ndarray:
    """Segmentation noise for training: in every frame each object is, with
    probability ``p``, eroded or dilated by one pixel (4-neighbourhood; half
    each), so that true links also show the area changes of a real
    segmentation. Objects keep at least their centre pixel. Returns a new stack."""
    rng = np.random.default_rng(seed)
    out = np.array(labels, copy=True)
    for t in range(out.shape[0]):
        f = out[t]
        keys = np.unique(f[f > 0])
        if keys.size == 0:
            continue
        draw = rng.uniform(size=keys.size)
        mode = np.where(draw < p / 2, -1, np.where(draw < p, 1, 0))  # -1 erode, +1 dilate
        lut = np.zeros(int(keys.max()) + 1, np.int8)
        lut[keys] = mode
        m = lut[f] if f.size else f
        # erosion: pixels of an eroding object with a neighbour of another value
        pad = np.pad(f, 1, mode="edge")
        edge = ((pad[:-2, 1:-1] != f) | (pad[2:, 1:-1] != f) | (pad[1:-1, :-2] != f) | (pad[1:-1, 2:] != f))
        erode = (f > 0) & (m == -1) & edge
        # dilation: background pixels next to a dilating object take its value
        grow = np.zeros_like(f)
        for nb in (pad[:-2, 1:-1], pad[2:, 1:-1], pad[1:-1, :-2], pad[1:-1, 2:]):
            take = (f == 0) & (grow == 0) & (nb > 0) & (lut[nb] == 1)
            grow[take] = nb[take]
        g = f.copy()
        g[erode] = 0
        g[grow > 0] = grow[grow > 0]
        lost = np.setdiff1d(keys, np.unique(g[g > 0]))
        for k in lost:  # an object eroded away keeps its pixels
            g[f == k] = k
        out[t] = g
    return out


def per_movie_weights(counts) -> np.ndarray:
    """Row weights under which every movie weighs the same, whatever its number of rows (``counts``: rows per
    movie, in the order the rows are concatenated); they average 1."""
    counts = np.asarray(counts, dtype=np.int64)
    w = np.repeat(1.0 / np.maximum(counts, 1), counts)
    return w * (w.size / w.sum()) if w.size else w


#: The generated movies of the shipped scorer: (generator, keyword arguments, jitter the labels).
#: ``colony`` is :func:`cellscale.synth.colony.make_colony` (``preset`` names one of its PRESETS, or
#: ``"random"``: :func:`cellscale.synth.colony.random_colony_params` of the seed, colonies of many kinds),
#: ``timelapse`` :func:`cellscale.synth.timelapse.make_timelapse`. Seeds 1-14 and 21-36: the benchmark
#: tests on other seeds (colonies 101, 201, 202, and the varied colonies of seed 501).
TRAINING_MOVIES: tuple[tuple[str, dict, bool], ...] = (
    ("colony", {"preset": "hard", "seed": 1}, False),
    ("colony", {"preset": "hard", "seed": 2}, False),
    ("colony", {"preset": "hard", "seed": 3}, False),
    ("colony", {"preset": "default", "seed": 4}, False),
    ("colony", {"preset": "default", "seed": 5}, False),
    ("colony", {"preset": "hard", "seed": 6, "cell_shape": "round"}, False),
    ("timelapse", {"seed": 11, "n_frames": 60, "shape": (512, 512), "n_cells": 40}, False),
    ("timelapse", {"seed": 12, "n_frames": 60, "shape": (512, 512), "n_cells": 40}, False),
    ("timelapse", {"seed": 13, "n_frames": 60, "shape": (512, 512), "n_cells": 40, "n_divisions": 30}, False),
    ("timelapse", {"seed": 13, "n_frames": 60, "shape": (512, 512), "n_cells": 40, "n_divisions": 30}, True),
    ("timelapse", {"seed": 14, "n_frames": 60, "shape": (512, 512), "n_cells": 40, "n_divisions": 30}, False),
    ("timelapse", {"seed": 14, "n_frames": 60, "shape": (512, 512), "n_cells": 40, "n_divisions": 30}, True),
) + tuple(("colony", {"preset": "random", "seed": s}, False) for s in range(21, 37))
