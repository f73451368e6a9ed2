"""A sample as one SpatialData store (written and read with the ``spatialdata`` library), the way Sopa writes one per
slide: the image (lazy, pyramidal), each compartment's labels, the cells' boundaries as shapes, and the per-cell
AnnData table linked to the labels (``region`` = the labels element, ``instance_id`` = the label value). Where a
sample has nuclei and whole cells, a ``cytoplasm`` labels element (each cell without its nucleus, as
:mod:`cellscale.measure` measures it) holds the table's cytoplasm rows.

A time-lapse has no time axis in SpatialData (its images are (C, Y, X) or (C, Z, Y, X)): each frame becomes its
own elements, ``image_t000``, ``nuclear_t000``, ... and the table's rows point at their frame's labels; the table
keeps its ``frame``, ``track_id`` and ``parent_track_id`` columns.

The cells' outlines are traced band by band (:func:`outline_bands`), each cell whole in the band of its first
row, and written to the store's GeoParquet file a band at a time (:func:`_stream_shapes`): neither the labels nor
every outline is held at once. They are exactly the polygons ``spatialdata.to_polygons`` traces on labels in one
chunk (to_polygons on chunked labels dissolves a cell cut by chunks from its pieces, notched by up to 1.5 px^2 at
the cut); rows in band order, not sorted by label.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .ngff import require, scale_factors

CYTOPLASM = "cytoplasm"
BAND_PIXELS = 1 << 22  # pixels of labels read per band when tracing outlines (16 MB of uint32), at least 256 rows


def _relative(factors: list[int]) -> list[int]:
    """spatialdata's scale factors are relative, level to level (ome-zarr's are cumulative)."""
    return [b // a for a, b in zip([1, *factors], factors)]


def _regions(obs, timelapse: bool, batch: bool = False):
    """Each row's labels element: its compartment (and frame, for a time-lapse; prefixed by its sample in a
    batch's store)."""
    import pandas as pd

    region = obs["compartment"].astype(str)
    if timelapse:
        frame = obs["frame"].astype("Int64").astype(int)
        region = pd.Series([f"{c}_t{f:03d}" for c, f in zip(region, frame)], index=obs.index)
    if batch:
        region = obs["sample"].astype(str) + "_" + region
    return region


@dataclass
class Field:
    """One image of a SpatialData store and its labels.

    ``name`` None: the store's only image; its elements are ``image``, ``<compartment>`` and
    ``<compartment>_boundaries`` in the ``global`` coordinate system. A name (a batch's sample): the elements are
    ``<name>_image``, ``<name>_<compartment>``, ... in a coordinate system of that name, so
    ``sdata.filter_by_coordinate_system(name)`` gives the field's elements and its rows of the table.

    image : (C, Y, X), or (T, C, Y, X) when ``timelapse``: a dask or NumPy array.
    labels : compartment -> (Y, X) or (T, Y, X) labels (dask, NumPy or any array-like with NumPy slicing).
    """

    name: str | None
    image: Any
    labels: dict
    timelapse: bool = False
    pixel_size_um: float | None = None
    channel_names: list[str] | None = None


def write_spatialdata(path: str | os.PathLike, image, labels: dict, table=None, *, timelapse: bool = False,
                      pixel_size_um: float | None = None, channel_names: list[str] | None = None,
                      boundaries: bool = True) -> None:
    """Write a SpatialData store of one sample at ``path`` (replaced whole: written beside it first).

    Parameters
    ----------
    image : (C, Y, X), or (T, C, Y, X) when ``timelapse``: a dask or NumPy array.
    labels : compartment -> (Y, X) or (T, Y, X) uint32 labels.
    table : the sample's cells as AnnData (``obs``: ``compartment``, ``CellID``, for a time-lapse ``frame``),
        e.g. ``anndata.read_h5ad(results/measurements/<sample>.h5ad)``; None: no table.
    boundaries : add each labels element's cell outlines as polygons (``<element>_boundaries``).
    """
    write_spatialdata_fields(path, [Field(None, image, labels, timelapse, pixel_size_um, channel_names)], table,
                             boundaries=boundaries)


