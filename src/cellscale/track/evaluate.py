"""Score a CTC result folder against CTC ground truth.

:func:`evaluate_ctc` runs the official-equivalent metrics of ``py-ctcmetrics``
(package ``ctc_metrics``: TRA, DET, LNK, AOGM and its error counts, validity
and the CTC branching correctness BC(i); SEG and the CTC's overall measures
OP_CSB = (SEG + DET) / 2 and OP_CTB = (SEG + TRA) / 2 where the ground truth
has ``SEG/man_segNNN.tif`` masks) through its Python API
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
import re
from pathlib import Path

import numpy as np

from cellscale.io.ctc import label_frames, read_label_frame, read_lineage
from cellscale.track.export_ctc import _prepare_tracks, check_lineage, ctc_lineage
from cellscale.track.export_ctc import read_label_dir

__all__ = ["evaluate_ctc", "division_scores", "ReferenceMatching", "evaluate_tracks", "seg_frames"]

DEFAULT_METRICS = ("Valid", "DET", "TRA", "LNK", "BC(1)")
SEG_MASK = re.compile(r"man_seg_?(\d+)\.tif")


def seg_frames(gt_dir: str | os.PathLike) -> dict[int, Path]:
    """``{frame: path}`` of the CTC SEG ground truth, ``gt_dir/SEG/man_segNNN.tif`` (full masks of some frames
    only), in frame order; empty when ``gt_dir`` has no ``SEG/`` or it holds no ``.tif``. Another ``.tif`` name there,
    or two masks of one frame, raise ValueError naming the file (py-ctcmetrics reads the frame from the name)."""
    folder = Path(gt_dir) / "SEG"
    if not folder.is_dir():
        return {}
    names = {path: SEG_MASK.fullmatch(path.name) for path in sorted(folder.glob("*.tif"))}
    unnamed = [path for path, match in names.items() if match is None]
    if unnamed:
        raise ValueError(f"{unnamed[0]}: not a CTC SEG mask name (man_segNNN.tif, NNN its frame number)")
    out: dict[int, Path] = {}
    for path, match in names.items():   # man_seg02.tif and man_seg002.tif: one frame
        if out.setdefault(int(match.group(1)), path) != path:
            raise ValueError(f"{path}: a second SEG mask of frame {int(match.group(1))} "
                             f"(with {out[int(match.group(1))].name})")
    return dict(sorted(out.items()))


def _with_seg(metrics, has_seg: bool, missing: str) -> list[str]:
    """``metrics`` with SEG where the ground truth has SEG masks (``has_seg``); SEG asked for without them is an
    error (``missing``: where they are not)."""
    metrics = list(metrics)
    if has_seg and "SEG" not in metrics:
        metrics.append("SEG")
    elif "SEG" in metrics and not has_seg:
        raise ValueError(f"{missing}: SEG cannot be scored")
    return metrics


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
        Folder with ``TRA/man_trackNNN.tif`` and ``TRA/man_track.txt``, and
        where it has them ``SEG/man_segNNN.tif`` (:func:`seg_frames`).
    metrics:
        ctc_metrics metric names (default Valid, DET, TRA, LNK, BC(1)); SEG
        is added when ``gt_dir`` has SEG masks (naming SEG without them is
        an error).
    tolerance:
        Frame tolerance of our division matching.
    threads:
        Worker processes of ctc_metrics' mask matching (1: no pool).

    Returns
    -------
    dict with the ctc_metrics results (``TRA``, ``DET``, ``LNK``, ``AOGM``,
    ``AOGM_FN`` ..., ``BC(i)``, ``Valid``; metrics are None when the result is
    invalid) plus ``division_precision``, ``division_recall``,
    ``division_f1`` and their counts. With SEG masks also ``SEG`` (the mean
    over the SEG masks' objects of their Jaccard index with the result object
    covering more than half of them, 0 where none does), ``OP_CSB``,
    ``OP_CTB`` and ``SEG_frames`` (how many frames have SEG masks); without
    them none of these keys.
    """
    try:
        from ctc_metrics.scripts.evaluate import calculate_metrics, load_data
    except ImportError as exc:  # pragma: no cover - dependency missing
        raise ImportError("evaluate_ctc needs py-ctcmetrics: pip install py-ctcmetrics") from exc

    res_dir, gt_dir = Path(res_dir), Path(gt_dir)
    for folder in (res_dir, gt_dir):
        if not folder.is_dir():
            raise ValueError(f"{folder}: " + ("not a folder (a CTC folder holds the masks and their tracks)"
                                              if folder.exists() else "no such folder"))
    if not (res_dir / "res_track.txt").is_file():
        raise ValueError(f"{res_dir}: no res_track.txt")
    if not (gt_dir / "TRA" / "man_track.txt").is_file():
        raise ValueError(f"{gt_dir}: no TRA/man_track.txt")
    segs = seg_frames(gt_dir)
    metrics = _with_seg(metrics, bool(segs), f"{gt_dir}: no SEG/man_segNNN.tif masks")
    n_res = len([p for p in res_dir.iterdir() if p.name.endswith(".tif")])
    n_gt = len([p for p in (gt_dir / "TRA").iterdir() if p.name.endswith(".tif")])
    if n_res != n_gt or n_gt == 0:
        raise ValueError(f"{res_dir} has {n_res} masks but {gt_dir / 'TRA'} has {n_gt}" +
                         (f" (a result of the movie's first {n_res} frames: --frames {n_res}; of {n_res} frames from "
                          f"START on: --frames START:STOP, STOP = START + {n_res})" if 0 < n_res < n_gt else ""))
    if not (res_dir / "res_track.txt").read_text().strip():   # py-ctcmetrics fails on it with a numpy message
        raise ValueError(f"{res_dir}: the result holds no tracks (res_track.txt is empty): nothing to score")
    for tracks in (res_dir / "res_track.txt", gt_dir / "TRA" / "man_track.txt"):
        read_lineage(tracks)   # a line that is not four integers: named (py-ctcmetrics' message names no file)
    shapes = {}
    for folder in (res_dir, gt_dir / "TRA"):
        # every mask read and checked, one at a time: a damaged, float or odd-sized one named before py-ctcmetrics
        # (whose messages name no file) reads them
        for path, mask in label_frames(folder):
            shapes.setdefault(folder, (path, mask.shape))
    for frame, path in segs.items():   # SEG masks of frames the result has, as the others checked one at a time
        if frame >= n_gt:
            raise ValueError(f"{path}: a SEG mask of frame {frame}, but {gt_dir / 'TRA'} has frames 0 to {n_gt - 1}")
        shape = read_label_frame(path).shape
        shapes.setdefault(("SEG", shape), (path, shape))   # each size of them: all named when they differ
    shapes = dict(shapes.values())
    if len(set(shapes.values())) > 1:   # another sequence's ground truth: scikit-learn's message otherwise
        raise ValueError("the masks and the ground truth differ in size: " +
                         ", ".join(f"{path} {' x '.join(map(str, shape))} px" for path, shape in shapes.items()))

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            comp_tracks, ref_tracks, traj, segm, _, is_valid = load_data(
                str(res_dir), str(gt_dir), True, "SEG" in metrics, threads)
            results = calculate_metrics(comp_tracks, ref_tracks, traj, segm,
                                        metrics, is_valid)
    except AssertionError as err:  # py-ctcmetrics asserts the result's own consistency
        raise ValueError(f"{res_dir}: py-ctcmetrics cannot score it: res_track.txt and the masks' labels do not "
                         f"agree (every label of a mask needs a track line, frames within its start and end)"
                         f"{f' ({err})' if str(err) not in ('', '[]') else ''}") from None
    out = {k: _plain(v) for k, v in results.items()}
    out["Valid"] = int(is_valid)
    if segs:
        out["SEG_frames"] = len(segs)
    out.update(division_scores(ref_tracks, comp_tracks, traj["mapped_ref"],
                               traj["mapped_comp"], tolerance=tolerance))
    return out


