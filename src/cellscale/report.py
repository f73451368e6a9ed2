"""Quality-control pictures and summaries: outlines on the image, lineage trees."""

from __future__ import annotations

import numpy as np
import pandas as pd
from skimage.segmentation import find_boundaries

from cellscale.io import atomic_path

OUTLINE_COLOURS = {"nuclear": (0.2, 1.0, 0.2), "whole_cell": (1.0, 0.3, 0.9)}


def display_image(channels: np.ndarray) -> np.ndarray:
    """A (Y, X, 3) float RGB preview of (C, Y, X) channels (first channel grey, or RGB if C == 3)."""
    def stretch(a):
        lo, hi = np.percentile(a, [1, 99.8])
        return np.clip((a.astype(np.float32) - lo) / max(hi - lo, 1e-6), 0, 1)

    if channels.shape[0] == 3:
        return np.stack([stretch(c) for c in channels], axis=-1)
    grey = stretch(channels[0])
    return np.stack([grey] * 3, axis=-1)


def overlay(channels: np.ndarray, labels: dict[str, np.ndarray], max_px: int = 1024) -> np.ndarray:
    """RGB uint8 (Y', X', 3): outlines of each compartment's labels on the image, downsampled to ``max_px``."""
    step = max(1, int(np.ceil(max(channels.shape[-2:]) / max_px)))
    rgb = display_image(channels[:, ::step, ::step])
    for comp, lab in labels.items():
        edges = find_boundaries(lab[::step, ::step], mode="inner")
        rgb[edges] = OUTLINE_COLOURS.get(comp, (1.0, 1.0, 0.0))
    return (rgb * 255).astype(np.uint8)


def save_png(path, rgb: np.ndarray) -> None:
    import imageio.v3 as iio

    with atomic_path(path) as tmp:
        iio.imwrite(tmp, rgb, extension=".png")


def summarize_sample(sample: str, labels: dict[str, np.ndarray], table: pd.DataFrame) -> dict:
    """Counts and size statistics per compartment (per frame for time-lapse)."""
    out = {"sample": sample}
    for comp, lab in labels.items():
        rows = table[table["compartment"] == comp] if "compartment" in table else table
        out[f"{comp}_cells"] = int(len(rows))
        out[f"{comp}_median_area"] = float(rows["Area"].median()) if len(rows) else 0.0
        if lab.ndim == 3:
            out["frames"] = int(lab.shape[0])
    return out


def lineage_plot(path, tracks: pd.DataFrame, title: str = "") -> None:
    """Lineage tree: one horizontal line per track over its frames, divisions joined to parents."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spans = tracks.groupby("track_id").agg(start=("frame", "min"), end=("frame", "max"),
                                           parent=("parent_track_id", "first")).reset_index()
    order = _tree_order(spans)
    row = {tid: i for i, tid in enumerate(order)}
    fig, ax = plt.subplots(figsize=(8, max(3, 0.18 * len(order) + 1)))
    for s in spans.itertuples():
        ax.plot([s.start, s.end], [row[s.track_id]] * 2, lw=2, color="tab:blue")
        if s.parent and s.parent in row:
            parent_end = spans.loc[spans.track_id == s.parent, "end"].iloc[0]
            ax.plot([parent_end, s.start], [row[s.parent], row[s.track_id]], color="tab:red", lw=1)
    ax.set_xlabel("frame")
    ax.set_ylabel("track")
    ax.set_yticks([])
    ax.set_title(title or f"{len(order)} tracks, {int((spans.parent > 0).sum())} daughters")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _tree_order(spans: pd.DataFrame) -> list[int]:
    """Track ids ordered depth-first so daughters sit next to their parent."""
    children: dict[int, list[int]] = {}
    for s in spans.itertuples():
        children.setdefault(int(s.parent or 0), []).append(int(s.track_id))
    known = set(spans.track_id.astype(int))
    roots = [t for p, kids in children.items() if p == 0 or p not in known for t in kids]
    order, stack = [], sorted(roots, reverse=True)
    while stack:
        tid = stack.pop()
        order.append(tid)
        stack.extend(sorted(children.get(tid, []), reverse=True))
    return order
