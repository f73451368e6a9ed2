"""File-in, file-out steps: what each workflow rule's script (and the command line) calls.

One module per workflow stage (:mod:`.tile`, :mod:`.segment`, :mod:`.stitch`, :mod:`.measure`, :mod:`.track`,
:mod:`.report`). Each function reads its inputs, calls the array functions of the library and writes its
outputs atomically. Errors are :class:`StepError` naming the sample and the file, so a user sees at once
which input to fix.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NoReturn

import numpy as np
import pandas as pd

from cellscale.io import ImageError, ImageSource, LabelSeries, image_files, join_image_files, read_labels, too_small


class StepError(RuntimeError):
    """A step failed because of its input; the message names sample and file."""


def _fail(sample: str, path, message: str) -> NoReturn:
    raise StepError(f"sample {sample!r}: {path}: {message}")


def _image_failed(sample: str, err: ImageError) -> NoReturn:
    """An :class:`ImageError` as a step's error: its message already names the file, so add only the sample."""
    raise StepError(f"sample {sample!r}: {err}") from None


def open_sample_image(sample: str, path, timelapse: bool) -> ImageSource:
    """Lazy (T, C, Y, X) image of a sample, with errors that name the sample."""
    try:
        source = ImageSource.open(path, timelapse=timelapse)
    except ImageError as err:
        _image_failed(sample, err)
    t, _, h, w = source.shape
    problem = too_small(h, w)
    if problem is None and not timelapse and t > 1:
        problem = (f"{t} frames or planes (a T axis, or an ImageJ stack's Z) in a still image sample (kind tissue): "
                   f"give it kind timelapse to segment and track the frames, or give one frame (a z-stack: project "
                   f"it)")
    elif problem is None and timelapse and t < 2:
        problem = (f"a time-lapse sample needs frames to track, and this image has one ({h} x {w} px): give it kind "
                   f"tissue, or the movie's T-stack or frame folder")
    if problem:
        source.close()
        _fail(sample, path, problem)
    return source


def staged_model(inputs, declared):
    """The model a Snakemake job loads: the folder its declared model inputs are in on this machine.

    With a storage provider (no shared filesystem) the inputs are staged copies and the configured path
    names nothing on the job's machine. ``declared`` is the config's value (a folder, or a mapping that
    declares a user's own network, whose ``path`` is the ``weights`` input).
    """
    if isinstance(declared, dict):
        return {**declared, "path": inputs.weights}
    return os.path.dirname(inputs.spec)


def read_model(path) -> dict:
    """What produced the results of one config model (``model``: NAME@VERSION, ``dataset``: its dataset version;
    None where not known): a model provenance file, ``results/models/KEY.json`` (rule model_provenance,
    :func:`cellscale.steps.report.write_model_provenance`)."""
    return json.loads(Path(path).read_text())


def read_models(paths) -> dict:
    """:func:`read_model` of each model provenance file, by its config model key (the file's name)."""
    return {Path(p).name.removesuffix(".json"): read_model(p) for p in paths}


def with_model(made: dict, models: dict) -> dict:
    """What produced a sample's cells as a table's ``uns["cellscale"]`` records it: ``made`` as the workflow's
    params give it (``model``: the config model key; ``compartments``; the sheet's and the segment settings'
    values) with ``model`` NAME@VERSION per compartment and ``model_dataset`` in its place, from ``models`` (per
    key, :func:`read_models`)."""
    out = {}
    for key, value in made.items():
        if key == "model":
            used = models[value]
            out["model"] = {c: used["model"] for c in made["compartments"]}
            out["model_dataset"] = used["dataset"]
        elif key != "compartments":
            out[key] = value
    return out


def with_models(made: dict, models: dict) -> dict:
    """:func:`with_model` of each sample's entry of ``made`` (per sample, as the workflow's params give them)."""
    return {sample: with_model(entry, models) for sample, entry in made.items()}


def read_sample_labels(sample: str, path) -> np.ndarray:
    try:
        return read_labels(path)
    except ImageError as err:
        _image_failed(sample, err)


# the columns of a batch's (and the run's) errors.tsv: one row per image that failed
ERROR_COLUMNS = ["sample", "image", "batch", "error"]


