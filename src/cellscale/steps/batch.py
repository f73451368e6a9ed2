"""Steps of the batch rules (``rules/batch.smk``): many fields of view in few jobs.

- :func:`plan_batches` (the ``plan_batches`` checkpoint) takes every image's size from the sample sheet or its
  header and packs the small still
  images into batches of about ``tiling.shard_mpx`` megapixels, cut by content: an inserted or removed row
  changes only its own batch (:func:`cellscale.samples.pack_batches`); larger
  images and time-lapse movies keep their own tile, segment and stitch jobs;
- :func:`segment_batch` (one ``segment_batch`` job) tiles, segments, stitches and measures every field of view
  of a batch in one process, filling the network's forward passes across images
  (:func:`cellscale.segment.image.segment_many`). A field of view that fails (unreadable, wrong channels, NaN
  pixels) is a row of the batch's ``errors.tsv``; every other one finishes.

A batch folder (``results/batches/<batch>/``, named after its first image: :func:`cellscale.samples.batch_name`)
holds:

- ``labels/<sample>/<compartment>.ome.tif``: 32-bit labels, as ``results/segmentation/<sample>/`` for a sample
  with its own jobs; or, with ``label_files="per_batch"`` (``batches.label_files``), one multi-series OME-TIFF per
  compartment, ``<compartment>.ome.tif``, one OME ``Image`` per field of view named after its sample, in the
  batch's order (:func:`cellscale.io.write_label_series`; :func:`cellscale.steps.label_paths` finds either);
- the per-cell table of all its fields of view, ``sample`` first, as Parquet: in the workflow
  ``results/cells/batch_<batch>.parquet``, so a run's batch tables read as one dataset
  (``pyarrow.dataset.dataset("results/cells")``);
- ``fields.tsv``: one row per field of view (``sample``, ``status`` ok/failed, the summary counts,
  ``auto_scale``, the scale chosen where the sheet says ``auto``, and ``warnings``, the warnings its planning logged);
- ``errors.tsv``: the failed ones, with the file and the reason.
"""

from __future__ import annotations

import logging
import shutil
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from cellscale.io import bucket
from cellscale.io import (
    ImageError,
    ImageSource,
    atomic_dir,
    atomic_path,
    image_files,
    image_size,
    read_labels,
    sample_pixel_size,
    scratch_dir,
    write_label_series,
    write_labels,
)
from cellscale.measure import RegionArray, concat_tables, measure_compartments
from cellscale.report import summarize_sample
from cellscale.samples import pack_batches
from cellscale.segment.image import FieldOfView, segment_many
from cellscale.segment.settings import PostprocessSettings, SegmentSettings, TilingSettings
from cellscale.settings import choices, planning_scale
from cellscale.steps import ERROR_COLUMNS, StepError, field_label_path, open_sample_image, read_tsv, staged_paths
from cellscale.steps.measure import MeasureSettings, sample_channel_names
from cellscale.steps.segment import job_predictor

log = logging.getLogger("cellscale")

def image_mpx(path, scale: float | None = 1.0, size: tuple | None = None) -> float | None:
    """Megapixels the model sees of a still image (Y * X * scale²): ``size`` (height, width) as the sample sheet
    gives it, else from the file's header (:func:`cellscale.io.image_size`); None when unreadable."""
    if size is None or any(pd.isna(v) for v in size):
        size = image_size(path)
    if size is None:
        return None
    h, w = size
    return float(h) * float(w) * (scale or 1.0) ** 2 / 1e6


def plan_batches(rows: pd.DataFrame, out_tsv, shard_mpx: float, enabled: bool = True, workers: int = 8) -> pd.DataFrame:
    """Which samples share jobs: ``out_tsv`` with ``sample``, ``batch`` (empty: own jobs) and ``mpx``.

    ``rows``: the sample sheet's ``sample``, ``image``, ``kind``, ``model`` (which model the sample needs) and
    ``scale`` (model pixels per image pixel, NA = 1), and optionally ``height`` and ``width``: an image whose row
    has both is not opened (``cellscale samples --sizes`` writes them; on a cluster without a shared disk this job
    then downloads no image), the others' headers are read by ``workers`` threads. Still images of at most
    ``shard_mpx`` megapixels go into batches of about ``shard_mpx`` (at most twice that), one model per batch,
    cut by their names' hashes so that an edit of the sheet changes only the batch it touches
    (:func:`cellscale.samples.pack_batches`); ``batch`` is the batch's name. An unreadable image goes into a batch
    too, whose job records why (the run's other images are not held up).
    """
    rows = rows.reset_index(drop=True)
    still = (rows["kind"] != "timelapse").to_numpy() if enabled else np.zeros(len(rows), bool)
    scales = [planning_scale(s) for s in rows["scale"]]  # auto: sized as 1, estimated by the batch job
    sizes = (list(zip(rows["height"], rows["width"])) if {"height", "width"} <= set(rows.columns)
             else [None] * len(rows))
    mpx: list[float | None] = [None] * len(rows)
    todo = np.flatnonzero(still)
    given = sum(size is not None and not any(pd.isna(v) for v in size) for size in (sizes[i] for i in todo))
    log.info("%d image sizes from the sample sheet, %d read from the images' headers", given, len(todo) - given)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for i, size in zip(todo, pool.map(lambda i: image_mpx(rows["image"][i], scales[i], sizes[i]), todo)):
            mpx[i] = size
    small = [bool(still[i]) and (mpx[i] is None or mpx[i] <= shard_mpx) for i in range(len(rows))]
    batch = pd.array([pd.NA] * len(rows), dtype="string")
    picked = np.flatnonzero(small)
    if len(picked):
        batch[picked] = pack_batches([mpx[i] for i in picked], list(rows["model"][picked]), shard_mpx,
                                     list(rows["sample"][picked]))
    plan = pd.DataFrame({"sample": rows["sample"], "batch": batch, "mpx": mpx})
    with atomic_path(out_tsv) as tmp:
        plan.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    log.info("%d samples: %d in %d batches, %d with their own jobs", len(plan), len(picked),
             plan["batch"].nunique(), len(plan) - len(picked))
    return plan


