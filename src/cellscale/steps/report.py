"""Steps of the rules ``report_sample``, ``report_fields`` and ``summary``: QC overlays and summaries of samples and
of batched images, the run's tables (one row per sample, where its results are, which images failed)."""

from __future__ import annotations

import json
import logging
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd

from cellscale.io import LabelSeries, atomic_path, frame_interval_from_metadata, pixel_size_from_metadata
from cellscale.measure import COMPARTMENTS
from cellscale.registry import model_provenance
from cellscale.steps import ERROR_COLUMNS, annotate, label_paths, open_sample_image, read_sample_labels, read_tsv
from cellscale.steps import sample_annotations
from cellscale.report import distributions_plot, html_tables, montage, overlay, overlay_grid, save_png
from cellscale.report import summarize_sample, tracks_overlay
from cellscale.track.export_ctc import relabel_frame
from cellscale.track.lineage import division_parents

log = logging.getLogger("cellscale")

OVERLAY_PX = 1024  # longest edge of QC overlays


def write_model_provenance(spec, out) -> dict:
    """What produced the results of one config model, once a run (rule model_provenance): ``model`` (NAME@VERSION:
    its folder's name and the hash of its weights) and ``dataset`` (the dataset version its metrics.json names) of
    the model folder that holds ``spec`` (its model.json; None: a declared model, neither known), as JSON in
    ``out`` (:func:`cellscale.steps.read_model` reads it; :func:`cellscale.registry.model_provenance`)."""
    made = model_provenance(str(Path(spec).parent) if spec else {})
    with atomic_path(out) as tmp:
        Path(tmp).write_text(json.dumps(made, indent=1, sort_keys=True) + "\n")
    log.info(f"{out}: {made['model'] or 'a declared model'} (dataset {made['dataset'] or 'not known'})")
    return made


