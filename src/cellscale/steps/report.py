"""Steps of the rules ``report_sample`` and ``summary``: QC overlay and summary of a sample, one row per sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from cellscale.io import atomic_path
from cellscale.steps import open_sample_image, read_sample_labels
from cellscale.report import overlay, save_png, summarize_sample

OVERLAY_PX = 1024  # longest edge of QC overlays


def report_sample(sample: str, image_path, label_paths: dict, table_path, out_dir, timelapse: bool = False,
                  tracks_path=None):
    """QC overlay and summary.json of one sample."""
    out_dir = Path(out_dir)
    labels = {c: read_sample_labels(sample, p) for c, p in label_paths.items()}
    with open_sample_image(sample, image_path, timelapse) as source:
        # the overlay is a preview: read every step-th pixel of the first frame, not the whole slide
        step = max(1, int(np.ceil(max(source.shape[2:]) / OVERLAY_PX)))
        preview = source.strided(0, step)
    first = {c: (l[0] if l.ndim == 3 else l)[::step, ::step] for c, l in labels.items()}
    save_png(out_dir / "overlay.png", overlay(preview, first, max_px=OVERLAY_PX))
    table = pd.read_parquet(table_path)
    summary = summarize_sample(sample, labels, table)
    if tracks_path:
        tracks = pd.read_parquet(tracks_path)
        summary["tracks"] = int(tracks.track_id.nunique())
        summary["divisions"] = int((tracks.groupby("track_id").parent_track_id.first() > 0).sum() // 2)
    with atomic_path(out_dir / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def run_summary(summary_paths: list, out_tsv) -> pd.DataFrame:
    """One row per sample from the per-sample summary.json files."""
    rows = [json.loads(Path(p).read_text()) for p in summary_paths]
    table = pd.DataFrame(rows)
    with atomic_path(out_tsv) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    return table
