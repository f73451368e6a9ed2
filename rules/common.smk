# Sample sheet, validated config and the input functions every rule uses.

import functools
import json
import os
import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate


# Rejects an unknown key (naming it) and fills in every default: the schema is their one source, so the rules
# read config["section"]["key"] and pass whole sections to the scripts' typed settings.
try:
    validate(config, schema="../workflow/schemas/config.schema.yaml")
except WorkflowError as _err:  # one line naming the file, the key and what is wrong, not jsonschema's schema dump
    from cellscale.settings import config_error

    _why = _err.__context__  # the ValidationError it was raised from
    if not hasattr(_why, "validator"):
        raise
    _given = [*map(str, workflow.configfiles), *(["--config"] if workflow.config_settings.config else [])]
    raise WorkflowError(f"{' + '.join(_given) or 'config'}: {config_error(_why)}") from None

from cellscale.track.config import TrackConfig  # noqa: E402

try:  # what the schema cannot say (one key against another: min_cycle_frames 3 with solver lap) before any job
    TrackConfig.from_dict(config["track"])
except ValueError as _err:
    raise WorkflowError(f"config track: {_err}") from None

# A model may be named by the registry, NAME@VERSION (`cellscale models list`): from here on it is its folder (an
# unknown one is an error naming the versions there are).
from cellscale.registry import is_model_ref, resolve_model  # noqa: E402
from cellscale.settings import AUTO, parse_scale  # noqa: E402
from cellscale.samples import BATCH_NAME_LETTERS, annotation_columns  # noqa: E402
from cellscale.deploy.sizing import track_memory_mb  # noqa: E402
from cellscale.io import CHANNEL_FILES_SEPARATOR, image_files  # noqa: E402
from cellscale.segment.model import ModelSpec  # noqa: E402
from cellscale.segment.size import default_scale  # noqa: E402
from cellscale.segment.tiles import tiling_problem  # noqa: E402
from cellscale.logs import rule_name  # noqa: E402


# Whether jobs read and write this machine's files (local and SLURM runs): no default remote storage (the GKE
# profile's bucket), where they are staged through the storage plugin instead
LOCAL_FILES = workflow.storage_settings.default_storage_provider is None


def fetched(path):
    """``path`` as a file on this machine: itself, or where there is no shared filesystem its copy fetched from the
    default storage (None when it is in neither)."""
    if LOCAL_FILES:
        return path if os.path.exists(path) else None
    stored = workflow.modifier.path_modifier.apply_default_storage(path).flags["storage_object"]
    if not stored.exists():
        return None
    stored.local_path().parent.mkdir(parents=True, exist_ok=True)
    stored.retrieve_object()
    return str(stored.local_path())


# The workflow's checkout: this file's folder's parent. Not workflow.basedir, the main Snakefile's folder: a
# project's own workflow/ when its Snakefile uses this workflow as a module (README, Running)
CHECKOUT = os.path.dirname(workflow.current_basedir.get_path_or_uri(secret_free=True))


def checkout_path(path):
    """A relative path in the workflow's checkout (for a run with --directory elsewhere, or as a module)."""
    return os.path.normpath(os.path.join(CHECKOUT, path))


def here_or_checkout(path):
    """A config path as given when it exists here (the working directory), else the checkout's when it is there,
    else as given."""
    if os.path.exists(path) or not os.path.exists(checkout_path(path)):
        return path
    return checkout_path(path)


def model_folder(value):
    """A config model folder: :func:`here_or_checkout` (models/nuclear with --directory elsewhere), unless it is a
    registry name, a mapping, or the models are in remote storage."""
    if not isinstance(value, str) or is_model_ref(value) or not LOCAL_FILES:
        return value
    return here_or_checkout(value)


_MODEL_VALUES = {key: model_folder(value) for key, value in config["models"].items()}  # before NAME@VERSION resolves


def model_provenance_file(key):
    """What produced the results of config model ``key`` (NAME@VERSION, dataset version): rule model_provenance's
    output, made once a run from the model's files; the jobs that record it take this small file as an input, so
    none of them hashes the weights (or, without a shared filesystem, fetches them)."""
    return f"results/models/{key}.json"


def model_provenance_files(names):
    """The model provenance files of the models these samples need (each once)."""
    return [model_provenance_file(key) for key in dict.fromkeys(model_key(s) for s in names)]


