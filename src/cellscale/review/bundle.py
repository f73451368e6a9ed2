"""The correction bundle: one OME-Zarr (NGFF) per tile, a ``corrected/`` folder, and ``bundle.json``.

::

    BUNDLE/
      bundle.json             sample, source image + SHA-256, model + weights SHA-256, tiles (box, score,
                              signals, SHA-256 of the exported labels), created time
      tile_000.zarr/          NGFF image (C, Y, X; one resolution level) + labels/<compartment> (Y, X uint32,
      tile_001.zarr/          ``image-label`` metadata): napari BUNDLE/tile_000.zarr opens both layers
      corrected/              where the corrected labels are saved (napari: File > Save Selected Layers ->
                              corrected/tile_000.tif); see docs/correct.md
      README.txt

One OME-Zarr per tile, not one mosaic of all tiles: each opens on its own (a person corrects one square at a time,
with the image's true neighbourhood, not a seam between unrelated tiles), each saved file maps onto one tile, and
a tile that nobody touched keeps the hash it was exported with. Written with the ``ome-zarr`` library: NGFF 0.5 on
Zarr v3 (its default with zarr 3; the current spec, read by ome-zarr-py >= 0.10 and napari-ome-zarr, and by
:class:`cellscale.io.ImageSource`) or NGFF 0.4 on Zarr v2 (``ngff="0.4"``, for viewers that do not read 0.5 yet).
One resolution level: a tile is small, and napari paints only single-scale labels layers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from cellscale.datasets import sha256_of
from cellscale.export import ngff_format
from cellscale.io import check_labels, image_files

MANIFEST = "bundle.json"
CORRECTED = "corrected"
KIND = "cellscale-review-bundle"


class BundleError(ValueError):
    """A bundle that cannot be imported; the message names the bundle (and the tile)."""


def sha256_path(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes; of a folder (an OME-Zarr image, frame files): of its files' relative paths
    and contents, in sorted order; of an image of one file per channel (``w1.tif|w2.tif``,
    :func:`cellscale.io.image_files`): of its files' SHA-256, in channel order."""
    files = image_files(path)
    if len(files) > 1:
        return hashlib.sha256("\0".join(sha256_path(f) for f in files).encode()).hexdigest()
    path = Path(path)
    if path.is_file():
        return sha256_of(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: not found")
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode() + b"\0" + sha256_path(file).encode())
    return digest.hexdigest()


