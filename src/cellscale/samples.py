"""Sample sheets for many files: ``cellscale samples`` writes ``config/samples.tsv`` from a glob pattern.

It only lists files (no image is opened), so ten thousand fields of view take a second or so:

- :func:`list_images`: the image files (PNG, TIFF, OME-TIFF) and OME-Zarr folders a pattern matches
  (``**`` recursive), and for time-lapse sheets its frame folders, sorted; an empty match is an error naming the
  pattern;
- :func:`sample_name`: a valid sample name from a path (the path relative to the pattern's fixed folder,
  without its suffix, other characters than ``A-Z a-z 0-9 _ . -`` replaced by ``_``);
- :func:`build_sheet`: the rows, with optional columns parsed from each path by a regular expression's named
  groups (``well``, ``site`` ...) and names built from them by a template (``{well}_s{site}``); a ``channel``
  group makes the files of one name one image, one file per channel (:func:`group_channels`);
- :func:`format_sheet`, :func:`write_sheet`: the tab-separated text the workflow reads (``rules/common.smk``),
  written atomically.

Names derived from paths are made unique deterministically (see :func:`unique_names`); names from a template
must be unique already (a collision is an error naming both files: the template is missing a field).
Every row is valid for the packaged ``samples`` schema, whose name pattern and ``kind`` values are used here.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import string
import sys
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cellscale.io import atomic_path, image_size
from cellscale.io.formats import (CHANNEL_FILES_SEPARATOR, IMAGE_SUFFIXES, image_files, is_image_file, is_ome_zarr,
                                  join_image_files)
from cellscale.settings import BATCH_CAP, batch_runs, schema

__all__ = ["CHANNEL_GROUP", "COLUMNS", "GROUP_COLUMNS", "SIZE_COLUMNS", "Sheet", "annotation_columns", "batch_name",
           "build_sheet", "format_sheet", "group_channels", "list_images", "pack_batches", "sample_name",
           "unique_names", "write_sheet"]

# the columns written for every sheet, in this order (extra columns from --pattern follow)
COLUMNS = ("sample", "image", "kind", "nuclear_channel", "membrane_channel", "channel_names", "pixel_size_um",
           "frame_interval_s")
# the image's size in pixels (height, width), written with --sizes: the batch plan then opens no image
SIZE_COLUMNS = ("height", "width")
# columns the samples schema declares for --pattern groups (any other group name is allowed too: the schema is open)
GROUP_COLUMNS = ("well", "site")
# the --pattern group that names a field's channel: files that differ only in it are one image, one file per channel
CHANNEL_GROUP = "channel"
_ZARR_SUFFIXES = (".ome.zarr", ".zarr")
# strings pandas reads as missing (rules/common.smk reads the sheet with pandas' defaults) that are valid names
_PANDAS_MISSING = {"NA", "NULL", "NaN", "None", "nan", "null"}
# characters that would break the tab-separated sheet as rules/common.smk reads it (comment="#", quoted fields)
_UNSAFE = re.compile(r'[\t\r\n#"]')


def _samples_schema() -> dict:
    return schema("samples")


def annotation_columns(columns: Iterable[str]) -> list[str]:
    """The columns of a sheet with these ``columns`` that the workflow carries along into its tables (summary.tsv,
    index.tsv, errors.tsv, cells.*) after ``sample``: ``well``, ``site`` and every column the samples schema does not
    declare (another ``--pattern`` group, a user's own annotation such as a compound or dose), in sheet order."""
    declared = set(_samples_schema()["properties"]) - set(GROUP_COLUMNS)
    return [c for c in columns if c not in declared]


def kinds() -> list[str]:
    """The ``kind`` values the samples schema allows."""
    return list(_samples_schema()["properties"]["kind"]["enum"])


def _name_pattern() -> re.Pattern:
    return re.compile(_samples_schema()["properties"]["sample"]["pattern"])


def _base_folder(pattern: str) -> str:
    """The pattern's leading folders without wildcards (``plate1`` for ``plate1/**/*.tif``): names start below it."""
    parts = pattern.replace(os.sep, "/").split("/")
    fixed = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        fixed.append(part)
    if not fixed:
        return "/" if pattern.startswith("/") else "."
    return "/".join(fixed) or "/"


def _holds_frames(path: str) -> bool:
    """A folder holding image files (not hidden): a movie's frame folder, as a time-lapse sample's image."""
    return os.path.isdir(path) and any(e.is_file() and not e.name.startswith(".") and is_image_file(e.name)
                                       for e in os.scandir(path))


def list_images(pattern: str, timelapse: bool = False) -> list[str]:
    """The image files and OME-Zarr folders matching ``pattern`` (``**`` matches any folders), sorted; with
    ``timelapse`` also the folders of frame files it matches (a movie each, as the Cell Tracking Challenge ships
    them: ``01/t000.tif`` ...).

    Hidden files are left out, and so is anything inside a matched OME-Zarr folder or frame folder. Raises
    ValueError naming the pattern when nothing usable matches.
    """
    matches = glob.glob(pattern, recursive=True)
    files = [p for p in matches if is_image_file(p) and os.path.isfile(p)]
    # a frame folder whose files the pattern matches too ('movies/**': movies/ and its T-stacks) is their folder
    listed = {os.path.dirname(os.path.normpath(f)) for f in files}
    folder_images = [p for p in matches if is_ome_zarr(p) or (timelapse and os.path.normpath(p) not in listed
                                                               and _holds_frames(p))]
    if folder_images:  # a folder image's own files (and groups, frames) are not images of their own
        folders = {os.path.normpath(z) for z in folder_images}

        def inside(path: str) -> bool:
            parent, child = os.path.dirname(os.path.normpath(path)), None
            while parent and parent != child:
                if parent in folders:
                    return True
                parent, child = os.path.dirname(parent), parent
            return False

        folder_images = [z for z in folder_images if not inside(z)]
        files = [f for f in files if not inside(f)]
    images = sorted(files + folder_images)
    if not images:
        or_frames = " or frame folders" if timelapse else ""
        found = f" ({len(matches)} path(s) match, none an image file or OME-Zarr folder{or_frames})" if matches else ""
        hint = "" if timelapse or not any(map(_holds_frames, matches)) else \
            ": a folder of a movie's frame files is listed with --kind timelapse"
        raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) or OME-Zarr folders{or_frames} match "
                         f"{pattern!r}{found}{hint}")
    return images


