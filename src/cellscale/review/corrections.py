"""``cellscale review import BUNDLE --dataset NAME``: the corrected tiles of a bundle become a dataset version.

A tile is corrected when its labels now hash differently from the labels it was exported with
(:func:`~cellscale.review.bundle.labels_sha256`: values and shape, not file bytes) and its cells differ from the
exported ones (a saved file with the same cells under other ids is not a correction: :func:`same_cells`). Its
labels are read from ``BUNDLE/corrected/<tile>.tif`` (what napari's File > Save Selected Layers writes;
docs/correct.md) when that file exists, else from the tile's OME-Zarr ``labels/<compartment>`` (edited in place by
a script or a zarr-backed tool).

Each corrected tile becomes an image/labels pair of OME-TIFFs in ``data/corrections/<NAME>/<KEY>/`` of the checkout
(``KEY``: a hash of the bundle, the annotator and the corrected labels, so importing the same corrections on the
same parent gives the same version), recorded as a new version of ``NAME`` on top of its parent (``--parent``;
default :func:`default_parent`: ``NAME@latest`` when ``NAME`` exists, else the version the bundle's model was
trained on): the parent's files and metadata plus the pairs, with ``sample``, ``role``, ``split: train``, the
tile's box, annotator, correction time (the saved file's modification time) and the labels' hash in each file's
metadata, and on each image the bundle's ``normalisation`` (the model's channel recipe and the whole image's
intensity ranges), so that training sees a tile's pixels as the model saw them in the whole image, not stretched to
the tile's own percentiles.

Training pairs files by ``sample`` (``<sample>_y<Y0>_x<X0>``), so a version holds one copy of each tile: a tile
whose labels the parent or a version it descends from holds already is not imported again (whoever the annotator;
:func:`imported_before`), and a tile corrected again with other labels replaces the parent's copy (left out of the
new version; it stays in the parent).

Refused, with a :class:`BundleError` naming the bundle and the tile: a source image that changed since the
export (SHA-256), a tile whose image was altered, labels whose shape differs from their image's or that are not
integers, a bundle with nothing corrected or nothing new, and a parent the tiles cannot join
(:func:`check_parent`). A ``--parent`` that is neither the model's training data nor descends from it gets a
warning (:func:`check_lineage`). A source image that is not on this machine (the bundle corrected
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

from cellscale.datasets import Manifest, add_version, default_store, lineage, load_version, store_base
from cellscale.io import image_files, read_labels, write_image, write_labels
from cellscale.registry import VERSION_LENGTH, find_model, model_entry, model_kind
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
    source = manifest["image"]["path"]  # a file or folder, or one file per channel (w1.tif|w2.tif)
    now = sha256_path(source) if all(Path(f).exists() for f in image_files(source)) else None
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


def _say(bundle: Path, text: str) -> None:
    print(f"cellscale review: bundle {bundle}: {text}", file=sys.stderr)


def model_dataset(manifest: dict) -> tuple[str, str | None]:
    """The bundle's model (``NAME@VERSION`` where the registry knows it, else its name) and the dataset version it
    was trained on (``NAME@ID``, as its metrics.json and the registry record it; a model trained on the CODEX tile
    as well: its main set), or None when that is not known (a model folder that is gone and not registered, a model
    trained before dataset versions or with ``--fit-only``)."""
    model = manifest["model"]
    folder = Path(model["path"])
    try:
        entry = model_entry(folder, model["name"]) if model_kind(folder) == "segmentation" else \
            find_model(f"{model['name']}@{model['weights_sha256'][:VERSION_LENGTH]}", kind="segmentation")
    except FileNotFoundError:
        return model["name"], None
    return entry.ref, entry.dataset


def default_parent(bundle: Path, manifest: dict, dataset: str, store: Path) -> Manifest | None:
    """``--parent``'s default: ``NAME@latest`` when the dataset exists (a later round adds to the last), else the
    version the bundle's model was trained on (:func:`model_dataset`) when the store has it and the tiles can join it
    (:func:`check_parent`), else None (the corrections alone), with a line saying which parent to give. A line
    says which parent was chosen and why."""
    try:
        latest = load_version(f"{dataset}@latest", store)
    except FileNotFoundError:
        latest = None
    if latest is not None:
        check_parent(bundle, manifest, latest)
        _say(bundle, f"parent {latest.ref}, the latest version of {dataset} (a later round adds to the last)")
        return latest
    model, trained_on = model_dataset(manifest)
    why = f"the dataset version {model} was trained on is not recorded (its metrics.json names none)"
    if trained_on:
        try:
            chosen = load_version(trained_on, store)
            check_parent(bundle, manifest, chosen)
        except FileNotFoundError:
            why = f"{model} was trained on {trained_on}, which is not in the store {store}"
        except BundleError as err:
            why = f"{model} was trained on {trained_on}, which the tiles cannot join ({err})"
        else:
            _say(bundle, f"parent {chosen.ref}, the dataset version {model} was trained on")
            return chosen
    _say(bundle, f"no parent: {why}. The new version holds the corrected tiles alone, without validation or test "
                 f"images: `cellscale train` takes it only with --fit-only. To stack the corrections on the data "
                 f"the model learnt from, import again with --parent NAME@ID (that data's version, or one of its "
                 f"corrections; `cellscale data list`)")
    return None


def check_lineage(bundle: Path, manifest: dict, parent: Manifest, store: Path) -> None:
    """Warn (not refuse) when a ``--parent`` is neither the version the bundle's model was trained on nor descends
    from it: the fine-tune would learn from, and be compared on, data its model did not start from."""
    model, trained_on = model_dataset(manifest)
    if not trained_on:
        return
    chain = lineage(parent.ref, store)
    if trained_on in {m.ref for m in chain} | {m.parent for m in chain}:
        return
    line = " <- ".join(m.ref for m in chain) + (f" <- {chain[-1].parent}" if chain[-1].parent else "")
    _say(bundle, f"warning: --parent {parent.ref} is neither {trained_on}, the dataset version {model} was trained "
                 f"on, nor descends from it (its lineage: {line}); the fine-tune then learns from data {model} "
                 f"did not and is compared on that data's test images. Imported as asked")


def _labels_hash(version: Manifest, entry) -> str | None:
    """The recorded ``labels_sha256`` of a version's corrected labels file; of its values where an older import
    did not record it (None when the file is not here)."""
    recorded = entry.metadata.get("labels_sha256")
    path = version.abspath(entry)
    return recorded or (labels_sha256(read_labels(path)) if path.is_file() else None)


def imported_before(parent: Manifest, source: str, tiles: set[str], store: Path) -> dict[tuple[str, str], tuple]:
    """The corrected labels of ``tiles`` (their ``<sample>_y<Y0>_x<X0>`` names) of one source image that ``parent``
    and the versions it descends from hold: (tile name, labels hash) -> (the oldest version holding them, its
    annotator, whether ``parent`` holds them)."""
    found: dict[tuple[str, str], tuple] = {}
    for version in lineage(parent.ref, store):  # the parent first: the oldest version holding a tile's labels wins
        for f in version.files:
            meta = version.metadata_of(f)
            if f.metadata.get("sample") in tiles and meta.get("role") == "labels" and meta.get("source") == source:
                digest = _labels_hash(version, f)
                if digest:
                    key = (f.metadata["sample"], digest)
                    in_parent = found[key][2] if key in found else version.ref == parent.ref
                    found[key] = (version.ref, meta.get("annotator"), in_parent)
    return found


def import_bundle(bundle: str | os.PathLike, dataset: str, annotator: str | None = None, parent: str | None = None,
                  licence: str | None = None, store: str | os.PathLike | None = None):
    """Record the bundle's corrected tiles as a new version of ``dataset``; returns its Manifest."""
    bundle = Path(bundle)
    manifest, corrected = read_corrections(bundle)
    annotator = annotator or getpass.getuser()
    store = Path(store) if store is not None else default_store()
    if parent is None:
        parent_manifest = default_parent(bundle, manifest, dataset, store)
    else:
        parent_manifest = load_version(parent, store)
        check_parent(bundle, manifest, parent_manifest)
        check_lineage(bundle, manifest, parent_manifest, store)
    parent = parent_manifest.ref if parent_manifest else None
    sample, compartment = manifest["sample"], manifest["compartment"]
    info = manifest["image"]
    source = f"cellscale review of sample {sample} ({info['path']}, SHA-256 {info['sha256']})"
    for tile in corrected:
        tile["sample"] = f"{sample}_y{tile['box'][0]}_x{tile['box'][2]}"
        tile["corrected_sha256"] = labels_sha256(tile["labels"])
    # a tile's labels imported before (by anyone) are not imported again; labels that differ are a second correction
    # of the tile: its copies in the parent are left out of the new version, which holds one copy of each tile
    before = imported_before(parent_manifest, source, {t["sample"] for t in corrected}, store) \
        if parent_manifest else {}
    again = [(t, before[(t["sample"], t["corrected_sha256"])]) for t in corrected
             if (t["sample"], t["corrected_sha256"]) in before]
    said = "; ".join(f"{t['name']} ({t['sample']}): in {ref} already (annotator {who or 'not recorded'})"
                     for t, (ref, who, _) in again)
    corrected = [t for t in corrected if (t["sample"], t["corrected_sha256"]) not in before]
    if not corrected and all(who == annotator and in_parent for _, (_, who, in_parent) in again):
        # the same corrections by the same person imported again: the parent is their version (as add_version
        # says of a version that changes nothing of its parent)
        _say(bundle, f"nothing changed relative to the parent {parent}, which holds these corrections ({said}); "
                     f"no new version: {parent} is it")
        return parent_manifest
    if not corrected:
        raise BundleError(f"bundle {bundle}: nothing new to import: the corrected labels of every tile are in the "
                          f"parent's lineage: {said}. A tile is imported again only when its labels differ")
    if again:
        _say(bundle, f"not imported again, the same labels as before: {said}")
    tiles = {t["sample"] for t in corrected}  # once, not per parent file
    superseded = [f.path for f in (parent_manifest.files if parent_manifest else [])
                  if f.metadata.get("sample") in tiles and parent_manifest.metadata_of(f).get("source") == source]
    key = hashlib.sha256("".join([info["sha256"], manifest["created"], annotator,
                                  *(t["corrected_sha256"] for t in corrected)]).encode()).hexdigest()[:12]
    root = store_base(store) / CORRECTIONS_ROOT / dataset / key
    root.mkdir(parents=True, exist_ok=True)
    roles = {k: v for k, v in (info.get("roles") or {}).items() if v is not None}
    channels = roles or ({"nuclear": 0} if info["shape"][1] == 1 else None)
    # what every image of the bundle shares: its channels' roles and how the model normalised the whole image
    image_meta = {key: value for key, value in (("channels", channels), ("normalisation", info.get("normalisation")))
                  if value}
    # the ontology goes on each file: on top of a parent, the set's metadata stays the parent's. The licence is
    # the source image's, not the parent's (generated tissue's licence says nothing of a user's CODEX tile), unless
    # an earlier round of this image's corrections in the parent named one
    earlier = [parent_manifest.metadata_of(f) for f in parent_manifest.files] if parent_manifest else []
    licence = licence or next((m["licence"] for m in earlier if m.get("source") == source and m.get("licence")),
                              "as the source image's")
    ontology = {"compartments": [compartment], "annotator": annotator, "source": source, "licence": licence}
    if info.get("pixel_size_um"):
        ontology["pixel_size_um"] = info["pixel_size_um"]
    files = []
    for tile in corrected:
        name = tile["sample"]
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
                                                        "labels_sha256": tile["corrected_sha256"],
                                                        "exported_labels_sha256": tile["labels_sha256"]}})
    metadata = {} if parent_manifest else {**ontology, "review": {"model": manifest["model"]}}
    note = (f"{len(corrected)} of {len(manifest['tiles'])} tiles of {sample} corrected by {annotator} "
            f"(review bundle {bundle.name}: {', '.join(t['name'] for t in corrected)})")
    return add_version(dataset, root, files=files, metadata=metadata, parent=parent, note=note, store=store,
                       inherit=parent is not None, drop=superseded)
