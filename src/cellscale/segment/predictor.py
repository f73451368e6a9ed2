"""Running a model on normalised windows: Keras (float32, bfloat16), a declared user network, or the int8 copy
(LiteRT/XNNPACK); optional test-time augmentation."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from cellscale.parallel import available_cores
from cellscale.segment.model import (
    CHANNELS_PER_COMPARTMENT,
    ModelSpec,
    artifact_path,
)
from cellscale.segment.network import build_unet
from cellscale.segment.settings import SegmentSettings

log = logging.getLogger(__name__)


class Predictor:
    """A loaded model that turns batches of normalised tiles into maps.

    Parameters
    ----------
    model : folder with ``model.json`` and the model artifact, or a declared model (a mapping, as the workflow
        config's ``models`` takes); by a shipped name or registry ``NAME@VERSION``: :func:`cellscale.api.load_model`.
    batch_size : tiles per forward pass (without ``batch_mpx``). The int8 copy's maps of a tile do not depend on
        it nor on the other tiles of a pass; float32 on a CPU: the same for every batch size > 1, 1e-6 apart with 1
        (:func:`_compiled`).
    batch_mpx : megapixels of tiles per forward pass (config ``segment.batch_mpx``), which wins over
        ``batch_size``: ``th x tw`` tiles go ``max(1, batch_mpx * 1e6 // (th * tw))`` a pass
        (:meth:`windows_per_pass`), so a pass of tiles of one size holds as many whatever job runs them (a batch
        job's 256-px windows of many images, or one image's own segment job).
    precision : "float32", "bfloat16", "int8" (the model's 8-bit copy, see :func:`export_int8`) or
        "auto" (int8 when the model has one and no GPU is visible, else float32). Default: the workflow's and
        ``cellscale segment``'s (config ``segment.precision``, :class:`~cellscale.segment.settings.SegmentSettings`).
    threads : CPU threads of the int8 runtime (default: the cores this process may use).
    augment : test-time augmentation, one of :data:`AUGMENTATIONS`: "none" (one pass), "rot180"
        (the mean of the tile's maps and those of the tile turned by 180 degrees, turned back: two
        passes) or "flips" (the mean over the tile and its vertical, horizontal and double flips:
        four passes). More passes, more network time, a little more accuracy (docs/benchmarks.md);
        "flips" makes the maps exactly equivariant to flips, "rot180" to a half turn. Default: the workflow's and
        ``cellscale segment``'s (config ``segment.augment``).
    """

    def __init__(self, model: "str | os.PathLike | dict", batch_size: int = 8,
                 precision: str = SegmentSettings().precision, threads: int | None = None,
                 augment: str = SegmentSettings().augment, batch_mpx: float | None = None):
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
        self.batch_size, self.batch_mpx = batch_size, batch_mpx
        ran = (self.spec.int8 or {}).get("artifact") if precision == "int8" else self.spec.artifact
        log.info("model %s: runs %s (%s), augment %s", self.spec.name if isinstance(model, dict) else model, ran,
                 precision, augment)  # which weights ran: a job's log says
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
            self._call = _compiled(self.model, self.windows_per_pass)
        elif self.spec.format == "savedmodel":
            layer = keras.layers.TFSMLayer(str(artifact), call_endpoint="serving_default")
            self.model = layer
            self._call = lambda x: _concat_outputs(layer(x))
        else:
            raise ValueError(f"model {model}: unknown format {self.spec.format!r}")

    def windows_per_pass(self, h: int, w: int) -> int:
        """Tiles of h x w pixels in one forward pass: about ``batch_mpx`` megapixels of them, else ``batch_size``."""
        if self.batch_mpx is None:
            return self.batch_size
        return max(1, int(self.batch_mpx * 1e6 // (h * w)))

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
        step = self.windows_per_pass(h, w)
        for i in range(0, n, step):
            x = np.ascontiguousarray(np.moveaxis(np.asarray(tiles[i : i + step]), 1, -1), dtype=np.float32)
            maps = self._maps(x)
            if self._flips:  # NHWC: flip rows (axis 1), columns (axis 2) or both; flip the maps back
                maps = np.array(maps, np.float32)
                for axes in self._flips:
                    maps += np.flip(self._maps(np.ascontiguousarray(np.flip(x, axes))), axes)
                maps /= 1 + len(self._flips)
            out[i : i + step] = np.moveaxis(maps, -1, 1)
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
    """Runs an 8-bit TFLite copy of the network with XNNPACK: a batch of windows of one size per invoke.

    The copy is built for ``window`` x ``window`` inputs. A window of another size (a multiple of the model's
    ``tile_multiple``, at most ``window``) runs at its own size: the copy's only size-dependent constants are
    the output sizes of its bilinear up-sampling, which :func:`_int8_resized` rewrites, so the weights and the
    8-bit scales are those of the file. One interpreter is kept per window size (the ``cache`` most recently
    used; each holds 50 MB for 256-px windows to 150 MB for 512-px ones), resized when the number of windows
    changes. A copy that cannot be rewritten runs as before: windows zero-padded to ``window``, one per
    invoke, the maps cropped back. A window's maps do not depend on the batch nor on the other windows in it
    (XNNPACK's int8 kernels compute each alone).
    Uses the LiteRT runtime (``ai-edge-litert``), which starts in a fraction of a second, or TensorFlow's
    bundled interpreter without it.
    """

    def __init__(self, path: Path, window: int, threads: int, cache: int = 8):
        self.path, self.window, self.threads, self.cache = Path(path), window, threads, cache
        self._content = self.path.read_bytes()
        self._built = _litert_interpreter()(model_content=self._content, num_threads=threads)
        self._built_allocated = False  # only the padding fallback uses it (an allocation holds 130 MB)
        shape = self._built.get_input_details()[0]["shape"]
        if int(shape[1]) != window or int(shape[2]) != window:
            raise ValueError(f"{path}: built for {shape[1]} x {shape[2]} windows, model.json says {window}")
        self.n_maps = int(self._built.get_output_details()[0]["shape"][-1])
        self._interpreters: OrderedDict[tuple[int, int], object] = OrderedDict()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        b, h, w, c = x.shape
        if h > self.window or w > self.window:
            raise ValueError(f"window {h} x {w} is larger than the {self.window}-px windows the int8 model was "
                             f"built for: set tiling.tile <= {self.window} or use precision float32")
        interpreter = self._interpreter(b, h, w)
        if interpreter is None:
            return self._padded(x)
        return _invoke(interpreter, np.ascontiguousarray(x, np.float32))

    def _interpreter(self, b: int, h: int, w: int):
        """The interpreter for h x w windows, allocated for ``b`` of them; None where the copy cannot be resized."""
        if (h, w) in self._interpreters:
            self._interpreters.move_to_end((h, w))
            interpreter = self._interpreters[(h, w)]
            if interpreter is not None and int(interpreter.get_input_details()[0]["shape"][0]) != b:
                interpreter = _reshaped(interpreter, (b, h, w))
            return interpreter
        content = self._content if (h, w) == (self.window, self.window) else _int8_resized(
            self._content, self.window, h, w)
        interpreter = None if content is None else _reshaped(
            _litert_interpreter()(model_content=content, num_threads=self.threads), (b, h, w))
        self._interpreters[(h, w)] = interpreter
        while len(self._interpreters) > self.cache:
            self._interpreters.popitem(last=False)
        return interpreter

    def _padded(self, x: np.ndarray) -> np.ndarray:
        """Maps of windows zero-padded to the built window, one per invoke (a copy that cannot be resized)."""
        b, h, w, c = x.shape
        if not self._built_allocated:
            if _reshaped(self._built, (1, self.window, self.window)) is None:
                raise ValueError(f"{self.path}: the int8 copy does not run on one {self.window}-px window")
            self._built_allocated = True
        out = np.empty((b, h, w, self.n_maps), np.float32)
        padded = np.zeros((1, self.window, self.window, c), np.float32)
        for i in range(b):
            padded[0, :h, :w] = x[i]
            out[i] = _invoke(self._built, padded)[0, :h, :w]
        return out


def _litert_interpreter():
    """The TFLite interpreter class: LiteRT's, or TensorFlow's copy of the same runtime."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - TensorFlow's copy of the same runtime
        from tensorflow.lite import Interpreter
    return Interpreter


# LiteRT prints this to file descriptor 2 at a process's first allocation (the runtime logs it once a process),
# in every job that segments, and has no option that silences it alone (its minimal logger is C++'s only)
_XNNPACK_NOTICE = b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
_first_allocation = True


@contextmanager
def _without_xnnpack_notice():
    """Around the process's first allocation only: file descriptor 2 goes to a temporary file, and all that was
    written there but LiteRT's XNNPACK notice is written back after (a failed allocation's messages too)."""
    global _first_allocation
    if not _first_allocation:
        yield
        return
    _first_allocation = False
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no file descriptor 2 to redirect: the notice stays
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            os.write(2, b"".join(line for line in held.read().splitlines(keepends=True)
                                 if not line.startswith(_XNNPACK_NOTICE)))


def _reshaped(interpreter, shape: tuple[int, int, int]):
    """``interpreter`` allocated for (batch, height, width) inputs, or None where the runtime refuses that
    shape or the output does not take it."""
    detail = interpreter.get_input_details()[0]
    try:
        interpreter.resize_tensor_input(detail["index"], [*shape, int(detail["shape"][-1])])
        with _without_xnnpack_notice():
            interpreter.allocate_tensors()
    except (RuntimeError, ValueError):
        return None
    out = interpreter.get_output_details()[0]["shape"]
    return interpreter if tuple(int(s) for s in out[:3]) == shape else None


def _invoke(interpreter, x: np.ndarray) -> np.ndarray:
    """One forward pass of an allocated interpreter on a batch of its input shape."""
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


# TFLite operators whose output size follows their input's: a copy made of these and RESIZE_BILINEAR (whose
# output size is a constant, rewritten) runs at any window size (see _int8_resized)
_SIZE_FREE_OPS = ("ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEQUANTIZE",
                  "HARD_SWISH", "LEAKY_RELU", "LOGISTIC", "MAX_POOL_2D", "MUL", "QUANTIZE", "RELU", "RELU6",
                  "SOFTMAX", "SUB", "TANH")


def _int8_resized(content: bytes, window: int, h: int, w: int) -> bytes | None:
    """The TFLite flatbuffer ``content`` (built for ``window``-px windows) rewritten for h x w windows.

    The U-Net's only constants that depend on the window size are the output sizes of its RESIZE_BILINEAR
    (up-sampling) operators: they are scaled by h / window and w / window; every other tensor takes its
    size from the input when the interpreter is resized. None for a copy with any other operator than
    :data:`_SIZE_FREE_OPS`, or an up-sampling size that is not a constant or does not scale to an integer.
    """
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # pragma: no cover - TensorFlow's copy of the schema
        from tensorflow.lite.python import schema_py_generated as schema

    data = bytearray(content)
    model = schema.Model.GetRootAsModel(data, 0)
    size_free = {getattr(schema.BuiltinOperator, name) for name in _SIZE_FREE_OPS}
    sizes = []
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            code = model.OperatorCodes(op.OpcodeIndex())
            kind = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            if kind == schema.BuiltinOperator.RESIZE_BILINEAR:
                size = model.Buffers(graph.Tensors(op.Inputs(1)).Buffer()).DataAsNumpy()
                if not isinstance(size, np.ndarray) or size.size != 8:
                    return None  # a size computed at run time, not a constant
                sizes.append(size.view(np.int32))  # a view of ``data``: written in place below
            elif kind not in size_free:
                return None
    for size in sizes:
        if (size[0] * h) % window or (size[1] * w) % window:
            return None
        size[:] = [size[0] * h // window, size[1] * w // window]
    return bytes(data)


def _compiled(model, per_pass):
    """Call ``model`` through a graph traced once per batch shape; ``per_pass(h, w)``: the windows of a full pass
    (:meth:`Predictor.windows_per_pass`).

    A traced graph runs about 25% faster on CPU than eager calls (shipped U-Net, 512 x 512
    windows). Each shape gets its own concrete function: a shape-relaxed trace would leave
    the bilinear up-sampling with unknown sizes. Other Keras backends (JAX, PyTorch: what a GPU node
    may have instead of TensorFlow) go through ``predict_on_batch``, which JAX compiles once per shape;
    there a short last batch is padded to a full pass, so a job compiles once per window size
    (a compile costs about 1 s on a CPU and more on a GPU, more than the padded windows).

    With TensorFlow on a CPU (oneDNN) a window's maps are bitwise the same in batches of 2, 3, 4 or 8 windows
    and whatever the other windows, but a batch of one window takes another code path (maps up to 1e-6
    apart). Where a full pass holds more than one window, a lone window (a short last batch) runs beside a zero
    window, so its maps do not depend on how many windows came with it; a pass of one runs every window alone.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        def call(x):
            n, full = len(x), per_pass(*x.shape[1:3])
            if n < full:
                x = np.concatenate([x, np.zeros((full - n, *x.shape[1:]), x.dtype)])
            return np.asarray(_concat_outputs(model.predict_on_batch(x)))[:n]

        return call
    import tensorflow as tf

    traced = tf.function(lambda x: _concat_outputs(model(x, training=False)))
    by_shape = {}

    def call(x):
        n = len(x)
        if n == 1 < per_pass(*x.shape[1:3]):  # a short last batch of one window: as a batch of two (see above)
            x = np.concatenate([x, np.zeros_like(x)])
        fn = by_shape.get(x.shape)
        if fn is None:
            fn = by_shape[x.shape] = traced.get_concrete_function(tf.TensorSpec(x.shape, tf.float32))
        return fn(tf.constant(x))[:n]

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
