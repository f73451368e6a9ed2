"""Score a CTC result folder against CTC ground truth.

:func:`evaluate_ctc` runs the official-equivalent metrics of ``py-ctcmetrics``
(package ``ctc_metrics``: TRA, DET, LNK, AOGM and its error counts, validity
and the CTC branching correctness BC(i)) through its Python API
(``ctc_metrics.scripts.evaluate.load_data`` / ``calculate_metrics``), then
adds our own division precision / recall / F1 computed on the same
frame-wise object matching.

Division matching (ours)
------------------------
A division is a track with at least two children in ``res_track.txt`` /
``man_track.txt`` (a parent with one child is a gap continuation, not a
division). Objects are matched frame by frame with the CTC rule (a result
object matches a reference object when it covers more than half of it). A
predicted division (mother ``M`` ending at ``t_p``, daughters ``D``) matches
a true division (mother ``R`` ending at ``t_r``, daughters ``C``) when

* ``|t_p - t_r| <= tolerance`` (default 1 frame) and ``len(D) == len(C)``,
* ``M`` is matched to ``R`` in some frame ``f`` with ``|f - t_r| <= tolerance``,
* every true daughter ``c`` is matched to a distinct predicted daughter in
  some frame ``f`` with ``|f - B(c)| <= tolerance``.

Each true and each predicted division is used at most once (greedy in the
order of the true divisions). precision = tp / n_pred, recall = tp / n_true,
F1 = 2 tp / (n_pred + n_true); a ratio with a zero denominator is NaN.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
from pathlib import Path

import numpy as np

__all__ = ["evaluate_ctc", "division_scores"]

DEFAULT_METRICS = ("Valid", "DET", "TRA", "LNK", "BC(1)")


def _divisions(tracks: np.ndarray) -> list[tuple[int, int, list[tuple[int, int]]]]:
    """[(mother, end frame, [(daughter, begin frame), ...]), ...] for parents with >= 2 children."""
    if tracks is None or len(tracks) == 0:
        return []
    tracks = np.asarray(tracks, dtype=np.int64).reshape(-1, 4)
    out = []
    ends = {int(r[0]): int(r[2]) for r in tracks}
    parents, counts = np.unique(tracks[:, 3], return_counts=True)
    for p, k in zip(parents, counts):
        if p <= 0 or k < 2 or int(p) not in ends:
            continue
        kids = [(int(r[0]), int(r[1])) for r in tracks if r[3] == p]
        out.append((int(p), ends[int(p)], kids))
    return out


def division_scores(ref_tracks, comp_tracks, mapped_ref, mapped_comp,
                    tolerance: int = 1) -> dict:
    """Division precision/recall/F1 (see module doc).

    ``ref_tracks``/``comp_tracks`` are (n, 4) ``L B E P`` arrays;
    ``mapped_ref[t]``/``mapped_comp[t]`` the aligned lists of matched
    reference/result labels in frame ``t`` (as produced by ctc_metrics).
    """
    pairs = [set(zip((int(a) for a in r), (int(b) for b in c)))
             for r, c in zip(mapped_ref, mapped_comp)]
    n_frames = len(pairs)

    def matched(ref_id: int, comp_id: int, around: int) -> bool:
        for f in range(around - tolerance, around + tolerance + 1):
            if 0 <= f < n_frames and (ref_id, comp_id) in pairs[f]:
                return True
        return False

    true_div = _divisions(ref_tracks)
    pred_div = _divisions(comp_tracks)
    used: set[int] = set()
    tp = 0
    for r_m, r_end, r_kids in sorted(true_div, key=lambda d: (d[1], d[0])):
        for k, (p_m, p_end, p_kids) in enumerate(pred_div):
            if k in used or abs(p_end - r_end) > tolerance or len(p_kids) != len(r_kids):
                continue
            if not matched(r_m, p_m, r_end):
                continue
            ok = any(all(matched(rc, pc, rb) for (rc, rb), (pc, _) in zip(r_kids, perm))
                     for perm in itertools.permutations(p_kids))
            if ok:
                used.add(k)
                tp += 1
                break
    n_true, n_pred = len(true_div), len(pred_div)
    nan = float("nan")
    return {
        "n_divisions_true": n_true,
        "n_divisions_pred": n_pred,
        "division_tp": tp,
        "division_fp": n_pred - tp,
        "division_fn": n_true - tp,
        "division_precision": tp / n_pred if n_pred else nan,
        "division_recall": tp / n_true if n_true else nan,
        "division_f1": 2 * tp / (n_pred + n_true) if (n_pred + n_true) else nan,
    }


def _plain(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    return v


def evaluate_ctc(res_dir: str | os.PathLike, gt_dir: str | os.PathLike,
                 metrics=DEFAULT_METRICS, tolerance: int = 1, threads: int = 1) -> dict:
    """Evaluate a CTC result folder against a CTC ground-truth folder.

    Parameters
    ----------
    res_dir:
        Folder with ``maskNNN.tif`` and ``res_track.txt`` (e.g. from
        :func:`write_ctc`); it must hold no other ``.tif``.
    gt_dir:
        Folder with ``TRA/man_trackNNN.tif`` and ``TRA/man_track.txt``.
    metrics:
        ctc_metrics metric names (default Valid, DET, TRA, LNK, BC(1)).
    tolerance:
        Frame tolerance of our division matching.
    threads:
        Worker processes of ctc_metrics' mask matching (1: no pool).

    Returns
    -------
    dict with the ctc_metrics results (``TRA``, ``DET``, ``LNK``, ``AOGM``,
    ``AOGM_FN`` ..., ``BC(i)``, ``Valid``; metrics are None when the result is
    invalid) plus ``division_precision``, ``division_recall``,
    ``division_f1`` and their counts.
    """
    try:
        from ctc_metrics.scripts.evaluate import calculate_metrics, load_data
    except ImportError as exc:  # pragma: no cover - dependency missing
        raise ImportError("evaluate_ctc needs py-ctcmetrics: pip install py-ctcmetrics") from exc

    res_dir, gt_dir = Path(res_dir), Path(gt_dir)
    if not (res_dir / "res_track.txt").is_file():
        raise ValueError(f"{res_dir}: no res_track.txt")
    if not (gt_dir / "TRA" / "man_track.txt").is_file():
        raise ValueError(f"{gt_dir}: no TRA/man_track.txt")
    n_res = len([p for p in res_dir.iterdir() if p.name.endswith(".tif")])
    n_gt = len([p for p in (gt_dir / "TRA").iterdir() if p.name.endswith(".tif")])
    if n_res != n_gt or n_gt == 0:
        raise ValueError(f"{res_dir} has {n_res} masks but {gt_dir / 'TRA'} has {n_gt}")

    metrics = list(metrics)
    with contextlib.redirect_stdout(io.StringIO()):
        comp_tracks, ref_tracks, traj, segm, _, is_valid = load_data(
            str(res_dir), str(gt_dir), True, "SEG" in metrics, threads)
        results = calculate_metrics(comp_tracks, ref_tracks, traj, segm,
                                    metrics, is_valid)
    out = {k: _plain(v) for k, v in results.items()}
    out["Valid"] = int(is_valid)
    out.update(division_scores(ref_tracks, comp_tracks, traj["mapped_ref"],
                               traj["mapped_comp"], tolerance=tolerance))
    return out
