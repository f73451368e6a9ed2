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

import numpy as np

from cellscale.track.features import DIVISION_FEATURES, LINK_FEATURES

__all__ = ["Scorer", "predict_trees", "export_trees", "fit_scorer", "load_scorer",
           "shipped_scorer_dir", "SCORER_FILES"]

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


def predict_trees(trees: dict, x: np.ndarray, chunk: int = 16384) -> np.ndarray:
    """Probability of the positive class for the rows of ``x`` (n, n_features)
    from :func:`export_trees` arrays (NaN follows ``missing_left``).

    All trees walk one level per step; a leaf points to itself (threshold
    +inf), so a step is three gathers and a comparison.
    """
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

    def link_cost(self, x: np.ndarray) -> np.ndarray:
        """``link_scale * -log(p)`` of the link feature rows ``x``."""
        return self.link_scale * -np.log(np.clip(self.link_probability(x), _P_MIN, 1.0))

    def division_cost(self, x: np.ndarray) -> np.ndarray:
        return self.division_scale * -np.log(np.clip(self.division_probability(x), _P_MIN, 1.0))

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
        missing = [f for f in SCORER_FILES if not (folder / f).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder} is not a tracking scorer folder (missing {', '.join(missing)})")
        meta = json.loads((folder / "scorer.json").read_text())
        if tuple(meta.get("link_features", ())) != LINK_FEATURES or \
                tuple(meta.get("division_features", ())) != DIVISION_FEATURES:
            raise ValueError(f"{folder}: the scorer was trained on other features than this version of "
                             "cellscale computes; retrain it (cellscale train-tracker)")
        with np.load(folder / "trees.npz", allow_pickle=False) as z:
            link = {k.split("__", 1)[1]: z[k] for k in z.files if k.startswith("link__")}
            div = {k.split("__", 1)[1]: z[k] for k in z.files if k.startswith("division__")}
        return cls(link, div, meta)


def shipped_scorer_dir() -> Path:
    """``track-scorer`` in the shipped models folder (``$CELLSCALE_MODELS`` when set, else the
    package's ``cellscale/models``; in a checkout the top-level ``models`` links there)."""
    override = os.environ.get("CELLSCALE_MODELS")
    if override:
        return Path(override) / "track-scorer"
    from importlib.resources import files

    return Path(str(files("cellscale").joinpath("models"))) / "track-scorer"


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
               learning_rate: float = 0.1, seed: int = 0, meta: dict | None = None) -> Scorer:
    """Fit the two tree ensembles (needs scikit-learn) and return the :class:`Scorer`."""
    import sklearn
    from sklearn.ensemble import HistGradientBoostingClassifier

    def fit(x, y):
        if len(np.unique(y)) < 2:
            raise ValueError("training rows need both true and false candidates")
        model = HistGradientBoostingClassifier(max_iter=max_iter, max_leaf_nodes=max_leaf_nodes,
                                               max_depth=max_depth, learning_rate=learning_rate, early_stopping=False,
                                               random_state=seed)
        return model.fit(x, y.astype(int))

    link_model, div_model = fit(x_link, y_link), fit(x_div, y_div)
    info = {"sklearn_version": sklearn.__version__, "max_iter": max_iter, "max_leaf_nodes": max_leaf_nodes,
            "max_depth": max_depth,
            "learning_rate": learning_rate, "seed": seed,
            "n_link_rows": int(len(y_link)), "n_link_true": int(np.sum(y_link)),
            "n_division_rows": int(len(y_div)), "n_division_true": int(np.sum(y_div)),
            "link_scale": DEFAULT_SCALE, "division_scale": DEFAULT_SCALE}
    info.update(meta or {})
    return Scorer(export_trees(link_model), export_trees(div_model), info)
