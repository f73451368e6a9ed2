"""Learned scorer of candidate links and divisions (``track.costs: learned``).

Two gradient-boosted tree ensembles (scikit-learn's
``HistGradientBoostingClassifier``) map the features of
:mod:`cellscale.track.features` of a candidate link or division to the
probability that it is true. The costs fed to the solvers (the same LAP and
ILP as the rule-based costs, which then choose jointly) are
``scale * -log(p)``: with the default scale ``2 / log 2`` a link of
probability 1/2 costs as much as ending one track and starting another
(``2 * birth_cost`` with ``birth_cost = 1``).

A trained scorer is a folder (the shipped one: ``models/track-scorer``):

* ``scorer.json``: feature names, cost scales, what it was trained on, the
  scikit-learn version that trained it;
* ``trees.npz``: the trees as plain arrays (feature, threshold, children,
  leaf values) for each of ``link`` and ``division``.

Prediction walks those arrays with numpy (:func:`predict_trees`): loading
needs neither pickle nor scikit-learn, and gives the same numbers as
scikit-learn's ``predict_proba`` (checked in the tests). Training
(:func:`fit_scorer`) needs scikit-learn;
:func:`cellscale.track.training.training_rows` turns a ground-truth label
stack (labels are track ids) and its CTC lineage into labelled feature
rows. The command ``cellscale train-tracker`` generates the training movies
and writes the folder.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

from cellscale.track.features import DIVISION_FEATURES, LINK_FEATURES

__all__ = ["Scorer", "predict_trees", "export_trees", "fit_scorer", "load_scorer",
           "shipped_scorer_dir", "scorer_folder_problem", "SCORER_FILES"]

SCORER_FILES = ("scorer.json", "trees.npz")
DEFAULT_SCALE = 2.0 / math.log(2.0)
_P_MIN = 1e-4


def export_trees(model) -> dict:
    """The trees of a fitted binary ``HistGradientBoostingClassifier`` as plain arrays.

    Returns ``{"feature", "threshold", "left", "right", "leaf", "value",
    "missing_left"}`` (all nodes of all trees, child indices global),
    ``"roots"`` (first node of each tree), ``"baseline"`` and ``"depth"``.
    """
    preds = [p[0] for p in model._predictors]  # one tree per iteration (binary)
    feat, thr, left, right, leaf, value, miss, roots = [], [], [], [], [], [], [], []
    offset, depth = 0, 0
    for tree in preds:
        nodes = tree.nodes
        if np.any(nodes["is_categorical"]):
            raise ValueError("categorical splits are not supported")
        roots.append(offset)
        feat.append(nodes["feature_idx"].astype(np.int32))
        thr.append(nodes["num_threshold"].astype(np.float64))
        left.append(nodes["left"].astype(np.int64) + offset)
        right.append(nodes["right"].astype(np.int64) + offset)
        leaf.append(nodes["is_leaf"].astype(bool))
        value.append(nodes["value"].astype(np.float64))
        miss.append(nodes["missing_go_to_left"].astype(bool))
        depth = max(depth, int(nodes["depth"].max()))
        offset += nodes.size
    cat = np.concatenate
    return {"feature": cat(feat), "threshold": cat(thr), "left": cat(left), "right": cat(right),
            "leaf": cat(leaf), "value": cat(value), "missing_left": cat(miss),
            "roots": np.asarray(roots, np.int64),
            "baseline": np.asarray(np.ravel(model._baseline_prediction)[:1], np.float64),
            "depth": np.asarray([depth], np.int64)}


def predict_trees(trees: dict, x: np.ndarray, chunk: int = 2048, min_raw: np.ndarray | None = None) -> np.ndarray:
    """Probability of the positive class for the rows of ``x`` (n, n_features)
    from :func:`export_trees` arrays (NaN follows ``missing_left``).

    Rows without NaN take the exit-leaf bitmasks of :func:`_compile` (one
    table gather and AND per feature instead of a walk of every tree); rows
    with NaN walk the trees (:func:`_predict_walk`). Both give the same
    leaves, hence the same numbers (the leaf values are summed in tree order).

    ``min_raw`` (one per row): the least raw score (log-odds) of interest.
    The trees are evaluated in stages (cut at :data:`_STAGES` where the
    bound could prune some row there); after each, a row whose score cannot
    reach its ``min_raw`` even if every remaining tree gave its largest leaf
    gets NaN, and the next stage evaluates the remaining rows only. The other rows get exactly the numbers they would
    get without ``min_raw``. Each feature's value is ranked among its
    thresholds once; every stage reads its trees' columns of the same tables.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or np.isnan(x).any():
        return _predict_walk(trees, x)
    comp = _compiled(trees)
    if comp is None or comp.n_features > x.shape[1]:
        return _predict_walk(trees, x)
    leaf_value = comp.leaf_value
    n_trees = leaf_value.shape[0]
    baseline = float(trees["baseline"][0])
    cuts = [0, n_trees]
    if min_raw is not None and n_trees >= 8:
        # a stage ends where some row could be pruned: its min_raw above the lowest score the trees before
        # the cut can give plus the highest the trees after it can (else the cut only costs time)
        need = float(np.max(min_raw)) if np.size(min_raw) else -np.inf
        cuts = sorted({0, n_trees, *(c for c in (int(round(f * n_trees)) for f in _STAGES) if 0 < c < n_trees
                                     and need - comp.ceiling[c] > baseline + comp.floor[c] - 1e-6)})
    n = x.shape[0]
    # per feature, how many of its splits each row goes right at (thresholds below the value)
    rank = [grid.rank(x[:, f]) for f, _, _, grid in comp.tables]
    stages = []  # per stage: the rows it scored (None: all) and their exit leaves' values (rows, its trees)
    alive = None  # rows still of interest (None: all)
    partial = np.full(n, baseline)
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        sub = np.empty((n if alive is None else alive.size, hi - lo))
        _exit_values(_stage_tables(comp, lo, hi), leaf_value[lo:hi], comp.one,
                     rank if alive is None else [r[alive] for r in rank], sub, chunk)
        stages.append((alive, sub))
        if hi < n_trees:
            # prune the rows that cannot reach min_raw even with the largest leaf of every remaining tree
            rows = np.arange(n) if alive is None else alive
            partial[rows] += sub.sum(1)
            alive = rows[partial[rows] + comp.ceiling[hi] >= np.asarray(min_raw, float)[rows] - 1e-6]
    if len(stages) == 1:
        values = stages[0][1]
    else:  # the surviving rows' leaf values of every tree, in tree order
        values = np.hstack([sub[alive if rows is None else np.searchsorted(rows, alive)] for rows, sub in stages])
    out = 1.0 / (1.0 + np.exp(-(baseline + values.sum(1))))
    if alive is None:
        return out
    full = np.full(n, np.nan)
    full[alive] = out
    return full


