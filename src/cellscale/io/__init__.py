"""The edges of the library: reading images and writing results.

- :mod:`~cellscale.io.formats`: file formats (TIFF/OME-TIFF, PNG, OME-Zarr, folders of frame files, one file per
  channel: :func:`image_files`), axis letters mapped onto (T, C, Y, X), channel names, pixel sizes and frame
  intervals from their metadata;
- :mod:`~cellscale.io.source`: :class:`ImageSource`, an image read region by region, and :func:`read_image`;
- :mod:`~cellscale.io.labels`: 32-bit label images and intensity images as OME-TIFF (many label images in one
  multi-series file: :func:`write_label_series`, :class:`LabelSeries`), and :func:`check_labels`, the check that
  labels are integers;
- :mod:`~cellscale.io.atomic`: writes that replace their target only on success;
- :mod:`~cellscale.io.ctc`: Cell Tracking Challenge folders (numbered label TIFFs, the ``L B E P`` file).

Errors are :class:`ImageError` and name the file and what is wrong with it.
"""

from .atomic import atomic_dir, atomic_path, scratch_dir
from .formats import (
    CHANNEL_FILES_SEPARATOR,
    IMAGE_SUFFIXES,
    MIN_EDGE,
    ImageError,
    channel_names_from_ome,
    colour_channel_names,
    frame_interval_from_metadata,
    image_files,
    is_image_file,
    is_ome_zarr,
    join_image_files,
    normalize_axes,
    numbered_frames,
    ome_zarr_image,
    pixel_size_from_metadata,
    sample_frame_interval,
    sample_pixel_size,
    too_small,
)
from .labels import LabelSeries, check_labels, read_labels, series_names, write_image, write_label_series, write_labels
from .source import ChannelFiles, FrameFiles, ImageHeader, ImageSource, image_header, image_size, read_image

__all__ = [
    "CHANNEL_FILES_SEPARATOR", "ChannelFiles", "IMAGE_SUFFIXES", "MIN_EDGE", "FrameFiles", "ImageError", "ImageSource",
    "atomic_dir", "atomic_path", "scratch_dir",
    "channel_names_from_ome", "check_labels", "colour_channel_names", "image_files", "join_image_files",
    "is_image_file", "is_ome_zarr", "normalize_axes", "numbered_frames", "ome_zarr_image", "pixel_size_from_metadata",
    "sample_pixel_size", "frame_interval_from_metadata", "sample_frame_interval", "too_small",
    "ImageHeader", "image_header", "image_size", "read_image", "read_labels", "write_image", "write_labels",
    "LabelSeries", "series_names",
    "write_label_series",
]