def ground_truth_frames(gt_dir: str | os.PathLike, start: int, stop: int | None,
                        out_dir: str | os.PathLike) -> Path:
    """A CTC ground-truth folder of ``gt_dir``'s frames ``start`` to ``stop - 1`` (half-open, as Python's
    ``start:stop``; ``stop`` None: to the last frame), numbered from 0 as a result of those frames is, written to
    ``out_dir``: ``TRA/`` holds links to those masks, renamed from ``man_track000.tif`` on, and ``man_track.txt`` cut
    there (:func:`lineage_frames`); ``SEG/`` links to the ``SEG/man_segNNN.tif`` masks of frames in the range,
    renumbered the same way (frame ``start + i``: ``man_seg`` ``i``, as many digits as the original), and is left
    out where the range has none (:func:`evaluate_ctc` then scores no SEG). For a result of a part of a movie."""
    import pandas as pd

    from cellscale.io.ctc import LINEAGE_COLUMNS, write_lineage

    tra = Path(gt_dir) / "TRA"
    masks = sorted(tra.glob("man_track*.tif"))
    given = f"{start}:{'' if stop is None else stop}"   # the range as asked for (START: runs to the last frame)
    stop = len(masks) if stop is None else stop
    if not 0 <= start < stop <= len(masks):
        raise ValueError(f"--frames {given} is not in {tra}: it has {len(masks)} masks, frames 0:{len(masks)}"
                         if masks else f"{tra}: no man_track*.tif masks")
    if stop - start < 2:   # START: at the last frame; py-ctcmetrics scores no single frame (a numpy error)
        raise ValueError(f"--frames {given} of {tra} is one frame ({start}): tracks link frames, so give at least 2")
    out = Path(out_dir) / "TRA"
    out.mkdir(parents=True)
    digits = len(masks[0].stem) - len("man_track")
    for i, mask in enumerate(masks[start:stop]):
        (out / f"man_track{i:0{digits}d}.tif").symlink_to(mask.resolve())
    lineage = read_lineage(tra / "man_track.txt")[LINEAGE_COLUMNS].to_numpy()
    write_lineage(out / "man_track.txt",
                  pd.DataFrame(lineage_frames(lineage, start, stop), columns=LINEAGE_COLUMNS))
    segs = {frame: path for frame, path in seg_frames(gt_dir).items() if start <= frame < stop}
    if segs:
        (Path(out_dir) / "SEG").mkdir()
    for frame, path in segs.items():
        digits = len(SEG_MASK.fullmatch(path.name).group(1))
        (Path(out_dir) / "SEG" / f"man_seg{frame - start:0{digits}d}.tif").symlink_to(path.resolve())
    return Path(out_dir)


