"""Fitting the network: the loss, resumable training with checkpoints, and the exported model."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from cellscale.segment.model import (
    CHANNELS_PER_COMPARTMENT,
    ModelSpec,
    artifact_path,
)
from cellscale.segment.network import build_unet
from cellscale.train.augment import batches
from cellscale.train.data import Example
from cellscale.train.targets import NO_DISTANCE, NOTHING


def make_loss(n_compartments: int):
    """Inner-distance MSE (foreground-weighted) + class-weighted 3-class cross-entropy.

    Pixels whose target distance is NOTHING (a compartment the example has no
    labels for, padding) do not count, so data sets with only some compartments mix;
    where it is NO_DISTANCE (a cell cut by a tile's edge) only the class counts.
    """
    import keras
    from keras import ops

    class_weights = ops.convert_to_tensor([1.0, 3.0, 1.0])

    def loss(y_true, y_pred):
        total = 0.0
        for i in range(n_compartments):
            dist_t = y_true[..., 2 * i]
            valid = ops.cast(dist_t > (NO_DISTANCE + NOTHING) / 2, "float32")  # the class is known
            has_distance = ops.cast(dist_t >= 0, "float32")
            cls_t = ops.cast(ops.maximum(y_true[..., 2 * i + 1], 0.0), "int32")
            first = CHANNELS_PER_COMPARTMENT * i  # inner distance, then the three class probabilities
            dist_p = y_pred[..., first]
            probs = ops.clip(y_pred[..., first + 1: first + 4], 1e-6, 1.0)
            onehot = ops.one_hot(cls_t, 3)
            ce = -ops.sum(onehot * ops.log(probs) * class_weights, axis=-1)
            weight = 1.0 + 4.0 * ops.cast(cls_t > 0, "float32")
            mse = weight * ops.square(dist_t - dist_p)
            n_valid = ops.maximum(ops.sum(valid), 1.0)
            total = total + ops.sum(ce * valid) / n_valid + 10.0 * ops.sum(mse * has_distance) / n_valid
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
            init = artifact_path(init, ModelSpec.read(init).artifact)
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
    if not _same_network(model, model_dir / "model.keras"):   # a .keras file's bytes hold the time it was saved:
        tmp = model_dir / "model.tmp.keras"                     # the same weights keep their file, so their version
        model.save(tmp, include_optimizer=False)
        os.replace(tmp, model_dir / "model.keras")
    spec.write(model_dir)


def _same_network(model, path: Path) -> bool:
    """Whether the network file at ``path`` holds ``model``'s architecture and exactly its weights."""
    if not path.is_file():
        return False
    import keras

    try:
        saved = keras.models.load_model(path, compile=False)
    except Exception:  # an unreadable or partial file is replaced
        return False
    a, b = model.get_weights(), saved.get_weights()
    return (saved.to_json() == model.to_json() and len(a) == len(b)
            and all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b)))