def _strip_suffix(path: str) -> str:
    lower = path.lower()
    for suffix in sorted(IMAGE_SUFFIXES + _ZARR_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix) and len(path) > len(suffix):
            return path[: -len(suffix)]
    return path


def sample_name(text: str) -> str:
    """``text`` made a valid sample name: characters outside ``A-Z a-z 0-9 _ . -`` become ``_``, leading
    ``_ . -`` are dropped (a name starts with a letter or digit; ``sample`` when nothing is left), and a name
    pandas would read as missing (``NA``, ``None``, ``null``, ``nan`` ...) gets a trailing ``_``."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", text).lstrip("_.-") or "sample"
    return name + "_" if name in _PANDAS_MISSING else name


def path_name(path: str, base: str) -> str:
    """The sample name of ``path``: its path relative to ``base`` without the image suffix, made valid."""
    rel = os.path.relpath(path, base) if base != "." else os.path.normpath(path)
    rel = rel.replace(os.sep, "/")
    if rel.startswith("../") or rel == "..":  # not below the base (a pattern with '..' after a wildcard)
        rel = os.path.basename(path)
    return sample_name(_strip_suffix(rel))


def unique_names(names: Iterable[str]) -> list[str]:
    """``names`` with repeats made unique: the first keeps its name, the next ones get ``_2``, ``_3`` ... (in the
    given order), skipping any suffixed name that is already a name of the list, so adding a suffix never takes
    another file's name."""
    names = list(names)
    used = set(names)
    seen: set[str] = set()
    out = []
    for name in names:
        if name not in seen:
            seen.add(name)
            out.append(name)
            continue
        k = 2
        while f"{name}_{k}" in used:
            k += 1
        used.add(f"{name}_{k}")
        out.append(f"{name}_{k}")
    return out


@dataclass
class Sheet:
    """A sample sheet: column names and one dict a row (values are str, int, float or None)."""

    columns: list[str]
    rows: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # paths --skip-unmatched left out (and fields missing a channel)

    def __len__(self) -> int:
        return len(self.rows)


def _check_text(value: str, what: str) -> str:
    if _UNSAFE.search(value):
        raise ValueError(f"{what} {value!r} holds a tab, line break, '#' or '\"', which the sample sheet cannot "
                         f"carry (rename it)")
    return value


def _compile(regex: str) -> re.Pattern:
    try:
        compiled = re.compile(regex)
    except re.error as err:
        raise ValueError(f"--pattern '{regex}' is not a regular expression: {err}") from None
    # the schema's columns the workflow reads, and the template field {name}; well and site are for groups
    reserved = (set(_samples_schema()["properties"]) - set(GROUP_COLUMNS)) | {"name"}
    clash = sorted(set(compiled.groupindex) & reserved)
    if clash:
        raise ValueError(f"--pattern '{regex}': group name(s) {clash} are reserved (sheet columns or the "
                         f"template field {{name}}); rename the group(s)")
    return compiled


