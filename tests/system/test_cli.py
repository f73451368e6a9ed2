"""The command line: each command on real files, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from support import DEMO, MODELS

CLI = str(Path(sys.executable).parent / "cellscale")


def cellscale(*args, check=True):
    result = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=900)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.parametrize("command", ["segment", "measure", "mcquant", "track", "evaluate-tracks", "synth", "train"])
def test_help(command):
    out = cellscale(command, "--help").stdout
    assert "usage: cellscale " + command in out


def test_top_level_help_lists_every_command_and_no_developer_notes():
    import re

    from cellscale.cli import build_parser

    out = cellscale("--help").stdout
    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    listed = re.findall(r"^    (\S+)\s+\S", out, re.M)   # a command and the start of its help, one a row
    assert listed == list(commands) and "mcquant" in listed
    assert "import-linter" not in out and "dispatch" not in out


def test_version_is_the_installed_packages():
    from importlib.metadata import version

    assert cellscale("--version").stdout == f"cellscale {version('cellscale')}\n"


def test_models_list_has_a_header_row_of_its_columns():
    rows = [line.split("\t") for line in cellscale("models", "list").stdout.splitlines()]
    assert rows[0] == ["model", "kind", "trained", "dataset", "parent", "held-out"]
    assert len(rows) > 1 and all(len(row) == len(rows[0]) for row in rows)
    assert any(row[0].startswith("nuclear@") and row[3].startswith("data ") for row in rows[1:])


def test_segment_folder_one_label_image_per_input(tmp_path):
    images = DEMO / "dsb2018" / "images"
    cellscale("segment", images, "-o", tmp_path / "labels", "--model", MODELS / "nuclear")
    for png in images.glob("*.png"):
        out = tmp_path / "labels" / f"{png.stem}.tif"
        labels = tifffile.imread(out)
        assert labels.dtype == np.uint32 and labels.ndim == 2
        assert labels.max() > 5  # cells found, colour image included


def test_segment_timelapse_labels_state_the_movies_frame_interval(tmp_path):
    """cellscale segment --timelapse: the labels state the movie's frame interval (its OME TimeIncrement, 10 min:
    600 s) as OME TimeIncrement in seconds."""
    from cellscale.io import frame_interval_from_metadata
    from cellscale.synth.timelapse import make_timelapse

    movie = make_timelapse(n_frames=3, shape=(64, 64), n_cells=3, seed=1)
    tifffile.imwrite(tmp_path / "movie.ome.tif", (movie.image * 60000).astype(np.uint16), ome=True,
                     metadata={"axes": "TYX", "TimeIncrement": 10, "TimeIncrementUnit": "min"})
    cellscale("segment", tmp_path / "movie.ome.tif", "--timelapse", "-o", tmp_path / "labels.tif")
    assert frame_interval_from_metadata(tmp_path / "labels.tif") == 600.0


def test_segment_timelapse_frame_interval_option(tmp_path):
    """--frame-interval gives a movie's interval where its metadata states none, and wins over the metadata's with
    the workflow's warning; without --timelapse it is a usage error."""
    from cellscale.io import frame_interval_from_metadata
    from cellscale.synth.timelapse import make_timelapse

    image = (make_timelapse(n_frames=3, shape=(64, 64), n_cells=3, seed=1).image * 60000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "bare.ome.tif", image, ome=True, metadata={"axes": "TYX"})
    tifffile.imwrite(tmp_path / "min.ome.tif", image, ome=True,
                     metadata={"axes": "TYX", "TimeIncrement": 10, "TimeIncrementUnit": "min"})
    cellscale("segment", tmp_path / "bare.ome.tif", "--timelapse", "--frame-interval", 90, "-o", tmp_path / "a.tif")
    assert frame_interval_from_metadata(tmp_path / "a.tif") == 90.0
    given = cellscale("segment", tmp_path / "min.ome.tif", "--timelapse", "--frame-interval", 300, "-o",
                      tmp_path / "b.tif")
    assert frame_interval_from_metadata(tmp_path / "b.tif") == 300.0
    assert "the frame interval given, 300 s, is used; the image's metadata says 600 s" in given.stderr
    for argv in (["--frame-interval", 60], ["--timelapse", "--frame-interval", 0]):
        refused = cellscale("segment", tmp_path / "min.ome.tif", *argv, "-o", tmp_path / "c.tif", check=False)
        assert refused.returncode == 2 and refused.stderr.startswith("usage: cellscale segment"), refused.stderr
        assert "--frame-interval" in refused.stderr and not (tmp_path / "c.tif").exists()


