"""Review: the model picks what a person should look at, and the corrections become data.

- :mod:`.uncertainty`: the per-tile signals (rot180 disagreement, boundary mass inside cells, odd shapes and
  sizes) and the score that ranks a sample's tiles;
- :mod:`.locate`: a sample's image, labels and model from a results folder;
- :mod:`.bundle`: the correction bundle (one OME-Zarr per tile, image + NGFF labels, ``bundle.json``);
- :mod:`.export`: ``cellscale review RESULTS --sample S -n K -o BUNDLE``;
- :mod:`.corrections`: ``cellscale review import BUNDLE --dataset NAME``: corrected tiles -> a dataset version.

How to correct a bundle in napari: docs/correct.md.
"""

from cellscale.review.bundle import BundleError, labels_sha256, read_manifest, read_tile, sha256_path, write_tile
from cellscale.review.corrections import import_bundle, read_corrections
from cellscale.review.export import ReviewOptions, export_review, score_sample
from cellscale.review.locate import SampleInputs, locate
from cellscale.review.uncertainty import WEIGHTS, Tile, least_sure, random_tiles, score_tiles, tile_grid

__all__ = ["WEIGHTS", "BundleError", "ReviewOptions", "SampleInputs", "Tile", "export_review", "import_bundle",
           "labels_sha256", "least_sure", "locate", "random_tiles", "read_corrections", "read_manifest", "read_tile",
           "score_sample", "score_tiles", "sha256_path", "tile_grid", "write_tile"]