def _template_name(template: str, fields: dict, path: str) -> str:
    try:
        text = template.format_map(fields)
    except KeyError as err:
        raise ValueError(f"--name '{template}': no field {err.args[0]!r} (fields: "
                         f"{', '.join(sorted(fields))})") from None
    except (ValueError, IndexError) as err:
        raise ValueError(f"--name '{template}': {err}") from None
    if not text:
        raise ValueError(f"{path}: --name '{template}' gives an empty name")
    return sample_name(text)


def build_sheet(pattern: str, kind: str, *, nuclear_channel: int | None = None, membrane_channel: int | None = None,
                channel_names: str | None = None, pixel_size_um: float | None = None, regex: str | None = None,
                name: str | None = None, skip_unmatched: bool = False,
                images: list[str] | None = None, sizes: bool = False, workers: int = 8,
                frame_interval_s: float | None = None) -> Sheet:
    """The sample sheet of the images ``pattern`` matches (:func:`list_images`; or ``images``, already listed).

    Every row has ``kind``, the channels, channel names, pixel size and (``kind`` timelapse only) frame interval
    given; the columns are there, empty, when not given. ``regex`` is searched
    (:func:`re.search`) in each image path as written in the ``image`` column; each named group becomes a column
    (empty when an optional group did not take part). A path it does not match is a ValueError naming it, or is
    left out with ``skip_unmatched`` (listed in :attr:`Sheet.skipped`). ``name`` is a template for the sample
    names (``{well}_s{site}``): its fields are the groups and ``name`` (the name derived from the path); it
    defaults to the derived names, which are made unique (:func:`unique_names`). Names from a template must be
    unique: a collision is a ValueError naming both files, except that with a ``channel`` group (:data:`CHANNEL_GROUP`,
    ``name`` required) the files of one name are one image, one file per channel (:func:`group_channels`; no
    ``channel`` column). ``sizes``: add ``height`` and ``width`` from each
    file's header (read by ``workers`` threads; empty when unreadable), so the workflow's batch plan opens no
    image (on a cluster without a shared disk it then downloads none).
    """
    allowed = kinds()
    if kind not in allowed:
        raise ValueError(f"--kind {kind!r}: one of {', '.join(allowed)}")
    for option, value in (("--nuclear-channel", nuclear_channel), ("--membrane-channel", membrane_channel)):
        if value is not None and value < 0:
            raise ValueError(f"{option} {value}: a 0-based channel index (0 or more)")
    if pixel_size_um is not None and not pixel_size_um > 0:
        raise ValueError(f"--pixel-size-um {pixel_size_um}: must be positive")
    if frame_interval_s is not None and not frame_interval_s > 0:
        raise ValueError(f"--frame-interval-s {frame_interval_s}: must be positive")
    if frame_interval_s is not None and kind != "timelapse":  # the workflow refuses it on a still image's row
        raise ValueError(f"--frame-interval-s is a time-lapse's seconds between frames, and --kind {kind} is for "
                         f"still images: give --kind timelapse, or leave it out")
    if channel_names is not None:
        channel_names = _check_text(channel_names.strip(), "--channel-names") or None
    compiled = _compile(regex) if regex is not None else None
    groups = list(compiled.groupindex) if compiled else []
    by_channel = CHANNEL_GROUP in groups
    if by_channel:
        groups.remove(CHANNEL_GROUP)  # no column: a row is a field, its files' channels are its image's
        if kind != "tissue":
            raise ValueError(f"--pattern '{regex}': a {CHANNEL_GROUP} group (one file per channel) is for still "
                             f"images (--kind tissue); a time-lapse is one file or a folder of frame files")
        if name is None or f"{{{CHANNEL_GROUP}}}" in name:
            raise ValueError(f"--pattern '{regex}' has a {CHANNEL_GROUP} group: give --name a template of the "
                             f"other groups (e.g. '{{well}}_s{{site}}'), so that a field's channel files share its "
                             f"name and are one image")

    paths = list_images(pattern, timelapse=kind == "timelapse") if images is None else list(images)
    base = _base_folder(pattern)
    kept, fields_of, skipped = [], [], []
    for path in paths:
        _check_text(path, "image path")
        values: dict[str, str] = {}
        if compiled is not None:
            match = compiled.search(path)
            if match is None:
                if skip_unmatched:
                    skipped.append(path)
                    continue
                others = sum(compiled.search(p) is None for p in paths) - 1
                raise ValueError(f"{path}: does not match --pattern '{regex}'"
                                 f"{f' (nor do {others} other file(s))' if others else ''}; "
                                 f"--skip-unmatched leaves such files out")
            values = {g: (v if v is not None else "") for g, v in match.groupdict().items()}
        if CHANNEL_FILES_SEPARATOR in path:
            raise ValueError(f"{path}: a path with {CHANNEL_FILES_SEPARATOR!r}, which the sample sheet's image "
                             f"column puts between the files of one image (rename it)")
        kept.append(path)
        fields_of.append(values)
    if not kept:
        raise ValueError(f"none of the {len(paths)} file(s) matching {pattern!r} matches --pattern '{regex}'")
    if by_channel:
        kept, fields_of, left_out = group_channels(kept, fields_of, name, base, skip_unmatched)
        skipped += left_out
        if channel_names is not None and kept and len(channel_names.split(",")) != len(image_files(kept[0])):
            raise ValueError(f"--channel-names {channel_names!r}: {len(channel_names.split(','))} names for "
                             f"{len(image_files(kept[0]))} channels ({kept[0]})")

    derived = [path_name(p, base) for p in kept]
    if name is None:
        names = unique_names(derived)
    else:
        names = [_template_name(name, {**values, "name": d}, p) for p, values, d in zip(kept, fields_of, derived)]
        first: dict[str, str] = {}
        for p, n in zip(kept, names):
            if n in first:
                raise ValueError(f"--name '{name}' gives the sample name {n!r} to both {first[n]} and {p}; "
                                 f"add a field that tells them apart")
            first[n] = p
    valid = _name_pattern()
    for p, n in zip(kept, names):
        if not valid.match(n):  # cannot happen after sample_name(); a guard against a schema change
            raise ValueError(f"{p}: sample name {n!r} does not match the samples schema ({valid.pattern})")

    size_of: list = [None] * len(kept)  # an image of one file per channel: its first file's (image_size)
    if sizes:
        with ThreadPoolExecutor(max(1, workers)) as pool:
            size_of = list(pool.map(image_size, kept))
    sheet = Sheet(columns=[*COLUMNS, *(SIZE_COLUMNS if sizes else ()), *groups], skipped=skipped)
    for p, n, values, size in zip(kept, names, fields_of, size_of):
        sheet.rows.append({"sample": n, "image": p, "kind": kind, "nuclear_channel": nuclear_channel,
                           "membrane_channel": membrane_channel, "channel_names": channel_names,
                           "pixel_size_um": pixel_size_um, "frame_interval_s": frame_interval_s,
                           **dict(zip(SIZE_COLUMNS, size or ())), **values})
    return sheet