def lineage_frames(tracks, start: int, stop: int) -> np.ndarray:
    """CTC tracks (rows ``L B E P``) of a movie's frames ``start`` to ``stop - 1``, numbered from 0 there: tracks
    that end before ``start`` or begin at ``stop`` or later left out, the others clipped to the range; a track whose
    parent is left out (one that began before ``start``, or whose parent ended before it) has parent 0, as the CTC
    cuts a sequence."""
    tr = np.asarray(tracks, dtype=np.int64).reshape(-1, 4)
    tr = tr[(tr[:, 1] < stop) & (tr[:, 2] >= start)].copy()
    tr[:, 1] = np.maximum(tr[:, 1], start) - start
    tr[:, 2] = np.minimum(tr[:, 2], stop - 1) - start
    tr[~np.isin(tr[:, 3], tr[:, 0]), 3] = 0
    return tr


# ---------------------------------------------------------------------------
# fast path: score a tracks table without writing and re-reading masks
# ---------------------------------------------------------------------------
def _overlaps(ref: np.ndarray, comp: np.ndarray):
    """The CTC matching of one frame: (reference labels, their areas, matched reference labels, the result labels
    covering more than half of each, those intersections' areas)."""
    r, c = ref.ravel().astype(np.int64), comp.ravel().astype(np.int64)
    on = r > 0
    r, c = r[on], c[on]
    ur, r_area = np.unique(r, return_counts=True)
    m = int(c.max(initial=0)) + 1
    uk, inter = np.unique((r * m + c)[c > 0], return_counts=True)
    rr, cc = uk // m, uk % m
    big = inter > 0.5 * r_area[np.searchsorted(ur, rr)]
    return ur, r_area, rr[big], cc[big], inter[big]


def _seg_frame(ref: np.ndarray, comp: np.ndarray) -> tuple[list[int], list[float]]:
    """(SEG objects, Jaccard indices of those a result object covers more than half of): one frame of SEG."""
    ur, r_area, rr, cc, inter = _overlaps(ref, comp)
    uc, c_area = np.unique(comp[comp > 0], return_counts=True)
    union = r_area[np.searchsorted(ur, rr)] + c_area[np.searchsorted(uc, cc)] - inter
    return ur.tolist(), (inter / union).tolist()


