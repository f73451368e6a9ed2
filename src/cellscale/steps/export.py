"""Steps of the export rules (``rules/export.smk``): a sample's image, labels and cells as an OME-Zarr image with
``labels/`` (``ngff``) and as a SpatialData store (``spatialdata``); for a batch of small images, an OME-Zarr store per
field of view and one SpatialData store for the batch (``export_batch``). See :mod:`cellscale.export`."""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from cellscale.export import (TRACKS, Field, lazy_image, lazy_labels, write_ngff, write_spatialdata,
                              write_spatialdata_fields)
from cellscale.io import atomic_dir, sample_frame_interval, sample_pixel_size
from cellscale.measure import table_anndata
from cellscale.settings import Settings, default
from cellscale.steps import StepError, label_paths, open_sample_image, read_tsv, staged_image
from cellscale.steps.measure import run_provenance, sample_channel_names
from cellscale.track.export_ctc import relabel_frame

log = logging.getLogger("cellscale")
NGFF, SPATIALDATA = "ome-zarr", "spatialdata"
LABEL_COLUMNS = ("CellID", "compartment", "Area")  # the table's columns the NGFF labels' metadata uses


@dataclass(frozen=True)
class OutputSettings(Settings):
    """``output``: which formats hold a sample's results (defaults: the config schema's)."""

    SECTION: ClassVar[str] = "output"
    formats: tuple = field(default_factory=lambda: tuple(default("output", "formats")))
    ngff_version: str = default("output", "ngff_version")
    label_metadata_max: int = default("output", "label_metadata_max")
    boundaries: bool = default("output", "boundaries")


def display_windows(image, low: float = 0.5, high: float = 99.5) -> list[tuple[float, float]]:
    """Per channel display range from a strided sample of the image (percentiles ``low`` .. ``high``)."""
    sample = image.subsample().astype(np.float64)
    out = []
    for c in range(sample.shape[1]):
        lo, hi = np.percentile(sample[:, c], [low, high])
        out.append((float(lo), float(hi if hi > lo else lo + 1)))
    return out


def read_label_columns(path) -> pd.DataFrame:
    """Of a per-cell Parquet table, only what the NGFF labels' metadata uses (:data:`LABEL_COLUMNS`, those it has),
    ``compartment`` as a categorical: a few bytes per cell instead of the whole table (2.2 million rows at 1 Gpx)."""
    import pyarrow.parquet as pq

    names = pq.read_schema(path).names
    columns = [c for c in LABEL_COLUMNS if c in names]
    return pd.read_parquet(path, columns=columns, read_dictionary=[c for c in columns if c == "compartment"])


