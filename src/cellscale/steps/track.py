"""Step of the rule ``track``: link a time-lapse's nuclei, write a CTC result folder and a tracks table."""

from __future__ import annotations

import logging

import numpy as np

from cellscale.io import frame_interval_from_metadata
from cellscale.steps import StepError, open_sample_image, read_sample_labels, with_time
from cellscale.track.config import TrackConfig
from cellscale.track.detections import detections_from_labels
from cellscale.track.export_ctc import write_ctc, write_tracks_table
from cellscale.track.linking import link

log = logging.getLogger("cellscale")


def nuclear_frames(source, channel: int | None = None) -> np.ndarray:
    """The (T, Y, X) nuclear channel (default 0) of an opened movie (:class:`cellscale.io.ImageSource`): the
    intensities the tracker's costs compare (``track.intensity_weight``)."""
    _, _, h, w = source.shape
    return np.stack([source.region(t, 0, h, 0, w)[channel or 0] for t in range(source.shape[0])])


def track_sample(sample: str, labels_path, image_path, out_dir, out_parquet, nuclear_channel: int | None = None,
                 config: TrackConfig | None = None):
    """Link a time-lapse's nuclei; write a CTC result folder and a tracks table.

    ``config``: every parameter of the tracker (config ``track``; None: the schema's defaults), passed whole to
    :func:`cellscale.track.linking.link`.
    """
    labels = read_sample_labels(sample, labels_path)
    if labels.ndim != 3:
        raise StepError(f"sample {sample!r}: {labels_path}: time-lapse labels must be (T, Y, X), got {labels.shape}")
    with open_sample_image(sample, image_path, timelapse=True) as source:
        nuclei = nuclear_frames(source, nuclear_channel)
    detections = detections_from_labels(labels, nuclei)
    if not len(detections):  # as cellscale track refuses it; here the sample's empty results are written
        log.warning("sample %r: %s: no object in any of its %d frames: nothing to track (its CTC result and tracks "
                    "table are empty); check the nuclear channel and the image", sample, labels_path, labels.shape[0])
    tracks = link(detections, labels=labels, config=config or TrackConfig())
    write_ctc(labels, tracks, out_dir)
    # a time column: seconds since frame 0, from the interval the labels state (NaN where they state none)
    write_tracks_table(with_time(tracks, frame_interval_from_metadata(labels_path, warn=False)), out_parquet)
    log.info("%s: %d detections, %d tracks", sample, len(tracks), tracks.track_id.nunique())
    return tracks
