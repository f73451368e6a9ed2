"""Cell Tracking Challenge (CTC) result layout, label folders and track tables.

* :func:`write_ctc` writes ``maskNNN.tif`` + ``res_track.txt`` (the CTC
  ``*_RES`` layout), atomically.
* :func:`read_label_dir` (from :mod:`cellscale.io.ctc`, which reads and
  writes the CTC files) reads a folder of per-frame label TIFFs
  (``mask000.tif``, ``man_track000.tif``, ``t000.tif`` ...) into (T, Y, X).
* :func:`write_tracks_table` writes a tracks table to Parquet.
* :func:`ctc_lineage` turns a tracks table into the ``L B E P`` table.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from cellscale.io import atomic_dir, atomic_path
from cellscale.io.ctc import (
    LINEAGE_COLUMNS,
    read_label_dir,
    write_label_frames,
    write_lineage,
)
from cellscale.track.detections import as_label_stack
from cellscale.track.lineage import TRACK_COLUMNS, TRACK_KEY_COLUMNS

__all__ = ["write_ctc", "read_label_dir", "write_tracks_table", "ctc_lineage",
           "check_lineage"]


def _split_holes(tracks: pd.DataFrame) -> pd.DataFrame:
    """Give the part of a track after a hole (missing frames) a new id whose
    parent is the part before it (CTC tracks cannot have holes). Children of
    a split track hang from its last piece."""
    tracks = tracks.sort_values(["track_id", "frame"], kind="stable").reset_index(drop=True)
    tid = tracks["track_id"].to_numpy()
    fr = tracks["frame"].to_numpy()
    par = tracks["parent_track_id"].to_numpy()
    same = np.r_[False, tid[1:] == tid[:-1]]
    hole = same & np.r_[False, np.diff(fr) > 1]
    if not hole.any():
        return tracks
    new_tid = tid.copy()
    new_par = par.copy()
    next_id = int(tid.max()) + 1
    last_piece: dict[int, int] = {}
    cur = piece_parent = 0
    for i in range(tid.size):
        if not same[i]:
            cur, piece_parent = int(tid[i]), 0
        elif hole[i]:
            cur, piece_parent = next_id, cur
            next_id += 1
        new_tid[i] = cur
        if piece_parent:
            new_par[i] = piece_parent
        last_piece[int(tid[i])] = cur
    first_piece = new_tid == tid
    for i in np.flatnonzero(first_piece & (par != 0)):
        new_par[i] = last_piece.get(int(par[i]), int(par[i]))
    out = tracks.copy()
    out["track_id"] = new_tid
    out["parent_track_id"] = new_par
    return out


def ctc_lineage(tracks: pd.DataFrame) -> pd.DataFrame:
    """The ``L B E P`` table (CTC man_track/res_track) of a tracks table."""
    if len(tracks) == 0:
        return pd.DataFrame({c: pd.Series([], dtype="int64") for c in LINEAGE_COLUMNS})
    g = tracks.groupby("track_id", sort=True)
    lin = pd.DataFrame({
        "L": g["frame"].min().index.to_numpy(dtype=np.int64),
        "B": g["frame"].min().to_numpy(dtype=np.int64),
        "E": g["frame"].max().to_numpy(dtype=np.int64),
        "P": g["parent_track_id"].first().to_numpy(dtype=np.int64),
    })
    return lin


def check_lineage(lineage: pd.DataFrame) -> None:
    """Raise ValueError unless ``L B E P`` follows the CTC rules: unique ids
    > 0, B <= E, parents exist and end before their children begin."""
    L = lineage["L"].to_numpy()
    if (L <= 0).any():
        raise ValueError("track ids must be > 0")
    if len(np.unique(L)) != len(L):
        raise ValueError("track ids are not unique")
    if (lineage["B"] > lineage["E"]).any():
        bad = lineage[lineage["B"] > lineage["E"]].iloc[0]
        raise ValueError(f"track {bad['L']} ends before it begins")
    ends = dict(zip(L.tolist(), lineage["E"].tolist()))
    for r in lineage.itertuples(index=False):
        if r.P == 0:
            continue
        if r.P not in ends:
            raise ValueError(f"track {r.L}: parent {r.P} does not exist")
        if ends[r.P] >= r.B:
            raise ValueError(f"track {r.L} begins at {r.B} but its parent {r.P} "
                             f"ends at {ends[r.P]}")


def _track_columns(tracks: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """A copy of ``columns`` of ``tracks`` (ValueError naming the missing
    ones), the :data:`TRACK_KEY_COLUMNS` among them as int64."""
    missing = [c for c in columns if c not in tracks.columns]
    if missing:
        raise ValueError(f"tracks lack column(s) {missing}")
    out = tracks[columns].copy()
    for c in TRACK_KEY_COLUMNS:
        out[c] = out[c].to_numpy().astype(np.int64)
    return out


def _prepare_tracks(tracks: pd.DataFrame) -> pd.DataFrame:
    tr = _track_columns(tracks, TRACK_KEY_COLUMNS)
    if (tr["track_id"] <= 0).any():
        raise ValueError("track_id must be > 0")
    if tr.duplicated(["frame", "label"]).any():
        raise ValueError("tracks have duplicate (frame, label) rows")
    if tr.duplicated(["frame", "track_id"]).any():
        r = tr[tr.duplicated(["frame", "track_id"], keep=False)].iloc[0]
        raise ValueError(f"track {r['track_id']} has two objects in frame {r['frame']}")
    if (tr.groupby("track_id")["parent_track_id"].nunique() > 1).any():
        raise ValueError("a track has more than one parent_track_id")
    return _split_holes(tr)


def relabel_frame(frame: np.ndarray, keys: np.ndarray, values: np.ndarray, dtype) -> np.ndarray:
    """``frame`` with each label ``keys[i]`` (sorted) replaced by ``values[i]``; labels not in ``keys`` become 0."""
    out = np.zeros(frame.shape, dtype=dtype)
    if keys.size == 0:
        return out
    flat = frame.ravel()
    nz = np.flatnonzero(flat)
    pos = np.searchsorted(keys, flat[nz])
    pos = np.clip(pos, 0, keys.size - 1)
    hit = keys[pos] == flat[nz]
    out.ravel()[nz[hit]] = values[pos[hit]]
    return out


def write_ctc(labels, tracks: pd.DataFrame, out_dir: str | os.PathLike) -> Path:
    """Write a CTC result folder: ``maskNNN.tif`` per frame and ``res_track.txt``.

    Each pixel of object ``(frame, label)`` gets that row's ``track_id``;
    objects absent from ``tracks`` become background. Masks are uint16 when
    the largest id is < 65536, else uint32; frame numbers have 3 digits (4
    when T >= 1000). A track with holes (missing frames) is split, the later
    piece getting a new id whose parent is the earlier piece, as the CTC
    format requires. The lineage is checked (:func:`check_lineage`).

    The folder is written next to ``out_dir`` under a temporary name and then
    renamed into place; an existing ``out_dir`` is replaced. Returns the path.
    """
    lab = as_label_stack(labels)
    tr = _prepare_tracks(tracks)
    if len(tr) and tr["frame"].max() >= lab.shape[0]:
        raise ValueError(f"tracks reach frame {int(tr['frame'].max())} but labels have "
                         f"{lab.shape[0]} frames")
    if len(tr) and tr["frame"].min() < 0:
        raise ValueError("tracks have negative frame numbers")
    lineage = ctc_lineage(tr)
    check_lineage(lineage)
    max_id = int(lineage["L"].max()) if len(lineage) else 0
    dtype = np.uint16 if max_id < 65536 else np.uint32
    by_frame = {int(f): g for f, g in tr.groupby("frame")}

    def masks():
        for t in range(lab.shape[0]):
            g = by_frame.get(t)
            if g is None:
                keys = values = np.zeros(0, dtype=np.int64)
            else:
                g = g.sort_values("label")
                keys = g["label"].to_numpy()
                values = g["track_id"].to_numpy()
            yield relabel_frame(lab[t], keys, values, dtype)

    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        write_label_frames(tmp, "mask", masks(), n_frames=lab.shape[0])
        write_lineage(tmp / "res_track.txt", lineage)
    return out_dir


def write_tracks_table(tracks: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write the tracks table to Parquet (columns frame, label, track_id,
    parent_track_id, y, x, area; a ``time`` column after frame where
    ``tracks`` has one), atomically (temp file + rename)."""
    df = _track_columns(tracks, [*TRACK_COLUMNS[:1], "time", *TRACK_COLUMNS[1:]] if "time" in tracks else
                        TRACK_COLUMNS)
    df["y"] = df["y"].astype(np.float64)
    df["x"] = df["x"].astype(np.float64)
    df["area"] = df["area"].to_numpy().astype(np.int64)
    df = df.reset_index(drop=True)
    df.attrs = {}
    path = Path(path)
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return path