def test_segment_labels_state_the_pixel_size_of_the_image_or_the_option(tmp_path):
    """The label image states the input's pixel size, from its OME metadata, or --pixel-size where given."""
    from cellscale.io import pixel_size_from_metadata, read_image, write_image

    png = sorted((DEMO / "dsb2018" / "images").glob("*.png"))[0]
    write_image(tmp_path / "one.ome.tif", read_image(png)[0, :1], pixel_size_um=0.4)
    cellscale("segment", tmp_path / "one.ome.tif", "-o", tmp_path / "meta.tif", "--model", MODELS / "nuclear")
    cellscale("segment", tmp_path / "one.ome.tif", "-o", tmp_path / "given.tif", "--model", MODELS / "nuclear",
              "--pixel-size", 0.3)
    assert pixel_size_from_metadata(tmp_path / "meta.tif") == 0.4
    # a folder's labels go to a folder: -o naming one file is refused, saying what to give instead
    refused = cellscale("segment", DEMO / "dsb2018" / "images", "-o", tmp_path / "labels.tif", check=False)
    assert refused.returncode == 2 and "--timelapse" in refused.stderr and not (tmp_path / "labels.tif").exists()
    assert refused.stderr.startswith("usage: cellscale segment")   # a usage error, as argparse's own
    # track: a channel of a movie needs the movie
    refused = cellscale("track", tmp_path / "meta.tif", "-o", tmp_path / "res", "--nuclear-channel", 1, check=False)
    assert refused.returncode == 2 and "--image" in refused.stderr
    assert pixel_size_from_metadata(tmp_path / "given.tif") == 0.3
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "meta.tif"), tifffile.imread(tmp_path / "given.tif"))


def test_segment_whole_cell_needs_membrane(tmp_path):
    result = cellscale("segment", DEMO / "synthetic" / "tissue.ome.tif", "-o", tmp_path / "x.tif",
                       "--compartment", "whole-cell", check=False)
    assert result.returncode != 0 and "--membrane-channel" in result.stderr


def test_segment_names_an_unknown_model_as_review_and_train_do(tmp_path):
    """--model that is no folder nor registered model: named by its option, as cellscale review --model and train
    --init-from name theirs (it said "model 'nosuch'", the Python API's wording)."""
    result = cellscale("segment", DEMO / "synthetic" / "tissue.ome.tif", "-o", tmp_path / "x.tif", "--model", "nosuch",
                       check=False)
    assert result.returncode == 2
    assert "cellscale segment: error: --model nosuch: no model 'nosuch' in the registry (models: " in result.stderr


def test_segment_whole_cell_and_measure(tmp_path):
    image = DEMO / "synthetic" / "tissue.ome.tif"
    cellscale("segment", image, "-o", tmp_path / "cells.tif", "--compartment", "whole-cell",
              "--nuclear-channel", 0, "--membrane-channel", 1, "--model", MODELS / "tissue")
    cellscale("measure", tmp_path / "cells.tif", image, "-o", tmp_path / "cells.csv", "--parquet")
    table = pd.read_csv(tmp_path / "cells.csv")
    assert list(table.columns[:5]) == ["CellID", "DNA", "Membrane", "CD3", "CD20"]  # names from OME metadata
    truth = pd.read_csv(DEMO / "synthetic" / "tissue_truth" / "cells.csv")
    assert abs(len(table) - len(truth)) <= 0.1 * len(truth)
    assert pd.read_parquet(tmp_path / "cells.parquet").shape == table.shape
    # labels of another image's size: one line naming both files
    tifffile.imwrite(tmp_path / "small.tif", np.ones((64, 64), np.uint32))
    result = cellscale("measure", tmp_path / "small.tif", image, "-o", tmp_path / "x.csv", check=False)
    assert result.returncode == 2 and f"{tmp_path / 'small.tif'}: labels of 64 x 64 px do not match the image " \
        f"{image} (512 x 512 px)" in result.stderr and not (tmp_path / "x.csv").exists()