#: with ``min_raw``, the trees are evaluated in stages ending at these fractions of them (then all)
_STAGES = (0.5,)


def _exit_values(columns: list[np.ndarray], leaf_value: np.ndarray, one, rank: list[np.ndarray],
                 out: np.ndarray, chunk: int) -> None:
    """Write into ``out`` (n, trees) the value of each row's exit leaf of each tree: ``columns`` are the
    trees' columns of the feature tables, ``rank`` the rows' rank per feature (:func:`predict_trees`)."""
    n_trees, width = leaf_value.shape
    flat = leaf_value.ravel()
    offset = np.arange(n_trees, dtype=np.intp) * width
    n = out.shape[0]
    for s in range(0, n, chunk):
        acc = None
        for table, k in zip(columns, rank):
            g = np.take(table, k[s:s + chunk], axis=0)  # (3x faster than table[k] for these row gathers)
            if acc is None:
                acc = g
            else:
                acc &= g
        if acc is None:  # no split at all: every tree is one leaf
            acc = np.ones((min(chunk, n - s), n_trees), dtype=one.dtype)
        exit_bit = acc & (~acc + one)  # the exit leaf: the leftmost leaf still reachable (its bit alone)
        # the bit's position: the exponent of the power of two, exact as a float (a libm frexp is 5x slower)
        if exit_bit.dtype == np.uint32:
            bit = (exit_bit.astype(np.float32).view(np.int32) >> 23) - 127
        else:
            bit = (exit_bit.astype(np.float64).view(np.int64) >> 52) - 1023
        np.take(flat, bit + offset, out=out[s:s + chunk])


