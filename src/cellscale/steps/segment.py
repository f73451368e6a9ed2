"""Step of the rule ``segment``: run the model on one shard of windows (the GPU step).
"""

from __future__ import annotations

import logging

import numpy as np

from cellscale.io import atomic_path
from cellscale.segment.image import predict_tiles

log = logging.getLogger("cellscale")


def segment_shard(shard_path, model_dir, out_path, batch_mpx: float = 0.5, precision: str = "auto",
                  threads: int | None = None, augment: str = "none") -> None:
    """Predict maps for one shard of windows; writes (n, K, th, tw) float16 ``.npy``.

    ``batch_mpx``: megapixels per forward pass (memory grows with it: about 2 GB at 0.5 Mpx for the
    shipped U-Net), so the batch holds fewer windows when windows are larger. ``augment``:
    test-time augmentation, "none", "rot180" or "flips" (:class:`cellscale.model.Predictor`).
    """
    from cellscale.segment.predictor import Predictor

    tiles = np.load(shard_path, mmap_mode="r")
    batch_size = max(1, int(batch_mpx * 1e6 // (tiles.shape[2] * tiles.shape[3])))
    predictor = Predictor(model_dir, batch_size=batch_size, precision=precision, threads=threads, augment=augment)
    n, _, th, tw = tiles.shape
    with atomic_path(out_path) as tmp:
        maps = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(n, predictor.n_outputs, th, tw))
        predict_tiles(predictor, tiles, maps)
        maps.flush()
        del maps


