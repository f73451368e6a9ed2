"""The analytic model of a GKE run: what a configuration of node pools takes and costs for a workload.

A run of many still images (each at most a shard) is, as Snakemake runs it with ``profiles/gke``:

1. ``plan_batches`` on the machine that launched Snakemake: ``fixed_s + s_per_mpx * run_mpx`` of its profile. When
   the sample sheet has no image sizes (``height``, ``width``: ``cellscale samples --sizes`` writes them) it also
   downloads every image once to read its header (no shared filesystem): ``+ images * MB / launcher_mb_s``. Before
   the first job the launcher also asks Cloud Storage about every field, one request after another
   (:func:`launcher_storage_s`, measured counts, assumed latency): ``+ (12.25 images + 47 jobs) * storage_call_s``
   (``batches.read_fields: staged``; ``direct``: ``47 jobs``).
2. ``ceil(total Mpx / shard)`` ``segment_batch`` jobs on the segment pool (the GPU pool, or the CPU pool with the int8
   model), each ``overhead + fixed_s + shard * s_per_mpx + images * batch_s_per_image + staging``; ``k`` jobs per
   node (as Kubernetes places them: :func:`slots_per_node`), ``n`` nodes, so ``ceil(J / (n k))`` waves. Batches are
   cut by content, about ``shard`` on average but up to :data:`~cellscale.settings.BATCH_CAP` x ``shard``
   (:func:`batch_mpx`): a job's time is the mean batch's, its memory (and so ``k``, and the pod's request) the
   largest batch's. Every job is taken as the mean batch in time, here and in the simulation. Snakemake
   submits at most its ``jobs`` (:func:`snakemake_jobs`) at the end of a scheduling round; while jobs wait the
   launcher runs rounds back to back, each asking Cloud Storage about the waiting jobs' inputs (with staged fields,
   every waiting field): they are priced and, when long, pace the waves (:func:`waiting_rounds`).
3. the export jobs of every batch, one per format of ``output.formats`` that has a batch rule (``ome-zarr``:
   ``ngff_batch``, ``spatialdata``: ``spatialdata_batch``), each once its ``segment_batch`` job is done, on the CPU
   pool: beside the segment jobs when that is the segment pool (each takes ``1 / k`` of a node, ``k`` its rule's
   jobs per node there; the pool works through the batches before the last wave as their jobs pack its nodes,
   :func:`packed_batch_s`, then the last wave, whose exports run side by side after its segment jobs), else on
   the CPU pool while the GPU pool segments, with as many nodes as keep up with it (:func:`export_nodes`): they end
   the longest export after the last segment job, or half the longest export after that pool has worked through
   them (at the rate its nodes pack them, :func:`packed_batch_s`; the jobs running when the work runs out end half
   a job later on average), whichever is later. Where more segment jobs wait than Snakemake's ``jobs``, its first
   round sends ``jobs`` segment jobs (no export is ready yet); their exports then go first and hold every slot, and
   the segment pool waits until the export pool has done all but ``jobs`` of them (its nodes billed for that wait
   unless they go after the first wave: :attr:`Rounds.first_go`).
4. the tail on the CPU pool: ``aggregate_measurements`` and ``report_fields`` side by side, then ``summary``; their
   time and memory grow with the whole run (``per: run``); ``Workload(run_tables=False)`` leaves them out.

Nodes: the autoscaler scans every ``scan_s`` (a pending pod waits ``scan_s / 2`` on average), asks for a VM
(``provision_s``), the VM boots and joins (``node_start_s``; a GPU node also installs its driver: ``gpu_node_start_s``)
and pulls the image (``image_pull_s``); it is billed from VM creation until the autoscaler removes it, ``idle_s``
(+ ``scan_s / 2``) after its last job. Spot nodes are preempted at ``preemption`` per node-hour: each preemption loses
the running jobs' work so far (half a job on average; Snakemake retries them, ``retries`` times) and the node's slots
until a replacement is up (``scan_s / 2 + provision_s + start + pull``); the pool's capacity is therefore
``f = 1 - rate * (d / 2 + replacement)`` of the nominal one. That spreads a preemption over the pool's other slots;
in the last wave the run waits instead for the job to start again on a replacement node: ``d / 2 + replacement``
times the chance that any of that wave's nodes is preempted under its job. Costs: node-hours x the price table
(spot or on demand), each node's boot disk, the system pool's node and the cluster fee for the wall time, the
bucket's GB-months for the run's duration, Cloud Storage operations (class A per object written or folder listed,
class B per check, download and reload) and internet egress (none unless asked). Cloud Storage has no folders:
every file of a rule's output folder is an object, so an export format costs its files per image (:data:`EXPORTS`),
far more than the labels (an OME-TIFF file per image and compartment, or per batch with ``batches.label_files:
per_batch``).
:mod:`.simulate` runs the same mechanics event by event.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property, lru_cache

from cellscale.settings import BATCH_CAP
from cellscale.settings import choices as setting_choices
from cellscale.settings import default as setting_default

from .prices import ATTACHED_GPUS, Machine, PriceTable
from .throughput import RuleRate, ThroughputProfile

SEGMENT_RULE = "segment_batch"
TAIL_PARALLEL = ("aggregate_measurements", "report_fields")
TAIL_LAST = "summary"


@dataclass(frozen=True)
class ExportFormat:
    """An ``output.formats`` entry that batched images get from a rule of its own, and what it adds per image."""

    rule: str
    objects_per_image: float   # files its output folder gains per image: one Cloud Storage object each
    mb_per_mpx: float          # bytes it writes per Mpx of image
    provenance: bool = False   # its job stages its model's provenance file, results/models/KEY.json (its table's uns)


# Measured 2026-12-05 (`python benchmarks/cost.py --measure 200`: the shipped config on 200 one-channel 1024^2 fields
# with one compartment, 14 batches): files and bytes of results/ngff/batch_BATCH (a store per image: the image and
# its labels, one level of one chunk each for a field of at most 1024 px, with a zarr.json per group and array) and
# of results/spatialdata/batches/BATCH.zarr (image and labels of two levels, outlines, one table a batch), per field.
# Larger images have more levels and chunks: a pilot run tells.
EXPORTS = {"ome-zarr": ExportFormat("ngff_batch", 7.1, 0.51),
           "spatialdata": ExportFormat("spatialdata_batch", 17.3, 0.68, provenance=True)}


# output.formats mcquant: one run-level job after aggregate_measurements (it reads the run's cells table row group by
# row group, a batch's or sample's rows at a time: steps.measure.run_mcquant) writing one CSV per image and
# compartment, one Cloud Storage object each. Time measured 2026-12-07 in two local workflow runs (the shipped config
# with output.formats [ome-tiff, mcquant], `snakemake --cores 1`, 16-Mpx shards, on 24 and 120 fields of 1024^2 made
# as benchmarks/cost.py --measure makes them, 2 cores of an Intel Xeon shared with other work):
# results/benchmarks/mcquant/run.tsv 0.72 s at 25.2 Mpx (24 CSVs, 8,268 cells), 1.07 s at 125.8 Mpx (120 CSVs, 41,340
# cells): a line through the two (3.6 ms an image); its CSVs 0.0565 MB per Mpx in both. Memory from
# `python benchmarks/tables.py --batches N --rows R` (its mcquant line, the same day and machine): peak RSS 161 MB for
# 10 and for 100 batch tables of 10,000 rows, 167 MB for 300 (3 x 10^6 cells, about 9,000 Mpx at those runs' 330
# cells per Mpx: 0.0007 MB per Mpx), 251 MB for 20 tables of 50,000 rows: bounded by the largest batch's table, not
# the run; 251 MB is taken as the fixed part. Taken as the same on every machine (one thread)
MCQUANT = RuleRate("mcquant", fixed_s=0.632, s_per_mpx=0.00348, mem_mb=251.0, mem_mb_per_mpx=0.0007,
                   origin="assumed",
                   how="time measured 2026-12-07 in two local workflow runs (24 and 120 fields of 1024^2, --cores 1, 2 "
                       "cores of an Intel Xeon): 0.72 s at 25.2 Mpx, 1.07 s at 125.8 Mpx, a line through both; memory "
                       "with benchmarks/tables.py (the run's table read a batch's rows at a time): 161-167 MB from 10^5 "
                       "to 3 x 10^6 cells in 10,000-row batches, 251 MB with 50,000-row batches; taken as the same on "
                       "every machine")
MCQUANT_MB_PER_MPX = 0.0565   # the CSVs' bytes per Mpx of image (the same runs)


def default_formats() -> tuple[str, ...]:
    """The config schema's ``output.formats``."""
    return tuple(setting_default("output", "formats"))


def default_label_files() -> str:
    """The config schema's ``batches.label_files``."""
    return setting_default("batches", "label_files")


def default_read_fields() -> str:
    """The config schema's ``batches.read_fields``."""
    return setting_default("batches", "read_fields")


def default_augment() -> str:
    """The config schema's ``segment.augment``."""
    return setting_default("segment", "augment")


PASSES = {"none": 1, "rot180": 2, "flips": 4}   # network passes per window of each segment.augment
LIST_PAGE = 1000   # objects per Cloud Storage list call (the JSON API's most)


