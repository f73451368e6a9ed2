"""Cell tracking: detections, linking, lineage export."""

from .detections import detections_from_labels
from .evaluate import division_scores, evaluate_ctc
from .export_ctc import ctc_lineage, read_label_dir, write_ctc, write_tracks_table
from .linking import estimate_max_distance, link

__all__ = [
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
