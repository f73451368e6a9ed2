"""Review: the least-sure tiles of a sample as an OME-Zarr correction bundle, read back with the ome-zarr library
and corrected tiles imported as a dataset version; refusals."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from support import MODELS

from cellscale.cli import main
from cellscale.datasets import list_versions, load_version, verify
from cellscale.io import read_image, read_labels, write_image, write_labels
from cellscale.review import (
    BundleError,
    ReviewOptions,
    export_review,
    import_bundle,
    labels_sha256,
    locate,
    read_manifest,
    score_sample,
    score_tiles,
    sha256_path,
    tile_grid,
)
from cellscale.review.uncertainty import tile_signals
from cellscale.segment.predictor import Predictor
from cellscale.synth.tissue import make_tissue

OPTIONS = ReviewOptions(n_tiles=4, tile=64)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """A 256 x 256 generated nuclear image (OME-TIFF) and 'current labels': the true nuclei with two neighbours
    merged into one implausible object (what a person would fix)."""
    folder = tmp_path_factory.mktemp("sample")
    tissue = make_tissue((256, 256), n_cells=40, seed=3)
    image, labels = tissue.image[:1], tissue.nuclear.copy()
    a, b = 5, 6
    labels[labels == b] = a
    write_image(folder / "img.ome.tif", image, ["DNA"])
    write_labels(folder / "nuclear.ome.tif", labels)
    return folder


@pytest.fixture(scope="module")
def predictor():
    return Predictor(MODELS / "nuclear", augment="none", precision="int8")


@pytest.fixture(scope="module")
def inputs(sample):
    return locate(sample / "results", "img", image=sample / "img.ome.tif", labels=sample / "nuclear.ome.tif",
                  model=MODELS / "nuclear")


@pytest.fixture(scope="module")
def bundle(predictor, inputs, tmp_path_factory):
    path = tmp_path_factory.mktemp("bundles") / "least"
    export_review(predictor, inputs, path, OPTIONS)
    return path


def _copy(bundle: Path, tmp_path: Path) -> Path:
    out = tmp_path / "bundle"
    shutil.copytree(bundle, out)
    return out


def test_the_k_tiles_are_the_k_highest_scores_deterministic_and_apart(predictor, inputs, bundle, tmp_path):
    manifest = read_manifest(bundle)
    tiles, _ = score_sample(predictor, inputs, OPTIONS)
    assert len(tiles) == 16 and manifest["selection"]["candidates"] == 16
    ranked = sorted(tiles, key=lambda t: (-t.score, t.index))
    chosen = manifest["tiles"]
    assert [tuple(t["box"]) for t in chosen] == [t.box for t in ranked[:4]]
    assert [t["score"] for t in chosen] == pytest.approx([t.score for t in ranked[:4]])
    assert min(t["score"] for t in chosen) >= max(t.score for t in ranked[4:])
    assert all(set(t["signals"]) == {"disagreement", "boundary", "shape"} for t in chosen)
    for i, a in enumerate(chosen):  # no two tiles overlap
        for b in chosen[i + 1:]:
            ay0, ay1, ax0, ax1 = a["box"]
            by0, by1, bx0, bx1 = b["box"]
            assert ay1 <= by0 or by1 <= ay0 or ax1 <= bx0 or bx1 <= ax0
    # the merged object (labels 5 + 6) is in the least-sure tile's neighbourhood of odd shapes
    odd = max(tiles, key=lambda t: t.signals["shape"])
    assert odd.box in [tuple(t["box"]) for t in chosen]
    again = export_review(predictor, inputs, tmp_path / "again", OPTIONS)
    assert [(t["box"], t["score"], t["labels_sha256"]) for t in again["tiles"]] == \
        [(t["box"], t["score"], t["labels_sha256"]) for t in chosen]
    assert manifest["model"]["name"] == predictor.spec.name and len(manifest["model"]["weights_sha256"]) == 64
    assert manifest["model"]["weights_sha256"] == sha256_path(MODELS / "nuclear" / predictor.spec.artifact)
    assert manifest["image"]["sha256"] and manifest["sample"] == "img" and manifest["created"]


def test_random_choice_is_seeded(predictor, inputs, tmp_path):
    opts = ReviewOptions(n_tiles=4, tile=64, random=True, seed=1)
    first = export_review(predictor, inputs, tmp_path / "r1", opts)
    second = export_review(predictor, inputs, tmp_path / "r2", opts)
    other = export_review(predictor, inputs, tmp_path / "r3", ReviewOptions(n_tiles=4, tile=64, random=True, seed=2))
    boxes = [t["box"] for t in first["tiles"]]
    assert boxes == [t["box"] for t in second["tiles"]] and len({tuple(b) for b in boxes}) == 4
    assert boxes != [t["box"] for t in other["tiles"]]
    assert first["selection"] == {**first["selection"], "method": "random", "seed": 1}


def test_score_follows_the_signals():
    """Synthetic maps: the passes disagree in one tile only, boundary probability sits inside cells of another,
    a third holds a huge non-convex cell; each signal is highest where it should be, and the score weights them."""
    shape = (128, 128)
    plain = np.zeros((4, *shape), np.float32)
    plain[1] = 1.0  # background everywhere ...
    labels = np.zeros(shape, np.int32)
    for k, (y, x) in enumerate([(10, 10), (10, 40), (40, 10), (40, 40), (10, 80), (40, 80)], start=1):
        labels[y:y + 12, x:x + 12] = k  # six plausible square cells
    labels[80:120, 70:120] = 7  # an L-shaped giant in the bottom right tile
    labels[80:100, 90:120] = 0
    turned = plain.copy()
    turned[1, 70:120, 10:50] = 0.0  # ... except where the turned pass sees interior (bottom left tile)
    turned[3, 70:120, 10:50] = 1.0
    plain[2, 40:52, 80:92] = 0.9  # boundary probability inside cell 6 (top right tile)
    turned[2, 40:52, 80:92] = 0.9
    boxes = tile_grid(shape, 64)
    assert boxes == [(0, 64, 0, 64), (0, 64, 64, 128), (64, 128, 0, 64), (64, 128, 64, 128)]
    tiles = score_tiles(tile_signals(plain, turned, labels, boxes))
    best = {name: max(tiles, key=lambda t: t.signals[name]).box for name in ("disagreement", "boundary", "shape")}
    assert best == {"disagreement": (64, 128, 0, 64), "boundary": (0, 64, 64, 128), "shape": (64, 128, 64, 128)}
    assert tiles[2].score == pytest.approx(0.5) and tiles[0].score < 0.26
    assert tile_grid((100, 300), 64, region=(0, 100, 0, 200)) == [(0, 64, 0, 64), (0, 64, 64, 128),
                                                                   (0, 64, 128, 192)]


def test_bundle_reads_back_with_ome_zarr(bundle, sample):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Multiscales, Reader

    manifest = read_manifest(bundle)
    image = read_image(sample / "img.ome.tif")[0]
    labels = read_labels(sample / "nuclear.ome.tif")
    for tile in manifest["tiles"]:
        y0, y1, x0, x1 = tile["box"]
        nodes = list(Reader(parse_url(str(bundle / tile["path"])))())
        img = [n for n in nodes if any(isinstance(s, Multiscales) for s in n.specs)
               and not any(isinstance(s, Label) for s in n.specs)]
        lab = [n for n in nodes if any(isinstance(s, Label) for s in n.specs)]
        assert len(img) == 1 and len(lab) == 1
        np.testing.assert_array_equal(np.asarray(img[0].data[0]), image[:, y0:y1, x0:x1])
        np.testing.assert_array_equal(np.asarray(lab[0].data[0]), labels[y0:y1, x0:x1])
        assert labels_sha256(np.asarray(lab[0].data[0])) == tile["labels_sha256"]
        attrs = json.loads((bundle / tile["path"] / "labels" / "nuclear" / "zarr.json").read_text())["attributes"]
        assert attrs["ome"]["version"] == "0.5" and "image-label" in attrs["ome"]


def test_bundle_tiles_open_with_naparis_reader(bundle, sample):
    """docs/correct.md step 2: napari-ome-zarr's reader (headless) gives each tile's image and its labels layer."""
    from napari_ome_zarr import napari_get_reader

    image = read_image(sample / "img.ome.tif")[0]
    labels = read_labels(sample / "nuclear.ome.tif")
    for tile in read_manifest(bundle)["tiles"]:
        y0, y1, x0, x1 = tile["box"]
        path = str(bundle / tile["path"])
        layers = napari_get_reader(path)(path)
        assert sorted(kind for _, _, kind in layers) == ["image", "labels"]
        for data, _, kind in layers:
            level0 = np.asarray(data[0] if isinstance(data, list) else data)
            want = image[:, y0:y1, x0:x1] if kind == "image" else labels[y0:y1, x0:x1]
            np.testing.assert_array_equal(level0, want)


def test_ngff_04_tiles_on_zarr_v2_read_back(tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    from cellscale.review import read_tile, write_tile

    image = np.arange(2 * 32 * 48, dtype=np.uint16).reshape(2, 32, 48)
    labels = (np.arange(32 * 48).reshape(32, 48) // 200).astype(np.uint32)
    write_tile(tmp_path / "t.zarr", image, labels, "nuclear", ngff="0.4")
    assert (tmp_path / "t.zarr" / ".zattrs").is_file()  # Zarr v2
    assert json.loads((tmp_path / "t.zarr" / ".zattrs").read_text())["multiscales"][0]["version"] == "0.4"
    assert len(list(Reader(parse_url(str(tmp_path / "t.zarr")))())) == 3  # image, labels group, label image
    got, got_labels = read_tile(tmp_path / "t.zarr")
    np.testing.assert_array_equal(got, image)
    np.testing.assert_array_equal(got_labels["nuclear"], labels)
    # read as the 0.4 it is: no "version mismatch" from ome-zarr. In a fresh process: importing spatialdata (other
    # tests of this worker) replaces ome-zarr's list of formats with its own, whose 0.4 is another class
    read = subprocess.run([sys.executable, "-c", "import logging, sys; logging.basicConfig(); "
                           "from cellscale.review import read_tile; read_tile(sys.argv[1])", str(tmp_path / "t.zarr")],
                          capture_output=True, text=True, timeout=120)
    assert read.returncode == 0 and "version mismatch" not in read.stderr, read.stderr[-2000:]


def test_import_makes_a_version_of_exactly_the_corrected_tiles(bundle, tmp_path, capsys):
    store = tmp_path / "data" / "versions"
    work = _copy(bundle, tmp_path)
    manifest = read_manifest(work)
    tile = manifest["tiles"][2]
    from cellscale.review import read_tile

    _, labels = read_tile(work / tile["path"])
    fixed = labels["nuclear"].astype(np.int32)  # napari saves int32 labels as often as not: values count, not dtype
    fixed[fixed == fixed.max()] = 0
    tifffile.imwrite(work / "corrected" / "tile_002.tif", fixed)
    tifffile.imwrite(work / "corrected" / "tile_000.tif", labels_of(work, manifest, 0))  # saved unchanged
    version = import_bundle(work, "corrections", annotator="alice", store=store)
    assert version.parent is None and len(version.files) == 2
    roles = {f.metadata["role"]: f for f in version.files}
    assert set(roles) == {"image", "labels"}
    for f in version.files:
        assert f.metadata["tile"] == "tile_002" and f.metadata["annotator"] == "alice"
        assert f.metadata["corrected"].startswith("20") and f.metadata["box"] == tile["box"]
        assert f.metadata["sample"] == f"img_y{tile['box'][0]}_x{tile['box'][2]}" and f.metadata["split"] == "train"
    assert roles["labels"].metadata["compartment"] == "nuclear"
    assert verify(version) == []
    np.testing.assert_array_equal(read_labels(version.abspath(roles["labels"])), fixed)
    y0, y1, x0, x1 = tile["box"]
    source = read_image(Path(manifest["image"]["path"]))[0]
    np.testing.assert_array_equal(read_image(version.abspath(roles["image"]))[0], source[:, y0:y1, x0:x1])
    assert load_version("corrections@latest", store).id == version.id

    # a second round edits a tile in place in its OME-Zarr labels: a new version on top of the first
    import zarr

    arr = zarr.open_array(str(work / "tile_003.zarr" / "labels" / "nuclear" / "s0"), mode="r+")
    arr[:8, :8] = 77
    second = import_bundle(work, "corrections", annotator="bob", store=store)
    assert second.parent == version.ref
    new = [f for f in second.files if f.metadata.get("annotator") == "bob"]
    # tile_002's labels are alice's, in the parent already: not imported again under bob's name
    assert {f.metadata["tile"] for f in new} == {"tile_003"}
    assert {Path(p).name for p in second.changes["added"]} == {f.path for f in new}
    assert len(second.files) == 2 + 2  # the parent's pair and this round's pair

    # the same corrections imported from a copy of the bundle elsewhere are the version they were
    elsewhere = tmp_path / "moved" / work.name
    shutil.copytree(work, elsewhere)
    assert import_bundle(elsewhere, "corrections", annotator="bob", parent=version.ref, store=store).ref == second.ref
    assert len(list_versions(store, "corrections")) == 2
    # whose labels the version holds: the set's metadata is the first round's, each round's files say their own
    assert [(g["annotator"], g["files"]) for g in second.annotations()] == [("alice", 1), ("bob", 1)]
    capsys.readouterr()
    assert main(["data", "--store", str(store), "show", second.ref]) == 0
    shown = capsys.readouterr().out
    assert "annotator: alice" in shown and "  1 label file(s): annotator bob; source cellscale review of sample img" \
        in shown and "  1 label file(s): annotator alice;" in shown


def test_imported_tiles_train_as_the_model_saw_them_in_the_whole_image(bundle, inputs, tmp_path):
    """A tile's training input is normalised on its whole image's ranges (recorded at export), not its own."""
    from cellscale.io import ImageSource
    from cellscale.review import read_tile
    from cellscale.segment.preprocess import normalize, percentile_range
    from cellscale.segment.tiles import input_ranges
    from cellscale.train.versions import TrainingSet

    work = _copy(bundle, tmp_path)
    manifest = read_manifest(work)
    with ImageSource.open(inputs.image) as source:
        _, whole = input_ranges(source, {}, ["nuclear"])
    recorded = manifest["image"]["normalisation"]
    assert recorded["inputs"] == ["nuclear"] and recorded["recipe"]["indices"] == [0]
    np.testing.assert_allclose(recorded["ranges"], whole)
    tile = manifest["tiles"][1]
    image, labels = read_tile(work / tile["path"])
    fixed = labels["nuclear"].copy()
    fixed[fixed == fixed.max()] = 0
    tifffile.imwrite(work / "corrected" / "tile_001.tif", fixed)
    version = import_bundle(work, "corrections", annotator="alice", store=tmp_path / "versions")
    [example] = TrainingSet(version.ref, version).examples("train")
    expected = normalize(image.astype(np.float32), np.asarray(whole))
    np.testing.assert_allclose(example.image, expected, rtol=1e-6)
    own = normalize(image.astype(np.float32), percentile_range(image.astype(np.float32)))
    assert np.abs(example.image - own).max() > 0.01  # the tile's own percentiles stretch it otherwise
    np.testing.assert_array_equal(example.labels["nuclear"], fixed)
    # the tile's edges inside the image cut cells (their distance targets are unknown); the image's own do not
    y0, y1, x0, x1 = tile["box"]
    assert example.cut == (y0 > 0, y1 < 256, x0 > 0, x1 < 256) and any(example.cut)


def test_training_warns_when_tiles_are_smaller_than_its_crop():
    """Corrected 128-px tiles under a 256-px crop are mostly zero padding: `cellscale train` says so and names a
    crop that fits (a multiple of the network's 2**depth)."""
    from cellscale.train.data import Example
    from cellscale.train.run import small_examples_note

    generated = Example("g", "tissue", np.zeros((2, 512, 512), np.float32), {})
    tile = Example("t", "tissue", np.zeros((2, 128, 120), np.float32), {})
    assert small_examples_note([generated, generated], 256, 16) is None
    note = small_examples_note([generated, tile, tile], 256, 16)
    assert "2 of 3 training images" in note and "smallest 120 px" in note and "--tile 112" in note
    assert small_examples_note([generated, tile], 112, 16) is None


def labels_of(bundle: Path, manifest: dict, i: int) -> np.ndarray:
    from cellscale.review import read_tile

    return read_tile(bundle / manifest["tiles"][i]["path"])[1]["nuclear"]


def test_import_refuses_bad_bundles(bundle, tmp_path, predictor, inputs, sample, capsys):
    store = tmp_path / "data" / "versions"
    work = _copy(bundle, tmp_path)
    with pytest.raises(BundleError, match=r"nothing corrected"):
        import_bundle(work, "x", store=store)
    manifest = read_manifest(work)
    # labels whose shape is not their image's
    tifffile.imwrite(work / "corrected" / "tile_001.tif", labels_of(work, manifest, 1)[:50])
    with pytest.raises(BundleError, match=rf"{re.escape(str(work))}.*tile_001.*shape \(50, 64\) do not match.*64 x 64"):
        import_bundle(work, "x", store=store)
    # labels that are not integers
    tifffile.imwrite(work / "corrected" / "tile_001.tif", labels_of(work, manifest, 1).astype(np.float32))
    with pytest.raises(BundleError, match=r"tile_001.*integer"):
        import_bundle(work, "x", store=store)
    assert not store.exists()  # nothing recorded

    # a source image that changed since the export
    moved = tmp_path / "img.ome.tif"
    shutil.copy(sample / "img.ome.tif", moved)
    inputs_copy = type(inputs)(**{**inputs.__dict__, "image": moved})
    other = tmp_path / "other"
    export_review(predictor, inputs_copy, other, ReviewOptions(n_tiles=1, tile=64))
    tifffile.imwrite(other / "corrected" / "tile_000.tif", np.zeros((64, 64), np.uint32))
    image = read_image(moved)[0]
    image[0, 0, 0] += 1
    write_image(moved, image, ["DNA"])
    changed = rf"bundle {re.escape(str(other))}: source image .*img.ome.tif changed since the export"
    with pytest.raises(BundleError, match=changed):
        import_bundle(other, "x", store=store)
    # a source image that is not here (corrected on another machine): the tiles' own crops are checked, and it says
    # so; a file in corrected/ that is no tile's is named, not imported
    moved.unlink()
    tifffile.imwrite(other / "corrected" / "tile_1.tif", np.zeros((64, 64), np.uint32))
    version = import_bundle(other, "x", store=store)
    err = capsys.readouterr().err
    assert f"its source image {moved} is not here" in err and "tile_1.tif in corrected/ is no tile's labels" in err
    assert sorted(f.metadata["tile"] for f in version.files) == ["tile_000", "tile_000"]
    import zarr  # ... and an altered tile image is still refused

    array = zarr.open_array(str(other / "tile_000.zarr" / "s0"), mode="r+")
    array[(0,) * array.ndim] += 1
    with pytest.raises(BundleError, match=r"tile_000.*differs from the exported crop"):
        import_bundle(other, "y", store=store)


def _one_tile_corrected(bundle: Path, tmp_path: Path) -> tuple[Path, dict]:
    """A copy of the bundle with tile_001's largest label erased (saved to corrected/), and its manifest."""
    work = _copy(bundle, tmp_path)
    manifest = read_manifest(work)
    fixed = labels_of(work, manifest, 1)
    fixed[fixed == fixed.max()] = 0
    tifffile.imwrite(work / "corrected" / "tile_001.tif", fixed)
    return work, manifest


def _parent(store: Path, root: Path, name: str, compartment: str, channels: dict | None):
    """A one-image version annotating ``compartment``, its image's channels ``channels``."""
    from cellscale.datasets import add_version

    root.mkdir()
    write_image(root / "a.ome.tif", np.zeros((2, 32, 32), np.uint16), ["DNA", "membrane"])
    write_labels(root / f"a.{compartment}.tif", np.zeros((32, 32), np.uint32))
    files = [{"path": "a.ome.tif", "metadata": {"sample": "a", "role": "image"}},
             {"path": f"a.{compartment}.tif", "metadata": {"sample": "a", "role": "labels",
                                                           "compartment": compartment}}]
    metadata = {"source": "test", "licence": "CC0", "compartments": [compartment], "channels": channels}
    return add_version(name, root, files=files, metadata=metadata, store=store)


def test_import_refuses_a_parent_the_tiles_cannot_join(bundle, tmp_path):
    """The corrections join their model's training set: a parent that does not annotate the bundle's compartment,
    or whose images lack a channel the bundle's model reads, is refused (naming both) and nothing is written."""
    store = tmp_path / "data" / "versions"
    work, manifest = _one_tile_corrected(bundle, tmp_path)
    cells = _parent(store, tmp_path / "cells", "cells", "whole_cell", {"nuclear": 0, "membrane": 1})
    with pytest.raises(BundleError, match=rf"bundle {re.escape(str(work))}: its nuclear labels cannot join "
                                          rf"{cells.ref}, which annotates whole_cell; .*models show nuclear"):
        import_bundle(work, "x", parent=cells.ref, store=store)
    # a tissue model's bundle (it reads a membrane channel) on a set of nuclear images only
    manifest["image"]["normalisation"]["inputs"] = ["nuclear", "membrane"]
    (work / "bundle.json").write_text(json.dumps(manifest))
    nuclei = _parent(store, tmp_path / "nuclei", "nuclei", "nuclear", None)
    with pytest.raises(BundleError, match=rf"the model nuclear reads a membrane channel, and no image of "
                                          rf"{nuclei.ref} has one"):
        import_bundle(work, "x", parent=nuclei.ref, store=store)
    assert not (tmp_path / "data" / "corrections").exists() and len(list_versions(store, "x")) == 0
    tissue = _parent(store, tmp_path / "tissue", "tissue", "nuclear", {"nuclear": 0, "membrane": 1})
    assert import_bundle(work, "x", parent=tissue.ref, store=store).parent == tissue.ref


def test_renumbered_cells_are_no_correction_and_an_erased_tile_is_named(bundle, tmp_path, capsys, caplog):
    """A tile saved with its exported cells under other ids (uint16, shuffled) is not corrected and not imported; a
    tile with every cell erased is imported (background) with a warning naming it."""
    store = tmp_path / "data" / "versions"
    work, manifest = _one_tile_corrected(bundle, tmp_path)
    exported = labels_of(work, manifest, 0)
    ids = np.random.default_rng(0).permutation(int(exported.max()) + 1) * 3 + 1000
    ids[0] = 0
    tifffile.imwrite(work / "corrected" / "tile_000.tif", ids[exported].astype(np.uint16))
    tifffile.imwrite(work / "corrected" / "tile_003.tif", np.zeros_like(exported, np.uint8))
    # tile_002's labels rewritten (int32, unchanged) by ome-zarr's writer as a script would: no image-label source
    import zarr
    from ome_zarr.writer import write_labels as write_ngff_labels

    shutil.rmtree(work / "tile_002.zarr" / "labels" / "nuclear")
    write_ngff_labels(labels_of(bundle, manifest, 2).astype(np.int32), zarr.open_group(str(work / "tile_002.zarr")),
                      name="nuclear", scaler=None, scale_factors=[], axes="yx")
    version = import_bundle(work, "x", store=store)
    assert sorted({f.metadata["tile"] for f in version.files}) == ["tile_001", "tile_003"]
    err = capsys.readouterr().err
    assert "tile_000: the saved labels are the exported cells under other ids: not corrected" in err
    assert not [r for r in caplog.records if "no parent found" in r.getMessage()]  # the reader's noise
    n = manifest["tiles"][3]["n_labels"]
    assert n > 0 and f"tile tile_003: every cell is erased in {work / 'corrected' / 'tile_003.tif'} ({n} exported)" in err


def test_corrections_keep_their_images_licence_not_the_parents(bundle, tmp_path):
    """The corrected tiles are crops of the user's image: they do not take the parent's licence (generated tissue's
    'no third-party rights' on a CODEX tile); a licence given for an earlier round of the same image carries on."""
    store = tmp_path / "data" / "versions"
    work, manifest = _one_tile_corrected(bundle, tmp_path)
    generated = _parent(store, tmp_path / "generated", "generated", "nuclear", None)
    first = import_bundle(work, "x", parent=generated.ref, store=store)
    assert {first.metadata_of(f)["licence"] for f in first.files if f.metadata.get("tile")} == {"as the source image's"}
    assert {first.metadata_of(f)["licence"] for f in first.files if not f.metadata.get("tile")} == {"CC0"}
    mine = import_bundle(work, "mine", parent=generated.ref, licence="CC-BY-4.0", store=store)
    fixed = labels_of(work, manifest, 2)
    fixed[fixed == fixed.max()] = 0
    tifffile.imwrite(work / "corrected" / "tile_002.tif", fixed)
    second = import_bundle(work, "mine", store=store)
    assert second.parent == mine.ref
    assert {second.metadata_of(f)["licence"] for f in second.files if f.metadata.get("tile")} == {"CC-BY-4.0"}


def _trained_on(bundle: Path, manifest: dict, folder: Path, dataset: str) -> None:
    """Point the bundle at a copy of its model (in ``folder``) whose metrics.json says it was trained on
    ``dataset``."""
    folder.mkdir()
    for file in (MODELS / "nuclear").iterdir():
        if file.suffix == ".json":
            shutil.copy(file, folder / file.name)
        else:  # the weights, unchanged
            (folder / file.name).symlink_to(file)
    metrics = json.loads((folder / "metrics.json").read_text())
    (folder / "metrics.json").write_text(json.dumps({**metrics, "dataset": dataset}))
    manifest["model"]["path"] = str(folder)
    (bundle / "bundle.json").write_text(json.dumps(manifest))


def test_the_first_import_stacks_on_the_models_training_data(bundle, tmp_path, capsys):
    """Without --parent, a first import takes the version the bundle's model was trained on, when the store has it
    and the tiles can join it, and says so; otherwise it makes a version of the corrections alone and says which
    parent to give."""
    store = tmp_path / "data" / "versions"
    work, manifest = _one_tile_corrected(bundle, tmp_path)
    nuclei = _parent(store, tmp_path / "nuclei", "nuclei", "nuclear", None)
    _trained_on(work, manifest, tmp_path / "m1", nuclei.ref)
    version = import_bundle(work, "x", store=store)
    assert version.parent == nuclei.ref and len(version.files) == 2 + 2
    assert f"parent {nuclei.ref}, the dataset version nuclear@" in capsys.readouterr().err
    # a model trained on a version this store does not have: the corrections alone, and which parent to give
    _trained_on(work, manifest, tmp_path / "m2", "elsewhere@0123456789ab")
    alone = import_bundle(work, "y", store=store)
    err = capsys.readouterr().err
    assert alone.parent is None and len(alone.files) == 2
    assert "no parent: nuclear@" in err and "trained on elsewhere@0123456789ab, which is not in the store" in err
    assert "--parent NAME@ID" in err and "--fit-only" in err
    # ... and one the tiles cannot join (it annotates cell outlines): the corrections alone, saying why
    cells = _parent(store, tmp_path / "cells", "cells", "whole_cell", None)
    _trained_on(work, manifest, tmp_path / "m3", cells.ref)
    assert import_bundle(work, "z", store=store).parent is None
    assert f"trained on {cells.ref}, which the tiles cannot join" in capsys.readouterr().err
    # a model folder that is not here is found in the registry by its name and weights
    from cellscale.registry import model_entry

    manifest["model"]["path"] = str(tmp_path / "moved")
    (work / "bundle.json").write_text(json.dumps(manifest))
    assert import_bundle(work, "w", store=store).parent is None
    assert f"trained on {model_entry(MODELS / 'nuclear').dataset}, which is not in the store" in capsys.readouterr().err


def test_a_parent_off_the_models_lineage_is_warned_of(bundle, tmp_path, capsys):
    """--parent is taken as given, with a warning naming both when it neither is the version the model was trained
    on nor descends from it."""
    store = tmp_path / "data" / "versions"
    work, manifest = _one_tile_corrected(bundle, tmp_path)
    nuclei = _parent(store, tmp_path / "nuclei", "nuclei", "nuclear", None)
    other = _parent(store, tmp_path / "other", "other", "nuclear", {"nuclear": 0})
    _trained_on(work, manifest, tmp_path / "model", nuclei.ref)
    assert import_bundle(work, "x", parent=other.ref, store=store).parent == other.ref
    err = capsys.readouterr().err
    assert f"warning: --parent {other.ref} is neither {nuclei.ref}, the dataset version nuclear@" in err
    assert "nor descends from it" in err
    first = import_bundle(work, "y", parent=nuclei.ref, store=store)  # the model's own data: no warning
    fixed = labels_of(work, manifest, 2)
    fixed[fixed == fixed.max()] = 0
    tifffile.imwrite(work / "corrected" / "tile_002.tif", fixed)
    assert import_bundle(work, "z", parent=first.ref, store=store).parent == first.ref  # descends from it
    assert "warning" not in capsys.readouterr().err


def test_the_same_labels_are_not_imported_twice_and_a_new_correction_replaces_the_old(bundle, tmp_path, capsys):
    """Importing a bundle again under another annotator records nothing (the version holding the labels is named);
    a tile corrected again with other labels replaces its earlier copy, so training sees one copy, the latest."""
    from cellscale.train.versions import TrainingSet

    store = tmp_path / "data" / "versions"
    work, manifest = _one_tile_corrected(bundle, tmp_path)
    first = import_bundle(work, "x", annotator="alice", store=store)
    with pytest.raises(BundleError, match=rf"bundle {re.escape(str(work))}: nothing new.*tile_001 \(img_y\d+_x\d+\): "
                                          rf"in {first.ref} already \(annotator alice\)"):
        import_bundle(work, "x", annotator="bob", store=store)
    assert len(list_versions(store, "x")) == 1 and len(list((tmp_path / "data" / "corrections" / "x").iterdir())) == 1
    latest = first
    for who in ("bob", "carol"):  # two more corrections of the same tile
        fixed = labels_of(work, manifest, 1)
        fixed[fixed == fixed.max()] = 0
        fixed[:4 if who == "bob" else 6, :] = 0
        tifffile.imwrite(work / "corrected" / "tile_001.tif", fixed)
        latest = import_bundle(work, "x", annotator=who, store=store)
        assert [latest.metadata_of(f)["annotator"] for f in latest.files] == [who, who]
        assert len(latest.changes["removed"]) == 2 and len(latest.changes["added"]) == 2
        pairs = TrainingSet(latest.ref, latest)._pairs("train")
        assert len(pairs) == 1
        labels = next(iter(pairs.values()))["labels"]["nuclear"]
        np.testing.assert_array_equal(read_labels(latest.abspath(labels)), fixed)


def test_import_takes_a_store_as_data_does(bundle, tmp_path, monkeypatch, capsys):
    """`review import --store DIR` records the version in DIR (and its files under DIR's checkout), as `cellscale
    data --store DIR` reads it, whatever $CELLSCALE_VERSIONS says."""
    store = tmp_path / "project" / "data" / "versions"
    monkeypatch.setenv("CELLSCALE_VERSIONS", str(tmp_path / "env" / "data" / "versions"))
    work, _ = _one_tile_corrected(bundle, tmp_path)
    assert main(["review", "import", str(work), "--dataset", "d", "--annotator", "alice", "--store", str(store)]) == 0
    assert "-> dataset version d@" in capsys.readouterr().out
    version = load_version("d@latest", store)
    assert version.root_path.is_relative_to(tmp_path / "project" / "data" / "corrections" / "d")
    assert not (tmp_path / "env").exists()
    assert main(["data", "--store", str(store), "show", version.ref]) == 0


@pytest.mark.parametrize("label_files", ["per_image", "per_batch"])
def test_command_line_finds_the_sample_in_results(sample, tmp_path, monkeypatch, capsys, label_files):
    """`cellscale review RESULTS --sample S` reads results/index.tsv and the sample sheet of config/config.yaml
    (paths relative to the project folder), its labels a file of their own or one series of the batch's file
    (batches.label_files), and `review import` reports a refusal with exit status 2."""
    from cellscale.io import write_label_series

    project = tmp_path / "project"
    (project / "config").mkdir(parents=True)
    (project / "results" / "batches" / "0000" / "labels" / "s1").mkdir(parents=True)
    (project / "data").mkdir()
    shutil.copy(sample / "img.ome.tif", project / "data" / "img.ome.tif")
    if label_files == "per_image":
        labels, series = "results/batches/0000/labels/s1/nuclear.ome.tif", ""
        shutil.copy(sample / "nuclear.ome.tif", project / labels)
    else:  # s1 is the second image of its batch's file
        labels, series = "results/batches/0000/nuclear.ome.tif", "1"
        own = read_labels(sample / "nuclear.ome.tif")
        write_label_series(project / labels, [("s0", np.zeros((16, 16), np.uint32), None), ("s1", own, None)])
    (project / "config" / "config.yaml").write_text(f"samples: config/samples.tsv\nmodels:\n"
                                                    f"  nuclear: {MODELS / 'nuclear'}\n")
    (project / "config" / "samples.tsv").write_text("sample\timage\tkind\ns1\tdata/img.ome.tif\ttissue\n")
    (project / "results" / "index.tsv").write_text(
        "sample\timage\tbatch\tstatus\tnuclear_labels\tlabels_series\n"
        f"s1\tdata/img.ome.tif\t0000\tok\t{labels}\t{series}\n")
    monkeypatch.chdir(tmp_path)  # not the project: paths are resolved against RESULTS/..
    monkeypatch.setenv("CELLSCALE_VERSIONS", str(tmp_path / "store" / "data" / "versions"))
    out = tmp_path / "b"
    assert main(["review", str(project / "results"), "--sample", "s1", "-n", "2", "--tile-size", "64",
                 "-o", str(out)]) == 0
    manifest = read_manifest(out)
    assert manifest["image"]["path"] == str((project / "data" / "img.ome.tif").resolve())
    assert len(manifest["tiles"]) == 2 and (out / "tile_001.zarr").is_dir() and (out / "corrected").is_dir()
    assert manifest["labels"]["path"] == str((project / labels).resolve())
    assert manifest["labels"].get("series") == ("s1" if series else None)
    assert main(["review", "import", str(out), "--dataset", "d"]) == 2
    assert "nothing corrected" in capsys.readouterr().err


@pytest.fixture(scope="module")
def float_predictor():
    return Predictor(MODELS / "nuclear", augment="none", precision="float32")


@pytest.mark.parametrize("scale", [None, 0.75])
def test_band_signals_equal_the_whole_frame_signals(sample, float_predictor, scale):
    """Row by row (windows kept while a later row needs them) gives the signals of the whole frame's maps,
    with several windows per frame and when the image is resampled to the model's grid."""
    from cellscale.io import ImageSource
    from cellscale.review.uncertainty import band_signals, two_pass_maps

    labels = read_labels(sample / "nuclear.ome.tif")
    boxes = tile_grid(labels.shape, 48)
    kwargs = dict(tile=128, overlap=16, scale=scale)
    with ImageSource.open(sample / "img.ome.tif") as source:
        plain, turned = two_pass_maps(float_predictor, source, {"nuclear": 0}, "nuclear", **kwargs)
        whole = tile_signals(plain, turned, labels, boxes)
        bands = band_signals(float_predictor, source, {"nuclear": 0}, "nuclear", labels, boxes, **kwargs)
    assert [t.box for t in bands] == boxes and [t.index for t in bands] == list(range(len(boxes)))
    for a, b in zip(whole, bands):  # float32 maps summed in another order: about 1e-6 apart, not 1e-3
        assert a.signals == pytest.approx(b.signals, rel=1e-5, abs=1e-9)
    assert max(t.signals["disagreement"] for t in bands) > 0 and max(t.signals["shape"] for t in bands) > 0


def test_training_on_corrections_alone_stops_before_fitting_and_says_how(bundle, tmp_path, monkeypatch, capsys):
    """Imported tiles are all `split: train`: without a parent that has val and test images, tuning and the card
    cannot be made. `cellscale train` says so before the first step (not after fitting), naming --parent and
    --fit-only; with --fit-only it trains."""
    store = tmp_path / "data" / "versions"
    work, manifest = _one_tile_corrected(bundle, tmp_path)
    version = import_bundle(work, "corrections", annotator="alice", store=store)
    monkeypatch.setenv("CELLSCALE_VERSIONS", str(store))
    args = ["train", "--data", version.ref, "--out", str(tmp_path / "m"), "--run-dir", str(tmp_path / "run"),
            "--steps", "2", "--batch", "2", "--tile", "64", "--base-filters", "4", "--depth", "2"]
    assert main(args) != 0
    err = capsys.readouterr().err
    assert f"dataset {version.ref}: no val or test examples" in err and "--parent" in err and "--fit-only" in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "m").exists()
    assert main([*args, "--fit-only"]) == 0
    assert (tmp_path / "m" / "model.keras").exists()


