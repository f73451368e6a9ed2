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
                                    ["--pixel-size", "0"], ["--pixel-size", "-1"], ["--gamma", "-1"]])
def test_segment_refuses_a_number_out_of_range_as_a_usage_error(option, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["segment", "image.tif", "-o", "labels.tif", *option])
    assert stop.value.code == 2
    assert f"argument {option[0]}: expected " in capsys.readouterr().err


def test_track_names_a_missing_labels_folder(tmp_path, capsys):
    assert main(["track", str(tmp_path / "masks"), "-o", str(tmp_path / "res")]) == 2
    assert capsys.readouterr().err == f"cellscale track: error: {tmp_path / 'masks'}: no such folder\n"


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