def test_mcquant_writes_one_csv_per_image_and_mask(tmp_path):
    from cellscale.measure import concat_tables, measure_cells, measure_compartments

    wc = np.zeros((20, 24), np.uint32)
    wc[1:9, 1:11], wc[1:9, 13:23], wc[11:19, 3:20] = 1, 2, 3
    nuc = np.where(wc > 0, wc, 0) * np.pad(np.ones((16, 20), bool), 2)
    image = np.random.default_rng(0).integers(0, 1000, (2,) + wc.shape).astype(np.uint16)
    run = concat_tables({"A01_s1": measure_compartments({"nuclear": nuc, "whole_cell": wc}, image, ["DNA", "CD3"]),
                         "007": measure_compartments({"nuclear": nuc}, image[:1], ["DAPI"])})
    run.to_parquet(tmp_path / "cells.parquet")
    run.to_csv(tmp_path / "cells.csv", index=False)
    for table in ("cells.parquet", "cells.csv"):
        quant = tmp_path / f"quant_{table}"
        out = cellscale("mcquant", tmp_path / table, "-o", quant).stdout
        assert "4 tables" in out
        assert sorted(p.name for p in quant.iterdir()) == [
            "007_nuclear.csv", "A01_s1_cytoplasm.csv", "A01_s1_nuclear.csv", "A01_s1_whole_cell.csv"]
        cells = pd.read_csv(quant / "A01_s1_whole_cell.csv")
        pd.testing.assert_frame_equal(cells, measure_cells(wc, image, ["DNA", "CD3"]), check_dtype=False)
        assert list(pd.read_csv(quant / "007_nuclear.csv").columns[:3]) == ["CellID", "DAPI", "X_centroid"]
    run[run["sample"] == "007"].to_csv(tmp_path / "007.csv", index=False)  # its names all digits: still text
    cellscale("mcquant", tmp_path / "007.csv", "-o", tmp_path / "quant_007")
    assert [p.name for p in (tmp_path / "quant_007").iterdir()] == ["007_nuclear.csv"]
    # not a cell table: an error naming the file, and nothing written
    pd.DataFrame({"CellID": [1]}).to_csv(tmp_path / "other.csv", index=False)
    refused = cellscale("mcquant", tmp_path / "other.csv", "-o", tmp_path / "none", check=False)
    assert refused.returncode == 2 and f"{tmp_path / 'other.csv'}: not a cellscale cell table" in refused.stderr
    assert not (tmp_path / "none").exists()


def test_segment_scale_brings_large_nuclei_to_the_model_size(tmp_path):
    """Nuclei imaged three times as large: --scale 1/3 finds them on the input's grid, unscaled misses many;
    --scale auto measures their size and does about as well as the right number."""
    from scipy import ndimage as ndi

    from cellscale.io import read_image
    from cellscale.segment.metrics import f1_score

    stem = "0bf4b144167694b6"
    image = read_image(DEMO / "dsb2018" / "images" / f"{stem}.png")[0, 0].astype(np.float32)
    truth = ndi.zoom(tifffile.imread(DEMO / "dsb2018" / "masks" / f"{stem}.tif"), 3, order=0)
    tifffile.imwrite(tmp_path / "big.tif", ndi.zoom(image, 3, order=1))
    scores = {}
    for scale in ("0.3333", None, "auto"):
        out = tmp_path / f"labels-{scale}.tif"
        cellscale("segment", tmp_path / "big.tif", "-o", out, "--model", MODELS / "nuclear",
                  *(["--scale", scale] if scale else []))
        labels = tifffile.imread(out)
        assert labels.shape == truth.shape
        scores[scale] = f1_score(truth, labels)
    assert scores["0.3333"] >= 0.85 and scores["0.3333"] > scores[None] + 0.1, scores
    assert scores["auto"] >= scores["0.3333"] - 0.05, scores
    result = cellscale("segment", tmp_path / "big.tif", "-o", tmp_path / "x.tif", "--scale", "0", check=False)
    assert result.returncode != 0 and "scale must be" in result.stderr and not (tmp_path / "x.tif").exists()


