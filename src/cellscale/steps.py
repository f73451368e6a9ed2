"""File-in, file-out steps after segmentation: measure, track, report, summary."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .io import atomic_path, channel_names_from_ome
from .pipeline import StepError, open_sample_image, read_sample_labels

log = logging.getLogger("cellscale")
OVERLAY_PX = 1024  # longest edge of QC overlays


def sample_channel_names(image_path, n_channels: int, names: list[str] | None) -> list[str]:
    """Names from the sample sheet, else the OME metadata, else ch0, ch1, ..."""
    names = names or channel_names_from_ome(image_path)
    if names and len(names) != n_channels:
        raise StepError(f"{image_path}: {len(names)} channel names given for {n_channels} channels")
    return names or [f"ch{i}" for i in range(n_channels)]


def measure_sample(sample: str, image_path, label_paths: dict, out_csv, out_parquet, timelapse: bool = False,
                   channel_names: list[str] | None = None, tracks_path=None, extra_stats: bool = False,
                   out_h5ad=None):
    """Per-cell table of one sample, every compartment, MCMICRO columns first.

    Labels and image are read block by block (TIFF tiles or strips), so a
    slide of any size is measured in bounded memory. Writes CSV and Parquet,
    and AnnData .h5ad when ``out_h5ad`` is given.
    """
    from contextlib import ExitStack

    from .measure import RegionArray, measure_compartments, write_table

    with ExitStack() as stack:
        image = stack.enter_context(open_sample_image(sample, image_path, timelapse))
        names = sample_channel_names(image_path, image.shape[1], channel_names)
        labels = {c: stack.enter_context(open_sample_image(sample, p, timelapse)) for c, p in label_paths.items()}
        for comp, lab in labels.items():
            if lab.shape[2:] != image.shape[2:] or lab.shape[1] != 1 or (timelapse and lab.shape[0] != image.shape[0]):
                raise StepError(f"sample {sample!r}: {label_paths[comp]}: labels (T, C, Y, X) {lab.shape} do not "
                                f"match the image {image.shape}")
        try:
            views = {c: RegionArray(lab, "TYX" if timelapse else "YX") for c, lab in labels.items()}
            pixels = RegionArray(image, "TCYX" if timelapse else "CYX")
        except ValueError as err:
            raise StepError(f"sample {sample!r}: {err} (a time-lapse needs kind 'timelapse')") from None
        table = measure_compartments(views, pixels, names, extra_stats)
    if tracks_path:
        tracks = pd.read_parquet(tracks_path)[["frame", "label", "track_id"]]
        table = table.merge(tracks.rename(columns={"label": "CellID"}), on=["frame", "CellID"], how="left")
        table.loc[table.compartment != "nuclear", "track_id"] = pd.NA
        table["track_id"] = table["track_id"].astype("Int64")
    write_table(table, out_csv, out_parquet, out_h5ad)
    log.info("measured %d rows for %s", len(table), sample)
    return table


def aggregate_measurements(table_paths: dict, out_csv, out_parquet, out_h5ad=None) -> pd.DataFrame:
    """Run-level table: every sample's measurements stacked with a ``sample`` column."""
    from .measure import concat_tables, write_table

    table = concat_tables({s: pd.read_parquet(p) for s, p in table_paths.items()})
    write_table(table, out_csv, out_parquet, out_h5ad)
    log.info("aggregated %d rows of %d samples", len(table), len(table_paths))
    return table


def track_sample(sample: str, labels_path, image_path, out_dir, out_parquet, nuclear_channel: int | None = None,
                 max_distance=None, max_gap: int = 2, divisions: bool = True, solver: str = "lap"):
    """Link a time-lapse's nuclei; write a CTC result folder and a tracks table.

    ``solver``: "lap" (frame-to-frame linear assignment) or "ilp" (integer program over windows of frames).
    """
    from .track.detections import detections_from_labels
    from .track.export_ctc import write_ctc, write_tracks_table
    from .track.linking import link

    labels = read_sample_labels(sample, labels_path)
    if labels.ndim != 3:
        raise StepError(f"sample {sample!r}: {labels_path}: time-lapse labels must be (T, Y, X), got {labels.shape}")
    channel = nuclear_channel or 0
    with open_sample_image(sample, image_path, timelapse=True) as source:
        _, _, h, w = source.shape
        nuclei = np.stack([source.region(t, 0, h, 0, w)[channel] for t in range(source.shape[0])])
    detections = detections_from_labels(labels, nuclei)
    tracks = link(detections, labels=labels, max_distance=max_distance, max_gap=max_gap, divisions=divisions,
                  solver=solver)
    write_ctc(labels, tracks, out_dir)
    write_tracks_table(tracks, out_parquet)
    log.info("%s: %d detections, %d tracks", sample, len(tracks), tracks.track_id.nunique())
    return tracks


def report_sample(sample: str, image_path, label_paths: dict, table_path, out_dir, timelapse: bool = False,
                  tracks_path=None):
    """QC overlay and summary.json of one sample."""
    from .report import overlay, save_png, summarize_sample

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
