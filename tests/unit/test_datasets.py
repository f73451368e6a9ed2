"""Dataset versions: content-hashed, immutable manifests with parents and changes; the command line; the versions
registered for the data the shipped models were trained on."""

from __future__ import annotations

import json
import shutil

import pytest
from support import DEMO, ROOT, SHARED

from cellscale.cli import main
from cellscale.datasets import add_version, diff, list_versions, load_version, verify

META = {"compartments": ["nuclear"], "source": "test", "licence": "CC0 1.0", "organ": "none", "annotator": "me"}


@pytest.fixture()
def store(tmp_path):
    """A store at DIR/data/versions, so relative roots resolve against DIR, as in a checkout."""
    (tmp_path / "data" / "versions").mkdir(parents=True)
    return tmp_path / "data" / "versions"


@pytest.fixture()
def demo(tmp_path):
    """A copy of the bundled DSB2018 images (three images, three masks) at DIR/set."""
    root = tmp_path / "set"
    shutil.copytree(DEMO / "dsb2018", root)
    return root


def test_the_id_is_a_hash_of_the_content(store, demo, tmp_path):
    first = add_version("s", "set", metadata=META, store=store)
    assert first.root == "set" and len(first.files) == 7 and len(first.id) == 12
    # the same content in another store gives the same id (created is not part of it)
    other = tmp_path / "other" / "data" / "versions"
    other.mkdir(parents=True)
    shutil.copytree(demo, tmp_path / "other" / "set")
    assert add_version("s", "set", metadata=META, store=other).id == first.id
    # adding it again is a no-op: the stored version comes back, nothing new is listed
    again = add_version("s", "set", metadata=META, store=store)
    assert again.id == first.id and again.created == first.created
    assert len(list_versions(store)) == 1
    # other metadata is other content
    assert add_version("s", "set", metadata={**META, "organ": "x"}, store=other).id != first.id


def test_one_changed_byte_is_a_new_version_and_diff_names_the_file(store, demo):
    first = add_version("s", "set", metadata=META, store=store)
    mask = sorted((demo / "masks").iterdir())[0]
    data = bytearray(mask.read_bytes())
    data[-1] ^= 1
    mask.write_bytes(bytes(data))
    (demo / "extra.txt").write_text("new")
    (demo / "SOURCE.md").unlink()
    second = add_version("s", "set", metadata=META, parent="s@latest", note="fixed a mask", store=store)
    assert second.id != first.id
    assert second.parent == first.ref
    name = f"masks/{mask.name}"
    assert second.changes == {"added": ["extra.txt"], "removed": ["SOURCE.md"], "modified": [name],
                              "note": "fixed a mask"}
    d = diff(first, second)
    assert d["files"] == {"added": ["extra.txt"], "removed": ["SOURCE.md"], "modified": [name]}
    # latest moved; the first is still there by its id (or an unambiguous prefix)
    assert load_version("s", store).id == second.id
    assert load_version(f"s@{first.id[:6]}", store).id == first.id
    # the first version's files changed on disk: verify names the changed one and the removed one
    problems = verify(load_version(first.ref, store))
    assert any(p.startswith(name) and "SHA-256" in p for p in problems)
    assert any(p.startswith("SOURCE.md") and "missing" in p for p in problems)
    assert verify(second) == []


def test_stored_manifests_are_immutable_and_errors_name_what_is_missing(store, demo, tmp_path):
    m = add_version("s", "set", files=["images/*.png", "masks/*.tif"], metadata=META, store=store)
    assert [f.path.split("/")[0] for f in m.files] == ["images"] * 3 + ["masks"] * 3
    path = store / "s" / f"{m.id}.json"
    text = json.loads(path.read_text())
    assert text["id"] == m.id and list(text) == sorted(text)
    text["metadata"]["licence"] = "mine now"
    path.write_text(json.dumps(text))
    with pytest.raises(ValueError, match="edited"):
        load_version(m.ref, store)
    with pytest.raises(FileNotFoundError, match=r"s@abc does not exist \(versions: " + m.id):
        load_version("s@abc", store)
    with pytest.raises(FileNotFoundError, match="no dataset 'nope'.*it has: s"):
        load_version("nope", store)
    with pytest.raises(ValueError, match="licence"):
        add_version("t", "set", metadata={"compartments": ["nuclear"], "source": "x"}, store=store)
    with pytest.raises(FileNotFoundError, match="no file .* matches"):
        add_version("t", "set", files="*.zarr", metadata=META, store=store)
    # a root that is gone: a clear error naming it, from verify and from reading a file
    path.write_text(json.dumps({k: v for k, v in text.items() if k != "id"} | {"metadata": m.metadata}))
    shutil.rmtree(demo)
    gone = load_version(m.ref, store)
    assert verify(gone) == [f"dataset {m.ref}: its root {tmp_path / 'set'} (root 'set') is missing "
                            f"(relative roots are resolved against {tmp_path})"]
    with pytest.raises(FileNotFoundError, match="root .*set.* is missing"):
        gone.abspath(gone.files[0])