@dataclass(frozen=True)
class Workload:
    """``images`` still images of ``mpx_per_image`` megapixels each (the model's pixels)."""

    images: int
    mpx_per_image: float = 1.0
    mb_per_mpx: float = 2.0        # stored image size: 2 MB/Mpx = one uint16 channel, uncompressed (assumed)
    # the fields decoded, as a segment_batch job holds them (every channel of the file, its pixel type): MB per Mpx of
    # the model's pixels, bytes per pixel x channels / scale^2 (0: mb_per_mpx, the stored size uncompressed)
    decoded_mb_per_mpx: float = 0.0
    out_mb_per_mpx: float = 1.0    # labels + tables written per Mpx (assumed: compressed 32-bit labels)
    run_tables: bool = True        # the run-level tail (aggregate_measurements, report_fields, summary) runs too
    sizes_in_sheet: bool = True    # the sheet gives each image's height and width: plan_batches downloads none
    formats: tuple[str, ...] = field(default_factory=default_formats)  # output.formats
    # batches.label_files: per_image (a file per image and compartment) or per_batch (a file per batch and compartment)
    label_files: str = field(default_factory=default_label_files)
    # batches.read_fields: staged (Snakemake stages each batch job's images) or direct (the job downloads them)
    read_fields: str = field(default_factory=default_read_fields)
    compartments: int = 1          # label images per image: 1 (nuclear model) or 2 (whole-cell model)
    augment: str = field(default_factory=default_augment)   # segment.augment: network passes per window
    # the most input images in one folder (0: not known; taken as at most LIST_PAGE): every job's pod lists the
    # folder of its inputs (see list_calls)
    images_per_folder: int = 0
    # the largest image (0: mpx_per_image): shards above plan.BATCHED_FIELD_MPX only when it is at most that
    largest_image_mpx: float = 0.0
    # (format, files per image, MB per Mpx) a pilot run measured (cost.runcost.export_files): they replace EXPORTS'
    export_figures: tuple[tuple[str, float, float], ...] = ()
    # (shard Mpx, images larger than it) for a sheet's images of different sizes (empty: every image is
    # mpx_per_image): the workflow tiles, segments and stitches such images in jobs of their own, which the model
    # does not price (their megapixels count in mpx_per_image, as if batched)
    above_shard: tuple[tuple[float, int], ...] = ()
    # a sheet's time-lapse samples, left out: each runs in jobs of its own (tile, segment, stitch, track)
    timelapses_left_out: int = 0

    def __post_init__(self):
        if not self.images >= 1:
            raise ValueError(f"a workload needs at least 1 image, not {self.images!r}")
        if not (math.isfinite(self.mpx_per_image) and self.mpx_per_image > 0):
            raise ValueError(f"megapixels per image must be above 0, not {self.mpx_per_image!r}")
        if not (math.isfinite(self.decoded_mb_per_mpx) and self.decoded_mb_per_mpx >= 0):
            raise ValueError(f"decoded MB per Mpx must be at least 0, not {self.decoded_mb_per_mpx!r}")
        if self.label_files not in setting_choices("batches", "label_files"):
            raise ValueError(f"batches.label_files must be {' or '.join(setting_choices('batches', 'label_files'))}, "
                             f"not {self.label_files!r}")
        if self.read_fields not in setting_choices("batches", "read_fields"):
            raise ValueError(f"batches.read_fields must be {' or '.join(setting_choices('batches', 'read_fields'))}, "
                             f"not {self.read_fields!r}")
        if self.augment not in PASSES:
            raise ValueError(f"segment.augment must be one of {', '.join(PASSES)}, not {self.augment!r}")

    @property
    def mcquant(self) -> bool:
        """Whether the run writes MCMICRO's CSVs (output.formats mcquant), priced with the run-level tables."""
        return self.run_tables and "mcquant" in self.formats

    @property
    def largest_mpx(self) -> float:
        return max(self.largest_image_mpx, self.mpx_per_image)

    @property
    def fields_mb_per_mpx(self) -> float:
        """MB a batch job holds per Mpx of its fields decoded (:attr:`decoded_mb_per_mpx`, else the stored size)."""
        return self.decoded_mb_per_mpx or self.mb_per_mpx

    @property
    def total_mpx(self) -> float:
        return self.images * self.mpx_per_image

    @cached_property
    def exports(self) -> tuple[ExportFormat, ...]:
        """The batch export rules ``formats`` run (OME-TIFF labels are segment_batch's own), with a pilot's figures
        where ``export_figures`` has them."""
        measured = {f: ExportFormat(EXPORTS[f].rule, files, mb) for f, files, mb in self.export_figures if f in EXPORTS}
        return tuple(measured.get(f, EXPORTS[f]) for f in self.formats if f in EXPORTS)

    def jobs(self, shard_mpx: float) -> int:
        """segment_batch jobs: plan_batches cuts images into batches of about shard_mpx on average (by content, at
        most BATCH_CAP times that: cellscale.samples.pack_batches); counted as if each held shard_mpx (within 2% of
        the content-cut count on uniform 1-Mpx fields)."""
        per_batch = max(1, math.floor(shard_mpx / self.mpx_per_image + 1e-9))
        return math.ceil(self.images / per_batch)

    def images_above(self, shard_mpx: float) -> int:
        """Images larger than ``shard_mpx``, which the workflow does not batch (see :attr:`above_shard`, which must
        count them for that shard)."""
        if not self.above_shard:
            return self.images if self.mpx_per_image > shard_mpx else 0
        counts = dict(self.above_shard)
        if shard_mpx not in counts:
            raise ValueError(f"the workload counts its images above shards of {', '.join(map(str, counts))} Mpx, "
                             f"not {shard_mpx:g}")
        return counts[shard_mpx]

    def images_per_job(self, shard_mpx: float) -> float:
        return self.images / self.jobs(shard_mpx)

    @property
    def list_calls_per_job(self) -> int:
        """Object listings (LIST_PAGE objects each) one job's pod makes of its input images' folder:
        snakemake-storage-plugin-gcs 1.1.4 inventories an input by listing its whole folder
        (``list_blobs(prefix=folder)``), once per folder per Snakemake process, and every job's pod is a process of
        its own (read in the plugin's and Snakemake 9.27's code, not measured on Cloud Storage)."""
        return max(1, math.ceil(self.images_per_folder / LIST_PAGE))

    def list_calls(self, segment_jobs: int) -> int:
        """Object listings (class A operations) of the run: every batch's segment_batch and export jobs take its
        images as inputs, so each of their pods lists the images' folder (:attr:`list_calls_per_job`)."""
        return segment_jobs * (1 + len(self.exports)) * self.list_calls_per_job

    @property
    def fields_staged(self) -> bool:
        """Whether Snakemake stages the fields as inputs of the batch jobs (the launcher then asks about each):
        batches.read_fields staged; direct, segment_batch and the batch exports download them themselves."""
        return self.read_fields == "staged"

    def label_objects(self, segment_jobs: int) -> int:
        """Label files the segment jobs write: one per image and compartment, or per batch and compartment."""
        return self.compartments * (segment_jobs if self.label_files == "per_batch" else self.images)