def read_plan(path) -> pd.DataFrame:
    """The plan :func:`plan_batches` wrote."""
    return read_tsv(path, {"batch": "string", "mpx": float})



@dataclass
class Field:
    """One field of view of a batch: its sample sheet row (see ``rules/batch.smk``)."""

    sample: str
    image: str
    roles: dict
    pixel_size_um: float | None = None
    gamma: float = 1.0
    scale: float | None = None
    channel_names: list[str] | None = None
    height: int | None = None     # the sheet's size of the image, when it gives one: checked against the file
    width: int | None = None


def fetch_fields(image_paths: list[str], prefix: str, dest) -> dict[str, str]:
    """batches.read_fields: direct: download the batch's image files (every file of an image of one file per
    channel) from the bucket under Snakemake's default storage prefix into ``dest``; the sheet's path -> the local
    file, for those that exist (a missing one is then recorded as a failed field, as a missing local file is)."""
    uris = {path: bucket.join(prefix, path) for path in image_paths}
    got = bucket.fetch(list(dict.fromkeys(uris.values())), Path(dest))
    log.info("read %d of %d images from %s", len(got), len(uris), prefix)
    return {path: str(got[uri]) for path, uri in uris.items() if uri in got}


@contextmanager
def job_images(image_paths: list[str], staged, storage_prefix: str | None = None, *, beside):
    """The sheet's image paths of a batch job -> where the job reads them: its staged inputs (``staged``, in the
    same order), or with ``storage_prefix`` (batches.read_fields: direct) downloads in a scratch folder beside the
    job's output ``beside`` (:func:`cellscale.io.scratch_dir`), removed when the block ends and, when a job was
    killed mid-read, by the next attempt at the same output."""
    if not storage_prefix:
        yield staged_paths(image_paths, staged)
        return
    with scratch_dir(beside) as tmp:
        yield fetch_fields(image_paths, storage_prefix, tmp)


def segment_batch(fields: list[Field], model_dir, out_dir, batch: str = "", *, cells_path=None, tiling: TilingSettings | None = None,
                  segment: SegmentSettings | None = None, postprocess: PostprocessSettings | None = None,
                  measure: MeasureSettings | None = None, threads: int | None = None,
                  label_files: str = "per_image") -> pd.DataFrame:
    """Segment and measure every field of view of a batch into ``out_dir`` (see the module's docstring).

    One model load, and forward passes filled across images; each image keeps its own normalisation, and its
    labels are those it would get alone. ``cells_path``: where the batch's per-cell table goes (default:
    ``cells.parquet`` in ``out_dir``). ``label_files``: ``per_image`` or ``per_batch`` (one file per compartment).
    Returns the batch's ``fields.tsv`` table.
    """
    if label_files not in choices("batches", "label_files"):
        raise ValueError(f"label_files must be one of {choices('batches', 'label_files')}, got {label_files!r}")
    tiling, segment = tiling or TilingSettings(), segment or SegmentSettings()
    postprocess, measure = postprocess or PostprocessSettings(), measure or MeasureSettings()
    predictor = job_predictor(model_dir, segment, threads)  # loads a network runtime
    fields = [replace(f, pixel_size_um=sample_pixel_size(f.pixel_size_um, f.image, f.sample)) for f in fields]
    rows, errors, tables = [], [], {}
    with atomic_dir(out_dir) as tmp:
        sources, opened = {}, []
        for field in fields:
            try:
                sources[field.sample] = _in_memory(field)  # a bad scale is segment_many's error, per image
                opened.append(field)
            except (StepError, ValueError) as err:  # ImageError is a ValueError
                errors.append(_error(field, batch, err))
        try:
            fovs = [FieldOfView(sources[f.sample], f.roles, f.pixel_size_um, f.gamma, f.scale) for f in opened]
            for i, result in segment_many(predictor, fovs, tile=tiling.tile, overlap=tiling.overlap,
                                          block=postprocess.block, margin=postprocess.margin,
                                          params=postprocess.overrides, shard_mpx=tiling.shard_mpx,
                                          workers=threads):
                field = opened[i]
                try:
                    if isinstance(result, Exception):
                        raise result
                    table, summary = _finish_field(field, sources[field.sample], result, Path(tmp), measure)
                except (StepError, ImageError, ValueError, OSError) as err:
                    errors.append(_error(field, batch, err))
                    continue
                tables[field.sample] = table
                chose = fovs[i].estimate  # scale auto: the scale it chose, a column of its own
                rows.append({**summary, "status": "ok", **({"auto_scale": chose.scale} if chose else {}),
                             "warnings": "; ".join(fovs[i].warnings)})
                log.info("batch %s: %s, %s", batch, field.sample,
                         ", ".join(f"{len(table[table.compartment == c])} {c}" for c in result))
        finally:
            for source in sources.values():
                source.close()
        failed = {e["sample"] for e in errors}
        rows += [{"sample": f.sample, "status": "failed"} for f in fields if f.sample in failed]
        order = {f.sample: k for k, f in enumerate(fields)}
        summary = pd.DataFrame(rows, columns=_summary_columns(rows)).sort_values("sample", key=lambda s: s.map(order))
        summary.insert(1, "batch", batch)
        summary.to_csv(tmp / "fields.tsv", sep="\t", index=False)
        errors.sort(key=lambda e: order[e["sample"]])
        pd.DataFrame(errors, columns=ERROR_COLUMNS).to_csv(tmp / "errors.tsv", sep="\t", index=False)
        if label_files == "per_batch":
            _pack_labels(Path(tmp), [f for f in fields if f.sample in tables])
        cells = concat_tables(tables) if tables else pd.DataFrame({"sample": pd.Series(dtype=str)})
        with atomic_path(cells_path or tmp / "cells.parquet") as table_tmp:
            cells.to_parquet(table_tmp, index=False)
    log.info("batch %s: %d fields of view, %d failed", batch, len(fields), len(errors))
    for e in errors:
        log.error("batch %s: %s", batch, e["error"])
    return summary


