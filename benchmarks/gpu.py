"""Network throughput per accelerator: the GPU figure of the segmentation goals, ready for a GPU node.

Runs on whatever device and Keras backend the process has (``KERAS_BACKEND``: tensorflow, jax or torch; a GPU
node without TensorFlow can use JAX or PyTorch, the shipped ``model.keras`` runs on all three) and prints:

- the network's work per Mpx (GFLOP and bytes its layers write, counted from the model) and, from them, the
  arithmetic and memory bounds of the GPUs of the price table at half their datasheet peaks (``--work-only``: that
  alone, on any machine);
- the backend and the device it computes on;
- the network alone: ``Predictor.predict`` on windows of ``--window`` px, float32 and bfloat16, at several batch
  sizes, in megapixels per second after one warm-up batch, with peak accelerator memory where the backend
  reports it;
- the whole in-process segmentation (``segment_image``: tiling, network, blending, post-processing on the CPU)
  of a generated 2-channel image of ``--megapixels``, at the best network setting;
- with ``--cpu-part N`` (then nothing else, on any machine): the part of a workflow ``segment_batch`` job that
  is not the network (reading, normalising, tiling, stitching, post-processing, measuring, writing labels), on
  N generated fields, the network's maps replayed, on 1 and 2 threads: the CPU work of a GPU node's job;
- with ``--fovs N``: N fields of view of 1024 x 1024 (``--fov-edge``; the DeepCell Kiosk's 1-Mpx workload) through
  ``segment_many`` in one process (batches filled across images, post-processing on every core), in fields
  of view and megapixels per second (``--workers 1 4 16``: once per number of post-processing threads).

Usage:
    KERAS_BACKEND=jax python benchmarks/gpu.py                # on a GPU node (about 2 minutes)
    python benchmarks/gpu.py --quick                           # CI / CPU: small windows, one batch size
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def device_name() -> str:
    """The device the Keras backend computes on, in words."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        d = jax.devices()[0]
        return f"{d.platform}: {getattr(d, 'device_kind', d)}"
    if backend == "torch":
        import torch

        return f"cuda: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cpu"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return f"gpu: {tf.config.experimental.get_device_details(gpus[0]).get('device_name', gpus[0].name)}" \
        if gpus else "cpu"


