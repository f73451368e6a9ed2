"""Bad input on the command line: one clear line naming the file and what is wrong, a non-zero exit, no traceback
and no partial output."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from cellscale.cli import main


def test_an_interrupted_command_says_so_in_one_line(monkeypatch, capsys):
    """Ctrl-C (SIGINT) midway: exit status 130 and one line, not Python's KeyboardInterrupt traceback."""
    import cellscale.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_measure", interrupted)
    assert main(["measure", "labels.tif", "image.tif", "-o", "cells.csv"]) == 130
    assert capsys.readouterr().err.startswith("cellscale measure: interrupted: ")


def test_a_missing_file_is_named_first_without_errno(tmp_path, capsys):
    assert main(["mcquant", str(tmp_path / "cells.csv"), "-o", str(tmp_path / "mc")]) == 2
    assert capsys.readouterr().err == f"cellscale mcquant: error: {tmp_path / 'cells.csv'}: no such file or directory\n"


def test_an_output_file_that_is_a_folder_is_refused_before_writing(tmp_path, capsys):
    labels = np.zeros((32, 32), np.uint16)
    labels[4:12, 4:12] = 1
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    tifffile.imwrite(tmp_path / "image.tif", np.ones((32, 32), np.uint16))
    (tmp_path / "cells.csv").mkdir()
    assert main(["measure", str(tmp_path / "labels.tif"), str(tmp_path / "image.tif"), "-o",
                 str(tmp_path / "cells.csv")]) == 2
    assert capsys.readouterr().err == (f"cellscale measure: error: {tmp_path / 'cells.csv'} is a folder: give a file "
                                       f"name for the output\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells.csv", "image.tif", "labels.tif"]   # no .part


def test_measure_names_an_image_that_is_not_numbers(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "labels.tif", np.ones((32, 32), np.uint16))
    tifffile.imwrite(tmp_path / "mask.tif", np.ones((32, 32), bool))
    assert main(["measure", str(tmp_path / "labels.tif"), str(tmp_path / "mask.tif"), "-o",
                 str(tmp_path / "cells.csv")]) == 2
    assert f"{tmp_path / 'mask.tif'} must be numeric (intensities), got dtype bool" in capsys.readouterr().err
    assert not (tmp_path / "cells.csv").exists()


def test_a_5d_image_is_named_with_its_shape(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "labels.tif", np.ones((32, 32), np.uint16))
    tifffile.imwrite(tmp_path / "five.tif", np.zeros((2, 2, 2, 32, 32), np.uint16))
    assert main(["measure", str(tmp_path / "labels.tif"), str(tmp_path / "five.tif"), "-o",
                 str(tmp_path / "cells.csv")]) == 2
    assert f"{tmp_path / 'five.tif'}: a 5-D image of shape (2, 2, 2, 32, 32) whose axes cannot be told apart" \
        in capsys.readouterr().err


@pytest.mark.parametrize("option", [["--batch-size", "0"], ["--tile", "0"], ["--overlap", "-5"],
                                    ["--pixel-size", "0"], ["--pixel-size", "-1"], ["--gamma", "-1"],
                                    ["--batch-mpx", "0"]])
def test_segment_refuses_a_number_out_of_range_as_a_usage_error(option, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["segment", "image.tif", "-o", "labels.tif", *option])
    assert stop.value.code == 2
    assert f"argument {option[0]}: expected " in capsys.readouterr().err


def test_track_names_a_missing_labels_folder(tmp_path, capsys):
    assert main(["track", str(tmp_path / "masks"), "-o", str(tmp_path / "res")]) == 2
    assert capsys.readouterr().err == f"cellscale track: error: {tmp_path / 'masks'}: no such folder\n"