def test_ome_zarr_input_segments_and_measures_like_the_ome_tiff(tmp_path):
    """The demo tissue written as OME-Zarr 0.4 (t, c, z, y, x): the same cells and the same table as from
    its OME-TIFF, with the channel names of its omero metadata."""
    import zarr

    from cellscale.io import channel_names_from_ome, read_image

    tiff = DEMO / "synthetic" / "tissue.ome.tif"
    data = read_image(tiff)[:, :, np.newaxis]  # (1, C, 1, Y, X)
    store = tmp_path / "tissue.ome.zarr"
    group = zarr.open_group(str(store), mode="w", zarr_format=2)
    group.create_array("0", data=data, chunks=(1, 1, 1, 128, 128))
    group.attrs.update({"multiscales": [{"version": "0.4", "axes": list("tczyx"), "datasets": [{"path": "0"}]}],
                        "omero": {"channels": [{"label": n} for n in channel_names_from_ome(tiff)]}})
    tables = []
    for image, name in ((tiff, "tiff"), (store, "zarr")):
        cellscale("segment", image, "-o", tmp_path / f"{name}.tif", "--compartment", "whole-cell",
                  "--nuclear-channel", 0, "--membrane-channel", 1, "--model", MODELS / "tissue")
        cellscale("measure", tmp_path / f"{name}.tif", image, "-o", tmp_path / f"{name}.csv")
        tables.append(pd.read_csv(tmp_path / f"{name}.csv"))
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "zarr.tif"), tifffile.imread(tmp_path / "tiff.tif"))
    pd.testing.assert_frame_equal(tables[1], tables[0])
    assert list(tables[1].columns[:5]) == ["CellID", "DNA", "Membrane", "CD3", "CD20"]


def test_one_file_per_channel_segments_and_measures_like_the_stacked_image(tmp_path):
    """The demo tissue's channels written one file each (as a plate reader does), given as 'w1|w2|...': the same
    cells and the same table as from the OME-TIFF that stacks them."""
    from cellscale.io import join_image_files, read_image

    tiff = DEMO / "synthetic" / "tissue.ome.tif"
    files = [tmp_path / f"A01_s1_w{c + 1}.TIF" for c in range(read_image(tiff).shape[1])]
    for c, path in enumerate(files):
        tifffile.imwrite(path, read_image(tiff)[0, c])
    tables = []
    for image, name in ((tiff, "stacked"), (join_image_files(files), "files")):
        cellscale("segment", image, "-o", tmp_path / f"{name}.tif", "--compartment", "whole-cell",
                  "--nuclear-channel", 0, "--membrane-channel", 1, "--model", MODELS / "tissue")
        cellscale("measure", tmp_path / f"{name}.tif", image, "-o", tmp_path / f"{name}.csv",
                  "--channel-names", "DNA,Membrane,CD3,CD20")
        tables.append(pd.read_csv(tmp_path / f"{name}.csv"))
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "files.tif"), tifffile.imread(tmp_path / "stacked.tif"))
    pd.testing.assert_frame_equal(tables[1], tables[0])