def provenance_model_files(wildcards):
    """Rule model_provenance's inputs: the model's spec and weights (those the jobs that load it take) and its
    metrics.json (its dataset version) where it has one; a declared model's file."""
    model = config["models"][wildcards.key]
    files = {k: v for k, v in files_of_model(model).items() if k != "int8"}
    if "spec" in files and output_exists(f"{model}/metrics.json"):  # in the default storage, where there is one
        files["metrics"] = f"{model}/metrics.json"
    return files


def segment_provenance(sample):
    """What made a sample's labels, for its tables' .h5ad files (uns['cellscale']): its model (the config key: the
    job reads its NAME@VERSION and dataset version from :func:`model_provenance_file`, an input) and compartments,
    its scale and config segment's augment and precision. A job's params: each changes only with what reruns the
    sample's segmentation anyway (its model, the tile job's scale, the segment jobs' settings), so it reruns no
    measurement by itself; the cellscale version and the pixel size are the job's own (the library's, the labels')."""
    return {"model": model_key(sample), "compartments": compartments(sample), "scale": scale(sample),
            "augment": config["segment"]["augment"], "precision": config["segment"]["precision"]}


def run_provenance(names=None):
    """Per sample of ``names`` (default: the sheet's), what made its cells (:func:`segment_provenance`) with its
    image, pixel size and frame interval as the sheet gives them: cells.h5ad's uns['cellscale']['samples'] (rule
    aggregate_measurements), a batch's SpatialData table's of the batch's samples (rule spatialdata_batch)."""
    return {s: {"image": sheet["image"][s], "pixel_size_um": pixel_size(s), "frame_interval_s": frame_interval(s),
                **segment_provenance(s)} for s in (samples.index if names is None else names)}


# an unknown registry name stops the workflow with a message naming the config key and the versions there are (at
# the top level, not in a function: Snakemake then shows one line of where, not a traceback into the library)
_resolved_models = {}
for _key, _value in _MODEL_VALUES.items():
    try:
        _resolved_models[_key] = resolve_model(_value)
    except FileNotFoundError as _err:
        raise WorkflowError(f"config models.{_key}: {_err}; `cellscale models list` lists them") from None
    # a folder that is not there (a typo) or holds no model stops it too, naming the key, not the first job
    # loading it (a missing input: its files)
    if (isinstance(_resolved_models[_key], str) and LOCAL_FILES
            and not os.path.isfile(os.path.join(_resolved_models[_key], "model.json"))):
        _what = "not a model folder (no model.json in it)" if os.path.isdir(_resolved_models[_key]) else \
            "no such model folder, here or in the checkout"
        raise WorkflowError(f"config models.{_key}: {_value}: {_what}; a registry model is named NAME@VERSION or "
                            "NAME@latest (`cellscale models list`)")
config["models"] = _resolved_models
# tiling.tile against tiling.overlap (and each model's window multiple): windows no wider than two overlaps fail every
# sample of several windows a side, at its tile job; stopped here, naming both keys and the least tile that works
for _key, _model in config["models"].items():
    if isinstance(_model, str) and not LOCAL_FILES:
        continue  # model.json is in the remote storage: the tile jobs check it
    _multiple = ModelSpec.read(_model).tile_multiple
    if _problem := tiling_problem(config["tiling"]["tile"], config["tiling"]["overlap"], _multiple):
        raise WorkflowError(f"config {_problem} (the windows of models.{_key})")
# so does a tracking scorer folder typed wrong (track.scorer), which only a job whose costs are learned would read (auto
# may choose them or not): the path as the track jobs read it, from the working directory
if config["track"]["scorer"] is not None and LOCAL_FILES:
    # imported here: the scorer's module loads scipy (a quarter of a second of every Snakemake start, each cluster job's)
    from cellscale.track.scorer import scorer_folder_problem

    if _problem := scorer_folder_problem(config["track"]["scorer"]):
        raise WorkflowError(f"config track.scorer: {config['track']['scorer']}: {_problem} (a relative path is from "
                            f"{os.getcwd()}; null: the shipped models/track-scorer)")