class _Compiled(NamedTuple):
    """The exit-leaf tables of a model's trees (:func:`_compile`)."""

    tables: list  # per feature with splits: (feature, sorted thresholds, table (splits + 1, trees), _RankGrid)
    leaf_value: np.ndarray  # (trees, leaves): leaf k of a tree is bit k of its masks
    one: np.generic  # 1 in the masks' integer type (uint32 or uint64)
    n_features: int  # the columns a row must have
    floor: np.ndarray  # floor[k]: the lowest sum the trees before tree k can give (trees + 1 values)
    ceiling: np.ndarray  # ceiling[k]: the highest sum tree k and the trees after it can give (trees + 1 values)
    stages: dict  # (first tree, end): the tables' columns of those trees (:func:`_stage_tables`)


_COMPILED: dict[int, tuple] = {}


def _stage_tables(comp: _Compiled, lo: int, hi: int) -> list[np.ndarray]:
    """The columns of trees ``lo:hi`` of each feature table of ``comp`` (contiguous copies, cached with it)."""
    if (lo, hi) not in comp.stages:
        comp.stages[lo, hi] = [np.ascontiguousarray(table[:, lo:hi]) for _, _, table, _ in comp.tables]
    return comp.stages[lo, hi]


def _compiled(trees: dict):
    """:func:`_compile` of the trees, cached while the arrays live."""
    key = id(trees["feature"])
    hit = _COMPILED.get(key)
    if hit is not None and hit[0] is trees["feature"] and hit[1] is trees["threshold"]:
        return hit[2]
    comp = _compile(trees)
    if len(_COMPILED) > 32:
        _COMPILED.clear()
    _COMPILED[key] = (trees["feature"], trees["threshold"], comp)
    return comp


def _compile(trees: dict):
    """Exit-leaf tables of the trees (Lucchese et al., QuickScorer, SIGIR 2015).

    The leaves of every tree are numbered left to right (bit ``k`` of a
    mask: leaf ``k``). A split sends a row right when its feature exceeds
    the threshold, which rules out the leaves of its left subtree; the leaf
    a row reaches is the leftmost one no split it goes right at rules out.
    For each feature the splits on it are sorted by threshold, and row ``k``
    of its table holds, per tree, the leaves still possible after the ``k``
    splits of lowest threshold: a row ``x`` whose value exceeds ``k``
    thresholds takes row ``k`` (``searchsorted``, by way of :class:`_RankGrid`). ANDing the tables of all
    features gives, per tree, the reachable leaves; the lowest set bit is the
    exit leaf. Returns a :class:`_Compiled`, or ``None`` when a tree has more than 64 leaves.
    """
    feat = np.asarray(trees["feature"]).astype(np.int64)
    thr = np.asarray(trees["threshold"], dtype=np.float64)
    left = np.asarray(trees["left"]).astype(np.int64)
    right = np.asarray(trees["right"]).astype(np.int64)
    leaf = np.asarray(trees["leaf"]).astype(bool)
    value = np.asarray(trees["value"], dtype=np.float64)
    roots = np.asarray(trees["roots"]).astype(np.int64)
    n_trees = roots.size
    tree_of = np.full(feat.size, -1, np.int64)
    left_bits = np.zeros(feat.size, dtype=object)  # per split: the leaves of its left subtree
    leaves: list[list[int]] = []
    for t, root in enumerate(roots.tolist()):
        order: list[int] = []
        stack = [(root, False)]
        bits: dict[int, int] = {}
        while stack:  # post-order walk, left before right
            node, done = stack.pop()
            tree_of[node] = t
            if leaf[node]:
                bits[node] = 1 << len(order)
                order.append(node)
            elif done:
                bits[node] = bits[int(left[node])] | bits[int(right[node])]
                left_bits[node] = bits[int(left[node])]
            else:
                stack.extend([(node, True), (int(right[node]), False), (int(left[node]), False)])
        leaves.append(order)
    width = max((len(o) for o in leaves), default=1)
    if width > 64:
        return None
    dtype = np.uint32 if width <= 32 else np.uint64
    full = (1 << (32 if width <= 32 else 64)) - 1
    leaf_value = np.zeros((n_trees, max(width, 1)))
    for t, order in enumerate(leaves):
        leaf_value[t, :len(order)] = value[order]
    split = np.flatnonzero(~leaf & (tree_of >= 0))
    tables = []
    n_features = int(feat[split].max()) + 1 if split.size else 0
    for f in range(n_features):
        nodes = split[feat[split] == f]
        if nodes.size == 0:
            continue
        nodes = nodes[np.argsort(thr[nodes], kind="stable")]
        table = np.empty((nodes.size + 1, n_trees), dtype)
        current = np.full(n_trees, full, dtype)
        table[0] = current
        for k, node in enumerate(nodes.tolist()):
            t = tree_of[node]
            current[t] = current[t] & dtype(full & ~int(left_bits[node]))
            table[k + 1] = current
        tables.append((f, thr[nodes].copy(), table, _RankGrid(thr[nodes])))
    top = [value[order].max() for order in leaves]
    low = [value[order].min() for order in leaves]
    floor = np.concatenate([[0.0], np.cumsum(low)])
    ceiling = np.concatenate([np.cumsum(top[::-1])[::-1], [0.0]]) if top else np.zeros(1)
    return _Compiled(tables, leaf_value, dtype(1), n_features, floor, ceiling, {})