@dataclass(frozen=True)
class Overheads:
    """Everything about a run that is not a rule's own time; each default says where it comes from (all assumed but
    ``batch_s_per_image``, ``pack_s_per_mpx``, ``pass_share`` and the Cloud Storage request counts, measured; the
    requests' latency, ``storage_call_s``, is assumed)."""

    job_overhead_s: float = 15.0     # pod scheduled on a ready node + container start (image cached) + Snakemake's job
                                     # start (about 1 s, measured locally) + half of the profile's 15-s status checks
    list_call_s: float = 0.3         # one Cloud Storage list call of LIST_PAGE objects (about 1 MB of JSON) from a pod
    batch_s_per_image: float = 0.009  # per image in a segment_batch job: read, write labels, measure (measured, AVX2)
    pass_share: float = 0.388        # one network pass's share of a CPU segment_batch job's seconds per Mpx with
                                     # rot180 (int8): scales CPU profiles to another segment.augment (measured, AMD
                                     # EPYC, one run: 0.834 s/Mpx rot180, 0.510 none; benchmarks/cost.py --augment)
    pack_s_per_mpx: float = 0.015    # batches.label_files per_batch: a label image read and written again into its
                                     # batch's file, per Mpx and compartment (measured, AMD EPYC: 15 ms for 1024²)
    pod_mb_s: float = 100.0          # a pod's transfer rate to and from the bucket (staging inputs and outputs)
    scan_s: float = 10.0             # cluster autoscaler scan interval (GKE's documented default)
    provision_s: float = 20.0        # from the autoscaler's decision to a VM being created
    node_start_s: float = 90.0       # VM boot + kubelet + joining the cluster (CPU node)
    gpu_node_start_s: float = 300.0  # the same for a GPU node, whose NVIDIA driver GKE installs at boot
    image_pull_s: float = 60.0       # the cellscale image (TensorFlow inside) from Artifact Registry in the region
    idle_s: float = 300.0            # an empty node is removed after this (the optimize-utilization profile)
    retries: int = 3                 # profiles/gke: retries
    launcher_mb_s: float = 400.0     # plan_batches downloads images without sizes in the sheet at this rate
    disk_gb: float = 100.0           # boot disk per node (cellscale gke up: --disk-size 100, pd-balanced)
    system_machine: str = "e2-medium"  # the always-on system pool node (one, on demand)
    egress_gb: float = 0.0           # results downloaded out of Google Cloud (internet egress)
    class_a_per_object: float = 1.0  # a simple upload is one class A operation
    # Cloud Storage requests counted one by one (benchmarks/storage_ops.py: the real GCS storage plugin 1.1.4 and
    # google-cloud-storage client against an emulator, Snakemake 9.27, record storage-ops-2026-12-05.json):
    # a segment_batch pod makes 13 class B requests per field it reads (existence, mtime and size checks, the
    # download, the checksum's reload) and 85 more per job (its models, plan, workflow sources, bucket checks) ...
    class_b_per_download: float = 13.0
    class_b_per_job: float = 85.0
    # ... and 16 class A per job, of which 7 are its uploads (counted as written objects) and 9 listings: each
    # missing output's existence check lists its "folder" (8 beyond the input listing counted in list_calls)
    class_a_checks_per_job: float = 8.0
    # an upload (store_object; a directory output once): bucket.exists() before it (ensure_bucket_exists), class B
    class_b_per_upload: float = 1.0
    # An export pod (ngff_batch, spatialdata_batch; batches.read_fields: direct), counted in the GKE workflow test (2
    # fields, a label file each): 81 class B, of which one download a field (class_b_per_direct_read), one a label
    # file (inside its batch's folder: a listing, then one get each) and one look at the bucket
    # (class_b_per_direct_job); 76 a job (its batch's folder and table, the plan, workflow sources, bucket checks;
    # no models). 17 listings: its input's folder (list_calls) and 16 more. A staged export pod reads each field as a
    # segment pod does: 76.0 class B a job + 13.0 a field (benchmarks/storage_ops.py --runs 4:2 8:4 --formats
    # ome-tiff ome-zarr, labels per batch; record storage-ops-exports-staged-2026-12-06.json).
    class_b_per_export_job: float = 76.0
    class_b_per_label_read: float = 1.0
    class_a_checks_per_export_job: float = 16.0
    # A spatialdata_batch pod stages one input more, its model's provenance file (results/models/KEY.json, rule
    # model_provenance: its table's uns['cellscale']), since 2026-12-07: 23 class B more than the ngff_batch pod's
    # figures above and the same 17 listings (counted in the GKE workflow test: 104 class B against 81; a small file
    # is checked, downloaded and reloaded as a staged field is, and its rule's outputs checked: 100 before that rule
    # had a benchmark file, 104 since). Before, no batch store had the provenance: fetching the model's weights to hash
    # them in each export pod had cost 15 more.
    class_b_per_provenance_read: float = 23.0
    # The launcher checks every field and every batch's outputs in Cloud Storage before the first job (the DAG,
    # plan_batches, the DAG again, its I/O cache off after the first build): 8 class B requests per field and 36
    # class B + 11 class A (listings of the missing outputs' "folders") per segment job (measured with the fields'
    # sizes in the sheet, the slopes over 16-64 fields in 4-16 jobs; without sizes plan_batches also downloads each
    # field, priced as a read). Snakemake's scheduler then reads each ready job's inputs' existence and size
    # (4.25 class B a field) at every scheduling round, about once a second while jobs wait for a slot: counted
    # once per field here, a lower bound (64 fields in 16 jobs, 2 at a time, were read 10,164 times while the jobs
    # ran; 32 fields in 8 jobs 2,952 times).
    launcher_b_per_image: float = 8.0
    launcher_b_per_job: float = 36.0
    launcher_a_per_job: float = 11.0
    launcher_scan_b_per_image: float = 4.25
    # Rule model_provenance (results/models/KEY.json, a localrule) runs on the launcher once a run per config model:
    # it stages the model's spec, weights and metrics.json (a download each, with its existence, mtime, size and
    # checksum gets), checks its outputs and uploads them (the file, its benchmark, its log). Counted in the GKE
    # workflow test (tests/system/test_gke_workflow.py, 2026-12-07): a launcher run of both models' jobs less one of
    # one model's, the second model's outputs missing as in a first run: 73 class B (+-2, the client's background
    # looks at the bucket) and 7 class A (the 3 uploads, 4 listings of its missing outputs' "folders"). Priced once a
    # run (a planned screen's fields use one model); not in the launcher's phase: the job is no segment job's input
    launcher_b_per_model: float = 73.0
    launcher_a_per_model: float = 7.0
    # segment.timelapse_scale: a movie without a sheet scale makes the launcher read its model's model.json once a run
    # (rules/common.smk): 4 class B, 3 gets of its metadata and the download (the GKE workflow test: dry runs with and
    # without the movie's sheet scale). Not priced: the planner leaves time-lapse samples out
    launcher_b_timelapse_scale: float = 4.0
    # batches.read_fields: direct: a segment job downloads each field itself, one class B request a field and one
    # look at the bucket a job (measured, cellscale.io.bucket), and the launcher asks only about the report's few
    # fields (measured: no slope with the fields beyond the report's 24)
    class_b_per_direct_read: float = 1.0
    class_b_per_direct_job: float = 1.0
    launcher_b_per_image_direct: float = 0.0
    # The storage plugin's calls are synchronous inside Snakemake's coroutines, so the launcher makes them one after
    # another: each takes a round trip to Cloud Storage (in-region, assumed; 0 leaves the launcher's time out)
    storage_call_s: float = 0.02
    # Snakemake's scheduling rounds while ready jobs wait for a slot (docs/cost.md): every finished job adds a round
    # a second (the rate limiter's timers), so after the first few the launcher runs rounds back to back, each
    # asking about the waiting jobs' inputs one request after another: round_b class B for their shared inputs
    # (a get of each model file and of the plan, and of the bucket) and, with staged fields,
    # launcher_scan_b_per_image for every waiting field (:func:`waiting_rounds`). Measured (benchmarks/storage_ops.py
    # --runs 64:4 --read-fields direct, record storage-ops-rounds-objects-2026-12-06.json): while the segment pods
    # ran, the launcher got the plan 1,385 times, the 3 model files 4,099 times and the bucket 1,842 times: 5.3
    # class B a round (one get an input, the bucket 1.3 times), and no class A but 56 listings (3.5 a job)
    round_b: float = 5.3

    def startup_s(self, machine: Machine) -> float:
        """From VM creation to a node that runs pods (billed)."""
        return (self.gpu_node_start_s if machine.gpus else self.node_start_s) + self.image_pull_s

    def replacement_s(self, machine: Machine) -> float:
        """From a pending pod (or a preempted node) to a new node that runs it."""
        return self.scan_s / 2 + self.provision_s + self.startup_s(machine)

    def assumptions(self) -> list[str]:
        measured = {"batch_s_per_image", "pack_s_per_mpx", "pass_share",
                    # counted request by request against a Cloud Storage emulator (benchmarks/storage_ops.py)
                    "class_b_per_download", "class_b_per_job", "class_a_checks_per_job", "launcher_b_per_image",
                    "launcher_b_per_job", "launcher_a_per_job", "launcher_scan_b_per_image",
                    "class_b_per_direct_read", "class_b_per_direct_job", "launcher_b_per_image_direct",
                    "class_b_per_export_job", "class_b_per_label_read", "class_a_checks_per_export_job",
                    "class_b_per_provenance_read", "launcher_b_per_model", "launcher_a_per_model",
                    "launcher_b_timelapse_scale", "round_b"}
        return [f"overhead {k} = {v}" for k, v in asdict(self).items() if k not in measured]


@dataclass(frozen=True)
class PoolChoice:
    name: str                  # "gpu", "spot-cpu" or "cpu" (profiles/gke's node pools)
    machine: str               # price table key (n1-standard-4-t4: n1-standard-4 with a T4)
    nodes: int                 # the pool's autoscaling maximum
    spot: bool

    @property
    def instance_type(self) -> str:
        """The Kubernetes instance type (node.kubernetes.io/instance-type) of the pool's nodes."""
        for gpu in ATTACHED_GPUS:
            if self.machine.endswith(gpu):
                return self.machine[: -len(gpu)]
        return self.machine


@dataclass(frozen=True)
class Choice:
    """A configuration: the pool ``segment_batch`` runs on, the CPU pool of the tail, the shard size."""

    segment: PoolChoice
    tail: PoolChoice
    shard_mpx: float

    @property
    def pools(self) -> list[PoolChoice]:
        return [self.segment] if self.segment == self.tail else [self.segment, self.tail]


@dataclass
class Prediction:
    hours: float
    cost_usd: float
    breakdown: dict[str, float]          # compute:<pool>, disks, system_pool, cluster_fee, storage, operations, network
    phases_h: dict[str, float]           # launcher (its storage checks), plan_batches, segment, exports, tail
    jobs: int                            # Snakemake's `jobs`: the segment pool's slots (2 at least for the tail)
    segment_jobs: int
    slots_per_node: int
    nodes_used: int
    preemptions: float = 0.0
    round_requests: float = 0.0          # the launcher's class B requests in scheduling rounds while jobs wait
    # what the notes are made of, kept until they are read: the planner predicts tens of thousands of configurations
    # and reads the notes of one
    note_inputs: tuple = field(default=(), repr=False, compare=False)

    @cached_property
    def notes(self) -> list[str]:
        """What a user should know about this configuration (preemption losses, objects written, list calls, label
        files)."""
        return _notes(*self.note_inputs) if self.note_inputs else []


# What GKE's own DaemonSets (kube-proxy, logging, metrics, CSI, GPU device plugin) take from every node.
DAEMON_CPU, DAEMON_MEMORY_MB = 0.4, 800.0


@lru_cache(maxsize=None)
def allocatable_cpu(vcpus: int, daemons_cpu: float = DAEMON_CPU) -> float:
    """CPUs pods may request on one GKE node of ``vcpus``: GKE's documented reservation (6% of the first core, 1% of
    the second, 0.5% of the next two, 0.25% above) less what GKE's DaemonSets take (``cellscale.deploy.gke.allocatable``
    uses this too)."""
    reserved = sum(share for share, present in ((0.06, vcpus >= 1), (0.01, vcpus >= 2), (0.005, vcpus >= 3),
                                                (0.005, vcpus >= 4)) if present) + 0.0025 * max(0, vcpus - 4)
    return vcpus - reserved - daemons_cpu


