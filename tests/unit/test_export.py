"""OME-NGFF and SpatialData outputs (cellscale.export), read back with the libraries their users use: ome-zarr,
napari's napari-ome-zarr reader and spatialdata."""

from __future__ import annotations

import warnings

import anndata
import numpy as np
import pandas as pd
import pytest

from cellscale.export import (Field, label_metadata, lazy_image, lazy_labels, write_ngff, write_spatialdata,
                              write_spatialdata_fields)
from cellscale.export.ngff import scale_factors
from cellscale.io import ImageSource


def blobs(shape, n, seed=0):
    """(Y, X) uint32 labels: ``n`` squares of different sizes at random places (later ones on top)."""
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.uint32)
    for i in range(1, n + 1):
        s = int(rng.integers(6, 30))
        y, x = (int(rng.integers(0, d - s)) for d in shape)
        lab[y:y + s, x:x + s] = i
    return lab


def present(lab) -> set[int]:
    return set(np.unique(np.asarray(lab)).tolist()) - {0}


@pytest.fixture
def still():
    rng = np.random.default_rng(1)
    image = (rng.random((1, 2, 700, 600)) * 4000).astype(np.uint16)
    labels = {"nuclear": blobs((700, 600), 40, 2), "whole_cell": blobs((700, 600), 30, 3)}
    return image, labels