def test_per_file_metadata_and_inheriting_from_a_parent(store, demo, tmp_path):
    parent = add_version("s", "set", files="images/*.png", metadata=META,
                         file_metadata=lambda p: {"sample": p.split("/")[1][:-4], "role": "image"}, store=store)
    entry = parent.files[0]
    assert entry["role"] == "image" and parent.metadata_of(entry)["licence"] == "CC0 1.0"
    assert parent.abspath(entry) == demo / entry.path
    fixes = tmp_path / "fixes"
    fixes.mkdir()
    (fixes / "tile.tif").write_bytes(b"corrected")
    child = add_version("s", fixes, files=[{"path": "tile.tif", "metadata": {"annotator": "ann", "split": "train"}}],
                        metadata={"annotator": "ann"}, parent=parent.ref, note="corrections", inherit=True, store=store)
    assert child.root == "fixes" and child.parent == parent.ref
    # roots differ: the changes name ROOT/PATH
    assert child.changes["added"] == ["fixes/tile.tif"] and child.changes["removed"] == []
    assert child.changes["modified"] == []
    assert len(child.files) == 4 and child.metadata["licence"] == "CC0 1.0" and child.metadata["annotator"] == "ann"
    assert verify(child) == []  # the parent's files re-rooted (../set/...) and the new one
    assert {child.abspath(f).resolve() for f in child.files} == (
        {parent.abspath(f).resolve() for f in parent.files} | {(fixes / "tile.tif").resolve()})


