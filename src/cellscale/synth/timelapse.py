"""Seeded synthetic fluorescence time-lapse with exact tracking ground truth.

:func:`make_timelapse` simulates bright, roughly elliptical nuclei that move
by a smooth random walk, never overlap, stay inside the field of view and
divide a few times. It returns the noisy frames, the ground-truth label masks
(the label of a cell in every frame is its Cell Tracking Challenge track id)
and the lineage table in the CTC ``man_track.txt`` convention::

    L  B  E  P     track id, first frame, last frame, parent track id (0: none)

A division follows the CTC rule: the mother track ends at frame ``t`` and two
daughters with new ids start at ``t + 1`` on either side of the mother along
its long axis, each with about half of the mother's area; they grow back to
full size over a few frames.

:func:`write_ctc_ground_truth` writes the CTC ground-truth layout
(``TRA/man_trackNNN.tif`` + ``TRA/man_track.txt``) that CTC evaluation tools
read, with the CTC writers of :mod:`cellscale.io.ctc`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from cellscale.io.ctc import LINEAGE_COLUMNS, write_label_frames, write_lineage

__all__ = ["Timelapse", "make_timelapse", "write_ctc_ground_truth"]

_GAP = 2.0  # minimum free pixels between the bounding circles of two cells
_GROW_FRAMES = 8  # frames a daughter takes to grow back to full size


@dataclass
class Timelapse:
    """A synthetic time-lapse and its ground truth.

    image:   (T, Y, X) float32 in [0, 1], fluorescence-like frames.
    labels:  (T, Y, X) uint32, 0 = background, value = CTC track id.
    lineage: DataFrame with int columns L, B, E, P (CTC man_track convention).
    params:  the generator arguments, for provenance.
    """

    image: np.ndarray
    labels: np.ndarray
    lineage: pd.DataFrame
    params: dict = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return int(self.labels.shape[0])

    @property
    def divisions(self) -> pd.DataFrame:
        """One row per division: parent track id and the two daughter ids."""
        lin = self.lineage
        rows = []
        for p, grp in lin[lin["P"] > 0].groupby("P"):
            if len(grp) >= 2:
                rows.append({"P": int(p), "E": int(lin.loc[lin["L"] == p, "E"].iloc[0]),
                             "daughters": tuple(int(v) for v in sorted(grp["L"]))})
        return pd.DataFrame(rows, columns=["P", "E", "daughters"])


@dataclass
class _Cell:
    track_id: int
    y: float
    x: float
    a: float  # full-size semi-major axis (px)
    b: float  # full-size semi-minor axis (px)
    theta: float  # orientation of the major axis (rad)
    vy: float
    vx: float
    brightness: float
    born: int  # first frame
    scale: float = 1.0  # linear size factor (1/sqrt(2) right after division)
    parent: int = 0

    @property
    def radius(self) -> float:  # bounding-circle radius at the current size
        return self.a * self.scale


def _relax(cells: list[_Cell], shape: tuple[int, int], iterations: int = 200) -> None:
    """Push cells apart until their bounding circles are ``_GAP`` px apart and
    clamp them inside the field. Deterministic (no randomness)."""
    if not cells:
        return
    pos = np.array([[c.y, c.x] for c in cells], dtype=float)
    rad = np.array([c.radius for c in cells], dtype=float)
    lo = rad + 2.0
    hi_y = shape[0] - 3.0 - rad
    hi_x = shape[1] - 3.0 - rad
    n = len(cells)
    for _ in range(iterations):
        pos[:, 0] = np.clip(pos[:, 0], lo, hi_y)
        pos[:, 1] = np.clip(pos[:, 1], lo, hi_x)
        if n < 2:
            break
        diff = pos[:, None, :] - pos[None, :, :]
        dist = np.sqrt((diff**2).sum(-1))
        need = rad[:, None] + rad[None, :] + _GAP
        over = need - dist
        np.fill_diagonal(over, -1.0)
        if over.max() <= 1e-6:
            break
        # direction i <- j; coincident centres get a fixed, index-based direction
        safe = np.where(dist > 1e-9, dist, 1.0)
        unit = diff / safe[..., None]
        coincide = dist <= 1e-9
        if coincide.any():
            ii, jj = np.nonzero(coincide)
            ang = 0.7 * (ii - jj)
            unit[ii, jj, 0] = np.sin(ang)
            unit[ii, jj, 1] = np.cos(ang)
        push = np.where(over > 0, 0.5 * over + 0.05, 0.0)
        pos += (unit * push[..., None]).sum(axis=1)
    pos[:, 0] = np.clip(pos[:, 0], lo, hi_y)
    pos[:, 1] = np.clip(pos[:, 1], lo, hi_x)
    for c, (y, x) in zip(cells, pos):
        c.y, c.x = float(y), float(x)


def _paint(cells: list[_Cell], shape: tuple[int, int], texture: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise the cells: label image and a noiseless intensity image."""
    lab = np.zeros(shape, dtype=np.uint32)
    inten = np.zeros(shape, dtype=np.float32)
    for c in cells:
        a, b = c.a * c.scale, c.b * c.scale
        r = int(np.ceil(a)) + 1
        y0, y1 = max(int(np.floor(c.y)) - r, 0), min(int(np.ceil(c.y)) + r + 1, shape[0])
        x0, x1 = max(int(np.floor(c.x)) - r, 0), min(int(np.ceil(c.x)) + r + 1, shape[1])
        yy, xx = np.mgrid[y0:y1, x0:x1]
        dy, dx = yy - c.y, xx - c.x
        ct, st = np.cos(c.theta), np.sin(c.theta)
        u = (dy * st + dx * ct) / a  # along the major axis
        v = (dy * ct - dx * st) / b
        rr = u * u + v * v
        inside = (rr <= 1.0) & (lab[y0:y1, x0:x1] == 0)
        if not inside.any():  # sub-pixel cell: keep at least its centre pixel
            cy = min(max(int(round(c.y)), 0), shape[0] - 1)
            cx = min(max(int(round(c.x)), 0), shape[1] - 1)
            if lab[cy, cx] == 0:
                lab[cy, cx] = c.track_id
                inten[cy, cx] = c.brightness
            continue
        profile = c.brightness * (0.8 + 0.2 * (1.0 - rr)) * texture[y0:y1, x0:x1]
        lab[y0:y1, x0:x1][inside] = c.track_id
        inten[y0:y1, x0:x1][inside] = profile[inside]
    return lab, inten