def read_ngff(path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader

    image, labels = None, {}
    for node in Reader(parse_url(str(path)))():
        if not node.data:
            continue
        if any(isinstance(s, Label) for s in node.specs):
            labels[node.metadata["name"]] = node
        elif image is None:
            image = node
    return image, labels


def write_still(out, image, labels: dict, table: pd.DataFrame, ngff: str) -> None:
    """The still fixture as an NGFF store (256-px chunks, 0.5 um/px, channels DNA and membrane)."""
    write_ngff(out, lazy_image(ImageSource.from_array(image), False, chunk=256),
               {c: lazy_labels(ImageSource.from_array(l[None, None]), False, chunk=256) for c, l in labels.items()},
               pixel_size_um=0.5, channel_names=["DNA", "membrane"], table=table, ngff=ngff)


def table_of(labels: dict) -> pd.DataFrame:
    rows = [pd.DataFrame({"compartment": comp, "CellID": sorted(present(lab)),
                          "Area": [float((lab == i).sum()) for i in sorted(present(lab))]})
            for comp, lab in labels.items()]
    return pd.concat(rows, ignore_index=True)


def test_lazy_arrays_read_the_source_region_by_region(still):
    image, labels = still
    source = ImageSource.from_array(image)
    lazy = lazy_image(source, timelapse=False, chunk=256)
    assert lazy.chunksize == (2, 256, 256)
    np.testing.assert_array_equal(lazy[:, 100:400, 250:].compute(), image[0, :, 100:400, 250:])
    lab = lazy_labels(ImageSource.from_array(labels["nuclear"][None, None]), timelapse=False, chunk=256)
    assert lab.dtype == np.uint32
    np.testing.assert_array_equal(lab.compute(), labels["nuclear"])
    movie = lazy_image(ImageSource.from_array(np.stack([image[0], image[0] + 1])), timelapse=True, chunk=256)
    np.testing.assert_array_equal(movie[1, 0, :5, :5].compute(), image[0, 0, :5, :5] + 1)


@pytest.mark.parametrize("ngff", ["0.5", "0.4"])
def test_ngff_image_and_labels_read_back_with_ome_zarr(tmp_path, still, ngff, monkeypatch):
    monkeypatch.setattr("cellscale.export.ngff.SINGLE_LEVEL_MAX", 512)   # a pyramid, as a larger image has
    image, labels = still
    table = table_of(labels)
    out = tmp_path / "sample.ome.zarr"
    write_still(out, image, labels, table, ngff)
    node, nodes = read_ngff(out)
    assert [d.shape for d in node.data] == [(2, 700, 600), (2, 350, 300)]  # down to a side below 256 x 2
    np.testing.assert_array_equal(np.asarray(node.data[0]), image[0])
    assert node.metadata["channel_names"] == ["DNA", "membrane"]
    assert sorted(nodes) == ["nuclear", "whole_cell"]
    for comp, lab in labels.items():
        np.testing.assert_array_equal(np.asarray(nodes[comp].data[0]), lab)
        assert np.asarray(nodes[comp].data[1]).shape == (350, 300)
        props = nodes[comp].metadata["properties"]  # label value -> its properties
        assert set(props) == present(lab)
        for value, p in props.items():
            row = table.iloc[p["table-row"]]
            assert (row["compartment"], row["CellID"], row["Area"]) == (comp, value, float((lab == value).sum()))
    attrs = (out / "zarr.json").read_text() if ngff == "0.5" else (out / ".zattrs").read_text()
    assert '"micrometer"' in attrs and "0.5" in attrs
    import json

    meta = json.loads(attrs)
    meta = meta["attributes"]["ome"] if ngff == "0.5" else meta
    assert meta["multiscales"][0]["name"] == "sample"   # the sample's name, not the store's folder name
    for channel in meta["omero"]["channels"]:   # the slider spans the type's range; the window is the display's
        window = channel["window"]
        assert (window["min"], window["max"]) == (0, 65535) and window["min"] <= window["start"] < window["end"]


def test_ngff_output_opens_with_naparis_reader(tmp_path, still, monkeypatch):
    """What a napari user gets from dropping the store on the viewer: napari-ome-zarr's reader (headless; no Qt
    needed to read) gives the image with its channel names and both label pyramids with their properties."""
    monkeypatch.setattr("cellscale.export.ngff.SINGLE_LEVEL_MAX", 512)   # a pyramid, as a larger image has
    from napari_ome_zarr import napari_get_reader

    image, labels = still
    table = table_of(labels)
    out = tmp_path / "sample.ome.zarr"
    write_still(out, image, labels, table, "0.5")
    reader = napari_get_reader(str(out))
    assert reader is not None
    layers = reader(str(out))
    kinds = [kind for _, _, kind in layers]
    assert kinds.count("image") == 1 and kinds.count("labels") == 2
    data, kw, _ = next(layer for layer in layers if layer[2] == "image")
    assert [d.shape for d in data] == [(2, 700, 600), (2, 350, 300)] and kw["channel_axis"] == 0
    assert [n.split(": ")[-1] for n in kw["name"]] == ["DNA", "membrane"]
    assert list(kw["scale"]) == [0.5, 0.5]
    np.testing.assert_array_equal(np.asarray(data[0]), image[0])
    for data, kw, kind in layers:
        if kind != "labels":
            continue
        comp = kw["name"].rsplit("/", 1)[-1]
        lab = labels[comp]
        np.testing.assert_array_equal(np.asarray(data[0]), lab)
        props = kw["properties"]
        assert sorted(props["index"]) == sorted(present(lab))
        for value, row in zip(props["index"], props["table-row"]):
            assert (table.iloc[row]["compartment"], table.iloc[row]["CellID"]) == (comp, value)
        assert set(kw["colormap"]) >= present(lab)


def test_label_metadata_is_capped_and_follows_the_spec(still):
    _, labels = still
    table = table_of(labels)
    meta = label_metadata(table, "nuclear", max_labels=1000)
    assert meta["source"] == {"image": "../../"}
    assert [c["label-value"] for c in meta["colors"]] == sorted(present(labels["nuclear"]))
    assert all(len(c["rgba"]) == 4 and all(0 <= v <= 255 for v in c["rgba"]) for c in meta["colors"])
    capped = label_metadata(table, "nuclear", max_labels=10)
    assert "colors" not in capped and "properties" not in capped


def test_scale_factors_stop_below_the_smallest_level():
    assert scale_factors(32_000, 32_000) == [2, 4, 8, 16, 32, 64]
    assert scale_factors(2048, 1000) == [2, 4, 8]
    assert scale_factors(1024, 1024) == scale_factors(300, 200) == []   # a field of view: one level


def test_a_small_image_is_one_level_in_few_files(tmp_path):
    """A 1024^2 field's OME-Zarr store: the image and its labels one level each, 7 files (15 with a pyramid);
    ome-zarr's reader opens it."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    rng = np.random.default_rng(0)
    image = rng.integers(0, 1000, (1, 1024, 1024)).astype(np.uint16)
    labels = np.zeros((1024, 1024), np.uint32)
    labels[100:200, 100:200], labels[500:600, 300:420] = 1, 2
    write_ngff(tmp_path / "f.ome.zarr", image, {"nuclear": labels})
    assert len([p for p in (tmp_path / "f.ome.zarr").rglob("*") if p.is_file()]) == 7
    nodes = list(Reader(parse_url(str(tmp_path / "f.ome.zarr")))())
    assert len(nodes[0].data) == 1 and np.array_equal(np.asarray(nodes[0].data[0])[0], image[0])
    label_node = [n for n in nodes if n.load is not None and "labels" in str(n.zarr)] or nodes[1:]
    assert np.array_equal(np.asarray(label_node[-1].data[0]), labels)


def test_spatialdata_store_links_table_rows_to_label_ids(tmp_path, still):
    import spatialdata

    image, labels = still
    cytoplasm = np.where(labels["nuclear"] > 0, 0, labels["whole_cell"])  # as cellscale.measure measures it
    table = table_of({**labels, "cytoplasm": cytoplasm})
    adata = anndata.AnnData(X=np.ones((len(table), 2)), obs=table.assign(compartment=table["compartment"]
                                                                              .astype("category")))
    adata.obs_names = [f"s:{c}:{i}" for c, i in zip(table["compartment"], table["CellID"])]
    made = {"sample": "s", "model": {"nuclear": "tissue@0123456789ab"}, "pixel_size_um": 0.5}
    adata.uns["cellscale"] = made  # what produced the cells (a sample's .h5ad file's): kept in the store's table
    out = tmp_path / "sample.zarr"
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        write_spatialdata(out, lazy_image(ImageSource.from_array(image), False, chunk=256),
                          {c: lazy_labels(ImageSource.from_array(l[None, None]), False, chunk=256)
                           for c, l in labels.items()}, adata, pixel_size_um=0.5, channel_names=["DNA", "membrane"])
    assert not [w for w in said if "autosharding" in str(w.message)]  # anndata's, once per table column (was)
    sdata = spatialdata.read_zarr(out)
    assert set(sdata.images) == {"image"} and set(sdata.labels) == {"nuclear", "whole_cell", "cytoplasm"}
    np.testing.assert_array_equal(sdata.images["image"]["scale0"]["image"].values, image[0])
    assert list(sdata.images["image"]["scale0"]["image"].coords["c"].values) == ["DNA", "membrane"]
    t = sdata.tables["table"]
    attrs = t.uns["spatialdata_attrs"]
    assert (attrs["region_key"], attrs["instance_key"]) == ("region", "instance_id")
    assert t.uns["cellscale"] == made
    assert len(t) == len(table)  # every row, the cytoplasm's too
    for comp, lab in {**labels, "cytoplasm": cytoplasm}.items():
        stored = sdata.labels[comp]["scale0"]["image"].values
        np.testing.assert_array_equal(stored, lab)
        rows = t.obs[t.obs["region"] == comp]
        assert set(rows["instance_id"]) == present(lab)
        if comp == "cytoplasm":
            assert "cytoplasm_boundaries" not in sdata.shapes  # the cell's and the nucleus's outlines
            continue
        shapes = sdata.shapes[f"{comp}_boundaries"]
        assert set(shapes.index) == present(lab)
        # each outline covers its label's pixels: its area is within a pixel-wide rim of the pixel count
        for value in list(present(lab))[:5]:
            pixels = (lab == value).sum()
            assert abs(shapes.geometry.loc[value].area - pixels) <= 2 * np.sqrt(pixels) + 2
    scale = spatialdata.transformations.get_transformation(sdata.labels["nuclear"])
    np.testing.assert_allclose(scale.to_affine_matrix(("y", "x"), ("y", "x"))[:2, :2], np.diag([0.5, 0.5]))


def test_a_batch_of_fields_is_one_spatialdata_store_with_a_coordinate_system_each(tmp_path):
    """Named fields (a batch's images) share one store and one table: each field's elements carry its name and live
    in its own coordinate system, so filtering by it gives that field's image, labels, outlines and table rows."""
    import spatialdata

    fields, rows = [], []
    for k, (name, shape) in enumerate([("well_A01", (300, 260)), ("well-B.02", (200, 330)), ("empty", (90, 90))]):
        lab = blobs(shape, 0 if name == "empty" else 8 + k, k)
        image = (np.random.default_rng(k).random((1, *shape)) * 255).astype(np.uint8)
        fields.append(Field(name, image, {"nuclear": lab}, pixel_size_um=0.5 if k == 1 else None,
                            channel_names=["DNA"]))
        ids = sorted(present(lab))
        rows.append(pd.DataFrame({"sample": name, "compartment": "nuclear", "CellID": ids, "Area": 1.0}))
    obs = pd.concat(rows, ignore_index=True)
    obs.index = [f"{s}:{c}" for s, c in zip(obs["sample"], obs["CellID"])]
    out = tmp_path / "batch.zarr"
    write_spatialdata_fields(out, fields, anndata.AnnData(X=np.arange(len(obs), dtype=float)[:, None], obs=obs))
    sdata = spatialdata.read_zarr(out)
    assert set(sdata.coordinate_systems) == {"well_A01", "well-B.02", "empty"}
    for f in fields:
        view = sdata.filter_by_coordinate_system(f.name)
        assert set(view.images) == {f"{f.name}_image"} and set(view.labels) == {f"{f.name}_nuclear"}
        np.testing.assert_array_equal(view.images[f"{f.name}_image"]["scale0"]["image"].values, f.image)
        np.testing.assert_array_equal(view.labels[f"{f.name}_nuclear"]["scale0"]["image"].values,
                                      f.labels["nuclear"])
        if present(f.labels["nuclear"]):
            table = view.tables["table"]
            assert set(table.obs["sample"]) == {f.name} and (table.obs["region"] == f"{f.name}_nuclear").all()
            assert sorted(table.obs["instance_id"]) == sorted(present(f.labels["nuclear"]))
            assert set(view.shapes[f"{f.name}_nuclear_boundaries"].index) == present(f.labels["nuclear"])
        else:
            assert not view.shapes and not view.tables  # no cells: no outlines element, no rows of the table
    scale = spatialdata.transformations.get_transformation(sdata.labels["well-B.02_nuclear"], "well-B.02")
    np.testing.assert_allclose(scale.to_affine_matrix(("y", "x"), ("y", "x"))[:2, :2], np.diag([0.5, 0.5]))
    with pytest.raises(ValueError, match="one unnamed field"):
        write_spatialdata_fields(tmp_path / "mixed.zarr", [fields[0], Field(None, fields[1].image, {})])
    write_spatialdata_fields(tmp_path / "none.zarr", [], None)  # a batch whose every image failed
    assert not list(spatialdata.read_zarr(tmp_path / "none.zarr").gen_elements())


def test_spatialdata_time_lapse_has_one_element_per_frame(tmp_path):
    import spatialdata

    movie = np.stack([blobs((300, 260), 6, s) for s in range(3)])
    image = (movie[:, None] * 100).astype(np.uint16)
    rows = [pd.DataFrame({"compartment": "nuclear", "frame": t, "CellID": sorted(present(movie[t])),
                          "track_id": sorted(present(movie[t]))}) for t in range(3)]
    obs = pd.concat(rows, ignore_index=True)
    obs.index = obs.index.astype(str)
    adata = anndata.AnnData(X=np.ones((len(obs), 1)), obs=obs)
    out = tmp_path / "movie.zarr"
    write_spatialdata(out, lazy_image(ImageSource.from_array(image), True), {"nuclear": movie}, adata,
                      timelapse=True)
    sdata = spatialdata.read_zarr(out)
    assert set(sdata.labels) == {"nuclear_t000", "nuclear_t001", "nuclear_t002"}
    assert set(sdata.images) == {"image_t000", "image_t001", "image_t002"}
    t = sdata.tables["table"]
    assert {"frame", "track_id"} <= set(t.obs.columns)
    for f in range(3):
        rows = t.obs[t.obs["region"] == f"nuclear_t{f:03d}"]
        assert (rows["frame"] == f).all() and set(rows["instance_id"]) == present(movie[f])


def test_ngff_labels_equal_write_labels_without_scanning_them(tmp_path, still, monkeypatch):
    """The labels are written as ``ome_zarr.writer.write_labels`` writes them (same files, same metadata), without
    the label scan of ome-zarr's ``OMEZarrLabels`` (every pixel read, a pydantic colour per label)."""
    import zarr
    from ome_zarr import OMEZarrLabels
    from ome_zarr.writer import write_labels

    from cellscale.export.ngff import ngff_format

    image, labels = still
    table = table_of(labels)
    image_lazy = lazy_image(ImageSource.from_array(image), False, chunk=256)
    lab = {c: lazy_labels(ImageSource.from_array(l[None, None]), False, chunk=256) for c, l in labels.items()}
    write_ngff(tmp_path / "want.ome.zarr", image_lazy, {}, pixel_size_um=0.5, table=table)
    root = zarr.open_group(str(tmp_path / "want.ome.zarr"), mode="r+")
    for name, l in lab.items():  # what write_ngff wrote before: ome-zarr's write_labels
        write_labels(l, root, name=name, scaler=None, scale_factors=scale_factors(700, 600), axes="yx",
                     fmt=ngff_format("0.5"), scale={"y": 0.5, "x": 0.5},
                     axes_units={"y": "micrometer", "x": "micrometer"},
                     storage_options={"chunks": (256, 256)}, label_metadata=label_metadata(table, name, 100_000))

    def scan(self):
        raise AssertionError("the labels were scanned")

    monkeypatch.setattr(OMEZarrLabels, "_parse_image_label_metadata", scan)
    write_ngff(tmp_path / "got.ome.zarr", image_lazy, lab, pixel_size_um=0.5, table=table)
    want, got = tmp_path / "want.ome.zarr" / "labels", tmp_path / "got.ome.zarr" / "labels"
    files = sorted(p.relative_to(want) for p in want.rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(got) for p in got.rglob("*") if p.is_file())
    for f in files:
        assert (want / f).read_bytes() == (got / f).read_bytes(), f


def test_ngff_step_reads_only_the_label_columns(tmp_path, still):
    """The ngff step reads the table's CellID, compartment and Area only; the labels' metadata is the same as
    from the whole table."""
    from cellscale.steps.export import read_label_columns

    _, labels = still
    table = table_of(labels).assign(DNA=1.5, X_centroid=2.0)
    table.to_parquet(tmp_path / "cells.parquet")
    narrow = read_label_columns(tmp_path / "cells.parquet")
    assert list(narrow.columns) == ["CellID", "compartment", "Area"]
    for comp in labels:
        for cap in (10, 1000):
            assert label_metadata(narrow, comp, cap) == label_metadata(table, comp, cap)


def test_time_lapse_ngff_has_track_id_labels_and_per_frame_labels_without_properties(tmp_path):
    """A movie's labels/nuclear keep each frame's own ids (the table's CellID per frame), so a value there is a
    different cell in each frame and gets no properties; labels/tracks holds the tables' track_id, the same value for
    a cell in every frame (a gap too), with each track's first and last frame and parent."""
    from cellscale.steps.export import export_one

    rng = np.random.default_rng(0)
    movie = np.stack([blobs((200, 180), 5, 10 + t) for t in range(3)])
    ids = [sorted(present(movie[t])) for t in range(3)]
    # track 1 runs through frames 0-2 on shuffled per-frame ids; 2 has a gap at frame 1; 3 and 4 divide from 1
    tracks = pd.DataFrame({"frame": [0, 0, 1, 2, 2, 2, 2], "label": [ids[0][0], ids[0][1], ids[1][2], ids[2][3],
                                                                     ids[2][0], ids[2][1], ids[2][4]],
                           "track_id": [1, 2, 1, 2, 3, 4, 5], "parent_track_id": [0, 0, 0, 0, 1, 1, 0]})
    image = (rng.random((3, 1, 200, 180)) * 1000).astype(np.uint16)
    tifffile_path = tmp_path / "movie.ome.tif"
    import tifffile

    tifffile.imwrite(tifffile_path, image, metadata={"axes": "TCYX"})
    labels_path = tmp_path / "nuclear.ome.tif"
    tifffile.imwrite(labels_path, movie, metadata={"axes": "TYX"})
    table = pd.concat([pd.DataFrame({"compartment": "nuclear", "frame": t, "CellID": ids[t], "Area": 1.0})
                       for t in range(3)], ignore_index=True)
    out = tmp_path / "movie.ome.zarr"
    export_one("movie", tifffile_path, {"nuclear": labels_path}, table, {"ome-zarr": out}, timelapse=True,
               tracks=tracks)
    _, labels = read_ngff(out)
    assert set(labels) == {"nuclear", "tracks"}
    np.testing.assert_array_equal(np.asarray(labels["nuclear"].data[0]), movie)
    got = np.asarray(labels["tracks"].data[0])
    assert got.dtype == np.uint32
    expected = np.zeros_like(movie)
    for r in tracks.itertuples():
        expected[r.frame][movie[r.frame] == r.label] = r.track_id
    np.testing.assert_array_equal(got, expected)
    assert "properties" not in labels["nuclear"].zarr.root_attrs.get("ome", labels["nuclear"].zarr.root_attrs).get(
        "image-label", {})
    meta = labels["tracks"].zarr.root_attrs.get("ome", labels["tracks"].zarr.root_attrs)["image-label"]
    props = {p["label-value"]: p for p in meta["properties"]}
    assert props[2] == {"label-value": 2, "first-frame": 0, "last-frame": 2, "parent-track": 0}
    assert props[3]["parent-track"] == 1 and props[3]["first-frame"] == 2 and set(props) == {1, 2, 3, 4, 5}


def test_time_lapse_ngff_t_axis_has_the_frame_interval_in_seconds(tmp_path):
    """A movie's OME-Zarr t axis (image and labels, read back with ome-zarr's reader) has unit second and the frame
    interval as its scale: the movie's OME-TIFF TimeIncrement (2 min: 120 s), or the sheet's value where given (it
    wins); none known: no unit, a scale of 1."""
    import tifffile

    from cellscale.steps.export import export_one

    movie = np.stack([blobs((48, 40), 3, t) for t in range(3)])
    image = (movie[:, None] * 100).astype(np.uint16)
    tifffile.imwrite(tmp_path / "timed.ome.tif", image, ome=True,
                     metadata={"axes": "TCYX", "TimeIncrement": 2, "TimeIncrementUnit": "min"})
    tifffile.imwrite(tmp_path / "untimed.ome.tif", image, ome=True, metadata={"axes": "TCYX"})
    labels_path = tmp_path / "nuclear.ome.tif"
    tifffile.imwrite(labels_path, movie, metadata={"axes": "TYX"})
    table = pd.concat([pd.DataFrame({"compartment": "nuclear", "frame": t, "CellID": sorted(present(movie[t])),
                                     "Area": 1.0}) for t in range(3)], ignore_index=True)
    for name, given, (unit, scale) in (("timed", None, ("second", 120.0)), ("timed", 30.0, ("second", 30.0)),
                                       ("untimed", None, (None, 1.0))):
        out = tmp_path / f"{name}-{given}.ome.zarr"
        export_one("movie", tmp_path / f"{name}.ome.tif", {"nuclear": labels_path}, table, {"ome-zarr": out},
                   timelapse=True, frame_interval_s=given)
        image_node, labels = read_ngff(out)
        for node in (image_node, labels["nuclear"]):
            t_axis = node.metadata["axes"][0]
            assert t_axis["name"] == "t" and t_axis.get("unit") == unit, (name, given, t_axis)
            transforms = node.metadata["coordinateTransformations"][0]
            assert [t["scale"][0] for t in transforms if t["type"] == "scale"] == [scale], (name, given)


def test_spatialdata_levels_halve_level_to_level(tmp_path):
    """An image over 1024 px has levels 2 and 4 times smaller (NGFF's cumulative factors): read back, each level of
    the image and of the labels is half the one above, and each labels level is every 2**k-th pixel of level 0."""
    import spatialdata

    image = np.random.default_rng(4).integers(0, 4000, (1, 1100, 1030)).astype(np.uint16)
    lab = blobs((1100, 1030), 30, 5)
    out = tmp_path / "big.zarr"
    write_spatialdata(out, lazy_image(ImageSource.from_array(image[None]), False, chunk=256),
                      {"nuclear": lazy_labels(ImageSource.from_array(lab[None, None]), False, chunk=256)},
                      boundaries=False)
    sdata = spatialdata.read_zarr(out)
    for element in (sdata.images["image"], sdata.labels["nuclear"]):
        shapes = [tuple(element[level]["image"].shape[-2:]) for level in element]
        assert shapes == [(1100 // 2 ** k, 1030 // 2 ** k) for k in range(3)]
    for k, level in enumerate(sdata.labels["nuclear"]):
        np.testing.assert_array_equal(sdata.labels["nuclear"][level]["image"].values,
                                      lab[::2 ** k, ::2 ** k][:1100 // 2 ** k, :1030 // 2 ** k])


def test_last_rows_are_each_labels_last_row_whatever_the_bands():
    """``last_rows`` against each label's largest row index from ``np.nonzero``, labels ending in the last column
    of a band's last row among them, read in bands of 1, 3 and all rows."""
    from cellscale.export.spatial import last_rows

    lab = blobs((40, 30), 12, 6)
    lab[9, 25:] = 13  # label 13's last pixel is the last one of row 9 (the end of a 1-, 2- or 5-row band)
    lab[39, 29] = 14  # label 14's is the image's last pixel
    expected = np.full(int(lab.max()) + 1, -1)
    for value in present(lab):
        expected[value] = np.nonzero(lab == value)[0].max()
    for rows in (1, 3, 40):
        np.testing.assert_array_equal(last_rows(lab, rows), expected)
