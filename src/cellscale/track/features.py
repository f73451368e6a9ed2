"""Features of candidate links and divisions for dense data (and the learned scorer).

Centroid distance fails where cells touch and barely move, and where the
daughters of a division sit where their mother was. The measurements here
describe a candidate event with the cues that still work there:

* **shape** (:func:`shape_moments`): orientation, length (major axis) and
  width (minor axis) of every object from its second moments;
* **local motion** (:func:`local_motion`): for every object of frame ``t``
  the median displacement of the ``k`` objects of frame ``t + 1`` nearest to
  it (each one's displacement from its nearest object of ``t``; twice
  refined): the push of a growing colony or a drift, estimated from the
  data;
* **motion-compensated overlap** (:func:`compensated_overlaps`): the pixels of
  each object of frame ``t``, shifted by its local motion, against the
  objects of frame ``t + 1``;
* :func:`link_features` and :func:`division_features`: one row of numbers per
  candidate event (names in :data:`LINK_FEATURES`, :data:`DIVISION_FEATURES`).

All functions are pure (arrays in, arrays out). Detections are rows sorted
by frame; ``starts_at[t]`` is the first row of frame ``t``.

:class:`FrameFeatures` holds what the features of one frame pair need (the
reference, computed from the label images as they are);
:class:`MovieFeatures` holds the same numbers for all frame pairs of a movie
at once (detection rows in place of per-frame indices), filled from one
:class:`FrameIndex` per frame (each frame's labelled pixels indexed once),
which is what :func:`cellscale.track.costs.build_candidates` uses: the
feature rows are the same, bit for bit (``tests/unit/test_track_fast_costs.py``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["LINK_FEATURES", "DIVISION_FEATURES", "FrameFeatures", "FrameIndex", "MovieFeatures", "shape_moments",
           "local_motion", "local_motions", "compensated_overlaps", "shifted_overlaps", "count_pairs",
           "link_features", "division_features"]

LINK_FEATURES = (
    "distance",              # centroid distance / max_distance
    "distance_compensated",  # |b - (a + local motion of a)| / max_distance
    "iou",                   # overlap of the masks as they are
    "iou_compensated",       # overlap once a is shifted by its local motion
    "covered_b",             # fraction of b inside the shifted a
    "covered_a",             # fraction of the shifted a inside b
    "log_area_ratio",        # log(area b / area a)
    "log_length_ratio",      # log(length b / length a)
    "orientation_change",    # |sin(angle b - angle a)|, times the elongation weight
    "elongation_a",          # length / width of a
    "area_a_rel",            # area of a / median area of its frame
    "length_a_rel",          # length of a / median length of its frame
    "intensity_change",      # relative change of mean intensity (0 without intensities)
    "iou_best_other_a",      # best compensated IoU of a with another candidate successor
    "iou_best_other_b",      # best compensated IoU of b with another candidate predecessor
    "distance_margin_a",     # (compensated distance - the smallest one of a's other candidates) / max_distance
    "distance_margin_b",     # likewise among b's candidate predecessors
    "crowding_a",            # distance from a to its nearest neighbour in frame t / length of a
    "rule_cost",             # the rule-based link cost (cellscale.track.costs, default weights)
)

DIVISION_FEATURES = (
    "midpoint_offset",       # |midpoint(a, b) - (m + local motion)| / half the mother's length
    "opposite",              # cos of the angle between a and b seen from the shifted mother (-1: opposite)
    "log_area_sum_ratio",    # log((area a + area b) / area m)
    "daughter_area_asymmetry",  # |log(area a / area b)|
    "mother_covered",        # fraction of the shifted mother covered by a and b
    "daughters_inside",      # fraction of a and b inside the shifted mother
    "split_along_axis",      # |cos| of the angle between the mother's axis and the line a-b
    "daughter_axis_mean",    # mean |sin| of the angles between the daughters' axes and the mother's
    "daughter_axis_max",
    "length_m_rel",          # length of m / median length of its frame
    "area_m_rel",            # area of m / median area of its frame
    "elongation_m",
    "length_sum_ratio",      # (length a + length b) / length m
    "daughter_distance",     # |a - b| / length of m
    "touch",                 # the daughters touch (1) or not (0)
    "iou_best_link_m",       # best compensated IoU of m with one object of t + 1
    "iou_other_max",         # best compensated IoU of a (b) with a predecessor other than m: the larger
    "iou_other_min",         # ... and the smaller of the two
    "intensity_difference",  # relative difference of the daughters' mean intensities
    "crowding_m",            # distance from m to its nearest neighbour in frame t / length of m
    "rule_cost",             # the rule-based division cost without the touch term
)


def _lut(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of each label value among ``keys`` (-1: none) for label values ``values``."""
    if keys.size == 0:
        return np.full(values.shape, -1, np.int64)
    pos = np.clip(np.searchsorted(keys, values), 0, keys.size - 1)
    return np.where((values != 0) & (keys[pos] == values), pos, -1)


