"""Training data: DSB2018 nuclei, generated tissue and the CODEX tile, split reproducibly.

Training is reproducible from data: the data set's content hash, the exact
command and the held-out metrics are written into the model card.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from scipy import ndimage as ndi

from cellscale.io import read_image
from cellscale.segment.metrics import iou_matrix, matched, object_ids
from cellscale.segment.preprocess import normalize, percentile_range, select_channels
from cellscale.synth.tissue import make_dense_tissue, make_tissue

SPLITS = ("train", "val", "test")


@dataclass
class Example:
    """One training image: normalised channels (C, Y, X) and labels per compartment.

    ``cut``: the edges (top, bottom, left, right) where the example is a piece of a larger labelled image, as a
    corrected review tile is: a cell touching such an edge goes on beyond it, so its extent is unknown."""

    name: str
    kind: str
    image: np.ndarray
    labels: dict[str, np.ndarray]
    cut: tuple[bool, bool, bool, bool] = (False, False, False, False)


def split_of(name: str) -> str:
    """Deterministic 80/10/10 split by a hash of the image name."""
    bucket = int(hashlib.sha1(name.encode()).hexdigest(), 16) % 10
    return "test" if bucket == 0 else "val" if bucket == 1 else "train"


def assign_splits(samples, given: dict[str, str] | None = None, kept: dict[str, str] | None = None,
                  ) -> tuple[dict[str, str], dict[str, str]]:
    """Each sample's split, and a note for each sample whose split is not :func:`split_of`'s.

    A sample's split is the one ``given`` (a user's split file: never moved), else the one it has in ``kept`` (the
    version this one follows: a sample keeps its split as images are added), else its hash split. When that leaves
    a split empty and there are at least 3 samples, one sample of the largest split moves to each empty one: of the
    samples not given, new ones before kept ones, the one whose hash with the split's name is lowest, so the choice
    depends on no other sample's name and stays as long as the same samples are there."""
    given, kept = given or {}, kept or {}
    split = {s: given.get(s) or kept.get(s) or split_of(s) for s in sorted(set(samples))}
    notes = {s: "given by --splits" for s in split if s in given and given[s] != split_of(s)}
    notes.update({s: "kept from the version before" for s in split
                  if s not in given and s in kept and kept[s] != split_of(s)})
    if len(split) < len(SPLITS):
        return split, notes
    for target in SPLITS:
        if target in split.values():
            continue
        sizes = {s: sum(v == s for v in split.values()) for s in SPLITS}
        movable = [s for s in split if s not in given and sizes[split[s]] > 1]
        if not movable:
            break
        largest = max(sizes[split[s]] for s in movable)
        chosen = min((s for s in movable if sizes[split[s]] == largest),
                     key=lambda s: (s in kept, hashlib.sha1(f"{target}:{s}".encode()).hexdigest()))
        notes[chosen] = f"{target} had no sample: moved from {split[chosen]}"
        split[chosen] = target
    return split, notes


def load_dsb(root: str | os.PathLike, split: str, kinds: tuple[str, ...] | None = None) -> list[Example]:
    """DSB2018 images of one split as single-channel nuclear examples."""
    root = Path(root)
    index = pd.read_csv(root / "index.csv")
    out = []
    for row in index.itertuples():
        if split_of(row.id) != split or (kinds and row.kind not in kinds):
            continue
        raw = read_image(root / "images" / f"{row.id}.png")
        chans = select_channels(raw, {}, ["nuclear"])[0]
        image = normalize(chans, percentile_range(chans))
        labels = read_image(root / "masks" / f"{row.id}.tif")[0, 0].astype(np.int32)
        out.append(Example(row.id, row.kind, image, {"nuclear": labels}))
    return out


