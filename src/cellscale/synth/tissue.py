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
    points = []
    tries = 0
    while len(points) < n and tries < n * 200:
        tries += 1
        p = rng.uniform([min_dist / 2, min_dist / 2], [shape[0] - min_dist / 2, shape[1] - min_dist / 2])
        if all(np.hypot(*(p - q)) >= min_dist for q in points):
            points.append(p)
    return np.array(points)


def make_tissue(shape: tuple[int, int] = (512, 512), n_cells: int = 150, seed: int = 0,
                cell_radius: float = 16.0, noise: float = 0.03) -> Tissue:
    """Generate a tissue image; deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    centres = _seed_points(shape, n_cells, cell_radius * 1.5, rng)
    n = len(centres)
    markers = np.zeros(shape, np.int32)
    rows = np.clip(centres[:, 0].astype(int), 0, shape[0] - 1)
    cols = np.clip(centres[:, 1].astype(int), 0, shape[1] - 1)
    markers[rows, cols] = np.arange(1, n + 1)
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

    levels = np.zeros((len(CHANNEL_NAMES) - 2, n + 1))
    positive = rng.random((levels.shape[0], n)) < np.array([[0.4], [0.3]])
    levels[:, 1:] = np.where(positive, rng.uniform(0.4, 0.9, positive.shape), rng.uniform(0.0, 0.08, positive.shape))

    texture = ndi.gaussian_filter(rng.normal(0, 1, shape), 1.5)
    dna = (nuclei > 0) * (0.7 + 0.15 * texture) + 0.03
    membrane = ndi.gaussian_filter(find_boundaries(cells, mode="outer").astype(float), 1.0) * 2.5
    membrane = np.clip(membrane, 0, 1) * 0.8 + (cells > 0) * 0.05
    marker_imgs = [lv[cells] for lv in levels]
    clean = np.stack([ndi.gaussian_filter(dna, 1.0), membrane, *marker_imgs])
    noisy = clean + rng.normal(0, noise, clean.shape)
    image = np.clip(noisy * 20000 + 1000, 0, 65535).astype(np.uint16)

    truth = pd.DataFrame({
        "CellID": np.arange(1, n + 1),
        **{name: levels[i, 1:] * 20000 + 1000 for i, name in enumerate(CHANNEL_NAMES[2:])},
        "Y_centre": centres[:, 0], "X_centre": centres[:, 1],
    })
    present = np.unique(cells[cells > 0])
    truth = truth[truth.CellID.isin(present)].reset_index(drop=True)
    return Tissue(image, nuclei, cells, truth, list(CHANNEL_NAMES))