class ReferenceMatching:
    """The CTC object matching between a label stack and a CTC ground truth.

    A result object matches a reference marker when it covers more than half
    of it (the rule of ``ctc_metrics``' ``match``). Tracking relabels the
    objects of one label stack without changing their pixels, so this
    matching is computed once per label stack and reused for every tracking
    result on it (:func:`evaluate_tracks`), which makes parameter sweeps
    cheap. The numbers are those of :func:`evaluate_ctc` on the written folder;
    where ``gt_dir`` has ``SEG/`` masks (:func:`seg_frames`) SEG too, which
    depends on the labels alone (``seg``: frame -> its SEG objects and the
    Jaccard indices of the matched ones).
    """

    def __init__(self, labels: np.ndarray, gt_dir: str | os.PathLike):
        from ctc_metrics.utils.filesystem import read_tracking_file

        gt_dir = Path(gt_dir)
        self.gt_dir = gt_dir
        ref = read_label_dir(gt_dir / "TRA")
        if ref.shape != labels.shape:
            raise ValueError(f"labels shape {labels.shape} differs from the ground truth's {ref.shape}")
        self.ref_tracks = read_tracking_file(str(gt_dir / "TRA" / "man_track.txt"))
        self.labels_ref, self.pairs = [], []
        for t in range(ref.shape[0]):
            ur, _, rr, cc, _ = _overlaps(ref[t], labels[t])
            self.labels_ref.append(ur.tolist())
            self.pairs.append((rr, cc))
        self.seg = {}
        for t, path in seg_frames(gt_dir).items():
            mask = read_label_frame(path)
            if t >= ref.shape[0] or mask.shape != labels.shape[1:]:
                raise ValueError(f"{path}: " + (f"a SEG mask of frame {t}, but the labels have {ref.shape[0]} frames"
                                                if t >= ref.shape[0] else
                                                f"shape {mask.shape} differs from the labels' {labels.shape[1:]}"))
            self.seg[t] = _seg_frame(mask, labels[t])

    @property
    def n_frames(self) -> int:
        return len(self.pairs)

    def first_frames(self, n: int) -> "ReferenceMatching":
        """The matching of the first ``n`` frames (ground truth cut there)."""
        out = object.__new__(ReferenceMatching)
        out.gt_dir = None
        out.labels_ref, out.pairs = self.labels_ref[:n], self.pairs[:n]
        out.seg = {t: frame for t, frame in self.seg.items() if t < n}
        out.ref_tracks = lineage_frames(self.ref_tracks, 0, n)
        return out


def evaluate_tracks(tracks, matching: ReferenceMatching, metrics=DEFAULT_METRICS,
                    tolerance: int = 1) -> dict:
    """Score a tracks table (from :func:`cellscale.track.link`) on the label
    stack of ``matching``, as :func:`evaluate_ctc` would score its CTC folder
    (SEG, OP_CSB and OP_CTB too where the ground truth has SEG masks)."""
    from ctc_metrics.metrics import valid
    from ctc_metrics.scripts.evaluate import calculate_metrics

    tr = _prepare_tracks(tracks)
    lineage = ctc_lineage(tr)
    check_lineage(lineage)
    comp_tracks = lineage[["L", "B", "E", "P"]].to_numpy(dtype=np.int64).reshape(-1, 4)
    n_frames = len(matching.pairs)
    by_frame = {int(f): g for f, g in tr.groupby("frame")}
    labels_comp, mapped_ref, mapped_comp = [], [], []
    for t in range(n_frames):
        g = by_frame.get(t)
        if g is None:
            labels_comp.append([])
            mapped_ref.append([])
            mapped_comp.append([])
            continue
        g = g.sort_values("label")
        keys, ids = g["label"].to_numpy(), g["track_id"].to_numpy()
        labels_comp.append(sorted(ids.tolist()))
        rr, cc = matching.pairs[t]
        pos = np.clip(np.searchsorted(keys, cc), 0, max(keys.size - 1, 0))
        hit = keys[pos] == cc if keys.size else np.zeros(cc.size, bool)
        mapped_ref.append(rr[hit].tolist())
        mapped_comp.append(ids[pos[hit]].tolist())
    traj = {"labels_ref": matching.labels_ref, "labels_comp": labels_comp,
            "mapped_ref": mapped_ref, "mapped_comp": mapped_comp}
    metrics = _with_seg(metrics, bool(matching.seg),
                        "no SEG/man_segNNN.tif masks in the ground truth (of these frames)")
    segm = {"labels_ref": [ref for ref, _ in matching.seg.values()],
            "ious": [ious for _, ious in matching.seg.values()]}
    with contextlib.redirect_stdout(io.StringIO()):
        is_valid = valid([f"mask{t}" for t in range(n_frames)], comp_tracks, labels_comp) \
            if len(comp_tracks) else 0
        results = calculate_metrics(comp_tracks, matching.ref_tracks, traj, segm, metrics, is_valid)
    out = {k: _plain(v) for k, v in results.items()}
    out["Valid"] = int(is_valid)
    if matching.seg:
        out["SEG_frames"] = len(matching.seg)
    out.update(division_scores(matching.ref_tracks, comp_tracks, mapped_ref, mapped_comp,
                               tolerance=tolerance))
    return out
