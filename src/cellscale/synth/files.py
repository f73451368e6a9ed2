"""Generated images and their ground truth written to disk (``cellscale synth``, ``make demo-data``)."""

from __future__ import annotations

from pathlib import Path

from cellscale.io import write_image, write_labels
from cellscale.synth.tissue import make_tissue
from cellscale.synth.timelapse import make_timelapse, write_ctc_ground_truth


def truth_dir_for(image_path: Path, truth_dir: str | None) -> Path:
    if truth_dir:
        return Path(truth_dir)
    stem = image_path.name.split(".")[0]
    return image_path.parent / f"{stem}_truth"


def write_synthetic(kind: str, output, truth_dir: str | None = None, seed: int = 0, size: int = 512,
                    cells: int | None = None, frames: int = 30) -> str:
    """Write a generated ``tissue`` or ``timelapse`` image to ``output`` and its truth beside it (or to
    ``truth_dir``); returns a one-line summary."""
    out = Path(output)
    truth = truth_dir_for(out, truth_dir)
    truth.mkdir(parents=True, exist_ok=True)
    if kind == "tissue":
        n_cells = cells or int(150 * (size / 512) ** 2)
        t = make_tissue((size, size), n_cells=n_cells, seed=seed)
        write_image(out, t.image, t.channel_names, axes="CYX")
        write_labels(truth / "nuclear.tif", t.nuclear)
        write_labels(truth / "whole_cell.tif", t.whole_cell)
        t.truth.to_csv(truth / "cells.csv", index=False)
        return f"tissue {t.image.shape} with {len(t.truth)} cells -> {out}; truth in {truth}"
    tl = make_timelapse(n_frames=frames, shape=(size, size), n_cells=cells or 12, seed=seed)
    image = (tl.image * 60000).clip(0, 65535).astype("uint16")
    write_image(out, image, ["nuclei"], axes="TYX")
    write_ctc_ground_truth(tl, truth)
    n_div = int((tl.lineage.P > 0).sum() // 2)
    return f"time-lapse {image.shape}, {len(tl.lineage)} tracks, {n_div} divisions -> {out}; truth in {truth}"
