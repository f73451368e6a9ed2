"""The Snakemake workflow end to end on generated data with known truth, and on bad input."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from support import DEMO, MODELS, ROOT, need_shared

from cellscale.samples import batch_name

pytestmark = pytest.mark.workflow
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
DSB = batch_name("dsb")  # the demo run's batch: its one image, dsb (a batch is named after its first image)
HEADER = "sample\timage\tkind\tnuclear_channel\tmembrane_channel\tchannel_names\tpixel_size_um\n"


def write_config(workdir: Path, rows: list[str], header: str = HEADER, **overrides) -> None:
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    (workdir / "config" / "samples.tsv").write_text(header + "".join(r + "\n" for r in rows))
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["samples"] = str(workdir / "config" / "samples.tsv")
    config["models"] = {"nuclear": str(MODELS / "nuclear"), "tissue": str(MODELS / "tissue")}
    config["output"] = {"formats": ["ome-tiff"]}  # the OME-Zarr and SpatialData stores: demo_run writes them
    config.update(overrides)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))


def run(workdir: Path, *args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    cmd = [SNAKEMAKE, "-s", str(ROOT / "workflow" / "Snakefile"), "--directory", str(workdir),
           "--cores", "2", "--keep-going", "--show-failed-logs", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """Generated tissue + time-lapse (with truth) and one real DSB image through the whole workflow."""
    from cellscale.io import write_image
    from cellscale.synth.timelapse import make_timelapse, write_ctc_ground_truth
    from cellscale.synth.tissue import make_tissue

    work = tmp_path_factory.mktemp("demo")
    tissue = make_tissue((384, 384), n_cells=80, seed=5)
    write_image(work / "tissue.ome.tif", tissue.image, tissue.channel_names)
    tl = make_timelapse(n_frames=16, shape=(192, 192), n_cells=8, seed=3)
    write_image(work / "movie.ome.tif", (tl.image * 60000).astype(np.uint16), ["nuclei"], axes="TYX")
    write_ctc_ground_truth(tl, work / "movie_GT")
    dsb = DEMO / "dsb2018" / "images" / "0bf4b144167694b6.png"
    write_config(work, [
        f"tissue\t{work / 'tissue.ome.tif'}\ttissue\t0\t1\t\t0.5\t",
        f"movie\t{work / 'movie.ome.tif'}\ttimelapse\t\t\t\t\t120",  # a frame every 2 minutes
        f"dsb\t{dsb}\ttissue\t\t\t\t\t",
    ], header=HEADER.rstrip("\n") + "\tframe_interval_s\n", tiling={"tile": 128, "overlap": 32, "shard_mpx": 0.14},
        output=yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["output"])  # every format
    result = run(work)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return work, tissue, tl, result


def matched_pairs(truth, pred, iou=0.5):
    from scipy.optimize import linear_sum_assignment

    from cellscale.segment.metrics import iou_matrix

    m = iou_matrix(truth, pred)
    rows, cols = linear_sum_assignment(-m)
    keep = m[rows, cols] >= iou
    t_ids = np.unique(truth)[1:][rows[keep]]
    p_ids = np.unique(pred)[1:][cols[keep]]
    return t_ids, p_ids


def test_outputs_exist(demo_run):
    work = demo_run[0]
    for rel in ["results/segmentation/tissue/nuclear.ome.tif", "results/segmentation/tissue/whole_cell.ome.tif",
                "results/segmentation/movie/nuclear.ome.tif", f"results/batches/{DSB}/labels/dsb/nuclear.ome.tif",
                "results/measurements/tissue.csv", "results/measurements/tissue.parquet",
                f"results/cells/batch_{DSB}.parquet", "results/tracks/movie/res_track.txt",
                "results/tracks/movie/mask000.tif", "results/tracks/movie.parquet", "results/report/movie/lineage.png",
                "results/report/movie/tracking.png",
                "results/report/tissue/overlay.png", "results/report/fields/overlays.png",
                "results/report/fields/distributions.png", "results/summary.tsv", "results/index.tsv",
                "results/errors.tsv", "results/cells.parquet", "results/cells.h5ad"]:
        assert (work / rel).exists(), rel
    import tifffile

    for sample, rel in (("tissue", "results/segmentation/tissue/nuclear.ome.tif"),
                        ("dsb", f"results/batches/{DSB}/labels/dsb/nuclear.ome.tif")):
        with tifffile.TiffFile(work / rel) as tif:   # the OME image named after its sample (was Image0)
            assert tif.series[0].name == sample, rel
    # tissue and movie are larger than a shard: their own jobs; the tile plan made several shards, so several
    # segment jobs ran. dsb is smaller: it went into a batch
    assert len(list((work / "results/predictions/tissue").glob("shard_*.zarr.zip"))) > 1
    assert not (work / "results/segmentation/dsb").exists() and not (work / "results/tiles/dsb").exists()
    for rule in ["plan_batches", "tile", "segment", "stitch", "segment_batch", "measure", "track", "report_sample",
                 "lineage", "report_fields", "ngff", "spatialdata", "ngff_batch", "spatialdata_batch",
                 "aggregate_measurements", "summary", "model_provenance"]:   # each rule's files under its own name
        assert list((work / "results/benchmarks" / rule).rglob("*.tsv")), rule
        assert list((work / "logs" / rule).rglob("*.log")) or (work / "logs" / f"{rule}.log").exists(), rule


def test_cost_table_prices_every_job_of_the_run(demo_run):
    """results/cost.tsv: every job whose benchmark file the run wrote is priced (the rule cost ran last: after
    every other job), per rule, pool, sample, and the levels add up to the run's compute cost."""
    from cellscale.cost.prices import load_prices

    work = demo_run[0]
    table = pd.read_csv(work / "results/cost.tsv", sep="\t", keep_default_na=False, na_values=[""])
    by = {level: rows.set_index("key") for level, rows in table.groupby("level")}
    written = {p.relative_to(work / "results/benchmarks").as_posix()
               for p in (work / "results/benchmarks").rglob("*.tsv")
               if p.parent.name != "model_provenance"} - {"cost/run.tsv"}  # the launcher's own jobs: not priced
    assert set(by["job"].index) == written
    # object_size: the movie's nuclei measured before its tile job (a time-lapse without a sheet scale: auto)
    assert set(by["rule"].index) == {"plan_batches", "object_size", "tile", "segment", "stitch", "segment_batch",
                                     "measure", "track", "report_sample", "lineage", "report_fields", "summary",
                                     "aggregate_measurements", "ngff", "spatialdata", "ngff_batch",
                                     "spatialdata_batch"}
    assert set(by["sample"].index) == {"tissue", "movie", "dsb"}
    compute = by["run"].loc["compute", "usd"]
    assert compute > 0
    for level in ("job", "rule", "pool", "sample"):
        assert by[level]["usd"].sum() == pytest.approx(compute, rel=1e-4), level
    # the GPU rules on the GKE profile's GPU pool (on demand), the others on its spot CPU pool
    assert set(by["pool"].index) == {"gpu", "spot-cpu"}
    assert set(by["rule"].loc[["segment", "segment_batch"], "pool"]) == {"gpu"}
    # a job's share of its node: stitch declares 2 threads, of the 4 vCPUs of the spot pool's e2-standard-4
    node = load_prices(ROOT / "config/prices/gke-us-central1.yaml").machine(by["rule"].loc["stitch", "machine_type"])
    mem_mb = yaml.safe_load((ROOT / "profiles/gke/config.yaml").read_text())["set-resources"]["stitch"]["mem_mb"]
    assert by["rule"].loc["stitch", "node_share"] == pytest.approx(max(2 / node.vcpus,
                                                                       mem_mb / (node.memory_gib * 1024**3 / 1e6)))
    # a local run (shared filesystem): its storage and wall time are priced too; megapixels known for every job
    assert by["run"].loc["storage", "usd"] > 0 and by["run"].loc["cluster_fee", "usd"] > 0
    assert by["job"]["mpx"].notna().all() and by["run"].loc["total", "usd_per_1000_mpx"] > 0
    assert (work / "results/benchmarks/cost/run.tsv").exists() and (work / "logs/cost.log").exists()