def peak_memory_gb() -> float | None:
    """Peak accelerator memory of this process so far (GB), where the backend reports it."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            stats = jax.devices()[0].memory_stats() or {}
            return stats["peak_bytes_in_use"] / 1e9 if "peak_bytes_in_use" in stats else None
        if backend == "torch":
            import torch

            return torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else None
        import tensorflow as tf

        return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 1e9 \
            if tf.config.list_physical_devices("GPU") else None
    except Exception:  # noqa: BLE001 - a figure the backend cannot give is left out
        return None


#: datasheet peaks (float32 TFLOPS without tensor cores, memory GB/s) of the GPUs the price table lists
CHIPS = {"L4": (30.3, 300.0), "T4": (8.1, 320.0), "A100-40GB": (19.5, 1555.0), "H100-80GB SXM": (66.9, 3350.0),
         "H200": (66.9, 4800.0)}


def network_work(model: Path, window: int = 512) -> tuple[float, float, int]:
    """(GFLOP, GB of float32 layer outputs, layers) per Mpx of one pass of ``model``'s network on ``window``-px
    windows: multiply-adds of its convolutions (separable ones as depthwise + pointwise) x 2, and the bytes every
    layer writes (each is read at least once more, unless the compiler fuses it into the next layer)."""
    import keras

    net = keras.models.load_model(model / "model.keras", compile=False)
    layers = [layer for layer in net.layers if not isinstance(layer, keras.layers.InputLayer)]
    probe = keras.Model(net.inputs, [layer.output for layer in layers])
    outputs = probe.predict(np.zeros((1, window, window, net.input_shape[-1]), np.float32), verbose=0)
    flops = written = 0.0
    for layer, out in zip(layers, outputs):
        written += out.size * 4
        _, h, w, c_out = out.shape
        if isinstance(layer, keras.layers.Conv2D):   # SeparableConv2D is not a Conv2D in Keras 3
            flops += 2 * h * w * np.prod(layer.kernel_size) * layer.input.shape[-1] * c_out
        elif isinstance(layer, keras.layers.SeparableConv2D):
            c_in = layer.input.shape[-1]
            flops += 2 * h * w * (np.prod(layer.kernel_size) * c_in + c_in * c_out)
    mpx = window * window / 1e6
    return flops / mpx / 1e9, written / mpx / 1e9, len(layers)


def print_work(model: Path, window: int) -> None:
    gflop, gb, n = network_work(model, window)
    print(f"network work per Mpx, one pass, float32 ({model.name}, {n} layers): {gflop:.1f} GFLOP, {gb:.2f} GB written "
          f"by its layers (>= {2 * gb:.2f} GB of memory traffic unfused)")
    print("| GPU | float32 TFLOPS | GB/s | arithmetic bound at 50% (Mpx/s) | memory bound at 50% (Mpx/s) |")
    print("|---|---|---|---|---|")
    for chip, (tflops, gbs) in CHIPS.items():
        print(f"| {chip} | {tflops:g} | {gbs:g} | {0.5 * tflops * 1e3 / gflop:.0f} | {0.5 * gbs / (2 * gb):.0f} |")
    print(flush=True)


def network_throughput(model: Path, precision: str, batch: int, window: int, batches: int) -> float:
    """Mpx/s of ``Predictor.predict`` on ``batches`` batches of ``batch`` windows (after one warm-up batch)."""
    from cellscale.segment.predictor import Predictor

    predictor = Predictor(model, batch_size=batch, precision=precision, augment="none")
    tiles = np.random.default_rng(0).random((batch, len(predictor.spec.inputs), window, window), dtype=np.float32)
    predictor.predict(tiles)  # compiles / traces for this shape
    start = time.perf_counter()
    for _ in range(batches):
        predictor.predict(tiles)
    return batches * batch * window * window / 1e6 / (time.perf_counter() - start)


def whole_image(model: Path, precision: str, batch: int, window: int,
                megapixels: float) -> tuple[float, float, float]:
    """(Mpx, Mpx/s, warm-up s) of ``segment_image`` on a generated 2-channel OME-TIFF read region by region.

    The network is warmed up (compiled for the window shape) first and that time is given apart: a
    segment job pays it once, whatever the image's size."""
    from segmentation import make_large_image

    from cellscale.io import ImageSource
    from cellscale.segment.image import segment_image
    from cellscale.segment.predictor import Predictor

    predictor = Predictor(model, batch_size=batch, precision=precision, augment="none")
    start = time.perf_counter()
    predictor.predict(np.zeros((batch, len(predictor.spec.inputs), window, window), np.float32))
    warm_up = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "large.ome.tif"
        h, w = make_large_image(path, megapixels)
        with ImageSource.open(path) as source:
            start = time.perf_counter()
            segment_image(predictor, source, roles_of(predictor), tile=window)
            seconds = time.perf_counter() - start
    return h * w / 1e6, h * w / 1e6 / seconds, warm_up


def roles_of(predictor) -> dict:
    """Channel roles of the generated 2-channel images (DNA, membrane) for the model's inputs."""
    return {"nuclear": 0, "membrane": 1} if "membrane" in predictor.spec.inputs else {"nuclear": 0}


