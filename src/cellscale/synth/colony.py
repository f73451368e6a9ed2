"""Seeded synthetic dense colony of growing, dividing cells with exact lineage.

:func:`make_colony` grows a monolayer colony from a few founder cells, like a
bacterial micro-colony growing on an agar pad: rod-shaped
cells (capsules, ``cell_shape="rod"``) elongate along their axis, or round
cells (``"round"``, near-circular capsules, like yeast) grow in area. A cell
that reaches its division length divides along its long axis into two
daughters that sit end to end where the mother was. Growing cells push their
neighbours (overlapping capsules are relaxed apart until they are ``gap`` px
apart), so cells touch, daughters stay side by side with their sisters and
cousins, and the per-frame displacement is small compared with the cell size:
the hard case for centroid-distance trackers.

The result is a :class:`~cellscale.synth.timelapse.Timelapse` (the container
of the sparse generator), so :func:`~cellscale.synth.timelapse.write_ctc_ground_truth`
writes its CTC ground truth (``TRA/man_trackNNN.tif`` + ``TRA/man_track.txt``).
The label of a cell in every frame is its track id; a division follows the
CTC rule: the mother's track ends at frame ``t`` and the two daughters (new
ids, parent = the mother) begin at ``t + 1``. Cells whose centre leaves the
field of view are removed (their tracks end). ``params`` holds the arguments
and ``n_cells``, the number of cells in each frame.

About 2 s for the defaults (512 x 512, 50 frames, 6 founders -> ~300 cells,
~290 divisions) on one CPU core.

The defaults make an easy colony (cells ``gap`` px apart, slow random
motion, a doubling time of 8 frames): a rule-based tracker scores division
F1 about 0.98 on it. ``make_colony(**PRESETS["hard"])`` makes the hard case of
a real E. coli time-lapse (issue 23): rods packed with no gap, larger random
motion on top of the pushes of a faster-growing colony (more growth per
frame, so daughters and their neighbours move more between frames), faster
turning and twice the read noise; about 400 cells and 380 divisions in 50
frames of 512 x 512 from 3 founders (the same rule-based tracker: division
F1 about 0.2).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from cellscale.io.ctc import LINEAGE_COLUMNS
from cellscale.synth.timelapse import Timelapse

__all__ = ["PRESETS", "make_colony", "random_colony_params"]

_DEFAULTS = {"rod": (8.0, 18.0), "round": (13.0, 14.0)}  # (width, birth length) in px

#: Named parameter sets of :func:`make_colony` (``make_colony(**PRESETS[name], seed=...)``).
#: ``"hard"``: touching rods, faster growth, larger motion and turning, more noise.
PRESETS: dict[str, dict] = {
    "default": {},
    "hard": {"n_founders": 3, "doubling": 7.0, "gap": 0.0, "motion": 1.5, "turn": 0.08, "noise": 0.06},
}


def random_colony_params(seed: int, shape: tuple[int, int] = (512, 512), max_cells: int = 600) -> dict:
    """Keyword arguments of :func:`make_colony` drawn at random from ``seed``: a colony of one kind among many.

    Domain randomisation for the learned tracking costs, so that they are trained on more kinds of colony
    than the two presets: cell size (rod width 5-14 px, birth length 1.8-3 widths; round cells 8-20 px),
    doubling time (5-14 frames), random motion (0.2-3 px/frame, log-uniform), turning (0.02-0.12
    rad/frame), packing (gap 0-2 px), read noise (0.02-0.08), division noise (0.05-0.15) and, for half of
    the seeds, a global drift of up to 4 px/frame in a random direction. A quarter of the colonies have
    round cells. The founders (2-12) and the number of frames (at most 50, at least 20) are chosen so that
    the colony ends with about ``max_cells`` cells or what half of the field holds, whichever is fewer.
    ``seed`` is also the colony's seed, so ``make_colony(**random_colony_params(s))`` is reproducible.
    """
    rng = np.random.default_rng([int(seed), 23])
    rod = bool(rng.random() >= 0.25)
    if rod:
        width = float(rng.uniform(5.0, 14.0))
        length = width * float(rng.uniform(1.8, 3.0))
        cell_area = width * 1.5 * length  # at mid-cycle
    else:
        width = float(rng.uniform(8.0, 20.0))
        length = width * float(rng.uniform(1.0, 1.15))
        cell_area = 1.6 * width * length
    doubling = float(rng.uniform(5.0, 14.0))
    founders = int(rng.integers(2, 13))
    cap = max(4 * founders, min(max_cells, int(0.5 * shape[0] * shape[1] / cell_area)))
    n_frames = int(np.clip(doubling * np.log2(cap / founders), 20, 50))
    drift = (0.0, 0.0)
    if rng.random() < 0.5:
        speed, angle = float(rng.uniform(0.5, 4.0)), float(rng.uniform(0.0, 2.0 * np.pi))
        drift = (round(speed * float(np.sin(angle)), 3), round(speed * float(np.cos(angle)), 3))
    return {"n_frames": n_frames, "shape": tuple(int(v) for v in shape), "n_founders": founders,
            "seed": int(seed), "cell_shape": "rod" if rod else "round", "doubling": round(doubling, 3),
            "division_noise": round(float(rng.uniform(0.05, 0.15)), 3),
            "motion": round(float(np.exp(rng.uniform(np.log(0.2), np.log(3.0)))), 3), "drift": drift,
            "width": round(width, 3), "length": round(length, 3),
            "gap": float(rng.choice([0.0, 0.0, 0.5, 1.0, 2.0])),
            "noise": round(float(rng.uniform(0.02, 0.08)), 4), "turn": round(float(rng.uniform(0.02, 0.12)), 4)}


def _closest_points(p1, d1, p2, d2):
    """Parameters ``s, t`` in [0, 1] of the closest points ``p1 + s d1`` and
    ``p2 + t d2`` of pairs of segments (rows of (n, 2) arrays). Degenerate
    (point) segments are handled; parallel segments use the middle of their
    overlap so that side-by-side rods are pushed apart without torque."""
    r = p1 - p2
    a = (d1 * d1).sum(1)
    e = (d2 * d2).sum(1)
    b = (d1 * d2).sum(1)
    c = (d1 * r).sum(1)
    f = (d2 * r).sum(1)
    eps = 1e-9
    a_s, e_s = np.maximum(a, eps), np.maximum(e, eps)
    denom = a * e - b * b
    parallel = denom <= 1e-4 * a * e + eps
    s_gen = np.clip((b * f - c * e) / np.where(parallel, 1.0, denom), 0.0, 1.0)
    lo = np.clip(np.minimum(-c, b - c) / a_s, 0.0, 1.0)
    hi = np.clip(np.maximum(-c, b - c) / a_s, 0.0, 1.0)
    s = np.where(parallel, 0.5 * (lo + hi), s_gen)
    s = np.where(a <= eps, 0.0, s)
    t = np.where(e <= eps, 0.0, (b * s + f) / e_s)
    # t outside [0, 1]: clamp it and take the point of segment 1 closest to that end
    s = np.where(t < 0, np.clip(-c / a_s, 0, 1), np.where(t > 1, np.clip((b - c) / a_s, 0, 1), s))
    s = np.where(a <= eps, 0.0, s)
    t = np.where(e <= eps, 0.0, np.clip((b * s + f) / e_s, 0.0, 1.0))
    return s, t


def _relax(c: dict, gap: float, iterations: int, tol: float = 0.2) -> None:
    """Push overlapping capsules apart (rigid bodies: translation and rotation)
    until every pair is at least ``gap`` px apart up to ``tol``, or for at most
    ``iterations`` Jacobi steps. Deterministic; modifies ``c`` in place."""
    n = len(c["x"])
    if n < 2:
        return
    x, y, th = c["x"], c["y"], c["theta"]
    rad = c["width"] / 2.0
    half = np.maximum(c["length"] - c["width"], 0.0) / 2.0
    inertia = 2.0 * half**2 + rad**2
    reach = float(c["length"].max()) + gap
    for _ in range(iterations):
        pairs = cKDTree(np.column_stack([x, y])).query_pairs(reach, output_type="ndarray")
        if len(pairs) == 0:
            return
        i, j = pairs[:, 0], pairs[:, 1]
        near = np.hypot(x[i] - x[j], y[i] - y[j]) < (c["length"][i] + c["length"][j]) / 2 + gap
        i, j = i[near], j[near]
        u = np.column_stack([np.cos(th), np.sin(th)])
        cen = np.column_stack([x, y])
        p = cen - half[:, None] * u
        d = 2.0 * half[:, None] * u
        s, t = _closest_points(p[i], d[i], p[j], d[j])
        pi = p[i] + s[:, None] * d[i]
        pj = p[j] + t[:, None] * d[j]
        dv = pi - pj
        dist = np.hypot(dv[:, 0], dv[:, 1])
        over = rad[i] + rad[j] + gap - dist
        hit = over > 0
        if not hit.any() or over.max() < tol:
            return
        i, j, pi, pj, dv, dist, over = i[hit], j[hit], pi[hit], pj[hit], dv[hit], dist[hit], over[hit]
        # coincident closest points: push along the normal of cell i's axis
        flat = dist < 1e-6
        normal = dv / np.where(flat, 1.0, dist)[:, None]
        if flat.any():
            sign = np.where((i[flat] + j[flat]) % 2 == 0, 1.0, -1.0)
            normal[flat] = sign[:, None] * np.column_stack([-u[i[flat], 1], u[i[flat], 0]])
        force = 0.5 * over[:, None] * normal  # on i; -force on j
        fx = np.bincount(i, force[:, 0], n) - np.bincount(j, force[:, 0], n)
        fy = np.bincount(i, force[:, 1], n) - np.bincount(j, force[:, 1], n)
        ri, rj = pi - cen[i], pj - cen[j]
        tq_i = ri[:, 0] * force[:, 1] - ri[:, 1] * force[:, 0]
        tq_j = -(rj[:, 0] * force[:, 1] - rj[:, 1] * force[:, 0])
        torque = np.bincount(i, tq_i, n) + np.bincount(j, tq_j, n)
        # many contacts on one cell: damp its step (Jacobi steps would overshoot)
        contacts = np.bincount(i, minlength=n) + np.bincount(j, minlength=n)
        damp = 1.0 / np.sqrt(np.maximum(contacts, 1))
        x += fx * damp
        y += fy * damp
        th += np.clip(torque / inertia * damp, -0.2, 0.2)


def _paint(c: dict, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise the capsules: label image (track ids) and depth inside the
    cell (0 at the edge, 1 on the axis). A pixel covered by two capsules goes
    to the one it is deeper in."""
    lab = np.zeros(shape, dtype=np.uint32)
    best = np.zeros(shape, dtype=np.float32)  # signed distance of the owner (< 0 inside)
    depth = np.zeros(shape, dtype=np.float32)
    half = np.maximum(c["length"] - c["width"], 0.0) / 2.0
    for k in range(len(c["x"])):
        cx, cy, r, h = c["x"][k], c["y"][k], c["width"][k] / 2.0, half[k]
        ux, uy = np.cos(c["theta"][k]), np.sin(c["theta"][k])
        ext = h + r + 1.0
        y0, y1 = max(int(np.floor(cy - ext)), 0), min(int(np.ceil(cy + ext)) + 1, shape[0])
        x0, x1 = max(int(np.floor(cx - ext)), 0), min(int(np.ceil(cx + ext)) + 1, shape[1])
        if y0 >= y1 or x0 >= x1:
            continue
        dy = (np.arange(y0, y1) - cy)[:, None]
        dx = (np.arange(x0, x1) - cx)[None, :]
        along = np.clip(dx * ux + dy * uy, -h, h)
        sd = np.hypot(dx - along * ux, dy - along * uy) - r
        sub = best[y0:y1, x0:x1]
        m = (sd < 0) & (sd < sub)
        sub[m] = sd[m]
        lab[y0:y1, x0:x1][m] = c["tid"][k]
        depth[y0:y1, x0:x1][m] = np.clip(-sd[m] / r, 0.0, 1.0)
    # a cell squeezed out of every pixel keeps its centre pixel
    missing = ~np.isin(c["tid"], lab)
    for k in np.flatnonzero(missing):
        py = min(max(int(round(c["y"][k])), 0), shape[0] - 1)
        px = min(max(int(round(c["x"][k])), 0), shape[1] - 1)
        lab[py, px], depth[py, px] = c["tid"][k], 0.5
    return lab, depth