if not os.path.isfile(config["samples"]):  # a path typed wrong: one line naming it, not pandas' traceback
    raise WorkflowError(f"config samples: {config['samples']}: no such sample sheet (a tab-separated file; a relative "
                        f"path is from {os.getcwd()})")
samples = pd.read_csv(
    config["samples"],
    sep="\t",
    comment="#",
    dtype={"sample": str, "image": str, "kind": str, "channel_names": str},
    keep_default_na=False,  # a sample named NA or nan is a name; only an empty cell is missing
    na_values=[""],
)
# Only sample, image and kind are required: every optional column of the schema that the sheet leaves out is
# added empty (NA), so the input functions below can read any column of any sheet.
with open(workflow.source_path("../workflow/schemas/samples.schema.yaml")) as _fh:
    _sheet_schema = yaml.safe_load(_fh)
_missing = [c for c in _sheet_schema["required"] if c not in samples.columns]
if _missing:
    raise ValueError(f"{config['samples']}: no column {', '.join(map(repr, _missing))} (a sheet needs "
                     f"{', '.join(_sheet_schema['required'])}; it has {', '.join(map(str, samples.columns))})")
samples = samples.set_index("sample", drop=False)
# the sheet's own columns (well, site, a user's annotations), after sample in the run's tables (sheet_annotations)
ANNOTATIONS = annotation_columns(samples.columns)
for _column in _sheet_schema["properties"]:
    if _column not in samples:
        samples[_column] = pd.NA
for _column in ("nuclear_channel", "membrane_channel", "height", "width"):
    _numbers = pd.to_numeric(samples[_column], errors="coerce")
    _bad = samples.index[(_numbers.isna() & samples[_column].notna()) | ((_numbers % 1).fillna(0) != 0)]
    if len(_bad):
        raise ValueError(f"{config['samples']}: sample {_bad[0]!r}: {_column} {samples[_column][_bad[0]]!r} is not a "
                         f"whole number ({len(_bad)} row(s) like it)")
    samples[_column] = _numbers.astype("Int64")
if samples.index.duplicated().any():
    raise ValueError(f"{config['samples']}: duplicate sample names: "
                     f"{sorted(set(samples.index[samples.index.duplicated()]))}")
_name = re.compile(_sheet_schema["properties"]["sample"]["pattern"])
_bad = [s for s in samples.index if not isinstance(s, str) or not _name.match(s)]
if _bad:
    raise ValueError(f"{config['samples']}: invalid sample name(s) {_bad[:5]}: use letters, digits, _ . - "
                     f"(pattern {_name.pattern})")
if samples["image"].isna().any():
    raise ValueError(f"{config['samples']}: no image for sample(s) {list(samples.index[samples['image'].isna()][:5])}")
# scale: a number, empty, or auto (the column is text as soon as one row says auto): numbers as numbers for the
# schema, and a bad value is an error naming its sample
def _sheet_scale(sample, value):
    try:
        scale = parse_scale(value)
    except ValueError as err:
        raise ValueError(f"{config['samples']}: sample {sample!r}: {err}") from None
    return pd.NA if scale is None else scale


samples["scale"] = pd.Series([_sheet_scale(s, v) for s, v in samples["scale"].items()], index=samples.index,
                             dtype=object)
# The other columns are checked against the schema once per distinct combination, not once per row: a sheet of
# 10^5 fields of view usually has a handful (names and paths are checked above).
_distinct = samples.assign(sample="s", image="i").drop_duplicates()  # indexed by the first sample of each
try:
    validate(_distinct, schema="../workflow/schemas/samples.schema.yaml")
except WorkflowError as _err:  # name the sample, the column and what is wrong (not the row of _distinct)
    _row, _why = re.search(r"row (\d+)", str(_err)), _err.__context__  # the ValidationError it was raised from
    if _row is None or not hasattr(_why, "message"):
        raise
    _column = ".".join(map(str, _why.path)) or "a required column"
    raise ValueError(f"{config['samples']}: sample {_distinct.index[int(_row.group(1))]!r}: {_column}: "
                     f"{_why.message}") from None
# a time-lapse's column on a still image's row would be ignored without a word: refused, naming the sample
_misplaced = samples.index[(samples["kind"] != "timelapse") & samples["frame_interval_s"].notna()]
if len(_misplaced):
    raise ValueError(f"{config['samples']}: sample {_misplaced[0]!r}: frame_interval_s "
                     f"{float(samples['frame_interval_s'][_misplaced[0]]):g} is a time-lapse's seconds between frames, "
                     f"and the sample is kind {samples['kind'][_misplaced[0]]} (a still image): leave it empty, or "
                     f"give kind timelapse ({len(_misplaced)} row(s) like it)")
