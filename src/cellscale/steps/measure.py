"""Steps of the rules ``measure`` and ``aggregate_measurements``: per-cell tables of a sample and of a run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

import pandas as pd

from cellscale.io import channel_names_from_ome
from cellscale.settings import Settings, default
from cellscale.steps import StepError, open_sample_image
from cellscale.measure import RegionArray, measure_compartments, write_table
from cellscale.measure import concat_tables

log = logging.getLogger("cellscale")


@dataclass(frozen=True)
class MeasureSettings(Settings):
    """``measure``: what the per-cell tables hold (defaults: the config schema's)."""

    SECTION: ClassVar[str] = "measure"
    extra_stats: bool = default("measure", "extra_stats")


def sample_channel_names(image_path, n_channels: int, names: list[str] | None) -> list[str]:
    """Names from the sample sheet, else the OME metadata, else ch0, ch1, ..."""
    names = names or channel_names_from_ome(image_path)
    if names and len(names) != n_channels:
        raise StepError(f"{image_path}: {len(names)} channel names given for {n_channels} channels")
    return names or [f"ch{i}" for i in range(n_channels)]


def measure_sample(sample: str, image_path, label_paths: dict, out_csv, out_parquet, timelapse: bool = False,
                   channel_names: list[str] | None = None, tracks_path=None,
                   settings: MeasureSettings | None = None, out_h5ad=None):
    """Per-cell table of one sample, every compartment, MCMICRO columns first.

    Labels and image are read block by block (TIFF tiles or strips), so a
    slide of any size is measured in bounded memory. Writes CSV and Parquet,
    and AnnData .h5ad when ``out_h5ad`` is given. ``settings``: config
    ``measure`` (None: the schema's defaults).
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
        table = measure_compartments(views, pixels, names, settings.extra_stats)
    if tracks_path:
        tracks = pd.read_parquet(tracks_path)[["frame", "label", "track_id"]]
        table = table.merge(tracks.rename(columns={"label": "CellID"}), on=["frame", "CellID"], how="left")
        table.loc[table.compartment != "nuclear", "track_id"] = pd.NA
        table["track_id"] = table["track_id"].astype("Int64")
    write_table(table, out_csv, out_parquet, out_h5ad)
    log.info("measured %d rows for %s", len(table), sample)
    return table


def aggregate_measurements(table_paths: dict, out_csv, out_parquet, out_h5ad=None, batch_tables=(),
                           order: list[str] | None = None) -> pd.DataFrame:
    """Run-level table: every sample's measurements stacked with a ``sample`` column.

    ``table_paths``: sample -> its own Parquet table; ``batch_tables``: Parquet tables of batches, which have a
    ``sample`` column already. ``order``: the samples in sheet order (default: as given).
    """
    tables = {s: pd.read_parquet(p) for s, p in table_paths.items()}
    for path in batch_tables:
        batch = pd.read_parquet(path)
        if len(batch):
            tables.update((s, t.drop(columns="sample")) for s, t in batch.groupby("sample", sort=False))
    if order is not None:
        tables = {s: tables[s] for s in order if s in tables}
    if not tables:
        raise StepError("no sample has any measurements: every image failed (see results/errors.tsv)")
    table = concat_tables(tables)
    write_table(table, out_csv, out_parquet, out_h5ad)
    log.info("aggregated %d rows of %d samples", len(table), len(tables))
    return table