def export_one(sample: str, image_path, label_files: dict, table, out: dict, *, timelapse: bool = False,
               channel_names: list[str] | None = None, pixel_size_um: float | None = None,
               settings: OutputSettings | None = None, tracks=None, frame_interval_s: float | None = None) -> None:
    """Write one sample's outputs: ``out`` maps a format (``ome-zarr``, ``spatialdata``) to its path.

    ``table``: the sample's per-cell table (a DataFrame, or the path of its Parquet or .h5ad file). ``tracks``: a
    time-lapse's tracks table (a DataFrame or its Parquet file): the OME-Zarr store then has ``labels/tracks``, the
    nuclei with their track ids (:func:`tracked_labels`). ``pixel_size_um`` and a time-lapse's ``frame_interval_s``
    (the sheet's; else the image's metadata's) scale the OME-Zarr axes.
    """
    import anndata

    settings = settings or OutputSettings()
    pixel_size_um = sample_pixel_size(pixel_size_um, image_path, sample)
    frame_interval_s = sample_frame_interval(frame_interval_s, image_path, sample) if timelapse else None
    if isinstance(table, (str, Path)) and str(table).endswith(".h5ad"):
        adata = anndata.read_h5ad(table)
        frame = adata.obs
    elif isinstance(table, (str, Path)) and SPATIALDATA not in out:
        frame = read_label_columns(table)
        adata = None
    else:
        frame = pd.read_parquet(table) if isinstance(table, (str, Path)) else table
        adata = table_anndata(frame) if SPATIALDATA in out else None
    with ExitStack() as stack:
        image, labels = _open_sample(stack, sample, image_path, label_files, timelapse)
        lazy = {c: lazy_labels(lab, timelapse) for c, lab in labels.items()}
        names = sample_channel_names(image_path, image.shape[1], channel_names)
        if NGFF in out:
            if tracks is not None and timelapse:
                tracks = pd.read_parquet(tracks) if isinstance(tracks, (str, Path)) else tracks
                lazy_ngff = {**lazy, TRACKS: tracked_labels(lazy["nuclear"], tracks)}
            else:
                lazy_ngff, tracks = lazy, None
            log.info(f"{sample}: writing {out[NGFF]} (NGFF {settings.ngff_version}; image {image.shape}, "
                     f"labels {', '.join(lazy_ngff)})")
            write_ngff(out[NGFF], lazy_image(image, timelapse), lazy_ngff, timelapse=timelapse,
                       pixel_size_um=pixel_size_um, frame_interval_s=frame_interval_s, channel_names=names,
                       windows=display_windows(image),
                       table=frame, tracks=tracks, ngff=settings.ngff_version,
                       max_label_metadata=settings.label_metadata_max)
        if SPATIALDATA in out:
            log.info(f"{sample}: writing {out[SPATIALDATA]} (SpatialData; {adata.n_obs} cells)")
            write_spatialdata(out[SPATIALDATA], lazy_image(image, timelapse), lazy, adata, timelapse=timelapse,
                              pixel_size_um=pixel_size_um, channel_names=names, boundaries=settings.boundaries)


def tracked_labels(labels, tracks: pd.DataFrame):
    """A time-lapse's (T, Y, X) per-frame nuclear labels (a dask array) as track ids, frame by frame and chunk by
    chunk: the tracks table's ``track_id`` of each (``frame``, ``label``); 0 where a nucleus is in no track. The ids
    are the tables' ``track_id`` (a track with a gap keeps its id; the CTC masks split it, as that format asks)."""
    import dask.array as da

    lookup = {}
    for t, g in tracks.groupby("frame"):
        g = g.sort_values("label")
        lookup[int(t)] = (g["label"].to_numpy(np.int64), g["track_id"].to_numpy(np.int64))
    empty = (np.zeros(0, np.int64),) * 2

    def relabel(block, block_info=None):
        t0 = block_info[0]["array-location"][0][0]
        return np.stack([relabel_frame(frame, *lookup.get(t0 + i, empty), np.uint32) for i, frame in enumerate(block)])

    return da.asarray(labels).map_blocks(relabel, dtype=np.uint32)


def _open_sample(stack: ExitStack, sample: str, image_path, label_files: dict, timelapse: bool):
    """A sample's image and its labels (compartment -> file) as sources opened on ``stack``; labels of another
    shape than the image are a StepError naming the file."""
    image = stack.enter_context(open_sample_image(sample, image_path, timelapse))
    labels = {c: stack.enter_context(open_sample_image(sample, p, timelapse)) for c, p in label_files.items()}
    for comp, lab in labels.items():
        if lab.shape[2:] != image.shape[2:] or lab.shape[1] != 1 or lab.shape[0] != image.shape[0]:
            raise StepError(f"sample {sample!r}: {label_files[comp]}: labels (T, C, Y, X) {lab.shape} do not "
                            f"match the image {image.shape}")
    return image, labels