# one file per channel (a.tif|b.tif) is read for still images only
_split = samples.index[(samples["kind"] == "timelapse") & samples["image"].str.contains(CHANNEL_FILES_SEPARATOR,
                                                                                         regex=False)]
if len(_split):
    raise ValueError(f"{config['samples']}: sample {_split[0]!r}: image {samples['image'][_split[0]]!r} lists one "
                     f"file per channel, which is read for still images (kind tissue) only: a time-lapse is one file "
                     f"(a T-stack) or a folder of frame files ({len(_split)} row(s) like it)")

wildcard_constraints:
    sample=_name.pattern.strip("^$"),
    compartment="nuclear|whole_cell",
    shard=r"\d{4}",
    batch=r"[a-z]{%d}" % BATCH_NAME_LETTERS,
    key="|".join(map(re.escape, config["models"])),  # a config model (rule model_provenance)


class SheetColumn(dict):
    """A sheet column, {sample: value}: a sample the sheet does not list (a target such as
    results/measurements/NAME.csv with the name typed wrong) is an error naming it and the sheet, not a KeyError."""

    def __missing__(self, sample):
        raise KeyError(f"sample {sample!r} is not in the sample sheet {config['samples']} (its samples: "
                       f"{', '.join(list(self)[:5])}{', ...' if len(self) > 5 else ''})")


# Each column as a dict: the input functions run once per job, and a sheet may have 10^5 rows (a dict lookup is
# about 100 times faster than samples.loc).
sheet = {column: SheetColumn(samples[column].to_dict()) for column in samples.columns}


def cell(sample, column):
    """The sheet's value (None when empty)."""
    value = sheet[column][sample]
    return None if pd.isna(value) else value


def _int_or_none(value):
    return None if value is None else int(value)


def roles(sample):
    return {"nuclear": _int_or_none(cell(sample, "nuclear_channel")),
            "membrane": _int_or_none(cell(sample, "membrane_channel"))}


def has_membrane(sample):
    return roles(sample)["membrane"] is not None


def is_timelapse(sample):
    return sheet["kind"][sample] == "timelapse"


def model_key(sample):
    """Which of the config's models a sample needs: tissue (with a membrane channel) or nuclear."""
    return "tissue" if has_membrane(sample) else "nuclear"


def model_dir(sample):
    """The sample's model: a folder with model.json, or a mapping declared in the config."""
    return config["models"][model_key(sample)]


def model_files(wildcards):
    return files_of_model(config["models"][model_key(wildcards.sample)])


def files_of_model(model):
    """The files of a model the jobs that load it take as input (so they are staged where there is no shared disk)."""
    if isinstance(model, dict):  # a user's own Keras/SavedModel declared in the config
        return {"weights": model["path"]}
    files = {"spec": f"{model}/model.json", "weights": f"{model}/model.keras"}
    if config["segment"]["precision"] in ("auto", "int8"):  # the 8-bit copy travels too
        local = Path(model, "model.json")
        if local.exists():
            int8 = json.loads(local.read_text()).get("int8")
            if int8:
                files["int8"] = f"{model}/{int8['artifact']}"
        else:  # the model is only in remote storage: its 8-bit copy has the name `cellscale quantize` gives it
            files["int8"] = f"{model}/model.int8.tflite"
    return files


def compartments(sample):
    return ["nuclear", "whole_cell"] if has_membrane(sample) else ["nuclear"]


def image_input(wildcards):
    """The sample's image: its file, or its files (one per channel, every one an input: staged where there is no
    shared filesystem); a missing file fails the sample's tile job, not the whole run."""
    path = sheet["image"][wildcards.sample]
    files = image_files(path)
    # with a default storage provider (no shared filesystem) the image is in storage, not on this disk
    missing = [] if not LOCAL_FILES else \
        [f for f in files if not os.path.exists(f)]
    if missing:
        logger.warning(f"sample {wildcards.sample!r}: image file {missing[0]} not found; its jobs will fail")
        return []
    return path if len(files) == 1 else files