def shape_moments(frame: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """(n, 3) orientation (rad, in (-pi/2, pi/2], angle of the long axis from
    the image y axis towards x), length and width (px: 4 sqrt of the
    eigenvalues of the pixel covariance, exact for an ellipse) of the objects
    ``keys`` (sorted label values) of one 2-D label image."""
    n = keys.size
    if n == 0:
        return np.zeros((n, 3))
    flat = frame.ravel()
    nz = np.flatnonzero(flat)
    idx = _lut(keys, flat[nz])
    ok = idx >= 0
    return _moments(nz[ok], idx[ok], frame.shape[1], n)


def _moments(nz: np.ndarray, idx: np.ndarray, width: int, n: int, rows_cols=None) -> np.ndarray:
    """:func:`shape_moments` of the pixels ``nz`` (flat positions, ascending, on
    a grid ``width`` wide; ``rows_cols``: their rows and columns, when known) of the objects ``idx`` (0..n-1)."""
    out = np.zeros((n, 3))
    if n == 0:
        return out
    r, c = rows_cols if rows_cols is not None else (nz // width, nz % width)
    r = r.astype(float)
    c = c.astype(float)
    cnt = np.maximum(np.bincount(idx, minlength=n), 1)
    my = np.bincount(idx, r, n) / cnt
    mx = np.bincount(idx, c, n) / cnt
    dy, dx = r - my[idx], c - mx[idx]
    syy = np.bincount(idx, dy * dy, n) / cnt + 1.0 / 12.0  # + a pixel's own extent
    sxx = np.bincount(idx, dx * dx, n) / cnt + 1.0 / 12.0
    sxy = np.bincount(idx, dy * dx, n) / cnt
    tr, det = syy + sxx, syy * sxx - sxy * sxy
    disc = np.sqrt(np.maximum(tr * tr / 4.0 - det, 0.0))
    l1, l2 = tr / 2.0 + disc, np.maximum(tr / 2.0 - disc, 1e-6)
    out[:, 0] = 0.5 * np.arctan2(2.0 * sxy, syy - sxx)
    out[:, 1] = 4.0 * np.sqrt(l1)
    out[:, 2] = 4.0 * np.sqrt(l2)
    return out


def local_motion(p: np.ndarray, q: np.ndarray, k: int = 8, rounds: int = 2) -> np.ndarray:
    """Local displacement (n, 2) of the points ``p`` (frame t) towards ``q`` (frame t + 1).

    Every point of ``q`` is given the displacement from its nearest point of
    ``p`` (shifted by the current estimate); a point of ``p`` takes the
    per-coordinate median of those of its ``k`` nearest points of ``q``;
    ``rounds`` rounds. Looking backwards, the two daughters of a division
    pull their mother's estimate in opposite directions, which the median
    cancels. Zero where either frame is empty.
    """
    v = np.zeros_like(p, dtype=float)
    if p.shape[0] == 0 or q.shape[0] == 0:
        return v
    tq = cKDTree(q)
    kk = min(k, q.shape[0])
    for _ in range(rounds):
        _, back = cKDTree(p + v).query(q, k=1)
        e = q - p[back]
        _, nb = tq.query(p + v, k=kk)
        nb = np.asarray(nb).reshape(p.shape[0], kk)
        v = np.median(e[nb], axis=1)
    return v


def local_motions(pos: np.ndarray, starts: np.ndarray, k: int = 8, rounds: int = 2) -> np.ndarray:
    """:func:`local_motion` of every frame towards the next, for all frames at once: ``pos`` (n, 2) of
    detections sorted by frame, ``starts`` the first row of each frame and then n (``len`` frames + 1).
    Returns (n, 2); rows of the last frame, and of frames next to an empty one, get zero.

    The frame pairs share one k-d tree per step (each pair set apart from the others along a third axis), so
    a movie costs a few tree queries instead of a few per frame. A pair whose next frame has fewer than ``k``
    detections takes :func:`local_motion` alone.
    """
    pos = np.asarray(pos, float)
    starts = np.asarray(starts, np.int64)
    v = np.zeros_like(pos)
    counts = np.diff(starts)
    pairs = np.flatnonzero((counts[:-1] > 0) & (counts[1:] > 0))
    if pairs.size == 0:
        return v
    small = pairs[counts[pairs + 1] < k]
    for t in small.tolist():
        v[starts[t]:starts[t + 1]] = local_motion(pos[starts[t]:starts[t + 1]], pos[starts[t + 1]:starts[t + 2]],
                                                  k, rounds)
    pairs = pairs[counts[pairs + 1] >= k]
    if pairs.size == 0:
        return v
    rows_p = np.concatenate([np.arange(starts[t], starts[t + 1]) for t in pairs.tolist()])
    rows_q = np.concatenate([np.arange(starts[t + 1], starts[t + 2]) for t in pairs.tolist()])
    # a pair's points lie in their own plane: further from any other pair's than any two of one pair
    span = float(np.ptp(pos[np.r_[rows_p, rows_q]], axis=0).max()) + 1.0
    apart = 16.0 * span
    zp = np.repeat(pairs * apart, counts[pairs])
    zq = np.repeat(pairs * apart, counts[pairs + 1])
    p, q = _rows(pos, rows_p), _rows(pos, rows_q)
    tq = cKDTree(np.column_stack([q, zq]))
    w = np.zeros_like(p)
    for _ in range(rounds):
        _, back = cKDTree(np.column_stack([p + w, zp])).query(np.column_stack([q, zq]), k=1)
        e = q - _rows(p, back)
        _, nb = tq.query(np.column_stack([p + w, zp]), k=k)
        near = np.sort(_rows(e, np.asarray(nb).reshape(p.shape[0], k)), axis=1)  # np.median's numbers, 2x faster
        w = near[:, k // 2] if k % 2 else 0.5 * (near[:, k // 2 - 1] + near[:, k // 2])
    v[rows_p] = w
    return v


def compensated_overlaps(fa: np.ndarray, keys_a: np.ndarray, fb: np.ndarray, keys_b: np.ndarray,
                         shift: np.ndarray, stride: int = 1):
    """Overlaps of the objects of label image ``fa``, each shifted by its own
    ``shift`` (px, one (dy, dx) row per key of ``keys_a``), with the objects
    of ``fb``, on a ``stride`` sub-grid.

    Returns (ia, ib, intersection, area_a, area_b): key indices of the
    overlapping pairs, their intersections and every object's area (all in
    sub-grid samples).
    """
    sa, sb = fa[::stride, ::stride], fb[::stride, ::stride]
    h, w = sb.shape
    flat = sa.ravel()
    nz = np.flatnonzero(flat)
    ia = _lut(keys_a, flat[nz])
    ok = ia >= 0
    nz, ia = nz[ok], ia[ok]
    area_a = np.bincount(ia, minlength=keys_a.size)
    fbf = sb.ravel()
    nzb = np.flatnonzero(fbf)
    ib_all = _lut(keys_b, fbf[nzb])
    area_b = np.bincount(ib_all[ib_all >= 0], minlength=keys_b.size)
    if keys_a.size == 0 or keys_b.size == 0 or nz.size == 0:
        z = np.zeros(0, np.int64)
        return z, z, z, area_a, area_b
    step = np.rint(np.asarray(shift, float) / stride).astype(np.int64)
    r = nz // sa.shape[1] + step[ia, 0]
    c = nz % sa.shape[1] + step[ia, 1]
    inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
    ib = np.full(ia.size, -1, np.int64)
    ib[inside] = _lut(keys_b, fbf[r[inside] * w + c[inside]])
    hit = ib >= 0
    key = ia[hit] * keys_b.size + ib[hit]
    uk, cnt = np.unique(key, return_counts=True)
    return uk // keys_b.size, uk % keys_b.size, cnt, area_a, area_b


class FrameFeatures:
    """What the features of the events between frames ``t`` and ``t + 1``
    need: shape of both frames' objects, local motion of frame ``t``'s, the
    compensated and plain overlaps, medians of the frame, touching pairs of
    ``t + 1`` (as sorted keys ``i * n_b + j``, ``i < j``)."""

    def __init__(self, fa, keys_a, fb, keys_b, pos_a, pos_b, stride: int = 1):
        self.na, self.nb = keys_a.size, keys_b.size
        self.shape_a = shape_moments(fa, keys_a)
        self.shape_b = shape_moments(fb, keys_b)
        self.motion = local_motion(pos_a, pos_b)
        ia, ib, inter, aa, ab = compensated_overlaps(fa, keys_a, fb, keys_b, self.motion, stride)
        self.key_c = ia * max(self.nb, 1) + ib
        self.inter_c = inter
        self.area_a, self.area_b = np.maximum(aa, 1), np.maximum(ab, 1)
        self.iou_c = inter / np.maximum(self.area_a[ia] + self.area_b[ib] - inter, 1)
        ia0, ib0, inter0, _, _ = compensated_overlaps(fa, keys_a, fb, keys_b, np.zeros((self.na, 2)), stride)
        self.key_0 = ia0 * max(self.nb, 1) + ib0
        self.iou_0 = inter0 / np.maximum(self.area_a[ia0] + self.area_b[ib0] - inter0, 1)
        # best compensated IoU of every object of t (of t + 1) with any object of the other frame
        self.best_a = np.zeros(self.na)
        np.maximum.at(self.best_a, ia, self.iou_c)
        self.best_b = np.zeros(self.nb)
        np.maximum.at(self.best_b, ib, self.iou_c)
        # crowding: nearest-neighbour distance / length (dense colonies < 1, sparse nuclei > 1)
        self.crowding_a = np.full(self.na, 10.0)
        if self.na > 1:
            d, _ = cKDTree(pos_a).query(pos_a, k=2)
            self.crowding_a = np.minimum(d[:, 1] / np.maximum(self.shape_a[:, 1], 1e-6), 10.0)
        self.median_area_a = float(np.median(self.area_a)) if self.na else 1.0
        self.median_length_a = float(np.median(self.shape_a[:, 1])) if self.na else 1.0
        # the frame's medians, per object of t (MovieFeatures holds every frame's)
        self.med_area = np.full(self.na, self.median_area_a)
        self.med_len = np.full(self.na, self.median_length_a)
        self.touch = _touching(fb, keys_b)

    def lookup_many(self, keys: np.ndarray, table: np.ndarray, *values: np.ndarray) -> list[np.ndarray]:
        """:meth:`lookup` of several value arrays of the same ``table`` (one search)."""
        if table.size == 0:
            return [np.zeros(keys.shape) for _ in values]
        pos = np.clip(np.searchsorted(table, keys), 0, table.size - 1)
        hit = table[pos] == keys
        return [np.where(hit, v[pos], 0.0) for v in values]

    def lookup(self, keys: np.ndarray, table: np.ndarray, values: np.ndarray) -> np.ndarray:
        """``values`` of the pairs ``keys`` (``i * n_b + j``) in the sorted ``table``; 0 when absent."""
        if table.size == 0:
            return np.zeros(keys.shape)
        pos = np.clip(np.searchsorted(table, keys), 0, table.size - 1)
        return np.where(table[pos] == keys, values[pos], 0.0)


def _touching(frame: np.ndarray, keys: np.ndarray) -> np.ndarray:
    n = keys.size
    out = []
    for a, b in ((frame[:, :-1], frame[:, 1:]), (frame[:-1], frame[1:])):
        m = (a != b) & (a != 0) & (b != 0)
        if m.any():
            i, j = _lut(keys, a[m]), _lut(keys, b[m])
            ok = (i >= 0) & (j >= 0)
            out.append(np.minimum(i[ok], j[ok]) * max(n, 1) + np.maximum(i[ok], j[ok]))
    return np.unique(np.concatenate(out)) if out else np.zeros(0, np.int64)


def nearest_in_frame(pos: np.ndarray, frame: np.ndarray, query: np.ndarray, query_frame: np.ndarray,
                     k: int = 1) -> np.ndarray:
    """Distances (m, k) from each ``query`` point to its ``k`` nearest points of ``pos`` in frame ``query_frame``,
    for all frames at once: one k-d tree of (y, x, frame * spacing), the spacing larger than any distance
    within the points' bounding box (so the nearest points lie in the query's frame when it holds ``k``
    of them; the third coordinates are equal, their difference adds exactly 0: the distances are the
    planar ones, as with one tree per frame)."""
    both = np.concatenate([pos, query]) if len(query) else pos
    extent = float(np.ptp(both[:, 0]) + np.ptp(both[:, 1])) if len(both) else 0.0
    spacing = float(2.0 ** math.ceil(math.log2(extent + 2.0)))
    tree = cKDTree(np.column_stack([pos, frame * spacing]))
    d, _ = tree.query(np.column_stack([query, query_frame * spacing]), k=k)
    return np.asarray(d, float).reshape(len(query), k)


class FrameIndex:
    """The labelled pixels of one frame on a ``stride`` sub-grid: their flat
    positions (``nz``), the index of their label among the sorted ``keys``
    (``idx``, -1 for a label without a detection), the area of each key and
    a lookup from label value to key index. Built once per frame and shared
    by the overlaps, the shape moments and the touching pairs."""

    def __init__(self, frame: np.ndarray, keys: np.ndarray, stride: int = 1):
        flat = np.ascontiguousarray(frame[::stride, ::stride]).ravel()
        self.flat = flat
        self.nz = np.flatnonzero(flat != 0)  # (much faster than on the integers)
        self.n = keys.size
        self.top = int(keys[-1]) if keys.size else 0
        if self.top < (1 << 24):
            self.lut = np.full(self.top + 2, -1, dtype=np.int64)
            self.lut[keys] = np.arange(keys.size)
            self.keys = None
        else:
            self.lut, self.keys = None, keys
        self.idx = self.index_of(flat[self.nz])
        self.area = np.bincount(self.idx[self.idx >= 0], minlength=self.n)
        self.shape = frame[::stride, ::stride].shape
        self._known = None
        self._rc = None

    def known(self) -> tuple[np.ndarray, np.ndarray]:
        """(nz, idx) of the pixels whose label has a detection."""
        if self._known is None:
            ok = self.idx >= 0
            self._known = (self.nz, self.idx) if ok.all() else (self.nz[ok], self.idx[ok])
        return self._known

    def rows_cols(self) -> tuple[np.ndarray, np.ndarray]:
        """Row and column of every pixel of ``nz``."""
        if self._rc is None:
            self._rc = np.divmod(self.nz, self.shape[1])
        return self._rc

    def known_rows_cols(self) -> tuple[np.ndarray, np.ndarray]:
        """Row and column of every pixel of :meth:`known`."""
        r, c = self.rows_cols()
        if self._known is None:
            self.known()
        if self._known[0] is self.nz:
            return r, c
        ok = self.idx >= 0
        return r[ok], c[ok]

    def touch_keys(self) -> np.ndarray:
        """The touching pairs as sorted unique keys ``i * max(n, 1) + j`` (i < j),
        from the labelled pixels and their right and lower neighbours."""
        h, w = self.shape
        nz = self.nz
        n = max(self.n, 1)
        r, c = self.rows_cols()
        out = []
        for step, ok in ((1, c != w - 1), (w, r != h - 1)):
            p = nz[ok]
            vp, vq = self.flat[p], self.flat[p + step]
            m = (vq != vp) & (vq != 0)
            if m.any():
                i, j = self.index_of(vp[m]), self.index_of(vq[m])
                ok2 = (i >= 0) & (j >= 0)
                out.append(np.minimum(i[ok2], j[ok2]) * n + np.maximum(i[ok2], j[ok2]))
        return np.unique(np.concatenate(out)) if out else np.zeros(0, np.int64)

    def index_of(self, values: np.ndarray) -> np.ndarray:
        if self.n == 0:
            return np.full(values.shape, -1, dtype=np.int64)
        if self.lut is not None:
            return self.lut.take(np.minimum(values, self.top + 1, dtype=np.int64))  # uint8 255 + 1 overflowed
        pos = np.clip(np.searchsorted(self.keys, values), 0, self.n - 1)
        return np.where((values != 0) & (self.keys[pos] == values), pos, -1)


def count_pairs(ia: np.ndarray, ib: np.ndarray, na: int, nb: int):
    """Sorted unique pairs (ia, ib) of key indices and how often each occurs."""
    key = ia * nb + ib
    if na * nb <= 4 * key.size + 1024:
        cnt = np.bincount(key, minlength=na * nb)
        uk = np.flatnonzero(cnt)
        cnt = cnt[uk]
    else:
        uk, cnt = np.unique(key, return_counts=True)
    return uk // nb, uk % nb, cnt


def shifted_overlaps(a: FrameIndex, b: FrameIndex, step: np.ndarray):
    """:func:`compensated_overlaps` of two :class:`FrameIndex` (same grid):
    every object of ``a`` shifted by its ``step`` (sub-grid px, integer (n, 2)).
    Returns (ia, ib, intersection)."""
    nz, ia = a.known()
    if a.n == 0 or b.n == 0 or nz.size == 0:
        z = np.zeros(0, np.int64)
        return z, z, z
    h, w = b.shape
    r, c = a.known_rows_cols()
    r = r + step[ia, 0]
    c = c + step[ia, 1]
    inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
    ib = np.full(ia.size, -1, np.int64)
    ib[inside] = b.index_of(b.flat[r[inside] * w + c[inside]])
    hit = ib >= 0
    return count_pairs(ia[hit], ib[hit], a.n, b.n)


class MovieFeatures:
    """What :func:`link_features` and :func:`division_features` need, for all
    consecutive frame pairs of a movie at once: the attributes of
    :class:`FrameFeatures` with detection rows (sorted by frame) in place of
    per-frame indices (``na = nb = n``; pair keys ``i * n + j``). Filled frame
    by frame (:meth:`add_frame`, :meth:`add_pair`), then :meth:`finish`; the
    numbers are those of :class:`FrameFeatures` of every pair."""

    def __init__(self, n: int):
        self.na = self.nb = n
        self.shape_a = self.shape_b = np.zeros((n, 3))
        self.area_a = self.area_b = np.ones(n, np.int64)
        self.motion = np.zeros((n, 2))
        self.med_area = np.ones(n)
        self.med_len = np.ones(n)
        self.crowding_a = np.full(n, 10.0)
        self.best_a = np.zeros(n)
        self.best_b = np.zeros(n)
        self._parts: dict[str, list] = {k: [] for k in ("key_c", "inter_c", "iou_c", "key_0", "iou_0", "touch")}
        self._crowded: list[np.ndarray] = []  # rows of the frames with two detections or more

    def add_frame(self, start: int, full: FrameIndex, grid: FrameIndex) -> None:
        """Frame-wise numbers of the ``full.n`` detections from row ``start``:
        shape moments (``full``: stride 1), areas on the overlap ``grid``,
        medians, crowding, touching pairs."""
        k = full.n
        if k == 0:
            return
        rows = slice(start, start + k)
        nz, idx = full.known()
        shape = _moments(nz, idx, full.shape[1], k, full.known_rows_cols())
        self.shape_a[rows] = shape
        area = np.maximum(grid.area, 1)
        self.area_a[rows] = area
        self.med_area[rows] = _median(area)
        self.med_len[rows] = _median(shape[:, 1])
        if k > 1:
            self._crowded.append(np.arange(start, start + k))
        t = full.touch_keys()
        self._parts["touch"].append((t // k + start) * self.nb + (t % k + start))

    def add_pair(self, start_a: int, start_b: int, a: FrameIndex, b: FrameIndex, pos_a: np.ndarray,
                 pos_b: np.ndarray, plain: tuple, stride: int = 1, motion: np.ndarray | None = None) -> None:
        """Local motion and overlaps between the frames of ``a`` (rows from
        ``start_a``) and ``b`` (rows from ``start_b``); ``plain``: their
        unshifted overlaps ``(ia, ib, iou)`` (:func:`cellscale.track.costs.frame_overlaps`);
        ``motion``: the local motion of ``a``'s detections if known (:func:`local_motions`).
        Both frames must have been added."""
        na, n = a.n, self.nb
        if motion is None:
            motion = local_motion(pos_a, pos_b)
        self.motion[start_a:start_a + na] = motion
        step = np.rint(np.asarray(motion, float) / stride).astype(np.int64)
        ia, ib, inter = shifted_overlaps(a, b, step)
        ga, gb = ia + start_a, ib + start_b
        iou = inter / np.maximum(self.area_a[ga] + self.area_b[gb] - inter, 1)
        self._parts["key_c"].append(ga * n + gb)
        self._parts["inter_c"].append(inter)
        self._parts["iou_c"].append(iou)
        np.maximum.at(self.best_a, ga, iou)
        np.maximum.at(self.best_b, gb, iou)
        ia0, ib0, iou0 = plain
        self._parts["key_0"].append((ia0 + start_a) * n + (ib0 + start_b))
        self._parts["iou_0"].append(iou0)

    def finish(self, pos: np.ndarray, frame: np.ndarray) -> "MovieFeatures":
        """Concatenate the pair tables; the crowding of every frame's detections (``pos``, ``frame``: of all rows)."""
        if self._crowded:
            rows = np.concatenate(self._crowded)
            d = nearest_in_frame(pos[rows], frame[rows], pos[rows], frame[rows], k=2)[:, 1]
            self.crowding_a[rows] = np.minimum(d / np.maximum(self.shape_a[rows, 1], 1e-6), 10.0)
        for k, parts in self._parts.items():
            setattr(self, k, np.concatenate(parts) if parts else np.zeros(0, np.float64 if "iou" in k else np.int64))
        return self

    lookup = FrameFeatures.lookup
    lookup_many = FrameFeatures.lookup_many


def _median(a: np.ndarray) -> float:
    """``np.median`` of a short 1-D array of finite numbers (the same number, without its overhead: 10x faster
    on a frame's hundred values)."""
    s = np.sort(a, kind="stable").astype(float)
    h = s.size // 2
    return float(s[h]) if s.size % 2 else float(0.5 * (s[h - 1] + s[h]))


def _rows(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``a[idx]`` for a 2-D ``a`` (rows): the same numbers, 3x to 10x faster for many short rows."""
    return np.take(a, idx, axis=0)


def _rel(a, b):
    return np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-12)


def _group_best(groups: np.ndarray, values: np.ndarray, size: int, fill: float, op):
    """Best and second best of ``values`` per group (``op`` = np.maximum or
    np.minimum) and the index of the (first) element that is the best."""
    best = np.full(size, fill)
    op.at(best, groups, values)
    is_best = values == best[groups]
    # the second best: the best of the others (a tie counts as a second best)
    first = np.full(size, -1, np.int64)
    idx = np.flatnonzero(is_best)
    first[groups[idx[::-1]]] = idx[::-1]
    others = np.ones(values.size, bool)
    others[first[first >= 0]] = False
    second = np.full(size, fill)
    op.at(second, groups[others], values[others])
    return best, second, first


def link_features(ff: FrameFeatures, qa: np.ndarray, qb: np.ndarray, pos_a: np.ndarray, pos_b: np.ndarray,
                  md: float, inten_a: np.ndarray | None = None, inten_b: np.ndarray | None = None,
                  rule_cost: np.ndarray | None = None) -> np.ndarray:
    """(n, len(LINK_FEATURES)) features of the links ``qa`` (index in frame t) -> ``qb`` (index in t + 1).

    ``pos_a``/``pos_b``: centroids of all objects of the two frames; ``md``:
    the search radius (the distance unit); ``rule_cost``: the links'
    rule-based costs (0 when not given).
    """
    n = qa.size
    f = np.zeros((n, len(LINK_FEATURES)))
    if n == 0:
        return f
    md = max(float(md), 1e-6)
    key = qa * max(ff.nb, 1) + qb
    pa, pb = _rows(pos_a, qa), _rows(pos_b, qb)
    d = np.hypot(*(pb - pa).T)
    dc = np.hypot(*(pb - pa - _rows(ff.motion, qa)).T)
    inter, iou_c = ff.lookup_many(key, ff.key_c, ff.inter_c, ff.iou_c)
    sa, sb = _rows(ff.shape_a, qa), _rows(ff.shape_b, qb)
    elong_a = sa[:, 1] / np.maximum(sa[:, 2], 1e-6)
    elong_b = sb[:, 1] / np.maximum(sb[:, 2], 1e-6)
    weight = np.clip((np.minimum(elong_a, elong_b) - 1.0) / 0.5, 0.0, 1.0)  # round cells have no axis
    f[:, 0] = d / md
    f[:, 1] = dc / md
    f[:, 2] = ff.lookup(key, ff.key_0, ff.iou_0)
    f[:, 3] = iou_c
    f[:, 4] = inter / ff.area_b[qb]
    f[:, 5] = inter / ff.area_a[qa]
    f[:, 6] = np.log(ff.area_b[qb] / ff.area_a[qa])
    f[:, 7] = np.log(np.maximum(sb[:, 1], 1e-6) / np.maximum(sa[:, 1], 1e-6))
    f[:, 8] = np.abs(np.sin(sb[:, 0] - sa[:, 0])) * weight
    f[:, 9] = elong_a
    f[:, 10] = ff.area_a[qa] / np.maximum(ff.med_area[qa], 1e-6)
    f[:, 11] = sa[:, 1] / np.maximum(ff.med_len[qa], 1e-6)
    if inten_a is not None and inten_b is not None:
        f[:, 12] = _rel(inten_a[qa], inten_b[qb])
    # competition: the best alternative of each end
    best_a, second_a, first_a = _group_best(qa, iou_c, ff.na, 0.0, np.maximum)
    f[:, 13] = np.where(np.arange(n) == first_a[qa], second_a[qa], best_a[qa])
    best_b, second_b, first_b = _group_best(qb, iou_c, ff.nb, 0.0, np.maximum)
    f[:, 14] = np.where(np.arange(n) == first_b[qb], second_b[qb], best_b[qb])
    big = 1e3 * md
    lo_a, lo2_a, fa_ = _group_best(qa, dc, ff.na, big, np.minimum)
    other = np.where(np.arange(n) == fa_[qa], lo2_a[qa], lo_a[qa])
    f[:, 15] = np.clip((dc - other) / md, -5.0, 5.0)
    lo_b, lo2_b, fb_ = _group_best(qb, dc, ff.nb, big, np.minimum)
    other = np.where(np.arange(n) == fb_[qb], lo2_b[qb], lo_b[qb])
    f[:, 16] = np.clip((dc - other) / md, -5.0, 5.0)
    f[:, 17] = ff.crowding_a[qa]
    if rule_cost is not None:
        f[:, 18] = np.minimum(rule_cost, 10.0)
    return f


def division_features(ff: FrameFeatures, qm: np.ndarray, qa: np.ndarray, qb: np.ndarray, pos_a: np.ndarray,
                      pos_b: np.ndarray, inten_b: np.ndarray | None = None,
                      rule_cost: np.ndarray | None = None) -> np.ndarray:
    """(n, len(DIVISION_FEATURES)) features of the divisions ``qm`` (index in
    frame t) -> (``qa``, ``qb``) (indices in t + 1); ``rule_cost``: their
    rule-based costs without the touch term (0 when not given)."""
    n = qm.size
    f = np.zeros((n, len(DIVISION_FEATURES)))
    if n == 0:
        return f
    nb = max(ff.nb, 1)
    sm, sa, sb = _rows(ff.shape_a, qm), _rows(ff.shape_b, qa), _rows(ff.shape_b, qb)
    length_m = np.maximum(sm[:, 1], 1e-6)
    pm = _rows(pos_a, qm) + _rows(ff.motion, qm)
    pa, pb = _rows(pos_b, qa), _rows(pos_b, qb)
    mid = 0.5 * (pa + pb)
    f[:, 0] = np.hypot(*(mid - pm).T) / (0.5 * length_m)
    va, vb = pa - pm, pb - pm
    na_, nb_ = np.hypot(*va.T), np.hypot(*vb.T)
    f[:, 1] = np.where((na_ > 0) & (nb_ > 0), (va * vb).sum(1) / np.maximum(na_ * nb_, 1e-12), 0.0)
    area_m, area_a, area_b = ff.area_a[qm], ff.area_b[qa], ff.area_b[qb]
    f[:, 2] = np.log((area_a + area_b) / area_m)
    f[:, 3] = np.abs(np.log(area_a / area_b))
    inter_a, ia_m = ff.lookup_many(qm * nb + qa, ff.key_c, ff.inter_c, ff.iou_c)
    inter_b, ib_m = ff.lookup_many(qm * nb + qb, ff.key_c, ff.inter_c, ff.iou_c)
    inter = inter_a + inter_b
    f[:, 4] = inter / area_m
    f[:, 5] = inter / (area_a + area_b)
    ab = pb - pa
    dab = np.hypot(*ab.T)
    axis = np.column_stack([np.cos(sm[:, 0]), np.sin(sm[:, 0])])  # (dy, dx) of the long axis
    f[:, 6] = np.abs((ab * axis).sum(1)) / np.maximum(dab, 1e-6)
    ta, tb = np.abs(np.sin(sa[:, 0] - sm[:, 0])), np.abs(np.sin(sb[:, 0] - sm[:, 0]))
    f[:, 7] = 0.5 * (ta + tb)
    f[:, 8] = np.maximum(ta, tb)
    f[:, 9] = length_m / np.maximum(ff.med_len[qm], 1e-6)
    f[:, 10] = area_m / np.maximum(ff.med_area[qm], 1e-6)
    f[:, 11] = length_m / np.maximum(sm[:, 2], 1e-6)
    f[:, 12] = (sa[:, 1] + sb[:, 1]) / length_m
    f[:, 13] = dab / length_m
    lo, hi = np.minimum(qa, qb), np.maximum(qa, qb)
    tk = lo * nb + hi
    if ff.touch.size:
        pos = np.clip(np.searchsorted(ff.touch, tk), 0, ff.touch.size - 1)
        f[:, 14] = ff.touch[pos] == tk
    f[:, 15] = ff.best_a[qm]
    # the daughters' best predecessor other than m: their best overall, unless that is m
    oa = np.where(ia_m >= ff.best_b[qa], 0.0, ff.best_b[qa])
    ob = np.where(ib_m >= ff.best_b[qb], 0.0, ff.best_b[qb])
    f[:, 16] = np.maximum(oa, ob)
    f[:, 17] = np.minimum(oa, ob)
    if inten_b is not None:
        f[:, 18] = _rel(inten_b[qa], inten_b[qb])
    f[:, 19] = ff.crowding_a[qm]
    if rule_cost is not None:
        f[:, 20] = np.minimum(rule_cost, 10.0)
    return f