@pytest.mark.parametrize("costs", ["rules", "learned"])
def test_track_names_a_scorer_folder_that_is_not_there_whatever_the_costs(tmp_path, capsys, costs):
    """--scorer typed wrong: refused before any work, also when the costs chosen would not read it."""
    labels = np.zeros((2, 32, 32), np.uint16)
    labels[:, 4:12, 4:12] = 1
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    assert main(["track", str(tmp_path / "labels.tif"), "-o", str(tmp_path / "res"), "--costs", costs,
                 "--scorer", str(tmp_path / "scorerx")]) == 2
    assert capsys.readouterr().err == (f"cellscale track: error: --scorer {tmp_path / 'scorerx'}: no such tracking "
                                       f"scorer folder\n")
    assert not (tmp_path / "res").exists()


def test_data_add_refuses_a_name_that_is_a_path_and_names_bad_metadata(tmp_path, capsys):
    root = tmp_path / "files"
    root.mkdir()
    (root / "a.txt").write_text("a")
    store = tmp_path / "data" / "versions"
    meta = ["--compartments", "nuclear", "--meta", "source=x", "--meta", "licence=CC0"]
    assert main(["data", "--store", str(store), "add", "../outside", str(root), *meta]) == 2
    assert "dataset name '../outside': give letters, digits and _ . - only" in capsys.readouterr().err
    assert not (tmp_path / "data" / "outside").exists() and not store.exists()
    (tmp_path / "meta.json").write_text("{organ: skin}")
    assert main(["data", "--store", str(store), "add", "set", str(root), "--metadata",
                 str(tmp_path / "meta.json"), *meta]) == 2
    assert f"--metadata {tmp_path / 'meta.json'}: not JSON (" in capsys.readouterr().err
    (tmp_path / "meta.json").write_text(json.dumps(["skin"]))
    assert main(["data", "--store", str(store), "add", "set", str(root), "--metadata",
                 str(tmp_path / "meta.json"), *meta]) == 2
    assert "expected a JSON object of the set's metadata" in capsys.readouterr().err
    assert not store.exists()


def _labels_and_nan_image(tmp_path, frames: int | None = None):
    labels = np.zeros((48, 48), np.uint16)
    labels[4:20, 4:20], labels[24:40, 24:40] = 1, 2
    image = np.ones((48, 48), np.float32)
    image[8, 8] = image[30, 30] = np.nan   # one NaN pixel in each cell
    if frames:
        labels, image = np.stack([labels] * frames), np.stack([image] * frames)
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    tifffile.imwrite(tmp_path / "nan.tif", image)
    return tmp_path / "labels.tif", tmp_path / "nan.tif"


@pytest.mark.parametrize("frames", [None, 3])
def test_measure_refuses_nan_pixels_as_segment_does(tmp_path, frames, capsys):
    """A still image's or a movie's NaN pixels: the same error as segment's, naming the file and counting them (the
    cells holding one had a NaN mean)."""
    labels, image = _labels_and_nan_image(tmp_path, frames)
    assert main(["measure", str(labels), str(image), "-o", str(tmp_path / "cells.csv")]) == 2
    count = 2 * (frames or 1)
    assert f"{image}: {count} of {48 * 48 * (frames or 1)} pixel values are not finite ({count} NaN, 0 infinite)" \
        in capsys.readouterr().err
    assert not (tmp_path / "cells.csv").exists()


def test_the_measure_step_names_the_sample_of_a_nan_image(tmp_path):
    """The workflow's measure step (a time-lapse sample's, as the command line's movies): a StepError naming the
    sample and the file, so that sample fails and the others go on."""
    from cellscale.steps import StepError
    from cellscale.steps.measure import measure_sample

    labels, image = _labels_and_nan_image(tmp_path, 2)
    with pytest.raises(StepError, match=rf"sample 'movie': {image}: 4 of 4608 pixel values are not finite"):
        measure_sample("movie", image, {"nuclear": labels}, tmp_path / "m.csv", tmp_path / "m.parquet", timelapse=True)
    assert not (tmp_path / "m.csv").exists() and not (tmp_path / "m.parquet").exists()