@lru_cache(maxsize=None)
def allocatable_memory_mb(memory_gib: float, daemons_mb: float = DAEMON_MEMORY_MB) -> float:
    """Memory (MB) pods may request on one GKE node of ``memory_gib``: GKE's documented reservation (25% of the
    first 4 GiB, 20% of the next 4, 10% of the next 8, 6% of the next 112, 2% above, + 100 MiB eviction threshold)
    less what GKE's DaemonSets take (``cellscale.deploy.gke.allocatable`` uses this too)."""
    mem_mib, reserved = memory_gib * 1024, 100.0
    left = mem_mib
    for size_gib, share in ((4, 0.25), (4, 0.20), (8, 0.10), (112, 0.06), (math.inf, 0.02)):
        part = min(left, size_gib * 1024)
        reserved += part * share
        left -= part
        if left <= 0:
            break
    return (mem_mib - reserved) * 1.048576 - daemons_mb


def allocatable_mb(machine: Machine) -> float:
    return allocatable_memory_mb(machine.memory_gib)


#: profiles/gke's ``kubernetes-cpu-scalar`` (the plugin's default too): a job of ``t`` threads requests ``0.95 t`` CPUs
CPU_SCALAR = 0.95


def batch_mpx(shard_mpx: float) -> float:
    """The largest batch of ``tiling.shard_mpx`` = ``shard_mpx``: :data:`~cellscale.settings.BATCH_CAP` times it
    (:func:`cellscale.samples.pack_batches` cuts batches of about ``shard_mpx`` on average, at most this). Every
    batch job (segment_batch and the batch exports) is sized in memory for it."""
    return BATCH_CAP * shard_mpx