def test_review_says_what_is_missing_from_its_command_line(capsys):
    """A usage error as argparse's own: the command's usage line, what is missing, exit status 2."""
    for argv, said in (
            (["review", "results", "--image", "x.tif", "--labels", "y.tif", "-o", "bundle"],
             r"--sample S is required \(--sample names the tiles.*--image/--labels too\)$"),
            (["review", "results", "--sample", "s1"], r"-o BUNDLE is required$"),
            (["review", "import", "--dataset", "d"], r"review import needs BUNDLE and --dataset NAME$")):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.startswith("usage: cellscale review RESULTS"), err
        assert re.search(r"\ncellscale review: error: " + said, err.strip()), err


def test_review_reads_a_registry_name_from_the_config_or_model(sample, tmp_path):
    """The config may name a model `NAME@VERSION` (as the workflow reads it): review finds its folder, from the
    config and from --model."""
    from cellscale.registry import find_model

    ref = find_model("nuclear").ref
    project = tmp_path / "project"
    (project / "config").mkdir(parents=True)
    (project / "config" / "config.yaml").write_text(f"models:\n  nuclear: {ref}\n  tissue: tissue\n")
    (project / "config" / "samples.tsv").write_text(f"sample\timage\tkind\ns1\t{sample / 'img.ome.tif'}\tnuclear\n")
    for model in (None, ref, "nuclear"):  # --model: NAME@VERSION or a bare registry name, as train's --init-from
        found = locate(project / "results", "s1", labels=sample / "nuclear.ome.tif", model=model)
        assert Path(found.model).resolve() == (MODELS / "nuclear").resolve(), model
    with pytest.raises(FileNotFoundError, match=r"--model nosuch: no model 'nosuch' in the registry \(models: "):
        locate(project / "results", "s1", labels=sample / "nuclear.ome.tif", model="nosuch")
    with pytest.raises(FileNotFoundError, match=r"--model models/nosuch: no such model folder or file"):
        locate(project / "results", "s1", labels=sample / "nuclear.ome.tif", model="models/nosuch")