def write_spatialdata_fields(path: str | os.PathLike, fields, table=None, *, boundaries: bool = True) -> None:
    """Write one SpatialData store of ``fields`` (:class:`Field`; one unnamed, or any number of named ones: a
    batch of small images, each in its own coordinate system, as spatialdata-io's readers hold the fields of
    view of one CosMx or MERSCOPE run) at ``path``, replaced whole (written beside it first).

    table : the cells as AnnData (``obs``: ``compartment``, ``CellID``; for a time-lapse ``frame``; for named
        fields ``sample``, the field's name); its rows become the one ``table``, linked to their labels element
        (``region``, ``instance_id`` = the label value). Rows of no written element are left out.

    Fields are read one at a time: a lazy field's pixels are read while its elements are written. The store's
    elements (not the pixels) are held together, so spatialdata writes the store in one pass (adding elements one
    by one to a written store takes about ten times longer per element).
    """
    require("spatialdata", "spatial")
    import anndata
    import pandas as pd
    from spatialdata import SpatialData
    from spatialdata.models import TableModel

    from cellscale.io import atomic_dir

    fields = list(fields)  # none: an empty store (a batch whose every image failed)
    batch, timelapse = (fields[0].name is not None, fields[0].timelapse) if fields else (True, False)
    mixed = any((f.name is not None) != batch or f.timelapse != timelapse for f in fields)
    if mixed or (not batch and len(fields) > 1):
        raise ValueError("a store holds one unnamed field, or named fields that are all still images or all movies")
    images, label_elements, shapes, outlines = {}, {}, {}, {}
    for f in fields:
        _field_elements(f, boundaries, images, label_elements, shapes, outlines)
    tables = {}
    if table is not None:
        region = _regions(table.obs, timelapse, batch)
        known = [r for r in pd.unique(region) if r in label_elements]
        keep = region.isin(known).to_numpy()
        table = table[keep].copy()  # one copy, of the rows kept (the caller's table is left as it is)
        table.obs["region"] = pd.Categorical(region[keep].to_numpy(), categories=known)
        table.obs["instance_id"] = table.obs["CellID"].astype(np.int64).to_numpy()
        if known:
            tables["table"] = TableModel.parse(table, region=known, region_key="region", instance_key="instance_id")
    sdata = SpatialData(images=images, labels=label_elements, shapes=shapes, tables=tables)
    with atomic_dir(path) as tmp:
        tmp.rmdir()  # spatialdata writes a new store only where nothing is
        # the table's arrays unsharded, as anndata 0.12 writes them by default, said once here instead of a
        # "zarr v3 autosharding will be the default" warning for every column
        with anndata.settings.override(auto_shard_zarr_v3=False):
            sdata.write(tmp)
        for name, (lab, last) in outlines.items():
            _stream_shapes(tmp / "shapes" / name / "shapes.parquet", outline_bands(lab, last=last))


def _field_elements(f: Field, boundaries: bool, images: dict, label_elements: dict, shapes: dict,
                    outlines: dict) -> None:
    """Add a field's elements to ``images``, ``label_elements`` and ``shapes`` (each labels element's outlines:
    all of them where the labels fit in one band, else a placeholder of the first band's, and ``outlines`` says
    what to stream into it once written)."""
    import dask.array as da
    from spatialdata.models import Image2DModel, ShapesModel
    from spatialdata.transformations import Identity, Scale

    image = da.asarray(f.image)
    frames = range(image.shape[0]) if f.timelapse else [None]
    height, width = image.shape[-2:]
    # at least two levels: spatialdata 0.7.2 writes a single-scale element through ome-zarr's write_image without
    # scale_factors, and ome-zarr 0.18's default (2, 4, 8, 16) then fails on the chunks it is given
    factors = _relative(scale_factors(height, width)) or [2]
    system, prefix = ("global", "") if f.name is None else (f.name, f"{f.name}_")
    to_um = {system: Scale([f.pixel_size_um] * 2, axes=("y", "x")) if f.pixel_size_um else Identity()}
    n_channels = image.shape[-3]
    names = f.channel_names if f.channel_names and len(f.channel_names) == n_channels else \
        [f"ch{i}" for i in range(n_channels)]
    one_band = height <= _band_rows(width)
    labels = dict(f.labels)
    if {"nuclear", "whole_cell"} <= labels.keys():  # the table's cytoplasm rows: each cell without its nucleus, as
        # cellscale.measure measures it (no outlines: they are the cell's and the nucleus's)
        labels[CYTOPLASM] = da.where(da.asarray(labels["nuclear"]) > 0, 0, da.asarray(labels["whole_cell"]))
    for t in frames:
        suffix = "" if t is None else f"_t{t:03d}"
        frame = image if t is None else image[t]
        images[f"{prefix}image{suffix}"] = Image2DModel.parse(frame, dims=("c", "y", "x"), c_coords=names,
                                                              scale_factors=factors, transformations=to_um,
                                                              chunks=frame.chunksize)
        for comp, lab in labels.items():
            lab = da.asarray(lab)
            lab = (lab if t is None else lab[t]).astype(np.uint32)
            name = f"{prefix}{comp}{suffix}"
            label_elements[name] = _labels_element(lab, factors, to_um)
            if boundaries and comp != CYTOPLASM:
                # spatialdata writes the shapes element (its group, format and transformations); where the labels
                # take more than one band, all the outlines are then streamed into its GeoParquet file
                last = last_rows(lab)
                if (last >= 0).any():
                    first = next(band for band in outline_bands(lab, last=last) if len(band))
                    shapes[f"{name}_boundaries"] = ShapesModel.parse(first, transformations=to_um)
                    if not one_band:
                        outlines[f"{name}_boundaries"] = lab, last