def test_measure_names_an_empty_labels_folder(tmp_path, capsys):
    (tmp_path / "masks").mkdir()
    tifffile.imwrite(tmp_path / "movie.tif", np.ones((3, 48, 48), np.uint16))
    assert main(["measure", str(tmp_path / "masks"), str(tmp_path / "movie.tif"), "-o",
                 str(tmp_path / "cells.csv")]) == 2
    assert capsys.readouterr().err.startswith(f"cellscale measure: error: {tmp_path / 'masks'}: a folder that holds no "
                                              f"label frames")


def test_models_add_names_a_missing_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CELLSCALE_REGISTRY", str(tmp_path / "models.json"))
    assert main(["models", "add", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err == f"cellscale models: error: model folder {tmp_path / 'missing'}: no such folder\n"
    assert not (tmp_path / "models.json").exists()


@pytest.mark.parametrize("command", [
    ["track", "masks", "-o", "res", "--max-distance", "-3"], ["track", "masks", "-o", "res", "--max-gap", "-1"],
    ["track", "masks", "-o", "res", "--nuclear-channel", "-1"],
    ["segment", "image.tif", "-o", "labels.tif", "--nuclear-channel", "-1"],
    ["segment", "image.tif", "-o", "labels.tif", "--membrane-channel", "-2"],
    ["synth", "tissue", "-o", "x.ome.tif", "--size", "-5"], ["synth", "colony", "-o", "x.ome.tif", "--cells", "0"],
    ["synth", "timelapse", "-o", "x.ome.tif", "--frames", "1"],
    ["synth", "colony", "-o", "x.ome.tif", "--doubling", "0"],
    ["train", "--data", "d", "--out", "m", "--run-dir", "r", "--steps", "-5"],
    ["train", "--data", "d", "--out", "m", "--run-dir", "r", "--tile", "0"],
    ["train", "--data", "d", "--out", "m", "--run-dir", "r", "--lr", "-1"],
    ["train", "--data", "d", "--out", "m", "--run-dir", "r", "--batch", "0"],
    ["train", "--data", "d", "--out", "m", "--run-dir", "r", "--depth", "0"],
    ["train", "--data", "d", "--out", "m", "--run-dir", "r", "--images", "0"],
    ["train", "--data", "d", "--out", "m", "--run-dir", "r", "--workers", "-1"],
    ["train", "--data", "d", "--out", "m", "--run-dir", "r", "--codex-share", "2"],
    ["quantize", "m", "--data", "d", "--window", "0"], ["quantize", "m", "--data", "d", "--seed", "-1"],
    ["train", "--data", "d", "--out", "m", "--run-dir", "r", "--seed", "-3"],
    ["synth", "tissue", "-o", "x.ome.tif", "--seed", "-1"], ["data", "generate", "x", "--seed", "-1"],
    ["data", "generate", "x", "--images", "0"], ["samples", "x/*.tif", "--kind", "tissue", "--nuclear-channel", "-1"],
    ["samples", "x/*.tif", "--kind", "tissue", "--membrane-channel", "-1"],
    ["train-tracker", "-o", "s", "--trees", "0"], ["train-tracker", "-o", "s", "--depth", "-1"],
    ["train-tracker", "-o", "s", "--seed", "-1"], ["train-tracker", "-o", "s", "--movies", "0"],
    ["train-tracker", "-o", "s", "--frames", "1"],
    ["review", "results", "--sample", "s", "-o", "b", "-n", "0"],
    ["review", "results", "--sample", "s", "-o", "b", "--tiles", "-2"],
    ["review", "results", "--sample", "s", "-o", "b", "--tile-size", "0"],
    ["review", "results", "--sample", "s", "-o", "b", "--frame", "-1"],
    ["review", "results", "--sample", "s", "-o", "b", "--random", "--seed", "-1"],
    ["review", "results", "--sample", "s", "-o", "b", "--nuclear-channel", "-1"],
    ["review", "results", "--sample", "s", "-o", "b", "--membrane-channel", "-1"]])
def test_a_number_option_out_of_range_is_a_usage_error_naming_it(command, capsys):
    """The option's name, not the library's parameter (max_distance) or numpy's message (negative dimensions)."""
    with pytest.raises(SystemExit) as stop:
        main(command)
    assert stop.value.code == 2
    option = "-n/--tiles" if command[-2] in ("-n", "--tiles") else command[-2]   # argparse names both spellings
    assert f"argument {option}: expected " in capsys.readouterr().err


def _no_model_load(monkeypatch):
    """Fail a test that loads the network: the check must come first."""
    import cellscale.api

    def load_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the command line was checked")

    monkeypatch.setattr(cellscale.api, "load_model", load_model)


def test_segment_checks_tile_against_overlap_before_loading_the_model(tmp_path, monkeypatch, capsys):
    """--tile 1 was allowed, then every image failed with 'overlap 32 is too large for 16x16 tiles'."""
    _no_model_load(monkeypatch)
    tifffile.imwrite(tmp_path / "image.tif", np.ones((96, 96), np.uint16))
    for tile, window in (("1", 16), ("70", 64)):
        with pytest.raises(SystemExit) as stop:
            main(["segment", str(tmp_path / "image.tif"), "-o", str(tmp_path / "labels.tif"), "--tile", tile])
        assert stop.value.code == 2
        assert (f"--tile {tile} gives windows of {window} px (the model's windows are multiples of 16 px), and "
                f"--overlap 32 needs windows wider than twice the overlap: give --tile 80 or more, or a smaller "
                f"--overlap") in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.tif"]


def test_segment_refuses_a_folder_as_output_file_before_loading_the_model(tmp_path, monkeypatch, capsys):
    _no_model_load(monkeypatch)
    tifffile.imwrite(tmp_path / "image.tif", np.ones((96, 96), np.uint16))
    (tmp_path / "out").mkdir()
    assert main(["segment", str(tmp_path / "image.tif"), "-o", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith(f"cellscale segment: error: {tmp_path / 'out'} is a folder: give a file "
                                              f"name for the output")
    assert not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("action", [["show", "../x"], ["diff", "../x", "set"],
                                    ["verify", "../x@1"], ["list", "../x"]])
def test_data_refuses_a_name_that_is_a_path_when_reading_too(tmp_path, action, capsys):
    """As data add does: a name is a folder of the store, never a path out of it."""
    store = tmp_path / "data" / "versions"
    store.mkdir(parents=True)
    (tmp_path / "data" / "x").mkdir()   # what ../x reaches from the store
    assert main(["data", "--store", str(store), *action]) == 2
    assert "dataset name '../x': give letters, digits and _ . - only" in capsys.readouterr().err


def test_train_and_quantize_check_their_options_before_reading_data(tmp_path, capsys):
    """A crop the U-Net cannot halve --depth times, a --window the model cannot run, a --data that is nothing: named
    before any image is read or generated (train --tile 0 was a ZeroDivisionError traceback)."""
    run = ["--out", str(tmp_path / "m"), "--run-dir", str(tmp_path / "r")]
    assert main(["train", "--data", "synthetic-tissue", *run, "--tile", "100"]) == 2
    assert "--tile 100: not a multiple of 16 px (2 ** --depth 4" in capsys.readouterr().err
    model = "models/nuclear"
    assert main(["quantize", model, "--data", "synthetic-tissue", "--window", "100"]) == 2
    assert f"--window 100: not a multiple of 16 px, the window multiple of the model {model}" in capsys.readouterr().err
    assert main(["quantize", model, "--data", str(tmp_path / "nothing")]) == 2
    assert f"--data {tmp_path / 'nothing'}: not a DSB2018 folder" in capsys.readouterr().err
    assert not (tmp_path / "m").exists() and not (tmp_path / "r").exists()
