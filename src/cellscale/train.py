"""Training: data sets, augmentation, the loss, resumable fitting and the model card.

Training is reproducible from data: the data set's content hash, the exact
command and the held-out metrics are written into the model card.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from .model import ModelSpec, _artifact_path, build_unet
from .targets import make_targets

SPLITS = ("train", "val", "test")


@dataclass
class Example:
    """One training image: normalised channels (C, Y, X) and labels per compartment."""

    name: str
    kind: str
    image: np.ndarray
    labels: dict[str, np.ndarray]


def split_of(name: str) -> str:
    """Deterministic 80/10/10 split by a hash of the image name."""
    bucket = int(hashlib.sha1(name.encode()).hexdigest(), 16) % 10
    return "test" if bucket == 0 else "val" if bucket == 1 else "train"


def load_dsb(root: str | os.PathLike, split: str, kinds: tuple[str, ...] | None = None) -> list[Example]:
    """DSB2018 images of one split as single-channel nuclear examples."""
    import pandas as pd

    from .io import read_image
    from .preprocess import normalize, percentile_range, select_channels

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


def random_crop(example: Example, size: int, rng: np.random.Generator, scale_range=(0.6, 1.7)):
    """A randomly scaled, flipped and rotated crop: (C, S, S) image, {comp: (S, S)} labels."""
    scale = float(np.exp(rng.uniform(np.log(scale_range[0]), np.log(scale_range[1]))))
    c, h, w = example.image.shape
    src = int(np.ceil(size / scale))
    y0 = rng.integers(0, max(1, h - src + 1))
    x0 = rng.integers(0, max(1, w - src + 1))
    img = example.image[:, y0:y0 + src, x0:x0 + src]
    labs = {k: v[y0:y0 + src, x0:x0 + src] for k, v in example.labels.items()}
    zoom = size / src
    img = np.stack([ndi.zoom(ch, zoom, order=1) for ch in img])
    labs = {k: ndi.zoom(v, zoom, order=0) for k, v in labs.items()}
    pad_y, pad_x = size - img.shape[1], size - img.shape[2]
    if pad_y > 0 or pad_x > 0:
        img = np.pad(img, ((0, 0), (0, max(pad_y, 0)), (0, max(pad_x, 0))))
        labs = {k: np.pad(v, ((0, max(pad_y, 0)), (0, max(pad_x, 0)))) for k, v in labs.items()}
    img, labs = img[:, :size, :size], {k: v[:size, :size] for k, v in labs.items()}
    k = int(rng.integers(4))
    flip = bool(rng.integers(2))

    def geo(a):
        a = np.rot90(a, k, axes=(-2, -1))
        return a[..., ::-1] if flip else a

    img = geo(img)
    labs = {kk: geo(v) for kk, v in labs.items()}
    gamma = float(np.exp(rng.normal(0, 0.25)))
    img = np.sign(img) * np.abs(img) ** gamma * float(rng.uniform(0.8, 1.25))
    img = img + rng.normal(0, rng.uniform(0, 0.03), img.shape)
    return np.ascontiguousarray(img, np.float32), {kk: np.ascontiguousarray(v) for kk, v in labs.items()}


def one_batch(examples: list[Example], compartments: list[str], size: int, batch: int, rng: np.random.Generator):
    """One (x (B,S,S,C), y (B,S,S,2*n_comp)) training batch of random crops."""
    xs, ys = [], []
    for _ in range(batch):
        ex = examples[int(rng.integers(len(examples)))]
        img, labs = random_crop(ex, size, rng)
        xs.append(np.moveaxis(img, 0, -1))
        ys.append(np.concatenate([make_targets(labs[c]) if c in labs else missing_targets(size)
                                  for c in compartments], axis=-1))
    return np.stack(xs), np.stack(ys).astype(np.float32)


def batches(examples: list[Example], compartments: list[str], size: int, batch: int, seed: int, workers: int = 0):
    """Endless generator of training batches (see ``one_batch``).

    With ``workers`` > 0 the crops are made in that many processes (an accelerator
    trains faster than one core can crop); batch ``i`` then draws from its own
    generator seeded by ``(seed, i)``, so the stream does not depend on the number
    of workers (it differs from the one-process stream, which draws from one generator).
    """
    if workers > 0:
        yield from _parallel_batches(examples, compartments, size, batch, seed, workers)
        return
    rng = np.random.default_rng(seed)
    while True:
        yield one_batch(examples, compartments, size, batch, rng)


_WORKER_EXAMPLES: list[Example] = []


def _keep_examples(examples: list[Example]) -> None:
    _WORKER_EXAMPLES[:] = examples


def _seeded_batch(compartments: list[str], size: int, batch: int, seed: int, index: int):
    return one_batch(_WORKER_EXAMPLES, compartments, size, batch, np.random.default_rng([seed, index]))


def _parallel_batches(examples, compartments, size, batch, seed, workers):
    import itertools
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    from .segmentation import ordered_map

    # spawn, not fork: the parent already runs the accelerator runtime's threads
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_keep_examples, initargs=(examples,)) as pool:
        yield from ordered_map(partial(_seeded_batch, compartments, size, batch, seed), itertools.count(), workers,
                               pool)


def missing_targets(size: int) -> np.ndarray:
    """Targets of a compartment an example has no labels for: -1 everywhere (masked out of the loss)."""
    return np.full((size, size, 2), -1.0, np.float32)


def make_loss(n_compartments: int):
    """Inner-distance MSE (foreground-weighted) + class-weighted 3-class cross-entropy.

    Pixels whose target distance is negative (a compartment the example has no
    labels for) do not count, so data sets with only some compartments mix.
    """
    import keras
    from keras import ops

    class_weights = ops.convert_to_tensor([1.0, 3.0, 1.0])

    def loss(y_true, y_pred):
        total = 0.0
        for i in range(n_compartments):
            dist_t = y_true[..., 2 * i]
            valid = ops.cast(dist_t >= 0, "float32")
            cls_t = ops.cast(ops.maximum(y_true[..., 2 * i + 1], 0.0), "int32")
            dist_p = y_pred[..., 4 * i]
            probs = ops.clip(y_pred[..., 4 * i + 1: 4 * i + 4], 1e-6, 1.0)
            onehot = ops.one_hot(cls_t, 3)
            ce = -ops.sum(onehot * ops.log(probs) * class_weights, axis=-1)
            weight = 1.0 + 4.0 * ops.cast(cls_t > 0, "float32")
            mse = weight * ops.square(dist_t - dist_p)
            n_valid = ops.maximum(ops.sum(valid), 1.0)
            total = total + ops.sum(ce * valid) / n_valid + 10.0 * ops.sum(mse * valid) / n_valid
        return total

    keras.saving.register_keras_serializable("cellscale")(loss)
    return loss


def fit(spec: ModelSpec, train: list[Example], out_dir: str | os.PathLike, steps: int, batch: int = 8,
        tile: int = 256, lr: float = 2e-3, seed: int = 0, log=print, steps_per_epoch: int = 100,
        init_from: str | os.PathLike | None = None, workers: int = 0) -> Path:
    """Train (resuming from ``out_dir/checkpoint.keras`` if present) and return the checkpoint path.

    The learning rate follows a cosine decay over ``steps``; a checkpoint and a
    state file are written after every epoch so a killed run loses at most one epoch.
    ``init_from`` (a model folder or ``.keras`` file of the same architecture) starts
    a fresh run from those weights instead of random ones: a fine-tuning run with
    its own learning-rate schedule. ``workers`` > 0 makes the crops in that many
    processes (see ``batches``).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt, state_file = out_dir / "checkpoint.keras", out_dir / "state.json"
    steps_per_epoch = min(steps_per_epoch, steps)
    epochs = max(1, steps // steps_per_epoch)
    initial_epoch = 0
    keras.utils.set_random_seed(seed)
    schedule = keras.optimizers.schedules.CosineDecay(lr, epochs * steps_per_epoch, alpha=0.05)
    model = build_unet(spec)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=make_loss(len(spec.compartments)))
    if ckpt.exists() and state_file.exists():
        initial_epoch = json.loads(state_file.read_text())["epoch"]
        model = keras.models.load_model(ckpt, custom_objects={"loss": make_loss(len(spec.compartments))})
        log(f"resuming from epoch {initial_epoch} of {epochs}")
    elif init_from is not None:
        init = Path(init_from)
        if init.is_dir():  # a model folder: the network its model.json names
            init = _artifact_path(init, ModelSpec.read(init).artifact)
        model.set_weights(keras.models.load_model(init, compile=False).get_weights())
        log(f"starting from the weights of {init}")
    if initial_epoch >= epochs:
        return ckpt

    class Checkpoint(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            tmp = out_dir / "checkpoint.tmp.keras"
            self.model.save(tmp)
            os.replace(tmp, ckpt)
            state_file.write_text(json.dumps({"epoch": epoch + 1, "loss": float(logs.get("loss", 0))}))
            log(f"epoch {epoch + 1}/{epochs} loss {logs.get('loss', float('nan')):.4f} "
                f"({time.strftime('%H:%M:%S')})")

    data = batches(train, spec.compartments, tile, batch, seed + initial_epoch, workers)
    try:
        model.fit(data, epochs=epochs, steps_per_epoch=steps_per_epoch, initial_epoch=initial_epoch,
                  callbacks=[Checkpoint()], verbose=0)
    finally:
        data.close()  # stops the crop workers
    return ckpt


def export(ckpt: Path, spec: ModelSpec, model_dir: str | os.PathLike) -> None:
    """Save the trained network without optimizer state next to its model.json."""
    import keras

    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    model = keras.models.load_model(ckpt, compile=False)
    tmp = model_dir / "model.tmp.keras"
    model.save(tmp, include_optimizer=False)
    os.replace(tmp, model_dir / "model.keras")
    spec.write(model_dir)


def command_line() -> str:
    """The ``cellscale train`` command of this process, for the model card (``--note``'s text is the card's own
    line, so it is left out)."""
    args = sys.argv[1:]
    if "--note" in args:
        i = args.index("--note")
        del args[i:i + 2]
    args = [a for a in args if not a.startswith("--note=")]
    return " ".join(["cellscale", *args]) if args else "cellscale train"


TISSUE_STYLES = ("sparse", "dense", "mixed")


def load_synthetic_tissue(n_images: int, split: str, seed: int = 0, style: str = "sparse") -> list[Example]:
    """Generated tissue examples (DNA + membrane channels; nuclear and whole-cell labels).

    ``style``: ``sparse`` (:func:`~cellscale.synth.tissue.make_tissue`: separate cells, crisp
    membranes), ``dense`` (:func:`~cellscale.synth.tissue.make_dense_tissue`: packed cells with
    large nuclei and faint, patchy membranes, like a CODEX tile) or ``mixed`` (every other image).
    Splits use disjoint seed ranges so test images are never trained on.
    """
    from .preprocess import normalize, percentile_range
    from .synth.tissue import make_dense_tissue, make_tissue

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
    from .metrics import iou_matrix, object_ids

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
    import tifffile

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
    from .metrics import iou_matrix, matched, object_ids

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
    import tifffile

    from .preprocess import normalize, percentile_range

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
    return [Example(f"codex-{tile_dir.name}-{region}", "codex", normalize(chans, percentile_range(chans)),
                    {"whole_cell": cells})]
