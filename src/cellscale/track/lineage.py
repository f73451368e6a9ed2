"""From chosen links to a CTC-consistent tracks table.

Both solvers return, for every detection, its predecessor (``pred``, -1:
none). A detection whose predecessor has exactly one successor in the very
next frame continues the predecessor's track; otherwise (a division, or a
link across missing frames) it starts a new track whose parent is the
predecessor's track, as the Cell Tracking Challenge format requires (tracks
have no holes; a parent with one child means "same cell after a gap").
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["TRACK_COLUMNS", "TRACK_KEY_COLUMNS", "division_parents", "tracks_table"]

#: the integer columns that place an object (frame, label) on a track (track_id, parent_track_id)
TRACK_KEY_COLUMNS = ["frame", "label", "track_id", "parent_track_id"]
#: the columns of a tracks table (link's result, tracks.parquet), in order
TRACK_COLUMNS = [*TRACK_KEY_COLUMNS, "y", "x", "area"]


def tracks_table(frame: np.ndarray, label: np.ndarray, pos: np.ndarray, area: np.ndarray,
                 pred: np.ndarray) -> pd.DataFrame:
    """Tracks table (columns :data:`TRACK_COLUMNS`) of detections sorted by
    frame with predecessors ``pred``; sorted by frame then track id."""
    n = frame.size
    n_succ = np.bincount(pred[pred >= 0], minlength=n) if n else np.zeros(0, np.int64)
    has_pred = pred >= 0
    safe_pred = np.where(has_pred, pred, 0)
    cont = has_pred & (n_succ[safe_pred] == 1) & (frame == frame[safe_pred] + 1) if n else has_pred
    # a new track starts at every detection that does not continue its predecessor;
    # ids are given in detection (frame) order
    new = ~cont
    track = np.zeros(n, dtype=np.int64)
    track[new] = np.arange(1, int(new.sum()) + 1)
    parent = np.zeros(n, dtype=np.int64)
    # continuations inherit the id of their track's first detection: each detection points at its
    # predecessor while it continues it, and the pointers are followed by doubling (a chain of length L
    # in log2(L) steps; chains go back in frame order, so they end)
    first = np.where(cont, safe_pred, np.arange(n))
    while True:
        nxt = first[first]
        if np.array_equal(nxt, first):
            break
        first = nxt
    track = track[first]
    starts = np.flatnonzero(new & has_pred)  # a track that starts with a predecessor: its parent is that one's
    if starts.size:
        lut = np.zeros(int(track.max()) + 1, dtype=np.int64)
        lut[track[starts]] = track[pred[starts]]
        parent = lut[track]
    out = pd.DataFrame({
        "frame": frame.astype(np.int64),
        "label": label.astype(np.int64),
        "track_id": track,
        "parent_track_id": parent,
        "y": pos[:, 0] if n else np.zeros(0),
        "x": pos[:, 1] if n else np.zeros(0),
        "area": area.astype(np.int64),
    }, columns=TRACK_COLUMNS)
    return out.sort_values(["frame", "track_id"], kind="stable").reset_index(drop=True)


def division_parents(tracks: pd.DataFrame) -> set[int]:
    """The tracks that divide: parents of two or more tracks. A parent of one track is the same cell after a gap
    of missing frames (the CTC format's way to bridge one), not a division."""
    starts = tracks.groupby("track_id")["parent_track_id"].first()
    children = starts[starts > 0].value_counts()
    return {int(t) for t in children.index[children.to_numpy() >= 2]}
