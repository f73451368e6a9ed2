"""Cell Tracking Challenge (CTC) files: numbered label TIFFs and the ``L B E P`` track file.

The one reader and writer of the CTC layout, used by the tracker's result
export (:func:`cellscale.track.export_ctc.write_ctc`: ``maskNNN.tif`` +
``res_track.txt``) and by the synthetic ground truth
(:func:`cellscale.synth.timelapse.write_ctc_ground_truth`:
``TRA/man_trackNNN.tif`` + ``TRA/man_track.txt``).

* :func:`frame_digits`: digits of the frame number in file names.
* :func:`write_label_frames` / :func:`read_label_dir`: one 2-D label TIFF per
  frame, ``<prefix>NNN.tif``.
* :func:`write_lineage` / :func:`read_lineage`: the track file, one line
  ``L B E P`` per track (track id, first frame, last frame, parent track id;
  0: no parent).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

from .formats import numbered_frames
from .labels import check_labels

__all__ = ["LINEAGE_COLUMNS", "frame_digits", "write_label_frames", "read_label_dir", "label_frames",
           "read_label_frame", "write_lineage", "read_lineage"]

LINEAGE_COLUMNS = ["L", "B", "E", "P"]


def frame_digits(n_frames: int) -> int:
    """Digits of the frame number in CTC file names: 3, or 4 from 1000 frames."""
    return 4 if n_frames >= 1000 else 3


def write_label_frames(folder: str | os.PathLike, prefix: str, frames: Iterable[np.ndarray],
                       n_frames: int | None = None) -> list[Path]:
    """Write each 2-D frame to ``folder/<prefix>NNN.tif`` (``NNN``: the frame
    number with :func:`frame_digits` digits), as it is (no dtype change).

    ``frames`` may be a generator (one frame in memory at a time); then
    ``n_frames`` (which sets the digits) must be given. Returns the paths.
    """
    if n_frames is None:
        n_frames = len(frames)  # type: ignore[arg-type]
    digits = frame_digits(n_frames)
    folder = Path(folder)
    paths = []
    for t, frame in enumerate(frames):
        path = folder / f"{prefix}{t:0{digits}d}.tif"
        tifffile.imwrite(path, frame)
        paths.append(path)
    return paths


def read_label_dir(folder: str | os.PathLike) -> np.ndarray:
    """Read per-frame 2-D label TIFFs (``*.tif``/``*.tiff``) into (T, Y, X).

    Files are ordered by their frame number (``mask000.tif``, ``man_track000.tif``,
    ``t000.tif`` ...: :func:`~cellscale.io.formats.numbered_frames`). Numbers must be consecutive
    (starting at the smallest one). Raises ValueError naming the file when a
    name has no frame number, two files share a number, a frame number is
    missing, a file cannot be read, is not 2-D, is not integer, or its shape
    differs from the first frame's (:func:`label_frames`).
    """
    frames = [a for _, a in label_frames(folder)]
    dtype = np.result_type(*{f.dtype for f in frames})
    return np.stack([f.astype(dtype, copy=False) for f in frames])


def read_label_frame(path: str | os.PathLike) -> np.ndarray:
    """One 2-D label TIFF (a CTC mask), checked: a file that cannot be read, is not 2-D (after dropping axes of
    length 1) or holds no integer labels raises ValueError naming it."""
    try:
        a = np.asarray(tifffile.imread(path))
    except Exception as exc:  # any read failure names the file
        raise ValueError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from exc
    if a.ndim != 2:
        a2 = np.squeeze(a)
        if a2.ndim != 2:
            raise ValueError(f"{path}: expected a 2-D label image, got shape {a.shape}")
        a = a2
    return check_labels(a, str(path))


def label_frames(folder: str | os.PathLike) -> Iterator[tuple[Path, np.ndarray]]:
    """The per-frame 2-D label TIFFs of ``folder`` as (path, frame), one at a time in frame order, each checked as
    :func:`read_label_dir` says (a folder of frames never has to fit in memory)."""
    files = numbered_frames(folder, (".tif", ".tiff"))
    shape = None
    for p in files:
        a = read_label_frame(p)
        if shape is None:
            shape = a.shape
        elif a.shape != shape:
            raise ValueError(f"{p}: shape {a.shape} differs from {shape} of {files[0].name}")
        yield p, a


def write_lineage(path: str | os.PathLike, lineage: pd.DataFrame) -> Path:
    """Write the track file: one line ``L B E P`` (integers) per row of
    ``lineage``, in its order; an empty table gives an empty file."""
    lines = [f"{int(r.L)} {int(r.B)} {int(r.E)} {int(r.P)}"
             for r in lineage[LINEAGE_COLUMNS].itertuples(index=False)]
    path = Path(path)
    path.write_text("\n".join(lines) + ("\n" if lines else ""))
    return path


def read_lineage(path: str | os.PathLike) -> pd.DataFrame:
    """Read a track file (``res_track.txt``, ``man_track.txt``) into an int64
    table with columns ``L B E P``. Raises ValueError naming the file and the
    line when a line does not hold four integers."""
    rows = []
    for k, line in enumerate(Path(path).read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            if len(parts) != 4:
                raise ValueError
            rows.append([int(p) for p in parts])
        except ValueError:
            raise ValueError(f"{path}:{k}: expected 'L B E P' (four integers), got {line!r}") from None
    return pd.DataFrame(rows, columns=LINEAGE_COLUMNS, dtype="int64")
