"""Generated multiplexed tissue with known nuclei, cells and marker levels.

Cells are grown from seeded centres (a Voronoi partition capped at a maximum
radius, so some background remains); each holds an elliptical nucleus. Channels:
nuclear stain, membrane stain, and marker channels whose true per-cell level is
recorded, so measurements can be checked against the truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from scipy.spatial import cKDTree
from skimage.draw import ellipse
from skimage.segmentation import find_boundaries, watershed

CHANNEL_NAMES = ["DNA", "Membrane", "CD3", "CD20"]


@dataclass
class Tissue:
    """A generated tissue image and its truth.

    Attributes
    ----------
    image : (C, Y, X) uint16, channels named by ``channel_names``.
    nuclear : (Y, X) uint32 true nuclei; label k is inside whole cell k.
    whole_cell : (Y, X) uint32 true cells.
    truth : one row per cell: CellID, true marker levels (image units), centre.
    """

    image: np.ndarray
    nuclear: np.ndarray
    whole_cell: np.ndarray
    truth: pd.DataFrame
    channel_names: list[str]


def _seed_points(shape, n, min_dist, rng):
    """Up to ``n`` points at least ``min_dist`` apart, by rejection: each try is one draw, kept if far enough from
    every point kept before (the distances of a try in one vectorised step; the draws and decisions are those of
    a point-by-point loop, so a seed gives the points it always gave)."""
    points = np.empty((n, 2))
    kept = tries = 0
    low = np.array([min_dist / 2, min_dist / 2])
    high = np.array([shape[0] - min_dist / 2, shape[1] - min_dist / 2])
    while kept < n and tries < n * 200:
        tries += 1
        p = rng.uniform(low, high)
        if (np.hypot(p[0] - points[:kept, 0], p[1] - points[:kept, 1]) >= min_dist).all():
            points[kept] = p
            kept += 1
    return points[:kept]


def _centre_markers(shape, centres: np.ndarray) -> np.ndarray:
    """Watershed markers: cell k's centre pixel holds k."""
    markers = np.zeros(shape, np.int32)
    rows = np.clip(centres[:, 0].astype(int), 0, shape[0] - 1)
    cols = np.clip(centres[:, 1].astype(int), 0, shape[1] - 1)
    markers[rows, cols] = np.arange(1, len(centres) + 1)
    return markers


def _marker_levels(rng: np.random.Generator, n: int) -> np.ndarray:
    """True per-cell levels of the marker channels, (markers, n + 1) with row 0 for the background:
    about 40% / 30% of cells positive."""
    levels = np.zeros((len(CHANNEL_NAMES) - 2, n + 1))
    positive = rng.random((levels.shape[0], n)) < np.array([[0.4], [0.3]])
    levels[:, 1:] = np.where(positive, rng.uniform(0.4, 0.9, positive.shape), rng.uniform(0.0, 0.08, positive.shape))
    return levels


def _tissue(rng: np.random.Generator, dna: np.ndarray, membrane: np.ndarray, nuclei: np.ndarray, cells: np.ndarray,
            levels: np.ndarray, centres: np.ndarray, noise: float) -> Tissue:
    """The noisy uint16 image (DNA, membrane, one channel per marker) and the truth table of the cells drawn."""
    clean = np.stack([dna, membrane, *[lv[cells] for lv in levels]])
    noisy = clean + rng.normal(0, noise, clean.shape)
    image = np.clip(noisy * 20000 + 1000, 0, 65535).astype(np.uint16)
    truth = pd.DataFrame({
        "CellID": np.arange(1, len(centres) + 1),
        **{name: levels[i, 1:] * 20000 + 1000 for i, name in enumerate(CHANNEL_NAMES[2:])},
        "Y_centre": centres[:, 0], "X_centre": centres[:, 1],
    })
    truth = truth[truth.CellID.isin(np.unique(cells[cells > 0]))].reset_index(drop=True)
    return Tissue(image, nuclei, cells, truth, list(CHANNEL_NAMES))


