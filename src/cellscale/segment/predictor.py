"""Running a model on normalised windows: Keras (float32, bfloat16), a declared user network, or the int8 copy
(LiteRT/XNNPACK); optional test-time augmentation."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cellscale.parallel import available_cores
from cellscale.segment.model import (
    CHANNELS_PER_COMPARTMENT,
    ModelSpec,
    artifact_path,
)
from cellscale.segment.network import build_unet


class Predictor:
    """A loaded model that turns batches of normalised tiles into maps.

    Parameters
    ----------
    model_dir : folder with ``model.json`` and the model artifact.
    batch_size : tiles per forward pass (float32/bfloat16; the int8 copy runs one window at a time).
    precision : "float32", "bfloat16", "int8" (the model's 8-bit copy, see :func:`export_int8`) or
        "auto" (int8 when the model has one and no GPU is visible, else float32).
    threads : CPU threads of the int8 runtime (default: the cores this process may use).
    augment : test-time augmentation, one of :data:`AUGMENTATIONS`: "none" (one pass), "rot180"
        (the mean of the tile's maps and those of the tile turned by 180 degrees, turned back: two
        passes) or "flips" (the mean over the tile and its vertical, horizontal and double flips:
        four passes). More passes, more network time, a little more accuracy (docs/benchmarks.md);
        "flips" makes the maps exactly equivariant to flips, "rot180" to a half turn.
    """

    def __init__(self, model: "str | os.PathLike | dict", batch_size: int = 8, precision: str = "float32",
                 threads: int | None = None, augment: str = "none"):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self.spec = ModelSpec.read(model)
        if augment not in AUGMENTATIONS:
            raise ValueError(f"model {self.spec.name}: unknown augmentation {augment!r} "
                             f"(one of {', '.join(AUGMENTATIONS)})")
        self.augment = augment
        self._flips = AUGMENTATIONS[augment]  # NHWC axes of each extra pass
        if precision == "auto":  # int8 runs on CPU cores only: a GPU job keeps float32 on the GPU
            precision = "int8" if self.spec.int8 and self.spec.outputs is None and not gpu_present() else "float32"
        if precision not in PRECISIONS:
            raise ValueError(f"model {self.spec.name}: unknown precision {precision!r} (one of auto, "
                             f"{', '.join(PRECISIONS)})")
        self.precision = precision
        self._layout = _output_layout(self.spec)
        self.batch_size = batch_size
        if precision == "int8":
            if not self.spec.int8:
                raise ValueError(f"model {self.spec.name} has no int8 copy: run `cellscale quantize` on its folder, "
                                 "or set segment.precision to float32")
            self.model = None
            self._call = _Int8Runner(artifact_path(model, self.spec.int8["artifact"]), int(self.spec.int8["window"]),
                                     threads or available_cores())
            return
        import keras

        artifact = artifact_path(model, self.spec.artifact)
        if self.spec.format == "keras":
            self.model = keras.models.load_model(artifact, compile=False)
            if precision == "bfloat16" and self.spec.outputs is None:
                self.model = _as_bfloat16(self.model, self.spec)
            self._call = _compiled(self.model, batch_size)
        elif self.spec.format == "savedmodel":
            layer = keras.layers.TFSMLayer(str(artifact), call_endpoint="serving_default")
            self.model = layer
            self._call = lambda x: _concat_outputs(layer(x))
        else:
            raise ValueError(f"model {model}: unknown format {self.spec.format!r}")

    @property
    def n_outputs(self) -> int:
        return CHANNELS_PER_COMPARTMENT * len(self.spec.compartments)

    def predict(self, tiles: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Run the network on tiles.

        Parameters
        ----------
        tiles : (N, C, H, W) float32, normalised, H and W multiples of
            ``spec.tile_multiple``; may be memory-mapped (read one batch at a time).
        out : optional (N, 4 * n_compartments, H, W) array (e.g. a float16 memory map) filled
            batch by batch, so memory does not grow with N.

        Returns
        -------
        (N, 4 * n_compartments, H, W) maps: ``out`` if given, else a new float32 array.
        """
        if tiles.ndim != 4 or tiles.shape[1] != len(self.spec.inputs):
            raise ValueError(
                f"model {self.spec.name} expects (N, {len(self.spec.inputs)}, H, W) tiles, got {tiles.shape}"
            )
        m = self.spec.tile_multiple
        if tiles.shape[2] % m or tiles.shape[3] % m:
            raise ValueError(f"tile size {tiles.shape[2:]} is not a multiple of {m}")
        n, _, h, w = tiles.shape
        if out is None:
            out = np.empty((n, self.n_outputs, h, w), np.float32)
        elif out.shape != (n, self.n_outputs, h, w):
            raise ValueError(f"output array has shape {out.shape}, expected {(n, self.n_outputs, h, w)}")
        for i in range(0, n, self.batch_size):
            x = np.ascontiguousarray(np.moveaxis(np.asarray(tiles[i : i + self.batch_size]), 1, -1),
                                     dtype=np.float32)
            maps = self._maps(x)
            if self._flips:  # NHWC: flip rows (axis 1), columns (axis 2) or both; flip the maps back
                maps = np.array(maps, np.float32)
                for axes in self._flips:
                    maps += np.flip(self._maps(np.ascontiguousarray(np.flip(x, axes))), axes)
                maps /= 1 + len(self._flips)
            out[i : i + self.batch_size] = np.moveaxis(maps, -1, 1)
        return out

    def _maps(self, x: np.ndarray) -> np.ndarray:
        """(N, H, W, 4 * n_compartments) float32 maps of one NHWC batch, one network pass."""
        raw = np.asarray(self._call(x), np.float32)
        return self._layout(raw) if self._layout else raw


PRECISIONS = ("float32", "bfloat16", "int8")


# test-time augmentations: the flips (NHWC axes) whose maps are averaged with the plain pass
AUGMENTATIONS = {"none": (), "rot180": ((1, 2),), "flips": ((1,), (2,), (1, 2))}


def gpu_present() -> bool:
    """Whether this process can see an NVIDIA GPU (device files, unless CUDA_VISIBLE_DEVICES hides them)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return any(Path("/dev").glob("nvidia[0-9]*"))


class _Int8Runner:
    """Runs an 8-bit TFLite copy of the network with XNNPACK, one window at a time.

    The copy is built for ``window`` x ``window`` inputs; smaller windows are zero-padded
    to it and the maps cropped back. Uses the LiteRT runtime (``ai-edge-litert``), which
    starts in a fraction of a second, or TensorFlow's bundled interpreter without it.
    """

    def __init__(self, path: Path, window: int, threads: int):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:  # pragma: no cover - TensorFlow's copy of the same runtime
            from tensorflow.lite import Interpreter
        self.window = window
        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        shape = self.input["shape"]
        if int(shape[1]) != window or int(shape[2]) != window:
            raise ValueError(f"{path}: built for {shape[1]} x {shape[2]} windows, model.json says {window}")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        b, h, w, c = x.shape
        if h > self.window or w > self.window:
            raise ValueError(f"window {h} x {w} is larger than the {self.window}-px windows the int8 model was "
                             f"built for: set tiling.tile <= {self.window} or use precision float32")
        out = np.empty((b, h, w, int(self.output["shape"][-1])), np.float32)
        padded = np.zeros((1, self.window, self.window, c), np.float32)
        for i in range(b):
            padded[0, :h, :w] = x[i]
            self.interpreter.set_tensor(self.input["index"], padded)
            self.interpreter.invoke()
            out[i] = self.interpreter.get_tensor(self.output["index"])[0, :h, :w]
        return out


def _compiled(model, batch_size: int):
    """Call ``model`` through a graph traced once per batch shape.

    A traced graph runs about 25% faster on CPU than eager calls (shipped U-Net, 512 x 512
    windows). Each shape gets its own concrete function: a shape-relaxed trace would leave
    the bilinear up-sampling with unknown sizes. Other Keras backends (JAX, PyTorch: what a GPU node
    may have instead of TensorFlow) go through ``predict_on_batch``, which JAX compiles once per shape;
    there a short last batch is padded to ``batch_size`` windows, so a job compiles once per window size
    (a compile costs about 1 s on a CPU and more on a GPU, more than the padded windows).
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        def call(x):
            n = len(x)
            if n < batch_size:
                x = np.concatenate([x, np.zeros((batch_size - n, *x.shape[1:]), x.dtype)])
            return np.asarray(_concat_outputs(model.predict_on_batch(x)))[:n]

        return call
    import tensorflow as tf

    traced = tf.function(lambda x: _concat_outputs(model(x, training=False)))
    by_shape = {}

    def call(x):
        fn = by_shape.get(x.shape)
        if fn is None:
            fn = by_shape[x.shape] = traced.get_concrete_function(tf.TensorSpec(x.shape, tf.float32))
        return fn(tf.constant(x))

    return call


def _concat_outputs(result):
    """One (B, H, W, C) array from a model's output(s); a dict's outputs in sorted key order."""
    import keras

    if isinstance(result, dict):
        result = [result[k] for k in sorted(result)]
    if isinstance(result, (list, tuple)):
        return keras.ops.concatenate([keras.ops.cast(r, "float32") for r in result], axis=-1)
    return keras.ops.cast(result, "float32")


def _output_layout(spec: ModelSpec):
    """A function mapping a declared output layout onto the native one, or None."""
    if spec.outputs is None:
        return None
    sources: dict[str, dict[str, int]] = {c: {} for c in spec.compartments}
    position = 0
    for item in spec.outputs:
        comp, _, kind = item.partition(":")
        if comp == "ignore":
            position += int(kind)
            continue
        if comp not in sources or kind not in ("distance", "classes", "foreground"):
            raise ValueError(f"model {spec.name}: cannot read output {item!r} (compartments {spec.compartments})")
        sources[comp][kind] = position
        position += 3 if kind == "classes" else 1
    for comp, got in sources.items():
        if "distance" not in got or not ({"classes", "foreground"} & set(got)):
            raise ValueError(f"model {spec.name}: {comp} needs a distance and a classes or foreground output")

    def convert(raw: np.ndarray) -> np.ndarray:
        if raw.shape[-1] < position:
            raise ValueError(f"model {spec.name} returned {raw.shape[-1]} channels, its layout declares {position}")
        parts = []
        for comp in spec.compartments:
            got = sources[comp]
            dist = raw[..., got["distance"]]
            if "classes" in got:
                probs = raw[..., got["classes"]: got["classes"] + 3]
            else:
                fg = raw[..., got["foreground"]]
                probs = np.stack([1 - fg, np.zeros_like(fg), fg], axis=-1)
            parts += [dist[..., None], probs]
        return np.concatenate(parts, axis=-1)

    return convert


def _as_bfloat16(model, spec: ModelSpec):
    """The same network computing in bfloat16 (weights copied), for faster CPU inference."""
    import keras

    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        fast = build_unet(spec)
    finally:
        keras.mixed_precision.set_global_policy(policy)
    fast.set_weights(model.get_weights())
    return fast
