"""The ``cellscale`` command line: single steps, the same code the workflow runs (``cellscale --help`` lists the
commands).

Argument parsing and dispatch only. Each command imports the library inside its function, on purpose: the
command line starts (and ``--help`` answers) without loading numpy or a network library, and a command loads
only what it runs. Everywhere else in the library imports are at module top (import-linter checks the layers).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

# the command line's numbers: also cellscale size's (cellscale.deploy.sizing), in a layer both import from
from cellscale.settings import number_arg as _number_arg


def _samples(args) -> int:
    from cellscale.samples import build_sheet, write_sheet

    sheet = build_sheet(args.pattern, args.kind, nuclear_channel=args.nuclear_channel,
                        membrane_channel=args.membrane_channel, channel_names=args.channel_names,
                        pixel_size_um=args.pixel_size_um, frame_interval_s=args.frame_interval_s,
                        regex=args.regex, name=args.name,
                        skip_unmatched=args.skip_unmatched, sizes=args.sizes)
    write_sheet(sheet, args.output)
    skipped = (f", {len(sheet.skipped)} file(s) not matching --pattern (or of fields missing a channel) left out"
               if sheet.skipped else "")
    where = "stdout" if args.output == "-" else args.output
    print(f"{len(sheet)} samples -> {where}{skipped}", file=sys.stderr)
    return 0


def _segment(args) -> int:
    import numpy as np

    from cellscale.io import (ImageError, ImageSource, image_files, is_image_file, is_ome_zarr, read_image,
                              sample_frame_interval, sample_pixel_size, too_small, write_labels)
    from cellscale.logs import step_log
    from cellscale.segment.image import IMAGE_ERRORS, FieldOfView, segment_many
    from cellscale.api import load_model
    from cellscale.registry import model_path
    from cellscale.segment.model import ModelSpec, shipped_model
    from cellscale.segment.size import default_scale
    from cellscale.settings import default

    src = Path(args.input)
    one_image = is_ome_zarr(src) or not src.is_dir() or args.timelapse  # --timelapse: a frame folder is one movie
    if not one_image:
        inputs = sorted(p for p in src.iterdir() if (p.is_file() and is_image_file(p)) or is_ome_zarr(p))
        if not inputs:
            raise FileNotFoundError(f"{src}: no PNG/TIFF/OME-Zarr images in this folder")
        if is_image_file(args.output.rstrip("/")) and not args.output.endswith("/"):
            raise UsageError(f"{src} is a folder of {len(inputs)} images, and -o {args.output} names one file: give "
                             f"-o FOLDER/ for a label image each, or --timelapse to segment the folder as one movie")
    elif src.exists() or len(image_files(args.input)) > 1:  # one file per channel: 'w1.tif|w2.tif'
        inputs = [src]
    else:
        raise FileNotFoundError(f"{src}: no such file or folder")
    if args.frame_interval is not None and not args.timelapse:
        raise UsageError("--frame-interval is a movie's seconds between frames: give --timelapse too")
    whole_cell = args.compartment == "whole-cell"
    if whole_cell and args.membrane_channel is None:
        raise UsageError("--compartment whole-cell needs --membrane-channel")
    # once for all inputs; a folder, a shipped model's name or a registry NAME@VERSION, as from Python (an unknown
    # one named as cellscale review and train name theirs)
    model = model_path(args.model, f"--model {args.model}") if args.model else \
        shipped_model("tissue" if whole_cell else "nuclear")
    _check_tiling(args, ModelSpec.read(model).tile_multiple)
    single_file = len(inputs) == 1 and one_image and not args.output.endswith("/")
    out = Path(args.output)
    if single_file and out.is_dir():   # before the model loads and the image is segmented
        raise IsADirectoryError(f"{out} is a folder: give a file name for the output (or {out}/ to write the "
                                f"label image into it)")
    if not single_file and out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder: give a folder for the label images")
    predictor = load_model(model, batch_mpx=None if args.batch_size else args.batch_mpx, batch_size=args.batch_size,
                           precision=args.precision, augment=args.augment)
    # no --scale: a movie's is the workflow's default for a time-lapse without a sheet scale (segment.timelapse_scale)
    scale = default_scale(args.scale, args.timelapse, predictor.spec, default("segment", "timelapse_scale"))
    roles = {"nuclear": args.nuclear_channel, "membrane": args.membrane_channel}
    compartment = "whole_cell" if whole_cell else "nuclear"
    out_dir = out if not single_file else None
    read, failed, sizes, intervals = [], [], {}, {}  # the paths segment_many gets (its indices), those that failed

    def fields():  # read one at a time, as segment_many asks: a folder never has to fit in memory
        for path in inputs:
            try:
                image = ImageSource.from_array(read_image(path, timelapse=args.timelapse), path)  # errors name it
                if small := too_small(*image.shape[2:]):  # as the workflow refuses it (open_sample_image)
                    raise ImageError(f"{path}: {small}")
                if args.timelapse and image.shape[0] < 2:   # as the workflow refuses a time-lapse sample of one
                    raise ImageError(f"{path}: --timelapse needs frames to track, and this holds one "
                                     f"({image.shape[2]} x {image.shape[3]} px): leave out --timelapse for a still "
                                     f"image")
            except IMAGE_ERRORS as err:
                failed.append(_segment_failed(path, err))
                continue
            read.append(path)
            sizes[path] = sample_pixel_size(args.pixel_size, path)  # --pixel-size, else the image's metadata
            # --frame-interval, else the movie's metadata's
            intervals[path] = sample_frame_interval(args.frame_interval, path) if args.timelapse else None
            yield FieldOfView(image, roles, sizes[path], args.gamma, scale)

    with step_log(None, "segment"):
        # windows of one size from several images share the network's batches
        for index, result in segment_many(predictor, fields(), tile=args.tile, overlap=args.overlap):
            path = read[index]
            if isinstance(result, Exception):
                failed.append(_segment_failed(path, result))
                continue
            labels = result[compartment]
            labels = labels[0] if labels.shape[0] == 1 else labels
            stem = Path(image_files(path)[0]).name.split(".")[0]  # one file per channel: the first's
            target = out_dir / f"{stem}.tif" if out_dir else Path(args.output)
            write_labels(target, labels.astype(np.uint32), sizes[path], name=stem, frame_interval_s=intervals[path])
            what = compartment.replace("_", "-")
            if labels.ndim == 3:  # a movie: labels are numbered frame by frame
                objects = sum(int(np.count_nonzero(np.unique(frame))) for frame in labels)
                print(f"{path} -> {target}: {labels.shape[0]} frames, {objects} {what} objects in all")
            else:
                print(f"{path} -> {target}: {int(labels.max())} {what} labels")
    if failed:
        print(f"cellscale segment: {len(failed)} of {len(inputs)} image(s) failed (errors above)", file=sys.stderr)
        return 1
    return 0


def _check_tiling(args, multiple: int) -> None:
    """``segment --tile`` and ``--overlap``: windows (``--tile`` rounded down to the model's ``multiple``) wider
    than two overlaps, checked before the model loads (an image of several windows a side needs them)."""
    from cellscale.segment.tiles import tiling_problem

    if problem := tiling_problem(args.tile, args.overlap, multiple, "--tile", "--overlap"):
        raise UsageError(problem)


class UsageError(Exception):
    """A command line that argparse accepts but that cannot run as given. Printed as argparse prints its own
    usage errors: the command's usage line, then ``cellscale CMD: error: ...``; exit status 2."""


def _scale_arg(text: str):
    """``--scale``: a number or auto; anything else a usage error naming the option and what it takes."""
    from cellscale.settings import parse_scale

    try:
        return parse_scale(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


_channel_arg = _number_arg(int, 0, "a 0-based channel index, at least 0")   # --nuclear-channel, --membrane-channel
_seed_arg = _number_arg(int, 0, "a whole number, at least 0")   # --seed of numpy's and scikit-learn's generators
_images_arg = _number_arg(int, 1, "a whole number of images, at least 1")   # --images of train, data generate, plan


def _frame_range(text: str) -> tuple[int, int | None]:
    """``evaluate-tracks --frames``: ``N`` (the first N frames: ``(0, N)``) or ``START:STOP``, half-open as a Python
    slice (either end may be left out: from 0, to the last frame: ``None``)."""
    what = "N (the first N frames) or START:STOP (frames START to STOP - 1, from 0)"
    try:
        if ":" not in text:
            start, stop = 0, int(text)
        else:
            first, last = text.split(":")   # a ValueError for two colons too
            start, stop = int(first) if first.strip() else 0, int(last) if last.strip() else None
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, not {text!r}") from None
    if start < 0 or (stop is not None and stop <= start):
        raise argparse.ArgumentTypeError(f"expected {what}, STOP above START and both at least 0, not {text!r}")
    if stop is not None and stop - start < 2:   # py-ctcmetrics scores no single frame (a numpy error)
        raise argparse.ArgumentTypeError(f"--frames {text} is one frame: tracks link frames, so give at least 2")
    return start, stop


def _frame_interval_option(parser, help_text: str) -> None:
    """``--frame-interval SECONDS``: a movie's seconds between frames (segment, measure, track)."""
    parser.add_argument("--frame-interval", type=_number_arg(float, 0, "a positive number of seconds", above=True),
                        default=None, metavar="SECONDS", help=help_text)


def _preemption_arg(text: str) -> float:
    """``plan --preemption``: spot preemptions per node-hour, a rate from 0 to 1 (a node that lasts an hour on
    average at 1); a larger figure is most likely a percentage, and the message says so."""
    value = _number_arg(float, 0, "spot preemptions per node-hour from 0 to 1 (0.05 = 5%)")(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected spot preemptions per node-hour from 0 to 1, not {text!r} "
                                         f"(for {value:g}% give {value / 100:g})")
    return value


def _segment_failed(path: Path, err: Exception) -> Path:
    """Print one line naming the image that failed and why; returns its path."""
    reason = str(err) if str(err).startswith(str(path)) else f"{path}: {err}"
    print(f"cellscale segment: error: {reason}", file=sys.stderr)
    return path


def _measure(args) -> int:
    from cellscale.io import ImageSource, read_image, read_labels
    from cellscale.measure import measure_cells, write_table
    from cellscale.measure.table import check_image_dtype
    from cellscale.steps.measure import MeasureSettings, measure_sample, sample_channel_names

    names = args.channel_names.split(",") if args.channel_names else None
    out = Path(args.output)
    parquet = out.with_suffix(".parquet") if args.parquet else None
    movie = Path(args.labels).is_dir()   # a folder of per-frame labels (a CTC result's maskNNN.tif)
    if movie and not any(p.suffix.lower() in (".tif", ".tiff") and not p.name.startswith(".")
                         for p in Path(args.labels).iterdir()):
        raise ValueError(f"{args.labels}: a folder that holds no label frames (.tif/.tiff files, one per frame: "
                         f"mask000.tif ...): give a movie's label frames, or a label image")
    if not movie:
        with ImageSource.open(args.labels, timelapse=True) as source:
            movie = source.shape[0] > 1   # a (T, Y, X) stack, as cellscale segment --timelapse writes a movie's
    if movie:   # frame by frame, as the workflow measures a time-lapse sample: its table (frame, time, ...)
        interval = _frame_interval(args.frame_interval, args.labels, args.image)
        table = measure_sample(Path(args.labels).name.split(".")[0], args.image, {"nuclear": args.labels}, out,
                               parquet, timelapse=True, channel_names=names, tracks_path=args.tracks,
                               settings=MeasureSettings(extra_stats=args.extra_stats), frame_interval_s=interval)
        print(f"{len(table)} cells (a row per cell and frame) -> {out}")
        return 0
    if args.tracks or args.frame_interval is not None:
        raise UsageError(f"{args.labels} is one frame: --tracks and --frame-interval are for a movie's labels")
    labels = read_labels(args.labels)
    pixels = read_image(args.image)
    ImageSource.from_array(pixels, args.image).check_finite(pixels)   # NaN pixels: refused, as segment refuses them
    image = pixels[0]
    if labels.ndim != 2:   # e.g. planes an OME-TIFF names channels, or interleaved colour: one frame
        raise ValueError(f"{args.labels}: expected a 2-D label image or a movie's labels, got shape {labels.shape}, "
                         f"which reads as one frame (planes the file marks as channels or colour samples): write "
                         f"the movie's labels as an OME-TIFF with axes TYX (cellscale segment --timelapse does) or "
                         f"as a folder of frames")
    if labels.shape != image.shape[-2:]:
        raise ValueError(f"{args.labels}: labels of {labels.shape[0]} x {labels.shape[1]} px do not match the image "
                         f"{args.image} ({image.shape[-2]} x {image.shape[-1]} px)")
    check_image_dtype(image.dtype, str(args.image))
    names = sample_channel_names(args.image, image.shape[0], names)
    table = measure_cells(labels, image, names, extra_stats=args.extra_stats)
    write_table(table, out, parquet)
    print(f"{len(table)} cells -> {out}")
    return 0


def _mcquant(args) -> int:
    import pandas as pd

    from cellscale.steps.measure import write_mcquant

    path = Path(args.table)
    if path.suffix not in (".csv", ".parquet"):
        raise ValueError(f"{path}: expected a cell table (.csv or .parquet)")
    # a sample named 007 stays 007 (not the number 7) in a CSV
    table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype={"sample": str})
    out = Path(args.output)
    try:
        names = write_mcquant(table, out, args.name or path.stem)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    if not names:
        raise ValueError(f"{path}: no still image's cells (MCQuant's tables are of still images; a time-lapse's "
                         f"rows are left out)")
    print(f"{len(names)} tables -> {out}/ ({', '.join(f'{n}.csv' for n in names)})")
    return 0


def _replaceable(out: str | Path, what: str, belongs, inputs=()) -> None:
    """A folder a command replaces whole: refuse one that holds anything else (``belongs(path)`` is False for a
    file that is not of ``what``) or one of the command's ``inputs``, so a mistyped -o never deletes a user's files."""
    out = Path(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise ValueError(f"{out} exists and is not a folder")
    resolved = out.resolve()
    for src in map(Path, inputs):
        if src.resolve() == resolved or resolved in src.resolve().parents:
            raise ValueError(f"{out} holds the input {src}, and the output replaces the whole folder: give another")
    foreign = [p for p in sorted(out.rglob("*")) if p.is_file() and not belongs(p.relative_to(out))]
    if foreign:
        raise ValueError(f"{out} is replaced whole by the {what}, and it holds other files ({foreign[0]}"
                         f"{f' and {len(foreign) - 1} more' if len(foreign) > 1 else ''}): give a new or empty "
                         f"folder, or remove them")


def _track_intensities(args, shape) -> "np.ndarray | None":
    """``track --image``: the movie's nuclear channel, which the workflow's tracker compares too; None without."""
    if not args.image:
        return None
    from cellscale.io import ImageError, ImageSource
    from cellscale.steps.track import nuclear_frames

    with ImageSource.open(args.image, timelapse=True) as source:
        t, c, h, w = source.shape
        if (t, h, w) != tuple(shape):
            raise ImageError(f"{args.image}: the movie is {t} frame(s) of {h} x {w} px, the labels {args.labels_dir} "
                             f"{shape[0]} frame(s) of {shape[1]} x {shape[2]} px")
        if args.nuclear_channel is not None and not 0 <= args.nuclear_channel < c:
            raise ImageError(f"{args.image}: --nuclear-channel {args.nuclear_channel} is out of range: the movie has "
                             f"{c} channel(s)")
        return nuclear_frames(source, args.nuclear_channel)


def _frame_interval(given: float | None, labels, image) -> float | None:
    """``track``, ``measure``: the seconds between frames for the tables' ``time`` column, chosen as the workflow
    chooses it: ``given`` (``--frame-interval``), else the one the labels state (their OME ``TimeIncrement``, as
    ``cellscale segment --timelapse`` writes it), else the ``image``'s metadata's; a given one that differs from
    those by over 1% wins, with a warning. None: unknown (``time`` is NaN)."""
    from cellscale.io import frame_interval_from_metadata, sample_frame_interval

    stated_by = labels
    if image and frame_interval_from_metadata(labels, warn=False) is None:
        stated_by = image
    return sample_frame_interval(given, stated_by)


def _track(args) -> int:
    from cellscale.steps import with_time
    from cellscale.track.detections import detections_from_labels, intensity_like
    from cellscale.track.export_ctc import read_label_dir, write_ctc, write_tracks_table
    from cellscale.track.linking import link

    if args.nuclear_channel is not None and not args.image:
        raise ValueError("--nuclear-channel names a channel of --image MOVIE: give the movie too")
    if args.frame_interval is not None and not args.table:
        raise UsageError("--frame-interval gives the --table's time column: give --table TRACKS.parquet too")
    if args.scorer is not None:   # wrong even when --costs auto picks the rules: said before any work
        from cellscale.track.scorer import scorer_folder_problem

        if problem := scorer_folder_problem(args.scorer):
            raise FileNotFoundError(f"--scorer {args.scorer}: {problem}")
    _replaceable(args.output, "tracking result (maskNNN.tif, res_track.txt)",
                 lambda p: len(p.parts) == 1 and (p.name == "res_track.txt" or re.fullmatch(r"mask\d+\.tif", p.name)),
                 [args.labels_dir])
    if args.table and (Path(args.table).is_dir() or Path(args.table).suffix != ".parquet"):   # before any work
        raise ValueError(f"--table {args.table}: give a file name ending in .parquet (the tracks table is Parquet)")
    if Path(args.labels_dir).is_file():   # a (T, Y, X) stack, as `cellscale segment` writes a movie's labels
        from cellscale.io import check_labels, read_labels

        labels = read_labels(args.labels_dir)
        if labels.ndim != 3:
            raise ValueError(f"{args.labels_dir}: a label stack to track must be (T, Y, X), got shape {labels.shape}")
        check_labels(labels, args.labels_dir)
    else:
        labels = read_label_dir(args.labels_dir)
    if labels.shape[0] < 2:
        raise ValueError(f"{args.labels_dir}: {labels.shape[0]} frame(s): tracking needs at least 2")
    looks_raw = intensity_like(labels[0])
    if looks_raw:
        raise ValueError(f"{args.labels_dir}: {looks_raw}: these look like intensity images, not labels (segment "
                         f"them first: cellscale segment FOLDER --timelapse)")
    detections = detections_from_labels(labels, _track_intensities(args, labels.shape))
    if not len(detections):   # its result would be one py-ctcmetrics cannot score
        raise ValueError(f"{args.labels_dir}: no object in any of its {labels.shape[0]} frames: nothing to track")
    tracks = link(detections, labels=labels, max_distance=args.max_distance, max_gap=args.max_gap,
                  divisions=args.divisions, solver=args.solver, costs=args.costs, scorer=args.scorer)
    write_ctc(labels, tracks, args.output)
    if args.table:  # the workflow's table: time (seconds since frame 0) after frame, NaN where the interval is unknown
        write_tracks_table(with_time(tracks, _frame_interval(args.frame_interval, args.labels_dir, args.image)),
                           args.table)
    n_div = int(tracks.attrs.get("n_divisions", 0))
    empty = tracks.attrs.get("empty_frames") or []
    if empty:
        print(f"warning: {len(empty)} frame(s) have no objects: {', '.join(map(str, empty[:10]))}"
              f"{' ...' if len(empty) > 10 else ''}", file=sys.stderr)
    costs = tracks.attrs.get("costs_used") or args.costs
    if args.costs == "auto" and tracks.attrs.get("crowding") is not None:   # which costs auto chose, and why
        costs = f"auto -> {costs}, crowding {tracks.attrs['crowding']:.2f}"
    print(f"{len(tracks)} detections in {labels.shape[0]} frames -> {tracks.track_id.nunique()} tracks, "
          f"{n_div} divisions ({args.solver}, costs {costs}) -> {args.output}")
    return 0


def _train_tracker(args) -> int:
    import time

    import numpy as np

    from cellscale.io.ctc import read_label_dir, read_lineage
    from cellscale.synth.colony import PRESETS, make_colony, random_colony_params
    from cellscale.synth.timelapse import make_timelapse
    from cellscale.train.card import command_line
    from cellscale.track.scorer import fit_scorer
    from cellscale.track.training import TRAINING_MOVIES, jitter_labels, per_movie_weights, training_rows

    rows, used = [], []
    movies = TRAINING_MOVIES[:args.movies] if args.movies else TRAINING_MOVIES
    frames = {"n_frames": args.frames} if args.frames else {}
    for kind, kw, jitter in movies:
        t0 = time.perf_counter()
        if kind == "colony":
            rest = {k: v for k, v in kw.items() if k != "preset"}
            base = random_colony_params(kw["seed"]) if kw["preset"] == "random" else PRESETS[kw["preset"]]
            movie = make_colony(**{**base, **rest, **frames})
        else:
            movie = make_timelapse(**{**kw, **frames})
        labels = jitter_labels(movie.labels, seed=kw["seed"]) if jitter else movie.labels
        rows.append(training_rows(labels, movie.lineage, image=movie.image))
        used.append({"generator": kind, **kw, "jitter": jitter, **frames})
        print(f"{kind} {kw}{' jittered' if jitter else ''}: {len(rows[-1][1])} links, {len(rows[-1][3])} divisions "
              f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    for gt in args.ctc:  # a CTC ground-truth folder (with TRA/): leave-one-out training
        tra = Path(gt) / "TRA"
        rows.append(training_rows(read_label_dir(tra), read_lineage(tra / "man_track.txt")))
        used.append({"ctc": str(gt)})
    cat = [np.concatenate([r[k] for r in rows]) for k in range(4)]
    # movie-divisions: in the division model every movie counts the same (the colonies have ten times the sparse
    # movies' candidates); links stay per candidate (weighting them by movie made a 700-cell colony's ILP 4x slower)
    weights = {"w_div": per_movie_weights([len(r[3]) for r in rows])} if args.weighting == "movie-divisions" else {}
    scorer = fit_scorer(*cat, max_iter=args.trees, max_depth=args.depth, seed=args.seed,
                        meta={"trained_on": used, "weighting": args.weighting, "trained": time.strftime("%Y-%m-%d"),
                              "command": command_line()}, **weights)
    scorer.save(args.output)
    print(f"scorer: {len(cat[1])} link rows, {len(cat[3])} division rows, {args.trees} trees each -> {args.output}")
    return 0


def _evaluate_tracks(args) -> int:
    import tempfile

    from cellscale.track.evaluate import evaluate_ctc, ground_truth_frames, seg_frames

    with tempfile.TemporaryDirectory(prefix="cellscale-gt-") as tmp:
        gt = args.gt_dir
        if args.frames:
            gt = ground_truth_frames(args.gt_dir, *args.frames, tmp)
            n_cut = len(list((Path(gt) / "TRA").glob("man_track*.tif")))
            n_res = len(list(Path(args.result_dir).glob("*.tif")))
            if Path(args.result_dir).is_dir() and n_res != n_cut:   # not a message naming tmp
                raise ValueError(f"{args.result_dir} has {n_res} masks but --frames {args.frames[0]}:"
                                 f"{args.frames[0] + n_cut} of {args.gt_dir} is {n_cut} frames")
        scores = evaluate_ctc(args.result_dir, gt)
    for key, value in scores.items():
        print(f"{key}\t{value:.4f}" if isinstance(value, float) else f"{key}\t{value}")
    if "SEG" not in scores:   # said once, on stderr: the scores above stay KEY<tab>VALUE lines
        segs = seg_frames(args.gt_dir)
        why = (f"{Path(args.gt_dir) / 'SEG'} has no mask of --frames {args.frames[0]}:{args.frames[0] + n_cut} (its "
               f"frames: {', '.join(map(str, list(segs)[:12]))}{' ...' if len(segs) > 12 else ''})"
               if args.frames and segs else
               f"{args.gt_dir} has no SEG/man_segNNN.tif masks")
        print(f"cellscale evaluate-tracks: SEG, OP_CSB and OP_CTB not scored: {why}", file=sys.stderr)
    return 0


def _synth(args) -> int:
    from cellscale.synth.files import write_synthetic

    print(write_synthetic(args.kind, args.output, args.truth_dir, args.seed, args.size, args.cells, args.frames,
                          cell_shape=args.shape, doubling=args.doubling, motion=args.motion))
    return 0


def _gke(args) -> int:
    from cellscale.deploy.gke import run

    return run(args)


def _size(args) -> int:
    from cellscale.deploy.sizing import run

    return run(args)


def _plan(args) -> int:
    import json
    from dataclasses import replace

    from cellscale.cost.model import Overheads, Workload
    from cellscale.cost.plan import (Infeasible, describe, load_profiles, plan, segment_machine_problem,
                                     workload_from_sheet, write_outputs)
    from cellscale.cost.prices import load_prices

    if args.sheet is None and args.images is None:
        raise UsageError("give --sheet FILE or --images N (with --mpx M)")
    if args.sheet is not None and args.mpx is not None:
        raise UsageError("--mpx is for --images: with --sheet the sizes come from the sheet (height, width) or the "
                         "images' headers")
    if args.sheet is not None and args.no_sheet_sizes:
        raise UsageError("--no-sheet-sizes is for --images: with --sheet the sheet says whether it has the sizes")
    if args.formats is not None and "none" in args.formats and len(args.formats) > 1:
        raise UsageError("--formats none must be alone (it means no export format)")
    if args.formats is not None and len(set(args.formats)) < len(args.formats):
        raise UsageError(f"--formats names {', '.join(sorted({f for f in args.formats if args.formats.count(f) > 1}))}"
                         f" more than once")
    if args.config is not None and not args.config.is_file():
        raise UsageError(f"--config {args.config}: no such file")
    prices, profiles = load_prices(args.prices), load_profiles(args.profiles)
    for machine in args.segment_machines or ():
        problem = segment_machine_problem(machine, profiles, prices)
        if problem:
            raise UsageError(f"--segment-machines {problem}")
    gpus = {m: prices.machines[m].gpus for m in args.segment_machines or ()}
    if args.max_gpus is not None and gpus and min(gpus.values()) > args.max_gpus:
        raise UsageError(f"--max-gpus {args.max_gpus} allows no node of --segment-machines "
                         f"({', '.join(f'{m}: {n} GPU' for m, n in gpus.items())})")
    if args.sheet is not None:
        workload = workload_from_sheet(args.sheet)
    else:
        workload = Workload(args.images, 1.0 if args.mpx is None else args.mpx,
                            sizes_in_sheet=not args.no_sheet_sizes)
    if args.no_run_tables:
        workload = replace(workload, run_tables=False)
    if args.decoded_mb_per_mpx is not None:
        workload = replace(workload, decoded_mb_per_mpx=args.decoded_mb_per_mpx)
    config = _config(args.config or Path("config/config.yaml"))
    workload = replace(workload, formats=tuple(_plan_formats(args, config)),
                       label_files=args.label_files or _config_setting(config, "batches", "label_files"),
                       read_fields=args.read_fields or _config_setting(config, "batches", "read_fields"),
                       augment=args.augment or _config_setting(config, "segment", "augment"))
    if args.pilot:
        from cellscale.cost.runcost import export_files

        measured = export_files(args.pilot)
        workload = replace(workload, export_figures=tuple((f, n, mb) for f, (n, mb) in measured.items()))
        for f, (n, mb) in measured.items():
            print(f"# {f}: {n:.1f} files and {mb:.2f} MB per Mpx an image, measured in {args.pilot}", file=sys.stderr)
        if not measured:
            print(f"# {args.pilot}: no batch exports (results/ngff/batch_*, results/spatialdata/batches/): the shipped "
                  f"figures price them", file=sys.stderr)
    if args.out and not (args.gke_profile / "config.yaml").is_file():   # before the solve: nothing half written
        print(f"cellscale plan: --out needs the GKE profile whose set-resources the plan repeats, and "
              f"{args.gke_profile / 'config.yaml'} does not exist: run from the workflow's checkout, or pass "
              f"--gke-profile DIR", file=sys.stderr)
        return 2
    try:
        result = plan(workload, profiles, prices, deadline_h=args.deadline, budget_usd=args.budget,
                      max_gpus=args.max_gpus, max_nodes=args.max_nodes, preemption=args.preemption,
                      spot_options=(False,) if args.on_demand else (True, False),
                      segment_machines=args.segment_machines,
                      o=Overheads(storage_call_s=args.storage_call_ms / 1000), simulate_seeds=args.simulate)
    except Infeasible as err:
        print(f"cellscale plan: infeasible: {err}", file=sys.stderr)
        return 2
    if args.out:
        for path in write_outputs(result, args.out, profiles, args.gke_profile):
            print(f"# wrote {path}", file=sys.stderr)
    print(json.dumps(result.to_json(), indent=2) if args.json else describe(result, profiles))
    return 0


def _plan_formats(args, config: dict) -> list[str]:
    """``--formats``, else the config's ``output.formats`` (``--config``, else config/config.yaml when it exists),
    else the schema's."""
    if args.formats is not None:
        return [] if args.formats == ["none"] else args.formats
    return list(_config_setting(config, "output", "formats"))


def _config(path: Path) -> dict:
    """A workflow config file as a mapping ({} when there is none)."""
    import yaml

    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def _config_setting(config: dict, section: str, key: str):
    """A workflow config's ``section.key`` where it sets it, else the schema's default."""
    from cellscale.settings import default

    value = (config.get(section) or {}).get(key)
    return default(section, key) if value is None else value


def _throughput(args) -> int:
    import datetime

    import pandas as pd
    import yaml

    from cellscale.cost.jobs import job_table
    from cellscale.cost.plan import duplicate_profile, folder_profiles
    from cellscale.cost.throughput import fit_profile, profile_dict, write_profile

    tables = []
    for results in args.results:
        if not (results / "benchmarks").is_dir():
            raise FileNotFoundError(f"{results / 'benchmarks'}: no such folder (run the workflow once first: its "
                                    f"rules write results/benchmarks/<rule>/...tsv)")
        tables.append(job_table(results / "benchmarks", results))
    jobs = pd.concat(tables, ignore_index=True)
    if jobs.empty:
        raise ValueError(f"{', '.join(map(str, args.results))}: no benchmark files")
    runs = " ".join(map(str, args.results))
    name = args.name or args.machine   # named after its machine type, it replaces that type's profile in the folder
    how = (f"measured on {args.where or args.machine}, {datetime.date.today().isoformat()}: `cellscale throughput "
           f"{runs} --machine {args.machine} --name {name}` from {len(jobs)} jobs of {len(tables)} "
           f"run{'s' if len(tables) > 1 else ''}{'; ' + args.how if args.how else ''}")
    augment = args.augment or _config_setting(_config(args.results[0].resolve().parent / "config" / "config.yaml"),
                                              "segment", "augment")
    profile = fit_profile(jobs, args.machine, name, how, gpu_rules=args.gpu_rules, augment=augment)
    print(yaml.safe_dump(profile_dict(profile), sort_keys=False, width=120), end="")
    if args.out != "-":
        out = Path(args.out or Path("config/throughput") / f"{name}.yaml")
        other, _ = folder_profiles(out.parent).get(profile.machine, (None, None))
        if other is not None and other.name != out.name:   # cellscale plan would refuse the folder
            elsewhere = "write it to another folder with --out FILE"
            raise ValueError(f"not written: {duplicate_profile(profile.machine, other, out, elsewhere)}")
        write_profile(profile, out)
        print(f"# written to {out}", file=sys.stderr)
    return 0


def _train(args) -> int:
    from cellscale.train.options import TrainOptions

    options = TrainOptions.from_args(args)  # checked before the network libraries load
    from cellscale.train.run import run_training

    return run_training(options)


def _split_file(path) -> dict[str, str]:
    """``data add --splits FILE``: a CSV or TSV table with the columns sample and split -> {sample: split}."""
    if not path:
        return {}
    import pandas as pd

    from cellscale.train.data import SPLITS

    table = pd.read_csv(path, sep=None, engine="python", dtype=str, keep_default_na=False)
    if not {"sample", "split"} <= set(table.columns):
        raise ValueError(f"--splits {path}: needs the columns sample and split (it has {', '.join(table.columns)})")
    bad = table[~table["split"].isin(SPLITS)]
    if len(bad):
        raise ValueError(f"--splits {path}: sample {bad['sample'].iloc[0]!r}: split {bad['split'].iloc[0]!r} is not "
                         f"one of {', '.join(SPLITS)}")
    twice = table["sample"][table["sample"].duplicated()]
    if len(twice):
        raise ValueError(f"--splits {path}: sample {twice.iloc[0]!r} is listed twice")
    return dict(zip(table["sample"], table["split"]))


def _kept_splits(args) -> dict[str, str]:
    """``data add --layout pairs``: the splits of the samples in the version this one follows (``--parent``, else
    NAME's latest), which they keep."""
    from cellscale.datasets import is_dataset, load_version

    ref = args.parent or (args.name if is_dataset(args.name, args.store) else None)
    if ref is None:
        return {}
    before = load_version(ref, args.store)
    return {f.metadata["sample"]: before.metadata_of(f).get("split", "train") for f in before.files
            if "sample" in f.metadata and f.metadata.get("role") in ("image", "labels")}


def _data(args) -> int:
    import json

    from cellscale.datasets import add_version, diff, list_versions, load_version, verify

    store = args.store
    if args.action == "add":
        try:
            metadata = json.loads(Path(args.metadata).read_text()) if args.metadata else {}
        except json.JSONDecodeError as err:
            raise ValueError(f"--metadata {args.metadata}: not JSON ({err})") from None
        if not isinstance(metadata, dict):
            raise ValueError(f"--metadata {args.metadata}: expected a JSON object of the set's metadata "
                             f"({{\"organ\": ..., \"licence\": ...}}), got a {type(metadata).__name__}")
        for item in args.meta or []:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"--meta {item}: give KEY=VALUE")
            try:
                metadata[key] = json.loads(value)
            except json.JSONDecodeError:
                metadata[key] = value
        file_metadata, check, notes = None, None, {}
        if args.splits and args.layout != "pairs":
            raise UsageError("--splits FILE goes with --layout pairs (--layout dsb2018 keeps DSB2018's hash split)")
        if args.layout:  # sample, role, split (and kind) of each file; dsb2018: the set's DSB2018 ontology too
            from cellscale.datasets import list_files, root_dir
            from cellscale.train.versions import DSB2018_METADATA, check_pairs, layout_file_metadata

            root = root_dir(args.root, store)  # where add_version lists the files
            if root.is_dir():  # else add_version's error names the missing root
                file_metadata, notes = layout_file_metadata(root, list_files(root, args.files or None), args.layout,
                                                            given=_split_file(args.splits), kept=_kept_splits(args))
            # the pairs are read and checked before the version is recorded, as training reads them
            def check(version):
                check_pairs(version, say=lambda line: print(f"cellscale data: {line}", file=sys.stderr))
            if args.layout == "dsb2018":
                metadata = {**DSB2018_METADATA, **metadata}
        if args.compartments:
            metadata["compartments"] = args.compartments
        m = add_version(args.name, args.root, files=args.files or None, metadata=metadata, parent=args.parent,
                        note=args.note or "", store=store, inherit=args.inherit, file_metadata=file_metadata,
                        check=check)
        ch = m.changes
        print(f"{m.ref}: {len(m.files)} files; +{len(ch.get('added', []))} -{len(ch.get('removed', []))} "
              f"~{len(ch.get('modified', []))} against {m.parent or 'nothing'}")
        splits = {meta["sample"]: meta["split"] for meta in (file_metadata or {}).values() if "sample" in meta}
        for sample, note in sorted(notes.items()):  # a split other than the hash's: said here and in the manifest
            print(f"  {sample} is in {splits[sample]}: {note} (recorded as its files' split_note)")
    elif args.action == "generate":
        from cellscale.train.versions import register_generated_tissue

        m = register_generated_tissue(args.name, args.images, args.seed, args.tissue_style, root=args.root,
                                      store=store, note=args.note or "")
        print(f"{m.ref}: {len(m.files)} generated files under {m.root_path}")
    elif args.action == "list":
        rows = list_versions(store, args.name)
        if args.json:
            print(json.dumps(rows, indent=1))
        for r in [] if args.json else rows:
            print(f"{r['name']}@{r['id']}{' (latest)' if r['latest'] else ''}\t{r['created']}\t{r['files']} files"
                  f"\t{r['bytes'] / 1e6:.1f} MB\tparent {r['parent'] or '-'}\t{r['note']}")
    elif args.action == "show":
        m = load_version(args.ref, store)
        if args.json:
            print(m.to_json(), end="")
            return 0
        print(f"{m.ref}\ncreated {m.created}\nroot {m.root} ({m.root_path})\nparent {m.parent or '-'}\n"
              f"files {len(m.files)} ({sum(f.size for f in m.files) / 1e6:.1f} MB)")
        for key, value in sorted(m.metadata.items()):
            print(f"{key}: {json.dumps(value) if not isinstance(value, str) else value}")
        groups = m.annotations()
        if len(groups) > 1 or any(g["annotator"] != str(m.metadata.get("annotator") or "-") for g in groups):
            print("labels (each file's annotator and source over the set's):")  # e.g. corrections on a parent
            for g in groups:
                print(f"  {g['files']} label file(s): annotator {g['annotator']}; source {g['source']}")
        ch = m.changes
        print(f"changes: +{len(ch.get('added', []))} -{len(ch.get('removed', []))} ~{len(ch.get('modified', []))}"
              f"{': ' + ch['note'] if ch.get('note') else ''}")
        for f in m.files if args.files else []:
            print(f"  {f.path}\t{f.size}\t{f.sha256[:12]}\t{json.dumps(f.metadata, sort_keys=True)}")
    elif args.action == "diff":
        print(json.dumps(diff(load_version(args.a, store), load_version(args.b, store)), indent=1))
    elif args.action == "verify":
        m = load_version(args.ref, store)
        problems = verify(m)
        for line in problems:
            print(line)
        print(f"{m.ref}: {'OK, ' if not problems else ''}{len(m.files)} files, {len(problems)} problem(s)",
              file=sys.stderr)
        return 1 if problems else 0
    return 0


def _models(args) -> int:
    import json

    from cellscale.registry import find_model, list_models, register_model

    if args.action == "add":
        print(register_model(args.folder).ref)
    elif args.action == "list":
        entries = list_models()
        if args.json:
            print(json.dumps([e.to_dict() for e in entries], indent=1))
        if not args.json:
            print("model\tkind\ttrained\tdataset\tparent\theld-out")
        for e in [] if args.json else entries:
            print(f"{e.ref}\t{e.kind}\t{e.trained or '-'}\tdata {e.data or '-'}\tfrom {e.parent}\t{e.headline()}")
    else:
        e = find_model(args.ref)
        if args.json:
            print(json.dumps(e.to_dict(), indent=1))
            return 0
        given = (e.fine_tuned_from or {}).get("path")
        print(f"{e.ref}\nkind {e.kind}\nfolder {e.path}\ntrained {e.trained or '-'}\ndataset {e.data or '-'}\n"
              f"fine-tuned from {e.parent}{f' (--init-from {given})' if given else ''}\n"
              f"command {e.command or '-'}\ncard SHA-256 {e.card_sha256 or '-'}\nheld-out {e.headline() or '-'}")
        metrics = Path(e.path) / "metrics.json"
        comparison = json.loads(metrics.read_text()).get("comparison") if metrics.is_file() else None
        if comparison:  # the card's comparison with the parent, scored on the same held-out data
            from cellscale.train.card import comparison_lines

            print("\n".join(comparison_lines(comparison)).rstrip())
    return 0


def _quantize(args) -> int:
    from cellscale.train.options import QuantizeOptions
    from cellscale.train.quantize import run_quantize

    return run_quantize(QuantizeOptions.from_args(args))


#: ``--store`` of `cellscale data` and `cellscale review import`
STORE_HELP = ("the version store (default: the checkout's data/versions, or $CELLSCALE_VERSIONS); relative roots "
              "resolve against the folder holding its data/ (DIR/../.. for DIR = .../data/versions), else against "
              "DIR's parent")


def _review(args) -> int:
    if args.target == "import":
        if not args.bundle_in or not args.dataset:
            raise UsageError("review import needs BUNDLE and --dataset NAME")
        from cellscale.review import import_bundle

        version = import_bundle(args.bundle_in, args.dataset, args.annotator, args.parent, args.licence,
                                store=args.store)
        tiles = sum(f.metadata.get("role") == "labels" and "/" not in f.path for f in version.files)  # this root's
        print(f"{args.bundle_in} -> dataset version {version.ref} ({tiles} corrected tile(s); parent "
              f"{version.parent or 'none'}; files in {version.root_path})")
        return 0
    if args.bundle_in:
        raise UsageError(f"{args.bundle_in}: a second argument is only for `review import BUNDLE`")
    missing = [o for o, v in (("--sample S", args.sample), ("-o BUNDLE", args.output)) if not v]
    if missing:
        why = " (--sample names the tiles and their dataset files, with --image/--labels too)" \
            if not args.sample and (args.image or args.labels) else ""
        raise UsageError(" and ".join(f"{o} is required" for o in missing) + why)
    region = None
    if args.region:
        try:
            (y0, y1), (x0, x1) = (map(int, part.split(":")) for part in args.region.split(","))
        except ValueError:
            raise UsageError(f"--region {args.region!r}: expected Y0:Y1,X0:X1 (pixels)") from None
        region = (y0, y1, x0, x1)
    from cellscale.review import ReviewOptions, export_review, locate
    from cellscale.segment.predictor import Predictor

    _replaceable(args.output, "review bundle (a bundle with corrections is not replaced: import them, then export "
                              "to a new folder)",
                 lambda p: p.parts[0] in ("bundle.json", "README.txt") or re.fullmatch(r"tile_\d+\.zarr", p.parts[0]))
    inputs = locate(args.target, args.sample, args.compartment, config=args.config, image=args.image,
                    labels=args.labels, model=args.model,
                    channels={"nuclear": args.nuclear_channel, "membrane": args.membrane_channel})
    options = ReviewOptions(n_tiles=args.tiles, tile=args.tile_size, compartment=args.compartment, frame=args.frame,
                            random=args.random, seed=args.seed, region=region, ngff=args.ngff)
    predictor = Predictor(inputs.model, precision=args.precision, augment="none")  # the two passes kept apart
    manifest = export_review(predictor, inputs, args.output, options)
    for tile in manifest["tiles"]:
        signals = ", ".join(f"{k} {v:.3g}" for k, v in tile["signals"].items())
        print(f"{tile['name']}: box y {tile['box'][0]}:{tile['box'][1]} x {tile['box'][2]}:{tile['box'][3]}, "
              f"score {tile['score']:.3f} ({signals})")
    print(f"{len(manifest['tiles'])} of {manifest['selection']['candidates']} tiles "
          f"({manifest['selection']['method']}) -> {args.output}; open one with: napari {args.output}/tile_000.zarr")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from cellscale.segment.predictor import (  # numpy only: the network libraries load when a command runs
        AUGMENTATIONS,
        PRECISIONS,
    )
    from cellscale.cost.model import Overheads  # dataclasses only: the planner's defaults
    # the config schema's defaults (PyYAML, no numpy)
    from cellscale.settings import choices, default, schema

    parser = argparse.ArgumentParser(
        prog="cellscale", description="Single steps of the workflow, the same code it runs, on the command line. "
                                      "Run `cellscale COMMAND --help` for each command below.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "samples", help="write a sample sheet (config/samples.tsv) from a glob pattern; reads no image",
        description="Write a sample sheet, one row per image file (PNG, TIFF, OME-TIFF) or OME-Zarr folder that "
                    "PATTERN matches ('**' matches any number of folders; quote the pattern), sorted by path. It "
                    "only lists files and never opens an image, so 10^4 files take seconds; the channel options "
                    "are not checked against the images. Sample names are the paths relative to the pattern's "
                    "fixed leading folders, without the image suffix, with characters other than A-Z a-z 0-9 _ . "
                    "- replaced by '_' (plate1/A01/s1.tif -> A01_s1 for 'plate1/**/*.tif'); paths that give the "
                    "same name are told apart deterministically: the first in path order keeps it, the next get "
                    "_2, _3 ... The image column holds the paths as the pattern gives them (relative to the "
                    "current folder for a relative pattern: run the workflow from the same folder). "
                    "With --kind timelapse a folder of frame files it matches is one movie ('ctc/*/01' lists "
                    "each Cell Tracking Challenge sequence; 'ctc/*/01/*.tif' would make each frame a sample).")
    p.add_argument("pattern", help="glob pattern of the image files, e.g. 'plate1/**/*.tif'")
    p.add_argument("--kind", required=True, choices=schema("samples")["properties"]["kind"]["enum"],
                   help="the kind of every sample")
    p.add_argument("--nuclear-channel", type=_channel_arg, default=None,
                   help="0-based nuclear channel of every image")
    p.add_argument("--membrane-channel", type=_channel_arg, default=None,
                   help="0-based membrane channel of every image")
    p.add_argument("--channel-names", default=None, help="comma-separated channel names of every image")
    p.add_argument("--pixel-size-um", type=float, default=None, help="micrometres per pixel of every image")
    p.add_argument("--frame-interval-s", type=float, default=None, metavar="SECONDS",
                   help="seconds between frames of every movie (--kind timelapse only; default: the column is "
                        "empty, and the workflow takes each movie's metadata's)")
    p.add_argument("--pattern", dest="regex", default=None, metavar="REGEX",
                   help="regular expression searched in each image path; each named group becomes a column, "
                        "e.g. '(?P<well>[A-H]\\d{2})_s(?P<site>\\d+)' adds well and site. A file it does not "
                        "match is an error naming it (see --skip-unmatched). A group named channel makes the files "
                        "of one --name one image, one file per channel in the group's order (numeric when all "
                        "are digits), e.g. '(?P<well>[A-P]\\d{2})_s(?P<site>\\d+)_w(?P<channel>\\d+)' for "
                        "MetaXpress's A01_s2_w1.TIF; a field missing a channel others have is an error naming "
                        "the field and the channel")
    p.add_argument("--name", default=None, metavar="TEMPLATE",
                   help="sample names from --pattern's groups, e.g. '{well}_s{site}' ({name}: the name derived "
                        "from the path); made valid as above; two files given the same name are an error (with a "
                        "channel group: the files of one field, one image)")
    p.add_argument("--skip-unmatched", action="store_true",
                   help="leave out files --pattern does not match (and fields missing a channel others have)")
    p.add_argument("--sizes", action="store_true",
                   help="add height and width from each file's header, so the workflow's batch plan opens no image "
                        "(on a cluster without a shared disk it then downloads none)")
    p.add_argument("-o", "--output", default="-",
                   help="sheet to write, atomically (default: -, stdout); e.g. config/samples.tsv")
    p.set_defaults(func=_samples)

    p = sub.add_parser(
        "segment", help="segment nuclei or whole cells in an image or a folder of images",
        description="Segment INPUT (a PNG/TIFF/OME-TIFF/OME-Zarr image, or a folder of them, all in one process "
                    "with the model "
                    "loaded once). For a folder, OUTPUT is a folder receiving one 32-bit label TIFF per input "
                    "with the same stem; for one file, OUTPUT is the label file (or a folder if it ends with /). "
                    "A 2-D single-channel image is nuclear. A 3-channel image with no --nuclear-channel is "
                    "treated as colour (H&E / brightfield): its luminance, inverted when the background is "
                    "bright, is the nuclear channel. Multichannel images: give --nuclear-channel (and "
                    "--membrane-channel for whole cells).")
    p.add_argument("input", help="an image, a folder of images, or a still image's files, one per channel, as "
                                 "'A01_w1.TIF|A01_w2.TIF' (quoted)")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--compartment", choices=["nuclear", "whole-cell"], default="nuclear")
    p.add_argument("--nuclear-channel", type=_channel_arg, default=None,
                   help="0-based channel index of the nuclear stain")
    p.add_argument("--membrane-channel", type=_channel_arg, default=None,
                   help="0-based channel index of the membrane stain")
    p.add_argument("--model", default=None, help="model folder, shipped model name (nuclear, tissue) or registry "
                   "NAME@VERSION (default: the shipped nuclear or tissue model, or the one in the folder "
                   "$CELLSCALE_MODELS names)")
    p.add_argument("--tile", type=_number_arg(int, 1, "a window edge in pixels, at least 1"),
                   default=default("tiling", "tile"), help="model window edge in pixels")
    p.add_argument("--overlap", type=_number_arg(int, 0, "a window overlap in pixels, at least 0"),
                   default=default("tiling", "overlap"), help="window overlap in pixels")
    passes = p.add_mutually_exclusive_group()
    passes.add_argument("--batch-mpx", type=_number_arg(float, 0, "megapixels, above 0", above=True),
                        default=default("segment", "batch_mpx"),
                        help="megapixels of windows per forward pass, as the workflow's segment.batch_mpx (memory "
                             "grows with it)")
    passes.add_argument("--batch-size", type=_number_arg(int, 1, "a whole number of windows, at least 1"), default=None,
                        help="a fixed number of windows per forward pass instead of --batch-mpx")
    p.add_argument("--precision", default=default("segment", "precision"), choices=["auto", *PRECISIONS],
                   help="network arithmetic (auto: the model's int8 copy when it has one)")
    p.add_argument("--augment", default=default("segment", "augment"), choices=list(AUGMENTATIONS),
                   help="test-time augmentation: average each window's maps with its half turn (rot180, 2 network "
                        "passes) or its three flips (flips, 4 passes); a little more accurate")
    p.add_argument("--gamma", type=_number_arg(float, 0, "a positive exponent", above=True), default=1.0,
                   help="intensity exponent before normalisation; below 1 lifts dim nuclei (GOWT1: 0.35 with "
                        "--scale 0.5)")
    p.add_argument("--pixel-size", type=_number_arg(float, 0, "micrometres per pixel, above 0", above=True),
                   default=None, help="um per pixel of the input (default: the size its OME, ImageJ or OME-Zarr "
                                      "metadata states); resampled to the model's pixel size when it declares one")
    p.add_argument("--scale", type=_scale_arg, default=None,
                   help="resample by this factor before segmenting (model pixels per image pixel; overrides "
                        "--pixel-size): 0.5 for nuclei about twice the size the model was trained on; labels "
                        "come back on the input's grid. auto: outside the sizes the model was trained on, "
                        "resample to their median, measured from a first pass on a crop (the model must record "
                        "its training sizes, as models/nuclear does). Default: from --pixel-size when the model "
                        "declares a pixel size, else 1; with --timelapse, auto (segment.timelapse_scale, as the "
                        "workflow's time-lapse samples), or 1 for a model that records no training sizes")
    p.add_argument("--timelapse", action="store_true",
                   help="the input is one movie: a folder of frame files (t000.tif ...) segmented as one (T, Y, X) "
                        "stack, normalised over the whole movie as the workflow does (without it, each file of a "
                        "folder is an image of its own); a 3-D TIFF without axis metadata is (T, Y, X)")
    _frame_interval_option(p, "with --timelapse: seconds between frames, written into the labels' OME metadata "
                              "(TimeIncrement) for measure and track (default: the interval the movie's OME, ImageJ "
                              "or OME-Zarr metadata states; a given one that differs from it by over 1%% wins, with "
                              "a warning)")
    p.set_defaults(func=_segment)

    p = sub.add_parser("measure", help="per-cell table (MCMICRO columns) from a label image and its image",
                       description="Measure every cell of LABELS (a 2-D label TIFF) in IMAGE (C, Y, X): CellID, "
                                   "mean intensity per channel, X/Y centroid, Area, axis lengths, Eccentricity, "
                                   "Solidity, Extent, Orientation, identical to scikit-image's regionprops. A "
                                   "movie's labels (a (T, Y, X) stack, as cellscale segment --timelapse writes it, "
                                   "or a folder of per-frame label TIFFs) are measured frame by frame in the movie "
                                   "(a T-stack or a frame folder) into the workflow's table of a time-lapse: "
                                   "compartment, frame (from 0), time, nucleus_id, cell_id, and track_id and "
                                   "parent_track_id with --tracks.")
    p.add_argument("labels", help="a label image, or a movie's labels: a (T, Y, X) stack or a folder of frames")
    p.add_argument("image", help="the image (C, Y, X), or the movie the labels were segmented from")
    p.add_argument("-o", "--output", required=True, help="CSV file to write")
    p.add_argument("--channel-names", default=None,
                   help="comma-separated names (default: OME metadata, else R,G,B of a colour picture, else ch0..)")
    p.add_argument("--extra-stats", action="store_true", default=default("measure", "extra_stats"),
                   help="add sum, median, std, 25th/75th percentiles")
    p.add_argument("--parquet", action="store_true", help="also write a Parquet file next to the CSV")
    p.add_argument("--tracks", default=None, metavar="TRACKS.parquet",
                   help="a movie's tracks table (cellscale track --table, from the same labels): each cell's "
                        "track_id and parent_track_id, as in the workflow's table")
    _frame_interval_option(p, "a movie's seconds between frames, for the time column (default: the interval the "
                              "labels' OME metadata states, else the one the movie's metadata states; a given one "
                              "that differs from it by over 1%% wins, with a warning)")
    p.set_defaults(func=_measure)

    p = sub.add_parser("mcquant", help="a cell table as MCMICRO's per-image, per-mask CSVs (SCIMAP, cylinter)",
                       description="Split TABLE (results/cells.parquet, a batch's results/cells/batch_BATCH.parquet "
                                   "or a sample's results/measurements/SAMPLE.csv) into the CSVs MCMICRO's MCQuant "
                                   "writes: one per image and compartment, OUT/SAMPLE_COMPARTMENT.csv, with CellID, "
                                   "the sample's marker means, X_centroid ... Orientation, as SCIMAP's "
                                   "mcmicro_to_scimap and cylinter read them. Time-lapse rows are left out.")
    p.add_argument("table")
    p.add_argument("-o", "--output", required=True, help="folder to write the CSVs to")
    p.add_argument("--name", default=None, help="the sample of a table without a sample column (default: the "
                                                  "table file's name without its suffix)")
    p.set_defaults(func=_mcquant)

    p = sub.add_parser("track", help="link per-frame labels into tracks and lineages (CTC result folder)",
                       description="Track the cells of LABELS_DIR (a folder of per-frame label TIFFs, e.g. "
                                   "mask000.tif..., or a CTC TRA folder: a mask for every frame) and write a Cell "
                                   "Tracking Challenge result folder (maskNNN.tif relabelled by track, res_track.txt "
                                   "'L B E P').")
    p.add_argument("labels_dir", help="a folder of one label TIFF per frame (maskNNN.tif, t000.tif ...), or one "
                                      "(T, Y, X) label stack, as `cellscale segment` writes a movie's")
    p.add_argument("-o", "--output", required=True, help="CTC result folder to write")
    p.add_argument("--max-distance", type=_number_arg(float, 0, "a distance in pixels, above 0", above=True),
                   default=default("track", "max_distance"),
                   help="largest link in pixels (default: estimated)")
    p.add_argument("--max-gap", type=_number_arg(int, 0, "a whole number of frames, at least 0"),
                   default=default("track", "max_gap"), help="frames a cell may be missing")
    p.add_argument("--divisions", action=argparse.BooleanOptionalAction, default=default("track", "divisions"),
                   help="detect divisions (--no-divisions: do not)")
    p.add_argument("--solver", choices=choices("track", "solver"), default=default("track", "solver"),
                   help="lap: fast frame-to-frame linear assignment; ilp: integer program over a window of "
                        "frames choosing links, gaps and divisions jointly (default: %(default)s)")
    p.add_argument("--costs", choices=choices("track", "costs"), default=default("track", "costs"),
                   help="rules: weighted distance, overlap, size terms; learned: the trained scorer's -log p; "
                        "auto: learned for packed cells, rules otherwise (default: %(default)s)")
    p.add_argument("--scorer", default=default("track", "scorer"),
                   help="scorer folder for --costs learned (default: the shipped models/track-scorer)")
    p.add_argument("--table", default=None,
                   help="also write the tracks table (Parquet) here, as the workflow's: frame, time (seconds since "
                        "frame 0; empty where the frame interval is unknown), label, track_id ...")
    p.add_argument("--image", default=None,
                   help="the movie the labels were segmented from (a frame folder or a T-stack): its nuclear "
                        "intensities enter the link and division costs (track.intensity_weight), as in the workflow")
    p.add_argument("--nuclear-channel", type=_channel_arg, default=None, help="the movie's nuclear channel (default 0)")
    _frame_interval_option(p, "seconds between frames, for the --table's time column (default: the interval the "
                              "labels' OME metadata states, as cellscale segment --timelapse writes it, else the one "
                              "--image's metadata states; a given one that differs from it by over 1%% wins, with a "
                              "warning)")
    p.set_defaults(func=_track)

    p = sub.add_parser("train-tracker", help="train the learned scorer of links and divisions (track.costs: learned)",
                       description="Generate the training movies (dense colonies and sparse time-lapses, seeds 1-14, "
                                   "and colonies of randomised kinds, seeds 21-36; "
                                   "cellscale.track.training.TRAINING_MOVIES), fit gradient-boosted trees on the "
                                   "features of their candidate links and divisions and write the scorer folder "
                                   "(scorer.json + trees.npz; the shipped one is models/track-scorer). Needs "
                                   "scikit-learn.")
    p.add_argument("-o", "--output", required=True, help="scorer folder to write")
    p.add_argument("--trees", type=_number_arg(int, 1, "a whole number of iterations, at least 1"), default=100,
                   help="boosting iterations of each model (default: %(default)s)")
    p.add_argument("--depth", type=_number_arg(int, 1, "a whole number of levels, at least 1"), default=6,
                   help="largest depth of a tree (default: %(default)s)")
    p.add_argument("--seed", type=_seed_arg, default=0, help="seed of the tree fitting")
    p.add_argument("--weighting", choices=["movie-divisions", "rows"], default="movie-divisions",
                   help="movie-divisions: in the division model every training movie weighs the same (the "
                        "sparse time-lapses have far fewer candidates than the colonies), in the link model every "
                        "candidate; rows: every candidate the same in both (default: %(default)s)")
    p.add_argument("--movies", type=_number_arg(int, 1, "a whole number of movies, at least 1"), default=None,
                   help="use only the first N generated movies (quick runs)")
    p.add_argument("--frames", type=_number_arg(int, 2, "a whole number of frames, at least 2"), default=None,
                   help="frames of each generated movie (default: theirs)")
    p.add_argument("--ctc", action="append", default=[],
                   help="also train on this CTC ground-truth folder (e.g. .../Fluo-N2DH-SIM+/01_GT; repeatable); "
                        "a sequence trained on is no held-out test any more: evaluate only on the others")
    p.set_defaults(func=_train_tracker)

    p = sub.add_parser("evaluate-tracks", help="score a CTC result folder against ground truth (py-ctcmetrics)",
                       description="Print TRA, DET, LNK and division precision/recall/F1 of RESULT_DIR against "
                                   "GT_DIR (the folder holding TRA/), and where GT_DIR has SEG/ (man_segNNN.tif, "
                                   "masks of some frames) SEG, OP_CSB = (SEG + DET) / 2 and OP_CTB = (SEG + TRA) / "
                                   "2, as the Cell Tracking Challenge ranks methods; without SEG/ they are not "
                                   "scored (said on stderr).")
    p.add_argument("result_dir")
    p.add_argument("gt_dir")
    p.add_argument("--frames", type=_frame_range, default=None, metavar="N|START:STOP",
                   help="score a part of the movie, for a result of those frames only (numbered from 0, as the "
                        "workflow numbers them): N is its first N frames (0:N); START:STOP frames START to STOP - 1 "
                        "of the ground truth, half-open as in Python (50:100: t050 to t099; 50: to the last). The "
                        "ground truth is cut there and renumbered from 0; a track that begins before START begins "
                        "at 0 with no parent, as the CTC cuts a sequence; SEG scores the SEG masks of frames in "
                        "the range")
    p.set_defaults(func=_evaluate_tracks)

    p = sub.add_parser("synth", help="generate seeded test images with known ground truth",
                       description="Generate a multichannel tissue image (DNA, membrane, two markers), a "
                                   "time-lapse of moving, dividing nuclei (timelapse) or a dense colony of "
                                   "growing, dividing rod-shaped or round cells that push each other (colony), "
                                   "with ground truth (time-lapse and colony: CTC TRA/ folder), deterministic "
                                   "for a seed.")
    p.add_argument("kind", choices=["tissue", "timelapse", "colony"])
    p.add_argument("-o", "--output", required=True, help="image file to write (.ome.tif)")
    p.add_argument("--truth-dir", default=None, help="folder for the ground truth (default: next to the image)")
    p.add_argument("--seed", type=_seed_arg, default=0)
    p.add_argument("--size", type=_number_arg(int, 40, "an image edge in pixels, at least 40"), default=512,
                   help="image edge in pixels")
    p.add_argument("--cells", type=_number_arg(int, 1, "a whole number of cells, at least 1"), default=None,
                   help="number of cells (colony: founder cells in the first frame, default 6)")
    p.add_argument("--frames", type=_number_arg(int, 2, "a whole number of frames, at least 2"), default=None,
                   help="time-lapse frames (default: timelapse 30, colony 50)")
    p.add_argument("--shape", choices=["rod", "round"], default="rod",
                   help="colony only: rod-shaped cells that elongate along their axis (E. coli-like, the default) "
                        "or round cells that grow in area (yeast-like)")
    p.add_argument("--doubling", type=_number_arg(float, 0, "frames above 0", above=True), default=8.0,
                   help="colony only: mean doubling time in frames (default 8: 6 founders give about 300 cells "
                        "after 50 frames)")
    p.add_argument("--motion", type=_number_arg(float, 0, "px per frame, at least 0"), default=0.3,
                   help="colony only: random-walk step of each cell in px/frame, on top of the pushes of its "
                        "growing neighbours (default 0.3)")
    p.set_defaults(func=_synth)

    p = sub.add_parser("train", help="train a segmentation model and write it with its model card",
                       description="Train the U-Net (inner distance + 3-class heads) on DSB2018 nuclei (a folder "
                                   "with images/, masks/, index.csv) or on generated tissue ('synthetic-tissue'), "
                                   "resumable from --run-dir; then tune post-processing on the validation split, "
                                   "score the held-out split against the Otsu baseline and write model.keras, "
                                   "model.json, metrics.json and MODEL_CARD.md into --out.")
    p.add_argument("--data", required=True,
                   help="a dataset version (NAME@ID, NAME@latest or NAME, its latest: cellscale data list), a "
                        "DSB2018 folder or 'synthetic-tissue'")
    p.add_argument("--out", required=True, help="model folder to write")
    p.add_argument("--run-dir", required=True, help="folder for checkpoints (rerun to resume)")
    p.add_argument("--steps", type=_number_arg(int, 1, "a whole number of steps, at least 1"), default=3000,
                   help="training steps (batches)")
    p.add_argument("--batch", type=_number_arg(int, 1, "a whole number of crops, at least 1"), default=8)
    p.add_argument("--tile", type=_number_arg(int, 1, "a crop edge in pixels, a multiple of 2 ** --depth"),
                   default=256, help="training crop size (a multiple of 2 ** --depth)")
    p.add_argument("--base-filters", type=_number_arg(int, 1, "a whole number of filters, at least 1"), default=16)
    p.add_argument("--depth", type=_number_arg(int, 1, "a whole number of levels, at least 1"), default=4)
    p.add_argument("--lr", type=_number_arg(float, 0, "a learning rate above 0", above=True), default=2e-3,
                   help="peak learning rate (cosine decay over --steps)")
    p.add_argument("--init-from", default=None,
                   help="start from this model's weights (a model folder, a .keras file or a registry name "
                        "NAME[@VERSION]; same architecture) with a fresh optimizer: fine-tuning; the card records "
                        "the parent and compares the two on the same held-out data")
    p.add_argument("--seed", type=_seed_arg, default=0)
    p.add_argument("--images", type=_images_arg, default=24,
                   help="generated images (synthetic-tissue only)")
    p.add_argument("--tissue-style", choices=("sparse", "dense", "mixed"), default=None,
                   help="synthetic-tissue only: separate cells with crisp membranes (sparse, the default), "
                        "packed cells with large nuclei and faint membranes like a CODEX tile (dense), or both")
    p.add_argument("--codex", default=None,
                   help="synthetic-tissue only: also train on the CODEX tile in this folder or version (NAME@ID; "
                        "columns < 960; whole-cell labels from both experts, see --codex-labels), and report its "
                        "held-out columns")
    labels = p.add_mutually_exclusive_group()
    # the choices are train.CODEX_LABELS (not imported here: the command line starts without numpy)
    labels.add_argument("--codex-labels", choices=("expert1", "expert2", "consensus"), nargs="+", default=None,
                        help="the CODEX whole-cell labels: the union of both experts' cells with expert 1's "
                             "(default) or expert 2's outline where both drew one, or 'consensus': only the "
                             "cells both drew, outlined between the two; several: each as often")
    labels.add_argument("--codex-first", type=int, choices=(1, 2), nargs="+", default=None,
                        help="the same as --codex-labels expert1 / expert2 (the older spelling)")
    p.add_argument("--codex-share", type=_number_arg(float, 0, "a share above 0 and at most 1", above=True, high=1),
                   default=None,
                   help="with --codex: the share of training crops drawn from the CODEX tile (default 0.5; the "
                        "rest from generated tissue)")
    p.add_argument("--note", default=None, help="a line for the model card (e.g. how the run was scheduled)")
    p.add_argument("--workers", type=_number_arg(int, 0, "a whole number of processes, at least 0"), default=0,
                   help="make the training crops in this many processes (for a GPU, which trains faster than one "
                        "core crops); 0: in the training process")
    p.add_argument("--fit-only", action="store_true",
                   help="train and write the network, then stop: for a GPU node without TensorFlow (the int8 "
                        "copy needs it); rerun without it, same --run-dir, to tune, score and write the card")
    p.set_defaults(func=_train)

    p = sub.add_parser("quantize", help="add an 8-bit copy of a model for fast CPU inference",
                       description="Write MODEL/model.int8.tflite (8-bit weights and activations, calibrated on "
                                   "the validation images of --data) and record it in MODEL/model.json; "
                                   "segment.precision 'auto' or 'int8' then uses it.")
    p.add_argument("model", help="model folder (model.json + model.keras)")
    p.add_argument("--data", required=True, help="DSB2018 folder or 'synthetic-tissue'")
    p.add_argument("--codex", default=None, help="synthetic-tissue only: also calibrate on this CODEX tile")
    p.add_argument("--window", type=_number_arg(int, 1, "a window edge in pixels, a multiple of the model's"),
                   default=512, help="window edge the copy is built for (px; a multiple of the model's tile_multiple)")
    p.add_argument("--seed", type=_seed_arg, default=0)
    p.set_defaults(func=_quantize)

    p = sub.add_parser("data", help="dataset versions: add, list, show, diff, verify, generate (docs/data.md)",
                       description="Immutable, content-hashed versions of annotated data sets, stored as JSON "
                                   "manifests under data/versions/NAME/ (files stay where they are). See "
                                   "docs/data.md.")
    p.add_argument("--store", default=None, help=STORE_HELP)
    store_option = argparse.ArgumentParser(add_help=False)  # --store after the action as well as before it
    store_option.add_argument("--store", default=argparse.SUPPRESS, help=STORE_HELP)
    data = p.add_subparsers(dest="action", required=True)
    q = data.add_parser("add", help="record a new version of NAME from the files under ROOT", parents=[store_option])
    q.add_argument("name")
    q.add_argument("root", help="folder the files' paths are relative to; a relative ROOT is relative to the "
                                "store's base (the checkout for data/versions; see --store), not the current "
                                "folder")
    q.add_argument("--files", nargs="+", default=None, help="glob patterns or paths under ROOT (default: all)")
    q.add_argument("--compartments", nargs="+", choices=("nuclear", "whole_cell", "cytoplasm"), default=None)
    q.add_argument("--meta", action="append", metavar="KEY=VALUE",
                   help="set metadata (VALUE as JSON if it parses): organ, tissue, platform, stain, channels, "
                        "pixel_size_um, source, licence, annotator; repeat")
    q.add_argument("--metadata", default=None, help="a JSON file of the set's metadata")
    q.add_argument("--parent", default=None, help="the version this one changes (NAME@ID or NAME@latest)")
    q.add_argument("--inherit", action="store_true", help="start from the parent's files and metadata")
    q.add_argument("--layout", choices=("pairs", "dsb2018"), default=None,
                   help="images/<id>.* + masks/<id>.*: records each file's sample, role and split (a hash of the "
                        "id: 80/10/10 train/val/test), the training pairs, each read and checked first; pairs: your "
                        "own data (give its ontology with --compartments and --meta; a sample keeps its split in "
                        "--parent, else in NAME's latest; 3 or more samples: an empty val or test split gets one); "
                        "dsb2018: also the DSB2018 ontology and each file's kind (from index.csv)")
    q.add_argument("--splits", default=None, metavar="FILE",
                   help="with --layout pairs: a CSV/TSV table of columns sample and split (train, val or test) "
                        "that sets those samples' splits")
    q.add_argument("--note", default=None, help="what changed, in words")
    q = data.add_parser("generate", parents=[store_option],
                        help="generate a tissue training set and record it as a version (the same files and "
                             "metadata as a stored version: that version, no new one)")
    q.add_argument("name", nargs="?", default="synthetic-tissue")
    q.add_argument("--images", type=_images_arg, default=24)
    q.add_argument("--seed", type=_seed_arg, default=0)
    q.add_argument("--tissue-style", choices=("sparse", "dense", "mixed"), default="sparse")
    q.add_argument("--root", default=None, help="where to write it (default train_runs/generated/...; relative: "
                                                "to the store's base, see --store)")
    q.add_argument("--note", default=None)
    q = data.add_parser("list", help="the versions by name, oldest first within a name", parents=[store_option])
    q.add_argument("name", nargs="?", default=None)
    q.add_argument("--json", action="store_true")
    q = data.add_parser("show", help="one version: metadata, changes (and --files)", parents=[store_option])
    q.add_argument("ref", help="NAME@ID, NAME@latest or NAME")
    q.add_argument("--files", action="store_true")
    q.add_argument("--json", action="store_true", help="the manifest itself")
    q = data.add_parser("diff", help="files added, removed, modified and metadata changed from A to B",
                        parents=[store_option])
    q.add_argument("a")
    q.add_argument("b")
    q = data.add_parser("verify", help="recompute every file's size and SHA-256 (exit 1 on a problem)",
                        parents=[store_option])
    q.add_argument("ref")
    p.set_defaults(func=_data)

    p = sub.add_parser("models", help="the model registry: list, show, add (docs/data.md)",
                       description="Every shipped model folder (the segmentation networks and the tracking scorer) "
                                   "and every registered one, with its kind, version (hash of its weights), dataset "
                                   "version, held-out scores, command, date and parent.")
    models = p.add_subparsers(dest="action", required=True)
    q = models.add_parser("list")
    q.add_argument("--json", action="store_true")
    q = models.add_parser("show")
    q.add_argument("ref", help="NAME, NAME@VERSION or NAME@latest")
    q.add_argument("--json", action="store_true")
    q = models.add_parser("add", help="register a model folder outside the shipped ones")
    q.add_argument("folder")
    p.set_defaults(func=_models)
    from cellscale.deploy.gke import build_parser as gke_parser

    p = sub.add_parser("gke", help="create, print or delete the GKE cluster of profiles/gke (docs/gke.md)",
                       description="Create (up), show (print, or up --dry-run) or delete (down) the Google "
                                   "Kubernetes Engine cluster, node pools, bucket and manifests that "
                                   "profiles/gke expects. See docs/gke.md.")
    gke_parser(p)
    p.set_defaults(func=_gke)
    from cellscale.deploy.sizing import build_parser as size_parser

    p = sub.add_parser("size", help="per-rule mem_mb (and runtime) for a profile from the benchmark files",
                       description="Print the set-resources: block of profiles/slurm (mem_mb, runtime) or "
                                   "profiles/gke (mem_mb) from the rules' benchmark files (FOLDER, default "
                                   "results/benchmarks, one folder per rule): peak RSS x headroom rounded up to "
                                   "500 MB, slowest job x headroom in minutes. See docs/hpc.md, docs/gke.md.")
    size_parser(p)
    p.set_defaults(func=_size)

    p = sub.add_parser("plan", help="node pools, shard size and jobs for a deadline or a budget (PuLP), with the "
                                    "predicted time and cost",
                       description="Choose the GKE node pools (machine type, count, spot), the shard size and "
                                   "Snakemake's jobs for a workload: the least cost within --deadline, or the least "
                                   "time within --budget, from a price table and throughput profiles. See "
                                   "docs/cost.md.")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--sheet", type=Path, default=None, help="a sample sheet: images and sizes from its files")
    what.add_argument("--images", type=_images_arg, default=None,
                      help="number of images (with --mpx)")
    p.add_argument("--mpx", type=_number_arg(float, 0, "megapixels per image, above 0", above=True), default=None,
                   help="with --images: megapixels per image (default 1)")
    p.add_argument("--decoded-mb-per-mpx", type=_number_arg(float, 0, "MB per Mpx above 0", above=True),
                   default=None, metavar="MB",
                   help="MB a field takes decoded per Mpx, every channel (bytes per pixel x channels: 1 for one 8-bit "
                        "channel, 6 for three 16-bit ones), which a GPU segment_batch job holds for its whole batch "
                        "(default: from --sheet's image headers, else the stored size, 2: one 16-bit channel)")
    p.add_argument("--no-sheet-sizes", action="store_true",
                   help="with --images: the sheet will not give image sizes (cellscale samples without --sizes), "
                        "so the batch plan downloads every image to read its size")
    goal = p.add_mutually_exclusive_group(required=True)
    goal.add_argument("--deadline", type=_number_arg(float, 0, "hours above 0", above=True), default=None,
                      help="hours: the least cost within it")
    goal.add_argument("--budget", type=_number_arg(float, 0, "US dollars above 0", above=True), default=None,
                      help="USD: the least time within it")
    p.add_argument("--max-gpus", type=_number_arg(int, 0, "a whole number of GPUs, at least 0"), default=None,
                   help="GPU quota (default: none; 0 plans without GPUs)")
    p.add_argument("--max-nodes", type=_number_arg(int, 1, "a whole number of nodes, at least 1"), default=100,
                   help="most nodes in all pools (default 100)")
    p.add_argument("--prices", default="gke-us-central1",
                   help="price table: a name in config/prices (else among the shipped tables) or a path")
    p.add_argument("--profiles", type=Path, default=None,
                   help="folder of throughput profiles (default: the shipped profiles, those in the current "
                        "folder's config/throughput replacing them by machine type)")
    p.add_argument("--preemption", type=_preemption_arg, default=0.05,
                   help="spot preemptions per node-hour, from 0 to 1 (default 0.05 = 5%%)")
    p.add_argument("--on-demand", action="store_true", help="no spot nodes")
    p.add_argument("--storage-call-ms", type=_number_arg(float, 0, "milliseconds, at least 0"),
                   default=Overheads.storage_call_s * 1000,
                   help="ms a Cloud Storage request from the launcher takes (default %(default)g, assumed): it asks "
                        "about every field one request after another before the first job; 0 leaves that out")
    p.add_argument("--no-run-tables", action="store_true",
                   help="plan segmentation alone: leave out the run-level tail (aggregate_measurements, "
                        "report_fields, summary), whose time and memory grow with the whole run")
    p.add_argument("--formats", nargs="+", default=None, choices=[*choices("output", "formats"), "none"],
                   help="output.formats the run writes (default: --config's, else the schema's); ome-zarr and "
                        "spatialdata add a job and some 7-17 Cloud Storage objects per batched image; mcquant one "
                        "job a run, after the run-level tables, and a CSV per image and compartment")
    p.add_argument("--label-files", default=None, choices=choices("batches", "label_files"),
                   help="batches.label_files the run writes (default: --config's, else the schema's): per_batch "
                        "writes one file per batch and compartment instead of one per image")
    p.add_argument("--read-fields", default=None, choices=choices("batches", "read_fields"),
                   help="batches.read_fields the run uses (default: --config's, else the schema's): direct, each "
                        "batch job downloads its images itself, one Cloud Storage request a field, and the launcher "
                        "asks about none of them (docs/cost.md)")
    p.add_argument("--augment", default=None, choices=choices("segment", "augment"),
                   help="segment.augment the run uses (default: --config's, else the schema's): network passes per "
                        "window, none 1, rot180 2, flips 4; CPU profiles measured with another are scaled")
    p.add_argument("--pilot", type=Path, default=None, metavar="RESULTS",
                   help="a pilot run's results folder: the files and bytes its batch exports wrote per image "
                        "replace the shipped figures (measured on 1-Mpx fields)")
    p.add_argument("--config", type=Path, default=None,
                   help="the workflow config whose output.formats, batches.label_files and segment.augment the "
                        "plan prices (default config/config.yaml where it exists)")
    p.add_argument("--simulate", type=_number_arg(int, 0, "a whole number of seeds, at least 0"), default=3,
                   metavar="SEEDS",
                   help="run the chosen plan through the event simulation (SimPy) with SEEDS seeds of preemption "
                        "(one run when nothing is random) and print its time and cost beside the prediction; where "
                        "the simulated run misses the deadline or the budget, plan again with the limit scaled by "
                        "the prediction's error (up to 3 times). With --out it draws DIR/simulated.png, nodes and "
                        "running jobs over time. 0: the prediction alone (default 3)")
    p.add_argument("--segment-machines", nargs="+", default=None, metavar="TYPE",
                   help="only these machine types for segment_batch (e.g. g2-standard-4)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument("--out", type=Path, default=None,
                   help="write DIR/plan.json, DIR/config.yaml and DIR/plan-config.yaml (for snakemake "
                        "--workflow-profile DIR and cellscale gke up --plan DIR) and, with --simulate, "
                        "DIR/simulated.png")
    p.add_argument("--gke-profile", type=Path, default=Path("profiles/gke"),
                   help="the GKE profile whose set-resources the written profile repeats (default profiles/gke)")
    p.set_defaults(func=_plan)

    p = sub.add_parser("throughput", help="fit a throughput profile (per rule: seconds and memory per job and per "
                                          "Mpx) from a run's benchmark files",
                       description="Fit per rule fixed_s + s_per_mpx x Mpx (wall time) and mem_mb + mem_mb_per_mpx "
                                   "x Mpx (peak memory) by non-negative least squares over the jobs of a pilot run "
                                   "(RESULTS/benchmarks and the plans in RESULTS), label every figure measured "
                                   "with where, when and how, print the profile and write it (default "
                                   "config/throughput/NAME.yaml) for `cellscale plan`. See docs/cost-report.md.")
    p.add_argument("results", type=Path, nargs="*", default=[Path("results")], metavar="RESULTS",
                   help="results folders of one or more runs on that machine type (default: results); each has "
                        "benchmarks/ and the plans (runs of several image sizes separate fixed from per-Mpx time)")
    p.add_argument("--machine", required=True, help="the machine type the run measured (a price table key, or "
                                                    "'local')")
    p.add_argument("--name", default=None, help="the profile's name (its file: config/throughput/NAME.yaml); "
                                                "default: the --machine type, the name that replaces a profile of "
                                                "that type in the folder (cellscale plan uses one per machine type)")
    p.add_argument("--out", default=None, help="where to write it (default config/throughput/NAME.yaml; - : "
                                               "print only)")
    p.add_argument("--where", default=None, help="the machine in words, for each figure's how (e.g. '2 AVX2 cores "
                                                 "of an AMD EPYC, 24 GiB')")
    p.add_argument("--how", default=None, help="more to say in each figure's how (what ran, what else ran)")
    p.add_argument("--augment", default=None, choices=choices("segment", "augment"),
                   help="the runs' segment.augment, recorded with the segment rules (default: the config beside the "
                        "first RESULTS, RESULTS/../config/config.yaml, else the schema's)")
    p.add_argument("--gpu-rules", nargs="*", default=[], metavar="RULE",
                   help="rules whose jobs used the machine's GPU (default: none)")
    p.set_defaults(func=_throughput)

    p = sub.add_parser(
        "review", help="export the tiles where the model is least sure for correction in napari, or import the "
                       "corrections as a dataset version (docs/correct.md)",
        usage="cellscale review RESULTS --sample S [-n K] -o BUNDLE [options]\n"
              "       cellscale review import BUNDLE --dataset NAME [--annotator WHO] [--parent NAME@ID] "
              "[--store DIR]",
        description="`cellscale review RESULTS --sample S -n K -o BUNDLE` scores the sample's tiles (rot180 "
                    "disagreement, boundary probability inside cells, odd shapes and sizes; "
                    "cellscale.review.uncertainty) and writes the K least-sure ones as OME-Zarr (image + NGFF "
                    "labels) with bundle.json. `cellscale review import BUNDLE --dataset NAME` records the tiles "
                    "whose labels were changed as a new version of dataset NAME.")
    p.add_argument("target", help="the results folder (e.g. results), or the word `import`")
    p.add_argument("bundle_in", nargs="?", metavar="BUNDLE", help="(import) the bundle to import")
    g = p.add_argument_group("export")
    g.add_argument("--sample", help="the sample to review (a row of the sample sheet / results/index.tsv)")
    g.add_argument("-n", "--tiles", type=_number_arg(int, 1, "a whole number of tiles, at least 1"), default=8,
                   help="how many tiles (default 8)")
    g.add_argument("-o", "--output", help="the bundle folder to write (replaced whole)")
    g.add_argument("--tile-size", type=_number_arg(int, 1, "a tile edge in pixels, at least 1"), default=128,
                   help="tile edge in image pixels (default 128)")
    g.add_argument("--compartment", choices=["nuclear", "whole_cell"], default="nuclear")
    g.add_argument("--random", action="store_true", help="K random tiles instead of the least-sure ones")
    g.add_argument("--seed", type=_seed_arg, default=0, help="seed of --random (default 0)")
    g.add_argument("--region", default=None, metavar="Y0:Y1,X0:X1",
                   help="choose only tiles inside this region, in pixels (e.g. 0:1008,0:960: the CODEX tile's "
                        "training columns)")
    g.add_argument("--frame", type=_number_arg(int, 0, "a 0-based frame index, at least 0"), default=0,
                   help="frame of a time-lapse (default 0)")
    g.add_argument("--image", default=None, help="the image (default: from RESULTS/index.tsv or the sample sheet)")
    g.add_argument("--labels", default=None, help="the current labels (default: from RESULTS)")
    g.add_argument("--model", default=None, help="model folder or registry NAME@VERSION (default: the config's model "
                                                 "for the sample)")
    g.add_argument("--nuclear-channel", type=_channel_arg, default=None,
                   help="the image's nuclear channel (default: the sample sheet's; 0 for an image not in it)")
    g.add_argument("--membrane-channel", type=_channel_arg, default=None,
                   help="the image's membrane channel, for a tissue model (default: the sample sheet's)")
    g.add_argument("--config", default=None, help="the workflow config (default RESULTS/../config/config.yaml)")
    g.add_argument("--precision", choices=["auto", *PRECISIONS], default="auto")
    g.add_argument("--ngff", choices=["0.5", "0.4"], default="0.5",
                   help="NGFF version: 0.5 on Zarr v3 (default) or 0.4 on Zarr v2 (older viewers)")
    g = p.add_argument_group("import")
    g.add_argument("--dataset", help="(import) the dataset the corrections become a version of")
    g.add_argument("--annotator", default=None, help="(import) who corrected the tiles (default: the user name)")
    g.add_argument("--parent", default=None,
                   help="(import) the version to build on (default: NAME@latest if NAME exists, else the dataset "
                        "version the bundle's model was trained on when the store has it and the tiles can join it; "
                        "a parent that neither is nor descends from that version is warned of)")
    g.add_argument("--licence", default=None,
                   help="(import) licence of the corrections (default: the one an earlier round of the same image "
                        "gave, else 'as the source image's'; never the parent's)")
    g.add_argument("--store", default=None, help=f"(import) {STORE_HELP}")
    p.set_defaults(func=_review)
    for command in sub.choices.values():  # UsageError: printed with the command's own usage line
        command.set_defaults(parser=command)
    return parser


def _version() -> str:
    """The installed distribution's version (a source tree on PYTHONPATH that was never installed has none)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cellscale")
    except PackageNotFoundError:
        return "(not installed)"


def _error_text(err: Exception) -> str:
    """An error's message for the user: an OSError as ``FILE: what is wrong`` (Python's ``[Errno 2] No such file or
    directory: 'FILE'`` puts the file last), anything else as it is."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror[0].lower()}{err.strerror[1:]}"
    return str(err)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UsageError as err:
        args.parser.error(str(err))  # exits with status 2
    except BrokenPipeError:  # output piped to a reader that stopped (`| head`): not an error of the command
        # Python's flush of stdout at exit would fail on the closed pipe too: point it at /dev/null (as Python's
        # documentation of SIGPIPE advises)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:   # Ctrl-C: the outputs are written whole or not at all (cellscale.io.atomic)
        print(f"cellscale {args.command}: interrupted: outputs written before the interruption are complete; "
              f"the one being written was not kept", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError) as err:   # OSError: a missing file, a folder given for a file...
        print(f"cellscale {args.command}: error: {_error_text(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
