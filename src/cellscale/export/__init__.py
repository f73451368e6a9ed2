"""Outputs the ecosystem opens directly: OME-NGFF images with their ``labels/`` (:mod:`.ngff`) and one SpatialData
store per sample, or per batch of small images (:mod:`.spatial`). Both read the image and the labels lazily
(dask over :class:`cellscale.io.ImageSource`), so a slide never has to fit in memory.
"""

from .lazy import lazy_image, lazy_labels
from .ngff import NGFF_VERSION, NGFF_VERSIONS, TRACKS, label_metadata, ngff_format, track_metadata, write_ngff
from .spatial import Field, write_spatialdata, write_spatialdata_fields

__all__ = ["Field", "NGFF_VERSION", "NGFF_VERSIONS", "ngff_format", "label_metadata", "lazy_image", "lazy_labels",
           "write_ngff", "write_spatialdata", "write_spatialdata_fields"]