def many_fovs(model: Path, precision: str, batch: int, window: int, n: int, group_mpx: float,
              workers: list[int], edge: int = 1024) -> list[tuple[int, float, float]]:
    """(threads, fields of view per s, Mpx/s) of ``segment_many`` on ``n`` generated ``edge``-px 2-channel images,
    once per number of post-processing threads in ``workers`` (0: every core); one predictor and one set of images."""
    from cellscale.io import ImageSource
    from cellscale.segment.image import FieldOfView, segment_many
    from cellscale.segment.predictor import Predictor
    from cellscale.synth.tissue import make_tissue

    predictor = Predictor(model, batch_size=batch, precision=precision, augment="none")
    predictor.predict(np.zeros((batch, len(predictor.spec.inputs), window, window), np.float32))
    cells = int(600 * (edge / 1024) ** 2)
    crops = [make_tissue((edge, edge), n_cells=cells, seed=seed, cell_radius=16).image[None, :2]
             for seed in range(min(n, 4))]
    out = []
    for threads in workers:
        fovs = (FieldOfView(ImageSource.from_array(crops[i % len(crops)]), roles_of(predictor)) for i in range(n))
        start = time.perf_counter()
        done = sum(not isinstance(result, Exception)
                   for _, result in segment_many(predictor, fovs, tile=window, group_mpx=group_mpx,
                                                 workers=threads or None))
        seconds = time.perf_counter() - start
        if done != n:
            raise RuntimeError(f"{n - done} of {n} fields of view failed")
        out.append((threads or os.cpu_count(), n / seconds, n * edge * edge / 1e6 / seconds))
    return out