def group_channels(paths: list[str], fields_of: list[dict], template: str, base: str,
                   skip_unmatched: bool = False) -> tuple[list[str], list[dict], list[str]]:
    """Files of one field of view, one per channel, as one image: ``paths`` whose sample names (``template``
    filled with each path's ``--pattern`` groups, ``fields_of``) are one, joined in the order of their
    :data:`CHANNEL_GROUP` values (numeric when all are digits) as the sheet's ``image``
    (:func:`cellscale.io.join_image_files`). Returns the images, their groups (without the channel) and the
    paths of fields left out.

    Every field must have every channel some field has, once, and its files must agree in the other groups: a
    ValueError names the field and what is missing, repeated or different; with ``skip_unmatched`` a field missing
    a channel is left out instead.
    """
    fields: dict[str, list[tuple[str, dict]]] = {}
    for path, values in zip(paths, fields_of):
        channel = values.get(CHANNEL_GROUP, "")
        if not channel:
            raise ValueError(f"{path}: its {CHANNEL_GROUP} group is empty in --pattern (it did not take part)")
        derived = path_name(path, base)
        fields.setdefault(_template_name(template, {**values, "name": derived}, path), []).append((path, values))
    # numbers when every value is digits (w2 before w10, w02 is w2), else text
    channel = int if all(v[CHANNEL_GROUP].isdigit() for v in fields_of) else str
    channels = sorted({channel(v[CHANNEL_GROUP]) for v in fields_of})
    images, groups, left_out = [], [], []
    for field, members in fields.items():
        have: dict = {}
        for path, values in members:
            other = have.get(channel(values[CHANNEL_GROUP]))
            if other is not None:
                raise ValueError(f"field {field!r}: {path} and {other} are both its channel "
                                 f"{values[CHANNEL_GROUP]!r}; add a field to --name that tells them apart")
            have[channel(values[CHANNEL_GROUP])] = path
        missing = [c for c in channels if c not in have]
        if missing:
            if skip_unmatched:
                left_out += [p for p, _ in members]
                continue
            raise ValueError(f"field {field!r} has no file of channel {', '.join(repr(str(c)) for c in missing)} (its "
                             f"files: {', '.join(p for p, _ in members)}; other fields have channels "
                             f"{', '.join(repr(str(c)) for c in channels)}); --skip-unmatched leaves such fields out")
        rest = [{k: v for k, v in values.items() if k != CHANNEL_GROUP} for _, values in members]
        differ = sorted(k for k in rest[0] if len({r[k] for r in rest}) > 1)
        if differ:
            raise ValueError(f"field {field!r}: its channel files differ in --pattern group(s) {differ} "
                             f"({', '.join(p for p, _ in members)}); put them in --name, or leave them out")
        images.append(join_image_files([have[c] for c in channels]))
        groups.append(rest[0])
    return images, groups, left_out


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def format_sheet(sheet: Sheet) -> str:
    """The tab-separated text of ``sheet``: a header line, then one line a row."""
    lines = ["\t".join(sheet.columns)]
    lines += ["\t".join(_cell(row.get(c)) for c in sheet.columns) for row in sheet.rows]
    return "\n".join(lines) + "\n"


