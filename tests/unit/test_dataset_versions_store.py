"""The version store as a user meets it again: a generated set written again, a committed version added again with
its documented command, a review bundle imported twice (each is the version there is, no new one); `data list`'s
order and notes; `--store` before or after the action."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from support import DEMO, MODELS, ROOT

from cellscale.cli import main
from cellscale.datasets import add_version, list_versions, load_version, verify

META = {"compartments": ["nuclear"], "source": "test", "licence": "CC0 1.0"}
STORE = ROOT / "data" / "versions"


def snapshot(store: Path) -> dict[str, str]:
    return {str(p.relative_to(store)): p.read_text() for p in sorted(store.rglob("*")) if p.is_file()}


@pytest.fixture()
def checkout(tmp_path):
    """A copy of the committed store at DIR/data/versions, with the bundled demo data at DIR/data/demo."""
    shutil.copytree(STORE, tmp_path / "data" / "versions")
    shutil.copytree(DEMO / "dsb2018", tmp_path / "data" / "demo" / "dsb2018")
    return tmp_path / "data" / "versions"


def documented(command_start: str) -> list[str]:
    """The arguments of the command docs/data.md gives for a committed version (its note left out)."""
    for line in (ROOT / "docs" / "data.md").read_text().splitlines():
        if line.startswith(command_start):
            args = shlex.split(line, comments=True)[1:]
            if "--note" in args:
                del args[args.index("--note"):args.index("--note") + 2]
            return args
    raise AssertionError(f"docs/data.md gives no `{command_start} ...`")


def test_the_demo_version_is_made_again_by_its_documented_command(checkout, capsys):
    before = snapshot(checkout)
    args = documented("cellscale data add dsb2018-demo ")
    assert main(["data", "--store", str(checkout), *args[1:], "--note", "another note"]) == 0
    assert capsys.readouterr().out.startswith("dsb2018-demo@cddca4976ee3:")
    assert snapshot(checkout) == before


def test_a_generated_set_written_again_is_the_version_it_was(checkout, capsys):
    """docs/data.md: `data generate` writes the files again and `data verify` checks them; the store stays."""
    before = snapshot(checkout)
    args = documented("cellscale data generate synthetic-tissue --images 24 --seed 1 --tissue-style sparse")
    assert main(["data", "--store", str(checkout), *args[1:]]) == 0  # no note: the committed one has one
    out, err = capsys.readouterr()
    assert out.startswith("synthetic-tissue@aa28b9186d87:") and "no new version" in err
    assert snapshot(checkout) == before
    assert main(["data", "--store", str(checkout), "verify", "synthetic-tissue@aa28b9186d87"]) == 0


def test_the_note_does_not_make_a_new_version(tmp_path, capsys):
    from cellscale.train.versions import register_generated_tissue

    store = tmp_path / "data" / "versions"
    other = register_generated_tissue("gen", images=1, seed=3, store=store)
    first = register_generated_tissue("gen", images=1, seed=2, note="the first", store=store)
    index = (store / "gen" / "index.json").read_text()
    again = register_generated_tissue("gen", images=1, seed=2, store=store)  # written again, no note
    assert again.ref == first.ref and again.changes["note"] == "the first" and verify(again) == []
    assert "only the note differs" in capsys.readouterr().err
    assert (store / "gen" / "index.json").read_text() == index and load_version("gen", store).ref == first.ref
    assert other.ref != first.ref and len(list((store / "gen").glob("*.json"))) == 3  # two versions and the index


def test_adding_a_parent_unchanged_is_the_parent(tmp_path, capsys):
    store = tmp_path / "data" / "versions"
    shutil.copytree(DEMO / "dsb2018", tmp_path / "set")
    first = add_version("s", "set", metadata=META, store=store, note="first")
    for inherit in (False, True):
        same = add_version("s", "set", metadata=META, store=store, parent=first.ref, inherit=inherit, note="again")
        assert same.ref == first.ref
        assert f"nothing changed relative to the parent {first.ref}" in capsys.readouterr().err
    assert [r["id"] for r in list_versions(store)] == [first.id]
    (tmp_path / "set" / "notes.txt").write_text("x")
    child = add_version("s", "set", metadata=META, store=store, parent=first.ref, note="a file more")
    assert child.parent == first.ref and child.changes["added"] == ["notes.txt"]


def test_list_is_by_name_then_oldest_first_and_shows_the_index_note(tmp_path, capsys):
    store = tmp_path / "data" / "versions"
    shutil.copytree(DEMO / "dsb2018", tmp_path / "set")
    b1 = add_version("b", "set", files="images/*", metadata=META, store=store)
    a1 = add_version("a", "set", files="images/*", metadata=META, store=store)
    b2 = add_version("b", "set", metadata=META, store=store, parent=b1.ref)
    assert [r["id"] for r in list_versions(store)] == [a1.id, b1.id, b2.id]
    # the committed store: the generalist's set is the latest, its note (in the index only) is shown
    rows = {r["id"]: r for r in list_versions(STORE, "synthetic-tissue")}
    assert rows["bb758ab483cd"]["latest"] and not rows["aa28b9186d87"]["latest"]
    assert "models/generalist" in rows["bb758ab483cd"]["note"]
    assert load_version("synthetic-tissue", STORE).id == "bb758ab483cd"
    assert "`synthetic-tissue@bb758ab483cd` (latest)" in (ROOT / "docs" / "data.md").read_text()


@pytest.mark.parametrize("where", ["before", "after"])
def test_store_goes_before_or_after_the_action(checkout, capsys, where):
    elsewhere = checkout.parents[1] / "elsewhere"  # a store of one version: not the checkout's
    shutil.copytree(checkout / "dsb2018-demo", elsewhere / "data" / "versions" / "dsb2018-demo")
    shutil.copytree(DEMO / "dsb2018", elsewhere / "data" / "demo" / "dsb2018")  # its root, relative to elsewhere
    store = ["--store", str(elsewhere / "data" / "versions")]
    for action in (["list"], ["show", "dsb2018-demo"], ["verify", "dsb2018-demo@cddca"],
                   ["diff", "dsb2018-demo", "dsb2018-demo"]):
        assert main(["data", *store, *action] if where == "before" else ["data", *action, *store]) == 0
        out = capsys.readouterr()
        assert "dsb2018-demo@cddca4976ee3" in out.out + out.err and "codex" not in out.out
    listed = main(["data", "list", "--store", str(elsewhere / "data" / "versions"), "dsb2018-demo"])
    assert listed == 0 and capsys.readouterr().out.count("\n") == 1


# a review bundle imported twice (the fixtures of test_review.py, smaller)

@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from cellscale.io import write_image, write_labels
    from cellscale.review import ReviewOptions, export_review, locate
    from cellscale.segment.predictor import Predictor
    from cellscale.synth.tissue import make_tissue

    folder = tmp_path_factory.mktemp("sample")
    tissue = make_tissue((256, 256), n_cells=40, seed=3)
    labels = tissue.nuclear.copy()
    labels[labels == 6] = 5
    write_image(folder / "img.ome.tif", tissue.image[:1], ["DNA"])
    write_labels(folder / "nuclear.ome.tif", labels)
    inputs = locate(folder / "results", "img", image=folder / "img.ome.tif", labels=folder / "nuclear.ome.tif",
                    model=MODELS / "nuclear")
    path = folder / "bundle"
    export_review(Predictor(MODELS / "nuclear", augment="none", precision="int8"), inputs, path,
                  ReviewOptions(n_tiles=2, tile=64))
    return path


def test_importing_a_bundle_again_says_so_and_adds_no_version(bundle, tmp_path, monkeypatch, capsys):
    import tifffile

    from cellscale.review import read_manifest, read_tile

    store = tmp_path / "data" / "versions"
    monkeypatch.setenv("CELLSCALE_VERSIONS", str(store))
    work = tmp_path / "bundle"
    shutil.copytree(bundle, work)
    tile = read_manifest(work)["tiles"][0]
    fixed = read_tile(work / tile["path"])[1]["nuclear"].copy()
    fixed[fixed == fixed.max()] = 0
    tifffile.imwrite(work / "corrected" / "tile_000.tif", fixed)
    command = ["review", "import", str(work), "--dataset", "corrections", "--annotator", "alice"]
    assert main(command) == 0
    first = load_version("corrections", store)
    capsys.readouterr()
    index = (store / "corrections" / "index.json").read_text()
    assert main(command) == 0
    out, err = capsys.readouterr()
    assert f"nothing changed relative to the parent {first.ref}" in err and f"-> dataset version {first.ref}" in out
    assert (store / "corrections" / "index.json").read_text() == index
    assert [json.loads(index)["latest"]] == [first.id] == [r["id"] for r in list_versions(store)]
    assert re.search(r"no new version", err)


def test_verify_sums_up_a_generated_parents_missing_files(tmp_path):
    """Corrections on top of a generated set (inherit): when the generated files are not on this machine, verify
    says so in one line naming the command that writes them, not a line a file; the version's own files still
    count one by one."""
    from cellscale.train.versions import register_generated_tissue

    store = tmp_path / "data" / "versions"
    parent = register_generated_tissue("gen", images=1, seed=2, store=store)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "a.txt").write_text("a")
    (tmp_path / "mine" / "b.txt").write_text("b")
    child = add_version("fixes", tmp_path / "mine", metadata={"annotator": "A. Person"}, parent=parent.ref,
                        inherit=True, store=store)
    assert verify(child) == []
    shutil.rmtree(parent.root_path)
    (tmp_path / "mine" / "b.txt").unlink()
    problems = verify(child)
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"{len(parent.files)} generated files missing (under {parent.root_path}") \
        and parent.metadata["generator"]["command"] in problems[0]
    assert problems[1].startswith("b.txt: missing")
