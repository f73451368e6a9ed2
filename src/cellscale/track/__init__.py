"""Cell tracking: detections, candidate costs, two solvers, lineage export.

* :func:`detections_from_labels` measures every object of a label stack.
* :func:`link` chooses links, gaps and divisions (``solver="lap"`` or
  ``"ilp"``) and returns a tracks table; :class:`TrackConfig` holds its
  parameters.
* :func:`write_ctc`, :func:`write_tracks_table`, :func:`read_label_dir`:
  Cell Tracking Challenge folders and Parquet tables; :mod:`cellscale.io.ctc`
  reads and writes the CTC files (numbered label TIFFs, ``L B E P`` track
  file) for the exporter and for the synthetic ground truth.
* :func:`evaluate_ctc` scores a result folder with py-ctcmetrics plus
  division precision / recall / F1.
* ``costs="learned"``: :mod:`cellscale.track.features` (dense-data features
  of candidate links and divisions), :mod:`cellscale.track.scorer` (the
  trained trees, ``models/track-scorer``) and :mod:`cellscale.track.training`
  (training rows from ground-truth movies; ``cellscale train-tracker``).
"""

from cellscale.track.config import TrackConfig
from cellscale.track.detections import detections_from_labels
from cellscale.track.evaluate import division_scores, evaluate_ctc
from cellscale.track.export_ctc import (
    ctc_lineage,
    read_label_dir,
    write_ctc,
    write_tracks_table,
)
from cellscale.track.linking import estimate_max_distance, link

__all__ = [
    "TrackConfig",
    "ctc_lineage",
    "detections_from_labels",
    "division_scores",
    "estimate_max_distance",
    "evaluate_ctc",
    "link",
    "read_label_dir",
    "write_ctc",
    "write_tracks_table",
]