def export_batch(batch_dir, table_path, fields: list[dict], images: dict, out: dict,
                 settings: OutputSettings | None = None, provenance: dict | None = None) -> None:
    """A batch's images that succeeded: one OME-Zarr store per field of view (``out["ome-zarr"]/<sample>.ome.zarr``)
    and one SpatialData store for the batch (``out["spatialdata"]``: each field in a coordinate system named after
    its sample, :func:`cellscale.export.write_spatialdata_fields`). ``fields``: the sheet's rows of the batch
    (``sample``, ``image``, ``pixel_size_um``, ``channel_names``), ``images``: the sheet's image files -> where this
    job reads them (:func:`cellscale.steps.staged_paths`; an image that is missing, and so failed, may be absent).
    ``provenance``: per sample, what produced its cells (as :func:`cellscale.steps.measure.aggregate_measurements`
    takes it): the SpatialData table's ``uns["cellscale"]``, ``cellscale_version`` and ``samples``, a row per
    exported field (:func:`cellscale.steps.measure.run_provenance`), as ``results/cells.h5ad``'s (None: no
    ``uns``)."""
    batch_dir = Path(batch_dir)
    status = read_tsv(batch_dir / "fields.tsv").set_index("sample")["status"]
    cells = pd.read_parquet(table_path)
    done, label_files = [], {}
    for f in fields:
        sample = f["sample"]
        if status.get(sample) != "ok":
            log.info(f"{sample}: not segmented ({status.get(sample, 'absent')}), nothing to export")
            continue
        done.append(f)
        label_files[sample] = {c: p for c, p in label_paths(batch_dir, sample, ("nuclear", "whole_cell")).items()
                               if p.exists()}
    if NGFF in out:
        empty = cells.iloc[:0].drop(columns="sample")
        tables = {s: t.drop(columns="sample").reset_index(drop=True) for s, t in cells.groupby("sample", sort=False)}
        with atomic_dir(out[NGFF]) as folder:
            for f in done:
                sample = f["sample"]
                export_one(sample, staged_image(f["image"], images), label_files[sample], tables.get(sample, empty),
                           {NGFF: folder / f"{sample}.ome.zarr"}, channel_names=f.get("channel_names"),
                           pixel_size_um=f.get("pixel_size_um"), settings=settings)
    if SPATIALDATA in out:
        settings = settings or OutputSettings()
        fields_out = [_batch_field(f, staged_image(f["image"], images), label_files[f["sample"]]) for f in done]
        # rows of an image that failed have no labels element: the writer leaves them; every image failed: no table
        uns = None if provenance is None else {"cellscale": run_provenance(provenance, [f["sample"] for f in done])}
        table = table_anndata(cells, uns) if done and len(cells) else None
        log.info(f"writing {out[SPATIALDATA]} (SpatialData; {len(done)} fields of view, "
                 f"{0 if table is None else table.n_obs} cells)")
        write_spatialdata_fields(out[SPATIALDATA], fields_out, table, boundaries=settings.boundaries)


def _batch_field(f: dict, image_path, label_files: dict) -> Field:
    """A batched image as a SpatialData field: its labels read now (the outlines need them), its pixels read when
    the store is written (each image opened only then)."""
    import dask
    import dask.array as da

    sample = f["sample"]
    with ExitStack() as stack:
        source, sources = _open_sample(stack, sample, image_path, label_files, False)
        shape, dtype = source.shape, source.dtype
        labels = {c: lab.region(0, 0, shape[2], 0, shape[3])[0].astype(np.uint32, copy=False)
                  for c, lab in sources.items()}
    names = sample_channel_names(image_path, shape[1], f.get("channel_names"))
    image = da.from_delayed(dask.delayed(_read_still)(sample, image_path), shape[1:], dtype)
    return Field(sample, image, labels, pixel_size_um=sample_pixel_size(f.get("pixel_size_um"), image_path, sample),
                 channel_names=names)


def _read_still(sample: str, path) -> np.ndarray:
    with open_sample_image(sample, path, False) as source:
        return source.region(0, 0, source.shape[2], 0, source.shape[3])