def test_command_line_round_trip(store, demo, capsys):
    s = str(store)
    assert main(["data", "--store", s, "add", "demo", "set", "--layout", "dsb2018", "--note", "first"]) == 0
    first = load_version("demo", store)
    assert first.metadata["licence"].startswith("CC0") and first.metadata["compartments"] == ["nuclear"]
    image = first.entry("images/0bf4b144167694b6.png")
    assert image.metadata == {"sample": "0bf4b144167694b6", "role": "image", "split": "test"}
    (demo / "notes.txt").write_text("x")
    assert main(["data", "--store", s, "add", "demo", "set", "--layout", "dsb2018", "--parent", "demo",
                 "--meta", "annotator=\"someone else\"", "--meta", "pixel_size_um=0.5", "--note", "notes"]) == 0
    second = load_version("demo", store)
    assert second.metadata["pixel_size_um"] == 0.5 and second.parent == first.ref
    capsys.readouterr()
    assert main(["data", "--store", s, "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in listed] == [first.ref, f"{second.ref} (latest)"]
    assert main(["data", "--store", s, "show", "demo", "--files"]) == 0
    shown = capsys.readouterr().out
    assert second.ref in shown and f"parent {first.ref}" in shown and "changes: +1 -0 ~0: notes" in shown
    assert "notes.txt" in shown
    assert main(["data", "--store", s, "diff", first.ref, second.ref]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["files"]["added"] == ["notes.txt"] and d["metadata"]["pixel_size_um"] == [
        "mixed, about 0.2-0.6", 0.5]
    assert main(["data", "--store", s, "verify", "demo"]) == 0
    (demo / "notes.txt").write_text("y")
    assert main(["data", "--store", s, "verify", "demo"]) == 1
    assert "notes.txt: SHA-256 differs" in capsys.readouterr().out
    assert main(["data", "--store", s, "show", "demo@ffff"]) == 2
    assert "demo@ffff does not exist" in capsys.readouterr().err


# the versions registered for the data already used (data/versions in the checkout)

def test_the_registered_versions_are_intact_and_name_their_data():
    demo = load_version("dsb2018-demo", ROOT / "data" / "versions")
    assert verify(demo) == [] and demo.metadata["licence"].startswith("CC0")
    assert {f.metadata.get("split") for f in demo.files if "sample" in f.metadata} == {"test"}
    for name in ("dsb2018", "codex", "synthetic-tissue"):
        m = load_version(name, ROOT / "data" / "versions")
        assert set(m.metadata) >= {"compartments", "source", "licence", "platform", "annotator"}
    generated = load_version("synthetic-tissue", ROOT / "data" / "versions")
    assert generated.metadata["generator"]["seed"] == 1 and generated.metadata["generator"]["images"] == 24
    assert generated.root.startswith("train_runs/generated/")  # made again at will, not committed
    assert load_version("codex", ROOT / "data" / "versions").root == "../shared/data/codex/R001_X003_Y004"


@pytest.mark.shared
def test_the_dsb2018_version_is_the_nuclear_models_training_data():
    if not (SHARED / "dsb2018").exists():
        pytest.skip("../shared/data is absent")
    from cellscale.train.data import dataset_hash
    from cellscale.train.versions import TrainingSet

    m = load_version("dsb2018", ROOT / "data" / "versions")
    assert verify(m) == []
    files = TrainingSet(m.ref, m).train_files()
    # the card's hash of its training files, from before versions existed
    card = json.loads((ROOT / "models" / "nuclear" / "metrics.json").read_text())
    assert (len(files), dataset_hash(files)) == (card["training_files"], card["training_data_sha256"])
    assert card["dataset"] == m.ref


def test_a_generated_version_trains_on_what_its_generator_makes(store, monkeypatch, capsys):
    import numpy as np

    from cellscale.train.data import load_synthetic_tissue
    from cellscale.train.options import TrainOptions
    from cellscale.train.versions import register_generated_tissue, training_set

    monkeypatch.setenv("CELLSCALE_VERSIONS", str(store))
    m = register_generated_tissue("gen", images=1, seed=5, style="sparse", note="tiny")
    assert m.root == "train_runs/generated/gen-sparse-1-s5" and verify(m) == []
    assert m.metadata["generator"]["command"] == "cellscale data generate gen --images 1 --seed 5 --tissue-style sparse"
    assert {f.metadata["split"] for f in m.files} == {"train", "val", "test"}
    options = TrainOptions(data="gen@latest", out="o", run_dir="r")
    assert options.synthetic and options.version
    data = training_set(options)
    assert data.tissue and data.dataset == m.ref and (data.seed, data.style) == (5, "sparse")
    made, expected = data.examples("train"), load_synthetic_tissue(1, "train", 5, "sparse")
    assert [ex.name for ex in made] == [ex.name for ex in expected]
    assert np.array_equal(made[0].labels["whole_cell"], expected[0].labels["whole_cell"])
    assert "differ" not in capsys.readouterr().out  # made again, byte for byte what the manifest lists
    # corrections on top of it (what `cellscale review import` makes): the generated images plus the new pairs
    import tifffile

    fixes = store.parents[1] / "fixes"
    fixes.mkdir()
    tile = expected[0]
    tifffile.imwrite(fixes / "t1.image.tif", (tile.image[:, :64, :64] * 1000).astype("uint16"))
    tifffile.imwrite(fixes / "t1.whole_cell.tif", tile.labels["whole_cell"][:64, :64].astype("uint16"))
    child = add_version("gen", "fixes", parent=m.ref, inherit=True, note="one corrected tile", files=[
        {"path": "t1.image.tif",
         "metadata": {"sample": "t1", "role": "image", "channels": {"nuclear": 0, "membrane": 1}}},
        {"path": "t1.whole_cell.tif", "metadata": {"sample": "t1", "role": "labels", "compartment": "whole_cell"}}])
    assert child.changes["added"] == ["fixes/t1.image.tif", "fixes/t1.whole_cell.tif"] and child.metadata["generator"]
    shutil.rmtree(m.root_path)  # the generated files need not be on disk: the generator makes them
    train = training_set(TrainOptions(data=child.ref, out="o", run_dir="r")).examples("train")
    assert [ex.name for ex in train] == [expected[0].name, "t1"]
    assert set(train[1].labels) == {"whole_cell"} and train[1].image.shape == (2, 64, 64)
    with pytest.raises(ValueError, match="generator fixes the style"):
        TrainOptions(data="gen@latest", out="o", run_dir="r", tissue_style="dense")
    assert main(["train", "--data", "gen@123456", "--out", "o", "--run-dir", "r"]) == 2
    assert "gen@123456 does not exist (versions: " + m.id in capsys.readouterr().err