def make_timelapse(
    n_frames: int = 30,
    shape: tuple[int, int] = (256, 256),
    n_cells: int = 12,
    seed: int = 0,
    n_divisions: int | None = None,
    noise: float = 0.03,
    max_step: float = 3.0,
) -> Timelapse:
    """Simulate a time-lapse of moving, dividing nuclei with exact ground truth.

    Parameters
    ----------
    n_frames, shape:
        Number of frames and (Y, X) size of each frame.
    n_cells:
        Cells in the first frame (all start at frame 0, ids 1..n_cells).
    seed:
        Seed of the only random generator used: same arguments, same output.
    n_divisions:
        Number of divisions. ``None`` means ``max(2, n_cells // 4)`` when the
        movie has at least 6 frames (else 0). A division happens at a frame
        ``t`` in ``[2, n_frames - 2]`` to a cell at least 2 frames old.
    noise:
        Standard deviation of the additive Gaussian read noise (0 disables
        both Gaussian and Poisson noise).
    max_step:
        Largest step of the smooth random walk in px/frame (pushes that keep
        cells apart and inside the field can add a little to it).

    Cells are ellipses with semi-axes about 8-11 px (daughters start at
    1/sqrt(2) of their mother's size, i.e. half the area, and grow back in
    ~8 frames). They never overlap (bounding circles are kept 2 px apart)
    and are kept inside the field, so every track ends either at the last
    frame or at a division.
    """
    n_frames = int(n_frames)
    n_cells = int(n_cells)
    shape = (int(shape[0]), int(shape[1]))
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if n_cells < 0:
        raise ValueError(f"n_cells must be >= 0, got {n_cells}")
    if min(shape) < 40:
        raise ValueError(f"shape must be at least 40x40 px, got {shape}")
    if n_divisions is None:
        n_divisions = max(2, n_cells // 4) if (n_frames >= 6 and n_cells > 0) else 0
    n_divisions = int(n_divisions)
    if n_divisions < 0:
        raise ValueError(f"n_divisions must be >= 0, got {n_divisions}")
    if n_divisions > 0 and (n_frames < 4 or n_cells == 0):
        raise ValueError(
            f"{n_divisions} divisions need at least 4 frames and one cell "
            f"(got n_frames={n_frames}, n_cells={n_cells})")
    # every cell keeps a disc of ~ (2*11+2)^2 px; refuse hopeless crowding
    capacity = (shape[0] - 10) * (shape[1] - 10) / (24.0 * 24.0)
    if n_cells + n_divisions > 0.6 * capacity:
        raise ValueError(
            f"{n_cells} cells + {n_divisions} divisions do not fit in {shape}; "
            f"use fewer cells or a larger shape")

    rng = np.random.default_rng(seed)

    # --- initial placement (rejection sampling, then relaxation) ----------
    cells: list[_Cell] = []
    for tid in range(1, n_cells + 1):
        a = rng.uniform(8.0, 11.0)
        b = a * rng.uniform(0.72, 0.92)
        for _attempt in range(500):
            y = rng.uniform(a + 3, shape[0] - a - 4)
            x = rng.uniform(a + 3, shape[1] - a - 4)
            if all(np.hypot(y - c.y, x - c.x) >= a + c.a + _GAP + 2 for c in cells):
                break
        ang = rng.uniform(0, 2 * np.pi)
        step = rng.uniform(0.3, 1.0) * max_step
        cells.append(_Cell(tid, y, x, a, b, rng.uniform(0, np.pi),
                           step * np.sin(ang), step * np.cos(ang),
                           rng.uniform(0.45, 0.7), born=0))
    _relax(cells, shape)

    # --- division schedule --------------------------------------------------
    div_frames: list[int] = []
    if n_divisions:
        lo, hi = 2, n_frames - 2  # mother's last frame; daughters at t + 1 <= T - 1
        pool = np.arange(lo, hi + 1)
        # spread divisions: distinct frames when possible, middle of the movie first
        replace = n_divisions > len(pool)
        div_frames = sorted(int(v) for v in rng.choice(pool, size=n_divisions, replace=replace))

    # static texture field shared by all cells (moves with nothing: cheap and
    # enough to make nuclei non-uniform); smooth background
    texture = ndi.gaussian_filter(rng.standard_normal(shape), 1.5)
    texture = (1.0 + 0.25 * texture / (texture.std() + 1e-12)).clip(0.5, 1.5).astype(np.float32)
    bg = ndi.gaussian_filter(rng.standard_normal(shape), 25.0)
    bg = bg / (np.abs(bg).max() + 1e-12)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    gy, gx = rng.uniform(-1, 1, size=2)
    ramp = (gy * yy / shape[0] + gx * xx / shape[1])
    background = (0.08 + 0.03 * bg + 0.03 * ramp).astype(np.float32)

    next_id = n_cells + 1
    records: dict[int, list[int]] = {c.track_id: [0, 0, 0] for c in cells}  # B, E, P
    image = np.zeros((n_frames,) + shape, dtype=np.float32)
    labels = np.zeros((n_frames,) + shape, dtype=np.uint32)
    photons = 400.0  # Poisson scale: counts at intensity 1

    for t in range(n_frames):
        if t > 0:
            # --- divisions: mothers end at t-1, daughters start at t --------
            n_here = div_frames.count(t - 1)
            for _ in range(n_here):
                eligible = [c for c in cells if (t - 1) - c.born >= 2]
                if not eligible:
                    continue
                mother = eligible[int(rng.integers(len(eligible)))]
                cells.remove(mother)
                records[mother.track_id][1] = t - 1
                s = mother.scale / np.sqrt(2.0)
                off = mother.a * s + _GAP / 2 + 0.5
                for sign in (+1.0, -1.0):
                    ang = mother.theta + rng.normal(0, 0.15)
                    a = float(np.clip(mother.a * rng.uniform(0.95, 1.05), 8.0, 11.0))
                    b = float(np.clip(a * rng.uniform(0.72, 0.92), 5.0, a))
                    d = _Cell(next_id,
                              mother.y + sign * off * np.sin(mother.theta),
                              mother.x + sign * off * np.cos(mother.theta),
                              a, b, mother.theta + rng.normal(0, 0.3),
                              sign * 0.5 * max_step * np.sin(ang),
                              sign * 0.5 * max_step * np.cos(ang),
                              float(np.clip(mother.brightness * rng.uniform(0.9, 1.1), 0.4, 0.75)),
                              born=t, scale=s, parent=mother.track_id)
                    records[next_id] = [t, t, mother.track_id]
                    cells.append(d)
                    next_id += 1
            # --- smooth random walk --------------------------------------
            for c in cells:
                if c.born == t:
                    continue
                c.vy = 0.7 * c.vy + 0.3 * rng.normal(0, max_step)
                c.vx = 0.7 * c.vx + 0.3 * rng.normal(0, max_step)
                sp = np.hypot(c.vy, c.vx)
                if sp > max_step:
                    c.vy, c.vx = c.vy * max_step / sp, c.vx * max_step / sp
                c.y += c.vy
                c.x += c.vx
                c.theta += rng.normal(0, 0.05)
                c.scale = min(1.0, c.scale + (1 - 1 / np.sqrt(2.0)) / _GROW_FRAMES)
            _relax(cells, shape)
        for c in cells:
            records[c.track_id][1] = t
        lab, inten = _paint(cells, shape, texture)
        labels[t] = lab
        clean = background + ndi.gaussian_filter(inten, 0.7)
        if noise > 0:
            clean = rng.poisson(np.clip(clean, 0, None) * photons) / photons
            clean = clean + rng.normal(0.0, noise, size=shape)
        image[t] = np.clip(clean, 0.0, 1.0).astype(np.float32)

    lineage = pd.DataFrame(
        [(tid, b, e, p) for tid, (b, e, p) in sorted(records.items())],
        columns=LINEAGE_COLUMNS).astype("int64")
    params = dict(n_frames=n_frames, shape=shape, n_cells=n_cells, seed=seed,
                  n_divisions=n_divisions, noise=noise, max_step=max_step)
    return Timelapse(image=image, labels=labels, lineage=lineage, params=params)


def write_ctc_ground_truth(tl: Timelapse, folder: str | os.PathLike) -> Path:
    """Write ``folder/TRA/man_trackNNN.tif`` (uint16) and ``folder/TRA/man_track.txt``.

    Frame numbers have 3 digits (4 from 1000 frames on), as in the CTC.
    Returns the ``TRA`` folder.
    """
    labels = np.asarray(tl.labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be (T, Y, X), got shape {labels.shape}")
    if labels.size and labels.max() > np.iinfo(np.uint16).max:
        raise ValueError("track ids above 65535 do not fit the uint16 CTC ground truth")
    tra = Path(folder) / "TRA"
    tra.mkdir(parents=True, exist_ok=True)
    write_label_frames(tra, "man_track", (frame.astype(np.uint16) for frame in labels),
                       n_frames=labels.shape[0])
    write_lineage(tra / "man_track.txt", tl.lineage)
    return tra