def make_tissue(shape: tuple[int, int] = (512, 512), n_cells: int = 150, seed: int = 0,
                cell_radius: float = 16.0, noise: float = 0.03) -> Tissue:
    """Generate a tissue image; deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    centres = _seed_points(shape, n_cells, cell_radius * 1.5, rng)
    n = len(centres)
    markers = _centre_markers(shape, centres)
    dist = ndi.distance_transform_edt(markers == 0)
    # a smooth random field makes cell outlines irregular, as in real tissue
    wobble = ndi.gaussian_filter(rng.normal(0, 1, shape), cell_radius / 2)
    dist = dist * (1 + 0.35 * wobble / (wobble.std() + 1e-9))
    cells = watershed(dist, markers, mask=dist < cell_radius * rng.uniform(0.9, 1.3))
    # cells are bounded by a thin gap so neighbours are separable, as in real membranes
    cells[find_boundaries(cells, mode="inner")] = 0
    cells = cells.astype(np.uint32)

    nuclei = np.zeros(shape, np.uint32)
    for k, (r, c) in enumerate(centres, start=1):
        ry, rx = rng.uniform(0.35, 0.55, 2) * cell_radius
        rr, cc = ellipse(r, c, ry, rx, shape=shape, rotation=rng.uniform(0, np.pi))
        inside = cells[rr, cc] == k
        nuclei[rr[inside], cc[inside]] = k
    # a cell must keep cytoplasm around its nucleus: erode nuclei touching the rim
    nuclei[find_boundaries(cells, mode="outer") & (nuclei > 0)] = 0

    levels = _marker_levels(rng, n)

    texture = ndi.gaussian_filter(rng.normal(0, 1, shape), 1.5)
    dna = (nuclei > 0) * (0.7 + 0.15 * texture) + 0.03
    membrane = ndi.gaussian_filter(find_boundaries(cells, mode="outer").astype(float), 1.0) * 2.5
    membrane = np.clip(membrane, 0, 1) * 0.8 + (cells > 0) * 0.05
    return _tissue(rng, ndi.gaussian_filter(dna, 1.0), membrane, nuclei, cells, levels, centres, noise)


def make_dense_tissue(shape: tuple[int, int] = (512, 512), seed: int = 0, cell_radius: float = 11.0,
                      noise: float = 0.03) -> Tissue:
    """Generate densely packed tissue that looks like a multiplexed (CODEX) tile; deterministic per seed.

    Unlike :func:`make_tissue` (sparse cells with small nuclei and crisp membranes), cells tile the
    tissue edge to edge in patches with empty gaps, nuclei fill half or more of each cell and touch their
    neighbours, nuclear brightness varies from cell to cell, cells may be stretched along one direction,
    and the membrane stain is faint and patchy, as in the shared CODEX tile. Only the DNA and membrane
    channels carry signal; the marker channels hold the true per-cell levels as in :func:`make_tissue`.
    """
    rng = np.random.default_rng(seed)
    # stretch: cells (and their nuclei) elongated along a random direction in some images
    stretch = float(rng.choice([1.0, 1.0, rng.uniform(1.3, 2.2)]))
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[:shape[0], :shape[1]].astype(np.float64)
    u = (yy * np.cos(angle) + xx * np.sin(angle)) / stretch  # squeezed along the stretch direction
    v = -yy * np.sin(angle) + xx * np.cos(angle)
    # packed centres: a jittered hexagonal grid (fast, and as dense as real tissue)
    step = cell_radius * 1.8
    gy, gx = np.mgrid[0:shape[0] + step:step * 0.866, 0:shape[1] + step:step]
    gx = gx + (np.arange(gy.shape[0])[:, None] % 2) * step / 2
    centres = np.stack([gy.ravel(), gx.ravel()], 1) + rng.normal(0, 0.2 * step, (gy.size, 2))
    centres = centres[(centres[:, 0] >= 0) & (centres[:, 0] < shape[0]) & (centres[:, 1] >= 0)
                      & (centres[:, 1] < shape[1])]
    n = len(centres)
    cu = (centres[:, 0] * np.cos(angle) + centres[:, 1] * np.sin(angle)) / stretch
    cv = -centres[:, 0] * np.sin(angle) + centres[:, 1] * np.cos(angle)
    # nearest centre in the stretched metric, with wobbly outlines
    tree = cKDTree(np.stack([cu, cv], 1))
    dist, nearest = tree.query(np.stack([u.ravel(), v.ravel()], 1))
    dist, nearest = dist.reshape(shape), nearest.reshape(shape) + 1
    wobble = ndi.gaussian_filter(rng.normal(0, 1, shape), cell_radius / 2)
    dist = dist * (1 + 0.3 * wobble / (wobble.std() + 1e-9))
    markers = _centre_markers(shape, centres)
    # empty regions (vessels, lumen, stroma without cells) between patches of packed cells
    field = ndi.gaussian_filter(rng.normal(0, 1, shape), cell_radius * 3)
    field /= field.std() + 1e-9
    tissue = field > rng.uniform(-1.2, 0.0)
    cells = watershed(dist, markers, mask=tissue & (dist < cell_radius * rng.uniform(1.1, 1.6)))
    cells[(cells > 0) & (cells != nearest)] = 0  # a cell's pixels are near its own centre
    # half the rim pixels, at random, become background: neighbours are separable but not cleanly outlined
    cells[find_boundaries(cells, mode="inner") & (rng.random(shape) < 0.5)] = 0
    cells = cells.astype(np.uint32)
    # drop slivers cut off by the empty regions
    areas = np.bincount(cells.ravel(), minlength=n + 1)
    small = areas < 0.35 * np.pi * cell_radius**2
    small[0] = False
    cells[small[cells]] = 0

    nuclei = np.zeros(shape, np.uint32)
    rim = find_boundaries(cells, mode="inner")
    for k, (r, c) in enumerate(centres, start=1):
        if areas[k] == 0 or small[k]:
            continue
        ry, rx = rng.uniform(0.6, 0.9, 2) * cell_radius
        rr, cc = ellipse(r + rng.normal(0, 1), c + rng.normal(0, 1), ry * stretch ** 0.5, rx / stretch ** 0.5,
                         shape=shape, rotation=angle + rng.normal(0, 0.3) if stretch > 1 else rng.uniform(0, np.pi))
        inside = (cells[rr, cc] == k) & ~rim[rr, cc]
        nuclei[rr[inside], cc[inside]] = k

    levels = _marker_levels(rng, n)

    brightness = np.exp(rng.normal(0, 0.35, n + 1))
    texture = ndi.gaussian_filter(rng.normal(0, 1, shape), rng.uniform(1.0, 2.0))
    dna = (nuclei > 0) * brightness[nuclei] * (0.6 + 0.2 * texture) + 0.03
    dna = dna + (cells > 0) * 0.04 * brightness[cells]  # a little DNA-channel haze in the cytoplasm
    patchy = ndi.gaussian_filter(rng.normal(0, 1, shape), cell_radius)
    patchy = np.clip(0.5 + 0.5 * patchy / (patchy.std() + 1e-9), 0, 1)
    cell_membrane = rng.uniform(0.1, 1.0, n + 1)  # some cells barely stain
    outline = ndi.gaussian_filter(find_boundaries(cells, mode="thick").astype(float), rng.uniform(0.8, 1.6)) * 2
    membrane_contrast = rng.uniform(0.1, 0.5)
    membrane = (np.clip(outline, 0, 1) * patchy * np.maximum(cell_membrane[cells], 0.3) * membrane_contrast
                + (cells > 0) * rng.uniform(0.02, 0.1) * cell_membrane[cells])
    specks = ndi.gaussian_filter((rng.random(shape) < 0.0003).astype(float), 1.5) * 20 * membrane_contrast
    membrane = membrane + specks
    dna = ndi.gaussian_filter(dna, rng.uniform(1.0, 1.8))
    return _tissue(rng, dna, membrane, nuclei, cells, levels, centres, noise)