def _pack_labels(folder: Path, fields: list[Field]) -> None:
    """The fields' label files (``labels/<sample>/<c>.ome.tif``, as written) as one multi-series OME-TIFF per
    compartment, ``<c>.ome.tif``, in the batch's order; ``labels/`` is then removed. Read one field at a time."""
    compartments = sorted({p.name.split(".")[0] for p in (folder / "labels").glob("*/*.ome.tif")})
    for comp in compartments:
        images = []
        for f in fields:
            path = field_label_path(folder, f.sample, comp)
            if path.exists():
                images.append((f.sample, lambda path=path: read_labels(path), f.pixel_size_um))
        write_label_series(folder / f"{comp}.ome.tif", images)
    shutil.rmtree(folder / "labels", ignore_errors=True)


def _in_memory(field: Field) -> ImageSource:
    """A batched image read whole (it is at most a shard's megapixels): its many small reads (planning, windows,
    measurement) then cost nothing; errors name the sample and the file."""
    with open_sample_image(field.sample, field.image, False) as lazy:
        _, _, h, w = lazy.shape
        if field.height is not None and field.width is not None and (h, w) != (field.height, field.width):
            # the batch was planned with the sheet's size: a bigger image would break the job's memory bound
            raise ImageError(f"{field.image}: the image is {h} x {w} pixels, the sample sheet says "
                             f"{field.height} x {field.width} (its height and width columns): correct the sheet "
                             f"(cellscale samples --sizes writes them from the files)")
        pixels = lazy.region(0, 0, h, 0, w)
    return ImageSource.from_array(pixels[None], field.image)


def _summary_columns(rows: list[dict]) -> list[str]:
    cols = ["sample", "status"]
    for row in rows:
        cols += [c for c in row if c not in cols]
    return cols


def _error(field: Field, batch: str, err: Exception) -> dict:
    message = str(err)
    if not any(str(f) in message for f in image_files(field.image)):  # a channel index, a scale: say which file
        message = f"{field.image}: {message}"
    if not message.startswith(f"sample {field.sample!r}"):
        message = f"sample {field.sample!r}: {message}"
    return {"sample": field.sample, "image": field.image, "batch": batch, "error": message}


def _finish_field(field: Field, source: ImageSource, labels: dict, out_dir: Path,
                  settings: MeasureSettings) -> tuple[pd.DataFrame, dict]:
    """Write one field of view's labels, measure it: (per-cell table, summary row)."""
    names = sample_channel_names(field.image, source.shape[1], field.channel_names)
    planes = {comp: lab[0] for comp, lab in labels.items()}
    table = measure_compartments(planes, RegionArray(source, "CYX"), names, settings.extra_stats)
    for comp, plane in planes.items():
        write_labels(field_label_path(out_dir, field.sample, comp), plane, field.pixel_size_um, name=field.sample)
    return table, {**summarize_sample(field.sample, planes, table), "pixel_size_um": field.pixel_size_um}


__all__ = ["Field", "image_mpx", "plan_batches", "read_plan", "segment_batch"]
