"""Step of the rule ``segment``: run the model on one shard of windows (the GPU step).
"""

from __future__ import annotations

import logging

import numpy as np

from cellscale.io import atomic_path
from cellscale.segment.image import predict_tiles
from cellscale.segment.settings import SegmentSettings

log = logging.getLogger("cellscale")


def segment_shard(shard_path, model_dir, out_path, settings: SegmentSettings | None = None,
                  threads: int | None = None) -> None:
    """Predict maps for one shard of windows; writes (n, K, th, tw) float16 ``.npy``.

    ``settings`` (config ``segment``; None: the schema's defaults): ``batch_mpx``, megapixels per forward
    pass (memory grows with it), so the batch holds fewer windows when windows are larger; ``precision``;
    ``augment``, test-time augmentation, "none", "rot180" or "flips"
    (:class:`cellscale.segment.predictor.Predictor`).
    """
    from cellscale.segment.predictor import Predictor

    settings = settings or SegmentSettings()
    tiles = np.load(shard_path, mmap_mode="r")
    batch_size = max(1, int(settings.batch_mpx * 1e6 // (tiles.shape[2] * tiles.shape[3])))
    predictor = Predictor(model_dir, batch_size=batch_size, precision=settings.precision, threads=threads,
                          augment=settings.augment)
    n, _, th, tw = tiles.shape
    with atomic_path(out_path) as tmp:
        maps = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(n, predictor.n_outputs, th, tw))
        predict_tiles(predictor, tiles, maps)
        maps.flush()
        del maps


