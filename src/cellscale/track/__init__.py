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

import importlib

# where each public name lives: imported on first use (PEP 562), so a job that needs only, say, the lineage
# helpers (the report) does not import the solvers (scipy.optimize, PuLP) with the package
_WHERE = {
    "TrackConfig": "config",
    "detections_from_labels": "detections",
    "division_scores": "evaluate",
    "evaluate_ctc": "evaluate",
    "ctc_lineage": "export_ctc",
    "read_label_dir": "export_ctc",
    "write_ctc": "export_ctc",
    "write_tracks_table": "export_ctc",
    "estimate_max_distance": "linking",
    "link": "linking",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
