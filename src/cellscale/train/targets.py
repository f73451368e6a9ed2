"""Training targets derived from instance labels: inner distance and 3-class maps.

The model learns, per compartment, two maps (as DeepCell's Mesmer does):

* the *inner distance*: inside each cell, the Euclidean distance to the cell's
  edge divided by the cell's largest such distance, so every cell peaks at 1 in
  its middle whatever its size; 0 on background;
* a *3-class* map: 0 background, 1 boundary (the cell's inner rim), 2 interior.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

BACKGROUND, BOUNDARY, INTERIOR = 0, 1, 2
# what is not known of a pixel (:func:`make_targets`' ``unknown``): nothing missing; the distance (a cell cut by the
# edge of a piece of a larger image, as a corrected review tile is); anything (padding beyond a small image)
KNOWN, PARTIAL_CELL, OUTSIDE = 0, 1, 2
# the distance target of a pixel whose class is known but not its distance, and of one with nothing known; the loss
# (cellscale.train.fit.make_loss) counts the class where the target is above NOTHING, the distance where it is >= 0
NO_DISTANCE, NOTHING = -0.5, -1.0


def inner_distance(labels: np.ndarray) -> np.ndarray:
    """Per-cell normalised distance to the cell edge.

    Parameters
    ----------
    labels : (Y, X) int array, 0 = background.

    Returns
    -------
    (Y, X) float32 in [0, 1].
    """
    labels = np.asarray(labels)
    if not labels.any():
        return np.zeros(labels.shape, np.float32)
    # Pixels on a border between two different cells count as edge so that
    # touching cells get separate distance peaks.
    edges = find_boundaries(labels, mode="inner", connectivity=1)
    inside = (labels > 0) & ~edges
    dist = ndi.distance_transform_edt(inside).astype(np.float32)
    dist[labels > 0] += 1.0  # the rim itself is at distance 1, not 0
    peak = np.zeros(int(labels.max()) + 1, np.float32)
    np.maximum.at(peak, labels.ravel(), dist.ravel())
    norm = peak[labels]
    out = np.divide(dist, norm, out=np.zeros_like(dist), where=norm > 0)
    return out


def three_class(labels: np.ndarray) -> np.ndarray:
    """Background / boundary / interior classes, (Y, X) uint8."""
    labels = np.asarray(labels)
    classes = np.where(labels > 0, INTERIOR, BACKGROUND).astype(np.uint8)
    rim = find_boundaries(labels, mode="inner", connectivity=1) & (labels > 0)
    classes[rim] = BOUNDARY
    return classes


def make_targets(labels: np.ndarray, unknown: np.ndarray | None = None) -> np.ndarray:
    """Stack the targets for one compartment: (Y, X, 2) float32 = [distance, class]; where ``unknown`` (Y, X) says
    ``PARTIAL_CELL`` the distance is :data:`NO_DISTANCE`, where it says ``OUTSIDE`` both are :data:`NOTHING`."""
    out = np.stack([inner_distance(labels), three_class(labels).astype(np.float32)], axis=-1)
    if unknown is not None:
        out[unknown == PARTIAL_CELL, 0] = NO_DISTANCE
        out[unknown == OUTSIDE] = NOTHING
    return out
