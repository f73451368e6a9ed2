"""Scoring a trained model: its maps on whole images, post-processing tuned by grid search, held-out scores
(against the Otsu baseline, and on the CODEX tile against both experts and the other tools' masks)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import tifffile

from cellscale.io import ImageSource
from cellscale.segment.baseline import otsu_watershed
from cellscale.segment.image import predict_tiles
from cellscale.segment.metrics import summarize
from cellscale.segment.model import CHANNELS_PER_COMPARTMENT
from cellscale.segment.postprocess import PostprocessParams, finish_labels, watershed_labels
from cellscale.segment.stitch import blend_maps, labels_from_arrays
from cellscale.segment.tiles import make_plan, shard_tiles
from cellscale.train.data import codex_columns, codex_experts

TUNING_GRID = {
    "sigma": (1.0, 2.0),
    "foreground": (0.4, 0.5, 0.6, 0.7, 0.8),
    "marker_threshold": (0.3, 0.4, 0.5, 0.6),
    "merge_boundary": (0.0, 0.2),
}


def predict_maps(predictor, channels: np.ndarray, tile: int = 256, overlap: int = 32) -> np.ndarray:
    """Blended maps (CHANNELS_PER_COMPARTMENT * n_comp, Y, X) for one (C, Y, X) image."""
    source = ImageSource.from_array(channels[np.newaxis])
    roles = dict(zip(predictor.spec.inputs, range(len(predictor.spec.inputs))))
    plan, recipe = make_plan(source, roles, predictor.spec.inputs, tile, overlap, predictor.spec.tile_multiple,
                             shard_mpx=1e9)
    maps = predict_tiles(predictor, shard_tiles(source, recipe, plan, 0))
    return blend_maps(plan, maps.__getitem__, 0, predictor.n_outputs)


def compartment_labels(maps: np.ndarray, params: PostprocessParams, k: int = 0, post=None) -> np.ndarray:
    """Labels of compartment ``k`` from blended (CHANNELS_PER_COMPARTMENT * n_comp, Y, X) maps (``post``: as
    :func:`cellscale.segment.stitch.stitch_blocks` takes it)."""
    first = CHANNELS_PER_COMPARTMENT * k  # inner distance, p(background), p(boundary), p(interior)
    return labels_from_arrays(maps[first], maps[first + 1], params, p_boundary=maps[first + 2], post=post)


def compartment_maps(maps: np.ndarray, k: int) -> np.ndarray:
    """Compartment ``k``'s (CHANNELS_PER_COMPARTMENT, Y, X) maps of blended maps of all compartments."""
    return maps[CHANNELS_PER_COMPARTMENT * k: CHANNELS_PER_COMPARTMENT * (k + 1)]


def tune(maps: list[np.ndarray], truths: list[np.ndarray], log=print) -> tuple[PostprocessParams, dict]:
    """Grid search of post-processing for the best F1 + mean AP; ``maps`` are one compartment's
    (CHANNELS_PER_COMPARTMENT, Y, X) maps per image (see :func:`compartment_maps`).

    The labels are :func:`compartment_labels`', block by block, with each block's watershed shared by the
    settings that differ only in ``merge_boundary`` (the grid's last key, so they come one after another), and by
    the truths given the same maps (the same array: one image scored against two experts)."""
    best, best_result, best_score = None, None, -1.0
    keys = list(TUNING_GRID)
    shared = {"setting": None, "blocks": {}}  # one watershed setting's pre-merge labels, by (maps, block window)

    def sharing(i: int):
        def post(block_maps, params: PostprocessParams, window) -> np.ndarray:
            setting = (params.sigma, params.foreground, params.marker_threshold)
            if setting != shared["setting"]:
                shared["setting"], shared["blocks"] = setting, {}
            blocks = shared["blocks"]
            if (i, window) not in blocks:
                blocks[i, window] = watershed_labels(block_maps[0], block_maps[1], params)
            return finish_labels(blocks[i, window], params, block_maps[2])
        return post

    for values in itertools.product(*TUNING_GRID.values()):
        params = PostprocessParams(**dict(zip(keys, values)))
        result = summarize((t, compartment_labels(m, params, post=sharing(id(m))))   # maps held: ids unique
                           for t, m in zip(truths, maps))
        if result["f1"] + result["ap"] > best_score:
            best, best_result, best_score = params, result, result["f1"] + result["ap"]
    log(f"tuned post-processing: {best.to_dict()} -> F1 {best_result['f1']:.3f} "
        f"AP {best_result['ap']:.3f}")
    return best, best_result


def score_split(predictor, examples, params: PostprocessParams, tile: int = 256) -> dict:
    """Model and Otsu-baseline scores per image kind (and 'all')."""
    rows = []
    for ex in examples:
        maps = predict_maps(predictor, ex.image, tile=tile)
        rows.append((ex.kind, ex.labels["nuclear"], compartment_labels(maps, params), otsu_watershed(ex.image[0])))
    out = {}
    kinds = sorted({r[0] for r in rows})
    for kind in ["all", *kinds]:
        sel = [r for r in rows if kind == "all" or r[0] == kind]
        out[kind] = {"model": summarize((r[1], r[2]) for r in sel),
                     "baseline": summarize((r[1], r[3]) for r in sel)}
    return out


def codex_scores(tile_dir: Path, ours: np.ndarray) -> dict:
    """F1 against both experts on the held-out columns, for us and the peers' masks in ``peers/``."""
    experts = codex_experts(tile_dir, "test")
    methods = {"cellscale": ours}
    for path in sorted((tile_dir / "peers").glob("*.tif")):
        methods[path.stem] = tifffile.imread(path)[codex_columns("test")]
    return {name: [summarize([(e, labels)])["f1"] for e in experts] for name, labels in methods.items()}