class _RankGrid:
    """``np.searchsorted(thresholds, x, side="left")`` (how many of a feature's sorted thresholds lie below
    each value), about 2x faster for many values: a value's cell of a fine grid over the thresholds' range
    gives the count of the thresholds in lower cells, exact unless a threshold shares the cell, and only
    those values are searched. The cell is a non-decreasing function of the value, computed the same way
    for values and thresholds, so a threshold in a lower cell is below the value and one in a higher cell
    above it."""

    def __init__(self, thresholds: np.ndarray, per_threshold: int = 16):
        self.thresholds = np.asarray(thresholds, np.float64)
        m = self.thresholds.size
        self.cells = max(1, min(per_threshold * m, 1 << 16))
        span = float(self.thresholds[-1] - self.thresholds[0]) if m else 0.0
        self.lo = float(self.thresholds[0]) if m else 0.0
        with np.errstate(over="ignore", divide="ignore"):
            scale = self.cells / span if span > 0 else 0.0
        # (a span so small that the scale overflows, or none: one cell)
        self.scale = float(scale) if np.isfinite(scale) and np.isfinite(self.lo) and np.isfinite(span) else 0.0
        cell = self.cell(self.thresholds)
        count = np.bincount(cell, minlength=self.cells)
        self.below = np.cumsum(count) - count  # thresholds in lower cells
        self.shared = count > 0

    def cell(self, x: np.ndarray) -> np.ndarray:
        """The cell of each value (not NaN)."""
        if self.scale == 0.0:  # thresholds all equal: one cell
            return np.zeros(np.shape(x), np.intp)
        with np.errstate(over="ignore"):  # (far values: +-inf, clipped)
            return np.clip((x - self.lo) * self.scale, 0, self.cells - 1).astype(np.intp)

    def rank(self, x: np.ndarray) -> np.ndarray:
        cell = self.cell(x)
        out = self.below.take(cell)
        look = np.flatnonzero(self.shared.take(cell))
        if look.size:
            out[look] = np.searchsorted(self.thresholds, x[look], side="left")
        return out


