"""Steps of the rules ``measure`` and ``aggregate_measurements``: per-cell tables of a sample and of a run.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from cellscale import __version__
from cellscale.io import atomic_dir, channel_names_from_ome, colour_channel_names, frame_interval_from_metadata
from cellscale.io import ImageError, pixel_size_from_metadata
from cellscale.samples import unique_names
from cellscale.settings import Settings, default
from cellscale.steps import StepError, _image_failed, annotate, open_sample_image, sample_annotations, with_time
from cellscale.measure import RegionArray, measure_compartments, write_table
from cellscale.measure import TableWriter, categories_of, mcquant_tables, run_parts, run_template, string_columns

log = logging.getLogger("cellscale")


@dataclass(frozen=True)
class MeasureSettings(Settings):
    """``measure``: what the per-cell tables hold (defaults: the config schema's)."""

    SECTION: ClassVar[str] = "measure"
    extra_stats: bool = default("measure", "extra_stats")


def sample_channel_names(image_path, n_channels: int, names: list[str] | None) -> list[str]:
    """Names from the sample sheet, else the OME metadata, else R, G, B (A) of a colour picture, else ch0, ch1, ...

    Names given (the sheet's ``channel_names``) must fit the image. The metadata's are the instrument's: a name it
    repeats (CODEX's ``Blank`` cycles) is told apart by a suffix (``Blank``, ``Blank_2``), and names of another
    count than the image's channels are not used; either with a warning.
    """
    if names:
        if len(names) != n_channels:
            raise StepError(f"{image_path}: {len(names)} channel names given for {n_channels} channels")
        return names
    names = channel_names_from_ome(image_path)
    if names and len(names) != n_channels:
        log.warning("%s: its metadata names %d channels, the image has %d: they are named ch0, ch1, ... (give "
                    "the sample sheet's channel_names)", image_path, len(names), n_channels)
        names = None
    if names and len(set(names)) < len(names):
        unique = unique_names(names)  # as sample names are told apart
        log.warning("%s: channel names its metadata repeats are told apart as %s (give the sample sheet's "
                    "channel_names to name them)", image_path, ", ".join(u for u, n in zip(unique, names) if u != n))
        names = unique
    return names or colour_channel_names(image_path, n_channels) or [f"ch{i}" for i in range(n_channels)]


def _plain(values: dict) -> dict:
    """``values`` without its None values (at any depth), as an .h5ad file's ``uns`` can hold them."""
    return {k: _plain(v) if isinstance(v, dict) else v for k, v in values.items() if v is not None}


def sample_provenance(sample: str, image, label_path, provenance: dict | None = None,
                      timelapse: bool = False, labels_interval: float | None = None) -> dict:
    """What produced a sample's cells, as its .h5ad file's ``uns["cellscale"]`` holds it: ``cellscale_version``,
    ``sample``, ``image`` (the sheet's path), ``pixel_size_um`` (the labels' OME-TIFF's: the sheet's, else the
    image's metadata's; NaN where neither says), a time-lapse's ``frame_interval_s`` (likewise), and
    ``provenance``'s entries (the workflow's: ``model``, NAME@VERSION per compartment, ``model_dataset``,
    ``scale``, ``augment``, ``precision``). Entries that are None are left out. ``labels_interval``: the labels'
    frame interval where the caller has read it (None: read here)."""
    pixel_size = pixel_size_from_metadata(label_path, warn=False)
    out = {"cellscale_version": __version__, "sample": sample, "image": str(image),
           "pixel_size_um": math.nan if pixel_size is None else float(pixel_size)}
    if timelapse:
        interval = labels_interval if labels_interval is not None else \
            frame_interval_from_metadata(label_path, warn=False)
        out["frame_interval_s"] = math.nan if interval is None else float(interval)
    return _plain({**out, **(provenance or {})})


def measure_sample(sample: str, image_path, label_paths: dict, out_csv, out_parquet, timelapse: bool = False,
                   channel_names: list[str] | None = None, tracks_path=None,
                   settings: MeasureSettings | None = None, out_h5ad=None, frame_interval_s: float | None = None,
                   provenance: dict | None = None, image_name: str | None = None):
    """Per-cell table of one sample, every compartment, MCMICRO columns first.

    Labels and image are read block by block (TIFF tiles or strips), so a
    slide of any size is measured in bounded memory. Writes CSV and Parquet,
    and AnnData .h5ad when ``out_h5ad`` is given. ``settings``: config
    ``measure`` (None: the schema's defaults). A time-lapse's table has a
    ``time`` column (seconds since frame 0, from ``frame_interval_s``, else
    from the labels' OME-TIFF ``TimeIncrement``; NaN where neither is known).
    The .h5ad file's ``uns["cellscale"]`` says what produced the cells (:func:`sample_provenance` of
    ``provenance``; ``image_name``: the image as the sheet names it, default ``image_path``).
    """
    settings = settings or MeasureSettings()
    from contextlib import ExitStack

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
        try:
            table = measure_compartments(views, pixels, names, settings.extra_stats)
        except ImageError as err:   # NaN or infinite pixels, an unreadable block: the message names the file
            _image_failed(sample, err)
    if tracks_path:  # a nucleus's track and the track's parent (0: none), as the tracks table has them
        tracks = pd.read_parquet(tracks_path)[["frame", "label", "track_id", "parent_track_id"]]
        table = table.merge(tracks.rename(columns={"label": "CellID"}), on=["frame", "CellID"], how="left")
        for column in ("track_id", "parent_track_id"):
            table.loc[table.compartment != "nuclear", column] = pd.NA
            table[column] = table[column].astype("Int64")
    label_path = next(iter(label_paths.values()))
    # the interval the labels state (the sheet's, else the image's metadata's: rule tile), read once for both uses
    stated = frame_interval_from_metadata(label_path, warn=False) if timelapse else None
    if timelapse:
        table = with_time(table, frame_interval_s or stated)
    made = sample_provenance(sample, image_name or image_path, label_path, provenance, timelapse, stated)
    write_table(table, out_csv, out_parquet, out_h5ad, uns={"cellscale": made})
    log.info("measured %d rows for %s", len(table), sample)
    return table


def aggregate_measurements(table_paths: dict, out_csv, out_parquet, out_h5ad=None, batch_tables=(),
                           order: list[str] | None = None, annotations=None,
                           provenance: dict | None = None) -> dict[str, int]:
    """Run-level table: every sample's measurements stacked with a ``sample`` column; returns the rows a sample.

    ``table_paths``: sample -> its own Parquet table; ``batch_tables``: Parquet tables of batches, which have a
    ``sample`` column already (a sample in several batches: the last one's rows). ``order``: the samples in sheet
    order (default: as given). The files are those of :func:`cellscale.measure.write_table` on
    :func:`cellscale.measure.concat_tables` of every table, written in bounded memory: a first pass reads the
    tables' schemas and their string columns only, the second one table at a time (a batch's or a sample's).
    ``annotations``: the sheet's own columns per sample (``well``, ``site``; see
    :func:`cellscale.steps.sample_annotations`), written after ``sample`` on each of its rows (in the .h5ad file:
    ``obs`` columns); one named like a table column is left out, with a warning. ``provenance``: per sample, what
    produced its cells (the workflow's: ``image``, ``pixel_size_um`` and ``frame_interval_s`` as the sheet gives
    them, ``model``: NAME@VERSION per compartment, ``model_dataset``, ``scale``, ``augment``, ``precision``), the
    .h5ad file's ``uns["cellscale"]["samples"]`` (:func:`run_provenance`).
    """
    import pyarrow.parquet as pq

    sources = {s: (p, False) for s, p in table_paths.items()}  # sample -> (table, a batch's)
    for path in batch_tables:
        if pq.read_metadata(path).num_rows:
            names = pd.unique(pq.read_table(path, columns=["sample"]).column("sample").to_pandas())
            sources.update((s, (path, True)) for s in names)
    if order is not None:
        sources = {s: sources[s] for s in order if s in sources}
    if not sources:
        raise StepError("no sample has any measurements: every image failed (see results/errors.tsv)")
    runs = _runs(sources)
    schemas, empty = {}, []
    for path, batch, names in runs:
        schema = pq.read_schema(path).empty_table().to_pandas()
        schemas.update((s, schema.drop(columns="sample") if batch else schema) for s in names)
        empty += [] if batch or pq.read_metadata(path).num_rows else names
    measured = run_template(schemas, empty)
    annotations = sample_annotations(annotations)
    clash = [c for c in annotations.columns if c in measured.columns]
    if clash:
        log.warning("sample sheet column(s) %s left out of the run's cell table: it has columns of that name",
                    ", ".join(map(repr, clash)))
    template = annotate(measured, annotations)
    strings = ["sample"]  # the rows a sample, and the categories of the .h5ad file's string columns
    strings += [c for c in string_columns(template) if c != "sample"] if out_h5ad is not None else []
    read = [c for c in strings if c in measured.columns]  # those of the tables (the others are the sheet's)
    values, rows = {c: [] for c in strings}, dict.fromkeys(sources, 0)
    for part in run_parts(_parts(runs, read), measured[read]):
        part = annotate(part, annotations)
        rows.update(part["sample"].value_counts(sort=False).to_dict())
        for col in strings:
            values[col].append(pd.unique(part[col].to_numpy(dtype=object)))
    categories = {c: categories_of(v) for c, v in values.items()}
    uns = {"cellscale": run_provenance(provenance or {}, list(rows))}
    with TableWriter(template, out_csv, out_parquet, out_h5ad, n_rows=sum(rows.values()),
                     categories=categories, uns=uns) as writer:
        for part in run_parts(_parts(runs), measured):
            writer.append(annotate(part, annotations))
    log.info("aggregated %d rows of %d samples", sum(rows.values()), len(rows))
    return rows


def run_provenance(provenance: dict, samples: list[str]) -> dict:
    """The run-level .h5ad file's ``uns["cellscale"]``: ``cellscale_version`` and ``samples``, a table with a row
    per sample of ``samples`` (index ``sample``) and a column per entry of ``provenance``'s (``model`` as
    ``model_nuclear``, ``model_whole_cell``; ``scale`` as text: a number or ``auto``). A table, not a group per
    sample: an .h5ad file of 10^5 samples opens in a second. Empty text, or NaN, where a value is not known."""
    rows = {}  # every column in every run: those of a sample without the value too
    for sample in samples:
        made = dict(provenance.get(sample) or {})
        models = made.pop("model", None) or {}
        row = {"image": None, "pixel_size_um": None, "frame_interval_s": None,
               **{k: v for k, v in made.items() if k != "scale"}}
        row.update({f"model_{c}": models.get(c) for c in ("nuclear", "whole_cell")})
        row["scale"] = None if made.get("scale") is None else str(made["scale"])
        rows[sample] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index = pd.Index(list(rows), name="sample", dtype=object)
    for column in table.columns:  # numbers (NaN where not known) or text (empty where not known)
        numeric = column in ("pixel_size_um", "frame_interval_s")
        table[column] = table[column].astype(float) if numeric else table[column].fillna("").astype(str)
    return {"cellscale_version": __version__, "samples": table}


def write_mcquant(table: pd.DataFrame, out_dir, name: str | None = None) -> list[str]:
    """Write ``table`` (a sample's, a batch's or the run's cells) as MCQuant's CSVs into the folder ``out_dir``,
    ``SAMPLE_COMPARTMENT.csv`` (:func:`cellscale.measure.mcquant_tables`; ``name``: the sample of a table without a
    ``sample`` column); every table is made before any is written. Returns the tables' names (none: no still
    image's cells)."""
    tables = mcquant_tables(table, name)
    for key, cells in tables.items():
        write_table(cells, Path(out_dir) / f"{key}.csv")
    return list(tables)


def run_mcquant(cells_path, out_dir) -> list[str]:
    """The rule ``mcquant``: the run's cell table (``results/cells.parquet``) as MCQuant's CSVs, the folder
    ``out_dir`` replaced whole once every CSV is written (:func:`write_mcquant`). Read row group by row group, a
    sample's rows together (the run's table holds them in a row), so memory holds about a batch's cells. Returns
    the tables' names; a run of time-lapse movies only has none (a warning)."""
    import pyarrow.parquet as pq

    names, pending = [], None
    with atomic_dir(out_dir) as tmp:
        parquet = pq.ParquetFile(cells_path)
        for group in range(parquet.num_row_groups):
            part = parquet.read_row_group(group).to_pandas()
            part = part if pending is None else pd.concat([pending, part], ignore_index=True)
            if part.empty:
                continue
            last = (part["sample"] == part["sample"].iloc[-1]).to_numpy()  # may go on in the next row group
            names += write_mcquant(part[~last], tmp)
            pending = part[last]
        if pending is not None:
            names += write_mcquant(pending, tmp)
    if not names:
        log.warning("%s: no still image's cells: no MCQuant tables (a time-lapse's rows are left out)", cells_path)
    log.info("%d MCQuant tables -> %s", len(names), out_dir)
    return names


def _runs(sources: dict) -> list[tuple[object, bool, list[str]]]:
    """(table, a batch's, samples): consecutive samples from the same batch table read together."""
    runs = []
    for sample, (path, batch) in sources.items():
        if batch and runs and runs[-1][1] and runs[-1][0] == path:
            runs[-1][2].append(sample)
        else:
            runs.append((path, batch, [sample]))
    return runs


def _parts(runs, columns: list[str] | None = None):
    """(sample, table) of each own table, (None, rows of the samples in order) of each batch; ``columns``: those
    only (the ones present)."""
    import pyarrow.parquet as pq

    for path, batch, names in runs:
        present = None if columns is None else [c for c in pq.read_schema(path).names if c in {*columns, "sample"}]
        table = pd.read_parquet(path, columns=present)
        if not batch:
            yield names[0], table
            continue
        rank = table["sample"].map({s: k for k, s in enumerate(names)})
        if not (rank.notna().all() and rank.is_monotonic_increasing):  # other samples, or not in sheet order
            keep = rank.notna().to_numpy()
            table = table[keep].iloc[np.argsort(rank[keep].to_numpy(), kind="stable")]
        yield None, table