def test_an_image_outside_the_sheet_gets_its_channels_from_the_command_line(tmp_path, monkeypatch, capsys):
    """`review --image --labels` of a multichannel image the sheet does not list: a tissue model needs
    --membrane-channel, and the error says so (naming the sample and the model) instead of failing deep inside."""
    from support import DEMO

    monkeypatch.chdir(tmp_path)
    args = ["review", "results", "--sample", "t", "--image", str(DEMO / "synthetic" / "tissue.ome.tif"),
            "--labels", str(DEMO / "synthetic" / "tissue_truth" / "whole_cell.tif"), "--compartment", "whole_cell",
            "--model", str(MODELS / "tissue"), "-n", "1", "-o", "b"]
    assert main(args) == 2
    assert "sample 't'" in capsys.readouterr().err and not (tmp_path / "b").exists()
    assert main([*args, "--membrane-channel", "1"]) == 0
    assert read_manifest(tmp_path / "b")["tiles"][0]["name"] == "tile_000"


def test_review_of_an_image_of_one_file_per_channel(sample, tmp_path, monkeypatch, capsys):
    """A sample whose sheet image lists one file per channel ('data/w1.tif|data/w2.tif', relative to the project
    folder): review finds every file from another folder, the manifest names each and hashes them all, and import
    checks the image against that hash (a channel file changed since the export is refused, naming the image)."""
    project = tmp_path / "project"
    (project / "config").mkdir(parents=True)
    (project / "data").mkdir()
    image = read_image(sample / "img.ome.tif")[0]
    tifffile.imwrite(project / "data" / "w1.tif", image[0])
    tifffile.imwrite(project / "data" / "w2.tif", image[0] // 2)
    (project / "config" / "config.yaml").write_text(f"samples: config/samples.tsv\nmodels:\n"
                                                    f"  nuclear: {MODELS / 'nuclear'}\n")
    (project / "config" / "samples.tsv").write_text(
        "sample\timage\tkind\tnuclear_channel\ns1\tdata/w1.tif|data/w2.tif\ttissue\t0\n")
    monkeypatch.chdir(tmp_path)  # not the project: each file is resolved against RESULTS/..
    monkeypatch.setenv("CELLSCALE_VERSIONS", str(tmp_path / "store" / "data" / "versions"))
    out = tmp_path / "b"
    assert main(["review", str(project / "results"), "--sample", "s1", "--labels", str(sample / "nuclear.ome.tif"),
                 "-n", "1", "--tile-size", "64", "-o", str(out)]) == 0
    manifest = read_manifest(out)
    files = [(project / "data" / f).resolve() for f in ("w1.tif", "w2.tif")]
    assert manifest["image"]["path"] == f"{files[0]}|{files[1]}"
    assert manifest["image"]["sha256"] == sha256_path(manifest["image"]["path"]) != sha256_path(files[0])
    assert manifest["image"]["shape"][1] == 2
    tifffile.imwrite(files[1], image[0] // 3)  # the second channel changed since the export
    assert main(["review", "import", str(out), "--dataset", "d"]) == 2
    assert "changed since the export" in capsys.readouterr().err



@pytest.mark.parametrize("frame", [3])
def test_a_frame_the_movie_has_not_is_an_error_naming_the_sample(sample, tmp_path, monkeypatch, capsys, frame):
    """`review --frame F` of a 3-frame movie past its frames: an error naming the sample, the frame and how many
    there are, exit status 2 and no bundle (was an IndexError from the movie's labels). A negative frame is a usage
    error of the command line (test_cli_errors); the library's check refuses it too."""
    image, labels = read_image(sample / "img.ome.tif")[0, 0], read_labels(sample / "nuclear.ome.tif")
    write_image(tmp_path / "movie.ome.tif", np.stack([image] * 3), ["DNA"], axes="TYX")
    write_labels(tmp_path / "movie_nuclear.ome.tif", np.stack([labels] * 3))
    monkeypatch.chdir(tmp_path)
    assert main(["review", "results", "--sample", "m", "--image", "movie.ome.tif", "--labels", "movie_nuclear.ome.tif",
                 "--model", str(MODELS / "nuclear"), "--frame", str(frame), "-n", "1", "--tile-size", "64",
                 "-o", "b"]) == 2
    err = capsys.readouterr().err
    assert f"cellscale review: error: sample 'm': frame {frame}: movie.ome.tif has 3 frames (0 to 2)" in err, err
    assert not (tmp_path / "b").exists()