def test_run_tables_say_where_every_sample_is(demo_run):
    """index.tsv: each sample's batch (or own jobs), label files and table; one run-level table of all cells; the
    batch tables read as one pyarrow dataset with a sample column."""
    import pyarrow.dataset as ds

    from cellscale.io import read_labels

    work = demo_run[0]
    index = pd.read_csv(work / "results/index.tsv", sep="\t", dtype=str, keep_default_na=False).set_index("sample")
    assert list(index.index) == ["tissue", "movie", "dsb"]  # sheet order
    assert list(index["batch"]) == ["", "", DSB] and (index["status"] == "ok").all()
    assert index.loc["tissue", "whole_cell_labels"] == "results/segmentation/tissue/whole_cell.ome.tif"
    assert index.loc["dsb", "whole_cell_labels"] == ""
    cells = pd.read_parquet(work / "results/cells.parquet")
    for sample, row in index.iterrows():
        labels = read_labels(work / row["nuclear_labels"])
        table = pd.read_parquet(work / row["cells"])
        if "sample" in table:
            table = table[table["sample"] == sample]
        nuclear = table[table["compartment"] == "nuclear"]
        assert len(nuclear) == (len(np.unique(labels)) - 1 if labels.ndim == 2 else len(nuclear)) > 0, sample
        assert (cells["sample"] == sample).sum() == len(table), sample
    batches = ds.dataset(work / "results/cells", format="parquet").to_table().to_pandas()
    assert set(batches["sample"]) == {"dsb"} and len(batches) == (cells["sample"] == "dsb").sum()
    summary = pd.read_csv(work / "results/summary.tsv", sep="\t").set_index("sample")
    assert list(summary.index) == ["tissue", "movie", "dsb"] and (summary["status"] == "ok").all()
    assert pd.read_csv(work / "results/errors.tsv", sep="\t").empty
    # which model (registry name@version) and dataset version produced each result
    from cellscale.registry import model_entry

    nuclear, tissue = model_entry(MODELS / "nuclear"), model_entry(MODELS / "tissue")
    assert summary.loc["dsb", "model"] == nuclear.ref and summary.loc["dsb", "model_dataset"] == nuclear.dataset
    assert summary.loc["tissue", "model"] == tissue.ref and nuclear.dataset.startswith("dsb2018@")
    assert json.loads((work / "results/report/tissue/summary.json").read_text())["model"] == tissue.ref
    # the pixel size each sample's labels state: the sheet's 0.5 for tissue; none given nor in the files elsewhere
    assert summary.loc["tissue", "pixel_size_um"] == 0.5 and summary["pixel_size_um"].drop("tissue").isna().all()
    # the movie's frame interval (the sheet's 120 s): summary.tsv, and its cells' time (seconds since frame 0)
    assert summary.loc["movie", "frame_interval_s"] == 120 and summary["frame_interval_s"].drop("movie").isna().all()
    movie = cells[cells["sample"] == "movie"]
    np.testing.assert_array_equal(movie["time"].to_numpy(), movie["frame"].to_numpy() * 120.0)
    assert cells.loc[cells["sample"] != "movie", "time"].isna().all()


def test_every_sample_opens_in_ome_zarr_and_spatialdata(demo_run):
    """index.tsv names each sample's OME-Zarr image (with labels/) and SpatialData store, own jobs or batched: the
    ome-zarr library reads the image and labels back equal to the OME-TIFF outputs, spatialdata reads the store,
    and its table's rows are exactly the label ids of their labels element (a time-lapse: per frame). Each store's
    table says what made the cells (uns['cellscale']): a batch's per sample of the batch, the model summary.tsv
    names."""
    import spatialdata
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader

    from cellscale.io import ImageSource, read_labels

    work = demo_run[0]
    index = pd.read_csv(work / "results/index.tsv", sep="\t", dtype=str, keep_default_na=False).set_index("sample")
    summary = pd.read_csv(work / "results/summary.tsv", sep="\t").set_index("sample")
    assert index.loc["tissue", "ngff"] == "results/ngff/tissue.ome.zarr"
    assert index.loc["dsb", "spatialdata"] == f"results/spatialdata/batches/{DSB}.zarr"
    assert index.loc["dsb", "spatialdata_coordinate_system"] == "dsb"
    assert index.loc["tissue", "spatialdata_coordinate_system"] == "global"
    for sample, row in index.iterrows():
        timelapse = sample == "movie"
        nodes = [n for n in Reader(parse_url(str(work / row["ngff"])))() if n.data]
        image = next(n for n in nodes if not any(isinstance(s, Label) for s in n.specs))
        labels = {n.metadata["name"]: n for n in nodes if any(isinstance(s, Label) for s in n.specs)}
        with ImageSource.open(row["image"], timelapse=timelapse) as source:
            assert np.asarray(image.data[0]).shape == (source.shape if timelapse else source.shape[1:]), sample
        if timelapse:  # the t axis in seconds, scaled by the sheet's frame_interval_s
            assert image.metadata["axes"][0] == {"name": "t", "type": "time", "unit": "second"}
            assert image.metadata["coordinateTransformations"][0][0]["scale"][0] == 120.0
        comps = [c for c in ("nuclear", "whole_cell") if row[f"{c}_labels"]]
        assert sorted(labels) == comps + (["tracks"] if timelapse else []), sample  # a movie's track ids too
        for comp in comps:
            np.testing.assert_array_equal(np.asarray(labels[comp].data[0]), read_labels(work / row[f"{comp}_labels"]))
        sdata = spatialdata.read_zarr(work / row["spatialdata"])
        system = row["spatialdata_coordinate_system"]
        prefix = "" if system == "global" else f"{system}_"  # a batch's store: the sample's own elements
        made = sdata.tables["table"].uns["cellscale"]
        if prefix:  # a batch's store: a row per sample of the batch (this run's batch holds dsb alone)
            assert list(made["samples"].index) == [sample]
            assert made["samples"].loc[sample, "model_nuclear"] == summary.loc[sample, "model"]
        else:
            assert made["sample"] == sample and made["model"]["nuclear"] == summary.loc[sample, "model"]
        sdata = sdata.filter_by_coordinate_system(system)
        table = sdata.tables["table"]
        for region, rows in table.obs.groupby("region", observed=True):
            lab = sdata.labels[region]["scale0"]["image"].values
            assert set(rows["instance_id"]) == set(np.unique(lab).tolist()) - {0}, (sample, region)
        if timelapse:
            assert {"frame", "track_id"} <= set(table.obs.columns)
            assert len(sdata.labels) == len(np.unique(table.obs["frame"]))
        else:
            elements = comps + (["cytoplasm"] if len(comps) == 2 else [])  # the cell without its nucleus too
            assert set(sdata.labels) == {prefix + c for c in elements}
            assert set(sdata.shapes) == {f"{prefix}{c}_boundaries" for c in comps}
            cells = pd.read_parquet(work / row["cells"])
            assert len(table) == len(cells[cells["sample"] == sample] if prefix else cells), sample  # every row


def test_a_batched_image_gets_the_labels_of_its_own_jobs(demo_run):
    """The same image through tile -> segment -> stitch (asked for by name) and through its batch job."""
    from cellscale.io import read_labels

    work = demo_run[0]
    result = run(work, "results/segmentation/dsb/nuclear.ome.tif", "results/measurements/dsb.parquet")
    assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_array_equal(read_labels(work / "results/segmentation/dsb/nuclear.ome.tif"),
                                  read_labels(work / f"results/batches/{DSB}/labels/dsb/nuclear.ome.tif"))
    own = pd.read_parquet(work / "results/measurements/dsb.parquet")
    batched = pd.read_parquet(work / f"results/cells/batch_{DSB}.parquet").drop(columns="sample")
    pd.testing.assert_frame_equal(own[batched.columns], batched)


def test_segmentation_matches_truth(demo_run):
    from cellscale.io import read_labels
    from cellscale.segment.metrics import f1_score

    work, tissue = demo_run[0], demo_run[1]
    # whole cells: the shipped tissue model, tuned on real CODEX tissue, splits some irregular generated cells
    for comp, minimum, count_tolerance in (("nuclear", 0.95, 0.05), ("whole_cell", 0.85, 0.2)):
        labels = read_labels(work / f"results/segmentation/tissue/{comp}.ome.tif")
        assert labels.dtype == np.uint32
        truth = getattr(tissue, comp)
        assert f1_score(truth, labels) >= minimum, comp
        n_true = len(np.unique(truth)) - 1
        assert abs(len(np.unique(labels)) - 1 - n_true) <= count_tolerance * n_true, comp


def test_measurements_of_known_cells(demo_run):
    from cellscale.io import read_labels

    work, tissue = demo_run[0], demo_run[1]
    table = pd.read_csv(work / "results/measurements/tissue.csv")
    assert list(table.columns[:14]) == ["CellID", "DNA", "Membrane", "CD3", "CD20", "X_centroid", "Y_centroid",
                                        "Area", "MajorAxisLength", "MinorAxisLength", "Eccentricity",
                                        "Solidity", "Extent", "Orientation"]
    assert set(table.compartment) == {"nuclear", "whole_cell", "cytoplasm"}
    cells = table[table.compartment == "whole_cell"].set_index("CellID")
    labels = read_labels(work / "results/segmentation/tissue/whole_cell.ome.tif")
    true_ids, pred_ids = matched_pairs(tissue.whole_cell, labels)
    assert len(true_ids) >= 0.8 * len(tissue.truth)
    truth = tissue.truth.set_index("CellID")
    for marker in ("CD3", "CD20"):
        measured = cells.loc[pred_ids, marker].to_numpy()
        expected = truth.loc[true_ids, marker].to_numpy()
        rel = np.abs(measured - expected) / expected
        assert np.median(rel) < 0.05, marker
        # a positive cell stays positive: levels separate as in the truth
        assert np.corrcoef(measured, expected)[0, 1] > 0.95, marker
    # nuclei point to the cell that holds them
    nuclei = table[table.compartment == "nuclear"]
    assert (nuclei.cell_id > 0).mean() > 0.9