def _labels_element(lab, factors: list[int], transformations):
    """A multiscale ``Labels2DModel`` element of (Y, X) dask labels whose every level stays lazy.

    spatialdata's own pyramid for labels (``Methods.DASK_IMAGE_NEAREST``) computes each lower level into memory
    when parsed (a third of the labels' bytes: 1.3 GB per compartment at 1 Gpx). Here the element is parsed with
    the lazy ``XARRAY_COARSEN`` method for its structure (coordinates, transformations, chunks) and each lower
    level is replaced by the same nearest-neighbour pixels taken lazily from level 0: every ``f``-th row and
    column, ``f`` the level's cumulative factor (what DASK_IMAGE_NEAREST gives, value for value).
    """
    from multiscale_spatial_image.to_multiscale.to_multiscale import Methods
    from spatialdata.models import Labels2DModel
    from xarray import DataTree

    tree = Labels2DModel.parse(lab, dims=("y", "x"), scale_factors=factors, transformations=transformations,
                               chunks=lab.chunksize, method=Methods.XARRAY_COARSEN)
    nodes, level = {}, lab
    for k, name in enumerate(tree.children):
        data = next(iter(tree[name].ds.data_vars.values()))
        if k:
            # from the level above once rechunked: sliced from the unrechunked level above, each level's pieces
            # shrink (512, 256, ... 16 px) and dask holds them for the levels below, about a quarter of the labels'
            # bytes (+750 MB for one compartment at 1 Gpx); the pixels are the same
            level = level[::factors[k - 1], ::factors[k - 1]][:data.shape[0], :data.shape[1]]
        level = level.rechunk(data.data.chunks)
        nodes[name] = tree[name].ds.assign({data.name: data.copy(data=level)})
    tree = DataTree.from_dict(nodes)
    Labels2DModel.validate(tree)
    return tree


def _outline(mask: np.ndarray, y0: int, x0: int):
    """The polygon (or multipolygon) of a cell's mask whose top-left pixel is (``y0``, ``x0``): contours at 0.5 of
    the mask padded by one pixel, as ``spatialdata.to_polygons`` traces them."""
    import shapely.affinity
    from shapely.geometry import MultiPolygon, Polygon
    from skimage.measure import find_contours

    contours = find_contours(np.pad(mask, 1), 0.5)
    polygons = [Polygon(c[:, [1, 0]]) for c in contours]
    polygon = MultiPolygon(polygons) if len(polygons) > 1 else polygons[0]
    return shapely.affinity.translate(polygon, x0 - 1, y0 - 1)