def test_segment_bad_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"not a tiff")
    result = cellscale("segment", bad, "-o", tmp_path / "out.tif", "--model", MODELS / "nuclear", check=False)
    assert result.returncode != 0 and "broken.tif" in result.stderr
    assert not (tmp_path / "out.tif").exists()
    # the workflow's rules for non-finite pixels and OME-TIFF z-stacks (README, sample sheet)
    image = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    image[5:7, 5:8] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", image)
    tifffile.imwrite(tmp_path / "zstack.ome.tif", np.zeros((4, 64, 64), np.uint8), ome=True, metadata={"axes": "ZYX"})
    for name, what in (("nan.tif", "6 of 4096 pixel values are not finite (6 NaN, 0 infinite)"),
                       ("zstack.ome.tif", "a z-stack of 4 planes")):
        result = cellscale("segment", tmp_path / name, "-o", tmp_path / "out.tif", "--model", MODELS / "nuclear",
                           check=False)
        assert result.returncode != 0 and f"{tmp_path / name}: {what}" in result.stderr, result.stderr[-2000:]
        assert not (tmp_path / "out.tif").exists()


def test_segment_refuses_a_strip_as_the_workflow_does_and_warns_of_an_empty_membrane(tmp_path):
    """A 5 x 4000 px strip is refused under the workflow's 8-px minimum edge (it got labels here, exit 0); a
    whole-cell run whose membrane channel is all zero says so on stderr, naming the file and the channel."""
    rng = np.random.default_rng(0)
    tifffile.imwrite(tmp_path / "strip.tif", rng.integers(0, 1000, (5, 4000), dtype=np.uint16))
    result = cellscale("segment", tmp_path / "strip.tif", "-o", tmp_path / "out.tif", "--model", MODELS / "nuclear",
                       check=False)
    assert result.returncode != 0, result.stdout
    assert (f"{tmp_path / 'strip.tif'}: image of shape (5, 4000) is too small to segment (at least 8 x 8 px)"
            in result.stderr), result.stderr[-2000:]
    assert not (tmp_path / "out.tif").exists()
    image = tifffile.imread(DEMO / "synthetic" / "tissue.ome.tif")[:2, :96, :96].copy()
    image[1] = 0
    tifffile.imwrite(tmp_path / "no_membrane.tif", image, metadata={"axes": "CYX"})
    result = cellscale("segment", tmp_path / "no_membrane.tif", "-o", tmp_path / "cells.tif", "--nuclear-channel", 0,
                       "--membrane-channel", 1, "--compartment", "whole-cell", "--model", MODELS / "tissue")
    assert (f"{tmp_path / 'no_membrane.tif'}: the membrane channel (channel 1) holds one value (0) in every pixel "
            f"read: whole-cell labels are then outlines guessed" in result.stderr), result.stderr[-2000:]


def test_segment_folder_bad_files_fail_alone(tmp_path):
    """In a folder, an unreadable file and one with NaN pixels are each named with the reason; the other
    images are segmented (as alone), and the command exits non-zero saying how many failed."""
    import shutil

    folder = tmp_path / "in"
    shutil.copytree(DEMO / "dsb2018" / "images", folder)
    (folder / "broken.tif").write_bytes(b"not a tiff")
    image = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    image[5:7, 5:8] = np.nan
    tifffile.imwrite(folder / "nan.tif", image)
    result = cellscale("segment", folder, "-o", tmp_path / "labels", "--model", MODELS / "nuclear", check=False)
    assert result.returncode != 0
    assert f"{folder / 'broken.tif'}: cannot read image" in result.stderr
    assert f"{folder / 'nan.tif'}: 6 of 4096 pixel values are not finite" in result.stderr
    assert "2 of 5 image(s) failed" in result.stderr
    assert sorted(p.name for p in (tmp_path / "labels").iterdir()) == sorted(
        f"{p.stem}.tif" for p in (DEMO / "dsb2018" / "images").glob("*.png"))
    png = next((DEMO / "dsb2018" / "images").glob("*.png"))
    cellscale("segment", png, "-o", tmp_path / "alone.tif", "--model", MODELS / "nuclear")
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "labels" / f"{png.stem}.tif"),
                                  tifffile.imread(tmp_path / "alone.tif"))