def dataset_hash(paths: list[Path]) -> str:
    """SHA-256 over the sorted files' names and bytes."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


TISSUE_STYLES = ("sparse", "dense", "mixed")


def load_synthetic_tissue(n_images: int, split: str, seed: int = 0, style: str = "sparse") -> list[Example]:
    """Generated tissue examples (DNA + membrane channels; nuclear and whole-cell labels).

    ``style``: ``sparse`` (:func:`~cellscale.synth.tissue.make_tissue`: separate cells, crisp
    membranes), ``dense`` (:func:`~cellscale.synth.tissue.make_dense_tissue`: packed cells with
    large nuclei and faint, patchy membranes, like a CODEX tile) or ``mixed`` (every other image).
    Splits use disjoint seed ranges so test images are never trained on.
    """
    if style not in TISSUE_STYLES:
        raise ValueError(f"unknown generated tissue style {style!r}; known: {list(TISSUE_STYLES)}")
    offset = {"train": 0, "val": 10_000, "test": 20_000}[split]
    rng = np.random.default_rng(seed + offset)
    out = []
    for i in range(n_images):
        size = int(rng.choice([256, 384, 512]))
        if style == "dense" or (style == "mixed" and i % 2):
            t = make_dense_tissue((size, size), seed=seed + offset + i, cell_radius=float(rng.uniform(8, 14)),
                                  noise=float(rng.uniform(0.01, 0.08)))
        else:
            radius = float(rng.uniform(10, 24))
            n_cells = int(size * size / (np.pi * radius**2) * rng.uniform(0.5, 0.9))
            t = make_tissue((size, size), n_cells=n_cells, seed=seed + offset + i, cell_radius=radius,
                            noise=float(rng.uniform(0.01, 0.08)))
        chans = t.image[:2].astype(np.float32)
        out.append(Example(f"synthetic-{split}-{i}", "synthetic_tissue", normalize(chans, percentile_range(chans)),
                           {"nuclear": t.nuclear.astype(np.int32), "whole_cell": t.whole_cell.astype(np.int32)}))
    return out


CODEX_TRAIN_X1 = 960  # columns < this of the shared CODEX tile may be trained on; >= 1008 are held out
CODEX_TEST_X0 = 1008  # columns >= this are held out (a 48-px gap keeps training crops off them)


def union_of_experts(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The first expert's cells plus the second's cells that the first did not draw (IoU < 0.1 with all)."""
    out = first.astype(np.int32).copy()
    iou = iou_matrix(first, second)
    second_ids = object_ids(second)
    extra = second_ids[(iou.max(axis=0) if iou.size else np.zeros(len(second_ids))) < 0.1]
    next_id = int(out.max()) + 1
    for k, cell in enumerate(extra):
        pixels = (second == cell) & (out == 0)
        out[pixels] = next_id + k
    return out


def codex_columns(region: str) -> tuple[slice, slice]:
    """The (rows, columns) slice of the CODEX tile's training or held-out ("test") region."""
    return np.s_[:, :CODEX_TRAIN_X1] if region == "train" else np.s_[:, CODEX_TEST_X0:]


def codex_experts(tile_dir: str | os.PathLike, region: str = "train") -> list[np.ndarray]:
    """Both experts' whole-cell masks of the CODEX tile's training (or held-out) columns."""
    return [tifffile.imread(Path(tile_dir) / f"mask_expert{i}_wholecell.tif")[codex_columns(region)]
            for i in (1, 2)]