def make_colony(
    n_frames: int = 50,
    shape: tuple[int, int] = (512, 512),
    n_founders: int = 6,
    seed: int = 0,
    cell_shape: str = "rod",
    doubling: float = 8.0,
    division_noise: float = 0.1,
    motion: float = 0.3,
    drift: tuple[float, float] = (0.0, 0.0),
    width: float | None = None,
    length: float | None = None,
    gap: float = 1.0,
    relax_iterations: int = 40,
    noise: float = 0.03,
    turn: float = 0.04,
) -> Timelapse:
    """Simulate a dense colony of growing, dividing cells with exact lineage.

    Parameters
    ----------
    n_frames, shape:
        Number of frames and (Y, X) size of each frame.
    n_founders:
        Cells in frame 0 (ids ``1..n_founders``), placed at random in the
        central half of the field at random points of their cell cycle.
    seed:
        Seed of the only random generator used: same arguments, same output.
    cell_shape:
        ``"rod"``: capsules of fixed width that elongate along their axis
        (E. coli-like). ``"round"``: near-circular cells (aspect 1-1.15) that
        grow in area (yeast-like).
    doubling:
        Mean doubling time in frames (per-cell growth rates vary by 15 %).
        With 4 founders, 8 frames give a few hundred cells after 50 frames.
    division_noise:
        Relative spread of the division size (rods divide at about twice the
        birth length, round cells at about sqrt(2) times the birth diameter).
    motion:
        Standard deviation of each cell's random walk (px/frame), on top of
        the pushes of its growing neighbours.
    drift:
        Global (dy, dx) drift of the whole field in px/frame.
    width, length:
        Cell width and mean birth length in px (defaults: rods 8 and 18,
        round cells 13 and 14).
    gap:
        Distance kept between neighbouring cell surfaces (px): the packing;
        0 gives cells that touch with no background between them.
    relax_iterations:
        Most relaxation steps per frame that push overlapping cells apart.
    noise:
        Standard deviation of the additive Gaussian read noise (0 disables
        both Gaussian and Poisson noise).
    turn:
        Standard deviation of each cell's random rotation (rad/frame).

    ``PRESETS["hard"]`` holds the parameters of the hard case (see the module).
    """
    n_frames, n_founders = int(n_frames), int(n_founders)
    shape = (int(shape[0]), int(shape[1]))
    if cell_shape not in _DEFAULTS:
        raise ValueError(f"cell_shape must be 'rod' or 'round', got {cell_shape!r}")
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if n_founders < 0:
        raise ValueError(f"n_founders must be >= 0, got {n_founders}")
    if min(shape) < 32:
        raise ValueError(f"shape must be at least 32x32 px, got {shape}")
    if doubling <= 0:
        raise ValueError(f"doubling must be > 0 frames, got {doubling}")
    if gap < 0 or motion < 0 or noise < 0 or turn < 0 or not 0 <= division_noise < 0.5:
        raise ValueError("gap, motion, noise and turn must be >= 0 and division_noise in [0, 0.5)")
    w0, l0 = _DEFAULTS[cell_shape]
    w0 = float(width) if width is not None else w0
    l0 = float(length) if length is not None else l0
    rod = cell_shape == "rod"
    if rod and l0 <= w0:
        raise ValueError(f"rods need length > width, got length {l0} and width {w0}")
    rng = np.random.default_rng(seed)
    div_factor = 2.0 if rod else np.sqrt(2.0)  # division size / birth size (length)
    rate0 = np.log(2.0) / float(doubling)

    def new_cells(m: int) -> dict:  # per-cell draws shared by founders and daughters
        return {"rate": rate0 * np.clip(1.0 + 0.15 * rng.standard_normal(m), 0.4, 1.6),
                "div_len": div_factor * l0 * np.clip(1.0 + division_noise * rng.standard_normal(m), 0.6, 1.4)}

    # --- founders -------------------------------------------------------------
    c = new_cells(n_founders)
    aspect = rng.uniform(1.0, 1.15, n_founders)
    phase = rng.uniform(0.0, 1.0, n_founders)  # position in the cell cycle
    c["length"] = c["div_len"] / div_factor * div_factor**phase
    c["width"] = w0 * np.clip(1 + 0.05 * rng.standard_normal(n_founders), 0.85, 1.15) if rod \
        else c["length"] / aspect
    pts: list[tuple[float, float]] = []
    for _ in range(n_founders):
        for _attempt in range(200):
            py, px = rng.uniform(0.25, 0.75) * shape[0], rng.uniform(0.25, 0.75) * shape[1]
            if all(np.hypot(py - qy, px - qx) > 2.5 * l0 for qy, qx in pts):
                break
        pts.append((py, px))
    c["y"] = np.array([q[0] for q in pts], dtype=float)
    c["x"] = np.array([q[1] for q in pts], dtype=float)
    c["theta"] = rng.uniform(0.0, np.pi, n_founders)
    c["bright"] = rng.uniform(0.45, 0.75, n_founders)
    c["tid"] = np.arange(1, n_founders + 1, dtype=np.int64)
    c["born"] = np.zeros(n_founders, dtype=np.int64)
    _relax(c, gap, 200)

    # --- static imaging fields (as the sparse generator) ---------------------
    bg = ndi.gaussian_filter(rng.standard_normal(shape), 25.0)
    bg = bg / (np.abs(bg).max() + 1e-12)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    gy, gx = rng.uniform(-1, 1, size=2)
    background = (0.08 + 0.03 * bg + 0.03 * (gy * yy / shape[0] + gx * xx / shape[1])).astype(np.float32)
    photons = 400.0

    next_id = n_founders + 1
    records: dict[int, list[int]] = {}  # track id -> [B, E, P]
    parents: dict[int, int] = {}
    image = np.zeros((n_frames,) + shape, dtype=np.float32)
    labels = np.zeros((n_frames,) + shape, dtype=np.uint32)
    n_cells = []

    for t in range(n_frames):
        if t > 0 and len(c["x"]):
            # --- growth ---------------------------------------------------------
            g = np.exp(c["rate"] if rod else c["rate"] / 2.0)
            c["length"] = c["length"] * g
            if not rod:
                c["width"] = c["width"] * g
            # --- divisions: mothers end at t - 1, daughters begin at t --------
            div = c["length"] >= c["div_len"]
            if div.any():
                m = {k: v[div] for k, v in c.items()}
                keep = {k: v[~div] for k, v in c.items()}
                nd = int(div.sum())
                if rod:
                    ld, wd = (m["length"] - gap) / 2.0, m["width"]
                else:
                    ld, wd = m["length"] / np.sqrt(2.0), m["width"] / np.sqrt(2.0)
                off = ld / 2.0 + gap / 2.0
                ux, uy = np.cos(m["theta"]), np.sin(m["theta"])
                daughters = []
                for sign in (-1.0, 1.0):
                    d = new_cells(nd)
                    d["length"], d["width"] = ld.copy(), wd * np.clip(1 + 0.02 * rng.standard_normal(nd), 0.9, 1.1)
                    d["x"], d["y"] = m["x"] + sign * off * ux, m["y"] + sign * off * uy
                    d["theta"] = m["theta"] + 0.1 * rng.standard_normal(nd)
                    d["bright"] = np.clip(m["bright"] * rng.uniform(0.9, 1.1, nd), 0.4, 0.8)
                    d["born"] = np.full(nd, t, dtype=np.int64)
                    daughters.append(d)
                # ids: the two daughters of a mother are consecutive
                ids = next_id + np.arange(2 * nd, dtype=np.int64)
                daughters[0]["tid"], daughters[1]["tid"] = ids[0::2], ids[1::2]
                next_id += 2 * nd
                for mother, a, b in zip(m["tid"], ids[0::2], ids[1::2]):
                    parents[int(a)] = parents[int(b)] = int(mother)
                c = {k: np.concatenate([keep[k], daughters[0][k], daughters[1][k]]) for k in c}
            # --- random motion, drift, relaxation -------------------------------
            n = len(c["x"])
            c["x"] = c["x"] + motion * rng.standard_normal(n) + float(drift[1])
            c["y"] = c["y"] + motion * rng.standard_normal(n) + float(drift[0])
            c["theta"] = c["theta"] + float(turn) * rng.standard_normal(n)
            _relax(c, gap, int(relax_iterations))
            # --- cells whose centre left the field end (newborns stay one frame)
            inside = ((c["y"] >= -0.5) & (c["y"] < shape[0] - 0.5)
                      & (c["x"] >= -0.5) & (c["x"] < shape[1] - 0.5)) | (c["born"] == t)
            if not inside.all():
                c = {k: v[inside] for k, v in c.items()}
        lab, depth = _paint(c, shape)
        labels[t] = lab
        for tid in c["tid"]:
            rec = records.setdefault(int(tid), [t, t, parents.get(int(tid), 0)])
            rec[1] = t
        n_cells.append(len(c["x"]))
        # --- intensity: bright cytoplasm, darker edge, blur, noise -----------
        lut = np.zeros(int(lab.max()) + 1, dtype=np.float32)
        lut[c["tid"]] = c["bright"]
        inten = lut[lab] * (0.5 + 0.5 * np.sqrt(depth))
        clean = background + ndi.gaussian_filter(inten, 1.0)
        if noise > 0:
            clean = rng.poisson(np.clip(clean, 0, None) * photons) / photons
            clean = clean + rng.normal(0.0, noise, size=shape)
        image[t] = np.clip(clean, 0.0, 1.0).astype(np.float32)

    lineage = pd.DataFrame([(tid, b, e, p) for tid, (b, e, p) in sorted(records.items())],
                           columns=LINEAGE_COLUMNS).astype("int64")
    params = dict(n_frames=n_frames, shape=shape, n_founders=n_founders, seed=seed, cell_shape=cell_shape,
                  doubling=doubling, division_noise=division_noise, motion=motion, drift=tuple(drift),
                  width=w0, length=l0, gap=gap, relax_iterations=relax_iterations, noise=noise,
                  turn=turn, n_cells=n_cells)
    return Timelapse(image=image, labels=labels, lineage=lineage, params=params)