def report_sample(sample: str, image_path, label_paths: dict, table_path, out_dir, timelapse: bool = False,
                  tracks_path=None, provenance: dict | None = None, size_path=None):
    """QC overlay and summary.json of one sample; ``provenance`` (``{"model": NAME@VERSION, "dataset": NAME@ID}``,
    :func:`cellscale.registry.model_provenance`) says which model and dataset version produced it; ``size_path``
    (``results/size/SAMPLE.json``, with scale auto) gives the scale chosen, ``auto_scale`` as a batch's fields
    record it."""
    from cellscale.measure import RegionArray

    out_dir = Path(out_dir)
    with ExitStack() as stack:
        # the overlay is a preview: read every step-th pixel of the first frame, of the image and of the labels
        # (opened lazily: chunk by chunk), never the whole slide
        source = stack.enter_context(open_sample_image(sample, image_path, timelapse))
        step = max(1, int(np.ceil(max(source.shape[2:]) / OVERLAY_PX)))
        preview = source.strided(0, step)
        opened = {c: stack.enter_context(open_sample_image(sample, p, timelapse)) for c, p in label_paths.items()}
        first = {c: lab.strided(0, step)[0] for c, lab in opened.items()}
        # the summary needs the labels' shapes only: (T, Y, X) views of a time-lapse, (Y, X) otherwise, unread
        labels = {c: RegionArray(lab, "TYX" if lab.shape[0] > 1 else "YX") for c, lab in opened.items()}
    save_png(out_dir / "overlay.png", overlay(preview, first, max_px=OVERLAY_PX))
    table = pd.read_parquet(table_path)
    summary = summarize_sample(sample, labels, table)
    # the pixel size the labels state: the sheet's, else the image's metadata's (none: NaN in summary.tsv)
    summary["pixel_size_um"] = pixel_size_from_metadata(next(iter(label_paths.values())), warn=False)
    if timelapse:  # the same for a movie's frame interval (seconds)
        summary["frame_interval_s"] = frame_interval_from_metadata(next(iter(label_paths.values())), warn=False)
    if tracks_path:
        tracks = pd.read_parquet(tracks_path)
        summary["tracks"] = int(tracks.track_id.nunique())
        summary["divisions"] = len(division_parents(tracks))  # not the gaps bridged: a parent with one child
    if size_path:
        summary["auto_scale"] = float(json.loads(Path(size_path).read_text())["scale"])
    if provenance is not None:
        summary["model"], summary["model_dataset"] = provenance.get("model"), provenance.get("dataset")
    with atomic_path(out_dir / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


TRACKING_PANELS = 6  # frames the tracking QC picture shows, spread over the movie
TRACKING_PANEL_PX = 320  # longest edge of one of them (6 of them: about 0.6 Mpx)
NAMED_TRACKS = 8  # tracks whose id it writes (those seen in most of its frames)


def tracking_qc(sample: str, image_path, labels_path, tracks: pd.DataFrame, out_png) -> dict[int, tuple]:
    """The tracking QC picture of a time-lapse: up to :data:`TRACKING_PANELS` frames spread over the movie (the
    first, the last, evenly between), each nucleus filled and outlined in its track's colour (the same in every
    frame; :func:`cellscale.report.track_colours` of the tables' ``track_id``), the ids of the :data:`NAMED_TRACKS`
    tracks seen in most of those frames written beside them, and a white ring round each daughter of a division
    whose track began since the frame before (at its place in this frame; at its first frame's, where its track
    ended before). Only those frames are read, every step-th pixel (``labels_path``: the nuclear labels, the
    tracks table's ``label``). Returns, per frame shown, its panel's top left pixel in the PNG and the step."""
    with ExitStack() as stack:
        source = stack.enter_context(open_sample_image(sample, image_path, True))
        labels = stack.enter_context(open_sample_image(sample, labels_path, True))
        n = labels.shape[0]
        frames = sorted({int(t) for t in np.linspace(0, n - 1, min(n, TRACKING_PANELS)).round()})
        step = max(1, int(np.ceil(max(labels.shape[2:]) / TRACKING_PANEL_PX)))
        views = [(source.strided(t, step), labels.strided(t, step)[0]) for t in frames]
    tracks = tracks.assign(radius=np.sqrt(tracks["area"] / np.pi) / step)
    shown = tracks[tracks["frame"].isin(frames)]
    seen = shown.groupby("track_id").size().sort_index().sort_values(ascending=False, kind="stable")
    named = set(seen.index[:NAMED_TRACKS])
    dividing = division_parents(tracks)
    firsts = tracks.sort_values("frame", kind="stable").groupby("track_id").head(1)
    daughters = firsts[firsts["parent_track_id"].isin(dividing)]
    panels, notes, rings = [], [], []
    for k, ((channels, lab), t) in enumerate(zip(views, frames)):
        here = shown[shown["frame"] == t].sort_values("label")
        tracked = relabel_frame(lab, here["label"].to_numpy(np.int64), here["track_id"].to_numpy(np.int64), np.int64)
        panels.append((f"frame {t}", tracks_overlay(channels, tracked)))
        born = daughters[(daughters["frame"] > (frames[k - 1] if k else -1)) & (daughters["frame"] <= t)]
        at = pd.concat([here[here["track_id"].isin(born["track_id"])],
                        born[~born["track_id"].isin(here["track_id"])]])   # where each is in this frame, else born
        rings.append([(r.y / step, r.x / step, r.radius + 2) for r in at.itertuples()])
        written = here[here["track_id"].isin(named | set(at["track_id"]))]
        notes.append([(r.y / step - r.radius, r.x / step + r.radius + 1, str(r.track_id))
                      for r in written.itertuples()])
    title = (f"{sample}: tracks in {len(frames)} of {n} frames",
             "a colour per track, the same in every frame; white ring: a daughter whose track began since the frame "
             "before")
    corners = montage(out_png, panels, title, notes, rings)
    return {t: (top, left, step) for t, (top, left) in zip(frames, corners)}


def run_summary(summary_paths: list, out_tsv, batch_dirs=(), order: list[str] | None = None,
                out_index=None, out_errors=None, images: dict | None = None,
                compartments: dict | None = None, provenance: dict | None = None,
                formats: tuple = (), out_html=None, annotations=None, warnings: dict | None = None) -> pd.DataFrame:
    """Run-level tables: ``summary.tsv`` (one row per sample, ``status`` ok or failed), ``index.tsv`` (where each
    sample's labels and cells are) and ``errors.tsv`` (the images that failed in batches, with the reason).

    ``summary_paths``: the summary.json of samples with their own jobs; ``batch_dirs``: batch folders
    (:mod:`cellscale.steps.batch`); ``order``: samples in sheet order; ``images`` and ``compartments``: per sample,
    its image and its compartments (for the index); ``provenance``: per model key (``nuclear``, ``tissue``), the
    model and dataset version that produced the results (``model`` and ``model_dataset`` columns; a sample with
    whole-cell labels used the tissue model); ``formats``: config ``output.formats`` (the index's ``ngff`` and
    ``spatialdata`` columns); ``out_html``: the summary and the errors as one HTML page (the report shows it);
    ``annotations``: the sheet's own columns per sample (``well``, ``site``; see
    :func:`cellscale.steps.sample_annotations`), after ``sample`` in ``summary.tsv``, ``index.tsv`` and ``errors.tsv``
    (one named like a column of theirs is left out); ``warnings``: per sample with its own jobs, the warnings its
    tiling logged (its plan's ``warnings``; a batch's fields.tsv has its images'), the ``warnings`` column, blank where
    there were none.
    """
    annotations = sample_annotations(annotations)
    rows = [{**json.loads(Path(p).read_text()), "status": "ok"} for p in summary_paths]
    for row in rows:
        row["warnings"] = "; ".join((warnings or {}).get(row["sample"], []))
    index = [{"sample": r["sample"], "batch": "", "status": "ok"} for r in rows]
    errors = []
    for folder in map(Path, batch_dirs):
        fields = read_tsv(folder / "fields.tsv")
        rows += fields.to_dict("records")
        index += [{"sample": r["sample"], "batch": folder.name, "status": r["status"]} for r in rows[-len(fields):]]
        errors.append(read_tsv(folder / "errors.tsv"))
    if provenance:
        for row in (r for r in rows if r["status"] == "ok"):  # a failed image was produced by nothing
            comps = (compartments or {}).get(row["sample"]) or []
            used = provenance.get("tissue" if "whole_cell" in comps else "nuclear") or {}
            row.setdefault("model", used.get("model"))
            row.setdefault("model_dataset", used.get("dataset"))
    table = _in_order(pd.DataFrame(rows), order)
    # the same column order whichever sample comes first (a nuclear-only one put the whole-cell counts at the end)
    known = ["sample", "status", "batch", *(f"{c}_{s}" for c in COMPARTMENTS for s in ("cells", "median_area")),
             "frames", "tracks", "divisions", "pixel_size_um", "frame_interval_s", "auto_scale"]
    last = ["warnings", "model", "model_dataset"]
    # what planning warned (a blank channel...), blank where nothing: a column in every run (a failed image's
    # reason is in errors.tsv)
    table["warnings"] = table["warnings"].fillna("") if "warnings" in table else ""
    table = table[[c for c in known if c in table] + [c for c in table.columns if c not in known + last] +
                  [c for c in last if c in table]]
    for column in table.columns:  # counts stay integers where some samples have none (NA)
        if column.endswith("_cells") or column in ("frames", "tracks", "divisions"):
            table[column] = table[column].astype("Int64")
    table = annotate(table, annotations, taken=known + last)
    with atomic_path(out_tsv) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    if out_index is not None:
        _write_index(_in_order(pd.DataFrame(index), order), out_index, images or {}, compartments or {}, formats,
                     annotations)
    err = _in_order(pd.concat(errors, ignore_index=True) if errors else pd.DataFrame(columns=ERROR_COLUMNS), order)
    err = annotate(err, annotations)
    if out_errors is not None:
        with atomic_path(out_errors) as tmp:
            err.to_csv(tmp, sep="\t", index=False)
    if out_html is not None:
        html_tables(out_html, [("summary.tsv: one row per sample", table),
                               ("errors.tsv: images that failed in batches", err)], "cellscale: the run's samples")
    return table


def _in_order(table: pd.DataFrame, order: list[str] | None) -> pd.DataFrame:
    if order is None or table.empty:
        return table.reset_index(drop=True)
    rank = {s: i for i, s in enumerate(order)}
    return table.sort_values("sample", key=lambda c: c.map(rank), kind="stable").reset_index(drop=True)


def _write_index(index: pd.DataFrame, path, images: dict, compartments: dict, formats: tuple = (),
                 annotations: pd.DataFrame | None = None) -> None:
    """``index.tsv``: per sample its image, batch (empty: own jobs), status, label files (and ``labels_series``, its
    image's place in its batch's multi-series label files, where the batch has them), per-cell table, and its
    OME-Zarr (``ngff``) and SpatialData stores where ``formats`` has them (``spatialdata_coordinate_system``: the
    sample's in its store, ``global`` or, in a batch's store, the sample's name)."""
    rows = []
    for r in index.itertuples():
        ok = r.status == "ok"
        comps = compartments.get(r.sample, []) if ok else []
        tiff = not formats or "ome-tiff" in formats  # without it, a sample's own OME-TIFF labels are temporary
        where = (label_paths(f"results/batches/{r.batch}", r.sample, comps) if r.batch
                 else {c: f"results/segmentation/{r.sample}/{c}.ome.tif" for c in comps} if tiff else {})
        row = {"sample": r.sample, "image": images.get(r.sample, ""), "batch": r.batch, "status": r.status}
        for comp in ("nuclear", "whole_cell"):
            ref = where.get(comp, "")
            row[f"{comp}_labels"] = str(ref.path if isinstance(ref, LabelSeries) else ref)
        # batches.label_files per_batch: the sample's image in those multi-series files (tifffile's series[k])
        refs = [ref for ref in where.values() if isinstance(ref, LabelSeries)]
        row["labels_series"] = refs[0].index if refs else ""
        row["cells"] = ("" if not ok else f"results/cells/batch_{r.batch}.parquet" if r.batch
                        else f"results/measurements/{r.sample}.parquet")
        if "ome-zarr" in formats:
            folder = f"results/ngff/batch_{r.batch}" if r.batch else "results/ngff"
            row["ngff"] = f"{folder}/{r.sample}.ome.zarr" if ok else ""
        if "spatialdata" in formats:  # a batch's store holds its fields, each in a coordinate system of its name
            row["spatialdata"] = ("" if not ok else f"results/spatialdata/batches/{r.batch}.zarr" if r.batch
                                  else f"results/spatialdata/{r.sample}.zarr")
            row["spatialdata_coordinate_system"] = (r.sample if r.batch else "global") if ok else ""
        rows.append(row)
    table = pd.DataFrame(rows)
    if annotations is not None and "sample" in table:
        table = annotate(table, annotations, taken=("ngff", "spatialdata", "spatialdata_coordinate_system"))
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False)