def test_tracks_match_true_lineage(demo_run):
    from cellscale.track.evaluate import evaluate_ctc

    work, tl = demo_run[0], demo_run[2]
    scores = evaluate_ctc(work / "results/tracks/movie", work / "movie_GT")
    assert scores["TRA"] >= 0.95
    assert scores["division_recall"] > 0 and scores["division_precision"] > 0
    tracks = pd.read_parquet(work / "results/tracks/movie.parquet")
    assert {"frame", "label", "track_id", "parent_track_id"} <= set(tracks.columns)
    assert (tracks.parent_track_id > 0).sum() > 0
    table = pd.read_parquet(work / "results/measurements/movie.parquet")
    assert table.frame.nunique() == tl.n_frames and table.track_id.notna().all()
    # the OME-Zarr store's labels/tracks: the CTC masks' ids, the same value for a cell in every frame (but for a
    # track with a gap, which the CTC masks split)
    import tifffile
    import zarr

    tracked = zarr.open_group(str(work / "results/ngff/movie.ome.zarr"), mode="r")["labels/tracks/s0"][:]
    masks = np.stack([tifffile.imread(p) for p in sorted((work / "results/tracks/movie").glob("mask*.tif"))])
    gap = tracks.groupby("track_id").frame.agg(lambda f: f.max() - f.min() + 1 > len(f))
    same = ~np.isin(tracked, gap[gap].index.to_numpy())
    assert tracked.shape == masks.shape and same.mean() > 0.9
    np.testing.assert_array_equal(tracked[same], masks[same])
    # summary.tsv's divisions: the res_track.txt parents of two or more tracks (one child bridges a gap)
    lineage = pd.read_csv(work / "results/tracks/movie/res_track.txt", sep=" ", names=list("LBEP"))
    parents = lineage.loc[lineage.P > 0, "P"].value_counts()
    summary = pd.read_csv(work / "results/summary.tsv", sep="\t").set_index("sample")
    assert summary.loc["movie", "divisions"] == (parents >= 2).sum() > 0


def test_rerun_has_nothing_to_do(demo_run):
    work = demo_run[0]
    result = run(work, "-n")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_html_report(demo_run):
    work = demo_run[0]
    for profile in ("slurm", "local"):   # as `make demo` writes it (the local profile's report is the one read below)
        result = run(work, "--profile", str(ROOT / "profiles" / profile), "--report", str(work / "report.html"))
        assert result.returncode == 0, result.stderr[-3000:]
        # Snakemake's default disk_mb, sized from the inputs, printed this 5 times; the profiles fix disk_mb
        assert "was never awaited" not in result.stdout + result.stderr, profile
    html = (work / "report.html").read_text(errors="ignore")
    assert "overlay.png" in html and "lineage.png" in html and "tracking.png" in html  # a movie's tracks over time
    assert "cost.tsv" in html and "gke-us-central1" in html  # the cost table, with its price table named
    # the tables as pages the report shows inline (a TSV it only offers as a download)
    assert "summary.html" in html and "cost.html" in html
    summary = pd.read_html(work / "results/report/summary.html")
    expected = pd.read_csv(work / "results/summary.tsv", sep="\t")
    assert list(summary[0]["sample"]) == list(expected["sample"]) and list(summary[0].columns) == list(expected.columns)
    cost = pd.read_html(work / "results/report/cost.html")
    total = pd.read_csv(work / "results/cost.tsv", sep="\t").query("level == 'run' and key == 'total'")["usd"].item()
    assert cost[0].query("key == 'total'")["usd"].item() == pytest.approx(total, rel=1e-5)


def test_bad_input_names_sample_and_file_and_spares_others(tmp_path):
    import tifffile

    from cellscale.io import write_image
    from cellscale.synth.tissue import make_tissue

    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00" + b"\x00garbage" * 50)
    tissue = make_tissue((128, 128), n_cells=12, seed=1)
    write_image(tmp_path / "four.ome.tif", tissue.image, tissue.channel_names)
    # a valid TIFF header whose compressed pixels are garbage: the file is opened, its pixels cannot be read
    baddata = tmp_path / "baddata.tif"
    tifffile.imwrite(baddata, tissue.image[0], compression="zlib")
    with tifffile.TiffFile(baddata) as tif:
        offset, count = tif.pages[0].dataoffsets[0], tif.pages[0].databytecounts[0]
    data = bytearray(baddata.read_bytes())
    data[offset:offset + count] = b"\xff" * count
    baddata.write_bytes(bytes(data))
    nan = tissue.image[0].astype(np.float32)
    nan[40:42, 50:55] = np.nan
    nan[100, 7] = np.inf
    tifffile.imwrite(tmp_path / "nan.tif", nan)
    tifffile.imwrite(tmp_path / "zstack.ome.tif", np.repeat(tissue.image[:1], 5, axis=0), ome=True,
                     metadata={"axes": "ZYX"})
    good = DEMO / "dsb2018" / "images" / "0bf4b144167694b6.png"
    good2 = next(p for p in sorted((DEMO / "dsb2018" / "images").glob("*.png")) if p != good)
    rows = [
        f"good\t{good}\ttissue\t\t\t\t",
        f"broken\t{corrupt}\ttissue\t\t\t\t",
        f"absent\t{tmp_path / 'nothere.tif'}\ttissue\t\t\t\t",
        f"wrongchannel\t{tmp_path / 'four.ome.tif'}\ttissue\t9\t1\t\t",
        f"baddata\t{baddata}\ttissue\t\t\t\t",
        f"nanpixels\t{tmp_path / 'nan.tif'}\ttissue\t\t\t\t",
        f"zstack\t{tmp_path / 'zstack.ome.tif'}\ttissue\t\t\t\t",
        f"good2\t{good2}\ttissue\t\t\t\t",   # after the failed ones: its exports still read its own image
    ]
    write_config(tmp_path, rows, output={"formats": ["ome-tiff", "ome-zarr"]})
    result = run(tmp_path)
    out = result.stdout + result.stderr
    # the images are small: they share one batch job, which records each bad one and finishes the good one;
    # the run then ends non-zero, saying how many failed and why
    assert result.returncode != 0
    assert "6 of 8 images failed" in out and "results/errors.tsv" in out
    errors = pd.read_csv(tmp_path / "results/errors.tsv", sep="\t").set_index("sample")
    assert sorted(errors.index) == sorted(["broken", "absent", "wrongchannel", "baddata", "nanpixels", "zstack"])
    for text in (out, "\n".join(errors["error"])):
        assert "sample 'broken'" in text and "corrupt.tif" in text
        assert "sample 'absent'" in text and "nothere.tif" in text and "not found" in text
        assert "sample 'wrongchannel'" in text and "four.ome.tif" in text and "index 9 is out of range" in text
        # sample, then the file once, then what is wrong
        assert f"sample 'baddata': {baddata}: cannot read image data" in text and f"{baddata}: {baddata}" not in text
        assert f"sample 'nanpixels': {tmp_path / 'nan.tif'}: 11 of 16384 pixel values are not finite (10 NaN, " \
               f"1 infinite)" in text
        assert f"sample 'zstack': {tmp_path / 'zstack.ome.tif'}: a z-stack of 5 planes" in text
    assert errors.loc["broken", "image"] == str(corrupt)
    index = pd.read_csv(tmp_path / "results/index.tsv", sep="\t", dtype=str, keep_default_na=False).set_index("sample")
    goods = ["good", "good2"]
    assert (index.loc[goods, "status"] == "ok").all()
    assert all((tmp_path / index.loc[g, "nuclear_labels"]).exists() for g in goods)
    assert (index.drop(goods)["status"] == "failed").all() and (index.drop(goods)["nuclear_labels"] == "").all()
    cells = pd.read_parquet(tmp_path / "results/cells.parquet")
    assert set(cells["sample"]) == set(goods) and len(cells) > 10
    summary = pd.read_csv(tmp_path / "results/summary.tsv", sep="\t").set_index("sample")
    assert (summary.loc[goods, "status"] == "ok").all() and (summary.drop(goods)["status"] == "failed").all()
    batch = tmp_path / "results/batches" / index.loc["good", "batch"]
    assert sorted(p.name for p in (batch / "labels").iterdir()) == goods  # nothing of the failed ones
    from cellscale.io import ImageSource

    for sample, path in (("good", good), ("good2", good2)):   # each store holds its own image's pixels
        with ImageSource.open(tmp_path / index.loc[sample, "ngff"]) as store, ImageSource.open(path) as own:
            np.testing.assert_array_equal(store.region(0, 0, store.shape[2], 0, store.shape[3]),
                                          own.region(0, 0, own.shape[2], 0, own.shape[3]))
    # asked to keep going, the same run ends with exit status 0 and still says how many failed
    keep = yaml.safe_load((tmp_path / "config/config.yaml").read_text())
    keep["batches"] = {"keep_going": True}
    (tmp_path / "config/config.yaml").write_text(yaml.safe_dump(keep))
    result = run(tmp_path, "--forcerun", "summary")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "6 of 8 images failed" in result.stdout + result.stderr
    # with batches off, each sample has its own jobs: a bad one fails its tile job and leaves nothing behind
    # (and OME-Zarr instead of OME-TIFF labels). One good sample shows the others finish: good2's own jobs only add
    # time
    own_rows = [row for row in rows if not row.startswith("good2\t")]
    write_config(tmp_path / "own", own_rows, batches={"enabled": False}, output={"formats": ["ome-zarr"]})
    result = run(tmp_path / "own")
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "sample 'broken'" in out and "corrupt.tif" in out
    assert f"sample 'zstack': {tmp_path / 'zstack.ome.tif'}: a z-stack of 5 planes" in out
    assert (tmp_path / "own/results/measurements/good.csv").exists()
    assert (tmp_path / "own/results/report/good/summary.json").exists()
    assert (tmp_path / "own/results/ngff/good.ome.zarr/labels/nuclear").is_dir()
    for bad in ("broken", "absent", "wrongchannel", "baddata", "nanpixels", "zstack"):
        assert not list((tmp_path / "own/results/ngff").glob(f"{bad}*"))
        assert not (tmp_path / "own/results/tiles" / bad).exists()
        assert not list((tmp_path / "own/results/tiles").glob(f"{bad}*"))
        assert not (tmp_path / "own/results/segmentation" / bad).exists()