@lru_cache(maxsize=4096)
def slots_per_node(machine: Machine, rate: RuleRate, mpx: float) -> int:
    """Jobs of a rule that fit on one node at once, as Kubernetes places its pods: each requests ``threads x``
    :data:`CPU_SCALAR` CPUs of the node's allocatable ones and its memory for ``mpx`` (a batch job's: the largest
    batch, :func:`batch_mpx`); a GPU rule also one of its GPUs."""
    by_cpu = int(round(allocatable_cpu(machine.vcpus), 6) // round(max(1, rate.threads) * CPU_SCALAR, 6))
    by_mem = int(allocatable_mb(machine) // max(1.0, rate.memory_mb(mpx)))
    return min(by_cpu, by_mem, machine.gpus) if rate.gpu else min(by_cpu, by_mem)


def segment_rate(profile: ThroughputProfile, w: Workload, o: Overheads) -> RuleRate:
    """segment_batch's figures on ``profile``'s machine for the workload's ``segment.augment``.

    A CPU profile measured with another augment is scaled: a job's seconds per Mpx are a network pass's share
    (``o.pass_share`` of the rot180 time, measured) times the passes, plus the rest (tiling, post-processing,
    measuring), so ``(1 - 2q + q P_w) / (1 - 2q + q P_profile)`` with ``q = pass_share``. A GPU profile that
    says its network's part (``network_s_per_mpx``) has that part scaled by the passes; one that does not is
    used as it is. A scaled figure is assumed, and says so. A profile whose job holds its fields
    (``holds_fields``) gets the workload's decoded fields in its memory (:func:`held_fields`)."""
    rate = held_fields(profile.rate(SEGMENT_RULE), w)
    if rate.augment is None or rate.augment == w.augment:
        return rate
    if rate.gpu:
        return rate if rate.network_s_per_mpx is None else _scaled_gpu_rate(rate, w.augment)
    return _scaled_rate(rate, w.augment, o.pass_share)


def held_fields(rate: RuleRate, w: Workload) -> RuleRate:
    """A segment rule's figures with the batch's fields in its memory where its profile says the job holds them
    (``holds_fields``: ``steps.batch`` reads every field of a batch whole, in its pixel type, every channel of the
    file, and segments them one at a time): ``mem_mb_per_mpx`` (the rest) + the workload's decoded MB per Mpx
    (:attr:`Workload.fields_mb_per_mpx`). Memory and threads are the same for every segment.augment."""
    return _held_fields(rate, w.fields_mb_per_mpx) if rate.holds_fields else rate


@lru_cache(maxsize=256)
def _held_fields(rate: RuleRate, fields_mb_per_mpx: float) -> RuleRate:
    return replace(rate, mem_mb_per_mpx=rate.mem_mb_per_mpx + fields_mb_per_mpx, holds_fields=False,
                   how=f"{rate.how}; memory per Mpx: {rate.mem_mb_per_mpx:g} + the workload's fields decoded, "
                       f"{fields_mb_per_mpx:g} MB/Mpx")


@lru_cache(maxsize=256)
def _scaled_gpu_rate(rate: RuleRate, augment: str) -> RuleRate:
    network = rate.network_s_per_mpx * PASSES[augment] / PASSES[rate.augment]
    return replace(rate, s_per_mpx=rate.s_per_mpx - rate.network_s_per_mpx + network, augment=augment,
                   network_s_per_mpx=network, origin="assumed",
                   how=f"{rate.how}; the network's {rate.network_s_per_mpx:g} s/Mpx ({PASSES[rate.augment]} "
                       f"passes) x {PASSES[augment]}/{PASSES[rate.augment]} for segment.augment {augment}")


@lru_cache(maxsize=256)
def _scaled_rate(rate: RuleRate, augment: str, q: float) -> RuleRate:
    rest = 1.0 - 2.0 * q
    factor = (rest + q * PASSES[augment]) / (rest + q * PASSES[rate.augment])
    return replace(rate, s_per_mpx=rate.s_per_mpx * factor, augment=augment, origin="assumed",
                   how=f"{rate.how}; x {factor:.3f} for segment.augment {augment} ({PASSES[augment]} network "
                       f"pass{'es' if PASSES[augment] > 1 else ''} instead of {PASSES[rate.augment]}; "
                       f"Overheads.pass_share {q:g})")


def fits(machine: Machine, rate: RuleRate, shard_mpx: float) -> bool:
    """Whether a batch job of ``shard_mpx``'s largest batch (:func:`batch_mpx`) fits on one ``machine``."""
    mpx = batch_mpx(shard_mpx)
    return rate.memory_mb(mpx) <= allocatable_mb(machine) and slots_per_node(machine, rate, mpx) >= 1


def segment_job_s(w: Workload, rate: RuleRate, shard_mpx: float, o: Overheads) -> float:
    """Wall seconds one segment_batch job holds its slot (pod start to the status check that sees it done)."""
    mpx = w.total_mpx / w.jobs(shard_mpx)
    staging = mpx * (w.mb_per_mpx + w.out_mb_per_mpx) / o.pod_mb_s
    pack = mpx * w.compartments * o.pack_s_per_mpx if w.label_files == "per_batch" else 0.0
    return (o.job_overhead_s + w.list_calls_per_job * o.list_call_s + rate.seconds(mpx)
            + w.images_per_job(shard_mpx) * o.batch_s_per_image + staging + pack)


def export_jobs(w: Workload, profile: ThroughputProfile, machine: Machine, shard_mpx: float,
                o: Overheads) -> list[tuple[float, int]]:
    """(wall seconds, jobs per node) of each export job of one batch on ``machine``: it stages the batch's images and
    labels in and its store out; its time is the mean batch's, its jobs per node the largest batch's
    (:func:`batch_mpx`)."""
    mpx = w.total_mpx / w.jobs(shard_mpx)
    out = []
    for fmt in w.exports:
        rate = profile.rate(fmt.rule)
        k = slots_per_node(machine, rate, batch_mpx(shard_mpx))
        if k < 1:
            raise ValueError(f"{machine.name}: a {fmt.rule} job of a {batch_mpx(shard_mpx):g} Mpx batch (the largest "
                             f"of {shard_mpx:g} Mpx shards) does not fit on one node")
        staging = mpx * (w.mb_per_mpx + w.out_mb_per_mpx + fmt.mb_per_mpx) / o.pod_mb_s
        out.append((o.job_overhead_s + w.list_calls_per_job * o.list_call_s + rate.seconds(mpx) + staging, k))
    return out


def packed_batch_s(exports: list[tuple[float, int]], batches: int = 48,
                   segment: tuple[float, int] | None = None) -> float:
    """Node-seconds one batch's exports (:func:`export_jobs`' (seconds, jobs per node)) hold an export node that
    always has the next batches' exports waiting (a node's worth of each kind), placed as the simulation places
    pending pods: the smallest first (by kind, oldest first within one), each while it fits. Jobs of different sizes
    leave a node part empty: a batch's 1/3- and 1/2-node jobs on an n1-standard-4 fill 5/6 of it, 118 s a batch
    where ``sum(seconds / jobs per node)`` counts 104 s. ``segment`` ((seconds, jobs per node)): the batch's segment
    job shares the node and waits behind the exports (their rules' priority). At least the sum; 0 without jobs."""
    kinds = tuple((float(e), int(k)) for e, k in exports)
    if segment is not None:
        kinds += ((float(segment[0]), int(segment[1])),)
    return _packed_batch_s(kinds, segment is not None, batches)


@lru_cache(maxsize=4096)
def _packed_batch_s(kinds: tuple[tuple[float, int], ...], segment_last: bool, batches: int) -> float:
    if not kinds:
        return 0.0
    ideal = sum(e / k for e, k in kinds)
    first = len(kinds) - int(segment_last)
    order = sorted(range(first), key=lambda i: -kinds[i][1]) + list(range(first, len(kinds)))   # smallest first
    depth = max(k for _, k in kinds)       # batches released ahead of the running ones
    waiting = {i: 0 for i in order}
    running: list[tuple[float, int]] = []  # (end, kind)
    used, now, released, finished = 0.0, 0.0, 0, 0
    while finished < batches * len(kinds):
        while released < batches and max(waiting.values()) < depth:
            for i in order[first:] if segment_last else order:   # with the segment job: its exports follow it
                waiting[i] += 1
            released += 1
        for i in order:
            size = 1.0 / kinds[i][1]
            while waiting[i] and used + size <= 1.0 + 1e-9:
                waiting[i] -= 1
                used += size
                heapq.heappush(running, (now + kinds[i][0], i))
        now, i = heapq.heappop(running)
        used -= 1.0 / kinds[i][1]
        finished += 1
        if segment_last and i == first:    # a segment job done: its batch's exports wait now
            for j in order[:first]:
                waiting[j] += 1
    return max(ideal, now / batches)


def export_nodes(w: Workload, choice: Choice, profiles: dict[str, ThroughputProfile], prices: PriceTable,
                 o: Overheads = Overheads(), cap: int | None = None, figures: JobFigures | None = None) -> int:
    """Nodes of a separate CPU pool that keep up with the segment pool's exports (1 without exports): the batches
    the segment pool finishes per second x each batch's export node-seconds, as they pack (:func:`packed_batch_s`).
    ``figures``: :func:`job_figures` of the same machines and shard, when the caller has them."""
    if not w.exports or choice.segment == choice.tail:
        return 1
    g = figures or job_figures(w, choice, profiles, prices, o)
    n = max(1, math.ceil(min(choice.segment.nodes * g.k, g.jobs) / g.d * g.packed - 1e-9))
    return n if cap is None else max(1, min(n, cap))


def tail_rates(w: Workload, profile: ThroughputProfile) -> dict[str, RuleRate]:
    """The run-level tail's rules (none without the tail): ``profile``'s, and mcquant's (:data:`MCQUANT`) where the
    run writes its CSVs."""
    if not w.run_tables:
        return {}
    rates = {r: profile.rate(r) for r in (*TAIL_PARALLEL, TAIL_LAST)}
    return {**rates, MCQUANT.rule: MCQUANT} if w.mcquant else rates


def tail_job_s(w: Workload, profile: ThroughputProfile, o: Overheads) -> dict[str, float]:
    """Seconds of each tail job (0 for those the run does not have); mcquant follows aggregate_measurements."""
    seconds = {r: 0.0 for r in (*TAIL_PARALLEL, TAIL_LAST, MCQUANT.rule)}
    rates = tail_rates(w, profile)
    return {**seconds, **{r: o.job_overhead_s + rate.seconds(w.total_mpx) for r, rate in rates.items()}}


def tail_work_s(tails: dict[str, float]) -> float:
    """The tail's wall seconds from :func:`tail_job_s`: aggregate_measurements (then mcquant) beside report_fields,
    then summary."""
    return max(tails["aggregate_measurements"] + tails[MCQUANT.rule], tails["report_fields"]) + tails[TAIL_LAST]


def tail_memory_mb(w: Workload, profile: ThroughputProfile) -> tuple[str, float]:
    """The tail rule that needs the most memory for this run, and how much (MB; 0 without the tail)."""
    rates = tail_rates(w, profile)
    if not rates:
        return "", 0.0
    return max(((r, rate.memory_mb(w.total_mpx)) for r, rate in rates.items()), key=lambda t: t[1])


def plan_batches_s(w: Workload, profile: ThroughputProfile, o: Overheads, segment_jobs: int) -> float:
    """From the launch to the first segment job: plan_batches, and the launcher's Cloud Storage requests about
    every field and job (:func:`launcher_storage_s`)."""
    download = 0.0 if w.sizes_in_sheet else w.total_mpx * w.mb_per_mpx / o.launcher_mb_s
    return (profile.rate("plan_batches").seconds(w.total_mpx) + download
            + launcher_storage_s(w, o, segment_jobs))


def launcher_storage_s(w: Workload, o: Overheads, segment_jobs: int) -> float:
    """The launcher's Cloud Storage requests, one after another: its checks before the first job and one read of
    each field's existence and size by the scheduler (a lower bound: it reads them again at every scheduling round
    while their job waits for a slot)."""
    calls = w.images * launcher_b_per_field(w, o) + segment_jobs * (o.launcher_b_per_job + o.launcher_a_per_job)
    return calls * o.storage_call_s


def launcher_b_per_field(w: Workload, o: Overheads) -> float:
    """The launcher's class B requests about each field: its checks and one read by the scheduler where Snakemake
    stages the fields, only the checks of the report's few fields (spread over all) where the jobs read them."""
    if w.fields_staged:
        return o.launcher_b_per_image + o.launcher_scan_b_per_image
    return o.launcher_b_per_image_direct


@dataclass(frozen=True)
class Rounds:
    """The segment phase as Snakemake's scheduling rounds pace it (:func:`waiting_rounds`)."""

    seconds: float       # from the first segment jobs' submission to the last one's end
    requests: float      # the launcher's class B requests in the rounds while jobs wait
    idle_node_s: float   # a segment node's billed seconds beyond its jobs' while they wait for rounds
    go_s: float = 0.0    # the seconds of the waves whose rounds are so long that the nodes go between them
    go_waves: int = 0    # and their number
    waves: int = 1       # waves of Snakemake's jobs
    flowing: tuple = ()  # the rounds' seconds after each wave from which the next wave's jobs go while it runs
    first_go: bool = False   # whether the nodes go after the first wave (its restart is in idle_node_s)


def waiting_rounds(w: Workload, o: Overheads, jobs: int, limit: float, slots: int, first_s: float, d: float,
                   up: float, startup: float, lead: float = 0.0, per_wave: int = 1,
                   export_up: float = 0.0, buffer_s: float = 0.0, flow_s: float = 0.0) -> Rounds:
    """The segment phase's ``jobs`` on ``slots`` slots, paced by Snakemake's scheduling rounds.

    While jobs wait, rounds run back to back, each ``storage_call_s`` x its requests long (``round_b``, and with
    staged fields ``launcher_scan_b_per_image`` per waiting field), and at a round's end Snakemake submits jobs up to
    its ``jobs``. The segment jobs go in waves of ``limit`` (those beyond ``slots`` wait as pending pods and start as
    slots free), each ``d x limit / slots`` long (the first ``first_s``, with node start-up), one every ``per_wave``
    rounds (the rounds between send the finished batches' exports); the next wave goes at the end of the round in
    progress when one ends:
    - rounds at least as long as a wave pace the waves (they keep in step); when the nodes then wait longer than the
      autoscaler keeps an empty node (``idle_s``), they go, and new ones (``up`` s from a pending pod to a ready
      node, ``startup`` of it billed) start for the next wave: its jobs wait for them (the rounds hide that when
      they outlast it);
    - a shorter round delays each wave by half a round on average; less where ``limit`` exceeds ``slots`` (one slot
      and Snakemake's 2 ``jobs``, without exports): the jobs beyond the slots wait as pending pods, ``buffer_s`` of
      work that starts as each slot frees, while the next round sends their followers. A wave then waits only for
      the part of the round in progress beyond the buffer: ``(t - buffer_s)^2 / 2t`` on average, none for rounds
      within it.
    ``lead``: waves by which the submitted jobs run ahead of the steady ``limit`` a round (on one pool a wave of
    ``limit x (1 + exports)`` every ``1 + exports`` rounds, taken as ``limit`` a round: half the exports' rounds
    ahead). Rounds that take no time (``storage_call_s`` 0) leave ``first_s + (waves - 1) x`` a wave. The rounds at
    jobs' ends once none waits are not counted, nor the scheduler's own time (0.01 ms a waiting job and round with
    the cluster profiles' greedy scheduler): the requests are an upper bound, as is their rate.

    With staged fields and the exports on a pool of their own (``per_wave`` > 1), a wave holds all of Snakemake's
    jobs until its last job ends, so a round that ends before then sends nothing: a wave takes whole rounds (on
    average half a round more than its start-up and work) and its exports ``per_wave - 1`` rounds more. The run
    starts with no node, so the nodes go between waves from the first on, and again for as long as those export
    rounds and that half round outlast ``idle_s`` (on one pool, where the exports keep the nodes busy, only once a
    whole cycle outlasts it plus a wave's work); each wave's exports then wait ``export_up`` (their nodes' start-up
    and the longest export) from the first of their rounds, beyond half a round.

    Unless the rounds are short: once a wave's rounds take at most ``flow_s`` (:func:`predict` gives it where the
    export pool keeps up: the slots beyond ``slots`` then hold a round's finished segment jobs and their exports),
    each round frees more slots than the finished batches' exports take, and the next wave's jobs go while the wave
    runs: from that wave on, the waves add their work alone, and the nodes do not go. ``flowing``: those waves'
    rounds' seconds."""
    dw = d * max(1.0, limit / slots)
    waves = math.ceil(jobs / limit)
    call, keep = o.storage_call_s, o.idle_s + o.scan_s / 2
    per_field = o.launcher_scan_b_per_image if w.fields_staged else 0.0
    # once wave j (1 .. waves - 1) has gone, jobs - j limit wait: each of its rounds asks a - b j requests
    b = per_field * w.images / jobs * limit
    a = o.round_b + per_field * w.images - b * lead
    if waves <= 1 or call <= 0 or a <= 0:
        return Rounds(first_s + (waves - 1) * dw, 0.0, 0.0)
    cw, restart = call * per_wave, startup + keep   # cw: a wave's rounds' seconds a request
    if b <= 0:   # fields read directly: every round asks round_b
        first = _even_cycles(1, first_s, cw * a, per_wave * a, call, keep, restart, buffer_s)
        rest = _even_cycles(waves - 2, dw, cw * a, per_wave * a, call, keep, restart, buffer_s)
        go = [(n, t) for n, t in ((1, first_s), (waves - 2, dw)) if cw * a >= t + keep]
        return Rounds(dw + first[0] + rest[0], first[1] + rest[1], first[2] + rest[2],
                      sum(n * cw * a for n, _ in go), sum(n for n, _ in go), first_go=cw * a >= first_s + keep)

    # a round asks at least round_b: a - b j falls below it (or below 0) after wave `floor`, as the waves run ahead
    rb = o.round_b
    floor = min(waves - 1, math.floor((a - rb) / b))
    r1 = a - b if floor >= 1 else rb
    own = per_wave > 1   # the exports on a pool of their own (see the docstring)

    def round_s(j: int) -> float:   # a round's seconds once wave j has gone
        return call * (a - b * j if j <= floor else rb)

    # from wave `flow` on, the rounds are at most flow_s: the next wave's jobs go while it runs
    flow = next((j for j in range(1, waves) if round_s(j) <= flow_s), waves)
    first = _even_cycles(1, first_s, cw * r1, per_wave * r1, call, keep, restart, buffer_s)
    if flow == 1:
        first = (first_s, first_s / call, 0.0)
    elif own and call * r1 < first_s:   # the first wave's start-up and work in whole rounds, then its exports'
        # rounds (all of them, at least, where the wave fits in them: paced); the nodes wait out the rest
        t1 = max(first_s + call * r1 * (per_wave - 0.5), cw * r1)
        wait = t1 - first_s   # rounds back to back; a paced wave's nodes go once they wait longer than keep
        first = (t1, t1 / call, first[2] if cw * r1 < first_s else (restart if wait >= keep else wait))

    def last(requests: float, upto: int) -> int:   # the last wave up to `upto` whose rounds ask at least `requests`
        return min(upto, math.floor((a - requests) / b)) if requests > rb else upto

    def beyond(requests: float) -> tuple[int, float]:   # the waves 2 .. go whose rounds ask fewer: number, requests
        lo = max(2, last(requests, go) + 1)
        return max(0, go - lo + 1), _requests(lo, go, a, b, floor, rb)

    # later waves, as their rounds shorten: the nodes go (rounds of at least dw + keep; with an export pool, the
    # export rounds and half a round of at least keep), paced (rounds of at least dw), short
    go_at = keep / (call * (per_wave - 0.5)) if own else (dw + keep) / cw
    go, paced = last(go_at, flow - 1), last(dw / cw, flow - 1)
    r_go = _requests(2, go, a, b, floor, rb)
    r_paced = _requests(max(2, go + 1), paced, a, b, floor, rb)
    lo = max(2, paced + 1)
    n_short = max(0, waves - lo)
    # what the short rounds add: half a round each, or less beyond a buffer of pending jobs; nothing once they flow
    short_wait = cw * _requests(lo, min(waves, flow) - 1, a, b, floor, rb) / 2 if buffer_s <= 0 else sum(
        _round_wait(per_wave * round_s(j), buffer_s) for j in range(lo, min(waves, flow)))
    # where the nodes go, a wave's segment jobs wait for new ones: when that and their work outlast a round, more
    # rounds pass before the batches' exports can go (none with one round a wave: it outlasts them)
    n_late, r_late = beyond((up + dw) / call)
    extra = n_late * (up + dw) - call * r_late * (0.5 if own else 1.0)
    if own and export_up > 0:   # the exports wait for their nodes beyond half a round
        n_exp, r_exp = beyond(2 * export_up / call)
        extra += n_exp * export_up - call * r_exp / 2
    first_go = flow > 1 and (call * r1 * (per_wave - 0.5) >= keep if own else cw * r1 >= first_s + keep)
    # the late waves above are 2 .. go; where the nodes went before the last wave, it waits for new ones too
    last_go = go if go >= 2 else int(first_go)
    if last_go >= 1 and last_go + 1 == waves:
        extra += up
    seconds = dw + first[0] + cw * (r_go + r_paced) + extra + n_short * dw + short_wait
    requests = (first[1] + per_wave * (r_go + r_paced) + extra / call + n_short * dw / call
                + short_wait / call)
    idle = (first[2] + max(0, go - 1) * restart + cw * r_paced - max(0, paced - max(2, go + 1) + 1) * dw
            + short_wait)
    return Rounds(seconds, requests, idle, cw * (r_go + r1 * first_go) + extra, max(0, go - 1) + first_go, waves,
                  tuple(round_s(j) for j in range(flow, waves)), first_go)


def _requests(lo: int, hi: int, a: float, b: float, floor: int, least: float) -> float:
    """The requests of one round after each of the waves ``lo .. hi``: ``a - b j`` up to wave ``floor``, then
    ``least``."""
    if hi < lo:
        return 0.0
    top = min(hi, floor)
    linear = (top - lo + 1) * a - b * (lo + top) * (top - lo + 1) / 2 if top >= lo else 0.0
    return linear + least * max(0, hi - max(lo, floor + 1) + 1)


def _even_cycles(n: int, dur: float, t: float, r: float, call: float, gone: float,
                 restart: float, buffer_s: float = 0.0) -> tuple[float, float, float]:
    """:func:`waiting_rounds`' cycles of ``n`` waves of ``dur`` s whose rounds take ``t`` s and ask ``r``: seconds,
    requests and idle node seconds (``gone``: the idle time after which the nodes go and start again,
    ``restart`` node seconds billed each time; ``buffer_s``: pending jobs' work, see :func:`_round_wait`)."""
    if n <= 0:
        return 0.0, 0.0, 0.0
    if t >= dur + gone:
        return n * t, n * r, n * restart
    if t >= dur:
        return n * t, n * r, n * (t - dur)
    if buffer_s > 0:
        wait = _round_wait(t, buffer_s)
        return n * (dur + wait), n * (dur + wait) / call, n * wait
    return n * (dur + t / 2), n * (dur / call + r / 2), n * t / 2


def _round_wait(t: float, buffer_s: float) -> float:
    """A wave's mean wait for the round in progress (``t`` s long, at a uniformly random point) to end, beyond
    ``buffer_s`` s of pending jobs' work that keeps the slots busy meanwhile: ``E[max(0, U - buffer_s)]``,
    ``U ~ U(0, t)``; ``t / 2`` without a buffer."""
    return (t - buffer_s) ** 2 / (2 * t) if t > buffer_s else 0.0


NO_WAIT = Rounds(0.0, 0.0, 0.0)   # no job waits, or rounds take no time: nothing added


def capacity_factor(machine: Machine, spot: bool, preemption: float, d: float, o: Overheads) -> float:
    """Share of a pool's slot time that does useful work under preemption (see the module docstring)."""
    if not spot or preemption <= 0:
        return 1.0
    return max(0.05, 1.0 - preemption / 3600.0 * (d / 2 + o.replacement_s(machine)))


def restarted_s(d: float, preemption: float, replacement_s: float) -> float:
    """Expected wall seconds of work of ``d`` seconds that starts again whenever its spot node is preempted
    (``preemption`` per node-hour, a Poisson process): ``(e^(r d) - 1) / r`` of work and lost work, and a
    replacement node for each of the ``e^(r d) - 1`` expected preemptions."""
    r = preemption / 3600.0
    if r <= 0:
        return d
    failures = math.expm1(r * d)
    return failures / r + failures * replacement_s


@dataclass(frozen=True)
class JobFigures:
    """What :func:`predict` needs of a configuration that no node count changes: one for every count of one
    segment machine, tail machine and shard size (the planner computes it once for all of them)."""

    jobs: int                    # segment_batch jobs
    k: int                       # segment jobs per node
    d: float                     # seconds a segment job holds its slot
    exports: list                # (seconds, jobs per node) of each export job of a batch
    t_plan: float                # plan_batches and the launcher's requests
    t_launcher: float            # the launcher's requests (part of t_plan)
    tails: dict                  # the tail rules' seconds
    longest: float               # the longest export job's seconds
    per_batch: float             # export node-seconds of one batch
    packed: float = 0.0          # the same on a pool of their own, as its nodes pack them (packed_batch_s)
    shared: float = 0.0          # node-seconds of a batch (segment job and exports) on one pool, as they pack
    export_slots: int = 0        # the most export jobs a node runs (0 without exports)


def job_figures(w: Workload, choice: Choice, profiles: dict[str, ThroughputProfile], prices: PriceTable,
                o: Overheads = Overheads()) -> JobFigures:
    seg_m, tail_m = prices.machine(choice.segment.machine), prices.machine(choice.tail.machine)
    seg_rate = segment_rate(profiles[choice.segment.machine], w, o)
    tail_profile = profiles[choice.tail.machine]
    shard = choice.shard_mpx
    jobs = w.jobs(shard)
    k = slots_per_node(seg_m, seg_rate, batch_mpx(shard))
    if k < 1:
        raise ValueError(f"{choice.segment.machine}: a segment_batch job of a {batch_mpx(shard):g} Mpx batch (the "
                         f"largest of {shard:g} Mpx shards) does not fit on one node")
    exports = export_jobs(w, tail_profile, tail_m, shard, o)
    d = segment_job_s(w, seg_rate, shard, o)
    one_pool = choice.segment == choice.tail and exports
    return JobFigures(jobs, k, d, exports, plan_batches_s(w, tail_profile, o, jobs),
                      launcher_storage_s(w, o, jobs), tail_job_s(w, tail_profile, o),
                      longest=max((e for e, _ in exports), default=0.0), per_batch=sum(e / kr for e, kr in exports),
                      packed=packed_batch_s(exports),
                      shared=packed_batch_s(exports, segment=(d, k)) if one_pool else 0.0,
                      export_slots=export_slots(exports))


def predict(w: Workload, choice: Choice, profiles: dict[str, ThroughputProfile], prices: PriceTable,
            o: Overheads = Overheads(), preemption: float = 0.0, figures: JobFigures | None = None) -> Prediction:
    """Wall time and cost of ``w`` run as ``choice``; ``preemption``: spot preemptions per node-hour (0.05 = 5%).
    ``figures``: :func:`job_figures` of the same machines and shard, when the caller has them."""
    seg_m, tail_m = prices.machine(choice.segment.machine), prices.machine(choice.tail.machine)
    g = figures or job_figures(w, choice, profiles, prices, o)
    jobs, k, d, exports, t_plan, t_launcher = g.jobs, g.k, g.d, g.exports, g.t_plan, g.t_launcher
    n = min(choice.segment.nodes, math.ceil(jobs / k))
    same_pool = choice.segment == choice.tail
    longest, per_batch = g.longest, g.per_batch
    f = capacity_factor(seg_m, choice.segment.spot, preemption, d, o)
    f_exp = capacity_factor(tail_m, choice.tail.spot, preemption, longest, o)   # the export pool's, if any
    waves = math.ceil(jobs / (n * k))
    t_up = o.replacement_s(seg_m)
    # Snakemake's scheduling rounds pace the waves (with staged fields a round reads every waiting field) and add
    # to the segment work what they add to the waves; none waits when Snakemake's jobs take them all at once. Between
    # two waves of segment jobs, rounds send the finished batches' exports (they go first): on one pool, taken as
    # jobs / (1 + exports a batch) segment jobs every round; on two, as Snakemake's jobs every 1 + exports rounds
    limit = snakemake_jobs(w, choice, n, k, g.export_slots)
    rounds, added, filled_wait = NO_WAIT, 0.0, 0.0
    if jobs > limit and o.storage_call_s > 0:
        wave = max(1.0, limit / (1 + len(exports))) if same_pool else limit
        dw = d / f * max(1.0, wave / (n * k))
        # without exports, Snakemake's jobs beyond the slots (2 on one slot) wait as pending pods on the nodes
        buffer = 0.0 if exports else max(0, limit - n * k) * d / f / (n * k)
        flow = 0.0
        if exports and not same_pool and choice.tail.nodes * f_exp / g.packed >= n * k * f / d:
            # an export pool that keeps up: a round's finished batches free a slot each, and their exports theirs
            # once done (within the round), so Snakemake's jobs send the next segment jobs while a wave runs. The
            # slots beyond the segment pool's then hold what finishes in a round: its segment jobs' slots, which go
            # to their exports at the round's end, and those exports, which free theirs by the next
            flow = (limit - n * k) * d / f / (n * k) / (len(exports) + 1)
        rounds = waiting_rounds(w, o, jobs, wave, n * k, t_up + dw, d / f, t_up, o.startup_s(seg_m),
                                len(exports) / 2 if same_pool else 0.0, 1 if same_pool else 1 + len(exports),
                                0.0 if same_pool or not exports else o.replacement_s(tail_m) + longest, buffer,
                                flow)
        wave_work = math.ceil(jobs / wave) * dw
        added = rounds.seconds - t_up - wave_work   # what the rounds add to the waves' work
    if same_pool and exports:      # the exports fill the segment pool's slots as its batches finish: the batches
        # before the last wave pack the nodes with their segment jobs and exports (packed_batch_s); the last wave's
        # exports (k batches a node) follow it side by side: the longest of them, or their node-seconds if longer
        filled = max(waves * d, max(0, jobs - n * k) * g.shared / n + d)
        # the last wave's exports, k batches a node, side by side: the run ends with the longest, or, where they do not
        # all fit on a node (each export's memory counted at the largest batch), as they pack it, some waiting for
        # room; the nodes are billed for their node-seconds (an export that waits goes to any node with room)
        t_plain = (filled + max(longest, k * packed_batch_s(exports, batches=k))) / f
        t_billed = (filled + max(longest, k * per_batch)) / f
        # the rounds add their time, not a share of the exports' work (a finished wave's exports run while the
        # next rounds go): a stretch of the filled slots counted that work again, up to 42% over the simulation
        t_work = t_plain + added
        if rounds.requests and not w.fields_staged:   # short rounds go on while jobs wait: as long as the filled
            filled_wait = max(0.0, filled / f - wave_work)   # slots hold them back, not only the waves
    else:
        t_work = waves * d / f + added
    if choice.segment.spot and preemption > 0:
        # a node preempted under a job of the last wave restarts it on a replacement, and the run waits for that: f
        # spreads each preemption over the pool's other slots, which holds for every wave but the last
        last_nodes = math.ceil((jobs - (waves - 1) * n * k) / k)
        p_any = -math.expm1(-preemption / 3600 * last_nodes * d)
        t_work += max(0.0, p_any * (d / 2 + t_up) - d * (1 / f - 1))
    clog, own_exports = 0.0, bool(exports) and not same_pool
    if own_exports:   # a CPU pool of their own, up once the first batches are done
        ready = t_up + d / f + o.replacement_s(tail_m)
    if own_exports and jobs > limit:
        # the first round sends Snakemake's jobs as segment jobs (no export is ready yet); their exports then go first
        # and hold every slot, so the next segment job waits until the export pool has done all but `limit` of them
        resume = ready + (limit * (len(exports) - 1) + 1) * g.packed / len(exports) / (choice.tail.nodes * f_exp)
        clog = max(0.0, resume - (t_up + d / f * math.ceil(limit / (n * k))))
        t_work += clog
    t_seg = t_up + t_work
    tails = g.tails
    tail_work = tail_work_s(tails)
    if choice.tail.spot and preemption > 0:   # one long job that starts again when its node goes (hours at 10^6
        tail_work = restarted_s(tail_work, preemption, o.replacement_s(tail_m))   # images): its expected time
    n_exp, t_exports, exp_node_s, held = 0, 0.0, 0.0, 0.0
    if own_exports:
        n_exp = choice.tail.nodes
        # the nodes the pool starts: as many as keep up, or as a burst's pods fill, up to the pool's maximum. The
        # bursts: a wave's batches (its segment jobs start, and so end, together) where Snakemake's jobs took every
        # segment job at once; a round's finished batches where rounds send them; every node where waves of exports go
        keep = export_nodes(w, choice, profiles, prices, o, figures=g)
        units = sum(1 / kr for _, kr in exports)   # a batch's export pods, in nodes
        if jobs <= limit:   # the burst: the batches done as the pool's first node is up, worked through by its nodes
            backlog = min(jobs, n * k * (1 + o.replacement_s(tail_m) / d))
            n_used = n_work = min(n_exp, max(keep, math.ceil(units * backlog - 1e-9)))
        else:   # each flowing wave's round of bursts (the last wave's as the rounds before it); held waves: all nodes
            base, life = min(n_exp, keep), o.startup_s(tail_m) + o.idle_s + o.scan_s / 2
            used = [base + (min(n_exp, max(keep, math.ceil(units * r * n * k * f / d - 1e-9))) - base)
                    * min(1.0, life / r) for r in rounds.flowing]
            used += used[-1:] or [n_exp]
            n_used, n_work = (sum(used) + n_exp * (rounds.waves - len(used))) / rounds.waves, n_exp
        drained = ready + jobs * g.packed / (n_work * f_exp)   # the pool through all of them, as work; the jobs
        end = max(t_seg + longest, drained + longest / 2)       # running then end half a job later on average
        t_exports = end - t_seg
        exp_node_s = n_used * (o.startup_s(tail_m) + end - ready + o.idle_s + o.scan_s / 2)
        if rounds.go_waves:   # between rounds so long that the nodes go, each wave's exports start them again
            exp_node_s += rounds.go_waves * (n_exp * (o.startup_s(tail_m) + o.idle_s + o.scan_s / 2)
                                             + wave * g.packed) - n_exp * rounds.go_s
            exp_node_s = max(exp_node_s, jobs * g.packed)
        # exports that do not keep up fill Snakemake's jobs (they go first): the segment jobs then follow them, and
        # the segment nodes stay until the exports are nearly done. Not when Snakemake's jobs took every segment job
        # in the first round: then none waits behind the exports, and each node goes idle_s after its own last job
        held = max(0.0, drained - longest - t_seg) if jobs > limit else 0.0
    t_tail_up = 0.0 if same_pool or not w.run_tables or exports else o.replacement_s(tail_m)
    t_tail = t_tail_up + tail_work if w.run_tables else 0.0
    wall_s = t_plan + t_seg + t_exports + t_tail

    # node-seconds billed: from VM creation to removal (idle_s + scan_s/2 after the node's last job)
    rate_s = preemption / 3600.0 if choice.segment.spot else 0.0
    if same_pool and exports:
        busy = n * t_billed              # the exports keep every node busy to the end
    else:
        last = jobs - (waves - 1) * n * k
        nodes_last = math.ceil(last / k)
        # nodes without a job in the last wave are done (waves - 1) waves in; the others after `waves`
        busy = ((waves - 1) * n + nodes_last) * d / f
    # waiting for the rounds (or started again after them), the exports (their jobs wait meanwhile), and the nodes
    # that the segment jobs beyond the first round's need while the first round's exports hold every slot: none where
    # the nodes go after the first wave (its export rounds outlast idle_s): they are gone through that wait, and the
    # rounds bill their restart (idle_node_s)
    busy += n * (rounds.idle_node_s + held) + (0 if rounds.first_go else min(n, math.ceil((jobs - limit) / k))) * clog
    round_requests = rounds.requests + ((held + filled_wait) / o.storage_call_s if rounds.requests else 0.0)
    end_gap = o.idle_s + o.scan_s / 2
    preemptions = rate_s * n * t_work
    # a preempted node's billing stops; its replacement's starts scan_s/2 + provision_s later
    seg_node_s = n * (o.startup_s(seg_m) + end_gap) + busy - preemptions * (o.scan_s / 2 + o.provision_s)
    if same_pool:
        seg_node_s += tail_work if w.run_tables else 0.0   # one node stays for the tail, its idle timer after
        tail_node_s = 0.0
    elif exports:
        tail_node_s = exp_node_s + (tail_work if w.run_tables else 0.0)
    else:
        tail_node_s = o.startup_s(tail_m) + tail_work + end_gap if w.run_tables else 0.0
    breakdown = {f"compute:{choice.segment.name}": seg_node_s / 3600 * seg_m.hourly(choice.segment.spot)}
    if not same_pool:
        breakdown[f"compute:{choice.tail.name}"] = tail_node_s / 3600 * tail_m.hourly(choice.tail.spot)
    breakdown.update(run_costs(w, prices, o, wall_s, seg_node_s + tail_node_s, jobs, retried_jobs=preemptions * k,
                               round_requests=round_requests))
    return Prediction(hours=wall_s / 3600, cost_usd=sum(breakdown.values()), breakdown=breakdown,
                      phases_h={"launcher": t_launcher / 3600, "plan_batches": (t_plan - t_launcher) / 3600,
                                "segment": t_seg / 3600,
                                "exports": t_exports / 3600, "tail": t_tail / 3600},
                      jobs=limit, segment_jobs=jobs, slots_per_node=k, nodes_used=n,
                      preemptions=preemptions, round_requests=round_requests,
                      note_inputs=(w, choice, prices, o, preemption, d, jobs, sum(breakdown.values()), wall_s,
                                   t_launcher))


def export_slots(exports: list) -> int:
    """The most export jobs a node runs (0 without exports), of :func:`export_jobs`' (seconds, jobs a node)."""
    return max((kr for _, kr in exports), default=0)


def snakemake_jobs(w: Workload, choice: Choice, n: int, k: int, export_slots: int) -> int:
    """Snakemake's ``jobs`` for ``n`` segment nodes of ``k`` segment jobs each and exports of ``export_slots`` a node
    (0 without exports): the slots of the segment pool and of the export pool (its maximum), 2 at least for the
    tail."""
    if choice.segment == choice.tail:
        slots = n * max(k, export_slots)
    else:
        slots = n * k + choice.tail.nodes * export_slots
    return max(slots, 2 if w.run_tables else 1)


def _notes(w: Workload, choice: Choice, prices: PriceTable, o: Overheads, preemption: float, d: float, jobs: int,
           total_usd: float, wall_s: float, staged_s: float) -> list[str]:
    """:attr:`Prediction.notes` of a configuration whose segment jobs hold their slot ``d`` seconds, that takes
    ``wall_s`` in all and whose launcher's requests take ``staged_s`` (its launcher phase)."""
    notes = []
    if w.fields_staged:
        direct_s = launcher_storage_s(replace(w, read_fields="direct"), o, jobs)
        if staged_s - direct_s >= 0.05 * wall_s:
            notes.append(f"batches.read_fields: direct (--read-fields direct) would cut the launcher's Cloud Storage "
                         f"requests (one after another) from {staged_s / 3600:.2f} h to {direct_s / 3600:.2f} h of "
                         f"this run's {wall_s / 3600:.2f} h: each job downloads its own fields")
    if preemption > 0 and choice.segment.spot:
        p_fail = (preemption / 3600 * d) ** (o.retries + 1)
        notes.append(f"a job is lost on preemption with probability {preemption / 3600 * d:.2g} per try; all "
                     f"{o.retries + 1} tries lost: {p_fail:.1g}")
    if w.exports:
        objects = w.images * sum(x.objects_per_image for x in w.exports)
        notes.append(f"{', '.join(x.rule for x in w.exports)} write about {objects:,.0f} Cloud Storage objects "
                     f"(${class_a_usd(prices, objects):,.2f} of class A "
                     f"operations, against {w.label_objects(jobs):,} label files); output.formats lists what to "
                     f"write")
    if w.images_per_folder > LIST_PAGE:
        calls = w.list_calls(jobs)
        notes.append(f"input folders of up to {w.images_per_folder:,} images: each segment job's pod lists its "
                     f"inputs' folder (the GCS storage plugin's inventory), {calls:,} list calls in all "
                     f"(${class_a_usd(prices, calls):,.2f}, and {w.list_calls_per_job * o.list_call_s:,.0f} s a job "
                     f"at an assumed {o.list_call_s:g} s a call): keep at most {LIST_PAGE:,} images a folder")
    if w.label_files == "per_image" and w.images > jobs:
        fewer = w.compartments * (w.images - jobs)
        saved = class_a_usd(prices, fewer * o.class_a_per_object)
        if saved >= 0.01 * total_usd:
            notes.append(f"batches.label_files: per_batch would write {fewer:,} fewer label files "
                         f"(${saved:,.2f} of class A operations): one multi-series OME-TIFF per batch")
    return notes


def class_a_usd(prices: PriceTable, operations: float) -> float:
    """What ``operations`` Cloud Storage class A operations (writes, lists) cost."""
    return operations / 1e4 * prices.storage.get("gcs_class_a_per_10k", 0.0)


def class_b_usd(prices: PriceTable, operations: float) -> float:
    """What ``operations`` Cloud Storage class B operations (gets) cost."""
    return operations / 1e4 * prices.storage.get("gcs_class_b_per_10k", 0.0)


def run_costs(w: Workload, prices: PriceTable, o: Overheads, wall_s: float, node_s: float, segment_jobs: int,
              retried_jobs: float = 0.0, round_requests: float = 0.0) -> dict[str, float]:
    """What a run costs besides its pools' machines (shared by :func:`predict` and the simulation);
    ``round_requests``: the launcher's class B requests in its scheduling rounds while jobs wait."""
    st, net, cl = prices.storage, prices.network, prices.cluster
    hours = wall_s / 3600
    month_h = 730.0
    system = prices.machines.get(o.system_machine)
    exports = w.exports
    stored_gb = w.total_mpx * (w.mb_per_mpx + w.out_mb_per_mpx + sum(x.mb_per_mpx for x in exports)) / 1000
    labels = w.label_objects(segment_jobs)          # per image or per batch (batches.label_files)
    written = labels + 4 * segment_jobs + 6          # fields, errors, table, log per batch; the tail's
    written += w.list_calls(segment_jobs)            # each job's listing of its inputs' folder (class A too)
    written += w.images * sum(x.objects_per_image for x in exports) + 2 * len(exports) * segment_jobs  # + log, bench
    if w.mcquant:   # mcquant's CSVs (an object each), its log and benchmark; their uploads (its folder once)
        stored_gb += w.total_mpx * MCQUANT_MB_PER_MPX / 1000
        written += w.images * w.compartments + 3   # + the folder's .snakemake_timestamp
    retried_share = retried_jobs / max(1, segment_jobs)
    # downloads: plan_batches (only images whose size the sheet lacks), segment_batch (+ retries); the tail
    # a segment job's read of a field: through the storage plugin (13 class B) or its own download (about 1)
    direct = 0 if w.fields_staged else 1
    read = w.images * (int(not w.sizes_in_sheet) + (1 - direct) * (1 + retried_share)) + 2 * segment_jobs
    read += len(exports) * (1 - direct) * w.images   # each export's staged fields (its labels, table: per job)
    uploads = 3 * segment_jobs * (1 + len(exports)) + 6 + 3 * w.mcquant   # stored outputs: a job's folder, log,
    # benchmark; the tail's
    pods = segment_jobs * (1 + retried_share)   # each pod's own checks (measured per job): segment and export pods
    export_pods = pods * len(exports)
    provenance_pods = pods * sum(x.provenance for x in exports)  # export pods that stage the model's provenance
    written += (pods * o.class_a_checks_per_job + export_pods * o.class_a_checks_per_export_job
                + segment_jobs * o.launcher_a_per_job + o.launcher_a_per_model)   # + the run's model_provenance job
    checks_b = (pods * o.class_b_per_job + export_pods * o.class_b_per_export_job
                + provenance_pods * o.class_b_per_provenance_read
                + len(exports) * labels * o.class_b_per_label_read
                + segment_jobs * o.launcher_b_per_job + w.images * launcher_b_per_field(w, o) + o.launcher_b_per_model
                + direct * (w.images * o.class_b_per_direct_read + segment_jobs * o.class_b_per_direct_job)
                * (1 + retried_share + len(exports))    # read directly: the segment jobs' (+ retries), the exports'
                + round_requests)
    return {
        "disks": node_s / 3600 * o.disk_gb * st.get("pd_balanced_gb_month", 0.0) / month_h,
        "system_pool": hours * (system.on_demand if system else 0.0),
        "cluster_fee": hours * cl.get("management_fee_usd_h", 0.0),
        "storage": stored_gb * st.get("gcs_standard_gb_month", 0.0) * hours / month_h,
        "operations": (written * o.class_a_per_object * st.get("gcs_class_a_per_10k", 0.0)
                       + (read * o.class_b_per_download + uploads * o.class_b_per_upload + checks_b)
                       * st.get("gcs_class_b_per_10k", 0.0)) / 1e4,
        "network": o.egress_gb * net.get("egress_internet_gb", 0.0),
    }
