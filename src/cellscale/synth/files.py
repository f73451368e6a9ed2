"""Generated images and their ground truth written to disk (``cellscale synth``, ``make demo-data``)."""

from __future__ import annotations

from pathlib import Path

from cellscale.io import write_image, write_labels
from cellscale.synth.colony import make_colony
from cellscale.synth.tissue import make_tissue
from cellscale.synth.timelapse import make_timelapse, write_ctc_ground_truth


def truth_dir_for(image_path: Path, truth_dir: str | None) -> Path:
    if truth_dir:
        return Path(truth_dir)
    stem = image_path.name.split(".")[0]
    return image_path.parent / f"{stem}_truth"


def write_synthetic(kind: str, output, truth_dir: str | None = None, seed: int = 0, size: int = 512,
                    cells: int | None = None, frames: int | None = None, cell_shape: str = "rod",
                    doubling: float = 8.0, motion: float = 0.3) -> str:
    """Write a generated ``tissue``, ``timelapse`` or ``colony`` image to ``output`` and its truth beside it
    (or to ``truth_dir``); returns a one-line summary.

    ``cells`` is the number of cells (tissue, default by area; timelapse, default 12) or of founder cells
    (colony, default 6). ``frames`` defaults to 30 (timelapse) and 50 (colony). ``cell_shape``
    (``rod``/``round``), ``doubling`` (mean doubling time in frames) and ``motion`` (random walk, px/frame)
    are colony parameters. A time-lapse or colony is written as a uint16 ``TYX`` OME-TIFF with its CTC
    ground truth (``TRA/man_trackNNN.tif`` + ``TRA/man_track.txt``)."""
    if kind not in ("tissue", "timelapse", "colony"):
        raise ValueError(f"unknown kind {kind!r}: expected tissue, timelapse or colony")
    out = Path(output)
    truth = truth_dir_for(out, truth_dir)   # made once the image is generated: a failure leaves no empty folder
    if kind == "tissue":
        n_cells = cells or int(150 * (size / 512) ** 2)
        t = make_tissue((size, size), n_cells=n_cells, seed=seed)
        truth.mkdir(parents=True, exist_ok=True)
        write_image(out, t.image, t.channel_names, axes="CYX")
        write_labels(truth / "nuclear.tif", t.nuclear)
        write_labels(truth / "whole_cell.tif", t.whole_cell)
        t.truth.to_csv(truth / "cells.csv", index=False)
        return f"tissue {t.image.shape} with {len(t.truth)} cells -> {out}; truth in {truth}"
    if kind == "colony":
        tl = make_colony(n_frames=50 if frames is None else frames, shape=(size, size),
                         n_founders=6 if cells is None else cells, seed=seed, cell_shape=cell_shape,
                         doubling=doubling, motion=motion)
        name, channel = f"{cell_shape} colony", "cells"
    else:
        tl = make_timelapse(n_frames=30 if frames is None else frames, shape=(size, size), n_cells=cells or 12,
                            seed=seed)
        name, channel = "time-lapse", "nuclei"
    image = (tl.image * 60000).clip(0, 65535).astype("uint16")
    for stale in (truth / "TRA").glob("man_track*.tif"):   # an earlier, longer movie's frames would stay
        stale.unlink()
    truth.mkdir(parents=True, exist_ok=True)
    write_image(out, image, [channel], axes="TYX")
    write_ctc_ground_truth(tl, truth)
    n_div = int((tl.lineage.P > 0).sum() // 2)
    return f"{name} {image.shape}, {len(tl.lineage)} tracks, {n_div} divisions -> {out}; truth in {truth}"