def test_minimal_sample_sheet_runs(tmp_path):
    """A sheet of only the required columns (sample, image, kind): every optional one is empty."""
    from cellscale.io import write_image
    from cellscale.synth.timelapse import make_timelapse

    tl = make_timelapse(n_frames=6, shape=(96, 96), n_cells=5, seed=3)
    write_image(tmp_path / "movie.tif", (tl.image * 60000).astype(np.uint16), axes="TYX")
    good = DEMO / "dsb2018" / "images" / "0bf4b144167694b6.png"
    # OME-Zarr instead of OME-TIFF labels: those are removed once measured and exported, and index.tsv names the store
    write_config(tmp_path, [], tiling={"tile": 128, "overlap": 32, "shard_mpx": 0.1},
                 output={"formats": ["ome-zarr"]})
    (tmp_path / "config" / "samples.tsv").write_text(
        f"sample\timage\tkind\ndsb\t{good}\ttissue\nmovie\t{tmp_path / 'movie.tif'}\ttimelapse\n")
    # no models key: the defaults, models/nuclear and models/tissue, are not in this --directory but in the checkout
    config = yaml.safe_load((tmp_path / "config" / "config.yaml").read_text())
    del config["models"]
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    result = run(tmp_path, "-n")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    result = run(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    cells = pd.read_parquet(tmp_path / "results/cells.parquet")
    cells = cells[cells["sample"] == "dsb"]  # a small image: measured in its batch
    assert len(cells) > 10 and "ch0" in cells.columns  # no channel_names: ch0, ch1, ...
    assert (tmp_path / "results/tracks/movie.parquet").exists()
    from cellscale.registry import model_entry

    summary = pd.read_csv(tmp_path / "results/summary.tsv", sep="\t").set_index("sample")
    assert (summary["model"] == model_entry(MODELS / "nuclear").ref).all()
    assert not (tmp_path / "results/segmentation/movie/nuclear.ome.tif").exists()
    index = pd.read_csv(tmp_path / "results/index.tsv", sep="\t", dtype=str, keep_default_na=False).set_index("sample")
    assert index.loc["movie", "nuclear_labels"] == "" and "spatialdata" not in index.columns
    assert (tmp_path / index.loc["movie", "ngff"] / "labels" / "nuclear").is_dir()
    assert (tmp_path / index.loc["dsb", "ngff"] / "labels" / "nuclear").is_dir()  # batched: its own store too


def test_workflow_runs_as_a_module_of_a_project(tmp_path):
    """A project as snakedeploy lays it out: its own workflow/Snakefile uses the checkout's as a module (README's,
    with the rules renamed cellscale_*); config/ as the checkout's. Models and price table are the checkout's."""
    from cellscale.cost.prices import load_prices
    from cellscale.cost.runcost import placement_from_profile

    good = DEMO / "dsb2018" / "images" / "0bf4b144167694b6.png"
    write_config(tmp_path, [f"good\t{good}\ttissue\t\t\t\t", f"absent\t{tmp_path / 'nothere.tif'}\ttissue\t\t\t\t"],
                 samples="config/samples.tsv", batches={"keep_going": True})
    config = yaml.safe_load((tmp_path / "config" / "config.yaml").read_text())
    del config["models"]  # models/nuclear: the checkout's
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    readme = (ROOT / "README.md").read_text()
    snakefile = re.search(r"```python\n(configfile: .*?module cellscale:.*?)```", readme, re.S).group(1)
    (tmp_path / "workflow").mkdir()
    (tmp_path / "workflow" / "Snakefile").write_text(
        snakefile.replace("CHECKOUT/workflow/Snakefile", str(ROOT / "workflow" / "Snakefile"))
        .replace("use rule * from cellscale\n", "use rule * from cellscale as cellscale_*\n"))

    def snakemake(*args):
        return subprocess.run([SNAKEMAKE, "--cores", "1", *args], cwd=tmp_path, capture_output=True, text=True,
                              timeout=600)

    assert snakemake("-n").returncode == 0
    result = snakemake()
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-6000:]
    assert "rule cellscale_segment_batch" in out  # renamed, and each script still knows which step it runs
    assert "1 of 2 images failed" in out  # the project's onsuccess checked the run's end
    assert "localrules directive specifies rules that are not present" not in out
    cells = pd.read_parquet(tmp_path / "results/cells.parquet")
    assert len(cells[cells["sample"] == "good"]) > 10
    # the cost job priced each rule with its threads (plan_batches' of its node's vCPUs), found by the names of
    # rules/*.smk, not the renamed ones
    cost = pd.read_csv(tmp_path / "results/cost.tsv", sep="\t").query("level == 'job'").set_index("rule")
    threads = int(re.search(r"checkpoint plan_batches:.*?threads: (\d+)", (ROOT / "rules" / "batch.smk").read_text(),
                            re.S).group(1))
    slot = placement_from_profile(ROOT / "profiles" / "gke", threads={"plan_batches": threads}).slot("plan_batches")
    machine = load_prices(ROOT / "config" / "prices" / "gke-us-central1.yaml").node(slot.machine_type, 0)
    assert cost.loc["plan_batches", "node_share"] == pytest.approx(slot.share(machine))
    assert slot.share(machine) > placement_from_profile(ROOT / "profiles" / "gke").slot("plan_batches").share(machine)
    result = snakemake("-n")
    assert result.returncode == 0 and "Nothing to be done" in result.stdout + result.stderr
    result = snakemake("--report", str(tmp_path / "report.html"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "cost.tsv" in (tmp_path / "report.html").read_text(errors="ignore")
    # a run that Snakemake ends as a success with an output missing (as when it drops a job to be retried): the
    # end check knows the renamed rule all as the whole run, and ends it non-zero
    sf = tmp_path / "workflow" / "Snakefile"
    sf.write_text(sf.read_text().replace("onsuccess:\n", "onsuccess:\n    os.remove('results/cells.csv')\n"))
    (tmp_path / "results/cost.tsv").unlink()  # a job to run: Snakemake skips onsuccess with none
    result = snakemake()
    assert result.returncode != 0 and "outputs missing (e.g. results/cells.csv)" in result.stdout + result.stderr


def test_mcquant_csvs_and_h5ad_provenance(tmp_path):
    """output.formats mcquant: results/mcquant holds MCMICRO's CSVs of every still image, own jobs and batched, the
    files `cellscale mcquant` writes from the run's cells.parquet. Each sample's .h5ad file and the run's say what
    made the cells (uns['cellscale']): the model summary.tsv names, the pixel size, the segment settings."""
    import anndata

    from cellscale import __version__
    from cellscale.io import write_image
    from cellscale.settings import default
    from cellscale.synth.tissue import make_tissue

    tissue = make_tissue((336, 336), n_cells=30, seed=5)  # above the shard's 0.1 Mpx: its own jobs
    write_image(tmp_path / "tissue.ome.tif", tissue.image, tissue.channel_names)
    dsb = DEMO / "dsb2018" / "images" / "0bf4b144167694b6.png"  # a batch
    write_config(tmp_path, [f"tissue\t{tmp_path / 'tissue.ome.tif'}\ttissue\t0\t1\t\t0.5",
                            f"dsb\t{dsb}\ttissue\t\t\t\t"],
                 tiling={"tile": 128, "overlap": 32, "shard_mpx": 0.1}, output={"formats": ["mcquant"]})
    result = run(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    made = tmp_path / "results" / "mcquant"
    tables = sorted(made.glob("*.csv"))  # (and Snakemake's .snakemake_timestamp of a folder output)
    assert [p.name for p in tables] == ["dsb_nuclear.csv", "tissue_cytoplasm.csv", "tissue_nuclear.csv",
                                        "tissue_whole_cell.csv"]
    cli = subprocess.run([str(Path(sys.executable).parent / "cellscale"), "mcquant",
                          str(tmp_path / "results/cells.parquet"), "-o", str(tmp_path / "cli")],
                         capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == [p.name for p in tables]
    for path in tables:
        assert path.read_text() == (tmp_path / "cli" / path.name).read_text(), path.name
    assert (tmp_path / "results/benchmarks/mcquant/run.tsv").exists() and (tmp_path / "logs/mcquant/run.log").exists()
    summary = pd.read_csv(tmp_path / "results/summary.tsv", sep="\t").set_index("sample")
    uns = anndata.read_h5ad(tmp_path / "results/measurements/tissue.h5ad").uns["cellscale"]
    assert uns["model"] == {"nuclear": summary.loc["tissue", "model"], "whole_cell": summary.loc["tissue", "model"]}
    assert uns["sample"] == "tissue" and uns["image"] == str(tmp_path / "tissue.ome.tif")
    assert uns["pixel_size_um"] == summary.loc["tissue", "pixel_size_um"] == 0.5
    assert uns["cellscale_version"] == __version__ and uns["augment"] == default("segment", "augment")
    if "model_dataset" in summary and pd.notna(summary.loc["tissue", "model_dataset"]):
        assert uns["model_dataset"] == summary.loc["tissue", "model_dataset"]
    run_uns = anndata.read_h5ad(tmp_path / "results/cells.h5ad").uns["cellscale"]
    samples = run_uns["samples"]
    assert list(samples.index) == ["tissue", "dsb"]
    assert samples.loc["dsb", "model_nuclear"] == summary.loc["dsb", "model"]  # batched: its model too
    assert samples.loc["dsb", "model_whole_cell"] == "" and samples.loc["tissue", "pixel_size_um"] == 0.5
    assert samples.loc["tissue", "model_whole_cell"] == summary.loc["tissue", "model"]
    # nothing to do again: the provenance params are stable
    again = run(tmp_path, "-n")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stdout[-2000:]


def segment_batch_threads(out: str) -> list[int]:
    """Each segment_batch job's threads in a dry run's job list (Snakemake prints threads only above 1)."""
    jobs = re.findall(r"^rule segment_batch:\n((?:[ \t]+.*\n?)*)", out, re.M)  # each job's indented lines
    return [int(m.group(1)) if (m := re.search(r"threads: (\d+)", job)) else 1 for job in jobs]


def test_batches_share_the_machines_cores(tmp_path):
    """Two batches on 2 cores run side by side with one thread each; with 4 cores, or as the only batch, a job
    takes 2 (the rule's threads follow the run's batches: rules/common.smk batch_threads)."""
    images = DEMO / "dsb2018" / "images"
    # 0.066 + 0.082 + 0.066 Mpx: above twice shard_mpx, so two batches
    write_config(tmp_path, [f"a\t{images / '0bf4b144167694b6.png'}\ttissue\t\t\t\t",
                            f"b\t{images / '9fb32aba1c2fd532.png'}\ttissue\t\t\t\t",
                            f"c\t{images / '0bf4b144167694b6.png'}\ttissue\t\t\t\t"],
                 tiling={"tile": 128, "overlap": 32, "shard_mpx": 0.1})
    assert run(tmp_path, "--until", "plan_batches").returncode == 0
    two = run(tmp_path, "-n")
    four = run(tmp_path, "-n", "--cores", "4")
    assert segment_batch_threads(two.stdout + two.stderr) == [1, 1], two.stdout[-3000:]
    assert segment_batch_threads(four.stdout + four.stderr) == [2, 2], four.stdout[-3000:]
    write_config(tmp_path, [f"a\t{images / '0bf4b144167694b6.png'}\ttissue\t\t\t\t"],
                 tiling={"tile": 128, "overlap": 32, "shard_mpx": 0.1})
    assert run(tmp_path, "--until", "plan_batches").returncode == 0  # the sheet changed: a new plan
    alone = run(tmp_path, "-n")
    assert segment_batch_threads(alone.stdout + alone.stderr) == [2], alone.stdout[-3000:]


def test_lint_is_clean():
    result = subprocess.run([SNAKEMAKE, "--lint"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "good condition" in result.stdout + result.stderr


def test_killed_run_resumes_to_identical_results(demo_run, tmp_path):
    """SIGKILL the whole run mid-way; unlock and rerun; results equal those of the uninterrupted run."""
    import os
    import signal
    import time

    from cellscale.io import read_labels

    reference = demo_run[0]
    (tmp_path / "config").mkdir()
    config = yaml.safe_load((reference / "config" / "config.yaml").read_text())
    samples = (reference / "config" / "samples.tsv").read_text()
    (tmp_path / "config" / "samples.tsv").write_text(samples)
    config["samples"] = str(tmp_path / "config" / "samples.tsv")
    config["output"] = {"formats": ["ome-tiff"]}  # what is compared below; the stores' jobs only add time
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    # the run of what is compared below (own tile, segment, stitch, measure and track jobs): the batch, report and
    # cost jobs only add time
    labels = ["results/segmentation/tissue/whole_cell.ome.tif", "results/segmentation/movie/nuclear.ome.tif"]
    tables = ["results/measurements/tissue.parquet", "results/tracks/movie.parquet"]
    targets = [*labels, *tables, "results/tracks/movie"]
    cmd = [SNAKEMAKE, "-s", str(ROOT / "workflow" / "Snakefile"), "--directory", str(tmp_path), "--cores", "2",
           *targets]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and not list((tmp_path / "results" / "predictions").rglob("shard_*.zarr.zip")):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not any((tmp_path / rel).exists() for rel in targets), "the run was killed before it finished"
    assert run(tmp_path, "--unlock").returncode == 0
    result = run(tmp_path, "--rerun-incomplete", *targets)
    assert result.returncode == 0, result.stderr[-4000:]
    for rel in labels:
        np.testing.assert_array_equal(read_labels(tmp_path / rel), read_labels(reference / rel))
    for rel in tables:
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / rel), pd.read_parquet(reference / rel))
    assert (tmp_path / "results/tracks/movie/res_track.txt").read_text() == \
        (reference / "results/tracks/movie/res_track.txt").read_text()


def test_a_segment_job_that_reruns_waits_for_its_rerunning_tile_job(tmp_path):
    """The model folder moved (its files' paths are the jobs' inputs): the sample's tile and segment jobs both
    rerun. A segment job named no tile job (its shard is a file inside the checkpoint's folder), so it predicted the
    old shard while the tile job waited for object_size (scale auto), the tile job then rewrote the shard, and the
    next run redid segment and every job after it. It now waits for the tile job: the next run has nothing to do."""
    import shutil

    good = DEMO / "dsb2018" / "images" / "0bf4b144167694b6.png"
    shutil.copytree(MODELS / "nuclear", tmp_path / "models" / "nuclear")
    write_config(tmp_path, [f"dsb\t{good}\ttissue\t\t\t\t\tauto"], header=HEADER.rstrip("\n") + "\tscale\n",
                 batches={"enabled": False}, models={"nuclear": str(tmp_path / "models" / "nuclear")})
    target = "results/segmentation/dsb/nuclear.ome.tif"
    result = run(tmp_path, target)
    assert result.returncode == 0, result.stderr[-3000:]
    (tmp_path / "models").rename(tmp_path / "moved")
    config = yaml.safe_load((tmp_path / "config" / "config.yaml").read_text())
    config["models"]["nuclear"] = str(tmp_path / "moved" / "nuclear")
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    # 4 cores: object_size and segment (2 threads each) may start together, the tile job after object_size
    result = run(tmp_path, target, "--cores", "4")
    assert result.returncode == 0, result.stderr[-3000:]
    started = re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):", result.stdout + result.stderr, re.M)
    assert started.index("tile") < started.index("segment"), started
    result = run(tmp_path, target, "-n")
    assert "Nothing to be done" in result.stdout + result.stderr, result.stdout[-3000:]


def test_a_cost_job_killed_after_its_outputs_reruns(demo_run):
    """The cost job SIGKILLed after its (atomic) tables were in place, before Snakemake wrote its benchmark file:
    --rerun-incomplete does not see jobs after the checkpoints and no job reads that benchmark, so the rerun did
    nothing and the benchmark stayed missing. Rule all asks for it: the job reruns."""
    work = demo_run[0]
    for rel in ("results/benchmarks/cost/run.tsv",):
        bench = work / rel
        kept = bench.with_name(bench.name + ".kept")
        bench.rename(kept)
        try:
            result = run(work, "-n")
        finally:
            kept.rename(bench)
        said = result.stdout + result.stderr
        assert result.returncode == 0 and "Nothing to be done" not in said, said[-3000:]
        assert f"Missing output files: {rel}" in said, said[-3000:]


def sample_column_run(workdir: Path, sample: str, image, columns: dict, bad: dict, target: str) -> None:
    """A one-sample sheet with extra columns: the ``bad`` values fail at workflow start naming their
    column; the good ones run ``target``."""
    write_config(workdir, [])
    sheet = workdir / "config" / "samples.tsv"
    for values in (bad, columns):
        sheet.write_text(HEADER.rstrip("\n") + "".join(f"\t{c}" for c in values) + "\n"
                         + f"{sample}\t{image}\ttissue\t\t\t\t" + "".join(f"\t{v}" for v in values.values()) + "\n")
        if values is bad:
            result = run(workdir, "-n")
            assert result.returncode != 0 and all(c in result.stdout + result.stderr for c in bad)
    result = run(workdir, target)
    assert result.returncode == 0, result.stderr[-3000:]


def test_sample_gamma_column_is_validated_and_used(tmp_path):
    good = DEMO / "dsb2018" / "images" / "0bf4b144167694b6.png"
    sample_column_run(tmp_path, "dim", good, {"gamma": 0.5}, {"gamma": -1}, "results/tiles/dim")
    from cellscale.segment.tiles import TilePlan

    plan = TilePlan.read(tmp_path / "results/tiles/dim/plan.json")
    write_config(tmp_path / "linear", [f"dim\t{good}\ttissue\t\t\t\t"])
    assert run(tmp_path / "linear", "results/tiles/dim").returncode == 0
    linear = TilePlan.read(tmp_path / "linear/results/tiles/dim/plan.json")
    # the normalisation range is taken after the exponent: sqrt shrinks the 99.8th percentile
    assert plan.ranges[0][1] < linear.ranges[0][1]


def test_sample_scale_column_is_validated_and_used(tmp_path):
    """A sample's scale resamples it for the network; its labels come back on the image's grid."""
    from cellscale.io import read_labels
    from cellscale.segment.tiles import TilePlan

    good = DEMO / "dsb2018" / "images" / "0bf4b144167694b6.png"  # 256 x 256
    sample_column_run(tmp_path, "big", good, {"scale": 0.5}, {"scale": 0}, "results/segmentation/big/nuclear.ome.tif")
    plan = TilePlan.read(tmp_path / "results/tiles/big/plan.json")
    assert plan.scale == 0.5 and tuple(plan.shape[1:]) == (128, 128) and tuple(plan.source_shape) == (256, 256)
    labels = read_labels(tmp_path / "results/segmentation/big/nuclear.ome.tif")
    assert labels.shape[-2:] == (256, 256) and labels.max() > 10


def test_sample_scale_auto_is_measured_for_own_jobs_and_in_batches(tmp_path):
    """scale auto: rule object_size measures a large image before its tile job (which resamples by what it chose); a
    batched image is measured in its batch job, which records the choice; a bad scale names its sample."""
    import json

    import tifffile
    from skimage.transform import rescale

    from cellscale.io import read_image, read_labels

    native = DEMO / "dsb2018" / "images" / "0bf4b144167694b6.png"  # 256 x 256, nuclei of about 21 px
    image = read_image(native)[0, 0]
    up = rescale(image.astype(np.float32), 3.0, order=1, preserve_range=True).astype(np.uint8)  # about 62 px
    tifffile.imwrite(tmp_path / "up.tif", up)
    rows = [f"up\t{tmp_path / 'up.tif'}\ttissue\t\t\t\t\tauto", f"small\t{native}\ttissue\t\t\t\t\tAUTO"]
    header = HEADER.rstrip("\n") + "\tscale\n"
    write_config(tmp_path, [], tiling={"shard_mpx": 0.3})  # the 0.6 Mpx image gets its own jobs
    sheet = tmp_path / "config" / "samples.tsv"
    sheet.write_text(header + rows[0].replace("auto", "big") + "\n" + rows[1] + "\n")
    bad = run(tmp_path, "-n")
    said = bad.stdout + bad.stderr
    assert bad.returncode != 0 and "sample 'up'" in said and "scale" in said, said[-2000:]
    sheet.write_text(header + "".join(r + "\n" for r in rows))
    result = run(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    size = json.loads((tmp_path / "results/size/up.json").read_text())
    assert size["sample"] == "up" and 0.2 < size["scale"] < 0.45 and size["objects"] > 20, size
    assert f"scale {size['scale']:.3g}" in (tmp_path / "logs/object_size/up.log").read_text()
    labels = read_labels(tmp_path / "results/segmentation/up/nuclear.ome.tif")
    assert labels.shape[-2:] == (768, 768) and labels.max() > 20
    [fields] = list((tmp_path / "results/batches").glob("*/fields.tsv"))
    small = pd.read_csv(fields, sep="\t").set_index("sample").loc["small"]
    assert small["status"] == "ok" and small["auto_scale"] == 1.0  # its nuclei are of a size the model knows
    summary = pd.read_csv(tmp_path / "results/summary.tsv", sep="\t").set_index("sample")
    assert (summary.loc[["up", "small"], "status"] == "ok").all()
    assert summary.loc["up", "auto_scale"] == size["scale"] and summary.loc["small", "auto_scale"] == 1.0
    cost = pd.read_csv(tmp_path / "results/cost.tsv", sep="\t").query("level == 'job'")
    assert "object_size/up.tsv" in set(cost["key"]) and "object_size" in set(cost["rule"])  # its job is priced
    # review finds what the workflow chose, for each path
    from cellscale.review import locate

    assert locate(tmp_path / "results", "up").scale == size["scale"]
    assert locate(tmp_path / "results", "small").scale == 1.0


def test_postprocess_overrides_are_validated(tmp_path):
    good = DEMO / "dsb2018" / "images" / "0bf4b144167694b6.png"
    write_config(tmp_path, [f"dim\t{good}\ttissue\t\t\t\t"],
                 postprocess={"overrides": {"nuclear": {"merge_boundry": 0.2}}})
    result = run(tmp_path, "-n")
    assert result.returncode != 0 and "merge_boundry" in result.stdout + result.stderr
    write_config(tmp_path, [f"dim\t{good}\ttissue\t\t\t\t"],
                 postprocess={"overrides": {"nucleus": {"sigma": 1.0}}})
    result = run(tmp_path, "-n")
    assert result.returncode != 0 and "nucleus" in result.stdout + result.stderr
    write_config(tmp_path, [f"dim\t{good}\ttissue\t\t\t\t"],
                 postprocess={"overrides": {"nuclear": {"merge_boundary": 0.0, "marker_threshold": 0.5}}})
    result = run(tmp_path, "-n")
    assert result.returncode == 0, result.stderr[-3000:]


def test_segment_augment_is_validated(tmp_path):
    good = DEMO / "dsb2018" / "images" / "0bf4b144167694b6.png"
    write_config(tmp_path, [f"dim\t{good}\ttissue\t\t\t\t"],
                 segment={"batch_mpx": 0.5, "precision": "auto", "augment": "mirror"})
    result = run(tmp_path, "-n")
    assert result.returncode != 0 and "mirror" in result.stdout + result.stderr
    write_config(tmp_path, [f"dim\t{good}\ttissue\t\t\t\t"],
                 segment={"batch_mpx": 0.5, "precision": "auto", "augment": "flips"})
    result = run(tmp_path, "-n")
    assert result.returncode == 0, result.stderr[-3000:]


def test_a_mistyped_config_key_stops_the_workflow_with_one_line(tmp_path):
    """Not the ValidationError with ~40 lines of the JSON schema after it: the file, the key and the allowed keys."""
    good = DEMO / "dsb2018" / "images" / "0bf4b144167694b6.png"
    write_config(tmp_path, [f"dim\t{good}\ttissue\t\t\t\t"], segment={"augmnt": "none"})
    result = run(tmp_path, "-n")
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert ("config/config.yaml: segment.augmnt: unknown key; segment allows batch_mpx, precision, augment, "
            "timelapse_scale\n") in out
    assert "additionalProperties" not in out and "Failed validating" not in out and len(out.splitlines()) < 10, out


def test_cell_tracking_challenge_frame_folder_end_to_end(tmp_path):
    """A CTC sequence as users have it (a folder of tNNN.tif frames) through segment -> track, scored
    against its ground truth: the sample sheet's scale and gamma make our segmentation track well.
    The first 10 frames of GOWT1 01 (read from ../shared, copied only into the test's temporary folder)."""
    import shutil

    from cellscale.io import read_labels
    from cellscale.track.evaluate import ReferenceMatching, evaluate_tracks

    seq = need_shared("ctc/Fluo-N2DH-GOWT1")
    n = 10
    frames = tmp_path / "frames"
    frames.mkdir()
    for f in sorted((seq / "01").glob("t*.tif"))[:n]:
        shutil.copy(f, frames / f.name)
    write_config(tmp_path, [])
    (tmp_path / "config" / "samples.tsv").write_text(
        HEADER.rstrip("\n") + "\tgamma\tscale\n" + f"gowt1\t{frames}\ttimelapse\t\t\t\t\t0.35\t0.5\n")
    result = run(tmp_path, "results/tracks/gowt1.parquet")
    assert result.returncode == 0, result.stderr[-3000:]
    labels = read_labels(tmp_path / "results/segmentation/gowt1/nuclear.ome.tif")
    assert labels.shape == (n, 1024, 1024)
    full = np.zeros((len(list((seq / "01").glob("t*.tif"))), 1024, 1024), labels.dtype)
    full[:n] = labels
    match = ReferenceMatching(full, seq / "01_GT").first_frames(n)
    scores = evaluate_tracks(pd.read_parquet(tmp_path / "results/tracks/gowt1.parquet"), match)
    assert scores["TRA"] >= 0.97 and scores["DET"] >= 0.97, scores
    # the command line's path (README): the frame folder segmented as one movie, tracked with its intensities,
    # gives the workflow's labels and tracks
    cli = str(Path(sys.executable).parent / "cellscale")
    for args in (["segment", frames, "--timelapse", "-o", tmp_path / "cli" / "labels.tif", "--scale", "0.5",
                  "--gamma", "0.35"],
                 ["track", tmp_path / "cli" / "labels.tif", "--image", frames, "-o", tmp_path / "cli" / "01_RES",
                  "--table", tmp_path / "cli" / "tracks.parquet"]):
        done = subprocess.run([cli, *map(str, args)], capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
    np.testing.assert_array_equal(read_labels(tmp_path / "cli" / "labels.tif"), labels)
    key = ["frame", "label", "track_id", "parent_track_id"]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "cli" / "tracks.parquet")[key],
                                  pd.read_parquet(tmp_path / "results/tracks/gowt1.parquet")[key])
    # a frame of another size is an error naming the file, and leaves no tiles behind
    import tifffile

    tifffile.imwrite(frames / f"t{n:03d}.tif", np.zeros((512, 512), np.uint8))
    write_config(tmp_path / "bad", [])
    (tmp_path / "bad" / "config" / "samples.tsv").write_text(
        HEADER + f"gowt1\t{frames}\ttimelapse\t\t\t\t\n")
    result = run(tmp_path / "bad", "results/tiles/gowt1")
    assert result.returncode != 0 and f"t{n:03d}.tif" in result.stdout + result.stderr
    assert not (tmp_path / "bad" / "results" / "tiles" / "gowt1").exists()


def test_many_small_images_run_in_few_jobs(tmp_path):
    """200 fields of view: jobs grow with megapixels (batches of tiling.shard_mpx), not with images."""
    import re

    import tifffile

    from cellscale.synth.tissue import make_tissue

    n, shard_mpx = 200, 0.25
    (tmp_path / "plate").mkdir()
    for i in range(n):
        tissue = make_tissue((64, 96), n_cells=6, seed=i)
        tifffile.imwrite(tmp_path / "plate" / f"A01_s{i:03d}.tif", tissue.image[0])
    sheet = subprocess.run([str(Path(SNAKEMAKE).parent / "cellscale"), "samples", str(tmp_path / "plate/*.tif"),
                            "--kind", "tissue", "--sizes", "-o", str(tmp_path / "sheet.tsv")], capture_output=True,
                           text=True)
    assert sheet.returncode == 0, sheet.stderr
    write_config(tmp_path, [], tiling={"tile": 128, "overlap": 32, "shard_mpx": shard_mpx},
                 batches={"qc_overlays": 5, "label_files": "per_batch"})
    (tmp_path / "config/samples.tsv").write_text((tmp_path / "sheet.tsv").read_text())
    result = run(tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    plan = pd.read_csv(tmp_path / "results/batches/plan.tsv", sep="\t", dtype={"batch": str})
    batches = plan["batch"].nunique()  # about one a shard_mpx, each at most two
    assert n * 64 * 96 / 1e6 / shard_mpx / 2 <= batches <= 2 * math.ceil(n * 64 * 96 / 1e6 / shard_mpx)
    assert (plan.groupby("batch")["mpx"].sum() <= 2 * shard_mpx).all()
    assert len(list((tmp_path / "logs/segment_batch").glob("*.log"))) == batches
    steps = int(re.findall(r"(\d+) of \1 steps \(100%\) done", out)[-1])
    # plan, the batches, the model's provenance file, the run's tables, the report's two figures, the cost and `all`
    assert steps == batches + 7, out[-2000:]
    summary = pd.read_csv(tmp_path / "results/summary.tsv", sep="\t")
    assert len(summary) == n and (summary["status"] == "ok").all() and (summary["nuclear_cells"] > 0).all()
    cells = pd.read_parquet(tmp_path / "results/cells.parquet")
    assert cells["sample"].nunique() == n and list(cells["sample"].unique()) == list(summary["sample"])
    assert not (tmp_path / "results/segmentation").exists() and not (tmp_path / "results/tiles").exists()
    drawn = re.search(r"report: (\d+) of (\d+) batched images drawn", (tmp_path / "logs/report_fields.log").read_text())
    assert drawn and drawn.groups() == ("5", str(n))
    # the sheet gave every size: the plan opened no image
    assert f"{n} image sizes from the sample sheet, 0 read" in (tmp_path / "logs/plan_batches.log").read_text()
    # batches.label_files per_batch: a batch's labels are one file of named series, which index.tsv points into
    from cellscale.io import read_labels, series_names

    assert not list((tmp_path / "results/batches").glob("*/labels"))
    index = pd.read_csv(tmp_path / "results/index.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert index["nuclear_labels"].nunique() == batches
    for row in index.sample(5, random_state=0).itertuples():
        with tifffile.TiffFile(tmp_path / row.nuclear_labels) as tif:
            series = tif.series[int(row.labels_series)]
            assert series.name == row.sample
            labels = series.asarray()
        assert labels.dtype == np.uint32 and labels.max() == (cells["sample"] == row.sample).sum() > 0
    first = index.iloc[0]
    assert series_names(tmp_path / first["nuclear_labels"])[0] == first["sample"]
    assert read_labels(tmp_path / first["nuclear_labels"]).shape == (64, 96)


def test_a_plate_reruns_only_the_batches_its_new_fields_change(tmp_path):
    """A screen's sheet from `cellscale samples --pattern`: well and site reach summary.tsv, index.tsv and the cell
    tables; a rerun with nothing changed does nothing; rows added at the end of the sheet run only the batches that
    hold them (before, a new plan reran every batch: plan.tsv was each batch job's input); and a row inserted in
    the middle of the sheet and another taken out schedule only the batches they change (before, batches were cut
    in sheet order, so every later batch changed its members and reran). A batch's SpatialData store reruns with its
    batch only (its job's params, what made its cells, are its own samples')."""
    import tifffile

    from cellscale.steps.batch import read_plan
    from cellscale.synth.tissue import make_tissue

    cellscale = str(Path(SNAKEMAKE).parent / "cellscale")
    (tmp_path / "plate").mkdir()

    # the plate's fields of 0.006 Mpx, the ones added and inserted below too, and their rows: one
    # `cellscale samples` (its rows are the same for a field listed alone)
    for name in [f"{w}_s{s}" for w in ("A01", "A02", "B01", "B02") for s in (1, 2)] + ["A01_s3"]:
        tissue = make_tissue((64, 96), n_cells=6, seed=sum(map(ord, name)))
        tifffile.imwrite(tmp_path / "plate" / f"{name}.tif", tissue.image[0])
    made = subprocess.run([cellscale, "samples", str(tmp_path / "plate" / "*.tif"), "--kind", "tissue", "--sizes",
                           "--pattern", r"(?P<well>[A-H]\d{2})_s(?P<site>\d+)"], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    header, *listed = made.stdout.splitlines(keepends=True)
    row_of = {line.split("\t", 1)[0]: line for line in listed}

    def sheet(names):
        return "".join(row_of[name] for name in names)

    def batches():
        """{batch: its samples} of the current plan."""
        plan = read_plan(tmp_path / "results/batches/plan.tsv")
        return {b: tuple(rows["sample"]) for b, rows in plan.groupby("batch", sort=False)}

    def changed(before, after):
        return {b for b, members in after.items() if before.get(b) != members}

    def mtimes(names):
        return {b: (tmp_path / f"results/cells/batch_{b}.parquet").stat().st_mtime_ns for b in names}

    write_config(tmp_path, [], tiling={"tile": 128, "overlap": 32, "shard_mpx": 0.0065},  # at most 2 a batch
                 output={"formats": ["ome-tiff", "spatialdata"]})
    (tmp_path / "config/samples.tsv").write_text(header + sheet([f"{w}_s{s}" for w in ("A01", "A02", "B01")
                                                                 for s in (1, 2)]))  # 6 fields
    first = run(tmp_path)
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    summary = pd.read_csv(tmp_path / "results/summary.tsv", sep="\t")
    assert list(summary.columns[:4]) == ["sample", "well", "site", "status"]
    assert summary["well"].tolist() == ["A01", "A01", "A02", "A02", "B01", "B01"]
    assert summary["site"].tolist() == [1, 2] * 3
    index = pd.read_csv(tmp_path / "results/index.tsv", sep="\t")
    old = batches()
    assert index["batch"].tolist() == [b for b, members in old.items() for _ in members] and len(old) >= 3
    assert index["well"].tolist() == summary["well"].tolist()
    cells = pd.read_parquet(tmp_path / "results/cells.parquet")
    per_well = cells.groupby("well").size()
    assert list(cells.columns[:3]) == ["sample", "well", "site"] and list(per_well.index) == ["A01", "A02", "B01"]
    import anndata

    obs = anndata.read_h5ad(tmp_path / "results/cells.h5ad").obs
    assert obs.groupby("well", observed=True).size().to_dict() == per_well.to_dict()

    again = run(tmp_path)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stderr[-3000:]

    done = mtimes(old)
    # two new fields of a new well, their rows at the end of the sheet
    text = (tmp_path / "config/samples.tsv").read_text()
    (tmp_path / "config/samples.tsv").write_text(text + sheet(["B02_s1", "B02_s2"]))
    more = run(tmp_path)
    out = more.stdout + more.stderr
    assert more.returncode == 0, out[-3000:]
    new = batches()
    rerun = changed(old, new)  # the new fields' batches (one of them may be the last old one, which they join)
    ran = re.findall(r"\(Rule: (segment_batch|plan_batches|spatialdata_batch)\)", out)
    assert sorted(ran) == sorted(["plan_batches"] + ["segment_batch", "spatialdata_batch"] * len(rerun)), out[-3000:]
    assert 1 <= len(rerun) <= 2
    kept = set(old) - rerun
    assert len(kept) >= len(old) - 1 and mtimes(kept) == {b: done[b] for b in kept}
    summary = pd.read_csv(tmp_path / "results/summary.tsv", sep="\t")
    assert summary["well"].tolist()[-2:] == ["B02", "B02"] and (summary["status"] == "ok").all()
    assert (pd.read_parquet(tmp_path / "results/cells.parquet")["well"] == "B02").any()

    # a field inserted among the first well's, and one of B01 taken out: a dry run schedules only their batches
    rows = (tmp_path / "config/samples.tsv").read_text().splitlines(keepends=True)
    at = next(i for i, row in enumerate(rows) if row.startswith("A01_s2\t")) + 1
    rows.insert(at, sheet(["A01_s3"]))
    rows = [row for row in rows if not row.startswith("B01_s1\t")]
    (tmp_path / "config/samples.tsv").write_text("".join(rows))
    assert run(tmp_path, "--until", "plan_batches").returncode == 0
    edited = batches()
    dry = run(tmp_path, "-n")
    out = dry.stdout + dry.stderr
    assert dry.returncode == 0, out[-3000:]
    scheduled = re.findall(r"^rule segment_batch:\n(?:[ \t]+.*\n)*?[ \t]+wildcards: batch=([a-z]+)", out, re.M)
    assert set(scheduled) == changed(new, edited) and len(scheduled) == len(set(scheduled)), out[-3000:]
    assert 1 <= len(scheduled) <= 3 and len(scheduled) < len(edited), (new, edited)


def test_a_plate_of_one_file_per_channel_segments_as_its_stacked_images(tmp_path):
    """MetaXpress-like fields, one file per channel (A01_s1_w1.TIF, A01_s1_w2.TIF): `cellscale samples` with a
    channel group makes a row per field, and the workflow segments and measures each as it does the same field
    stacked into one file, in batches and in jobs of its own; a field whose second channel has another size fails,
    named with its file, and the others finish."""
    import imageio.v3 as iio
    import tifffile

    cellscale = str(Path(SNAKEMAKE).parent / "cellscale")
    plate, stacked = tmp_path / "plate", tmp_path / "stacked"
    plate.mkdir()
    stacked.mkdir()
    crops = {"A01_s1": ("0bf4b144167694b6", 0, 0), "A01_s2": ("150b0ffa318c87b3", 200, 300),
             "B02_s1": ("9fb32aba1c2fd532", 60, 100)}
    for field, (name, y, x) in crops.items():
        dna = iio.imread(DEMO / "dsb2018" / "images" / f"{name}.png")
        dna = (dna if dna.ndim == 2 else dna[..., 0])[y:y + 128, x:x + 160]
        other = np.ascontiguousarray(dna[::-1, ::-1])  # channel 0 is not the nuclei: a swapped order would show
        tifffile.imwrite(plate / f"{field}_w1.TIF", other)
        tifffile.imwrite(plate / f"{field}_w2.TIF", dna)
        tifffile.imwrite(stacked / f"{field}.tif", np.stack([other, dna]), metadata={"axes": "CYX"})
    tifffile.imwrite(plate / "B02_s2_w1.TIF", other)
    tifffile.imwrite(plate / "B02_s2_w2.TIF", dna[:100])  # another size: the field fails
    options = ["--kind", "tissue", "--nuclear-channel", "1", "--channel-names", "other,DNA"]
    field = r"(?P<well>[A-P]\d{2})_s(?P<site>\d+)"
    made = [subprocess.run([cellscale, "samples", str(folder / "*.*"), *options, "--pattern", regex, "--name", name],
                           capture_output=True, text=True)
            for folder, regex, name in ((plate, field + r"_w(?P<channel>\d+)", "{well}_s{site}"),
                                        (stacked, field, "stacked_{well}_s{site}"))]
    assert all(m.returncode == 0 for m in made), made[0].stderr + made[1].stderr
    assert made[0].stdout.count("\n") == 5 and "|" in made[0].stdout  # a header and 4 fields, files joined
    write_config(tmp_path, [], tiling={"tile": 128, "overlap": 32, "shard_mpx": 0.1})
    (tmp_path / "config/samples.tsv").write_text(made[0].stdout + made[1].stdout.split("\n", 1)[1])
    result = run(tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode != 0 and "1 of 7 images failed" in out, out[-3000:]
    errors = pd.read_csv(tmp_path / "results/errors.tsv", sep="\t")
    assert errors["sample"].tolist() == ["B02_s2"]
    assert errors["error"][0].startswith(f"sample 'B02_s2': {plate / 'B02_s2_w2.TIF'}: channel 1 is 100 x 160 px")
    index = pd.read_csv(tmp_path / "results/index.tsv", sep="\t", dtype=str, keep_default_na=False)
    index = index.set_index("sample")
    cells = pd.read_parquet(tmp_path / "results/cells.parquet").set_index("sample")
    assert {"other", "DNA"} <= set(cells.columns)  # the sheet's channel_names
    from cellscale.io import read_labels

    for field in crops:
        labels = read_labels(tmp_path / index.loc[field, "nuclear_labels"])
        assert labels.max() > 0  # nuclei found (crops of 128 x 160 px hold a few)
        np.testing.assert_array_equal(labels, read_labels(tmp_path / index.loc[f"stacked_{field}", "nuclear_labels"]))
        pd.testing.assert_frame_equal(cells.loc[[field]].reset_index(drop=True),
                                      cells.loc[[f"stacked_{field}"]].reset_index(drop=True))
    # batches off: the field's own tile, segment, stitch, measure, report and export jobs take its two files
    own = tmp_path / "own"
    write_config(own, [], tiling={"tile": 128, "overlap": 32, "shard_mpx": 0.1}, batches={"enabled": False},
                 output={"formats": ["ome-tiff", "ome-zarr"]})
    (own / "config/samples.tsv").write_text("".join(made[0].stdout.splitlines(keepends=True)[:2]))  # A01_s1 only
    result = run(own)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    np.testing.assert_array_equal(read_labels(own / "results/segmentation/A01_s1/nuclear.ome.tif"),
                                  read_labels(tmp_path / index.loc["A01_s1", "nuclear_labels"]))
    from cellscale.io import ImageSource

    with ImageSource.open(own / "results/ngff/A01_s1.ome.zarr") as store:  # the store holds both channels
        assert store.shape == (1, 2, 128, 160)
        np.testing.assert_array_equal(store.region(0, 0, 128, 0, 160), tifffile.imread(stacked / "A01_s1.tif"))


@pytest.mark.parametrize("target", ["results/measurements/dsb_typo.csv", "results/tracks/dsb_typo.parquet",
                                    "results/ngff/dsb_typo.ome.zarr"])
def test_a_target_of_a_sample_the_sheet_does_not_list_is_named(tmp_path, target):
    """A target asked for by hand with a sample name the sheet does not have (typed wrong): the dry run stops
    naming the sample and the sheet, with the sheet's samples, not with a bare KeyError."""
    write_config(tmp_path, [f"dsb\t{DEMO / 'dsb2018' / 'images' / '0bf4b144167694b6.png'}\ttissue\t\t\t\t"])
    result = run(tmp_path, "--dry-run", target, timeout=300)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"sample 'dsb_typo' is not in the sample sheet {tmp_path / 'config' / 'samples.tsv'} (its samples: dsb)" \
           in out, out[-3000:]