def cpu_part(model: Path, n: int, edge: int, threads: list[int]) -> list[tuple[int, float, float]]:
    """(threads, s/Mpx, network s/Mpx) of the part of a workflow ``segment_batch`` job that is not the network, on
    this machine's CPU: ``n`` generated ``edge``-px fields written as TIFFs, through
    :func:`cellscale.steps.batch.segment_batch` with the workflow's defaults (reading, normalising, tiling,
    stitching, post-processing, measuring, writing labels). A first run on 2 threads records the network's maps
    (``Predictor.predict``'s outputs, in call order); the timed runs replay them, so they take the job's time less
    the network's. This is what a GPU node's CPU does around its network."""
    import shutil

    import pandas as pd
    import tifffile

    from cellscale.segment import predictor as module
    from cellscale.segment.model import ModelSpec
    from cellscale.steps import batch as step
    from cellscale.synth.tissue import make_tissue

    channels = 2 if "membrane" in ModelSpec.read(model).inputs else 1
    roles = {"nuclear": 0, "membrane": 1} if channels == 2 else {"nuclear": 0}
    cells = int(600 * (edge / 1024) ** 2)
    crops = [make_tissue((edge, edge), n_cells=cells, seed=seed, cell_radius=16).image[:channels]
             for seed in range(min(n, 4))]
    tmp = Path(tempfile.mkdtemp(prefix="cpu-part-"))
    fields = []
    for i in range(n):
        path = tmp / f"field{i:04d}.tif"
        tifffile.imwrite(path, (np.clip(crops[i % len(crops)], 0, 1) * 4000).astype(np.uint16),
                         metadata={"axes": "CYX"})
        fields.append(step.Field(sample=f"field{i:04d}", image=str(path), roles=roles, height=edge, width=edge))
    mpx = n * edge * edge / 1e6
    real, maps = module.Predictor.predict, []

    def recording(self, tiles, out=None):
        result = real(self, tiles, out)
        maps.append(np.array(result))
        return result

    rest = {}  # threads: s/Mpx with the network replayed
    try:
        module.Predictor.predict = recording
        start = time.perf_counter()
        step.segment_batch(fields, model, tmp / "real", "b", threads=2)
        real_s = time.perf_counter() - start
        for k in threads:
            replayed = iter(maps)

            def replay(self, tiles, out=None):
                result = next(replayed)
                if out is None:
                    return result.copy()
                out[...] = result
                return out

            module.Predictor.predict = replay
            start = time.perf_counter()
            step.segment_batch(fields, model, tmp / f"replayed{k}", "b", threads=k)
            seconds = time.perf_counter() - start
            if not pd.read_parquet(tmp / f"replayed{k}" / "cells.parquet").equals(
                    pd.read_parquet(tmp / "real" / "cells.parquet")):
                raise RuntimeError("the replayed maps gave other cells than the network's: the timing is void")
            rest[k] = seconds / mpx
    finally:
        module.Predictor.predict = real
        shutil.rmtree(tmp, ignore_errors=True)
    network = real_s / mpx - rest[2] if 2 in rest else None  # the real 2-thread job less its replayed run
    return [(k, s, network) for k, s in rest.items()]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="CI / CPU mode: 256-px windows, one batch size, 0.25 Mpx, two fields of view of 384 px")
    p.add_argument("--model", default=str(ROOT / "models" / "tissue"), help="model folder (default: tissue)")
    p.add_argument("--window", type=int, default=512, help="window edge in pixels")
    p.add_argument("--batches", type=int, default=10, help="timed batches per setting")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32, 64])
    p.add_argument("--megapixels", type=float, default=26.0, help="size of the whole-image run")
    p.add_argument("--fovs", type=int, default=0, help="also time this many fields of view (segment_many; --fov-edge px each)")
    p.add_argument("--group-mpx", type=float, default=4.0, help="segment_many's group size for --fovs")
    p.add_argument("--fov-edge", type=int, default=1024, help="edge of each --fovs field in pixels")
    p.add_argument("--skip-whole", action="store_true", help="leave out the whole-image run")
    p.add_argument("--workers", type=int, nargs="+", default=[0],
                   help="post-processing threads of the --fovs run, one run each (0: every core)")
    p.add_argument("--cpu-part", type=int, default=0, metavar="N",
                   help="time the CPU part of a segment_batch job (all but the network: its maps replayed) on N "
                        "generated --fov-edge px fields, on 1 and 2 threads, then stop (any machine)")
    p.add_argument("--work-only", action="store_true",
                   help="print the network's work per Mpx (GFLOP, bytes) and each GPU's bounds from it, then stop")
    args = p.parse_args(argv)
    if args.quick:
        args.window, args.batches, args.batch_sizes, args.megapixels = 256, 2, [4], 0.25
        args.fovs, args.fov_edge = 2, 384  # the fields-of-view path runs too, on two small fields
    if args.cpu_part:
        print(f"CPU part of a segment_batch job ({args.cpu_part} generated fields of {args.fov_edge} px, "
              f"model {Path(args.model).name}, the workflow's defaults; the network's maps replayed):")
        for threads, rest, network in cpu_part(Path(args.model), args.cpu_part, args.fov_edge, [1, 2]):
            print(f"  {threads} thread(s): {rest:.4f} s/Mpx"
                  + ("" if network is None or threads != 2 else f" (the network on 2 threads: {network:.4f} s/Mpx)"),
                  flush=True)
        return 0
    import keras

    model = Path(args.model)
    print_work(model, args.window)
    if args.work_only:
        return 0
    print(f"backend {keras.backend.backend()}, device {device_name()}, model {model.name}, "
          f"{args.window}-px windows", flush=True)
    print("| precision | batch | network Mpx/s | peak accelerator memory (GB) |")
    print("|---|---|---|---|")
    best = (0.0, "float32", args.batch_sizes[0])
    for precision in ("float32", "bfloat16"):
        for batch in args.batch_sizes:
            rate = network_throughput(model, precision, batch, args.window, args.batches)
            peak = peak_memory_gb()
            print(f"| {precision} | {batch} | {rate:.1f} | {'n/a' if peak is None else f'{peak:.1f}'} |", flush=True)
            best = max(best, (rate, precision, batch))
    _, precision, batch = best
    if not args.skip_whole:
        mpx, rate, warm_up = whole_image(model, precision, batch, args.window, args.megapixels)
        print(f"\nwhole image ({mpx:.1f} Mpx, {precision}, batch {batch}, segment_image in one process, "
              f"post-processing on the CPU): {rate:.2f} Mpx/s after a {warm_up:.1f}-s warm-up (compile)",
              flush=True)
    runs = many_fovs(model, precision, batch, args.window, args.fovs, args.group_mpx, args.workers,
                     args.fov_edge) if args.fovs else []
    for threads, per_s, rate in runs:
        print(f"\n{args.fovs} fields of view of {args.fov_edge} x {args.fov_edge} px ({precision}, batch {batch}, "
              f"segment_many in one process, groups of {args.group_mpx:g} Mpx, post-processing on {threads} "
              f"threads): {per_s:.2f} per s, {rate:.2f} Mpx/s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