def test_synth_is_deterministic_and_track_recovers_lineage(tmp_path):
    from cellscale.track.evaluate import evaluate_ctc

    cellscale("synth", "timelapse", "-o", tmp_path / "a.ome.tif", "--size", 256, "--frames", 24, "--seed", 2)
    bundled = tifffile.imread(DEMO / "synthetic" / "timelapse.ome.tif")
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "a.ome.tif"), bundled)
    cellscale("track", tmp_path / "a_truth" / "TRA", "-o", tmp_path / "res", "--table", tmp_path / "t.parquet")
    scores = evaluate_ctc(tmp_path / "res", tmp_path / "a_truth")
    assert scores["TRA"] >= 0.99 and scores["division_f1"] == 1.0
    scored = cellscale("evaluate-tracks", tmp_path / "res", tmp_path / "a_truth")
    assert "TRA" in scored.stdout and "SEG" not in scored.stdout   # the generated truth has TRA/ only: said so
    assert f"SEG, OP_CSB and OP_CTB not scored: {tmp_path / 'a_truth'} has no SEG/man_segNNN.tif masks" in scored.stderr
    # -o replaces its folder whole: a rerun into its own result is fine; a folder with other files, or the input
    # itself, is refused before anything is written (a mistyped -o deleted them)
    cellscale("track", tmp_path / "a_truth" / "TRA", "-o", tmp_path / "res")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.md").write_text("keep me")
    for out_dir in (tmp_path / "mine", tmp_path / "a_truth"):
        result = cellscale("track", tmp_path / "a_truth" / "TRA", "-o", out_dir, check=False)
        assert result.returncode == 2 and "give a" in result.stderr and len(result.stderr.splitlines()) == 1
    assert (tmp_path / "mine" / "notes.md").read_text() == "keep me" and (tmp_path / "a_truth" / "TRA").is_dir()
    # an output path that cannot be written is one line naming it, not a traceback
    result = cellscale("track", tmp_path / "a_truth" / "TRA", "-o", tmp_path / "res2", "--table",
                       tmp_path / "mine" / "notes.md" / "t.parquet", check=False)
    assert result.returncode == 2 and "notes.md" in result.stderr and "Traceback" not in result.stderr
    # segment -> track straight through: the movie's labels are one (T, Y, X) stack, which track takes as it is
    cellscale("segment", tmp_path / "a.ome.tif", "-o", tmp_path / "movie_labels.tif")
    out = cellscale("track", tmp_path / "movie_labels.tif", "-o", tmp_path / "res_seg").stdout
    assert "in 24 frames" in out and len(list((tmp_path / "res_seg").glob("mask*.tif"))) == 24
    assert evaluate_ctc(tmp_path / "res_seg", tmp_path / "a_truth")["TRA"] > 0.9
    # the movie itself given as labels (its values are integers): refused before tracking thousands of "objects"
    raw = cellscale("track", tmp_path / "a.ome.tif", "-o", tmp_path / "res_raw", check=False)
    assert raw.returncode == 2 and "these look like intensity images, not labels" in raw.stderr
    # a result whose res_track.txt misses a track: one line saying so (py-ctcmetrics asserts)
    lines = (tmp_path / "res" / "res_track.txt").read_text().splitlines()
    parents = {line.split()[3] for line in lines}
    mother = next(line for line in lines if line.split()[0] in parents)   # a track its daughters name
    (tmp_path / "res" / "res_track.txt").write_text("\n".join(x for x in lines if x != mother) + "\n")
    result = cellscale("evaluate-tracks", tmp_path / "res", tmp_path / "a_truth", check=False)
    assert result.returncode == 2 and "do not agree" in result.stderr and "Traceback" not in result.stderr