def canonical_labels(labels, name: str = "labels") -> np.ndarray:
    """(Y, X) labels as uint32 (values as given: any integer dtype with values 0 .. 2**32 - 1), else an error
    naming ``name``. A leading axis of size 1 (a (1, Y, X) file) is dropped."""
    arr = np.asarray(check_labels(labels, name, error=BundleError))
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise BundleError(f"{name}: expected 2-D labels, got shape {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() > np.iinfo(np.uint32).max):
        raise BundleError(f"{name}: label values must be 0 .. {np.iinfo(np.uint32).max}, "
                          f"got {arr.min()} .. {arr.max()}")
    return np.ascontiguousarray(arr, np.uint32)


def labels_sha256(labels) -> str:
    """SHA-256 of a label tile's values and shape (not of its file: the same labels saved as int32 TIFF by
    napari or as uint32 Zarr hash alike)."""
    arr = canonical_labels(labels)
    digest = hashlib.sha256(repr(arr.shape).encode())
    digest.update(arr.astype("<u4", copy=False).tobytes())
    return digest.hexdigest()


def array_sha256(array: np.ndarray) -> str:
    """SHA-256 of an image array's dtype, shape and values."""
    arr = np.ascontiguousarray(array)
    digest = hashlib.sha256(repr((arr.dtype.str, arr.shape)).encode())
    digest.update(arr.tobytes())
    return digest.hexdigest()


def require_ome_zarr() -> str:
    """The installed ome-zarr library's version; a RuntimeError saying how to install it when it is missing."""
    try:
        import ome_zarr
    except ImportError:
        raise RuntimeError("cellscale review writes and reads OME-Zarr with the ome-zarr library: "
                           "pip install 'cellscale[review]' (or pip install ome-zarr)") from None
    return ome_zarr.__version__


def _format(ngff: str):
    require_ome_zarr()
    return ngff_format(ngff)


def write_tile(path: str | os.PathLike, image: np.ndarray, labels: np.ndarray, label_name: str, *,
               ngff: str = "0.5", pixel_size_um: float | None = None,
               channel_names: list[str] | None = None) -> None:
    """Write one tile as an OME-Zarr image with its labels under ``labels/<label_name>``.

    Parameters
    ----------
    image : (C, Y, X) intensities in their own dtype.
    labels : (Y, X) integer labels, written as uint32.
    """
    import zarr
    from ome_zarr.writer import write_image, write_labels

    fmt = _format(ngff)
    labels = canonical_labels(labels, f"{path}: labels")
    if image.ndim != 3 or image.shape[1:] != labels.shape:
        raise ValueError(f"{path}: image of shape {image.shape} and labels of shape {labels.shape} do not match")
    scale = {"c": 1.0, "y": pixel_size_um or 1.0, "x": pixel_size_um or 1.0}
    units = {"y": "micrometer", "x": "micrometer"} if pixel_size_um else None
    extra = {}
    if channel_names and len(channel_names) == image.shape[0]:
        lo, hi = float(image.min()), float(image.max())
        extra["omero"] = {"channels": [{"label": name, "active": True, "color": "FFFFFF",
                                        "window": {"start": lo, "end": hi, "min": lo, "max": hi}}
                                       for name in channel_names]}
    root = zarr.open_group(str(path), mode="w", zarr_format=fmt.zarr_format)
    write_image(np.ascontiguousarray(image), root, scale_factors=[], axes="cyx", fmt=fmt, scale=scale,
                axes_units=units, storage_options={"chunks": image.shape}, name="image", **extra)
    write_labels(labels, root, name=label_name, scaler=None, scale_factors=[], axes="yx", fmt=fmt,
                 scale={"y": scale["y"], "x": scale["x"]}, axes_units=units,
                 storage_options={"chunks": labels.shape},
                 label_metadata={"source": {"image": "../../"}})


def read_tile(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A tile's image (C, Y, X) and its labels {name: (Y, X)}, read with the ome-zarr library's reader."""
    require_ome_zarr()
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Multiscales, Reader

    # NGFF 0.4 (Zarr v2: .zgroup) asked for as such, else the library warns of a version mismatch at every node
    location = parse_url(str(path), fmt=FormatV04() if (Path(path) / ".zgroup").is_file() else FormatV05())
    if location is None:
        raise BundleError(f"{path}: not an OME-Zarr image")
    image, labels = None, {}
    # labels written without NGFF's image-label `source` (a script's ome-zarr writer) read the same; the library's
    # "no parent found for <Label object at 0x...>" on each is noise to a user importing corrections
    reader_log = logging.getLogger("ome_zarr.reader")
    level = reader_log.level
    reader_log.setLevel(logging.ERROR)
    try:
        nodes = list(Reader(location)())
    finally:
        reader_log.setLevel(level)
    for node in nodes:
        if not node.data:
            continue
        if any(isinstance(spec, Label) for spec in node.specs):
            labels[node.metadata.get("name") or Path(str(node.zarr.path)).name] = np.asarray(node.data[0])
        elif image is None and any(isinstance(spec, Multiscales) for spec in node.specs):
            image = np.asarray(node.data[0])
    if image is None:
        raise BundleError(f"{path}: no NGFF image in it")
    return image, labels


def write_manifest(bundle: str | os.PathLike, manifest: dict) -> None:
    path = Path(bundle) / MANIFEST
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, path)


def read_manifest(bundle: str | os.PathLike) -> dict:
    """A bundle's ``bundle.json``; a BundleError naming the bundle when it is not one."""
    path = Path(bundle) / MANIFEST
    if not path.is_file():
        raise BundleError(f"{bundle}: not a review bundle (no {MANIFEST}; make one with `cellscale review`)")
    manifest = json.loads(path.read_text())
    if manifest.get("kind") != KIND:
        raise BundleError(f"{path}: not a cellscale review bundle manifest (kind {manifest.get('kind')!r})")
    return manifest


README = """Correction bundle written by `cellscale review` ({sample}, {compartment} labels, {n} tiles).

1. Open a tile in napari (napari-ome-zarr plugin):  napari {first}
   The image (one layer per channel) and the current labels ({compartment}, the last layer) open.
2. Correct the labels layer (paint, erase, fill; a new cell gets a new label value).
3. Save it: select the labels layer, File > Save Selected Layers..., and save it as
   corrected/<tile name>.tif (e.g. corrected/{stem}.tif) in this folder.
4. When done:  cellscale review import {bundle} --dataset NAME [--parent SET@ID] [--annotator WHO]
   --parent: the dataset version the corrections add to (default: NAME's latest version, else the model's
   training set when the store has it, `cellscale models show MODEL`); the new version is that set plus your
   tiles. Only tiles whose labels changed are imported.
   docs/correct.md has the details.
"""
