"""A user's own data as a dataset version: a new store, a bare NAME for --data, masks that do not fit their images,
files that pair by accident, hand-edited manifests, and the same model registered twice."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import tifffile
from support import DEMO, MODELS

from cellscale.cli import main
from cellscale.datasets import add_version, load_version

META = {"compartments": ["nuclear"], "source": "my lab", "licence": "CC-BY 4.0"}
IDS = ["0bf4b144167694b6", "150b0ffa318c87b3", "9fb32aba1c2fd532"]  # the demo's; 150b... is the largest: train


@pytest.fixture()
def store(tmp_path, monkeypatch):
    """A store at DIR/data/versions that does not exist yet (a user's first `cellscale data add`)."""
    monkeypatch.setenv("CELLSCALE_VERSIONS", str(tmp_path / "data" / "versions"))
    return tmp_path / "data" / "versions"


@pytest.fixture()
def mine(tmp_path):
    """A user's folder of images and masks (the demo's three), at DIR/mine."""
    shutil.copytree(DEMO / "dsb2018", tmp_path / "mine")
    return tmp_path / "mine"


def pairs(split: dict[str, str] | None = None) -> list[dict]:
    split = split or dict(zip(IDS, ["val", "train", "test"]))
    return [{"path": f"{d}/{i}.{ext}", "metadata": {"sample": i, "role": role, "split": split[i]}}
            for i in IDS for d, ext, role in (("images", "png", "image"), ("masks", "tif", "labels"))]


def test_the_first_version_of_a_new_store_takes_an_absolute_root(store, mine, capsys):
    assert not store.exists()
    assert main(["data", "add", "mine", str(mine), "--compartments", "nuclear", "--meta", "source=my lab",
                 "--meta", "licence=CC-BY"]) == 0
    version = load_version("mine")
    assert version.root == "mine" and version.root_path == mine and len(version.files) == 7
    # a relative root is not the current folder's: the error says what it resolved against
    assert main(["data", "add", "other", "elsewhere", "--compartments", "nuclear"]) == 2
    assert f"resolves against the store's base {store.parents[1]}" in capsys.readouterr().err


def test_train_data_names_a_version_by_its_bare_name(store, mine, tmp_path, monkeypatch, capsys):
    from cellscale.train.options import TrainOptions
    from cellscale.train.versions import training_set

    version = add_version("mine", mine, files=pairs(), metadata=META)
    monkeypatch.chdir(tmp_path)  # a folder called mine here too, but no DSB2018 folder (no index.csv)
    options = TrainOptions(data="mine", out="o", run_dir="r")
    assert options.version and training_set(options).dataset == version.ref
    assert not TrainOptions(data="synthetic-tissue", out="o", run_dir="r").version  # the keyword stays
    assert main(["train", "--data", "minee", "--out", "o", "--run-dir", "r"]) == 2
    assert "has: mine)" in capsys.readouterr().err


def _bad(mine, what):
    mask = tifffile.imread(mine / "masks" / f"{IDS[1]}.tif")
    if what == "shape":
        tifffile.imwrite(mine / "masks" / f"{IDS[1]}.tif", mask[:200, :180])
    elif what == "float":
        tifffile.imwrite(mine / "masks" / f"{IDS[1]}.tif", (mask > 0).astype(np.float32) * 0.5)
    else:
        tifffile.imwrite(mine / "masks" / f"{IDS[1]}.tif", np.stack([mask % 256] * 3, -1).astype(np.uint8))


@pytest.mark.parametrize(("what", "message"), [("shape", "labels are 200x180 pixels, its image .* 520x696"),
                                               ("float", "must hold integer labels, got dtype float32"),
                                               ("rgb", "one 2-D label image, got 1 frame.* of 3 channel")])
def test_a_mask_that_does_not_fit_its_image_is_an_error_naming_it(store, mine, what, message):
    from cellscale.train.versions import TrainingSet

    _bad(mine, what)
    version = add_version("mine", mine, files=pairs(), metadata=META)
    with pytest.raises(ValueError, match=f"mine@{version.id}: masks/{IDS[1]}.tif.*{message}"):
        TrainingSet(version.ref, version).examples("train")


def test_a_bad_held_out_mask_fails_the_run_before_the_training_steps(store, mine, tmp_path, capsys):
    _bad(mine, "shape")
    add_version("mine", mine, files=pairs(dict(zip(IDS, ["train", "val", "test"]))), metadata=META)
    assert main(["train", "--data", "mine@latest", "--out", str(tmp_path / "o"), "--run-dir", str(tmp_path / "r"),
                 "--steps", "1", "--base-filters", "4", "--depth", "2", "--tile", "64", "--batch", "1"]) == 2
    assert f"masks/{IDS[1]}.tif: labels are 200x180" in capsys.readouterr().err
    assert not (tmp_path / "r").exists() and not (tmp_path / "o").exists()


def test_an_image_without_labels_is_named_and_two_images_of_one_sample_are_refused(store, mine, capsys):
    from cellscale.train.versions import TrainingSet

    (mine / "masks" / f"{IDS[1]}.tif").unlink()
    split = dict(zip(IDS, ["train"] * 3))
    version = add_version("mine", mine, files=[f for f in pairs(split) if f["path"] != f"masks/{IDS[1]}.tif"],
                          metadata=META)
    assert [ex.name for ex in TrainingSet(version.ref, version).examples("train")] == [IDS[0], IDS[2]]
    out = capsys.readouterr().out
    assert "1 train file(s) have no partner" in out and f"images/{IDS[1]}.png" in out
    shutil.copy(mine / "images" / f"{IDS[0]}.png", mine / "images" / f"{IDS[0]}.copy.png")
    twice = add_version("mine", mine, metadata=META, files=pairs(split)[:2] + [
        {"path": f"images/{IDS[0]}.copy.png", "metadata": {"sample": IDS[0], "role": "image"}}])
    with pytest.raises(ValueError, match=f"sample '{IDS[0]}' has two images, images/{IDS[0]}.copy.png and "
                                         f"images/{IDS[0]}.png"):
        TrainingSet(twice.ref, twice).examples("train")


def test_the_dsb2018_layout_pairs_files_by_their_whole_name(tmp_path):
    from cellscale.train.versions import dsb2018_file_metadata

    of = dsb2018_file_metadata(tmp_path)
    assert of("images/cell.day1.png")["sample"] == "cell.day1" != of("images/cell.day2.png")["sample"]
    assert of("masks/zelle ä 1.ome.tif")["sample"] == of("images/zelle ä 1.png")["sample"] == "zelle ä 1"


def test_a_manifest_edited_by_hand_is_an_error_naming_its_file(store, mine, capsys):
    version = add_version("mine", mine, metadata=META)
    path = store / "mine" / f"{version.id}.json"
    path.write_text(path.read_text().replace("CC-BY 4.0", "CC0"))
    assert main(["data", "show", "mine"]) == 2
    err = capsys.readouterr().err
    assert f"{path}: dataset {version.ref}: the manifest was edited" in err and "git checkout" in err
    path.write_text("{")
    assert main(["data", "verify", "mine"]) == 2
    assert f"{path}: Expecting property name" in capsys.readouterr().err


def test_the_same_weights_in_two_folders_are_one_version_and_a_bare_name_is_the_shipped_model(tmp_path):
    from cellscale.registry import find_model, register_model

    registry = tmp_path / "models.json"
    for folder in (tmp_path / "a" / "mine", tmp_path / "b" / "mine", tmp_path / "c" / "nuclear"):
        shutil.copytree(MODELS / "nuclear", folder)
        register_model(folder, registry)
    version = json.loads(registry.read_text())["models"][0]["version"]
    assert find_model(f"mine@{version[:6]}", registry).path == str((tmp_path / "a" / "mine").resolve())
    assert find_model(f"mine@{version}", registry).ref == f"mine@{version}"
    assert find_model("nuclear", registry).path == str(MODELS / "nuclear")


def test_layout_pairs_records_the_pairs_without_the_dsb2018_ontology(store, mine, capsys):
    from cellscale.train.data import split_of

    (mine / "index.csv").write_text("file,cells\nx.png,3\n")  # a user's own index: another table than DSB2018's
    assert main(["data", "add", "mine", str(mine), "--layout", "pairs", "--compartments", "nuclear",
                 "--meta", "source=my lab", "--meta", "licence=CC-BY", "--meta", "annotator=me"]) == 0
    version = load_version("mine")
    assert version.metadata == {"compartments": ["nuclear"], "source": "my lab", "licence": "CC-BY",
                                "annotator": "me"}
    image = version.entry(f"images/{IDS[0]}.png")
    # by the hash all three are test: the pairs layout moves one to train and one to val, and says why
    assert split_of(IDS[0]) == "test" and image.metadata == {"sample": IDS[0], "role": "image", "split": "val",
                                                             "split_note": "val had no sample: moved from test"}
    assert version.entry(f"masks/{IDS[0]}.tif").metadata["role"] == "labels"
    assert main(["data", "add", "dsb", str(mine), "--layout", "dsb2018"]) == 0  # its index.csv is no DSB2018 one
    assert "DSB2018" in load_version("dsb").metadata["annotator"]


def _cells(root, n, shape=(16, 16)):
    """n small image/mask pairs named cell_0 .. cell_{n-1} under root (images/ and masks/, TIFF)."""
    for i in range(n):
        labels = np.zeros(shape, np.uint16)
        labels[4:10, 4:10] = 1
        for folder, data in (("images", (labels * 200).astype(np.uint8)), ("masks", labels)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(root / folder / f"cell_{i}.tif", data)
    return root


ADD = ["--layout", "pairs", "--compartments", "nuclear", "--meta", "source=my lab", "--meta", "licence=CC-BY"]


def test_a_few_images_get_a_val_and_a_test_image_and_keep_their_splits_as_images_are_added(store, tmp_path,
                                                                                           capsys):
    from cellscale.train.data import split_of

    root = _cells(tmp_path / "cells", 20)
    assert {split_of(f"cell_{i}") for i in range(20)} == {"train", "test"}  # by the hash alone: no val
    assert main(["data", "add", "cells", str(root), *ADD]) == 0
    first = load_version("cells")
    splits = {f.metadata["sample"]: f.metadata["split"] for f in first.files}
    moved = [s for s in splits if splits[s] != split_of(s)]
    assert len(moved) == 1 and splits[moved[0]] == "val"
    assert first.entry(f"images/{moved[0]}.tif").metadata["split_note"] == "val had no sample: moved from train"
    assert f"{moved[0]} is in val: val had no sample: moved from train" in capsys.readouterr().out
    # more images, a new version: the samples keep their splits (the moved one too), the new ones take the hash's
    _cells(root, 30)
    assert main(["data", "add", "cells", str(root), *ADD]) == 0
    second = load_version("cells")
    assert second.id != first.id
    assert all(f.metadata["split"] == splits.get(f.metadata["sample"], split_of(f.metadata["sample"]))
               for f in second.files)
    # a user's own split file sets the samples it names (and is never moved); the rest as before
    (tmp_path / "splits.csv").write_text("sample,split\ncell_0,val\ncell_1,test\n")
    assert main(["data", "add", "mine", str(root), *ADD, "--splits", str(tmp_path / "splits.csv")]) == 0
    mine = load_version("mine")
    assert mine.entry("masks/cell_0.tif").metadata["split"] == "val"
    assert mine.entry("images/cell_1.tif").metadata["split"] == "test"
    (tmp_path / "splits.csv").write_text("sample,split\ncell_99,val\n")
    assert main(["data", "add", "other", str(root), *ADD, "--splits", str(tmp_path / "splits.csv")]) == 2
    assert "--splits: 1 sample(s) not in" in capsys.readouterr().err


def test_dsb2018s_splits_stay_the_hash_split(mine):
    from cellscale.train.data import split_of
    from cellscale.train.versions import layout_file_metadata

    paths = [f"{d}/{i}.{ext}" for i in IDS for d, ext in (("images", "png"), ("masks", "tif"))]
    metadata, notes = layout_file_metadata(mine, paths, "dsb2018")  # the demo's three: all test by the hash
    assert not notes and all(m["split"] == split_of(m["sample"]) == "test" for m in metadata.values())
    for name in ("dsb2018-demo", "dsb2018"):  # the recorded versions: every sample in its hash split
        version = load_version(name, DEMO.parent / "versions")
        assert all(f.metadata["split"] == split_of(f.metadata["sample"]) for f in version.files
                   if "sample" in f.metadata)


def test_train_says_how_to_give_a_small_set_a_val_split(store, tmp_path, capsys):
    from cellscale.train.versions import dsb2018_file_metadata

    root = _cells(tmp_path / "cells", 20)
    version = add_version("cells", root, metadata=META, file_metadata=dsb2018_file_metadata(root))  # the hash's
    assert main(["train", "--data", "cells", "--out", str(tmp_path / "o"), "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    command = f"cellscale data add cells {root} --layout pairs --parent {version.ref} --inherit"
    assert "no val examples" in err and f"`{command}`" in err and "--splits FILE" in err
    assert main(command.split()[1:]) == 0
    assert {f.metadata["split"] for f in load_version("cells").files} == {"train", "val", "test"}


@pytest.mark.parametrize(("what", "message"), [("shape", "labels are 200x180 pixels, its image .* 520x696"),
                                               ("float", "must hold integer labels, got dtype float32"),
                                               ("rgb", "one 2-D label image, got 1 frame.* of 3 channel"),
                                               ("twice", f"sample '{IDS[1]}' has two images, images/{IDS[1]}")])
def test_data_add_checks_the_pairs_before_it_records_a_version(store, mine, what, message, capsys):
    if what == "twice":
        tifffile.imwrite(mine / "images" / f"{IDS[1]}.tif", np.zeros((520, 696), np.uint8))
    else:
        _bad(mine, what)
    for layout in ("pairs", "dsb2018"):
        assert main(["data", "add", "mine", str(mine), "--layout", layout, "--compartments", "nuclear",
                     "--meta", "source=my lab", "--meta", "licence=CC-BY"]) == 2
        err = capsys.readouterr().err
        assert re.search(f"dataset mine: .*{message}", err), err
        assert "no version recorded" in err and (what == "twice" or f"masks/{IDS[1]}.tif" in err)
        assert not store.exists()


def test_data_add_names_an_image_without_a_mask(store, mine, capsys):
    (mine / "masks" / f"{IDS[1]}.tif").unlink()
    assert main(["data", "add", "mine", str(mine), *ADD]) == 0
    err = capsys.readouterr().err
    assert "warning: dataset mine: 1 " in err and f"have no partner" in err and f"images/{IDS[1]}.png" in err


def test_a_broken_manifest_is_named_and_the_other_versions_listed(store, mine, capsys):
    good = add_version("mine", mine, metadata=META)
    broken = add_version("other", mine, metadata={**META, "annotator": "me"})
    path = store / "other" / f"{broken.id}.json"
    path.write_text("{")
    assert main(["data", "list"]) == 0
    captured = capsys.readouterr()
    assert f"{good.ref} (latest)" in captured.out and broken.id not in captured.out
    assert f"warning: {path}: Expecting property name" in captured.err and "left out of the list" in captured.err
    assert main(["data", "show", "other"]) == 2
    assert f"{path}: Expecting property name" in capsys.readouterr().err