def _predict_walk(trees: dict, x: np.ndarray, chunk: int = 16384) -> np.ndarray:
    """:func:`predict_trees` by walking the trees: all trees walk one level per
    step; a leaf points to itself (threshold +inf), so a step is three gathers
    and a comparison. Handles NaN (``missing_left``)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    out = np.empty(n)
    roots = trees["roots"]
    depth = int(trees["depth"][0])
    leaf = trees["leaf"].astype(bool)
    self_ = np.arange(leaf.size)
    feat = np.where(leaf, 0, trees["feature"]).astype(np.intp)
    thr = np.where(leaf, np.inf, trees["threshold"])
    left = np.where(leaf, self_, trees["left"]).astype(np.intp)
    right = np.where(leaf, self_, trees["right"]).astype(np.intp)
    value, miss = trees["value"], trees["missing_left"].astype(bool)
    has_nan = bool(np.isnan(x).any())
    n_feat = max(x.shape[1], 1)
    for s in range(0, n, chunk):
        xs = x[s:s + chunk]
        m = xs.shape[0]
        flat = xs.ravel()
        base = (np.arange(m, dtype=np.intp) * n_feat)[:, None]
        node = np.broadcast_to(roots.astype(np.intp), (m, roots.size)).copy()
        for _ in range(depth):
            v = flat[base + feat[node]]
            go_left = v <= thr[node]
            if has_nan:
                go_left = np.where(np.isnan(v), miss[node], go_left)
            node = np.where(go_left, left[node], right[node])
        raw = float(trees["baseline"][0]) + value[node].sum(1)
        out[s:s + chunk] = 1.0 / (1.0 + np.exp(-raw))
    return out


@dataclass
class Scorer:
    """A trained scorer: tree arrays of ``link`` and ``division`` and the metadata of ``scorer.json``."""

    link_trees: dict
    division_trees: dict
    meta: dict = field(default_factory=dict)

    @property
    def link_scale(self) -> float:
        return float(self.meta.get("link_scale", DEFAULT_SCALE))

    @property
    def division_scale(self) -> float:
        return float(self.meta.get("division_scale", DEFAULT_SCALE))

    def link_probability(self, x: np.ndarray) -> np.ndarray:
        return predict_trees(self.link_trees, x)

    def division_probability(self, x: np.ndarray) -> np.ndarray:
        return predict_trees(self.division_trees, x)

    def link_cost(self, x: np.ndarray, keep_below: np.ndarray | None = None) -> np.ndarray:
        """``link_scale * -log(p)`` of the link feature rows ``x``; with
        ``keep_below`` (one per row), rows whose cost certainly exceeds it
        cost ``inf`` (and their trees are not all evaluated)."""
        return _cost(self.link_trees, self.link_scale, x, keep_below)

    def division_cost(self, x: np.ndarray, keep_below: np.ndarray | None = None) -> np.ndarray:
        return _cost(self.division_trees, self.division_scale, x, keep_below)

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``scorer.json`` and ``trees.npz`` into ``folder`` (created)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {f"link__{k}": v for k, v in self.link_trees.items()}
        arrays.update({f"division__{k}": v for k, v in self.division_trees.items()})
        np.savez_compressed(folder / "trees.npz", **arrays)
        meta = dict(self.meta)
        meta.setdefault("link_features", list(LINK_FEATURES))
        meta.setdefault("division_features", list(DIVISION_FEATURES))
        (folder / "scorer.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "Scorer":
        """Read a scorer folder (no pickle: ``np.load(allow_pickle=False)``); raises
        ValueError when its features are not the ones this version computes."""
        folder = Path(folder)
        if problem := scorer_folder_problem(folder):
            raise FileNotFoundError(f"{folder}: {problem}")
        meta = json.loads((folder / "scorer.json").read_text())
        if tuple(meta.get("link_features", ())) != LINK_FEATURES or \
                tuple(meta.get("division_features", ())) != DIVISION_FEATURES:
            raise ValueError(f"{folder}: the scorer was trained on other features than this version of "
                             "cellscale computes; retrain it (cellscale train-tracker)")
        with np.load(folder / "trees.npz", allow_pickle=False) as z:
            link = {k.split("__", 1)[1]: z[k] for k in z.files if k.startswith("link__")}
            div = {k.split("__", 1)[1]: z[k] for k in z.files if k.startswith("division__")}
        return cls(link, div, meta)


def _cost(trees: dict, scale: float, x: np.ndarray, keep_below: np.ndarray | None) -> np.ndarray:
    min_raw = None
    if keep_below is not None:
        # cost <= c  <=>  p >= exp(-c / scale)  <=>  raw >= logit(that); no bound where the clip decides
        p0 = np.exp(-np.asarray(keep_below, float) / scale)
        with np.errstate(divide="ignore", invalid="ignore"):
            min_raw = np.where(p0 >= 1.0, 30.0, np.log(p0) - np.log1p(-p0))
        min_raw = np.where(p0 <= 2.0 * _P_MIN, -np.inf, min_raw)
        min_raw = np.where(np.isfinite(keep_below), min_raw, -np.inf)
    p = predict_trees(trees, x, min_raw=min_raw)
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(p), np.inf, scale * -np.log(np.clip(p, _P_MIN, 1.0)))


def shipped_scorer_dir() -> Path:
    """``track-scorer`` in the shipped models folder (``$CELLSCALE_MODELS`` when set, else the
    package's ``cellscale/models``; in a checkout the top-level ``models`` links there)."""
    override = os.environ.get("CELLSCALE_MODELS")
    if override:
        return Path(override) / "track-scorer"
    from importlib.resources import files

    return Path(str(files("cellscale").joinpath("models"))) / "track-scorer"


def scorer_folder_problem(folder: str | os.PathLike) -> str | None:
    """What makes ``folder`` no scorer folder, in a few words (``None``: it holds the scorer's files); checked
    before any work by ``cellscale track --scorer`` and the workflow's ``track.scorer``."""
    folder = Path(folder)
    if not folder.is_dir():
        return "no such tracking scorer folder" if not folder.exists() else \
            "a file, not a tracking scorer folder (scorer.json + trees.npz, as cellscale train-tracker writes)"
    missing = [f for f in SCORER_FILES if not (folder / f).is_file()]
    if missing:
        return f"not a tracking scorer folder (missing {', '.join(missing)})"
    return None


@lru_cache(maxsize=4)
def _load_cached(path: str, mtime: float) -> Scorer:
    return Scorer.load(path)


def load_scorer(path: str | os.PathLike | None = None) -> Scorer:
    """The scorer at ``path`` (``None``: the shipped one), cached while its files are unchanged."""
    folder = Path(path) if path else shipped_scorer_dir()
    stamp = max((folder / f).stat().st_mtime for f in SCORER_FILES) if all(
        (folder / f).is_file() for f in SCORER_FILES) else 0.0
    return _load_cached(str(folder), stamp)


# ---------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------
def fit_scorer(x_link, y_link, x_div, y_div, max_iter: int = 100, max_leaf_nodes: int = 31, max_depth: int = 6,
               learning_rate: float = 0.1, seed: int = 0, meta: dict | None = None,
               w_link: np.ndarray | None = None, w_div: np.ndarray | None = None) -> Scorer:
    """Fit the two tree ensembles (needs scikit-learn) and return the :class:`Scorer`; ``w_link``, ``w_div``:
    optional weights of the rows (``None``: every row counts the same)."""
    import sklearn
    from sklearn.ensemble import HistGradientBoostingClassifier

    def fit(x, y, w):
        if len(np.unique(y)) < 2:
            raise ValueError("training rows need both true and false candidates")
        model = HistGradientBoostingClassifier(max_iter=max_iter, max_leaf_nodes=max_leaf_nodes,
                                               max_depth=max_depth, learning_rate=learning_rate, early_stopping=False,
                                               random_state=seed)
        return model.fit(x, y.astype(int), sample_weight=w)

    link_model, div_model = fit(x_link, y_link, w_link), fit(x_div, y_div, w_div)
    info = {"sklearn_version": sklearn.__version__, "max_iter": max_iter, "max_leaf_nodes": max_leaf_nodes,
            "max_depth": max_depth,
            "learning_rate": learning_rate, "seed": seed,
            "n_link_rows": int(len(y_link)), "n_link_true": int(np.sum(y_link)),
            "n_division_rows": int(len(y_div)), "n_division_true": int(np.sum(y_div)),
            "link_scale": DEFAULT_SCALE, "division_scale": DEFAULT_SCALE}
    info.update(meta or {})
    return Scorer(export_trees(link_model), export_trees(div_model), info)
