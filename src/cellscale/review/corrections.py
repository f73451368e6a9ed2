"""``cellscale review import BUNDLE --dataset NAME``: the corrected tiles of a bundle become a dataset version.

A tile is corrected when its labels now hash differently from the labels it was exported with
(:func:`~cellscale.review.bundle.labels_sha256`: values and shape, not file bytes) and its cells differ from the
exported ones (a saved file with the same cells under other ids is not a correction: :func:`same_cells`). Its labels are read from
``BUNDLE/corrected/<tile>.tif`` (what napari's File > Save Selected Layers writes; docs/correct.md) when that file
exists, else from the tile's OME-Zarr ``labels/<compartment>`` (edited in place by a script or a zarr-backed tool).

Each corrected tile becomes an image/labels pair of OME-TIFFs in ``data/corrections/<NAME>/<KEY>/`` of the checkout
(``KEY``: a hash of the bundle and the corrected labels, so importing the same corrections twice gives the same
version), recorded as a new version of ``NAME`` on top of its parent (``--parent``, default ``NAME@latest`` when
``NAME`` exists): the parent's files and metadata plus the pairs, with ``sample``, ``role``, ``split: train``, the
tile's box, annotator and correction time (the saved file's modification time) in each file's metadata, and on
each image the bundle's ``normalisation`` (the model's channel recipe and the whole image's intensity ranges), so
that training sees a tile's pixels as the model saw them in the whole image, not stretched to the tile's own
percentiles. Training
pairs files by ``sample`` (``<sample>_y<Y0>_x<X0>``): a tile corrected again later sorts after the parent's copy and
replaces it in training.

Refused, with a :class:`BundleError` naming the bundle and the tile: a source image that changed since the
export (SHA-256), a tile whose image was altered, labels whose shape differs from their image's or that are not
integers, and a bundle with nothing corrected. A source image that is not on this machine (the bundle corrected
elsewhere, or the image moved) is not refused: each tile's image is still checked against its exported crop, and a
line says the source could not be. Files in ``corrected/`` whose names are no tile's are named in a warning.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import tifffile

from cellscale.datasets import add_version, default_store, load_version, store_base
from cellscale.io import write_image, write_labels
from cellscale.review.bundle import (
    CORRECTED,
    BundleError,
    array_sha256,
    canonical_labels,
    labels_sha256,
    read_manifest,
    read_tile,
    sha256_path,
)

CORRECTIONS_ROOT = Path("data") / "corrections"


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")


LABEL_SUFFIXES = (".tif", ".tiff", ".ome.tif", ".ome.tiff")


def _labels_file(bundle: Path, name: str) -> Path | None:
    for suffix in LABEL_SUFFIXES:
        path = bundle / CORRECTED / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


def _newest_mtime(path: Path) -> float:
    return max((p.stat().st_mtime for p in path.rglob("*") if p.is_file()), default=path.stat().st_mtime)


def same_cells(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two label images hold the same cells (the same background and pixel sets), whatever their ids: a
    tool that renumbers labels (relabel sequential, another dtype's range) has not corrected them."""
    if a.shape != b.shape or not np.array_equal(a == 0, b == 0):
        return False
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1).shape[1]
    return pairs == len(np.unique(a)) == len(np.unique(b))