def consensus_of_experts(first: np.ndarray, second: np.ndarray, min_iou: float = 0.1) -> np.ndarray:
    """The cells both experts drew, each with an outline between the two experts' outlines.

    Cells are paired one to one by IoU (optimal assignment, pairs with IoU >= ``min_iou``); a cell
    drawn by one expert only is left out (background). Each pair's outline is the second expert's cell
    grown (nearest pixels first) inside the pair's union until its area is the geometric mean of the
    two experts' areas, less any pixels of the first expert's other cells: it overlaps both experts'
    outlines at about the same IoU, and keeps the first expert's borders between cells. Labels are
    the first expert's.
    """
    first, second = first.astype(np.int32), second.astype(np.int32)
    out = np.zeros_like(first)
    rows, cols = matched(iou_matrix(first, second), min_iou)
    boxes1, boxes2 = ndi.find_objects(first), ndi.find_objects(second)
    ids1, ids2 = object_ids(first), object_ids(second)
    for i, j in zip(ids1[rows], ids2[cols]):
        box = tuple(slice(min(a.start, b.start), max(a.stop, b.stop)) for a, b in zip(boxes1[i - 1], boxes2[j - 1]))
        a, b = first[box] == i, second[box] == j
        area = int(round(np.sqrt(float(a.sum()) * float(b.sum()))))
        union = a | b
        distance = ndi.distance_transform_edt(~b)
        cut = np.sort(distance[union])[min(max(area, 1), int(union.sum())) - 1]
        # never into a cell that the first expert outlined as another cell
        cell = union & (distance <= cut) & (a | (first[box] == 0))
        region = out[box]
        region[cell & (region == 0)] = i  # pairs never share a label; an earlier pair keeps a contested pixel
    return out


CODEX_LABELS = ("expert1", "expert2", "consensus")  # whole-cell labellings of the CODEX tile for training
CODEX_SHARE = 0.5  # default share of training draws from the CODEX tile: as often as generated images


def codex_labels_text(labellings: list[str]) -> str:
    """How a model card describes the CODEX whole-cell labels it was trained on."""
    union = [name[-1] for name in labellings if name != "consensus"]
    parts = ([f"union of both experts' whole cells, expert {' or '.join(union)}'s outline where both drew one"]
             if union else [])
    if "consensus" in labellings:
        parts.append("only the cells both experts drew, outlined between the two (geometric-mean area)")
    return "; or ".join(parts)


def codex_training_examples(tile_dir: str | os.PathLike, labellings: list[str], n_generated: int,
                            share: float | None = None) -> list[Example]:
    """The CODEX tile's training columns, repeated so that, next to ``n_generated`` generated images,
    about ``share`` of the training draws are from the tile (default :data:`CODEX_SHARE`, 0.5: as often
    as generated ones); with several ``labellings`` (see :func:`load_codex`), each is drawn as often as
    the others."""
    share = CODEX_SHARE if share is None else share
    if not 0 < share < 1:
        raise ValueError(f"the CODEX share of training draws must be between 0 and 1, not {share}")
    labelled = [ex for name in labellings for ex in load_codex(tile_dir, "train", name)]
    return labelled * max(1, int(n_generated * share / (1 - share)) // len(labelled))


def load_codex(tile_dir: str | os.PathLike, region: str = "train", labels: str = "expert1") -> list[Example]:
    """The CODEX tile's training columns (or held-out columns) with whole-cell labels from both experts.

    ``labels``: "expert1" or "expert2", the union of both experts' cells with that expert's outline
    where both drew a cell (:func:`union_of_experts`); "consensus", only the cells both drew, outlined
    between the two (:func:`consensus_of_experts`). Inputs are the nuclear (channel 0) and membrane
    (channel 2) stains; only whole-cell labels exist.
    """
    if labels not in CODEX_LABELS:
        raise ValueError(f"CODEX labels must be one of {', '.join(CODEX_LABELS)}, not {labels!r}")
    tile_dir = Path(tile_dir)
    image = tifffile.imread(tile_dir / "image.ome.tif")[[0, 2]].astype(np.float32)
    chans = image[(slice(None), *codex_columns(region))]
    experts = codex_experts(tile_dir, region)
    if labels == "consensus":
        cells = consensus_of_experts(*experts)
    else:
        cells = union_of_experts(*(experts if labels == "expert1" else experts[::-1]))
    # the columns stop where the tile goes on: at the training columns' right edge, the held-out columns' left
    cut = (False, False, False, True) if region == "train" else (False, False, True, False)
    return [Example(f"codex-{tile_dir.name}-{region}", "codex", normalize(chans, percentile_range(chans)),
                    {"whole_cell": cells}, cut=cut)]
