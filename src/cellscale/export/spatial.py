"""A sample as one SpatialData store (written and read with the ``spatialdata`` library), the way Sopa writes one per
slide: the image (lazy, pyramidal), each compartment's labels, the cells' boundaries as shapes, and the per-cell
AnnData table linked to the labels (``region`` = the labels element, ``instance_id`` = the label value).

A time-lapse has no time axis in SpatialData (its images are (C, Y, X) or (C, Z, Y, X)): each frame becomes its
own elements, ``image_t000``, ``nuclear_t000``, ... and the table's rows point at their frame's labels; the table
keeps its ``frame`` and ``track_id`` columns.
"""

from __future__ import annotations

import os

from .ngff import require, scale_factors


def _relative(factors: list[int]) -> list[int]:
    """spatialdata's scale factors are relative, level to level (ome-zarr's are cumulative)."""
    return [b // a for a, b in zip([1, *factors], factors)]


def _regions(obs, timelapse: bool):
    """Each row's labels element: its compartment (and frame, for a time-lapse)."""
    import pandas as pd

    comp = obs["compartment"].astype(str)
    if not timelapse:
        return comp
    frame = obs["frame"].astype("Int64").astype(int)
    return pd.Series([f"{c}_t{f:03d}" for c, f in zip(comp, frame)], index=obs.index)


def write_spatialdata(path: str | os.PathLike, image, labels: dict, table=None, *, timelapse: bool = False,
                      pixel_size_um: float | None = None, channel_names: list[str] | None = None,
                      boundaries: bool = True) -> None:
    """Write a SpatialData store at ``path`` (replaced whole: written beside it first).

    Parameters
    ----------
    image : (C, Y, X), or (T, C, Y, X) when ``timelapse``: a dask or NumPy array.
    labels : compartment -> (Y, X) or (T, Y, X) uint32 labels.
    table : the sample's cells as AnnData (``obs``: ``compartment``, ``CellID``, for a time-lapse ``frame``),
        e.g. ``anndata.read_h5ad(results/measurements/<sample>.h5ad)``; None: no table.
    boundaries : add each labels element's cell outlines as polygons (``<element>_boundaries``).
    """
    require("spatialdata", "spatial")
    import dask.array as da
    import numpy as np
    import pandas as pd
    from spatialdata import SpatialData, to_polygons
    from spatialdata.models import Image2DModel, Labels2DModel, ShapesModel, TableModel
    from spatialdata.transformations import Identity, Scale

    from cellscale.io import atomic_dir

    image = da.asarray(image)
    frames = range(image.shape[0]) if timelapse else [None]
    height, width = image.shape[-2:]
    # at least two levels: spatialdata 0.7.2 writes a single-scale element through ome-zarr's write_image without
    # scale_factors, and ome-zarr 0.18's default (2, 4, 8, 16) then fails on the chunks it is given
    factors = _relative(scale_factors(height, width)) or [2]
    to_um = {"global": Scale([pixel_size_um] * 2, axes=("y", "x")) if pixel_size_um else Identity()}
    n_channels = image.shape[-3]
    names = channel_names if channel_names and len(channel_names) == n_channels else \
        [f"ch{i}" for i in range(n_channels)]
    images, label_elements, shapes = {}, {}, {}
    for t in frames:
        suffix = "" if t is None else f"_t{t:03d}"
        frame = image if t is None else image[t]
        images[f"image{suffix}"] = Image2DModel.parse(frame, dims=("c", "y", "x"), c_coords=names,
                                                      scale_factors=factors, transformations=to_um,
                                                      chunks=frame.chunksize)
        for comp, lab in labels.items():
            lab = da.asarray(lab)
            lab = (lab if t is None else lab[t]).astype(np.uint32)
            element = Labels2DModel.parse(lab, dims=("y", "x"), scale_factors=factors, transformations=to_um,
                                          chunks=lab.chunksize)
            label_elements[f"{comp}{suffix}"] = element
            if boundaries:
                polygons = to_polygons(element)
                if len(polygons):
                    polygons = polygons.set_index("label") if "label" in polygons.columns else polygons
                    polygons.index = polygons.index.astype(np.int64)
                    polygons.index.name = "instance_id"
                    # the labels' transformations came along with the polygons
                    shapes[f"{comp}{suffix}_boundaries"] = ShapesModel.parse(polygons)
    tables = {}
    if table is not None:
        table = table.copy()
        region = _regions(table.obs, timelapse)
        known = [r for r in pd.unique(region) if r in label_elements]
        table = table[region.isin(known).to_numpy()].copy()
        table.obs["region"] = pd.Categorical(region[region.isin(known)].to_numpy(), categories=known)
        table.obs["instance_id"] = table.obs["CellID"].astype(np.int64).to_numpy()
        if known:
            tables["table"] = TableModel.parse(table, region=known, region_key="region", instance_key="instance_id")
    sdata = SpatialData(images=images, labels=label_elements, shapes=shapes, tables=tables)
    with atomic_dir(path) as tmp:
        tmp.rmdir()  # spatialdata writes a new store only where nothing is
        sdata.write(tmp)