def with_time(table: pd.DataFrame, frame_interval_s: float | None) -> pd.DataFrame:
    """A time-lapse's ``table`` (with a ``frame`` column) given a ``time`` column after ``frame``, in place: seconds
    since frame 0 (``frame`` x ``frame_interval_s``), NaN where the interval is unknown. The column is there either
    way, so every time-lapse's table has the same columns (and the run's table one schema)."""
    frames = table["frame"].to_numpy(np.float64)
    times = frames * frame_interval_s if frame_interval_s else np.full(len(table), np.nan)
    table.insert(table.columns.get_loc("frame") + 1, "time", times)
    return table


def read_tsv(path, dtype: dict | None = None) -> pd.DataFrame:
    """A table the steps write (a batch's fields.tsv, errors.tsv, the plan), ``sample`` and ``batch`` as text: a
    sample may be named ``NA`` or ``nan``, and batch ``0007`` stays ``0007``. Only empty cells are missing."""
    return pd.read_csv(path, sep="\t", dtype={"sample": str, "batch": str, **(dtype or {})}, keep_default_na=False,
                       na_values=[""])


def field_label_path(batch_dir, sample: str, compartment: str) -> Path:
    """A batched sample's own label file in its batch folder: ``labels/<sample>/<compartment>.ome.tif``."""
    return Path(batch_dir, "labels", sample, f"{compartment}.ome.tif")


def label_paths(batch_dir, sample: str, compartments) -> dict:
    """Where a batched sample's labels are in its batch folder, per compartment: its own file
    (:func:`field_label_path`), or its image in the batch's multi-series ``<c>.ome.tif`` (a
    :class:`~cellscale.io.LabelSeries`) where the batch was written with ``batches.label_files: per_batch``. Both
    have ``exists()`` and open with :func:`open_sample_image` and :func:`read_sample_labels`."""
    out = {}
    for c in compartments:
        packed = Path(batch_dir, f"{c}.ome.tif")
        out[c] = LabelSeries(packed, sample) if packed.is_file() else field_label_path(batch_dir, sample, c)
    return out


def staged_paths(declared, staged) -> dict:
    """The sheet's paths -> where a job reads them: ``declared`` and the job's inputs made of them, in one order (the
    same paths on a shared filesystem, staged copies without one)."""
    return dict(zip(declared, staged))


def staged_image(image: str, where: dict) -> str:
    """A sheet's ``image`` as a job reads it: each of its files (one, or one per channel:
    :func:`cellscale.io.image_files`) where ``where`` (:func:`staged_paths`) has it, else as the sheet names it
    (a file that is missing here: the step that opens it says so)."""
    return join_image_files([where.get(p, p) for p in image_files(image)])


def job_image(staged, declared: str) -> str:
    """The image of a sample's own job: its staged input (a path, or the list of its channel files, in the sheet's
    order), else the sheet's ``declared`` image (its job had none: a missing file, which the step names)."""
    if not staged:
        return declared
    return staged if isinstance(staged, str) else join_image_files(staged)


def sample_annotations(annotations) -> pd.DataFrame:
    """The sample sheet's own columns (``well``, ``site``, any column the workflow does not use) as a table indexed
    by sample: ``annotations`` is such a table, or ``{sample: {column: value}}`` (a rule's params), or None (no
    columns). Values keep their type (a ``site`` of numbers stays numeric); missing ones are NA."""
    if annotations is None:
        return pd.DataFrame(index=pd.Index([], dtype=object, name="sample"))
    if isinstance(annotations, pd.DataFrame):
        return annotations
    table = pd.DataFrame.from_dict(dict(annotations), orient="index")
    table.index = table.index.astype(object).rename("sample")
    return table.convert_dtypes(convert_string=False, convert_boolean=False).infer_objects()


def annotate(table: pd.DataFrame, annotations: pd.DataFrame, taken=()) -> pd.DataFrame:
    """``table`` (with a ``sample`` column) with the sheet's ``annotations`` columns after ``sample``, each row's
    from its sample. A column named like one of ``table``'s or of ``taken`` is left out (the table's is kept)."""
    columns = [c for c in annotations.columns if c not in table.columns and c not in taken]
    if not columns:
        return table
    where = list(table.columns).index("sample") + 1
    values = annotations[columns].reindex(table["sample"].to_numpy())
    values.index = table.index
    return pd.concat([table.iloc[:, :where], values, table.iloc[:, where:]], axis=1)