def read_corrections(bundle: str | os.PathLike) -> tuple[dict, list[dict]]:
    """Check a bundle and return (its manifest, its corrected tiles): per tile its record with ``image`` (C, Y, X),
    ``labels`` (Y, X uint32), ``from`` (the file read) and ``corrected`` (UTC time). Raises :class:`BundleError`."""
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    source = Path(manifest["image"]["path"])
    now = sha256_path(source) if source.exists() else None
    if now is None:  # corrected on another machine, or the image moved: each tile's crop is checked below
        print(f"cellscale review: bundle {bundle}: its source image {source} is not here, so it cannot be checked "
              f"for changes since the export; each tile's image is checked against its crop's SHA-256",
              file=sys.stderr)
    elif now != manifest["image"]["sha256"]:
        raise BundleError(f"bundle {bundle}: source image {source} changed since the export (SHA-256 "
                          f"{manifest['image']['sha256'][:12]}... then, {now[:12]}... now); the tiles and their "
                          f"labels belong to the old image: run `cellscale review` again")
    compartment = manifest["compartment"]
    corrected, renumbered = [], []
    for tile in manifest["tiles"]:
        where = f"bundle {bundle}, tile {tile['name']}"
        zarr_path = bundle / tile["path"]
        image, labels = read_tile(zarr_path)
        if array_sha256(image) != tile["image_sha256"]:
            raise BundleError(f"{where}: the tile's image ({zarr_path}) differs from the exported crop; "
                              f"only its labels may change")
        file = _labels_file(bundle, tile["name"])
        if file is not None:
            try:
                data = tifffile.imread(file)
            except Exception as err:
                raise BundleError(f"{where}: cannot read {file} ({type(err).__name__}: {err})") from err
            origin, when = file, file.stat().st_mtime
        elif compartment in labels:
            data = labels[compartment]
            origin = zarr_path / "labels" / compartment
            when = _newest_mtime(origin)
        else:
            raise BundleError(f"{where}: no labels/{compartment} in {zarr_path} and no {CORRECTED}/{tile['name']}.tif")
        try:
            data = canonical_labels(data, f"{where}: labels {origin}")
        except BundleError as err:
            raise BundleError(f"{err} (the labels must be an integer image)") from None
        if data.shape != image.shape[1:]:
            raise BundleError(f"{where}: labels {origin} of shape {data.shape} do not match the tile's image of "
                              f"{image.shape[1]} x {image.shape[2]} px")
        if labels_sha256(data) == tile["labels_sha256"]:
            continue
        exported = labels.get(compartment)
        if file is not None and exported is not None and labels_sha256(exported) == tile["labels_sha256"] \
                and same_cells(data, canonical_labels(exported)):
            renumbered.append(tile["name"])
            continue
        if not data.any() and tile.get("n_labels"):
            print(f"cellscale review: {where}: every cell is erased in {origin} ({tile['n_labels']} exported): "
                  f"imported as a tile without cells, so the model learns it is background; if that was not "
                  f"meant, save the tile's labels again", file=sys.stderr)
        corrected.append({**tile, "image": image, "labels": data, "from": str(origin), "corrected": _utc(when)})
    if renumbered:
        print(f"cellscale review: bundle {bundle}: {', '.join(renumbered)}: the saved labels are the exported cells "
              f"under other ids: not corrected, not imported", file=sys.stderr)
    expected = {f"{t['name']}{suffix}" for t in manifest["tiles"] for suffix in LABEL_SUFFIXES}
    strays = sorted(p.name for p in (bundle / CORRECTED).glob("*") if p.is_file() and p.name not in expected)
    if strays:
        print(f"cellscale review: bundle {bundle}: {', '.join(strays)} in {CORRECTED}/ "
              f"{'is' if len(strays) == 1 else 'are'} no tile's labels and not imported (name a tile's corrected "
              f"labels {CORRECTED}/tile_NNN.tif, as its tile_NNN.zarr)", file=sys.stderr)
    if not corrected:
        raise BundleError(f"bundle {bundle}: nothing corrected (the labels of all {len(manifest['tiles'])} tiles are "
                          f"as exported; save corrected labels as {bundle / CORRECTED}/tile_NNN.tif, docs/correct.md)")
    return manifest, corrected


def check_parent(bundle: Path, manifest: dict, parent) -> None:
    """Refuse a parent version the bundle's tiles cannot join: one without the bundle's compartment (whole-cell
    corrections on a nuclear-only set), or whose images lack a channel the bundle's model reads (a membrane).
    Training would mix images the model cannot read alike."""
    compartment, model = manifest["compartment"], manifest["model"]["name"]
    hint = (f"name as --parent the version {model} was trained on (`cellscale models show {model}`, line dataset) "
            f"or one of its corrections")
    if compartment not in parent.compartments:
        raise BundleError(f"bundle {bundle}: its {compartment} labels cannot join {parent.ref}, which annotates "
                          f"{', '.join(parent.compartments) or 'no compartment'}; {hint}")
    needed = set((manifest["image"].get("normalisation") or {}).get("inputs") or []) - {"nuclear"}
    images = [parent.metadata_of(f) for f in parent.files if f.metadata.get("role") == "image"]
    if needed and images and not any(needed <= set(meta.get("channels") or {}) for meta in images):
        raise BundleError(f"bundle {bundle}: the model {model} reads a {' and '.join(sorted(needed))} channel, "
                          f"and no image of {parent.ref} has one; {hint}")


