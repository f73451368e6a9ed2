"""``cellscale synth``: write generated images and their ground truth to disk."""

from __future__ import annotations

from pathlib import Path

from cellscale.io import write_image, write_labels


def truth_dir_for(image_path: Path, truth_dir: str | None) -> Path:
    if truth_dir:
        return Path(truth_dir)
    stem = image_path.name.split(".")[0]
    return image_path.parent / f"{stem}_truth"


def run_synth(args) -> int:
    out = Path(args.output)
    truth = truth_dir_for(out, args.truth_dir)
    truth.mkdir(parents=True, exist_ok=True)
    if args.kind == "tissue":
        from cellscale.synth.tissue import make_tissue

        n_cells = args.cells or int(150 * (args.size / 512) ** 2)
        t = make_tissue((args.size, args.size), n_cells=n_cells, seed=args.seed)
        write_image(out, t.image, t.channel_names, axes="CYX")
        write_labels(truth / "nuclear.tif", t.nuclear)
        write_labels(truth / "whole_cell.tif", t.whole_cell)
        t.truth.to_csv(truth / "cells.csv", index=False)
        print(f"tissue {t.image.shape} with {len(t.truth)} cells -> {out}; truth in {truth}")
    else:
        from cellscale.synth.timelapse import make_timelapse, write_ctc_ground_truth

        tl = make_timelapse(n_frames=args.frames, shape=(args.size, args.size), n_cells=args.cells or 12,
                            seed=args.seed)
        image = (tl.image * 60000).clip(0, 65535).astype("uint16")
        write_image(out, image, ["nuclei"], axes="TYX")
        write_ctc_ground_truth(tl, truth)
        n_div = int((tl.lineage.P > 0).sum() // 2)
        print(f"time-lapse {image.shape}, {len(tl.lineage)} tracks, {n_div} divisions -> {out}; truth in {truth}")
    return 0