def _band_rows(width: int) -> int:
    return max(256, BAND_PIXELS // max(width, 1))


def last_rows(labels, rows: int | None = None) -> np.ndarray:
    """``last[label]``: the last row holding each label of a (Y, X) label image (-1: absent), read band by band
    (``rows`` rows at a time; default about :data:`BAND_PIXELS` pixels)."""
    height, width = (int(n) for n in labels.shape)
    rows = rows or _band_rows(width)
    last = np.full(1, -1, np.int64)
    for y0 in range(0, height, rows):
        flat = np.asarray(labels[y0:y0 + rows]).ravel()
        values, index = np.unique(flat[::-1], return_index=True)  # each label's last pixel in the band
        if len(values) and values[-1] >= len(last):
            last = np.concatenate([last, np.full(int(values[-1]) + 1 - len(last), -1, np.int64)])
        last[values] = y0 + (flat.size - 1 - index) // width
    last[0] = -1
    return last


def outline_bands(labels, rows: int | None = None, last: np.ndarray | None = None):
    """The cells' outlines of a (Y, X) label image (NumPy, Dask or any array-like with NumPy slicing), band by
    band: for each band of ``rows`` full rows (default: about :data:`BAND_PIXELS` pixels, at least 256 rows), a
    GeoDataFrame (index ``instance_id``, the label; ``geometry``) of the cells whose first row is in it, each whole.

    A band is read down to the last row of its cells (``last``: :func:`last_rows`, computed here when not given),
    so a cell of any height or shape, in pieces too, comes whole; at most that window is held.
    """
    import geopandas as gpd
    import pandas as pd
    from skimage.measure import regionprops

    height, width = (int(n) for n in labels.shape)
    rows = rows or _band_rows(width)
    last = last_rows(labels, rows) if last is None else last
    seen = np.zeros(len(last), bool)  # seen[label]: traced in an earlier band
    seen[0] = True
    for y0 in range(0, height, rows):
        y1 = min(height, y0 + rows)
        band = np.asarray(labels[y0:y1])
        new = np.zeros(len(last), bool)
        new[np.unique(band)] = True
        new &= ~seen
        ids = np.flatnonzero(new)
        end = max(y1, int(last[ids].max(initial=-1)) + 1)
        window = band if end == y1 else np.asarray(labels[y0:end])
        cells = regionprops(np.where(new[window], window, 0)) if len(ids) else []
        seen |= new
        geometry = [_outline(c.image, c.bbox[0] + y0, c.bbox[1]) for c in cells]
        index = pd.Index([c.label for c in cells], dtype=np.int64, name="instance_id")
        del band, window
        yield gpd.GeoDataFrame(geometry=geometry, index=index)


def _stream_shapes(path, bands) -> None:
    """Replace the GeoParquet file ``path`` (a shapes element spatialdata wrote) with the outlines of ``bands``,
    written a band at a time (one row group each) with the file's schema; the ``geo`` metadata (geometry types,
    bounding box) is the union of the bands'."""
    import io
    import json

    import pyarrow.parquet as pq

    from cellscale.io import atomic_path

    schema = pq.read_schema(path)
    geo = json.loads(schema.metadata[b"geo"])
    column = geo["primary_column"]
    encoding = geo["columns"][column].get("encoding", "WKB")
    types, box = set(), None
    with atomic_path(path) as tmp:
        writer = pq.ParquetWriter(tmp, schema.remove_metadata())
        try:
            for band in bands:
                if not len(band):
                    continue
                buffer = io.BytesIO()
                band.to_parquet(buffer, geometry_encoding=encoding)
                table = pq.read_table(io.BytesIO(buffer.getvalue()))
                meta = json.loads(table.schema.metadata[b"geo"])["columns"][column]
                types.update(meta.get("geometry_types", []))
                if "bbox" in meta:
                    b = meta["bbox"]
                    box = b if box is None else [min(box[0], b[0]), min(box[1], b[1]), max(box[2], b[2]),
                                                 max(box[3], b[3])]
                writer.write_table(table.cast(schema.remove_metadata()))
        finally:
            geo["columns"][column]["geometry_types"] = sorted(types)
            if box is not None:
                geo["columns"][column]["bbox"] = box
            metadata = {k: v for k, v in schema.metadata.items() if k != b"geo"}
            writer.add_key_value_metadata({**{k.decode(): v.decode() for k, v in metadata.items()},
                                           "geo": json.dumps(geo)})
            writer.close()