def import_bundle(bundle: str | os.PathLike, dataset: str, annotator: str | None = None, parent: str | None = None,
                  licence: str | None = None, store: str | os.PathLike | None = None):
    """Record the bundle's corrected tiles as a new version of ``dataset``; returns its Manifest."""
    bundle = Path(bundle)
    manifest, corrected = read_corrections(bundle)
    annotator = annotator or getpass.getuser()
    store = Path(store) if store is not None else default_store()
    if parent is None:
        try:
            parent = load_version(f"{dataset}@latest", store).ref
        except FileNotFoundError:
            parent = None
    parent_manifest = load_version(parent, store) if parent else None
    if parent_manifest is not None:
        check_parent(bundle, manifest, parent_manifest)
    sample, compartment = manifest["sample"], manifest["compartment"]
    key = hashlib.sha256("".join([manifest["image"]["sha256"], manifest["created"], annotator,
                                  *(labels_sha256(t["labels"]) for t in corrected)]).encode()).hexdigest()[:12]
    root = store_base(store) / CORRECTIONS_ROOT / dataset / key
    root.mkdir(parents=True, exist_ok=True)
    info = manifest["image"]
    roles = {k: v for k, v in (info.get("roles") or {}).items() if v is not None}
    channels = roles or ({"nuclear": 0} if info["shape"][1] == 1 else None)
    # what every image of the bundle shares: its channels' roles and how the model normalised the whole image
    image_meta = {key: value for key, value in (("channels", channels), ("normalisation", info.get("normalisation")))
                  if value}
    # the ontology goes on each file: on top of a parent, the set's metadata stays the parent's. The licence is
    # the source image's, not the parent's (generated tissue's licence says nothing of a user's CODEX tile), unless
    # an earlier round of this image's corrections in the parent named one
    source = f"cellscale review of sample {sample} ({info['path']}, SHA-256 {info['sha256']})"
    earlier = [parent_manifest.metadata_of(f) for f in parent_manifest.files] if parent_manifest else []
    licence = licence or next((m["licence"] for m in earlier if m.get("source") == source and m.get("licence")),
                              "as the source image's")
    ontology = {"compartments": [compartment], "annotator": annotator, "source": source, "licence": licence}
    if info.get("pixel_size_um"):
        ontology["pixel_size_um"] = info["pixel_size_um"]
    files = []
    for tile in corrected:
        y0, y1, x0, x1 = tile["box"]
        name = f"{sample}_y{y0}_x{x0}"
        common = {**ontology, "sample": name, "split": "train", "source_sample": sample, "box": tile["box"],
                  "source_size": list(info["shape"][-2:]),
                  "tile": tile["name"], "corrected": tile["corrected"], "bundle": bundle.resolve().name,
                  "bundle_created": manifest["created"], "model": manifest["model"]["name"],
                  "review_score": tile["score"], "selection": manifest["selection"]["method"]}
        image_path, labels_path = f"{name}.image.ome.tif", f"{name}.{compartment}.ome.tif"
        write_image(root / image_path, tile["image"], info.get("channel_names"), axes="CYX",
                    pixel_size_um=info.get("pixel_size_um"))
        write_labels(root / labels_path, tile["labels"], info.get("pixel_size_um"))
        files.append({"path": image_path, "metadata": {**common, "role": "image", **image_meta}})
        files.append({"path": labels_path, "metadata": {**common, "role": "labels", "compartment": compartment,
                                                        "exported_labels_sha256": tile["labels_sha256"]}})
    metadata = {} if parent_manifest else {**ontology, "review": {"model": manifest["model"]}}
    note = (f"{len(corrected)} of {len(manifest['tiles'])} tiles of {sample} corrected by {annotator} "
            f"(review bundle {bundle.name}: {', '.join(t['name'] for t in corrected)})")
    return add_version(dataset, root, files=files, metadata=metadata, parent=parent, note=note, store=store,
                       inherit=parent is not None)
