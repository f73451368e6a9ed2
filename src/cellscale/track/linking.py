"""Link per-frame detections into tracks with a lineage.

:func:`link` is the one entry point: it validates the input, estimates the
parameters it is not given, lists the candidate events and their costs
(:mod:`cellscale.track.costs`), lets one of two solvers choose among them
and returns a CTC-consistent tracks table (:mod:`cellscale.track.lineage`):

* ``solver="lap"`` (:mod:`cellscale.track.lap`): linear assignment frame to
  frame, then divisions, then gap closing (Jaqaman et al. 2008). Fast.
* ``solver="ilp"`` (:mod:`cellscale.track.ilp`): one integer program over a
  window of frames that chooses links, gaps, divisions, appearances and
  disappearances jointly. Most accurate.

``max_distance=None`` estimates the search radius from the data (see
:func:`cellscale.track.costs.estimate_max_distance`). The parameters used
and the counts of each event are returned in ``tracks.attrs`` and logged.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Sequence

import numpy as np
import pandas as pd

from cellscale.track.config import TrackConfig
from cellscale.track.costs import build_candidates, crowding
from cellscale.track.costs import estimate_max_distance as _estimate_md
from cellscale.track.detections import as_label_stack, detections_from_labels
from cellscale.track.ilp import solve_ilp
from cellscale.track.lap import solve_lap
from cellscale.track.lineage import TRACK_COLUMNS, tracks_table

__all__ = ["TRACK_COLUMNS", "link", "estimate_max_distance"]

logger = logging.getLogger(__name__)

_REQUIRED = ["frame", "label", "y", "x", "area"]


def estimate_max_distance(detections: pd.DataFrame, quantile: float = 0.9,
                          factor: float = 2.0) -> float:
    """Data-driven search radius for frame-to-frame links (px)."""
    return _estimate_md(detections["frame"].to_numpy(), detections[["y", "x"]].to_numpy(dtype=float),
                        detections["area"].to_numpy(dtype=float), quantile, factor)


def _prepare(detections, labels):
    if not isinstance(detections, pd.DataFrame):
        if labels is None:
            labels = detections
        detections = detections_from_labels(detections)
    missing = [c for c in _REQUIRED if c not in detections.columns]
    if missing:
        raise ValueError(f"detections lack column(s) {missing}; need {_REQUIRED}")
    det = detections.copy()
    for c in ("frame", "label"):
        vals = det[c].to_numpy()
        if vals.size and not np.issubdtype(vals.dtype, np.integer):
            f = vals.astype(float)
            if not np.all(np.isfinite(f)) or not np.all(np.mod(f, 1) == 0):
                raise ValueError(f"detections column {c!r} must hold integers")
        det[c] = vals.astype(np.int64)
    for c in ("y", "x", "area"):
        if len(det) and not np.all(np.isfinite(det[c].to_numpy(dtype=float))):
            raise ValueError(f"detections column {c!r} has NaN or infinite values")
    if len(det) and det["frame"].min() < 0:
        raise ValueError("detections have negative frame numbers")
    if len(det) and (det["label"] <= 0).any():
        raise ValueError("detections have label <= 0 (0 is background)")
    if len(det) and (det["area"] <= 0).any():
        raise ValueError("detections have area <= 0")
    f, lb = det["frame"].to_numpy(), det["label"].to_numpy()
    ordered = bool(np.all((f[1:] > f[:-1]) | ((f[1:] == f[:-1]) & (lb[1:] > lb[:-1]))))  # (hence no duplicate)
    if not ordered and det.duplicated(["frame", "label"]).any():
        dup = det[det.duplicated(["frame", "label"], keep=False)].iloc[0]
        raise ValueError(f"duplicate detection: frame {int(dup['frame'])} label {int(dup['label'])}")
    if not ordered:
        det = det.sort_values(["frame", "label"], kind="stable")
    det = det.reset_index(drop=True)

    lab = None
    n_frames = int(det["frame"].max()) + 1 if len(det) else 0
    n_frames = max(n_frames, int(detections.attrs.get("n_frames", 0) or 0))
    shape = detections.attrs.get("frame_shape")
    if labels is not None:
        lab = as_label_stack(labels)
        if len(det) and det["frame"].max() >= lab.shape[0]:
            raise ValueError(f"detections reach frame {int(det['frame'].max())} but labels have "
                             f"{lab.shape[0]} frames")
        n_frames = max(n_frames, lab.shape[0])
        shape = lab.shape[1:]
    return det, lab, n_frames, (tuple(int(s) for s in shape) if shape else None)


_DEFAULT = TrackConfig()  # the schema's defaults (cellscale.settings): link's keyword defaults below are these
_DEFAULTS = {k: getattr(_DEFAULT, k) for k in ("solver", "max_distance", "max_gap", "divisions")}


def _config(config, params: dict, **explicit) -> TrackConfig:
    if isinstance(config, TrackConfig):
        values = config.as_dict()
    elif config is None or isinstance(config, dict):
        values = TrackConfig.from_dict(config).as_dict()
    else:
        raise TypeError(f"config must be a TrackConfig or a dict, got {type(config).__name__}")
    values.update(params)
    for key, value in explicit.items():
        if config is None or value != _DEFAULTS[key]:
            values[key] = value
    return TrackConfig.from_dict(values)


def link(
    detections: pd.DataFrame | np.ndarray | Sequence[np.ndarray],
    labels: np.ndarray | Sequence[np.ndarray] | None = None,
    max_distance: float | None = _DEFAULT.max_distance,
    max_gap: int = _DEFAULT.max_gap,
    divisions: bool = _DEFAULT.divisions,
    *,
    solver: str = _DEFAULT.solver,
    config: TrackConfig | dict | None = None,
    **params,
) -> pd.DataFrame:
    """Track detections over time.

    Parameters
    ----------
    detections:
        DataFrame with columns frame, label, y, x, area and optionally
        mean_intensity (e.g. from :func:`detections_from_labels`). A
        (T, Y, X) label stack is accepted too; it is then measured and also
        used as ``labels``.
    labels:
        Optional (T, Y, X) integer label stack the detections come from:
        adds mask overlap (1 - IoU) to the link cost, lets overlapping
        objects link beyond ``max_distance`` and makes starts and ends at
        the image border cheaper.
    max_distance:
        Largest centroid displacement (px) between consecutive frames;
        ``None``: estimated from the data.
    max_gap:
        Largest number of consecutive missing frames bridged (0: none).
    divisions:
        Detect divisions (mother ends at t, two daughters start at t + 1).
    solver:
        ``"lap"`` (fast) or ``"ilp"`` (joint integer program).
    config:
        A :class:`TrackConfig` (or a dict of its fields) with the other
        parameters; keyword ``params`` (e.g. ``birth_cost=1.5``,
        ``ilp_backend="cbc"``, ``costs="learned"``: the trained scorer's
        costs, for dense colonies; needs ``labels``) override it, and so do
        the arguments above when they differ from their defaults.

    Returns
    -------
    DataFrame with columns frame, label, track_id, parent_track_id, y, x,
    area (one row per detection, sorted by frame then track_id; ids start
    at 1, parent 0 means none). Tracks have no holes and obey the CTC
    lineage rules, so the table can be written with :func:`write_ctc`.
    ``attrs`` holds the parameters used, the counts of links, divisions and
    closed gaps, the number of tracks and the solver's time. Of the candidate
    links (``n_candidate_links``) the LAP enumerates the consecutive-frame
    ones first and the gap links later, between the ends and starts of its
    tracks only (``n_gap_candidates``); the ILP enumerates all at once.

    Raises
    ------
    ValueError
        Frames of different shapes, non-integer labels, missing columns,
        duplicate (frame, label) detections, invalid parameters.
    """
    cfg = _config(config, params, solver=solver, max_distance=max_distance,
                  max_gap=0 if max_gap is None else max_gap, divisions=bool(divisions))

    det, lab, n_frames, frame_shape = _prepare(detections, labels)
    n = len(det)
    frame = det["frame"].to_numpy()
    label = det["label"].to_numpy()
    pos = det[["y", "x"]].to_numpy(dtype=float)
    area = det["area"].to_numpy(dtype=float)
    inten = det["mean_intensity"].to_numpy(dtype=float) if "mean_intensity" in det else None

    empty = sorted(set(range(n_frames)) - set(np.unique(frame).tolist()))
    if empty and n:
        logger.warning("link: %d of %d frames have no detections (%s%s); cells are carried across "
                       "at most max_gap=%d empty frames, longer breaks start new tracks",
                       len(empty), n_frames, ", ".join(map(str, empty[:10])),
                       " ..." if len(empty) > 10 else "", cfg.max_gap)
    estimated = cfg.max_distance is None
    md = float(_estimate_md(frame, pos, area)) if estimated else float(cfg.max_distance)

    crowd, used = None, cfg
    if cfg.costs == "auto":
        crowd = crowding(frame, pos, area)
        used = replace(cfg, costs="learned" if lab is not None and crowd < cfg.auto_crowding else "rules")
        logger.info("link: costs auto -> %s (crowding %.2f, threshold %.2f%s)", used.costs, crowd,
                    cfg.auto_crowding, "" if lab is not None else ", no label images")

    t0 = time.perf_counter()
    cand = build_candidates(frame, label, pos, area, inten, n_frames, lab, frame_shape, md, used,
                            gaps="lazy" if cfg.solver == "lap" else True)
    t1 = time.perf_counter()
    if cfg.solver == "ilp":
        pred, stats = solve_ilp(n, frame, n_frames, cand, cfg)
    else:
        pred, stats = solve_lap(n, frame, cand, cfg.min_cycle_frames)
    t2 = time.perf_counter()
    out = tracks_table(frame, label, pos, det["area"].to_numpy(), pred)
    out.attrs.update(cfg.as_dict())
    out.attrs.update({
        "max_distance": md,
        "max_distance_estimated": bool(estimated),
        "costs_used": used.costs,
        "crowding": crowd,
        "iou_weight": float(cfg.iou_weight) if lab is not None else 0.0,
        "used_labels": lab is not None,
        "n_frames": int(n_frames),
        "n_detections": int(n),
        "empty_frames": empty,
        "n_candidate_links": int(cand.src.size),
        "n_candidate_divisions": int(cand.mother.size),
        **stats,
        "n_tracks": int(out["track_id"].nunique()),
        "seconds_candidates": t1 - t0,
        "seconds_solver": t2 - t1,
    })
    a = out.attrs
    logger.info("link: %d links, %d divisions, %d gaps closed, %d tracks (%s, costs %s, max distance %.1f px%s; "
                "%.2f s)", a["n_links"], a["n_divisions"], a["n_gaps_closed"], a["n_tracks"], cfg.solver, used.costs,
                md, " estimated" if estimated else "", t2 - t0)
    logger.debug("link: %s", a)   # every setting and count
    return out