def channel_names(sample):
    value = cell(sample, "channel_names")
    return None if value is None else [n.strip() for n in value.split(",")]


def pixel_size(sample):
    value = cell(sample, "pixel_size_um")
    return None if value is None else float(value)


def frame_interval(sample):
    value = cell(sample, "frame_interval_s")
    return None if value is None else float(value)


def gamma(sample):
    value = cell(sample, "gamma")
    return 1.0 if value is None else float(value)


def scale(sample):
    """The sample's scale, a number, auto (measured by rule object_size) or None (from the pixel sizes, else 1), as
    the sheet gives it, else a time-lapse's segment.timelapse_scale (cellscale.segment.size.default_scale)."""
    given = cell(sample, "scale")
    if given is not None or not is_timelapse(sample):
        return given
    return _timelapse_scale(model_key(sample))


@functools.cache
def _timelapse_scale(key):
    """A time-lapse's scale where its sheet gives none, with config model ``key``: its model.json read once (from
    the default storage where there is no shared filesystem); a model without one gets no default."""
    model = config["models"][key]
    spec = None
    if isinstance(model, dict):
        spec = ModelSpec.read(model)
    elif (path := fetched(f"{model}/model.json")) is not None:
        spec = ModelSpec.read(os.path.dirname(path))
    return default_scale(None, True, spec, config["segment"]["timelapse_scale"])


def tiled(sample):
    """Wait for the sample's tile checkpoint, in an input function: the function is evaluated again (and its job
    made anew) once the sample is tiled."""
    if not output_exists(f"results/tiles/{sample}/plan.json"):  # written last (atomically): tiled once it exists
        checkpoints.tile.get(sample=sample)  # not yet: this job waits for the checkpoint
    # (Tiled already, as when a killed run is resumed: not asking the checkpoint, whose job Snakemake 9.27 does not
    # revisit when it comes after another checkpoint, plan_batches; asking would leave this job's input unresolved.)


def shard_predictions(wildcards):
    """All shard predictions of a sample, known once its tile checkpoint ran."""
    tiled(wildcards.sample)
    tiles = f"results/tiles/{wildcards.sample}"
    pattern = os.path.join(tiles, "{name}")
    if not LOCAL_FILES:
        # no shared filesystem: the checkpoint's output is in storage, so list it there (a folder as the
        # constant prefix: snakemake-storage-plugin-fs 1.1.3 fails on a file-name prefix like "shard_")
        pattern = workflow.modifier.path_modifier.apply_default_storage(f"{tiles}/{{name}}")
    names = glob_wildcards(pattern).name
    ids = [m.group(1) for m in map(re.compile(r"shard_(\d{4})\.zarr\.zip$").match, names) if m]
    return expand("results/predictions/{sample}/shard_{shard}.zarr.zip", sample=wildcards.sample, shard=sorted(ids))


def output_exists(path):
    """Whether a workflow output exists (in the default storage, where there is one)."""
    if LOCAL_FILES:
        return os.path.exists(path)
    return workflow.modifier.path_modifier.apply_default_storage(path).flags["storage_object"].exists()


# --- batches (rules/batch.smk): which samples share jobs is known once the plan_batches checkpoint ran ----------

_plans = {}


def batch_plan():
    """The plan_batches checkpoint's table (sample, batch: None for a sample with its own jobs, mpx) and its
    samples per batch, read once per plan file."""
    path = checkpoints.plan_batches.get().output.plan
    if not os.path.exists(path):  # no shared filesystem: the checkpoint's output is in storage; fetch it here
        # (synchronously: input functions may run inside Snakemake's event loop, where async_run cannot)
        path.storage_object.local_path().parent.mkdir(parents=True, exist_ok=True)
        path.storage_object.retrieve_object()
        path = path.storage_object.local_path()
    key = (str(path), os.path.getmtime(path))
    if key not in _plans:
        plan = pd.read_csv(path, sep="\t", dtype={"sample": str, "batch": str}, keep_default_na=False,
                           na_values=[""])
        plan = plan.assign(batch=plan["batch"].map(lambda b: None if pd.isna(b) else b))
        _plans.clear()  # batches in sheet order (their names are hashes: cellscale.samples.batch_name)
        _plans[key] = plan, plan.dropna(subset="batch").groupby("batch", sort=False)["sample"].agg(list).to_dict()
    return _plans[key]


