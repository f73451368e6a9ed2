"""A job killed outright (SIGKILL, a preempted node) cannot clean up: its rerun must still leave only its result.

The kill is simulated deterministically: the step runs in a child process whose next write ends the process at once
(``os._exit``, no ``finally`` runs), then the step runs again as a rerun would."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

KILL_AT_WRITE = """
import os, sys
import cellscale.steps.segment as step
step.write_labels = lambda *a, **k: os._exit(137)  # killed once the labels are stitched, before they are written
step.stitch_sample(sys.argv[1], sys.argv[2:-1], sys.argv[-1], "whole_cell", "{out}")
"""


@pytest.fixture
def planned(tmp_path, small_tissue, tissue_predictor):
    """A small tissue tiled into one shard and its maps predicted: (plan, maps, model)."""
    from support import MODELS

    from cellscale.io import write_image
    from cellscale.segment.settings import SegmentSettings, TilingSettings
    from cellscale.segment.shards import shard_name
    from cellscale.steps.segment import segment_shard, tile_sample

    image_path = tmp_path / "tissue.ome.tif"
    write_image(image_path, small_tissue.image[:, :160, :192], ["DNA", "Membrane", "CD3", "CD20"])
    tile_sample("s", image_path, tmp_path / "tiles", {"nuclear": 0, "membrane": 1}, MODELS / "tissue",
                tiling=TilingSettings(tile=128, overlap=32, shard_mpx=100.0))
    maps = tmp_path / "maps" / shard_name(0)
    segment_shard(tmp_path / "tiles" / shard_name(0), MODELS / "tissue", maps,
                  SegmentSettings(precision=tissue_predictor.precision, augment="none"))
    return tmp_path / "tiles" / "plan.json", maps, MODELS / "tissue"


def test_stitch_rerun_after_a_kill_leaves_only_the_labels(planned, tmp_path):
    """stitch_sample stitches into a scratch store beside its output: a killed job left it there (and a rerun kept
    it, a half-written labels.zarr beside every result); the rerun now removes it."""
    from cellscale.io import read_labels
    from cellscale.steps.segment import stitch_sample

    plan, maps, model = planned
    out = tmp_path / "segmentation" / "s" / "whole_cell.ome.tif"
    killed = subprocess.run([sys.executable, "-c", KILL_AT_WRITE.format(out=out), str(plan), str(maps), str(model)],
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == 137, killed.stderr[-2000:]
    assert not out.exists() and list(out.parent.iterdir()), "the killed job left its scratch store, no labels"
    stitch_sample(plan, [maps], model, "whole_cell", out)  # the rerun
    assert [p.name for p in out.parent.iterdir()] == [out.name]
    assert read_labels(out).max() > 5


def test_scratch_dir_removes_what_a_killed_attempt_left_for_its_path_only(tmp_path):
    from cellscale.io import scratch_dir

    out = tmp_path / "nuclear.ome.tif"
    left = tmp_path / ".nuclear.ome.tif.k1ll3d.scratch"
    (left / "labels.zarr").mkdir(parents=True)
    other = tmp_path / ".whole_cell.ome.tif.k1ll3d.scratch"  # another output's, maybe a running job's
    other.mkdir()
    part = tmp_path / ".nuclear.ome.tif.k1ll3d.part"  # atomic_path's: its own write removes it
    part.write_bytes(b"partial")
    with scratch_dir(out) as scratch:
        assert scratch.is_dir() and scratch.parent == tmp_path and not left.exists()
        (scratch / "labels.zarr").mkdir()
        np.save(scratch / "labels.zarr" / "0.npy", np.zeros(3))
    assert not scratch.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([other.name, part.name])
    with pytest.raises(RuntimeError):
        with scratch_dir(out) as scratch:
            raise RuntimeError("the step failed")
    assert not scratch.exists()


KILL_MID_READ = """
import os, sys
from pathlib import Path
import cellscale.steps.batch as step

def fetch(uris, dest):  # the first field downloaded, then the job is killed
    local = Path(dest) / "bucket" / "plate" / "a.tif"
    local.parent.mkdir(parents=True)
    local.write_bytes(b"half an image")
    os._exit(137)

step.bucket.fetch = fetch
with step.job_images(["plate/a.tif", "plate/b.tif"], [], "gs://bucket", beside=sys.argv[1]):
    pass
"""


def test_a_batch_job_killed_while_downloading_its_fields_leaves_nothing_after_its_rerun(tmp_path, monkeypatch):
    """batches.read_fields: direct: a batch job downloads its fields into a folder of its own; killed mid-read,
    the job left it behind (in its working directory, where no rerun looked); the folder is now a scratch folder
    beside the job's output, which the rerun removes."""
    from cellscale.steps import batch as step

    work = tmp_path / "work"
    out = work / "results" / "batches" / "abcdefghij"
    out.parent.mkdir(parents=True)
    killed = subprocess.run([sys.executable, "-c", KILL_MID_READ, str(out)], cwd=work, capture_output=True,
                            text=True, timeout=120)
    assert killed.returncode == 137, killed.stderr[-2000:]
    left = [p for p in work.rglob("*") if p.is_file()]
    assert [p.read_bytes() for p in left] == [b"half an image"], "the killed job left its download folder"

    def fetch(uris, dest):
        got = {}
        for uri in uris:
            got[uri] = Path(dest) / uri.removeprefix("gs://")
            got[uri].parent.mkdir(parents=True, exist_ok=True)
            got[uri].write_bytes(b"an image")
        return got

    monkeypatch.chdir(work)
    monkeypatch.setattr(step.bucket, "fetch", fetch)
    with step.job_images(["plate/a.tif", "plate/b.tif"], [], "gs://bucket", beside=out) as where:
        assert sorted(Path(p).read_bytes() for p in where.values()) == [b"an image"] * 2
        out.mkdir()  # the rerun's output
    assert [p for p in work.rglob("*") if p != out.parent and p not in out.parents] == [out]