def write_codex_stand_in(tile: Path) -> None:
    """A small tile with the real CODEX tile's layout: image, both experts' whole-cell masks, a peer's mask."""
    (tile / "peers").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = 64  # the real tile's columns (training < 960, held out >= 1008), few rows
    tiled = np.zeros((rows, 1100), np.int32)  # expert 1: 16-px cells edge to edge
    tight = np.zeros_like(tiled)  # expert 2: every other cell, smaller
    image = rng.integers(0, 200, (3, rows, 1100)).astype(np.uint16)
    for k, (y, x) in enumerate((y, x) for y in range(0, rows, 16) for x in range(0, 1088, 16)):
        tiled[y:y + 16, x:x + 16] = k + 1
        image[2, y:y + 16, x] = image[2, y, x:x + 16] = 3000  # membrane
        image[0, y + 5:y + 11, x + 5:x + 11] = 3000  # nucleus
        if k % 2:
            tight[y + 3:y + 13, x + 3:x + 13] = k + 1
    tifffile.imwrite(tile / "image.ome.tif", image)
    tifffile.imwrite(tile / "mask_expert1_wholecell.tif", tiled)
    tifffile.imwrite(tile / "mask_expert2_wholecell.tif", tight)
    tifffile.imwrite(tile / "peers" / "Grid.tif", tiled)


def test_train_fit_only_then_finish_with_a_codex_tile(tmp_path):
    """A GPU node without TensorFlow trains with --fit-only (crops from worker processes); a rerun without it
    resumes the finished run and only tunes, scores and writes the card and the int8 copy. --codex (here a small
    stand-in tile with the real one's layout) adds its training columns with the chosen labels, tunes whole-cell
    post-processing on them and scores the held-out columns next to the masks in peers/. (One training run for
    both: each costs a minute of the suite.)"""
    tile = tmp_path / "tile"
    write_codex_stand_in(tile)
    args = ["train", "--data", "synthetic-tissue", "--codex", tile, "--codex-labels", "consensus",
            "--codex-share", 0.75, "--out", tmp_path / "m", "--run-dir", tmp_path / "run", "--steps", 2,
            "--images", 2, "--tile", 64, "--base-filters", 4, "--depth", 2, "--workers", 2]
    first = cellscale(*args, "--fit-only")
    assert "--fit-only" in first.stdout
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.json", "model.keras"]
    weights = (tmp_path / "m" / "model.keras").read_bytes()
    finish = cellscale(*args)
    assert "resuming from epoch 1 of 1" in finish.stdout and "epoch 1/1" not in finish.stdout
    for name in ("model.int8.tflite", "metrics.json", "MODEL_CARD.md"):
        assert (tmp_path / "m" / name).exists(), name
    card = (tmp_path / "m" / "MODEL_CARD.md").read_text()
    assert "cellscale train --data synthetic-tissue" in card and "whole_cell" in card
    assert "only the cells both experts drew" in card and "--codex-share 0.75" in card
    held_out = json.loads((tmp_path / "m" / "metrics.json").read_text())["test"]["codex_held_out"]
    assert held_out["Grid"] == [1.0, 0.0]  # expert 1's mask as a peer; expert 2's cells are too small for it
    assert {"cellscale", "cellscale int8 + rot180 (workflow default)"} <= set(held_out)
    import keras  # the finish exported the same trained network again

    a = keras.saving.load_model(tmp_path / "m" / "model.keras", compile=False).get_weights()
    (tmp_path / "first.keras").write_bytes(weights)
    b = keras.saving.load_model(tmp_path / "first.keras", compile=False).get_weights()
    assert all(np.array_equal(u, v) for u, v in zip(a, b))


def test_segment_interrupted_midway_leaves_whole_label_images_and_no_traceback(tmp_path):
    """Ctrl-C (SIGINT) while a folder is segmented: exit status 130 and one line, the label images written before
    it complete, and no temporary file (.NAME.XXXX.part) of the one being written left beside them."""
    import signal

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):
        tifffile.imwrite(images / f"im{i:02d}.tif", rng.integers(0, 1000, (384, 384), dtype=np.uint16))
    out = tmp_path / "labels"
    proc = subprocess.Popen([CLI, "segment", str(images), "-o", f"{out}/", "--model", str(MODELS / "nuclear")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    first = proc.stdout.readline()   # the first image is written: interrupt the rest
    assert " -> " in first, proc.stderr.read()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    assert "cellscale segment: interrupted: " in stderr
    written = sorted(p.name for p in out.iterdir())
    assert written and all(not name.startswith(".") for name in written) and len(written) < 40
    for name in written:
        assert tifffile.imread(out / name).shape == (384, 384)