def batch_members(batch):
    return batch_plan()[1][batch]


def batches():
    return list(batch_plan()[1])


def batch_threads(wildcards):
    """segment_batch's threads: the run's batches share this machine's cores, at most 2 a job (segment's). On 2
    cores a run of two or more batches runs two jobs side by side, one thread each: one job's single-threaded parts
    (its start, reading, stitching, measuring, writing) then overlap the other's network, where two threads of one
    job leave a core idle (1,000 fields of 256^2: 48 -> 38 s, docs/benchmarks.md). A lone batch gets 2. The cluster
    profiles give their own (set-threads)."""
    return max(1, min(2, (workflow.cores or 2) // max(1, len(batches()))))


def own_samples():
    """Samples with their own tile, segment, stitch, measure and report jobs (large images, time-lapse movies)."""
    plan = batch_plan()[0]
    return list(plan["sample"][plan["batch"].isna()])


def existing_images(names, first_files=False):
    """The image files of these samples that exist here (every channel's file of an image of one file per channel;
    the first only with ``first_files``); a missing one is recorded by its batch job, not fatal."""
    paths = [f for s in names for f in image_files(sheet["image"][s])[:1 if first_files else None]]
    if not LOCAL_FILES:
        return list(paths)
    return [p for p in paths if os.path.exists(p)]


def fields_read_by_job():
    """batches.read_fields: direct with remote storage: segment_batch downloads its images itself (cellscale.io.bucket)
    instead of Snakemake staging them as inputs, so the launcher asks Cloud Storage about none of them."""
    return config["batches"]["read_fields"] == "direct" and not LOCAL_FILES


def storage_prefix():
    """Snakemake's default storage prefix (gs://bucket/folder) when batch jobs read their images themselves."""
    return workflow.storage_settings.default_storage_prefix if fields_read_by_job() else None


@functools.cache  # the plan's input and its params: one look at 10^5 files, not two
def batch_candidates_images():
    """The images plan_batches reads: every still image's whose size the sheet does not give (those that exist
    here; with height and width in the sheet, none); of an image of one file per channel the first file (its size
    is the image's)."""
    if not config["batches"]["enabled"]:
        return []
    unsized = samples["height"].isna() | samples["width"].isna()
    return existing_images(samples.index[(samples["kind"] != "timelapse") & unsized], first_files=True)


def batch_model_files(wildcards):
    return files_of_model(config["models"][model_key(batch_members(wildcards.batch)[0])])


def batch_fields(wildcards):
    """The sample sheet's rows of a batch, as the step takes them."""
    return [{"sample": s, "image": sheet["image"][s], "roles": roles(s), "pixel_size_um": pixel_size(s),
             "gamma": gamma(s), "scale": scale(s), "channel_names": channel_names(s),
             "height": _int_or_none(cell(s, "height")), "width": _int_or_none(cell(s, "width"))}
            for s in batch_members(wildcards.batch)]


@functools.cache
def sheet_annotations():
    """{sample: {column: value}} of the sheet's ANNOTATIONS columns (JSON values: None where empty), for the rules
    that write the run's tables; empty when the sheet has none."""
    if not ANNOTATIONS:
        return {}
    return json.loads(samples[ANNOTATIONS].to_json(orient="index"))


def qc_candidates():
    """Batched samples drawn in the report: twice the number asked for, evenly over the sheet (failed ones are
    passed over)."""
    members = [s for b in batches() for s in batch_members(b)]
    k = min(len(members), 2 * config["batches"]["qc_overlays"])
    return [members[i] for i in sorted({round(j * (len(members) - 1) / max(k - 1, 1)) for j in range(k)})]


def segmentation_files(sample):
    return {c: f"results/segmentation/{sample}/{c}.ome.tif" for c in compartments(sample)}


def output_formats():
    return config["output"]["formats"]


def labels_output(path):
    return path if "ome-tiff" in output_formats() else temp(path)


def sample_targets(s):
    out = list(segmentation_files(s).values()) if "ome-tiff" in output_formats() else []
    if "ome-zarr" in output_formats():
        out.append(f"results/ngff/{s}.ome.zarr")
    if "spatialdata" in output_formats():
        out.append(f"results/spatialdata/{s}.zarr")
    out += [f"results/measurements/{s}.csv", f"results/measurements/{s}.parquet", f"results/measurements/{s}.h5ad",
            f"results/report/{s}/overlay.png", f"results/report/{s}/summary.json"]
    if is_timelapse(s):
        out += [f"results/tracks/{s}", f"results/tracks/{s}.parquet", f"results/report/{s}/lineage.png",
                f"results/report/{s}/tracking.png"]
    return out


def all_targets(wildcards):
    out = [t for s in own_samples() for t in sample_targets(s)]
    out += [f"results/batches/{b}" for b in batches()]
    if "ome-zarr" in output_formats():
        out += [f"results/ngff/batch_{b}" for b in batches()]
    if "spatialdata" in output_formats():
        out += [f"results/spatialdata/batches/{b}.zarr" for b in batches()]
    if "mcquant" in output_formats():
        out.append("results/mcquant")
    if batches():
        out += ["results/report/fields/overlays.png", "results/report/fields/distributions.png"]
    out += ["results/summary.tsv", "results/index.tsv", "results/errors.tsv",
            "results/cells.csv", "results/cells.parquet", "results/cells.h5ad",
            "results/cost.tsv"]  # rules/cost.smk: its inputs are every other job's benchmark file, so it runs last
    # and the cost job's own benchmark, which no job reads: a cost job killed after its tables were in place, before
    # Snakemake wrote its benchmark, reruns (rerun-incomplete does not see the jobs after the checkpoints). Not every
    # job's: a target that needs every checkpoint's outputs stops a --keep-going run at its first failed sample
    out += ["results/benchmarks/cost/run.tsv"]
    return out


# --- cost (rules/cost.smk): every job of the run, the price table and the placement profile -----------------

def cost_file(path):
    """A config path as given when it exists here (the working directory), else in the workflow's checkout."""
    found = here_or_checkout(path)
    if os.path.exists(found):
        return found
    raise WorkflowError(f"config cost: {path} not found (neither in {os.getcwd()} nor in {checkout_path(path)})")


def price_table():
    """config cost.prices: a table name (config/prices/<name>.yaml) or a path."""
    name = config["cost"]["prices"]
    is_path = name.endswith((".yaml", ".yml")) or os.path.dirname(name)
    return cost_file(name if is_path else f"config/prices/{name}.yaml")


def placement_profile():
    path = cost_file(config["cost"]["placement_profile"])
    return os.path.join(path, "config.yaml") if os.path.isdir(path) else path


def run_jobs():
    """Every job of the run by its benchmark file (relative to results/benchmarks/), known once the checkpoints
    ran: the jobs all_targets needs and the ones before them."""
    jobs = ["plan_batches/run.tsv", "summary/run.tsv", "aggregate_measurements/cells.tsv"]
    jobs += [f"segment_batch/{b}.tsv" for b in batches()]
    if "ome-zarr" in output_formats():
        jobs += [f"ngff_batch/{b}.tsv" for b in batches()]
    if "spatialdata" in output_formats():
        jobs += [f"spatialdata_batch/{b}.tsv" for b in batches()]
    if batches():
        jobs.append("report_fields/run.tsv")
    if "mcquant" in output_formats():
        jobs.append("mcquant/run.tsv")
    for s in own_samples():
        jobs += [f"tile/{s}.tsv", f"measure/{s}.tsv", f"report_sample/{s}.tsv"]
        if scale(s) == AUTO:   # its objects measured before its tile job
            jobs.append(f"object_size/{s}.tsv")
        jobs += [f"stitch/{s}/{c}.tsv" for c in compartments(s)]
        shards = [Path(p).name.split(".")[0] for p in shard_predictions(SimpleNamespace(sample=s))]  # shard_NNNN
        jobs += [f"segment/{s}/{shard}.tsv" for shard in shards]
        if is_timelapse(s):
            jobs += [f"track/{s}.tsv", f"lineage/{s}.tsv"]
        if "ome-zarr" in output_formats():
            jobs.append(f"ngff/{s}.tsv")
        if "spatialdata" in output_formats():
            jobs.append(f"spatialdata/{s}.tsv")
    return sorted(jobs)


def own_plans():
    """The tile plan (plan.json) of each sample with its own jobs that has one. Read here (from storage where there
    is no shared filesystem), not staged: the plan's folder holds every shard's windows."""
    plans = {}
    for s in own_samples():
        path = fetched(f"results/tiles/{s}/plan.json")
        if path is not None:
            plans[s] = json.loads(Path(path).read_text())
    return plans


def tile_plans():
    """Per sample with its own jobs, what its tile plan says of its size: shape (at the model's scale), number of
    windows, windows per shard."""
    return {s: {"shape": plan["shape"], "tiles": len(plan["tiles"]), "shards": [len(x) for x in plan["shards"]]}
            for s, plan in own_plans().items()}


def tiled_summaries(wildcards):
    """Each own-jobs sample's summary.json (the summary job's input), asked for once every such sample is tiled: the
    summary job's params read their tile plans (:func:`tile_warnings`), and where an executor runs jobs elsewhere
    (SLURM, Kubernetes) Snakemake 9.27 records the params a job had when the DAG made it (its reset before running
    leaves the non-derived params the metadata holds). Made before the plans were written, the job recorded no
    warnings, and the next run reran it for 'params have changed'."""
    for s in own_samples():
        tiled(s)
    return [f"results/report/{s}/summary.json" for s in own_samples()]


def tile_warnings():
    """Per sample with its own jobs, the warnings its tiling logged (a channel of one value...), for summary.tsv."""
    return {s: plan.get("warnings", []) for s, plan in own_plans().items()}


def rule_threads():
    """Each rule's threads (left out where they are a function of the job, as segment_batch's: then the placement
    profile's set-threads, else 1), by its name in rules/*.smk: its log's (a module's `use rule * from cellscale as
    cellscale_*` renames the rules, not their benchmark folders or the profiles' rule names)."""
    threads = {}
    for r in workflow.rules:
        try:
            n = getattr(r.resources.get("_cores"), "value", None)
        except ValueError:  # a callable's value needs a job
            continue
        if isinstance(n, (int, float)):
            threads[rule_name(r.log, r.name)] = int(n)
    return threads


def price_label(path):
    with open(path) as fh:
        table = yaml.safe_load(fh)
    return {k: str(table.get(k, "")) for k in ("name", "date", "source", "currency")}


def missing_outputs():
    """The run's targets that do not exist (in the default storage, where there is one)."""
    return [target for target in all_targets(None) if not output_exists(target)]


def check_run_end():
    """After a run that Snakemake counts as a success: every target exists, and no image failed (unless config
    batches.keep_going). A Snakefile that uses this workflow as a module calls it in its own onsuccess (Snakemake
    runs only the main Snakefile's). Snakemake 9.27 can end a run with exit status 0 and outputs missing when a job
    that follows a checkpoint was to be retried and another checkpoint updated the DAG meanwhile (seen with
    preempted pods): that run ends non-zero here, and the same command again finishes it."""
    dag = workflow.dag
    # rule all by the name it runs as (cellscale_all where a module's `use rule * ... as cellscale_*` renamed it)
    targets = {j.rule.name for j in dag.targetjobs}
    whole_run = targets == {rules.all.rule.name} and not dag.untilrules and not dag.omitrules
    missing = missing_outputs() if whole_run else []  # not when asked for some files or rules only
    if missing:
        raise WorkflowError(f"the run ended with {len(missing)} of its outputs missing (e.g. {missing[0]}): a "
                            f"job to be retried was dropped by Snakemake. Run the same command again to finish it")
    failed_images_end_run(config["batches"]["keep_going"])


def failed_images_end_run(keep_going):
    """After a run: the number of images listed in results/errors.tsv, and a non-zero exit unless keep_going."""
    path = Path("results/errors.tsv")
    if not path.exists():
        return
    errors = pd.read_csv(path, sep="\t")
    if errors.empty:
        return
    for error in errors["error"][:20]:
        logger.error(error)
    more = f" (and {len(errors) - 20} more)" if len(errors) > 20 else ""
    message = (f"{len(errors)} of {len(samples)} images failed{more}; every other one finished. The reasons are in "
               f"{path} and the report")
    if keep_going:
        logger.warning(message + " (batches.keep_going: the run counts as a success)")
        return
    raise WorkflowError(message + " (set batches.keep_going: true to end with exit status 0)")
