"""The model registry (versions, dataset versions, parents), NAME@VERSION in the config, and fine-tuning with
``cellscale train --init-from`` from a dataset version."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from support import DEMO, MODELS

from cellscale.registry import find_model, list_models, model_ref, register_model, resolve_model, weights_version


def test_the_registry_lists_the_shipped_models_with_their_dataset_versions():
    entries = {e.name: e for e in list_models(registry="/nonexistent.json")}
    assert set(entries) >= {"nuclear", "tissue", "tissue-tight"}
    assert entries["nuclear"].dataset.startswith("dsb2018@")
    assert entries["tissue"].dataset.startswith("synthetic-tissue@")
    assert entries["tissue"].codex_dataset.startswith("codex@")
    for e in entries.values():
        assert len(e.version) == 12 and e.version == weights_version(MODELS / e.name)
        assert e.command.startswith("cellscale train") and e.trained and e.card_sha256
        assert bool(e.metrics) == (e.kind == "segmentation")
    assert "all F1 0.896" in entries["nuclear"].headline()
    assert "CODEX held-out F1" in entries["tissue"].headline()
    # fine-tuned before parents were recorded: the command's --init-from folder, marked so; trained afresh: none
    assert entries["tissue-tight"].parent == "models/tissue (version not recorded)"
    assert entries["generalist"].parent == "-" and "--init-from" not in entries["generalist"].command


def test_the_shipped_track_scorer_is_listed_as_a_tracking_model_and_refused_as_a_segmentation_one(capsys):
    """`models list|show` left out models/track-scorer (no model.json): every shipped model is listed, the scorer
    as a tracking model with its card's facts, versioned by its trees; naming it where a network is wanted is an
    error saying what it is."""
    import hashlib

    from cellscale.api import load_model
    from cellscale.cli import main

    entries = {e.name: e for e in list_models(registry="/nonexistent.json")}
    assert set(entries) == {p.name for p in MODELS.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))}
    scorer = entries["track-scorer"]
    assert scorer.kind == "tracking" and {e.kind for n, e in entries.items() if n != "track-scorer"} == {
        "segmentation"}
    assert scorer.version == hashlib.sha256((MODELS / "track-scorer" / "trees.npz").read_bytes()).hexdigest()[:12]
    assert scorer.command.startswith("cellscale train-tracker") and scorer.trained == "2026-12-05"
    assert "100 trees each" in scorer.headline() and "28 generated movie(s)" in scorer.headline()
    assert main(["models", "list"]) == 0
    assert f"{scorer.ref}\ttracking\t2026-12-05\t" in capsys.readouterr().out
    assert main(["models", "show", "track-scorer"]) == 0
    assert "kind tracking\n" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="'track-scorer' is a tracking model, not a segmentation model"):
        load_model("track-scorer")
    with pytest.raises(FileNotFoundError, match="'track-scorer' is a tracking model, not a segmentation model"):
        resolve_model(scorer.ref)


def test_every_shipped_network_carries_its_own_name():
    """The shipped nuclear model carried its training run's scratch folder name (nuclear-ft2-out) in model.json,
    metrics.json and its card, which the review bundle's provenance and the model's errors print; renaming it kept
    its weights, so its version."""
    from cellscale.segment.model import ModelSpec

    for e in list_models(registry="/nonexistent.json"):
        if e.kind == "segmentation":
            folder = MODELS / e.name
            assert ModelSpec.read(folder).name == e.name
            assert json.loads((folder / "metrics.json").read_text())["model"] == e.name
            assert (folder / "MODEL_CARD.md").read_text().splitlines()[0] == f"# Model card: {e.name}"
    assert find_model("nuclear").version == "032170274017"


def test_the_headline_says_which_precision_and_settings_its_figures_are():
    """`models list|show`: the CODEX figure is the float32 one, as the nuclear figure and the README's are (it was
    the int8 + rot180 one, unlabelled: 0.585 / 0.617 for tissue against 0.591 / 0.586 in the README); a --codex
    model's generated whole_cell figure, scored with settings tuned on generated tissue, is marked as not the
    shipped settings' (or replaced by the shipped settings' where the record has it)."""
    import copy

    from cellscale.registry import headline

    entries = {e.name: e for e in list_models(registry="/nonexistent.json")}
    tissue = entries["tissue"].headline()
    assert "CODEX held-out F1 0.591 / 0.586 (expert 1 / 2, float32)" in tissue
    assert "whole_cell F1 0.996 AP 0.992 (settings tuned on generated tissue, not the shipped ones)" in tissue
    assert "CODEX held-out F1 0.502 / 0.687 (expert 1 / 2, float32)" in entries["tissue-tight"].headline()
    assert entries["generalist"].headline() == "nuclear F1 1.000 AP 0.955; whole_cell F1 0.996 AP 0.865"
    test = copy.deepcopy(entries["tissue"].metrics)
    test["whole_cell"]["shipped"] = {"f1": 0.5, "ap": 0.25}
    assert "whole_cell F1 0.500 AP 0.250; CODEX" in headline(test)
    del test["codex_held_out"]["cellscale"]  # a record with only the workflow default's figure
    assert "CODEX held-out F1 0.585 / 0.617 (expert 1 / 2, int8 + rot180)" in headline(test)


def test_name_at_version_resolves_to_the_folder_and_a_wrong_one_names_the_versions():
    nuclear = find_model("nuclear")
    assert resolve_model(nuclear.ref) == nuclear.path
    assert resolve_model(f"nuclear@{nuclear.version[:6]}") == nuclear.path
    assert resolve_model("models/nuclear") == "models/nuclear"  # a folder stays a folder
    declared = {"path": "my.keras", "inputs": ["nuclear"]}
    assert resolve_model(declared) is declared
    with pytest.raises(FileNotFoundError, match=f"nuclear@000000 is not in the registry .*{nuclear.version}"):
        resolve_model("nuclear@000000")
    with pytest.raises(FileNotFoundError, match="no model 'nucleus'.*nuclear"):
        resolve_model("nucleus@latest")
    assert model_ref(str(MODELS / "nuclear")) == nuclear.ref
    assert model_ref(declared) is None


def test_a_registered_folder_is_listed(tmp_path):
    folder = tmp_path / "mine"
    shutil.copytree(MODELS / "nuclear", folder)
    registry = tmp_path / "models.json"
    entry = register_model(folder, registry)
    assert entry.ref == f"mine@{find_model('nuclear').version}"
    assert register_model(folder, registry).ref == entry.ref  # idempotent
    assert len(json.loads(registry.read_text())["models"]) == 1
    assert [e.name for e in list_models(registry)].count("mine") == 1


def test_models_command_line(capsys):
    from cellscale.cli import main

    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    nuclear = find_model("nuclear")
    assert f"{nuclear.ref}\t" in out and f"data {nuclear.dataset}" in out
    assert "from models/nuclear (version not recorded)\t" in out
    assert main(["models", "show", "nuclear"]) == 0
    assert f"dataset {nuclear.dataset}" in capsys.readouterr().out
    assert main(["models", "show", "nuclear@ffffff"]) == 2
    assert "versions of nuclear" in capsys.readouterr().err


def test_init_from_a_registry_name_is_its_folder_and_card():
    from cellscale.train.run import parent_model

    path, parent = parent_model("nuclear")
    nuclear = find_model("nuclear")
    assert str(path) == nuclear.path
    assert parent["model"] == nuclear.ref and parent["card_sha256"] == nuclear.card_sha256
    with pytest.raises(FileNotFoundError, match="versions of nuclear"):
        parent_model("nuclear@fffffff")
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        parent_model("models/none")


def test_fine_tuning_from_a_dataset_version_records_both_and_compares_with_the_parent(tmp_path, monkeypatch, capsys):
    """A tiny network trained two steps, then fine-tuned two steps with --init-from on a version: the card names
    the dataset version and the parent (name@version, card hash) and scores both on the same test split."""
    from cellscale.cli import main
    from cellscale.datasets import add_version
    from cellscale.segment.model import ModelSpec
    from cellscale.train.fit import export, fit
    from cellscale.train.versions import TrainingSet

    store = tmp_path / "data" / "versions"
    store.mkdir(parents=True)
    monkeypatch.setenv("CELLSCALE_VERSIONS", str(store))
    shutil.copytree(DEMO / "dsb2018", tmp_path / "set")
    ids = sorted(p.stem for p in (tmp_path / "set" / "images").glob("*.png"))
    split = dict(zip(ids, ["val", "train", "test"]))  # the largest image (150b...) trains: tuning is quick
    files = [{"path": f"{d}/{i}.{ext}", "metadata": {"sample": i, "role": role, "split": split[i]}}
             for i in ids for d, ext, role in (("images", "png", "image"), ("masks", "tif", "labels"))]
    version = add_version("tiny", "set", files=files, store=store,
                          metadata={"compartments": ["nuclear"], "source": "DSB2018 demo", "licence": "CC0 1.0"})
    spec = ModelSpec(name="parent", inputs=["nuclear"], compartments=["nuclear"], base_filters=4, depth=2,
                     tile_multiple=4)
    train = TrainingSet(version.ref, version).examples("train")
    export(fit(spec, train, tmp_path / "run0", steps=1, tile=64, batch=2, log=lambda m: None), spec,
           tmp_path / "parent")
    out = tmp_path / "child"
    assert main(["train", "--data", "tiny@latest", "--out", str(out), "--run-dir", str(tmp_path / "run1"),
                 "--steps", "2", "--batch", "2", "--tile", "64", "--base-filters", "4", "--depth", "2",
                 "--init-from", str(tmp_path / "parent")]) == 0
    record = json.loads((out / "metrics.json").read_text())
    assert record["dataset"] == version.ref and record["training_files"] == 2
    parent = record["fine_tuned_from"]
    assert parent["model"] == f"parent@{weights_version(tmp_path / 'parent')}" and parent["card_sha256"] is None
    comparison = record["comparison"]
    assert comparison["parent"] == parent["model"] and set(comparison["rows"]) == {"all", "tiny"}
    assert comparison["rows"]["all"]["new"] == {k: record["test"]["all"]["model"][k] for k in ("f1", "ap")}
    card = (out / "MODEL_CARD.md").read_text()
    assert f"- dataset version: `{version.ref}`" in card
    assert f"- fine-tuned from: `{parent['model']}`" in card
    assert f"## Compared with the parent model, {parent['model']}" in card and "| all |" in card
    # the registry shows the child with its dataset version and its parent
    entry = register_model(out, tmp_path / "models.json")
    assert entry.dataset == version.ref and entry.fine_tuned_from["model"] == parent["model"]
    # `models show` says the parent as `models list` does, and its scores next to the child's (the card's table)
    monkeypatch.setenv("CELLSCALE_REGISTRY", str(tmp_path / "models.json"))
    capsys.readouterr()
    assert main(["models", "show", entry.ref]) == 0
    shown = capsys.readouterr().out
    assert f"fine-tuned from {parent['model']} (--init-from {tmp_path / 'parent'})" in shown
    assert f"## Compared with the parent model, {parent['model']}" in shown and "| all |" in shown


def test_the_run_summary_names_the_model_and_dataset_version_of_each_sample(tmp_path):
    from cellscale.registry import model_provenance
    from cellscale.steps.report import run_summary

    nuclear, tissue = model_provenance(str(MODELS / "nuclear")), model_provenance(find_model("tissue").ref)
    assert nuclear == {"model": find_model("nuclear").ref, "dataset": find_model("nuclear").dataset}
    # the tissue model was trained on generated tissue and the CODEX tile: both versions are named
    assert tissue["dataset"] == f"{find_model('tissue').dataset} + {find_model('tissue').codex_dataset}"
    assert find_model("tissue").codex_dataset.startswith("codex@")
    assert model_provenance({"path": "x.keras"}) == {"model": None, "dataset": None}
    paths = []
    # a nuclear-only sample first, then one with whole cells: the columns in one order whatever comes first
    for sample, extra in (("a", {"pixel_size_um": 0.5}), ("b", {"whole_cell_cells": 2, "whole_cell_median_area": 9.0})):
        paths.append(tmp_path / f"{sample}.json")
        paths[-1].write_text(json.dumps({"sample": sample, **extra, "nuclear_cells": 3, "nuclear_median_area": 4.0}))
    batch = tmp_path / "0000"  # a batch with a failed image: no model produced it
    batch.mkdir()
    pd.DataFrame({"sample": ["c", "d"], "status": ["ok", "failed"], "nuclear_cells": [5, None]}).to_csv(
        batch / "fields.tsv", sep="\t", index=False)
    pd.DataFrame(columns=["sample", "image", "batch", "error"]).to_csv(batch / "errors.tsv", sep="\t", index=False)
    table = run_summary(paths, tmp_path / "summary.tsv", batch_dirs=[batch], out_html=tmp_path / "summary.html",
                        compartments={"a": ["nuclear"], "b": ["nuclear", "whole_cell"], "c": ["nuclear"],
                                      "d": ["nuclear"]},
                        provenance={"nuclear": nuclear, "tissue": tissue})
    got = table.set_index("sample").astype(object).where(table.set_index("sample").notna(), None)
    assert got["model"].to_dict() == {"a": nuclear["model"], "b": tissue["model"], "c": nuclear["model"], "d": None}
    assert got["model_dataset"].to_dict() == {"a": nuclear["dataset"], "b": tissue["dataset"],
                                              "c": nuclear["dataset"], "d": None}
    assert list(table.columns) == ["sample", "status", "nuclear_cells", "nuclear_median_area",
                                   "whole_cell_cells", "whole_cell_median_area", "pixel_size_um", "warnings",
                                   "model", "model_dataset"]  # as README's summary.tsv row lists them
    page = (tmp_path / "summary.html").read_text()  # the report's view: empty cells blank, not <NA> or nan
    assert "NA&gt;" not in page and "nan" not in page and pd.read_html(tmp_path / "summary.html")[0].shape[0] == 4


def test_a_models_provenance_file_is_what_each_sample_records(tmp_path):
    """Rule model_provenance writes a config model's NAME@VERSION and dataset version once a run (a declared model's:
    not known); the jobs that record provenance read it by config key and put it per compartment of a sample."""
    from cellscale.registry import model_provenance
    from cellscale.steps import read_models, with_model
    from cellscale.steps.report import write_model_provenance

    folder = tmp_path / "models" / "nuclear"
    shutil.copytree(MODELS / "nuclear", folder)
    out = tmp_path / "results" / "models"
    made = write_model_provenance(folder / "model.json", out / "nuclear.json")
    assert made == model_provenance(str(MODELS / "nuclear")) and made["model"].startswith("nuclear@")
    assert write_model_provenance(None, out / "tissue.json") == {"model": None, "dataset": None}  # a declared model
    models = read_models([out / "nuclear.json", out / "tissue.json"])
    assert models == {"nuclear": made, "tissue": {"model": None, "dataset": None}}
    row = {"image": "a.tif", "pixel_size_um": 0.5, "model": "nuclear", "compartments": ["nuclear"], "scale": 2.0,
           "augment": "rot180"}
    got = with_model(row, models)
    assert list(got) == ["image", "pixel_size_um", "model", "model_dataset", "scale", "augment"]
    assert got["model"] == {"nuclear": made["model"]} and got["model_dataset"] == made["dataset"]
    assert with_model({**row, "model": "tissue", "compartments": ["nuclear", "whole_cell"]}, models)["model"] == \
        {"nuclear": None, "whole_cell": None}
    (folder / "model.keras").write_bytes(b"other weights")  # new weights: a new version, the same name
    again = write_model_provenance(folder / "model.json", out / "nuclear.json")
    assert again["model"] != made["model"] and again["model"].startswith("nuclear@")
    assert read_models([out / "nuclear.json"])["nuclear"] == again


def test_exporting_the_same_weights_again_keeps_their_version(tmp_path):
    """A .keras file's bytes hold the time it was saved: exporting one checkpoint twice (a rerun of `cellscale
    train` on its --run-dir) keeps the file, so the registry's version of the same weights does not change; other
    weights give another version."""
    import time

    import keras

    from cellscale.segment.model import ModelSpec
    from cellscale.segment.network import build_unet
    from cellscale.train.fit import export

    spec = ModelSpec(name="m", inputs=["nuclear"], compartments=["nuclear"], base_filters=4, depth=2, tile_multiple=4)
    model = build_unet(spec)
    ckpt = tmp_path / "ckpt.keras"
    model.save(ckpt)
    export(ckpt, spec, tmp_path / "m")
    first = weights_version(tmp_path / "m")
    time.sleep(1.1)   # a second later: a new save would differ in its recorded time
    export(ckpt, spec, tmp_path / "m")
    assert weights_version(tmp_path / "m") == first
    weights = model.get_weights()
    weights[0] = weights[0] + 1.0
    model.set_weights(weights)
    keras.models.save_model(model, ckpt)
    export(ckpt, spec, tmp_path / "m")
    assert weights_version(tmp_path / "m") != first


def test_fine_tuning_a_model_of_another_kind_is_refused_before_any_step(tmp_path, monkeypatch, capsys):
    """--init-from a nuclear model on tissue data (nuclear + membrane -> nuclear + whole cell): an error naming both
    networks, and no run folder left behind."""
    from cellscale.cli import main
    from cellscale.train.versions import register_generated_tissue

    store = tmp_path / "data" / "versions"
    monkeypatch.setenv("CELLSCALE_VERSIONS", str(store))
    version = register_generated_tissue("gen", images=1, seed=2, store=store)
    run = tmp_path / "run"
    assert main(["train", "--data", version.ref, "--init-from", str(MODELS / "nuclear"), "--out",
                 str(tmp_path / "m"), "--run-dir", str(run), "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert f"--init-from {MODELS / 'nuclear'}: its network (nuclear -> nuclear, base filters" in err
    assert "is not the one this training builds (nuclear + membrane -> nuclear + whole_cell" in err
    assert not run.exists() and not (tmp_path / "m").exists()


@pytest.mark.parametrize("config_change,message", [
    ({"models": {"nuclear": "nuclear@000000"}},
     "config models.nuclear: model nuclear@000000 is not in the registry (versions of nuclear: {nuclear.version}"),
    ({"models": {"nuclear": "models/nuclearx"}},  # a folder typed wrong: stopped here, not at its first job
     "config models.nuclear: models/nuclearx: no such model folder, here or in the checkout; a registry model is "
     "named NAME@VERSION or NAME@latest"),
    ({"models": {"nuclear": str(MODELS)}},  # the folder of the models, not one of them
     f"config models.nuclear: {MODELS}: not a model folder (no model.json in it); a registry model is named"),
    ({"samples": "config/sampels.tsv"}, "config samples: config/sampels.tsv: no such sample sheet"),
    # the tracking scorer: only learned costs read it, which auto may not choose (the demo's sheet has movies)
    ({"track": {"scorer": "models/track-scorerx"}},
     "config track.scorer: models/track-scorerx: no such tracking scorer folder (a relative path is from"),
    ({"track": {"scorer": str(MODELS / "nuclear")}},
     f"config track.scorer: {MODELS / 'nuclear'}: not a tracking scorer folder (missing scorer.json, trees.npz)"),
    ({"tiling": {"tile": 32, "overlap": 32}},
     "config tiling.tile 32 gives windows of 32 px (the model's windows are multiples of 16 px), and tiling.overlap 32 "
     "needs windows wider than twice the overlap: give tiling.tile 80 or more, or a smaller tiling.overlap (the "
     "windows of models.nuclear)"),
    ({"track": {"min_cycle_frames": 3}},  # the schema allows 3; only the ilp solver keeps it (lap treated it as 2)
     "config track: min_cycle_frames 3 needs solver ilp (solver lap keeps a cell from dividing only in the frame"),
])
def test_the_workflow_names_the_config_key_of_a_model_scorer_or_sheet_that_is_not_there(tmp_path, config_change, message):
    """`snakemake --dry-run` with models.nuclear a version or a folder that is not there, or a sample sheet that is
    not: the key and what is wrong, one line of where (not the library's or pandas' traceback)."""
    import subprocess
    import sys
    from pathlib import Path

    import yaml
    from support import ROOT

    nuclear = find_model("nuclear")
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["samples"] = str(ROOT / "config" / "samples.tsv")
    config["models"] = {"nuclear": str(MODELS / "nuclear"), "tissue": str(MODELS / "tissue")}
    for key, value in config_change.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) else value
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "-s", str(ROOT / "workflow" / "Snakefile"),
                             "--directory", str(tmp_path), "--dry-run", "--configfile", str(tmp_path / "config.yaml")],
                            capture_output=True, text=True, timeout=300)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert message.format(nuclear=nuclear) in out
    assert "registry.py" not in out and "Traceback" not in out and "pandas" not in out  # no frames of libraries