def write_sheet(sheet: Sheet, output: str | os.PathLike) -> None:
    """Write ``sheet`` to ``output`` atomically (a killed run leaves the old file), or to stdout for ``-``."""
    text = format_sheet(sheet)
    if str(output) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    with atomic_path(Path(output)) as tmp:
        tmp.write_text(text, encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------------
# Batches: many fields of view per job
# ---------------------------------------------------------------------------------------------------------------

BATCH_NAME_LETTERS = 10  # a batch's name: letters only, so no table reader takes it for a number


def batch_name(sample: str) -> str:
    """A batch's name, from its first sample's name: ``BATCH_NAME_LETTERS`` lower-case letters of the name's
    SHA-256 (the same on every machine and run, unlike Python's ``hash``)."""
    code = int.from_bytes(hashlib.sha256(f"batch:{sample}".encode()).digest(), "big")
    letters = []
    for _ in range(BATCH_NAME_LETTERS):
        code, k = divmod(code, 26)
        letters.append(string.ascii_lowercase[k])
    return "".join(letters)


def pack_batches(mpx: Sequence[float | None], keys: Sequence[str], limit_mpx: float,
                 names: Sequence[str]) -> list[str]:
    """Batch names for the fields of view ``names`` of ``mpx`` megapixels, in sheet order.

    Each ``key``'s (the model it needs) fields of view, in sheet order, are cut into runs by their content, not
    their positions: a run of more than :data:`~cellscale.settings.BATCH_CAP` (2) times ``limit_mpx`` (config
    ``tiling.shard_mpx``) is cut after its member whose name hashes lowest (SHA-256), and each part again, until
    every run holds at most ``BATCH_CAP * limit_mpx`` (or one field of view). A batch then holds about
    ``limit_mpx`` on average (from a few fields of view to twice that), and a row inserted into or taken out of the
    sheet changes only the batch that holds it (which may split in two, or join its neighbour): every other batch
    keeps its members, since whether and where a run is cut depends only on the names and sizes inside it. A batch
    is named after its first member (:func:`batch_name`), so the others keep their names too. An unknown size (None:
    the file could not be read; its batch job records why) counts as 0. The result is the same for the same sheet,
    run after run.
    """
    if not len(mpx) == len(keys) == len(names):
        raise ValueError(f"{len(mpx)} sizes for {len(keys)} keys and {len(names)} names")
    if not limit_mpx > 0:
        raise ValueError(f"limit_mpx must be positive, got {limit_mpx}")
    # sizes in whole pixels: integer sums, so no rounding elsewhere in the sheet moves a cut
    pixels = [round((m or 0.0) * 1e6) for m in mpx]
    cap = int(BATCH_CAP * limit_mpx * 1e6)
    key_array = np.asarray(keys, dtype=object)
    out = [""] * len(mpx)
    first_of: dict[str, str] = {}
    for key in dict.fromkeys(keys):
        members = np.flatnonzero(key_array == key)
        for lo, hi in batch_runs([pixels[i] for i in members], [names[i] for i in members], cap):
            name = batch_name(names[members[lo]])
            if name in first_of:  # 26^10 names: not expected before the sheets of another universe
                raise ValueError(f"samples {first_of[name]!r} and {names[members[lo]]!r} give the same batch name "
                                 f"{name!r}: rename one")
            first_of[name] = names[members[lo]]
            for i in members[lo:hi]:
                out[i] = name
    return out