def report_fields(batch_dirs: list, candidates: dict, out_overlays, out_distributions, n_overlays: int) -> list[str]:
    """The report's view of batched images: outlines on up to ``n_overlays`` of them, taken evenly from
    ``candidates`` (sample -> image, in sheet order) that succeeded, as one grid; and the distributions over all
    of them (cells per image, median cell area). Returns the samples drawn."""
    fields = pd.concat([read_tsv(Path(d) / "fields.tsv") for d in batch_dirs], ignore_index=True)
    ok = fields[fields["status"] == "ok"].set_index("sample")
    usable = [s for s in candidates if s in ok.index]
    step = max(1.0, len(usable) / max(n_overlays, 1))
    drawn = [usable[int(i * step)] for i in range(min(n_overlays, len(usable)))]
    tiles = []
    for sample in drawn:
        folder = Path(next(d for d in batch_dirs if Path(d).name == ok.loc[sample, "batch"]))
        labels = {c: read_sample_labels(sample, p)
                  for c, p in label_paths(folder, sample, ("nuclear", "whole_cell")).items() if p.exists()}
        with open_sample_image(sample, candidates[sample], False) as source:
            step_px = max(1, int(np.ceil(max(source.shape[2:]) / GRID_TILE_PX)))
            preview = source.strided(0, step_px)
        tiles.append((sample, overlay(preview, {c: l[::step_px, ::step_px] for c, l in labels.items()},
                                      max_px=GRID_TILE_PX)))
    overlay_grid(out_overlays, tiles, f"{len(drawn)} of {len(fields)} batched images")
    distributions_plot(out_distributions, fields)
    log.info("report: %d of %d batched images drawn: %s", len(drawn), len(fields), ", ".join(drawn))
    return drawn


GRID_TILE_PX = 256  # edge of one image in the report's grid of batched images
