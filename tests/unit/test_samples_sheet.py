"""`cellscale samples`: a sample sheet from a glob pattern, for 10^4 files in seconds (no image is opened), with
valid unique names, columns from a regular expression's named groups, and a sheet the workflow accepts."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import numpy as np
import pytest
import tifffile
import yaml
from support import DEMO, MODELS, ROOT

from cellscale import settings
from cellscale.cli import main
from cellscale.samples import build_sheet, format_sheet, sample_name, unique_names

SCHEMA = ROOT / "workflow" / "schemas" / "samples.schema.yaml"
NAME = re.compile(settings.schema("samples")["properties"]["sample"]["pattern"])
WELL_SITE = r"(?P<well>[A-H]\d{2})_s(?P<site>\d+)"


def read_like_the_workflow(path) -> pd.DataFrame:
    """The sheet read and validated as rules/common.smk does."""
    from snakemake.utils import validate

    samples = pd.read_csv(path, sep="\t", comment="#",
                          dtype={"sample": str, "image": str, "kind": str, "channel_names": str}
                          ).set_index("sample", drop=False)
    for column in ("nuclear_channel", "membrane_channel"):
        if column not in samples:
            samples[column] = pd.NA
        samples[column] = samples[column].astype("Int64")
    for column in {"height", "width"} & set(samples.columns):
        samples[column] = samples[column].astype("Int64")
    validate(samples, schema=str(SCHEMA))
    assert not samples.index.duplicated().any()
    return samples


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def plate(root: Path, plates: int, wells: int, sites: int, suffix: str = ".tif") -> list[Path]:
    """Empty files ``root/plateP/<well>/<well>_s<site><suffix>`` (wells A01, A02 ... in rows of 12)."""
    files = []
    for p in range(plates):
        for w in range(wells):
            well = f"{'ABCDEFGH'[w // 12]}{w % 12 + 1:02d}"
            folder = root / f"plate{p}" / well
            folder.mkdir(parents=True, exist_ok=True)
            for s in range(sites):
                files.append(folder / f"{well}_s{s}{suffix}")
                files[-1].touch()
    return files


def test_ten_thousand_files_listed_in_seconds(tmp_path, monkeypatch):
    files = plate(tmp_path / "screen", plates=10, wells=96, sites=11)  # 10 560 files
    for extra in files[10_000:]:
        extra.unlink()
    files = files[:10_000]
    assert len(files) == 10_000
    touch(tmp_path / "screen" / "plate0" / "A01" / "notes.txt")  # not an image
    touch(tmp_path / "screen" / "plate0" / "A01" / "._A01_s0.tif")  # hidden (macOS resource fork)
    monkeypatch.chdir(tmp_path)
    start = time.perf_counter()
    assert main(["samples", "screen/**/*.tif", "--kind", "tissue", "--nuclear-channel", "0",
                 "-o", "config/samples.tsv"]) == 0
    elapsed = time.perf_counter() - start
    assert elapsed < 5, f"{elapsed:.1f} s for 10^4 files"  # about 0.6 s on one core: it only lists files
    sheet = read_like_the_workflow(tmp_path / "config" / "samples.tsv")
    assert len(sheet) == 10_000
    assert list(sheet.image) == sorted(str(f.relative_to(tmp_path)) for f in files)
    assert sheet["sample"].map(NAME.match).all() and sheet["sample"].is_unique
    assert sheet.loc["plate0_A01_A01_s0", "image"] == "screen/plate0/A01/A01_s0.tif"
    assert (sheet.nuclear_channel == 0).all() and sheet.membrane_channel.isna().all()


def test_names_are_valid_unique_and_deterministic(tmp_path):
    for name in ("a b.tif", "a_b.tif", "a_b_2.png", "_x.png", "NA.tif", "img.OME.TIF", ".hidden.tif", "ü.tiff"):
        touch(tmp_path / "d" / name)
    zarr = tmp_path / "d" / "big.ome.zarr"
    touch(zarr / ".zattrs")
    touch(zarr / "0" / "0.tif")  # inside the OME-Zarr folder: part of it, not an image of its own
    sheet = build_sheet(f"{tmp_path}/d/**", "tissue")
    names = {Path(r["image"]).name: r["sample"] for r in sheet.rows}
    # a b.tif and a_b.tif both give a_b: the first in path order keeps it, the next gets the first free suffix
    assert names == {"a b.tif": "a_b", "a_b.tif": "a_b_3", "a_b_2.png": "a_b_2", "_x.png": "x", "NA.tif": "NA_",
                     "img.OME.TIF": "img", "ü.tiff": "sample", "big.ome.zarr": "big"}
    assert all(NAME.match(n) for n in names.values()) and len(set(names.values())) == len(names)
    assert build_sheet(f"{tmp_path}/d/**", "tissue").rows == sheet.rows  # deterministic
    assert unique_names(["a", "a", "a_2", "b", "a"]) == ["a", "a_3", "a_2", "b", "a_4"]
    assert sample_name("plate 1/A01/s1") == "plate_1_A01_s1"
    # the name starts below the pattern's fixed folders; with none, from the current folder
    touch(tmp_path / "p" / "q" / "A01" / "s1.png")
    assert build_sheet(f"{tmp_path}/p/**/*.png", "tissue").rows[0]["sample"] == "q_A01_s1"
    assert build_sheet(f"{tmp_path}/p/q/A01/s1.png", "tissue").rows[0]["sample"] == "s1"


def test_pattern_groups_become_columns_and_names(tmp_path):
    plate(tmp_path / "screen", plates=2, wells=3, sites=2)
    touch(tmp_path / "screen" / "plate0" / "A01" / "A01_s7_extra.tif")
    pattern = r"(?P<plate>plate\d+)/[A-H]\d{2}/" + WELL_SITE + r"(?P<extra>_extra)?"
    sheet = build_sheet(f"{tmp_path}/screen/**/*.tif", "timelapse", membrane_channel=1,
                        channel_names="DNA,membrane", pixel_size_um=0.65, regex=pattern,
                        name="{plate}_{well}_s{site}", frame_interval_s=120.0)
    assert sheet.columns[-4:] == ["plate", "well", "site", "extra"]
    rows = {r["sample"]: r for r in sheet.rows}
    assert len(rows) == 13
    assert rows["plate1_A03_s1"] | {"image": None} == {
        "sample": "plate1_A03_s1", "image": None, "kind": "timelapse", "nuclear_channel": None,
        "membrane_channel": 1, "channel_names": "DNA,membrane", "pixel_size_um": 0.65, "frame_interval_s": 120.0,
        "plate": "plate1", "well": "A03", "site": "1", "extra": ""}
    assert rows["plate0_A01_s7"]["extra"] == "_extra"
    text = format_sheet(sheet)
    assert text.splitlines()[0].split("\t") == sheet.columns
    assert f"plate1_A03_s1\t{tmp_path}/screen/plate1/A03/A03_s1.tif\ttimelapse\t\t1\tDNA,membrane\t0.65\t" \
           f"120.0\tplate1\tA03\t1\t\n" in text
    # the template's {name} is the name derived from the path
    sheet = build_sheet(f"{tmp_path}/screen/**/*.tif", "tissue", regex=WELL_SITE, name="run3-{name}")
    assert sheet.rows[0]["sample"] == "run3-plate0_A01_A01_s0"


def test_an_unmatched_file_is_an_error_naming_it(tmp_path):
    plate(tmp_path / "screen", plates=1, wells=2, sites=2)
    odd = tmp_path / "screen" / "plate0" / "A02" / "overview.tif"
    touch(odd)
    with pytest.raises(ValueError, match=f"{re.escape(str(odd))}: does not match --pattern"):
        build_sheet(f"{tmp_path}/screen/**/*.tif", "tissue", regex=WELL_SITE)
    sheet = build_sheet(f"{tmp_path}/screen/**/*.tif", "tissue", regex=WELL_SITE, skip_unmatched=True)
    assert len(sheet) == 4 and sheet.skipped == [str(odd)]
    with pytest.raises(ValueError, match="none of the 5 file"):
        build_sheet(f"{tmp_path}/screen/**/*.tif", "tissue", regex=r"(?P<well>Z\d\d)", skip_unmatched=True)
    # a template that gives two files one name is an error naming both (it lacks a field)
    with pytest.raises(ValueError, match=r"'A01' to both .*A01_s0\.tif and .*A01_s1\.tif"):
        build_sheet(f"{tmp_path}/screen/**/*.tif", "tissue", regex=WELL_SITE, name="{well}", skip_unmatched=True)
    with pytest.raises(ValueError, match="no field 'plate'"):
        build_sheet(f"{tmp_path}/screen/**/*.tif", "tissue", regex=WELL_SITE, name="{plate}", skip_unmatched=True)
    with pytest.raises(ValueError, match=r"\['image'\] are reserved"):
        build_sheet(f"{tmp_path}/screen/**/*.tif", "tissue", regex=r"(?P<image>s\d)")
    with pytest.raises(ValueError, match="not a regular expression"):
        build_sheet(f"{tmp_path}/screen/**/*.tif", "tissue", regex=r"(?P<well>")


def test_an_empty_glob_is_an_error_naming_the_pattern(tmp_path, capsys):
    with pytest.raises(ValueError, match=re.escape(f"match '{tmp_path}/none/**/*.tif'")):
        build_sheet(f"{tmp_path}/none/**/*.tif", "tissue")
    touch(tmp_path / "docs" / "readme.txt")
    with pytest.raises(ValueError, match=r"\(1 path\(s\) match, none an image file or OME-Zarr folder\)"):
        build_sheet(f"{tmp_path}/docs/*", "tissue")
    assert main(["samples", f"{tmp_path}/none/*.png", "--kind", "tissue"]) == 2
    assert "cellscale samples: error: no image files" in capsys.readouterr().err
    for bad in ({"kind": "fixed"}, {"kind": "tissue", "nuclear_channel": -1}, {"kind": "tissue", "pixel_size_um": 0}):
        with pytest.raises(ValueError):
            build_sheet(f"{tmp_path}/docs/*", **bad)
    touch(tmp_path / "odd" / "a#1.png")  # rules/common.smk reads '#' as the start of a comment
    with pytest.raises(ValueError, match="a#1.png.*'#'"):
        build_sheet(f"{tmp_path}/odd/*.png", "tissue")


def test_the_sheet_passes_the_samples_schema_and_goes_to_stdout(tmp_path, capsys):
    plate(tmp_path / "screen", plates=1, wells=13, sites=3, suffix=".ome.tif")
    args = ["samples", f"{tmp_path}/screen/**/*.ome.tif", "--kind", "tissue", "--nuclear-channel", "0",
            "--membrane-channel", "1", "--channel-names", "DNA,membrane", "--pixel-size-um", "0.5",
            "--pattern", r"(?P<plate>plate\d)/[A-H]\d{2}/" + WELL_SITE, "--name", "{well}_{site}"]
    assert main([*args, "-o", str(tmp_path / "samples.tsv")]) == 0
    assert not list(tmp_path.glob(".samples.tsv.*"))  # written atomically: no temporary left
    sheet = read_like_the_workflow(tmp_path / "samples.tsv")
    assert len(sheet) == 39 and list(sheet.columns[-3:]) == ["plate", "well", "site"]
    assert sheet.loc["B01_2", ["well", "site", "plate"]].tolist() == ["B01", 2, "plate0"]
    assert (sheet.pixel_size_um == 0.5).all() and (sheet.membrane_channel == 1).all()
    capsys.readouterr()
    assert main([*args, "-o", "-"]) == 0
    out = capsys.readouterr()
    assert out.out == (tmp_path / "samples.tsv").read_text() and "39 samples -> stdout" in out.err


def test_snakemake_accepts_the_sheet(tmp_path):
    """The dry run builds every sample's jobs from a generated sheet with well and site columns."""
    pngs = sorted((DEMO / "dsb2018" / "images").glob("*.png"))
    for png, well, site in zip(pngs, ["A01", "A01", "B12"], [1, 2, 3], strict=True):
        (tmp_path / "plate1" / well).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, tmp_path / "plate1" / well / f"{well}_s{site}.png")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "cellscale.cli", "samples", "plate1/**/*.png", "--kind", "tissue",
                             "--pattern", WELL_SITE, "--name", "{well}_s{site}", "-o", "config/samples.tsv"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "3 samples -> config/samples.tsv" in result.stderr
    sheet = (tmp_path / "config" / "samples.tsv").read_text().splitlines()
    assert sheet[0].endswith("\twell\tsite") and sheet[1].startswith("A01_s1\tplate1/A01/A01_s1.png\ttissue\t")
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config.update(samples="config/samples.tsv",
                  models={"nuclear": str(MODELS / "nuclear"), "tissue": str(MODELS / "tissue")})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake = [str(Path(sys.executable).parent / "snakemake"), "-s", str(ROOT / "workflow" / "Snakefile"),
                 "--directory", str(tmp_path), "--configfile", str(tmp_path / "config.yaml"), "--cores", "1"]
    # the plan (which images share jobs) for real: it reads the images' sizes; then the whole DAG, dry
    result = subprocess.run([*snakemake, "--until", "plan_batches"], env=env, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    plan = pd.read_csv(tmp_path / "results/batches/plan.tsv", sep="\t", dtype=str)
    assert list(plan["sample"]) == ["A01_s1", "A01_s2", "B12_s3"] and plan["batch"].notna().all()
    result = subprocess.run([*snakemake, "--dry-run"], env=env, capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    for path in ("plate1/A01/A01_s1.png", "plate1/A01/A01_s2.png", "plate1/B12/B12_s3.png"):
        assert path in result.stdout  # an input of its batch job
    assert re.search(r"^segment_batch\s+1$", result.stdout, re.M)


def test_the_sheet_has_a_frame_interval_column_for_movies_only(tmp_path, capsys):
    """frame_interval_s is always a column (empty unless given), as pixel_size_um is; --frame-interval-s fills it
    for --kind timelapse, and is refused for still images (the workflow refuses such a sheet)."""
    for name in ("m1.tif", "m2.tif"):
        touch(tmp_path / name)
    assert main(["samples", f"{tmp_path}/*.tif", "--kind", "tissue", "-o", str(tmp_path / "still.tsv")]) == 0
    assert (tmp_path / "still.tsv").read_text().splitlines()[0].split("\t")[-2:] == ["pixel_size_um",
                                                                                      "frame_interval_s"]
    assert read_like_the_workflow(tmp_path / "still.tsv").frame_interval_s.isna().all()
    assert main(["samples", f"{tmp_path}/*.tif", "--kind", "timelapse", "--frame-interval-s", "300", "-o",
                 str(tmp_path / "movies.tsv")]) == 0
    assert (read_like_the_workflow(tmp_path / "movies.tsv").frame_interval_s == 300.0).all()
    capsys.readouterr()
    assert main(["samples", f"{tmp_path}/*.tif", "--kind", "tissue", "--frame-interval-s", "300", "-o",
                 str(tmp_path / "no.tsv")]) == 2
    assert "--frame-interval-s is a time-lapse's" in capsys.readouterr().err and not (tmp_path / "no.tsv").exists()
    with pytest.raises(ValueError, match="--frame-interval-s 0: must be positive"):
        build_sheet(f"{tmp_path}/*.tif", "timelapse", frame_interval_s=0)


def test_a_time_lapse_sheet_lists_frame_folders_as_movies(tmp_path, capsys):
    """--kind timelapse: a folder of frame files the pattern matches is one movie's row (the Cell Tracking
    Challenge's 01/t000.tif ...), beside T-stack files; its frames are not samples of their own. A folder whose
    files the pattern matches too is not a movie; a still image sheet lists no folder and says how to list one."""
    for seq in ("GOWT1", "SIM+"):
        for t in range(3):
            touch(tmp_path / "ctc" / seq / "01" / f"t{t:03d}.tif")
        (tmp_path / "ctc" / seq / "01_GT").mkdir()
    touch(tmp_path / "ctc" / "other" / "stack.tif")
    sheet = build_sheet(f"{tmp_path}/ctc/*/01", "timelapse")
    assert [(r["sample"], r["image"]) for r in sheet.rows] == [
        ("GOWT1_01", f"{tmp_path}/ctc/GOWT1/01"), ("SIM__01", f"{tmp_path}/ctc/SIM+/01")]
    assert [r["image"] for r in build_sheet(f"{tmp_path}/ctc/*/*", "timelapse").rows] == [   # 01_GT: no frames
        f"{tmp_path}/ctc/GOWT1/01", f"{tmp_path}/ctc/SIM+/01", f"{tmp_path}/ctc/other/stack.tif"]
    assert len(build_sheet(f"{tmp_path}/ctc/**", "timelapse").rows) == 7   # it matches the frames: they are rows
    assert main(["samples", f"{tmp_path}/ctc/*/01", "--kind", "tissue"]) == 2
    assert "a folder of a movie's frame files is listed with --kind timelapse" in capsys.readouterr().err


def test_sizes_come_from_the_headers(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((3, 40, 50), np.uint16), metadata={"axes": "CYX"})
    tifffile.imwrite(tmp_path / "b.tif", np.zeros((64, 32), np.uint8))
    (tmp_path / "c.tif").write_bytes(b"not a tiff")
    assert main(["samples", f"{tmp_path}/*.tif", "--kind", "tissue", "--sizes", "-o", str(tmp_path / "s.tsv")]) == 0
    sheet = read_like_the_workflow(tmp_path / "s.tsv")
    assert sheet.loc["a", ["height", "width"]].tolist() == [40, 50]
    assert sheet.loc["b", ["height", "width"]].tolist() == [64, 32]
    assert sheet.loc["c", ["height", "width"]].isna().all()   # unreadable: left empty, the workflow says why


@pytest.mark.parametrize("sheet, says", [
    ("sample\timage\na\tx.png\n", ["no column 'kind'", "sample, image, kind"]),
    ("image\tkind\nx.png\ttissue\n", ["no column 'sample'"]),
    ("sample\timage\tkind\na\tx.png\ttissue\nb\tx.png\t\n", ["sample 'b'", "'kind' is a required property"]),
    ("sample\timage\tkind\na\tx.png\ttissue\nb\tx.png\ttissue\nc\tx.png\ttissue\nd\tx.png\ttisue\n",
     ["sample 'd': kind: 'tisue' is not one of"]),
    ("sample\timage\tkind\tnuclear_channel\na\tx.png\ttissue\t0\nb\tx.png\ttissue\tx\n",
     ["sample 'b': nuclear_channel 'x' is not a whole number"]),
    ("sample\timage\tkind\tmembrane_channel\na\tx.png\ttissue\t1.5\n", ["sample 'a': membrane_channel"]),
    ("sample\timage\tkind\na\tx.png\ttissue\na\ty.png\ttissue\n", ["duplicate sample names: ['a']"]),
    ("sample\timage\tkind\tframe_interval_s\nm\tm.tif\ttimelapse\t300\na\tx.png\ttissue\t\n"
     "b\ty.png\ttissue\t60\nc\tz.png\ttissue\t60\n",
     ["sample 'b': frame_interval_s 60 is a time-lapse's seconds between frames, and the sample is kind tissue",
      "(2 row(s) like it)"]),
    ("sample\timage\tkind\nm\tw1.tif|w2.tif\ttimelapse\n",
     ["sample 'm': image 'w1.tif|w2.tif' lists one file per channel, which is read for still images (kind tissue)"]),
], ids=["no-kind-column", "no-sample-column", "empty-kind", "unknown-kind", "channel-not-a-number",
        "channel-fraction", "duplicate", "frame-interval-of-a-still-image", "channel-files-of-a-movie"])
def test_a_bad_sheet_stops_the_run_naming_the_sample_and_column(tmp_path, sheet, says):
    """Before any job: the sheet's file, the sample (not a row number of deduplicated rows) and what is wrong, in
    a few lines (not the schema)."""
    (tmp_path / "samples.tsv").write_text(sheet)
    config = {"samples": str(tmp_path / "samples.tsv"),
              "models": {"nuclear": str(MODELS / "nuclear"), "tissue": str(MODELS / "tissue")}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake = [str(Path(sys.executable).parent / "snakemake"), "-s", str(ROOT / "workflow" / "Snakefile")]
    result = subprocess.run([*snakemake, "--directory", str(tmp_path), "--configfile", str(tmp_path / "config.yaml"),
                             "--cores", "1", "--dry-run"], capture_output=True, text=True, timeout=300, check=False)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert str(tmp_path / "samples.tsv") in out and all(text in out for text in says), out[-2000:]
    assert "properties" not in out and len(out.splitlines()) < 40, out[-2000:]


METAXPRESS = r"(?P<well>[A-P]\d{2})_s(?P<site>\d+)_w(?P<channel>\d+)"


def metaxpress(root: Path, fields, channels=(1, 2, 10)) -> None:
    """Empty MetaXpress-like files, one per channel: ``root/<field>_w<channel>.TIF``."""
    for field in fields:
        for c in channels:
            touch(root / f"{field}_w{c}.TIF")


def test_a_channel_group_makes_one_row_of_each_fields_channel_files(tmp_path):
    metaxpress(tmp_path, ["A01_s1", "A01_s2", "B03_s1"])
    out = tmp_path / "s.tsv"
    assert main(["samples", f"{tmp_path}/*.TIF", "--kind", "tissue", "--pattern", METAXPRESS,
                 "--name", "{well}_s{site}", "--channel-names", "DNA,GFP,Actin", "-o", str(out)]) == 0
    sheet = read_like_the_workflow(out)
    assert list(sheet.index) == ["A01_s1", "A01_s2", "B03_s1"] and "channel" not in sheet.columns
    # the files in the channel group's numeric order (w10 last), joined by the separator the workflow splits on
    assert sheet.loc["A01_s2", "image"] == "|".join(str(tmp_path / f"A01_s2_w{c}.TIF") for c in (1, 2, 10))
    assert sheet["well"].tolist() == ["A01", "A01", "B03"] and sheet["site"].tolist() == [1, 2, 1]
    assert (sheet["channel_names"] == "DNA,GFP,Actin").all()
    with pytest.raises(ValueError, match=r"--channel-names 'DNA,GFP': 2 names for 3 channels"):
        build_sheet(f"{tmp_path}/*.TIF", "tissue", regex=METAXPRESS, name="{well}_s{site}", channel_names="DNA,GFP")
    with pytest.raises(ValueError, match="has a channel group: give --name a template of the other groups"):
        build_sheet(f"{tmp_path}/*.TIF", "tissue", regex=METAXPRESS)
    with pytest.raises(ValueError, match="is for still images"):
        build_sheet(f"{tmp_path}/*.TIF", "timelapse", regex=METAXPRESS, name="{well}_s{site}")


def test_a_field_missing_a_channel_is_named_or_left_out(tmp_path):
    metaxpress(tmp_path, ["A01_s1", "A01_s2"])
    (tmp_path / "A01_s2_w2.TIF").unlink()
    with pytest.raises(ValueError) as err:
        build_sheet(f"{tmp_path}/*.TIF", "tissue", regex=METAXPRESS, name="{well}_s{site}")
    assert str(err.value).startswith("field 'A01_s2' has no file of channel '2' (its files: ")
    sheet = build_sheet(f"{tmp_path}/*.TIF", "tissue", regex=METAXPRESS, name="{well}_s{site}", skip_unmatched=True)
    assert [r["sample"] for r in sheet.rows] == ["A01_s1"]
    assert sorted(sheet.skipped) == [str(tmp_path / f"A01_s2_w{c}.TIF") for c in (1, 10)]
    touch(tmp_path / "A01_s1_w02.TIF")  # channel 2 twice in one field (w2 and w02): named, not guessed
    with pytest.raises(ValueError, match="A01_s1_w02.TIF and .*A01_s1_w2.TIF are both its channel|"
                                         "A01_s1_w2.TIF and .*A01_s1_w02.TIF are both its channel"):
        build_sheet(f"{tmp_path}/*.TIF", "tissue", regex=METAXPRESS, name="{well}_s{site}", skip_unmatched=True)
