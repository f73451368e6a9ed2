"""The small workflow that the SLURM and GKE tests run on their clusters, and its one local reference run.

Both modules run these inputs, this sample sheet and this config, so each cluster run's outputs must equal those of
one plain local run. That run is started once per test session by whichever module asks first (under pytest-xdist,
on either worker: the workers share the session's base folder), as a process of its own; each module waits for it
where it compares. One local run instead of one a module: about 60 CPU-s less of a CPU-bound suite.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cellscale.samples import batch_name

from . import MODELS
from . import gke_run as harness

# tissue (0.066 Mpx: 9 tiles) and the movie (5 frames of 0.016 Mpx) are larger than a shard: their own tile, segment
# and stitch jobs, several shards each; fov1 and fov2 (0.009 Mpx) share one batch job. tissue is an image of one file
# per channel (as plate readers write them): every file is an input of its jobs, staged where there is no shared disk.
# The movie's scale is 1 in the sheet: without one a time-lapse's nuclei are measured first (segment.timelapse_scale
# auto, an object_size job); these tests are about the cluster's mechanics, and rule object_size about sizes
TISSUE_CHANNELS = ("DNA", "Membrane", "CD3", "CD20")  # cellscale.synth.tissue's
TISSUE_FILES = [f"data/tissue_w{c + 1}.tif" for c in range(len(TISSUE_CHANNELS))]
SHEET_HEADER = harness.HEADER.rstrip("\n") + "\tscale\n"
SAMPLES = (f"tissue\t{'|'.join(TISSUE_FILES)}\ttissue\t0\t1\t{','.join(TISSUE_CHANNELS)}\t0.5\t\n"
           "movie\tdata/movie.ome.tif\ttimelapse\t\t\t\t\t1\n"
           "fov1\tdata/fov1.tif\ttissue\t\t\t\t\t\n"
           "fov2\tdata/fov2.tif\ttissue\t\t\t\t\t\n")
CONFIG = {"tiling": {"tile": 128, "overlap": 32, "shard_mpx": 0.05},
          # on GKE the batch job downloads fov1 and fov2 itself; without remote storage (SLURM, local) the same
          "batches": {"read_fields": "direct"}}
BATCH = batch_name("fov1")  # fov1 and fov2's batch, named after its first image
REFERENCE_LIMIT_S = 900


def write_inputs(dest: Path) -> None:
    """The samples and the models, at the paths the sample sheet and config name (relative to ``dest``)."""
    from cellscale.io import write_image
    from cellscale.synth.timelapse import make_timelapse
    from cellscale.synth.tissue import make_tissue

    (dest / "data").mkdir(parents=True, exist_ok=True)
    tissue = make_tissue((256, 256), n_cells=40, seed=5)
    assert tuple(tissue.channel_names) == TISSUE_CHANNELS
    for path, plane in zip(TISSUE_FILES, tissue.image, strict=True):  # one plain TIFF a channel
        tifffile.imwrite(dest / path, plane)
    movie = make_timelapse(n_frames=5, shape=(128, 128), n_cells=5, seed=3)
    write_image(dest / "data/movie.ome.tif", (movie.image * 60000).astype(np.uint16), ["nuclei"], axes="TYX")
    for seed in (1, 2):
        fov = make_tissue((96, 96), n_cells=8, seed=seed)
        tifffile.imwrite(dest / f"data/fov{seed}.tif", fov.image[0])
    for name in ("nuclear", "tissue"):
        shutil.copytree(MODELS / name, dest / "models" / name)


def write_workdir(work: Path) -> None:
    """A checkout as a user has one (:func:`.gke_run.write_workdir`) with this workflow's sample sheet and config."""
    harness.write_workdir(work, SAMPLES, SHEET_HEADER, **CONFIG)


def session_folder(tmp_path_factory) -> Path:
    """A folder of this test session that every pytest-xdist worker sees (each worker's own base folder is inside
    it); without xdist, the session's base folder."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


class Reference:
    """The local run, started by :func:`start_reference`; :meth:`wait` returns its working directory once it finished."""

    def __init__(self, work: Path):
        self.work = work

    def wait(self, timeout_s: float = REFERENCE_LIMIT_S + 60) -> Path:
        rc_file, until = self.work / "rc", time.monotonic() + timeout_s
        while not rc_file.exists():
            if time.monotonic() > until:
                raise TimeoutError(f"the local reference run in {self.work} did not finish in {timeout_s:.0f} s")
            time.sleep(1)
        rc = int(rc_file.read_text())
        log = (self.work / "snakemake.log").read_text(errors="replace")
        assert rc == 0, f"the local reference run failed (exit {rc}):\n{log[-4000:]}"
        return self.work


def start_reference(tmp_path_factory) -> Reference:
    """Start the local reference run unless this session already has (the folder's creation decides, atomically,
    which caller starts it). It runs apart from the caller's process, so a module that finishes first does not stop
    it while the other still needs it; ``timeout`` bounds it."""
    work = session_folder(tmp_path_factory) / "cluster-reference"
    try:
        work.mkdir()
    except FileExistsError:
        return Reference(work)
    write_workdir(work)
    write_inputs(work)
    snakemake = shlex.join([str(harness.BIN / "snakemake"), "--cores", "2"])
    script = (f"timeout -s INT -k 30 {REFERENCE_LIMIT_S} {snakemake} > snakemake.log 2>&1; "
              "echo $? > rc.part && mv rc.part rc")
    subprocess.Popen(["bash", "-c", script], cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)
    return Reference(work)


# the modules' fixtures (imported by name into tests/system/test_slurm.py and test_gke_workflow.py)
@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Reference:
    """The reference run, started (or joined) when a module's cluster run starts, so it runs meanwhile."""
    return start_reference(tmp_path_factory)


@pytest.fixture(scope="module")
def local_run(reference) -> Path:
    """The reference run's working directory, once it finished."""
    return reference.wait()
